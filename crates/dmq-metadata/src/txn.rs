//! The transaction state machine (Kafka's `TransactionCoordinator` decisions, KIP-98/KIP-447):
//! pure functions over the transactions of the metadata state, applied in log order.
//! The broker that coordinates a transactional id proposes the [`TxnOp`]s; markers are
//! written by that broker between `Prepare*` and `Complete`.

use std::collections::BTreeMap;

use dmq_types::model::Topic;
use dmq_types::txn::{
    Transaction, TxnError, TxnOffset, TxnOp, TxnStatus, TRANSACTION_MAX_TIMEOUT_MS,
};

/// An op refused, and why (the state may still have changed: an `Init` that finds a
/// transaction open aborts it and answers CONCURRENT_TRANSACTIONS until the abort completes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRefusal {
    pub error: TxnError,
    pub message: String,
}

fn refuse(error: TxnError, message: impl Into<String>) -> TxnRefusal {
    TxnRefusal {
        error,
        message: message.into(),
    }
}

/// What an op did: the transaction after it, and the offsets a commit decision makes visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnApplied {
    pub transaction: Transaction,
    pub committed_offsets: Vec<TxnOffset>,
}

/// The transactions of the metadata state, and what they need from the rest of it.
pub struct Txns<'a> {
    pub transactions: &'a mut BTreeMap<String, Transaction>,
    pub next_producer_id: &'a mut i64,
    pub topics: &'a BTreeMap<String, Topic>,
}

impl Txns<'_> {
    /// Applies one op. Deterministic: depends only on the state and the op.
    pub fn apply(&mut self, op: &TxnOp) -> Result<TxnApplied, TxnRefusal> {
        let id = op.transactional_id();
        if id.is_empty() {
            return Err(refuse(
                TxnError::InvalidTxnState,
                "the transactional id is empty",
            ));
        }
        if let TxnOp::Init {
            transactional_id,
            timeout_ms,
            producer_id,
            producer_epoch,
            now_ms,
        } = op
        {
            return self.init(
                transactional_id,
                *timeout_ms,
                *producer_id,
                *producer_epoch,
                *now_ms,
            );
        }
        if let TxnOp::Expire {
            transactional_id,
            last_update_ms,
        } = op
        {
            let Some(t) = self.transactions.get(transactional_id) else {
                return Err(refuse(TxnError::TransactionalIdNotFound, "already gone"));
            };
            if t.last_update_ms != *last_update_ms
                || matches!(t.status, TxnStatus::Ongoing)
                || t.status.is_prepared()
            {
                return Err(refuse(
                    TxnError::InvalidTxnState,
                    "in use again since it was found idle",
                ));
            }
            let t = self
                .transactions
                .remove(transactional_id)
                .ok_or_else(|| refuse(TxnError::TransactionalIdNotFound, "already gone"))?;
            return Ok(applied(t));
        }
        let topics = self.topics;
        let Some(t) = self.transactions.get_mut(id) else {
            return Err(refuse(
                TxnError::InvalidProducerIdMapping,
                format!("transactional id {id:?} has no producer id (InitProducerId first)"),
            ));
        };
        match op {
            TxnOp::Init { .. } | TxnOp::Expire { .. } => unreachable!("handled above"),
            TxnOp::AddPartitions {
                producer_id,
                producer_epoch,
                partitions,
                now_ms,
                ..
            } => {
                check_producer(t, *producer_id, *producer_epoch)?;
                for p in partitions {
                    let known = topics.get(&p.topic).is_some_and(|topic| {
                        p.partition >= 0 && (p.partition as usize) < topic.partitions.len()
                    });
                    if !known {
                        return Err(refuse(
                            TxnError::UnknownTopicOrPartition,
                            format!("{}-{} does not exist", p.topic, p.partition),
                        ));
                    }
                }
                begin(t, *now_ms)?;
                for p in partitions {
                    if let Err(at) = t.partitions.binary_search(p) {
                        t.partitions.insert(at, p.clone());
                    }
                }
                t.last_update_ms = *now_ms;
                Ok(applied(t.clone()))
            }
            TxnOp::AddOffsets {
                producer_id,
                producer_epoch,
                group,
                now_ms,
                ..
            } => {
                check_producer(t, *producer_id, *producer_epoch)?;
                begin(t, *now_ms)?;
                if !t.groups.contains(group) {
                    t.groups.push(group.clone());
                    t.groups.sort();
                }
                t.last_update_ms = *now_ms;
                Ok(applied(t.clone()))
            }
            TxnOp::CommitOffsets {
                producer_id,
                producer_epoch,
                offsets,
                now_ms,
                ..
            } => {
                check_producer(t, *producer_id, *producer_epoch)?;
                if t.status != TxnStatus::Ongoing {
                    return Err(refuse(
                        TxnError::InvalidTxnState,
                        format!("no transaction open ({:?})", t.status),
                    ));
                }
                if let Some(o) = offsets.iter().find(|o| !t.groups.contains(&o.group)) {
                    return Err(refuse(
                        TxnError::InvalidTxnState,
                        format!("group {:?} was not added (AddOffsetsToTxn first)", o.group),
                    ));
                }
                for o in offsets {
                    t.pending_offsets.retain(|p| {
                        (&p.group, &p.topic, p.partition) != (&o.group, &o.topic, o.partition)
                    });
                    t.pending_offsets.push(o.clone());
                }
                t.last_update_ms = *now_ms;
                Ok(applied(t.clone()))
            }
            TxnOp::End {
                producer_id,
                producer_epoch,
                commit,
                now_ms,
                ..
            } => {
                check_producer(t, *producer_id, *producer_epoch)?;
                match (t.status, *commit) {
                    (TxnStatus::Ongoing, _) => {
                        t.status = if *commit {
                            TxnStatus::PrepareCommit
                        } else {
                            TxnStatus::PrepareAbort
                        };
                        t.coordinator_epoch += 1;
                        t.last_update_ms = *now_ms;
                        let committed_offsets = if *commit {
                            std::mem::take(&mut t.pending_offsets)
                        } else {
                            t.pending_offsets.clear();
                            Vec::new()
                        };
                        Ok(TxnApplied {
                            transaction: t.clone(),
                            committed_offsets,
                        })
                    }
                    // A retry of the decision being completed.
                    (TxnStatus::PrepareCommit, true) | (TxnStatus::PrepareAbort, false) => Err(
                        refuse(TxnError::ConcurrentTransactions, "completing the decision"),
                    ),
                    // A retry of a completed decision.
                    (TxnStatus::CompleteCommit, true) | (TxnStatus::CompleteAbort, false) => {
                        Ok(applied(t.clone()))
                    }
                    (status, _) => Err(refuse(
                        TxnError::InvalidTxnState,
                        format!(
                            "cannot {} in state {}",
                            if *commit { "commit" } else { "abort" },
                            status.kafka_name()
                        ),
                    )),
                }
            }
            TxnOp::Timeout {
                producer_id,
                producer_epoch,
                now_ms,
                ..
            } => {
                if t.status != TxnStatus::Ongoing
                    || t.producer_id != *producer_id
                    || t.producer_epoch != *producer_epoch
                {
                    return Err(refuse(
                        TxnError::InvalidTxnState,
                        "no longer the transaction that timed out",
                    ));
                }
                abort_fencing(t, *now_ms);
                Ok(applied(t.clone()))
            }
            TxnOp::Complete {
                producer_id,
                producer_epoch,
                coordinator_epoch,
                now_ms,
                ..
            } => {
                if !t.status.is_prepared()
                    || t.producer_id != *producer_id
                    || t.producer_epoch != *producer_epoch
                    || t.coordinator_epoch != *coordinator_epoch
                {
                    return Err(refuse(
                        TxnError::InvalidTxnState,
                        "no longer the decision whose markers were written",
                    ));
                }
                t.status = if t.status == TxnStatus::PrepareCommit {
                    TxnStatus::CompleteCommit
                } else {
                    TxnStatus::CompleteAbort
                };
                t.partitions.clear();
                t.groups.clear();
                t.pending_offsets.clear();
                t.start_ms = 0;
                t.last_update_ms = *now_ms;
                Ok(applied(t.clone()))
            }
        }
    }

    fn init(
        &mut self,
        id: &str,
        timeout_ms: i32,
        producer_id: i64,
        producer_epoch: i16,
        now_ms: u64,
    ) -> Result<TxnApplied, TxnRefusal> {
        if timeout_ms <= 0 || timeout_ms > TRANSACTION_MAX_TIMEOUT_MS {
            return Err(refuse(
                TxnError::InvalidTransactionTimeout,
                format!(
                    "transaction.timeout.ms must be 1..={TRANSACTION_MAX_TIMEOUT_MS}, got {timeout_ms}"
                ),
            ));
        }
        let Some(t) = self.transactions.get_mut(id) else {
            let t = Transaction {
                transactional_id: id.to_string(),
                producer_id: *self.next_producer_id,
                producer_epoch: 0,
                timeout_ms,
                status: TxnStatus::Empty,
                partitions: Vec::new(),
                groups: Vec::new(),
                pending_offsets: Vec::new(),
                start_ms: 0,
                last_update_ms: now_ms,
                coordinator_epoch: 0,
            };
            *self.next_producer_id += 1;
            self.transactions.insert(id.to_string(), t.clone());
            return Ok(applied(t));
        };
        // KIP-360: a producer that names its id and epoch must still be the current one.
        if producer_id >= 0 && (producer_id, producer_epoch) != (t.producer_id, t.producer_epoch) {
            return Err(refuse(
                TxnError::ProducerFenced,
                format!(
                    "producer {producer_id} epoch {producer_epoch} is not the current one \
                     ({} epoch {})",
                    t.producer_id, t.producer_epoch
                ),
            ));
        }
        match t.status {
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort => Err(refuse(
                TxnError::ConcurrentTransactions,
                "the previous transaction is being completed",
            )),
            TxnStatus::Ongoing => {
                // Fence the producer that left it open and abort its transaction; the new
                // producer retries once the abort is complete.
                abort_fencing(t, now_ms);
                Err(refuse(
                    TxnError::ConcurrentTransactions,
                    "aborting the transaction the previous producer left open",
                ))
            }
            TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => {
                if t.producer_epoch >= i16::MAX - 1 {
                    // Epochs are exhausted: a new producer id starts at epoch 0.
                    t.producer_id = *self.next_producer_id;
                    *self.next_producer_id += 1;
                    t.producer_epoch = 0;
                } else {
                    t.producer_epoch += 1;
                }
                t.timeout_ms = timeout_ms;
                t.status = TxnStatus::Empty;
                t.last_update_ms = now_ms;
                Ok(applied(t.clone()))
            }
        }
    }
}

fn applied(transaction: Transaction) -> TxnApplied {
    TxnApplied {
        transaction,
        committed_offsets: Vec::new(),
    }
}

/// The producer must be the transactional id's current one.
fn check_producer(t: &Transaction, producer_id: i64, epoch: i16) -> Result<(), TxnRefusal> {
    if producer_id != t.producer_id {
        return Err(refuse(
            TxnError::InvalidProducerIdMapping,
            format!(
                "producer id {producer_id} is not {:?}'s ({})",
                t.transactional_id, t.producer_id
            ),
        ));
    }
    if epoch != t.producer_epoch {
        return Err(refuse(
            TxnError::ProducerFenced,
            format!(
                "producer epoch {epoch} is not the current one ({}): a newer producer with \
                 this transactional id exists, or the transaction timed out",
                t.producer_epoch
            ),
        ));
    }
    Ok(())
}

/// Opens a transaction if none is; refuses while a decision is being completed.
fn begin(t: &mut Transaction, now_ms: u64) -> Result<(), TxnRefusal> {
    match t.status {
        TxnStatus::Ongoing => Ok(()),
        TxnStatus::PrepareCommit | TxnStatus::PrepareAbort => Err(refuse(
            TxnError::ConcurrentTransactions,
            "the previous transaction is being completed",
        )),
        TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => {
            t.status = TxnStatus::Ongoing;
            t.partitions.clear();
            t.groups.clear();
            t.pending_offsets.clear();
            t.start_ms = now_ms;
            Ok(())
        }
    }
}

/// Decides to abort the open transaction with the epoch bumped: the markers carry the new
/// epoch, so every partition fences the old producer too.
fn abort_fencing(t: &mut Transaction, now_ms: u64) {
    t.producer_epoch = t.producer_epoch.saturating_add(1);
    t.status = TxnStatus::PrepareAbort;
    t.coordinator_epoch += 1;
    t.pending_offsets.clear();
    t.last_update_ms = now_ms;
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmq_types::model::Partition;
    use dmq_types::txn::TxnPartition;

    fn topics() -> BTreeMap<String, Topic> {
        let partition = |i| Partition {
            partition_id: i,
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            replicas: vec![1],
            isr: vec![1],
        };
        let t = Topic {
            topic_name: "out".into(),
            topic_id: "id".into(),
            num_partitions: 2,
            replication_factor: 1,
            config: BTreeMap::new(),
            partitions: vec![partition(0), partition(1)],
            created_at: 0,
        };
        BTreeMap::from([("out".to_string(), t)])
    }

    struct World {
        txns: BTreeMap<String, Transaction>,
        next: i64,
        topics: BTreeMap<String, Topic>,
    }

    impl World {
        fn new() -> World {
            World {
                txns: BTreeMap::new(),
                next: 1000,
                topics: topics(),
            }
        }
        fn apply(&mut self, op: TxnOp) -> Result<TxnApplied, TxnRefusal> {
            Txns {
                transactions: &mut self.txns,
                next_producer_id: &mut self.next,
                topics: &self.topics,
            }
            .apply(&op)
        }
        fn get(&self) -> &Transaction {
            &self.txns["t"]
        }
    }

    fn init(pid: i64, epoch: i16) -> TxnOp {
        TxnOp::Init {
            transactional_id: "t".into(),
            timeout_ms: 60_000,
            producer_id: pid,
            producer_epoch: epoch,
            now_ms: 1,
        }
    }
    fn add(pid: i64, epoch: i16) -> TxnOp {
        TxnOp::AddPartitions {
            transactional_id: "t".into(),
            producer_id: pid,
            producer_epoch: epoch,
            partitions: vec![TxnPartition {
                topic: "out".into(),
                partition: 1,
            }],
            now_ms: 2,
        }
    }
    fn end(pid: i64, epoch: i16, commit: bool) -> TxnOp {
        TxnOp::End {
            transactional_id: "t".into(),
            producer_id: pid,
            producer_epoch: epoch,
            commit,
            now_ms: 3,
        }
    }
    fn complete(t: &Transaction) -> TxnOp {
        TxnOp::Complete {
            transactional_id: "t".into(),
            producer_id: t.producer_id,
            producer_epoch: t.producer_epoch,
            coordinator_epoch: t.coordinator_epoch,
            now_ms: 4,
        }
    }
    fn code(r: Result<TxnApplied, TxnRefusal>) -> Option<TxnError> {
        r.err().map(|e| e.error)
    }

    #[test]
    fn kip98_init_add_commit_complete_and_the_next_init_bumps_the_epoch() {
        let mut w = World::new();
        let t = w.apply(init(-1, -1)).expect("init").transaction;
        assert_eq!(
            (t.producer_id, t.producer_epoch, t.status),
            (1000, 0, TxnStatus::Empty)
        );
        assert_eq!(w.next, 1001, "producer ids are never reused");
        w.apply(add(1000, 0)).expect("add");
        assert_eq!(w.get().status, TxnStatus::Ongoing);
        assert_eq!(w.get().start_ms, 2);
        let t = w.apply(end(1000, 0, true)).expect("end").transaction;
        assert_eq!(
            (t.status, t.coordinator_epoch),
            (TxnStatus::PrepareCommit, 1)
        );
        // Retries while completing, and after.
        assert_eq!(
            code(w.apply(end(1000, 0, true))),
            Some(TxnError::ConcurrentTransactions)
        );
        assert_eq!(
            code(w.apply(end(1000, 0, false))),
            Some(TxnError::InvalidTxnState)
        );
        let done = w.apply(complete(&t)).expect("complete").transaction;
        assert_eq!(done.status, TxnStatus::CompleteCommit);
        assert!(done.partitions.is_empty());
        assert!(
            w.apply(end(1000, 0, true)).is_ok(),
            "a retried commit is answered"
        );
        // A second transaction, then a new producer with the same id.
        w.apply(add(1000, 0)).expect("a new transaction");
        assert_eq!(w.get().status, TxnStatus::Ongoing);
        assert!(w.get().partitions.len() == 1);
    }

    #[test]
    fn kip98_a_new_producer_fences_the_old_and_aborts_its_open_transaction() {
        let mut w = World::new();
        w.apply(init(-1, -1)).expect("init");
        w.apply(add(1000, 0)).expect("add");
        // The new instance: the open transaction is aborted with the epoch bumped.
        assert_eq!(
            code(w.apply(init(-1, -1))),
            Some(TxnError::ConcurrentTransactions)
        );
        let t = w.get().clone();
        assert_eq!((t.status, t.producer_epoch), (TxnStatus::PrepareAbort, 1));
        // The old producer is fenced from now on.
        assert_eq!(code(w.apply(add(1000, 0))), Some(TxnError::ProducerFenced));
        assert_eq!(
            code(w.apply(init(-1, -1))),
            Some(TxnError::ConcurrentTransactions),
            "still completing"
        );
        w.apply(complete(&t)).expect("abort complete");
        let t = w.apply(init(-1, -1)).expect("init").transaction;
        assert_eq!((t.producer_id, t.producer_epoch), (1000, 2));
        assert_eq!(
            code(w.apply(end(1000, 1, true))),
            Some(TxnError::ProducerFenced)
        );
        // KIP-360: a producer re-initialising must be the current one.
        assert_eq!(code(w.apply(init(1000, 1))), Some(TxnError::ProducerFenced));
        assert!(w.apply(init(1000, 2)).is_ok());
    }

    #[test]
    fn kip447_offsets_become_group_offsets_only_with_a_commit_decision() {
        let mut w = World::new();
        w.apply(init(-1, -1)).expect("init");
        let add_group = TxnOp::AddOffsets {
            transactional_id: "t".into(),
            producer_id: 1000,
            producer_epoch: 0,
            group: "g".into(),
            now_ms: 2,
        };
        let offsets = |offset| TxnOp::CommitOffsets {
            transactional_id: "t".into(),
            producer_id: 1000,
            producer_epoch: 0,
            offsets: vec![TxnOffset {
                group: "g".into(),
                topic: "in".into(),
                partition: 0,
                offset,
                leader_epoch: -1,
                metadata: None,
            }],
            now_ms: 2,
        };
        assert_eq!(
            code(w.apply(offsets(5))),
            Some(TxnError::InvalidTxnState),
            "no transaction open"
        );
        w.apply(add_group.clone()).expect("add offsets");
        w.apply(offsets(5)).expect("offsets");
        w.apply(offsets(7)).expect("offsets again");
        let e = w.apply(end(1000, 0, false)).expect("abort");
        assert!(e.committed_offsets.is_empty(), "abort: nothing committed");
        w.apply(complete(&e.transaction)).expect("complete");
        w.apply(add_group).expect("add offsets");
        w.apply(offsets(9)).expect("offsets");
        let e = w.apply(end(1000, 0, true)).expect("commit");
        assert_eq!(
            e.committed_offsets
                .iter()
                .map(|o| o.offset)
                .collect::<Vec<_>>(),
            vec![9]
        );
    }

    #[test]
    fn kip98_timeout_aborts_with_a_bumped_epoch_and_expiry_forgets_idle_ids() {
        let mut w = World::new();
        w.apply(init(-1, -1)).expect("init");
        w.apply(add(1000, 0)).expect("add");
        let timeout = |epoch| TxnOp::Timeout {
            transactional_id: "t".into(),
            producer_id: 1000,
            producer_epoch: epoch,
            now_ms: 70_000,
        };
        let t = w.apply(timeout(0)).expect("timeout").transaction;
        assert_eq!((t.status, t.producer_epoch), (TxnStatus::PrepareAbort, 1));
        assert_eq!(
            code(w.apply(timeout(0))),
            Some(TxnError::InvalidTxnState),
            "a second timeout of the same transaction changes nothing"
        );
        assert_eq!(
            code(w.apply(end(1000, 0, true))),
            Some(TxnError::ProducerFenced)
        );
        // A stale Complete (older coordinator epoch) changes nothing.
        let mut stale = t.clone();
        stale.coordinator_epoch -= 1;
        assert_eq!(
            code(w.apply(complete(&stale))),
            Some(TxnError::InvalidTxnState)
        );
        let t = w.apply(complete(&t)).expect("complete").transaction;
        let expire = |last| TxnOp::Expire {
            transactional_id: "t".into(),
            last_update_ms: last,
        };
        assert_eq!(
            code(w.apply(expire(t.last_update_ms - 1))),
            Some(TxnError::InvalidTxnState)
        );
        w.apply(expire(t.last_update_ms)).expect("expire");
        assert!(w.txns.is_empty());
    }

    #[test]
    fn refusals_unknown_partitions_timeouts_and_unknown_ids() {
        let mut w = World::new();
        assert_eq!(
            code(w.apply(add(1000, 0))),
            Some(TxnError::InvalidProducerIdMapping)
        );
        let mut bad = init(-1, -1);
        if let TxnOp::Init { timeout_ms, .. } = &mut bad {
            *timeout_ms = TRANSACTION_MAX_TIMEOUT_MS + 1;
        }
        assert_eq!(
            code(w.apply(bad)),
            Some(TxnError::InvalidTransactionTimeout)
        );
        w.apply(init(-1, -1)).expect("init");
        let unknown = TxnOp::AddPartitions {
            transactional_id: "t".into(),
            producer_id: 1000,
            producer_epoch: 0,
            partitions: vec![TxnPartition {
                topic: "out".into(),
                partition: 2,
            }],
            now_ms: 2,
        };
        assert_eq!(
            code(w.apply(unknown)),
            Some(TxnError::UnknownTopicOrPartition)
        );
        assert_eq!(w.get().status, TxnStatus::Empty, "nothing opened");
        assert_eq!(
            code(w.apply(add(1001, 0))),
            Some(TxnError::InvalidProducerIdMapping)
        );
        assert_eq!(
            code(w.apply(end(1000, 0, false))),
            Some(TxnError::InvalidTxnState),
            "nothing to abort"
        );
    }
}
