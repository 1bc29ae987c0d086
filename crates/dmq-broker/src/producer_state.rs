//! Idempotent-producer and transaction bookkeeping of one partition (KIP-98): for each
//! producer id, its epoch and the sequence ranges of its last few batches, so that a retried
//! batch is answered with the offsets it already has instead of being written twice, and a gap
//! is refused; and the partition's side of transactions (Kafka's `ProducerStateManager` and
//! `TransactionIndex`):
//!
//! ```text
//!   offset:  10  11  12  13  14  15  16
//!   batch:   T1  d   T1  T2  A1  T2  C2      T = transactional data, A/C = abort/commit marker
//!            └─ pid 1 ongoing ─┘              pid 1: first offset 10, aborted at 14
//!                        └ pid 2 ongoing ─┘   pid 2: first offset 13, committed at 16
//! ```
//!
//! - *ongoing* transactions: producer id → first offset, begun by the producer's first
//!   transactional data batch while none is open here, ended by its marker;
//! - *unreplicated* ones: ended by a marker the high watermark has not passed yet. They still
//!   hold the last stable offset back (Kafka's `unreplicatedTxns`): until the marker is
//!   committed, a new leader may not have it, and the outcome is not decided;
//! - *aborted* ones: `(producer id, first offset, marker offset)`, which `read_committed`
//!   fetches list so that consumers drop the aborted records.
//!
//! The last stable offset (LSO) is `min(high watermark, first unstable offset)`: everything
//! below it is decided, which is what `read_committed` consumers may read.
//!
//! Derived from the batch headers (and the markers' one record) in the log: followers build
//! the same state from the same batches in `append_replicated`, so a new leader has it. On
//! disk, like Kafka, the aborted list is kept per segment in `.txnindex` files
//! (`dmq_log::txn_index`) and the rest in producer snapshots (`producer_snapshot`), so a
//! restart scans only the log after the newest snapshot.

use std::collections::{HashMap, VecDeque};

use dmq_log::batch::{control_record, ControlType};
use dmq_log::BatchHeader;
use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};

use crate::error::BrokerError;

/// Kafka keeps the last five batches per producer (`max.in.flight.requests.per.connection` ≤ 5).
const BATCHES_KEPT: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct BatchSeq {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchSeq>,
    /// Largest timestamp of its last batch (DescribeProducers).
    last_timestamp: i64,
    /// The coordinator epoch of the producer's last marker here: a marker from an older
    /// coordinator (a deposed one still retrying) is refused.
    coordinator_epoch: i32,
    /// Offset of the producer's last marker here; keeps an entry with no data batches (its
    /// epoch was raised by a marker alone) alive across [`ProducerStates::truncate_from`].
    last_marker_offset: Option<i64>,
}

/// A transaction aborted at this partition: `read_committed` consumers skip the producer's
/// records from `first_offset` up to the abort marker at `last_offset` (Kafka's `AbortedTxn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// A transaction whose marker is in the log but not yet below the high watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct CompletedTxn {
    producer_id: i64,
    first_offset: i64,
    /// The marker's offset.
    last_offset: i64,
}

/// One producer as DescribeProducers shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    /// First offset of its open transaction here, -1 when none (what
    /// `kafka-transactions.sh find-hanging` looks for).
    pub current_txn_start_offset: i64,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    /// Not idempotent, or the next batch in sequence: append it.
    Append,
    /// Already in the log at this base offset: answer success without appending.
    Duplicate { base_offset: i64 },
}

#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
    /// Producer id → first offset of its open transaction here. Few entries (one per producer
    /// in a transaction right now), so the minimum is found by a scan.
    ongoing: HashMap<i64, i64>,
    /// Transactions ended by a marker the high watermark has not passed, in marker order.
    unreplicated: VecDeque<CompletedTxn>,
    /// Aborted transactions in marker (`last_offset`) order, down to the log start: like
    /// Kafka's `.txnindex` it grows with the log and shrinks with retention
    /// ([`ProducerStates::drop_aborted_before`]).
    aborted: VecDeque<AbortedTxn>,
}

fn last_seq(h: &BatchHeader<'_>) -> i32 {
    // Sequences wrap at i32::MAX (Kafka's DefaultRecordBatch.incrementSequence).
    let n = i64::from(h.base_sequence()) + i64::from(h.last_offset_delta());
    (n % (i64::from(i32::MAX) + 1)) as i32
}

impl ProducerStates {
    /// Checks a batch from a client before it is appended.
    pub fn check(&self, h: &BatchHeader<'_>) -> Result<SeqCheck, BrokerError> {
        if h.is_control() {
            // Only the transaction coordinator writes markers (WriteTxnMarkers), never a
            // producer: a forged marker would decide someone else's transaction.
            return Err(BrokerError::kafka(
                ResponseError::InvalidRecord,
                format!(
                    "producer {}: clients may not append control batches",
                    h.producer_id()
                ),
            ));
        }
        let pid = h.producer_id();
        if pid < 0 {
            return Ok(SeqCheck::Append);
        }
        let epoch = h.producer_epoch();
        let first = h.base_sequence();
        if !h.is_transactional() && self.ongoing.contains_key(&pid) {
            return Err(BrokerError::kafka(
                ResponseError::InvalidTxnState,
                format!("producer {pid} sent a non-transactional batch inside its transaction"),
            ));
        }
        let Some(entry) = self.producers.get(&pid) else {
            // Unknown producer (new, or its state expired with retention): any sequence starts it.
            return Ok(SeqCheck::Append);
        };
        if epoch < entry.epoch {
            return Err(BrokerError::kafka(
                ResponseError::InvalidProducerEpoch,
                format!(
                    "producer {pid} epoch {epoch} is older than the current epoch {}",
                    entry.epoch
                ),
            ));
        }
        if epoch > entry.epoch {
            if first != 0 {
                return Err(BrokerError::kafka(
                    ResponseError::OutOfOrderSequenceNumber,
                    format!(
                        "producer {pid}: a new epoch {epoch} must start at sequence 0, got {first}"
                    ),
                ));
            }
            return Ok(SeqCheck::Append);
        }
        let last = last_seq(h);
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first && b.last_seq == last)
        {
            return Ok(SeqCheck::Duplicate {
                base_offset: b.base_offset,
            });
        }
        let expected = entry.batches.back().map_or(first, |b| {
            if b.last_seq == i32::MAX {
                0
            } else {
                b.last_seq + 1
            }
        });
        if first != expected {
            return Err(BrokerError::kafka(
                ResponseError::OutOfOrderSequenceNumber,
                format!("producer {pid} epoch {epoch}: expected sequence {expected}, got {first}"),
            ));
        }
        Ok(SeqCheck::Append)
    }

    /// Checks a transaction marker (WriteTxnMarkers) before the leader appends it: a marker of
    /// an epoch older than the producer's current one here is refused with
    /// INVALID_PRODUCER_EPOCH (the producer was fenced since), one from an older coordinator
    /// with TRANSACTION_COORDINATOR_FENCED (Kafka's `appendEndTxnMarker`).
    pub fn check_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), BrokerError> {
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if producer_epoch < entry.epoch {
            return Err(BrokerError::kafka(
                ResponseError::InvalidProducerEpoch,
                format!(
                    "marker for producer {producer_id} epoch {producer_epoch}: the current epoch is {}",
                    entry.epoch
                ),
            ));
        }
        if coordinator_epoch < entry.coordinator_epoch {
            return Err(BrokerError::kafka(
                ResponseError::TransactionCoordinatorFenced,
                format!(
                    "marker for producer {producer_id} from coordinator epoch {coordinator_epoch}: \
                     {} wrote here already",
                    entry.coordinator_epoch
                ),
            ));
        }
        Ok(())
    }

    /// Records a whole batch now in the log (appended by us, replicated, or found by
    /// recovery): its sequence range, and the transaction it begins or (a marker) ends.
    /// Returns the transaction this batch aborted, if it is an abort marker that ended one
    /// (for the segment's `.txnindex`).
    pub fn record(&mut self, batch: &[u8]) -> Option<AbortedTxn> {
        let h = BatchHeader::new(batch).ok()?;
        let pid = h.producer_id();
        if pid < 0 {
            return None;
        }
        if h.is_control() {
            // A control batch that is not a well-formed marker decides nothing (Kafka skips
            // unknown control types too).
            let marker = control_record(batch)?;
            return self.end_transaction(&h, marker.kind, marker.coordinator_epoch);
        }
        let entry = self.producers.entry(pid).or_default();
        if h.producer_epoch() != entry.epoch {
            entry.epoch = h.producer_epoch();
            entry.batches.clear();
        }
        entry.last_timestamp = h.max_timestamp();
        entry.batches.push_back(BatchSeq {
            first_seq: h.base_sequence(),
            last_seq: last_seq(&h),
            base_offset: h.base_offset(),
            last_offset: h.last_offset(),
        });
        while entry.batches.len() > BATCHES_KEPT {
            entry.batches.pop_front();
        }
        if h.is_transactional() {
            self.ongoing.entry(pid).or_insert(h.base_offset());
        }
        None
    }

    /// A marker at `h.base_offset()`: ends the producer's open transaction (if any) and raises
    /// its epoch here to the marker's, which fences older-epoch data batches (a zombie of a
    /// transaction the coordinator timed out and aborted with a bumped epoch).
    fn end_transaction(
        &mut self,
        h: &BatchHeader<'_>,
        kind: ControlType,
        coordinator_epoch: i32,
    ) -> Option<AbortedTxn> {
        let pid = h.producer_id();
        let marker_offset = h.base_offset();
        let entry = self.producers.entry(pid).or_default();
        if h.producer_epoch() != entry.epoch {
            entry.epoch = h.producer_epoch();
            entry.batches.clear();
        }
        entry.coordinator_epoch = entry.coordinator_epoch.max(coordinator_epoch);
        entry.last_marker_offset = Some(marker_offset);
        // A marker without an open transaction here (the coordinator retrying, or a partition
        // added to the transaction but never written) is legal and decides nothing.
        let first_offset = self.ongoing.remove(&pid)?;
        self.unreplicated.push_back(CompletedTxn {
            producer_id: pid,
            first_offset,
            last_offset: marker_offset,
        });
        if kind != ControlType::Abort {
            return None;
        }
        let aborted = AbortedTxn {
            producer_id: pid,
            first_offset,
            last_offset: marker_offset,
        };
        self.aborted.push_back(aborted);
        Some(aborted)
    }

    /// The state as of the log end, without the aborted list (which the segments' `.txnindex`
    /// files hold): the body of a producer snapshot (see `producer_snapshot`).
    pub fn snapshot_body(&self) -> Vec<u8> {
        let mut producers: Vec<_> = self.producers.iter().collect();
        producers.sort_by_key(|(pid, _)| **pid);
        let mut ongoing: Vec<_> = self.ongoing.iter().map(|(p, f)| (*p, *f)).collect();
        ongoing.sort_unstable();
        let body = serde_json::json!({
            "producers": producers,
            "ongoing": ongoing,
            "unreplicated": self.unreplicated,
        });
        body.to_string().into_bytes()
    }

    /// The state a [`ProducerStates::snapshot_body`] holds, with `aborted` (from the
    /// `.txnindex` files, in marker order) as its aborted list.
    pub fn from_snapshot_body(body: &[u8], aborted: Vec<AbortedTxn>) -> Option<ProducerStates> {
        #[derive(Deserialize)]
        struct Body {
            producers: Vec<(i64, ProducerEntry)>,
            ongoing: Vec<(i64, i64)>,
            unreplicated: VecDeque<CompletedTxn>,
        }
        let b: Body = serde_json::from_slice(body).ok()?;
        Some(ProducerStates {
            producers: b.producers.into_iter().collect(),
            ongoing: b.ongoing.into_iter().collect(),
            unreplicated: b.unreplicated,
            aborted: aborted.into(),
        })
    }

    /// The high watermark is now `hw`: transactions whose marker is below it are decided for
    /// good and stop holding the last stable offset back.
    pub fn on_high_watermark(&mut self, hw: i64) {
        while self
            .unreplicated
            .front()
            .is_some_and(|t| t.last_offset < hw)
        {
            self.unreplicated.pop_front();
        }
    }

    /// The smallest first offset of a transaction not decided yet (open, or its marker not
    /// below the high watermark): `read_committed` reads stop there.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        let ongoing = self.ongoing.values().copied();
        let unreplicated = self.unreplicated.iter().map(|t| t.first_offset);
        ongoing.chain(unreplicated).min()
    }

    /// First offset of `producer_id`'s open transaction here, if it has one.
    pub fn ongoing_transaction(&self, producer_id: i64) -> Option<i64> {
        self.ongoing.get(&producer_id).copied()
    }

    /// Aborted transactions overlapping the offsets `[from, upper)` (Kafka's
    /// `collectAbortedTxns`): those whose marker is at or after `from` and which began below
    /// `upper`, in marker order.
    pub fn aborted_between(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|t| t.last_offset < from);
        self.aborted
            .iter()
            .skip(start)
            .filter(|t| t.first_offset < upper)
            .copied()
            .collect()
    }

    /// The log start moved to `log_start` (retention, DeleteRecords): aborted transactions
    /// whose marker is gone with it concern no fetch any more.
    pub fn drop_aborted_before(&mut self, log_start: i64) {
        while self
            .aborted
            .front()
            .is_some_and(|t| t.last_offset < log_start)
        {
            self.aborted.pop_front();
        }
    }

    /// Every producer with a batch still remembered, by producer id.
    pub fn active(&self) -> Vec<ActiveProducer> {
        let mut out: Vec<ActiveProducer> = self
            .producers
            .iter()
            .filter_map(|(pid, e)| {
                let last = e.batches.back()?;
                Some(ActiveProducer {
                    producer_id: *pid,
                    epoch: e.epoch,
                    last_sequence: last.last_seq,
                    last_timestamp: e.last_timestamp,
                    current_txn_start_offset: self.ongoing.get(pid).copied().unwrap_or(-1),
                })
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// Forgets everything at or after `offset` (log truncation): transactions begun there
    /// vanish, and one whose marker is undone is open again. Exact for transactions whose marker
    /// is above the high watermark (the only ones a truncation can undo, KIP-279); the
    /// partition rebuilds from the log on truncation anyway, which is always exact.
    pub fn truncate_from(&mut self, offset: i64) {
        for e in self.producers.values_mut() {
            e.batches.retain(|b| b.last_offset < offset);
            if e.last_marker_offset.is_some_and(|m| m >= offset) {
                e.last_marker_offset = None;
            }
        }
        self.producers
            .retain(|_, e| !e.batches.is_empty() || e.last_marker_offset.is_some());
        self.ongoing.retain(|_, first| *first < offset);
        let mut reopened = Vec::new();
        self.unreplicated.retain(|t| {
            if t.last_offset >= offset && t.first_offset < offset {
                reopened.push((t.producer_id, t.first_offset));
            }
            t.last_offset < offset
        });
        self.aborted.retain(|t| {
            if t.last_offset >= offset && t.first_offset < offset {
                reopened.push((t.producer_id, t.first_offset));
            }
            t.last_offset < offset
        });
        self.ongoing.extend(reopened);
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmq_log::batch::{control_batch, BatchHeaderMut};
    use dmq_log::RecordBatchBuilder;

    fn batch(pid: i64, epoch: i16, seq: i32, records: usize, base: i64) -> Vec<u8> {
        let mut b = RecordBatchBuilder::new(base).producer(pid, epoch, seq);
        for i in 0..records {
            b.push(0, Some(b"k"), Some(format!("v{i}").as_bytes()), &[]);
        }
        b.build()
    }

    fn check(s: &ProducerStates, b: &[u8]) -> Result<SeqCheck, BrokerError> {
        s.check(&BatchHeader::new(b).expect("header"))
    }

    #[test]
    fn retries_are_duplicates_and_gaps_are_refused() {
        let mut s = ProducerStates::default();
        let b0 = batch(7, 0, 0, 3, 0);
        assert_eq!(check(&s, &b0).ok(), Some(SeqCheck::Append));
        s.record(&b0);
        // The same batch again (a retry after a lost response) is a duplicate at offset 0.
        assert_eq!(
            check(&s, &batch(7, 0, 0, 3, 99)).ok(),
            Some(SeqCheck::Duplicate { base_offset: 0 })
        );
        // Next in sequence is fine; skipping ahead is not.
        assert_eq!(
            check(&s, &batch(7, 0, 3, 1, 3)).ok(),
            Some(SeqCheck::Append)
        );
        let gap = check(&s, &batch(7, 0, 5, 1, 3)).expect_err("gap");
        assert_eq!(
            gap.kafka_code(),
            ResponseError::OutOfOrderSequenceNumber.code()
        );
        // An older epoch is fenced; a newer one must start at 0.
        let old = check(&s, &batch(7, -1, 3, 1, 3));
        assert!(old.is_err());
        assert!(check(&s, &batch(7, 1, 4, 1, 3)).is_err());
        assert_eq!(
            check(&s, &batch(7, 1, 0, 1, 3)).ok(),
            Some(SeqCheck::Append)
        );
        // Non-idempotent batches are never checked.
        assert_eq!(
            check(&s, &batch(-1, -1, -1, 2, 0)).ok(),
            Some(SeqCheck::Append)
        );
        s.truncate_from(0);
        assert!(s.is_empty());
    }

    /// A transactional data batch of `records` records at `base` (the transactional attribute
    /// bit is inside the CRC, so the batch is rebuilt rather than patched).
    fn txn_batch(pid: i64, epoch: i16, seq: i32, records: usize, base: i64) -> Vec<u8> {
        let plain = batch(pid, epoch, seq, records, base);
        let mut bytes = plain.clone();
        let attributes = BatchHeader::new(&plain).expect("header").attributes() | 0x10;
        bytes[21..23].copy_from_slice(&attributes.to_be_bytes());
        let crc = dmq_log::batch::compute_crc(&bytes);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    fn marker(pid: i64, epoch: i16, commit: bool, at: i64) -> Vec<u8> {
        let mut m = control_batch(pid, epoch, commit, 0, 0);
        BatchHeaderMut::new(&mut m)
            .expect("header")
            .set_base_offset(at);
        m
    }

    fn code(r: Result<SeqCheck, BrokerError>) -> i16 {
        r.map_or_else(|e| e.kafka_code(), |_| 0)
    }

    /// KIP-98: the first transactional batch opens a transaction, its marker closes it; the
    /// LSO is held at the first offset until the marker is below the high watermark; an abort
    /// lands in the aborted list with its range.
    #[test]
    fn transactions_open_close_and_hold_the_first_unstable_offset() {
        let mut s = ProducerStates::default();
        s.record(&batch(9, 0, 0, 2, 0)); // 0-1: idempotent, not transactional
        assert_eq!(s.first_unstable_offset(), None);
        s.record(&txn_batch(1, 0, 0, 2, 2)); // 2-3: pid 1 opens at 2
        s.record(&txn_batch(2, 0, 0, 1, 4)); // 4: pid 2 opens at 4
        s.record(&txn_batch(1, 0, 2, 1, 5)); // 5: pid 1 continues
        assert_eq!(s.ongoing_transaction(1), Some(2));
        assert_eq!(s.ongoing_transaction(2), Some(4));
        assert_eq!(s.first_unstable_offset(), Some(2));
        // A non-transactional batch inside the transaction is refused.
        assert_eq!(
            code(check(&s, &batch(1, 0, 3, 1, 6))),
            ResponseError::InvalidTxnState.code()
        );
        s.record(&marker(1, 0, false, 6)); // pid 1 aborted at 6
        assert_eq!(s.ongoing_transaction(1), None);
        assert_eq!(
            s.first_unstable_offset(),
            Some(2),
            "the abort marker is not replicated yet"
        );
        s.on_high_watermark(6);
        assert_eq!(s.first_unstable_offset(), Some(2), "HW 6 is not past 6");
        s.on_high_watermark(7);
        assert_eq!(s.first_unstable_offset(), Some(4), "pid 2 still open");
        s.record(&marker(2, 0, true, 7)); // pid 2 committed at 7
        s.on_high_watermark(8);
        assert_eq!(s.first_unstable_offset(), None);
        let aborted = AbortedTxn {
            producer_id: 1,
            first_offset: 2,
            last_offset: 6,
        };
        assert_eq!(
            s.aborted_between(0, 8),
            vec![aborted],
            "commits are not listed"
        );
        assert_eq!(s.aborted_between(6, 100), vec![aborted]);
        assert_eq!(s.aborted_between(7, 100), vec![], "ended before the range");
        assert_eq!(s.aborted_between(0, 2), vec![], "begins at the range's end");
        s.drop_aborted_before(6);
        assert_eq!(s.aborted_between(0, 8), vec![aborted]);
        s.drop_aborted_before(7);
        assert_eq!(s.aborted_between(0, 8), vec![]);
        // A marker with no open transaction decides nothing.
        s.record(&marker(3, 0, false, 8));
        assert_eq!(s.first_unstable_offset(), None);
        assert_eq!(s.aborted_between(0, 100), vec![]);
    }

    /// KIP-98 fencing at the partition: a marker raises the producer's epoch here, so data of
    /// the older epoch (a zombie) is refused, and so is a marker of an older epoch.
    #[test]
    fn a_marker_of_a_newer_epoch_fences_the_older_one() {
        let mut s = ProducerStates::default();
        s.record(&txn_batch(1, 0, 0, 1, 0));
        assert!(s.check_marker(1, 0, 0).is_ok());
        s.record(&marker(1, 1, false, 1)); // the coordinator timed it out with a bumped epoch
        assert_eq!(
            code(check(&s, &txn_batch(1, 0, 1, 1, 2))),
            ResponseError::InvalidProducerEpoch.code()
        );
        let old_marker = s.check_marker(1, 0, 0).expect_err("older epoch");
        assert_eq!(
            old_marker.kafka_code(),
            ResponseError::InvalidProducerEpoch.code()
        );
        assert_eq!(code(check(&s, &txn_batch(1, 1, 0, 1, 2))), 0);
        // Clients never write markers.
        assert_eq!(
            code(check(&s, &marker(1, 1, true, 2))),
            ResponseError::InvalidRecord.code()
        );
        // A marker from an older coordinator is refused.
        let mut m = control_batch(1, 1, true, 5, 0);
        BatchHeaderMut::new(&mut m).expect("h").set_base_offset(2);
        s.record(&m);
        assert_eq!(
            s.check_marker(1, 1, 4).map_err(|e| e.kafka_code()),
            Err(ResponseError::TransactionCoordinatorFenced.code())
        );
        // The fence survives a truncation above the marker.
        s.truncate_from(3);
        assert_eq!(
            code(check(&s, &txn_batch(1, 0, 1, 1, 3))),
            ResponseError::InvalidProducerEpoch.code()
        );
    }

    /// Truncation: a transaction begun at or after the point vanishes; one whose marker is cut
    /// off is open again.
    #[test]
    fn truncation_reopens_transactions_whose_marker_is_cut_off() {
        let mut s = ProducerStates::default();
        s.record(&txn_batch(1, 0, 0, 2, 0)); // 0-1
        s.record(&marker(1, 0, false, 2)); // aborted at 2
        s.record(&txn_batch(2, 0, 0, 1, 3)); // 3
        s.truncate_from(3);
        assert_eq!(s.ongoing_transaction(2), None);
        assert_eq!(s.aborted_between(0, 10).len(), 1);
        s.truncate_from(2);
        assert_eq!(s.aborted_between(0, 10), vec![]);
        assert_eq!(s.ongoing_transaction(1), Some(0));
        assert_eq!(s.first_unstable_offset(), Some(0));
        s.truncate_from(0);
        assert_eq!(s.first_unstable_offset(), None);
        assert!(s.is_empty());
    }
}
