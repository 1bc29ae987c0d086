//! Shared vocabulary of DistributedMQ: identifiers, named limits, topic-name rules and the
//! `config/services.json` model.
//!
//! This crate does no I/O except [`ServicesConfig::load`], which reads one file; everything else is
//! plain data and pure validation so that every other crate can depend on it.

pub mod broker_config;
mod config;
mod error;
pub mod group_config;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "http")]
pub mod https;
mod limits;
pub mod model;
mod names;
pub mod security;
pub mod topic_config;
pub mod txn;

pub use config::{
    ControllerConfig, MetadataNodeConfig, MetadataSyncConfig, ServicesConfig, StorageNodeConfig,
    TopicDefaults,
};
pub use error::{ConfigProblem, TypesError};
pub use limits::*;
pub use names::validate_topic_name;
pub use topic_config::{validate_topic_config, validate_topic_configs, TOPIC_CONFIGS};

/// Identifies a metadata (Raft quorum) node. Raft calls it the node id.
pub type NodeId = u64;

/// Identifies a storage broker. Kafka's broker ids are 32-bit signed integers on the wire.
pub type BrokerId = i32;

/// A partition's leader epoch: bumped by the controller on every leader change (KIP-101).
pub type LeaderEpoch = i32;

/// The broker id Kafka uses to say "no leader" in metadata responses.
pub const NO_LEADER: BrokerId = -1;
