//! Log compaction (`cleanup.policy=compact`): keep the latest record per key.
//!
//! Algorithm (one synchronous pass, callable from a background thread via
//! [`spawn_cleaner`]):
//!
//! 1. Take a snapshot of the segment list. Only *sealed* segments are cleaned; the active
//!    segment is never touched (it is still being written).
//! 2. Build `key → latest offset` over all sealed segments, reading every batch with its CRC
//!    checked.
//! 3. Rewrite each sealed segment into `<base>.log.cleaned`: a record survives if it has no
//!    key, or it is the latest for its key and is not a tombstone older than
//!    `delete.retention.ms` (measured against the batch's `maxTimestamp`). Surviving
//!    records are copied byte for byte; the batch keeps baseOffset, lastOffsetDelta,
//!    timestamps, producer fields and leader epoch (so offsets never move and producer state
//!    survives) and gets a new length, recordCount and CRC. Batches left with no records are
//!    dropped, except the last batch of the segment, which is kept with zero records so
//!    that every segment still ends right below the next one's base offset. **Compressed batches are kept whole** and their keys are not considered (this
//!    crate does not decompress); control batches are kept whole. Both only over-retain.
//! 4. Swap, under the writer lock, only if the segment is still the same sealed segment of
//!    the same size (a concurrent truncation or retention wins): delete the old index files,
//!    rename `.log.cleaned` over `.log`, fsync the directory, write fresh indexes. A crash at
//!    any point leaves either the old or the new `.log`, with indexes missing at worst —
//!    which recovery rebuilds; a stray `.cleaned` file is deleted on open.
//!
//! The key map is in memory (one entry per distinct key in the sealed part of the log);
//! Kafka bounds it with a fixed-size hash buffer and cleans in several passes — a
//! refinement this crate does not need at its scale yet.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::batch::{self, BatchHeader};
use crate::checkpoint;
use crate::error::{LogError, Result};
use crate::log::{now_ms, Log};
use crate::segment::{self, BatchMeta, LogSegment, Rebuilder, CLEANED_SUFFIX, LOG_SUFFIX};

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub segments_rewritten: usize,
    pub records_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Visit every batch of a sealed segment (CRC checked); a corrupt batch is an error.
fn for_each_batch(
    seg: &LogSegment,
    mut f: impl FnMut(BatchMeta, &[u8]) -> Result<()>,
) -> Result<()> {
    let size = seg.size();
    let mut inner_err = None;
    let outcome = segment::scan_full(&seg.file, &seg.log_path, size, |meta, bytes| {
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

fn is_plain(h: &BatchHeader<'_>) -> bool {
    h.compression() == 0 && !h.is_control()
}

pub(crate) fn compact(log: &Log, now_ms: i64) -> Result<CompactionStats> {
    let mut stats = CompactionStats::default();
    if !log.config().cleanup_policy.compacts() {
        return Ok(stats);
    }
    if log.is_closed() {
        return Err(LogError::Closed {
            path: log.dir.clone(),
        });
    }
    let segs = log.snapshot();
    if segs.len() < 2 {
        return Ok(stats);
    }
    let sealed: Vec<Arc<LogSegment>> = segs[..segs.len() - 1].to_vec();

    let mut latest: HashMap<Vec<u8>, i64> = HashMap::new();
    for seg in &sealed {
        for_each_batch(seg, |meta, bytes| {
            let h = BatchHeader::new(bytes).map_err(|reason| corrupt(&meta, reason))?;
            if !is_plain(&h) {
                return Ok(());
            }
            for r in batch::records(bytes).map_err(|reason| corrupt(&meta, reason))? {
                let r = r.map_err(|reason| corrupt(&meta, reason))?;
                if let Some(k) = r.key {
                    match latest.get_mut(k) {
                        Some(o) => *o = (*o).max(r.offset),
                        None => {
                            latest.insert(k.to_vec(), r.offset);
                        }
                    }
                }
            }
            Ok(())
        })?;
    }

    for seg in &sealed {
        if let Some((removed, before, after)) = clean_segment(log, seg, &latest, now_ms)? {
            stats.segments_rewritten += 1;
            stats.records_removed += removed;
            stats.bytes_before += before;
            stats.bytes_after += after;
        }
    }
    Ok(stats)
}

fn corrupt(meta: &BatchMeta, reason: crate::error::BatchDefect) -> LogError {
    LogError::CorruptBatch {
        offset: meta.base_offset,
        position: meta.position,
        reason,
    }
}

/// Rewrite one segment; `None` if nothing would change or the swap lost a race.
fn clean_segment(
    log: &Log,
    seg: &Arc<LogSegment>,
    latest: &HashMap<Vec<u8>, i64>,
    now_ms: i64,
) -> Result<Option<(u64, u64, u64)>> {
    let size_before = seg.size();
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
    let mut rebuilt = Rebuilder::new(seg.base_offset, log.config().index_interval_bytes);
    let mut removed = 0u64;
    let mut pos = 0u64;
    for_each_batch(seg, |meta, bytes| {
        let h = BatchHeader::new(bytes).map_err(|reason| corrupt(&meta, reason))?;
        let mut emit = |b: &[u8]| -> Result<()> {
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
        if !is_plain(&h) {
            return emit(bytes);
        }
        let tombstone_expired =
            now_ms.saturating_sub(h.max_timestamp()) > log.config().delete_retention_ms;
        let mut kept: Vec<&[u8]> = Vec::new();
        let mut total = 0usize;
        for r in batch::records(bytes).map_err(|reason| corrupt(&meta, reason))? {
            let r = r.map_err(|reason| corrupt(&meta, reason))?;
            total += 1;
            let keep = match r.key {
                None => true,
                Some(k) => {
                    latest.get(k).is_some_and(|&o| o == r.offset)
                        && !(r.value.is_none() && tombstone_expired)
                }
            };
            if keep {
                kept.push(r.raw);
            }
        }
        removed += (total - kept.len()) as u64;
        if kept.len() == total {
            emit(bytes)
        } else if kept.is_empty() && meta.position + meta.size < size_before {
            Ok(())
        } else {
            // The last batch of a segment is kept even when empty (recordCount 0, offsets
            // and producer fields intact, as Kafka does for producer state): segments then
            // stay contiguous, which lets recovery treat any hole between segments as
            // lost data regardless of the cleanup policy.
            emit(&batch::rebuild_with_records(bytes, &kept))
        }
    })?;
    out.flush().map_err(LogError::io("write", &cleaned_path))?;
    drop(out);
    if removed == 0 {
        drop(file);
        fs::remove_file(&cleaned_path).map_err(LogError::io("remove", &cleaned_path))?;
        return Ok(None);
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
        return Ok(None);
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
    Ok(Some((removed, size_before, pos)))
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
