//! The group consumer: Kafka's classic group protocol on top of [`Consumer`].
//!
//! ```text
//! poll ─► (rejoin needed?) FindCoordinator ─► JoinGroup (MEMBER_ID_REQUIRED → again with the id)
//!            ─► leader member computes the assignment (range | cooperative-sticky) ─► SyncGroup
//!            ─► fetch committed offsets of added partitions, seek ─► heartbeat task ─► fetch
//! ```
//!
//! * **range** is eager: a member gives up (and commits) every partition before rejoining.
//! * **cooperative-sticky** is incremental (KIP-429): members keep what they own; the leader
//!   keeps partitions with their owners where the balance allows, and a partition that must move
//!   is first only taken away; its owner revokes it (committing its offset) and rejoins at once,
//!   and the next round hands it to its new owner. Members never stop fetching what they keep.
//!
//! A background task heartbeats every `heartbeat_interval`; an answer that the group is
//! rebalancing (or that this member is unknown or fenced) makes the next `poll` rejoin.
//! Offsets are committed every `auto_commit_interval` from `poll` (and on revocation and
//! `close`) or by [`GroupConsumer::commit`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription, FindCoordinatorRequest,
    GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::sync::Notify;

use crate::cluster::{topic_name, Cluster};
use crate::consumer::{by_topic, Consumer, ConsumerConfig, Offset, TopicPartition};
use crate::error::{ClientError, Result};
use crate::records::ConsumerRecord;

/// How the group's leader member assigns partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Kafka's `range` (eager).
    Range,
    /// Kafka's `cooperative-sticky` (incremental).
    CooperativeSticky,
}

impl Assignor {
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "cooperative-sticky" => Some(Assignor::CooperativeSticky),
            _ => None,
        }
    }
}

impl std::str::FromStr for Assignor {
    type Err = ClientError;
    fn from_str(s: &str) -> Result<Self> {
        Assignor::from_name(s).ok_or_else(|| {
            ClientError::Config(format!(
                "assignor {s:?} is not one of range, cooperative-sticky"
            ))
        })
    }
}

/// Group settings; the defaults are the Java consumer's (heartbeat 3 s, session 45 s).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub group_id: String,
    /// Static membership (`group.instance.id`): a restart within the session keeps the
    /// assignment without a rebalance.
    pub group_instance_id: Option<String>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub assignor: Assignor,
    pub enable_auto_commit: bool,
    pub auto_commit_interval: Duration,
}

impl GroupConfig {
    pub fn new(group_id: impl Into<String>) -> Self {
        GroupConfig {
            group_id: group_id.into(),
            group_instance_id: None,
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            assignor: Assignor::Range,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
        }
    }
}

/// One member's subscription as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub topics: Vec<String>,
    pub owned: Vec<TopicPartition>,
}

/// Every member, with nothing assigned yet.
fn empty_plan(members: &[Subscription]) -> BTreeMap<String, Vec<TopicPartition>> {
    members
        .iter()
        .map(|m| (m.member_id.clone(), Vec::new()))
        .collect()
}

/// The members subscribed to `topic`.
fn subscribers<'a>(members: &'a [Subscription], topic: &str) -> Vec<&'a Subscription> {
    members
        .iter()
        .filter(|m| m.topics.iter().any(|t| t == topic))
        .collect()
}

/// Kafka's range assignor: per topic, members (ordered by instance id, else member id) get
/// consecutive ranges; the first `partitions % members` get one more.
pub fn assign_range(
    members: &[Subscription],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut out = empty_plan(members);
    for (topic, count) in partitions {
        let mut subs = subscribers(members, topic);
        if subs.is_empty() {
            continue;
        }
        subs.sort_by(|a, b| {
            let ka = a.instance_id.as_deref().unwrap_or(&a.member_id);
            let kb = b.instance_id.as_deref().unwrap_or(&b.member_id);
            ka.cmp(kb).then(a.member_id.cmp(&b.member_id))
        });
        let per = *count as usize / subs.len();
        let extra = *count as usize % subs.len();
        let mut next = 0;
        for (i, m) in subs.iter().enumerate() {
            let n = per + usize::from(i < extra);
            let list = out.entry(m.member_id.clone()).or_default();
            for p in next..next + n {
                list.push(TopicPartition::new(topic.clone(), p as i32));
            }
            next += n;
        }
    }
    out
}

/// Kafka's cooperative-sticky assignor: a balanced assignment that keeps every partition with
/// its current owner where the balance allows; then, cooperatively, a partition that changes
/// owner is left out of this round (its owner revokes it and rejoins; the next round assigns
/// it). Members subscribing to different topics are balanced per topic.
pub fn assign_cooperative_sticky(
    members: &[Subscription],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut out = empty_plan(members);
    let owner: BTreeMap<&TopicPartition, &str> = members
        .iter()
        .flat_map(|m| m.owned.iter().map(move |tp| (tp, m.member_id.as_str())))
        .collect();
    for (topic, count) in partitions {
        let mut subs = subscribers(members, topic);
        if subs.is_empty() {
            continue;
        }
        subs.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        let total = *count as usize;
        let base = total / subs.len();
        let mut extra_slots = total % subs.len();
        let mut target: BTreeMap<&str, Vec<TopicPartition>> = BTreeMap::new();
        let mut unassigned: Vec<TopicPartition> = Vec::new();
        // Keep owned partitions up to each member's quota (base, or base + 1 while extra
        // slots last). Owners with most partitions claim the extra slots first.
        let mut by_owned: Vec<(&str, Vec<TopicPartition>)> = subs
            .iter()
            .map(|m| {
                let mut owned: Vec<TopicPartition> = (0..*count)
                    .map(|p| TopicPartition::new(topic.clone(), p))
                    .filter(|tp| owner.get(tp) == Some(&m.member_id.as_str()))
                    .collect();
                owned.sort();
                (m.member_id.as_str(), owned)
            })
            .collect();
        by_owned.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
        for (member, owned) in by_owned {
            let mut quota = base;
            if extra_slots > 0 && owned.len() > base {
                quota += 1;
                extra_slots -= 1;
            }
            let keep = owned.len().min(quota);
            target.insert(member, owned[..keep].to_vec());
            unassigned.extend(owned[keep..].iter().cloned());
        }
        for p in 0..*count {
            let tp = TopicPartition::new(topic.clone(), p);
            let kept_by_subscriber = owner
                .get(&tp)
                .is_some_and(|o| subs.iter().any(|m| m.member_id == *o));
            if !kept_by_subscriber {
                unassigned.push(tp);
            }
        }
        unassigned.sort();
        unassigned.dedup();
        // Hand out the rest to whoever has least (below its quota), ties by member id.
        for tp in unassigned {
            if target.values().any(|v| v.contains(&tp)) {
                continue;
            }
            let Some(member) = target
                .iter()
                .map(|(m, v)| (*m, v.len()))
                .min_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)))
                .map(|(m, _)| m)
            else {
                continue;
            };
            if let Some(v) = target.get_mut(member) {
                v.push(tp);
            }
        }
        for (member, tps) in target {
            let list = out.entry(member.to_string()).or_default();
            for tp in tps {
                // Cooperative: a partition moving to `member` from another owner is withheld
                // until that owner has revoked it.
                match owner.get(&tp) {
                    Some(o) if *o != member => {}
                    _ => list.push(tp),
                }
            }
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

fn encode_subscription(
    topics: &[String],
    owned: &[TopicPartition],
    generation: i32,
) -> Result<Bytes> {
    let by_topic = by_topic(owned.iter().map(|tp| (tp.topic.as_str(), tp.partition)));
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(
            topics
                .iter()
                .map(|t| StrBytes::from_string(t.clone()))
                .collect(),
        )
        .with_owned_partitions(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OwnedTopic::default()
                        .with_topic(topic_name(t))
                        .with_partitions(ps)
                })
                .collect(),
        )
        .with_generation_id(generation);
    const VERSION: i16 = 2;
    let mut buf = BytesMut::new();
    buf.put_i16(VERSION);
    sub.encode(&mut buf, VERSION)
        .map_err(|e| ClientError::Protocol(format!("cannot encode a subscription: {e}")))?;
    Ok(buf.freeze())
}

fn decode_subscription(
    member_id: &str,
    instance_id: Option<String>,
    mut data: Bytes,
) -> Result<Subscription> {
    if data.remaining() < 2 {
        return Err(ClientError::Protocol(format!(
            "member {member_id} sent no subscription"
        )));
    }
    let version = data.get_i16().clamp(0, 3);
    let sub = ConsumerProtocolSubscription::decode(&mut data, version).map_err(|e| {
        ClientError::Protocol(format!("member {member_id} sent a bad subscription: {e}"))
    })?;
    Ok(Subscription {
        member_id: member_id.to_string(),
        instance_id,
        topics: sub.topics.iter().map(|t| t.to_string()).collect(),
        owned: sub
            .owned_partitions
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| TopicPartition::new(t.topic.0.to_string(), *p))
            })
            .collect(),
    })
}

fn encode_assignment(partitions: &[TopicPartition]) -> Result<Bytes> {
    let by_topic = by_topic(
        partitions
            .iter()
            .map(|tp| (tp.topic.as_str(), tp.partition)),
    );
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
        by_topic
            .into_iter()
            .map(|(t, ps)| {
                AssignedTopic::default()
                    .with_topic(topic_name(t))
                    .with_partitions(ps)
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    a.encode(&mut buf, 0)
        .map_err(|e| ClientError::Protocol(format!("cannot encode an assignment: {e}")))?;
    Ok(buf.freeze())
}

/// Decodes a consumer-protocol assignment (as SyncGroup and DescribeGroups carry it).
pub fn decode_assignment(mut data: Bytes) -> Result<Vec<TopicPartition>> {
    if data.remaining() < 2 {
        return Ok(Vec::new());
    }
    let version = data.get_i16().clamp(0, 3);
    let a = ConsumerProtocolAssignment::decode(&mut data, version)
        .map_err(|e| ClientError::Protocol(format!("bad assignment: {e}")))?;
    let mut out: Vec<TopicPartition> = a
        .assigned_partitions
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(t.topic.0.to_string(), *p))
        })
        .collect();
    out.sort();
    Ok(out)
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// FindCoordinator key type of a consumer group.
pub(crate) const COORDINATOR_KEY_GROUP: i8 = 0;
/// FindCoordinator key type of a transactional id.
pub(crate) const COORDINATOR_KEY_TXN: i8 = 1;

/// The broker coordinating `group` (FindCoordinator), retried while it is being elected.
pub(crate) async fn find_coordinator(cluster: &Cluster, group: &str) -> Result<i32> {
    find_coordinator_of(cluster, COORDINATOR_KEY_GROUP, group).await
}

/// The broker coordinating `key` of `key_type` (0 a group, 1 a transactional id), retried
/// while it is being elected.
pub(crate) async fn find_coordinator_of(
    cluster: &Cluster,
    key_type: i8,
    group: &str,
) -> Result<i32> {
    let deadline = Instant::now() + cluster.config().request_timeout;
    loop {
        let conn = cluster.any_broker().await?;
        let version = conn.version(ApiKey::FindCoordinator)?;
        let req = if version >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s(group)])
        } else {
            FindCoordinatorRequest::default().with_key(s(group))
        }
        .with_key_type(key_type);
        let resp = conn.send_at(&req, version, Duration::ZERO).await?;
        let (code, node) = match resp.coordinators.first() {
            Some(c) if version >= 4 => (c.error_code, c.node_id.0),
            _ => (resp.error_code, resp.node_id.0),
        };
        match code {
            0 => {
                if !cluster.metadata().brokers.contains_key(&node) {
                    cluster.refresh(Some(&[]), false).await?;
                }
                return Ok(node);
            }
            14 | 15 if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            c => {
                return Err(ClientError::kafka(
                    c,
                    format!("finding the coordinator of {group:?}"),
                ))
            }
        }
    }
}

/// Committed offsets of `group` (all topics when `topics` is `None`), from its coordinator.
pub(crate) async fn fetch_committed(
    cluster: &Cluster,
    coordinator: i32,
    group: &str,
    topics: Option<&[TopicPartition]>,
) -> Result<BTreeMap<TopicPartition, i64>> {
    let conn = cluster.broker(coordinator).await?;
    let version = conn.version(ApiKey::OffsetFetch)?;
    if version < 8 {
        return Err(ClientError::Protocol(format!(
            "broker {} supports OffsetFetch only up to v{version}; this client needs v8",
            conn.addr()
        )));
    }
    let topics = topics.map(|tps| {
        by_topic(tps.iter().map(|tp| (tp.topic.as_str(), tp.partition)))
            .into_iter()
            .map(|(t, ps)| {
                OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s(t)))
                    .with_partition_indexes(ps)
            })
            .collect()
    });
    let req = OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(topics)]);
    let resp = conn.send_at(&req, version, Duration::ZERO).await?;
    let mut out = BTreeMap::new();
    for g in resp.groups {
        if g.error_code != 0 {
            return Err(ClientError::kafka(
                g.error_code,
                format!("fetching offsets of {group:?}"),
            ));
        }
        for t in g.topics {
            for p in t.partitions {
                if p.error_code != 0 {
                    return Err(ClientError::kafka(
                        p.error_code,
                        format!("fetching the offset of {}-{}", t.name.0, p.partition_index),
                    ));
                }
                if p.committed_offset >= 0 {
                    out.insert(
                        TopicPartition::new(t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
    }
    Ok(out)
}

/// Commits `offsets` for `group` as member `member_id` of `generation` (-1 and "" for an
/// admin commit to a group without members).
pub(crate) async fn commit_offsets(
    cluster: &Cluster,
    coordinator: i32,
    group: &str,
    generation: i32,
    member_id: &str,
    instance_id: Option<&str>,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let by_topic = by_topic(offsets.iter().map(|(tp, o)| {
        (
            tp.topic.as_str(),
            OffsetCommitRequestPartition::default()
                .with_partition_index(tp.partition)
                .with_committed_offset(*o)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(s(""))),
        )
    }));
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member_id))
        .with_group_instance_id(instance_id.map(s))
        .with_retention_time_ms(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let conn = cluster.broker(coordinator).await?;
    let (resp, _) = conn.send(&req, Duration::ZERO).await?;
    for t in resp.topics {
        for p in t.partitions {
            if p.error_code != 0 {
                return Err(ClientError::kafka(
                    p.error_code,
                    format!(
                        "committing {}-{} for {group:?}",
                        t.name.0, p.partition_index
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// What a transactional producer needs to commit a group's offsets in its transaction
/// (Java's `ConsumerGroupMetadata`): from KIP-447 on, the group coordinator checks the
/// generation and member id, so a consumer that lost its partitions in a rebalance (a zombie)
/// cannot commit their offsets through a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    pub group_id: String,
    /// -1 when the offsets are not tied to a member (a group without members).
    pub generation_id: i32,
    /// "" when the offsets are not tied to a member.
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

impl ConsumerGroupMetadata {
    /// Metadata of a group without a live member: the coordinator then checks no generation.
    pub fn new(group_id: impl Into<String>) -> Self {
        ConsumerGroupMetadata {
            group_id: group_id.into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}

/// What the heartbeat task shares with the consumer.
struct Membership {
    rejoin: AtomicBool,
    wake: Notify,
}

/// A consumer in a consumer group.
///
/// ```no_run
/// # async fn demo() -> dmq_client::Result<()> {
/// use std::time::Duration;
/// use dmq_client::{ConsumerConfig, GroupConfig, GroupConsumer};
/// let mut config = GroupConfig::new("billing");
/// config.assignor = "cooperative-sticky".parse()?;
/// let mut consumer =
///     GroupConsumer::new(ConsumerConfig::new("localhost:19092"), config, vec!["orders".into()]).await?;
/// loop {
///     for record in consumer.poll(Duration::from_secs(1)).await? {
///         println!("{}-{}@{}", record.topic, record.partition, record.offset);
///     }
/// }
/// # }
/// ```
pub struct GroupConsumer {
    consumer: Consumer,
    config: GroupConfig,
    topics: Vec<String>,
    member_id: String,
    generation: i32,
    coordinator: Option<i32>,
    assigned: Vec<TopicPartition>,
    membership: Arc<Membership>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
    last_commit: Instant,
    joined: bool,
    /// As the group's leader: the partition counts the last assignment was computed from, and
    /// when they were last compared with the metadata.
    led: std::sync::Mutex<Option<(BTreeMap<String, i32>, Instant)>>,
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}

impl GroupConsumer {
    /// Connects; the group is joined by the first `poll`.
    pub async fn new(
        consumer: ConsumerConfig,
        config: GroupConfig,
        topics: Vec<String>,
    ) -> Result<GroupConsumer> {
        if config.group_id.is_empty() {
            return Err(ClientError::Config("the group id is empty".into()));
        }
        if topics.is_empty() {
            return Err(ClientError::Config(
                "subscribe to at least one topic".into(),
            ));
        }
        if config.heartbeat_interval >= config.session_timeout {
            return Err(ClientError::Config(
                "heartbeat_interval must be shorter than session_timeout".into(),
            ));
        }
        Ok(GroupConsumer {
            consumer: Consumer::new(consumer).await?,
            config,
            topics,
            member_id: String::new(),
            generation: -1,
            coordinator: None,
            assigned: Vec::new(),
            membership: Arc::new(Membership {
                rejoin: AtomicBool::new(true),
                wake: Notify::new(),
            }),
            heartbeat: None,
            last_commit: Instant::now(),
            joined: false,
            led: std::sync::Mutex::new(None),
        })
    }

    /// As the leader, every `metadata_max_age`: if a subscribed topic gained partitions since
    /// the last assignment, rebalance so that they get owners (Kafka's leader does the same).
    async fn check_partition_counts(&self) {
        let due = {
            let led = self.led.lock().unwrap_or_else(|p| p.into_inner());
            match &*led {
                Some((counts, checked)) => (checked.elapsed()
                    >= self.consumer.cluster().config().metadata_max_age)
                    .then(|| counts.clone()),
                None => None,
            }
        };
        let Some(counts) = due else { return };
        let topics: Vec<String> = counts.keys().cloned().collect();
        let Ok(meta) = self.consumer.cluster().refresh(Some(&topics), false).await else {
            return;
        };
        let now: BTreeMap<String, i32> = topics
            .iter()
            .filter_map(|t| {
                meta.topic(t)
                    .map(|i| (t.clone(), i.partitions.len() as i32))
            })
            .collect();
        if now != counts {
            tracing::info!(group = %self.config.group_id, ?counts, ?now, "partition counts changed; rebalancing");
            self.request_rejoin();
        }
        if let Some((_, checked)) = &mut *self.led.lock().unwrap_or_else(|p| p.into_inner()) {
            *checked = Instant::now();
        }
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        self.consumer.cluster()
    }

    /// The partitions this member owns now.
    pub fn assignment(&self) -> &[TopicPartition] {
        &self.assigned
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The group, generation and member id to pass to
    /// [`crate::Producer::send_offsets_to_transaction`] (Java's `consumer.groupMetadata()`);
    /// take it after the `poll` whose records the transaction processed.
    pub fn group_metadata(&self) -> ConsumerGroupMetadata {
        ConsumerGroupMetadata {
            group_id: self.config.group_id.clone(),
            generation_id: self.generation,
            member_id: self.member_id.clone(),
            group_instance_id: self.config.group_instance_id.clone(),
        }
    }

    /// The offset of the next record `poll` returns for `tp` (what a transaction that processed
    /// every record polled so far commits with `send_offsets_to_transaction`).
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.consumer.position(tp)
    }

    /// Records from the owned partitions, (re)joining the group first when needed; commits
    /// when auto-commit is due.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.membership.rejoin.load(Ordering::Acquire) {
                self.join().await?;
            }
            self.check_partition_counts().await;
            if self.config.enable_auto_commit
                && self.last_commit.elapsed() >= self.config.auto_commit_interval
            {
                if let Err(e) = self.commit().await {
                    tracing::debug!("auto-commit failed: {e}");
                }
            }
            let now = Instant::now();
            let wait = deadline.saturating_duration_since(now);
            let membership = self.membership.clone();
            let rebalance = membership.wake.notified();
            tokio::pin!(rebalance);
            rebalance.as_mut().enable();
            if membership.rejoin.load(Ordering::Acquire) {
                continue;
            }
            tokio::select! {
                r = self.consumer.poll(wait) => {
                    let records = r?;
                    if !records.is_empty() || Instant::now() >= deadline {
                        return Ok(records);
                    }
                }
                _ = &mut rebalance => {}
            }
        }
    }

    /// Commits the position of every owned partition (the offset after the last record
    /// `poll` returned).
    pub async fn commit(&mut self) -> Result<()> {
        let offsets: BTreeMap<TopicPartition, i64> = self
            .assigned
            .iter()
            .filter_map(|tp| self.consumer.position(tp).map(|o| (tp.clone(), o)))
            .collect();
        self.commit_offsets(&offsets).await
    }

    /// Commits the given offsets (the offset of the next record to read, as Kafka does).
    pub async fn commit_offsets(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
        self.last_commit = Instant::now();
        if offsets.is_empty() || !self.joined {
            return Ok(());
        }
        let coordinator = self.coordinator().await?;
        let r = commit_offsets(
            self.consumer.cluster(),
            coordinator,
            &self.config.group_id,
            self.generation,
            &self.member_id,
            self.config.group_instance_id.as_deref(),
            offsets,
        )
        .await;
        if let Err(e) = &r {
            match e.code() {
                Some(22 | 25 | 27 | 82) => self.request_rejoin(),
                Some(14..=16) => self.coordinator = None,
                _ => {}
            }
        }
        r
    }

    /// Commits (with auto-commit) and leaves the group, so that its partitions move at once.
    pub async fn close(mut self) -> Result<()> {
        if self.config.enable_auto_commit {
            let _ = self.commit().await;
        }
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        if !self.joined || self.config.group_instance_id.is_some() {
            // A static member keeps its assignment across restarts (Kafka: no leave).
            return Ok(());
        }
        let coordinator = self.coordinator().await?;
        let conn = self.consumer.cluster().broker(coordinator).await?;
        let version = conn.version(ApiKey::LeaveGroup)?;
        let req = LeaveGroupRequest::default().with_group_id(GroupId(s(&self.config.group_id)));
        // v3+ leaves as a list of members (KIP-345); v0-2 name the one member.
        let req = if version >= 3 {
            req.with_members(vec![MemberIdentity::default()
                .with_member_id(s(&self.member_id))
                .with_reason((version >= 5).then(|| s("the consumer is closing")))])
        } else {
            req.with_member_id(s(&self.member_id))
        };
        let resp = conn.send_at(&req, version, Duration::ZERO).await?;
        if resp.error_code != 0 {
            return Err(ClientError::kafka(resp.error_code, "LeaveGroup"));
        }
        Ok(())
    }

    fn request_rejoin(&self) {
        self.membership.rejoin.store(true, Ordering::Release);
        self.membership.wake.notify_waiters();
    }

    async fn coordinator(&mut self) -> Result<i32> {
        if let Some(c) = self.coordinator {
            return Ok(c);
        }
        let c = find_coordinator(self.consumer.cluster(), &self.config.group_id).await?;
        self.coordinator = Some(c);
        Ok(c)
    }

    /// Join and sync until this member has a stable assignment.
    async fn join(&mut self) -> Result<()> {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        // Set again by `lead` if this member leads the next generation.
        *self.led.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let eager = self.config.assignor == Assignor::Range;
        if eager && !self.assigned.is_empty() {
            // Eager protocol: give everything up (committing it) before rejoining.
            if self.config.enable_auto_commit {
                if let Err(e) = self.commit().await {
                    tracing::debug!("commit before rejoining failed: {e}");
                }
            }
            self.assigned.clear();
            self.consumer.assign(Vec::new());
        }
        let deadline = Instant::now() + self.config.rebalance_timeout + self.config.session_timeout;
        self.membership.rejoin.store(false, Ordering::Release);
        loop {
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout(format!(
                    "joining group {:?}",
                    self.config.group_id
                )));
            }
            match self.join_once().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) if e.is_retriable() => {
                    tracing::debug!("joining {:?}: {e}; retrying", self.config.group_id);
                    self.coordinator = None;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
        self.joined = true;
        self.heartbeat = Some(tokio::spawn(heartbeat_loop(
            self.consumer.cluster().clone(),
            self.coordinator.unwrap_or(-1),
            self.config.clone(),
            self.member_id.clone(),
            self.generation,
            self.membership.clone(),
        )));
        Ok(())
    }

    /// One JoinGroup + SyncGroup round; `Ok(false)` to go again.
    async fn join_once(&mut self) -> Result<bool> {
        let coordinator = self.coordinator().await?;
        let cluster = self.consumer.cluster().clone();
        let conn = cluster.broker(coordinator).await?;
        let protocol = self.config.assignor;
        let req = JoinGroupRequest::default()
            .with_group_id(GroupId(s(&self.config.group_id)))
            .with_session_timeout_ms(self.config.session_timeout.as_millis() as i32)
            .with_rebalance_timeout_ms(self.config.rebalance_timeout.as_millis() as i32)
            .with_member_id(s(&self.member_id))
            .with_group_instance_id(self.config.group_instance_id.as_deref().map(s))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s(protocol.name()))
                .with_metadata(encode_subscription(
                    &self.topics,
                    &self.assigned,
                    self.generation,
                )?)]);
        let (resp, _) = conn.send(&req, self.config.rebalance_timeout).await?;
        match resp.error_code {
            0 => {}
            79 => {
                // MEMBER_ID_REQUIRED (KIP-394): join again with the id the coordinator gave.
                self.member_id = resp.member_id.to_string();
                return Ok(false);
            }
            25 => {
                self.member_id.clear();
                return Ok(false);
            }
            27 => return Ok(false),
            14..=16 => {
                self.coordinator = None;
                return Ok(false);
            }
            c => {
                return Err(ClientError::kafka(
                    c,
                    format!("joining {:?}", self.config.group_id),
                ))
            }
        }
        self.member_id = resp.member_id.to_string();
        self.generation = resp.generation_id;
        let chosen = resp
            .protocol_name
            .as_ref()
            .and_then(|p| Assignor::from_name(p))
            .unwrap_or(protocol);
        let assignments = if resp.leader.as_str() == self.member_id.as_str() {
            self.lead(chosen, &resp.members).await?
        } else {
            Vec::new()
        };
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s(&self.config.group_id)))
            .with_generation_id(self.generation)
            .with_member_id(s(&self.member_id))
            .with_group_instance_id(self.config.group_instance_id.as_deref().map(s))
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s(chosen.name())))
            .with_assignments(assignments);
        let (resp, _) = conn.send(&sync, self.config.rebalance_timeout).await?;
        match resp.error_code {
            0 => {}
            27 => return Ok(false),
            22 | 25 => {
                if resp.error_code == 25 {
                    self.member_id.clear();
                }
                return Ok(false);
            }
            14..=16 => {
                self.coordinator = None;
                return Ok(false);
            }
            c => {
                return Err(ClientError::kafka(
                    c,
                    format!("syncing {:?}", self.config.group_id),
                ))
            }
        }
        let new = decode_assignment(resp.assignment)?;
        self.apply(new, chosen, coordinator).await
    }

    /// As the leader member: compute everyone's assignment.
    async fn lead(
        &self,
        assignor: Assignor,
        members: &[kafka_protocol::messages::join_group_response::JoinGroupResponseMember],
    ) -> Result<Vec<SyncGroupRequestAssignment>> {
        let subs: Vec<Subscription> = members
            .iter()
            .map(|m| {
                decode_subscription(
                    m.member_id.as_str(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                    m.metadata.clone(),
                )
            })
            .collect::<Result<_>>()?;
        let mut topics: Vec<String> = subs.iter().flat_map(|s| s.topics.clone()).collect();
        topics.sort();
        topics.dedup();
        let meta = self
            .consumer
            .cluster()
            .refresh(Some(&topics), false)
            .await?;
        let partitions: BTreeMap<String, i32> = topics
            .iter()
            .filter_map(|t| {
                meta.topic(t)
                    .map(|i| (t.clone(), i.partitions.len() as i32))
            })
            .collect();
        *self.led.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((partitions.clone(), Instant::now()));
        let plan = match assignor {
            Assignor::Range => assign_range(&subs, &partitions),
            Assignor::CooperativeSticky => assign_cooperative_sticky(&subs, &partitions),
        };
        plan.into_iter()
            .map(|(member, tps)| {
                Ok(SyncGroupRequestAssignment::default()
                    .with_member_id(s(&member))
                    .with_assignment(encode_assignment(&tps)?))
            })
            .collect()
    }

    /// Takes a new assignment: revoke what went away (committing it), start what is new at its
    /// committed offset. `Ok(false)` when a cooperative revocation needs another round.
    async fn apply(
        &mut self,
        new: Vec<TopicPartition>,
        assignor: Assignor,
        coordinator: i32,
    ) -> Result<bool> {
        let old: BTreeSet<TopicPartition> = self.assigned.iter().cloned().collect();
        let next: BTreeSet<TopicPartition> = new.iter().cloned().collect();
        let revoked: Vec<TopicPartition> = old.difference(&next).cloned().collect();
        let added: Vec<TopicPartition> = next.difference(&old).cloned().collect();
        if !revoked.is_empty() && self.config.enable_auto_commit {
            let offsets: BTreeMap<TopicPartition, i64> = revoked
                .iter()
                .filter_map(|tp| self.consumer.position(tp).map(|o| (tp.clone(), o)))
                .collect();
            if let Err(e) = self.commit_offsets(&offsets).await {
                tracing::debug!("committing revoked partitions failed: {e}");
            }
        }
        self.consumer.assign(new.clone());
        self.assigned = new;
        if !added.is_empty() {
            let committed = fetch_committed(
                self.consumer.cluster(),
                coordinator,
                &self.config.group_id,
                Some(&added),
            )
            .await?;
            for tp in &added {
                if let Some(o) = committed.get(tp) {
                    self.consumer.seek(tp, Offset::At(*o))?;
                }
            }
        }
        tracing::debug!(
            group = %self.config.group_id,
            generation = self.generation,
            assigned = ?self.assigned,
            "joined"
        );
        // Cooperative: having revoked something, rejoin so that it can be handed over.
        Ok(assignor != Assignor::CooperativeSticky || revoked.is_empty())
    }
}

async fn heartbeat_loop(
    cluster: Arc<Cluster>,
    coordinator: i32,
    config: GroupConfig,
    member_id: String,
    generation: i32,
    membership: Arc<Membership>,
) {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s(&config.group_id)))
        .with_generation_id(generation)
        .with_member_id(s(&member_id))
        .with_group_instance_id(config.group_instance_id.as_deref().map(s));
    loop {
        tokio::time::sleep(config.heartbeat_interval).await;
        let answer = async {
            let conn = cluster.broker(coordinator).await?;
            let (resp, _) = conn.send(&req, Duration::ZERO).await?;
            Ok::<i16, ClientError>(resp.error_code)
        }
        .await;
        let rejoin = match answer {
            Ok(0) => false,
            Ok(code) => {
                tracing::debug!(code, "heartbeat: rejoining");
                true
            }
            Err(e) => {
                tracing::debug!("heartbeat failed: {e}; rejoining");
                true
            }
        };
        if rejoin {
            membership.rejoin.store(true, Ordering::Release);
            membership.wake.notify_waiters();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str], owned: &[(&str, i32)]) -> Subscription {
        Subscription {
            member_id: id.into(),
            instance_id: None,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            owned: owned
                .iter()
                .map(|(t, p)| TopicPartition::new(*t, *p))
                .collect(),
        }
    }

    fn parts(v: &[TopicPartition]) -> Vec<String> {
        v.iter().map(|tp| tp.to_string()).collect()
    }

    #[test]
    fn range_gives_consecutive_ranges_like_kafka() {
        let members = [member("b", &["t"], &[]), member("a", &["t"], &[])];
        let counts = BTreeMap::from([("t".to_string(), 5)]);
        let plan = assign_range(&members, &counts);
        assert_eq!(parts(&plan["a"]), vec!["t-0", "t-1", "t-2"]);
        assert_eq!(parts(&plan["b"]), vec!["t-3", "t-4"]);
    }

    #[test]
    fn cooperative_sticky_keeps_owners_and_withholds_moves_for_one_round() {
        let counts = BTreeMap::from([("t".to_string(), 4)]);
        // Two members own two partitions each; a third joins.
        let members = [
            member("a", &["t"], &[("t", 0), ("t", 1)]),
            member("b", &["t"], &[("t", 2), ("t", 3)]),
            member("c", &["t"], &[]),
        ];
        let first = assign_cooperative_sticky(&members, &counts);
        // Balanced target is 2/1/1: one of a's or b's partitions must move to c — but c does
        // not get it yet, and its owner loses it.
        let total: usize = first.values().map(Vec::len).sum();
        assert_eq!(total, 3, "{first:?}");
        assert!(first["c"].is_empty(), "{first:?}");
        // After the owner revoked, the next round gives it to c and moves nothing else.
        let members2 = [
            member(
                "a",
                &["t"],
                &first["a"]
                    .iter()
                    .map(|tp| ("t", tp.partition))
                    .collect::<Vec<_>>(),
            ),
            member(
                "b",
                &["t"],
                &first["b"]
                    .iter()
                    .map(|tp| ("t", tp.partition))
                    .collect::<Vec<_>>(),
            ),
            member("c", &["t"], &[]),
        ];
        let second = assign_cooperative_sticky(&members2, &counts);
        assert_eq!(second["a"], first["a"]);
        assert_eq!(second["b"], first["b"]);
        assert_eq!(second["c"].len(), 1);
        let all: BTreeSet<String> = second.values().flat_map(|v| parts(v)).collect();
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn subscriptions_and_assignments_roundtrip() {
        let owned = vec![TopicPartition::new("t", 1), TopicPartition::new("u", 0)];
        let data = encode_subscription(&["t".into(), "u".into()], &owned, 7).expect("encode");
        let sub = decode_subscription("m", None, data).expect("decode");
        assert_eq!(sub.topics, vec!["t", "u"]);
        assert_eq!(sub.owned, owned);
        let a = encode_assignment(&owned).expect("encode");
        assert_eq!(decode_assignment(a).expect("decode"), owned);
        assert!(decode_subscription("m", None, Bytes::from_static(&[0, 1, 0xff])).is_err());
    }
}
