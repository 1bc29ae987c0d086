//! `Log`: one partition's segmented log — appends, reads, truncation, retention, flushing.
//!
//! ```text
//! <data-dir>/<topic>-<partition>/
//!     00000000000000000000.log         segment data (segment.rs)
//!     00000000000000000000.index       offset index (index.rs)
//!     00000000000000000000.timeindex   time index   (time_index.rs)
//!     00000000000000004312.log …       later segments, named by base offset
//!     leader-epoch-checkpoint          epoch → start offset (epoch_cache.rs)
//!     log-start-offset                 log start after DeleteRecords (checkpoint.rs)
//!     cleaner-offset-checkpoint        first dirty offset of a compacted log (cleaner.rs)
//!     clean-shutdown                   present only between close() and the next open
//! ```
//!
//! Concurrency model: one writer, many readers.
//! * Mutations (append, roll, truncate, retention, compaction swap, flush) serialise on the
//!   `writer` mutex.
//! * The segment list is an immutable `Arc<Vec<Arc<LogSegment>>>` behind an `RwLock` that
//!   is only held to clone or replace the `Arc` (never across I/O), so readers take a
//!   snapshot and then work lock-free with `pread`.
//! * Log start, log end and the durable offset are atomics. The writer writes the bytes,
//!   publishes the segment's size, then the log end (release); readers load the log end
//!   (acquire) before the snapshot, so anything below it is fully written.
//! * A deleted segment stays readable by a reader that already holds its `Arc` (Unix unlink
//!   semantics). A reader racing a *truncation* of the range it reads may get an I/O error
//!   or bytes that are being removed — the same window Kafka has; callers bound reads by the
//!   high watermark, which never covers truncated data.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::batch::{self, BatchHeaderMut};
use crate::checkpoint;
use crate::epoch_cache::{EpochEntry, LeaderEpochFileCache};
use crate::error::{BatchDefect, LogError, Result};
use crate::recovery::{self, CLEAN_SHUTDOWN_FILE};
use crate::segment::{BatchMeta, LogSegment, NO_TIMESTAMP};
use crate::txn_index::{self, TxnIndexEntry};

/// Default `segment.bytes`: 1 GiB.
pub const SEGMENT_BYTES_DEFAULT: u64 = 1 << 30;
/// Largest allowed `segment.bytes`: positions in the offset index are u32; keep headroom
/// for one oversize batch.
pub const SEGMENT_BYTES_MAX: u64 = (i32::MAX as u64) - (64 << 20);
/// Default `segment.ms`: 7 days.
pub const SEGMENT_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;
/// Default `index.interval.bytes`: one offset-index entry per ~4 KiB of log.
pub const INDEX_INTERVAL_BYTES: u64 = 4096;
/// Default `message.max.bytes`: 1 MiB plus Kafka's 12-byte log overhead (Kafka's 1048588).
pub const MAX_BATCH_BYTES_DEFAULT: usize = (1 << 20) + 12;
/// Default `delete.retention.ms`: 1 day.
pub const DELETE_RETENTION_MS_DEFAULT: i64 = 24 * 60 * 60 * 1000;
/// File holding the log start offset once DeleteRecords moved it inside a segment.
pub const LOG_START_OFFSET_FILE: &str = "log-start-offset";
/// Default `LogConfig::writeback_bytes`.
pub const WRITEBACK_BYTES_DEFAULT: u64 = 1 << 20;
/// Default preallocation step for the active segment (see `LogConfig::preallocate_bytes`).
pub const PREALLOCATE_BYTES_DEFAULT: u64 = 64 << 20;
/// Pending in-memory index entries that trigger a (non-fsync) index file write.
const INDEX_PENDING_FLUSH_ENTRIES: usize = 512;

/// When appended data is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// fsync after every append before returning (strongest, slowest).
    EveryAppend,
    /// Group commit: fsync when an append (or [`Log::maybe_flush`]) finds at least this many
    /// milliseconds since the last fsync.
    IntervalMs(u64),
    /// Only when a segment is rolled (or on [`Log::flush`]/[`Log::close`]); durability comes
    /// from replication, as with Kafka's defaults.
    OnRoll,
}

/// `cleanup.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    DeleteAndCompact,
}

impl CleanupPolicy {
    pub fn deletes(self) -> bool {
        matches!(
            self,
            CleanupPolicy::Delete | CleanupPolicy::DeleteAndCompact
        )
    }
    pub fn compacts(self) -> bool {
        matches!(
            self,
            CleanupPolicy::Compact | CleanupPolicy::DeleteAndCompact
        )
    }
}

/// Per-log configuration (Kafka topic configs of the same names).
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would exceed this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when an incoming batch's timestamp is this much newer than the
    /// active segment's first batch (Kafka's message-time rule).
    pub segment_ms: i64,
    /// `index.interval.bytes`.
    pub index_interval_bytes: u64,
    /// `message.max.bytes`: largest accepted batch.
    pub max_batch_bytes: usize,
    pub flush: FlushPolicy,
    /// `retention.ms` (`None` = keep forever).
    pub retention_ms: Option<i64>,
    /// `retention.bytes` (`None` = unlimited).
    pub retention_bytes: Option<u64>,
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long compaction keeps tombstones.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`: the share of the cleanable log that must be dirty before
    /// the cleaner rewrites it.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: a record stays uncompacted at least this long.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty record older than this makes a pass due whatever the
    /// dirty ratio (`i64::MAX` = never).
    pub max_compaction_lag_ms: i64,
    /// Reserve disk space for the active segment in steps of this many bytes (capped at
    /// `segment_bytes`; 0 = off). Makes small appends cheaper on ext4; the zero tail is
    /// trimmed on roll/close and truncated by recovery after a crash.
    pub preallocate_bytes: u64,
    /// [`Log::start_writeback`] starts write-back of the active segment's dirty pages once this
    /// many bytes were appended since the last start (0 = leave it to the kernel). Not an
    /// fsync: it keeps dirty pages from piling up into the kernel's burst write-back, which
    /// stalls appends.
    pub writeback_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: SEGMENT_MS_DEFAULT,
            index_interval_bytes: INDEX_INTERVAL_BYTES,
            max_batch_bytes: MAX_BATCH_BYTES_DEFAULT,
            flush: FlushPolicy::OnRoll,
            retention_ms: Some(SEGMENT_MS_DEFAULT),
            retention_bytes: None,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: DELETE_RETENTION_MS_DEFAULT,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            preallocate_bytes: PREALLOCATE_BYTES_DEFAULT,
            writeback_bytes: WRITEBACK_BYTES_DEFAULT,
        }
    }
}

/// Result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// The broker time stamped into LogAppendTime batches, `-1` for CreateTime (Kafka's
    /// ProduceResponse convention).
    pub log_append_time_ms: i64,
    /// Largest `maxTimestamp` of the appended batches.
    pub max_timestamp_ms: i64,
    /// Number of batches and bytes written.
    pub batches: usize,
    pub bytes: usize,
}

/// Whole batches in one segment file, ready to be sent without copying (`sendfile`) or read.
#[derive(Debug, Clone)]
pub struct ReadSlice {
    segment: Arc<LogSegment>,
    position: u64,
    len: usize,
    first_offset: i64,
    last_offset: i64,
}

impl ReadSlice {
    /// The segment file. Keep the `ReadSlice` alive while using it: it pins the file even
    /// if retention deletes the segment meanwhile.
    pub fn file(&self) -> &fs::File {
        &self.segment.file
    }
    /// Byte position of the first batch in [`ReadSlice::file`].
    pub fn position(&self) -> u64 {
        self.position
    }
    /// Length in bytes (whole batches).
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Base offset of the first batch (may be below the requested offset).
    pub fn first_offset(&self) -> i64 {
        self.first_offset
    }
    /// Last offset of the last batch.
    pub fn last_offset(&self) -> i64 {
        self.last_offset
    }
    /// Copy the bytes into a new vector.
    pub fn read_to_vec(&self) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.read_into(&mut v)?;
        Ok(v)
    }
    /// Copy the bytes into `out` (cleared first), reusing its allocation.
    pub fn read_into(&self, out: &mut Vec<u8>) -> Result<()> {
        self.segment.read_into(self.position, self.len, out)
    }
    /// Zero-copy: `sendfile(2)` up to `len - sent` bytes of the slice, starting `sent` bytes
    /// into it, to `out_fd` (a socket, pipe or file). Returns the bytes written by this call,
    /// which may be fewer (or `WouldBlock` on a non-blocking socket): call again with the
    /// running total until it reaches [`ReadSlice::len`].
    #[cfg(target_os = "linux")]
    pub fn sendfile_to(&self, out_fd: std::os::fd::RawFd, sent: usize) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        let remaining = self.len.saturating_sub(sent);
        if remaining == 0 {
            return Ok(0);
        }
        let mut off = (self.position + sent as u64) as libc::off_t;
        // SAFETY: both descriptors are valid for the duration of the call (the slice pins the
        // segment file); `off` is a local the kernel updates; no buffers are shared.
        let n =
            unsafe { libc::sendfile(out_fd, self.segment.file.as_raw_fd(), &mut off, remaining) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }
    /// Like [`ReadSlice::read_into`], then verify every batch's CRC-32C: for callers that
    /// hand records to clients which do not check CRCs themselves (e.g. the HTTP API).
    /// Kafka clients verify CRCs, which is why the zero-copy path does not.
    pub fn read_verified(&self, out: &mut Vec<u8>) -> Result<()> {
        self.read_into(out)?;
        let mut offset = self.first_offset;
        for b in batch::Batches::new(out, true) {
            match b {
                Ok((_, bytes)) => {
                    offset = batch::BatchHeader::new(bytes)
                        .map(|h| h.last_offset() + 1)
                        .unwrap_or(offset);
                }
                Err((at, reason)) => {
                    return Err(LogError::CorruptBatch {
                        offset,
                        position: self.position + at as u64,
                        reason,
                    })
                }
            }
        }
        Ok(())
    }
}

/// Introspection of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: i64,
    pub size_bytes: u64,
    /// Offset after the segment's last batch.
    pub next_offset: i64,
    /// Largest batch timestamp, `None` if empty.
    pub max_timestamp: Option<i64>,
}

/// What [`Log::apply_retention`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
}

pub(crate) type SegmentList = Arc<Vec<Arc<LogSegment>>>;

pub(crate) struct WriterState {
    last_flush_ms: i64,
    metas: Vec<BatchMeta>,
    /// Segments (by base offset) whose `.txnindex` has appends not fsynced yet.
    txn_unsynced: BTreeSet<i64>,
}

/// One partition's log. `Send + Sync`; share it as `Arc<Log>`.
pub struct Log {
    pub(crate) dir: PathBuf,
    /// Changed at run time by [`Log::set_config`] (topic config changes need no restart).
    config: RwLock<LogConfig>,
    pub(crate) writer: Mutex<WriterState>,
    pub(crate) segments: RwLock<SegmentList>,
    log_start: AtomicI64,
    log_end: AtomicI64,
    durable: AtomicI64,
    /// Segments rolled away from but not fsynced yet, oldest first (see [`Log::sync_rolled`]).
    rolled_unsynced: Mutex<Vec<Arc<LogSegment>>>,
    epochs: RwLock<LeaderEpochFileCache>,
    closed: AtomicBool,
    /// The cleaner checkpoint: offsets below it were deduplicated by a compaction pass.
    first_dirty: AtomicI64,
    /// When the earliest tombstone the last compaction pass kept expires (ms; `i64::MIN`
    /// until a pass ran in this process, so the first one also sweeps tombstones).
    next_tombstone_expiry: AtomicI64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Log {
    /// Open (or create) the log in `dir`, recovering from an unclean shutdown.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Log> {
        Self::open_at(dir, config, 0)
    }

    /// Like [`Log::open`], but an empty log starts at `start_offset` (the Raft log uses 1).
    pub fn open_at(dir: &Path, mut config: LogConfig, start_offset: i64) -> Result<Log> {
        config.segment_bytes = config.segment_bytes.clamp(1, SEGMENT_BYTES_MAX);
        config.index_interval_bytes = config.index_interval_bytes.max(1);
        let rec = recovery::recover(dir, config.index_interval_bytes)?;
        if !rec.was_clean || rec.repaired > 0 {
            tracing::info!(dir = %dir.display(), clean = rec.was_clean, repaired = rec.repaired, "log recovered");
        }
        let mut segments: Vec<Arc<LogSegment>> = rec.segments.into_iter().map(Arc::new).collect();
        if segments.is_empty() {
            segments.push(Arc::new(LogSegment::create(dir, start_offset)?));
            checkpoint::sync_dir(dir)?;
        }
        let first_base = segments[0].base_offset;
        let log_end = segments
            .last()
            .map(|s| s.next_offset.load(Ordering::Acquire))
            .unwrap_or(first_base);
        let ckpt_start = read_log_start(dir)?.unwrap_or(first_base);
        let log_start = ckpt_start.max(first_base);
        let epochs = LeaderEpochFileCache::load(dir)?;
        let first_dirty = read_first_dirty(dir)?.unwrap_or(log_start).min(log_end);
        let log = Log {
            dir: dir.to_path_buf(),
            config: RwLock::new(config),
            writer: Mutex::new(WriterState {
                last_flush_ms: 0,
                metas: Vec::new(),
                txn_unsynced: BTreeSet::new(),
            }),
            segments: RwLock::new(Arc::new(segments)),
            log_start: AtomicI64::new(log_start.min(log_end)),
            log_end: AtomicI64::new(log_end),
            durable: AtomicI64::new(log_end),
            rolled_unsynced: Mutex::new(Vec::new()),
            epochs: RwLock::new(epochs),
            closed: AtomicBool::new(false),
            first_dirty: AtomicI64::new(first_dirty),
            next_tombstone_expiry: AtomicI64::new(i64::MIN),
        };
        if log_start > log_end {
            // Data below the recorded log start was lost (or never replicated): start over there.
            log.truncate_fully_and_start_at(log_start)?;
        } else if log_start == log_end && log_end < start_offset {
            log.truncate_fully_and_start_at(start_offset)?;
        } else {
            let mut e = log.epochs.write().unwrap_or_else(|p| p.into_inner());
            e.truncate_from_end(log_end)?;
            e.truncate_from_start(log_start)?;
        }
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The config in force now.
    pub fn config(&self) -> LogConfig {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies a changed topic config from the next append, roll, retention or compaction
    /// pass on (AlterConfigs without a restart). Sizes are clamped as at open.
    pub fn set_config(&self, mut config: LogConfig) {
        config.segment_bytes = config.segment_bytes.clamp(1, SEGMENT_BYTES_MAX);
        config.index_interval_bytes = config.index_interval_bytes.max(1);
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }
    /// First offset that may be read.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }
    /// Offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.log_end.load(Ordering::Acquire)
    }
    /// Base offset of the active (last) segment.
    pub fn active_base_offset(&self) -> i64 {
        self.snapshot()
            .last()
            .map_or_else(|| self.log_start_offset(), |s| s.base_offset)
    }

    /// Every offset below this has been fsynced.
    pub fn durable_offset(&self) -> i64 {
        self.durable.load(Ordering::Acquire)
    }

    pub(crate) fn snapshot(&self) -> SegmentList {
        self.segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn publish(&self, list: Vec<Arc<LogSegment>>) {
        *self.segments.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(list);
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Per-segment sizes and offsets, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.snapshot()
            .iter()
            .map(|s| SegmentInfo {
                base_offset: s.base_offset,
                size_bytes: s.size(),
                next_offset: s.next_offset.load(Ordering::Acquire),
                max_timestamp: Some(s.max_timestamp.load(Ordering::Acquire))
                    .filter(|t| *t != NO_TIMESTAMP),
            })
            .collect()
    }

    /// Total bytes in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.snapshot().iter().map(|s| s.size()).sum()
    }

    // -----------------------------------------------------------------------------------
    // Append
    // -----------------------------------------------------------------------------------

    /// Append one or more whole batches from a producer. Each batch is validated (magic,
    /// length, `recordCount == lastOffsetDelta + 1`, CRC-32C, size ≤ `max_batch_bytes`)
    /// *before* taking the writer lock; then offsets are assigned consecutively from the log
    /// end and `baseOffset`/`partitionLeaderEpoch` stamped in place (outside the CRC).
    pub fn append_as_leader(
        &self,
        batches: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        // Validation without the lock: the CRC pass is the expensive part.
        let mut sizes = Vec::new();
        let mut pos = 0;
        while pos < batches.len() {
            let (size, h) = self.checked_batch(batches, pos, true)?;
            if h.record_count() == 0 {
                return Err(LogError::InvalidBatch {
                    position: pos,
                    reason: BatchDefect::RecordCountMismatch {
                        record_count: 0,
                        last_offset_delta: 0,
                    },
                });
            }
            sizes.push(size);
            pos += size;
        }
        if sizes.is_empty() {
            return Err(LogError::InvalidBatch {
                position: 0,
                reason: BatchDefect::Empty,
            });
        }
        let mut w = lock(&self.writer);
        self.check_open()?;
        let mut metas = std::mem::take(&mut w.metas);
        metas.clear();
        let mut offset = self.log_end_offset();
        let mut pos = 0usize;
        let mut log_append_time = -1;
        for size in sizes {
            let mut hm = BatchHeaderMut::new(&mut batches[pos..pos + size]).map_err(|reason| {
                LogError::InvalidBatch {
                    position: pos,
                    reason,
                }
            })?;
            hm.set_base_offset(offset);
            hm.set_partition_leader_epoch(leader_epoch);
            if hm.as_header().is_log_append_time() {
                hm.stamp_log_append_time(now_ms);
                log_append_time = now_ms;
            }
            let h = hm.as_header();
            metas.push(BatchMeta {
                position: pos as u64,
                size: size as u64,
                base_offset: offset,
                last_offset: h.last_offset(),
                max_timestamp: h.max_timestamp(),
            });
            offset = h.last_offset() + 1;
            pos += size;
        }
        let res = self.write_locked(&mut w, batches, &metas, now_ms);
        let info = res.map(|()| self.append_info(&metas, log_append_time, batches.len()));
        if info.is_ok() && leader_epoch >= 0 {
            self.maybe_assign_epoch(leader_epoch, metas[0].base_offset)?;
        }
        w.metas = metas;
        info
    }

    /// Append batches that already carry offsets (a follower copying its leader, or the Raft
    /// log writing entry `i` at offset `i`). The first batch must start exactly at the log
    /// end and each batch must follow the previous one: a gap returns
    /// [`LogError::OffsetGap`], an overlap [`LogError::OffsetOverlap`]. CRCs are verified;
    /// nothing is modified. Leader epochs found in the batches extend the epoch cache.
    pub fn append_replicated(&self, batches: &[u8]) -> Result<AppendInfo> {
        let mut w = lock(&self.writer);
        self.check_open()?;
        let mut metas = std::mem::take(&mut w.metas);
        metas.clear();
        let res = self
            .parse_replicated(batches, &mut metas)
            .and_then(|()| self.write_locked(&mut w, batches, &metas, now_ms()));
        let out = res.and_then(|()| {
            let mut pos = 0usize;
            for m in &metas {
                let b = &batches[pos..pos + m.size as usize];
                let h = batch::BatchHeader::new(b).map_err(|reason| LogError::InvalidBatch {
                    position: pos,
                    reason,
                })?;
                if h.partition_leader_epoch() >= 0 {
                    self.maybe_assign_epoch(h.partition_leader_epoch(), m.base_offset)?;
                }
                pos += m.size as usize;
            }
            Ok(self.append_info(&metas, -1, batches.len()))
        });
        w.metas = metas;
        out
    }

    /// Checks the batch at `pos` of `batches`: complete, within `max_batch_bytes`, and valid
    /// (magic, CRC; with `strict_count`, record count against the last offset delta).
    fn checked_batch<'a>(
        &self,
        batches: &'a [u8],
        pos: usize,
        strict_count: bool,
    ) -> Result<(usize, batch::BatchHeader<'a>)> {
        let b = &batches[pos..];
        let invalid = |reason| LogError::InvalidBatch {
            position: pos,
            reason,
        };
        let size = batch::declared_size(b).map_err(invalid)?;
        if size > b.len() {
            return Err(invalid(BatchDefect::Truncated {
                needed: size,
                available: b.len(),
            }));
        }
        if size > self.config().max_batch_bytes {
            return Err(invalid(BatchDefect::TooLarge {
                size,
                max: self.config().max_batch_bytes,
            }));
        }
        let header = batch::validate_batch(&b[..size], strict_count).map_err(invalid)?;
        Ok((size, header))
    }

    fn parse_replicated(&self, batches: &[u8], metas: &mut Vec<BatchMeta>) -> Result<()> {
        let mut expected = self.log_end_offset();
        let mut pos = 0usize;
        while pos < batches.len() {
            let (size, h) = self.checked_batch(batches, pos, false)?;
            let found = h.base_offset();
            if found > expected {
                return Err(LogError::OffsetGap { expected, found });
            }
            if found < expected {
                return Err(LogError::OffsetOverlap { expected, found });
            }
            metas.push(BatchMeta {
                position: pos as u64,
                size: size as u64,
                base_offset: found,
                last_offset: h.last_offset(),
                max_timestamp: h.max_timestamp(),
            });
            expected = h.last_offset() + 1;
            pos += size;
        }
        if metas.is_empty() {
            return Err(LogError::InvalidBatch {
                position: 0,
                reason: BatchDefect::Empty,
            });
        }
        Ok(())
    }

    fn append_info(
        &self,
        metas: &[BatchMeta],
        log_append_time_ms: i64,
        bytes: usize,
    ) -> AppendInfo {
        AppendInfo {
            base_offset: metas.first().map(|m| m.base_offset).unwrap_or(-1),
            last_offset: metas.last().map(|m| m.last_offset).unwrap_or(-1),
            log_append_time_ms,
            max_timestamp_ms: metas.iter().map(|m| m.max_timestamp).max().unwrap_or(-1),
            batches: metas.len(),
            bytes,
        }
    }

    fn maybe_assign_epoch(&self, epoch: i32, start_offset: i64) -> Result<()> {
        let newer = {
            let e = self.epochs.read().unwrap_or_else(|p| p.into_inner());
            e.latest_epoch().is_none_or(|l| epoch > l)
        };
        if newer {
            self.epochs
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .assign(epoch, start_offset)?;
        }
        Ok(())
    }

    /// Roll if needed, write, publish, flush per policy. Caller holds the writer lock.
    fn write_locked(
        &self,
        w: &mut WriterState,
        bytes: &[u8],
        metas: &[BatchMeta],
        now_ms: i64,
    ) -> Result<()> {
        let segs = self.snapshot();
        let mut active = segs.last().cloned().ok_or_else(|| LogError::Closed {
            path: self.dir.clone(),
        })?;
        let first = metas.first().map(|m| m.base_offset).unwrap_or(0);
        let last = metas.last().map(|m| m.last_offset).unwrap_or(0);
        let incoming_max_ts = metas.iter().map(|m| m.max_timestamp).max().unwrap_or(-1);
        if self.should_roll(&active, bytes.len() as u64, last, incoming_max_ts, now_ms) {
            active = self.roll_locked(first)?;
        }
        let config = self.config();
        let prealloc = config.preallocate_bytes.min(config.segment_bytes);
        active.append(bytes, metas, config.index_interval_bytes, prealloc)?;
        if active.index.pending() >= INDEX_PENDING_FLUSH_ENTRIES {
            active.flush_indexes()?;
        }
        let new_end = last + 1;
        self.log_end.store(new_end, Ordering::Release);
        match self.config().flush {
            FlushPolicy::EveryAppend => {
                active.sync_data()?;
                self.durable.store(new_end, Ordering::Release);
                w.last_flush_ms = now_ms;
            }
            FlushPolicy::IntervalMs(ms) => {
                if now_ms.saturating_sub(w.last_flush_ms) >= ms as i64 {
                    active.sync_data()?;
                    self.durable.store(new_end, Ordering::Release);
                    w.last_flush_ms = now_ms;
                }
            }
            FlushPolicy::OnRoll => {}
        }
        Ok(())
    }

    /// Kafka's rule: roll on size, on relative-offset overflow, or when the incoming batch's
    /// timestamp is more than `segment_ms` past the first batch's. Comparing message time
    /// with message time (not with the wall clock) keeps producers with skewed clocks from
    /// rolling a segment per append; without timestamps the wall clock since the segment
    /// was created is used.
    fn should_roll(
        &self,
        active: &LogSegment,
        incoming: u64,
        last_offset: i64,
        incoming_max_ts: i64,
        now_ms: i64,
    ) -> bool {
        if active.is_empty() {
            return false;
        }
        let size = active.size();
        let first_ts = active.first_batch_timestamp.load(Ordering::Acquire);
        let waited = if first_ts >= 0 {
            incoming_max_ts.saturating_sub(first_ts)
        } else {
            now_ms.saturating_sub(active.created_ms.load(Ordering::Relaxed))
        };
        size + incoming > self.config().segment_bytes
            || waited > self.config().segment_ms
            || last_offset - active.base_offset > u32::MAX as i64
    }

    /// Seal the active segment and start a new one at `base_offset`.
    /// Rolls to a new active segment at `base_offset`. Under [`FlushPolicy::OnRoll`] the old
    /// segment's fsync (up to `segment_bytes` of dirty pages: seconds under write-back) is
    /// left to [`Log::sync_rolled`], off the append path, as Kafka schedules it on its flush
    /// scheduler; recovery scans every segment after an unclean shutdown, so a segment whose
    /// tail a crash tore is cut there whatever its place. The other policies fsync here.
    fn roll_locked(&self, base_offset: i64) -> Result<Arc<LogSegment>> {
        let segs = self.snapshot();
        let deferred = self.config().flush == FlushPolicy::OnRoll;
        if let Some(old) = segs.last() {
            if deferred {
                old.seal_unsynced()?;
                lock(&self.rolled_unsynced).push(old.clone());
            } else {
                old.seal()?;
                self.durable.store(self.log_end_offset(), Ordering::Release);
            }
        }
        let new = Arc::new(LogSegment::create(&self.dir, base_offset)?);
        if !deferred {
            checkpoint::sync_dir(&self.dir)?;
        }
        let mut list: Vec<_> = segs.iter().cloned().collect();
        list.push(new.clone());
        self.publish(list);
        Ok(new)
    }

    /// Force a roll (tests, admin tools). No-op when the active segment is empty.
    pub fn roll(&self) -> Result<()> {
        let _w = lock(&self.writer);
        self.check_open()?;
        let active_empty = self.snapshot().last().is_none_or(|s| s.is_empty());
        if !active_empty {
            self.roll_locked(self.log_end_offset())?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Read
    // -----------------------------------------------------------------------------------

    /// Whole batches starting with the one containing `offset`, up to `max_bytes` (the first
    /// batch is returned whole even if larger, so consumers always progress), all from one
    /// segment. `Ok(None)` at the log end; [`LogError::OffsetOutOfRange`] outside
    /// `[log_start, log_end]`. Never blocks on the writer.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Option<ReadSlice>> {
        let log_end = self.log_end_offset();
        let log_start = self.log_start_offset();
        if offset < log_start || offset > log_end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start,
                log_end,
            });
        }
        if offset == log_end {
            return Ok(None);
        }
        let segs = self.snapshot();
        let start = segs
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        for seg in &segs[start..] {
            let visible = seg.size();
            if let Some(first) = seg.find_batch(offset, visible)? {
                let (mut end, mut last) = seg.read_extent(first, max_bytes as u64, visible)?;
                if last >= log_end {
                    // Racing an append: its bytes are visible (the segment size is published
                    // first) but its offsets are not yet part of the log end read above. Stop
                    // before it, so a reader never gets past the log end it was checked against.
                    if first.last_offset >= log_end {
                        return Ok(None);
                    }
                    let budget = first.size.max(max_bytes as u64);
                    let mut pos = first.position;
                    last = first.base_offset - 1;
                    while pos < visible {
                        let meta = seg.header_at(pos, visible)?;
                        let fits = pos + meta.size - first.position <= budget;
                        if meta.last_offset >= log_end || !fits {
                            break;
                        }
                        pos += meta.size;
                        last = meta.last_offset;
                    }
                    end = pos;
                }
                return Ok(Some(ReadSlice {
                    segment: seg.clone(),
                    position: first.position,
                    len: (end - first.position) as usize,
                    first_offset: first.base_offset,
                    last_offset: last,
                }));
            }
        }
        Ok(None)
    }

    /// ListOffsets by time: the first record with timestamp ≥ `timestamp_ms`, as
    /// `(offset, timestamp)`; `None` if there is none.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>> {
        let log_start = self.log_start_offset();
        for seg in self.snapshot().iter() {
            if seg.next_offset.load(Ordering::Acquire) <= log_start {
                continue;
            }
            if let Some(hit) = seg.offset_for_timestamp(timestamp_ms, log_start, seg.size())? {
                return Ok(Some(hit));
            }
        }
        Ok(None)
    }

    // -----------------------------------------------------------------------------------
    // Truncation and deletion
    // -----------------------------------------------------------------------------------

    /// Remove everything at and after `offset` (follower divergence, Raft suffix
    /// truncation). The batch containing `offset` is removed whole; the new log end is the
    /// offset after the last remaining batch (≤ `offset`). `offset ≤ log_start` empties the log and restarts
    /// it at `offset`; if the removed batch straddles the log start, the log is emptied and
    /// restarts at the log start. The epoch cache forgets epochs starting at or after the new end.
    pub fn truncate_to(&self, offset: i64) -> Result<i64> {
        let _w = lock(&self.writer);
        self.check_open()?;
        if offset >= self.log_end_offset() {
            // No data goes, but the epoch cache may end in an epoch that holds none (a leader
            // deposed before it wrote): it conflicts with the new leader's history and must go
            // too, or every fetch names an epoch the leader never had (Kafka's truncateTo).
            self.epochs
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .truncate_from_end(offset)?;
            return Ok(self.log_end_offset());
        }
        if offset <= self.log_start_offset() {
            self.truncate_fully_locked(offset)?;
            return Ok(offset);
        }
        let segs = self.snapshot();
        let keep = segs.partition_point(|s| s.base_offset < offset).max(1);
        let (kept, removed) = segs.split_at(keep);
        let kept: Vec<_> = kept.to_vec();
        let removed: Vec<_> = removed.to_vec();
        self.log_end.store(offset, Ordering::Release);
        self.publish(kept.clone());
        let active = kept.last().cloned().ok_or_else(|| LogError::Closed {
            path: self.dir.clone(),
        })?;
        let new_end = active.truncate_to(offset, self.config().index_interval_bytes)?;
        delete_segment_files(&self.dir, &removed)?;
        if new_end < self.log_start_offset() {
            // The removed batch straddled the log start: nothing readable is left.
            let start = self.log_start_offset();
            self.truncate_fully_locked(start)?;
            return Ok(start);
        }
        active.sync_data()?;
        self.log_end.store(new_end, Ordering::Release);
        self.durable.fetch_min(new_end, Ordering::AcqRel);
        self.lower_first_dirty(new_end)?;
        self.epochs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .truncate_from_end(new_end)?;
        // A marker cut off takes its index entry with it.
        txn_index::truncate_from(&txn_index::path(&self.dir, active.base_offset), new_end)?;
        Ok(new_end)
    }

    /// Delete every segment and restart the log, empty, at `offset` (Kafka
    /// `truncateFullyAndStartAt`; also how the Raft log installs a snapshot).
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<()> {
        let _w = lock(&self.writer);
        self.check_open()?;
        self.truncate_fully_locked(offset)
    }

    fn truncate_fully_locked(&self, offset: i64) -> Result<()> {
        let old = self.snapshot();
        // Unlink the old files first: the new segment may reuse a name.
        delete_segment_files(&self.dir, &old)?;
        let new = Arc::new(LogSegment::create(&self.dir, offset)?);
        checkpoint::sync_dir(&self.dir)?;
        self.log_end.store(offset, Ordering::Release);
        self.publish(vec![new]);
        self.log_start.store(offset, Ordering::Release);
        self.durable.store(offset, Ordering::Release);
        write_log_start(&self.dir, offset)?;
        self.first_dirty.store(offset, Ordering::Release);
        write_first_dirty(&self.dir, offset)?;
        self.epochs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear()
    }

    /// DeleteRecords / Raft prefix purge: advance the log start to `offset` (persisted) and
    /// delete every segment that lies wholly below it. The active segment is kept.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64> {
        let _w = lock(&self.writer);
        self.check_open()?;
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        if offset > end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: start,
                log_end: end,
            });
        }
        if offset <= start {
            return Ok(start);
        }
        write_log_start(&self.dir, offset)?;
        self.log_start.store(offset, Ordering::Release);
        let segs = self.snapshot();
        // Segment i is wholly below `offset` when segment i+1 starts at or before it.
        let mut n = 0;
        while n + 1 < segs.len() && segs[n + 1].base_offset <= offset {
            n += 1;
        }
        self.remove_prefix_locked(&segs, n)?;
        self.epochs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .truncate_from_start(offset)?;
        Ok(offset)
    }

    /// Drop the first `n` segments (never the last). Caller holds the writer lock.
    fn remove_prefix_locked(&self, segs: &SegmentList, n: usize) -> Result<RetentionOutcome> {
        let n = n.min(segs.len().saturating_sub(1));
        if n == 0 {
            return Ok(RetentionOutcome::default());
        }
        let (removed, kept) = segs.split_at(n);
        let new_start = kept[0].base_offset;
        if new_start > self.log_start_offset() {
            self.log_start.store(new_start, Ordering::Release);
        }
        self.publish(kept.to_vec());
        let bytes = removed.iter().map(|s| s.size()).sum();
        delete_segment_files(&self.dir, removed)?;
        Ok(RetentionOutcome {
            segments_deleted: n,
            bytes_deleted: bytes,
        })
    }

    /// Delete whole old segments by `retention.ms` (segment max timestamp older than
    /// `now_ms - retention_ms`) and `retention.bytes` (oldest first while the remainder stays
    /// ≥ the limit). Never deletes the active segment. No-op unless the policy deletes.
    pub fn apply_retention(&self, now_ms: i64) -> Result<RetentionOutcome> {
        if !self.config().cleanup_policy.deletes() {
            return Ok(RetentionOutcome::default());
        }
        let _w = lock(&self.writer);
        self.check_open()?;
        let config = self.config();
        let segs = self.snapshot();
        let mut remaining: u64 = segs.iter().map(|s| s.size()).sum();
        let mut n = 0;
        for seg in segs.iter().take(segs.len().saturating_sub(1)) {
            let max_ts = seg.max_timestamp.load(Ordering::Acquire);
            let by_time = config
                .retention_ms
                .is_some_and(|r| max_ts == NO_TIMESTAMP || now_ms.saturating_sub(max_ts) > r);
            let by_size = config
                .retention_bytes
                .is_some_and(|r| remaining.saturating_sub(seg.size()) >= r);
            if !(by_time || by_size) {
                break;
            }
            remaining -= seg.size();
            n += 1;
        }
        let out = self.remove_prefix_locked(&segs, n)?;
        if out.segments_deleted > 0 {
            self.epochs
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .truncate_from_start(self.log_start_offset())?;
        }
        Ok(out)
    }

    /// One compaction pass over every cleanable sealed segment, whatever the dirty ratio
    /// (latest record per key; tombstones older than `delete.retention.ms` dropped). See
    /// `cleaner.rs`. No-op unless the policy compacts.
    pub fn compact(&self, now_ms: i64) -> Result<crate::cleaner::CompactionStats> {
        let unlimited = crate::cleaner::IoThrottle::unlimited();
        crate::cleaner::compact(self, now_ms, self.log_end_offset(), &unlimited)
    }

    /// A compaction pass over the sealed segments wholly below `upto` (the high watermark),
    /// its I/O paced by `throttle`.
    pub fn compact_below(
        &self,
        now_ms: i64,
        upto: i64,
        throttle: &crate::cleaner::IoThrottle,
    ) -> Result<crate::cleaner::CompactionStats> {
        crate::cleaner::compact(self, now_ms, upto, throttle)
    }

    /// What a compaction pass below `upto` would find (`None` unless the policy compacts):
    /// the cleaner's choice of which log to clean next is made on it.
    pub fn cleanable(&self, now_ms: i64, upto: i64) -> Option<crate::cleaner::Cleanable> {
        crate::cleaner::cleanable(self, now_ms, upto)
    }

    /// The cleaner checkpoint (never below the log start).
    pub fn first_dirty_offset(&self) -> i64 {
        self.first_dirty
            .load(Ordering::Acquire)
            .max(self.log_start_offset())
    }

    pub(crate) fn next_tombstone_expiry(&self) -> i64 {
        self.next_tombstone_expiry.load(Ordering::Acquire)
    }

    /// A pass deduplicated everything below `end`: moves the cleaner checkpoint there
    /// (persisted) and remembers when the next kept tombstone expires.
    pub(crate) fn cleaned_up_to(&self, end: i64, next_tombstone_expiry: i64) -> Result<()> {
        self.next_tombstone_expiry
            .store(next_tombstone_expiry, Ordering::Release);
        let _w = lock(&self.writer);
        // A truncation since the pass began may have removed what it cleaned.
        let end = end.min(self.log_end_offset());
        if self.first_dirty.swap(end, Ordering::AcqRel) != end {
            write_first_dirty(&self.dir, end)?;
        }
        Ok(())
    }

    /// Truncation removed everything from `offset` on: nothing above it is clean any more.
    fn lower_first_dirty(&self, offset: i64) -> Result<()> {
        if self.first_dirty.fetch_min(offset, Ordering::AcqRel) > offset {
            write_first_dirty(&self.dir, offset)?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Durability
    // -----------------------------------------------------------------------------------

    /// fsync now; returns the durable offset (= log end at the time of the call).
    pub fn flush(&self) -> Result<i64> {
        let mut w = lock(&self.writer);
        self.check_open()?;
        self.flush_locked(&mut w, None)
    }

    /// For `FlushPolicy::IntervalMs`: fsync if the interval has elapsed (call from a timer
    /// so that an idle log still becomes durable). Returns the durable offset.
    pub fn maybe_flush(&self, now_ms: i64) -> Result<i64> {
        let mut w = lock(&self.writer);
        self.check_open()?;
        if let FlushPolicy::IntervalMs(ms) = self.config().flush {
            if now_ms.saturating_sub(w.last_flush_ms) >= ms as i64
                && self.durable_offset() < self.log_end_offset()
            {
                return self.flush_locked(&mut w, Some(now_ms));
            }
        }
        Ok(self.durable_offset())
    }

    /// Starts write-back (no fsync) of the active segment's pages appended since the last
    /// call once they are at least `writeback_bytes`; a no-op when that is 0. Meant for a
    /// timer on a blocking thread (every few tens of milliseconds): dirty pages then reach
    /// the disk at the pace they are written instead of in the kernel's bursts, which stall
    /// appends, and the append path never waits for the submission.
    pub fn start_writeback(&self) {
        let min_bytes = self.config().writeback_bytes;
        if min_bytes == 0 || self.closed.load(Ordering::Acquire) {
            return;
        }
        if let Some(active) = self.snapshot().last() {
            active.write_back(min_bytes);
        }
    }

    /// fsyncs the segments rolled away from since the last call (oldest first) and the
    /// directory, then moves the durable offset to the end of the last one still in the log.
    /// Called by the broker's housekeeping on a blocking thread; the writer lock is held only
    /// to move the durable offset, never across an fsync.
    pub fn sync_rolled(&self) -> Result<()> {
        let Some(last) = self.sync_rolled_segments()? else {
            return Ok(());
        };
        checkpoint::sync_dir(&self.dir)?;
        let _w = lock(&self.writer);
        // A truncation or retention may have removed it meanwhile: then the durable offset
        // was already cut to the new end.
        if self.snapshot().iter().any(|s| Arc::ptr_eq(s, &last)) {
            let end = last.next_offset.load(Ordering::Acquire);
            self.durable.fetch_max(end, Ordering::AcqRel);
        }
        Ok(())
    }

    /// fsyncs the segments waiting since their roll, oldest first; returns the last one. On
    /// an error the ones not synced stay waiting, in order.
    fn sync_rolled_segments(&self) -> Result<Option<Arc<LogSegment>>> {
        let rolled = std::mem::take(&mut *lock(&self.rolled_unsynced));
        for (i, seg) in rolled.iter().enumerate() {
            if let Err(e) = seg.sync_files() {
                let mut pending = lock(&self.rolled_unsynced);
                let later = std::mem::take(&mut *pending);
                *pending = rolled[i..].iter().cloned().chain(later).collect();
                return Err(e);
            }
        }
        Ok(rolled.last().cloned())
    }

    fn flush_locked(&self, w: &mut WriterState, now_ms: Option<i64>) -> Result<i64> {
        let end = self.log_end_offset();
        self.sync_rolled_segments()?;
        if let Some(active) = self.snapshot().last() {
            active.flush_indexes()?;
            active.sync_data()?;
        }
        self.durable.store(end, Ordering::Release);
        if let Some(now) = now_ms {
            w.last_flush_ms = now;
        }
        Ok(end)
    }

    /// fsync everything and write the clean-shutdown marker; the log refuses further use.
    pub fn close(&self) -> Result<()> {
        let _w = lock(&self.writer);
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.sync_rolled_segments()?;
        for seg in self.snapshot().iter() {
            seg.flush_indexes()?;
            txn_index::sync(&txn_index::path(&self.dir, seg.base_offset))?;
        }
        if let Some(active) = self.snapshot().last() {
            active.seal()?;
        }
        self.durable.store(self.log_end_offset(), Ordering::Release);
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        fs::File::create(&marker)
            .and_then(|f| f.sync_all())
            .map_err(LogError::io("create", &marker))?;
        checkpoint::sync_dir(&self.dir)
    }

    // -----------------------------------------------------------------------------------
    // Aborted-transaction index (txn_index.rs)
    // -----------------------------------------------------------------------------------

    /// Records an aborted transaction in the index of the segment holding its marker
    /// (`entry.last_offset`, which must be in the log). Not fsynced: see
    /// [`Log::sync_txn_indexes`].
    pub fn append_aborted_txn(&self, entry: TxnIndexEntry) -> Result<()> {
        let mut w = lock(&self.writer);
        self.check_open()?;
        let segs = self.snapshot();
        let at = segs
            .partition_point(|s| s.base_offset <= entry.last_offset)
            .saturating_sub(1);
        let Some(seg) = segs.get(at) else {
            return Err(LogError::Closed {
                path: self.dir.clone(),
            });
        };
        txn_index::append(&txn_index::path(&self.dir, seg.base_offset), &entry)?;
        w.txn_unsynced.insert(seg.base_offset);
        Ok(())
    }

    /// The aborted transactions of every segment whose marker is below `upto`, in marker
    /// order; those whose marker is below the log start are left out.
    pub fn aborted_txns_before(&self, upto: i64) -> Result<Vec<TxnIndexEntry>> {
        let _w = lock(&self.writer);
        let start = self.log_start_offset();
        let mut out = Vec::new();
        for seg in self.snapshot().iter().filter(|s| s.base_offset < upto) {
            let entries = txn_index::read(&txn_index::path(&self.dir, seg.base_offset))?;
            out.extend(
                entries
                    .into_iter()
                    .filter(|e| e.last_offset < upto && e.last_offset >= start),
            );
        }
        Ok(out)
    }

    /// Forgets index entries whose marker is at or after `offset` (they are derived again by
    /// whoever scans the log from there).
    pub fn truncate_txn_indexes_from(&self, offset: i64) -> Result<()> {
        let _w = lock(&self.writer);
        self.check_open()?;
        let segs = self.snapshot();
        let from = segs
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        for seg in &segs[from..] {
            txn_index::truncate_from(&txn_index::path(&self.dir, seg.base_offset), offset)?;
        }
        Ok(())
    }

    /// fsyncs every index appended to since the last call: entries below a producer snapshot
    /// must be on disk before the snapshot is.
    /// The fsyncs run without the writer lock (appends go on); a base whose fsync failed is
    /// put back for the next call.
    pub fn sync_txn_indexes(&self) -> Result<()> {
        let unsynced = {
            let mut w = lock(&self.writer);
            self.check_open()?;
            std::mem::take(&mut w.txn_unsynced)
        };
        let mut pending = unsynced.iter();
        while let Some(&base) = pending.next() {
            if let Err(e) = txn_index::sync(&txn_index::path(&self.dir, base)) {
                let mut w = lock(&self.writer);
                w.txn_unsynced.insert(base);
                w.txn_unsynced.extend(pending);
                return Err(e);
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Leader epochs
    // -----------------------------------------------------------------------------------

    /// Record that `epoch` starts at `start_offset` (persisted before returning).
    pub fn assign_epoch(&self, epoch: i32, start_offset: i64) -> Result<()> {
        self.epochs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .assign(epoch, start_offset)
            .map(|_| ())
    }

    /// KIP-101 OffsetsForLeaderEpoch: `(largest epoch ≤ requested, its end offset)`, or
    /// `(-1, -1)` when unknown.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let end = self.log_end_offset();
        self.epochs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .end_offset_for(epoch, end)
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .latest_epoch()
    }

    pub fn epoch_entries(&self) -> Vec<EpochEntry> {
        self.epochs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .entries()
            .to_vec()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

pub(crate) fn delete_segment_files(dir: &Path, segs: &[Arc<LogSegment>]) -> Result<()> {
    for s in segs {
        for p in [
            s.log_path.clone(),
            s.index.path().to_path_buf(),
            s.time_index.path().to_path_buf(),
            txn_index::path(dir, s.base_offset),
        ] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io("remove", &p)(e)),
            }
        }
    }
    if !segs.is_empty() {
        checkpoint::sync_dir(dir)?;
    }
    Ok(())
}

/// A one-offset checkpoint file (`log-start-offset`, `cleaner-offset-checkpoint`).
fn read_offset_file(dir: &Path, file: &str, kind: &str) -> Result<Option<i64>> {
    let path = dir.join(file);
    match checkpoint::read(&path, kind)? {
        None => Ok(None),
        Some(lines) => match lines.as_slice() {
            [l] if l.len() == 1 && l[0] >= 0 => Ok(Some(l[0])),
            _ => Err(LogError::CorruptCheckpoint {
                path,
                reason: "expected one offset".into(),
            }),
        },
    }
}

fn read_log_start(dir: &Path) -> Result<Option<i64>> {
    read_offset_file(dir, LOG_START_OFFSET_FILE, "log-start-offset")
}

fn write_log_start(dir: &Path, offset: i64) -> Result<()> {
    checkpoint::write(
        &dir.join(LOG_START_OFFSET_FILE),
        "log-start-offset",
        &[offset.to_string()],
    )
}

fn read_first_dirty(dir: &Path) -> Result<Option<i64>> {
    read_offset_file(
        dir,
        crate::cleaner::CLEANER_CHECKPOINT_FILE,
        "cleaner-offset",
    )
}

fn write_first_dirty(dir: &Path, offset: i64) -> Result<()> {
    checkpoint::write(
        &dir.join(crate::cleaner::CLEANER_CHECKPOINT_FILE),
        "cleaner-offset",
        &[offset.to_string()],
    )
}

/// Wall-clock milliseconds since the Unix epoch (for paths that take no `now_ms`).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordBatchBuilder;

    fn one_record() -> Vec<u8> {
        let mut b = RecordBatchBuilder::new(0);
        b.push(0, Some(b"k"), Some(b"v"), &[]);
        b.build()
    }

    /// The writer makes a batch's bytes visible (segment size) before it publishes the new log
    /// end. A reader in between must not be handed the batch: its next read would start past
    /// the log end and fail with OffsetOutOfRange (a flake seen in CI under load).
    #[test]
    fn reads_stop_at_the_published_log_end_while_an_append_is_half_published() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path(), LogConfig::default()).expect("open");
        for _ in 0..3 {
            log.append_as_leader(&mut one_record(), 0, 0)
                .expect("append");
        }
        // Rewind the published end as if the third append were between its two stores.
        log.log_end.store(2, Ordering::Release);
        let slice = log.read(0, 1 << 20).expect("read").expect("data");
        assert_eq!(slice.last_offset, 1, "stops before the unpublished batch");
        assert_eq!(
            log.read(2, 1 << 20)
                .expect("read at the end")
                .map(|s| s.last_offset),
            None
        );
        log.log_end.store(3, Ordering::Release);
        assert_eq!(
            log.read(0, 1 << 20).expect("read").map(|s| s.last_offset),
            Some(2)
        );
    }

    fn abort(pid: i64, first: i64, last: i64) -> TxnIndexEntry {
        TxnIndexEntry {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: first,
        }
    }

    /// The aborted-transaction index lives per segment (the one holding the marker) and
    /// follows its segment: truncation cuts it, DeleteRecords and retention delete it, and an
    /// index whose segment is gone is deleted on open.
    #[test]
    fn the_txn_index_follows_its_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path(), LogConfig::default()).expect("open");
        // Segments [0, 3), [3, 6), [6, ..).
        for i in 0..8 {
            if i == 3 || i == 6 {
                log.roll().expect("roll");
            }
            log.append_as_leader(&mut one_record(), 0, 0)
                .expect("append");
        }
        let (a, b, c) = (abort(1, 0, 2), abort(2, 1, 4), abort(1, 5, 7));
        for e in [a, b, c] {
            log.append_aborted_txn(e).expect("index");
        }
        let file = |base: i64| txn_index::path(dir.path(), base);
        assert!(file(0).exists() && file(3).exists() && file(6).exists());
        assert_eq!(log.aborted_txns_before(8).expect("read"), vec![a, b, c]);
        assert_eq!(log.aborted_txns_before(7).expect("read"), vec![a, b]);
        log.sync_txn_indexes().expect("sync");

        log.truncate_to(7).expect("truncate");
        assert_eq!(log.aborted_txns_before(100).expect("read"), vec![a, b]);
        assert!(
            !file(6).exists(),
            "the only entry of segment 6 went with its marker"
        );

        log.delete_records_before(4).expect("delete records");
        assert!(
            !file(0).exists(),
            "segment 0 is gone, and its index with it"
        );
        assert_eq!(log.aborted_txns_before(100).expect("read"), vec![b]);

        log.truncate_txn_indexes_from(4).expect("cut");
        assert_eq!(log.aborted_txns_before(100).expect("read"), vec![]);
        log.append_aborted_txn(b).expect("index again");
        log.close().expect("close");

        std::fs::write(file(99), abort(9, 99, 99).encode_for_test()).expect("stray index");
        let log = Log::open(dir.path(), LogConfig::default()).expect("reopen");
        assert!(
            !file(99).exists(),
            "an index without its segment is deleted on open"
        );
        assert_eq!(log.aborted_txns_before(100).expect("read"), vec![b]);
    }
}
