//! Behaviour of the public `Log` API, one concern per test.

mod common;

use std::sync::Arc;

use common::{batch, keyed, read_all, records, small_config, tempdir};
use dmq_log::batch::{validate_batch, BatchHeader};
use dmq_log::{
    BatchDefect, CleanupPolicy, FlushPolicy, Log, LogConfig, LogError, RecordBatchBuilder,
    UNDEFINED_EPOCH,
};

#[test]
fn append_assigns_offsets_and_stamps_epoch() {
    let dir = tempdir();
    let log = Log::open(dir.path(), LogConfig::default()).expect("open");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let mut b1 = batch(3, 10, 1000);
    let info = log.append_as_leader(&mut b1, 7, 5000).expect("append");
    assert_eq!(
        (info.base_offset, info.last_offset, info.log_append_time_ms),
        (0, 2, -1)
    );
    let mut b2 = batch(2, 10, 1000);
    let info = log.append_as_leader(&mut b2, 7, 5000).expect("append");
    assert_eq!((info.base_offset, info.last_offset), (3, 4));
    assert_eq!(log.log_end_offset(), 5);
    let h = validate_batch(&b2, true).expect("caller's buffer stamped and still valid");
    assert_eq!((h.base_offset(), h.partition_leader_epoch()), (3, 7));
    assert_eq!(read_all(&log, 0), vec![b1, b2]);
    assert_eq!(log.end_offset_for_epoch(7), (7, 5));
}

#[test]
fn log_append_time_is_stamped() {
    let dir = tempdir();
    let log = Log::open(dir.path(), LogConfig::default()).expect("open");
    let mut b = RecordBatchBuilder::new(0).log_append_time(true);
    b.push(1, None, Some(b"x"), &[]);
    let mut b = b.build();
    let info = log.append_as_leader(&mut b, 0, 123_456).expect("append");
    assert_eq!(info.log_append_time_ms, 123_456);
    let stored = &read_all(&log, 0)[0];
    let h = validate_batch(stored, true).expect("valid");
    assert_eq!(h.max_timestamp(), 123_456);
}

#[test]
fn invalid_batches_are_rejected_with_reasons() {
    let dir = tempdir();
    let cfg = LogConfig {
        max_batch_bytes: 500,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), cfg).expect("open");
    let mut bad_crc = batch(2, 10, 0);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1;
    assert!(matches!(
        log.append_as_leader(&mut bad_crc, 0, 0),
        Err(LogError::InvalidBatch {
            position: 0,
            reason: BatchDefect::CrcMismatch { .. }
        })
    ));
    let mut bad_magic = batch(1, 1, 0);
    bad_magic[16] = 1;
    assert!(matches!(
        log.append_as_leader(&mut bad_magic, 0, 0),
        Err(LogError::InvalidBatch {
            reason: BatchDefect::BadMagic { magic: 1 },
            ..
        })
    ));
    let mut too_big = batch(10, 100, 0);
    assert!(matches!(
        log.append_as_leader(&mut too_big, 0, 0),
        Err(LogError::InvalidBatch {
            reason: BatchDefect::TooLarge { max: 500, .. },
            ..
        })
    ));
    let mut torn = batch(2, 10, 0);
    torn.truncate(torn.len() - 3);
    assert!(matches!(
        log.append_as_leader(&mut torn, 0, 0),
        Err(LogError::InvalidBatch { .. })
    ));
    assert!(matches!(
        log.append_as_leader(&mut [], 0, 0),
        Err(LogError::InvalidBatch {
            reason: BatchDefect::Empty,
            ..
        })
    ));
    // Second batch bad: nothing is appended.
    let mut two = batch(1, 1, 0);
    let mut bad = batch(1, 1, 0);
    bad[30] ^= 0xff;
    two.extend_from_slice(&bad);
    assert!(
        matches!(log.append_as_leader(&mut two, 0, 0), Err(LogError::InvalidBatch { position, .. }) if position > 0)
    );
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn multi_batch_append_and_read_bounds() {
    let dir = tempdir();
    let log = Log::open(dir.path(), LogConfig::default()).expect("open");
    let mut buf = batch(2, 100, 0);
    let b2 = batch(3, 100, 0);
    buf.extend_from_slice(&b2);
    let info = log.append_as_leader(&mut buf, 1, 0).expect("append");
    assert_eq!(
        (info.base_offset, info.last_offset, info.batches),
        (0, 4, 2)
    );
    // Offset inside the second batch returns that batch.
    let s = log.read(3, 1).expect("read").expect("some");
    assert_eq!((s.first_offset(), s.last_offset()), (2, 4));
    // max_bytes smaller than the first batch still returns it whole.
    assert_eq!(s.len(), b2.len());
    // A big max_bytes returns both.
    let s = log.read(0, 1 << 20).expect("read").expect("some");
    assert_eq!(s.len(), buf.len());
    assert_eq!(s.read_to_vec().expect("vec"), buf);
    let mut verified = Vec::new();
    s.read_verified(&mut verified).expect("crc ok");
    assert_eq!(verified, buf);
    // Bit rot after the append is caught by the verifying read.
    let path = dir.path().join("00000000000000000000.log");
    let mut raw = std::fs::read(&path).expect("read");
    raw[100] ^= 0x10;
    std::fs::write(&path, &raw).expect("write");
    assert!(matches!(
        s.read_verified(&mut verified),
        Err(LogError::CorruptBatch {
            offset: 0,
            position: 0,
            reason: BatchDefect::CrcMismatch { .. }
        })
    ));
    // End and beyond.
    assert!(log.read(5, 100).expect("read").is_none());
    assert!(matches!(
        log.read(6, 100),
        Err(LogError::OffsetOutOfRange {
            offset: 6,
            log_start: 0,
            log_end: 5
        })
    ));
    assert!(matches!(
        log.read(-1, 100),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn replicated_append_keeps_offsets_and_rejects_gaps_and_overlaps() {
    let dir = tempdir();
    let log = Log::open(dir.path(), LogConfig::default()).expect("open");
    let mut b = RecordBatchBuilder::new(0).partition_leader_epoch(2);
    b.push(0, None, Some(b"a"), &[]);
    b.push(0, None, Some(b"b"), &[]);
    let info = log.append_replicated(&b.build()).expect("append");
    assert_eq!((info.base_offset, info.last_offset), (0, 1));
    let mut gap = RecordBatchBuilder::new(5);
    gap.push(0, None, Some(b"x"), &[]);
    assert!(matches!(
        log.append_replicated(&gap.build()),
        Err(LogError::OffsetGap {
            expected: 2,
            found: 5
        })
    ));
    let mut overlap = RecordBatchBuilder::new(1);
    overlap.push(0, None, Some(b"x"), &[]);
    assert!(matches!(
        log.append_replicated(&overlap.build()),
        Err(LogError::OffsetOverlap {
            expected: 2,
            found: 1
        })
    ));
    let mut next = RecordBatchBuilder::new(2).partition_leader_epoch(4);
    next.push(0, None, Some(b"c"), &[]);
    log.append_replicated(&next.build()).expect("append");
    assert_eq!(
        log.epoch_entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect::<Vec<_>>(),
        vec![(2, 0), (4, 2)]
    );
    assert_eq!(log.end_offset_for_epoch(2), (2, 2));
    assert_eq!(log.end_offset_for_epoch(3), (2, 2));
    assert_eq!(log.end_offset_for_epoch(4), (4, 3));
}

#[test]
fn rolls_by_size_and_time_and_reads_across_segments() {
    let dir = tempdir();
    let cfg = LogConfig {
        segment_bytes: 1000,
        segment_ms: 10_000,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), cfg).expect("open");
    let mut all = Vec::new();
    for i in 0..20 {
        let mut b = batch(2, 100, 1000);
        log.append_as_leader(&mut b, 0, 1000 + i).expect("append");
        all.push(b);
    }
    let segs = log.segments();
    assert!(segs.len() >= 5, "{segs:?}");
    assert!(segs.iter().all(|s| s.size_bytes <= 1000));
    assert_eq!(read_all(&log, 0), all);
    // Time roll (message time, as Kafka): the active segment's first batch has
    // maxTimestamp 1001; a batch stamped 20 s later rolls, whatever the wall clock says.
    let before = log.segments().len();
    let mut b = batch(1, 1, 1000);
    log.append_as_leader(&mut b, 0, 1_000_000).expect("append");
    assert_eq!(log.segments().len(), before, "old message time: no roll");
    let mut b = batch(1, 1, 1000 + 20_000);
    log.append_as_leader(&mut b, 0, 0).expect("append");
    assert_eq!(log.segments().len(), before + 1);
    for s in log.segments() {
        for ext in ["log", "index", "timeindex"] {
            assert!(dir
                .path()
                .join(format!("{:020}.{ext}", s.base_offset))
                .exists());
        }
    }
}

#[test]
fn index_lookups_find_every_offset() {
    let dir = tempdir();
    let cfg = LogConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 300,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), cfg.clone()).expect("open");
    for i in 0..200 {
        let mut b = batch(1 + i % 4, 50, i as i64);
        log.append_as_leader(&mut b, 0, 0).expect("append");
    }
    let check = |log: &Log| {
        for o in 0..log.log_end_offset() {
            let s = log.read(o, 1).expect("read").expect("some");
            assert!(
                s.first_offset() <= o && o <= s.last_offset(),
                "offset {o}: {s:?}"
            );
        }
    };
    check(&log);
    log.close().expect("close");
    let log = Log::open(dir.path(), cfg).expect("reopen");
    check(&log);
}

#[test]
fn offset_for_timestamp() {
    let dir = tempdir();
    let log = Log::open(dir.path(), small_config()).expect("open");
    // Batch i holds records with timestamps 100*i + {0, 1, 2}.
    for i in 0..40 {
        let mut b = RecordBatchBuilder::new(0);
        for j in 0..3 {
            b.push(100 * i + j, None, Some(&[0u8; 40]), &[]);
        }
        log.append_as_leader(&mut b.build(), 0, 0).expect("append");
    }
    assert!(log.segments().len() > 2);
    assert_eq!(log.offset_for_timestamp(0).expect("ts"), Some((0, 0)));
    assert_eq!(log.offset_for_timestamp(101).expect("ts"), Some((4, 101)));
    assert_eq!(log.offset_for_timestamp(103).expect("ts"), Some((6, 200)));
    assert_eq!(
        log.offset_for_timestamp(3902).expect("ts"),
        Some((119, 3902))
    );
    assert_eq!(log.offset_for_timestamp(3903).expect("ts"), None);
    for t in (0..3903).step_by(37) {
        let (o, ts) = log.offset_for_timestamp(t).expect("ts").expect("some");
        let expect_ts = if t % 100 <= 2 { t } else { (t / 100 + 1) * 100 };
        assert_eq!(
            (o, ts),
            ((expect_ts / 100) * 3 + expect_ts % 100, expect_ts),
            "t={t}"
        );
    }
}

#[test]
fn truncate_to_removes_suffix_and_epochs() {
    let dir = tempdir();
    let log = Log::open(dir.path(), small_config()).expect("open");
    let mut batches = Vec::new();
    for i in 0..30 {
        let mut b = batch(2, 60, 0);
        log.append_as_leader(&mut b, i / 10, 0).expect("append");
        batches.push(b);
    }
    assert_eq!(log.end_offset_for_epoch(1), (1, 40));
    // Inside batch 12 (offsets 24, 25): the whole batch goes.
    assert_eq!(log.truncate_to(25).expect("truncate"), 24);
    assert_eq!(log.log_end_offset(), 24);
    assert_eq!(read_all(&log, 0), batches[..12].to_vec());
    assert_eq!(log.latest_epoch(), Some(1));
    assert_eq!(log.truncate_to(21).expect("truncate"), 20);
    assert_eq!(log.latest_epoch(), Some(0), "epoch 1 started at 20");
    assert_eq!(log.truncate_to(19).expect("truncate"), 18);
    assert_eq!(log.latest_epoch(), Some(0));
    let mut b = batch(1, 1, 0);
    assert_eq!(
        log.append_as_leader(&mut b, 5, 0)
            .expect("append")
            .base_offset,
        18
    );
    assert_eq!(log.end_offset_for_epoch(0), (0, 18));
    drop(log);
    let log = Log::open(dir.path(), small_config()).expect("reopen");
    assert_eq!(log.log_end_offset(), 19);
    assert_eq!(log.end_offset_for_epoch(0), (0, 18));
    // Truncate to 0 empties the log.
    log.truncate_to(0).expect("truncate");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert_eq!(log.latest_epoch(), None);
    assert!(read_all(&log, 0).is_empty());
}

#[test]
fn delete_records_and_retention() {
    let dir = tempdir();
    let cfg = LogConfig {
        retention_ms: Some(10_000),
        retention_bytes: None,
        ..small_config()
    };
    let log = Log::open(dir.path(), cfg.clone()).expect("open");
    for i in 0..40 {
        let mut b = batch(2, 60, i * 1000);
        log.append_as_leader(&mut b, 0, 0).expect("append");
    }
    let segs = log.segments();
    assert!(segs.len() >= 4);
    // DeleteRecords inside the second segment: the first segment goes, start is persisted.
    let target = segs[1].base_offset + 1;
    assert_eq!(log.delete_records_before(target).expect("delete"), target);
    assert_eq!(log.log_start_offset(), target);
    assert_eq!(log.segments()[0].base_offset, segs[1].base_offset);
    assert!(matches!(
        log.read(target - 1, 10),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert!(log.read(target, 10).expect("read").is_some());
    drop(log);
    let log = Log::open(dir.path(), cfg).expect("reopen");
    assert_eq!(log.log_start_offset(), target);
    // Time retention: timestamps are 0..39_000; now = 35_000 keeps segments with max ts ≥ 25_000.
    let out = log.apply_retention(35_000).expect("retention");
    assert!(out.segments_deleted > 0);
    for s in &log.segments()[..log.segments().len() - 1] {
        assert!(s.max_timestamp.expect("ts") >= 25_000);
    }
    assert_eq!(log.log_start_offset(), log.segments()[0].base_offset);
    // Everything expired: the active segment is kept.
    log.apply_retention(1_000_000).expect("retention");
    assert_eq!(log.segments().len(), 1);
    assert!(log.log_end_offset() == 80);
}

#[test]
fn retention_by_bytes() {
    let dir = tempdir();
    let cfg = LogConfig {
        retention_ms: None,
        retention_bytes: Some(3000),
        ..small_config()
    };
    let log = Log::open(dir.path(), cfg).expect("open");
    for _ in 0..60 {
        log.append_as_leader(&mut batch(2, 60, 0), 0, 0)
            .expect("append");
    }
    let before = log.size_bytes();
    log.apply_retention(0).expect("retention");
    let after = log.size_bytes();
    assert!(after >= 3000 && after < before, "{before} -> {after}");
    let first = log.segments()[0].size_bytes;
    assert!(
        after - first < 3000,
        "deleting one more would have been allowed"
    );
}

#[test]
fn compaction_keeps_latest_per_key_and_expires_tombstones() {
    let dir = tempdir();
    let cfg = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms: 1000,
        segment_bytes: 400,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), cfg.clone()).expect("open");
    let mut expected = std::collections::BTreeMap::new();
    for i in 0..60 {
        let k = format!("key{}", i % 7);
        let v = if i % 11 == 10 {
            None
        } else {
            Some(format!("v{i}"))
        };
        let ts = if i < 30 { 0 } else { 10_000 };
        log.append_as_leader(&mut keyed(&[(&k, v.as_deref())], ts), 0, 0)
            .expect("append");
        expected.insert(k, (v, i as i64));
    }
    let end = log.log_end_offset();
    let before = records(&log);
    let stats = log.compact(10_500).expect("compact");
    assert!(
        stats.segments_rewritten > 0 && stats.records_removed > 0,
        "{stats:?}"
    );
    assert!(stats.bytes_after < stats.bytes_before);
    let after = records(&log);
    assert_eq!(log.log_end_offset(), end);
    // Every surviving record existed before with the same offset.
    for r in &after {
        assert!(before.contains(r));
    }
    // The latest value of every key is still readable (the active segment is untouched).
    let mut latest = std::collections::BTreeMap::new();
    for (k, v, o) in &after {
        latest.insert(k.clone().expect("key"), (v.clone(), *o));
    }
    for (k, (v, o)) in &expected {
        if v.is_some() || *o >= 30 {
            assert_eq!(latest.get(k), Some(&(v.clone(), *o)), "key {k}");
        }
    }
    // Within sealed segments no key appears twice.
    let active_base = log.segments().last().expect("seg").base_offset;
    let mut seen = std::collections::HashSet::new();
    for (k, _, o) in after.iter().filter(|r| r.2 < active_base) {
        assert!(seen.insert(k.clone()), "duplicate {k:?} at {o}");
    }
    // Reads at every offset still work (gaps skip forward).
    for o in 0..end {
        let s = log.read(o, 1).expect("read").expect("some");
        assert!(s.last_offset() >= o);
    }
    // Compaction survives a reopen (clean and unclean).
    drop(log);
    let log = Log::open(dir.path(), cfg.clone()).expect("reopen");
    assert_eq!(records(&log), after);
    log.close().expect("close");
    let log = Log::open(dir.path(), cfg.clone()).expect("reopen");
    assert_eq!(records(&log), after);
    assert_eq!(log.compact(10_500).expect("again"), Default::default());
    // Segments stay contiguous after compaction (each keeps its last batch, possibly empty),
    // so even an unclean reopen under a non-compacting policy keeps everything.
    let segs = log.segments();
    for w in segs.windows(2) {
        assert_eq!(w[0].next_offset, w[1].base_offset, "{segs:?}");
    }
    drop(log);
    let delete_cfg = LogConfig {
        cleanup_policy: CleanupPolicy::Delete,
        ..cfg
    };
    let log = Log::open(dir.path(), delete_cfg).expect("reopen");
    assert_eq!(records(&log), after);
    assert_eq!(log.log_end_offset(), end);
}

#[test]
fn flush_policies_and_durable_offset() {
    for policy in [
        FlushPolicy::EveryAppend,
        FlushPolicy::IntervalMs(100),
        FlushPolicy::OnRoll,
    ] {
        let dir = tempdir();
        let log = Log::open(
            dir.path(),
            LogConfig {
                flush: policy,
                ..small_config()
            },
        )
        .expect("open");
        assert_eq!(log.durable_offset(), 0);
        log.append_as_leader(&mut batch(2, 10, 0), 0, 1000)
            .expect("append");
        match policy {
            FlushPolicy::EveryAppend | FlushPolicy::IntervalMs(_) => {
                assert_eq!(log.durable_offset(), 2)
            }
            FlushPolicy::OnRoll => assert_eq!(log.durable_offset(), 0),
        }
        log.append_as_leader(&mut batch(2, 10, 0), 0, 1050)
            .expect("append");
        if policy == FlushPolicy::IntervalMs(100) {
            assert_eq!(log.durable_offset(), 2, "within the interval: not yet");
            assert_eq!(log.maybe_flush(1060).expect("maybe"), 2);
            assert_eq!(log.maybe_flush(1100).expect("maybe"), 4);
        }
        assert_eq!(log.flush().expect("flush"), 4);
        assert_eq!(log.durable_offset(), 4);
    }
}

/// Under the default policy a roll leaves the old segment's fsync to `sync_rolled` (off the
/// append path): the durable offset moves only once that ran, and never past a truncation
/// that happened meanwhile.
#[test]
fn a_rolled_segment_is_fsynced_later_by_sync_rolled() {
    let dir = tempdir();
    let log = Log::open(
        dir.path(),
        LogConfig {
            flush: FlushPolicy::OnRoll,
            ..small_config()
        },
    )
    .expect("open");
    log.append_as_leader(&mut batch(2, 10, 0), 0, 1000)
        .expect("append");
    log.roll().expect("roll");
    log.append_as_leader(&mut batch(2, 10, 0), 0, 1000)
        .expect("append");
    assert_eq!(log.durable_offset(), 0, "the roll itself fsyncs nothing");
    log.sync_rolled().expect("sync");
    assert_eq!(log.durable_offset(), 2, "the rolled segment's end");
    log.sync_rolled().expect("nothing left to sync");
    assert_eq!(log.durable_offset(), 2);

    log.roll().expect("roll");
    log.append_as_leader(&mut batch(2, 10, 0), 0, 1000)
        .expect("append");
    assert_eq!(log.truncate_to(2).expect("truncate"), 2);
    log.sync_rolled().expect("sync");
    assert!(
        log.durable_offset() <= 2,
        "a segment truncated away cannot move the durable offset past the log end: {}",
        log.durable_offset()
    );
    log.close().expect("close");
    let log = Log::open(dir.path(), small_config()).expect("reopen");
    assert_eq!(log.log_end_offset(), 2);
}

#[test]
fn close_then_reopen_is_clean_and_closed_log_refuses() {
    let dir = tempdir();
    let log = Log::open(dir.path(), small_config()).expect("open");
    let mut all = Vec::new();
    for _ in 0..30 {
        let mut b = batch(3, 30, 5);
        log.append_as_leader(&mut b, 1, 0).expect("append");
        all.push(b);
    }
    log.close().expect("close");
    assert!(matches!(
        log.append_as_leader(&mut batch(1, 1, 0), 0, 0),
        Err(LogError::Closed { .. })
    ));
    assert!(dir.path().join("clean-shutdown").exists());
    let log = Log::open(dir.path(), small_config()).expect("reopen");
    assert!(
        !dir.path().join("clean-shutdown").exists(),
        "marker consumed"
    );
    assert_eq!(read_all(&log, 0), all);
    assert_eq!(
        log.append_as_leader(&mut batch(1, 1, 0), 1, 0)
            .expect("append")
            .base_offset,
        90
    );
}

#[test]
fn open_at_and_truncate_fully() {
    let dir = tempdir();
    let log = Log::open_at(dir.path(), LogConfig::default(), 1).expect("open");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (1, 1));
    log.append_as_leader(&mut batch(1, 1, 0), 0, 0)
        .expect("append");
    assert_eq!(log.log_end_offset(), 2);
    log.truncate_fully_and_start_at(100).expect("reset");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 100));
    drop(log);
    let log = Log::open_at(dir.path(), LogConfig::default(), 1).expect("reopen");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 100));
    assert_eq!(log.end_offset_for_epoch(0), (UNDEFINED_EPOCH, -1));
}

#[test]
fn raft_log_usage() {
    let dir = tempdir();
    let log = Log::open_at(
        dir.path(),
        LogConfig {
            segment_bytes: 600,
            ..LogConfig::default()
        },
        1,
    )
    .expect("open");
    let entry = |term: i32, index: i64| {
        let mut b = RecordBatchBuilder::new(index).partition_leader_epoch(term);
        b.push(0, None, Some(format!("entry-{index}").as_bytes()), &[]);
        b.build()
    };
    for i in 1..=50 {
        log.append_replicated(&entry(1 + (i as i32) / 20, i))
            .expect("append");
    }
    log.flush().expect("flush");
    let get = |i: i64| {
        let bytes = log
            .read(i, 1)
            .expect("read")
            .expect("some")
            .read_to_vec()
            .expect("vec");
        let r = dmq_log::batch::records(&bytes)
            .expect("it")
            .next()
            .expect("one")
            .expect("ok");
        (
            r.offset,
            String::from_utf8(r.value.expect("v").to_vec()).expect("utf8"),
        )
    };
    assert_eq!(get(37), (37, "entry-37".to_string()));
    assert_eq!(log.end_offset_for_epoch(2), (2, 40));
    log.truncate_to(45).expect("suffix");
    assert_eq!(log.log_end_offset(), 45);
    log.append_replicated(&entry(9, 45)).expect("re-append");
    log.delete_records_before(30).expect("purge");
    assert_eq!(log.log_start_offset(), 30);
    assert!(log.segments()[0].base_offset <= 30);
    assert_eq!(get(30), (30, "entry-30".to_string()));
    drop(log);
    let log = Log::open_at(
        dir.path(),
        LogConfig {
            segment_bytes: 600,
            ..LogConfig::default()
        },
        1,
    )
    .expect("reopen");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (30, 46));
    assert_eq!(log.latest_epoch(), Some(9));
}

#[test]
fn readers_run_concurrently_with_the_writer() {
    let dir = tempdir();
    let log = Arc::new(Log::open(dir.path(), small_config()).expect("open"));
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for _ in 0..300 {
                log.append_as_leader(&mut batch(2, 40, 0), 0, 0)
                    .expect("append");
            }
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut offset = 0;
                while offset < 600 {
                    match log.read(offset, 500).expect("read") {
                        None => std::thread::yield_now(),
                        Some(s) => {
                            let bytes = s.read_to_vec().expect("vec");
                            for b in dmq_log::batch::Batches::new(&bytes, true) {
                                let (_, b) = b.expect("whole valid batch");
                                let h = BatchHeader::new(b).expect("hdr");
                                assert!(h.last_offset() >= offset);
                                offset = h.last_offset() + 1;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    writer.join().expect("writer");
    for r in readers {
        r.join().expect("reader");
    }
}

#[test]
fn background_cleaner_stops_on_drop() {
    let dir = tempdir();
    let log = Arc::new(Log::open(dir.path(), LogConfig::default()).expect("open"));
    let h = dmq_log::spawn_cleaner(log.clone(), std::time::Duration::from_secs(3600));
    drop(h); // must not hang
}

#[test]
fn compaction_drops_old_tombstones_and_keeps_recent_ones() {
    let dir = tempdir();
    let cfg = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms: 1000,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), cfg).expect("open");
    let append = |recs: &[(&str, Option<&str>)], ts| {
        log.append_as_leader(&mut keyed(recs, ts), 0, 0)
            .expect("append");
    };
    append(&[("a", Some("1")), ("b", Some("1")), ("c", Some("1"))], 0);
    append(&[("a", None)], 100); // old tombstone
    append(&[("b", None)], 5000); // recent tombstone
    append(&[("c", Some("2"))], 5000);
    log.roll().expect("roll");
    append(&[("d", Some("1"))], 5000); // active segment: untouched
    let stats = log.compact(5500).expect("compact");
    assert_eq!(stats.segments_rewritten, 1);
    let recs: Vec<_> = records(&log)
        .into_iter()
        .map(|(k, v, o)| (k.expect("key"), v, o))
        .collect();
    assert_eq!(
        recs,
        vec![
            ("b".to_string(), None, 4),
            ("c".to_string(), Some("2".to_string()), 5),
            ("d".to_string(), Some("1".to_string()), 6),
        ]
    );
    // Later, the recent tombstone expires too.
    log.compact(10_000).expect("compact");
    let keys: Vec<_> = records(&log)
        .into_iter()
        .map(|r| r.0.expect("key"))
        .collect();
    assert_eq!(keys, vec!["c", "d"]);
    assert_eq!(log.log_end_offset(), 7);
}

#[test]
fn readers_stay_consistent_during_compaction_and_retention() {
    let dir = tempdir();
    let cfg = LogConfig {
        segment_bytes: 1500,
        cleanup_policy: CleanupPolicy::DeleteAndCompact,
        retention_ms: None,
        retention_bytes: Some(1000),
        delete_retention_ms: 0,
        ..LogConfig::default()
    };
    let log = Arc::new(Log::open(dir.path(), cfg).expect("open"));
    const BATCHES: i64 = 400;
    // The writer hands over to the cleaner every 40 batches (so that cleaning certainly
    // happens, without sleeps); the reader runs freely against both.
    let (to_cleaner, cleaner_rx) = std::sync::mpsc::channel::<()>();
    let (to_writer, writer_rx) = std::sync::mpsc::channel::<()>();
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for i in 0..BATCHES {
                let k = format!("k{}", i % 13);
                let v = format!("v{i}");
                log.append_as_leader(&mut keyed(&[(&k, Some(&v))], i), 0, 0)
                    .expect("append");
                if i % 40 == 39 {
                    to_cleaner.send(()).expect("send");
                    writer_rx.recv().expect("cleaner pass done");
                }
            }
        })
    };
    let cleaner = {
        let log = log.clone();
        std::thread::spawn(move || {
            let (mut rewritten, mut deleted) = (0, 0);
            while cleaner_rx.recv().is_ok() {
                rewritten += log.compact(1_000_000).expect("compact").segments_rewritten;
                deleted += log.apply_retention(0).expect("retention").segments_deleted;
                let _ = to_writer.send(());
            }
            (rewritten, deleted)
        })
    };
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut offset = 0;
            while offset < BATCHES {
                let slice = match log.read(offset, 700) {
                    Ok(Some(s)) => s,
                    Ok(None) => {
                        std::thread::yield_now();
                        continue;
                    }
                    Err(LogError::OffsetOutOfRange { log_start, .. }) if offset < log_start => {
                        offset = log_start; // retention moved the start past us
                        continue;
                    }
                    Err(e) => panic!("read at {offset}: {e}"),
                };
                let mut buf = Vec::new();
                slice
                    .read_verified(&mut buf)
                    .expect("every served batch has a valid CRC");
                for b in dmq_log::batch::Batches::new(&buf, true) {
                    let (_, b) = b.expect("whole batch");
                    let h = BatchHeader::new(b).expect("hdr");
                    assert!(h.last_offset() >= offset, "went backwards");
                    offset = h.last_offset() + 1;
                }
            }
        })
    };
    writer.join().expect("writer");
    let (rewritten, deleted) = cleaner.join().expect("cleaner");
    assert!(rewritten > 0 && deleted > 0, "{rewritten} {deleted}");
    reader.join().expect("reader");
    // Final state: the latest value of every key in the retained range is readable.
    let recs = records(&log);
    assert_eq!(log.log_end_offset(), BATCHES);
    assert!(recs.iter().any(|r| r.2 == BATCHES - 1));
}

#[cfg(target_os = "linux")]
#[test]
fn sendfile_copies_the_slice_without_user_space() {
    use std::os::fd::AsRawFd;
    let dir = tempdir();
    let log = Log::open(dir.path(), LogConfig::default()).expect("open");
    for _ in 0..5 {
        log.append_as_leader(&mut batch(3, 500, 0), 0, 0)
            .expect("append");
    }
    let slice = log.read(4, 1 << 20).expect("read").expect("some");
    let out = tempfile::tempfile().expect("tmp");
    let mut sent = 0;
    while sent < slice.len() {
        sent += slice.sendfile_to(out.as_raw_fd(), sent).expect("sendfile");
    }
    assert_eq!(slice.sendfile_to(out.as_raw_fd(), sent).expect("done"), 0);
    let mut got = Vec::new();
    use std::io::{Read, Seek};
    let mut out = out;
    out.rewind().expect("rewind");
    out.read_to_end(&mut got).expect("read");
    assert_eq!(got, slice.read_to_vec().expect("vec"));
}
