//! The consumer: manual assignment, seeks, and `poll` over pipelined fetches.
//!
//! Each leader broker has at most one fetch in flight for the assigned partitions it leads.
//! As soon as a fetch answer is decoded, the next fetch to that broker is sent — before the
//! records are handed to the application — so the network and the broker work while the
//! application processes (librdkafka's prefetching). Fetched bytes are sliced, not copied,
//! into [`ConsumerRecord`]s.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ListOffsetsRequest};
use tokio::sync::mpsc;

use crate::cluster::{topic_name, ClientConfig, Cluster};
use crate::error::{ClientError, Result};
use crate::records::{decode_fetched, ConsumerRecord};

/// A topic partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Where to read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// The log start offset.
    Beginning,
    /// The high watermark: only records produced from now on.
    End,
    /// An absolute offset.
    At(i64),
    /// The first offset whose timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
}

/// What to do when a partition has no valid position (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
    /// Fail the poll with OFFSET_OUT_OF_RANGE.
    None,
}

/// Which records of transactions a consumer sees (`isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Every record, including those of open and aborted transactions (Kafka's default).
    #[default]
    ReadUncommitted,
    /// Only committed records: fetches stop at the last stable offset (the first offset of
    /// the oldest open transaction), and records of aborted transactions are dropped.
    ReadCommitted,
}

impl IsolationLevel {
    /// The Fetch and ListOffsets `isolation_level` field.
    pub(crate) fn wire(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

impl std::str::FromStr for IsolationLevel {
    type Err = ClientError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "read_uncommitted" => Ok(IsolationLevel::ReadUncommitted),
            "read_committed" => Ok(IsolationLevel::ReadCommitted),
            other => Err(ClientError::Config(format!(
                "isolation level must be read_committed or read_uncommitted, not {other:?}"
            ))),
        }
    }
}

/// Consumer settings; the defaults are the Java consumer's.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub client: ClientConfig,
    pub auto_offset_reset: OffsetReset,
    pub fetch_min_bytes: i32,
    pub fetch_max_bytes: i32,
    pub max_partition_fetch_bytes: i32,
    pub fetch_max_wait: Duration,
    pub retry_backoff: Duration,
    /// Whether records of open and aborted transactions are returned (`isolation.level`).
    pub isolation_level: IsolationLevel,
}

impl ConsumerConfig {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        ConsumerConfig {
            client: ClientConfig::new(bootstrap),
            auto_offset_reset: OffsetReset::Latest,
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            fetch_max_wait: Duration::from_millis(500),
            retry_backoff: Duration::from_millis(100),
            isolation_level: IsolationLevel::ReadUncommitted,
        }
    }
}

#[derive(Debug, Default)]
struct PartState {
    position: Option<i64>,
    /// A seek not yet resolved to an offset.
    pending: Option<Offset>,
    /// As of the last fetch answer.
    high_watermark: Option<i64>,
    fetching: bool,
    /// Bumped by every seek, so that answers to fetches sent before it are dropped.
    generation: u64,
}

struct FetchDone {
    broker: i32,
    /// `(partition, fetch offset, generation)` of each partition in the request.
    parts: Vec<(TopicPartition, i64, u64)>,
    result: Result<FetchResponse>,
}

/// A Kafka consumer with manual assignment (groups: see the group consumer).
pub struct Consumer {
    cluster: Arc<Cluster>,
    config: ConsumerConfig,
    parts: BTreeMap<TopicPartition, PartState>,
    buffered: VecDeque<ConsumerRecord>,
    buffered_bytes: usize,
    tx: mpsc::UnboundedSender<FetchDone>,
    rx: mpsc::UnboundedReceiver<FetchDone>,
    in_flight: HashMap<i32, usize>,
    stale: bool,
    last_refresh: Option<Instant>,
}

impl Consumer {
    pub async fn new(config: ConsumerConfig) -> Result<Consumer> {
        let cluster = Cluster::connect(config.client.clone()).await?;
        Ok(Self::with_cluster(cluster, config))
    }

    /// A consumer sharing another client's cluster view and connections.
    pub fn with_cluster(cluster: Arc<Cluster>, config: ConsumerConfig) -> Consumer {
        let (tx, rx) = mpsc::unbounded_channel();
        Consumer {
            cluster,
            config,
            parts: BTreeMap::new(),
            buffered: VecDeque::new(),
            buffered_bytes: 0,
            tx,
            rx,
            in_flight: HashMap::new(),
            stale: false,
            last_refresh: None,
        }
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Replaces the assignment. Partitions kept keep their positions; new ones start where
    /// `auto_offset_reset` says unless sought.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) {
        let mut next = BTreeMap::new();
        for tp in partitions {
            let state = self.parts.remove(&tp).unwrap_or_default();
            next.insert(tp, state);
        }
        self.parts = next;
        let parts = &self.parts;
        self.buffered
            .retain(|r| parts.contains_key(&TopicPartition::new(r.topic.clone(), r.partition)));
        self.buffered_bytes = self.buffered.iter().map(record_bytes).sum();
    }

    /// Assigns every partition of `topic` (failing if the topic does not exist).
    pub async fn assign_topic(&mut self, topic: &str) -> Result<()> {
        let info = self.cluster.topic(topic, false).await?;
        let mut all: Vec<TopicPartition> = self.parts.keys().cloned().collect();
        all.extend(
            info.partitions
                .iter()
                .map(|p| TopicPartition::new(topic, p.partition)),
        );
        self.assign(all);
        Ok(())
    }

    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.parts.keys().cloned().collect()
    }

    /// Moves the position of `tp` (assigned) to `offset`; takes effect at the next poll.
    pub fn seek(&mut self, tp: &TopicPartition, offset: Offset) -> Result<()> {
        let state = self
            .parts
            .get_mut(tp)
            .ok_or_else(|| ClientError::Config(format!("{tp} is not assigned to this consumer")))?;
        state.generation += 1;
        state.fetching = false;
        match offset {
            Offset::At(o) if o >= 0 => {
                state.position = Some(o);
                state.pending = None;
            }
            Offset::At(o) => {
                return Err(ClientError::Config(format!("offset {o} is negative")));
            }
            other => {
                state.position = None;
                state.pending = Some(other);
            }
        }
        self.buffered
            .retain(|r| !(r.topic == tp.topic && r.partition == tp.partition));
        self.buffered_bytes = self.buffered.iter().map(record_bytes).sum();
        Ok(())
    }

    /// Seeks every assigned partition.
    pub fn seek_all(&mut self, offset: Offset) {
        let tps: Vec<TopicPartition> = self.parts.keys().cloned().collect();
        for tp in tps {
            let _ = self.seek(&tp, offset);
        }
    }

    /// The offset of the next record `poll` returns for `tp`, once known.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        let buffered = self
            .buffered
            .iter()
            .find(|r| r.topic == tp.topic && r.partition == tp.partition)
            .map(|r| r.offset);
        buffered.or_else(|| self.parts.get(tp).and_then(|s| s.position))
    }

    /// The high watermark of `tp` as of the last fetch answer (-1 before one).
    pub fn high_watermark(&self, tp: &TopicPartition) -> i64 {
        self.parts
            .get(tp)
            .and_then(|s| s.high_watermark)
            .unwrap_or(-1)
    }

    /// Returns the records available now, waiting up to `timeout` for some to arrive.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stale {
                self.refresh_metadata().await;
            }
            self.resolve_positions().await?;
            self.start_fetches();
            if !self.buffered.is_empty() {
                self.buffered_bytes = 0;
                return Ok(self.buffered.drain(..).collect());
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            // Wake up early when positions are waiting on a metadata refresh.
            let wait_until = if self.stale || self.parts.values().any(|s| s.position.is_none()) {
                deadline.min(now + self.config.retry_backoff)
            } else {
                deadline
            };
            match tokio::time::timeout_at(wait_until.into(), self.rx.recv()).await {
                Ok(Some(done)) => self.handle(done)?,
                Ok(None) => return Err(ClientError::Closed),
                Err(_) => {}
            }
        }
    }

    async fn refresh_metadata(&mut self) {
        if self
            .last_refresh
            .is_some_and(|t| t.elapsed() < self.config.retry_backoff)
        {
            return;
        }
        self.last_refresh = Some(Instant::now());
        let mut topics: Vec<String> = self.parts.keys().map(|tp| tp.topic.clone()).collect();
        topics.dedup();
        match self.cluster.refresh(Some(&topics), false).await {
            Ok(_) => self.stale = false,
            Err(e) => tracing::debug!("metadata refresh failed: {e}"),
        }
    }

    /// Turns pending seeks (and partitions without a position) into offsets with ListOffsets.
    async fn resolve_positions(&mut self) -> Result<()> {
        let meta = self.cluster.metadata();
        let mut by_leader: HashMap<i32, Vec<(TopicPartition, i64)>> = HashMap::new();
        for (tp, s) in &self.parts {
            if s.position.is_some() {
                continue;
            }
            let target = match s.pending {
                Some(Offset::Beginning) => -2,
                Some(Offset::End) => -1,
                Some(Offset::Timestamp(ts)) => ts,
                Some(Offset::At(o)) => o,
                None => match self.config.auto_offset_reset {
                    OffsetReset::Earliest => -2,
                    OffsetReset::Latest => -1,
                    OffsetReset::None => {
                        return Err(ClientError::kafka(
                            1,
                            format!("{tp} has no position and auto_offset_reset is none"),
                        ))
                    }
                },
            };
            match meta.leader(&tp.topic, tp.partition) {
                Some(leader) => by_leader
                    .entry(leader)
                    .or_default()
                    .push((tp.clone(), target)),
                None => self.stale = true,
            }
        }
        for (leader, wanted) in by_leader {
            let isolation = self.config.isolation_level;
            match list_offsets(&self.cluster, leader, &wanted, isolation).await {
                Ok(found) => {
                    for (tp, offset) in found {
                        if let Some(s) = self.parts.get_mut(&tp) {
                            s.position = Some(offset);
                            s.pending = None;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(leader, "ListOffsets failed: {e}");
                    self.stale = true;
                }
            }
        }
        Ok(())
    }

    fn start_fetches(&mut self) {
        if self.buffered_bytes >= self.config.fetch_max_bytes as usize {
            return;
        }
        let meta = self.cluster.metadata();
        let mut by_leader: HashMap<i32, Vec<(TopicPartition, i64, u64, i32)>> = HashMap::new();
        for (tp, s) in &self.parts {
            let Some(position) = s.position else {
                continue;
            };
            if s.fetching {
                continue;
            }
            let Some(leader) = meta.leader(&tp.topic, tp.partition) else {
                self.stale = true;
                continue;
            };
            if self.in_flight.get(&leader).copied().unwrap_or(0) > 0 {
                continue;
            }
            let epoch = meta
                .topic(&tp.topic)
                .and_then(|t| t.partitions.get(tp.partition as usize))
                .map_or(-1, |p| p.leader_epoch);
            by_leader
                .entry(leader)
                .or_default()
                .push((tp.clone(), position, s.generation, epoch));
        }
        for (leader, parts) in by_leader {
            for (tp, _, _, _) in &parts {
                if let Some(s) = self.parts.get_mut(tp) {
                    s.fetching = true;
                }
            }
            *self.in_flight.entry(leader).or_default() += 1;
            let req = fetch_request(&self.config, &parts);
            let cluster = self.cluster.clone();
            let tx = self.tx.clone();
            let wait = self.config.fetch_max_wait;
            let parts = parts.into_iter().map(|(tp, o, g, _)| (tp, o, g)).collect();
            tokio::spawn(async move {
                let result = async {
                    let conn = cluster.broker(leader).await?;
                    Ok(conn.send(&req, wait).await?.0)
                }
                .await;
                let _ = tx.send(FetchDone {
                    broker: leader,
                    parts,
                    result,
                });
            });
        }
    }

    fn handle(&mut self, done: FetchDone) -> Result<()> {
        if let Some(n) = self.in_flight.get_mut(&done.broker) {
            *n = n.saturating_sub(1);
        }
        let current = |parts: &BTreeMap<TopicPartition, PartState>, tp: &TopicPartition, g: u64| {
            parts.get(tp).is_some_and(|s| s.generation == g)
        };
        for (tp, _, g) in &done.parts {
            if current(&self.parts, tp, *g) {
                if let Some(s) = self.parts.get_mut(tp) {
                    s.fetching = false;
                }
            }
        }
        let resp = match done.result {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(broker = done.broker, "fetch failed: {e}");
                self.stale = true;
                return Ok(());
            }
        };
        if resp.error_code != 0 {
            tracing::debug!(code = resp.error_code, "fetch refused");
            self.stale = true;
            return Ok(());
        }
        for t in resp.responses {
            let topic = t.topic.0.to_string();
            for p in t.partitions {
                let tp = TopicPartition::new(topic.clone(), p.partition_index);
                let Some((_, fetched_at, g)) = done.parts.iter().find(|(x, _, _)| *x == tp) else {
                    continue;
                };
                if !current(&self.parts, &tp, *g) {
                    continue;
                }
                let Some(state) = self.parts.get_mut(&tp) else {
                    continue;
                };
                if state.position != Some(*fetched_at) {
                    continue;
                }
                match p.error_code {
                    0 => {
                        state.high_watermark = Some(p.high_watermark);
                        let Some(data) = p.records else {
                            continue;
                        };
                        // read_uncommitted: no list, nothing dropped (but control records).
                        let aborted: Option<Vec<(i64, i64)>> = (self.config.isolation_level
                            == IsolationLevel::ReadCommitted)
                            .then(|| {
                                p.aborted_transactions
                                    .iter()
                                    .flatten()
                                    .map(|a| (a.producer_id.0, a.first_offset))
                                    .collect()
                            });
                        let decoded = decode_fetched(
                            &topic,
                            tp.partition,
                            &data,
                            *fetched_at,
                            aborted.as_deref(),
                        )?;
                        if let Some(next) = decoded.next_offset {
                            state.position = Some(next.max(*fetched_at));
                        }
                        for r in decoded.records {
                            self.buffered_bytes += record_bytes(&r);
                            self.buffered.push_back(r);
                        }
                    }
                    1 => {
                        // OFFSET_OUT_OF_RANGE: reset as auto_offset_reset says.
                        tracing::debug!(%tp, offset = fetched_at, "offset out of range; resetting");
                        state.position = None;
                        state.pending = None;
                        if self.config.auto_offset_reset == OffsetReset::None {
                            return Err(ClientError::kafka(
                                1,
                                format!("fetching {tp} at offset {fetched_at}"),
                            ));
                        }
                    }
                    code => {
                        tracing::debug!(%tp, code, "fetch error; refreshing metadata");
                        self.stale = true;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Groups `(topic, item)` pairs by topic (topics sorted): requests list each topic once.
pub(crate) fn by_topic<'a, T>(
    items: impl IntoIterator<Item = (&'a str, T)>,
) -> BTreeMap<&'a str, Vec<T>> {
    let mut out: BTreeMap<&str, Vec<T>> = BTreeMap::new();
    for (topic, item) in items {
        out.entry(topic).or_default().push(item);
    }
    out
}

fn record_bytes(r: &ConsumerRecord) -> usize {
    r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len()) + 32
}

fn fetch_request(
    config: &ConsumerConfig,
    parts: &[(TopicPartition, i64, u64, i32)],
) -> FetchRequest {
    let topics: Vec<FetchTopic> = by_topic(parts.iter().map(|(tp, offset, _, epoch)| {
        let p = FetchPartition::default()
            .with_partition(tp.partition)
            .with_current_leader_epoch(*epoch)
            .with_fetch_offset(*offset)
            .with_last_fetched_epoch(-1)
            .with_log_start_offset(-1)
            .with_partition_max_bytes(config.max_partition_fetch_bytes);
        (tp.topic.as_str(), p)
    }))
    .into_iter()
    .map(|(t, ps)| {
        FetchTopic::default()
            .with_topic(topic_name(t))
            .with_partitions(ps)
    })
    .collect();
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(config.fetch_max_wait.as_millis().min(i32::MAX as u128) as i32)
        .with_min_bytes(config.fetch_min_bytes)
        .with_max_bytes(config.fetch_max_bytes)
        .with_isolation_level(config.isolation_level.wire())
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics)
}

/// ListOffsets on `leader`: `-2` = earliest, `-1` = latest, else a timestamp. A timestamp
/// after the last record resolves to the log end (as the Java consumer's `offsetsForTimes`
/// followed by a seek to end). With `ReadCommitted`, "latest" is the last stable offset.
pub(crate) async fn list_offsets(
    cluster: &Cluster,
    leader: i32,
    wanted: &[(TopicPartition, i64)],
    isolation: IsolationLevel,
) -> Result<Vec<(TopicPartition, i64)>> {
    let topics: Vec<ListOffsetsTopic> = by_topic(wanted.iter().map(|(tp, ts)| {
        let p = ListOffsetsPartition::default()
            .with_partition_index(tp.partition)
            .with_current_leader_epoch(-1)
            .with_timestamp(*ts);
        (tp.topic.as_str(), p)
    }))
    .into_iter()
    .map(|(t, ps)| {
        ListOffsetsTopic::default()
            .with_name(topic_name(t))
            .with_partitions(ps)
    })
    .collect();
    let req = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_isolation_level(isolation.wire())
        .with_topics(topics);
    let conn = cluster.broker(leader).await?;
    let (resp, _) = conn.send(&req, Duration::ZERO).await?;
    let mut out = Vec::new();
    let mut past_end = Vec::new();
    for t in resp.topics {
        for p in t.partitions {
            let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
            if p.error_code != 0 {
                return Err(ClientError::kafka(
                    p.error_code,
                    format!("ListOffsets {tp}"),
                ));
            }
            if p.offset < 0 {
                past_end.push((tp, -1));
            } else {
                out.push((tp, p.offset));
            }
        }
    }
    if !past_end.is_empty() {
        out.extend(Box::pin(list_offsets(cluster, leader, &past_end, isolation)).await?);
    }
    Ok(out)
}
