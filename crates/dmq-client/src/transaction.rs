//! The transactional producer's state and its requests to the coordinators (KIP-98, KIP-447),
//! following Kafka's Java `TransactionManager`.
//!
//! ```text
//! Uninitialized ─init_transactions─► Ready ─begin─► InTransaction ─commit/abort─► Ready
//!                                                        │ a record or request failed
//!                                                        ▼
//!                                                   Abortable ─abort─► Ready
//! any state ── fenced (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH, ...) ──► Fatal (for good)
//! ```
//!
//! The producer adds a partition to the transaction (AddPartitionsToTxn at the transaction
//! coordinator) before the first record of the transaction for it is queued: the broker
//! refuses a transactional batch of a partition that is not in the producer's ongoing
//! transaction (KIP-890), and a batch that was sent before its partition was added could
//! otherwise escape the transaction's commit or abort.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, GroupId,
    InitProducerIdRequest, TopicName, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};

use crate::cluster::Cluster;
use crate::consumer::{by_topic, TopicPartition};
use crate::error::{ClientError, Result};
use crate::group::{
    find_coordinator_of, ConsumerGroupMetadata, COORDINATOR_KEY_GROUP, COORDINATOR_KEY_TXN,
};

const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
const CONCURRENT_TRANSACTIONS: i16 = 51;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const OPERATION_NOT_ATTEMPTED: i16 = 55;
const PRODUCER_FENCED: i16 = 90;

/// Whether `code` means this producer instance can never continue (Java's fatal errors): a
/// newer instance with the same transactional id took over, or the id is not ours to use.
pub(crate) fn is_fatal(code: i16) -> bool {
    matches!(
        code,
        PRODUCER_FENCED
            | INVALID_PRODUCER_EPOCH
            | INVALID_PRODUCER_ID_MAPPING
            | TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    )
}

/// Where the producer is in the state machine of the module docs.
#[derive(Debug, Clone)]
enum Phase {
    /// `init_transactions` has not succeeded yet: there is no producer id.
    Uninitialized,
    /// Between transactions.
    Ready,
    InTransaction,
    /// Something in the current transaction failed: only `abort_transaction` is allowed.
    Abortable(ClientError),
    /// Fenced or otherwise finished: every call fails with this error.
    Fatal(ClientError),
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Partitions added to the current transaction, by topic (looked up by `&str` on every
    /// `send`, so without an allocation).
    added: HashMap<String, HashSet<i32>>,
    /// Whether the coordinator knows the current transaction (a partition or a group's offsets
    /// were added). Only then is EndTxn sent: the coordinator refuses to end a transaction it
    /// never saw, and an empty transaction has nothing to commit or abort.
    started: bool,
    /// The transaction coordinator, once found; forgotten on NOT_COORDINATOR and lost
    /// connections.
    coordinator: Option<i32>,
}

/// The transactional part of a producer.
#[derive(Debug)]
pub(crate) struct Transactions {
    /// The transactional id: names the transaction coordinator and, across restarts, the
    /// producer id that a new instance takes over (fencing the old one).
    id: String,
    /// Sent with InitProducerId: the coordinator aborts a transaction open longer.
    timeout: Duration,
    /// How long one coordinator operation may be retried (`max.block.ms`).
    max_block: Duration,
    /// The pause between retries of a coordinator request.
    retry_backoff: Duration,
    /// The phase and the current transaction; never held across an `.await`.
    state: Mutex<State>,
    /// Serialises the coordinator requests of this producer: two concurrent `send`s to a new
    /// partition add it once, and nothing is added while EndTxn is under way.
    op: tokio::sync::Mutex<()>,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl Transactions {
    pub(crate) fn new(
        id: String,
        timeout: Duration,
        max_block: Duration,
        retry_backoff: Duration,
    ) -> Self {
        Transactions {
            id,
            timeout,
            max_block,
            retry_backoff,
            state: Mutex::new(State {
                phase: Phase::Uninitialized,
                added: HashMap::new(),
                started: false,
                coordinator: None,
            }),
            op: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The error for a call that needs `InTransaction` (`what`) in the current phase, if any.
    fn refuse(phase: &Phase, what: &str) -> Option<ClientError> {
        match phase {
            Phase::InTransaction => None,
            Phase::Uninitialized => Some(ClientError::InvalidState(format!(
                "{what} before init_transactions"
            ))),
            Phase::Ready => Some(ClientError::InvalidState(format!(
                "{what} outside a transaction (call begin_transaction first)"
            ))),
            Phase::Abortable(e) => Some(ClientError::AbortRequired {
                code: e.code(),
                reason: e.to_string(),
            }),
            Phase::Fatal(e) => Some(e.clone()),
        }
    }

    /// Fails unless a transaction is open (what `send` checks first).
    pub(crate) fn check_in_transaction(&self, what: &str) -> Result<()> {
        match Self::refuse(&self.state().phase, what) {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Records an error of the current transaction: a fatal one ends the producer, any other
    /// makes the transaction abortable only. Returns the error to hand to the caller.
    pub(crate) fn fail(&self, e: ClientError) -> ClientError {
        let mut st = self.state();
        if let Some(fatal) = Self::fatal(&mut st, &e) {
            return fatal;
        }
        if matches!(st.phase, Phase::InTransaction) {
            st.phase = Phase::Abortable(e.clone());
        }
        e
    }

    /// The producer's fatal error if it is (or, with `e`, becomes) fatal.
    fn fatal(st: &mut State, e: &ClientError) -> Option<ClientError> {
        if let Phase::Fatal(f) = &st.phase {
            return Some(f.clone());
        }
        let code = e.code().filter(|c| is_fatal(*c))?;
        let fatal = ClientError::ProducerFatal {
            code: Some(code),
            reason: e.to_string(),
        };
        st.phase = Phase::Fatal(fatal.clone());
        Some(fatal)
    }

    /// InitProducerId with the transactional id at its coordinator: the producer id and a
    /// new epoch, which fences every older instance with the same id and aborts (or completes)
    /// their unfinished transaction.
    pub(crate) async fn init(&self, cluster: &Cluster) -> Result<(i64, i16)> {
        let _op = self.op.lock().await;
        match &self.state().phase {
            Phase::Uninitialized => {}
            Phase::Fatal(e) => return Err(e.clone()),
            _ => {
                return Err(ClientError::InvalidState(
                    "init_transactions was called already".into(),
                ))
            }
        }
        let timeout_ms = self.timeout.as_millis().min(i32::MAX as u128) as i32;
        let req = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(&self.id))))
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
        let resp = self
            .call(cluster, None, "InitProducerId", &req, |r| r.error_code)
            .await;
        match resp {
            Ok(r) => {
                self.state().phase = Phase::Ready;
                Ok((r.producer_id.0, r.producer_epoch))
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    pub(crate) fn begin(&self) -> Result<()> {
        let mut st = self.state();
        match &st.phase {
            Phase::Ready => {
                st.phase = Phase::InTransaction;
                st.added.clear();
                st.started = false;
                Ok(())
            }
            Phase::InTransaction => Err(ClientError::InvalidState(
                "begin_transaction inside a transaction".into(),
            )),
            other => Err(Self::refuse(other, "begin_transaction")
                .unwrap_or(ClientError::InvalidState("begin_transaction now".into()))),
        }
    }

    /// Whether `topic`-`partition` is in the current transaction already.
    pub(crate) fn is_added(&self, topic: &str, partition: i32) -> bool {
        self.state()
            .added
            .get(topic)
            .is_some_and(|ps| ps.contains(&partition))
    }

    /// AddPartitionsToTxn for one partition, unless it is in the transaction already.
    pub(crate) async fn add_partition(
        &self,
        cluster: &Cluster,
        producer: (i64, i16),
        topic: &str,
        partition: i32,
    ) -> Result<()> {
        let _op = self.op.lock().await;
        self.check_in_transaction("send")?;
        if self.is_added(topic, partition) {
            return Ok(());
        }
        let req = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(s(&self.id)))
            .with_v3_and_below_producer_id(producer.0.into())
            .with_v3_and_below_producer_epoch(producer.1)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![partition])]);
        let what = format!("AddPartitionsToTxn {topic}-{partition}");
        let resp = self
            .call(cluster, None, &what, &req, |r| {
                // One partition: its code (OPERATION_NOT_ATTEMPTED only names another's).
                let codes = r
                    .results_by_topic_v3_and_below
                    .iter()
                    .flat_map(|t| t.results_by_partition.iter())
                    .map(|p| p.partition_error_code);
                let mut first = 0;
                for c in codes {
                    if c != 0 && (first == 0 || first == OPERATION_NOT_ATTEMPTED) {
                        first = c;
                    }
                }
                if first == 0 {
                    r.error_code
                } else {
                    first
                }
            })
            .await;
        match resp {
            Ok(_) => {
                let mut st = self.state();
                st.added
                    .entry(topic.to_string())
                    .or_default()
                    .insert(partition);
                st.started = true;
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// AddOffsetsToTxn at the transaction coordinator, then TxnOffsetCommit (v3: with the
    /// member's generation) at the group's coordinator: the offsets become the group's with
    /// the commit, and are dropped with an abort.
    pub(crate) async fn send_offsets(
        &self,
        cluster: &Cluster,
        producer: (i64, i16),
        offsets: &BTreeMap<TopicPartition, i64>,
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        let _op = self.op.lock().await;
        self.check_in_transaction("send_offsets_to_transaction")?;
        let req = AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(s(&self.id)))
            .with_producer_id(producer.0.into())
            .with_producer_epoch(producer.1)
            .with_group_id(GroupId(s(&group.group_id)));
        let what = format!("AddOffsetsToTxn {:?}", group.group_id);
        if let Err(e) = self
            .call(cluster, None, &what, &req, |r| r.error_code)
            .await
        {
            return Err(self.fail(e));
        }
        self.state().started = true;
        let topics = by_topic(offsets.iter().map(|(tp, o)| {
            (
                tp.topic.as_str(),
                TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(tp.partition)
                    .with_committed_offset(*o)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(s(""))),
            )
        }))
        .into_iter()
        .map(|(t, ps)| {
            TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(s(t)))
                .with_partitions(ps)
        })
        .collect();
        let req = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s(&self.id)))
            .with_group_id(GroupId(s(&group.group_id)))
            .with_producer_id(producer.0.into())
            .with_producer_epoch(producer.1)
            .with_generation_id(group.generation_id)
            .with_member_id(s(&group.member_id))
            .with_group_instance_id(group.group_instance_id.as_deref().map(s))
            .with_topics(topics);
        let what = format!("TxnOffsetCommit {:?}", group.group_id);
        let resp = self
            .call(cluster, Some(&group.group_id), &what, &req, |r| {
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter())
                    .map(|p| p.error_code)
                    .find(|c| *c != 0)
                    .unwrap_or(0)
            })
            .await;
        match resp {
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Checks that the transaction may end now; `Ok(false)` when the coordinator never heard
    /// of it (nothing to send).
    pub(crate) fn prepare_end(&self, commit: bool) -> Result<bool> {
        let st = self.state();
        match &st.phase {
            Phase::InTransaction => Ok(st.started),
            Phase::Abortable(_) if !commit => Ok(st.started),
            other => {
                let what = if commit {
                    "commit_transaction"
                } else {
                    "abort_transaction"
                };
                Err(Self::refuse(other, what)
                    .unwrap_or_else(|| ClientError::InvalidState(what.to_string())))
            }
        }
    }

    /// EndTxn (the broker answers once the markers are written), then back to `Ready`.
    pub(crate) async fn end(
        &self,
        cluster: &Cluster,
        producer: (i64, i16),
        commit: bool,
        started: bool,
    ) -> Result<()> {
        let _op = self.op.lock().await;
        if started {
            let req = EndTxnRequest::default()
                .with_transactional_id(TransactionalId(s(&self.id)))
                .with_producer_id(producer.0.into())
                .with_producer_epoch(producer.1)
                .with_committed(commit);
            let what = if commit {
                "EndTxn(commit)"
            } else {
                "EndTxn(abort)"
            };
            if let Err(e) = self.call(cluster, None, what, &req, |r| r.error_code).await {
                // A fatal error ends the producer; another leaves the transaction as it was,
                // so that the caller may retry the commit, or abort.
                return Err(Self::fatal(&mut self.state(), &e).unwrap_or(e));
            }
        }
        let mut st = self.state();
        if matches!(st.phase, Phase::Fatal(_)) {
            return Err(
                Self::refuse(&st.phase, "ending the transaction").unwrap_or(ClientError::Closed)
            );
        }
        st.phase = Phase::Ready;
        st.added.clear();
        st.started = false;
        Ok(())
    }

    /// Sends `req` to the transaction coordinator (or, with `group`, to that group's
    /// coordinator), retrying within `max_block` while the coordinator moves, loads, or is
    /// still completing the previous transaction (CONCURRENT_TRANSACTIONS).
    async fn call<R, F>(
        &self,
        cluster: &Cluster,
        group: Option<&str>,
        what: &str,
        req: &R,
        code_of: F,
    ) -> Result<R::Response>
    where
        R: Request,
        F: Fn(&R::Response) -> i16,
    {
        let deadline = Instant::now() + self.max_block;
        loop {
            let attempt = async {
                let coordinator = match group {
                    Some(g) => find_coordinator_of(cluster, COORDINATOR_KEY_GROUP, g).await?,
                    None => {
                        let known = self.state().coordinator;
                        match known {
                            Some(c) => c,
                            None => {
                                let c = find_coordinator_of(cluster, COORDINATOR_KEY_TXN, &self.id)
                                    .await?;
                                self.state().coordinator = Some(c);
                                c
                            }
                        }
                    }
                };
                let conn = cluster.broker(coordinator).await?;
                Ok::<_, ClientError>(conn.send(req, Duration::ZERO).await?.0)
            }
            .await;
            let error = match attempt {
                Ok(resp) => match code_of(&resp) {
                    0 => return Ok(resp),
                    code => ClientError::kafka(code, what),
                },
                Err(e) => e,
            };
            let retry = match error.code() {
                Some(NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE) | None => {
                    self.state().coordinator = None;
                    error.code().is_some() || error.is_retriable()
                }
                Some(COORDINATOR_LOAD_IN_PROGRESS | CONCURRENT_TRANSACTIONS) => true,
                Some(code) => !is_fatal(code) && error.is_retriable(),
            };
            if !retry || Instant::now() + self.retry_backoff >= deadline {
                return Err(error);
            }
            tracing::debug!(transactional_id = %self.id, "{what}: {error}; retrying");
            tokio::time::sleep(self.retry_backoff).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txns() -> Transactions {
        Transactions::new(
            "t".into(),
            Duration::from_secs(60),
            Duration::from_secs(1),
            Duration::from_millis(10),
        )
    }

    #[test]
    fn calls_follow_the_java_state_machine() {
        let t = txns();
        assert!(matches!(
            t.check_in_transaction("send"),
            Err(ClientError::InvalidState(_))
        ));
        assert!(t.begin().is_err(), "begin before init_transactions");
        t.state().phase = Phase::Ready;
        assert!(t.prepare_end(true).is_err(), "commit outside a transaction");
        t.begin().expect("begin");
        t.check_in_transaction("send")
            .expect("send in a transaction");
        assert_eq!(t.prepare_end(true).ok(), Some(false), "nothing was added");

        // A failed record: the transaction can only abort.
        let e = t.fail(ClientError::kafka(2, "producing"));
        assert_eq!(e.code(), Some(2));
        assert!(matches!(
            t.check_in_transaction("send"),
            Err(ClientError::AbortRequired { .. })
        ));
        assert!(matches!(
            t.prepare_end(true),
            Err(ClientError::AbortRequired { .. })
        ));
        assert!(t.prepare_end(false).is_ok());

        // Fenced: every later call fails with the fatal error.
        let e = t.fail(ClientError::kafka(PRODUCER_FENCED, "EndTxn"));
        assert!(matches!(
            e,
            ClientError::ProducerFatal { code: Some(90), .. }
        ));
        for r in [
            t.check_in_transaction("send"),
            t.prepare_end(false).map(|_| ()),
            t.begin(),
        ] {
            assert!(matches!(r, Err(ClientError::ProducerFatal { .. })), "{r:?}");
        }
        // A later ordinary error does not hide the fatal state.
        let e = t.fail(ClientError::kafka(2, "x"));
        assert!(matches!(e, ClientError::ProducerFatal { .. }));
    }
}
