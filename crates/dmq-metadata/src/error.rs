use dmq_types::NodeId;

/// The one error type of `dmq-metadata`.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The request is malformed or violates a limit (HTTP 400).
    #[error("{0}")]
    InvalidRequest(String),

    /// The request is malformed in a way Kafka names (HTTP 400 with that code as `error`:
    /// `INVALID_CONFIG`, `INVALID_PARTITIONS`, `INVALID_REPLICATION_FACTOR`,
    /// `INVALID_TOPIC_EXCEPTION`, `INVALID_REPLICA_ASSIGNMENT`), so brokers map it to the
    /// Kafka error code without reading the message.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },

    /// The named topic, broker or group does not exist (HTTP 404).
    #[error("{0}")]
    NotFound(String),

    /// The thing to create exists already (HTTP 409).
    #[error("{0}")]
    AlreadyExists(String),

    /// The request was fenced: it was based on a state the quorum has moved past (HTTP 409,
    /// with the Kafka-style code naming why, e.g. `FENCED_LEADER_EPOCH`).
    #[error("{message}")]
    Fenced { code: &'static str, message: String },

    /// The request body is larger than the API reads (HTTP 413).
    #[error("{0}")]
    TooLarge(String),

    /// A leader-only request reached a node that is not the leader (HTTP 503 with
    /// `X-Controller-Leader` when the leader is known).
    #[error("this node is not the controller leader")]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_url: Option<String>,
    },

    /// Raft could not serve the request right now (no quorum, shutting down, timed out).
    #[error("the metadata quorum is unavailable: {0}")]
    Unavailable(String),

    /// A disk read or write failed, or a file failed its checksum.
    #[error("storage error on {path}: {message}")]
    Storage { path: String, message: String },

    /// The node could not start (bad flags, port in use, data dir unusable).
    #[error("{0}")]
    Startup(String),
}

impl MetadataError {
    /// A bad topic config value (Kafka's INVALID_CONFIG).
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::Invalid {
            code: "INVALID_CONFIG",
            message: message.into(),
        }
    }

    /// A storage error for `path` from any displayable cause.
    pub fn storage(path: &std::path::Path, cause: impl std::fmt::Display) -> Self {
        Self::Storage {
            path: path.display().to_string(),
            message: cause.to_string(),
        }
    }

    /// The stable machine-readable code of the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "INVALID_REQUEST",
            Self::Invalid { code, .. } => code,
            Self::NotFound(_) => "NOT_FOUND",
            Self::AlreadyExists(_) => "ALREADY_EXISTS",
            Self::Fenced { code, .. } => code,
            Self::TooLarge(_) => "PAYLOAD_TOO_LARGE",
            Self::NotLeader { .. } => "NOT_LEADER",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::Storage { .. } => "STORAGE_ERROR",
            Self::Startup(_) => "STARTUP_ERROR",
        }
    }
}
