//! DistributedMQ storage broker (SPEC §1, §4–§6).
//!
//! A broker hosts partition replicas on `dmq-log`, speaks the Kafka wire protocol on its
//! `kafkaPort` and the seeds' HTTP API on its `port`, and lives in the cluster the metadata
//! quorum describes: it discovers the controller, registers, heartbeats, and follows the
//! metadata it pulls (leaders, followers, deleted topics). See `ARCHITECTURE.md`.

pub mod alloc;
pub mod config;
pub mod error;
mod fetcher;
pub mod group;
pub mod http;
pub mod kafka;
pub mod keys;
mod membership;
pub mod meta_client;
pub mod metrics;
mod node;
pub mod partition;
mod produce;
pub mod producer_snapshot;
pub mod producer_state;
pub mod replica_manager;
pub mod security;
pub mod share;
pub mod share_dlq;
pub mod tls;
pub mod txn;

pub use config::BrokerConfig;
pub use error::BrokerError;
pub use node::{BrokerNode, BrokerShared};
