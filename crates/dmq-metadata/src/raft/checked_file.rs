//! Small files that must be exactly what was written or nothing: the vote, the log metadata and
//! the state-machine snapshot. Written to a temporary name, fsynced, renamed over the old file,
//! and the directory fsynced, so a crash leaves either the old or the new version.
//!
//! ```text
//! offset  size  field
//!      0     4  magic    b"DMQF"
//!      4     2  version  u16 BE (1)
//!      6     2  kind     u16 BE (what the payload is, see `Kind`)
//!      8     8  length   u64 BE, payload bytes
//!     16     4  crc      u32 BE, CRC-32C of the payload
//!     20     …  payload  (JSON)
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

const MAGIC: &[u8; 4] = b"DMQF";
const VERSION: u16 = 1;
const HEADER_BYTES: usize = 20;

/// What a checked file holds; stored in the header so a file cannot be read as another kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    Vote = 1,
    LogMeta = 2,
    Snapshot = 3,
}

/// Atomically replaces `path` with `payload`, durable when this returns.
pub fn write(path: &Path, kind: Kind, payload: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&tmp)?;
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_be_bytes());
    header.extend_from_slice(&(kind as u16).to_be_bytes());
    header.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    header.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    file.write_all(&header)?;
    file.write_all(payload)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_dir(path)
}

/// Reads a checked file: `Ok(None)` when absent, an error when damaged or of another kind.
pub fn read(path: &Path, kind: Kind) -> io::Result<Option<Vec<u8>>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    if bytes.len() < HEADER_BYTES || &bytes[0..4] != MAGIC {
        return Err(bad(format!(
            "{} is not a DistributedMQ checked file",
            path.display()
        )));
    }
    let version = u16::from_be_bytes([bytes[4], bytes[5]]);
    let file_kind = u16::from_be_bytes([bytes[6], bytes[7]]);
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[8..16]);
    let len = u64::from_be_bytes(len);
    let crc = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    if version != VERSION || file_kind != kind as u16 {
        return Err(bad(format!(
            "{}: version {version} kind {file_kind}, expected version {VERSION} kind {}",
            path.display(),
            kind as u16
        )));
    }
    let payload = &bytes[HEADER_BYTES..];
    if payload.len() as u64 != len || crc32c::crc32c(payload) != crc {
        return Err(bad(format!(
            "{}: length or checksum mismatch",
            path.display()
        )));
    }
    Ok(Some(payload.to_vec()))
}

/// Makes a rename or a new file in `path`'s directory durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_detection() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vote");
        assert_eq!(read(&path, Kind::Vote).expect("absent is fine"), None);
        write(&path, Kind::Vote, b"{\"term\":3}").expect("write");
        assert_eq!(
            read(&path, Kind::Vote).expect("read").as_deref(),
            Some(&b"{\"term\":3}"[..])
        );
        assert!(read(&path, Kind::Snapshot).is_err(), "kind is checked");
        let mut bytes = fs::read(&path).expect("raw");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).expect("corrupt");
        assert!(read(&path, Kind::Vote).is_err(), "checksum is checked");
        fs::write(&path, &bytes[..10]).expect("torn");
        assert!(read(&path, Kind::Vote).is_err(), "torn header is detected");
    }
}
