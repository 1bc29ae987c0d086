//! Kafka's classic group membership protocol, as plain state with the clock passed in.
//!
//! ```text
//!            join (new member, leader rejoin, changed protocols)
//!   Empty ──────────────────────────────▶ PreparingRebalance ◀──────────────┐
//!     ▲                                      │ every member rejoined         │ member joins/leaves/
//!     │ last member gone                     │ (after the initial delay for  │ expires, sync timeout
//!     │                                      │ a new group) or the rebalance │
//!     │                                      ▼ deadline passed               │
//!     └──────────────────────────── CompletingRebalance ── leader's SyncGroup ─▶ Stable
//! ```
//!
//! JoinGroup and SyncGroup answers that must wait are `oneshot` receivers the Kafka handler
//! awaits; everything else answers at once. [`GroupCoordinator::tick`] drives the timers
//! (session expiry, rebalance and sync deadlines). Membership is in memory only: when the
//! coordinator moves, members get UNKNOWN_MEMBER_ID and rejoin; committed offsets are in the
//! metadata quorum.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;

/// How long a new group waits for more members before its first generation (Kafka's
/// `group.initial.rebalance.delay.ms`, default 3 s there).
pub const INITIAL_REBALANCE_DELAY: Duration = Duration::from_millis(1_000);
/// Accepted `session.timeout.ms` range (Kafka's `group.min/max.session.timeout.ms` are 6 s and
/// 30 min; we allow shorter sessions).
pub const SESSION_TIMEOUT_MIN_MS: i32 = 1_000;
pub const SESSION_TIMEOUT_MAX_MS: i32 = 1_800_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The names Kafka's DescribeGroups and ListGroups use.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// A JoinGroup request.
#[derive(Debug, Clone)]
pub struct JoinParams {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a member without an id first gets MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member: bool,
}

/// A JoinGroup answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinOutcome {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// For the leader only: every member's id, instance id and metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinOutcome {
    fn error(e: ResponseError, member_id: &str) -> JoinOutcome {
        JoinOutcome {
            error: code(e),
            generation: -1,
            member_id: member_id.to_string(),
            ..JoinOutcome::default()
        }
    }
}

/// A SyncGroup answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncOutcome {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    fn error(e: ResponseError) -> SyncOutcome {
        SyncOutcome {
            error: code(e),
            ..SyncOutcome::default()
        }
    }
}

/// An answer now, or one to wait for.
pub enum Reply<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: Option<String>,
    pub members: Vec<MemberView>,
}

struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heartbeat: Instant,
    /// Order of joining (the first member leads a new generation).
    seq: u64,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: HashMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, valid until the deadline.
    pending: HashMap<String, Instant>,
    /// `group.instance.id` → member id (static membership).
    instances: HashMap<String, String>,
    rebalance_deadline: Instant,
    not_before: Instant,
    sync_deadline: Instant,
    next_seq: u64,
    /// Since when the group has had no members (forgotten [`EMPTY_GROUP_RETENTION`] later).
    empty_since: Option<Instant>,
}

/// How long a group without members stays known to its coordinator (listed as Empty with its
/// protocol type, deletable), as Kafka keeps Empty groups; offsets live in the quorum anyway.
const EMPTY_GROUP_RETENTION: Duration = Duration::from_secs(600);

impl Group {
    fn new(now: Instant) -> Group {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: HashMap::new(),
            pending: HashMap::new(),
            instances: HashMap::new(),
            rebalance_deadline: now,
            not_before: now,
            sync_deadline: now,
            next_seq: 0,
            empty_since: None,
        }
    }

    /// Protocols every member supports.
    fn candidates(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut names: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in members {
            names.retain(|n| m.protocols.iter().any(|(p, _)| p == n));
        }
        names
    }

    /// Kafka's vote: each member votes for its most preferred candidate; the most votes win.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidates();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                *votes.entry(n.as_str()).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(_, v)| *v)
            .map(|(n, _)| n.to_string())
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                if let Some(tx) = m.sync_waiter.take() {
                    let _ = tx.send(SyncOutcome::error(ResponseError::RebalanceInProgress));
                }
            }
        }
        let from_empty = self.state == GroupState::Empty;
        let timeout = self.rebalance_timeout();
        self.state = GroupState::PreparingRebalance;
        self.rebalance_deadline = now + timeout;
        self.not_before = if from_empty {
            (now + INITIAL_REBALANCE_DELAY).min(self.rebalance_deadline)
        } else {
            now
        };
    }

    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.join_waiter.is_some());
        if (all_joined && now >= self.not_before) || now >= self.rebalance_deadline {
            self.complete_join(now);
        }
    }

    fn complete_join(&mut self, now: Instant) {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join_waiter.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.remove_member_quietly(&id);
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.become_empty();
            return;
        }
        self.protocol = self.select_protocol();
        let leader_ok = self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l));
        if !leader_ok {
            self.leader = self
                .members
                .iter()
                .min_by_key(|(_, m)| m.seq)
                .map(|(id, _)| id.clone());
        }
        self.state = GroupState::CompletingRebalance;
        let timeout = self.rebalance_timeout();
        self.sync_deadline = now + timeout;
        let all = self.member_list();
        let leader = self.leader.clone().unwrap_or_default();
        for (id, m) in self.members.iter_mut() {
            m.assignment = Bytes::new();
            m.last_heartbeat = now;
            if let Some(tx) = m.join_waiter.take() {
                let _ = tx.send(JoinOutcome {
                    error: 0,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol.clone(),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    members: if *id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }

    /// No members left. The protocol type stays (Kafka keeps it for Empty groups, so tools
    /// still list a consumer group as one); the next member may bring another.
    fn become_empty(&mut self) {
        self.state = GroupState::Empty;
        self.protocol = None;
        self.leader = None;
    }

    /// Removes a member, failing whatever it waits for.
    fn remove_member_quietly(&mut self, id: &str) {
        if let Some(mut m) = self.members.remove(id) {
            if let Some(tx) = m.join_waiter.take() {
                let _ = tx.send(JoinOutcome::error(ResponseError::UnknownMemberId, id));
            }
            if let Some(tx) = m.sync_waiter.take() {
                let _ = tx.send(SyncOutcome::error(ResponseError::UnknownMemberId));
            }
            if let Some(inst) = m.instance_id {
                if self.instances.get(&inst).is_some_and(|x| x == id) {
                    self.instances.remove(&inst);
                }
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// A member left or expired: rebalance the rest, or become Empty.
    fn remove_member(&mut self, id: &str, now: Instant) {
        self.remove_member_quietly(id);
        if self.members.is_empty() {
            if self.state != GroupState::Empty {
                self.generation += 1;
            }
            self.become_empty();
            return;
        }
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.maybe_complete_join(now);
    }

    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
        if let Some(inst) = instance_id {
            if let Some(owner) = self.instances.get(inst) {
                if owner != member_id {
                    return Err(code(ResponseError::FencedInstanceId));
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(code(ResponseError::UnknownMemberId));
        }
        Ok(())
    }

    /// The longest rebalance timeout among the members (Kafka's rebalance deadline).
    fn rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(1))
    }

    /// What the leader's JoinGroup answer lists: every member in joining order, with its
    /// instance id and its metadata for the chosen protocol.
    fn member_list(&self) -> Vec<(String, Option<String>, Bytes)> {
        let protocol = self.protocol.clone().unwrap_or_default();
        let mut ordered: Vec<(&String, &Member)> = self.members.iter().collect();
        ordered.sort_by_key(|(_, m)| m.seq);
        ordered
            .into_iter()
            .map(|(id, m)| (id.clone(), m.instance_id.clone(), m.metadata_for(&protocol)))
            .collect()
    }

    fn current_join(&self, member_id: &str) -> JoinOutcome {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.member_list()
        } else {
            Vec::new()
        };
        JoinOutcome {
            error: 0,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }
}

/// Every group this broker coordinates.
#[derive(Default)]
pub struct GroupCoordinator {
    groups: Mutex<HashMap<String, Group>>,
}

impl GroupCoordinator {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn join(&self, p: JoinParams, now: Instant) -> Reply<JoinOutcome> {
        if p.group_id.is_empty() {
            return Reply::Now(JoinOutcome::error(
                ResponseError::InvalidGroupId,
                &p.member_id,
            ));
        }
        if !(SESSION_TIMEOUT_MIN_MS..=SESSION_TIMEOUT_MAX_MS).contains(&p.session_timeout_ms) {
            return Reply::Now(JoinOutcome::error(
                ResponseError::InvalidSessionTimeout,
                &p.member_id,
            ));
        }
        if p.protocol_type.is_empty() || p.protocols.is_empty() {
            return Reply::Now(JoinOutcome::error(
                ResponseError::InconsistentGroupProtocol,
                &p.member_id,
            ));
        }
        let mut groups = self.lock();
        let g = groups
            .entry(p.group_id.clone())
            .or_insert_with(|| Group::new(now));
        if !g.members.is_empty() {
            let compatible = g.protocol_type.as_deref() == Some(p.protocol_type.as_str())
                && g.candidates()
                    .iter()
                    .any(|c| p.protocols.iter().any(|(n, _)| n == c));
            if !compatible {
                return Reply::Now(JoinOutcome::error(
                    ResponseError::InconsistentGroupProtocol,
                    &p.member_id,
                ));
            }
        }
        let session = Duration::from_millis(p.session_timeout_ms as u64);
        let rebalance =
            Duration::from_millis(p.rebalance_timeout_ms.max(p.session_timeout_ms) as u64);
        let mut member_id = p.member_id.clone();
        if member_id.is_empty() {
            let new_id = format!("{}-{}", p.client_id, uuid::Uuid::new_v4());
            if let Some(old) = p
                .instance_id
                .as_ref()
                .and_then(|i| g.instances.get(i))
                .cloned()
            {
                // A static member restarted: it takes over the old identity's place (and
                // assignment) under a new member id; the old id is fenced.
                if let Some(mut m) = g.members.remove(&old) {
                    if let Some(tx) = m.join_waiter.take() {
                        let _ = tx.send(JoinOutcome::error(ResponseError::FencedInstanceId, &old));
                    }
                    if let Some(tx) = m.sync_waiter.take() {
                        let _ = tx.send(SyncOutcome::error(ResponseError::FencedInstanceId));
                    }
                    let same_protocols = m.protocols == p.protocols;
                    m.session_timeout = session;
                    m.rebalance_timeout = rebalance;
                    m.last_heartbeat = now;
                    m.client_id = p.client_id.clone();
                    m.client_host = p.client_host.clone();
                    g.members.insert(new_id.clone(), m);
                    if g.leader.as_deref() == Some(old.as_str()) {
                        g.leader = Some(new_id.clone());
                    }
                    if let Some(inst) = &p.instance_id {
                        g.instances.insert(inst.clone(), new_id.clone());
                    }
                    if g.state == GroupState::Stable && same_protocols {
                        return Reply::Now(g.current_join(&new_id));
                    }
                    member_id = new_id;
                }
            } else if p.require_known_member && p.instance_id.is_none() {
                g.pending.insert(new_id.clone(), now + session);
                return Reply::Now(JoinOutcome::error(ResponseError::MemberIdRequired, &new_id));
            } else {
                member_id = new_id;
            }
            if member_id.is_empty() {
                member_id = format!("{}-{}", p.client_id, uuid::Uuid::new_v4());
            }
        } else {
            if let Some(inst) = &p.instance_id {
                if g.instances
                    .get(inst)
                    .is_some_and(|owner| *owner != member_id)
                {
                    return Reply::Now(JoinOutcome::error(
                        ResponseError::FencedInstanceId,
                        &member_id,
                    ));
                }
            }
            if !g.members.contains_key(&member_id) && g.pending.remove(&member_id).is_none() {
                return Reply::Now(JoinOutcome::error(
                    ResponseError::UnknownMemberId,
                    &member_id,
                ));
            }
        }
        let (tx, rx) = oneshot::channel();
        if let Some(m) = g.members.get_mut(&member_id) {
            let changed = m.protocols != p.protocols;
            m.protocols = p.protocols;
            m.session_timeout = session;
            m.rebalance_timeout = rebalance;
            m.last_heartbeat = now;
            // A follower re-sending an unchanged join gets the current generation; a new
            // subscription, or the leader rejoining a stable group, starts a rebalance.
            let leader_rejoins =
                g.state == GroupState::Stable && g.leader.as_deref() == Some(member_id.as_str());
            let settled = matches!(
                g.state,
                GroupState::Stable | GroupState::CompletingRebalance
            );
            if settled && !changed && !leader_rejoins {
                return Reply::Now(g.current_join(&member_id));
            }
            if let Some(old) = m.join_waiter.replace(tx) {
                let _ = old.send(JoinOutcome::error(
                    ResponseError::RebalanceInProgress,
                    &member_id,
                ));
            }
        } else {
            let seq = g.next_seq;
            g.next_seq += 1;
            g.members.insert(
                member_id.clone(),
                Member {
                    instance_id: p.instance_id.clone(),
                    client_id: p.client_id,
                    client_host: p.client_host,
                    session_timeout: session,
                    rebalance_timeout: rebalance,
                    protocols: p.protocols,
                    assignment: Bytes::new(),
                    last_heartbeat: now,
                    seq,
                    join_waiter: Some(tx),
                    sync_waiter: None,
                },
            );
            if let Some(inst) = p.instance_id {
                g.instances.insert(inst, member_id.clone());
            }
            if g.members.len() == 1 {
                // The first member decides (an Empty group takes any protocol type).
                g.protocol_type = Some(p.protocol_type);
            }
        }
        if g.state != GroupState::PreparingRebalance {
            g.prepare_rebalance(now);
        }
        g.maybe_complete_join(now);
        Reply::Wait(rx)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Reply<SyncOutcome> {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return Reply::Now(SyncOutcome::error(ResponseError::UnknownMemberId));
        };
        if let Err(e) = g.check_member(member_id, instance_id) {
            return Reply::Now(SyncOutcome {
                error: e,
                ..SyncOutcome::default()
            });
        }
        if generation != g.generation {
            return Reply::Now(SyncOutcome::error(ResponseError::IllegalGeneration));
        }
        if protocol_type.is_some_and(|t| Some(t) != g.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != g.protocol.as_deref())
        {
            return Reply::Now(SyncOutcome::error(ResponseError::InconsistentGroupProtocol));
        }
        let outcome = |g: &Group, assignment: Bytes| SyncOutcome {
            error: 0,
            protocol_type: g.protocol_type.clone(),
            protocol_name: g.protocol.clone(),
            assignment,
        };
        match g.state {
            GroupState::Empty => Reply::Now(SyncOutcome::error(ResponseError::UnknownMemberId)),
            GroupState::PreparingRebalance => {
                Reply::Now(SyncOutcome::error(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => {
                let a = g
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                Reply::Now(outcome(g, a))
            }
            GroupState::CompletingRebalance => {
                if let Some(m) = g.members.get_mut(member_id) {
                    m.last_heartbeat = now;
                }
                if g.leader.as_deref() == Some(member_id) {
                    let given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    g.state = GroupState::Stable;
                    let snapshot = (g.protocol_type.clone(), g.protocol.clone());
                    for (id, m) in g.members.iter_mut() {
                        m.assignment = given.get(id).cloned().unwrap_or_default();
                        if let Some(tx) = m.sync_waiter.take() {
                            let _ = tx.send(SyncOutcome {
                                error: 0,
                                protocol_type: snapshot.0.clone(),
                                protocol_name: snapshot.1.clone(),
                                assignment: m.assignment.clone(),
                            });
                        }
                    }
                    let a = g
                        .members
                        .get(member_id)
                        .map(|m| m.assignment.clone())
                        .unwrap_or_default();
                    Reply::Now(outcome(g, a))
                } else {
                    let (tx, rx) = oneshot::channel();
                    if let Some(m) = g.members.get_mut(member_id) {
                        m.sync_waiter = Some(tx);
                    }
                    Reply::Wait(rx)
                }
            }
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> i16 {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return code(ResponseError::UnknownMemberId);
        };
        if let Err(e) = g.check_member(member_id, instance_id) {
            return e;
        }
        if let Some(m) = g.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
        if generation != g.generation {
            return code(ResponseError::IllegalGeneration);
        }
        match g.state {
            GroupState::Empty => code(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => code(ResponseError::RebalanceInProgress),
            GroupState::CompletingRebalance | GroupState::Stable => 0,
        }
    }

    /// LeaveGroup for `(member id, instance id)` pairs; an empty member id with an instance id
    /// names a static member. Returns one error code per member.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now: Instant,
    ) -> Vec<i16> {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return vec![code(ResponseError::UnknownMemberId); members.len()];
        };
        members
            .iter()
            .map(|(member_id, instance_id)| {
                let id = match instance_id {
                    Some(inst) => match g.instances.get(inst) {
                        Some(owner) if member_id.is_empty() || owner == member_id => owner.clone(),
                        Some(_) => return code(ResponseError::FencedInstanceId),
                        None => return code(ResponseError::UnknownMemberId),
                    },
                    None => member_id.clone(),
                };
                if g.pending.remove(&id).is_some() {
                    return 0;
                }
                if !g.members.contains_key(&id) {
                    return code(ResponseError::UnknownMemberId);
                }
                g.remove_member(&id, now);
                0
            })
            .collect()
    }

    /// Whether an OffsetCommit from this member at this generation may be stored (Kafka's
    /// rules: a generation-less commit only for a group without members).
    pub fn validate_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> i16 {
        let mut groups = self.lock();
        let g = groups.get_mut(group_id);
        let active = g.as_ref().is_some_and(|g| !g.members.is_empty());
        if generation < 0 && member_id.is_empty() && !active {
            return 0;
        }
        let Some(g) = g else {
            return code(ResponseError::UnknownMemberId);
        };
        if let Err(e) = g.check_member(member_id, instance_id) {
            return e;
        }
        if g.state == GroupState::CompletingRebalance {
            return code(ResponseError::RebalanceInProgress);
        }
        if generation != g.generation {
            return code(ResponseError::IllegalGeneration);
        }
        if let Some(m) = g.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
        0
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupView> {
        let groups = self.lock();
        let g = groups.get(group_id)?;
        let protocol = g.protocol.clone().unwrap_or_default();
        let mut members: Vec<(&String, &Member)> = g.members.iter().collect();
        members.sort_by_key(|(_, m)| m.seq);
        Some(GroupView {
            state: g.state,
            generation: g.generation,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            leader: g.leader.clone(),
            members: members
                .into_iter()
                .map(|(id, m)| MemberView {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// `(group id, protocol type, state)` of every group with members here.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        let groups = self.lock();
        let mut out: Vec<(String, String, GroupState)> = groups
            .iter()
            .map(|(id, g)| {
                (
                    id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state,
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Forgets a group without members: `None` if it has members, else whether this
    /// coordinator knew it.
    pub fn remove_if_empty(&self, group_id: &str) -> Option<bool> {
        let mut groups = self.lock();
        match groups.get(group_id) {
            Some(g) if !g.members.is_empty() => None,
            _ => Some(groups.remove(group_id).is_some()),
        }
    }

    /// Timers: expired sessions and member ids, rebalance and sync deadlines. Empty groups
    /// are forgotten (their offsets live in the quorum).
    pub fn tick(&self, now: Instant) {
        let mut groups = self.lock();
        for g in groups.values_mut() {
            g.pending.retain(|_, deadline| *deadline > now);
            let expired: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join_waiter.is_none()
                        && m.sync_waiter.is_none()
                        && now.duration_since(m.last_heartbeat) > m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                tracing::info!(member = %id, "group member session expired");
                g.remove_member(&id, now);
            }
            match g.state {
                GroupState::PreparingRebalance => g.maybe_complete_join(now),
                GroupState::CompletingRebalance if now >= g.sync_deadline => {
                    let silent: Vec<String> = g
                        .members
                        .iter()
                        .filter(|(_, m)| m.sync_waiter.is_none())
                        .map(|(id, _)| id.clone())
                        .collect();
                    for id in silent {
                        g.remove_member(&id, now);
                    }
                    if g.state == GroupState::CompletingRebalance {
                        g.prepare_rebalance(now);
                    }
                }
                _ => {}
            }
        }
        for g in groups.values_mut() {
            if g.state != GroupState::Empty {
                g.empty_since = None;
            } else if g.empty_since.is_none() {
                g.empty_since = Some(now);
            }
        }
        groups.retain(|_, g| {
            !(g.state == GroupState::Empty
                && g.pending.is_empty()
                && g.empty_since
                    .is_some_and(|t| now.duration_since(t) >= EMPTY_GROUP_RETENTION))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(member: &str, instance: Option<&str>) -> JoinParams {
        JoinParams {
            group_id: "g".into(),
            member_id: member.into(),
            instance_id: instance.map(str::to_string),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
            require_known_member: true,
        }
    }

    fn now_or_wait<T: std::fmt::Debug>(r: Reply<T>) -> Result<T, oneshot::Receiver<T>> {
        match r {
            Reply::Now(t) => Ok(t),
            Reply::Wait(rx) => Err(rx),
        }
    }

    /// Joins a new member through MEMBER_ID_REQUIRED; returns its id and the waiting reply.
    fn join_new(c: &GroupCoordinator, t: Instant) -> (String, oneshot::Receiver<JoinOutcome>) {
        let first = now_or_wait(c.join(params("", None), t)).expect("answered at once");
        assert_eq!(first.error, ResponseError::MemberIdRequired.code());
        let id = first.member_id;
        let rx = now_or_wait(c.join(params(&id, None), t)).expect_err("waits for the rebalance");
        (id, rx)
    }

    #[test]
    fn two_members_get_one_generation_with_a_leader_and_their_assignments() {
        let c = GroupCoordinator::default();
        let t0 = Instant::now();
        let (a, mut rx_a) = join_new(&c, t0);
        let (b, mut rx_b) = join_new(&c, t0);
        // The initial delay holds the first generation back.
        c.tick(t0 + Duration::from_millis(10));
        assert!(rx_a.try_recv().is_err());
        let t1 = t0 + INITIAL_REBALANCE_DELAY;
        c.tick(t1);
        let ja = rx_a.try_recv().expect("a joined");
        let jb = rx_b.try_recv().expect("b joined");
        assert_eq!((ja.generation, jb.generation), (1, 1));
        assert_eq!(ja.leader, a, "the first member leads");
        assert_eq!(ja.members.len(), 2);
        assert!(jb.members.is_empty());
        assert_eq!(ja.protocol_name.as_deref(), Some("range"));
        // b syncs first and waits; the leader's sync completes both.
        let mut rx_sync_b = now_or_wait(c.sync("g", 1, &b, None, None, None, vec![], t1))
            .expect_err("follower waits for the leader");
        let assignments = vec![
            (a.clone(), Bytes::from_static(b"A")),
            (b.clone(), Bytes::from_static(b"B")),
        ];
        let sa =
            now_or_wait(c.sync("g", 1, &a, None, None, None, assignments, t1)).expect("leader");
        assert_eq!(sa.assignment, Bytes::from_static(b"A"));
        assert_eq!(
            rx_sync_b.try_recv().expect("b synced").assignment,
            Bytes::from_static(b"B")
        );
        assert_eq!(c.heartbeat("g", 1, &b, None, t1), 0);
        assert_eq!(
            c.heartbeat("g", 0, &b, None, t1),
            ResponseError::IllegalGeneration.code()
        );
        assert_eq!(c.validate_commit("g", 1, &a, None, t1), 0);
        assert_eq!(
            c.validate_commit("g", -1, "", None, t1),
            ResponseError::UnknownMemberId.code()
        );
        assert_eq!(c.describe("g").expect("group").state, GroupState::Stable);
    }

    #[test]
    fn a_silent_member_expires_and_the_rest_rebalance() {
        let c = GroupCoordinator::default();
        let t0 = Instant::now();
        let (a, _rx_a) = join_new(&c, t0);
        let (b, _rx_b) = join_new(&c, t0);
        let t1 = t0 + INITIAL_REBALANCE_DELAY;
        c.tick(t1);
        let assignments = vec![(a.clone(), Bytes::new()), (b.clone(), Bytes::new())];
        let _ = c.sync("g", 1, &a, None, None, None, assignments, t1);
        // b never heartbeats again; a does.
        let t2 = t1 + Duration::from_secs(6);
        assert_eq!(c.heartbeat("g", 1, &a, None, t2), 0);
        c.tick(t1 + Duration::from_secs(11));
        assert_eq!(
            c.heartbeat("g", 1, &a, None, t1 + Duration::from_secs(11)),
            ResponseError::RebalanceInProgress.code()
        );
        assert_eq!(
            c.heartbeat("g", 1, &b, None, t2),
            ResponseError::UnknownMemberId.code()
        );
        // a rejoins alone: generation 2 at once (no initial delay for a live group).
        let t3 = t1 + Duration::from_secs(11);
        let mut rx = now_or_wait(c.join(params(&a, None), t3)).expect_err("rebalance");
        let j = rx.try_recv().expect("completed");
        assert_eq!((j.generation, j.members.len()), (2, 1));
    }

    #[test]
    fn leaving_last_member_empties_the_group_and_static_members_keep_their_place() {
        let c = GroupCoordinator::default();
        let t0 = Instant::now();
        let mut rx =
            now_or_wait(c.join(params("", Some("i1")), t0)).expect_err("static joins at once");
        c.tick(t0 + INITIAL_REBALANCE_DELAY);
        let j = rx.try_recv().expect("joined");
        let t1 = t0 + INITIAL_REBALANCE_DELAY;
        let _ = c.sync(
            "g",
            1,
            &j.member_id,
            Some("i1"),
            None,
            None,
            vec![(j.member_id.clone(), Bytes::from_static(b"X"))],
            t1,
        );
        // The same instance restarts with a new process: no rebalance, the assignment stays.
        let again = now_or_wait(c.join(params("", Some("i1")), t1)).expect("answered at once");
        assert_eq!(again.generation, 1);
        assert_ne!(again.member_id, j.member_id);
        assert_eq!(
            c.heartbeat("g", 1, &j.member_id, Some("i1"), t1),
            ResponseError::FencedInstanceId.code()
        );
        let s = now_or_wait(c.sync("g", 1, &again.member_id, Some("i1"), None, None, vec![], t1))
            .expect("stable");
        assert_eq!(s.assignment, Bytes::from_static(b"X"));
        assert_eq!(
            c.leave("g", &[(String::new(), Some("i1".into()))], t1),
            vec![0]
        );
        c.tick(t1);
        let empty = c.describe("g").expect("an Empty group is kept for a while");
        assert_eq!(empty.state, GroupState::Empty);
        assert_eq!(
            empty.protocol_type, "consumer",
            "and keeps its protocol type"
        );
        c.tick(t1 + EMPTY_GROUP_RETENTION);
        assert!(c.describe("g").is_none(), "then forgotten");
    }
}
