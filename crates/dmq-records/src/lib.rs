//! `dmq-records` — Kafka's RecordBatch v2, the one format records have on the wire and on disk.
//!
//! The producer builds batches with [`RecordBatchBuilder`], the broker validates and stamps them
//! ([`validate_batch`], [`BatchHeaderMut`]), the log stores them verbatim and the consumer reads
//! them back with [`records`]; [`codec`] compresses and decompresses records sections. The crate
//! has no I/O and no knowledge of storage or networking.

pub mod batch;
pub mod codec;

pub use batch::{
    compute_crc, control_batch, control_record, control_type, records, records_in, validate_batch,
    with_records_section, BatchHeader, BatchHeaderMut, Batches, ControlRecord, ControlType, Record,
    RecordBatchBuilder, RecordHeader,
};

use std::fmt;

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
    /// Records of a compressed batch cannot be iterated without decompressing it first.
    Compressed { codec: u8 },
    /// The compression bits name no codec Kafka defines.
    UnknownCodec { codec: u8 },
    /// The compressed records section does not decompress.
    Undecompressable { codec: u8 },
    /// Compressing a records section failed.
    Uncompressable { codec: u8 },
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
            BatchDefect::UnknownCodec { codec } => write!(f, "unknown compression codec {codec}"),
            BatchDefect::Undecompressable { codec } => {
                write!(
                    f,
                    "the records section does not decompress with codec {codec}"
                )
            }
            BatchDefect::Uncompressable { codec } => {
                write!(f, "compressing a records section with codec {codec} failed")
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

impl std::error::Error for BatchDefect {}
