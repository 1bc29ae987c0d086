//! Follower replication (Kafka-style pull): one task per leader broker fetches every partition
//! this broker follows from it, with the Fetch API carrying our replica id, and appends the
//! batches at the leader's offsets. The leader learns each follower's progress from the fetch
//! offsets; its high watermark comes back in every response.
//!
//! A partition that just became a follower (or restarted) is not fetched until it has asked the
//! leader where its latest epoch ends (OffsetForLeaderEpoch) and truncated what diverges.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dmq_types::BrokerId;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::kafka::client::KafkaConnection;
use crate::node::BrokerShared;
use crate::partition::Partition;
use crate::replica_manager::FollowerGroups;

/// Fetch version followers speak (topic names, `replica_id` in the request body).
pub const REPLICA_FETCH_VERSION: i16 = 12;
/// OffsetForLeaderEpoch version followers speak (`replica_id` in the body).
const EPOCH_VERSION: i16 = 4;
const MAX_WAIT_MS: i32 = 500;
const PARTITION_MAX_BYTES: i32 = 4 << 20;
const RESPONSE_MAX_BYTES: i32 = 32 << 20;

struct Fetcher {
    partitions: watch::Sender<Vec<Arc<Partition>>>,
    task: JoinHandle<()>,
}

#[derive(Default)]
pub struct FetcherManager {
    fetchers: Mutex<HashMap<BrokerId, Fetcher>>,
}

impl FetcherManager {
    /// Points each leader's fetcher at its partitions; starts and stops fetchers as needed.
    pub fn update(&self, shared: &Arc<BrokerShared>, groups: FollowerGroups) {
        let mut fetchers = self.fetchers.lock().unwrap_or_else(|e| e.into_inner());
        fetchers.retain(|leader, f| {
            let keep = groups.contains_key(leader);
            if !keep {
                f.task.abort();
            }
            keep
        });
        for (leader, parts) in groups {
            if let Some(f) = fetchers.get(&leader) {
                f.partitions.send_replace(parts);
                continue;
            }
            let (tx, rx) = watch::channel(parts);
            let task = tokio::spawn(run_fetcher(shared.clone(), leader, rx));
            fetchers.insert(
                leader,
                Fetcher {
                    partitions: tx,
                    task,
                },
            );
        }
    }

    pub fn stop_all(&self) {
        let mut fetchers = self.fetchers.lock().unwrap_or_else(|e| e.into_inner());
        for (_, f) in fetchers.drain() {
            f.task.abort();
        }
    }
}

async fn run_fetcher(
    shared: Arc<BrokerShared>,
    leader: BrokerId,
    mut partitions: watch::Receiver<Vec<Arc<Partition>>>,
) {
    let mut conn: Option<KafkaConnection> = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        let parts = partitions.borrow_and_update().clone();
        if parts.is_empty() {
            if partitions.changed().await.is_err() {
                return;
            }
            continue;
        }
        if conn.is_none() {
            let addr = shared
                .image()
                .brokers
                .get(&leader)
                .map(|b| format!("{}:{}", b.host, b.kafka_port));
            let Some(addr) = addr else {
                tokio::time::sleep(backoff).await;
                continue;
            };
            let client_id = format!("dmq-replica-{}", shared.config.broker_id);
            let auth = shared.security.inter_broker();
            match KafkaConnection::connect_as_broker(
                &addr,
                &client_id,
                Duration::from_secs(2),
                auth,
            )
            .await
            {
                Ok(c) => {
                    tracing::debug!(leader, addr, "replica fetcher connected");
                    conn = Some(c);
                    backoff = Duration::from_millis(50);
                }
                Err(e) => {
                    tracing::debug!(leader, addr, "replica fetcher cannot connect: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        // Truncation first, for every partition that needs it.
        let truncating: Vec<(Arc<Partition>, i32, i32)> = parts
            .iter()
            .filter_map(|p| {
                p.truncation_needed()
                    .map(|(cur, last)| (p.clone(), cur, last))
            })
            .collect();
        if !truncating.is_empty() {
            match truncate(c, shared.config.broker_id, leader, &truncating).await {
                Ok(true) => {}
                Ok(false) => {
                    let _ = tokio::time::timeout(backoff, partitions.changed()).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => {
                    tracing::debug!(leader, "OffsetForLeaderEpoch failed: {e}");
                    conn = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
            continue;
        }
        let req = build_request(shared.config.broker_id, &parts);
        let resp = c
            .send(
                &req,
                REPLICA_FETCH_VERSION,
                Duration::from_millis(MAX_WAIT_MS as u64),
            )
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(leader, "replica fetch failed: {e}");
                conn = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let mut backoff_needed = resp.error_code != 0;
        for t in resp.responses {
            for p in t.partitions {
                let Some(part) = parts
                    .iter()
                    .find(|x| x.topic == t.topic.0.as_str() && x.index == p.partition_index)
                else {
                    continue;
                };
                if p.error_code == ResponseError::OffsetOutOfRange.code() {
                    // Our end is not in the leader's log: find the divergence again, or start
                    // over at the leader's log start when we are behind it. With a pause:
                    // a divergence that truncation cannot settle must not spin.
                    backoff_needed = true;
                    if let Err(e) = part.fetch_out_of_range(p.log_start_offset) {
                        tracing::warn!(partition = ?part, leader, "cannot reset the replica: {e}");
                    }
                    continue;
                }
                if p.error_code != 0 {
                    backoff_needed = true;
                    tracing::debug!(
                        partition = ?part,
                        leader,
                        error = ?ResponseError::try_from_code(p.error_code),
                        "replica fetch refused"
                    );
                    continue;
                }
                let records = p.records.unwrap_or_default();
                let (writer, batches) = (part.clone(), records.clone());
                let (hw, log_start) = (p.high_watermark, p.log_start_offset);
                let appended = crate::produce::off_runtime(move || {
                    writer.append_replicated(&batches, hw, log_start)
                })
                .await;
                if let Err(e) = appended {
                    backoff_needed = true;
                    tracing::warn!(partition = ?part, leader, "cannot append replicated batches: {e}");
                } else if !records.is_empty() {
                    shared
                        .metrics
                        .replicated_bytes(&part.topic, records.len() as u64);
                }
            }
        }
        if backoff_needed {
            // Wait for metadata to change (new leader, new epoch) or a short pause.
            let _ = tokio::time::timeout(backoff, partitions.changed()).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        } else {
            backoff = Duration::from_millis(50);
        }
    }
}

/// Asks the leader where our latest epoch ends and truncates each partition to it. `Ok(false)`
/// when the leader refused some partitions (not leader yet, epoch unknown): retry later.
async fn truncate(
    c: &mut KafkaConnection,
    me: BrokerId,
    leader: BrokerId,
    parts: &[(Arc<Partition>, i32, i32)],
) -> crate::error::Result<bool> {
    let mut topics: Vec<OffsetForLeaderTopic> = Vec::new();
    for (part, current, latest) in parts {
        let op = OffsetForLeaderPartition::default()
            .with_partition(part.index)
            .with_current_leader_epoch(*current)
            .with_leader_epoch(*latest);
        match topics
            .iter_mut()
            .find(|t| t.topic.0.as_str() == part.topic.as_str())
        {
            Some(t) => t.partitions.push(op),
            None => topics.push(
                OffsetForLeaderTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(part.topic.clone())))
                    .with_partitions(vec![op]),
            ),
        }
    }
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(me.into())
        .with_topics(topics);
    let resp = c.send(&req, EPOCH_VERSION, Duration::ZERO).await?;
    let mut all_done = true;
    for t in resp.topics {
        for r in t.partitions {
            let Some((part, _, asked)) = parts
                .iter()
                .find(|(x, _, _)| x.topic == t.topic.0.as_str() && x.index == r.partition)
            else {
                continue;
            };
            if r.error_code != 0 {
                all_done = false;
                tracing::debug!(
                    partition = ?part,
                    leader,
                    error = ?ResponseError::try_from_code(r.error_code),
                    "OffsetForLeaderEpoch refused"
                );
                continue;
            }
            if let Err(e) = part.truncate_to_leader(*asked, r.leader_epoch, r.end_offset) {
                all_done = false;
                tracing::warn!(partition = ?part, leader, "cannot truncate: {e}");
            }
        }
    }
    Ok(all_done)
}

fn build_request(me: BrokerId, parts: &[Arc<Partition>]) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for part in parts.iter().filter(|p| p.truncation_needed().is_none()) {
        let fp = FetchPartition::default()
            .with_partition(part.index)
            .with_current_leader_epoch(part.leader_epoch())
            .with_fetch_offset(part.log_end_offset())
            .with_last_fetched_epoch(part.log.latest_epoch().unwrap_or(-1))
            .with_log_start_offset(part.log.log_start_offset())
            .with_partition_max_bytes(PARTITION_MAX_BYTES);
        match topics
            .iter_mut()
            .find(|t| t.topic.0.as_str() == part.topic.as_str())
        {
            Some(t) => t.partitions.push(fp),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(part.topic.clone())))
                    .with_partitions(vec![fp]),
            ),
        }
    }
    FetchRequest::default()
        .with_replica_id(me.into())
        .with_max_wait_ms(MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(RESPONSE_MAX_BYTES)
        .with_session_epoch(-1)
        .with_topics(topics)
}
