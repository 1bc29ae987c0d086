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
//!
//! ISR changes are the leader's to propose and the controller's to commit (Kafka's
//! AlterPartition): [`Partition::isr_change`] computes the wanted ISR from the followers'
//! progress (out after `replica.lag.time.max.ms` without catching up, back in once at the high
//! watermark) and marks it pending; until the controller answers, the high watermark waits for
//! the larger of the two sets, so acknowledged writes are on every replica either ISR names.
//!
//! A replica that becomes follower first asks the leader for the end of its latest epoch
//! (OffsetForLeaderEpoch, KIP-101/279) and truncates any divergent suffix before fetching.

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

/// How long a leader waits before proposing an ISR change again after the controller refused
/// one, unless the partition's metadata moves first.
const ISR_RETRY_BACKOFF_MS: i64 = 500;

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
    partition_epoch: i32,
    replicas: Vec<BrokerId>,
    isr: Vec<BrokerId>,
    /// Leader only: an ISR change sent to the controller and not yet answered.
    pending_isr: Option<Vec<BrokerId>>,
    /// Leader only: the log end when this replica became leader (a follower must reach it to
    /// rejoin the ISR).
    epoch_start_offset: i64,
    /// Leader only: each follower's progress as its fetches showed.
    followers: HashMap<BrokerId, FollowerProgress>,
    /// Follower only: the divergent suffix (if any) has not been truncated yet.
    needs_truncation: bool,
    /// Leader only: no ISR change is proposed before this time (ms since the epoch) after the
    /// controller refused one, unless the partition's metadata moves first.
    isr_retry_at_ms: i64,
    producers: ProducerStates,
    settings: TopicSettings,
}

/// What the leader knows of one follower (Kafka's `Replica` state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end offset (its last fetch offset); `None` before its first fetch.
    pub log_end_offset: Option<i64>,
    /// When the follower last had everything the leader had (ms since the epoch).
    pub last_caught_up_ms: i64,
    last_fetch_ms: i64,
    last_fetch_leader_leo: i64,
    /// The broker epoch (registration) of the process whose fetches this progress counts;
    /// `None` until its first fetch. A fetch from a later incarnation starts the progress over
    /// (KIP-903): the earlier one's log end may be gone with its unflushed tail.
    pub broker_epoch: Option<u64>,
    /// The follower's log start offset as its last fetch reported it (DeleteRecords waits for
    /// every live replica's to pass the deletion point).
    pub log_start_offset: Option<i64>,
}

/// An ISR change for the controller, fenced by the epochs it was computed against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<BrokerId>,
    pub removed: Vec<BrokerId>,
    pub added: Vec<BrokerId>,
    /// The broker epoch each added replica fetched in, for the controller to check (KIP-903).
    pub added_epochs: Vec<(BrokerId, u64)>,
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
    /// The high watermark last written to [`HW_CHECKPOINT_FILE`].
    checkpointed_hw: AtomicI64,
}

/// Per-partition file holding the last checkpointed high watermark (decimal text).
pub const HW_CHECKPOINT_FILE: &str = "high-watermark-checkpoint";

/// The high watermark checkpointed in `dir`, if a readable one is there.
fn read_hw_checkpoint(dir: &Path) -> Option<i64> {
    std::fs::read_to_string(dir.join(HW_CHECKPOINT_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
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
        let leo = log.log_end_offset();
        // The checkpointed high watermark (Kafka's replication-offset-checkpoint), within what
        // the log holds after recovery: a restarted leader serves what was committed at once
        // instead of waiting for its followers' first fetch.
        let hw = read_hw_checkpoint(dir).map_or(log.log_start_offset(), |h| {
            h.clamp(log.log_start_offset(), leo)
        });
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
                partition_epoch: -1,
                replicas: meta.replicas.clone(),
                isr: meta.isr.clone(),
                pending_isr: None,
                epoch_start_offset: leo,
                followers: HashMap::new(),
                needs_truncation: true,
                isr_retry_at_ms: 0,
                producers,
                settings,
            }),
            hw: AtomicI64::new(hw),
            hw_tx,
            leo_tx,
            checkpointed_hw: AtomicI64::new(hw),
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
        if meta.leader_epoch < st.leader_epoch
            || (meta.leader_epoch == st.leader_epoch && meta.partition_epoch < st.partition_epoch)
        {
            return RoleChange::Unchanged;
        }
        let settings = TopicSettings::from_config(&topic.config);
        if settings != st.settings {
            // A config change (AlterConfigs): in force from now on, no restart needed.
            if settings.log != st.settings.log
                || settings.max_message_bytes != st.settings.max_message_bytes
            {
                self.log.set_config(settings.log_config());
            }
            st.settings = settings;
        }
        st.replicas = meta.replicas.clone();
        if meta.partition_epoch != st.partition_epoch {
            // The committed ISR moved (our own change or the controller's): nothing is pending,
            // and a change may be proposed at once against the new state.
            st.pending_isr = None;
            st.isr_retry_at_ms = 0;
        }
        st.isr = meta.isr.clone();
        st.partition_epoch = meta.partition_epoch;
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
        st.pending_isr = None;
        if new_role == Role::Leader {
            let leo = self.log.log_end_offset();
            if let Err(e) = self.log.assign_epoch(meta.leader_epoch, leo) {
                tracing::warn!(partition = ?self, "cannot record leader epoch: {e}");
            }
            st.epoch_start_offset = leo;
            st.needs_truncation = false;
            // Every ISR member gets a full lag window from now (Kafka resets replica state).
            let now = now_ms();
            for id in st.isr.clone() {
                if id != self.broker_id {
                    st.followers.insert(
                        id,
                        FollowerProgress {
                            log_end_offset: None,
                            last_caught_up_ms: now,
                            last_fetch_ms: now,
                            last_fetch_leader_leo: leo,
                            broker_epoch: None,
                            log_start_offset: None,
                        },
                    );
                }
            }
            self.maybe_advance_hw(&st);
        } else {
            st.needs_truncation = true;
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
            partition_epoch: st.partition_epoch,
            replicas: st.replicas.clone(),
            isr: st.isr.clone(),
            pending_isr: st.pending_isr.clone(),
            followers: st.followers.clone(),
            min_insync_replicas: st.settings.min_insync_replicas,
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
        if st.settings.log.cleanup_policy.compacts() {
            crate::keys::require_keys(records)?;
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

    /// Leader: a follower fetched from `fetch_offset` in `current_leader_epoch`, so it holds
    /// everything below it. Tracks when it was last caught up (Kafka's rule: a fetch at the
    /// leader's end, or at least at the end the leader had at the follower's previous fetch).
    ///
    /// `broker_epoch` is the follower's registration as this broker's metadata knows it; a
    /// change of it means a new process, whose progress starts over.
    pub fn follower_fetched(
        &self,
        follower: BrokerId,
        fetch_offset: i64,
        current_leader_epoch: i32,
        broker_epoch: Option<u64>,
        log_start_offset: i64,
    ) -> Result<()> {
        let mut st = self.lock();
        self.check_leader_locked(&st, current_leader_epoch)?;
        if !st.replicas.contains(&follower) || follower == self.broker_id {
            return Err(BrokerError::kafka(
                ResponseError::NotLeaderOrFollower,
                format!("broker {follower} is not a follower of {self:?}"),
            ));
        }
        let leo = self.log.log_end_offset();
        let now = now_ms();
        let fresh = FollowerProgress {
            log_end_offset: None,
            last_caught_up_ms: 0,
            last_fetch_ms: now,
            last_fetch_leader_leo: i64::MAX,
            broker_epoch,
            log_start_offset: None,
        };
        let f = st.followers.entry(follower).or_insert(fresh);
        match (f.broker_epoch, broker_epoch) {
            (Some(known), Some(now_epoch)) if known != now_epoch => {
                tracing::info!(
                    partition = ?self,
                    follower,
                    from = known,
                    to = now_epoch,
                    "follower restarted; its progress starts over"
                );
                *f = fresh;
            }
            (None, Some(_)) => f.broker_epoch = broker_epoch,
            _ => {}
        }
        if fetch_offset >= leo {
            f.last_caught_up_ms = now;
        } else if fetch_offset >= f.last_fetch_leader_leo {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.last_fetch_leader_leo = leo;
        f.last_fetch_ms = now;
        f.log_end_offset = Some(fetch_offset.min(leo));
        f.log_start_offset = (log_start_offset >= 0).then_some(log_start_offset);
        self.maybe_advance_hw(&st);
        Ok(())
    }

    /// Leader: the low watermark — the smallest log start offset of this replica and of every
    /// follower on a live broker (Kafka's `lowWatermarkIfLeader`); a live follower that has not
    /// reported one yet counts as -1. DeleteRecords is complete when it reaches the deletion
    /// point.
    pub fn low_watermark(&self, alive: impl Fn(BrokerId) -> bool) -> i64 {
        let st = self.lock();
        let mut low = self.log.log_start_offset();
        for &r in &st.replicas {
            if r == self.broker_id || !alive(r) {
                continue;
            }
            let start = st
                .followers
                .get(&r)
                .and_then(|f| f.log_start_offset)
                .unwrap_or(-1);
            low = low.min(start);
        }
        low
    }

    /// Leader: the ISR change the followers' progress calls for, if any and if none is pending
    /// already. The change is marked pending; report the controller's answer with
    /// [`Partition::isr_change_done`].
    ///
    /// `broker_epoch` gives each broker's current registration: a follower joins only on
    /// progress fetched in it (KIP-903).
    pub fn isr_change(
        &self,
        now_ms: i64,
        lag_max_ms: i64,
        broker_epoch: impl Fn(BrokerId) -> Option<u64>,
    ) -> Option<IsrChange> {
        let mut st = self.lock();
        if st.role != Role::Leader || st.pending_isr.is_some() || now_ms < st.isr_retry_at_ms {
            return None;
        }
        let hw = self.high_watermark();
        let me = self.broker_id;
        let removed: Vec<BrokerId> = st
            .isr
            .iter()
            .copied()
            .filter(|id| *id != me)
            .filter(|id| {
                st.followers
                    .get(id)
                    .is_none_or(|f| now_ms - f.last_caught_up_ms > lag_max_ms)
            })
            .collect();
        let added: Vec<BrokerId> = st
            .replicas
            .iter()
            .copied()
            .filter(|id| *id != me && !st.isr.contains(id))
            .filter(|id| {
                st.followers.get(id).is_some_and(|f| {
                    f.log_end_offset
                        .is_some_and(|leo| leo >= hw && leo >= st.epoch_start_offset)
                        && now_ms - f.last_caught_up_ms <= lag_max_ms
                        && f.broker_epoch.is_some()
                        && f.broker_epoch == broker_epoch(*id)
                })
            })
            .collect();
        let added_epochs = added
            .iter()
            .filter_map(|id| Some((*id, st.followers.get(id)?.broker_epoch?)))
            .collect();
        if removed.is_empty() && added.is_empty() {
            return None;
        }
        let isr: Vec<BrokerId> = st
            .replicas
            .iter()
            .copied()
            .filter(|id| (st.isr.contains(id) && !removed.contains(id)) || added.contains(id))
            .collect();
        st.pending_isr = Some(isr.clone());
        Some(IsrChange {
            leader_epoch: st.leader_epoch,
            partition_epoch: st.partition_epoch,
            isr,
            removed,
            added,
            added_epochs,
        })
    }

    /// Leader: the controller's answer to an [`IsrChange`]: the committed partition, or `None`
    /// when it was refused (fenced, or the controller unreachable; metadata will tell).
    pub fn isr_change_done(&self, committed: Option<&model::Partition>) {
        let mut st = self.lock();
        st.pending_isr = None;
        if committed.is_none() {
            // Refused or unanswered: wait for new metadata (which clears this) or a pause,
            // instead of asking again every tick.
            st.isr_retry_at_ms = now_ms() + ISR_RETRY_BACKOFF_MS;
        }
        if let Some(p) = committed {
            if p.leader_epoch == st.leader_epoch && p.partition_epoch > st.partition_epoch {
                st.isr = p.isr.clone();
                st.partition_epoch = p.partition_epoch;
            }
        }
        self.maybe_advance_hw(&st);
        // acks=all waiters re-check min.insync and the HW.
        self.hw_tx.send_modify(|_| {});
    }

    /// The high watermark is the smallest log end offset in the ISR — the larger of the
    /// committed and the pending ISR while a change is in flight; it never moves back.
    fn maybe_advance_hw(&self, st: &State) {
        if st.role != Role::Leader {
            return;
        }
        let leo = self.log.log_end_offset();
        let mut hw = leo;
        let pending = st.pending_isr.as_deref().unwrap_or(&[]);
        for id in st.isr.iter().chain(pending) {
            if *id == self.broker_id {
                continue;
            }
            match st.followers.get(id).and_then(|f| f.log_end_offset) {
                Some(f) => hw = hw.min(f),
                // Not heard from since this replica became leader: cannot advance yet.
                None => return,
            }
        }
        if hw > self.hw.load(Ordering::Acquire) {
            self.hw.store(hw, Ordering::Release);
            self.hw_tx.send_replace(hw);
        }
    }

    /// Follower: `Some((current leader epoch, latest local epoch))` while the divergent suffix
    /// has not been truncated (ask the leader OffsetForLeaderEpoch first); `None` to fetch.
    pub fn truncation_needed(&self) -> Option<(i32, i32)> {
        let mut st = self.lock();
        if st.role != Role::Follower || !st.needs_truncation {
            return None;
        }
        match self.log.latest_epoch() {
            Some(latest) => Some((st.leader_epoch, latest)),
            None => {
                // Nothing of any epoch here: nothing can diverge.
                st.needs_truncation = false;
                None
            }
        }
    }

    /// Follower: truncate to where this log and the leader's agree (KIP-279). The leader
    /// answered `(epoch, end_offset)` for our latest epoch `asked`: the largest epoch it knows
    /// that is ≤ `asked`, and where that epoch ends in its log.
    pub fn truncate_to_leader(&self, asked: i32, epoch: i32, end_offset: i64) -> Result<i64> {
        let mut st = self.lock();
        if st.role != Role::Follower {
            return Err(BrokerError::kafka(
                ResponseError::NotLeaderOrFollower,
                "no longer a follower",
            ));
        }
        let leo = self.log.log_end_offset();
        let target = if epoch < 0 || end_offset < 0 {
            // The leader knows no epoch this old: keep only what was committed.
            self.high_watermark().min(leo)
        } else if epoch == asked {
            end_offset.min(leo)
        } else {
            // The leader never saw our latest epoch: agree up to the end of its epoch here.
            let (_, local_end) = self.log.end_offset_for_epoch(epoch);
            if local_end < 0 {
                end_offset.min(leo)
            } else {
                local_end.min(end_offset).min(leo)
            }
        };
        // Always through the log, also when no data goes: an epoch this replica began as a
        // leader without writing ends its epoch cache and would make every fetch diverge.
        let new_end = self.log.truncate_to(target)?;
        let new_end = if new_end < leo {
            tracing::info!(
                partition = ?self,
                from = leo,
                to = new_end,
                leader_epoch = epoch,
                "truncated a divergent suffix"
            );
            st.producers = rebuild_producers(&self.log)?;
            self.leo_tx.send_replace(new_end);
            if self.high_watermark() > new_end {
                self.hw.store(new_end, Ordering::Release);
                self.hw_tx.send_replace(new_end);
            }
            new_end
        } else {
            leo
        };
        st.needs_truncation = false;
        Ok(new_end)
    }

    /// Follower: fetch again only after re-checking for divergence (the leader answered
    /// OFFSET_OUT_OF_RANGE). Below the leader's log start, start over there.
    pub fn retruncate(&self, leader_log_start: Option<i64>) -> Result<()> {
        let mut st = self.lock();
        if st.role != Role::Follower {
            return Ok(());
        }
        if let Some(start) = leader_log_start {
            if self.log.log_end_offset() < start {
                tracing::info!(partition = ?self, start, "behind the leader's log start; starting over there");
                self.log.truncate_fully_and_start_at(start)?;
                st.producers = ProducerStates::default();
                self.leo_tx.send_replace(start);
                self.hw.store(start, Ordering::Release);
                self.hw_tx.send_replace(start);
                return Ok(());
            }
        }
        st.needs_truncation = true;
        Ok(())
    }

    /// Writes the high watermark to its checkpoint file if it moved since the last write
    /// (housekeeping every 500 ms, and at a clean shutdown): written to a temporary file,
    /// fsynced and renamed over the old one, so a crash leaves one whole value.
    pub fn checkpoint_hw(&self) -> Result<()> {
        let hw = self.high_watermark();
        if hw == self.checkpointed_hw.load(Ordering::Acquire) {
            return Ok(());
        }
        let dir = self.log.dir();
        let tmp = dir.join(format!("{HW_CHECKPOINT_FILE}.tmp"));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(f, "{hw}")?;
            f.sync_data()?;
        }
        std::fs::rename(&tmp, dir.join(HW_CHECKPOINT_FILE))?;
        self.checkpointed_hw.store(hw, Ordering::Release);
        Ok(())
    }

    /// Leader: the idempotent producers this partition knows (Kafka's DescribeProducers).
    pub fn active_producers(&self) -> Result<Vec<crate::producer_state::ActiveProducer>> {
        let st = self.lock();
        self.check_leader_locked(&st, -1)?;
        Ok(st.producers.active())
    }

    /// Leader: Kafka's DeleteRecords. Moves the log start to `offset` (-1 = the high
    /// watermark), which must not pass the high watermark; returns the new log start (the low
    /// watermark). Durable (the log-start checkpoint); followers follow with their next fetch.
    pub fn delete_records(&self, offset: i64) -> Result<i64> {
        let st = self.lock();
        self.check_leader_locked(&st, -1)?;
        let hw = self.high_watermark();
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(BrokerError::kafka(
                ResponseError::OffsetOutOfRange,
                format!("cannot delete records before {offset}: the high watermark is {hw}"),
            ));
        }
        let before = self.log.log_start_offset();
        let start = self.log.delete_records_before(target)?;
        if start > before {
            tracing::info!(partition = ?self, log_start = start, "records deleted (DeleteRecords)");
        }
        Ok(start)
    }

    /// Follower: batches fetched from the leader, with the leader's high watermark and log
    /// start (a DeleteRecords or retention on the leader moves the follower's start too).
    pub fn append_replicated(
        &self,
        records: &[u8],
        leader_hw: i64,
        leader_log_start: i64,
    ) -> Result<usize> {
        let mut st = self.lock();
        if st.role != Role::Follower || st.needs_truncation {
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
        if leader_log_start > self.log.log_start_offset()
            && leader_log_start <= self.log.log_end_offset()
        {
            self.log.delete_records_before(leader_log_start)?;
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
    ///
    /// The HW passing the offset is not enough on its own: the ISR may have shrunk while the
    /// batch waited (followers dropped for lag), and an ISR of one moves the HW by itself. As
    /// in Kafka, the write is then acknowledged only if the ISR still holds
    /// `min.insync.replicas` members; otherwise the answer is the retriable
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND (the batch stays in the log, and an idempotent retry is
    /// recognised as a duplicate).
    pub async fn wait_replicated(
        &self,
        last_offset: i64,
        epoch: i32,
        deadline: Instant,
    ) -> Result<()> {
        let mut rx = self.hw_tx.subscribe();
        loop {
            {
                let st = self.lock();
                if self.high_watermark() > last_offset {
                    let leading = st.role == Role::Leader && st.leader_epoch == epoch;
                    if leading && st.isr.len() < st.settings.min_insync_replicas {
                        return Err(BrokerError::kafka(
                            ResponseError::NotEnoughReplicasAfterAppend,
                            format!(
                                "offset {last_offset} was written, but the ISR {:?} is now smaller \
                                 than min.insync.replicas={}",
                                st.isr, st.settings.min_insync_replicas
                            ),
                        ));
                    }
                    return Ok(());
                }
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
    pub partition_epoch: i32,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub pending_isr: Option<Vec<BrokerId>>,
    pub followers: HashMap<BrokerId, FollowerProgress>,
    pub min_insync_replicas: usize,
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn topic() -> model::Topic {
        model::Topic {
            topic_name: "t".into(),
            topic_id: "id".into(),
            num_partitions: 1,
            replication_factor: 3,
            config: BTreeMap::new(),
            partitions: Vec::new(),
            created_at: 0,
        }
    }

    fn meta(
        leader: BrokerId,
        isr: &[BrokerId],
        leader_epoch: i32,
        partition_epoch: i32,
    ) -> model::Partition {
        model::Partition {
            partition_id: 0,
            leader,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            leader_epoch,
            partition_epoch,
        }
    }

    fn produce(p: &Partition, n: usize) {
        for i in 0..n {
            let mut b = dmq_log::RecordBatchBuilder::new(0);
            b.push(0, Some(b"k"), Some(format!("v{i}").as_bytes()), &[]);
            let mut bytes = b.build();
            p.append_as_leader(&mut bytes, 1).expect("append");
        }
    }

    #[test]
    fn lagging_followers_leave_the_isr_and_caught_up_ones_rejoin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Partition::open(dir.path(), &topic(), &meta(1, &[1, 2, 3], 0, 0), 1).expect("open");
        assert_eq!(
            p.apply_metadata(&topic(), &meta(1, &[1, 2, 3], 0, 0)),
            RoleChange::BecameLeader
        );
        produce(&p, 3);
        let now = now_ms();
        // Both followers are granted a lag window from the election; nothing changes within it.
        assert_eq!(p.isr_change(now, 10_000, |_| Some(1)), None);
        // Follower 2 catches up; follower 3 never fetches.
        p.follower_fetched(2, 3, 0, Some(1), 0).expect("fetch");
        assert_eq!(
            p.high_watermark(),
            0,
            "3 has not fetched: the HW waits for it"
        );
        let change = p
            .isr_change(now + 20_000, 10_000, |_| Some(1))
            .expect("shrink");
        assert_eq!(
            (change.isr.clone(), change.removed.clone()),
            (vec![1], vec![2, 3])
        );
        assert_eq!(change.partition_epoch, 0);
        // While the shrink is pending nothing else is proposed and the HW still waits for 3.
        assert_eq!(p.isr_change(now + 20_000, 10_000, |_| Some(1)), None);
        assert_eq!(p.high_watermark(), 0);
        p.isr_change_done(Some(&meta(1, &[1, 2], 0, 1)));
        assert_eq!(p.snapshot().isr, vec![1, 2]);
        assert_eq!(
            p.high_watermark(),
            3,
            "with 3 out of the ISR the HW follows 2"
        );
        // 3 catches up to the HW: it may rejoin; the HW counts it while that is pending.
        p.follower_fetched(3, 3, 0, Some(1), 0).expect("fetch");
        let change = p.isr_change(now_ms(), 10_000, |_| Some(1)).expect("expand");
        assert_eq!(
            (change.isr.clone(), change.added.clone()),
            (vec![1, 2, 3], vec![3])
        );
        assert_eq!(change.partition_epoch, 1);
        // A refused change (fenced) clears the pending state; metadata decides.
        p.isr_change_done(None);
        assert_eq!(p.snapshot().pending_isr, None);
        assert_eq!(p.snapshot().isr, vec![1, 2]);
        // An older image (lower partition epoch) never rolls the ISR back.
        p.apply_metadata(&topic(), &meta(1, &[1, 2, 3], 0, 2));
        p.apply_metadata(&topic(), &meta(1, &[1], 0, 1));
        assert_eq!(p.snapshot().isr, vec![1, 2, 3]);
    }

    #[test]
    fn a_deposed_leader_truncates_to_the_new_leaders_epoch_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Partition::open(dir.path(), &topic(), &meta(1, &[1, 2, 3], 0, 0), 1).expect("open");
        p.apply_metadata(&topic(), &meta(1, &[1, 2, 3], 0, 0));
        produce(&p, 5);
        // Broker 2 leads epoch 1; it had offsets 0..3 of epoch 0.
        assert_eq!(
            p.apply_metadata(&topic(), &meta(2, &[2, 3], 1, 1)),
            RoleChange::BecameFollower
        );
        assert_eq!(p.truncation_needed(), Some((1, 0)));
        let err = p
            .append_replicated(&[], 0, 0)
            .expect_err("no fetching before truncation");
        assert!(matches!(err, BrokerError::Kafka { .. }), "{err:?}");
        assert_eq!(p.truncate_to_leader(0, 0, 3).expect("truncate"), 3);
        assert_eq!(p.log_end_offset(), 3);
        assert_eq!(p.truncation_needed(), None);
        // The dropped batches' producer state is gone with them (rebuilt from the log).
        assert_eq!(p.log.latest_epoch(), Some(0));
    }

    /// Kafka's replication-offset-checkpoint: the high watermark survives a restart (within
    /// what the log still holds), so committed records are readable at once.
    #[test]
    fn the_high_watermark_is_checkpointed_and_restored_within_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let p = Partition::open(dir.path(), &topic(), &meta(1, &[1], 0, 0), 1).expect("open");
            p.apply_metadata(&topic(), &meta(1, &[1], 0, 0));
            produce(&p, 4);
            assert_eq!(p.high_watermark(), 4, "an ISR of one commits at once");
            p.checkpoint_hw().expect("checkpoint");
            p.log.close().expect("close");
        }
        let p = Partition::open(dir.path(), &topic(), &meta(1, &[1, 2, 3], 1, 1), 1).expect("open");
        assert_eq!(
            p.high_watermark(),
            4,
            "restored before any follower fetched"
        );
        p.log.close().expect("close");
        drop(p);
        // A checkpoint past the log (its tail lost in a crash) is cut to the log end.
        std::fs::write(dir.path().join(HW_CHECKPOINT_FILE), "99\n").expect("write");
        let p = Partition::open(dir.path(), &topic(), &meta(1, &[1, 2, 3], 1, 1), 1).expect("open");
        assert_eq!(p.high_watermark(), 4);
        p.log.close().expect("close");
        drop(p);
        std::fs::write(dir.path().join(HW_CHECKPOINT_FILE), "garbage").expect("write");
        let p = Partition::open(dir.path(), &topic(), &meta(1, &[1, 2, 3], 1, 1), 1).expect("open");
        assert_eq!(
            p.high_watermark(),
            0,
            "an unreadable checkpoint counts for nothing"
        );
    }

    /// Kafka's truncateTo: a replica elected for an epoch in which it wrote nothing keeps that
    /// epoch at its log end; as a follower of a leader that never had it, truncation to its
    /// own end must still drop it, or every fetch names an unknown epoch and diverges forever.
    #[test]
    fn a_leader_epoch_without_data_is_dropped_by_truncation_to_the_log_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Partition::open(dir.path(), &topic(), &meta(1, &[1, 2, 3], 0, 0), 1).expect("open");
        p.apply_metadata(&topic(), &meta(1, &[1, 2, 3], 0, 0));
        produce(&p, 4);
        // Elected for epoch 1, deposed before writing anything.
        p.apply_metadata(&topic(), &meta(1, &[1, 2, 3], 1, 1));
        assert_eq!(p.log.latest_epoch(), Some(1));
        // Broker 2 leads epoch 2 and never saw epoch 1: it answers epoch 0 ending at 4.
        p.apply_metadata(&topic(), &meta(2, &[2, 3], 2, 2));
        assert_eq!(p.truncation_needed(), Some((2, 1)));
        assert_eq!(p.truncate_to_leader(1, 0, 4).expect("truncate"), 4);
        assert_eq!(p.log_end_offset(), 4, "no data lost");
        assert_eq!(
            p.log.latest_epoch(),
            Some(0),
            "the empty epoch 1 is gone, so the next fetch names epoch 0"
        );
    }
}
