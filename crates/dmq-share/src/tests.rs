//! Table tests, one per rule; each names the proposal it checks (KIP-932 share groups,
//! KIP-1222 lock renewal, issue #19 for what goes beyond Kafka).

use std::collections::{HashMap, HashSet};

use super::*;
use AcknowledgeType::{Accept, Gap, Reject, Release, Renew};

/// The high watermark in most tests: far away, so only `max_records` and the window bound.
const HW: i64 = 1_000_000;

/// Small numbers so that the limits are reached in a few steps.
fn config() -> ShareConfig {
    ShareConfig {
        record_lock_duration_ms: 1_000,
        delivery_count_limit: 3,
        max_record_locks: 100,
        redelivery_backoff_ms: 0,
    }
}

fn partition(config: ShareConfig) -> SharePartition {
    SharePartition::new(config, AutoOffsetReset::Earliest, 0, HW).expect("valid config")
}

/// Acquires and returns `(first, last, delivery count)` triples.
fn acq(p: &mut SharePartition, member: &str, max: u32, now_ms: i64) -> Vec<(i64, i64, i16)> {
    let got = p.acquire(member, max, HW, now_ms);
    check_invariants(p);
    got.records
        .iter()
        .map(|r| (r.first_offset, r.last_offset, r.delivery_count))
        .collect()
}

fn ack(
    p: &mut SharePartition,
    member: &str,
    first: i64,
    last: i64,
    ack: AcknowledgeType,
    now_ms: i64,
) -> Result<Outcome, ShareError> {
    let before = p.clone();
    let result = p.acknowledge(member, &[AckBatch::new(first, last, ack)], now_ms);
    if result.is_err() {
        assert_eq!(*p, before, "a refused acknowledgement changes nothing");
    }
    check_invariants(p);
    result
}

fn dead(first: i64, last: i64, delivery_count: i16, reason: DeadLetterReason) -> DeadLetter {
    DeadLetter {
        first_offset: first,
        last_offset: last,
        delivery_count,
        reason,
    }
}

/// The contract of [`SharePartition`]: contiguous ranges covering `[start, end)`, the first
/// one not finished.
fn check_invariants(p: &SharePartition) {
    assert!(p.start_offset <= p.end_offset, "start past end: {p:?}");
    let mut next = p.start_offset;
    for (&first, r) in &p.ranges {
        assert_eq!(first, next, "ranges not contiguous: {p:?}");
        assert!(r.last_offset >= first, "empty range: {p:?}");
        next = r.last_offset + 1;
    }
    assert_eq!(
        next, p.end_offset,
        "ranges do not end at the end offset: {p:?}"
    );
    if let Some(r) = p.ranges.values().next() {
        assert!(!r.slot.state().is_terminal(), "finished prefix kept: {p:?}");
    }
}

#[test]
fn kip932_accept_moves_the_start_offset() {
    let mut p = partition(config());
    assert_eq!(acq(&mut p, "a", 10, 0), vec![(0, 9, 1)]);
    assert_eq!((p.start_offset(), p.end_offset()), (0, 10));
    // Rows: (first, last acknowledged, start offset after). A hole holds the start still.
    for (first, last, start) in [(5, 9, 0), (0, 2, 3), (3, 4, 10)] {
        ack(&mut p, "a", first, last, Accept, 1).expect("held");
        assert_eq!(p.start_offset(), start, "after accepting {first}..={last}");
    }
    assert_eq!(p.range_count(), 0, "the finished prefix is forgotten");
    assert_eq!(p.counts().acknowledged_total, 10);
    assert_eq!(acq(&mut p, "a", 5, 2), vec![(10, 14, 1)]);
}

#[test]
fn kip932_release_gives_delivery_count_2_on_the_next_acquisition() {
    let mut p = partition(config());
    assert_eq!(acq(&mut p, "a", 10, 0), vec![(0, 9, 1)]);
    let out = ack(&mut p, "a", 3, 5, Release, 1).expect("held");
    assert!(out.dead_letters.is_empty());
    // Released records come first, then new ones; each acquisition carries its count.
    assert_eq!(acq(&mut p, "b", 5, 2), vec![(3, 5, 2), (10, 11, 1)]);
    assert_eq!(p.record(4), Some((RecordState::Acquired, 2)));
}

#[test]
fn kip932_reject_archives_and_is_never_reacquired() {
    let mut p = partition(config());
    acq(&mut p, "a", 10, 0);
    let out = ack(&mut p, "a", 2, 3, Reject, 1).expect("held");
    assert_eq!(
        out.dead_letters,
        vec![dead(2, 3, 1, DeadLetterReason::Rejected)]
    );
    assert_eq!(p.record(2), Some((RecordState::Archived, 1)));
    ack(&mut p, "a", 0, 9, Release, 1).expect_err("2..=3 are archived, not held");
    for (first, last) in [(0, 1), (4, 9)] {
        ack(&mut p, "a", first, last, Release, 1).expect("held");
    }
    let again = acq(&mut p, "b", 100, 2);
    assert_eq!(again[0], (0, 1, 2));
    assert_eq!(again[1], (4, 9, 2));
    assert!(again.iter().all(|&(f, l, _)| !(f..=l).contains(&2)));
}

#[test]
fn kip932_lock_expiry_releases_to_other_members() {
    let mut p = partition(config());
    acq(&mut p, "a", 5, 0);
    // Before the lock runs out, nobody else gets the records; then they go to the next asker.
    assert_eq!(acq(&mut p, "b", 5, 999), vec![(5, 9, 1)]);
    assert_eq!(p.next_wakeup_ms(), Some(1_000));
    assert_eq!(acq(&mut p, "b", 5, 1_000), vec![(0, 4, 2)]);
    let err = ack(&mut p, "a", 0, 4, Accept, 1_001).expect_err("a lost its lock");
    assert_eq!(err.kafka_code(), 121);
    ack(&mut p, "b", 0, 4, Accept, 1_001).expect("b holds them now");
}

#[test]
fn kip932_only_the_holder_may_acknowledge() {
    // Rows: (member, first, last, now, expected error). "a" holds 0..=4 until 1_000, "b"
    // holds 5..=9, 10..=11 were accepted by "a", 12..=13 released.
    let rows: [(&str, i64, i64, i64, ShareError); 6] = [
        (
            "b",
            0,
            4,
            10,
            ShareError::InvalidRecordState {
                offset: 0,
                reason: "acquired by another member",
            },
        ),
        (
            "a",
            3,
            6,
            10,
            ShareError::InvalidRecordState {
                offset: 5,
                reason: "acquired by another member",
            },
        ),
        (
            "a",
            0,
            4,
            1_000,
            ShareError::InvalidRecordState {
                offset: 0,
                reason: "the acquisition lock has expired",
            },
        ),
        (
            "a",
            12,
            12,
            10,
            ShareError::InvalidRecordState {
                offset: 12,
                reason: "not acquired",
            },
        ),
        (
            "a",
            10,
            11,
            10,
            ShareError::InvalidRecordState {
                offset: 10,
                reason: "already acknowledged",
            },
        ),
        (
            "a",
            13,
            20,
            10,
            ShareError::InvalidAckBatch {
                first_offset: 13,
                last_offset: 20,
                reason: "past the last acquired record",
            },
        ),
    ];
    for (member, first, last, now, expected) in rows {
        let mut p = partition(config());
        acq(&mut p, "a", 5, 0);
        acq(&mut p, "b", 5, 500);
        assert_eq!(acq(&mut p, "a", 4, 0), vec![(10, 13, 1)]);
        ack(&mut p, "a", 10, 11, Accept, 1).expect("held");
        ack(&mut p, "a", 12, 13, Release, 1).expect("held");
        let err = ack(&mut p, member, first, last, Accept, now).expect_err("refused");
        assert_eq!(err, expected, "{member} acknowledging {first}..={last}");
    }
}

#[test]
fn kip932_release_at_the_delivery_limit_archives() {
    // Rows: delivery count limit → the acquisition on which a RELEASE archives.
    for limit in [1_i16, 2, 3, 5] {
        let mut p = partition(ShareConfig {
            delivery_count_limit: limit,
            ..config()
        });
        for delivery in 1..=limit {
            assert_eq!(acq(&mut p, "a", 1, 0), vec![(0, 0, delivery)]);
            let out = ack(&mut p, "a", 0, 0, Release, 0).expect("held");
            if delivery < limit {
                assert!(out.dead_letters.is_empty(), "limit {limit}");
            } else {
                assert_eq!(
                    out.dead_letters,
                    vec![dead(0, 0, limit, DeadLetterReason::DeliveryLimit)]
                );
            }
        }
        assert_eq!(
            p.start_offset(),
            1,
            "archived: the start offset moves over it"
        );
        assert_eq!(acq(&mut p, "a", 1, 0), vec![(1, 1, 1)], "limit {limit}");
    }
}

#[test]
fn kip932_lock_expiry_at_the_delivery_limit_archives() {
    let mut p = partition(config());
    let mut now = 0;
    for delivery in 1..=3 {
        assert_eq!(acq(&mut p, "a", 2, now), vec![(0, 1, delivery)]);
        now += 1_000;
        let out = p.expire_locks(now);
        check_invariants(&p);
        assert!(out.changed);
        let expected = if delivery == 3 {
            vec![dead(0, 1, 3, DeadLetterReason::DeliveryLimit)]
        } else {
            vec![]
        };
        assert_eq!(out.dead_letters, expected, "delivery {delivery}");
    }
    assert_eq!(p.start_offset(), 2);
    assert_eq!(p.counts().dead_lettered_total, 2);
}

#[test]
fn kip932_max_record_locks_caps_the_in_flight_window() {
    let mut p = partition(ShareConfig {
        max_record_locks: 10,
        ..config()
    });
    assert_eq!(acq(&mut p, "a", 8, 0), vec![(0, 7, 1)]);
    assert_eq!(acq(&mut p, "b", 8, 0), vec![(8, 9, 1)], "window full at 10");
    assert_eq!(acq(&mut p, "b", 8, 0), vec![]);
    // Released records inside the window can always be acquired again.
    ack(&mut p, "a", 4, 7, Release, 1).expect("held");
    assert_eq!(acq(&mut p, "b", 8, 2), vec![(4, 7, 2)]);
    // The window moves with the start offset, not with acknowledgements behind a hole.
    ack(&mut p, "a", 1, 3, Accept, 3).expect("held");
    assert_eq!(acq(&mut p, "b", 8, 3), vec![]);
    ack(&mut p, "a", 0, 0, Accept, 3).expect("held");
    assert_eq!(p.start_offset(), 4);
    assert_eq!(acq(&mut p, "b", 8, 3), vec![(10, 13, 1)]);
    assert_eq!(p.counts().in_flight, 10);
    // The bound the caller passes (high watermark / LSO) holds too.
    let mut q = partition(config());
    assert_eq!(q.acquire("a", 50, 7, 0).count(), 7);
    assert_eq!(q.acquire("a", 50, 7, 0).count(), 0);
}

#[test]
fn kip932_gaps_are_archived_without_dead_letter() {
    let mut p = partition(config());
    acq(&mut p, "a", 6, 0);
    // Offsets 2 and 3 were compacted away: the client reports them as GAP.
    let types = vec![Accept, Accept, Gap, Gap, Accept, Accept];
    let out = p
        .acknowledge(
            "a",
            &[AckBatch {
                first_offset: 0,
                last_offset: 5,
                types,
            }],
            1,
        )
        .expect("held");
    assert!(out.dead_letters.is_empty());
    assert_eq!(p.start_offset(), 6);
    let counts = p.counts();
    assert_eq!((counts.acknowledged_total, counts.archived_total), (4, 2));
    assert_eq!(counts.dead_lettered_total, 0);
}

#[test]
fn kip932_per_offset_types_settle_each_offset() {
    let mut p = partition(config());
    acq(&mut p, "a", 5, 0);
    let batch = AckBatch {
        first_offset: 0,
        last_offset: 4,
        types: vec![Accept, Release, Reject, Release, Renew],
    };
    let out = p.acknowledge("a", &[batch], 10).expect("held");
    check_invariants(&p);
    assert_eq!(
        out.dead_letters,
        vec![dead(2, 2, 1, DeadLetterReason::Rejected)]
    );
    let states: Vec<_> = (0..5).map(|o| p.record(o).map(|r| r.0)).collect();
    use RecordState::{Acquired, Archived, Available};
    assert_eq!(
        states,
        vec![
            None,
            Some(Available),
            Some(Archived),
            Some(Available),
            Some(Acquired)
        ]
    );
    assert_eq!(p.start_offset(), 1);
}

#[test]
fn kip932_acknowledgement_is_all_or_nothing() {
    let mut p = partition(config());
    acq(&mut p, "a", 5, 0);
    acq(&mut p, "b", 5, 0);
    let before = p.clone();
    let batches = [
        AckBatch::new(0, 4, Accept),
        AckBatch::new(5, 5, Accept), // held by b
    ];
    let err = p.acknowledge("a", &batches, 1).expect_err("5 is b's");
    assert_eq!(err.kafka_code(), 121);
    assert_eq!(p, before);
}

#[test]
fn kip932_malformed_batches_are_invalid_requests() {
    let mut p = partition(config());
    acq(&mut p, "a", 10, 0);
    let rows: [(&str, Vec<AckBatch>); 4] = [
        ("first after last", vec![AckBatch::new(5, 4, Accept)]),
        (
            "two types for three offsets",
            vec![AckBatch {
                first_offset: 0,
                last_offset: 2,
                types: vec![Accept, Reject],
            }],
        ),
        (
            "overlapping batches",
            vec![AckBatch::new(0, 3, Accept), AckBatch::new(3, 4, Accept)],
        ),
        (
            "unsorted batches",
            vec![AckBatch::new(5, 6, Accept), AckBatch::new(0, 1, Accept)],
        ),
    ];
    for (what, batches) in rows {
        let before = p.clone();
        let err = p.acknowledge("a", &batches, 1).expect_err(what);
        assert_eq!(err.kafka_code(), 42, "{what}: {err}");
        assert_eq!(p, before, "{what}");
    }
    assert_eq!(
        AcknowledgeType::from_code(5),
        Err(ShareError::UnknownAcknowledgeType { code: 5 })
    );
    for code in 0..=4 {
        let t = AcknowledgeType::from_code(code).expect("defined");
        assert_eq!(t.code(), code);
    }
}

#[test]
fn kip932_acknowledgements_below_the_start_offset_are_skipped() {
    let mut p = partition(config());
    acq(&mut p, "a", 10, 0);
    ack(&mut p, "a", 0, 4, Accept, 1).expect("held");
    // A retried acknowledgement of finished records, partly or wholly below the start offset.
    let out = ack(&mut p, "a", 0, 4, Accept, 2).expect("skipped");
    assert!(!out.changed);
    ack(&mut p, "a", 2, 7, Accept, 2).expect("5..=7 held, 2..=4 skipped");
    assert_eq!(p.start_offset(), 8);
}

#[test]
fn kip932_member_left_releases_its_records() {
    let mut p = partition(config());
    acq(&mut p, "a", 3, 0);
    acq(&mut p, "b", 3, 0);
    acq(&mut p, "a", 3, 0);
    let out = p.member_left("a", 10);
    check_invariants(&p);
    assert!(out.changed && out.dead_letters.is_empty());
    assert_eq!(p.counts().acquired, 3);
    assert_eq!(
        acq(&mut p, "c", 10, 10),
        vec![(0, 2, 2), (6, 8, 2), (9, 12, 1)]
    );
    assert!(!p.member_left("nobody", 11).changed);
}

#[test]
fn kip1222_renew_extends_the_lock() {
    let mut p = partition(config());
    acq(&mut p, "a", 3, 0);
    ack(&mut p, "a", 0, 2, Renew, 900).expect("held");
    assert!(!p.expire_locks(1_000).changed, "renewed until 1_900");
    assert_eq!(p.record(0), Some((RecordState::Acquired, 1)));
    ack(&mut p, "a", 0, 2, Accept, 1_899).expect("still held");
    assert_eq!(p.start_offset(), 3);
}

#[test]
fn issue19_redelivery_backoff_delays_reacquisition_and_not_beyond() {
    let mut p = partition(ShareConfig {
        redelivery_backoff_ms: 500,
        ..config()
    });
    acq(&mut p, "a", 4, 0);
    ack(&mut p, "a", 0, 1, Release, 100).expect("held");
    assert_eq!(p.counts().available, 2);
    assert_eq!(p.next_wakeup_ms(), Some(600));
    // During the backoff the released records are skipped; new records still flow.
    assert_eq!(acq(&mut p, "b", 2, 599), vec![(4, 5, 1)]);
    assert_eq!(acq(&mut p, "b", 2, 600), vec![(0, 1, 2)]);
    // Lock expiry waits out the backoff too.
    let out = p.expire_locks(1_000);
    assert!(out.changed);
    assert_eq!(acq(&mut p, "c", 2, 1_499), vec![(6, 7, 1)]);
    assert_eq!(acq(&mut p, "c", 2, 1_500), vec![(2, 3, 2)]);
}

#[test]
fn issue19_dead_letters_are_reported_exactly_once() {
    let mut p = partition(ShareConfig {
        delivery_count_limit: 2,
        ..config()
    });
    let mut letters: Vec<DeadLetter> = Vec::new();
    let mut now = 0;
    acq(&mut p, "a", 10, now);
    letters.extend(
        ack(&mut p, "a", 0, 1, Reject, now)
            .expect("held")
            .dead_letters,
    );
    letters.extend(
        ack(&mut p, "a", 2, 9, Release, now)
            .expect("held")
            .dead_letters,
    );
    acq(&mut p, "b", 8, now);
    now += 1_000;
    // Every later call that could archive again reports nothing more.
    letters.extend(p.expire_locks(now).dead_letters);
    letters.extend(p.expire_locks(now).dead_letters);
    letters.extend(p.member_left("b", now).dead_letters);
    letters.extend(p.acquire("c", 100, HW, now).dead_letters);
    letters.extend(p.expire_locks(now + 5_000).dead_letters);
    let mut offsets: Vec<i64> = letters.iter().flat_map(DeadLetter::offsets).collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..10).collect::<Vec<_>>(), "{letters:?}");
    assert_eq!(
        letters[..2],
        [
            dead(0, 1, 1, DeadLetterReason::Rejected),
            dead(2, 9, 2, DeadLetterReason::DeliveryLimit)
        ]
    );
    assert_eq!(p.counts().dead_lettered_total, 10);
}

#[test]
fn kip932_snapshot_round_trip_keeps_states_and_delivery_counts() {
    let mut p = partition(config());
    acq(&mut p, "a", 10, 0);
    ack(&mut p, "a", 1, 2, Accept, 1).expect("held");
    ack(&mut p, "a", 3, 3, Reject, 1).expect("held");
    ack(&mut p, "a", 4, 5, Release, 1).expect("held");
    assert_eq!(acq(&mut p, "b", 2, 2), vec![(4, 5, 2)]);
    ack(&mut p, "b", 5, 5, Release, 3).expect("held");
    // 0 a, 1-2 acked, 3 archived, 4 b(2), 5 available(2), 6-9 a.
    let snapshot = p.snapshot();
    let json = serde_json::to_string(&snapshot).expect("serializable");
    let read: ShareSnapshot = serde_json::from_str(&json).expect("readable");
    assert_eq!(read, snapshot);
    let q = SharePartition::from_snapshot(config(), &read, 10).expect("valid");
    check_invariants(&q);
    let rows: Vec<_> = (0..10).map(|o| q.record(o)).collect();
    use RecordState::{Acknowledged, Archived, Available};
    let expected = [
        (Available, 1),
        (Acknowledged, 1),
        (Acknowledged, 1),
        (Archived, 1),
        (Available, 2),
        (Available, 2),
        (Available, 1),
        (Available, 1),
        (Available, 1),
        (Available, 1),
    ];
    assert_eq!(rows, expected.map(Some).to_vec());
    assert_eq!((q.start_offset(), q.end_offset()), (0, 10));
    assert_eq!(q.counts().acquired, 0, "locks do not survive the leader");
    assert_eq!(q.counts().dead_lettered_total, 1);
    // The restored state hands out exactly the unacknowledged records, with counts + 1.
    let mut q = q;
    assert_eq!(
        acq(&mut q, "c", 100, 10),
        vec![(0, 0, 2), (4, 5, 3), (6, 9, 2), (10, 99, 1)]
    );
}

#[test]
fn kip932_restore_at_the_delivery_limit_archives_on_acquisition() {
    let mut p = partition(ShareConfig {
        delivery_count_limit: 1,
        ..config()
    });
    acq(&mut p, "a", 3, 0);
    let mut q = SharePartition::from_snapshot(*p.config(), &p.snapshot(), 5).expect("valid");
    let got = q.acquire("b", 3, HW, 5);
    assert_eq!(
        got.dead_letters,
        vec![dead(0, 2, 1, DeadLetterReason::DeliveryLimit)]
    );
    assert_eq!(
        got.records,
        vec![AcquiredRecords {
            first_offset: 3,
            last_offset: 5,
            delivery_count: 1
        }]
    );
}

#[test]
fn kip932_snapshots_breaking_their_contract_are_refused() {
    let batch = |first, last, count| StateBatch {
        first_offset: first,
        last_offset: last,
        delivery_state: RecordState::Acknowledged,
        delivery_count: count,
    };
    let snapshot = |start, end, batches: Vec<StateBatch>| ShareSnapshot {
        version: SNAPSHOT_VERSION,
        state_epoch: 0,
        start_offset: start,
        end_offset: end,
        state_batches: batches,
        acknowledged_total: 0,
        archived_total: 0,
        dead_lettered_total: 0,
    };
    let rows = [
        ("end before start", snapshot(10, 5, vec![])),
        (
            "below the start offset",
            snapshot(10, 20, vec![batch(5, 12, 1)]),
        ),
        (
            "past the end offset",
            snapshot(10, 20, vec![batch(15, 20, 1)]),
        ),
        (
            "overlapping",
            snapshot(10, 20, vec![batch(10, 12, 1), batch(12, 13, 1)]),
        ),
        ("negative count", snapshot(10, 20, vec![batch(10, 12, -1)])),
        (
            "unknown version",
            ShareSnapshot {
                version: 9,
                ..snapshot(0, 0, vec![])
            },
        ),
    ];
    for (what, s) in rows {
        let err = SharePartition::from_snapshot(config(), &s, 0).expect_err(what);
        assert_eq!(err.kafka_code(), -1, "{what}");
    }
    // Holes are records never delivered; a finished prefix moves the start offset.
    let q = SharePartition::from_snapshot(
        config(),
        &snapshot(10, 20, vec![batch(10, 12, 1), batch(15, 15, 1)]),
        0,
    )
    .expect("valid");
    assert_eq!(q.start_offset(), 13);
    assert_eq!(q.record(14), Some((RecordState::Available, 0)));
    assert_eq!(q.record(16), Some((RecordState::Available, 0)));
}

#[test]
fn kip932_auto_offset_reset_starts_at_log_start_or_high_watermark() {
    // Rows: (reset, log start, high watermark, start offset).
    for (reset, log_start, hw, start) in [
        (AutoOffsetReset::Earliest, 5, 50, 5),
        (AutoOffsetReset::Latest, 5, 50, 50),
        (AutoOffsetReset::Latest, 0, 0, 0),
    ] {
        let p = SharePartition::new(config(), reset, log_start, hw).expect("valid");
        assert_eq!(
            (p.start_offset(), p.end_offset()),
            (start, start),
            "{reset:?}"
        );
    }
    assert_eq!(
        AutoOffsetReset::from_name("latest"),
        Some(AutoOffsetReset::Latest)
    );
    assert_eq!(AutoOffsetReset::from_name("none"), None);
}

#[test]
fn kip932_reset_only_while_no_member_holds_records() {
    let mut p = partition(config());
    acq(&mut p, "a", 5, 0);
    let err = p.reset_to(100).expect_err("a holds records");
    assert_eq!(
        (err.kafka_code(), err),
        (68, ShareError::RecordsStillAcquired { acquired: 5 })
    );
    assert_eq!(
        p.reset_to(-1).map_err(|e| e.kafka_code()),
        Err(42),
        "negative offset"
    );
    p.member_left("a", 1);
    p.reset_to(100).expect("nothing held");
    assert_eq!(
        (p.start_offset(), p.end_offset(), p.state_epoch()),
        (100, 100, 1)
    );
    assert_eq!(acq(&mut p, "a", 2, 2), vec![(100, 101, 1)]);
    // Not below the log start offset.
    p.member_left("a", 3);
    p.advance_log_start(50);
    p.reset_to(10).expect("nothing held");
    assert_eq!((p.start_offset(), p.snapshot().state_epoch), (50, 2));
}

#[test]
fn kip932_log_start_movement_archives_available_records() {
    let mut p = partition(config());
    acq(&mut p, "a", 10, 0);
    ack(&mut p, "a", 0, 5, Release, 1).expect("held");
    let out = p.advance_log_start(3);
    check_invariants(&p);
    assert!(out.changed && out.dead_letters.is_empty());
    assert_eq!(p.start_offset(), 3, "0..=2 were available: archived");
    // Acquired records below the log start are archived when released, without dead letter.
    let mut q = partition(config());
    acq(&mut q, "a", 10, 0);
    q.advance_log_start(20);
    check_invariants(&q);
    assert_eq!(q.end_offset(), 20);
    assert_eq!(q.start_offset(), 0, "a still holds 0..=9");
    let out = q.member_left("a", 1);
    assert!(out.dead_letters.is_empty());
    assert_eq!((q.start_offset(), q.range_count()), (20, 0));
    assert_eq!(acq(&mut q, "b", 1, 2), vec![(20, 20, 1)]);
    // With nothing in flight, the start offset jumps.
    let mut r = partition(config());
    r.advance_log_start(7);
    assert_eq!((r.start_offset(), r.end_offset()), (7, 7));
}

#[test]
fn kip932_a_large_range_is_not_stored_per_offset() {
    let mut p = partition(ShareConfig {
        max_record_locks: 2_000_000,
        ..config()
    });
    assert_eq!(acq(&mut p, "a", 1_000_000, 0), vec![(0, 999_999, 1)]);
    ack(&mut p, "a", 0, 999_999, Release, 1).expect("held");
    assert_eq!(p.range_count(), 1, "one AVAILABLE range");
    // Acquiring 100 of the 1,000,000 available records splits once.
    assert_eq!(acq(&mut p, "b", 100, 2), vec![(0, 99, 2)]);
    assert_eq!(p.range_count(), 2);
    ack(&mut p, "b", 40, 59, Accept, 3).expect("held");
    assert!(p.range_count() <= 4, "{}", p.range_count());
    assert_eq!(p.counts().available, 999_900);
    ack(&mut p, "b", 0, 39, Release, 3).expect("held");
    ack(&mut p, "b", 60, 99, Release, 3).expect("held");
    assert!(
        p.range_count() <= 4,
        "neighbours merge again: {}",
        p.range_count()
    );
}

#[test]
fn kip932_error_codes_are_kafkas() {
    let rows = [
        (
            ShareError::InvalidRecordState {
                offset: 0,
                reason: "",
            },
            121,
        ),
        (ShareError::UnknownAcknowledgeType { code: 9 }, 42),
        (ShareError::InvalidResetOffset { offset: -1 }, 42),
        (ShareError::RecordsStillAcquired { acquired: 1 }, 68),
        (
            ShareError::InvalidConfig {
                name: "x",
                value: 0,
            },
            40,
        ),
    ];
    for (err, code) in rows {
        assert_eq!(err.kafka_code(), code, "{err}");
    }
    let bad = ShareConfig {
        delivery_count_limit: 0,
        ..config()
    };
    assert_eq!(
        SharePartition::new(bad, AutoOffsetReset::Earliest, 0, 0).map_err(|e| e.kafka_code()),
        Err(40)
    );
}

/// A tiny deterministic PRNG (xorshift64), so the random test replays exactly.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the random test remembers of everything the state machine said.
#[derive(Default)]
struct Model {
    /// Offsets ACCEPTed, REJECTed, GAP'd or archived at the delivery limit.
    done: HashSet<i64>,
    /// Offsets reported as dead letters (each once).
    dead_lettered: HashSet<i64>,
    /// The highest delivery count seen per offset.
    delivery_counts: HashMap<i64, i16>,
    /// Ranges each member was handed (some since acknowledged or expired).
    held: [Vec<(i64, i64)>; 3],
}

impl Model {
    fn dead_letters(&mut self, letters: &[DeadLetter]) {
        for letter in letters {
            for offset in letter.offsets() {
                assert!(
                    self.dead_lettered.insert(offset),
                    "{offset} dead-lettered twice"
                );
                if letter.reason == DeadLetterReason::DeliveryLimit {
                    self.done.insert(offset);
                }
            }
        }
    }
}

#[test]
fn kip932_random_operations_keep_the_invariants() {
    const MEMBERS: [&str; 3] = ["m0", "m1", "m2"];
    const STEPS: u32 = 20_000;
    let config = ShareConfig {
        record_lock_duration_ms: 300,
        delivery_count_limit: 3,
        max_record_locks: 40,
        redelivery_backoff_ms: 20,
    };
    for seed in [0x9E37_79B9_7F4A_7C15_u64, 42, 7_777] {
        let mut rng = XorShift(seed);
        let mut p = SharePartition::new(config, AutoOffsetReset::Earliest, 0, 0).expect("valid");
        let mut model = Model::default();
        let (mut now, mut hw) = (0_i64, 0_i64);
        for step in 0..STEPS {
            now += rng.below(40) as i64;
            hw += rng.below(4) as i64;
            let m = rng.below(3) as usize;
            let start_before = p.start_offset();
            match rng.below(20) {
                0..=6 => {
                    let got = p.acquire(MEMBERS[m], 1 + rng.below(12) as u32, hw, now);
                    model.dead_letters(&got.dead_letters);
                    for r in &got.records {
                        for offset in r.first_offset..=r.last_offset {
                            assert!(
                                !model.done.contains(&offset),
                                "{offset} acquired after done"
                            );
                            assert!(offset < hw, "{offset} past the high watermark");
                        }
                        model.held[m].push((r.first_offset, r.last_offset));
                    }
                }
                7..=13 => {
                    // Acknowledge part of something this member was handed.
                    if model.held[m].is_empty() {
                        continue;
                    }
                    let i = rng.below(model.held[m].len() as u64) as usize;
                    let (first, last) = model.held[m].swap_remove(i);
                    let a = first + rng.below((last - first + 1) as u64) as i64;
                    let b = a + rng.below((last - a + 1) as u64) as i64;
                    let pick = |rng: &mut XorShift| match rng.below(10) {
                        0..=4 => Accept,
                        5..=6 => Release,
                        7 => Reject,
                        8 => Gap,
                        _ => Renew,
                    };
                    let types = if rng.below(3) == 0 {
                        (a..=b).map(|_| pick(&mut rng)).collect()
                    } else {
                        vec![pick(&mut rng)]
                    };
                    let batch = AckBatch {
                        first_offset: a,
                        last_offset: b,
                        types,
                    };
                    let before = p.clone();
                    match p.acknowledge(MEMBERS[m], std::slice::from_ref(&batch), now) {
                        Ok(out) => {
                            model.dead_letters(&out.dead_letters);
                            for offset in a.max(start_before)..=b {
                                if matches!(batch.type_at(offset), Accept | Reject | Gap) {
                                    model.done.insert(offset);
                                }
                            }
                            if first < a {
                                model.held[m].push((first, a - 1));
                            }
                            if b < last {
                                model.held[m].push((b + 1, last));
                            }
                        }
                        Err(e) => {
                            assert_eq!(p, before, "refused {batch:?} ({e}) changed state");
                        }
                    }
                }
                14 => {
                    // An acknowledgement of arbitrary offsets: mostly refused, never harmful.
                    let a = (p.start_offset() + rng.below(50) as i64 - 5).max(0);
                    let b = a + rng.below(5) as i64;
                    let before = p.clone();
                    match ack(&mut p, MEMBERS[m], a, b, Accept, now) {
                        Ok(out) => {
                            model.dead_letters(&out.dead_letters);
                            model.done.extend(a.max(start_before)..=b);
                        }
                        Err(_) => assert_eq!(p, before),
                    }
                }
                15..=16 => model.dead_letters(&p.expire_locks(now).dead_letters),
                17..=18 => {
                    model.dead_letters(&p.member_left(MEMBERS[m], now).dead_letters);
                    model.held[m].clear();
                }
                _ => {
                    // Leader failover: through JSON, as it would be persisted.
                    let json = serde_json::to_string(&p.snapshot()).expect("serializable");
                    let snapshot: ShareSnapshot = serde_json::from_str(&json).expect("readable");
                    p = SharePartition::from_snapshot(config, &snapshot, now).expect("valid");
                    assert_eq!(p.counts().acquired, 0);
                    model.held.iter_mut().for_each(Vec::clear);
                }
            }
            check_invariants(&p);
            assert!(
                p.start_offset() >= start_before,
                "step {step}: start moved back"
            );
            for offset in start_before..p.start_offset() {
                assert!(
                    model.done.contains(&offset),
                    "step {step}: {offset} skipped"
                );
            }
            for offset in p.start_offset()..p.end_offset() {
                let Some((state, count)) = p.record(offset) else {
                    panic!("step {step}: {offset} missing");
                };
                let seen = model.delivery_counts.entry(offset).or_insert(0);
                assert!(count >= *seen, "step {step}: {offset} count went down");
                assert!(
                    count <= config.delivery_count_limit,
                    "step {step}: {offset} over"
                );
                *seen = count;
                if model.done.contains(&offset) {
                    assert!(
                        state.is_terminal(),
                        "step {step}: done {offset} is {state:?}"
                    );
                }
            }
            assert!(p.end_offset() <= hw, "step {step}: past the high watermark");
        }
        let counts = p.counts();
        assert!(counts.acknowledged_total > 1_000, "{counts:?}");
        assert!(model.dead_lettered.len() > 100, "{counts:?}");
    }
}
