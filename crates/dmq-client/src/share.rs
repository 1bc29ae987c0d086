//! The share consumer (KIP-932, "queues"): members of a share group read the same partitions,
//! each record is handed to one member at a time with a delivery count, and acknowledged on
//! its own.
//!
//! ```text
//! poll ─► heartbeat due? FindCoordinator ─► ShareGroupHeartbeat (epoch 0 joins) ─► assignment
//!      ─► per leader: ShareFetch (share session epoch 0, then N; pending acknowledgements ride
//!         along) ─► records inside the acquired ranges, each with its delivery count
//! acknowledge(record, Accept | Release | Reject) ─► commit_sync: ShareAcknowledge per leader
//! close ─► ShareAcknowledge epoch -1 (releases what is held) ─► ShareGroupHeartbeat epoch -1
//! ```
//!
//! Heartbeats are sent from `poll` (every `heartbeat_interval` the coordinator asks for): a
//! member that stops polling for longer than the group's session timeout leaves the group, and
//! its records are released when their locks run out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::share_acknowledge_request::{
    AcknowledgePartition, AcknowledgeTopic, AcknowledgementBatch as AckAckBatch,
};
use kafka_protocol::messages::share_fetch_request::{
    AcknowledgementBatch, FetchPartition, FetchTopic,
};
use kafka_protocol::messages::{
    ApiKey, GroupId, ShareAcknowledgeRequest, ShareFetchRequest, ShareGroupHeartbeatRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Cluster;
use crate::consumer::TopicPartition;
use crate::error::{ClientError, Result};
use crate::records::{decode_fetched, ConsumerRecord};
use crate::ClientConfig;

/// How a record is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckType {
    /// Processed: never delivered again.
    Accept,
    /// Not processed: delivered again (to any member), with its delivery count raised.
    Release,
    /// Unprocessable: archived (and copied to the group's dead-letter topic, if it has one).
    Reject,
}

impl AckType {
    /// The wire code (KIP-932: 1 accept, 2 release, 3 reject).
    pub fn code(self) -> i8 {
        match self {
            AckType::Accept => 1,
            AckType::Release => 2,
            AckType::Reject => 3,
        }
    }
}

impl std::str::FromStr for AckType {
    type Err = ClientError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "accept" => Ok(AckType::Accept),
            "release" => Ok(AckType::Release),
            "reject" => Ok(AckType::Reject),
            other => Err(ClientError::Config(format!(
                "acknowledge type {other:?} is not one of accept, release, reject"
            ))),
        }
    }
}

/// A record handed to this member.
#[derive(Debug, Clone)]
pub struct ShareRecord {
    pub record: ConsumerRecord,
    /// How often the record has been delivered (1 the first time).
    pub delivery_count: i16,
}

/// Settings of a [`ShareConsumer`].
#[derive(Debug, Clone)]
pub struct ShareConsumerConfig {
    pub client: ClientConfig,
    pub group: String,
    /// Records one ShareFetch asks for at most (`max.poll.records`).
    pub max_records: i32,
    /// How long a ShareFetch waits for records.
    pub max_wait: Duration,
}

impl ShareConsumerConfig {
    pub fn new(bootstrap: impl Into<String>, group: impl Into<String>) -> Self {
        ShareConsumerConfig {
            client: ClientConfig::new(bootstrap),
            group: group.into(),
            max_records: 500,
            max_wait: Duration::from_millis(500),
        }
    }
}

/// A member's share session with one leader.
#[derive(Debug, Default)]
struct Session {
    epoch: i32,
    /// Partitions the session fetches (sent when the session opens or they are added).
    partitions: BTreeSet<(String, i32)>,
}

/// A member of a share group. Not `Sync`: one task polls it.
pub struct ShareConsumer {
    cluster: Arc<Cluster>,
    config: ShareConsumerConfig,
    member_id: String,
    member_epoch: i32,
    topics: Vec<String>,
    assignment: BTreeSet<(String, i32)>,
    coordinator: Option<i32>,
    next_heartbeat: Instant,
    heartbeat_interval: Duration,
    sessions: HashMap<i32, Session>,
    /// Acknowledgements not sent yet, per partition: offset → type.
    pending: BTreeMap<(String, i32), BTreeMap<i64, AckType>>,
}

/// A new member id: 22 characters of URL-safe base64 of a random UUID, as Kafka clients make.
fn new_member_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Acknowledgement batches of one partition: runs of consecutive offsets with one type.
fn ack_batches(acks: &BTreeMap<i64, AckType>) -> Vec<(i64, i64, i8)> {
    let mut out: Vec<(i64, i64, i8)> = Vec::new();
    for (&offset, ack) in acks {
        match out.last_mut() {
            Some(last) if last.1 + 1 == offset && last.2 == ack.code() => last.1 = offset,
            _ => out.push((offset, offset, ack.code())),
        }
    }
    out
}

impl ShareConsumer {
    pub async fn new(config: ShareConsumerConfig) -> Result<ShareConsumer> {
        if config.group.is_empty() {
            return Err(ClientError::Config("a share consumer needs a group".into()));
        }
        let cluster = Cluster::connect(config.client.clone()).await?;
        Ok(ShareConsumer {
            cluster,
            config,
            member_id: new_member_id(),
            member_epoch: 0,
            topics: Vec::new(),
            assignment: BTreeSet::new(),
            coordinator: None,
            next_heartbeat: Instant::now(),
            heartbeat_interval: Duration::from_secs(5),
            sessions: HashMap::new(),
            pending: BTreeMap::new(),
        })
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The partitions the coordinator assigned to this member (shared with other members).
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.assignment
            .iter()
            .map(|(t, p)| TopicPartition::new(t.clone(), *p))
            .collect()
    }

    /// Subscribes to `topics` (replacing the subscription); the next poll joins the group.
    pub fn subscribe(&mut self, topics: &[&str]) {
        self.topics = topics.iter().map(|t| t.to_string()).collect();
        self.next_heartbeat = Instant::now();
    }

    /// One ShareGroupHeartbeat (join with epoch 0, leave with -1).
    async fn heartbeat(&mut self, epoch: i32) -> Result<()> {
        let coordinator = match self.coordinator {
            Some(c) => c,
            None => {
                let c = crate::group::find_coordinator(&self.cluster, &self.config.group).await?;
                self.coordinator = Some(c);
                c
            }
        };
        let conn = match self.cluster.broker(coordinator).await {
            Ok(c) => c,
            Err(e) => {
                self.coordinator = None;
                return Err(e);
            }
        };
        let req = ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.config.group)))
            .with_member_id(s(&self.member_id))
            .with_member_epoch(epoch)
            .with_subscribed_topic_names(
                (epoch == 0).then(|| self.topics.iter().map(|t| TopicName(s(t))).collect()),
            );
        let resp = match conn.send(&req, Duration::ZERO).await {
            Ok((r, _)) => r,
            Err(e) => {
                self.coordinator = None;
                return Err(e);
            }
        };
        match resp.error_code {
            0 => {}
            // NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE: find it again.
            15 | 16 => {
                self.coordinator = None;
                return Err(ClientError::kafka(resp.error_code, "ShareGroupHeartbeat"));
            }
            // UNKNOWN_MEMBER_ID, FENCED_MEMBER_EPOCH: join again.
            25 | 110 => {
                self.member_epoch = 0;
                self.next_heartbeat = Instant::now();
                return Err(ClientError::kafka(resp.error_code, "ShareGroupHeartbeat"));
            }
            code => return Err(ClientError::kafka(code, "ShareGroupHeartbeat")),
        }
        if epoch == -1 {
            return Ok(());
        }
        self.member_epoch = resp.member_epoch;
        self.heartbeat_interval =
            Duration::from_millis(u64::try_from(resp.heartbeat_interval_ms).unwrap_or(5000));
        self.next_heartbeat = Instant::now() + self.heartbeat_interval;
        if let Some(a) = resp.assignment {
            let meta = self.cluster.metadata();
            let mut assigned = BTreeSet::new();
            for tp in a.topic_partitions {
                let name = meta
                    .topics
                    .values()
                    .find(|t| t.id == tp.topic_id)
                    .map(|t| t.name.clone());
                let name = match name {
                    Some(n) => n,
                    None => {
                        // A topic id this client has not seen: refresh and look again.
                        let topics: Vec<String> = self.topics.clone();
                        self.cluster.refresh(Some(&topics), false).await?;
                        match self
                            .cluster
                            .metadata()
                            .topics
                            .values()
                            .find(|t| t.id == tp.topic_id)
                        {
                            Some(t) => t.name.clone(),
                            None => continue,
                        }
                    }
                };
                for p in tp.partitions {
                    assigned.insert((name.clone(), p));
                }
            }
            self.assignment = assigned;
        }
        Ok(())
    }

    /// Records acknowledged with `ack` are settled with the next fetch or `commit_sync`.
    pub fn acknowledge(&mut self, record: &ShareRecord, ack: AckType) {
        self.pending
            .entry((record.record.topic.clone(), record.record.partition))
            .or_default()
            .insert(record.record.offset, ack);
    }

    /// Records handed to this member: waits up to `timeout` for some. Acknowledgements given
    /// since the last call go along with the fetches.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ShareRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.topics.is_empty() {
                return Err(ClientError::Config("poll before subscribe".into()));
            }
            if Instant::now() >= self.next_heartbeat {
                if let Err(e) = self.heartbeat(self.member_epoch).await {
                    tracing::debug!(group = %self.config.group, "share heartbeat: {e}");
                    self.next_heartbeat = Instant::now() + Duration::from_millis(200);
                }
            }
            let records = self.fetch_once(deadline).await?;
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
            if self.assignment.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Leader of each assigned partition (and of partitions with pending acknowledgements).
    async fn by_leader(&self) -> BTreeMap<i32, BTreeSet<(String, i32)>> {
        let mut out: BTreeMap<i32, BTreeSet<(String, i32)>> = BTreeMap::new();
        let wanted: BTreeSet<(String, i32)> = self
            .assignment
            .iter()
            .cloned()
            .chain(self.pending.keys().cloned())
            .collect();
        let meta = self.cluster.metadata();
        for (t, p) in wanted {
            if let Some(l) = meta.leader(&t, p).filter(|l| *l >= 0) {
                out.entry(l).or_default().insert((t, p));
            }
        }
        out
    }

    async fn fetch_once(&mut self, deadline: Instant) -> Result<Vec<ShareRecord>> {
        let leaders = self.by_leader().await;
        let mut out = Vec::new();
        let mut stale_metadata = false;
        for (leader, parts) in leaders {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(self.config.max_wait);
            match self.fetch_from(leader, &parts, wait).await {
                Ok((records, stale)) => {
                    out.extend(records);
                    stale_metadata |= stale;
                }
                Err(e) => {
                    tracing::debug!(leader, "ShareFetch: {e}");
                    self.sessions.remove(&leader);
                    stale_metadata = true;
                }
            }
        }
        if stale_metadata {
            let topics: Vec<String> = self.topics.clone();
            let _ = self.cluster.refresh(Some(&topics), false).await;
        }
        Ok(out)
    }

    /// One ShareFetch to `leader` for `parts`, with the pending acknowledgements of those
    /// partitions. Returns the records and whether metadata looked stale.
    async fn fetch_from(
        &mut self,
        leader: i32,
        parts: &BTreeSet<(String, i32)>,
        wait: Duration,
    ) -> Result<(Vec<ShareRecord>, bool)> {
        let conn = self.cluster.broker(leader).await?;
        let meta = self.cluster.metadata();
        let session = self.sessions.entry(leader).or_default();
        let opening = session.epoch == 0;
        // Acknowledgements need an open session: the first fetch opens it without them.
        let mut sent_acks: Vec<(String, i32)> = Vec::new();
        let mut topics: BTreeMap<String, Vec<FetchPartition>> = BTreeMap::new();
        for (t, p) in parts {
            let mut fp = FetchPartition::default().with_partition_index(*p);
            if !opening {
                if let Some(acks) = self.pending.get(&(t.clone(), *p)) {
                    fp = fp.with_acknowledgement_batches(
                        ack_batches(acks)
                            .into_iter()
                            .map(|(first, last, code)| {
                                AcknowledgementBatch::default()
                                    .with_first_offset(first)
                                    .with_last_offset(last)
                                    .with_acknowledge_types(vec![code])
                            })
                            .collect(),
                    );
                    sent_acks.push((t.clone(), *p));
                }
            }
            let is_new = !session.partitions.contains(&(t.clone(), *p));
            if opening || is_new || !fp.acknowledgement_batches.is_empty() {
                topics.entry(t.clone()).or_default().push(fp);
            }
        }
        let forgotten: Vec<(String, i32)> = session
            .partitions
            .iter()
            .filter(|tp| !parts.contains(*tp))
            .cloned()
            .collect();
        let id_of = |t: &str| meta.topics.get(t).map(|x| x.id).unwrap_or_default();
        let mut forgotten_by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (t, p) in &forgotten {
            forgotten_by_topic.entry(t.clone()).or_default().push(*p);
        }
        let req = ShareFetchRequest::default()
            .with_group_id(Some(GroupId(s(&self.config.group))))
            .with_member_id(Some(s(&self.member_id)))
            .with_share_session_epoch(session.epoch)
            .with_max_wait_ms(i32::try_from(wait.as_millis()).unwrap_or(i32::MAX))
            .with_min_bytes(1)
            .with_max_bytes(50 << 20)
            .with_max_records(self.config.max_records)
            .with_batch_size(self.config.max_records)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        FetchTopic::default()
                            .with_topic_id(id_of(&t))
                            .with_partitions(ps)
                    })
                    .collect(),
            )
            .with_forgotten_topics_data(
                forgotten_by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        kafka_protocol::messages::share_fetch_request::ForgottenTopic::default()
                            .with_topic_id(id_of(&t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let version = conn.version(ApiKey::ShareFetch)?;
        let resp = conn.send_at(&req, version, wait).await?;
        if resp.error_code != 0 {
            // SHARE_SESSION_NOT_FOUND, INVALID_SHARE_SESSION_EPOCH: open a new session.
            self.sessions.remove(&leader);
            return Err(ClientError::kafka(resp.error_code, "ShareFetch"));
        }
        let session = self.sessions.entry(leader).or_default();
        session.epoch = if session.epoch == i32::MAX {
            1
        } else {
            session.epoch + 1
        };
        session.partitions = parts.clone();
        let mut stale = false;
        let mut out = Vec::new();
        for t in resp.responses {
            let Some(name) = meta
                .topics
                .values()
                .find(|x| x.id == t.topic_id)
                .map(|x| x.name.clone())
            else {
                stale = true;
                continue;
            };
            for p in t.partitions {
                let key = (name.clone(), p.partition_index);
                if sent_acks.contains(&key) {
                    if p.acknowledge_error_code != 0 {
                        tracing::warn!(
                            topic = %name,
                            partition = p.partition_index,
                            code = p.acknowledge_error_code,
                            "acknowledgements refused"
                        );
                    }
                    self.pending.remove(&key);
                }
                if p.error_code != 0 {
                    stale |= matches!(p.error_code, 3 | 5 | 6 | 100);
                    continue;
                }
                let Some(data) = p.records.as_ref() else {
                    continue;
                };
                if p.acquired_records.is_empty() {
                    continue;
                }
                let from = p.acquired_records[0].first_offset;
                let decoded = decode_fetched(&name, p.partition_index, data, from, None)?;
                for r in decoded.records {
                    if let Some(a) = p
                        .acquired_records
                        .iter()
                        .find(|a| a.first_offset <= r.offset && r.offset <= a.last_offset)
                    {
                        out.push(ShareRecord {
                            delivery_count: a.delivery_count,
                            record: r,
                        });
                    }
                }
            }
        }
        Ok((out, stale))
    }

    /// Sends every pending acknowledgement (ShareAcknowledge to each leader) and waits for the
    /// answers: per partition, `None` when the acknowledgements were committed, else the error.
    pub async fn commit_sync(&mut self) -> Result<BTreeMap<TopicPartition, Option<ClientError>>> {
        self.commit(true).await
    }

    /// Sends every pending acknowledgement (ShareAcknowledge to each leader) without waiting
    /// for the answers; a refusal is logged (the records come back when their locks run out).
    pub async fn commit_async(&mut self) -> Result<()> {
        self.commit(false).await.map(|_| ())
    }

    async fn commit(
        &mut self,
        wait: bool,
    ) -> Result<BTreeMap<TopicPartition, Option<ClientError>>> {
        let mut out = BTreeMap::new();
        if self.pending.is_empty() {
            return Ok(out);
        }
        let meta = self.cluster.metadata();
        let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        for (t, p) in self.pending.keys() {
            let leader = meta.leader(t, *p).unwrap_or(-1);
            by_leader.entry(leader).or_default().push((t.clone(), *p));
        }
        for (leader, parts) in by_leader {
            let epoch = self.sessions.get(&leader).map_or(0, |s| s.epoch);
            let fail = |out: &mut BTreeMap<_, _>, e: &ClientError| {
                for (t, p) in &parts {
                    out.insert(TopicPartition::new(t.clone(), *p), Some(e.clone()));
                }
            };
            if leader < 0 || epoch == 0 {
                // No session with this leader: the records' locks went with it.
                let e = ClientError::kafka(122, "no share session with the partition's leader");
                fail(&mut out, &e);
                for tp in &parts {
                    self.pending.remove(tp);
                }
                continue;
            }
            let mut topics: BTreeMap<String, Vec<AcknowledgePartition>> = BTreeMap::new();
            for (t, p) in &parts {
                let acks = self
                    .pending
                    .get(&(t.clone(), *p))
                    .cloned()
                    .unwrap_or_default();
                topics.entry(t.clone()).or_default().push(
                    AcknowledgePartition::default()
                        .with_partition_index(*p)
                        .with_acknowledgement_batches(
                            ack_batches(&acks)
                                .into_iter()
                                .map(|(first, last, code)| {
                                    AckAckBatch::default()
                                        .with_first_offset(first)
                                        .with_last_offset(last)
                                        .with_acknowledge_types(vec![code])
                                })
                                .collect(),
                        ),
                );
            }
            let req = ShareAcknowledgeRequest::default()
                .with_group_id(Some(GroupId(s(&self.config.group))))
                .with_member_id(Some(s(&self.member_id)))
                .with_share_session_epoch(epoch)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(t, ps)| {
                            AcknowledgeTopic::default()
                                .with_topic_id(
                                    meta.topics.get(&t).map(|x| x.id).unwrap_or_default(),
                                )
                                .with_partitions(ps)
                        })
                        .collect(),
                );
            for tp in &parts {
                self.pending.remove(tp);
            }
            if !wait {
                let queued = async {
                    let conn = self.cluster.broker(leader).await?;
                    let version = conn.version(ApiKey::ShareAcknowledge)?;
                    conn.start(&req, version, Duration::ZERO).await
                }
                .await;
                match queued {
                    Ok(answer) => {
                        if let Some(s) = self.sessions.get_mut(&leader) {
                            s.epoch = if s.epoch == i32::MAX { 1 } else { s.epoch + 1 };
                        }
                        tokio::spawn(async move {
                            match answer.await {
                                Ok(r) => {
                                    let refused = r.error_code != 0
                                        || r.responses
                                            .iter()
                                            .flat_map(|t| &t.partitions)
                                            .any(|p| p.error_code != 0);
                                    if refused {
                                        tracing::warn!(
                                            leader,
                                            "asynchronous acknowledgements refused"
                                        );
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(leader, "asynchronous acknowledgements: {e}")
                                }
                            }
                        });
                    }
                    Err(e) => {
                        self.sessions.remove(&leader);
                        fail(&mut out, &e);
                    }
                }
                continue;
            }
            let answer = async {
                let conn = self.cluster.broker(leader).await?;
                let version = conn.version(ApiKey::ShareAcknowledge)?;
                conn.send_at(&req, version, Duration::ZERO).await
            }
            .await;
            let resp = match answer {
                Ok(r) => r,
                Err(e) => {
                    self.sessions.remove(&leader);
                    fail(&mut out, &e);
                    continue;
                }
            };
            if resp.error_code != 0 {
                self.sessions.remove(&leader);
                fail(
                    &mut out,
                    &ClientError::kafka(resp.error_code, "ShareAcknowledge"),
                );
                continue;
            }
            if let Some(s) = self.sessions.get_mut(&leader) {
                s.epoch = if s.epoch == i32::MAX { 1 } else { s.epoch + 1 };
            }
            for t in resp.responses {
                let name = meta
                    .topics
                    .values()
                    .find(|x| x.id == t.topic_id)
                    .map(|x| x.name.clone())
                    .unwrap_or_default();
                for p in t.partitions {
                    let err = (p.error_code != 0)
                        .then(|| ClientError::kafka(p.error_code, "acknowledgement"));
                    out.insert(TopicPartition::new(name.clone(), p.partition_index), err);
                }
            }
        }
        Ok(out)
    }

    /// Commits what is acknowledged, closes the share sessions (releasing records still held)
    /// and leaves the group.
    pub async fn close(mut self) -> Result<()> {
        let _ = self.commit_sync().await;
        let group = self.config.group.clone();
        for (leader, session) in std::mem::take(&mut self.sessions) {
            if session.epoch == 0 {
                continue;
            }
            let req = ShareAcknowledgeRequest::default()
                .with_group_id(Some(GroupId(s(&group))))
                .with_member_id(Some(s(&self.member_id)))
                .with_share_session_epoch(-1);
            if let Ok(conn) = self.cluster.broker(leader).await {
                if let Ok(v) = conn.version(ApiKey::ShareAcknowledge) {
                    let _ = conn.send_at(&req, v, Duration::ZERO).await;
                }
            }
        }
        if self.member_epoch > 0 {
            let _ = self.heartbeat(-1).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_go_as_runs_of_one_type() {
        let acks = BTreeMap::from([
            (3, AckType::Accept),
            (4, AckType::Accept),
            (5, AckType::Reject),
            (7, AckType::Accept),
        ]);
        assert_eq!(ack_batches(&acks), vec![(3, 4, 1), (5, 5, 3), (7, 7, 1)]);
    }

    #[test]
    fn member_ids_are_22_url_safe_characters() {
        let a = new_member_id();
        assert_eq!(a.len(), 22);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(a, new_member_id());
    }
}
