//! The Raft glue: openraft 0.9 wired to our storage, state machine and HTTP transport.
//!
//! ```text
//!   HTTP API ──▶ Proposer ──client_write──▶ openraft core ──append──▶ LogStore (raft.log, one fsync
//!               (group commit:                │  ▲                     per append; vote: checked
//!                one entry per batch)         │  │                     file, fsync)
//!               AppendEntries/Vote/           │  │ replies
//!               InstallSnapshot               ▼  │
//!                                      HttpNetwork ──POST /api/v1/raft/*──▶ peers
//!   PreVote: the election timer (openraft's is off) ──POST /api/v1/raft/pre-vote──▶ voters,
//!            then trigger().elect() only with a majority of grants
//!                                             │
//!                                  apply ─────▼──────▶ StateMachineStore (MetadataState, snapshot file)
//! ```

// openraft's storage traits fix the error type to `StorageError`, which is large; boxing it is
// not ours to choose.
#![allow(clippy::result_large_err)]

mod checked_file;
mod log_store;
mod network;
mod pre_vote;
mod proposer;
mod state_machine;

use std::io::Cursor;

pub use log_store::LogStore;
pub use network::HttpNetworkFactory;
pub use pre_vote::{PreVote, PreVoteRequest, PreVoteResponse, PRE_VOTE_PATH};
pub use proposer::{Proposed, Proposer};
pub use state_machine::{SharedState, StateMachineData, StateMachineStore};

use crate::state::{Command, CommandResult};

openraft::declare_raft_types!(
    /// DistributedMQ's Raft types: metadata commands in, command results out, nodes addressed
    /// by their HTTP base URL.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The running Raft node type.
pub type Raft = openraft::Raft<TypeConfig>;
