//! The invariants, checked after every step, and the liveness condition checked after healing.
//!
//! 1. **no-acked-loss**: every record a client saw acknowledged with acks=all is, at its
//!    offset, on the current leader (checked when the ack arrives and whenever a new leader
//!    takes over), and at the end on every replica; no offset is acknowledged for two values.
//! 2. **one-leader-per-epoch**: no two brokers ever lead a partition in the same leader epoch.
//! 3. **isr-identical-below-hw**: every ISR member (committed, registered in its current
//!    incarnation, running) holds exactly the current leader's records below the leader's HW.
//! 4. **hw-monotonic**: a leader's HW never moves back within one leader epoch (of one process).
//! 5. **liveness**: after healing, within a budget, every broker is ONLINE, every partition has
//!    a leader, every replica is in the ISR with the leader's log and HW.
//!
//! The "current leader" of a partition is the broker the controller names, once that broker's
//! replica has taken leadership of the controller's leader epoch.

use std::collections::BTreeMap;
use std::fmt;

use dmq_metadata::state::{BrokerStatus, MetadataState};
use dmq_replica::{ReplicaState, Role};
use dmq_types::model::Partition;
use dmq_types::BrokerId;

use crate::broker::Broker;
use crate::disk::SimLog;
use crate::io::Obs;
use crate::msg::TOPIC;

/// Which invariant failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invariant {
    NoAckedLoss,
    OneLeaderPerEpoch,
    IsrIdenticalBelowHw,
    HwMonotonic,
    Liveness,
}

impl Invariant {
    pub const ALL: [Invariant; 5] = [
        Invariant::NoAckedLoss,
        Invariant::OneLeaderPerEpoch,
        Invariant::IsrIdenticalBelowHw,
        Invariant::HwMonotonic,
        Invariant::Liveness,
    ];

    pub fn from_name(name: &str) -> Option<Invariant> {
        Invariant::ALL.into_iter().find(|i| i.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Invariant::NoAckedLoss => "no-acked-loss",
            Invariant::OneLeaderPerEpoch => "one-leader-per-epoch",
            Invariant::IsrIdenticalBelowHw => "isr-identical-below-hw",
            Invariant::HwMonotonic => "hw-monotonic",
            Invariant::Liveness => "liveness",
        }
    }
}

/// A failed invariant and what broke it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: Invariant,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant.name(), self.detail)
    }
}

fn violation(invariant: Invariant, detail: String) -> Result<(), Violation> {
    Err(Violation { invariant, detail })
}

/// The running brokers, by id (ids are 1..=N).
pub struct Brokers<'a> {
    pub up: Vec<Option<&'a Broker>>,
}

impl<'a> Brokers<'a> {
    pub fn get(&self, id: BrokerId) -> Option<&'a Broker> {
        usize::try_from(id - 1)
            .ok()
            .and_then(|i| self.up.get(i).copied().flatten())
    }

    fn replica(&self, id: BrokerId, p: i32) -> Option<(&'a Broker, &'a ReplicaState, &'a SimLog)> {
        let b = self.get(id)?;
        Some((b, b.replicas.get(&p)?, b.disk.logs.get(&p)?))
    }
}

/// Whether `b` runs the incarnation the controller knows as ONLINE.
fn registered_current(state: &MetadataState, b: &Broker) -> bool {
    state
        .brokers
        .get(&b.id)
        .is_some_and(|x| Some(x.broker_epoch) == b.registered_epoch)
}

/// What the checker remembers between steps.
#[derive(Debug, Default)]
pub struct Checker {
    /// Invariants not checked (for exploring what a violation leads to).
    disabled: Vec<Invariant>,
    /// Acknowledged acks=all records: per partition, offset → value.
    acked: BTreeMap<i32, BTreeMap<i64, u64>>,
    leader_of_epoch: BTreeMap<(i32, i32), BrokerId>,
    /// Per (leader, partition): (incarnation, leader epoch, HW) last seen.
    hw_seen: BTreeMap<(BrokerId, i32), (u64, i32, i64)>,
    /// Per partition: the current leader whose log was last checked against every ack.
    checked_leader: BTreeMap<i32, (BrokerId, u64, i32)>,
}

impl Checker {
    pub fn new(disabled: Vec<Invariant>) -> Checker {
        Checker {
            disabled,
            ..Checker::default()
        }
    }

    fn on(&self, i: Invariant) -> bool {
        !self.disabled.contains(&i)
    }

    pub fn acked_records(&self) -> usize {
        self.acked.values().map(BTreeMap::len).sum()
    }

    /// Every invariant after one step, given what the step observed.
    pub fn after_step(
        &mut self,
        state: &MetadataState,
        brokers: &Brokers<'_>,
        obs: &[Obs],
    ) -> Result<(), Violation> {
        for o in obs {
            self.observed(*o, state, brokers)?;
        }
        let Some(topic) = state.topics.get(TOPIC) else {
            return Ok(());
        };
        for meta in &topic.partitions {
            self.check_partition(meta, state, brokers)?;
        }
        self.check_leaders(brokers)
    }

    fn observed(
        &mut self,
        o: Obs,
        state: &MetadataState,
        brokers: &Brokers<'_>,
    ) -> Result<(), Violation> {
        match o {
            Obs::BecameLeader {
                broker,
                partition,
                epoch,
            } => {
                let first = *self
                    .leader_of_epoch
                    .entry((partition, epoch))
                    .or_insert(broker);
                if first != broker && self.on(Invariant::OneLeaderPerEpoch) {
                    return violation(
                        Invariant::OneLeaderPerEpoch,
                        format!(
                            "partition {partition}: broker {broker} took leader epoch {epoch}, \
                             which broker {first} led"
                        ),
                    );
                }
            }
            Obs::Acked {
                partition,
                offset,
                value,
            } => {
                let acked = self.acked.entry(partition).or_default();
                let on = !self.disabled.contains(&Invariant::NoAckedLoss);
                if let Some(before) = acked.insert(offset, value) {
                    if before != value && on {
                        return violation(
                            Invariant::NoAckedLoss,
                            format!(
                                "partition {partition} offset {offset} acknowledged for value \
                                 {before:#x}, then for {value:#x}: the first was lost"
                            ),
                        );
                    }
                }
                if let Some((leader, _, log)) = current_leader(partition, state, brokers) {
                    if on {
                        check_record(partition, offset, value, leader.id, log)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn check_partition(
        &mut self,
        meta: &Partition,
        state: &MetadataState,
        brokers: &Brokers<'_>,
    ) -> Result<(), Violation> {
        let p = meta.partition_id;
        let Some((leader, core, log)) = current_leader(p, state, brokers) else {
            return Ok(());
        };
        // A new current leader must hold every acknowledged record.
        let who = (leader.id, leader.inc, core.leader_epoch());
        if self.checked_leader.get(&p) != Some(&who) {
            self.checked_leader.insert(p, who);
            if let Some(acked) = self
                .acked
                .get(&p)
                .filter(|_| self.on(Invariant::NoAckedLoss))
            {
                for (offset, value) in acked {
                    check_record(p, *offset, *value, leader.id, log)?;
                }
            }
        }
        if !self.on(Invariant::IsrIdenticalBelowHw) {
            return Ok(());
        }
        let hw = core.high_watermark();
        for m in meta.isr.iter().filter(|m| **m != leader.id) {
            let Some(b) = brokers.get(*m) else { continue };
            if !registered_current(state, b) {
                continue;
            }
            let empty = SimLog::default();
            let mlog = b.disk.logs.get(&p).unwrap_or(&empty);
            if mlog.end() < hw {
                return violation(
                    Invariant::IsrIdenticalBelowHw,
                    format!(
                        "partition {p}: ISR member {m} ends at {} below leader {}'s HW {hw} \
                         (epoch {})",
                        mlog.end(),
                        leader.id,
                        core.leader_epoch()
                    ),
                );
            }
            if let Some(at) = log.first_difference(mlog, hw) {
                return violation(
                    Invariant::IsrIdenticalBelowHw,
                    format!(
                        "partition {p}: ISR member {m} differs from leader {} at offset {at} \
                         below the HW {hw}: {:?} vs the leader's {:?}",
                        leader.id,
                        mlog.get(at),
                        log.get(at)
                    ),
                );
            }
        }
        Ok(())
    }

    /// At most one leader per (partition, epoch) among running processes, and each leader's
    /// HW only moves forward within its epoch.
    fn check_leaders(&mut self, brokers: &Brokers<'_>) -> Result<(), Violation> {
        let mut leading: BTreeMap<(i32, i32), BrokerId> = BTreeMap::new();
        for b in brokers.up.iter().flatten() {
            for (p, core) in &b.replicas {
                if core.role() != Role::Leader {
                    continue;
                }
                let epoch = core.leader_epoch();
                let two = leading.insert((*p, epoch), b.id);
                if let Some(other) = two.filter(|_| self.on(Invariant::OneLeaderPerEpoch)) {
                    return violation(
                        Invariant::OneLeaderPerEpoch,
                        format!(
                            "partition {p}: brokers {other} and {} both lead epoch {epoch}",
                            b.id
                        ),
                    );
                }
                let hw = core.high_watermark();
                let seen = self.hw_seen.insert((b.id, *p), (b.inc, epoch, hw));
                if let Some((inc, e, before)) = seen {
                    let back = inc == b.inc && e == epoch && hw < before;
                    if back && self.on(Invariant::HwMonotonic) {
                        return violation(
                            Invariant::HwMonotonic,
                            format!(
                                "partition {p}: leader {}'s HW went from {before} back to {hw} \
                                 in epoch {epoch}",
                                b.id
                            ),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// `Ok` when the healed cluster has converged: every broker ONLINE in its current
    /// incarnation, every partition led with a full ISR, every replica following the current
    /// epoch with the leader's log and HW. `Err` says what is still missing.
    pub fn converged(&self, state: &MetadataState, brokers: &Brokers<'_>) -> Result<(), String> {
        for (id, info) in &state.brokers {
            let Some(b) = brokers.get(*id) else {
                return Err(format!("broker {id} is not running"));
            };
            if info.status != BrokerStatus::Online || !registered_current(state, b) {
                return Err(format!(
                    "broker {id} is not ONLINE in its current incarnation"
                ));
            }
        }
        let Some(topic) = state.topics.get(TOPIC) else {
            return Err("the topic does not exist yet".into());
        };
        for meta in &topic.partitions {
            let p = meta.partition_id;
            let Some((leader, lcore, llog)) = current_leader(p, state, brokers) else {
                return Err(format!(
                    "partition {p} has no leader in epoch {}",
                    meta.leader_epoch
                ));
            };
            let mut isr = meta.isr.clone();
            isr.sort_unstable();
            let mut replicas = meta.replicas.clone();
            replicas.sort_unstable();
            if isr != replicas {
                return Err(format!(
                    "partition {p}: ISR {:?} is not all of {replicas:?}",
                    meta.isr
                ));
            }
            let end = llog.end();
            if lcore.high_watermark() != end {
                return Err(format!(
                    "partition {p}: leader {}'s HW {} is below its log end {end}",
                    leader.id,
                    lcore.high_watermark()
                ));
            }
            for r in &meta.replicas {
                let Some((_, core, log)) = brokers.replica(*r, p) else {
                    return Err(format!("partition {p}: replica {r} is not open"));
                };
                if core.leader_epoch() != meta.leader_epoch
                    || log.end() != end
                    || core.high_watermark() != end
                    || log.first_difference(llog, end).is_some()
                {
                    return Err(format!(
                        "partition {p}: replica {r} (epoch {}, log end {}, HW {}) has not \
                         caught up with leader {} (epoch {}, log end {end})",
                        core.leader_epoch(),
                        log.end(),
                        core.high_watermark(),
                        leader.id,
                        meta.leader_epoch
                    ));
                }
            }
        }
        Ok(())
    }

    /// After convergence: every acknowledged record is on every replica.
    pub fn final_check(
        &self,
        state: &MetadataState,
        brokers: &Brokers<'_>,
    ) -> Result<(), Violation> {
        let Some(topic) = state.topics.get(TOPIC) else {
            return Ok(());
        };
        for meta in &topic.partitions {
            let p = meta.partition_id;
            let Some(acked) = self
                .acked
                .get(&p)
                .filter(|_| self.on(Invariant::NoAckedLoss))
            else {
                continue;
            };
            for r in &meta.replicas {
                let Some((_, _, log)) = brokers.replica(*r, p) else {
                    continue;
                };
                for (offset, value) in acked {
                    check_record(p, *offset, *value, *r, log)?;
                }
            }
        }
        Ok(())
    }
}

/// The broker the controller names as `p`'s leader, once it took that leader epoch.
fn current_leader<'a>(
    p: i32,
    state: &MetadataState,
    brokers: &Brokers<'a>,
) -> Option<(&'a Broker, &'a ReplicaState, &'a SimLog)> {
    let meta = state.partition(TOPIC, p)?;
    let (b, core, log) = brokers.replica(meta.leader, p)?;
    (core.role() == Role::Leader && core.leader_epoch() == meta.leader_epoch)
        .then_some((b, core, log))
}

fn check_record(
    p: i32,
    offset: i64,
    value: u64,
    on: BrokerId,
    log: &SimLog,
) -> Result<(), Violation> {
    match log.get(offset) {
        Some(r) if r.value == value => Ok(()),
        other => violation(
            Invariant::NoAckedLoss,
            format!(
                "partition {p}: acknowledged record {value:#x} at offset {offset} is not on \
                 broker {on} (it has {:?}, log end {})",
                other,
                log.end()
            ),
        ),
    }
}
