//! `dmq-client` — a Rust client for DistributedMQ and any Kafka-compatible cluster, speaking
//! only the Kafka wire protocol.
//!
//! * [`Producer`]: batching, compression, murmur2/sticky partitioning, idempotence, retries,
//!   transactions (`init_transactions`, `begin_transaction`, `send_offsets_to_transaction`,
//!   `commit_transaction`, `abort_transaction`).
//! * [`Consumer`]: assign and seek, pipelined fetches, `poll`; `read_committed` isolation.
//! * [`GroupConsumer`]: consumer groups (range and cooperative-sticky, auto and manual commit).
//! * [`ShareConsumer`]: share groups (KIP-932): records shared by members, acknowledged one
//!   by one (accept, release, reject), each with its delivery count.
//! * [`Admin`]: topics, the cluster, offsets, and consumer groups (list, describe, reset).
//!
//! ```no_run
//! # async fn demo() -> dmq_client::Result<()> {
//! use std::time::Duration;
//! use dmq_client::{Admin, ClientConfig, Consumer, ConsumerConfig, NewTopic, Offset,
//!                  Producer, ProducerConfig, ProducerRecord};
//!
//! let admin = Admin::new(ClientConfig::new("localhost:19092")).await?;
//! admin.create_topic(NewTopic::new("orders", 3, 3)).await?;
//!
//! let producer = Producer::new(ProducerConfig::new("localhost:19092")).await?;
//! producer.send(ProducerRecord::new("orders", "hello").key("customer-7")).await?.await?;
//!
//! let mut consumer = Consumer::new(ConsumerConfig::new("localhost:19092")).await?;
//! consumer.assign_topic("orders").await?;
//! consumer.seek_all(Offset::Beginning);
//! for record in consumer.poll(Duration::from_secs(1)).await? {
//!     println!("{}-{}@{}: {:?}", record.topic, record.partition, record.offset, record.value);
//! }
//! # Ok(()) }
//! ```
//!
//! A transaction: the records and the group's offsets are committed together.
//!
//! ```no_run
//! # async fn demo() -> dmq_client::Result<()> {
//! use std::collections::BTreeMap;
//! use dmq_client::{ConsumerGroupMetadata, Producer, ProducerConfig, ProducerRecord,
//!                  TopicPartition};
//!
//! let mut config = ProducerConfig::new("localhost:19092");
//! config.transactional_id = Some("enricher-1".into());
//! let producer = Producer::new(config).await?;
//! producer.init_transactions().await?;
//! producer.begin_transaction()?;
//! producer.send(ProducerRecord::new("enriched", "hello")).await?;
//! let offsets = BTreeMap::from([(TopicPartition::new("orders", 0), 42)]);
//! producer
//!     .send_offsets_to_transaction(&offsets, &ConsumerGroupMetadata::new("enricher"))
//!     .await?;
//! producer.commit_transaction().await?;
//! # Ok(()) }
//! ```

mod admin;
mod cluster;
mod conn;
mod consumer;
mod error;
mod group;
mod partitioner;
mod producer;
mod records;
mod security;
mod share;
mod transaction;

pub use admin::{
    Admin, ClusterDescription, GroupDescription, GroupMember, ListedGroup, NewTopic,
    TopicDescription,
};
pub use cluster::{BrokerInfo, ClientConfig, Cluster, Metadata, PartitionInfo, TopicInfo};
pub use conn::{read_frame, Connection};
pub use consumer::{Consumer, ConsumerConfig, IsolationLevel, Offset, OffsetReset, TopicPartition};
pub use error::{error_name, ClientError, Result};
pub use group::{
    assign_cooperative_sticky, assign_range, decode_assignment, Assignor, ConsumerGroupMetadata,
    GroupConfig, GroupConsumer, Subscription,
};
pub use partitioner::{murmur2, partition_for_key};
pub use producer::{
    Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata,
};
pub use records::{Compression, ConsumerRecord};
pub use security::{Sasl, SaslMechanism, Security, Tls};
pub use share::{AckType, ShareConsumer, ShareConsumerConfig, ShareRecord};
