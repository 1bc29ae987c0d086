//! The crate's one error type.
//!
//! Client-facing failures carry the Kafka error code they are answered with
//! ([`BrokerError::kafka_code`]); the HTTP API maps the same values to a status and a JSON body.

use dmq_types::BrokerId;
use kafka_protocol::error::ResponseError;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A Kafka-level refusal: the code goes to the client as is.
    #[error("{}: {message}", kafka_name(*.code))]
    Kafka { code: i16, message: String },
    /// This broker does not lead the partition; `leader` is who does (if anyone).
    #[error("broker is not the leader of {topic}-{partition} (leader: {leader:?})")]
    NotLeader {
        topic: String,
        partition: i32,
        leader: Option<BrokerId>,
    },
    #[error("storage: {0}")]
    Log(#[from] dmq_log::LogError),
    #[error("metadata quorum: {0}")]
    Metadata(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("kafka protocol: {0}")]
    Protocol(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

fn kafka_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?}"),
        None => "NONE".into(),
    }
}

impl BrokerError {
    pub fn kafka(error: ResponseError, message: impl Into<String>) -> Self {
        BrokerError::Kafka {
            code: error.code(),
            message: message.into(),
        }
    }

    /// The Kafka error code this failure is answered with.
    pub fn kafka_code(&self) -> i16 {
        use dmq_log::{BatchDefect, LogError};
        match self {
            BrokerError::Kafka { code, .. } => *code,
            BrokerError::NotLeader { .. } => ResponseError::NotLeaderOrFollower.code(),
            BrokerError::Log(LogError::InvalidBatch { reason, .. }) => match reason {
                BatchDefect::TooLarge { .. } => ResponseError::MessageTooLarge.code(),
                BatchDefect::CrcMismatch { .. } => ResponseError::CorruptMessage.code(),
                BatchDefect::BadMagic { .. } => ResponseError::UnsupportedForMessageFormat.code(),
                _ => ResponseError::CorruptMessage.code(),
            },
            BrokerError::Log(LogError::OffsetOutOfRange { .. }) => {
                ResponseError::OffsetOutOfRange.code()
            }
            BrokerError::Log(_) | BrokerError::Io(_) => ResponseError::KafkaStorageError.code(),
            BrokerError::Metadata(_) => ResponseError::RequestTimedOut.code(),
            BrokerError::Protocol(_) | BrokerError::InvalidRequest(_) => {
                ResponseError::InvalidRequest.code()
            }
        }
    }

    /// Stable name of [`BrokerError::kafka_code`] for JSON error bodies (`NOT_LEADER_OR_FOLLOWER`).
    pub fn code_name(&self) -> String {
        screaming_snake(&kafka_name(self.kafka_code()))
    }
}

/// `NotLeaderOrFollower` → `NOT_LEADER_OR_FOLLOWER`.
pub fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(
            screaming_snake("NotLeaderOrFollower"),
            "NOT_LEADER_OR_FOLLOWER"
        );
        let e = BrokerError::kafka(ResponseError::UnknownTopicOrPartition, "no such topic");
        assert_eq!(e.kafka_code(), 3);
        assert_eq!(e.code_name(), "UNKNOWN_TOPIC_OR_PARTITION");
    }
}
