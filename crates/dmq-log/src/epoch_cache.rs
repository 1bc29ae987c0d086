//! LeaderEpochFileCache: `epoch → start offset`, persisted in `leader-epoch-checkpoint`.
//!
//! File layout (see `checkpoint.rs` for the envelope): kind `leader-epoch`, one line per
//! entry `"<epoch> <start offset>"`, epochs and start offsets strictly increasing:
//!
//! ```text
//! dmq-checkpoint 1 leader-epoch
//! 2
//! 0 0
//! 3 120
//! crc32c 1a2b3c4d
//! ```
//!
//! Used for KIP-101/KIP-279 truncation: a follower asks the leader for the end offset of its
//! latest epoch and truncates to it instead of trusting its high watermark.

use std::path::{Path, PathBuf};

use crate::checkpoint;
use crate::error::{LogError, Result};

/// File name of the checkpoint inside the partition directory.
pub const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// Kafka's "no epoch" value (`UNDEFINED_EPOCH`).
pub const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's "no offset" value (`UNDEFINED_EPOCH_OFFSET`).
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

const KIND: &str = "leader-epoch";

/// One `(epoch, start offset)` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// The in-memory cache mirrored to the checkpoint file on every change.
#[derive(Debug)]
pub(crate) struct LeaderEpochFileCache {
    path: PathBuf,
    entries: Vec<EpochEntry>,
}

impl LeaderEpochFileCache {
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT_FILE);
        let mut entries = Vec::new();
        if let Some(lines) = checkpoint::read(&path, KIND)? {
            for l in lines {
                let bad = |reason: &str| LogError::CorruptCheckpoint {
                    path: path.clone(),
                    reason: reason.into(),
                };
                if l.len() != 2 || l[0] < 0 || l[0] > i32::MAX as i64 || l[1] < 0 {
                    return Err(bad("entry must be \"<epoch> <start offset>\""));
                }
                let e = EpochEntry {
                    epoch: l[0] as i32,
                    start_offset: l[1],
                };
                if let Some(last) = entries.last() {
                    let last: &EpochEntry = last;
                    if e.epoch <= last.epoch || e.start_offset < last.start_offset {
                        return Err(bad("entries not increasing"));
                    }
                }
                entries.push(e);
            }
        }
        Ok(LeaderEpochFileCache { path, entries })
    }

    fn persist(&self) -> Result<()> {
        let lines: Vec<String> = self
            .entries
            .iter()
            .map(|e| format!("{} {}", e.epoch, e.start_offset))
            .collect();
        checkpoint::write(&self.path, KIND, &lines)
    }

    pub(crate) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Record that `epoch` starts at `start_offset` (Kafka `assign`). Entries that conflict —
    /// an epoch ≥ the new one, or a start offset ≥ the new one — are removed first, because
    /// the new assignment is the authoritative history from that point on. Re-assigning the
    /// latest epoch, or an older epoch, is a no-op.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<bool> {
        if epoch < 0 || start_offset < 0 {
            return Ok(false);
        }
        if let Some(last) = self.entries.last() {
            if epoch <= last.epoch {
                return Ok(false);
            }
        }
        self.entries
            .retain(|e| e.epoch < epoch && e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.persist()?;
        Ok(true)
    }

    /// KIP-101/279 `endOffsetForEpoch`: `(largest epoch ≤ requested, end offset)`.
    pub(crate) fn end_offset_for(&self, requested: i32, log_end: i64) -> (i32, i64) {
        let undefined = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        if requested == UNDEFINED_EPOCH {
            return undefined;
        }
        match self.entries.last() {
            None => return undefined,
            Some(last) if last.epoch == requested => return (requested, log_end),
            _ => {}
        }
        let higher = self.entries.iter().find(|e| e.epoch > requested);
        let floor = self.entries.iter().rev().find(|e| e.epoch <= requested);
        match (higher, floor) {
            (None, _) => undefined,
            (Some(h), None) => (requested, h.start_offset),
            (Some(h), Some(f)) => (f.epoch, h.start_offset),
        }
    }

    /// Drop entries starting at or after `end_offset` (the log was truncated to it).
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> Result<()> {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        if self.entries.len() != before {
            self.persist()?;
        }
        Ok(())
    }

    /// The log now starts at `start_offset`: drop entries wholly below it and move the
    /// start of the epoch that covers it up to it (Kafka `truncateFromStart`).
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> Result<()> {
        let covering = self
            .entries
            .iter()
            .rposition(|e| e.start_offset <= start_offset);
        let Some(i) = covering else { return Ok(()) };
        if i == 0 && self.entries[0].start_offset == start_offset {
            return Ok(());
        }
        self.entries.drain(..i);
        self.entries[0].start_offset = start_offset;
        self.persist()
    }

    pub(crate) fn clear(&mut self) -> Result<()> {
        if !self.entries.is_empty() {
            self.entries.clear();
            self.persist()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kip101_semantics_and_persistence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = LeaderEpochFileCache::load(dir.path()).expect("load");
        assert_eq!(
            c.end_offset_for(0, 10),
            (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
        );
        assert!(c.assign(1, 0).expect("a"));
        assert!(c.assign(3, 10).expect("a"));
        assert!(!c.assign(3, 20).expect("a"), "same epoch again is a no-op");
        assert!(c.assign(5, 20).expect("a"));
        assert_eq!(c.end_offset_for(5, 30), (5, 30));
        assert_eq!(c.end_offset_for(3, 30), (3, 20));
        assert_eq!(c.end_offset_for(4, 30), (3, 20));
        assert_eq!(c.end_offset_for(2, 30), (1, 10));
        assert_eq!(c.end_offset_for(0, 30), (0, 0));
        assert_eq!(
            c.end_offset_for(6, 30),
            (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
        );

        let c2 = LeaderEpochFileCache::load(dir.path()).expect("reload");
        assert_eq!(c2.entries(), c.entries());

        c.truncate_from_end(20).expect("t");
        assert_eq!(c.latest_epoch(), Some(3));
        c.truncate_from_start(15).expect("t");
        assert_eq!(
            c.entries(),
            &[EpochEntry {
                epoch: 3,
                start_offset: 15
            }]
        );
        let c3 = LeaderEpochFileCache::load(dir.path()).expect("reload");
        assert_eq!(c3.entries(), c.entries());
    }

    #[test]
    fn assign_removes_conflicting_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = LeaderEpochFileCache::load(dir.path()).expect("load");
        c.assign(1, 0).expect("a");
        c.assign(2, 50).expect("a");
        // A newer epoch starting below epoch 2's start supersedes it.
        c.assign(4, 30).expect("a");
        assert_eq!(
            c.entries(),
            &[
                EpochEntry {
                    epoch: 1,
                    start_offset: 0
                },
                EpochEntry {
                    epoch: 4,
                    start_offset: 30
                }
            ]
        );
    }
}
