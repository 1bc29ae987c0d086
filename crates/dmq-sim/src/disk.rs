//! The simulated disk of one broker: per partition a log of records, its durable prefix, the
//! leader-epoch cache and the high-watermark checkpoint.
//!
//! ```text
//!   records:  [0 .. flushed)  durable      [flushed .. end)  page cache only
//!   epochs:   (epoch, start offset), strictly increasing; durable (checkpoint file)
//!   hw_checkpoint: durable, rewritten every 5 s when the HW moved
//! ```
//!
//! It follows `dmq-log` where the replication rules can see it: one batch per record, offsets
//! from 0 (no retention, no DeleteRecords), `end_offset_for_epoch` with Kafka's semantics,
//! `truncate_to` that trims the epoch cache even when no data goes (and makes the log durable,
//! as the real one fsyncs), epochs of replicated batches entering the cache, and recovery that
//! trims the cache to the recovered end. A crash of the process keeps the page cache; a power
//! loss keeps the durable prefix plus a random part of the tail, whose last record may be torn
//! (recovery then drops it, as the real recovery drops a batch whose CRC fails).

use std::collections::BTreeMap;

use dmq_replica::LogView;

use crate::msg::Rec;
use crate::rng::{mix64, Rng};

/// A follower's append that does not start at the log end (`dmq-log`'s OffsetGap/Overlap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetMismatch {
    pub log_end: i64,
    pub base_offset: i64,
}

/// One partition's log.
#[derive(Debug, Clone, Default)]
pub struct SimLog {
    records: Vec<Rec>,
    /// `prefix[i]`: a hash of `records[..=i]`, so two logs compare up to any offset in O(1).
    prefix: Vec<u64>,
    /// Records below this are durable.
    flushed: usize,
    /// The leader-epoch cache: `(epoch, start offset)`.
    epochs: Vec<(i32, i64)>,
    /// The high watermark last checkpointed, if ever.
    pub hw_checkpoint: Option<i64>,
}

fn record_hash(previous: u64, r: Rec) -> u64 {
    mix64(previous ^ mix64(r.value ^ (u64::from(r.epoch as u32) << 48)))
}

impl SimLog {
    pub fn end(&self) -> i64 {
        self.records.len() as i64
    }

    pub fn get(&self, offset: i64) -> Option<Rec> {
        usize::try_from(offset)
            .ok()
            .and_then(|i| self.records.get(i))
            .copied()
    }

    /// The hash of the first `n` records (`n` ≤ the log end).
    pub fn prefix_hash(&self, n: i64) -> u64 {
        match usize::try_from(n) {
            Ok(0) | Err(_) => 0,
            Ok(n) => self.prefix[n - 1],
        }
    }

    /// The first offset below `n` where the two logs differ, if any (both must reach `n`).
    pub fn first_difference(&self, other: &SimLog, n: i64) -> Option<i64> {
        if self.prefix_hash(n) == other.prefix_hash(n) {
            return None;
        }
        // Binary search on the prefix hashes: equal prefixes are equal below.
        let (mut lo, mut hi) = (0i64, n);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if self.prefix_hash(mid) == other.prefix_hash(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(lo)
    }

    pub fn epochs(&self) -> &[(i32, i64)] {
        &self.epochs
    }

    pub fn unflushed(&self) -> usize {
        self.records.len() - self.flushed
    }

    fn push(&mut self, r: Rec) {
        let previous = self.prefix.last().copied().unwrap_or(0);
        self.records.push(r);
        self.prefix.push(record_hash(previous, r));
    }

    /// A leader's append in `epoch`; returns the record's offset.
    pub fn append_as_leader(&mut self, epoch: i32, value: u64) -> i64 {
        let offset = self.end();
        self.push(Rec { epoch, value });
        self.maybe_assign_epoch(epoch, offset);
        offset
    }

    /// A follower's append of records fetched from `base_offset`, which must be the log end.
    /// Their epochs extend the epoch cache.
    pub fn append_replicated(
        &mut self,
        base_offset: i64,
        recs: &[Rec],
    ) -> Result<(), OffsetMismatch> {
        if base_offset != self.end() {
            return Err(OffsetMismatch {
                log_end: self.end(),
                base_offset,
            });
        }
        for r in recs {
            let offset = self.end();
            self.push(*r);
            self.maybe_assign_epoch(r.epoch, offset);
        }
        Ok(())
    }

    fn maybe_assign_epoch(&mut self, epoch: i32, start: i64) {
        if self.latest_epoch().is_none_or(|l| epoch > l) {
            self.assign_epoch(epoch, start);
        }
    }

    /// `LeaderEpochFileCache::assign`: entries at or after the new one (by epoch or start)
    /// go; re-assigning the latest or an older epoch is a no-op.
    pub fn assign_epoch(&mut self, epoch: i32, start: i64) {
        if epoch < 0 || start < 0 || self.latest_epoch().is_some_and(|l| epoch <= l) {
            return;
        }
        self.epochs.retain(|(e, s)| *e < epoch && *s < start);
        self.epochs.push((epoch, start));
    }

    /// `Log::truncate_to`: removes everything at and after `offset`; the epoch cache forgets
    /// epochs starting at or after the new end, also when no data goes. Returns the new end.
    pub fn truncate_to(&mut self, offset: i64) -> i64 {
        if offset < self.end() {
            let keep = usize::try_from(offset.max(0)).unwrap_or(0);
            self.records.truncate(keep);
            self.prefix.truncate(keep);
            // The truncation is fsynced; what stays was written before.
            self.flushed = self.flushed.min(keep);
        }
        // `truncate_from_end(offset)`: with one record per batch the new end is `offset`
        // when data went, and the cache is cut at `offset` when none did.
        self.epochs.retain(|(_, s)| *s < offset);
        self.end()
    }

    /// Records from `from` up to `upper` (exclusive), at most `max`.
    pub fn read(&self, from: i64, upper: i64, max: usize) -> Vec<Rec> {
        let (Ok(from), Ok(upper)) = (usize::try_from(from), usize::try_from(upper)) else {
            return Vec::new();
        };
        let upper = upper.min(self.records.len()).min(from.saturating_add(max));
        if from >= upper {
            return Vec::new();
        }
        self.records[from..upper].to_vec()
    }

    /// The OS wrote everything back.
    pub fn flush(&mut self) {
        self.flushed = self.records.len();
    }

    /// The process died (`power_loss`: with its host). Returns how many records were lost.
    pub fn crash(&mut self, power_loss: bool, rng: &mut Rng) -> usize {
        let before = self.records.len();
        if power_loss {
            // Some of the dirty pages may have reached the disk; the last of them torn.
            let mut keep = self.flushed + rng.below(self.unflushed() as u64 + 1) as usize;
            if keep > self.flushed && rng.chance(0.5) {
                keep -= 1;
            }
            self.records.truncate(keep);
            self.prefix.truncate(keep);
        }
        // Recovery: the epoch cache is cut to the recovered end (`truncate_from_end`).
        let end = self.end();
        self.epochs.retain(|(_, s)| *s < end);
        self.flushed = self.records.len();
        before - self.records.len()
    }
}

impl LogView for SimLog {
    fn log_start_offset(&self) -> i64 {
        0
    }

    fn log_end_offset(&self) -> i64 {
        self.end()
    }

    fn latest_epoch(&self) -> Option<i32> {
        self.epochs.last().map(|e| e.0)
    }

    /// `LeaderEpochFileCache::end_offset_for` (Kafka's semantics, including an epoch older
    /// than the first known one answering that first one's start).
    fn end_offset_for_epoch(&self, requested: i32) -> (i32, i64) {
        let undefined = (-1, -1);
        if requested < 0 {
            return undefined;
        }
        match self.epochs.last() {
            None => return undefined,
            Some((last, _)) if *last == requested => return (requested, self.end()),
            _ => {}
        }
        let higher = self.epochs.iter().find(|(e, _)| *e > requested);
        let floor = self.epochs.iter().rev().find(|(e, _)| *e <= requested);
        match (higher, floor) {
            (None, _) => undefined,
            (Some((_, start)), None) => (requested, *start),
            (Some((_, start)), Some((e, _))) => (*e, *start),
        }
    }
}

/// Everything one broker keeps across crashes.
#[derive(Debug, Clone, Default)]
pub struct Disk {
    pub logs: BTreeMap<i32, SimLog>,
}

impl Disk {
    /// A crash of the broker's process (`power_loss`: of its host too). Returns the records lost.
    pub fn crash(&mut self, power_loss: bool, rng: &mut Rng) -> usize {
        self.logs
            .values_mut()
            .map(|l| l.crash(power_loss, rng))
            .sum()
    }

    pub fn flush(&mut self) {
        for l in self.logs.values_mut() {
            l.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(epochs: &[(i32, i64)], end: i64) -> SimLog {
        let mut l = SimLog::default();
        for o in 0..end {
            let epoch = epochs
                .iter()
                .rev()
                .find(|(_, s)| *s <= o)
                .map_or(0, |e| e.0);
            l.append_as_leader(epoch, o as u64);
        }
        for (e, s) in epochs {
            l.assign_epoch(*e, *s);
        }
        l
    }

    #[test]
    fn kip101_end_offset_for_epoch_matches_dmq_log() {
        // Epochs 1 at 0, 3 at 10, 5 at 20; end 30.
        let l = log(&[(1, 0), (3, 10), (5, 20)], 30);
        // Rows: (requested, answer); the same table as dmq-log's epoch cache test.
        for (asked, want) in [
            (5, (5, 30)),
            (4, (3, 20)),
            (3, (3, 20)),
            (2, (1, 10)),
            (0, (0, 0)),
            (6, (-1, -1)),
            (-1, (-1, -1)),
        ] {
            assert_eq!(l.end_offset_for_epoch(asked), want, "epoch {asked}");
        }
    }

    #[test]
    fn truncate_to_the_end_trims_an_empty_epoch_and_crashes_lose_the_tail() {
        let mut l = log(&[(0, 0)], 5);
        l.assign_epoch(2, 5);
        assert_eq!(l.truncate_to(5), 5);
        assert_eq!(l.epochs(), &[(0, 0)]);
        l.assign_epoch(3, 5);
        l.append_as_leader(3, 99);
        l.flush();
        for v in 0..4 {
            l.append_as_leader(3, 100 + v);
        }
        assert_eq!(l.truncate_to(7), 7);
        assert_eq!(l.epochs(), &[(0, 0), (3, 5)]);
        let mut rng = Rng::new(1);
        let mut c = l.clone();
        c.crash(false, &mut rng);
        assert_eq!(c.end(), 7, "a process crash keeps the page cache");
        l.crash(true, &mut rng);
        assert!((6..=7).contains(&l.end()), "durable prefix kept");
        let mut other = log(&[(0, 0)], 5);
        other.assign_epoch(3, 5);
        other.append_as_leader(3, 99);
        assert_eq!(l.first_difference(&other, 6), None);
        other.truncate_to(5);
        other.append_as_leader(3, 1);
        assert_eq!(l.first_difference(&other, 6), Some(5));
    }
}
