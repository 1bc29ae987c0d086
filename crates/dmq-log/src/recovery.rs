//! Opening a partition directory: find the segments, decide how much to trust them, and
//! repair what a crash left behind.
//!
//! Algorithm (run once by [`crate::Log::open`]):
//!
//! 1. Delete leftovers of interrupted operations: `*.cleaned` (a compaction that never
//!    swapped in), `*.tmp` (a checkpoint that never got renamed), and index files whose
//!    `.log` is gone.
//! 2. If the `clean-shutdown` marker exists the previous process closed the log after
//!    fsyncing everything: sealed segments are *trusted* — their indexes are validated
//!    (width, monotonic offsets and positions, positions inside the .log, tail batches
//!    whole) and rebuilt only if invalid. Without the marker every segment is *scanned*.
//!    The marker is removed before anything else happens, so a crash during this run is
//!    again an unclean shutdown.
//! 3. The last (active) segment is always scanned.
//! 4. Scanning reads every batch, checks length, magic, count, CRC-32C and that offsets
//!    increase and stay below the next segment's base. At the first failure the segment is
//!    truncated at that batch's position and **all later segments are deleted**: a batch
//!    after a hole is never served. Indexes of scanned segments are rebuilt from the scan.
//!    Likewise a segment that ends below the next segment's base offset (a cut exactly at
//!    a batch boundary) means lost data: later segments go. Segments are always contiguous
//!    (rolls happen at the log end, the cleaner keeps each segment's last batch).
//! 5. Log end = offset after the last good batch; log start = max(first segment base,
//!    `log-start-offset` checkpoint); the leader-epoch cache drops entries past the end.

use std::fs;
use std::path::Path;

use crate::checkpoint;
use crate::error::{BatchDefect, LogError, Result};
use crate::segment::{
    self, LoadMode, LogSegment, CLEANED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};
use crate::txn_index::{self, TXN_INDEX_SUFFIX};

/// Marker file written by [`crate::Log::close`] after a full fsync.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

pub(crate) struct Recovered {
    pub segments: Vec<LogSegment>,
    pub was_clean: bool,
    /// Segments (by base offset) that recovery truncated or deleted.
    pub repaired: usize,
}

pub(crate) fn recover(dir: &Path, index_interval_bytes: u64) -> Result<Recovered> {
    fs::create_dir_all(dir).map_err(LogError::io("create dir", dir))?;
    let mut bases = Vec::new();
    let mut index_files = Vec::new();
    for entry in fs::read_dir(dir).map_err(LogError::io("read dir", dir))? {
        let entry = entry.map_err(LogError::io("read dir", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(&format!(".{CLEANED_SUFFIX}")) || name.ends_with(".tmp") {
            let p = entry.path();
            fs::remove_file(&p).map_err(LogError::io("remove", &p))?;
        } else if let Some(base) = segment::parse_base_offset(name, LOG_SUFFIX) {
            bases.push(base);
        } else if let Some(base) = segment::parse_base_offset(name, INDEX_SUFFIX)
            .or_else(|| segment::parse_base_offset(name, TIME_INDEX_SUFFIX))
            .or_else(|| segment::parse_base_offset(name, TXN_INDEX_SUFFIX))
        {
            index_files.push((base, entry.path()));
        }
    }
    bases.sort_unstable();
    for (base, p) in index_files {
        if bases.binary_search(&base).is_err() {
            fs::remove_file(&p).map_err(LogError::io("remove", &p))?;
        }
    }

    let marker = dir.join(CLEAN_SHUTDOWN_FILE);
    let was_clean = marker.exists();
    if was_clean {
        fs::remove_file(&marker).map_err(LogError::io("remove", &marker))?;
        checkpoint::sync_dir(dir)?;
    }

    let mut segments: Vec<LogSegment> = Vec::with_capacity(bases.len());
    let mut repaired = 0;
    let mut i = 0;
    while i < bases.len() {
        let base = bases[i];
        let next_base = bases.get(i + 1).copied();
        let is_last = next_base.is_none();
        let mode = if was_clean && !is_last {
            LoadMode::Trusted
        } else {
            LoadMode::Scan
        };
        let loaded = LogSegment::load(dir, base, next_base, mode, index_interval_bytes)?;
        // After a clean shutdown every sealed segment was fsynced. After a crash any segment
        // may hold pages that never reached the disk: the active one, one recovery truncated,
        // and a sealed one whose fsync (deferred after its roll, see `Log::sync_rolled`) had
        // not run yet. Make them durable now, because the log reports everything it recovered
        // as durable. (Segments with no dirty pages fsync at once.)
        if !was_clean || is_last || loaded.truncated.is_some() {
            loaded.segment.sync_data()?;
        }
        let truncated = loaded.truncated;
        let seg_end = loaded
            .segment
            .next_offset
            .load(std::sync::atomic::Ordering::Acquire);
        let hole = next_base.is_some_and(|nb| seg_end != nb);
        segments.push(loaded.segment);
        if truncated.is_some() || hole {
            if let Some((pos, reason)) = truncated {
                if is_last && reason == (BatchDefect::BadLength { batch_length: 0 }) {
                    // Zeros where the next batch would start: preallocated space (or a
                    // write whose data never reached the disk). Expected; truncate quietly.
                    tracing::debug!(dir = %dir.display(), base, pos, "trimmed zero tail");
                } else {
                    tracing::warn!(dir = %dir.display(), base, pos, %reason, "truncated log at corrupt or torn batch");
                }
            } else {
                tracing::warn!(dir = %dir.display(), base, seg_end, "segment ends before the next one starts; dropping later segments");
            }
            repaired += 1;
            for &later in &bases[i + 1..] {
                let (l, x, t) = LogSegment::paths(dir, later);
                for p in [l, x, t, txn_index::path(dir, later)] {
                    match fs::remove_file(&p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(LogError::io("remove", &p)(e)),
                    }
                }
                repaired += 1;
            }
            checkpoint::sync_dir(dir)?;
            break;
        }
        i += 1;
    }
    Ok(Recovered {
        segments,
        was_clean,
        repaired,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Log, LogConfig, RecordBatchBuilder};

    fn append(log: &Log, n: usize) {
        for _ in 0..n {
            let mut b = RecordBatchBuilder::new(0);
            b.push(1, None, Some(&[7u8; 200]), &[]);
            log.append_as_leader(&mut b.build(), 0, 0).expect("append");
        }
    }

    #[test]
    fn leftovers_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path(), LogConfig::default()).expect("open");
        append(&log, 3);
        log.close().expect("close");
        let junk = [
            "00000000000000000000.log.cleaned",
            "leader-epoch-checkpoint.tmp",
            "00000000000000000999.index",
            "00000000000000000999.timeindex",
        ];
        for j in junk {
            fs::write(dir.path().join(j), b"junk").expect("write");
        }
        let rec = recover(dir.path(), 4096).expect("recover");
        assert!(rec.was_clean);
        assert_eq!(rec.segments.len(), 1);
        for j in junk {
            assert!(!dir.path().join(j).exists(), "{j} should be gone");
        }
        assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
    }

    #[test]
    fn a_hole_between_segments_drops_the_later_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig {
            segment_bytes: 700,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), cfg).expect("open");
        append(&log, 12);
        let segs = log.segments();
        assert!(segs.len() >= 3);
        drop(log);
        // Cut the second segment exactly at a batch boundary (one batch = 1 offset).
        let second = dir
            .path()
            .join(segment::file_name(segs[1].base_offset, LOG_SUFFIX));
        let one_batch = segs[0].size_bytes / (segs[1].base_offset - segs[0].base_offset) as u64;
        fs::OpenOptions::new()
            .write(true)
            .open(&second)
            .and_then(|f| f.set_len(one_batch))
            .expect("cut");
        let rec = recover(dir.path(), 4096).expect("recover");
        assert_eq!(rec.segments.len(), 2);
        assert!(rec.repaired > 0);
        let end = rec.segments[1]
            .next_offset
            .load(std::sync::atomic::Ordering::Acquire);
        assert_eq!(end, segs[1].base_offset + 1);
    }
}
