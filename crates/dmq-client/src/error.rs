//! The crate's one error type.

use std::sync::Arc;

use kafka_protocol::ResponseError;

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Everything that can go wrong in the client. `Clone` because one batch's outcome is shared by
/// every record in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// A socket operation failed (connection refused, reset, closed by the broker).
    #[error("{context}: {error}")]
    Io {
        context: String,
        error: Arc<std::io::Error>,
    },
    /// The broker answered with a Kafka error code.
    #[error("{context}: {} (Kafka error {code})", error_name(*.code))]
    Kafka { code: i16, context: String },
    /// The bytes on the wire did not make sense (bad frame, wrong correlation id, undecodable body).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A request, a metadata lookup or a delivery did not complete in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The configuration or an argument is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The record is larger than `max_request_size` or `buffer_memory`.
    #[error("record of {size} bytes is larger than the limit of {max} bytes ({what})")]
    RecordTooLarge {
        size: usize,
        max: usize,
        what: &'static str,
    },
    /// The producer or consumer was closed.
    #[error("the client is closed")]
    Closed,
    /// The transactional producer was fenced by a newer instance with the same transactional id
    /// (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH) or hit another error it cannot recover from
    /// (INVALID_PRODUCER_ID_MAPPING, TRANSACTIONAL_ID_AUTHORIZATION_FAILED). Every later call
    /// fails with this error: the producer can only be dropped (Java's `ProducerFencedException`
    /// and fatal errors).
    #[error("the transactional producer is fenced or in a fatal state: {reason}")]
    ProducerFatal { code: Option<i16>, reason: String },
    /// A record or a transactional request of the current transaction failed: the transaction
    /// cannot commit and must be aborted with `abort_transaction` (Java's abortable errors).
    #[error("the transaction must be aborted: {reason}")]
    AbortRequired { code: Option<i16>, reason: String },
    /// The record's transaction was aborted before the record was sent, so it never was
    /// (Java's `TransactionAbortedException`).
    #[error("the transaction was aborted before the record was sent")]
    TransactionAborted,
    /// The call is not allowed in the transactional producer's current state (`send` before
    /// `init_transactions` or outside a transaction, `commit_transaction` without
    /// `begin_transaction`, ...). Java's `IllegalStateException`.
    #[error("not allowed now: {0}")]
    InvalidState(String),
}

impl ClientError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ClientError::Io {
            context: context.into(),
            error: Arc::new(source),
        }
    }

    pub(crate) fn kafka(code: i16, context: impl Into<String>) -> Self {
        ClientError::Kafka {
            code,
            context: context.into(),
        }
    }

    /// The Kafka error code, if the broker sent one.
    pub fn code(&self) -> Option<i16> {
        match self {
            ClientError::Kafka { code, .. } => Some(*code),
            ClientError::ProducerFatal { code, .. } | ClientError::AbortRequired { code, .. } => {
                *code
            }
            _ => None,
        }
    }

    /// Whether retrying the same operation later may succeed (Kafka's `RetriableException`):
    /// retriable broker errors, lost connections and timeouts.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Kafka { code, .. } => {
                ResponseError::try_from_code(*code).is_some_and(|e| e.is_retriable())
            }
            ClientError::Io { .. } | ClientError::Timeout(_) => true,
            _ => false,
        }
    }
}

/// Kafka's name for an error code (`NOT_LEADER_OR_FOLLOWER`), as Kafka tools print it.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_{c}"),
        Some(e) => screaming_snake(&format!("{e:?}")),
    }
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_follow_kafka() {
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(0), "NONE");
        assert!(ClientError::kafka(6, "x").is_retriable());
        assert!(!ClientError::kafka(36, "x").is_retriable());
    }
}
