//! The crate's single error type.
//!
//! Every variant carries the structured facts a caller (or an operator reading a log line)
//! needs: which offset, which file position, which path, and why. Bad bytes that come from
//! disk or from a client always surface as one of these values, never as a panic.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// Why a RecordBatch (or a record inside one) is not acceptable.
///
/// This is a reason, not an error of its own: it travels inside
/// [`LogError::InvalidBatch`] (client input) or [`LogError::CorruptBatch`] (disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchDefect {
    /// Fewer bytes than the 61-byte v2 header (or than the header declares).
    Truncated { needed: usize, available: usize },
    /// `batchLength` is smaller than the fixed header that follows it.
    BadLength { batch_length: i32 },
    /// `magic` is not 2 (only RecordBatch v2 is stored).
    BadMagic { magic: i8 },
    /// CRC-32C over attributes..end does not match the stored value.
    CrcMismatch { stored: u32, computed: u32 },
    /// `recordCount` is inconsistent with `lastOffsetDelta`.
    RecordCountMismatch {
        record_count: i32,
        last_offset_delta: i32,
    },
    /// The batch is larger than `max_batch_bytes` (Kafka's `message.max.bytes`).
    TooLarge { size: usize, max: usize },
    /// A record inside the batch does not decode (bad varint, length past the end, ...).
    MalformedRecord { index: usize },
    /// Records of a compressed batch cannot be iterated by this crate.
    Compressed { codec: u8 },
    /// The append buffer holds no batch at all.
    Empty,
    /// A batch's offsets do not follow the previous batch (or leave the segment's range).
    OffsetOutOfOrder { base_offset: i64, expected_min: i64 },
}

impl fmt::Display for BatchDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BatchDefect::Truncated { needed, available } => {
                write!(f, "truncated: need {needed} bytes, have {available}")
            }
            BatchDefect::BadLength { batch_length } => write!(f, "bad batchLength {batch_length}"),
            BatchDefect::BadMagic { magic } => write!(f, "unsupported magic {magic} (want 2)"),
            BatchDefect::CrcMismatch { stored, computed } => {
                write!(
                    f,
                    "crc32c mismatch: stored {stored:#010x}, computed {computed:#010x}"
                )
            }
            BatchDefect::RecordCountMismatch {
                record_count,
                last_offset_delta,
            } => write!(
                f,
                "recordCount {record_count} inconsistent with lastOffsetDelta {last_offset_delta}"
            ),
            BatchDefect::TooLarge { size, max } => {
                write!(f, "batch of {size} bytes exceeds max_batch_bytes {max}")
            }
            BatchDefect::MalformedRecord { index } => write!(f, "record #{index} is malformed"),
            BatchDefect::Compressed { codec } => {
                write!(
                    f,
                    "records of a compressed batch (codec {codec}) cannot be iterated"
                )
            }
            BatchDefect::Empty => write!(f, "no record batch in buffer"),
            BatchDefect::OffsetOutOfOrder {
                base_offset,
                expected_min,
            } => {
                write!(
                    f,
                    "base offset {base_offset} out of order (expected >= {expected_min})"
                )
            }
        }
    }
}

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
