//! One partition replica on this broker: its log, its role as the metadata assigns it, the high
//! watermark, the followers' progress (when leading) and the idempotent-producer state.
//!
//! ```text
//!   leader:   produce ──► append_as_leader ──► LEO ─┐            (wakes follower fetches)
//!             follower Fetch(offset) ──► follower LEO ─┴─► HW = min LEO over the ISR
//!                                                        │     (wakes acks=all, consumer fetches)
//!   follower: fetcher ──► append_replicated ──► HW = min(leader's HW, own LEO)
//! ```
//!
//! All state changes happen under one short `std::sync::Mutex`; waiting (long-poll fetches,
//! acks=all) happens on `tokio::sync::watch` channels, never under the lock.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use dmq_log::batch::Batches;
use dmq_log::{now_ms, BatchHeader, Log};
use dmq_types::model;
use dmq_types::BrokerId;
use kafka_protocol::error::ResponseError;
use tokio::sync::watch;

use crate::config::TopicSettings;
use crate::error::{BrokerError, Result};
use crate::producer_state::{ProducerStates, SeqCheck};

/// The replica's job for the current leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "LEADER",
            Role::Follower => "FOLLOWER",
        }
    }
}

#[derive(Debug)]
struct State {
    role: Role,
    leader: BrokerId,
    leader_epoch: i32,
    replicas: Vec<BrokerId>,
    isr: Vec<BrokerId>,
    /// Leader only: each follower's log end offset as its last fetch showed.
    followers: HashMap<BrokerId, i64>,
    producers: ProducerStates,
    settings: TopicSettings,
}

/// A produce that reached the log (or was found there already).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_append_time_ms: i64,
    pub leader_epoch: i32,
    pub records: i64,
    /// An idempotent retry of a batch already in the log: nothing was written.
    pub duplicate: bool,
}

/// How a metadata update changed this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    Unchanged,
    BecameLeader,
    BecameFollower,
}

pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub topic_id: String,
    pub log: Arc<Log>,
    broker_id: BrokerId,
    state: Mutex<State>,
    hw: AtomicI64,
    /// Bumped whenever the high watermark moves or the role changes.
    hw_tx: watch::Sender<i64>,
    /// Bumped whenever the log end moves (wakes followers' long polls).
    leo_tx: watch::Sender<i64>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.index)
    }
}

impl Partition {
    /// Opens (recovering) or creates the log in `dir`, as a follower of `meta.leader` until
    /// [`Partition::apply_metadata`] says otherwise.
    pub fn open(
        dir: &Path,
        topic: &model::Topic,
        meta: &model::Partition,
        broker_id: BrokerId,
    ) -> Result<Partition> {
        let settings = TopicSettings::from_config(&topic.config);
        let log = Arc::new(Log::open(dir, settings.log_config())?);
        let producers = rebuild_producers(&log)?;
        let hw = log.log_start_offset();
        let leo = log.log_end_offset();
        let (hw_tx, _) = watch::channel(hw);
        let (leo_tx, _) = watch::channel(leo);
        let partition = Partition {
            topic: topic.topic_name.clone(),
            index: meta.partition_id,
            topic_id: topic.topic_id.clone(),
            log,
            broker_id,
            state: Mutex::new(State {
                role: Role::Follower,
                leader: dmq_types::NO_LEADER,
                leader_epoch: -1,
                replicas: meta.replicas.clone(),
                isr: meta.isr.clone(),
                followers: HashMap::new(),
                producers,
                settings,
            }),
            hw: AtomicI64::new(hw),
            hw_tx,
            leo_tx,
        };
        Ok(partition)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the leader, epoch, replicas and ISR of the metadata. A partition entry older than
    /// what this replica already acts on (lower leader epoch) is ignored.
    pub fn apply_metadata(&self, topic: &model::Topic, meta: &model::Partition) -> RoleChange {
        let mut st = self.lock();
        if meta.leader_epoch < st.leader_epoch {
            return RoleChange::Unchanged;
        }
        st.settings = TopicSettings::from_config(&topic.config);
        st.replicas = meta.replicas.clone();
        st.isr = meta.isr.clone();
        let new_role = if meta.leader == self.broker_id {
            Role::Leader
        } else {
            Role::Follower
        };
        let changed =
            new_role != st.role || meta.leader_epoch != st.leader_epoch || meta.leader != st.leader;
        st.leader = meta.leader;
        st.leader_epoch = meta.leader_epoch;
        st.role = new_role;
        if !changed {
            // ISR membership may have changed: that can move the high watermark.
            self.maybe_advance_hw(&st);
            return RoleChange::Unchanged;
        }
        st.followers.clear();
        if new_role == Role::Leader {
            if let Err(e) = self
                .log
                .assign_epoch(meta.leader_epoch, self.log.log_end_offset())
            {
                tracing::warn!(partition = ?self, "cannot record leader epoch: {e}");
            }
            self.maybe_advance_hw(&st);
        }
        // Wake waiters: acks=all and long polls re-check the role.
        self.hw_tx.send_modify(|_| {});
        self.leo_tx.send_modify(|_| {});
        match new_role {
            Role::Leader => RoleChange::BecameLeader,
            Role::Follower => RoleChange::BecameFollower,
        }
    }

    pub fn role(&self) -> Role {
        self.lock().role
    }

    pub fn leader(&self) -> BrokerId {
        self.lock().leader
    }

    pub fn leader_epoch(&self) -> i32 {
        self.lock().leader_epoch
    }

    pub fn high_watermark(&self) -> i64 {
        self.hw.load(Ordering::Acquire)
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    pub fn settings(&self) -> TopicSettings {
        self.lock().settings.clone()
    }

    /// Role, leader, epoch, ISR and (leader only) followers' log end offsets.
    pub fn snapshot(&self) -> ReplicaSnapshot {
        let st = self.lock();
        ReplicaSnapshot {
            role: st.role,
            leader: st.leader,
            leader_epoch: st.leader_epoch,
            replicas: st.replicas.clone(),
            isr: st.isr.clone(),
            followers: st.followers.clone(),
            high_watermark: self.high_watermark(),
            log_end_offset: self.log.log_end_offset(),
            log_start_offset: self.log.log_start_offset(),
        }
    }

    /// Fails unless this replica leads; `current_leader_epoch` (-1 = unchecked) is the epoch
    /// the client believes in (KIP-320 fencing).
    pub fn check_leader(&self, current_leader_epoch: i32) -> Result<i32> {
        let st = self.lock();
        self.check_leader_locked(&st, current_leader_epoch)
    }

    fn check_leader_locked(&self, st: &State, current_leader_epoch: i32) -> Result<i32> {
        if st.role != Role::Leader {
            return Err(BrokerError::NotLeader {
                topic: self.topic.clone(),
                partition: self.index,
                leader: (st.leader >= 0).then_some(st.leader),
            });
        }
        if current_leader_epoch >= 0 && current_leader_epoch != st.leader_epoch {
            let e = if current_leader_epoch < st.leader_epoch {
                ResponseError::FencedLeaderEpoch
            } else {
                ResponseError::UnknownLeaderEpoch
            };
            return Err(BrokerError::kafka(
                e,
                format!(
                    "leader epoch {current_leader_epoch} does not match the current {}",
                    st.leader_epoch
                ),
            ));
        }
        Ok(st.leader_epoch)
    }

    /// A producer's batches (validated, de-duplicated, offsets assigned). With `acks=all` the
    /// ISR must hold `min.insync.replicas` members first, or nothing is written.
    pub fn append_as_leader(&self, records: &mut [u8], acks: i16) -> Result<Appended> {
        let mut st = self.lock();
        let epoch = self.check_leader_locked(&st, -1)?;
        if acks == -1 && st.isr.len() < st.settings.min_insync_replicas {
            return Err(BrokerError::kafka(
                ResponseError::NotEnoughReplicas,
                format!(
                    "ISR {:?} is smaller than min.insync.replicas={}",
                    st.isr, st.settings.min_insync_replicas
                ),
            ));
        }
        // Sequence checks on the headers; the log validates sizes and CRCs.
        let mut pos = 0;
        let mut batches = 0;
        let mut duplicate = None;
        while pos < records.len() {
            let h = BatchHeader::new(&records[pos..]).map_err(|reason| {
                BrokerError::Log(dmq_log::LogError::InvalidBatch {
                    position: pos,
                    reason,
                })
            })?;
            if let SeqCheck::Duplicate { base_offset } = st.producers.check(&h)? {
                duplicate = Some((base_offset, h.last_offset_delta()));
            }
            batches += 1;
            pos += h.total_size().max(1);
        }
        if let Some((base_offset, delta)) = duplicate {
            if batches > 1 {
                return Err(BrokerError::kafka(
                    ResponseError::DuplicateSequenceNumber,
                    "a retried batch arrived together with new ones",
                ));
            }
            return Ok(Appended {
                base_offset,
                last_offset: base_offset + i64::from(delta),
                log_append_time_ms: -1,
                leader_epoch: epoch,
                records: 0,
                duplicate: true,
            });
        }
        let info = self.log.append_as_leader(records, epoch, now_ms())?;
        let mut count = 0i64;
        for (_, bytes) in Batches::new(records, false).flatten() {
            if let Ok(h) = BatchHeader::new(bytes) {
                count += i64::from(h.record_count());
                st.producers.record(&h);
            }
        }
        self.leo_tx.send_replace(info.last_offset + 1);
        self.maybe_advance_hw(&st);
        Ok(Appended {
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            log_append_time_ms: info.log_append_time_ms,
            leader_epoch: epoch,
            records: count,
            duplicate: false,
        })
    }

    /// Leader: a follower fetched from `fetch_offset`, so it holds everything below it.
    pub fn follower_fetched(&self, follower: BrokerId, fetch_offset: i64) -> Result<()> {
        let mut st = self.lock();
        self.check_leader_locked(&st, -1)?;
        if !st.replicas.contains(&follower) {
            return Err(BrokerError::kafka(
                ResponseError::NotLeaderOrFollower,
                format!("broker {follower} is not a replica of {self:?}"),
            ));
        }
        let leo = self.log.log_end_offset();
        st.followers.insert(follower, fetch_offset.min(leo));
        self.maybe_advance_hw(&st);
        Ok(())
    }

    /// The high watermark is the smallest log end offset in the ISR; it never moves back.
    fn maybe_advance_hw(&self, st: &State) {
        if st.role != Role::Leader {
            return;
        }
        let leo = self.log.log_end_offset();
        let mut hw = leo;
        for id in &st.isr {
            if *id == self.broker_id {
                continue;
            }
            match st.followers.get(id) {
                Some(f) => hw = hw.min(*f),
                // Not heard from since this replica became leader: cannot advance yet.
                None => return,
            }
        }
        if hw > self.hw.load(Ordering::Acquire) {
            self.hw.store(hw, Ordering::Release);
            self.hw_tx.send_replace(hw);
        }
    }

    /// Follower: batches fetched from the leader, with the leader's high watermark.
    pub fn append_replicated(&self, records: &[u8], leader_hw: i64) -> Result<usize> {
        let mut st = self.lock();
        if st.role != Role::Follower {
            return Err(BrokerError::kafka(
                ResponseError::NotLeaderOrFollower,
                "no longer a follower",
            ));
        }
        let mut appended = 0;
        if !records.is_empty() {
            let info = self.log.append_replicated(records)?;
            for (_, bytes) in Batches::new(records, false).flatten() {
                if let Ok(h) = BatchHeader::new(bytes) {
                    st.producers.record(&h);
                }
            }
            appended = info.bytes;
            self.leo_tx.send_replace(info.last_offset + 1);
        }
        let hw = leader_hw.min(self.log.log_end_offset());
        if hw != self.hw.load(Ordering::Acquire) {
            self.hw.store(hw, Ordering::Release);
            self.hw_tx.send_replace(hw);
        }
        Ok(appended)
    }

    /// Whole batches from `offset` up to `max_bytes`, ending below `upper` (exclusive; the
    /// high watermark for consumers, the log end for followers). The first batch may start
    /// before `offset`, as in Kafka; clients skip what they did not ask for.
    pub fn read(&self, offset: i64, max_bytes: usize, upper: i64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        if offset >= upper {
            return Ok(out);
        }
        let Some(slice) = self.log.read(offset, max_bytes)? else {
            return Ok(out);
        };
        slice.read_into(&mut out)?;
        let mut keep = 0;
        for (at, bytes) in Batches::new(&out, false).flatten() {
            match BatchHeader::new(bytes) {
                Ok(h) if h.last_offset() < upper => keep = at + bytes.len(),
                _ => break,
            }
        }
        out.truncate(keep);
        Ok(out)
    }

    /// Waits until the high watermark passes `last_offset` (acks=all), this replica stops
    /// leading in `epoch`, or `deadline`.
    pub async fn wait_replicated(
        &self,
        last_offset: i64,
        epoch: i32,
        deadline: Instant,
    ) -> Result<()> {
        let mut rx = self.hw_tx.subscribe();
        loop {
            if self.high_watermark() > last_offset {
                return Ok(());
            }
            {
                let st = self.lock();
                if st.role != Role::Leader || st.leader_epoch != epoch {
                    return Err(BrokerError::NotLeader {
                        topic: self.topic.clone(),
                        partition: self.index,
                        leader: (st.leader >= 0).then_some(st.leader),
                    });
                }
            }
            match tokio::time::timeout_at(deadline.into(), rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    return Err(BrokerError::kafka(
                        ResponseError::RequestTimedOut,
                        format!(
                            "offset {last_offset} not replicated to the ISR in time (high watermark {})",
                            self.high_watermark()
                        ),
                    ))
                }
            }
        }
    }

    /// Wakes when the high watermark (consumers) or the log end (followers) moves.
    pub fn subscribe(&self, follower: bool) -> watch::Receiver<i64> {
        if follower {
            self.leo_tx.subscribe()
        } else {
            self.hw_tx.subscribe()
        }
    }

    /// Wakes every waiter (shutdown, deletion).
    pub fn wake_all(&self) {
        self.hw_tx.send_modify(|_| {});
        self.leo_tx.send_modify(|_| {});
    }
}

/// A consistent view of a replica for the status API and metrics.
#[derive(Debug, Clone)]
pub struct ReplicaSnapshot {
    pub role: Role,
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub followers: HashMap<BrokerId, i64>,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    pub log_start_offset: i64,
}

/// Producer state from every batch header in the log (restart recovery).
fn rebuild_producers(log: &Log) -> Result<ProducerStates> {
    let mut producers = ProducerStates::default();
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut buf = Vec::new();
    while offset < end {
        let Some(slice) = log.read(offset, 4 << 20)? else {
            break;
        };
        slice.read_into(&mut buf)?;
        let before = offset;
        for (_, bytes) in Batches::new(&buf, false).flatten() {
            if let Ok(h) = BatchHeader::new(bytes) {
                producers.record(&h);
                offset = h.last_offset() + 1;
            }
        }
        if offset <= before {
            break;
        }
    }
    Ok(producers)
}
