//! Producer snapshots (Kafka's `<offset>.snapshot` files of `ProducerStateManager`): the
//! partition's idempotent-producer and transaction state as of an offset, so that opening a
//! partition (or truncating it) scans the log only from the latest snapshot instead of from
//! its start.
//!
//! ```text
//!   <partition dir>/<offset, 20 digits>.snapshot
//!       dmq-producer-snapshot 1 <crc32c of the body, hex> <body length>\n
//!       <body: JSON of ProducerStates::snapshot_body>
//! ```
//!
//! The aborted-transaction list is not in a snapshot: it lives in the segments' `.txnindex`
//! files (`dmq_log::txn_index`). How the pieces fit on open ([`crate::partition`]):
//!
//! 1. the newest snapshot `S` with `log start ≤ S ≤ log end` whose checksum holds (newer ones
//!    are deleted: the log lost their offsets in a crash or a truncation);
//! 2. the aborted transactions whose marker is below `S` from the `.txnindex` files — they were
//!    fsynced before the snapshot was written, so they are complete;
//! 3. index entries at or after `S` are cut, and the log from `S` to its end is scanned, which
//!    derives them again (and the rest of the state) from the markers themselves.
//!
//! Without a usable snapshot the scan starts at the log start, which is always exact.
//! Snapshots are written with a temporary file, fsync and rename; a torn or corrupt one is
//! skipped.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{BrokerError, Result};

const SUFFIX: &str = "snapshot";
const MAGIC: &str = "dmq-producer-snapshot";
const VERSION: u32 = 1;
/// Snapshots kept: the newest may be above the log end after a crash, the next one is then
/// the fallback.
const KEPT: usize = 2;

fn file_name(offset: i64) -> String {
    format!("{offset:020}.{SUFFIX}")
}

fn parse_offset(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(SUFFIX)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

fn io(op: &str, path: &Path, e: std::io::Error) -> BrokerError {
    BrokerError::Io(std::io::Error::new(
        e.kind(),
        format!("{op} {}: {e}", path.display()),
    ))
}

/// The snapshots in `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<(i64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io("read dir", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io("read dir", dir, e))?;
        if let Some(offset) = entry.file_name().to_str().and_then(parse_offset) {
            out.push((offset, entry.path()));
        }
    }
    out.sort_unstable_by_key(|(o, _)| *o);
    Ok(out)
}

/// Writes the snapshot of `offset` (durably) and deletes all but the newest [`KEPT`].
pub fn write(dir: &Path, offset: i64, body: &[u8]) -> Result<()> {
    let path = dir.join(file_name(offset));
    let tmp = path.with_extension(format!("{SUFFIX}.tmp"));
    {
        let mut f = fs::File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
        let header = format!(
            "{MAGIC} {VERSION} {:08x} {}\n",
            crc32c::crc32c(body),
            body.len()
        );
        f.write_all(header.as_bytes())
            .and_then(|_| f.write_all(body))
            .map_err(|e| io("write", &tmp, e))?;
        f.sync_data().map_err(|e| io("fsync", &tmp, e))?;
    }
    fs::rename(&tmp, &path).map_err(|e| io("rename", &path, e))?;
    sync_dir(dir)?;
    let all = list(dir)?;
    for (_, old) in all.iter().rev().skip(KEPT) {
        remove(old)?;
    }
    Ok(())
}

/// The body of the snapshot at `path`, or `None` when it is torn or corrupt.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", path, e)),
    };
    let Some(nl) = bytes.iter().position(|b| *b == b'\n') else {
        return Ok(None);
    };
    let header = String::from_utf8_lossy(&bytes[..nl]);
    let body = &bytes[nl + 1..];
    let fields: Vec<&str> = header.split(' ').collect();
    let valid = match fields.as_slice() {
        [magic, version, crc, len] => {
            *magic == MAGIC
                && version.parse() == Ok(VERSION)
                && len.parse() == Ok(body.len())
                && u32::from_str_radix(crc, 16) == Ok(crc32c::crc32c(body))
        }
        _ => false,
    };
    Ok(valid.then(|| body.to_vec()))
}

/// Deletes every snapshot above `offset` (the log no longer reaches them) and returns the
/// others, oldest first.
pub fn drop_above(dir: &Path, offset: i64) -> Result<Vec<(i64, PathBuf)>> {
    let mut kept = Vec::new();
    let mut removed = false;
    for (o, p) in list(dir)? {
        if o > offset {
            remove(&p)?;
            removed = true;
        } else {
            kept.push((o, p));
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(kept)
}

/// Deletes every snapshot (the log starts over empty).
pub fn remove_all(dir: &Path) -> Result<()> {
    drop_above(dir, i64::MIN).map(|_| ())
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", path, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("fsync", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip_and_the_newest_two_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        for o in [10, 20, 30] {
            write(dir.path(), o, format!("body {o}").as_bytes()).expect("write");
        }
        let all = list(dir.path()).expect("list");
        assert_eq!(
            all.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            vec![20, 30]
        );
        assert_eq!(read(&all[1].1).expect("read"), Some(b"body 30".to_vec()));
        let kept = drop_above(dir.path(), 25).expect("drop");
        assert_eq!(kept.len(), 1);
        assert_eq!(list(dir.path()).expect("list").len(), 1);
    }

    #[test]
    fn a_torn_or_corrupt_snapshot_reads_as_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), 5, b"{\"producers\":[]}").expect("write");
        let path = dir.path().join(file_name(5));
        let whole = fs::read(&path).expect("read");
        fs::write(&path, &whole[..whole.len() - 3]).expect("tear");
        assert_eq!(read(&path).expect("read"), None, "torn");
        let mut flipped = whole.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 0x20;
        fs::write(&path, &flipped).expect("corrupt");
        assert_eq!(read(&path).expect("read"), None, "bit flip");
        fs::write(&path, b"garbage").expect("garbage");
        assert_eq!(read(&path).expect("read"), None, "no header");
    }
}
