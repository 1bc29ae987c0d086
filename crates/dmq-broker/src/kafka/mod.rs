//! The Kafka wire protocol: the listener and its handlers, and a small client connection.

pub mod client;
pub mod configs;
pub mod describe;
pub mod groups;
pub mod handlers;
pub mod security;
pub mod server;
pub mod share;
pub mod share_admin;
pub mod txn;
