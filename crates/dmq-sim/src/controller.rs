//! The controller: the real `MetadataState` and controller decisions (`partition_changes`,
//! `Liveness`, `check_alter_partition`, `assign_replicas`) driven the way
//! `dmq-metadata`'s `node.rs` and `api.rs` drive them, as one reliable actor (the Raft quorum
//! under it is out of scope: every proposal commits at the next index). Its messages to and
//! from brokers cross the simulated network like any other.
//!
//! ```text
//!   Register(incarnation) ─▶ RegisterBroker (new incarnation: new broker epoch, leaves ISRs)
//!   Heartbeat             ─▶ liveness; OFFLINE → UpdateBrokerStatus(ONLINE)
//!   AlterPartition        ─▶ check_alter_partition, then AlterPartition (refusals never proposed)
//!   tick (session / 20)   ─▶ expired → OFFLINE; overdue → probe (refused → OFFLINE);
//!                            partition_changes → UpdatePartitions
//!   every commit          ─▶ metadata pushed to ONLINE brokers
//! ```

use std::collections::BTreeMap;
use std::rc::Rc;

use dmq_metadata::controller::{assign_replicas, partition_changes, Liveness};
use dmq_metadata::state::{BrokerStatus, Command, CommandResult, MetadataState, ReplicaEpoch};
use dmq_types::BrokerId;

use crate::config::SimConfig;
use crate::io::Io;
use crate::msg::{Image, Msg, Timer, TOPIC};
use crate::net::Node;

/// The metadata quorum as one actor.
#[derive(Debug)]
pub struct Controller {
    pub state: MetadataState,
    /// The Raft index of the last committed entry.
    index: u64,
    liveness: Liveness,
    /// `controller_tick`'s skip: the liveness the partitions were last judged against.
    last_scan: Option<Vec<(BrokerId, BrokerStatus)>>,
    cfg: Rc<SimConfig>,
    image: Rc<Image>,
}

impl Controller {
    pub fn new(cfg: Rc<SimConfig>, io: &mut Io<'_>) -> Controller {
        io.timer_ms(cfg.controller_tick_ms(), Timer::ControllerTick);
        Controller {
            state: MetadataState::default(),
            index: 0,
            liveness: Liveness::default(),
            last_scan: None,
            cfg,
            image: Rc::new(Image::empty()),
        }
    }

    /// When the controller last heard from `broker` (heartbeat or registration).
    pub fn last_heartbeat_ms(&self, broker: BrokerId) -> Option<u64> {
        self.liveness.last_seen_ms(broker)
    }

    pub fn image(&self) -> Rc<Image> {
        self.image.clone()
    }

    /// Commits `command` at the next index and pushes the new metadata to ONLINE brokers.
    fn propose(&mut self, command: Command, io: &mut Io<'_>) -> CommandResult {
        self.index += 1;
        let result = self.state.apply(self.index, &command);
        let (tag, args) = describe(&command, &result);
        io.note(tag, args);
        self.image = Rc::new(Image::from_state(&self.state));
        for b in self.state.online_brokers() {
            io.send(Node::Broker(b), Msg::Metadata(self.image.clone()));
        }
        result
    }

    pub fn on_message(&mut self, from: Node, from_inc: u64, msg: Msg, io: &mut Io<'_>) {
        let now = io.now_ms() as u64;
        match (from, msg) {
            (Node::Broker(b), Msg::Register { incarnation }) => {
                // `check_registration` cannot refuse here: every broker keeps its address.
                let command = Command::RegisterBroker {
                    broker_id: b,
                    host: format!("broker-{b}"),
                    port: 9000 + b as u16,
                    kafka_port: 19000 + b as u16,
                    timestamp_ms: now,
                    incarnation_id: Some(format!("b{b}-i{incarnation}")),
                };
                if let CommandResult::Broker(broker) = self.propose(command, io) {
                    self.liveness.heartbeat(b, now);
                    let msg = Msg::RegisterOk {
                        broker_epoch: broker.broker_epoch,
                    };
                    io.reply(from, from_inc, msg);
                }
                self.maybe_create_topic(io);
            }
            (Node::Broker(b), Msg::Heartbeat { seq, .. }) => {
                let Some(status) = self.state.brokers.get(&b).map(|x| x.status) else {
                    io.reply(from, from_inc, Msg::HeartbeatUnknown { seq });
                    return;
                };
                self.liveness.heartbeat(b, now);
                if status == BrokerStatus::Offline {
                    let command = Command::UpdateBrokerStatus {
                        broker_id: b,
                        status: BrokerStatus::Online,
                        timestamp_ms: now,
                    };
                    self.propose(command, io);
                }
                let version = self.state.version;
                io.reply(from, from_inc, Msg::HeartbeatOk { seq, version });
            }
            (
                Node::Broker(b),
                Msg::AlterPartition {
                    seq,
                    partition,
                    change,
                },
            ) => {
                let added_epochs: Vec<ReplicaEpoch> = change
                    .added_epochs
                    .iter()
                    .map(|(broker_id, broker_epoch)| ReplicaEpoch {
                        broker_id: *broker_id,
                        broker_epoch: *broker_epoch,
                    })
                    .collect();
                let checked = self.state.check_alter_partition(
                    b,
                    TOPIC,
                    partition,
                    change.leader_epoch,
                    change.partition_epoch,
                    &change.isr,
                    Some(&added_epochs),
                );
                let result = match checked {
                    Ok(()) => {
                        let command = Command::AlterPartition {
                            broker_id: b,
                            topic: TOPIC.to_string(),
                            partition,
                            leader_epoch: change.leader_epoch,
                            partition_epoch: change.partition_epoch,
                            isr: change.isr.clone(),
                            added_epochs: Some(added_epochs),
                        };
                        self.propose(command, io)
                    }
                    Err(rejected) => rejected,
                };
                let answer = match result {
                    CommandResult::Partition { partition: p, .. } => {
                        Msg::AlterPartitionOk { seq, partition: p }
                    }
                    CommandResult::Rejected { code, .. } => Msg::AlterPartitionRefused {
                        seq,
                        partition,
                        code,
                    },
                    _ => return,
                };
                io.reply(from, from_inc, answer);
            }
            (_, Msg::MetadataRequest) => io.reply(from, from_inc, Msg::Metadata(self.image())),
            (Node::Broker(b), Msg::ProbeRefused) => {
                // `controller_tick`: a late heartbeat and a refused connection fence at once.
                if self.state.is_online(b) {
                    io.note("probe-refused-fencing broker", [i64::from(b), 0, 0, 0]);
                    self.fence(b, now, io);
                    self.scan(io);
                }
            }
            (_, msg) => {
                let (tag, args) = msg.describe();
                io.note(tag, args);
            }
        }
    }

    pub fn on_timer(&mut self, timer: Timer, io: &mut Io<'_>) {
        if timer != Timer::ControllerTick {
            return;
        }
        io.timer_ms(self.cfg.controller_tick_ms(), Timer::ControllerTick);
        let now = io.now_ms() as u64;
        let session = self.cfg.session_timeout_ms as u64;
        let expired = self.liveness.expired(&self.state, now, session);
        let overdue = self
            .liveness
            .overdue(&self.state, now, self.cfg.overdue_after_ms() as u64);
        for b in &expired {
            io.note("session-expired broker", [i64::from(*b), 0, 0, 0]);
            self.fence(*b, now, io);
        }
        for (b, _) in overdue.iter().filter(|(b, _)| !expired.contains(b)) {
            io.send(Node::Broker(*b), Msg::Probe);
        }
        self.scan(io);
    }

    fn fence(&mut self, b: BrokerId, now: u64, io: &mut Io<'_>) {
        let command = Command::UpdateBrokerStatus {
            broker_id: b,
            status: BrokerStatus::Offline,
            timestamp_ms: now,
        };
        self.propose(command, io);
    }

    /// The partition half of `controller_tick`: proposes the leadership and ISR changes that
    /// follow from liveness, skipping the scan while liveness is unchanged and all ONLINE.
    fn scan(&mut self, io: &mut Io<'_>) {
        let liveness: Vec<(BrokerId, BrokerStatus)> = self
            .state
            .brokers
            .values()
            .map(|b| (b.broker_id, b.status))
            .collect();
        let all_online = liveness.iter().all(|(_, s)| *s == BrokerStatus::Online);
        if all_online && self.last_scan.as_deref() == Some(liveness.as_slice()) {
            return;
        }
        let changes = partition_changes(&self.state);
        if changes.is_empty() {
            self.last_scan = Some(liveness);
            return;
        }
        self.propose(Command::UpdatePartitions { changes }, io);
        self.last_scan = None;
    }

    /// The topic is created once every broker has registered (`api.rs` `create_topic`).
    fn maybe_create_topic(&mut self, io: &mut Io<'_>) {
        if self.state.topics.contains_key(TOPIC) {
            return;
        }
        let online = self.state.online_brokers();
        if online.len() < self.cfg.brokers {
            return;
        }
        let start = self.state.topics_created as usize;
        let assignment = assign_replicas(
            &online,
            self.cfg.partitions,
            self.cfg.replication_factor,
            start,
        );
        let config = BTreeMap::from([(
            "min.insync.replicas".to_string(),
            self.cfg.min_insync.to_string(),
        )]);
        let command = Command::CreateTopic {
            name: TOPIC.to_string(),
            topic_id: "00000000-0000-0000-0000-000000000001".to_string(),
            config,
            assignment,
            timestamp_ms: io.now_ms() as u64,
        };
        self.propose(command, io);
    }
}

/// A trace entry for a committed command.
fn describe(command: &Command, result: &CommandResult) -> (&'static str, [i64; 4]) {
    let rejected = i64::from(matches!(result, CommandResult::Rejected { .. }));
    match command {
        Command::RegisterBroker { broker_id, .. } => {
            let epoch = match result {
                CommandResult::Broker(b) => b.broker_epoch as i64,
                _ => -1,
            };
            (
                "commit:register broker/broker_epoch",
                [i64::from(*broker_id), epoch, 0, 0],
            )
        }
        Command::UpdateBrokerStatus {
            broker_id, status, ..
        } => (
            "commit:broker-status broker/online",
            [
                i64::from(*broker_id),
                i64::from(*status == BrokerStatus::Online),
                0,
                0,
            ],
        ),
        Command::UpdatePartitions { changes } => {
            let c = changes.first();
            (
                "commit:update-partitions p/leader/leader_epoch/isr",
                [
                    c.map_or(-1, |c| i64::from(c.partition)),
                    c.map_or(-1, |c| i64::from(c.leader)),
                    c.map_or(-1, |c| i64::from(c.leader_epoch)),
                    c.map_or(0, |c| crate::msg::isr_bits(&c.isr)),
                ],
            )
        }
        Command::AlterPartition {
            partition,
            isr,
            leader_epoch,
            ..
        } => (
            "commit:alter-partition p/isr/leader_epoch/rejected",
            [
                i64::from(*partition),
                crate::msg::isr_bits(isr),
                i64::from(*leader_epoch),
                rejected,
            ],
        ),
        Command::CreateTopic { .. } => ("commit:create-topic rejected", [rejected, 0, 0, 0]),
        _ => ("commit:other", [0; 4]),
    }
}
