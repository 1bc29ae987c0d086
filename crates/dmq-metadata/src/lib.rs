//! The DistributedMQ metadata quorum (KRaft-like controller).
//!
//! - [`state`]: the metadata image and its deterministic `apply` — pure data.
//! - [`txn`]: the transaction state machine (KIP-98/KIP-447) — pure functions.
//! - [`controller`]: replica placement, broker liveness and leader election — pure functions.
//! - `raft`: openraft 0.9 glue: the fsynced log store, the snapshotting state machine, HTTP RPCs.
//! - `api`: the HTTP API of SPEC §3.
//! - `ui`: the web console at `/ui/` (SPEC §12): embedded assets and its `/ui/api/` relays.
//! - [`node`]: a running node — Raft, the HTTP server and the controller loop.

mod api;
pub mod controller;
mod error;
mod groups_api;
mod metrics;
pub mod node;
pub mod raft;
pub mod security;
mod security_api;
pub mod shares;
mod shares_api;
pub mod state;
pub mod txn;
mod txn_api;
mod ui;

pub use error::MetadataError;
pub use node::{MetadataNode, MetadataNodeOptions};
