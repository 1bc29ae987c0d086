//! Idempotent-producer bookkeeping of one partition (KIP-98): for each producer id, its epoch and
//! the sequence ranges of its last few batches, so that a retried batch is answered with the
//! offsets it already has instead of being written twice, and a gap is refused.
//!
//! Rebuilt on open from the batch headers in the log, so it survives restarts.

use std::collections::{HashMap, VecDeque};

use dmq_log::BatchHeader;
use kafka_protocol::error::ResponseError;

use crate::error::BrokerError;

/// Kafka keeps the last five batches per producer (`max.in.flight.requests.per.connection` ≤ 5).
const BATCHES_KEPT: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchSeq {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchSeq>,
    /// Largest timestamp of its last batch (DescribeProducers).
    last_timestamp: i64,
}

/// One producer as DescribeProducers shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
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
}

fn last_seq(h: &BatchHeader<'_>) -> i32 {
    // Sequences wrap at i32::MAX (Kafka's DefaultRecordBatch.incrementSequence).
    let n = i64::from(h.base_sequence()) + i64::from(h.last_offset_delta());
    (n % (i64::from(i32::MAX) + 1)) as i32
}

impl ProducerStates {
    /// Checks a batch from a client before it is appended.
    pub fn check(&self, h: &BatchHeader<'_>) -> Result<SeqCheck, BrokerError> {
        let pid = h.producer_id();
        if pid < 0 {
            return Ok(SeqCheck::Append);
        }
        let epoch = h.producer_epoch();
        let first = h.base_sequence();
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

    /// Records a batch now in the log (appended by us, replicated, or found by recovery).
    pub fn record(&mut self, h: &BatchHeader<'_>) {
        let pid = h.producer_id();
        if pid < 0 || h.is_control() {
            return;
        }
        let entry = self.producers.entry(pid).or_default();
        if h.producer_epoch() != entry.epoch {
            entry.epoch = h.producer_epoch();
            entry.batches.clear();
        }
        entry.last_timestamp = h.max_timestamp();
        entry.batches.push_back(BatchSeq {
            first_seq: h.base_sequence(),
            last_seq: last_seq(h),
            base_offset: h.base_offset(),
            last_offset: h.last_offset(),
        });
        while entry.batches.len() > BATCHES_KEPT {
            entry.batches.pop_front();
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
                })
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// Forgets everything at or after `offset` (log truncation).
    pub fn truncate_from(&mut self, offset: i64) {
        for e in self.producers.values_mut() {
            e.batches.retain(|b| b.last_offset < offset);
        }
        self.producers.retain(|_, e| !e.batches.is_empty());
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
        s.record(&BatchHeader::new(&b0).expect("header"));
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
}
