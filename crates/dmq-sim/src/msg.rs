//! What the simulated processes say to each other, and the timers they set.
//!
//! The messages mirror the real protocols closely enough for the replication rules: the
//! metadata API (registration with an incarnation id, heartbeats, AlterPartition, metadata
//! pushes and pulls, the liveness probe), the Kafka replication APIs (Fetch v12 with
//! `last_fetched_epoch`, OffsetForLeaderEpoch v4) and Produce.

use std::collections::BTreeMap;
use std::rc::Rc;

use dmq_metadata::state::{MetadataState, RejectCode};
use dmq_replica::{IsrChange, PartitionMeta, Refusal};
use dmq_types::model::{BrokerStatus, Partition};
use dmq_types::BrokerId;

/// The one topic the simulation replicates.
pub const TOPIC: &str = "sim";

/// One record. Every batch holds one record, stamped with the leader epoch it was written in
/// (the batch's `partitionLeaderEpoch`); `value` is unique per produce request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rec {
    pub epoch: i32,
    pub value: u64,
}

/// A broker as the metadata shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerInfo {
    pub broker_epoch: u64,
    pub online: bool,
}

/// The cluster image brokers and clients receive (the committed metadata as of `version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub version: u64,
    pub brokers: BTreeMap<BrokerId, BrokerInfo>,
    /// The topic's partitions, empty until it is created.
    pub partitions: Vec<Partition>,
    pub min_insync: usize,
}

impl Image {
    pub fn empty() -> Image {
        Image {
            version: 0,
            brokers: BTreeMap::new(),
            partitions: Vec::new(),
            min_insync: 1,
        }
    }

    pub fn from_state(state: &MetadataState) -> Image {
        let topic = state.topics.get(TOPIC);
        let min_insync = topic
            .and_then(|t| t.config.get("min.insync.replicas"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        Image {
            version: state.version,
            brokers: state
                .brokers
                .values()
                .map(|b| {
                    let info = BrokerInfo {
                        broker_epoch: b.broker_epoch,
                        online: b.status == BrokerStatus::Online,
                    };
                    (b.broker_id, info)
                })
                .collect(),
            partitions: topic.map(|t| t.partitions.clone()).unwrap_or_default(),
            min_insync,
        }
    }

    pub fn broker_epoch(&self, id: BrokerId) -> Option<u64> {
        self.brokers.get(&id).map(|b| b.broker_epoch)
    }
}

/// The replica core's view of a committed partition.
pub fn partition_meta(p: &Partition) -> PartitionMeta {
    PartitionMeta {
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        replicas: p.replicas.clone(),
        isr: p.isr.clone(),
    }
}

/// One partition of a follower's Fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPart {
    pub partition: i32,
    pub fetch_offset: i64,
    pub last_fetched_epoch: i32,
    pub current_leader_epoch: i32,
    pub log_start_offset: i64,
}

/// One partition of a Fetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchData {
    /// Records from the fetch offset on.
    pub records: Vec<Rec>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// One partition of an OffsetForLeaderEpoch request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochAsk {
    pub partition: i32,
    pub current_leader_epoch: i32,
    pub leader_epoch: i32,
}

/// One partition of an OffsetForLeaderEpoch answer: `(epoch, end offset)` or the refusal.
pub type EpochAnswer = (i32, Result<(i32, i64), Refusal>);

/// Why a produce failed, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProduceError {
    Refused(Refusal),
    /// REQUEST_TIMED_OUT: acks=all not decided in time (the outcome is unknown).
    TimedOut,
    /// The partition is not hosted there (NOT_LEADER_OR_FOLLOWER).
    NotHosted,
    /// Nothing listens at the broker's address (the process is down).
    ConnectionRefused,
}

/// A message between two simulated processes.
#[derive(Debug, Clone)]
pub enum Msg {
    /// Broker → controller: `POST /api/v1/metadata/brokers` with this process's incarnation.
    Register {
        incarnation: u64,
    },
    RegisterOk {
        broker_epoch: u64,
    },
    /// Broker → controller heartbeat with its metadata version.
    Heartbeat {
        seq: u64,
        version: u64,
    },
    HeartbeatOk {
        seq: u64,
        version: u64,
    },
    /// 404: the controller does not know this broker (register again).
    HeartbeatUnknown {
        seq: u64,
    },
    /// Broker or client → controller: the committed metadata, please.
    MetadataRequest,
    /// Controller → broker or client: a push or the answer to a pull.
    Metadata(Rc<Image>),
    /// Partition leader → controller (KIP-497).
    AlterPartition {
        seq: u64,
        partition: i32,
        change: IsrChange,
    },
    AlterPartitionOk {
        seq: u64,
        partition: Partition,
    },
    AlterPartitionRefused {
        seq: u64,
        partition: i32,
        code: RejectCode,
    },
    /// Controller → broker: the TCP connect the controller uses to learn that a broker whose
    /// heartbeat is late has no process any more.
    Probe,
    /// The "operating system" of a dead broker's host refused the probe's connection.
    ProbeRefused,
    /// Follower → leader: OffsetForLeaderEpoch v4.
    EpochRequest {
        seq: u64,
        parts: Vec<EpochAsk>,
    },
    EpochResponse {
        seq: u64,
        parts: Vec<EpochAnswer>,
    },
    /// Follower → leader: Fetch v12 with the follower's replica id.
    Fetch {
        seq: u64,
        parts: Vec<FetchPart>,
    },
    FetchResponse {
        seq: u64,
        parts: Vec<(i32, Result<FetchData, Refusal>)>,
    },
    /// A request (Fetch, OffsetForLeaderEpoch) met a dead process: connection refused.
    ConnRefused {
        seq: u64,
    },
    /// Client → leader.
    Produce {
        req: u64,
        partition: i32,
        value: u64,
        acks: i16,
    },
    ProduceResponse {
        req: u64,
        partition: i32,
        result: Result<i64, ProduceError>,
    },
}

impl Msg {
    /// What the host of a dead process answers to this message, if it is a request whose
    /// sender waits on a connection.
    pub fn refused(&self) -> Option<Msg> {
        match self {
            Msg::Probe => Some(Msg::ProbeRefused),
            Msg::EpochRequest { seq, .. } | Msg::Fetch { seq, .. } => {
                Some(Msg::ConnRefused { seq: *seq })
            }
            Msg::Produce { req, partition, .. } => Some(Msg::ProduceResponse {
                req: *req,
                partition: *partition,
                result: Err(ProduceError::ConnectionRefused),
            }),
            _ => None,
        }
    }

    /// A trace tag and its arguments.
    pub fn describe(&self) -> (&'static str, [i64; 4]) {
        let first = |parts: &[FetchPart]| parts.first().copied();
        match self {
            Msg::Register { incarnation } => ("register inc", [*incarnation as i64, 0, 0, 0]),
            Msg::RegisterOk { broker_epoch } => {
                ("registered broker_epoch", [*broker_epoch as i64, 0, 0, 0])
            }
            Msg::Heartbeat { seq, version } => (
                "heartbeat seq/version",
                [*seq as i64, *version as i64, 0, 0],
            ),
            Msg::HeartbeatOk { seq, version } => (
                "heartbeat-ok seq/version",
                [*seq as i64, *version as i64, 0, 0],
            ),
            Msg::HeartbeatUnknown { seq } => ("heartbeat-unknown seq", [*seq as i64, 0, 0, 0]),
            Msg::MetadataRequest => ("metadata-request", [0; 4]),
            Msg::Metadata(image) => {
                let p0 = image.partitions.first();
                (
                    "metadata version/p0.leader/p0.epoch/p0.isr",
                    [
                        image.version as i64,
                        p0.map_or(-1, |p| i64::from(p.leader)),
                        p0.map_or(-1, |p| i64::from(p.leader_epoch)),
                        p0.map_or(0, |p| isr_bits(&p.isr)),
                    ],
                )
            }
            Msg::AlterPartition {
                seq,
                partition,
                change,
            } => (
                "alter-partition seq/p/isr/leader_epoch",
                [
                    *seq as i64,
                    i64::from(*partition),
                    isr_bits(&change.isr),
                    i64::from(change.leader_epoch),
                ],
            ),
            Msg::AlterPartitionOk { seq, partition } => (
                "alter-partition-ok seq/p/isr/partition_epoch",
                [
                    *seq as i64,
                    i64::from(partition.partition_id),
                    isr_bits(&partition.isr),
                    i64::from(partition.partition_epoch),
                ],
            ),
            Msg::AlterPartitionRefused {
                seq,
                partition,
                code,
            } => (
                "alter-partition-refused seq/p/code",
                [*seq as i64, i64::from(*partition), reject_code(*code), 0],
            ),
            Msg::Probe => ("probe", [0; 4]),
            Msg::ProbeRefused => ("probe-refused", [0; 4]),
            Msg::EpochRequest { seq, parts } => {
                let a = parts.first();
                (
                    "epoch-request seq/p/cle/epoch",
                    [
                        *seq as i64,
                        a.map_or(-1, |a| i64::from(a.partition)),
                        a.map_or(-1, |a| i64::from(a.current_leader_epoch)),
                        a.map_or(-1, |a| i64::from(a.leader_epoch)),
                    ],
                )
            }
            Msg::EpochResponse { seq, parts } => {
                let a = parts.first();
                let (e, end) = match a.map(|a| &a.1) {
                    Some(Ok((e, end))) => (i64::from(*e), *end),
                    _ => (-99, -99),
                };
                (
                    "epoch-response seq/p/epoch/end",
                    [*seq as i64, a.map_or(-1, |a| i64::from(a.0)), e, end],
                )
            }
            Msg::Fetch { seq, parts } => {
                let f = first(parts);
                (
                    "fetch seq/p0/off/lfe",
                    [
                        *seq as i64,
                        f.map_or(-1, |f| i64::from(f.partition)),
                        f.map_or(-1, |f| f.fetch_offset),
                        f.map_or(-1, |f| i64::from(f.last_fetched_epoch)),
                    ],
                )
            }
            Msg::FetchResponse { seq, parts } => {
                let n: usize = parts
                    .iter()
                    .map(|(_, r)| r.as_ref().map_or(0, |d| d.records.len()))
                    .sum();
                let errors = parts.iter().filter(|(_, r)| r.is_err()).count();
                (
                    "fetch-response seq/records/errors",
                    [*seq as i64, n as i64, errors as i64, 0],
                )
            }
            Msg::ConnRefused { seq } => ("conn-refused seq", [*seq as i64, 0, 0, 0]),
            Msg::Produce {
                req,
                partition,
                value,
                acks,
            } => (
                "produce req/p/value/acks",
                [
                    *req as i64,
                    i64::from(*partition),
                    *value as i64,
                    i64::from(*acks),
                ],
            ),
            Msg::ProduceResponse {
                req,
                partition,
                result,
            } => (
                "produce-response req/p/offset",
                [
                    *req as i64,
                    i64::from(*partition),
                    result.as_ref().map_or(-1, |o| *o),
                    0,
                ],
            ),
        }
    }
}

/// An ISR as a bit set (bit b = broker b), for compact traces.
pub fn isr_bits(isr: &[BrokerId]) -> i64 {
    isr.iter()
        .filter(|b| (0..62).contains(*b))
        .fold(0, |acc, b| acc | (1 << b))
}

fn reject_code(code: RejectCode) -> i64 {
    match code {
        RejectCode::StaleLeaderEpoch => 1,
        RejectCode::StalePartitionEpoch => 2,
        RejectCode::NotLeader => 3,
        RejectCode::IneligibleReplica => 4,
        RejectCode::InvalidCommand => 5,
        RejectCode::UnknownPartition => 6,
        _ => 9,
    }
}

/// A timer a process set for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    // Brokers.
    Heartbeat,
    HeartbeatTimeout {
        seq: u64,
    },
    RegisterRetry {
        attempt: u64,
    },
    IsrTick,
    /// The OS writes dirty pages back: the log's unflushed tail becomes durable.
    Flush,
    HwCheckpoint,
    FetcherWake {
        leader: BrokerId,
        gen: u64,
    },
    FetchTimeout {
        leader: BrokerId,
        seq: u64,
    },
    LongPollExpired {
        id: u64,
    },
    AckTimeout {
        partition: i32,
        waiter: u64,
        offset: i64,
    },
    AlterTimeout {
        partition: i32,
        seq: u64,
    },
    // The controller.
    ControllerTick,
    // Clients.
    ProduceTick,
    RequestTimeout {
        req: u64,
    },
    MetadataRefresh,
}

impl Timer {
    pub fn describe(&self) -> (&'static str, [i64; 4]) {
        match *self {
            Timer::Heartbeat => ("timer:heartbeat", [0; 4]),
            Timer::HeartbeatTimeout { seq } => {
                ("timer:heartbeat-timeout seq", [seq as i64, 0, 0, 0])
            }
            Timer::RegisterRetry { attempt } => {
                ("timer:register-retry attempt", [attempt as i64, 0, 0, 0])
            }
            Timer::IsrTick => ("timer:isr-tick", [0; 4]),
            Timer::Flush => ("timer:flush", [0; 4]),
            Timer::HwCheckpoint => ("timer:hw-checkpoint", [0; 4]),
            Timer::FetcherWake { leader, gen } => (
                "timer:fetcher-wake leader/gen",
                [i64::from(leader), gen as i64, 0, 0],
            ),
            Timer::FetchTimeout { leader, seq } => (
                "timer:fetch-timeout leader/seq",
                [i64::from(leader), seq as i64, 0, 0],
            ),
            Timer::LongPollExpired { id } => ("timer:long-poll id", [id as i64, 0, 0, 0]),
            Timer::AckTimeout {
                partition,
                waiter,
                offset,
            } => (
                "timer:ack-timeout p/waiter/offset",
                [i64::from(partition), waiter as i64, offset, 0],
            ),
            Timer::AlterTimeout { partition, seq } => (
                "timer:alter-timeout p/seq",
                [i64::from(partition), seq as i64, 0, 0],
            ),
            Timer::ControllerTick => ("timer:controller-tick", [0; 4]),
            Timer::ProduceTick => ("timer:produce", [0; 4]),
            Timer::RequestTimeout { req } => ("timer:request-timeout req", [req as i64, 0, 0, 0]),
            Timer::MetadataRefresh => ("timer:metadata-refresh", [0; 4]),
        }
    }
}
