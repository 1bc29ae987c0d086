//! The cluster image shared by the metadata quorum (which owns it) and the brokers (which cache
//! it): brokers, topics and partition placement, in the JSON shapes of the seeds' HTTP API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{BrokerId, LeaderEpoch};

/// Liveness of a broker as the controller last decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BrokerStatus {
    /// Heartbeating within the session timeout; may lead and follow partitions.
    Online,
    /// Fenced: no heartbeat within the session timeout. Leads nothing, is in no ISR.
    Offline,
}

/// A storage broker as recorded in the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Broker {
    pub broker_id: BrokerId,
    pub host: String,
    /// HTTP port (seed API).
    pub port: u16,
    /// Kafka wire-protocol port.
    pub kafka_port: u16,
    pub status: BrokerStatus,
    /// Milliseconds since the Unix epoch of the last heartbeat the log knows of. The controller
    /// tracks live heartbeats in memory and records them here on registration and status changes.
    pub last_heartbeat: u64,
    /// The Raft index of the broker's latest registration: Kafka's broker epoch (KIP-903). Every
    /// process start registers anew and gets a larger one, so progress a leader remembers from
    /// an earlier incarnation (whose unflushed tail may be gone) can be told apart.
    #[serde(default)]
    pub broker_epoch: u64,
    /// Chosen by the broker process at start (Kafka's incarnation id): a registration with the
    /// same one is the same process registering again (after losing the controller), not a
    /// restart, and keeps its broker epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation_id: Option<String>,
}

/// One partition's placement and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Partition {
    pub partition_id: i32,
    /// Leading broker, or -1 when no in-sync replica is available.
    pub leader: BrokerId,
    /// Assigned replicas; the first is the preferred leader.
    pub replicas: Vec<BrokerId>,
    /// In-sync replicas. Never empty: the last member stays when it dies, so that it (and only
    /// it) can lead again without losing acknowledged writes.
    pub isr: Vec<BrokerId>,
    /// Bumped on every leader change (KIP-101); fences deposed leaders.
    pub leader_epoch: LeaderEpoch,
    /// Bumped on every change of leader or ISR (KIP-497's partition epoch); fences ISR changes
    /// a leader computed against an older state.
    #[serde(default)]
    pub partition_epoch: i32,
}

/// A topic and all its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Topic {
    pub topic_name: String,
    /// Kafka topic id (UUID), chosen by the controller at creation.
    pub topic_id: String,
    pub num_partitions: i32,
    pub replication_factor: i16,
    /// Topic-level overrides (`retention.ms`, `cleanup.policy`, `min.insync.replicas`, …).
    pub config: BTreeMap<String, String>,
    pub partitions: Vec<Partition>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}
