#![allow(dead_code)]
//! Helpers shared by the integration tests.

use dmq_log::batch::{self, Batches};
use dmq_log::{Log, LogConfig, RecordBatchBuilder};

/// A temp dir on tmpfs when available (these tests fsync a lot), else the default.
pub fn tempdir() -> tempfile::TempDir {
    let shm_ok = std::env::var_os("DMQ_LOG_TEST_NO_SHM").is_none();
    if shm_ok && std::path::Path::new("/dev/shm").is_dir() {
        if let Ok(d) = tempfile::Builder::new()
            .prefix("dmq-log-test")
            .tempdir_in("/dev/shm")
        {
            return d;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

/// A batch of `n` records with values of `value_len` bytes, keys `k<i % keys>`.
pub fn batch(n: usize, value_len: usize, ts: i64) -> Vec<u8> {
    let mut b = RecordBatchBuilder::new(0);
    for i in 0..n {
        let v = vec![(i % 251) as u8; value_len];
        b.push(
            ts + i as i64,
            Some(format!("k{i}").as_bytes()),
            Some(&v),
            &[],
        );
    }
    b.build()
}

/// A batch with explicit keyed records: `(key, value)`; value `None` is a tombstone.
pub fn keyed(records: &[(&str, Option<&str>)], ts: i64) -> Vec<u8> {
    let mut b = RecordBatchBuilder::new(0);
    for (k, v) in records {
        b.push(ts, Some(k.as_bytes()), v.map(|v| v.as_bytes()), &[]);
    }
    b.build()
}

pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

/// Read every batch from `from` to the log end; returns the raw batches.
pub fn read_all(log: &Log, from: i64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = from;
    while let Some(slice) = log.read(offset, 3000).expect("read") {
        let bytes = slice.read_to_vec().expect("read_to_vec");
        assert!(!bytes.is_empty());
        for b in Batches::new(&bytes, true) {
            let (_, b) = b.expect("valid batch");
            offset = batch::BatchHeader::new(b).expect("hdr").last_offset() + 1;
            out.push(b.to_vec());
        }
    }
    out
}

/// `(key, value, offset)` of every record in the log.
pub fn records(log: &Log) -> Vec<(Option<String>, Option<String>, i64)> {
    let mut out = Vec::new();
    for b in read_all(log, log.log_start_offset()) {
        for r in batch::records(&b).expect("records") {
            let r = r.expect("record");
            out.push((
                r.key.map(|k| String::from_utf8_lossy(k).into_owned()),
                r.value.map(|v| String::from_utf8_lossy(v).into_owned()),
                r.offset,
            ));
        }
    }
    out
}
