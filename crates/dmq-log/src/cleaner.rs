//! Log compaction (`cleanup.policy=compact`): keep the latest record per key — Kafka's log
//! cleaner, one log at a time.
//!
//! **What a pass may clean.** Only sealed segments (never the active one), and of those only
//! the prefix that lies wholly below `upto` (the broker passes the high watermark: nothing
//! uncommitted is compacted, so every replica compacts the same history) and whose newest
//! record is older than `min.compaction.lag.ms`. That prefix splits at the *cleaner
//! checkpoint* (`cleaner-offset-checkpoint`, Kafka's first dirty offset) into a clean part,
//! already deduplicated, and a dirty part written since the last pass.
//!
//! **When.** [`Log::cleanable`] reports the dirty ratio (dirty bytes over clean + dirty
//! bytes); a log is worth a pass when it reaches `min.cleanable.dirty.ratio`, when its oldest
//! dirty record is older than `max.compaction.lag.ms`, or when a kept tombstone's
//! `delete.retention.ms` has run out. The broker's cleaner picks the log that needs it most.
//!
//! **A pass** ([`Log::compact_below`]):
//! 1. Build `key → latest offset` over the dirty part, every batch CRC-checked; compressed
//!    batches are decompressed.
//! 2. Rewrite each cleanable segment into `<base>.log.cleaned`: a record survives if it has no
//!    key, or no later record has its key, and it is not a tombstone whose batch's
//!    `maxTimestamp` is older than `delete.retention.ms`. Surviving records are copied byte
//!    for byte; the batch keeps baseOffset, lastOffsetDelta, timestamps, producer fields and
//!    leader epoch (offsets never move, producer state survives) and gets a new length,
//!    recordCount and CRC; a compressed batch is recompressed with its own codec. Batches left
//!    with no records are dropped, except the last batch of the segment, which is kept with
//!    zero records so that every segment still ends right below the next one's base offset.
//!    Control batches are kept whole. Records of a transaction enter the key map only when
//!    its commit marker is seen in the scan (aborted or undecided records never supersede a
//!    committed one; an aborted record superseded by a later one is dropped like any other).
//! 3. Swap, under the writer lock, only if the segment is still the same sealed segment of
//!    the same size (a concurrent truncation or retention wins): delete the old index files,
//!    rename `.log.cleaned` over `.log`, fsync the directory, write fresh indexes. A crash at
//!    any point leaves either the old or the new `.log`, with indexes missing at worst —
//!    which recovery rebuilds; a stray `.cleaned` file is deleted on open.
//! 4. Move the checkpoint to the end of the cleaned prefix.
//!
//! Every byte read or written goes through an [`IoThrottle`] (Kafka's
//! `log.cleaner.io.max.bytes.per.second`), so cleaning takes a bounded share of the disk; the
//! broker runs one cleaner thread, a bounded share of the CPU. The key map is in memory (one
//! entry per distinct key in the dirty part); Kafka bounds it with a fixed-size hash buffer
//! and cleans in several passes — a refinement dmq does not need at its scale yet.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::batch::{self, BatchHeader};
use crate::checkpoint;
use crate::codec;
use crate::error::{LogError, Result};
use crate::log::{now_ms, Log};
use crate::segment::{self, BatchMeta, LogSegment, CLEANED_SUFFIX, LOG_SUFFIX, NO_TIMESTAMP};

/// The file that holds a log's first dirty offset (Kafka's `cleaner-offset-checkpoint`, one
/// per log here).
pub const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub segments_rewritten: usize,
    pub records_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Where a compacted log stands for the cleaner (Kafka's `LogToClean`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cleanable {
    /// The cleaner checkpoint: offsets below it were deduplicated by an earlier pass.
    pub first_dirty: i64,
    /// End of the cleanable prefix: the active segment, `upto`, or the first segment with a
    /// record younger than `min.compaction.lag.ms` starts here.
    pub first_uncleanable: i64,
    pub clean_bytes: u64,
    pub dirty_bytes: u64,
    /// The oldest dirty record is older than `max.compaction.lag.ms`.
    pub overdue: bool,
    /// A tombstone kept by the last pass has outlived `delete.retention.ms`.
    pub tombstones_due: bool,
    /// The log's `min.cleanable.dirty.ratio`.
    pub min_ratio: f64,
}

impl Cleanable {
    /// Dirty bytes over all cleanable bytes (0 when there are none).
    pub fn dirty_ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }

    /// Whether a pass is due: dirty enough, overdue, or holding expired tombstones.
    pub fn needs_cleaning(&self) -> bool {
        let dirty_enough = self.dirty_ratio() >= self.min_ratio || self.overdue;
        let sweep = self.tombstones_due && self.clean_bytes + self.dirty_bytes > 0;
        (self.dirty_bytes > 0 && dirty_enough) || sweep
    }
}

/// Caps the bytes per second the cleaner reads and writes (Kafka's
/// `log.cleaner.io.max.bytes.per.second`); shared by every pass of one broker. The rate can
/// change at run time (a dynamic broker config).
#[derive(Debug)]
pub struct IoThrottle {
    bytes_per_sec: AtomicU64,
    window: Mutex<(Instant, u64)>,
}

impl IoThrottle {
    /// `bytes_per_sec == 0` means no limit.
    pub fn new(bytes_per_sec: u64) -> IoThrottle {
        IoThrottle {
            bytes_per_sec: AtomicU64::new(bytes_per_sec),
            window: Mutex::new((Instant::now(), 0)),
        }
    }

    pub fn unlimited() -> IoThrottle {
        IoThrottle::new(0)
    }

    pub fn set_rate(&self, bytes_per_sec: u64) {
        self.bytes_per_sec.store(bytes_per_sec, Ordering::Relaxed);
    }

    pub fn rate(&self) -> u64 {
        self.bytes_per_sec.load(Ordering::Relaxed)
    }

    /// How long to wait after `done` bytes in `elapsed` so that the average stays at `rate`.
    pub fn delay(rate: u64, done: u64, elapsed: Duration) -> Duration {
        if rate == 0 {
            return Duration::ZERO;
        }
        let due = Duration::from_secs_f64(done as f64 / rate as f64);
        due.saturating_sub(elapsed)
    }

    /// Accounts `bytes` of I/O and sleeps (on the calling cleaner thread) as long as the rate
    /// asks. The window restarts every second so that an idle spell earns no burst.
    pub fn consume(&self, bytes: u64) {
        let rate = self.rate();
        if rate == 0 {
            return;
        }
        let wait = {
            let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
            if w.0.elapsed() >= Duration::from_secs(1) {
                *w = (Instant::now(), 0);
            }
            w.1 += bytes;
            Self::delay(rate, w.1, w.0.elapsed())
        };
        if !wait.is_zero() {
            thread::sleep(wait);
        }
    }
}

/// Visit every batch of a sealed segment (CRC checked); a corrupt batch is an error.
fn for_each_batch(
    seg: &LogSegment,
    throttle: &IoThrottle,
    mut f: impl FnMut(BatchMeta, &[u8]) -> Result<()>,
) -> Result<()> {
    let size = seg.size();
    let mut inner_err = None;
    let outcome = segment::scan_full(&seg.file, &seg.log_path, size, |meta, bytes| {
        throttle.consume(bytes.len() as u64);
        if let Err(e) = f(meta, bytes) {
            inner_err = Some(e);
            // Any defect stops the scan; the real error is `inner_err`, checked first below.
            return Err(crate::error::BatchDefect::Empty);
        }
        Ok(())
    })?;
    if let Some(e) = inner_err {
        return Err(e);
    }
    if let Some((position, reason)) = outcome {
        return Err(LogError::CorruptBatch {
            offset: -1,
            position,
            reason,
        });
    }
    Ok(())
}

/// The cleanable sealed segments of `log` below `upto` at `now_ms`, oldest first.
fn cleanable_segments(log: &Log, now_ms: i64, upto: i64) -> Vec<Arc<LogSegment>> {
    let segs = log.snapshot();
    let min_lag = log.config().min_compaction_lag_ms;
    let sealed = &segs[..segs.len().saturating_sub(1)];
    sealed
        .iter()
        .take_while(|s| {
            let max_ts = s.max_timestamp.load(Ordering::Acquire);
            s.next_offset.load(Ordering::Acquire) <= upto
                && (min_lag <= 0 || max_ts == NO_TIMESTAMP || max_ts <= now_ms - min_lag)
        })
        .cloned()
        .collect()
}

pub(crate) fn cleanable(log: &Log, now_ms: i64, upto: i64) -> Option<Cleanable> {
    let config = log.config();
    if !config.cleanup_policy.compacts() || log.is_closed() {
        return None;
    }
    let segs = cleanable_segments(log, now_ms, upto);
    let first_dirty = log.first_dirty_offset();
    let mut c = Cleanable {
        first_dirty,
        first_uncleanable: segs.last().map_or(log.log_start_offset(), |s| {
            s.next_offset.load(Ordering::Acquire)
        }),
        clean_bytes: 0,
        dirty_bytes: 0,
        overdue: false,
        tombstones_due: now_ms >= log.next_tombstone_expiry(),
        min_ratio: config.min_cleanable_dirty_ratio,
    };
    for s in &segs {
        if s.next_offset.load(Ordering::Acquire) <= first_dirty {
            c.clean_bytes += s.size();
        } else {
            if c.dirty_bytes == 0 {
                let first = s.first_batch_timestamp.load(Ordering::Acquire);
                let ts = if first == NO_TIMESTAMP {
                    s.max_timestamp.load(Ordering::Acquire)
                } else {
                    first
                };
                c.overdue = ts != NO_TIMESTAMP
                    && config.max_compaction_lag_ms < i64::MAX
                    && ts <= now_ms.saturating_sub(config.max_compaction_lag_ms);
            }
            c.dirty_bytes += s.size();
        }
    }
    Some(c)
}

pub(crate) fn compact(
    log: &Log,
    now_ms: i64,
    upto: i64,
    throttle: &IoThrottle,
) -> Result<CompactionStats> {
    let mut stats = CompactionStats::default();
    if !log.config().cleanup_policy.compacts() {
        return Ok(stats);
    }
    if log.is_closed() {
        return Err(LogError::Closed {
            path: log.dir.clone(),
        });
    }
    let segs = cleanable_segments(log, now_ms, upto);
    let Some(end) = segs.last().map(|s| s.next_offset.load(Ordering::Acquire)) else {
        return Ok(stats);
    };
    let first_dirty = log.first_dirty_offset();

    // The map of the dirty part: which offset holds each key's latest record. A
    // transaction's records count only once its commit marker is seen: an aborted record (or
    // one of a transaction not decided within the scan) must never make an earlier committed
    // record of its key look superseded — read_committed consumers would lose that value.
    let mut latest: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut undecided: HashMap<i64, Vec<(Vec<u8>, i64)>> = HashMap::new();
    let note = |latest: &mut HashMap<Vec<u8>, i64>, k: &[u8], offset: i64| match latest.get_mut(k) {
        Some(o) => *o = (*o).max(offset),
        None => {
            latest.insert(k.to_vec(), offset);
        }
    };
    for seg in segs
        .iter()
        .filter(|s| s.next_offset.load(Ordering::Acquire) > first_dirty)
    {
        for_each_batch(seg, throttle, |meta, bytes| {
            let h = BatchHeader::new(bytes).map_err(|reason| corrupt(&meta, reason))?;
            if h.is_control() {
                let keys = undecided.remove(&h.producer_id()).unwrap_or_default();
                if batch::control_type(bytes) == Some(batch::ControlType::Commit) {
                    for (k, offset) in keys {
                        note(&mut latest, &k, offset);
                    }
                }
                return Ok(());
            }
            let section = codec::plain_section(bytes).map_err(|reason| corrupt(&meta, reason))?;
            for r in batch::records_in(h, &section) {
                let r = r.map_err(|reason| corrupt(&meta, reason))?;
                if let Some(k) = r.key {
                    if h.is_transactional() {
                        undecided
                            .entry(h.producer_id())
                            .or_default()
                            .push((k.to_vec(), r.offset));
                    } else {
                        note(&mut latest, k, r.offset);
                    }
                }
            }
            Ok(())
        })?;
    }

    let mut next_expiry = i64::MAX;
    for seg in &segs {
        let outcome = clean_segment(log, seg, &latest, now_ms, throttle)?;
        next_expiry = next_expiry.min(outcome.next_tombstone_expiry);
        if let Some((removed, before, after)) = outcome.rewritten {
            stats.segments_rewritten += 1;
            stats.records_removed += removed;
            stats.bytes_before += before;
            stats.bytes_after += after;
        }
    }
    log.cleaned_up_to(end, next_expiry)?;
    Ok(stats)
}

fn corrupt(meta: &BatchMeta, reason: crate::error::BatchDefect) -> LogError {
    LogError::CorruptBatch {
        offset: meta.base_offset,
        position: meta.position,
        reason,
    }
}

/// What rewriting one segment did.
struct SegmentOutcome {
    /// `(records removed, bytes before, bytes after)`; `None` if nothing changed or the swap
    /// lost a race.
    rewritten: Option<(u64, u64, u64)>,
    /// When the earliest tombstone left in the segment expires (`i64::MAX`: none left).
    next_tombstone_expiry: i64,
}

/// Rewrite one segment without the records `latest` supersedes and the expired tombstones.
fn clean_segment(
    log: &Log,
    seg: &Arc<LogSegment>,
    latest: &HashMap<Vec<u8>, i64>,
    now_ms: i64,
    throttle: &IoThrottle,
) -> Result<SegmentOutcome> {
    let size_before = seg.size();
    let config = log.config();
    let cleaned_path = log.dir.join(format!(
        "{}.{CLEANED_SUFFIX}",
        segment::file_name(seg.base_offset, LOG_SUFFIX)
    ));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&cleaned_path)
        .map_err(LogError::io("create", &cleaned_path))?;
    let mut out = BufWriter::with_capacity(1 << 20, &file);
    let mut rebuilt = segment::Rebuilder::new(seg.base_offset, config.index_interval_bytes);
    let mut removed = 0u64;
    let mut pos = 0u64;
    let mut next_expiry = i64::MAX;
    for_each_batch(seg, throttle, |meta, bytes| {
        let h = BatchHeader::new(bytes).map_err(|reason| corrupt(&meta, reason))?;
        let mut emit = |b: &[u8]| -> Result<()> {
            throttle.consume(b.len() as u64);
            out.write_all(b)
                .map_err(LogError::io("write", &cleaned_path))?;
            let hh = BatchHeader::new(b).map_err(|reason| corrupt(&meta, reason))?;
            rebuilt.add(BatchMeta {
                position: pos,
                size: b.len() as u64,
                base_offset: hh.base_offset(),
                last_offset: hh.last_offset(),
                max_timestamp: hh.max_timestamp(),
            });
            pos += b.len() as u64;
            Ok(())
        };
        if h.is_control() {
            return emit(bytes);
        }
        let expiry = h.max_timestamp().saturating_add(config.delete_retention_ms);
        let tombstone_expired = now_ms > expiry;
        let section = codec::plain_section(bytes).map_err(|reason| corrupt(&meta, reason))?;
        let mut kept: Vec<&[u8]> = Vec::new();
        let mut total = 0usize;
        for r in batch::records_in(h, &section) {
            let r = r.map_err(|reason| corrupt(&meta, reason))?;
            total += 1;
            let keep = match r.key {
                None => true,
                Some(k) => {
                    latest.get(k).is_none_or(|&o| o <= r.offset)
                        && !(r.value.is_none() && tombstone_expired)
                }
            };
            if keep {
                if r.key.is_some() && r.value.is_none() {
                    next_expiry = next_expiry.min(expiry);
                }
                kept.push(r.raw);
            }
        }
        removed += (total - kept.len()) as u64;
        let last_of_segment = meta.position + meta.size >= size_before;
        if kept.len() == total {
            emit(bytes)
        } else if kept.is_empty() && !last_of_segment {
            Ok(())
        } else if kept.is_empty() {
            // The last batch of a segment is kept even when empty (recordCount 0, offsets
            // and producer fields intact, as Kafka does for producer state): segments then
            // stay contiguous, which lets recovery treat any hole between segments as
            // lost data regardless of the cleanup policy. An empty section is never
            // compressed.
            emit(&batch::with_records_section(bytes, &[], 0, codec::NONE))
        } else if h.compression() == codec::NONE {
            emit(&batch::rebuild_with_records(bytes, &kept))
        } else {
            let plain: Vec<u8> = kept.concat();
            let packed = codec::compress(h.compression(), &plain)
                .map_err(|reason| corrupt(&meta, reason))?;
            emit(&batch::with_records_section(
                bytes,
                &[&packed],
                kept.len() as i32,
                h.compression(),
            ))
        }
    })?;
    out.flush().map_err(LogError::io("write", &cleaned_path))?;
    drop(out);
    let unchanged = SegmentOutcome {
        rewritten: None,
        next_tombstone_expiry: next_expiry,
    };
    if removed == 0 {
        drop(file);
        fs::remove_file(&cleaned_path).map_err(LogError::io("remove", &cleaned_path))?;
        return Ok(unchanged);
    }
    file.sync_all()
        .map_err(LogError::io("fsync", &cleaned_path))?;
    drop(file);

    // Swap under the writer lock.
    let _w = log.writer.lock().unwrap_or_else(|p| p.into_inner());
    let cur = log.snapshot();
    let at = cur.iter().position(|s| Arc::ptr_eq(s, seg));
    let still_sealed =
        at.is_some_and(|i| i + 1 < cur.len()) && seg.size() == size_before && !log.is_closed();
    let Some(at) = at.filter(|_| still_sealed) else {
        fs::remove_file(&cleaned_path).map_err(LogError::io("remove", &cleaned_path))?;
        return Ok(unchanged);
    };
    let (log_path, index_path, time_path) = LogSegment::paths(&log.dir, seg.base_offset);
    for p in [&index_path, &time_path] {
        match fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io("remove", p)(e)),
        }
    }
    fs::rename(&cleaned_path, &log_path).map_err(LogError::io("rename", &log_path))?;
    checkpoint::sync_dir(&log.dir)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&log_path)
        .map_err(LogError::io("open", &log_path))?;
    let new_seg = rebuilt.finish(log_path, file, pos, &index_path, &time_path)?;
    new_seg.seal()?;
    let mut list: Vec<Arc<LogSegment>> = cur.iter().cloned().collect();
    list[at] = Arc::new(new_seg);
    log.publish(list);
    Ok(SegmentOutcome {
        rewritten: Some((removed, size_before, pos)),
        next_tombstone_expiry: next_expiry,
    })
}

/// Handle of a background cleaner thread; dropping it stops and joins the thread.
pub struct CleanerHandle {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for CleanerHandle {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Run retention and compaction on `log` every `interval` until the handle is dropped or
/// the log is closed. Errors are logged, not fatal (the next round retries).
pub fn spawn_cleaner(log: Arc<Log>, interval: Duration) -> CleanerHandle {
    let (tx, rx) = mpsc::channel::<()>();
    let thread = thread::Builder::new()
        .name("dmq-log-cleaner".into())
        .spawn(move || loop {
            match rx.recv_timeout(interval) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            if log.is_closed() {
                return;
            }
            let now = now_ms();
            if let Err(e) = log.apply_retention(now) {
                tracing::warn!(dir = %log.dir().display(), error = %e, "retention failed");
            }
            if let Err(e) = log.compact(now) {
                tracing::warn!(dir = %log.dir().display(), error = %e, "compaction failed");
            }
        })
        .ok();
    CleanerHandle {
        stop: Some(tx),
        thread,
    }
}
