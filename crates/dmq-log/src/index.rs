//! OffsetIndex (`.index`): sparse map from relative offset to file position.
//!
//! File layout: a flat array of fixed-width big-endian entries, no header (the file length
//! must be a multiple of 8; the format is versioned by the segment file name suffix):
//!
//! ```text
//! offset  size  field
//!      0     4  relativeOffset  u32   batch baseOffset − segment baseOffset
//!      4     4  position        u32   byte position of that batch in the .log file
//! ```
//!
//! One entry is added for the first batch that starts after at least `index_interval_bytes`
//! (default [`crate::INDEX_INTERVAL_BYTES`]) have been appended since the previous entry.
//! The first batch of a segment is never indexed: position 0 is implied.
//!
//! The index is only ever a *hint*: on open the file is validated (width, strictly
//! increasing offsets and positions, positions inside the .log) and rebuilt from the .log
//! when it is missing or invalid; on read the batch found at an indexed position must have
//! the indexed offset, otherwise the reader falls back to a scan from the segment start.
//! Entries are kept in memory (8 bytes per ~4 KiB of log, 0.2 %) and appended to the file
//! in bulk on flush, roll and close, so the append path does no index I/O.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

use crate::error::{LogError, Result};

/// A fixed-width index entry.
pub(crate) trait IndexEntry: Copy + std::fmt::Debug + Send + Sync + 'static {
    const WIDTH: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(b: &[u8]) -> Self;
}

/// `.index` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

impl IndexEntry for OffsetEntry {
    const WIDTH: usize = 8;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// An index file plus its in-memory mirror. Mutated only by the log's single writer; read
/// concurrently by readers through a short-lived read lock (no I/O under the lock).
#[derive(Debug)]
pub(crate) struct IndexFile<E: IndexEntry> {
    path: PathBuf,
    file: File,
    entries: RwLock<Vec<E>>,
    /// Entries already written to the file.
    written: AtomicUsize,
}

/// Read the raw entries of an index file. `Ok(None)` when missing or not a whole number of
/// entries (the caller rebuilds).
pub(crate) fn read_entries<E: IndexEntry>(path: &Path) -> Result<Option<Vec<E>>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io("read", path)(e)),
    };
    if bytes.len() % E::WIDTH != 0 {
        return Ok(None);
    }
    Ok(Some(bytes.chunks_exact(E::WIDTH).map(E::decode).collect()))
}

impl<E: IndexEntry> IndexFile<E> {
    /// Open `path` with `entries` that are known to match the file (already written).
    pub(crate) fn open_existing(path: &Path, entries: Vec<E>) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(LogError::io("open", path))?;
        let n = entries.len();
        Ok(IndexFile {
            path: path.to_path_buf(),
            file,
            entries: RwLock::new(entries),
            written: AtomicUsize::new(n),
        })
    }

    /// Create (or overwrite) `path` with `entries`, written immediately.
    pub(crate) fn create(path: &Path, entries: Vec<E>) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(LogError::io("create", path))?;
        let idx = IndexFile {
            path: path.to_path_buf(),
            file,
            entries: RwLock::new(entries),
            written: AtomicUsize::new(0),
        };
        idx.flush_pending()?;
        Ok(idx)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn push(&self, e: E) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(e);
    }

    /// Run `f` over the entries under a read lock.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&[E]) -> R) -> R {
        let g = self.entries.read().unwrap_or_else(|p| p.into_inner());
        f(&g)
    }

    pub(crate) fn last(&self) -> Option<E> {
        self.with(|e| e.last().copied())
    }

    pub(crate) fn len(&self) -> usize {
        self.with(|e| e.len())
    }

    /// Entries not yet written to the file.
    pub(crate) fn pending(&self) -> usize {
        self.len()
            .saturating_sub(self.written.load(Ordering::Acquire))
    }

    /// Append entries not yet in the file (one write).
    pub(crate) fn flush_pending(&self) -> Result<()> {
        let written = self.written.load(Ordering::Acquire);
        let (buf, total) = self.with(|e| {
            let mut buf = Vec::with_capacity(e.len().saturating_sub(written) * E::WIDTH);
            for x in e.iter().skip(written) {
                x.encode(&mut buf);
            }
            (buf, e.len())
        });
        if !buf.is_empty() {
            self.file
                .write_all_at(&buf, (written * E::WIDTH) as u64)
                .map_err(LogError::io("write", &self.path))?;
            self.written.store(total, Ordering::Release);
        }
        Ok(())
    }

    pub(crate) fn sync(&self) -> Result<()> {
        self.flush_pending()?;
        self.file
            .sync_data()
            .map_err(LogError::io("fsync", &self.path))
    }

    /// Keep only entries for which `keep` holds (a prefix, since entries are ordered).
    pub(crate) fn truncate_while(&self, keep: impl Fn(&E) -> bool) -> Result<()> {
        let n = {
            let mut g = self.entries.write().unwrap_or_else(|p| p.into_inner());
            let n = g.iter().position(|e| !keep(e)).unwrap_or(g.len());
            g.truncate(n);
            n
        };
        if self.written.load(Ordering::Acquire) > n {
            self.file
                .set_len((n * E::WIDTH) as u64)
                .map_err(LogError::io("truncate", &self.path))?;
            self.written.store(n, Ordering::Release);
        }
        Ok(())
    }
}

/// Validate offset-index entries for a segment whose .log is `log_size` bytes.
pub(crate) fn validate_offset_entries(
    entries: &[OffsetEntry],
    log_size: u64,
) -> std::result::Result<(), String> {
    let mut prev: Option<OffsetEntry> = None;
    for (i, e) in entries.iter().enumerate() {
        if e.position as u64 >= log_size {
            return Err(format!(
                "entry {i}: position {} beyond log size {log_size}",
                e.position
            ));
        }
        if let Some(p) = prev {
            if e.relative_offset <= p.relative_offset || e.position <= p.position {
                return Err(format!("entry {i}: not strictly increasing"));
            }
        } else if e.position == 0 {
            return Err("entry 0 at position 0 (never indexed)".into());
        }
        prev = Some(*e);
    }
    Ok(())
}

/// Largest entry whose relative offset ≤ `rel` and whose position < `max_pos`.
pub(crate) fn lookup_offset(
    entries: &[OffsetEntry],
    rel: u32,
    max_pos: u64,
) -> Option<OffsetEntry> {
    let by_off = entries.partition_point(|e| e.relative_offset <= rel);
    let by_pos = entries.partition_point(|e| (e.position as u64) < max_pos);
    let n = by_off.min(by_pos);
    n.checked_sub(1).map(|i| entries[i])
}

/// Largest entry whose position ≤ `pos`.
pub(crate) fn lookup_position(entries: &[OffsetEntry], pos: u64) -> Option<OffsetEntry> {
    let n = entries.partition_point(|e| (e.position as u64) <= pos);
    n.checked_sub(1).map(|i| entries[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(r: u32, p: u32) -> OffsetEntry {
        OffsetEntry {
            relative_offset: r,
            position: p,
        }
    }

    #[test]
    fn file_roundtrip_and_truncate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("0.index");
        let idx = IndexFile::create(&p, vec![e(5, 100)]).expect("create");
        idx.push(e(9, 200));
        idx.push(e(20, 400));
        idx.flush_pending().expect("flush");
        assert_eq!(
            read_entries::<OffsetEntry>(&p).expect("read"),
            Some(vec![e(5, 100), e(9, 200), e(20, 400)])
        );
        idx.truncate_while(|x| x.relative_offset < 10)
            .expect("trunc");
        assert_eq!(
            read_entries::<OffsetEntry>(&p).expect("read"),
            Some(vec![e(5, 100), e(9, 200)])
        );
        assert_eq!(idx.len(), 2);
        std::fs::write(&p, [0u8; 7]).expect("w");
        assert_eq!(read_entries::<OffsetEntry>(&p).expect("read"), None);
    }

    #[test]
    fn validation_and_lookup() {
        let es = [e(5, 100), e(9, 200), e(20, 400)];
        assert!(validate_offset_entries(&es, 401).is_ok());
        assert!(validate_offset_entries(&es, 400).is_err());
        assert!(validate_offset_entries(&[e(5, 100), e(5, 200)], 1000).is_err());
        assert!(validate_offset_entries(&[e(0, 0)], 1000).is_err());
        assert_eq!(lookup_offset(&es, 4, u64::MAX), None);
        assert_eq!(lookup_offset(&es, 9, u64::MAX), Some(e(9, 200)));
        assert_eq!(lookup_offset(&es, 19, u64::MAX), Some(e(9, 200)));
        assert_eq!(lookup_offset(&es, 100, 400), Some(e(9, 200)));
        assert_eq!(lookup_position(&es, 399), Some(e(9, 200)));
        assert_eq!(lookup_position(&es, 50), None);
    }
}
