//! Transactions (KIP-98, KIP-447) as the metadata quorum records them and the brokers'
//! transaction coordinators read and change them: one [`Transaction`] per transactional id,
//! moved by [`TxnOp`]s, each a command in the Raft log.
//!
//! ```text
//!             AddPartitions/AddOffsets            End(commit)             Complete
//!   Empty ───────────────────────────▶ Ongoing ──────────────▶ PrepareCommit ────▶ CompleteCommit
//!   Complete* ─────────────────────────▲   │  End(abort), Timeout,                       │
//!                                          │  Init (fences) ──────▶ PrepareAbort ─▶ CompleteAbort
//!                                          └────────────────────────────────────────────┘
//! ```
//!
//! The `Prepare*` states are the decision: from there the coordinator writes a marker into
//! every partition of the transaction and then records `Complete`. Consumer offsets committed
//! in the transaction (TxnOffsetCommit) become group offsets in the same entry that decides a
//! commit, so they are visible atomically with it and never after an abort.

use serde::{Deserialize, Serialize};

/// Kafka's `transaction.max.timeout.ms` default: a transaction may ask for at most 15 minutes.
pub const TRANSACTION_MAX_TIMEOUT_MS: i32 = 15 * 60 * 1000;

/// Kafka's `transactional.id.expiration.ms` default: an id idle for 7 days is forgotten.
pub const TRANSACTIONAL_ID_EXPIRATION_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Where a transaction is (Kafka's `TransactionState`, same names in DescribeTransactions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnStatus {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnStatus {
    /// The name Kafka's DescribeTransactions and ListTransactions use.
    pub fn kafka_name(self) -> &'static str {
        match self {
            TxnStatus::Empty => "Empty",
            TxnStatus::Ongoing => "Ongoing",
            TxnStatus::PrepareCommit => "PrepareCommit",
            TxnStatus::PrepareAbort => "PrepareAbort",
            TxnStatus::CompleteCommit => "CompleteCommit",
            TxnStatus::CompleteAbort => "CompleteAbort",
        }
    }

    /// A decision taken and markers still to write.
    pub fn is_prepared(self) -> bool {
        matches!(self, TxnStatus::PrepareCommit | TxnStatus::PrepareAbort)
    }
}

/// A partition a transaction wrote to (or may write to).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxnPartition {
    pub topic: String,
    pub partition: i32,
}

/// A consumer offset committed inside a transaction (TxnOffsetCommit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxnOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    #[serde(default)]
    pub metadata: Option<String>,
}

/// One transactional id's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub status: TxnStatus,
    /// Partitions of the current (or deciding) transaction, sorted.
    pub partitions: Vec<TxnPartition>,
    /// Consumer groups whose offsets the transaction commits (AddOffsetsToTxn).
    pub groups: Vec<String>,
    /// Offsets committed in the transaction, applied to the groups on commit.
    pub pending_offsets: Vec<TxnOffset>,
    /// When the current transaction started (its first AddPartitions/AddOffsets), 0 if none.
    pub start_ms: u64,
    pub last_update_ms: u64,
    /// Raised on every decision (`Prepare*`): markers carry it as the coordinator epoch, so a
    /// partition can tell a retried marker of an old decision from a new one.
    pub coordinator_epoch: i32,
}

/// A change to a transaction, proposed by the coordinator broker. Every op carries the time
/// the coordinator read (apply stays deterministic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TxnOp {
    /// InitProducerId with a transactional id: a new producer id, or the epoch bumped (which
    /// fences older producers); an open transaction is aborted first. `producer_id` and
    /// `producer_epoch` are -1, or the caller's current ones (KIP-360: a producer re-initialising
    /// after an abortable error must still be the current one).
    #[serde(rename_all = "camelCase")]
    Init {
        transactional_id: String,
        timeout_ms: i32,
        producer_id: i64,
        producer_epoch: i16,
        now_ms: u64,
    },
    /// AddPartitionsToTxn.
    #[serde(rename_all = "camelCase")]
    AddPartitions {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<TxnPartition>,
        now_ms: u64,
    },
    /// AddOffsetsToTxn.
    #[serde(rename_all = "camelCase")]
    AddOffsets {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        group: String,
        now_ms: u64,
    },
    /// TxnOffsetCommit.
    #[serde(rename_all = "camelCase")]
    CommitOffsets {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        offsets: Vec<TxnOffset>,
        now_ms: u64,
    },
    /// EndTxn.
    #[serde(rename_all = "camelCase")]
    End {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        now_ms: u64,
    },
    /// The coordinator aborts a transaction open past its timeout, bumping the epoch so the
    /// producer that left it is fenced.
    #[serde(rename_all = "camelCase")]
    Timeout {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        now_ms: u64,
    },
    /// Every marker of the decided transaction is written.
    #[serde(rename_all = "camelCase")]
    Complete {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        now_ms: u64,
    },
    /// Forgets a transactional id idle past `transactional.id.expiration.ms` (only when it is
    /// still idle since `last_update_ms` and not in a transaction).
    #[serde(rename_all = "camelCase")]
    Expire {
        transactional_id: String,
        last_update_ms: u64,
    },
}

impl TxnOp {
    pub fn transactional_id(&self) -> &str {
        match self {
            TxnOp::Init {
                transactional_id, ..
            }
            | TxnOp::AddPartitions {
                transactional_id, ..
            }
            | TxnOp::AddOffsets {
                transactional_id, ..
            }
            | TxnOp::CommitOffsets {
                transactional_id, ..
            }
            | TxnOp::End {
                transactional_id, ..
            }
            | TxnOp::Timeout {
                transactional_id, ..
            }
            | TxnOp::Complete {
                transactional_id, ..
            }
            | TxnOp::Expire {
                transactional_id, ..
            } => transactional_id,
        }
    }
}

/// Why a transaction op changed nothing, named as Kafka's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TxnError {
    /// A decision is being completed; retry (CONCURRENT_TRANSACTIONS, 51).
    ConcurrentTransactions,
    /// A newer producer with the same transactional id exists (PRODUCER_FENCED, 90).
    ProducerFenced,
    /// The producer id is not the transactional id's (INVALID_PRODUCER_ID_MAPPING, 49).
    InvalidProducerIdMapping,
    /// The op does not fit the state (INVALID_TXN_STATE, 48).
    InvalidTxnState,
    /// `transaction.timeout.ms` out of range (INVALID_TRANSACTION_TIMEOUT, 50).
    InvalidTransactionTimeout,
    /// A partition of an unknown topic (UNKNOWN_TOPIC_OR_PARTITION, 3).
    UnknownTopicOrPartition,
    /// No such transactional id (TRANSACTIONAL_ID_NOT_FOUND, 105).
    TransactionalIdNotFound,
}

impl TxnError {
    /// Kafka's error name (as the metadata API's `error` field carries it).
    pub fn name(self) -> &'static str {
        match self {
            TxnError::ConcurrentTransactions => "CONCURRENT_TRANSACTIONS",
            TxnError::ProducerFenced => "PRODUCER_FENCED",
            TxnError::InvalidProducerIdMapping => "INVALID_PRODUCER_ID_MAPPING",
            TxnError::InvalidTxnState => "INVALID_TXN_STATE",
            TxnError::InvalidTransactionTimeout => "INVALID_TRANSACTION_TIMEOUT",
            TxnError::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
            TxnError::TransactionalIdNotFound => "TRANSACTIONAL_ID_NOT_FOUND",
        }
    }

    /// Kafka's error code.
    pub fn code(self) -> i16 {
        match self {
            TxnError::ConcurrentTransactions => 51,
            TxnError::ProducerFenced => 90,
            TxnError::InvalidProducerIdMapping => 49,
            TxnError::InvalidTxnState => 48,
            TxnError::InvalidTransactionTimeout => 50,
            TxnError::UnknownTopicOrPartition => 3,
            TxnError::TransactionalIdNotFound => 105,
        }
    }
}
