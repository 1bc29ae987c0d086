//! Share groups in the metadata quorum (KIP-932, SPEC §10): the durable state of every
//! share-partition and the per-group configs.
//!
//! ```text
//!   partition leader ── WriteShareStates [{group, topic, partition, leaderEpoch, snapshot}] ──▶ one entry
//!                       (every share-partition acknowledged since the last write, group-committed)
//!   new leader       ── read the snapshot (consistent) ──▶ SharePartition::from_snapshot
//!   admin            ── AlterGroupConfig {group, set, delete} (IncrementalAlterConfigs, type GROUP)
//! ```
//!
//! Kafka keeps this in `__share_group_state`, written by a share coordinator. dmq commits it
//! through the quorum as it does consumer offsets: the leader answers an acknowledgement only
//! after the snapshot holding it is committed, and a write is fenced by the partition's leader
//! epoch, so a deposed leader can never overwrite what its successor loaded.

use std::collections::BTreeMap;

use dmq_share::ShareSnapshot;
use dmq_types::LeaderEpoch;
use serde::{Deserialize, Serialize};

/// One share-partition's state as a leader writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareStateWrite {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    /// The leader epoch of the writer: the write is refused unless it is the partition's current one.
    pub leader_epoch: LeaderEpoch,
    pub snapshot: ShareSnapshot,
}

/// A stored share-partition state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredShareState {
    pub leader_epoch: LeaderEpoch,
    pub snapshot: ShareSnapshot,
}

/// What the quorum keeps of one share group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareGroupState {
    /// Share-partition states, by topic and partition.
    #[serde(default)]
    pub partitions: BTreeMap<String, BTreeMap<i32, StoredShareState>>,
}

/// One refused write of a batch, and why (the broker maps `code` to a Kafka error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedWrite {
    pub index: usize,
    /// A Kafka error name: FENCED_LEADER_EPOCH, UNKNOWN_TOPIC_OR_PARTITION, INVALID_REQUEST.
    pub code: String,
    pub reason: String,
}

pub use dmq_types::group_config::check_group_config;

impl ShareGroupState {
    /// Every share-partition state of the group, flat.
    pub fn states(&self) -> impl Iterator<Item = (&str, i32, &StoredShareState)> + '_ {
        self.partitions
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |(p, s)| (t.as_str(), *p, s)))
    }
}
