//! The Raft log on disk: one append-only file, fsynced before an append is acknowledged.
//!
//! ```text
//! <data-dir>/raft.log          header b"DMQRLOG1", then one record per entry:
//!     offset  size  field
//!          0     4  length   u32 BE, payload bytes
//!          4     4  crc      u32 BE, CRC-32C of the payload
//!          8     …  payload  JSON of the openraft `Entry` (log id + command)
//! <data-dir>/raft-log.meta     checked file: the last purged log id
//! <data-dir>/vote              checked file: the persisted vote
//! ```
//!
//! Records are consecutive by index. Recovery reads records until the first torn, corrupt or
//! non-consecutive one and truncates the file there: only an append that was never acknowledged
//! can be lost that way, because an append is acknowledged only after `fdatasync`.
//! Purging (behind a snapshot) first records the purged log id durably, then drops the entries
//! from memory; the file is rewritten without them once they make up more than half of it, so the
//! file stays proportional to the entries kept behind the latest snapshot.
//!
//! Entries after the last purge are also held in memory: their number is bounded by the snapshot
//! policy (`snapshotIntervalEntries` + `snapshotLogEntriesKept`).
//!
//! The project's segmented log (`dmq-log`) is meant to replace this file once it is in place.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, LogState, OptionalSend, RaftLogId, RaftLogReader,
    StorageError, Vote,
};
use serde::{Deserialize, Serialize};

use super::checked_file::{self, Kind};
use super::TypeConfig;
use crate::MetadataError;

const LOG_FILE: &str = "raft.log";
const META_FILE: &str = "raft-log.meta";
const VOTE_FILE: &str = "vote";
const LOG_MAGIC: &[u8; 8] = b"DMQRLOG1";
const RECORD_HEADER_BYTES: u64 = 8;
/// A record longer than this is corruption, not an entry: commands are a few KiB at most.
const RECORD_BYTES_MAX: u32 = 64 * 1024 * 1024;

/// Durable metadata about the log itself.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LogMeta {
    last_purged: Option<LogId<u64>>,
}

/// Figures about the log for `/api/v1/raft/status` and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Index of the first entry still in the log (after the last purge).
    pub first_index: Option<u64>,
    /// Index of the last entry in the log.
    pub last_index: Option<u64>,
    /// Index of the last entry purged behind a snapshot.
    pub last_purged_index: Option<u64>,
    /// Size of `raft.log` in bytes.
    pub file_bytes: u64,
}

struct Inner {
    dir: PathBuf,
    file: File,
    file_bytes: u64,
    /// Entries after the last purge, by index.
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    /// File position of every record still in the file (including purged ones not yet rewritten).
    positions: BTreeMap<u64, u64>,
    last_purged: Option<LogId<u64>>,
    vote: Option<Vote<u64>>,
}

/// The Raft log store. Cloning is cheap; clones share the log (one is handed out as the reader).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
    committed_index: Arc<AtomicU64>,
}

fn io_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: io::Error) -> StorageError<u64> {
    StorageError::from_io_error(subject, verb, e)
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, recovering from a torn tail.
    pub fn open(dir: &Path) -> Result<Self, MetadataError> {
        fs::create_dir_all(dir).map_err(|e| MetadataError::storage(dir, e))?;
        let meta: LogMeta = read_json(&dir.join(META_FILE), Kind::LogMeta)?.unwrap_or_default();
        let vote: Option<Vote<u64>> = read_json(&dir.join(VOTE_FILE), Kind::Vote)?;
        let path = dir.join(LOG_FILE);
        let (file, file_bytes, entries, positions) =
            recover(&path, meta.last_purged).map_err(|e| MetadataError::storage(&path, e))?;
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                file,
                file_bytes,
                entries,
                positions,
                last_purged: meta.last_purged,
                vote,
            })),
            committed_index: Arc::new(AtomicU64::new(0)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that matters
        // more than stopping would; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Current figures about the log.
    pub fn stats(&self) -> LogStats {
        let inner = self.lock();
        LogStats {
            first_index: inner.entries.keys().next().copied(),
            last_index: inner.entries.keys().next_back().copied(),
            last_purged_index: inner.last_purged.map(|l| l.index),
            file_bytes: inner.file_bytes,
        }
    }

    /// The highest index Raft has reported committed to this node (0 before the first).
    pub fn committed_index(&self) -> u64 {
        self.committed_index.load(Ordering::Relaxed)
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(
    path: &Path,
    kind: Kind,
) -> Result<Option<T>, MetadataError> {
    match checked_file::read(path, kind).map_err(|e| MetadataError::storage(path, e))? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| MetadataError::storage(path, e)),
    }
}

type Recovered = (
    File,
    u64,
    BTreeMap<u64, Entry<TypeConfig>>,
    BTreeMap<u64, u64>,
);

/// Scans `raft.log`, truncating at the first record that is torn, corrupt or out of sequence.
fn recover(path: &Path, last_purged: Option<LogId<u64>>) -> io::Result<Recovered> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    if bytes.len() < LOG_MAGIC.len() || &bytes[..LOG_MAGIC.len()] != LOG_MAGIC {
        if !bytes.is_empty() {
            tracing::warn!(path = %path.display(), "raft log has no valid header; starting it anew");
        }
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(LOG_MAGIC)?;
        file.sync_all()?;
        checked_file::sync_dir(path)?;
        return Ok((
            file,
            LOG_MAGIC.len() as u64,
            BTreeMap::new(),
            BTreeMap::new(),
        ));
    }
    let mut entries = BTreeMap::new();
    let mut positions = BTreeMap::new();
    let mut pos = LOG_MAGIC.len();
    let mut prev_index: Option<u64> = None;
    let purged_index = last_purged.map(|l| l.index);
    while let Some(entry) = decode_record(&bytes, pos) {
        let (entry, len) = entry;
        let index = entry.get_log_id().index;
        if prev_index.is_some_and(|p| p + 1 != index) {
            tracing::warn!(index, "raft log record out of sequence; truncating here");
            break;
        }
        prev_index = Some(index);
        positions.insert(index, pos as u64);
        if purged_index.is_none_or(|p| index > p) {
            entries.insert(index, entry);
        }
        pos += len;
    }
    if pos < bytes.len() {
        tracing::warn!(
            path = %path.display(),
            kept_bytes = pos,
            dropped_bytes = bytes.len() - pos,
            "raft log ends in a torn or corrupt record; truncating the unacknowledged tail"
        );
        file.set_len(pos as u64)?;
        file.sync_all()?;
    }
    file.seek(SeekFrom::Start(pos as u64))?;
    Ok((file, pos as u64, entries, positions))
}

/// Decodes the record at `pos`: `None` when it is incomplete or fails its checks.
fn decode_record(bytes: &[u8], pos: usize) -> Option<(Entry<TypeConfig>, usize)> {
    let header = bytes.get(pos..pos + RECORD_HEADER_BYTES as usize)?;
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if len > RECORD_BYTES_MAX {
        return None;
    }
    let start = pos + RECORD_HEADER_BYTES as usize;
    let payload = bytes.get(start..start + len as usize)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    let entry = serde_json::from_slice(payload).ok()?;
    Some((entry, RECORD_HEADER_BYTES as usize + len as usize))
}

fn encode_record(buf: &mut Vec<u8>, entry: &Entry<TypeConfig>) -> io::Result<()> {
    let payload = serde_json::to_vec(entry).map_err(io::Error::other)?;
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    buf.extend_from_slice(&payload);
    Ok(())
}

impl Inner {
    /// Rewrites `raft.log` with only the entries kept in memory.
    fn rewrite(&mut self) -> io::Result<()> {
        let path = self.dir.join(LOG_FILE);
        let tmp = self.dir.join("raft.log.tmp");
        let mut buf = LOG_MAGIC.to_vec();
        let mut positions = BTreeMap::new();
        for (index, entry) in &self.entries {
            positions.insert(*index, buf.len() as u64);
            encode_record(&mut buf, entry)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(&buf)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        checked_file::sync_dir(&path)?;
        let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
        file.seek(SeekFrom::End(0))?;
        self.file = file;
        self.file_bytes = buf.len() as u64;
        self.positions = positions;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let inner = self.lock();
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let inner = self.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|e| *e.get_log_id())
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let mut inner = self.lock();
        let path = inner.dir.join(VOTE_FILE);
        let bytes = serde_json::to_vec(vote)
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, io::Error::other(e)))?;
        checked_file::write(&path, Kind::Vote, &bytes)
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(self.lock().vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        // Kept in memory for status and metrics only: the state machine is rebuilt from its
        // snapshot on restart and the leader re-sends the commit index.
        if let Some(c) = committed {
            self.committed_index.fetch_max(c.index, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut buf = Vec::new();
        let mut new_entries = Vec::new();
        for entry in entries {
            let start = buf.len() as u64;
            encode_record(&mut buf, &entry)
                .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
            new_entries.push((start, entry));
        }
        // One write and one fdatasync for the whole batch: Raft's natural group commit. The disk
        // work runs on the blocking pool so that it never stalls the async workers that serve
        // Raft RPCs (openraft times an AppendEntries out after one heartbeat interval).
        let store = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut inner = store.lock();
            let base = inner.file_bytes;
            inner.file.write_all(&buf)?;
            inner.file.sync_data()?;
            inner.file_bytes += buf.len() as u64;
            for (start, entry) in new_entries {
                let index = entry.get_log_id().index;
                inner.positions.insert(index, base + start);
                inner.entries.insert(index, entry);
            }
            Ok::<(), io::Error>(())
        })
        .await
        .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, io::Error::other(e)))?;
        if let Err(e) = written {
            return Err(io_err(ErrorSubject::Logs, ErrorVerb::Write, e));
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let mut inner = self.lock();
        let Some(pos) = inner.positions.get(&log_id.index).copied() else {
            inner.entries.retain(|i, _| *i < log_id.index);
            return Ok(());
        };
        let result = inner
            .file
            .set_len(pos)
            .and_then(|_| inner.file.seek(SeekFrom::Start(pos)).map(|_| ()))
            .and_then(|_| inner.file.sync_all());
        if let Err(e) = result {
            return Err(io_err(ErrorSubject::Logs, ErrorVerb::Delete, e));
        }
        inner.file_bytes = pos;
        inner.entries.retain(|i, _| *i < log_id.index);
        inner.positions.retain(|i, _| *i < log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let mut inner = self.lock();
        // Record the purge durably first: after a crash, entries at or below it are skipped.
        let meta = serde_json::to_vec(&LogMeta {
            last_purged: Some(log_id),
        })
        .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, io::Error::other(e)))?;
        checked_file::write(&inner.dir.join(META_FILE), Kind::LogMeta, &meta)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        inner.last_purged = Some(log_id);
        inner.entries.retain(|i, _| *i > log_id.index);
        let first_kept = inner.entries.keys().next().copied();
        let purged_bytes = match first_kept.and_then(|i| inner.positions.get(&i)) {
            Some(pos) => *pos - LOG_MAGIC.len() as u64,
            None => inner.file_bytes - LOG_MAGIC.len() as u64,
        };
        let kept_bytes = inner.file_bytes - LOG_MAGIC.len() as u64 - purged_bytes;
        if purged_bytes > kept_bytes {
            inner
                .rewrite()
                .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorageExt;
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::state::Command;

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command::DeleteTopic {
                name: format!("t{index}"),
            }),
        }
    }

    async fn append(store: &mut LogStore, range: std::ops::Range<u64>) {
        store
            .blocking_append(range.map(entry))
            .await
            .expect("append");
    }

    async fn indexes(store: &mut LogStore) -> Vec<u64> {
        store
            .try_get_log_entries(0..u64::MAX)
            .await
            .expect("read")
            .iter()
            .map(|e| e.log_id.index)
            .collect()
    }

    #[tokio::test]
    async fn survives_reopen_truncate_and_purge() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = LogStore::open(dir.path()).expect("open");
        append(&mut store, 1..11).await;
        store.truncate(entry(8).log_id).await.expect("truncate");
        store.save_vote(&Vote::new(3, 2)).await.expect("vote");
        drop(store);

        let mut store = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&mut store).await, (1..8).collect::<Vec<_>>());
        assert_eq!(
            store.read_vote().await.expect("vote"),
            Some(Vote::new(3, 2))
        );
        append(&mut store, 8..12).await;
        store.purge(entry(9).log_id).await.expect("purge");
        drop(store);

        let mut store = LogStore::open(dir.path()).expect("reopen after purge");
        assert_eq!(indexes(&mut store).await, vec![10, 11]);
        let state = store.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(9));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(11));
        // The purged prefix was larger than what is kept: the file was rewritten.
        assert!(store.stats().file_bytes < 400, "{:?}", store.stats());
    }

    #[tokio::test]
    async fn purge_beyond_the_last_entry_empties_the_log() {
        // Installing a snapshot purges past everything this node has.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = LogStore::open(dir.path()).expect("open");
        append(&mut store, 1..4).await;
        store.purge(entry(100).log_id).await.expect("purge");
        append(&mut store, 101..103).await;
        drop(store);
        let mut store = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&mut store).await, vec![101, 102]);
    }

    #[tokio::test]
    async fn torn_tail_is_truncated_at_every_cut_point() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = LogStore::open(dir.path()).expect("open");
        append(&mut store, 1..6).await;
        let full = store.stats().file_bytes;
        drop(store);
        let bytes = fs::read(dir.path().join(LOG_FILE)).expect("raw");
        let whole = |cut: u64| -> usize {
            // How many complete records fit in `cut` bytes.
            let mut store_positions = Vec::new();
            let mut pos = LOG_MAGIC.len();
            while let Some((_, len)) = decode_record(&bytes, pos) {
                store_positions.push(pos + len);
                pos += len;
            }
            store_positions
                .iter()
                .filter(|end| **end as u64 <= cut)
                .count()
        };
        for cut in (LOG_MAGIC.len() as u64)..full {
            let trial = tempfile::tempdir().expect("tempdir");
            fs::write(trial.path().join(LOG_FILE), &bytes[..cut as usize]).expect("cut");
            let mut store = LogStore::open(trial.path()).expect("recover");
            let got = indexes(&mut store).await;
            let want: Vec<u64> = (1..=whole(cut) as u64).collect();
            assert_eq!(got, want, "cut at {cut}");
            append(&mut store, want.len() as u64 + 1..want.len() as u64 + 2).await;
        }
    }
}
