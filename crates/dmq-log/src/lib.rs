//! `dmq-log` — the segmented, append-only log storage engine of DistributedMQ.
//!
//! ```text
//! <data-dir>/<topic>-<partition>/
//!     <base offset, 20 digits>.log        Kafka RecordBatch v2 bytes, verbatim   (segment.rs, batch.rs)
//!     <base offset, 20 digits>.index      relative offset → position, 8 B/entry  (index.rs)
//!     <base offset, 20 digits>.timeindex  timestamp → relative offset, 12 B/entry (time_index.rs)
//!     <base offset, 20 digits>.txnindex   aborted transactions, 34 B/entry      (txn_index.rs)
//!     leader-epoch-checkpoint             epoch → start offset, versioned + CRC   (epoch_cache.rs)
//!     log-start-offset                    log start after DeleteRecords           (checkpoint.rs)
//!     clean-shutdown                      written by close(), removed by open()   (recovery.rs)
//! ```
//!
//! A [`Log`] stores producer batches exactly as sent (only `baseOffset` and
//! `partitionLeaderEpoch`, both outside the CRC, are stamped), finds any offset through a
//! sparse index, serves reads as file ranges ([`ReadSlice`]) that a network layer can
//! `sendfile`, and on open recovers from a crash by truncating at the first torn or corrupt
//! batch. One writer, many lock-free readers; see `log.rs` for the concurrency model and
//! `ARCHITECTURE-log.md` for the full design.
//!
//! # Using it as the metadata Raft log
//!
//! The Raft log stores opaque entries, one record per entry, with **offset = Raft index**:
//!
//! ```
//! use dmq_log::{Log, LogConfig, RecordBatchBuilder, batch};
//! # let dir = tempfile::tempdir().unwrap();
//! // Raft indexes start at 1; an empty log opened with open_at starts there.
//! let log = Log::open_at(dir.path(), LogConfig::default(), 1).unwrap();
//! let (term, index, entry) = (3, 1, b"serialized entry".as_slice());
//! let mut b = RecordBatchBuilder::new(index).partition_leader_epoch(term);
//! b.push(0, None, Some(entry), &[]);
//! log.append_replicated(&b.build()).unwrap();       // keeps offset = index; rejects gaps/overlaps
//! let slice = log.read(index, 1).unwrap().unwrap(); // the batch containing `index`
//! let bytes = slice.read_to_vec().unwrap();
//! let rec = batch::records(&bytes).unwrap().next().unwrap().unwrap();
//! assert_eq!((rec.offset, rec.value), (1, Some(entry)));
//! log.truncate_to(index).unwrap();              // suffix truncation: drop `index` and later
//! log.delete_records_before(index).unwrap();    // prefix purge after a snapshot
//! ```
//!
//! * The term goes in `partitionLeaderEpoch`, so the leader-epoch cache doubles as the
//!   term → first index map (`end_offset_for_epoch`).
//! * Append with `append_replicated` (the Raft layer owns the index), `flush()` before
//!   acknowledging (or `FlushPolicy::EveryAppend`).
//! * `truncate_to(i)` removes entries `≥ i`; `delete_records_before(i)` purges `< i`
//!   (whole segments are deleted, the start offset is persisted);
//!   `truncate_fully_and_start_at(i)` resets the log after installing a snapshot.
//! * Use one batch per entry (or per group of consecutive entries, since a batch is
//!   truncated whole: `truncate_to(i)` inside a multi-entry batch drops the whole batch).

/// The RecordBatch v2 format lives in `dmq-records`, shared with the broker and the client.
pub use dmq_records::batch;
pub use dmq_records::codec;
mod checkpoint;
pub mod cleaner;
pub mod epoch_cache;
pub mod error;
mod index;
mod log;
pub mod recovery;
mod segment;
mod time_index;
pub mod txn_index;

pub use batch::{BatchHeader, Record, RecordBatchBuilder, RecordHeader};
pub use cleaner::{
    spawn_cleaner, Cleanable, CleanerHandle, CompactionStats, IoThrottle, CLEANER_CHECKPOINT_FILE,
};
pub use epoch_cache::{EpochEntry, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
pub use error::{BatchDefect, LogError, Result};
pub use log::{
    now_ms, AppendInfo, CleanupPolicy, FlushPolicy, Log, LogConfig, ReadSlice, RetentionOutcome,
    SegmentInfo, DELETE_RETENTION_MS_DEFAULT, INDEX_INTERVAL_BYTES, LOG_START_OFFSET_FILE,
    MAX_BATCH_BYTES_DEFAULT, PREALLOCATE_BYTES_DEFAULT, SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MAX,
    SEGMENT_MS_DEFAULT, WRITEBACK_BYTES_DEFAULT,
};
pub use txn_index::TxnIndexEntry;

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}
    #[test]
    fn log_is_send_sync() {
        assert_send_sync::<crate::Log>();
        assert_send_sync::<crate::ReadSlice>();
    }
}
