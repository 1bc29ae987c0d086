//! The aborted-transaction index of a segment (Kafka's `TransactionIndex`):
//! `<base offset, 20 digits>.txnindex`, one 34-byte entry per transaction whose abort marker is
//! in the segment, in marker order:
//!
//! ```text
//!   version i16 (0) | producer id i64 | first offset i64 | last offset i64 | last stable offset i64
//! ```
//!
//! `first offset` is the producer's first record of the transaction in this partition (it may
//! lie in an earlier segment), `last offset` the abort marker's offset, and `last stable offset`
//! the partition's LSO when the marker was written (Kafka keeps it to end a search early; here
//! it is informational). The file exists only for segments that hold an abort marker, and goes
//! with its segment (retention, DeleteRecords, truncation).
//!
//! **Durability.** Appends are not fsynced one by one: the partition layer derives the entries
//! from the markers in the log and owns their recovery. Entries below a producer snapshot's
//! offset are trusted (the snapshot is written only after [`crate::Log::sync_txn_indexes`]);
//! entries from there on are cut ([`crate::Log::truncate_txn_indexes_from`]) and derived again
//! by scanning the log. A torn tail (a length not a multiple of 34) is ignored.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{LogError, Result};
use crate::segment::file_name;

/// Extension of aborted-transaction index files.
pub const TXN_INDEX_SUFFIX: &str = "txnindex";
/// Bytes per entry (Kafka's `AbortedTxn` layout).
pub const TXN_ENTRY_BYTES: usize = 34;
const VERSION: i16 = 0;

/// One aborted transaction, as the index stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnIndexEntry {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The abort marker's offset.
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl TxnIndexEntry {
    fn encode(&self) -> [u8; TXN_ENTRY_BYTES] {
        let mut b = [0u8; TXN_ENTRY_BYTES];
        b[0..2].copy_from_slice(&VERSION.to_be_bytes());
        b[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        b[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        b[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        b[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        b
    }

    #[cfg(test)]
    pub(crate) fn encode_for_test(&self) -> Vec<u8> {
        self.encode().to_vec()
    }

    fn decode(b: &[u8]) -> Option<TxnIndexEntry> {
        let i64_at = |at: usize| -> Option<i64> {
            Some(i64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
        };
        let version = i16::from_be_bytes(b.get(0..2)?.try_into().ok()?);
        if version != VERSION {
            return None;
        }
        Some(TxnIndexEntry {
            producer_id: i64_at(2)?,
            first_offset: i64_at(10)?,
            last_offset: i64_at(18)?,
            last_stable_offset: i64_at(26)?,
        })
    }
}

/// Path of the index of the segment based at `base_offset`.
pub(crate) fn path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(file_name(base_offset, TXN_INDEX_SUFFIX))
}

/// Appends `entry` to the index at `path` (created on first use). Not fsynced.
pub(crate) fn append(path: &Path, entry: &TxnIndexEntry) -> Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(LogError::io("open", path))?;
    let len = f.metadata().map_err(LogError::io("stat", path))?.len();
    let whole = len - len % TXN_ENTRY_BYTES as u64;
    if whole != len {
        // A torn entry from a crash: cut it so the new one starts on an entry boundary.
        f.set_len(whole).map_err(LogError::io("truncate", path))?;
    }
    f.write_all(&entry.encode())
        .map_err(LogError::io("write", path))
}

/// Every whole entry of the index at `path`; none when it does not exist. An entry of an
/// unknown version ends the read (nothing after it can be trusted).
pub(crate) fn read(path: &Path) -> Result<Vec<TxnIndexEntry>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LogError::io("read", path)(e)),
    };
    Ok(bytes
        .chunks_exact(TXN_ENTRY_BYTES)
        .map_while(TxnIndexEntry::decode)
        .collect())
}

/// Keeps only the entries whose marker is below `offset` (rewritten through a temporary file
/// and a rename, so a crash leaves the old or the new index). Returns whether anything changed.
pub(crate) fn truncate_from(path: &Path, offset: i64) -> Result<bool> {
    let entries = read(path)?;
    let on_disk = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(LogError::io("stat", path)(e)),
    };
    let kept: Vec<_> = entries
        .iter()
        .filter(|e| e.last_offset < offset)
        .copied()
        .collect();
    if (kept.len() * TXN_ENTRY_BYTES) as u64 == on_disk {
        return Ok(false);
    }
    if kept.is_empty() {
        remove(path)?;
        return Ok(true);
    }
    let tmp = path.with_extension(format!("{TXN_INDEX_SUFFIX}.tmp"));
    {
        let mut f = fs::File::create(&tmp).map_err(LogError::io("create", &tmp))?;
        let mut buf = Vec::with_capacity(kept.len() * TXN_ENTRY_BYTES);
        for e in &kept {
            buf.extend_from_slice(&e.encode());
        }
        f.write_all(&buf).map_err(LogError::io("write", &tmp))?;
        f.sync_data().map_err(LogError::io("fsync", &tmp))?;
    }
    fs::rename(&tmp, path).map_err(LogError::io("rename", path))?;
    Ok(true)
}

/// fsyncs the index at `path` if it exists.
pub(crate) fn sync(path: &Path) -> Result<()> {
    match fs::File::open(path) {
        Ok(f) => f.sync_data().map_err(LogError::io("fsync", path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io("open", path)(e)),
    }
}

/// Deletes the index at `path` if it exists.
pub(crate) fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io("remove", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: i64, first: i64, last: i64) -> TxnIndexEntry {
        TxnIndexEntry {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: first,
        }
    }

    #[test]
    fn entries_round_trip_in_kafkas_34_byte_layout() {
        let e = entry(7, 100, 120);
        let b = e.encode();
        assert_eq!(&b[0..2], &[0, 0], "version 0");
        assert_eq!(i64::from_be_bytes(b[2..10].try_into().unwrap()), 7);
        assert_eq!(TxnIndexEntry::decode(&b), Some(e));
    }

    #[test]
    fn a_torn_tail_is_ignored_and_cut_by_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), 0);
        append(&p, &entry(1, 0, 5)).unwrap();
        let mut bytes = fs::read(&p).unwrap();
        bytes.extend_from_slice(&entry(2, 6, 9).encode()[..20]);
        fs::write(&p, &bytes).unwrap();
        assert_eq!(read(&p).unwrap(), vec![entry(1, 0, 5)]);
        append(&p, &entry(3, 10, 12)).unwrap();
        assert_eq!(read(&p).unwrap(), vec![entry(1, 0, 5), entry(3, 10, 12)]);
    }

    #[test]
    fn truncation_keeps_markers_below_the_offset_and_removes_an_emptied_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), 0);
        for e in [entry(1, 0, 5), entry(2, 3, 8), entry(1, 9, 11)] {
            append(&p, &e).unwrap();
        }
        assert!(!truncate_from(&p, 12).unwrap(), "nothing at or after 12");
        assert!(truncate_from(&p, 8).unwrap());
        assert_eq!(read(&p).unwrap(), vec![entry(1, 0, 5)]);
        assert!(truncate_from(&p, 5).unwrap());
        assert!(!p.exists());
        assert_eq!(read(&p).unwrap(), vec![]);
        assert!(!truncate_from(&p, 0).unwrap(), "a missing index is empty");
    }
}
