//! The log cleaner's choices, Kafka's rules one per test: when a compacted log is worth a pass
//! (`min.cleanable.dirty.ratio`, `min.compaction.lag.ms`, `max.compaction.lag.ms`, expired
//! tombstones), how far a pass may go (sealed segments below the high watermark), the cleaner
//! checkpoint across restarts, and compressed batches.

mod common;

use common::{keyed, records, tempdir};
use dmq_log::batch::{self, Batches};
use dmq_log::{codec, CleanupPolicy, IoThrottle, Log, LogConfig, RecordBatchBuilder};

fn compacted(extra: impl FnOnce(&mut LogConfig)) -> LogConfig {
    let mut c = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms: 1_000,
        ..LogConfig::default()
    };
    extra(&mut c);
    c
}

/// Appends `rounds` rounds of one record for each of `keys` keys, one batch per round, at `ts`,
/// and seals the segment.
fn rounds(log: &Log, keys: usize, rounds: std::ops::Range<usize>, ts: i64) {
    for round in rounds {
        let recs: Vec<(String, String)> = (0..keys)
            .map(|k| (format!("k{k}"), format!("r{round}")))
            .collect();
        let refs: Vec<(&str, Option<&str>)> = recs
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v.as_str())))
            .collect();
        log.append_as_leader(&mut keyed(&refs, ts), 0, ts)
            .expect("append");
    }
    log.roll().expect("roll");
}

#[test]
fn a_pass_waits_for_the_dirty_ratio_and_moves_the_checkpoint() {
    let dir = tempdir();
    let log =
        Log::open(dir.path(), compacted(|c| c.min_cleanable_dirty_ratio = 0.5)).expect("open");
    assert_eq!(log.first_dirty_offset(), 0);
    rounds(&log, 10, 0..10, 1_000);
    let end = log.log_end_offset();
    let c = log.cleanable(2_000, end).expect("compacted log");
    assert_eq!((c.first_dirty, c.first_uncleanable), (0, 100));
    assert_eq!(c.clean_bytes, 0);
    assert!(c.dirty_bytes > 0 && c.dirty_ratio() == 1.0, "{c:?}");
    assert!(c.needs_cleaning());

    let unlimited = IoThrottle::unlimited();
    let stats = log.compact_below(2_000, end, &unlimited).expect("compact");
    assert_eq!(stats.records_removed, 90, "{stats:?}");
    assert_eq!(log.first_dirty_offset(), 100);
    let c = log.cleanable(2_000, end).expect("compacted log");
    assert_eq!((c.dirty_bytes, c.dirty_ratio()), (0, 0.0));
    assert!(!c.needs_cleaning(), "nothing dirty: {c:?}");

    // A little new data: dirty, but below the ratio (10 records over ~110 bytes each
    // against a clean part of the same size → 0.5 is reached only with more).
    rounds(&log, 10, 10..11, 1_000);
    let c = log.cleanable(2_000, log.log_end_offset()).expect("c");
    assert!(c.dirty_bytes > 0, "{c:?}");
    if c.dirty_ratio() < 0.5 {
        assert!(!c.needs_cleaning(), "{c:?}");
    }
    rounds(&log, 10, 11..14, 1_000);
    let c = log.cleanable(2_000, log.log_end_offset()).expect("c");
    assert!(c.dirty_ratio() >= 0.5 && c.needs_cleaning(), "{c:?}");

    // The checkpoint survives a restart.
    drop(log);
    let log = Log::open(dir.path(), compacted(|_| {})).expect("reopen");
    assert_eq!(log.first_dirty_offset(), 100);
    assert!(dir.path().join(dmq_log::CLEANER_CHECKPOINT_FILE).exists());
}

#[test]
fn records_younger_than_the_min_compaction_lag_stay() {
    let dir = tempdir();
    let log = Log::open(dir.path(), compacted(|c| c.min_compaction_lag_ms = 10_000)).expect("open");
    rounds(&log, 5, 0..4, 1_000); // segment 1: records at t=1 s
    rounds(&log, 5, 4..8, 20_000); // segment 2: records at t=20 s
    let end = log.log_end_offset();
    // At t=15 s only the first segment is 10 s old.
    let c = log.cleanable(15_000, end).expect("c");
    assert_eq!(c.first_uncleanable, 20, "{c:?}");
    log.compact_below(15_000, end, &IoThrottle::unlimited())
        .expect("compact");
    let offsets: Vec<i64> = records(&log).iter().map(|r| r.2).collect();
    assert_eq!(
        offsets,
        (15..40).collect::<Vec<_>>(),
        "the first segment keeps only round 3; the young one keeps all"
    );
    // At t=31 s both are old enough.
    log.compact_below(31_000, end, &IoThrottle::unlimited())
        .expect("compact");
    let offsets: Vec<i64> = records(&log).iter().map(|r| r.2).collect();
    assert_eq!(offsets, (35..40).collect::<Vec<_>>());
}

#[test]
fn the_max_compaction_lag_forces_a_pass_below_the_ratio() {
    let dir = tempdir();
    let log = Log::open(
        dir.path(),
        compacted(|c| {
            c.min_cleanable_dirty_ratio = 0.99;
            c.max_compaction_lag_ms = 60_000;
        }),
    )
    .expect("open");
    rounds(&log, 10, 0..10, 1_000);
    log.compact_below(2_000, log.log_end_offset(), &IoThrottle::unlimited())
        .expect("first pass");
    rounds(&log, 10, 10..11, 5_000);
    let end = log.log_end_offset();
    let fresh = log.cleanable(6_000, end).expect("c");
    assert!(fresh.dirty_ratio() < 0.99 && !fresh.overdue && !fresh.needs_cleaning());
    let late = log.cleanable(5_000 + 60_000, end).expect("c");
    assert!(late.overdue && late.needs_cleaning(), "{late:?}");
}

#[test]
fn nothing_at_or_above_the_high_watermark_is_cleaned() {
    let dir = tempdir();
    let log = Log::open(dir.path(), compacted(|_| {})).expect("open");
    rounds(&log, 5, 0..4, 1_000); // offsets 0..20
    rounds(&log, 5, 4..8, 1_000); // offsets 20..40
    rounds(&log, 5, 8..9, 1_000); // offsets 40..45, then an empty active segment
                                  // The HW inside the second segment: only the first may be cleaned.
    let c = log.cleanable(2_000, 30).expect("c");
    assert_eq!(c.first_uncleanable, 20, "{c:?}");
    log.compact_below(2_000, 30, &IoThrottle::unlimited())
        .expect("compact");
    let offsets: Vec<i64> = records(&log).iter().map(|r| r.2).collect();
    assert_eq!(offsets, (15..45).collect::<Vec<_>>());
    assert_eq!(log.first_dirty_offset(), 20);
}

#[test]
fn tombstones_expire_after_delete_retention_in_a_later_sweep() {
    let dir = tempdir();
    let log = Log::open(dir.path(), compacted(|c| c.delete_retention_ms = 5_000)).expect("open");
    log.append_as_leader(
        &mut keyed(&[("a", Some("1")), ("b", Some("1"))], 1_000),
        0,
        0,
    )
    .expect("append");
    log.append_as_leader(&mut keyed(&[("a", None)], 2_000), 0, 0)
        .expect("append");
    log.roll().expect("roll");
    let end = log.log_end_offset();
    log.compact_below(3_000, end, &IoThrottle::unlimited())
        .expect("compact");
    let keys = |log: &Log| -> Vec<(String, bool)> {
        records(log)
            .into_iter()
            .map(|(k, v, _)| (k.expect("key"), v.is_some()))
            .collect()
    };
    assert_eq!(
        keys(&log),
        vec![("b".into(), true), ("a".into(), false)],
        "the tombstone stays while consumers may still need it"
    );
    // Nothing is dirty now, but the kept tombstone's time comes.
    let c = log.cleanable(6_000, end).expect("c");
    assert!(!c.needs_cleaning(), "not yet: {c:?}");
    let c = log.cleanable(7_001, end).expect("c");
    assert!(c.tombstones_due && c.needs_cleaning(), "{c:?}");
    log.compact_below(7_001, end, &IoThrottle::unlimited())
        .expect("sweep");
    assert_eq!(keys(&log), vec![("b".into(), true)]);
    let c = log.cleanable(100_000, end).expect("c");
    assert!(!c.needs_cleaning(), "no tombstone left: {c:?}");
}

/// Every record of every batch (compressed or not): `(key, offset)`, and the codecs seen.
fn decoded(log: &Log) -> (Vec<(String, i64)>, Vec<u8>) {
    let mut out = Vec::new();
    let mut codecs = Vec::new();
    let mut offset = log.log_start_offset();
    while let Some(slice) = log.read(offset, 1 << 20).expect("read") {
        let bytes = slice.read_to_vec().expect("bytes");
        for b in Batches::new(&bytes, true) {
            let (_, b) = b.expect("valid batch");
            let h = batch::BatchHeader::new(b).expect("header");
            offset = h.last_offset() + 1;
            codecs.push(h.compression());
            let section = codec::plain_section(b).expect("decompresses");
            for r in batch::records_in(h, &section) {
                let r = r.expect("record");
                let k = String::from_utf8_lossy(r.key.expect("key")).into_owned();
                out.push((k, r.offset));
            }
        }
    }
    (out, codecs)
}

#[test]
fn compressed_batches_are_compacted_and_stay_compressed() {
    for c in [codec::GZIP, codec::SNAPPY, codec::LZ4, codec::ZSTD] {
        let dir = tempdir();
        let log = Log::open(dir.path(), compacted(|_| {})).expect("open");
        // Rounds 0-2 write keys 0-5, round 3 only keys 0-2: round 2's batch keeps half.
        for round in 0..4 {
            let mut b = RecordBatchBuilder::new(0);
            for k in 0..(if round == 3 { 3 } else { 6 }) {
                let v = format!("round {round} value of key {k}");
                b.push(
                    1_000,
                    Some(format!("k{k}").as_bytes()),
                    Some(v.as_bytes()),
                    &[],
                );
            }
            let mut packed = codec::compress_batch(&b.build(), c).expect("compress");
            log.append_as_leader(&mut packed, 0, 0).expect("append");
        }
        log.roll().expect("roll");
        let stats = log
            .compact_below(2_000, log.log_end_offset(), &IoThrottle::unlimited())
            .expect("compact");
        assert_eq!(stats.records_removed, 15, "codec {c}: {stats:?}");
        let (recs, codecs) = decoded(&log);
        let want: Vec<(String, i64)> = [(3, 15), (4, 16), (5, 17), (0, 18), (1, 19), (2, 20)]
            .iter()
            .map(|(k, o)| (format!("k{k}"), *o))
            .collect();
        assert_eq!(recs, want, "codec {c}");
        // The emptied batches went; the half-kept one was recompressed with its own codec.
        assert_eq!(codecs, vec![c, c], "codec {c}");
        // And all of it again after a restart (indexes rebuilt from the rewritten file).
        drop(log);
        let log = Log::open(dir.path(), compacted(|_| {})).expect("reopen");
        assert_eq!(decoded(&log).0, recs, "codec {c}");
    }
}

#[test]
fn the_throttle_paces_to_its_rate() {
    use std::time::Duration;
    assert_eq!(
        IoThrottle::delay(0, 1 << 30, Duration::ZERO),
        Duration::ZERO
    );
    // 10 MB at 10 MB/s take a second: after 250 ms, 750 ms are left to wait.
    assert_eq!(
        IoThrottle::delay(10_000_000, 10_000_000, Duration::from_millis(250)),
        Duration::from_millis(750)
    );
    // Behind the rate: no wait.
    assert_eq!(
        IoThrottle::delay(10_000_000, 1_000_000, Duration::from_millis(500)),
        Duration::ZERO
    );
}

/// Transactions on a compacted topic (Kafka Streams' changelogs under exactly-once): an
/// aborted record never supersedes the committed record of its key, a committed one does, and
/// markers stay.
#[test]
fn aborted_records_never_supersede_committed_ones() {
    let dir = tempdir();
    let log = Log::open(dir.path(), compacted(|_| {})).expect("open");
    let append = |mut b: Vec<u8>| {
        log.append_as_leader(&mut b, 0, 0).expect("append");
    };
    let txn = |pid: i64, seq: i32, key: &str, value: &str| {
        let mut b = RecordBatchBuilder::new(0)
            .producer(pid, 0, seq)
            .transactional(true);
        b.push(1_000, Some(key.as_bytes()), Some(value.as_bytes()), &[]);
        b.build()
    };
    // Offsets: 0 k=committed-plain, 1 k=aborted (pid 7), 2 abort marker,
    //          3 j=plain, 4 j=committed-txn (pid 8), 5 commit marker.
    append(keyed(&[("k", Some("committed-plain"))], 1_000));
    append(txn(7, 0, "k", "aborted"));
    append(batch::control_batch(7, 0, false, 0, 1_000));
    append(keyed(&[("j", Some("plain"))], 1_000));
    append(txn(8, 0, "j", "committed-txn"));
    append(batch::control_batch(8, 0, true, 0, 1_000));
    log.roll().expect("roll");
    log.compact_below(2_000, log.log_end_offset(), &IoThrottle::unlimited())
        .expect("compact");
    let mut kept = Vec::new();
    let mut markers = 0;
    let slice = log.read(0, 1 << 20).expect("read").expect("data");
    let mut buf = Vec::new();
    slice.read_into(&mut buf).expect("bytes");
    for (_, bytes) in Batches::new(&buf, true).flatten() {
        let h = batch::BatchHeader::new(bytes).expect("header");
        if h.is_control() {
            markers += 1;
            continue;
        }
        for r in batch::records(bytes).expect("records") {
            let r = r.expect("record");
            kept.push((
                String::from_utf8_lossy(r.key.unwrap_or_default()).to_string(),
                r.offset,
            ));
        }
    }
    // k: the committed plain record stays (the later aborted one must not shadow it);
    // j: the committed transactional record supersedes the plain one.
    assert!(kept.contains(&("k".to_string(), 0)), "{kept:?}");
    assert!(kept.contains(&("j".to_string(), 4)), "{kept:?}");
    assert!(!kept.contains(&("j".to_string(), 3)), "{kept:?}");
    assert_eq!(markers, 2, "markers are kept");
}
