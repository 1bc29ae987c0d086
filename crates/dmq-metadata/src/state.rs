//! The metadata state machine: plain data plus a deterministic `apply`.
//!
//! ```text
//!   Raft log:  [1: RegisterBroker] [2: CreateTopic] [3: UpdateBrokerStatus] [4: UpdatePartitions] …
//!                     │ apply(index, command) in log order, on every node
//!                     ▼
//!   MetadataState { version = last applied index, brokers, topics → partitions }
//! ```
//!
//! Everything a command needs is inside the command — timestamps, topic ids and replica
//! assignments are decided by the controller *before* proposing — so every node that applies the
//! same log reaches the same state. `apply` never fails: a command that no longer fits the state
//! (a duplicate topic, a stale leader epoch) is rejected with a [`CommandResult::Rejected`] and
//! changes nothing.

use std::collections::BTreeMap;

pub use dmq_types::broker_config::BrokerConfigs;
pub use dmq_types::model::{Broker, BrokerStatus, Partition, Topic};
pub use dmq_types::txn::{Transaction, TxnError, TxnOp};
use dmq_types::{BrokerId, LeaderEpoch, NO_LEADER, TOPIC_PARTITIONS_MAX};

use crate::security::{ScramDelete, ScramUpsert, SecurityState, UserResult};
use crate::shares::{
    check_group_config, RejectedWrite, ShareGroupState, ShareStateWrite, StoredShareState,
};
use crate::txn::Txns;
use dmq_auth::{AclBinding, AclBindingFilter};
use serde::{Deserialize, Serialize};

/// One partition's new leadership, fenced by the leader epoch the controller based it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionChange {
    pub topic: String,
    pub partition: i32,
    /// The epoch the decision was made against; a change made against an older state is stale.
    pub expected_leader_epoch: LeaderEpoch,
    /// The partition epoch the decision was made against; -1 (entries written before partition
    /// epochs existed) checks only the leader epoch.
    #[serde(default = "unchecked_epoch")]
    pub expected_partition_epoch: i32,
    pub leader: BrokerId,
    pub isr: Vec<BrokerId>,
    pub leader_epoch: LeaderEpoch,
}

impl PartitionChange {
    /// A new leader (and ISR) for `topic`-`p` at the next leader epoch, fenced by the epochs
    /// `p` has now.
    pub fn new_leader(topic: &str, p: &Partition, leader: BrokerId, isr: Vec<BrokerId>) -> Self {
        PartitionChange {
            topic: topic.to_string(),
            partition: p.partition_id,
            expected_leader_epoch: p.leader_epoch,
            expected_partition_epoch: p.partition_epoch,
            leader,
            isr,
            leader_epoch: p.leader_epoch + 1,
        }
    }
}

fn unchecked_epoch() -> i32 {
    -1
}

/// A metadata command: one entry in the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Command {
    /// A broker joins (or re-joins with new addresses); it is ONLINE from this entry on.
    RegisterBroker {
        broker_id: BrokerId,
        host: String,
        port: u16,
        kafka_port: u16,
        timestamp_ms: u64,
        /// The registering process's incarnation id (`None` in entries from before it existed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        incarnation_id: Option<String>,
    },
    /// Removes an OFFLINE broker that holds no replica (Kafka's UnregisterBroker).
    UnregisterBroker { broker_id: BrokerId },
    /// The controller fences a silent broker (OFFLINE) or readmits it (ONLINE).
    UpdateBrokerStatus {
        broker_id: BrokerId,
        status: BrokerStatus,
        timestamp_ms: u64,
    },
    /// A topic with its replica assignment (one replica list per partition, leader first).
    CreateTopic {
        name: String,
        topic_id: String,
        config: BTreeMap<String, String>,
        assignment: Vec<Vec<BrokerId>>,
        timestamp_ms: u64,
    },
    /// Removes a topic; brokers delete its data when they see it gone.
    DeleteTopic { name: String },
    /// Adds partitions to a topic (Kafka's CreatePartitions): one replica list per new
    /// partition, leader first, numbered after the existing ones.
    CreatePartitions {
        name: String,
        assignment: Vec<Vec<BrokerId>>,
    },
    /// UpdatePartition for one or more partitions, applied atomically (leader, ISR, epoch).
    UpdatePartitions { changes: Vec<PartitionChange> },
    /// Hands a broker a block of producer ids for InitProducerId (Kafka's AllocateProducerIds):
    /// ids are never reused, whichever broker asks and whatever node applies the entry.
    AllocateProducerIds { broker_id: BrokerId, count: u32 },
    /// Consumer-group offset commits, batched across groups by a coordinator (OffsetCommit).
    CommitOffsets { commits: Vec<OffsetCommit> },
    /// Deletes a group's committed offsets: all of them (DeleteGroups) or the listed partitions
    /// (OffsetDelete).
    DeleteGroupOffsets {
        group: String,
        partitions: Option<Vec<TopicPartitionRef>>,
    },
    /// A partition leader shrinks or expands its ISR (Kafka's AlterPartition, KIP-497). Fenced
    /// by the leader and partition epochs the leader acted on; a broker may only join the ISR
    /// while it is ONLINE.
    AlterPartition {
        broker_id: BrokerId,
        topic: String,
        partition: i32,
        leader_epoch: LeaderEpoch,
        partition_epoch: i32,
        isr: Vec<BrokerId>,
        /// The broker epoch of each replica the change adds to the ISR, as the leader saw it
        /// fetch (KIP-903): a replica that registered again since may have lost its unflushed
        /// tail and is refused. `None` in entries written before broker epochs existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        added_epochs: Option<Vec<ReplicaEpoch>>,
    },
    /// Changes a topic's configs (Kafka's AlterConfigs and IncrementalAlterConfigs): with
    /// `replace` the topic's configs become exactly `set`; otherwise `set` overrides and
    /// `delete` reverts keys to their defaults. Values were validated before proposing.
    AlterTopicConfig {
        name: String,
        #[serde(default)]
        set: BTreeMap<String, String>,
        #[serde(default)]
        delete: Vec<String>,
        #[serde(default)]
        replace: bool,
    },
    /// Dynamic broker configs (Kafka's AlterConfigs on a BROKER resource): for the whole
    /// cluster (`broker: None`, Kafka's `--entity-default`) or one broker. Values are checked
    /// against the broker config table before proposing.
    AlterBrokerConfig {
        #[serde(default)]
        broker: Option<BrokerId>,
        #[serde(default)]
        set: BTreeMap<String, String>,
        #[serde(default)]
        delete: Vec<String>,
    },
    /// Independent commands proposed together (group commit), applied in order at one index,
    /// each with its own result: one rejected command does not affect the others.
    Batch { commands: Vec<Command> },
    /// A transaction coordinator's change to one transactional id (see [`crate::txn`]).
    Txn { op: TxnOp },
    /// CreateAcls (see [`crate::security`]).
    CreateAcls { bindings: Vec<AclBinding> },
    /// DeleteAcls.
    DeleteAcls { filters: Vec<AclBindingFilter> },
    /// AlterUserScramCredentials, keys derived by the broker (never a password).
    AlterScram {
        upsertions: Vec<ScramUpsert>,
        deletions: Vec<ScramDelete>,
    },
    /// Share-partition states from their leaders (see [`crate::shares`]): each write stands
    /// alone and is refused unless its leader epoch is the partition's current one.
    WriteShareStates { writes: Vec<ShareStateWrite> },
    /// Deletes a share group's states: all of them (DeleteGroups) or the listed partitions
    /// (DeleteShareGroupOffsets).
    DeleteShareStates {
        group: String,
        partitions: Option<Vec<TopicPartitionRef>>,
    },
    /// A group's configs (IncrementalAlterConfigs on a GROUP resource): `set` overrides and
    /// `delete` reverts to the broker defaults. Values were checked before proposing.
    AlterGroupConfig {
        group: String,
        #[serde(default)]
        set: BTreeMap<String, String>,
        #[serde(default)]
        delete: Vec<String>,
    },
}

impl Command {
    /// A cheap upper estimate of the command's size in the log (JSON bytes), for bounding
    /// batches without serializing them.
    pub fn estimated_bytes(&self) -> usize {
        const BASE: usize = 256;
        match self {
            Command::CreateTopic {
                name,
                topic_id,
                config,
                assignment,
                ..
            } => {
                let replicas: usize = assignment.iter().map(|r| r.len() * 12 + 4).sum();
                // JSON escapes a control character as six bytes.
                let config: usize = config
                    .iter()
                    .map(|(k, v)| (k.len() + v.len()) * 6 + 8)
                    .sum();
                BASE + name.len() + topic_id.len() + replicas + config
            }
            Command::UpdatePartitions { changes } => {
                BASE + changes
                    .iter()
                    .map(|c| 192 + c.topic.len() + c.isr.len() * 12)
                    .sum::<usize>()
            }
            Command::CommitOffsets { commits } => {
                BASE + commits
                    .iter()
                    .map(|c| {
                        192 + (c.group_id.len() + c.topic.len()) * 6
                            + c.metadata.as_ref().map_or(0, |m| m.len() * 6)
                    })
                    .sum::<usize>()
            }
            Command::DeleteGroupOffsets { group, partitions } => {
                BASE + group.len() * 6
                    + partitions.as_ref().map_or(0, |ps| {
                        ps.iter().map(|p| 48 + p.topic.len() * 6).sum::<usize>()
                    })
            }
            Command::Batch { commands } => {
                BASE + commands.iter().map(Command::estimated_bytes).sum::<usize>()
            }
            Command::UnregisterBroker { .. } => BASE,
            Command::CreatePartitions { name, assignment } => {
                BASE + name.len() + assignment.iter().map(|r| r.len() * 12 + 4).sum::<usize>()
            }
            Command::RegisterBroker {
                host,
                incarnation_id,
                ..
            } => BASE + host.len() * 6 + incarnation_id.as_ref().map_or(0, |i| 24 + i.len() * 6),
            Command::DeleteTopic { name } => BASE + name.len(),
            Command::AlterTopicConfig {
                name, set, delete, ..
            } => {
                BASE + name.len() * 6
                    + set
                        .iter()
                        .map(|(k, v)| 8 + (k.len() + v.len()) * 6)
                        .sum::<usize>()
                    + delete.iter().map(|k| 4 + k.len() * 6).sum::<usize>()
            }
            Command::AlterBrokerConfig { set, delete, .. } => {
                BASE + set
                    .iter()
                    .map(|(k, v)| 8 + (k.len() + v.len()) * 6)
                    .sum::<usize>()
                    + delete.iter().map(|k| 4 + k.len() * 6).sum::<usize>()
            }
            Command::AlterPartition {
                topic,
                isr,
                added_epochs,
                ..
            } => {
                BASE + topic.len() * 6
                    + isr.len() * 12
                    + added_epochs.as_ref().map_or(0, |e| 16 + e.len() * 36)
            }
            Command::UpdateBrokerStatus { .. } | Command::AllocateProducerIds { .. } => BASE,
            Command::Txn { op } => BASE + txn_op_bytes(op),
            Command::CreateAcls { bindings } => BASE + bindings.len() * 256,
            Command::DeleteAcls { filters } => BASE + filters.len() * 256,
            Command::AlterScram {
                upsertions,
                deletions,
            } => BASE + upsertions.len() * 512 + deletions.len() * 96,
            Command::WriteShareStates { writes } => {
                BASE + writes
                    .iter()
                    .map(|w| {
                        192 + (w.group.len() + w.topic.len()) * 6
                            + w.snapshot.state_batches.len() * 96
                    })
                    .sum::<usize>()
            }
            Command::DeleteShareStates { group, partitions } => {
                BASE + group.len() * 6
                    + partitions.as_ref().map_or(0, |ps| {
                        ps.iter().map(|p| 48 + p.topic.len() * 6).sum::<usize>()
                    })
            }
            Command::AlterGroupConfig { group, set, delete } => {
                BASE + group.len() * 6
                    + set
                        .iter()
                        .map(|(k, v)| 8 + (k.len() + v.len()) * 6)
                        .sum::<usize>()
                    + delete.iter().map(|k| 4 + k.len() * 6).sum::<usize>()
            }
        }
    }
}

fn txn_op_bytes(op: &TxnOp) -> usize {
    let id = op.transactional_id().len() * 6;
    id + match op {
        TxnOp::AddPartitions { partitions, .. } => partitions
            .iter()
            .map(|p| 48 + p.topic.len() * 6)
            .sum::<usize>(),
        TxnOp::AddOffsets { group, .. } => group.len() * 6,
        TxnOp::CommitOffsets { offsets, .. } => offsets
            .iter()
            .map(|o| {
                160 + (o.group.len() + o.topic.len()) * 6
                    + o.metadata.as_ref().map_or(0, |m| m.len() * 6)
            })
            .sum::<usize>(),
        _ => 0,
    }
}

/// One committed consumer-group offset (Kafka's OffsetCommit value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OffsetCommit {
    pub group_id: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    #[serde(default = "unchecked_epoch")]
    pub leader_epoch: i32,
    #[serde(default)]
    pub metadata: Option<String>,
    /// Chosen by the coordinator before proposing (apply stays deterministic).
    pub commit_timestamp: u64,
}

/// A topic partition named in a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicPartitionRef {
    pub topic: String,
    pub partition: i32,
}

/// What the quorum keeps of a consumer group: its committed offsets, by topic and partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupOffsets {
    pub offsets: BTreeMap<String, BTreeMap<i32, CommittedOffset>>,
}

/// One partition's committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp: u64,
}

/// A replica's broker epoch as a partition leader saw it fetch (KIP-903's `BrokerState`).
/// (A list of these rather than a map: internally tagged enums cannot read integer map keys.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaEpoch {
    pub broker_id: BrokerId,
    pub broker_epoch: u64,
}

/// One offset commit of a [`Command::CommitOffsets`] that was not stored, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedCommit {
    pub index: usize,
    pub reason: String,
}

/// Longest metadata string an offset commit may carry (Kafka's `offset.metadata.max.bytes`).
pub const OFFSET_METADATA_MAX_BYTES: usize = 4096;

/// Why a command changed nothing. Stable codes: the HTTP layer maps them to status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RejectCode {
    TopicAlreadyExists,
    UnknownTopic,
    UnknownBroker,
    UnknownPartition,
    UnknownGroup,
    StaleLeaderEpoch,
    /// The leader's view of the ISR is older than the committed one (INVALID_UPDATE_VERSION).
    StalePartitionEpoch,
    /// The requester does not lead the partition (NOT_LEADER_OR_FOLLOWER).
    NotLeader,
    /// A broker that is not ONLINE (or not a replica) would join the ISR (INELIGIBLE_REPLICA).
    IneligibleReplica,
    /// The broker is ONLINE or holds replicas, so it cannot be unregistered.
    BrokerInUse,
    InvalidCommand,
}

/// What applying a command produced; returned to the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommandResult {
    /// Entries without a command (Raft blanks, membership changes).
    None,
    Broker(Broker),
    Topic(Topic),
    TopicDeleted {
        name: String,
    },
    PartitionsUpdated {
        count: usize,
    },
    ProducerIds {
        first: i64,
        count: u32,
    },
    BrokerUnregistered {
        broker_id: BrokerId,
    },
    OffsetsCommitted {
        count: usize,
        /// The commits that were not stored, by their index in the command.
        #[serde(default)]
        rejected: Vec<RejectedCommit>,
    },
    GroupOffsetsDeleted {
        count: usize,
    },
    /// The dynamic broker configs after an AlterBrokerConfig.
    BrokerConfigs(BrokerConfigs),
    /// The partition as an AlterPartition left it.
    Partition {
        topic: String,
        partition: Partition,
    },
    Rejected {
        code: RejectCode,
        message: String,
    },
    /// A transaction after a [`Command::Txn`].
    Txn {
        transaction: Box<Transaction>,
    },
    /// A [`Command::Txn`] refused, with Kafka's error (the transaction may still have moved:
    /// see [`crate::txn::TxnRefusal`]).
    TxnRefused {
        error: TxnError,
        message: String,
    },
    /// The results of a [`Command::Batch`], one per command, in order.
    Batch {
        results: Vec<CommandResult>,
    },
    /// Per binding of a [`Command::CreateAcls`]: `None` if stored, else why not.
    AclsCreated {
        errors: Vec<Option<String>>,
    },
    /// Per filter of a [`Command::DeleteAcls`]: the bindings removed.
    AclsDeleted {
        deleted: Vec<Vec<AclBinding>>,
    },
    /// Per user of a [`Command::AlterScram`].
    ScramAltered {
        results: Vec<UserResult>,
    },
    /// A [`Command::WriteShareStates`]: how many were stored, and the refused ones.
    ShareStatesWritten {
        count: usize,
        rejected: Vec<RejectedWrite>,
    },
    ShareStatesDeleted {
        count: usize,
    },
    /// A group's configs after an [`Command::AlterGroupConfig`].
    GroupConfig {
        group: String,
        config: BTreeMap<String, String>,
    },
}

/// The whole metadata image, as of `version`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetadataState {
    /// The Raft index of the last applied entry. Brokers compare versions to know they are stale.
    pub version: u64,
    pub brokers: BTreeMap<BrokerId, Broker>,
    pub topics: BTreeMap<String, Topic>,
    /// Topics ever created; rotates the placement start so leaders spread across topics.
    pub topics_created: u64,
    /// The next producer id no broker has been given yet.
    #[serde(default)]
    pub next_producer_id: i64,
    /// Consumer groups' committed offsets, by group id.
    #[serde(default)]
    pub groups: BTreeMap<String, GroupOffsets>,
    /// Dynamic broker configs (cluster-wide defaults and per broker).
    #[serde(default)]
    pub broker_configs: BrokerConfigs,
    /// Transactions, by transactional id.
    #[serde(default)]
    pub transactions: BTreeMap<String, Transaction>,
    /// ACLs and SCRAM credentials.
    #[serde(default)]
    pub security: SecurityState,
    /// Share groups' durable share-partition states, by group id.
    #[serde(default)]
    pub share_groups: BTreeMap<String, ShareGroupState>,
    /// Group configs (IncrementalAlterConfigs on GROUP resources), by group id.
    #[serde(default)]
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Per share group, how often an administrator reset or deleted its share-partition
    /// states (AlterShareGroupOffsets, DeleteShareGroupOffsets, DeleteGroups). Brokers see it in
    /// the cluster image and load a share-partition again when it moved.
    #[serde(default)]
    pub share_resets: BTreeMap<String, u64>,
}

/// Largest producer-id block one command hands out.
pub const PRODUCER_ID_BLOCK_MAX: u32 = 1_000_000;

/// A topic's configs after an AlterConfigs (`replace`: exactly `set`) or an
/// IncrementalAlterConfigs (`set` overrides, `delete` reverts to defaults).
pub fn altered_config(
    current: &BTreeMap<String, String>,
    set: &BTreeMap<String, String>,
    delete: &[String],
    replace: bool,
) -> BTreeMap<String, String> {
    let mut config = if replace {
        BTreeMap::new()
    } else {
        current.clone()
    };
    for k in delete {
        config.remove(k);
    }
    config.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    config
}

fn reject(code: RejectCode, message: impl Into<String>) -> CommandResult {
    CommandResult::Rejected {
        code,
        message: message.into(),
    }
}

impl MetadataState {
    /// Applies the entry at `index`. Deterministic: depends only on the state and the command.
    pub fn apply(&mut self, index: u64, command: &Command) -> CommandResult {
        self.version = index;
        match command {
            Command::RegisterBroker {
                broker_id,
                host,
                port,
                kafka_port,
                timestamp_ms,
                incarnation_id,
            } => {
                // The same process registering again keeps its epoch and its ISR places; a new
                // process (a restart) gets a new epoch and leaves the ISRs (KIP-903).
                let same_process = incarnation_id.is_some()
                    && self
                        .brokers
                        .get(broker_id)
                        .is_some_and(|b| b.incarnation_id == *incarnation_id);
                let broker_epoch = match self.brokers.get(broker_id) {
                    Some(b) if same_process => b.broker_epoch,
                    _ => index,
                };
                let broker = Broker {
                    broker_id: *broker_id,
                    host: host.clone(),
                    port: *port,
                    kafka_port: *kafka_port,
                    status: BrokerStatus::Online,
                    last_heartbeat: *timestamp_ms,
                    broker_epoch,
                    incarnation_id: incarnation_id.clone(),
                };
                self.brokers.insert(*broker_id, broker.clone());
                if !same_process {
                    self.leave_isrs_after_restart(*broker_id);
                }
                CommandResult::Broker(broker)
            }
            Command::UnregisterBroker { broker_id } => {
                if let Err(rejected) = self.check_unregister(*broker_id) {
                    return rejected;
                }
                self.brokers.remove(broker_id);
                CommandResult::BrokerUnregistered {
                    broker_id: *broker_id,
                }
            }
            Command::UpdateBrokerStatus {
                broker_id,
                status,
                timestamp_ms,
            } => match self.brokers.get_mut(broker_id) {
                Some(broker) => {
                    broker.status = *status;
                    if *status == BrokerStatus::Online {
                        broker.last_heartbeat = *timestamp_ms;
                    }
                    CommandResult::Broker(broker.clone())
                }
                None => reject(
                    RejectCode::UnknownBroker,
                    format!("broker {broker_id} is not registered"),
                ),
            },
            Command::CreateTopic {
                name,
                topic_id,
                config,
                assignment,
                timestamp_ms,
            } => self.create_topic(name, topic_id, config, assignment, *timestamp_ms),
            Command::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => {
                    // Committed offsets of a deleted topic go with it (a topic re-created
                    // under the same name starts from scratch, as in Kafka).
                    for g in self.groups.values_mut() {
                        g.offsets.remove(name);
                    }
                    self.groups.retain(|_, g| !g.offsets.is_empty());
                    for g in self.share_groups.values_mut() {
                        g.partitions.remove(name);
                    }
                    self.share_groups.retain(|_, g| !g.partitions.is_empty());
                    CommandResult::TopicDeleted { name: name.clone() }
                }
                None => reject(
                    RejectCode::UnknownTopic,
                    format!("topic {name:?} does not exist"),
                ),
            },
            Command::UpdatePartitions { changes } => self.update_partitions(changes),
            Command::CreatePartitions { name, assignment } => {
                self.create_partitions(name, assignment)
            }
            Command::Batch { commands } => CommandResult::Batch {
                results: commands.iter().map(|c| self.apply(index, c)).collect(),
            },
            Command::Txn { op } => self.apply_txn(op),
            Command::CreateAcls { bindings } => CommandResult::AclsCreated {
                errors: self.security.create_acls(bindings),
            },
            Command::DeleteAcls { filters } => CommandResult::AclsDeleted {
                deleted: self.security.delete_acls(filters),
            },
            Command::AlterScram {
                upsertions,
                deletions,
            } => CommandResult::ScramAltered {
                results: self.security.alter_scram(upsertions, deletions),
            },
            Command::WriteShareStates { writes } => self.write_share_states(writes),
            Command::DeleteShareStates { group, partitions } => {
                *self.share_resets.entry(group.clone()).or_default() += 1;
                let Some(g) = self.share_groups.get_mut(group) else {
                    return CommandResult::ShareStatesDeleted { count: 0 };
                };
                let count = match partitions {
                    None => g.states().count(),
                    Some(ps) => ps
                        .iter()
                        .filter(|p| {
                            g.partitions
                                .get_mut(&p.topic)
                                .and_then(|t| t.remove(&p.partition))
                                .is_some()
                        })
                        .count(),
                };
                g.partitions.retain(|_, t| !t.is_empty());
                if partitions.is_none() || g.partitions.is_empty() {
                    self.share_groups.remove(group);
                }
                CommandResult::ShareStatesDeleted { count }
            }
            Command::AlterGroupConfig { group, set, delete } => {
                if group.is_empty() {
                    return reject(RejectCode::InvalidCommand, "the group id is empty");
                }
                if let Some(bad) = set
                    .iter()
                    .find_map(|(k, v)| match check_group_config(k, v) {
                        None => Some(format!("{k} is not a group config")),
                        Some(Err(e)) => Some(e),
                        Some(Ok(())) => None,
                    })
                {
                    return reject(RejectCode::InvalidCommand, bad);
                }
                let current = self.group_configs.get(group).cloned().unwrap_or_default();
                let config = altered_config(&current, set, delete, false);
                if config.is_empty() {
                    self.group_configs.remove(group);
                } else {
                    self.group_configs.insert(group.clone(), config.clone());
                }
                CommandResult::GroupConfig {
                    group: group.clone(),
                    config,
                }
            }
            Command::AllocateProducerIds { broker_id, count } => {
                if !self.brokers.contains_key(broker_id) {
                    return reject(
                        RejectCode::UnknownBroker,
                        format!("broker {broker_id} is not registered"),
                    );
                }
                if *count == 0 || *count > PRODUCER_ID_BLOCK_MAX {
                    return reject(
                        RejectCode::InvalidCommand,
                        format!("producer id block size must be 1..={PRODUCER_ID_BLOCK_MAX}"),
                    );
                }
                let first = self.next_producer_id;
                self.next_producer_id += i64::from(*count);
                CommandResult::ProducerIds {
                    first,
                    count: *count,
                }
            }
            Command::CommitOffsets { commits } => {
                // Each commit stands alone: commits of many groups share an entry, and one
                // invalid commit must never fail another group's (Kafka stores any offset
                // value, including the negative markers clients commit).
                let mut rejected = Vec::new();
                for (index, c) in commits.iter().enumerate() {
                    if let Err(reason) = self.check_offset_commit(c) {
                        rejected.push(RejectedCommit { index, reason });
                        continue;
                    }
                    self.groups
                        .entry(c.group_id.clone())
                        .or_default()
                        .offsets
                        .entry(c.topic.clone())
                        .or_default()
                        .insert(
                            c.partition,
                            CommittedOffset {
                                offset: c.offset,
                                leader_epoch: c.leader_epoch,
                                metadata: c.metadata.clone(),
                                commit_timestamp: c.commit_timestamp,
                            },
                        );
                }
                CommandResult::OffsetsCommitted {
                    count: commits.len() - rejected.len(),
                    rejected,
                }
            }
            Command::DeleteGroupOffsets { group, partitions } => {
                let Some(g) = self.groups.get_mut(group) else {
                    return reject(
                        RejectCode::UnknownGroup,
                        format!("group {group:?} has no committed offsets"),
                    );
                };
                let count = match partitions {
                    None => {
                        let n = g.offsets.values().map(BTreeMap::len).sum();
                        self.groups.remove(group);
                        n
                    }
                    Some(parts) => {
                        let mut n = 0;
                        for tp in parts {
                            if let Some(t) = g.offsets.get_mut(&tp.topic) {
                                n += usize::from(t.remove(&tp.partition).is_some());
                                if t.is_empty() {
                                    g.offsets.remove(&tp.topic);
                                }
                            }
                        }
                        if g.offsets.is_empty() {
                            self.groups.remove(group);
                        }
                        n
                    }
                };
                CommandResult::GroupOffsetsDeleted { count }
            }
            Command::AlterTopicConfig {
                name,
                set,
                delete,
                replace,
            } => match self.topics.get_mut(name) {
                Some(topic) => {
                    topic.config = altered_config(&topic.config, set, delete, *replace);
                    CommandResult::Topic(topic.clone())
                }
                None => reject(
                    RejectCode::UnknownTopic,
                    format!("topic {name:?} does not exist"),
                ),
            },
            Command::AlterBrokerConfig {
                broker,
                set,
                delete,
            } => {
                let configs = match broker {
                    Some(id) => self
                        .broker_configs
                        .brokers
                        .entry(id.to_string())
                        .or_default(),
                    None => &mut self.broker_configs.cluster,
                };
                *configs = altered_config(configs, set, delete, false);
                self.broker_configs.brokers.retain(|_, c| !c.is_empty());
                CommandResult::BrokerConfigs(self.broker_configs.clone())
            }
            Command::AlterPartition {
                broker_id,
                topic,
                partition,
                leader_epoch,
                partition_epoch,
                isr,
                added_epochs,
            } => {
                if let Err(rejected) = self.check_alter_partition(
                    *broker_id,
                    topic,
                    *partition,
                    *leader_epoch,
                    *partition_epoch,
                    isr,
                    added_epochs.as_deref(),
                ) {
                    return rejected;
                }
                let Some(p) = self.partition_mut(topic, *partition) else {
                    return reject(RejectCode::UnknownPartition, "checked above");
                };
                p.isr = isr.clone();
                p.partition_epoch += 1;
                CommandResult::Partition {
                    topic: topic.clone(),
                    partition: p.clone(),
                }
            }
        }
    }

    /// Why one offset commit cannot be stored, if it cannot: no group id, a topic or partition
    /// that does not exist (any more), or metadata over [`OFFSET_METADATA_MAX_BYTES`].
    fn apply_txn(&mut self, op: &TxnOp) -> CommandResult {
        let mut txns = Txns {
            transactions: &mut self.transactions,
            next_producer_id: &mut self.next_producer_id,
            topics: &self.topics,
        };
        match txns.apply(op) {
            Ok(applied) => {
                // A commit decision makes the transaction's offsets the groups' offsets in this
                // same entry (Kafka: visible with the marker in __consumer_offsets).
                let at = applied.transaction.last_update_ms;
                for o in &applied.committed_offsets {
                    let commit = OffsetCommit {
                        group_id: o.group.clone(),
                        topic: o.topic.clone(),
                        partition: o.partition,
                        offset: o.offset,
                        leader_epoch: o.leader_epoch,
                        metadata: o.metadata.clone(),
                        commit_timestamp: at,
                    };
                    // A topic deleted meanwhile: nothing to commit for it.
                    if self.check_offset_commit(&commit).is_err() {
                        continue;
                    }
                    self.groups
                        .entry(commit.group_id)
                        .or_default()
                        .offsets
                        .entry(commit.topic)
                        .or_default()
                        .insert(
                            commit.partition,
                            CommittedOffset {
                                offset: commit.offset,
                                leader_epoch: commit.leader_epoch,
                                metadata: commit.metadata,
                                commit_timestamp: at,
                            },
                        );
                }
                CommandResult::Txn {
                    transaction: Box::new(applied.transaction),
                }
            }
            Err(r) => CommandResult::TxnRefused {
                error: r.error,
                message: r.message,
            },
        }
    }

    /// [`Command::WriteShareStates`]: each write is stored when its partition exists and its
    /// leader epoch is the partition's current one (a deposed leader is fenced), and its
    /// snapshot is well formed.
    fn write_share_states(&mut self, writes: &[ShareStateWrite]) -> CommandResult {
        let mut rejected = Vec::new();
        let mut count = 0;
        for (index, w) in writes.iter().enumerate() {
            let refuse = |code: &str, reason: String| RejectedWrite {
                index,
                code: code.to_string(),
                reason,
            };
            let partition = self
                .topics
                .get(&w.topic)
                .and_then(|t| t.partitions.iter().find(|p| p.partition_id == w.partition));
            let stored = self
                .share_groups
                .get(&w.group)
                .and_then(|g| g.partitions.get(&w.topic))
                .and_then(|t| t.get(&w.partition));
            let check = match partition {
                _ if w.group.is_empty() => Err(refuse("INVALID_REQUEST", "empty group id".into())),
                None => Err(refuse(
                    "UNKNOWN_TOPIC_OR_PARTITION",
                    format!("{}-{} does not exist", w.topic, w.partition),
                )),
                Some(p) if p.leader_epoch != w.leader_epoch => Err(refuse(
                    "FENCED_LEADER_EPOCH",
                    format!(
                        "{}-{} is at leader epoch {}, the write has {}",
                        w.topic, w.partition, p.leader_epoch, w.leader_epoch
                    ),
                )),
                Some(_)
                    if stored.is_some_and(|s| w.snapshot.state_epoch < s.snapshot.state_epoch) =>
                {
                    Err(refuse(
                        "FENCED_STATE_EPOCH",
                        format!(
                            "{}-{} of {} was reset (state epoch {}), the write has {}",
                            w.topic,
                            w.partition,
                            w.group,
                            stored.map_or(0, |s| s.snapshot.state_epoch),
                            w.snapshot.state_epoch
                        ),
                    ))
                }
                Some(_) => dmq_share::SharePartition::from_snapshot(
                    dmq_share::ShareConfig::default(),
                    &w.snapshot,
                    0,
                )
                .map(|_| ())
                .map_err(|e| refuse("INVALID_REQUEST", e.to_string())),
            };
            if let Err(r) = check {
                rejected.push(r);
                continue;
            }
            // A higher state epoch is an administrator's reset (AlterShareGroupOffsets): leaders
            // holding the share-partition must load it again.
            if stored.is_some_and(|s| w.snapshot.state_epoch > s.snapshot.state_epoch) {
                *self.share_resets.entry(w.group.clone()).or_default() += 1;
            }
            self.share_groups
                .entry(w.group.clone())
                .or_default()
                .partitions
                .entry(w.topic.clone())
                .or_default()
                .insert(
                    w.partition,
                    StoredShareState {
                        leader_epoch: w.leader_epoch,
                        snapshot: w.snapshot.clone(),
                    },
                );
            count += 1;
        }
        CommandResult::ShareStatesWritten { count, rejected }
    }

    fn check_offset_commit(&self, c: &OffsetCommit) -> Result<(), String> {
        if c.group_id.is_empty() {
            return Err("the group id is empty".into());
        }
        let Some(topic) = self.topics.get(&c.topic) else {
            return Err(format!("topic {:?} does not exist", c.topic));
        };
        if c.partition < 0 || c.partition >= topic.num_partitions {
            return Err(format!(
                "partition {} of {:?} does not exist ({} partitions)",
                c.partition, c.topic, topic.num_partitions
            ));
        }
        if c.metadata
            .as_ref()
            .is_some_and(|m| m.len() > OFFSET_METADATA_MAX_BYTES)
        {
            return Err(format!(
                "metadata is longer than {OFFSET_METADATA_MAX_BYTES} bytes"
            ));
        }
        Ok(())
    }

    fn create_topic(
        &mut self,
        name: &str,
        topic_id: &str,
        config: &BTreeMap<String, String>,
        assignment: &[Vec<BrokerId>],
        timestamp_ms: u64,
    ) -> CommandResult {
        match self.new_topic(name, topic_id, config, assignment, timestamp_ms) {
            Ok(topic) => {
                self.topics.insert(name.to_string(), topic.clone());
                self.topics_created += 1;
                CommandResult::Topic(topic)
            }
            Err(rejected) => rejected,
        }
    }

    /// The topic a [`Command::CreateTopic`] would create, or why it would be rejected; changes
    /// nothing (validate-only requests use it as it is).
    pub fn new_topic(
        &self,
        name: &str,
        topic_id: &str,
        config: &BTreeMap<String, String>,
        assignment: &[Vec<BrokerId>],
        timestamp_ms: u64,
    ) -> Result<Topic, CommandResult> {
        if self.topics.contains_key(name) {
            return Err(reject(
                RejectCode::TopicAlreadyExists,
                format!("topic {name:?} already exists"),
            ));
        }
        let replication_factor = assignment.first().map_or(0, Vec::len);
        if assignment.is_empty()
            || replication_factor == 0
            || assignment.iter().any(|r| r.len() != replication_factor)
        {
            return Err(reject(
                RejectCode::InvalidCommand,
                "every partition needs the same, non-zero number of replicas",
            ));
        }
        let partitions = assignment
            .iter()
            .enumerate()
            .map(|(i, replicas)| Partition {
                partition_epoch: 0,
                partition_id: i as i32,
                leader: replicas[0],
                replicas: replicas.clone(),
                isr: replicas.clone(),
                leader_epoch: 0,
            })
            .collect();
        let topic = Topic {
            topic_name: name.to_string(),
            topic_id: topic_id.to_string(),
            num_partitions: assignment.len() as i32,
            replication_factor: replication_factor as i16,
            config: config.clone(),
            partitions,
            created_at: timestamp_ms,
        };
        Ok(topic)
    }

    fn create_partitions(&mut self, name: &str, assignment: &[Vec<BrokerId>]) -> CommandResult {
        let Some(topic) = self.topics.get_mut(name) else {
            return reject(
                RejectCode::UnknownTopic,
                format!("topic {name:?} does not exist"),
            );
        };
        let rf = topic.replication_factor as usize;
        let total = topic.partitions.len() + assignment.len();
        if assignment.is_empty() || total > TOPIC_PARTITIONS_MAX as usize {
            return reject(
                RejectCode::InvalidCommand,
                format!(
                    "a topic grows to {}..={TOPIC_PARTITIONS_MAX} partitions; {total} asked",
                    topic.partitions.len() + 1
                ),
            );
        }
        if assignment.iter().any(|r| r.len() != rf) {
            return reject(
                RejectCode::InvalidCommand,
                format!("every new partition needs {rf} replicas, the topic's replication factor"),
            );
        }
        let first = topic.partitions.len();
        for (i, replicas) in assignment.iter().enumerate() {
            topic.partitions.push(Partition {
                partition_epoch: 0,
                partition_id: (first + i) as i32,
                leader: replicas[0],
                replicas: replicas.clone(),
                isr: replicas.clone(),
                leader_epoch: 0,
            });
        }
        topic.num_partitions = topic.partitions.len() as i32;
        CommandResult::Topic(topic.clone())
    }

    /// Whether an AlterPartition would be applied, and if not the rejection (Kafka's
    /// AlterPartition checks): the requester leads at the given leader and partition epochs,
    /// the ISR holds the leader once and only replicas, and every added replica is ONLINE and,
    /// when `added_epochs` is given, still in the incarnation whose fetches the leader counted
    /// (KIP-903). Pure, so the controller checks before proposing and a refused change never
    /// reaches the Raft log.
    #[allow(clippy::too_many_arguments)]
    pub fn check_alter_partition(
        &self,
        broker_id: BrokerId,
        topic: &str,
        partition_id: i32,
        leader_epoch: LeaderEpoch,
        partition_epoch: i32,
        isr: &[BrokerId],
        added_epochs: Option<&[ReplicaEpoch]>,
    ) -> Result<(), CommandResult> {
        let Some(p) = self
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(partition_id as usize))
        else {
            return Err(reject(
                RejectCode::UnknownPartition,
                format!("{topic}-{partition_id} does not exist"),
            ));
        };
        if p.leader != broker_id {
            return Err(reject(
                RejectCode::NotLeader,
                format!(
                    "broker {broker_id} does not lead {topic}-{partition_id} (leader {})",
                    p.leader
                ),
            ));
        }
        if p.leader_epoch != leader_epoch {
            return Err(reject(
                RejectCode::StaleLeaderEpoch,
                format!(
                    "{topic}-{partition_id} is at leader epoch {}, the request has {leader_epoch}",
                    p.leader_epoch
                ),
            ));
        }
        if p.partition_epoch != partition_epoch {
            return Err(reject(
                RejectCode::StalePartitionEpoch,
                format!(
                    "{topic}-{partition_id} is at partition epoch {}, the request has {partition_epoch}",
                    p.partition_epoch
                ),
            ));
        }
        let mut sorted = isr.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != isr.len() || !isr.contains(&broker_id) {
            return Err(reject(
                RejectCode::InvalidCommand,
                "the ISR must contain the leader and no broker twice",
            ));
        }
        for b in isr {
            if !p.replicas.contains(b) {
                return Err(reject(
                    RejectCode::IneligibleReplica,
                    format!("broker {b} is not a replica of {topic}-{partition_id}"),
                ));
            }
            if p.isr.contains(b) {
                continue;
            }
            let Some(broker) = self
                .brokers
                .get(b)
                .filter(|x| x.status == BrokerStatus::Online)
            else {
                return Err(reject(
                    RejectCode::IneligibleReplica,
                    format!("broker {b} is not an ONLINE replica of {topic}-{partition_id}"),
                ));
            };
            if let Some(epochs) = added_epochs {
                let seen = epochs
                    .iter()
                    .find(|e| e.broker_id == *b)
                    .map(|e| e.broker_epoch);
                if seen != Some(broker.broker_epoch) {
                    return Err(reject(
                        RejectCode::IneligibleReplica,
                        format!(
                            "broker {b} registered again (broker epoch {}) since the fetches \
                             the leader counted (epoch {seen:?}); it must catch up anew",
                            broker.broker_epoch
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether broker `broker_id` may be unregistered: registered, OFFLINE, holding no
    /// replica. Pure, so the API checks before proposing (a refusal never reaches the log).
    pub fn check_unregister(&self, broker_id: BrokerId) -> Result<(), CommandResult> {
        let Some(b) = self.brokers.get(&broker_id) else {
            return Err(reject(
                RejectCode::UnknownBroker,
                format!("broker {broker_id} is not registered"),
            ));
        };
        if b.status == BrokerStatus::Online {
            return Err(reject(
                RejectCode::BrokerInUse,
                format!("broker {broker_id} is ONLINE; stop it first"),
            ));
        }
        let hosting = self
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
            .find(|(_, p)| p.replicas.contains(&broker_id));
        if let Some((t, p)) = hosting {
            return Err(reject(
                RejectCode::BrokerInUse,
                format!(
                    "broker {broker_id} holds a replica of {}-{}; move or delete it first",
                    t.topic_name, p.partition_id
                ),
            ));
        }
        Ok(())
    }

    fn partition_mut(&mut self, topic: &str, partition_id: i32) -> Option<&mut Partition> {
        self.topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(partition_id as usize))
    }

    /// A broker that registers again is a new process whose log may have lost its unflushed
    /// tail: it leaves every ISR that still has an ONLINE member besides it (and hands over the
    /// leaderships among them), and rejoins once it has fetched back to the high watermark.
    /// A partition where it is the only ONLINE in-sync replica keeps it: nothing better exists.
    /// (KRaft does the same on a registration after an unclean shutdown.)
    fn leave_isrs_after_restart(&mut self, broker_id: BrokerId) {
        let online: Vec<BrokerId> = self.online_brokers();
        for topic in self.topics.values_mut() {
            for p in &mut topic.partitions {
                if !p.isr.contains(&broker_id) {
                    continue;
                }
                let others: Vec<BrokerId> = p
                    .isr
                    .iter()
                    .copied()
                    .filter(|b| *b != broker_id && online.contains(b))
                    .collect();
                if others.is_empty() {
                    continue;
                }
                p.isr.retain(|b| *b != broker_id);
                if p.leader == broker_id {
                    p.leader = p
                        .replicas
                        .iter()
                        .copied()
                        .find(|b| others.contains(b))
                        .unwrap_or(others[0]);
                    p.leader_epoch += 1;
                }
                p.partition_epoch += 1;
            }
        }
    }

    /// All-or-nothing: one stale or unknown partition rejects the whole batch, so the controller
    /// re-reads the state and decides again.
    fn update_partitions(&mut self, changes: &[PartitionChange]) -> CommandResult {
        for change in changes {
            let Some(partition) = self.partition(&change.topic, change.partition) else {
                return reject(
                    RejectCode::UnknownPartition,
                    format!("{}-{} does not exist", change.topic, change.partition),
                );
            };
            if change.expected_partition_epoch >= 0
                && partition.partition_epoch != change.expected_partition_epoch
            {
                return reject(
                    RejectCode::StalePartitionEpoch,
                    format!(
                        "{}-{} is at partition epoch {}, the change expected {}",
                        change.topic,
                        change.partition,
                        partition.partition_epoch,
                        change.expected_partition_epoch
                    ),
                );
            }
            if partition.leader_epoch != change.expected_leader_epoch {
                return reject(
                    RejectCode::StaleLeaderEpoch,
                    format!(
                        "{}-{} is at leader epoch {}, the change expected {}",
                        change.topic,
                        change.partition,
                        partition.leader_epoch,
                        change.expected_leader_epoch
                    ),
                );
            }
            if change.isr.is_empty()
                || (change.leader != NO_LEADER && !change.isr.contains(&change.leader))
            {
                return reject(
                    RejectCode::InvalidCommand,
                    "the ISR must be non-empty and contain the leader",
                );
            }
        }
        for change in changes {
            if let Some(p) = self
                .topics
                .get_mut(&change.topic)
                .and_then(|t| t.partitions.get_mut(change.partition as usize))
            {
                p.leader = change.leader;
                p.isr = change.isr.clone();
                p.leader_epoch = change.leader_epoch;
                p.partition_epoch += 1;
            }
        }
        CommandResult::PartitionsUpdated {
            count: changes.len(),
        }
    }

    /// The partition `topic`-`partition`, if it exists.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&Partition> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get(topic)?.partitions.get(index)
    }

    /// Ids of the brokers currently ONLINE, ascending.
    pub fn online_brokers(&self) -> Vec<BrokerId> {
        self.brokers
            .values()
            .filter(|b| b.status == BrokerStatus::Online)
            .map(|b| b.broker_id)
            .collect()
    }

    /// Whether broker `id` is registered and ONLINE.
    pub fn is_online(&self, id: BrokerId) -> bool {
        self.brokers
            .get(&id)
            .is_some_and(|b| b.status == BrokerStatus::Online)
    }

    /// Total partitions over all topics.
    pub fn total_partitions(&self) -> usize {
        self.topics.values().map(|t| t.partitions.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(state: &mut MetadataState, index: u64, id: BrokerId) {
        state.apply(
            index,
            &Command::RegisterBroker {
                broker_id: id,
                host: "localhost".into(),
                port: 8000 + id as u16,
                kafka_port: 19000 + id as u16,
                timestamp_ms: 1_000,
                incarnation_id: None,
            },
        );
    }

    fn create(name: &str, assignment: Vec<Vec<BrokerId>>) -> Command {
        Command::CreateTopic {
            name: name.into(),
            topic_id: format!("id-{name}"),
            config: BTreeMap::new(),
            assignment,
            timestamp_ms: 2_000,
        }
    }

    #[test]
    fn kip932_share_state_writes_are_fenced_by_the_leader_epoch_and_go_with_the_topic() {
        let mut state = MetadataState::default();
        register(&mut state, 1, 101);
        register(&mut state, 2, 102);
        state.apply(3, &create("q", vec![vec![101, 102]]));
        let snapshot = |end: i64| dmq_share::ShareSnapshot {
            version: 1,
            state_epoch: 0,
            start_offset: 0,
            end_offset: end,
            state_batches: vec![dmq_share::StateBatch {
                first_offset: 0,
                last_offset: end - 1,
                delivery_state: dmq_share::RecordState::Acquired,
                delivery_count: 1,
            }],
            acknowledged_total: 0,
            archived_total: 0,
            dead_lettered_total: 0,
        };
        let write = |epoch: i32, partition: i32, end: i64| ShareStateWrite {
            group: "g".into(),
            topic: "q".into(),
            partition,
            leader_epoch: epoch,
            snapshot: snapshot(end),
        };
        let codes = |r: CommandResult| match r {
            CommandResult::ShareStatesWritten { count, rejected } => (
                count,
                rejected.into_iter().map(|r| r.code).collect::<Vec<_>>(),
            ),
            other => panic!("unexpected {other:?}"),
        };
        let mut bad = write(0, 0, 5);
        bad.snapshot.state_batches[0].last_offset = 9; // past its own end offset
        assert_eq!(
            codes(state.apply(
                4,
                &Command::WriteShareStates {
                    writes: vec![write(0, 0, 5), write(0, 7, 5), bad]
                }
            )),
            (
                1,
                vec![
                    "UNKNOWN_TOPIC_OR_PARTITION".into(),
                    "INVALID_REQUEST".into()
                ]
            )
        );
        // A new leader (epoch 1): the deposed leader's writes are refused from now on.
        let p = state.partition("q", 0).expect("partition").clone();
        state.apply(
            5,
            &Command::UpdatePartitions {
                changes: vec![PartitionChange::new_leader("q", &p, 102, vec![102])],
            },
        );
        assert_eq!(
            codes(state.apply(
                6,
                &Command::WriteShareStates {
                    writes: vec![write(0, 0, 9)]
                }
            )),
            (0, vec!["FENCED_LEADER_EPOCH".into()])
        );
        assert_eq!(
            codes(state.apply(
                7,
                &Command::WriteShareStates {
                    writes: vec![write(1, 0, 9)]
                }
            )),
            (1, vec![])
        );
        let stored = &state.share_groups["g"].partitions["q"][&0];
        assert_eq!((stored.leader_epoch, stored.snapshot.end_offset), (1, 9));
        // The topic's deletion takes its share states.
        state.apply(8, &Command::DeleteTopic { name: "q".into() });
        assert!(state.share_groups.is_empty());
    }

    #[test]
    fn kip932_an_admin_reset_fences_the_leaders_older_copy_and_is_counted() {
        let mut state = MetadataState::default();
        register(&mut state, 1, 101);
        state.apply(2, &create("q", vec![vec![101]]));
        let write = |state_epoch: i32, start: i64| Command::WriteShareStates {
            writes: vec![ShareStateWrite {
                group: "g".into(),
                topic: "q".into(),
                partition: 0,
                leader_epoch: 0,
                snapshot: dmq_share::ShareSnapshot {
                    version: 1,
                    state_epoch,
                    start_offset: start,
                    end_offset: start,
                    state_batches: vec![],
                    acknowledged_total: 0,
                    archived_total: 0,
                    dead_lettered_total: 0,
                },
            }],
        };
        let refused = |r: CommandResult| match r {
            CommandResult::ShareStatesWritten { rejected, .. } => {
                rejected.into_iter().map(|r| r.code).collect::<Vec<_>>()
            }
            other => panic!("unexpected {other:?}"),
        };
        assert!(refused(state.apply(3, &write(0, 10))).is_empty());
        assert!(
            state.share_resets.is_empty(),
            "a leader's write is no reset"
        );
        // AlterShareGroupOffsets: the next state epoch.
        assert!(refused(state.apply(4, &write(1, 50))).is_empty());
        assert_eq!(state.share_resets["g"], 1);
        // The leader's copy from before the reset is refused.
        assert_eq!(
            refused(state.apply(5, &write(0, 12))),
            vec!["FENCED_STATE_EPOCH"]
        );
        assert_eq!(
            state.share_groups["g"].partitions["q"][&0]
                .snapshot
                .start_offset,
            50
        );
        // DeleteShareGroupOffsets counts too.
        state.apply(
            6,
            &Command::DeleteShareStates {
                group: "g".into(),
                partitions: Some(vec![TopicPartitionRef {
                    topic: "q".into(),
                    partition: 0,
                }]),
            },
        );
        assert_eq!(state.share_resets["g"], 2);
        assert!(state.share_groups.is_empty());
    }

    #[test]
    fn group_configs_are_checked_altered_and_deleted() {
        let mut state = MetadataState::default();
        let alter = |set: &[(&str, &str)], delete: &[&str]| Command::AlterGroupConfig {
            group: "g".into(),
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            delete: delete.iter().map(|k| k.to_string()).collect(),
        };
        assert!(matches!(
            state.apply(1, &alter(&[("retention.ms", "1")], &[])),
            CommandResult::Rejected {
                code: RejectCode::InvalidCommand,
                ..
            }
        ));
        state.apply(
            2,
            &alter(
                &[
                    ("share.auto.offset.reset", "earliest"),
                    ("share.dlq.topic", "dlq"),
                ],
                &[],
            ),
        );
        state.apply(3, &alter(&[], &["share.dlq.topic"]));
        assert_eq!(
            state.group_configs["g"],
            BTreeMap::from([(
                "share.auto.offset.reset".to_string(),
                "earliest".to_string()
            )])
        );
        state.apply(4, &alter(&[], &["share.auto.offset.reset"]));
        assert!(state.group_configs.is_empty());
    }

    #[test]
    fn version_is_the_last_applied_index() {
        let mut state = MetadataState::default();
        register(&mut state, 7, 101);
        assert_eq!(state.version, 7);
        state.apply(9, &Command::DeleteTopic { name: "x".into() });
        assert_eq!(
            state.version, 9,
            "a rejected command still advances the version"
        );
    }

    #[test]
    fn a_batch_applies_in_order_and_rejects_only_what_does_not_fit() {
        let mut state = MetadataState::default();
        register(&mut state, 1, 101);
        let batch = Command::Batch {
            commands: vec![
                create("a", vec![vec![101]]),
                create("a", vec![vec![101]]),
                Command::DeleteTopic { name: "b".into() },
                create("b", vec![vec![101]]),
                Command::DeleteTopic { name: "b".into() },
            ],
        };
        // What travels in the log reads back as the same command.
        let json = serde_json::to_string(&batch).expect("encode");
        let decoded: Command = serde_json::from_str(&json).expect("decode");
        assert_eq!(decoded, batch);

        let CommandResult::Batch { results } = state.apply(5, &batch) else {
            panic!("a batch answers with one result per command");
        };
        let kinds: Vec<&str> = results
            .iter()
            .map(|r| match r {
                CommandResult::Topic(_) => "topic",
                CommandResult::TopicDeleted { .. } => "deleted",
                CommandResult::Rejected {
                    code: RejectCode::TopicAlreadyExists,
                    ..
                } => "duplicate",
                CommandResult::Rejected {
                    code: RejectCode::UnknownTopic,
                    ..
                } => "unknown",
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(kinds, ["topic", "duplicate", "unknown", "topic", "deleted"]);
        assert_eq!(state.version, 5);
        assert_eq!(state.topics.keys().collect::<Vec<_>>(), ["a"]);

        // Applying the same commands one by one reaches the same state.
        let mut one_by_one = MetadataState::default();
        register(&mut one_by_one, 1, 101);
        let Command::Batch { commands } = &batch else {
            unreachable!()
        };
        for c in commands {
            one_by_one.apply(5, c);
        }
        assert_eq!(one_by_one, state);
    }

    #[test]
    fn create_partitions_appends_numbered_partitions_with_the_topic_rf() {
        let mut state = MetadataState::default();
        register(&mut state, 1, 101);
        register(&mut state, 2, 102);
        state.apply(3, &create("t", vec![vec![101, 102], vec![102, 101]]));
        let add = |assignment: Vec<Vec<BrokerId>>| Command::CreatePartitions {
            name: "t".into(),
            assignment,
        };
        let rejected = |r: CommandResult| match r {
            CommandResult::Rejected { code, .. } => code,
            other => panic!("accepted: {other:?}"),
        };
        let before = state.clone();
        assert_eq!(
            rejected(state.apply(4, &add(vec![vec![101]]))),
            RejectCode::InvalidCommand,
            "RF 1 for an RF 2 topic"
        );
        assert_eq!(
            rejected(state.apply(5, &add(vec![]))),
            RejectCode::InvalidCommand
        );
        assert_eq!(
            rejected(state.apply(6, &add(vec![vec![101, 102]; 9_999]))),
            RejectCode::InvalidCommand,
            "past {TOPIC_PARTITIONS_MAX}"
        );
        assert_eq!(
            rejected(state.apply(
                7,
                &Command::CreatePartitions {
                    name: "nope".into(),
                    assignment: vec![vec![101, 102]]
                }
            )),
            RejectCode::UnknownTopic
        );
        assert_eq!(
            MetadataState {
                version: before.version,
                ..state.clone()
            },
            before,
            "rejections change nothing"
        );

        let CommandResult::Topic(t) = state.apply(8, &add(vec![vec![101, 102], vec![102, 101]]))
        else {
            panic!("not applied");
        };
        assert_eq!(t.num_partitions, 4);
        let ids: Vec<i32> = t.partitions.iter().map(|p| p.partition_id).collect();
        assert_eq!(ids, [0, 1, 2, 3]);
        assert_eq!(t.partitions[3].leader, 102);
        assert_eq!(t.partitions[3].isr, vec![102, 101]);
        assert_eq!(state.topics["t"], t);
    }

    #[test]
    fn estimated_bytes_bound_the_encoded_size() {
        let mut config = BTreeMap::new();
        config.insert("retention.ms".to_string(), "86400000".to_string());
        let commands = vec![
            Command::CreateTopic {
                name: "orders".into(),
                topic_id: uuid_like(),
                config,
                assignment: (0..1000).map(|p| vec![p % 7 + 101, 1_000_000]).collect(),
                timestamp_ms: u64::MAX,
            },
            Command::CommitOffsets {
                commits: (0..100)
                    .map(|p| OffsetCommit {
                        group_id: "group-with-a-long-name".into(),
                        topic: "orders".into(),
                        partition: p,
                        offset: i64::MAX,
                        leader_epoch: i32::MAX,
                        metadata: Some("\"quoted\" \u{1}".into()),
                        commit_timestamp: u64::MAX,
                    })
                    .collect(),
            },
            Command::UpdatePartitions {
                changes: (0..100)
                    .map(|p| PartitionChange {
                        topic: "orders".into(),
                        partition: p,
                        expected_leader_epoch: i32::MAX,
                        expected_partition_epoch: i32::MAX,
                        leader: 101,
                        isr: vec![101, 102, 103],
                        leader_epoch: i32::MAX,
                    })
                    .collect(),
            },
            Command::CreatePartitions {
                name: "orders".into(),
                assignment: vec![vec![1_000_000, 1_000_001, 1_000_002]; 100],
            },
            Command::AlterTopicConfig {
                name: "orders\u{1}".into(),
                set: [("retention.ms".to_string(), "\u{2}".repeat(50))].into(),
                delete: vec!["segment.bytes".into(), "\u{3}".into()],
                replace: true,
            },
            Command::AlterBrokerConfig {
                broker: Some(i32::MAX),
                set: [("log.retention.ms".to_string(), "\u{2}".repeat(50))].into(),
                delete: vec!["min.insync.replicas".into(), "\u{3}".into()],
            },
            Command::AlterPartition {
                broker_id: 101,
                topic: "orders".into(),
                partition: i32::MAX,
                leader_epoch: i32::MAX,
                partition_epoch: i32::MAX,
                isr: vec![101, 102, 103],
                added_epochs: Some(
                    (101..104)
                        .map(|b| ReplicaEpoch {
                            broker_id: b,
                            broker_epoch: u64::MAX,
                        })
                        .collect(),
                ),
            },
            Command::UpdateBrokerStatus {
                broker_id: 101,
                status: BrokerStatus::Offline,
                timestamp_ms: u64::MAX,
            },
            Command::UnregisterBroker {
                broker_id: i32::MIN,
            },
        ];
        let batch = Command::Batch {
            commands: commands.clone(),
        };
        for c in commands.iter().chain([&batch]) {
            let bytes = serde_json::to_vec(c).expect("encode");
            let encoded = bytes.len();
            assert!(
                c.estimated_bytes() >= encoded,
                "estimate {} < {encoded} for {c:?}",
                c.estimated_bytes()
            );
            // Every node must read back what the leader wrote (an entry a follower cannot
            // decode stalls the quorum).
            let decoded: Command = serde_json::from_slice(&bytes).expect("decode");
            assert_eq!(&decoded, c);
        }
    }

    fn uuid_like() -> String {
        "0f8fad5b-d9cb-469f-a165-70867728950e".into()
    }

    #[test]
    fn producer_id_blocks_never_overlap_and_need_a_registered_broker() {
        let mut state = MetadataState::default();
        let ask = |broker_id, count| Command::AllocateProducerIds { broker_id, count };
        assert!(matches!(
            state.apply(1, &ask(101, 10)),
            CommandResult::Rejected {
                code: RejectCode::UnknownBroker,
                ..
            }
        ));
        register(&mut state, 2, 101);
        register(&mut state, 3, 102);
        assert_eq!(
            state.apply(4, &ask(101, 10)),
            CommandResult::ProducerIds {
                first: 0,
                count: 10
            }
        );
        assert_eq!(
            state.apply(5, &ask(102, 1000)),
            CommandResult::ProducerIds {
                first: 10,
                count: 1000
            }
        );
        assert!(matches!(
            state.apply(6, &ask(101, 0)),
            CommandResult::Rejected { .. }
        ));
        assert_eq!(state.next_producer_id, 1010);
    }

    #[test]
    fn offsets_commit_in_batches_and_delete_by_partition_or_group() {
        let mut state = MetadataState::default();
        state.apply(1, &create("t", vec![vec![1], vec![1]]));
        state.apply(1, &create("u", vec![vec![1]]));
        let commit = |group: &str, topic: &str, partition, offset| OffsetCommit {
            group_id: group.into(),
            topic: topic.into(),
            partition,
            offset,
            leader_epoch: 3,
            metadata: Some("m".into()),
            commit_timestamp: 42,
        };
        let r = state.apply(
            1,
            &Command::CommitOffsets {
                commits: vec![
                    commit("g1", "t", 0, 10),
                    commit("g1", "t", 1, 20),
                    commit("g2", "u", 0, 5),
                ],
            },
        );
        assert_eq!(
            r,
            CommandResult::OffsetsCommitted {
                count: 3,
                rejected: vec![]
            }
        );
        state.apply(
            2,
            &Command::CommitOffsets {
                commits: vec![commit("g1", "t", 0, 11)],
            },
        );
        assert_eq!(state.groups["g1"].offsets["t"][&0].offset, 11);
        assert_eq!(
            state.groups["g1"].offsets["t"][&1].metadata.as_deref(),
            Some("m")
        );
        // Bad entries fail alone; every good one in the same entry is stored, and any offset
        // value (the -1/-2 reset markers, or below) is a good one, as in Kafka.
        let mut long = commit("g4", "t", 0, 1);
        long.metadata = Some("x".repeat(OFFSET_METADATA_MAX_BYTES + 1));
        let r = state.apply(
            3,
            &Command::CommitOffsets {
                commits: vec![
                    commit("", "t", 0, 1),
                    commit("g1", "t", 0, -2),
                    commit("g5", "nope", 0, 1),
                    commit("g5", "t", 2, 1),
                    commit("g5", "t", -1, 1),
                    long,
                    commit("g6", "u", 0, -7),
                ],
            },
        );
        let CommandResult::OffsetsCommitted { count, rejected } = r else {
            panic!("{r:?}");
        };
        assert_eq!(count, 2);
        let indexes: Vec<usize> = rejected.iter().map(|r| r.index).collect();
        assert_eq!(indexes, vec![0, 2, 3, 4, 5]);
        assert!(rejected[1].reason.contains("nope"), "{rejected:?}");
        assert_eq!(state.groups["g1"].offsets["t"][&0].offset, -2);
        assert_eq!(state.groups["g6"].offsets["u"][&0].offset, -7);
        assert!(!state.groups.contains_key("g4") && !state.groups.contains_key("g5"));
        assert!(!state.groups.contains_key(""));
        state.apply(
            3,
            &Command::CommitOffsets {
                commits: vec![commit("g1", "t", 0, 11)],
            },
        );
        state.groups.remove("g6");
        let one = vec![TopicPartitionRef {
            topic: "t".into(),
            partition: 1,
        }];
        let r = state.apply(
            4,
            &Command::DeleteGroupOffsets {
                group: "g1".into(),
                partitions: Some(one),
            },
        );
        assert_eq!(r, CommandResult::GroupOffsetsDeleted { count: 1 });
        let r = state.apply(
            5,
            &Command::DeleteGroupOffsets {
                group: "g2".into(),
                partitions: None,
            },
        );
        assert_eq!(r, CommandResult::GroupOffsetsDeleted { count: 1 });
        assert!(!state.groups.contains_key("g2"));
        let r = state.apply(
            6,
            &Command::DeleteGroupOffsets {
                group: "g2".into(),
                partitions: None,
            },
        );
        assert!(matches!(
            r,
            CommandResult::Rejected {
                code: RejectCode::UnknownGroup,
                ..
            }
        ));
        // Deleting a topic drops its committed offsets, and groups left with none.
        state.apply(
            8,
            &Command::CommitOffsets {
                commits: vec![commit("g3", "t", 0, 1), commit("g3", "u", 0, 2)],
            },
        );
        state.apply(9, &Command::DeleteTopic { name: "t".into() });
        assert!(!state.groups.contains_key("g1"), "g1 only had offsets of t");
        assert!(!state.groups["g3"].offsets.contains_key("t"));
        assert_eq!(state.groups["g3"].offsets["u"][&0].offset, 2);
    }

    #[test]
    fn alter_partition_is_fenced_by_leader_partition_epoch_and_liveness() {
        let mut state = MetadataState::default();
        for (i, id) in [1, 2, 3].into_iter().enumerate() {
            register(&mut state, i as u64 + 1, id);
        }
        state.apply(4, &create("t", vec![vec![1, 2, 3]]));
        let alter = |broker_id, leader_epoch, partition_epoch, isr: Vec<BrokerId>| {
            Command::AlterPartition {
                broker_id,
                topic: "t".into(),
                partition: 0,
                leader_epoch,
                partition_epoch,
                isr,
                added_epochs: None,
            }
        };
        let code = |r: CommandResult| match r {
            CommandResult::Rejected { code, .. } => Some(code),
            _ => None,
        };
        // Only the leader, at the current epochs, with itself in the new ISR.
        assert_eq!(
            code(state.apply(5, &alter(2, 0, 0, vec![2]))),
            Some(RejectCode::NotLeader)
        );
        assert_eq!(
            code(state.apply(6, &alter(1, 1, 0, vec![1]))),
            Some(RejectCode::StaleLeaderEpoch)
        );
        assert_eq!(
            code(state.apply(7, &alter(1, 0, 3, vec![1]))),
            Some(RejectCode::StalePartitionEpoch)
        );
        assert_eq!(
            code(state.apply(8, &alter(1, 0, 0, vec![2, 3]))),
            Some(RejectCode::InvalidCommand)
        );
        assert_eq!(
            code(state.apply(9, &alter(1, 0, 0, vec![1, 4]))),
            Some(RejectCode::IneligibleReplica)
        );
        // Shrink: the partition epoch moves, the leader epoch does not.
        let shrunk = state.apply(10, &alter(1, 0, 0, vec![1, 2]));
        let CommandResult::Partition { partition, .. } = shrunk else {
            panic!("{shrunk:?}");
        };
        assert_eq!(
            (
                partition.isr,
                partition.leader_epoch,
                partition.partition_epoch
            ),
            (vec![1, 2], 0, 1)
        );
        // The same request again is stale now.
        assert_eq!(
            code(state.apply(11, &alter(1, 0, 0, vec![1]))),
            Some(RejectCode::StalePartitionEpoch)
        );
        // An OFFLINE broker cannot rejoin; once ONLINE it can.
        state.apply(
            12,
            &Command::UpdateBrokerStatus {
                broker_id: 3,
                status: BrokerStatus::Offline,
                timestamp_ms: 0,
            },
        );
        assert_eq!(
            code(state.apply(13, &alter(1, 0, 1, vec![1, 2, 3]))),
            Some(RejectCode::IneligibleReplica)
        );
        state.apply(
            14,
            &Command::UpdateBrokerStatus {
                broker_id: 3,
                status: BrokerStatus::Online,
                timestamp_ms: 0,
            },
        );
        assert_eq!(code(state.apply(15, &alter(1, 0, 1, vec![1, 2, 3]))), None);
        assert_eq!(state.topics["t"].partitions[0].partition_epoch, 2);
    }

    /// KIP-903: a replica joins the ISR only on progress fetched in its current incarnation,
    /// and a broker that registers again (a restart, whose unflushed tail may be gone) leaves
    /// every ISR that has another ONLINE member, handing over its leaderships.
    #[test]
    fn a_restarted_broker_leaves_isrs_and_rejoins_only_with_its_current_broker_epoch() {
        let mut state = MetadataState::default();
        for (i, id) in [1, 2, 3].into_iter().enumerate() {
            register(&mut state, i as u64 + 1, id);
        }
        assert_eq!(
            state.brokers[&3].broker_epoch, 3,
            "the registration's index"
        );
        state.apply(4, &create("t", vec![vec![1, 2, 3], vec![3, 1, 2]]));
        state.apply(5, &create("solo", vec![vec![3, 1]]));
        state.apply(
            6,
            &Command::UpdateBrokerStatus {
                broker_id: 1,
                status: BrokerStatus::Offline,
                timestamp_ms: 0,
            },
        );
        // Broker 3 restarts: epoch 7. It leaves t-0's ISR; it led t-1, which moves to the next
        // ONLINE ISR member (2; 1 is OFFLINE) at a new leader epoch. In "solo" its only peer is
        // OFFLINE, so it stays: nothing better exists.
        register(&mut state, 7, 3);
        assert_eq!(state.brokers[&3].broker_epoch, 7);
        let t = &state.topics["t"];
        assert_eq!(
            (t.partitions[0].isr.clone(), t.partitions[0].partition_epoch),
            (vec![1, 2], 1)
        );
        assert_eq!(
            (
                t.partitions[1].leader,
                t.partitions[1].leader_epoch,
                t.partitions[1].isr.clone()
            ),
            (2, 1, vec![1, 2])
        );
        let solo = &state.topics["solo"].partitions[0];
        assert_eq!(
            (solo.leader, solo.isr.clone(), solo.leader_epoch),
            (3, vec![3, 1], 0)
        );

        let epochs_of = |pairs: &[(BrokerId, u64)]| -> Vec<ReplicaEpoch> {
            pairs
                .iter()
                .map(|(broker_id, broker_epoch)| ReplicaEpoch {
                    broker_id: *broker_id,
                    broker_epoch: *broker_epoch,
                })
                .collect()
        };
        let expand = |epochs: &[(BrokerId, u64)]| Command::AlterPartition {
            broker_id: 1,
            topic: "t".into(),
            partition: 0,
            leader_epoch: 0,
            partition_epoch: 1,
            isr: vec![1, 2, 3],
            added_epochs: Some(epochs_of(epochs)),
        };
        // Progress the leader counted from the earlier incarnation (epoch 3), or none at all.
        for stale in [&[(3, 3)][..], &[]] {
            let check =
                state.check_alter_partition(1, "t", 0, 0, 1, &[1, 2, 3], Some(&epochs_of(stale)));
            assert!(
                matches!(
                    check,
                    Err(CommandResult::Rejected {
                        code: RejectCode::IneligibleReplica,
                        ..
                    })
                ),
                "{check:?}"
            );
            assert!(matches!(
                state.apply(8, &expand(stale)),
                CommandResult::Rejected {
                    code: RejectCode::IneligibleReplica,
                    ..
                }
            ));
        }
        assert_eq!(state.topics["t"].partitions[0].isr, vec![1, 2]);
        // Progress of the current incarnation: admitted.
        assert!(state
            .check_alter_partition(1, "t", 0, 0, 1, &[1, 2, 3], Some(&epochs_of(&[(3, 7)])))
            .is_ok());
        assert!(matches!(
            state.apply(9, &expand(&[(3, 7)])),
            CommandResult::Partition { .. }
        ));
        assert_eq!(state.topics["t"].partitions[0].isr, vec![1, 2, 3]);

        // The same process registering again (it lost the controller for a while) keeps its
        // epoch and its ISR places; another process is a restart.
        let again = |index, incarnation: &str| {
            (
                index,
                Command::RegisterBroker {
                    broker_id: 3,
                    host: "localhost".into(),
                    port: 8003,
                    kafka_port: 19003,
                    timestamp_ms: 1_000,
                    incarnation_id: Some(incarnation.into()),
                },
            )
        };
        let (i, c) = again(10, "process-a");
        state.apply(i, &c);
        assert_eq!(state.brokers[&3].broker_epoch, 10, "a new process");
        assert_eq!(state.topics["t"].partitions[0].isr, vec![1, 2]);
        assert!(
            matches!(
                state.apply(11, &expand(&[(3, 10)])),
                CommandResult::Rejected { .. }
            ),
            "stale partition epoch: re-read"
        );
        let p = state.topics["t"].partitions[0].partition_epoch;
        let grow = Command::AlterPartition {
            broker_id: 1,
            topic: "t".into(),
            partition: 0,
            leader_epoch: 0,
            partition_epoch: p,
            isr: vec![1, 2, 3],
            added_epochs: Some(epochs_of(&[(3, 10)])),
        };
        assert!(matches!(
            state.apply(12, &grow),
            CommandResult::Partition { .. }
        ));
        let (i, c) = again(13, "process-a");
        state.apply(i, &c);
        assert_eq!(
            state.brokers[&3].broker_epoch, 10,
            "the same process keeps its epoch"
        );
        assert_eq!(
            state.topics["t"].partitions[0].isr,
            vec![1, 2, 3],
            "and its ISR place"
        );
        let (i, c) = again(14, "process-b");
        state.apply(i, &c);
        assert_eq!(state.brokers[&3].broker_epoch, 14);
        assert_eq!(state.topics["t"].partitions[0].isr, vec![1, 2]);
    }

    #[test]
    fn only_an_offline_broker_without_replicas_can_be_unregistered() {
        let mut state = MetadataState::default();
        for (i, id) in [1, 2, 3].into_iter().enumerate() {
            register(&mut state, i as u64 + 1, id);
        }
        state.apply(4, &create("t", vec![vec![1, 2]]));
        let code = |r: CommandResult| match r {
            CommandResult::Rejected { code, .. } => Some(code),
            _ => None,
        };
        let gone = |id| Command::UnregisterBroker { broker_id: id };
        assert_eq!(
            code(state.apply(5, &gone(3))),
            Some(RejectCode::BrokerInUse),
            "ONLINE"
        );
        for id in [2, 3] {
            state.apply(
                6,
                &Command::UpdateBrokerStatus {
                    broker_id: id,
                    status: BrokerStatus::Offline,
                    timestamp_ms: 0,
                },
            );
        }
        assert_eq!(
            code(state.apply(7, &gone(2))),
            Some(RejectCode::BrokerInUse),
            "holds t-0"
        );
        assert_eq!(
            state.apply(8, &gone(3)),
            CommandResult::BrokerUnregistered { broker_id: 3 }
        );
        assert!(!state.brokers.contains_key(&3));
        assert_eq!(
            code(state.apply(9, &gone(3))),
            Some(RejectCode::UnknownBroker)
        );
    }

    #[test]
    fn topic_configs_are_set_deleted_or_replaced() {
        let mut state = MetadataState::default();
        let mut create = create("t", vec![vec![1]]);
        if let Command::CreateTopic { config, .. } = &mut create {
            config.insert("retention.ms".into(), "1000".into());
            config.insert("segment.bytes".into(), "1048576".into());
        }
        state.apply(1, &create);
        let alter = |set: &[(&str, &str)], delete: &[&str], replace| Command::AlterTopicConfig {
            name: "t".into(),
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            delete: delete.iter().map(|k| k.to_string()).collect(),
            replace,
        };
        let config = |state: &MetadataState| -> Vec<(String, String)> {
            state.topics["t"].config.clone().into_iter().collect()
        };
        state.apply(
            2,
            &alter(&[("min.insync.replicas", "2")], &["segment.bytes"], false),
        );
        assert_eq!(
            config(&state),
            vec![
                ("min.insync.replicas".into(), "2".into()),
                ("retention.ms".into(), "1000".into())
            ]
        );
        state.apply(3, &alter(&[("cleanup.policy", "compact")], &[], true));
        assert_eq!(
            config(&state),
            vec![("cleanup.policy".into(), "compact".into())]
        );
        let mut missing = alter(&[], &[], false);
        if let Command::AlterTopicConfig { name, .. } = &mut missing {
            *name = "nope".into();
        }
        assert!(matches!(
            state.apply(4, &missing),
            CommandResult::Rejected {
                code: RejectCode::UnknownTopic,
                ..
            }
        ));
    }

    #[test]
    fn broker_configs_are_set_and_deleted_per_broker_and_for_the_cluster() {
        let mut state = MetadataState::default();
        let alter = |broker, set: &[(&str, &str)], delete: &[&str]| Command::AlterBrokerConfig {
            broker,
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            delete: delete.iter().map(|k| k.to_string()).collect(),
        };
        state.apply(1, &alter(None, &[("log.retention.ms", "1000")], &[]));
        state.apply(2, &alter(Some(2), &[("min.insync.replicas", "2")], &[]));
        assert_eq!(state.broker_configs.cluster["log.retention.ms"], "1000");
        assert_eq!(
            state.broker_configs.brokers["2"]["min.insync.replicas"],
            "2"
        );
        let result = state.apply(3, &alter(Some(2), &[], &["min.insync.replicas"]));
        assert!(matches!(result, CommandResult::BrokerConfigs(c) if c.brokers.is_empty()));
        state.apply(4, &alter(None, &[], &["log.retention.ms"]));
        assert_eq!(state.broker_configs, BrokerConfigs::default());
        // A snapshot keeps them; one written before they existed reads as none.
        state.apply(5, &alter(None, &[("message.max.bytes", "2000")], &[]));
        let text = serde_json::to_string(&state).expect("serialize");
        let back: MetadataState = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back.broker_configs, state.broker_configs);
        let mut old: serde_json::Value = serde_json::from_str(&text).expect("json");
        old.as_object_mut()
            .expect("object")
            .remove("broker_configs");
        old.as_object_mut().expect("object").remove("brokerConfigs");
        let back: MetadataState = serde_json::from_value(old).expect("old snapshot");
        assert_eq!(back.broker_configs, BrokerConfigs::default());
    }

    #[test]
    fn create_topic_sets_leaders_and_isr_from_assignment() {
        let mut state = MetadataState::default();
        let result = state.apply(1, &create("orders", vec![vec![1, 2], vec![2, 3]]));
        let CommandResult::Topic(topic) = result else {
            panic!("unexpected {result:?}");
        };
        assert_eq!(topic.num_partitions, 2);
        assert_eq!(topic.replication_factor, 2);
        assert_eq!(topic.partitions[1].leader, 2);
        assert_eq!(topic.partitions[1].isr, vec![2, 3]);
        assert_eq!(state.topics_created, 1);
    }

    #[test]
    fn duplicate_topic_is_rejected_and_changes_nothing() {
        let mut state = MetadataState::default();
        state.apply(1, &create("orders", vec![vec![1]]));
        let before = state.clone();
        let result = state.apply(2, &create("orders", vec![vec![2], vec![3]]));
        assert!(matches!(
            result,
            CommandResult::Rejected {
                code: RejectCode::TopicAlreadyExists,
                ..
            }
        ));
        assert_eq!(state.topics, before.topics);
    }

    #[test]
    fn stale_partition_change_is_fenced_by_epoch() {
        let mut state = MetadataState::default();
        state.apply(1, &create("t", vec![vec![1, 2]]));
        let change = |expected, epoch| PartitionChange {
            topic: "t".into(),
            partition: 0,
            expected_leader_epoch: expected,
            expected_partition_epoch: -1,
            leader: 2,
            isr: vec![2],
            leader_epoch: epoch,
        };
        let ok = state.apply(
            2,
            &Command::UpdatePartitions {
                changes: vec![change(0, 1)],
            },
        );
        assert_eq!(ok, CommandResult::PartitionsUpdated { count: 1 });
        let stale = state.apply(
            3,
            &Command::UpdatePartitions {
                changes: vec![change(0, 1)],
            },
        );
        assert!(matches!(
            stale,
            CommandResult::Rejected {
                code: RejectCode::StaleLeaderEpoch,
                ..
            }
        ));
        assert_eq!(state.partition("t", 0).map(|p| p.leader_epoch), Some(1));
    }

    #[test]
    fn broker_status_round_trip() {
        let mut state = MetadataState::default();
        register(&mut state, 1, 5);
        state.apply(
            2,
            &Command::UpdateBrokerStatus {
                broker_id: 5,
                status: BrokerStatus::Offline,
                timestamp_ms: 3,
            },
        );
        assert!(!state.is_online(5));
        assert!(state.online_brokers().is_empty());
        let unknown = state.apply(
            3,
            &Command::UpdateBrokerStatus {
                broker_id: 6,
                status: BrokerStatus::Online,
                timestamp_ms: 3,
            },
        );
        assert!(matches!(
            unknown,
            CommandResult::Rejected {
                code: RejectCode::UnknownBroker,
                ..
            }
        ));
    }

    #[test]
    fn state_round_trips_through_json_for_snapshots() {
        let mut state = MetadataState::default();
        register(&mut state, 1, 101);
        state.apply(2, &create("t", vec![vec![101]]));
        let bytes = serde_json::to_vec(&state).expect("serialise");
        let back: MetadataState = serde_json::from_slice(&bytes).expect("deserialise");
        assert_eq!(back, state);
    }
}
