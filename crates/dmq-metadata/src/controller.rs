//! The controller's decisions, as plain functions over plain data with the clock passed in:
//! replica placement, broker liveness, and leader election from the ISR.
//!
//! The controller loop (see `node.rs`) is level-triggered: on every tick the Raft leader asks
//! these functions what the state *should* be and proposes the difference. If a controller dies
//! between two proposals, the next one finds the same difference and finishes the job.

use std::collections::HashMap;

use dmq_types::{BrokerId, NO_LEADER};

use crate::state::{BrokerStatus, MetadataState, PartitionChange};

/// Topic config that allows electing a leader from outside the ISR (may lose acknowledged data).
pub const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";

/// Kafka's rack-unaware replica assignment (`AdminUtils.assignReplicasToBrokersRackUnaware`).
///
/// Partition `p`'s leader is `brokers[(start + p) % n]`, so leaders spread evenly; followers are
/// placed at a shift that grows each time the partitions wrap around the broker list, so replica
/// pairs vary too. `start` rotates per topic so that the first partitions of many small topics do
/// not all land on the same broker. `brokers` must be sorted and non-empty, and
/// `replication_factor <= brokers.len()`.
pub fn assign_replicas(
    brokers: &[BrokerId],
    partitions: usize,
    replication_factor: usize,
    start: usize,
) -> Vec<Vec<BrokerId>> {
    let n = brokers.len();
    assert!(n > 0 && replication_factor >= 1 && replication_factor <= n);
    let start_index = start % n;
    let mut shift = start % n;
    (0..partitions)
        .map(|p| {
            if p > 0 && p % n == 0 {
                shift += 1;
            }
            let first = (start_index + p) % n;
            let mut replicas = Vec::with_capacity(replication_factor);
            replicas.push(brokers[first]);
            for j in 0..replication_factor - 1 {
                let offset = 1 + (shift + j) % (n - 1);
                replicas.push(brokers[(first + offset) % n]);
            }
            replicas
        })
        .collect()
}

/// The leader's in-memory view of broker heartbeats. Not replicated: a new controller rebuilds it
/// by granting every broker a full session from the moment it takes over (seed 000,
/// "Challenge 2"), so no broker is fenced for heartbeats the old controller received.
#[derive(Debug, Default)]
pub struct Liveness {
    last_seen_ms: HashMap<BrokerId, u64>,
}

impl Liveness {
    /// Starts a fresh session for every broker known to the state (on becoming controller).
    pub fn rebuild(&mut self, state: &MetadataState, now_ms: u64) {
        self.last_seen_ms = state.brokers.keys().map(|id| (*id, now_ms)).collect();
    }

    /// Records a heartbeat (or registration) from `broker`.
    pub fn heartbeat(&mut self, broker: BrokerId, now_ms: u64) {
        self.last_seen_ms.insert(broker, now_ms);
    }

    /// When `broker` was last heard from, if ever by this controller.
    pub fn last_seen_ms(&self, broker: BrokerId) -> Option<u64> {
        self.last_seen_ms.get(&broker).copied()
    }

    /// ONLINE brokers silent for longer than `after_ms`, with their `host:port`: candidates
    /// for a liveness probe. Brokers this controller has never heard from are not included.
    pub fn overdue(
        &self,
        state: &MetadataState,
        now_ms: u64,
        after_ms: u64,
    ) -> Vec<(BrokerId, String)> {
        state
            .brokers
            .values()
            .filter(|b| b.status == BrokerStatus::Online)
            .filter(|b| {
                self.last_seen_ms
                    .get(&b.broker_id)
                    .is_some_and(|seen| now_ms.saturating_sub(*seen) > after_ms)
            })
            .map(|b| (b.broker_id, format!("{}:{}", b.host, b.port)))
            .collect()
    }

    /// ONLINE brokers silent for longer than `session_timeout_ms`. A broker this controller has
    /// never heard of (registered through a previous controller) gets a session starting now.
    pub fn expired(
        &mut self,
        state: &MetadataState,
        now_ms: u64,
        session_timeout_ms: u64,
    ) -> Vec<BrokerId> {
        state
            .brokers
            .values()
            .filter(|b| b.status == BrokerStatus::Online)
            .filter(|b| {
                let seen = *self.last_seen_ms.entry(b.broker_id).or_insert(now_ms);
                now_ms.saturating_sub(seen) > session_timeout_ms
            })
            .map(|b| b.broker_id)
            .collect()
    }
}

/// Whether `topic` allows unclean leader election: its own config, else the cluster-wide
/// dynamic broker default (the controller's view, as in Kafka's KRaft), else no.
pub fn unclean_allowed(state: &MetadataState, topic: &dmq_types::model::Topic) -> bool {
    topic
        .config
        .get(UNCLEAN_LEADER_ELECTION)
        .or_else(|| state.broker_configs.cluster.get(UNCLEAN_LEADER_ELECTION))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Leadership and ISR changes that follow from broker liveness (seed flow 3).
///
/// For every partition: OFFLINE brokers leave the ISR (except the last member, which stays so that
/// only it can lead again without losing acknowledged writes); a leader that is OFFLINE or no
/// longer in the ISR is replaced by the first ONLINE ISR member in replica order; a leaderless
/// partition gets a leader as soon as an ISR member is ONLINE again. With
/// `unclean.leader.election.enable=true` an ONLINE replica outside the ISR may lead when no ISR
/// member can. Every leader change bumps the leader epoch.
pub fn partition_changes(state: &MetadataState) -> Vec<PartitionChange> {
    let mut changes = Vec::new();
    for topic in state.topics.values() {
        let unclean = unclean_allowed(state, topic);
        for p in &topic.partitions {
            let online_isr: Vec<BrokerId> = p
                .isr
                .iter()
                .copied()
                .filter(|b| state.is_online(*b))
                .collect();
            let mut isr = if online_isr.is_empty() {
                p.isr.clone()
            } else {
                online_isr
            };
            let leader_ok =
                p.leader != NO_LEADER && state.is_online(p.leader) && isr.contains(&p.leader);
            let mut leader = if leader_ok {
                p.leader
            } else {
                p.replicas
                    .iter()
                    .copied()
                    .find(|b| isr.contains(b) && state.is_online(*b))
                    .unwrap_or(NO_LEADER)
            };
            if leader == NO_LEADER && unclean {
                if let Some(b) = p.replicas.iter().copied().find(|b| state.is_online(*b)) {
                    leader = b;
                    isr = vec![b];
                }
            }
            if leader == p.leader && isr == p.isr {
                continue;
            }
            let leader_epoch = if leader == p.leader {
                p.leader_epoch
            } else {
                p.leader_epoch + 1
            };
            changes.push(PartitionChange {
                topic: topic.topic_name.clone(),
                partition: p.partition_id,
                expected_leader_epoch: p.leader_epoch,
                expected_partition_epoch: p.partition_epoch,
                leader,
                isr,
                leader_epoch,
            });
        }
    }
    changes
}

/// Kafka's election types (ElectLeaders, KIP-460).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    /// Move leadership back to the first replica, if it is an ONLINE ISR member.
    Preferred,
    /// Give a leaderless partition a leader: an ONLINE ISR member, else any ONLINE replica
    /// (which may lose acknowledged writes; the ISR becomes that replica alone).
    Unclean,
}

/// Why an election did not change a partition (Kafka's error names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionRefusal {
    ElectionNotNeeded,
    PreferredLeaderNotAvailable,
    EligibleLeadersNotAvailable,
    UnknownTopicOrPartition,
}

impl ElectionRefusal {
    pub fn code(self) -> &'static str {
        match self {
            ElectionRefusal::ElectionNotNeeded => "ELECTION_NOT_NEEDED",
            ElectionRefusal::PreferredLeaderNotAvailable => "PREFERRED_LEADER_NOT_AVAILABLE",
            ElectionRefusal::EligibleLeadersNotAvailable => "ELIGIBLE_LEADERS_NOT_AVAILABLE",
            ElectionRefusal::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
        }
    }
}

/// The leader change an election asks for on `topic`-`partition`, or why there is none. Pure,
/// like [`partition_changes`]; the change is fenced by the epochs it was computed against.
pub fn election_change(
    state: &MetadataState,
    kind: ElectionType,
    topic: &str,
    partition: i32,
) -> Result<PartitionChange, ElectionRefusal> {
    let p = state
        .topics
        .get(topic)
        .and_then(|t| {
            usize::try_from(partition)
                .ok()
                .and_then(|i| t.partitions.get(i))
        })
        .ok_or(ElectionRefusal::UnknownTopicOrPartition)?;
    let change = |leader, isr| PartitionChange::new_leader(topic, p, leader, isr);
    match kind {
        ElectionType::Preferred => {
            let preferred = *p
                .replicas
                .first()
                .ok_or(ElectionRefusal::PreferredLeaderNotAvailable)?;
            if p.leader == preferred {
                return Err(ElectionRefusal::ElectionNotNeeded);
            }
            if !p.isr.contains(&preferred) || !state.is_online(preferred) {
                return Err(ElectionRefusal::PreferredLeaderNotAvailable);
            }
            Ok(change(preferred, p.isr.clone()))
        }
        ElectionType::Unclean => {
            if p.leader != NO_LEADER && state.is_online(p.leader) {
                return Err(ElectionRefusal::ElectionNotNeeded);
            }
            if let Some(b) = p
                .replicas
                .iter()
                .copied()
                .find(|b| p.isr.contains(b) && state.is_online(*b))
            {
                return Ok(change(b, p.isr.clone()));
            }
            p.replicas
                .iter()
                .copied()
                .find(|b| state.is_online(*b))
                .map(|b| change(b, vec![b]))
                .ok_or(ElectionRefusal::EligibleLeadersNotAvailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::state::{Command, CommandResult};

    #[test]
    fn six_partitions_rf2_on_three_brokers_gives_two_leaderships_each() {
        for start in 0..6 {
            let assignment = assign_replicas(&[101, 102, 103], 6, 2, start);
            let mut leaders: HashMap<BrokerId, usize> = HashMap::new();
            let mut replicas: HashMap<BrokerId, usize> = HashMap::new();
            for r in &assignment {
                *leaders.entry(r[0]).or_default() += 1;
                for b in r {
                    *replicas.entry(*b).or_default() += 1;
                }
                assert_eq!(r.len(), 2);
                assert_ne!(r[0], r[1], "a broker holds one replica per partition");
            }
            assert!(
                leaders.values().all(|c| *c == 2),
                "start {start}: {leaders:?}"
            );
            assert!(
                replicas.values().all(|c| *c == 4),
                "start {start}: {replicas:?}"
            );
        }
    }

    #[test]
    fn placement_table() {
        // (brokers, partitions, rf, start) → expected assignment; Kafka's layout with a fixed start.
        type Case<'a> = (&'a [BrokerId], usize, usize, usize, Vec<Vec<BrokerId>>);
        let cases: &[Case] = &[
            (&[1], 3, 1, 0, vec![vec![1], vec![1], vec![1]]),
            (
                &[1, 2, 3],
                3,
                3,
                0,
                vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]],
            ),
            (
                &[1, 2, 3],
                4,
                2,
                1,
                vec![vec![2, 1], vec![3, 2], vec![1, 3], vec![2, 3]],
            ),
        ];
        for (brokers, partitions, rf, start, expected) in cases {
            assert_eq!(
                &assign_replicas(brokers, *partitions, *rf, *start),
                expected
            );
        }
    }

    /// Sets t-`partition`'s leader and ISR directly (a past election).
    fn set(state: &mut MetadataState, partition: i32, leader: BrokerId, isr: Vec<BrokerId>) {
        let p = &state.topics["t"].partitions[partition as usize];
        let change = PartitionChange::new_leader("t", p, leader, isr);
        let r = state.apply(
            100,
            &Command::UpdatePartitions {
                changes: vec![change],
            },
        );
        assert!(!matches!(r, CommandResult::Rejected { .. }), "{r:?}");
    }

    #[test]
    fn elections_preferred_and_unclean() {
        use ElectionRefusal::*;
        let mut state = cluster(&[], false);
        let elect = |s: &MetadataState, kind, p| {
            election_change(s, kind, "t", p).map(|c| (c.leader, c.isr, c.leader_epoch))
        };
        // t-0: replicas [1, 2], led by its preferred replica.
        assert_eq!(
            elect(&state, ElectionType::Preferred, 0),
            Err(ElectionNotNeeded)
        );
        set(&mut state, 0, 2, vec![1, 2]);
        assert_eq!(
            elect(&state, ElectionType::Preferred, 0),
            Ok((1, vec![1, 2], 2)),
            "back to the first replica, at a new leader epoch"
        );
        set(&mut state, 0, 2, vec![2]);
        assert_eq!(
            elect(&state, ElectionType::Preferred, 0),
            Err(PreferredLeaderNotAvailable),
            "not in the ISR"
        );
        assert_eq!(
            elect(&state, ElectionType::Unclean, 0),
            Err(ElectionNotNeeded)
        );
        // Leaderless with its only ISR member OFFLINE: unclean takes an ONLINE replica.
        set(&mut state, 0, NO_LEADER, vec![2]);
        state.apply(
            101,
            &Command::UpdateBrokerStatus {
                broker_id: 2,
                status: BrokerStatus::Offline,
                timestamp_ms: 0,
            },
        );
        assert_eq!(
            elect(&state, ElectionType::Unclean, 0),
            Ok((1, vec![1], state.topics["t"].partitions[0].leader_epoch + 1))
        );
        state.apply(
            102,
            &Command::UpdateBrokerStatus {
                broker_id: 1,
                status: BrokerStatus::Offline,
                timestamp_ms: 0,
            },
        );
        assert_eq!(
            elect(&state, ElectionType::Unclean, 0),
            Err(EligibleLeadersNotAvailable)
        );
        assert_eq!(
            election_change(&state, ElectionType::Preferred, "t", 7).map(|_| ()),
            Err(UnknownTopicOrPartition)
        );
        assert_eq!(
            election_change(&state, ElectionType::Preferred, "nope", 0).map(|_| ()),
            Err(UnknownTopicOrPartition)
        );
    }

    fn cluster(offline: &[BrokerId], unclean: bool) -> MetadataState {
        let mut state = MetadataState::default();
        let mut index = 0;
        let mut next = || {
            index += 1;
            index
        };
        for id in [1, 2, 3] {
            state.apply(
                next(),
                &Command::RegisterBroker {
                    broker_id: id,
                    host: "h".into(),
                    port: 1,
                    kafka_port: 2,
                    timestamp_ms: 0,
                    incarnation_id: None,
                },
            );
        }
        let mut config = BTreeMap::new();
        if unclean {
            config.insert(UNCLEAN_LEADER_ELECTION.to_string(), "true".to_string());
        }
        state.apply(
            next(),
            &Command::CreateTopic {
                name: "t".into(),
                topic_id: "x".into(),
                config,
                assignment: vec![vec![1, 2], vec![2, 3], vec![3, 1]],
                timestamp_ms: 0,
            },
        );
        for id in offline {
            state.apply(
                next(),
                &Command::UpdateBrokerStatus {
                    broker_id: *id,
                    status: BrokerStatus::Offline,
                    timestamp_ms: 0,
                },
            );
        }
        state
    }

    #[test]
    fn nothing_changes_while_every_broker_is_online() {
        assert!(partition_changes(&cluster(&[], false)).is_empty());
    }

    #[test]
    fn offline_leader_is_replaced_from_isr_with_bumped_epoch() {
        let changes = partition_changes(&cluster(&[1], false));
        // p0 [1,2] led by 1 → 2 leads, epoch 1; p2 [3,1] led by 3 → 1 leaves the ISR, epoch kept.
        assert_eq!(changes.len(), 2, "{changes:?}");
        let p0 = changes
            .iter()
            .find(|c| c.partition == 0)
            .expect("p0 changes");
        assert_eq!(
            (p0.leader, p0.isr.clone(), p0.leader_epoch),
            (2, vec![2], 1)
        );
        let p2 = changes
            .iter()
            .find(|c| c.partition == 2)
            .expect("p2 changes");
        assert_eq!(
            (p2.leader, p2.isr.clone(), p2.leader_epoch),
            (3, vec![3], 0)
        );
    }

    #[test]
    fn last_isr_member_stays_and_partition_becomes_leaderless() {
        let mut state = cluster(&[1], false);
        let changes = partition_changes(&state);
        state.apply(100, &Command::UpdatePartitions { changes });
        // Now broker 2 dies too: p0's ISR is [2] only.
        state.apply(
            101,
            &Command::UpdateBrokerStatus {
                broker_id: 2,
                status: BrokerStatus::Offline,
                timestamp_ms: 0,
            },
        );
        let changes = partition_changes(&state);
        let p0 = changes
            .iter()
            .find(|c| c.partition == 0)
            .expect("p0 changes");
        assert_eq!(
            (p0.leader, p0.isr.clone(), p0.leader_epoch),
            (NO_LEADER, vec![2], 2)
        );
        state.apply(102, &Command::UpdatePartitions { changes });
        // Broker 1 comes back, but it is not in p0's ISR: no clean election possible.
        state.apply(
            103,
            &Command::UpdateBrokerStatus {
                broker_id: 1,
                status: BrokerStatus::Online,
                timestamp_ms: 0,
            },
        );
        assert!(partition_changes(&state).iter().all(|c| c.partition != 0));
        // Broker 2 comes back: it is the ISR, it leads again.
        state.apply(
            104,
            &Command::UpdateBrokerStatus {
                broker_id: 2,
                status: BrokerStatus::Online,
                timestamp_ms: 0,
            },
        );
        let changes = partition_changes(&state);
        let p0 = changes
            .iter()
            .find(|c| c.partition == 0)
            .expect("p0 changes");
        assert_eq!((p0.leader, p0.leader_epoch), (2, 3));
    }

    #[test]
    fn unclean_election_only_when_the_topic_or_the_cluster_default_allows_it() {
        // (topic config, cluster-wide broker default, unclean election expected)
        for (topic, cluster_default, unclean) in [
            (false, None, false),
            (true, None, true),
            (false, Some("TRUE"), true),
            (false, Some("false"), false),
        ] {
            let mut state = cluster(&[], topic);
            if let Some(v) = cluster_default {
                state.apply(
                    49,
                    &Command::AlterBrokerConfig {
                        broker: None,
                        set: [(UNCLEAN_LEADER_ELECTION.to_string(), v.to_string())].into(),
                        delete: vec![],
                    },
                );
            }
            // p0's ISR shrinks to [1] (say 2 lagged), then 1 dies.
            state.apply(
                50,
                &Command::UpdatePartitions {
                    changes: vec![PartitionChange {
                        topic: "t".into(),
                        partition: 0,
                        expected_leader_epoch: 0,
                        expected_partition_epoch: 0,
                        leader: 1,
                        isr: vec![1],
                        leader_epoch: 0,
                    }],
                },
            );
            state.apply(
                51,
                &Command::UpdateBrokerStatus {
                    broker_id: 1,
                    status: BrokerStatus::Offline,
                    timestamp_ms: 0,
                },
            );
            let changes = partition_changes(&state);
            let p0 = changes
                .iter()
                .find(|c| c.partition == 0)
                .expect("p0 changes");
            if unclean {
                assert_eq!((p0.leader, p0.isr.clone()), (2, vec![2]));
            } else {
                assert_eq!((p0.leader, p0.isr.clone()), (NO_LEADER, vec![1]));
            }
        }
    }

    #[test]
    fn liveness_expires_silent_brokers_and_grants_new_controllers_a_session() {
        let state = cluster(&[], false);
        let mut live = Liveness::default();
        live.rebuild(&state, 10_000);
        live.heartbeat(1, 15_000);
        assert!(live.expired(&state, 16_000, 6_000).is_empty());
        assert_eq!(live.expired(&state, 16_001, 6_000), vec![2, 3]);
        // A controller that never saw broker 1 starts its session at first sight.
        let mut fresh = Liveness::default();
        assert!(fresh.expired(&state, 50_000, 6_000).is_empty());
        assert_eq!(fresh.last_seen_ms(1), Some(50_000));
    }
}
