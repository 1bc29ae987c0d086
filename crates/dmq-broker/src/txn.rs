//! The transaction coordinator (KIP-98): the broker that [`coordinator_for`] picks for a
//! transactional id proposes its changes to the metadata quorum (where the state lives, see
//! `dmq_metadata::txn`) and, once a commit or abort is decided (`Prepare*`), writes the
//! markers into every partition of the transaction with WriteTxnMarkers to their leaders, then
//! records `Complete`.
//!
//! ```text
//!   EndTxn ─▶ quorum: PrepareCommit ─▶ WriteTxnMarkers to each leader ─▶ quorum: CompleteCommit ─▶ answer
//!   driver (every 500 ms): Prepare* left by a dead coordinator → markers; Ongoing past its
//!                          timeout → Timeout (abort, epoch bumped); idle ids → Expire
//! ```
//!
//! Nothing is kept here that the quorum does not have: after a coordinator dies the next one
//! (the same hash over the remaining ONLINE brokers) finds the `Prepare*` states and finishes
//! them; markers are idempotent at the partitions, so writing one twice is harmless.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dmq_types::txn::{Transaction, TxnOp, TxnStatus, TRANSACTIONAL_ID_EXPIRATION_MS};
use dmq_types::BrokerId;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;

use crate::error::{BrokerError, Result};
use crate::group::coordinator_for;
use crate::kafka::client::KafkaConnection;
use crate::node::BrokerShared;

/// How often the driver looks for decided, timed-out and expired transactions.
const DRIVE_EVERY: Duration = Duration::from_millis(500);
/// How long one WriteTxnMarkers round may take.
const MARKER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing the markers of one decision is retried before the driver takes over.
const COMPLETE_WITHIN: Duration = Duration::from_secs(15);

/// The transaction coordinator's in-process state: which decisions are being completed, and
/// one idle Kafka connection per partition leader for the markers.
#[derive(Default)]
pub struct TxnCoordinator {
    completing: Mutex<HashSet<String>>,
    connections: tokio::sync::Mutex<HashMap<String, KafkaConnection>>,
}

impl TxnCoordinator {
    fn start_completing(&self, id: &str) -> bool {
        self.completing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string())
    }

    fn done_completing(&self, id: &str) {
        self.completing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// Whether this broker coordinates `transactional_id` now.
pub fn coordinates(shared: &BrokerShared, transactional_id: &str) -> bool {
    coordinator_for(&shared.image(), transactional_id) == Some(shared.config.broker_id)
}

/// Writes the markers of a decided transaction and records `Complete`; retried until done,
/// `COMPLETE_WITHIN` passes or the decision is no longer the current one. Returns whether it
/// completed. One completion per transactional id at a time: a second caller returns `false`
/// at once.
pub async fn complete(shared: &Arc<BrokerShared>, t: &Transaction) -> bool {
    if !t.status.is_prepared() || !shared.txns.start_completing(&t.transactional_id) {
        return false;
    }
    let done = complete_inner(shared, t).await;
    shared.txns.done_completing(&t.transactional_id);
    done
}

async fn complete_inner(shared: &Arc<BrokerShared>, t: &Transaction) -> bool {
    let deadline = tokio::time::Instant::now() + COMPLETE_WITHIN;
    let commit = t.status == TxnStatus::PrepareCommit;
    let mut left: Vec<(String, i32)> = t
        .partitions
        .iter()
        .map(|p| (p.topic.clone(), p.partition))
        .collect();
    let mut backoff = Duration::from_millis(20);
    while !left.is_empty() {
        left = write_markers(shared, t, commit, left).await;
        if left.is_empty() {
            break;
        }
        if tokio::time::Instant::now() + backoff > deadline {
            tracing::warn!(
                transactional_id = %t.transactional_id,
                partitions = ?left,
                "markers not written yet; the driver retries"
            );
            return false;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
        // A leader may have moved.
        let _ = shared.refresh_metadata().await;
    }
    let op = TxnOp::Complete {
        transactional_id: t.transactional_id.clone(),
        producer_id: t.producer_id,
        producer_epoch: t.producer_epoch,
        coordinator_epoch: t.coordinator_epoch,
        now_ms: now_ms(),
    };
    match shared.meta.txn(&op).await {
        Ok(Ok(_)) => true,
        // Someone else completed it (a retry, or a coordinator before us).
        Ok(Err(refused)) => {
            tracing::debug!(transactional_id = %t.transactional_id, "complete refused: {}", refused.message);
            false
        }
        Err(e) => {
            tracing::warn!(transactional_id = %t.transactional_id, "cannot record the completion: {e}");
            false
        }
    }
}

/// One round of WriteTxnMarkers to the leaders of `partitions`; returns those still to do.
async fn write_markers(
    shared: &Arc<BrokerShared>,
    t: &Transaction,
    commit: bool,
    partitions: Vec<(String, i32)>,
) -> Vec<(String, i32)> {
    let image = shared.image();
    let mut by_leader: BTreeMap<BrokerId, Vec<(String, i32)>> = BTreeMap::new();
    let mut left = Vec::new();
    for (topic, p) in partitions {
        let Some(topic_meta) = image.topics.get(&topic) else {
            // Deleted since: nothing to mark (Kafka does the same).
            continue;
        };
        match topic_meta.partitions.iter().find(|x| x.partition_id == p) {
            Some(x) if x.leader >= 0 => by_leader.entry(x.leader).or_default().push((topic, p)),
            Some(_) => left.push((topic, p)),
            None => {}
        }
    }
    let rounds = by_leader.into_iter().map(|(leader, parts)| {
        let image = image.clone();
        async move {
            let Some(b) = image.brokers.get(&leader) else {
                return parts;
            };
            let addr = format!("{}:{}", b.host, b.kafka_port);
            match send_markers(shared, &addr, t, commit, &parts).await {
                Ok(failed) => failed,
                Err(e) => {
                    tracing::debug!(%addr, transactional_id = %t.transactional_id, "WriteTxnMarkers failed: {e}");
                    parts
                }
            }
        }
    });
    for failed in futures::future::join_all(rounds).await {
        left.extend(failed);
    }
    left
}

/// Sends one WriteTxnMarkers request; returns the partitions that answered an error (to
/// retry), except those whose topic is gone.
async fn send_markers(
    shared: &Arc<BrokerShared>,
    addr: &str,
    t: &Transaction,
    commit: bool,
    parts: &[(String, i32)],
) -> Result<Vec<(String, i32)>> {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, p) in parts {
        topics.entry(topic.as_str()).or_default().push(*p);
    }
    let marker = WritableTxnMarker::default()
        .with_producer_id(ProducerId(t.producer_id))
        .with_producer_epoch(t.producer_epoch)
        .with_transaction_result(commit)
        .with_coordinator_epoch(t.coordinator_epoch)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, ps)| {
                    WritableTxnMarkerTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_string())))
                        .with_partition_indexes(ps)
                })
                .collect(),
        );
    let req = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
    let pooled = shared.txns.connections.lock().await.remove(addr);
    let mut conn = match pooled {
        Some(c) => c,
        None => {
            KafkaConnection::connect_as_broker(
                addr,
                "dmq-txn-coordinator",
                MARKER_TIMEOUT,
                shared.security.inter_broker(),
            )
            .await?
        }
    };
    let resp = conn.send(&req, 1, Duration::ZERO).await?;
    shared
        .txns
        .connections
        .lock()
        .await
        .insert(addr.to_string(), conn);
    let mut failed = Vec::new();
    for m in resp.markers {
        for topic in m.topics {
            for p in topic.partitions {
                if p.error_code == 0
                    || p.error_code == ResponseError::UnknownTopicOrPartition.code()
                {
                    continue;
                }
                tracing::debug!(
                    topic = %topic.name.0,
                    partition = p.partition_index,
                    error = ?ResponseError::try_from_code(p.error_code),
                    "marker refused"
                );
                failed.push((topic.name.0.to_string(), p.partition_index));
            }
        }
    }
    Ok(failed)
}

/// Drives the transactions this broker coordinates: completes decisions a dead coordinator
/// left, aborts transactions open past their timeout and forgets ids idle past
/// `transactional.id.expiration.ms`.
pub async fn driver(shared: Arc<BrokerShared>) {
    let mut tick = tokio::time::interval(DRIVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = drive_once(&shared).await {
            tracing::debug!("transaction driver: {e}");
        }
    }
}

async fn drive_once(shared: &Arc<BrokerShared>) -> Result<()> {
    if !shared.is_ready() {
        return Ok(());
    }
    let txns = shared.meta.transactions().await?;
    let now = now_ms();
    for t in txns {
        if !coordinates(shared, &t.transactional_id) {
            continue;
        }
        match t.status {
            s if s.is_prepared() => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    complete(&shared, &t).await;
                });
            }
            TxnStatus::Ongoing if now.saturating_sub(t.start_ms) > t.timeout_ms.max(0) as u64 => {
                tracing::info!(
                    transactional_id = %t.transactional_id,
                    producer_id = t.producer_id,
                    timeout_ms = t.timeout_ms,
                    "transaction open past its timeout: aborting it"
                );
                let op = TxnOp::Timeout {
                    transactional_id: t.transactional_id.clone(),
                    producer_id: t.producer_id,
                    producer_epoch: t.producer_epoch,
                    now_ms: now,
                };
                if let Ok(decided) = shared.meta.txn(&op).await? {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        complete(&shared, &decided).await;
                    });
                }
            }
            TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort
                if now.saturating_sub(t.last_update_ms) > TRANSACTIONAL_ID_EXPIRATION_MS =>
            {
                let op = TxnOp::Expire {
                    transactional_id: t.transactional_id.clone(),
                    last_update_ms: t.last_update_ms,
                };
                let _ = shared.meta.txn(&op).await?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// KIP-890's server-side check of a transactional produce: the first batch of a transaction
/// at a partition is accepted only when the quorum has the partition in that producer's
/// ongoing transaction (a late batch of a finished or aborted transaction, or one to a
/// partition never added, would otherwise open a transaction nobody ends, holding the LSO).
pub async fn verify_produce(
    shared: &BrokerShared,
    transactional_id: &str,
    topic: &str,
    partition: i32,
    producer_id: i64,
    producer_epoch: i16,
) -> Result<()> {
    let t = shared
        .meta
        .transaction(transactional_id)
        .await?
        .ok_or_else(|| {
            BrokerError::kafka(
                ResponseError::InvalidProducerIdMapping,
                format!("transactional id {transactional_id:?} is unknown"),
            )
        })?;
    if t.producer_id != producer_id {
        return Err(BrokerError::kafka(
            ResponseError::InvalidProducerIdMapping,
            format!("producer {producer_id} is not {transactional_id:?}'s"),
        ));
    }
    if t.producer_epoch != producer_epoch {
        return Err(BrokerError::kafka(
            ResponseError::InvalidProducerEpoch,
            format!(
                "producer epoch {producer_epoch} is not the current one ({})",
                t.producer_epoch
            ),
        ));
    }
    let added = t.status == TxnStatus::Ongoing
        && t.partitions
            .iter()
            .any(|p| p.topic == topic && p.partition == partition);
    if !added {
        return Err(BrokerError::kafka(
            ResponseError::InvalidTxnState,
            format!("{topic}-{partition} is not in an ongoing transaction of {transactional_id:?}"),
        ));
    }
    Ok(())
}

pub fn now_ms() -> u64 {
    dmq_log::now_ms().max(0) as u64
}
