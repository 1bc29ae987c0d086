//! The coordinator's side of one share group (KIP-932 ShareGroupHeartbeat), pure: members,
//! epochs, subscriptions and the assignment of partitions to members.
//!
//! ```text
//!   member ──heartbeat(epoch 0, topics)──▶ joins: group epoch + 1, assignment recomputed,
//!                                          answer (member epoch = group epoch, assignment)
//!          ──heartbeat(epoch e)──────────▶ e = its epoch (or the one before): answer, with the
//!                                          assignment if it changed since it last heard
//!          ──heartbeat(epoch -1)─────────▶ leaves: group epoch + 1, recomputed
//!   no heartbeat for the session timeout ─▶ expired like a leave
//! ```
//!
//! Unlike consumer groups, share groups revoke nothing: members share partitions, so a member
//! takes a new assignment (and the group epoch) on its next heartbeat. The assignor follows
//! Kafka's `SimpleAssignor`: each member subscribed to a topic gets the partition its member id
//! hashes to, and every partition nobody got goes round-robin to the topic's subscribers — so
//! every partition is assigned and, with fewer partitions than members, members share them.
//!
//! Errors are the ones librdkafka acts on: UNKNOWN_MEMBER_ID and FENCED_MEMBER_EPOCH make the
//! member rejoin at epoch 0; INVALID_REQUEST and GROUP_MAX_SIZE_REACHED are fatal to it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// `group.share.heartbeat.interval.ms` (Kafka's default).
pub const HEARTBEAT_INTERVAL_MS_DEFAULT: i32 = 5_000;
/// `group.share.session.timeout.ms` (Kafka's default).
pub const SESSION_TIMEOUT_MS_DEFAULT: i64 = 45_000;
/// `group.share.max.size` (Kafka's default).
pub const MAX_SIZE_DEFAULT: usize = 200;

/// Topic name → partition ids.
pub type Assignment = BTreeMap<String, Vec<i32>>;

/// One ShareGroupHeartbeat as the coordinator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub member_id: String,
    /// 0 to join, -1 to leave, else the member's current epoch.
    pub member_epoch: i32,
    /// The topics it subscribes to; `None` keeps the last ones.
    pub subscribed_topics: Option<Vec<String>>,
    /// The client id and host the request came with (for ShareGroupDescribe).
    pub client_id: String,
    pub client_host: String,
}

/// The coordinator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatAnswer {
    pub member_id: String,
    /// The member's epoch from now on (-1 after a leave).
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's partitions, when it joined or they changed since its last heartbeat.
    pub assignment: Option<Assignment>,
}

/// Why a heartbeat is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("invalid share group heartbeat: {0}")]
    InvalidRequest(String),
    #[error("member {0} is not in the group")]
    UnknownMemberId(String),
    #[error("member {member} sent epoch {got}, its epoch is {current}")]
    FencedMemberEpoch {
        member: String,
        got: i32,
        current: i32,
    },
    #[error("the share group has {0} members, its maximum")]
    GroupMaxSizeReached(usize),
}

impl GroupError {
    /// The Kafka error code of the refusal.
    pub fn kafka_code(&self) -> i16 {
        match self {
            GroupError::InvalidRequest(_) => 42,
            GroupError::UnknownMemberId(_) => 25,
            GroupError::FencedMemberEpoch { .. } => 110,
            GroupError::GroupMaxSizeReached(_) => 81,
        }
    }
}

/// The group's limits and timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupConfig {
    pub heartbeat_interval_ms: i32,
    pub session_timeout_ms: i64,
    pub max_size: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS_DEFAULT,
            session_timeout_ms: SESSION_TIMEOUT_MS_DEFAULT,
            max_size: MAX_SIZE_DEFAULT,
        }
    }
}

/// One member as the coordinator keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub epoch: i32,
    /// Its epoch before the last bump: a heartbeat in flight across a bump still counts.
    pub previous_epoch: i32,
    pub subscribed: BTreeSet<String>,
    pub assignment: Assignment,
    /// Whether its current assignment reached it (sent in a heartbeat answer).
    pub assignment_sent: bool,
    pub last_heartbeat_ms: i64,
    /// From its last heartbeat.
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_host: String,
}

/// One share group on its coordinator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareGroup {
    pub group_epoch: i32,
    pub members: BTreeMap<String, Member>,
}

/// A stable hash of a member id (FNV-1a), so that the assignment does not depend on the
/// process (Kafka hashes with Java's `String.hashCode`; only stability matters here).
fn member_hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl ShareGroup {
    /// Handles one heartbeat at `now_ms`. `partitions` gives a topic's partition count (`None`
    /// for a topic that does not exist: subscribed, but nothing to assign).
    pub fn heartbeat(
        &mut self,
        hb: &Heartbeat,
        partitions: impl Fn(&str) -> Option<i32>,
        config: &GroupConfig,
        now_ms: i64,
    ) -> Result<HeartbeatAnswer, GroupError> {
        if hb.member_id.is_empty() {
            return Err(GroupError::InvalidRequest("the member id is empty".into()));
        }
        self.expire(config, now_ms, &partitions);
        let answer = |m: &Member, assignment| HeartbeatAnswer {
            member_id: hb.member_id.clone(),
            member_epoch: m.epoch,
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            assignment,
        };
        match hb.member_epoch {
            -1 => {
                if self.members.remove(&hb.member_id).is_some() {
                    self.changed(&partitions);
                }
                Ok(HeartbeatAnswer {
                    member_id: hb.member_id.clone(),
                    member_epoch: -1,
                    heartbeat_interval_ms: config.heartbeat_interval_ms,
                    assignment: None,
                })
            }
            0 => {
                let topics: BTreeSet<String> = hb
                    .subscribed_topics
                    .iter()
                    .flatten()
                    .filter(|t| !t.is_empty())
                    .cloned()
                    .collect();
                if topics.is_empty() {
                    return Err(GroupError::InvalidRequest(
                        "a member joins with the topics it subscribes to".into(),
                    ));
                }
                if !self.members.contains_key(&hb.member_id)
                    && self.members.len() >= config.max_size
                {
                    return Err(GroupError::GroupMaxSizeReached(config.max_size));
                }
                self.members.insert(
                    hb.member_id.clone(),
                    Member {
                        epoch: 0,
                        previous_epoch: 0,
                        subscribed: topics,
                        assignment: Assignment::new(),
                        assignment_sent: false,
                        last_heartbeat_ms: now_ms,
                        client_id: hb.client_id.clone(),
                        client_host: hb.client_host.clone(),
                    },
                );
                self.changed(&partitions);
                let m = self.take_epoch(&hb.member_id);
                if let Some(member) = self.members.get_mut(&hb.member_id) {
                    member.assignment_sent = true;
                }
                Ok(answer(&m, Some(m.assignment.clone())))
            }
            epoch if epoch < -1 => Err(GroupError::InvalidRequest(format!("member epoch {epoch}"))),
            epoch => {
                let Some(m) = self.members.get_mut(&hb.member_id) else {
                    return Err(GroupError::UnknownMemberId(hb.member_id.clone()));
                };
                if epoch != m.epoch && epoch != m.previous_epoch {
                    return Err(GroupError::FencedMemberEpoch {
                        member: hb.member_id.clone(),
                        got: epoch,
                        current: m.epoch,
                    });
                }
                m.last_heartbeat_ms = now_ms;
                if let Some(topics) = &hb.subscribed_topics {
                    let topics: BTreeSet<String> =
                        topics.iter().filter(|t| !t.is_empty()).cloned().collect();
                    if topics != m.subscribed {
                        m.subscribed = topics;
                        self.changed(&partitions);
                    }
                }
                // Partitions added to a subscribed topic change the assignment too.
                if self.assignments(&partitions) != self.current_assignments() {
                    self.changed(&partitions);
                }
                let m = self.take_epoch(&hb.member_id);
                let news = (!m.assignment_sent).then(|| m.assignment.clone());
                if let Some(member) = self.members.get_mut(&hb.member_id) {
                    member.assignment_sent = true;
                }
                Ok(answer(&m, news))
            }
        }
    }

    /// Removes the members whose session expired at `now_ms`; their ids.
    pub fn expire(
        &mut self,
        config: &GroupConfig,
        now_ms: i64,
        partitions: impl Fn(&str) -> Option<i32>,
    ) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| now_ms.saturating_sub(m.last_heartbeat_ms) > config.session_timeout_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.members.remove(id);
        }
        if !gone.is_empty() {
            self.changed(&partitions);
        }
        gone
    }

    /// The member's state after it took the group epoch.
    fn take_epoch(&mut self, id: &str) -> Member {
        let epoch = self.group_epoch;
        let Some(m) = self.members.get_mut(id) else {
            return Member {
                epoch,
                previous_epoch: epoch,
                subscribed: BTreeSet::new(),
                assignment: Assignment::new(),
                assignment_sent: false,
                last_heartbeat_ms: 0,
                client_id: String::new(),
                client_host: String::new(),
            };
        };
        if m.epoch != epoch {
            m.previous_epoch = m.epoch;
            m.epoch = epoch;
        }
        m.clone()
    }

    /// Membership or subscriptions changed: a new group epoch and assignment. A member whose
    /// partitions changed hears of them on its next heartbeat.
    fn changed(&mut self, partitions: &impl Fn(&str) -> Option<i32>) {
        self.group_epoch += 1;
        let next = self.assignments(partitions);
        for (id, m) in &mut self.members {
            let mine = next.get(id).cloned().unwrap_or_default();
            if mine != m.assignment {
                m.assignment = mine;
                m.assignment_sent = false;
            }
        }
    }

    fn current_assignments(&self) -> BTreeMap<String, Assignment> {
        self.members
            .iter()
            .map(|(id, m)| (id.clone(), m.assignment.clone()))
            .collect()
    }

    /// Kafka's SimpleAssignor: per topic, each subscriber gets the partition its id hashes to;
    /// every partition left over goes round-robin over the subscribers (in member id order).
    pub fn assignments(
        &self,
        partitions: &impl Fn(&str) -> Option<i32>,
    ) -> BTreeMap<String, Assignment> {
        let mut out: BTreeMap<String, Assignment> = self
            .members
            .keys()
            .map(|id| (id.clone(), Assignment::new()))
            .collect();
        let topics: BTreeSet<&String> = self.members.values().flat_map(|m| &m.subscribed).collect();
        for topic in topics {
            let n = partitions(topic).unwrap_or(0);
            if n <= 0 {
                continue;
            }
            let subscribers: Vec<&String> = self
                .members
                .iter()
                .filter(|(_, m)| m.subscribed.contains(topic))
                .map(|(id, _)| id)
                .collect();
            let mut owned = vec![false; n as usize];
            for id in &subscribers {
                let p = (member_hash(id) % n as u64) as i32;
                owned[p as usize] = true;
                out.entry((*id).clone())
                    .or_default()
                    .entry(topic.clone())
                    .or_default()
                    .push(p);
            }
            let mut next = 0usize;
            for (p, taken) in owned.iter().enumerate() {
                if *taken || subscribers.is_empty() {
                    continue;
                }
                let id = subscribers[next % subscribers.len()];
                next += 1;
                out.entry(id.clone())
                    .or_default()
                    .entry(topic.clone())
                    .or_default()
                    .push(p as i32);
            }
        }
        for a in out.values_mut() {
            for ps in a.values_mut() {
                ps.sort_unstable();
                ps.dedup();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(id: &str, epoch: i32, topics: Option<&[&str]>) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            member_epoch: epoch,
            subscribed_topics: topics.map(|t| t.iter().map(|s| s.to_string()).collect()),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
        }
    }

    fn counts(topic: &str) -> Option<i32> {
        match topic {
            "one" => Some(1),
            "six" => Some(6),
            _ => None,
        }
    }

    #[test]
    fn kip932_every_member_of_a_one_partition_topic_gets_the_partition() {
        let mut g = ShareGroup::default();
        let cfg = GroupConfig::default();
        let mut epochs = Vec::new();
        for id in ["a", "b", "c"] {
            let a = g
                .heartbeat(&hb(id, 0, Some(&["one"])), counts, &cfg, 0)
                .expect("join");
            assert_eq!(
                a.assignment,
                Some(BTreeMap::from([("one".into(), vec![0])]))
            );
            epochs.push(a.member_epoch);
        }
        assert_eq!(epochs, vec![1, 2, 3], "each join bumps the group epoch");
        // a is behind by two bumps but its own epoch still counts; it learns nothing new.
        let a = g
            .heartbeat(&hb("a", 1, None), counts, &cfg, 10)
            .expect("heartbeat");
        assert_eq!((a.member_epoch, a.assignment), (3, None));
    }

    #[test]
    fn kip932_every_partition_is_assigned_and_changes_reach_members_once() {
        let mut g = ShareGroup::default();
        let cfg = GroupConfig::default();
        let a = g
            .heartbeat(&hb("a", 0, Some(&["six"])), counts, &cfg, 0)
            .expect("join");
        assert_eq!(
            a.assignment,
            Some(BTreeMap::from([("six".into(), (0..6).collect::<Vec<_>>())]))
        );
        let b = g
            .heartbeat(&hb("b", 0, Some(&["six"])), counts, &cfg, 0)
            .expect("join");
        let a2 = g
            .heartbeat(&hb("a", a.member_epoch, None), counts, &cfg, 1)
            .expect("heartbeat");
        let a_parts = a2.assignment.expect("a's partitions changed")["six"].clone();
        let b_parts = b.assignment.expect("b's")["six"].clone();
        let all: BTreeSet<i32> = a_parts.iter().chain(&b_parts).copied().collect();
        assert_eq!(all, (0..6).collect(), "every partition assigned");
        let again = g
            .heartbeat(&hb("a", a2.member_epoch, None), counts, &cfg, 2)
            .expect("heartbeat");
        assert_eq!(again.assignment, None, "told once");
        // b leaves: a gets everything again.
        let left = g
            .heartbeat(&hb("b", -1, None), counts, &cfg, 3)
            .expect("leave");
        assert_eq!(left.member_epoch, -1);
        let a3 = g
            .heartbeat(&hb("a", again.member_epoch, None), counts, &cfg, 4)
            .expect("heartbeat");
        assert_eq!(
            a3.assignment.expect("changed")["six"],
            (0..6).collect::<Vec<_>>()
        );
    }

    #[test]
    fn kip932_heartbeat_errors_are_the_ones_clients_act_on() {
        let cfg = GroupConfig {
            max_size: 2,
            ..GroupConfig::default()
        };
        let mut g = ShareGroup::default();
        let joined = g
            .heartbeat(&hb("a", 0, Some(&["one"])), counts, &cfg, 0)
            .expect("join");
        g.heartbeat(&hb("b", 0, Some(&["one"])), counts, &cfg, 0)
            .expect("join");
        let cases: Vec<(Heartbeat, i16)> = vec![
            (hb("", 0, Some(&["one"])), 42),
            (hb("c", 0, None), 42),
            (hb("c", 0, Some(&[])), 42),
            (hb("c", 0, Some(&["one"])), 81),
            (hb("zz", 5, None), 25),
            (hb("a", 99, None), 110),
            (hb("a", -7, None), 42),
        ];
        for (h, code) in cases {
            let e = g.heartbeat(&h, counts, &cfg, 1).expect_err("refused");
            assert_eq!(e.kafka_code(), code, "{h:?}: {e}");
        }
        // After a bump the epoch before still counts (a heartbeat in flight); others do not.
        g.heartbeat(&hb("b", -1, None), counts, &cfg, 2)
            .expect("leave");
        g.heartbeat(&hb("b", 0, Some(&["one"])), counts, &cfg, 2)
            .expect("join");
        let now = g
            .heartbeat(&hb("a", joined.member_epoch, None), counts, &cfg, 3)
            .expect("a takes the new epoch");
        assert!(now.member_epoch > joined.member_epoch + 1);
        g.heartbeat(&hb("a", joined.member_epoch, None), counts, &cfg, 3)
            .expect("the epoch before");
        let e = g
            .heartbeat(&hb("a", now.member_epoch - 1, None), counts, &cfg, 3)
            .expect_err("fenced");
        assert_eq!(e.kafka_code(), 110);
    }

    #[test]
    fn kip932_a_silent_member_expires_and_its_partitions_move() {
        let cfg = GroupConfig {
            session_timeout_ms: 1_000,
            ..GroupConfig::default()
        };
        let mut g = ShareGroup::default();
        let a = g
            .heartbeat(&hb("a", 0, Some(&["six"])), counts, &cfg, 0)
            .expect("join");
        let b = g
            .heartbeat(&hb("b", 0, Some(&["six"])), counts, &cfg, 0)
            .expect("join");
        // Only b keeps heartbeating.
        let mut epoch = b.member_epoch;
        let mut last = None;
        for t in [500, 1_000, 1_500] {
            let ans = g
                .heartbeat(&hb("b", epoch, None), counts, &cfg, t)
                .expect("b heartbeat");
            epoch = ans.member_epoch;
            if ans.assignment.is_some() {
                last = ans.assignment;
            }
        }
        assert!(!g.members.contains_key("a"), "a expired");
        assert_eq!(last.expect("b told")["six"], (0..6).collect::<Vec<_>>());
        let e = g
            .heartbeat(&hb("a", a.member_epoch, None), counts, &cfg, 1_600)
            .expect_err("gone");
        assert_eq!(e.kafka_code(), 25, "rejoin at epoch 0");
    }

    #[test]
    fn kip932_subscription_and_partition_changes_reassign() {
        let cfg = GroupConfig::default();
        let mut g = ShareGroup::default();
        let a = g
            .heartbeat(&hb("a", 0, Some(&["one"])), counts, &cfg, 0)
            .expect("join");
        let moved = g
            .heartbeat(
                &hb("a", a.member_epoch, Some(&["six", "nothing"])),
                counts,
                &cfg,
                1,
            )
            .expect("resubscribe");
        assert_eq!(
            moved.assignment.expect("new topics"),
            BTreeMap::from([("six".into(), (0..6).collect::<Vec<_>>())]),
            "a topic that does not exist assigns nothing"
        );
        // "nothing" is created with 2 partitions.
        let grown = |t: &str| if t == "nothing" { Some(2) } else { counts(t) };
        let later = g
            .heartbeat(&hb("a", moved.member_epoch, None), grown, &cfg, 2)
            .expect("heartbeat");
        assert_eq!(later.assignment.expect("grown")["nothing"], vec![0, 1]);
        assert!(later.member_epoch > moved.member_epoch);
    }
}
