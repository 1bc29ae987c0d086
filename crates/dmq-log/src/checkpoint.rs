//! Small versioned, checksummed text checkpoint files (leader epochs, log start offset).
//!
//! Layout (UTF-8 text, `\n` line ends):
//!
//! ```text
//! dmq-checkpoint 1 <kind>      header: magic word, format version, what the file holds
//! <n>                          number of entry lines
//! <entry line> × n             kind-specific, space-separated decimal integers
//! crc32c <8 lowercase hex>     CRC-32C of every byte before this line
//! ```
//!
//! Files are replaced atomically: write `<name>.tmp`, fsync, rename over `<name>`, fsync the
//! directory. A reader therefore sees the old or the new file, never a torn one; the CRC
//! catches media corruption, reported as [`LogError::CorruptCheckpoint`].

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{LogError, Result};

const MAGIC: &str = "dmq-checkpoint";
const VERSION: u32 = 1;

/// Atomically write `lines` as a checkpoint of `kind` at `path`.
pub(crate) fn write(path: &Path, kind: &str, lines: &[String]) -> Result<()> {
    let mut body = format!("{MAGIC} {VERSION} {kind}\n{}\n", lines.len());
    for l in lines {
        body.push_str(l);
        body.push('\n');
    }
    let crc = crc32c::crc32c(body.as_bytes());
    body.push_str(&format!("crc32c {crc:08x}\n"));
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(LogError::io("create", &tmp))?;
        f.write_all(body.as_bytes())
            .map_err(LogError::io("write", &tmp))?;
        f.sync_all().map_err(LogError::io("fsync", &tmp))?;
    }
    fs::rename(&tmp, path).map_err(LogError::io("rename", path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Read a checkpoint of `kind`; `Ok(None)` when the file does not exist.
pub(crate) fn read(path: &Path, kind: &str) -> Result<Option<Vec<Vec<i64>>>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io("read", path)(e)),
    };
    let corrupt = |reason: String| LogError::CorruptCheckpoint {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| corrupt("not UTF-8".into()))?;
    // Strict framing: the last line is exactly "crc32c <8 hex>\n".
    let without_nl = text
        .strip_suffix('\n')
        .ok_or_else(|| corrupt("missing final newline".into()))?;
    let body_end = without_nl
        .rfind('\n')
        .map(|i| i + 1)
        .ok_or_else(|| corrupt("too short".into()))?;
    let (body, trailer) = text.split_at(body_end);
    let hex = trailer
        .strip_prefix("crc32c ")
        .and_then(|t| t.strip_suffix('\n'))
        .filter(|h| {
            h.len() == 8
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .ok_or_else(|| corrupt("missing crc line".into()))?;
    let stored = u32::from_str_radix(hex, 16).map_err(|_| corrupt("bad crc".into()))?;
    let computed = crc32c::crc32c(body.as_bytes());
    if stored != computed {
        return Err(corrupt(format!(
            "crc {stored:08x} != computed {computed:08x}"
        )));
    }
    let mut lines = body.lines();
    let header = lines.next().unwrap_or_default();
    let expected = format!("{MAGIC} {VERSION} {kind}");
    if header != expected {
        return Err(corrupt(format!("header {header:?}, expected {expected:?}")));
    }
    let n: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| corrupt("bad entry count".into()))?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let line = lines
            .next()
            .ok_or_else(|| corrupt("fewer entries than declared".into()))?;
        let nums: Option<Vec<i64>> = line.split_whitespace().map(|t| t.parse().ok()).collect();
        out.push(nums.ok_or_else(|| corrupt(format!("bad entry line {line:?}")))?);
    }
    if lines.next().is_some() {
        return Err(corrupt("more entries than declared".into()));
    }
    Ok(Some(out))
}

/// fsync a directory so that creates, renames and unlinks in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(LogError::io("open dir", dir))?;
    d.sync_all().map_err(LogError::io("fsync dir", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("cp");
        assert_eq!(read(&p, "k").expect("read"), None);
        write(&p, "k", &["1 2".into(), "3 4".into()]).expect("write");
        assert_eq!(
            read(&p, "k").expect("read"),
            Some(vec![vec![1, 2], vec![3, 4]])
        );
        assert!(read(&p, "other").is_err());
        let good = fs::read(&p).expect("bytes");
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            fs::write(&p, &bad).expect("write");
            assert!(read(&p, "k").is_err(), "flip at {i}");
        }
        for cut in 0..good.len() {
            fs::write(&p, &good[..cut]).expect("write");
            assert!(read(&p, "k").is_err(), "cut at {cut}");
        }
    }
}
