//! The replication rules of one partition replica, as a pure state machine (sans-I/O).
//!
//! [`ReplicaState`] takes events as plain inputs — metadata (leader, epochs, ISR), a leader
//! append, a follower's fetch, the controller's answer to an ISR change, the follower's own
//! fetches and truncation — and returns decisions: serve or refuse a fetch (fenced, diverging,
//! out of range), the new high watermark, ISR shrink/expand proposals, which acks=all waiters
//! complete and how, and where a follower must truncate. It holds no log, no channel and no
//! clock: the caller passes the log's offsets through [`LogView`] and the time as `now_ms`.
//! The broker's `Partition` is the shell that feeds it and performs its decisions; the
//! simulator (`dmq-sim`) drives many of them with a virtual clock, a simulated network and
//! simulated disks.
//!
//! The rules, and the Kafka proposals they come from:
//! - **High watermark** (KIP-392-style): on the leader, the smallest log end offset over the
//!   ISR — over the larger of the committed and the pending ISR while a change is in flight —
//!   and it never moves back; an ISR member not heard from in this epoch holds it still.
//! - **acks=all**: acknowledged once the high watermark passes the batch and the ISR still has
//!   `min.insync.replicas` members (else NOT_ENOUGH_REPLICAS_AFTER_APPEND); refused before the
//!   append when the ISR is already too small; failed with NOT_LEADER when leadership moves.
//! - **Fencing** (KIP-320): requests naming another leader epoch are FENCED_LEADER_EPOCH or
//!   UNKNOWN_LEADER_EPOCH.
//! - **Divergence** (KIP-101, KIP-279, KIP-595's fetch check): a follower whose last fetched
//!   epoch is unknown to the leader, or ends before its fetch offset, must truncate first; it
//!   truncates to where its log and the leader's agree, always through the log (so an epoch it
//!   began without data leaves its epoch cache).
//! - **ISR** (KIP-497 AlterPartition, KIP-841, KIP-903): out after `replica.lag.time.max.ms`
//!   without catching up; in again only at the high watermark and at least at the start of
//!   this leader epoch, on progress fetched in the follower's current broker epoch; one change
//!   pending at a time; refused changes back off.
//! - **Deposed leader**: a leader cut off from the controller for a session acknowledges
//!   nothing (NOT_LEADER_OR_FOLLOWER, so clients refresh their metadata).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

pub use dmq_types::BrokerId;
use dmq_types::NO_LEADER;

/// How long a leader waits before proposing an ISR change again after the controller refused
/// one, unless the partition's metadata moves first.
pub const ISR_RETRY_BACKOFF_MS: i64 = 500;

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

/// The partition as the metadata quorum committed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMeta {
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
}

/// What the core needs to know of the replica's log.
pub trait LogView {
    fn log_start_offset(&self) -> i64;
    fn log_end_offset(&self) -> i64;
    /// The latest leader epoch in the epoch cache.
    fn latest_epoch(&self) -> Option<i32>;
    /// KIP-101: `(largest epoch ≤ epoch, where it ends)`, or `(-1, -1)` when none is known.
    fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64);
}

/// What the leader knows of one follower (Kafka's `Replica` state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end offset (its last fetch offset); `None` before its first fetch.
    pub log_end_offset: Option<i64>,
    /// When the follower last had everything the leader had (ms since the epoch).
    pub last_caught_up_ms: i64,
    pub last_fetch_ms: i64,
    /// The leader's log end at the follower's previous fetch.
    pub last_fetch_leader_leo: i64,
    /// The broker epoch (registration) of the process whose fetches this progress counts;
    /// `None` until its first fetch. A fetch from a later incarnation starts the progress over
    /// (KIP-903): the earlier one's log end may be gone with its unflushed tail.
    pub broker_epoch: Option<u64>,
    /// The follower's log start offset as its last fetch reported it.
    pub log_start_offset: Option<i64>,
}

impl FollowerProgress {
    fn granted(now_ms: i64, leader_leo: i64) -> Self {
        FollowerProgress {
            log_end_offset: None,
            last_caught_up_ms: now_ms,
            last_fetch_ms: now_ms,
            last_fetch_leader_leo: leader_leo,
            broker_epoch: None,
            log_start_offset: None,
        }
    }

    fn fresh(now_ms: i64, broker_epoch: Option<u64>) -> Self {
        FollowerProgress {
            log_end_offset: None,
            last_caught_up_ms: 0,
            last_fetch_ms: now_ms,
            last_fetch_leader_leo: i64::MAX,
            broker_epoch,
            log_start_offset: None,
        }
    }
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

/// The controller's answer to an [`IsrChange`]. An unanswered change (timeout, controller
/// unreachable) is no answer: it may have been committed, so the shell keeps it pending (the
/// high watermark goes on counting the pending ISR) and sends it again while
/// [`ReplicaState::isr_change_pending`] holds.
#[derive(Debug, Clone, Copy)]
pub enum IsrAnswer<'a> {
    /// Committed: the partition as the controller now has it.
    Committed(&'a PartitionMeta),
    /// Refused, and the shell has since applied the committed metadata (so the core knows
    /// whether an earlier attempt of the same change was committed after all).
    Refused,
}

/// Why the core refuses a request; the shell maps each to its Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// NOT_LEADER_OR_FOLLOWER, naming the leader when one is known.
    NotLeader { leader: Option<BrokerId> },
    /// FENCED_LEADER_EPOCH: the requester's epoch is older than ours.
    FencedLeaderEpoch { requested: i32, current: i32 },
    /// UNKNOWN_LEADER_EPOCH: the requester's epoch is newer than ours.
    UnknownLeaderEpoch { requested: i32, current: i32 },
    /// NOT_ENOUGH_REPLICAS: acks=all with an ISR below `min.insync.replicas`; nothing written.
    NotEnoughReplicas {
        isr: Vec<BrokerId>,
        min_insync: usize,
    },
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND: written and committed, but the ISR shrank below
    /// `min.insync.replicas` while the batch waited.
    NotEnoughReplicasAfterAppend {
        offset: i64,
        isr: Vec<BrokerId>,
        min_insync: usize,
    },
    /// NOT_LEADER_OR_FOLLOWER: the fetching broker holds no replica of this partition.
    NotAReplica { broker: BrokerId },
    /// NOT_LEADER_OR_FOLLOWER: this replica stopped following (or must truncate first).
    NotFollowing,
    /// OFFSET_OUT_OF_RANGE.
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    /// The follower's log diverges from the leader's (OFFSET_OUT_OF_RANGE on Fetch v12, which
    /// makes the follower truncate again).
    Diverging {
        last_fetched_epoch: i32,
        epoch_end_offset: i64,
        fetch_offset: i64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotLeader { leader: Some(l) } => write!(f, "not the leader (broker {l} is)"),
            Refusal::NotLeader { leader: None } => write!(f, "not the leader (none known)"),
            Refusal::FencedLeaderEpoch { requested, current }
            | Refusal::UnknownLeaderEpoch { requested, current } => write!(
                f,
                "leader epoch {requested} does not match the current {current}"
            ),
            Refusal::NotEnoughReplicas { isr, min_insync } => write!(
                f,
                "ISR {isr:?} is smaller than min.insync.replicas={min_insync}"
            ),
            Refusal::NotEnoughReplicasAfterAppend {
                offset,
                isr,
                min_insync,
            } => write!(
                f,
                "offset {offset} was written, but the ISR {isr:?} is now smaller than \
                 min.insync.replicas={min_insync}"
            ),
            Refusal::NotAReplica { broker } => {
                write!(f, "broker {broker} holds no replica of this partition")
            }
            Refusal::NotFollowing => write!(f, "no longer a follower"),
            Refusal::OffsetOutOfRange {
                offset,
                log_start,
                log_end,
            } => write!(f, "offset {offset} outside [{log_start}, {log_end}]"),
            Refusal::Diverging {
                last_fetched_epoch,
                epoch_end_offset,
                fetch_offset,
            } => write!(
                f,
                "follower log diverges: epoch {last_fetched_epoch} ends at {epoch_end_offset} \
                 here, it fetches from {fetch_offset}"
            ),
        }
    }
}

/// Identifies one acks=all wait (see [`ReplicaState::await_ack`]).
pub type WaiterId = u64;

/// What the shell must do after an event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// The high watermark moved to this value: publish it (wake consumer fetches).
    pub high_watermark: Option<i64>,
    /// acks=all waits that are decided: answer each producer.
    pub acks: Vec<(WaiterId, Result<(), Refusal>)>,
}

impl Effects {
    fn merge(&mut self, other: Effects) {
        if other.high_watermark.is_some() {
            self.high_watermark = other.high_watermark;
        }
        self.acks.extend(other.acks);
    }
}

/// How a metadata update changed this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    Unchanged,
    /// Record `epoch` as starting at `start_offset` in the log's epoch cache.
    BecameLeader {
        epoch: i32,
        start_offset: i64,
    },
    /// Ask the leader where our latest epoch ends before fetching.
    BecameFollower,
}

/// The outcome of a metadata update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub role_change: RoleChange,
    pub effects: Effects,
}

/// A follower's fetch as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerFetch {
    pub replica: BrokerId,
    pub fetch_offset: i64,
    /// The epoch of the follower's last fetched batch (-1 = unknown, no check).
    pub last_fetched_epoch: i32,
    /// The leader epoch the follower believes in (-1 = unchecked).
    pub current_leader_epoch: i32,
    /// The follower's registration as the leader's metadata knows it.
    pub broker_epoch: Option<u64>,
    /// The follower's log start offset (-1 = not reported).
    pub log_start_offset: i64,
}

/// What a fetch may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchGrant {
    pub high_watermark: i64,
    /// Serve batches ending below this offset: the HW for consumers, the log end for followers.
    pub upper: i64,
}

/// An acks=all batch: answered now, or later through [`Effects::acks`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckWait {
    Done(Result<(), Refusal>),
    Pending(WaiterId),
}

/// What a follower does after the leader answered its fetch with OFFSET_OUT_OF_RANGE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// Nothing: no longer a follower.
    Nothing,
    /// Ask the leader for the divergence point again (OffsetForLeaderEpoch).
    Retruncate,
    /// Behind the leader's log start: empty the log and start it at this offset, then call
    /// [`ReplicaState::started_over`].
    StartOver(i64),
}

/// A known replication bug, re-introduced on purpose so that the simulator can show it catches
/// it. Never set outside the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// The high watermark follows the most advanced follower, in the ISR or not.
    HwFromNonIsr,
    /// acks=all is acknowledged at the leader's append, before the high watermark passes it.
    AckBeforeHw,
    /// A new follower keeps its divergent suffix instead of truncating it.
    SkipTruncation,
    /// Truncation to the log end skips the log, leaving an epoch begun without data in the
    /// epoch cache: every fetch then diverges (the livelock of issue 15, scenario 2).
    EmptyEpochLivelock,
    /// A follower's progress survives its restart and it may rejoin the ISR before fetching
    /// in its new incarnation (the acknowledged-loss of issue 15, scenario 1; KIP-903).
    IgnoreIncarnation,
}

impl Mutation {
    pub const ALL: [Mutation; 5] = [
        Mutation::HwFromNonIsr,
        Mutation::AckBeforeHw,
        Mutation::SkipTruncation,
        Mutation::EmptyEpochLivelock,
        Mutation::IgnoreIncarnation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mutation::HwFromNonIsr => "hw-from-non-isr",
            Mutation::AckBeforeHw => "ack-before-hw",
            Mutation::SkipTruncation => "skip-truncation",
            Mutation::EmptyEpochLivelock => "empty-epoch-livelock",
            Mutation::IgnoreIncarnation => "ignore-incarnation",
        }
    }

    pub fn from_name(name: &str) -> Option<Mutation> {
        Mutation::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// One partition replica's replication state. See the crate docs for the rules.
#[derive(Debug, Clone)]
pub struct ReplicaState {
    broker_id: BrokerId,
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
    /// Leader only: no ISR change is proposed before this time after a refusal.
    isr_retry_at_ms: i64,
    high_watermark: i64,
    min_insync: usize,
    /// acks=all waits by (last offset, id) → the leader epoch they were appended in.
    waiters: BTreeMap<(i64, WaiterId), i32>,
    next_waiter: WaiterId,
    mutation: Option<Mutation>,
}

impl ReplicaState {
    /// A replica that follows nobody yet, with the high watermark restored from its checkpoint
    /// (already cut to the recovered log). Metadata makes it leader or follower.
    pub fn new(broker_id: BrokerId, high_watermark: i64, min_insync: usize) -> Self {
        ReplicaState {
            broker_id,
            role: Role::Follower,
            leader: NO_LEADER,
            leader_epoch: -1,
            partition_epoch: -1,
            replicas: Vec::new(),
            isr: Vec::new(),
            pending_isr: None,
            epoch_start_offset: 0,
            followers: HashMap::new(),
            needs_truncation: true,
            isr_retry_at_ms: 0,
            high_watermark,
            min_insync: min_insync.max(1),
            waiters: BTreeMap::new(),
            next_waiter: 0,
            mutation: None,
        }
    }

    /// Re-introduces a known bug (simulator only).
    pub fn with_mutation(mut self, mutation: Option<Mutation>) -> Self {
        self.mutation = mutation;
        self
    }

    fn mutated(&self, m: Mutation) -> bool {
        self.mutation == Some(m)
    }

    // -----------------------------------------------------------------------------------
    // Reading
    // -----------------------------------------------------------------------------------

    pub fn broker_id(&self) -> BrokerId {
        self.broker_id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn leader(&self) -> BrokerId {
        self.leader
    }
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }
    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }
    pub fn replicas(&self) -> &[BrokerId] {
        &self.replicas
    }
    pub fn isr(&self) -> &[BrokerId] {
        &self.isr
    }
    pub fn pending_isr(&self) -> Option<&[BrokerId]> {
        self.pending_isr.as_deref()
    }
    pub fn followers(&self) -> &HashMap<BrokerId, FollowerProgress> {
        &self.followers
    }
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }
    pub fn min_insync(&self) -> usize {
        self.min_insync
    }
    /// acks=all batches waiting for the high watermark.
    pub fn waiting_acks(&self) -> usize {
        self.waiters.len()
    }

    fn not_leader(&self) -> Refusal {
        Refusal::NotLeader {
            leader: (self.leader >= 0).then_some(self.leader),
        }
    }

    // -----------------------------------------------------------------------------------
    // Metadata
    // -----------------------------------------------------------------------------------

    /// Takes the leader, epochs, replicas and ISR of the metadata, and the topic's
    /// `min.insync.replicas`. A partition entry older than what this replica acts on (lower
    /// leader epoch, or same leader epoch and lower partition epoch) is ignored.
    pub fn apply_metadata(
        &mut self,
        meta: &PartitionMeta,
        min_insync: usize,
        log: &impl LogView,
        now_ms: i64,
    ) -> Update {
        let unchanged = Update {
            role_change: RoleChange::Unchanged,
            effects: Effects::default(),
        };
        if meta.leader_epoch < self.leader_epoch
            || (meta.leader_epoch == self.leader_epoch
                && meta.partition_epoch < self.partition_epoch)
        {
            return unchanged;
        }
        self.min_insync = min_insync.max(1);
        self.replicas = meta.replicas.clone();
        if meta.partition_epoch != self.partition_epoch {
            // The committed ISR moved (our own change or the controller's): nothing is
            // pending, and a change may be proposed at once against the new state.
            self.pending_isr = None;
            self.isr_retry_at_ms = 0;
        }
        self.isr = meta.isr.clone();
        self.partition_epoch = meta.partition_epoch;
        let new_role = if meta.leader == self.broker_id {
            Role::Leader
        } else {
            Role::Follower
        };
        let changed = new_role != self.role
            || meta.leader_epoch != self.leader_epoch
            || meta.leader != self.leader;
        self.leader = meta.leader;
        self.leader_epoch = meta.leader_epoch;
        self.role = new_role;
        let leo = log.log_end_offset();
        if !changed {
            // ISR membership may have changed: that can move the high watermark.
            return Update {
                role_change: RoleChange::Unchanged,
                effects: self.advance_hw(leo),
            };
        }
        self.followers.clear();
        self.pending_isr = None;
        // Waits of an earlier epoch are over: the batches may or may not survive.
        let mut effects = self.fail_waiters_not_in(meta.leader_epoch);
        let role_change = match new_role {
            Role::Leader => {
                self.epoch_start_offset = leo;
                self.needs_truncation = false;
                // Every ISR member gets a full lag window from now (Kafka resets replica state).
                for id in self.isr.clone() {
                    if id != self.broker_id {
                        self.followers
                            .insert(id, FollowerProgress::granted(now_ms, leo));
                    }
                }
                effects.merge(self.advance_hw(leo));
                RoleChange::BecameLeader {
                    epoch: meta.leader_epoch,
                    start_offset: leo,
                }
            }
            Role::Follower => {
                self.needs_truncation = true;
                RoleChange::BecameFollower
            }
        };
        Update {
            role_change,
            effects,
        }
    }

    fn fail_waiters_not_in(&mut self, epoch: i32) -> Effects {
        let refusal = self.not_leader();
        let gone: Vec<(i64, WaiterId)> = self
            .waiters
            .iter()
            .filter(|(_, e)| **e != epoch || self.role != Role::Leader)
            .map(|(k, _)| *k)
            .collect();
        let mut effects = Effects::default();
        for key in gone {
            self.waiters.remove(&key);
            effects.acks.push((key.1, Err(refusal.clone())));
        }
        effects
    }

    // -----------------------------------------------------------------------------------
    // Leader: produce
    // -----------------------------------------------------------------------------------

    /// Fails unless this replica leads; `current_leader_epoch` (-1 = unchecked) is the epoch
    /// the client believes in (KIP-320 fencing). Returns the leader epoch.
    pub fn check_leader(&self, current_leader_epoch: i32) -> Result<i32, Refusal> {
        if self.role != Role::Leader {
            return Err(self.not_leader());
        }
        if current_leader_epoch >= 0 && current_leader_epoch != self.leader_epoch {
            let (requested, current) = (current_leader_epoch, self.leader_epoch);
            return Err(if requested < current {
                Refusal::FencedLeaderEpoch { requested, current }
            } else {
                Refusal::UnknownLeaderEpoch { requested, current }
            });
        }
        Ok(self.leader_epoch)
    }

    /// Whether a produce with `acks` may be appended now; the leader epoch to append in.
    /// `cut_off`: no heartbeat reached the controller for a session timeout, so this broker
    /// has been (or is about to be) deposed — acknowledge nothing, and make clients refresh.
    pub fn check_append(&self, acks: i16, cut_off: bool) -> Result<i32, Refusal> {
        let epoch = self.check_leader(-1)?;
        if cut_off {
            return Err(Refusal::NotLeader { leader: None });
        }
        if acks == -1 && self.isr.len() < self.min_insync {
            return Err(Refusal::NotEnoughReplicas {
                isr: self.isr.clone(),
                min_insync: self.min_insync,
            });
        }
        Ok(epoch)
    }

    /// The leader's log end moved to `log_end` (an append).
    pub fn leader_appended(&mut self, log_end: i64) -> Effects {
        self.advance_hw(log_end)
    }

    /// An acks=all batch ending at `last_offset`, appended in leader epoch `epoch`: decided now
    /// if the high watermark already passed it or leadership moved, else pending until an
    /// event decides it (or the caller gives up: [`ReplicaState::cancel_ack`]).
    pub fn await_ack(&mut self, last_offset: i64, epoch: i32) -> AckWait {
        if self.mutated(Mutation::AckBeforeHw) && self.role == Role::Leader {
            return AckWait::Done(Ok(()));
        }
        if self.high_watermark > last_offset {
            return AckWait::Done(self.ack_verdict(last_offset, epoch));
        }
        if self.role != Role::Leader || self.leader_epoch != epoch {
            return AckWait::Done(Err(self.not_leader()));
        }
        let id = self.next_waiter;
        self.next_waiter += 1;
        self.waiters.insert((last_offset, id), epoch);
        AckWait::Pending(id)
    }

    /// Forgets a pending acks=all wait (the request timed out).
    pub fn cancel_ack(&mut self, id: WaiterId, last_offset: i64) {
        self.waiters.remove(&(last_offset, id));
    }

    /// A batch the high watermark passed: acknowledged if the ISR still holds
    /// `min.insync.replicas` members. (The ISR may have shrunk while it waited — followers
    /// dropped for lag — and an ISR of one moves the HW by itself.) A batch committed under a
    /// previous leadership is acknowledged.
    fn ack_verdict(&self, last_offset: i64, epoch: i32) -> Result<(), Refusal> {
        let leading = self.role == Role::Leader && self.leader_epoch == epoch;
        if leading && self.isr.len() < self.min_insync {
            return Err(Refusal::NotEnoughReplicasAfterAppend {
                offset: last_offset,
                isr: self.isr.clone(),
                min_insync: self.min_insync,
            });
        }
        Ok(())
    }

    /// Leader: the high watermark is the smallest log end offset in the ISR (the larger of the
    /// committed and the pending ISR while a change is in flight); it never moves back.
    /// Decides the acks=all waits it passes.
    fn advance_hw(&mut self, leo: i64) -> Effects {
        if self.role != Role::Leader {
            return Effects::default();
        }
        let hw = if self.mutated(Mutation::HwFromNonIsr) {
            self.followers
                .values()
                .filter_map(|f| f.log_end_offset)
                .max()
                .unwrap_or(leo)
                .min(leo)
        } else {
            let mut hw = leo;
            let pending = self.pending_isr.as_deref().unwrap_or(&[]);
            for id in self.isr.iter().chain(pending) {
                if *id == self.broker_id {
                    continue;
                }
                match self.followers.get(id).and_then(|f| f.log_end_offset) {
                    Some(f) => hw = hw.min(f),
                    // Not heard from since this replica became leader: cannot advance yet.
                    None => return Effects::default(),
                }
            }
            hw
        };
        if hw <= self.high_watermark {
            return Effects::default();
        }
        self.high_watermark = hw;
        let mut effects = Effects {
            high_watermark: Some(hw),
            acks: Vec::new(),
        };
        while let Some((&(offset, id), &epoch)) = self.waiters.first_key_value() {
            if offset >= hw {
                break;
            }
            self.waiters.remove(&(offset, id));
            effects.acks.push((id, self.ack_verdict(offset, epoch)));
        }
        effects
    }

    // -----------------------------------------------------------------------------------
    // Leader: fetches
    // -----------------------------------------------------------------------------------

    /// A consumer's fetch at `fetch_offset`: it may read below the high watermark.
    pub fn consumer_fetch(
        &self,
        current_leader_epoch: i32,
        fetch_offset: i64,
        log: &impl LogView,
    ) -> Result<FetchGrant, Refusal> {
        self.check_leader(current_leader_epoch)?;
        check_range(fetch_offset, log)?;
        Ok(FetchGrant {
            high_watermark: self.high_watermark,
            upper: self.high_watermark,
        })
    }

    /// A follower fetched from `fetch_offset`, so it holds everything below it — unless its
    /// log diverges (KIP-595's check: its last fetched epoch is unknown here, or ends here
    /// before its fetch offset), in which case it must truncate first and its offset does not
    /// count. Tracks when it was last caught up (Kafka's rule: a fetch at the leader's end, or
    /// at least at the end the leader had at the follower's previous fetch); a new broker
    /// epoch means a new process, whose progress starts over (KIP-903).
    pub fn follower_fetch(
        &mut self,
        fetch: &FollowerFetch,
        log: &impl LogView,
        now_ms: i64,
    ) -> Result<(FetchGrant, Effects), Refusal> {
        self.check_leader(fetch.current_leader_epoch)?;
        let leo = check_range(fetch.fetch_offset, log)?;
        if fetch.last_fetched_epoch >= 0 {
            let (epoch, end) = log.end_offset_for_epoch(fetch.last_fetched_epoch);
            if epoch < fetch.last_fetched_epoch || end < fetch.fetch_offset {
                return Err(Refusal::Diverging {
                    last_fetched_epoch: fetch.last_fetched_epoch,
                    epoch_end_offset: end,
                    fetch_offset: fetch.fetch_offset,
                });
            }
        }
        if !self.replicas.contains(&fetch.replica) || fetch.replica == self.broker_id {
            return Err(Refusal::NotAReplica {
                broker: fetch.replica,
            });
        }
        let ignore_incarnation = self.mutated(Mutation::IgnoreIncarnation);
        let fresh = FollowerProgress::fresh(now_ms, fetch.broker_epoch);
        let f = self.followers.entry(fetch.replica).or_insert(fresh);
        match (f.broker_epoch, fetch.broker_epoch) {
            (Some(known), Some(now_epoch)) if known != now_epoch => {
                if ignore_incarnation {
                    f.broker_epoch = fetch.broker_epoch;
                } else {
                    *f = fresh;
                }
            }
            (None, Some(_)) => f.broker_epoch = fetch.broker_epoch,
            _ => {}
        }
        if fetch.fetch_offset >= leo {
            f.last_caught_up_ms = now_ms;
        } else if fetch.fetch_offset >= f.last_fetch_leader_leo {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.last_fetch_leader_leo = leo;
        f.last_fetch_ms = now_ms;
        f.log_end_offset = Some(fetch.fetch_offset.min(leo));
        f.log_start_offset = (fetch.log_start_offset >= 0).then_some(fetch.log_start_offset);
        let effects = self.advance_hw(leo);
        Ok((
            FetchGrant {
                high_watermark: self.high_watermark,
                upper: leo,
            },
            effects,
        ))
    }

    /// Leader: the low watermark — the smallest log start offset of this replica and of every
    /// follower on a live broker (Kafka's `lowWatermarkIfLeader`); a live follower that has not
    /// reported one yet counts as -1.
    pub fn low_watermark(&self, log_start: i64, alive: impl Fn(BrokerId) -> bool) -> i64 {
        let mut low = log_start;
        for &r in &self.replicas {
            if r == self.broker_id || !alive(r) {
                continue;
            }
            let start = self
                .followers
                .get(&r)
                .and_then(|f| f.log_start_offset)
                .unwrap_or(-1);
            low = low.min(start);
        }
        low
    }

    // -----------------------------------------------------------------------------------
    // Leader: ISR
    // -----------------------------------------------------------------------------------

    /// The ISR change the followers' progress calls for, if any and if none is pending (or
    /// backing off after a refusal). The change is marked pending; report the controller's
    /// answer with [`ReplicaState::isr_change_done`].
    ///
    /// Out: a follower not caught up within `lag_max_ms`. In: a follower at the high watermark
    /// and at least at this epoch's start, caught up within the lag window, on progress fetched
    /// in its current broker epoch as `broker_epoch` gives it (KIP-903).
    pub fn isr_change(
        &mut self,
        now_ms: i64,
        lag_max_ms: i64,
        broker_epoch: impl Fn(BrokerId) -> Option<u64>,
    ) -> Option<IsrChange> {
        if self.role != Role::Leader || self.pending_isr.is_some() || now_ms < self.isr_retry_at_ms
        {
            return None;
        }
        let hw = self.high_watermark;
        let me = self.broker_id;
        let ignore_incarnation = self.mutated(Mutation::IgnoreIncarnation);
        let removed: Vec<BrokerId> = self
            .isr
            .iter()
            .copied()
            .filter(|id| *id != me)
            .filter(|id| {
                self.followers
                    .get(id)
                    .is_none_or(|f| now_ms - f.last_caught_up_ms > lag_max_ms)
            })
            .collect();
        let added: Vec<BrokerId> = self
            .replicas
            .iter()
            .copied()
            .filter(|id| *id != me && !self.isr.contains(id))
            .filter(|id| {
                self.followers.get(id).is_some_and(|f| {
                    f.log_end_offset
                        .is_some_and(|leo| leo >= hw && leo >= self.epoch_start_offset)
                        && now_ms - f.last_caught_up_ms <= lag_max_ms
                        && (ignore_incarnation
                            || (f.broker_epoch.is_some() && f.broker_epoch == broker_epoch(*id)))
                })
            })
            .collect();
        if removed.is_empty() && added.is_empty() {
            return None;
        }
        let added_epochs = added
            .iter()
            .filter_map(|id| {
                if ignore_incarnation {
                    return Some((*id, broker_epoch(*id)?));
                }
                Some((*id, self.followers.get(id)?.broker_epoch?))
            })
            .collect();
        let isr: Vec<BrokerId> = self
            .replicas
            .iter()
            .copied()
            .filter(|id| (self.isr.contains(id) && !removed.contains(id)) || added.contains(id))
            .collect();
        self.pending_isr = Some(isr.clone());
        Some(IsrChange {
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            isr,
            removed,
            added,
            added_epochs,
        })
    }

    /// Whether `change` is still the pending ISR change of this leader epoch (the shell sends
    /// an unanswered change again only while it is).
    pub fn isr_change_pending(&self, change: &IsrChange) -> bool {
        self.role == Role::Leader
            && self.leader_epoch == change.leader_epoch
            && self.partition_epoch == change.partition_epoch
            && self.pending_isr.as_deref() == Some(change.isr.as_slice())
    }

    /// The controller's answer to the pending [`IsrChange`]. A refusal settles the change
    /// (back off before the next) only once the committed metadata has been applied: until
    /// then an earlier attempt of the same change may have been committed, and the high
    /// watermark must go on counting the pending ISR.
    pub fn isr_change_done(
        &mut self,
        answer: IsrAnswer<'_>,
        log: &impl LogView,
        now_ms: i64,
    ) -> Effects {
        self.pending_isr = None;
        match answer {
            IsrAnswer::Refused => self.isr_retry_at_ms = now_ms + ISR_RETRY_BACKOFF_MS,
            IsrAnswer::Committed(p) => {
                if p.leader_epoch == self.leader_epoch && p.partition_epoch > self.partition_epoch {
                    self.isr = p.isr.clone();
                    self.partition_epoch = p.partition_epoch;
                }
            }
        }
        self.advance_hw(log.log_end_offset())
    }

    // -----------------------------------------------------------------------------------
    // Follower
    // -----------------------------------------------------------------------------------

    /// `Some((current leader epoch, latest local epoch))` while the divergent suffix has not
    /// been truncated (ask the leader OffsetForLeaderEpoch first); `None` to fetch.
    pub fn truncation_needed(&mut self, log: &impl LogView) -> Option<(i32, i32)> {
        if self.role != Role::Follower || !self.needs_truncation {
            return None;
        }
        match log.latest_epoch() {
            Some(latest) => Some((self.leader_epoch, latest)),
            None => {
                // Nothing of any epoch here: nothing can diverge.
                self.needs_truncation = false;
                None
            }
        }
    }

    /// Where to truncate to agree with the leader (KIP-279), which answered `(epoch,
    /// end_offset)` for our latest epoch `asked`: the largest epoch it knows that is ≤
    /// `asked`, and where that epoch ends in its log. `Some(offset)`: truncate the log there —
    /// also when that is its end, since an epoch this replica began as a leader without writing
    /// must leave its epoch cache; then report with [`ReplicaState::truncated`].
    pub fn truncation_target(
        &self,
        asked: i32,
        epoch: i32,
        end_offset: i64,
        log: &impl LogView,
    ) -> Result<Option<i64>, Refusal> {
        if self.role != Role::Follower {
            return Err(Refusal::NotFollowing);
        }
        let leo = log.log_end_offset();
        if self.mutated(Mutation::SkipTruncation) {
            return Ok(None);
        }
        let target = if epoch < 0 || end_offset < 0 {
            // The leader knows no epoch this old: keep only what was committed.
            self.high_watermark.min(leo)
        } else if epoch == asked {
            end_offset.min(leo)
        } else {
            // The leader never saw our latest epoch: agree up to the end of its epoch here.
            let (_, local_end) = log.end_offset_for_epoch(epoch);
            if local_end < 0 {
                end_offset.min(leo)
            } else {
                local_end.min(end_offset).min(leo)
            }
        };
        if self.mutated(Mutation::EmptyEpochLivelock) && target >= leo {
            return Ok(None);
        }
        Ok(Some(target))
    }

    /// The log was truncated (or left alone) as [`ReplicaState::truncation_target`] said and
    /// now ends at `log_end`: fetching may start. The high watermark cannot exceed the log.
    pub fn truncated(&mut self, log_end: i64) -> Effects {
        self.needs_truncation = false;
        if self.high_watermark > log_end {
            self.high_watermark = log_end;
            return Effects {
                high_watermark: Some(log_end),
                acks: Vec::new(),
            };
        }
        Effects::default()
    }

    /// Whether fetched batches may be appended now (a follower that has truncated).
    pub fn check_follower_append(&self) -> Result<(), Refusal> {
        if self.role != Role::Follower || self.needs_truncation {
            return Err(Refusal::NotFollowing);
        }
        Ok(())
    }

    /// Fetched batches were appended (or none came): the follower's high watermark is the
    /// leader's, within its own log.
    pub fn follower_appended(&mut self, leader_hw: i64, log: &impl LogView) -> Effects {
        if self.role != Role::Follower {
            return Effects::default();
        }
        let hw = leader_hw.min(log.log_end_offset());
        if hw != self.high_watermark {
            self.high_watermark = hw;
            return Effects {
                high_watermark: Some(hw),
                acks: Vec::new(),
            };
        }
        Effects::default()
    }

    /// The leader answered our fetch with OFFSET_OUT_OF_RANGE: behind its log start (then
    /// start over there), or diverging (then ask for the divergence point again).
    pub fn fetch_out_of_range(&mut self, leader_log_start: i64, log: &impl LogView) -> Reset {
        if self.role != Role::Follower {
            return Reset::Nothing;
        }
        if leader_log_start > log.log_end_offset() {
            return Reset::StartOver(leader_log_start);
        }
        self.needs_truncation = true;
        Reset::Retruncate
    }

    /// The log was emptied and restarted at `start` ([`Reset::StartOver`]).
    pub fn started_over(&mut self, start: i64) -> Effects {
        self.high_watermark = start;
        Effects {
            high_watermark: Some(start),
            acks: Vec::new(),
        }
    }
}

/// The log end offset, if `offset` is within `[log start, log end]`.
fn check_range(offset: i64, log: &impl LogView) -> Result<i64, Refusal> {
    let (log_start, log_end) = (log.log_start_offset(), log.log_end_offset());
    if offset < log_start || offset > log_end {
        return Err(Refusal::OffsetOutOfRange {
            offset,
            log_start,
            log_end,
        });
    }
    Ok(log_end)
}

#[cfg(test)]
mod tests;
