//! The crate's single error type.
//!
//! Every variant carries the structured facts a caller (or an operator reading a log line)
//! needs: which offset, which file position, which path, and why. Bad bytes that come from
//! disk or from a client always surface as one of these values, never as a panic.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = LogError> = std::result::Result<T, E>;

pub use dmq_records::BatchDefect;

/// The error type of `dmq-log`.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An I/O operation on a log file failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A batch handed to `append_*` was rejected; `position` is its byte offset in the buffer.
    #[error("invalid record batch at buffer position {position}: {reason}")]
    InvalidBatch {
        position: usize,
        reason: BatchDefect,
    },

    /// A batch read back from disk failed validation.
    #[error("corrupt record batch at offset {offset} (file position {position}): {reason}")]
    CorruptBatch {
        offset: i64,
        position: u64,
        reason: BatchDefect,
    },

    /// The requested offset is outside `[log_start, log_end]`.
    #[error("offset {offset} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },

    /// A replicated append would leave a hole in the offset sequence.
    #[error("replicated batch starts at {found} but the log expects {expected} (gap)")]
    OffsetGap { expected: i64, found: i64 },

    /// A replicated append would rewrite offsets already in the log.
    #[error("replicated batch starts at {found} but the log expects {expected} (overlap)")]
    OffsetOverlap { expected: i64, found: i64 },

    /// A checkpoint file (epoch cache, log start offset) is unreadable.
    #[error("corrupt checkpoint {path}: {reason}")]
    CorruptCheckpoint { path: PathBuf, reason: String },

    /// The log was closed; no further operations are accepted.
    #[error("log {path} is closed")]
    Closed { path: PathBuf },
}

impl LogError {
    /// Wrap an `io::Error` with the operation and the path it concerned.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| LogError::Io { op, path, source }
    }
}
