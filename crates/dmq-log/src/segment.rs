//! LogSegment: one `.log` file of whole RecordBatch v2 batches plus its two indexes.
//!
//! ```text
//! <dir>/00000000000000000000.log        batches, back to back, exactly as appended
//! <dir>/00000000000000000000.index      OffsetIndex (index.rs)
//! <dir>/00000000000000000000.timeindex  TimeIndex   (time_index.rs)
//! ```
//!
//! The file name is the segment's base offset, zero-padded to 20 digits, so lexical order is
//! offset order. Every batch in the segment has `baseOffset ≥` the segment's base offset and
//! `lastOffset <` the next segment's base offset; within a segment offsets strictly increase.
//! A `.log` file has no header of its own: each batch carries magic (version) and CRC.
//!
//! Concurrency: the writer appends with one positional write (`pwrite`) and then publishes
//! the new size through an atomic; readers use positional reads (`pread`) bounded by the
//! size they observed, so they never wait for the writer.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::batch::{self, BatchHeader, BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES};
use crate::error::{BatchDefect, LogError, Result};
use crate::index::{self, IndexFile, OffsetEntry};
use crate::time_index::{self, TimeEntry};

/// Extension of segment data files.
pub const LOG_SUFFIX: &str = "log";
/// Extension of offset index files.
pub const INDEX_SUFFIX: &str = "index";
/// Extension of time index files.
pub const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Suffix of a segment being written by the cleaner before it is swapped in.
pub const CLEANED_SUFFIX: &str = "cleaned";

/// Read size of the recovery scanner.
const SCAN_CHUNK_BYTES: usize = 1 << 20;
/// "No timestamp yet" (segment holds no batch).
pub(crate) const NO_TIMESTAMP: i64 = i64::MIN;

/// `<base offset, 20 digits>.<ext>`
pub(crate) fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// Parse a segment file name back into its base offset.
pub(crate) fn parse_base_offset(name: &str, ext: &str) -> Option<i64> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Metadata of one batch as the append path and the scanners see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchMeta {
    pub position: u64,
    pub size: u64,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

impl BatchMeta {
    fn from_header(position: u64, h: &BatchHeader<'_>) -> Self {
        BatchMeta {
            position,
            size: h.total_size() as u64,
            base_offset: h.base_offset(),
            last_offset: h.last_offset(),
            max_timestamp: h.max_timestamp(),
        }
    }
}

/// How [`LogSegment::load`] treats the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoadMode {
    /// Clean shutdown: trust the .log, validate the indexes, rebuild them only if invalid.
    Trusted,
    /// Unclean shutdown (or active segment): verify every batch's CRC and offsets,
    /// truncate at the first bad one, rebuild both indexes.
    Scan,
}

/// Result of loading a segment.
pub(crate) struct Loaded {
    pub segment: LogSegment,
    /// Where the segment was truncated and why, if it was.
    pub truncated: Option<(u64, BatchDefect)>,
}

#[derive(Debug)]
pub(crate) struct LogSegment {
    pub base_offset: i64,
    pub log_path: PathBuf,
    pub file: File,
    /// Published size of the .log in bytes; readers never read past it.
    pub size: AtomicU64,
    pub index: IndexFile<OffsetEntry>,
    pub time_index: IndexFile<TimeEntry>,
    /// Offset after the last batch (`base_offset` when empty).
    pub next_offset: AtomicI64,
    /// Base offset of the last batch (`-1` when empty).
    pub last_batch_base: AtomicI64,
    /// Largest batch `maxTimestamp` in the segment (`NO_TIMESTAMP` when empty).
    pub max_timestamp: AtomicI64,
    /// `maxTimestamp` of the first batch: the clock `segment_ms` rolling is measured on.
    pub first_batch_timestamp: AtomicI64,
    /// Bytes appended since the last offset-index entry (writer only).
    pub bytes_since_index: AtomicU64,
    /// File length on disk, ≥ `size` while space is preallocated (writer only).
    pub allocated: AtomicU64,
    /// Bytes below this position were handed to write-back already (the write-back driver
    /// only; see `LogConfig::writeback_bytes`).
    pub written_back: AtomicU64,
    /// Wall-clock time this process created or opened the segment: the `segment_ms` clock
    /// when batches carry no timestamps.
    pub created_ms: AtomicI64,
}

impl LogSegment {
    pub(crate) fn paths(dir: &Path, base_offset: i64) -> (PathBuf, PathBuf, PathBuf) {
        (
            dir.join(file_name(base_offset, LOG_SUFFIX)),
            dir.join(file_name(base_offset, INDEX_SUFFIX)),
            dir.join(file_name(base_offset, TIME_INDEX_SUFFIX)),
        )
    }

    /// Create a new, empty segment (truncating any stale files of the same name).
    pub(crate) fn create(dir: &Path, base_offset: i64) -> Result<Self> {
        let (log_path, index_path, time_path) = Self::paths(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .map_err(LogError::io("create", &log_path))?;
        Ok(LogSegment {
            base_offset,
            log_path,
            file,
            size: AtomicU64::new(0),
            index: IndexFile::create(&index_path, Vec::new())?,
            time_index: IndexFile::create(&time_path, Vec::new())?,
            next_offset: AtomicI64::new(base_offset),
            last_batch_base: AtomicI64::new(-1),
            max_timestamp: AtomicI64::new(NO_TIMESTAMP),
            first_batch_timestamp: AtomicI64::new(NO_TIMESTAMP),
            bytes_since_index: AtomicU64::new(0),
            allocated: AtomicU64::new(0),
            written_back: AtomicU64::new(0),
            created_ms: AtomicI64::new(crate::log::now_ms()),
        })
    }

    /// Open an existing segment. `next_base` is the base offset of the following segment
    /// (batches must end below it); `min_offset` is the smallest acceptable batch base offset.
    pub(crate) fn load(
        dir: &Path,
        base_offset: i64,
        next_base: Option<i64>,
        mode: LoadMode,
        index_interval_bytes: u64,
    ) -> Result<Loaded> {
        let (log_path, index_path, time_path) = Self::paths(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(LogError::io("open", &log_path))?;
        let file_len = file
            .metadata()
            .map_err(LogError::io("stat", &log_path))?
            .len();
        if mode == LoadMode::Trusted {
            if let Some(seg) =
                Self::load_trusted(&file, &log_path, base_offset, next_base, file_len)?
            {
                let (offsets, times, tail) = seg;
                let segment = LogSegment {
                    base_offset,
                    log_path,
                    file,
                    size: AtomicU64::new(file_len),
                    index: IndexFile::open_existing(&index_path, offsets)?,
                    time_index: IndexFile::open_existing(&time_path, times)?,
                    next_offset: AtomicI64::new(tail.next_offset),
                    last_batch_base: AtomicI64::new(tail.last_batch_base),
                    max_timestamp: AtomicI64::new(tail.max_timestamp),
                    first_batch_timestamp: AtomicI64::new(tail.first_batch_timestamp),
                    bytes_since_index: AtomicU64::new(tail.bytes_since_index),
                    allocated: AtomicU64::new(file_len),
                    written_back: AtomicU64::new(file_len),
                    created_ms: AtomicI64::new(crate::log::now_ms()),
                };
                return Ok(Loaded {
                    segment,
                    truncated: None,
                });
            }
            tracing::warn!(path = %log_path.display(), "index invalid after clean shutdown; rebuilding");
        }
        // Full scan: CRC every batch, stop at the first bad one.
        let mut rebuilt = Rebuilder::new(base_offset, index_interval_bytes);
        let limit = next_base.unwrap_or(i64::MAX);
        let outcome = scan_full(&file, &log_path, file_len, |meta, _| {
            if meta.base_offset < rebuilt.next_offset
                || meta.last_offset >= limit
                || meta.last_offset - base_offset > u32::MAX as i64
            {
                return Err(BatchDefect::OffsetOutOfOrder {
                    base_offset: meta.base_offset,
                    expected_min: rebuilt.next_offset,
                });
            }
            rebuilt.add(meta);
            Ok(())
        })?;
        if let Some((pos, _)) = outcome {
            file.set_len(pos)
                .map_err(LogError::io("truncate", &log_path))?;
        }
        let size = outcome.map(|(p, _)| p).unwrap_or(file_len);
        let segment = rebuilt.finish(log_path, file, size, &index_path, &time_path)?;
        Ok(Loaded {
            segment,
            truncated: outcome,
        })
    }

    /// Validate index files of a cleanly closed segment and read its tail. `None` = rebuild.
    #[allow(clippy::type_complexity)]
    fn load_trusted(
        file: &File,
        log_path: &Path,
        base_offset: i64,
        next_base: Option<i64>,
        file_len: u64,
    ) -> Result<Option<(Vec<OffsetEntry>, Vec<TimeEntry>, Tail)>> {
        let (_, index_path, time_path) =
            Self::paths(log_path.parent().unwrap_or(Path::new(".")), base_offset);
        let Some(offsets) = index::read_entries::<OffsetEntry>(&index_path)? else {
            return Ok(None);
        };
        let Some(times) = index::read_entries::<TimeEntry>(&time_path)? else {
            return Ok(None);
        };
        if index::validate_offset_entries(&offsets, file_len).is_err() {
            return Ok(None);
        }
        let max_rel = next_base
            .map(|n| (n - base_offset).max(0) as u64)
            .unwrap_or(u32::MAX as u64 + 1);
        if time_index::validate_time_entries(&times, max_rel).is_err() {
            return Ok(None);
        }
        // Walk the tail from the last indexed batch: it must be whole and consistent.
        let start = offsets.last().map(|e| e.position as u64).unwrap_or(0);
        let expect_first = offsets
            .last()
            .map(|e| base_offset + e.relative_offset as i64);
        let mut tail = Tail {
            next_offset: base_offset,
            last_batch_base: -1,
            max_timestamp: times.last().map(|t| t.timestamp).unwrap_or(NO_TIMESTAMP),
            first_batch_timestamp: NO_TIMESTAMP,
            bytes_since_index: 0,
        };
        let mut pos = start;
        let mut first = true;
        while pos < file_len {
            let Ok(Some(h)) = read_header(file, log_path, pos, file_len) else {
                return Ok(None);
            };
            let Ok(header) = BatchHeader::new(&h) else {
                return Ok(None);
            };
            if header.validate_header(false).is_err() || pos + header.total_size() as u64 > file_len
            {
                return Ok(None);
            }
            if first && expect_first.is_some_and(|o| o != header.base_offset()) {
                return Ok(None);
            }
            first = false;
            if header.base_offset() < tail.next_offset.max(base_offset)
                || next_base.is_some_and(|n| header.last_offset() >= n)
            {
                return Ok(None);
            }
            tail.next_offset = header.last_offset() + 1;
            tail.last_batch_base = header.base_offset();
            tail.max_timestamp = tail.max_timestamp.max(header.max_timestamp());
            pos += header.total_size() as u64;
        }
        tail.bytes_since_index = file_len - start;
        if file_len > 0 {
            let Ok(Some(h)) = read_header(file, log_path, 0, file_len) else {
                return Ok(None);
            };
            let Ok(header) = BatchHeader::new(&h) else {
                return Ok(None);
            };
            tail.first_batch_timestamp = header.max_timestamp();
        } else if !offsets.is_empty() || !times.is_empty() {
            return Ok(None);
        }
        Ok(Some((offsets, times, tail)))
    }

    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size() == 0
    }

    /// Append `bytes` (whole batches described by `metas`, positions relative to `bytes`)
    /// with a single positional write, then update the indexes and publish the new size.
    /// Caller: the log's writer, holding the writer lock.
    pub(crate) fn append(
        &self,
        bytes: &[u8],
        metas: &[BatchMeta],
        index_interval_bytes: u64,
        preallocate_bytes: u64,
    ) -> Result<()> {
        let start = self.size.load(Ordering::Acquire);
        let end = start + bytes.len() as u64;
        if preallocate_bytes > 0 && end > self.allocated.load(Ordering::Relaxed) {
            self.preallocate(end, preallocate_bytes);
        }
        self.file
            .write_all_at(bytes, start)
            .map_err(LogError::io("write", &self.log_path))?;

        for m in metas {
            let meta = BatchMeta {
                position: start + m.position,
                ..*m
            };
            self.track(&meta, index_interval_bytes);
        }
        self.size
            .store(start + bytes.len() as u64, Ordering::Release);
        if let Some(last) = metas.last() {
            self.next_offset
                .store(last.last_offset + 1, Ordering::Release);
        }
        Ok(())
    }

    /// Index bookkeeping for one appended batch (shared with recovery via [`Rebuilder`]).
    fn track(&self, m: &BatchMeta, interval: u64) {
        let since = self.bytes_since_index.load(Ordering::Relaxed);
        let max_ts = self
            .max_timestamp
            .load(Ordering::Relaxed)
            .max(m.max_timestamp);
        self.max_timestamp.store(max_ts, Ordering::Release);
        if self.first_batch_timestamp.load(Ordering::Relaxed) == NO_TIMESTAMP {
            self.first_batch_timestamp
                .store(m.max_timestamp, Ordering::Relaxed);
        }
        let rel = (m.base_offset - self.base_offset) as u32;
        if since >= interval && m.position > 0 {
            self.index.push(OffsetEntry {
                relative_offset: rel,
                position: m.position as u32,
            });
            if self.time_index.last().is_none_or(|t| max_ts > t.timestamp) {
                self.time_index.push(TimeEntry {
                    timestamp: max_ts,
                    relative_offset: rel,
                });
            }
            self.bytes_since_index.store(m.size, Ordering::Relaxed);
        } else {
            self.bytes_since_index
                .store(since + m.size, Ordering::Relaxed);
        }
        self.last_batch_base.store(m.base_offset, Ordering::Release);
    }

    /// Starts write-back of what was appended since the last call, once that is at least
    /// `min_bytes` (see [`LogSegment::start_writeback`]). Called by the log's write-back
    /// driver only, never on the append path: submitting pages can wait behind a device
    /// flush.
    pub(crate) fn write_back(&self, min_bytes: u64) {
        let size = self.size();
        let from = self.written_back.load(Ordering::Relaxed).min(size);
        if size - from >= min_bytes {
            self.start_writeback(from, size);
            self.written_back.store(size, Ordering::Relaxed);
        }
    }

    /// Hands the dirty pages of `[from, to)` to the disk without waiting for them
    /// (`sync_file_range(2)` with `SYNC_FILE_RANGE_WRITE`; no fsync, no durability promise).
    /// Left alone, the kernel lets dirty pages pile up to `vm.dirty_background_ratio` (gigabytes
    /// on a large machine) and then writes them in one burst, during which appends wait in the
    /// file system for tens to hundreds of milliseconds; written back in steps as they come,
    /// the same bytes reach the disk at an even pace. An error only means the kernel's
    /// write-back takes over as before.
    fn start_writeback(&self, from: u64, to: u64) {
        #[cfg(target_os = "linux")]
        {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&self.file);
            // SAFETY: a plain syscall on a file descriptor we own; no memory is shared.
            let rc = unsafe {
                libc::sync_file_range(
                    fd,
                    from as libc::off64_t,
                    (to - from) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
            if rc != 0 {
                tracing::debug!(path = %self.log_path.display(), "sync_file_range failed: {}", std::io::Error::last_os_error());
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (from, to);
    }

    /// Reserve disk blocks ahead of the writer with `fallocate(2)`. Writing into allocated
    /// (unwritten) extents skips the file system's per-write block reservation, a large
    /// part of the kernel cost of small appends. The file length grows too, so the tail
    /// holds zeros: recovery sees `batchLength = 0` there and truncates, and `seal()`
    /// trims the file. Failure (a file system without fallocate) only disables it.
    fn preallocate(&self, needed_end: u64, chunk: u64) {
        let allocated = self.allocated.load(Ordering::Relaxed);
        let target = needed_end.div_ceil(chunk).saturating_mul(chunk);
        let len = target - allocated.min(target);
        #[cfg(target_os = "linux")]
        let rc = {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&self.file);
            // SAFETY: a plain syscall on a file descriptor we own; no memory is shared.
            unsafe { libc::fallocate(fd, 0, allocated as libc::off_t, len as libc::off_t) }
        };
        #[cfg(not(target_os = "linux"))]
        let rc = {
            let _ = len; // fallocate(2) is Linux-only; elsewhere plain writes extend the file
            -1
        };
        if rc == 0 {
            self.allocated.store(target, Ordering::Relaxed);
        } else {
            // Don't retry on every append: plain writes extend the file as usual.
            self.allocated.store(u64::MAX, Ordering::Relaxed);
            tracing::debug!(path = %self.log_path.display(), "fallocate unavailable; not preallocating");
        }
    }

    /// Cut preallocated space off so that the file length is the data length again.
    fn trim(&self) -> Result<()> {
        let size = self.size();
        if self.allocated.load(Ordering::Relaxed) != size {
            self.file
                .set_len(size)
                .map_err(LogError::io("truncate", &self.log_path))?;
            self.allocated.store(size, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Add the final time-index entry (exact max timestamp) so a clean open needs no scan.
    fn finalize_time_index(&self) {
        let max_ts = self.max_timestamp.load(Ordering::Acquire);
        let last_base = self.last_batch_base.load(Ordering::Acquire);
        if max_ts == NO_TIMESTAMP || last_base < 0 {
            return;
        }
        let rel = (last_base - self.base_offset) as u32;
        let last = self.time_index.last();
        if last.is_none_or(|t| max_ts > t.timestamp && rel >= t.relative_offset) {
            self.time_index.push(TimeEntry {
                timestamp: max_ts,
                relative_offset: rel,
            });
        }
    }

    /// Write pending index entries (no fsync).
    pub(crate) fn flush_indexes(&self) -> Result<()> {
        self.index.flush_pending()?;
        self.time_index.flush_pending()
    }

    /// fsync the data file only (the indexes are rebuilt by recovery if lost).
    pub(crate) fn sync_data(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(LogError::io("fsync", &self.log_path))
    }

    /// Seal (roll away from, or close): final time entry, indexes written, everything fsynced.
    pub(crate) fn seal(&self) -> Result<()> {
        self.seal_unsynced()?;
        self.sync_files()
    }

    /// The part of [`LogSegment::seal`] that needs no fsync: preallocated tail trimmed,
    /// final time entry added, index entries written.
    pub(crate) fn seal_unsynced(&self) -> Result<()> {
        self.trim()?;
        self.finalize_time_index();
        self.flush_indexes()
    }

    /// fsync the indexes and the data file.
    pub(crate) fn sync_files(&self) -> Result<()> {
        self.index.sync()?;
        self.time_index.sync()?;
        self.sync_data()
    }

    /// Find the first batch whose last offset ≥ `target`, reading no further than `visible`.
    /// `Ok(None)`: no such batch in this segment.
    pub(crate) fn find_batch(&self, target: i64, visible: u64) -> Result<Option<BatchMeta>> {
        let rel = (target - self.base_offset).clamp(0, u32::MAX as i64) as u32;
        let hint = self.index.with(|e| index::lookup_offset(e, rel, visible));
        let mut pos = 0;
        if let Some(entry) = hint {
            // The index is a hint: trust it only if the batch there has the indexed offset.
            let ok = match read_header(&self.file, &self.log_path, entry.position as u64, visible)?
            {
                Some(h) => BatchHeader::new(&h)
                    .map(|h| h.base_offset() == self.base_offset + entry.relative_offset as i64)
                    .unwrap_or(false),
                None => false,
            };
            if ok {
                pos = entry.position as u64;
            } else {
                tracing::warn!(path = %self.log_path.display(), ?entry, "stale offset index entry; scanning");
            }
        }
        while pos < visible {
            let meta = self.header_at(pos, visible)?;
            if meta.last_offset >= target {
                return Ok(Some(meta));
            }
            pos += meta.size;
        }
        Ok(None)
    }

    /// Read and structurally check the header at `pos` (the batch must end by `visible`).
    pub(crate) fn header_at(&self, pos: u64, visible: u64) -> Result<BatchMeta> {
        let corrupt = |reason| LogError::CorruptBatch {
            offset: -1,
            position: pos,
            reason,
        };
        let h = read_header(&self.file, &self.log_path, pos, visible)?.ok_or_else(|| {
            corrupt(BatchDefect::Truncated {
                needed: BATCH_HEADER_BYTES,
                available: (visible - pos) as usize,
            })
        })?;
        let header = BatchHeader::new(&h).map_err(corrupt)?;
        header
            .validate_header(false)
            .map_err(|reason| LogError::CorruptBatch {
                offset: header.base_offset(),
                position: pos,
                reason,
            })?;
        let meta = BatchMeta::from_header(pos, &header);
        if pos + meta.size > visible {
            return Err(LogError::CorruptBatch {
                offset: meta.base_offset,
                position: pos,
                reason: BatchDefect::Truncated {
                    needed: meta.size as usize,
                    available: (visible - pos) as usize,
                },
            });
        }
        Ok(meta)
    }

    /// End of the run of whole batches starting at `first` that fits in `max_bytes`
    /// (the first batch always counts). Returns `(end position, last offset)`.
    pub(crate) fn read_extent(
        &self,
        first: BatchMeta,
        max_bytes: u64,
        visible: u64,
    ) -> Result<(u64, i64)> {
        let limit = (first.position + first.size.max(max_bytes)).min(visible);
        let mut pos = first.position + first.size;
        let mut last = first.last_offset;
        // Jump close to the limit with the index (positions are batch starts).
        if let Some(e) = self.index.with(|e| index::lookup_position(e, limit)) {
            let p = e.position as u64;
            if p > pos && p < limit {
                // Everything before p ends at or before p ≤ limit, so it is included; we
                // only need the last offset before p, which the batch at p tells us.
                if let Ok(meta) = self.header_at(p, visible) {
                    if meta.base_offset == self.base_offset + e.relative_offset as i64 {
                        pos = p;
                        last = meta.base_offset - 1;
                    }
                }
            }
        }
        while pos < limit {
            let meta = self.header_at(pos, visible)?;
            if pos + meta.size > limit {
                break;
            }
            last = meta.last_offset;
            pos += meta.size;
        }
        Ok((pos, last))
    }

    /// Truncate the segment so that it ends before the batch containing `offset`.
    /// Returns the new next offset. Rebuilds the indexes (truncation is rare).
    pub(crate) fn truncate_to(&self, offset: i64, index_interval_bytes: u64) -> Result<i64> {
        let visible = self.size();
        let Some(cut_batch) = self.find_batch(offset, visible)? else {
            // Nothing at or after `offset` in this segment: nothing to cut.
            return Ok(self.next_offset.load(Ordering::Acquire).min(offset));
        };
        let cut = cut_batch.position;
        // Rebuild indexes and counters from the remaining headers (truncation is rare).
        let mut r = Rebuilder::new(self.base_offset, index_interval_bytes);
        let mut pos = 0;
        while pos < cut {
            let m = self.header_at(pos, cut)?;
            r.add(m);
            pos += m.size;
        }
        // Publish the smaller size before touching the file so new readers stop short of it.
        self.size.store(cut, Ordering::Release);
        self.file
            .set_len(cut)
            .map_err(LogError::io("truncate", &self.log_path))?;
        self.allocated.store(cut, Ordering::Relaxed);
        self.written_back.fetch_min(cut, Ordering::Relaxed);
        self.index.truncate_while(|_| false)?;
        self.time_index.truncate_while(|_| false)?;
        for e in &r.offsets {
            self.index.push(*e);
        }
        for e in &r.times {
            self.time_index.push(*e);
        }
        self.flush_indexes()?;
        // The offset after the last remaining batch (≤ `offset`; below it when `offset` fell
        // into a compaction gap), so the segment never claims offsets it does not hold.
        let new_next = r.next_offset;
        debug_assert!(new_next <= offset.min(cut_batch.base_offset));
        self.next_offset.store(new_next, Ordering::Release);
        self.last_batch_base
            .store(r.last_batch_base, Ordering::Release);
        self.max_timestamp.store(r.max_timestamp, Ordering::Release);
        self.first_batch_timestamp
            .store(r.first_batch_timestamp, Ordering::Release);
        self.bytes_since_index
            .store(r.bytes_since_index, Ordering::Relaxed);
        Ok(new_next)
    }

    /// Read `len` bytes at `pos` into `out` (replacing its contents).
    pub(crate) fn read_into(&self, pos: u64, len: usize, out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        out.resize(len, 0);
        self.file
            .read_exact_at(out, pos)
            .map_err(LogError::io("read", &self.log_path))
    }

    /// First record at or after `ts` in this segment: `(offset, timestamp)`.
    pub(crate) fn offset_for_timestamp(
        &self,
        ts: i64,
        min_offset: i64,
        visible: u64,
    ) -> Result<Option<(i64, i64)>> {
        if self.max_timestamp.load(Ordering::Acquire) < ts {
            return Ok(None);
        }
        let start_offset = self
            .time_index
            .with(|e| time_index::lookup_before(e, ts))
            .map(|t| self.base_offset + t.relative_offset as i64)
            .unwrap_or(self.base_offset)
            .max(min_offset);
        let Some(mut meta) = self.find_batch(start_offset, visible)? else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        loop {
            if meta.max_timestamp >= ts && meta.last_offset >= min_offset {
                self.read_into(meta.position, meta.size as usize, &mut buf)?;
                let corrupt = |reason| LogError::CorruptBatch {
                    offset: meta.base_offset,
                    position: meta.position,
                    reason,
                };
                let header = batch::validate_batch(&buf, false).map_err(corrupt)?;
                if header.compression() != 0 {
                    // Compressed batches are not decompressed here: answer with the batch.
                    return Ok(Some((meta.base_offset.max(min_offset), meta.max_timestamp)));
                }
                for r in batch::records(&buf).map_err(corrupt)? {
                    let r = r.map_err(corrupt)?;
                    if r.timestamp >= ts && r.offset >= min_offset {
                        return Ok(Some((r.offset, r.timestamp)));
                    }
                }
            }
            let next = meta.position + meta.size;
            if next >= visible {
                return Ok(None);
            }
            meta = self.header_at(next, visible)?;
        }
    }
}

/// What a trusted load learns from the tail of the segment.
struct Tail {
    next_offset: i64,
    last_batch_base: i64,
    max_timestamp: i64,
    first_batch_timestamp: i64,
    bytes_since_index: u64,
}

/// Rebuilds index entries exactly as the append path would have produced them.
pub(crate) struct Rebuilder {
    base_offset: i64,
    interval: u64,
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
    pub next_offset: i64,
    pub last_batch_base: i64,
    pub max_timestamp: i64,
    pub first_batch_timestamp: i64,
    pub bytes_since_index: u64,
}

impl Rebuilder {
    pub(crate) fn new(base_offset: i64, interval: u64) -> Self {
        Rebuilder {
            base_offset,
            interval,
            offsets: Vec::new(),
            times: Vec::new(),
            next_offset: base_offset,
            last_batch_base: -1,
            max_timestamp: NO_TIMESTAMP,
            first_batch_timestamp: NO_TIMESTAMP,
            bytes_since_index: 0,
        }
    }

    pub(crate) fn add(&mut self, m: BatchMeta) {
        self.max_timestamp = self.max_timestamp.max(m.max_timestamp);
        if self.first_batch_timestamp == NO_TIMESTAMP {
            self.first_batch_timestamp = m.max_timestamp;
        }
        let rel = (m.base_offset - self.base_offset) as u32;
        if self.bytes_since_index >= self.interval && m.position > 0 {
            self.offsets.push(OffsetEntry {
                relative_offset: rel,
                position: m.position as u32,
            });
            if self
                .times
                .last()
                .is_none_or(|t| self.max_timestamp > t.timestamp)
            {
                self.times.push(TimeEntry {
                    timestamp: self.max_timestamp,
                    relative_offset: rel,
                });
            }
            self.bytes_since_index = m.size;
        } else {
            self.bytes_since_index += m.size;
        }
        self.next_offset = m.last_offset + 1;
        self.last_batch_base = m.base_offset;
    }

    /// Write fresh index files and build the segment.
    pub(crate) fn finish(
        self,
        log_path: PathBuf,
        file: File,
        size: u64,
        index_path: &Path,
        time_path: &Path,
    ) -> Result<LogSegment> {
        let seg = LogSegment {
            base_offset: self.base_offset,
            log_path,
            file,
            size: AtomicU64::new(size),
            index: IndexFile::create(index_path, self.offsets)?,
            time_index: IndexFile::create(time_path, self.times)?,
            next_offset: AtomicI64::new(self.next_offset),
            last_batch_base: AtomicI64::new(self.last_batch_base),
            max_timestamp: AtomicI64::new(self.max_timestamp),
            first_batch_timestamp: AtomicI64::new(self.first_batch_timestamp),
            bytes_since_index: AtomicU64::new(self.bytes_since_index),
            allocated: AtomicU64::new(size),
            written_back: AtomicU64::new(size),
            created_ms: AtomicI64::new(crate::log::now_ms()),
        };
        Ok(seg)
    }
}

/// Read the 61-byte header at `pos`; `None` if fewer than 61 bytes remain before `limit`.
pub(crate) fn read_header(
    file: &File,
    path: &Path,
    pos: u64,
    limit: u64,
) -> Result<Option<[u8; BATCH_HEADER_BYTES]>> {
    if pos + BATCH_HEADER_BYTES as u64 > limit {
        return Ok(None);
    }
    let mut h = [0u8; BATCH_HEADER_BYTES];
    file.read_exact_at(&mut h, pos)
        .map_err(LogError::io("read", path))?;
    Ok(Some(h))
}

/// Scan every batch of `file` from position 0, verifying structure and CRC, calling
/// `on_batch` for each good one (which may reject it, e.g. for offset order). Reads in large
/// chunks. Returns `None` if the whole file is good, else the position of the first bad
/// batch and why.
pub(crate) fn scan_full(
    file: &File,
    path: &Path,
    file_len: u64,
    mut on_batch: impl FnMut(BatchMeta, &[u8]) -> std::result::Result<(), BatchDefect>,
) -> Result<Option<(u64, BatchDefect)>> {
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = 0u64; // file position of buf[0]
    let mut pos = 0u64;
    while pos < file_len {
        let remaining = file_len - pos;
        // Make sure the 12-byte prefix is buffered.
        let need = |buf: &Vec<u8>, buf_start: u64, n: u64| pos + n > buf_start + buf.len() as u64;
        if need(
            &buf,
            buf_start,
            BATCH_LOG_OVERHEAD_BYTES.min(remaining as usize) as u64,
        ) || pos < buf_start
        {
            fill(
                file,
                path,
                pos,
                SCAN_CHUNK_BYTES.min(remaining as usize),
                &mut buf,
            )?;
            buf_start = pos;
        }
        let at = (pos - buf_start) as usize;
        let size = match batch::declared_size(&buf[at..]) {
            Ok(s) => s as u64,
            Err(d) => return Ok(Some((pos, d))),
        };
        if size > remaining {
            return Ok(Some((
                pos,
                BatchDefect::Truncated {
                    needed: size as usize,
                    available: remaining as usize,
                },
            )));
        }
        if need(&buf, buf_start, size) {
            fill(
                file,
                path,
                pos,
                (size as usize).max(SCAN_CHUNK_BYTES.min(remaining as usize)),
                &mut buf,
            )?;
            buf_start = pos;
        }
        let at = (pos - buf_start) as usize;
        let bytes = &buf[at..at + size as usize];
        let header = match batch::validate_batch(bytes, false) {
            Ok(h) => h,
            Err(d) => return Ok(Some((pos, d))),
        };
        if let Err(d) = on_batch(BatchMeta::from_header(pos, &header), bytes) {
            return Ok(Some((pos, d)));
        }
        pos += size;
    }
    Ok(None)
}

fn fill(file: &File, path: &Path, pos: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    buf.resize(len, 0);
    file.read_exact_at(buf, pos)
        .map_err(LogError::io("read", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::RecordBatchBuilder;

    fn batch_at(base: i64, records: usize, ts: i64) -> Vec<u8> {
        let mut b = RecordBatchBuilder::new(base);
        for i in 0..records {
            b.push(ts, None, Some(&[i as u8; 90]), &[]);
        }
        b.build()
    }

    /// Append `n` batches to a fresh segment at base 100, returning it and the batches.
    fn filled(dir: &Path, n: usize) -> (LogSegment, Vec<Vec<u8>>) {
        let seg = LogSegment::create(dir, 100).expect("create");
        let mut next = 100;
        let mut all = Vec::new();
        for i in 0..n {
            let b = batch_at(next, 1 + i % 3, 1000 + (i as i64 % 7) * 10);
            let h = BatchHeader::new(&b).expect("hdr");
            let meta = BatchMeta {
                position: 0,
                size: b.len() as u64,
                base_offset: h.base_offset(),
                last_offset: h.last_offset(),
                max_timestamp: h.max_timestamp(),
            };
            seg.append(&b, &[meta], 256, 4096).expect("append");
            next = h.last_offset() + 1;
            all.push(b);
        }
        (seg, all)
    }

    #[test]
    fn file_names_roundtrip() {
        assert_eq!(file_name(42, LOG_SUFFIX), "00000000000000000042.log");
        assert_eq!(
            parse_base_offset("00000000000000000042.log", LOG_SUFFIX),
            Some(42)
        );
        assert_eq!(
            parse_base_offset("00000000000000000042.index", LOG_SUFFIX),
            None
        );
        assert_eq!(parse_base_offset("42.log", LOG_SUFFIX), None);
        assert_eq!(
            parse_base_offset("0000000000000000004x.log", LOG_SUFFIX),
            None
        );
    }

    #[test]
    fn scan_rebuilds_the_same_indexes_as_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (seg, _) = filled(dir.path(), 60);
        let offsets = seg.index.with(|e| e.to_vec());
        let times = seg.time_index.with(|e| e.to_vec());
        assert!(offsets.len() > 5 && !times.is_empty());
        let size = seg.size();
        seg.trim().expect("trim");
        drop(seg);
        let loaded = LogSegment::load(dir.path(), 100, None, LoadMode::Scan, 256).expect("load");
        assert!(loaded.truncated.is_none());
        assert_eq!(loaded.segment.size(), size);
        assert_eq!(loaded.segment.index.with(|e| e.to_vec()), offsets);
        assert_eq!(loaded.segment.time_index.with(|e| e.to_vec()), times);
    }

    #[test]
    fn scan_truncates_torn_tail_and_preallocated_zeros() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (seg, all) = filled(dir.path(), 10);
        assert!(
            seg.allocated.load(Ordering::Relaxed) > seg.size(),
            "preallocated"
        );
        let good: u64 = all.iter().map(|b| b.len() as u64).sum();
        // Write half a batch after the good data.
        seg.file.write_all_at(&all[0][..40], good).expect("write");
        drop(seg);
        let loaded = LogSegment::load(dir.path(), 100, None, LoadMode::Scan, 256).expect("load");
        assert_eq!(loaded.truncated.map(|t| t.0), Some(good));
        assert_eq!(loaded.segment.size(), good);
        assert_eq!(loaded.segment.file.metadata().expect("meta").len(), good);
    }

    #[test]
    fn find_batch_survives_a_lying_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (seg, _) = filled(dir.path(), 30);
        let visible = seg.size();
        let honest: Vec<_> = (100..seg.next_offset.load(Ordering::Acquire))
            .map(|o| {
                seg.find_batch(o, visible)
                    .expect("find")
                    .map(|m| m.position)
            })
            .collect();
        // Replace the index with entries pointing into the middle of batches.
        seg.index.truncate_while(|_| false).expect("clear");
        seg.index.push(OffsetEntry {
            relative_offset: 3,
            position: 7,
        });
        seg.index.push(OffsetEntry {
            relative_offset: 20,
            position: 1000,
        });
        let lying: Vec<_> = (100..seg.next_offset.load(Ordering::Acquire))
            .map(|o| {
                seg.find_batch(o, visible)
                    .expect("find")
                    .map(|m| m.position)
            })
            .collect();
        assert_eq!(honest, lying);
    }

    #[test]
    fn truncate_rebuilds_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (seg, all) = filled(dir.path(), 30);
        let h = BatchHeader::new(&all[12]).expect("hdr");
        let new_end = seg.truncate_to(h.last_offset(), 256).expect("truncate");
        assert_eq!(new_end, h.base_offset());
        let expect_size: u64 = all[..12].iter().map(|b| b.len() as u64).sum();
        assert_eq!(seg.size(), expect_size);
        let max_ts = all[..12]
            .iter()
            .map(|b| BatchHeader::new(b).expect("hdr").max_timestamp())
            .max();
        assert_eq!(Some(seg.max_timestamp.load(Ordering::Acquire)), max_ts);
        assert!(seg
            .index
            .with(|e| e.iter().all(|x| (x.position as u64) < expect_size)));
    }
}
