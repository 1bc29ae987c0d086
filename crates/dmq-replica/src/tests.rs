//! Table tests, one per rule; each names the Kafka proposal it checks.

use super::*;

/// A log as the core sees it: offsets and the epoch cache `(epoch, start offset)`.
#[derive(Debug, Clone)]
struct Log {
    start: i64,
    end: i64,
    epochs: Vec<(i32, i64)>,
}

impl Log {
    fn new(end: i64, epochs: &[(i32, i64)]) -> Log {
        Log {
            start: 0,
            end,
            epochs: epochs.to_vec(),
        }
    }
}

impl LogView for Log {
    fn log_start_offset(&self) -> i64 {
        self.start
    }
    fn log_end_offset(&self) -> i64 {
        self.end
    }
    fn latest_epoch(&self) -> Option<i32> {
        self.epochs.last().map(|e| e.0)
    }
    fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let Some(i) = self.epochs.iter().rposition(|(e, _)| *e <= epoch) else {
            return (-1, -1);
        };
        let end = self.epochs.get(i + 1).map_or(self.end, |next| next.1);
        (self.epochs[i].0, end)
    }
}

fn meta(
    leader: BrokerId,
    isr: &[BrokerId],
    leader_epoch: i32,
    partition_epoch: i32,
) -> PartitionMeta {
    PartitionMeta {
        leader,
        leader_epoch,
        partition_epoch,
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
    }
}

/// Broker 1 leading epoch 0 with ISR {1,2,3}, min.insync 2, log end `end`.
fn leader(end: i64) -> (ReplicaState, Log) {
    let log = Log::new(end, &[(0, 0)]);
    let mut r = ReplicaState::new(1, 0, 2);
    let u = r.apply_metadata(&meta(1, &[1, 2, 3], 0, 0), 2, &log, 1_000);
    assert_eq!(
        u.role_change,
        RoleChange::BecameLeader {
            epoch: 0,
            start_offset: end
        }
    );
    (r, log)
}

fn fetch(replica: BrokerId, offset: i64) -> FollowerFetch {
    FollowerFetch {
        replica,
        fetch_offset: offset,
        last_fetched_epoch: -1,
        current_leader_epoch: 0,
        broker_epoch: Some(7),
        log_start_offset: 0,
    }
}

fn fetched(r: &mut ReplicaState, log: &Log, replica: BrokerId, offset: i64, now: i64) -> Effects {
    r.follower_fetch(&fetch(replica, offset), log, now)
        .expect("fetch served")
        .1
}

#[test]
fn kip392_hw_is_the_smallest_isr_log_end_and_never_moves_back() {
    let (mut r, log) = leader(10);
    // An ISR member not heard from in this epoch holds the HW still.
    assert_eq!(fetched(&mut r, &log, 2, 6, 1_000).high_watermark, None);
    assert_eq!(r.high_watermark(), 0);
    // Rows: (follower, fetch offset, HW after).
    for (follower, offset, hw) in [(3, 4, 4), (3, 8, 6), (2, 10, 8), (3, 10, 10)] {
        fetched(&mut r, &log, follower, offset, 1_000);
        assert_eq!(
            r.high_watermark(),
            hw,
            "after {follower} fetched at {offset}"
        );
    }
    // A follower that fetches from further back (it restarted) does not move the HW back.
    fetched(&mut r, &log, 2, 3, 1_000);
    assert_eq!(r.high_watermark(), 10);
}

#[test]
fn kip392_a_follower_outside_the_isr_does_not_hold_the_hw() {
    let log = Log::new(10, &[(0, 0)]);
    let mut r = ReplicaState::new(1, 0, 1);
    r.apply_metadata(&meta(1, &[1, 2], 0, 0), 1, &log, 0);
    fetched(&mut r, &log, 3, 2, 0);
    assert_eq!(r.high_watermark(), 0, "2 not heard from yet");
    fetched(&mut r, &log, 2, 10, 0);
    assert_eq!(r.high_watermark(), 10, "3 is not in the ISR");
}

#[test]
fn kip497_the_hw_waits_for_the_larger_of_committed_and_pending_isr() {
    let (mut r, log) = leader(10);
    fetched(&mut r, &log, 2, 10, 15_000);
    // 3 never fetches: it is proposed out after the lag window.
    let change = r.isr_change(20_000, 10_000, |_| Some(7)).expect("shrink");
    assert_eq!(
        (change.isr.clone(), change.removed.clone()),
        (vec![1, 2], vec![3])
    );
    assert_eq!(
        r.high_watermark(),
        0,
        "3 still counts while the shrink is pending"
    );
    // Only one change in flight.
    assert_eq!(r.isr_change(20_000, 10_000, |_| Some(7)), None);
    let e = r.isr_change_done(IsrAnswer::Committed(&meta(1, &[1, 2], 0, 1)), &log, 20_000);
    assert_eq!(e.high_watermark, Some(10));
    assert_eq!(r.isr(), &[1, 2]);
}

#[test]
fn acks_all_waits_for_the_hw_and_the_isr_size() {
    let (mut r, mut log) = leader(0);
    // Rows: (ISR, acks, verdict before the append).
    for (isr, acks, ok) in [
        (vec![1, 2, 3], -1, true),
        (vec![1, 2], -1, true),
        (vec![1], -1, false),
        (vec![1], 1, true),
        (vec![1], 0, true),
    ] {
        let mut s = r.clone();
        s.apply_metadata(&meta(1, &isr, 0, 1), 2, &log, 1_000);
        assert_eq!(
            s.check_append(acks, false).is_ok(),
            ok,
            "isr {isr:?} acks {acks}"
        );
    }
    log.end = 5;
    r.leader_appended(5);
    let AckWait::Pending(a) = r.await_ack(4, 0) else {
        panic!("not replicated yet")
    };
    fetched(&mut r, &log, 2, 5, 1_000);
    assert_eq!(r.waiting_acks(), 1);
    let e = fetched(&mut r, &log, 3, 5, 1_000);
    assert_eq!(
        e.acks,
        vec![(a, Ok(()))],
        "acknowledged the moment the HW passes it"
    );
    assert_eq!(
        r.await_ack(4, 0),
        AckWait::Done(Ok(())),
        "already committed"
    );
}

#[test]
fn acks_all_after_an_isr_shrink_below_min_insync_is_not_enough_replicas_after_append() {
    let log = Log::new(3, &[(0, 0)]);
    let mut r = ReplicaState::new(1, 0, 2);
    r.apply_metadata(&meta(1, &[1, 2], 0, 0), 2, &log, 0);
    let AckWait::Pending(a) = r.await_ack(2, 0) else {
        panic!("pending")
    };
    // 2 lags out; the ISR of one moves the HW by itself, but below min.insync.
    r.isr_change(20_000, 10_000, |_| Some(7)).expect("shrink");
    let e = r.isr_change_done(IsrAnswer::Committed(&meta(1, &[1], 0, 1)), &log, 20_000);
    assert!(matches!(
        e.acks.as_slice(),
        [(id, Err(Refusal::NotEnoughReplicasAfterAppend { offset: 2, .. }))] if *id == a
    ));
}

#[test]
fn acks_all_waits_fail_when_leadership_moves_and_can_be_cancelled() {
    let (mut r, log) = leader(5);
    let AckWait::Pending(a) = r.await_ack(4, 0) else {
        panic!("pending")
    };
    let AckWait::Pending(b) = r.await_ack(3, 0) else {
        panic!("pending")
    };
    r.cancel_ack(b, 3);
    let u = r.apply_metadata(&meta(2, &[2, 3], 1, 1), 2, &log, 2_000);
    assert_eq!(u.role_change, RoleChange::BecameFollower);
    assert_eq!(
        u.effects.acks,
        vec![(a, Err(Refusal::NotLeader { leader: Some(2) }))]
    );
    assert_eq!(
        r.await_ack(4, 0),
        AckWait::Done(Err(Refusal::NotLeader { leader: Some(2) }))
    );
}

#[test]
fn kip320_requests_naming_another_leader_epoch_are_fenced() {
    let log = Log::new(0, &[]);
    let mut r = ReplicaState::new(1, 0, 1);
    r.apply_metadata(&meta(1, &[1], 5, 5), 1, &log, 0);
    // Rows: (epoch the client names, outcome).
    for (asked, want) in [
        (-1, Ok(5)),
        (5, Ok(5)),
        (
            4,
            Err(Refusal::FencedLeaderEpoch {
                requested: 4,
                current: 5,
            }),
        ),
        (
            6,
            Err(Refusal::UnknownLeaderEpoch {
                requested: 6,
                current: 5,
            }),
        ),
    ] {
        assert_eq!(r.check_leader(asked), want, "asked {asked}");
    }
    r.apply_metadata(&meta(2, &[2], 6, 6), 1, &log, 0);
    assert_eq!(
        r.check_leader(-1),
        Err(Refusal::NotLeader { leader: Some(2) })
    );
}

#[test]
fn kip595_a_follower_whose_last_epoch_diverges_must_truncate_and_does_not_count() {
    // The leader's epochs: 0 at 0, 2 at 10; log end 15.
    let log = Log::new(15, &[(0, 0), (2, 10)]);
    let mut r = ReplicaState::new(1, 0, 1);
    r.apply_metadata(&meta(1, &[1, 2], 2, 0), 1, &log, 0);
    // Rows: (last fetched epoch, fetch offset, diverges).
    for (epoch, offset, diverges) in [
        (-1, 12, false), // not told: no check
        (0, 10, false),  // epoch 0 ends at 10 here
        (0, 11, true),   // the follower has epoch-0 records the leader lacks
        (1, 10, true),   // epoch 1 unknown here (largest ≤ 1 is 0)
        (2, 15, false),
    ] {
        let mut f = fetch(2, offset);
        f.last_fetched_epoch = epoch;
        f.current_leader_epoch = 2;
        let got = r.clone().follower_fetch(&f, &log, 0);
        assert_eq!(
            matches!(got, Err(Refusal::Diverging { .. })),
            diverges,
            "epoch {epoch} offset {offset}: {got:?}"
        );
        if diverges {
            let mut s = r.clone();
            let _ = s.follower_fetch(&f, &log, 0);
            assert_eq!(
                s.followers()[&2].log_end_offset,
                None,
                "a diverging fetch counts for nothing"
            );
        }
    }
}

#[test]
fn fetches_outside_the_log_are_out_of_range() {
    let mut log = Log::new(20, &[(0, 0)]);
    log.start = 5;
    let mut r = ReplicaState::new(1, 0, 1);
    r.apply_metadata(&meta(1, &[1, 2], 0, 0), 1, &log, 0);
    for (offset, ok) in [(4, false), (5, true), (20, true), (21, false)] {
        assert_eq!(
            r.consumer_fetch(-1, offset, &log).is_ok(),
            ok,
            "consumer at {offset}"
        );
        assert_eq!(
            r.clone().follower_fetch(&fetch(2, offset), &log, 0).is_ok(),
            ok,
            "follower at {offset}"
        );
    }
    assert!(matches!(
        r.follower_fetch(&fetch(9, 20), &log, 0),
        Err(Refusal::NotAReplica { broker: 9 })
    ));
}

#[test]
fn kip841_isr_shrinks_on_lag_and_expands_at_the_hw_and_the_epoch_start() {
    let (mut r, log) = leader(10);
    // Within the lag window granted at election nothing changes.
    assert_eq!(r.isr_change(5_000, 10_000, |_| Some(7)), None);
    fetched(&mut r, &log, 2, 10, 5_000);
    let shrink = r.isr_change(12_000, 10_000, |_| Some(7)).expect("3 lags");
    assert_eq!(shrink.removed, vec![3]);
    r.isr_change_done(IsrAnswer::Committed(&meta(1, &[1, 2], 0, 1)), &log, 12_000);
    // Rows: (3's fetch offset, joins). The HW and this epoch's start are both 10.
    for (offset, joins) in [(5, false), (9, false), (10, true)] {
        let mut s = r.clone();
        fetched(&mut s, &log, 3, offset, 12_100);
        let change = s.isr_change(12_100, 10_000, |_| Some(7));
        assert_eq!(
            change.as_ref().is_some_and(|c| c.added == vec![3]),
            joins,
            "3 at {offset}: {change:?}"
        );
        if joins {
            assert_eq!(change.map(|c| c.added_epochs), Some(vec![(3, 7)]));
        }
    }
}

#[test]
fn kip497_a_refused_isr_change_backs_off_until_new_metadata() {
    let (mut r, log) = leader(10);
    fetched(&mut r, &log, 2, 10, 1_000);
    r.isr_change(20_000, 10_000, |_| Some(7)).expect("shrink");
    r.isr_change_done(IsrAnswer::Refused, &log, 20_000);
    assert_eq!(r.pending_isr(), None);
    assert_eq!(
        r.isr_change(20_100, 10_000, |_| Some(7)),
        None,
        "backing off"
    );
    assert!(r
        .isr_change(20_000 + ISR_RETRY_BACKOFF_MS, 10_000, |_| Some(7))
        .is_some());
    r.isr_change_done(IsrAnswer::Refused, &log, 21_000);
    // New metadata (a partition epoch the controller moved) clears the back-off.
    r.apply_metadata(&meta(1, &[1, 2, 3], 0, 1), 2, &log, 21_000);
    assert!(r.isr_change(21_000, 10_000, |_| Some(7)).is_some());
    // An older image never rolls the ISR back.
    r.apply_metadata(&meta(1, &[1], 0, 0), 2, &log, 21_000);
    assert_eq!(r.isr(), &[1, 2, 3]);
}

#[test]
fn kip497_an_unanswered_expansion_stays_pending_and_the_hw_counts_it() {
    // The controller may have committed an expansion it never answered: until it answers
    // (or metadata shows the committed ISR), the HW must wait for the joining replica too.
    let (mut r, log) = leader(10);
    fetched(&mut r, &log, 2, 10, 1_000);
    let shrink = r.isr_change(20_000, 10_000, |_| Some(7)).expect("shrink 3");
    r.isr_change_done(IsrAnswer::Committed(&meta(1, &[1, 2], 0, 1)), &log, 20_000);
    fetched(&mut r, &log, 2, 10, 20_000);
    fetched(&mut r, &log, 3, 10, 20_000);
    let expand = r.isr_change(20_000, 10_000, |_| Some(7)).expect("expand 3");
    assert_eq!(expand.isr, vec![1, 2, 3]);
    assert!(!r.isr_change_pending(&shrink));
    assert!(r.isr_change_pending(&expand), "unanswered: still pending");
    let log = Log::new(12, &[(0, 0)]);
    fetched(&mut r, &log, 2, 12, 20_100);
    assert_eq!(
        r.high_watermark(),
        10,
        "3 (pending in the ISR) has not fetched 10..12"
    );
    fetched(&mut r, &log, 3, 12, 20_200);
    assert_eq!(r.high_watermark(), 12);
    // Metadata that moved the partition epoch ends the pending change.
    r.apply_metadata(&meta(1, &[1, 2, 3], 0, 2), 2, &log, 20_300);
    assert!(!r.isr_change_pending(&expand));
}

#[test]
fn kip903_progress_starts_over_in_a_new_incarnation_and_only_current_progress_joins() {
    let (mut r, log) = leader(10);
    fetched(&mut r, &log, 2, 10, 1_000);
    r.isr_change(20_000, 10_000, |_| Some(7)).expect("shrink 3");
    r.isr_change_done(IsrAnswer::Committed(&meta(1, &[1, 2], 0, 1)), &log, 20_000);
    fetched(&mut r, &log, 2, 10, 20_000);
    // 3 fetched up to the end in incarnation 7 ...
    fetched(&mut r, &log, 3, 10, 20_000);
    // ... but the metadata now knows it as epoch 8 (it restarted, maybe with its tail cut):
    // progress from 7 does not let it join.
    assert_eq!(r.isr_change(20_000, 10_000, |_| Some(8)), None);
    // Its first fetch as 8 starts the progress over, from where it is now.
    let mut f = fetch(3, 4);
    f.broker_epoch = Some(8);
    r.follower_fetch(&f, &log, 20_100).expect("fetch");
    assert_eq!(r.followers()[&3].log_end_offset, Some(4));
    assert_eq!(r.followers()[&3].broker_epoch, Some(8));
    assert_eq!(
        r.isr_change(20_100, 10_000, |_| Some(8)),
        None,
        "not caught up"
    );
    f.fetch_offset = 10;
    r.follower_fetch(&f, &log, 20_200).expect("fetch");
    let change = r.isr_change(20_200, 10_000, |_| Some(8)).expect("joins");
    assert_eq!(change.added_epochs, vec![(3, 8)]);
}

#[test]
fn kip279_truncation_targets() {
    // The follower: epochs 0 at 0, 1 at 5, 3 at 8; log end 12; HW 4.
    let log = Log::new(12, &[(0, 0), (1, 5), (3, 8)]);
    let mut r = ReplicaState::new(2, 4, 1);
    r.apply_metadata(&meta(1, &[1, 2], 4, 4), 1, &log, 0);
    assert_eq!(r.truncation_needed(&log), Some((4, 3)));
    // Rows: (leader's answer (epoch, end) for our epoch 3, target).
    for (epoch, end, target) in [
        (3, 10, 10), // the leader has epoch 3 up to 10
        (3, 20, 12), // it has more: keep all of ours
        (1, 7, 7),   // it never saw epoch 3; its epoch 1 ends at 7 (ours at 8)
        (1, 9, 8),   // ... ends at 9 there, at 8 here
        (-1, -1, 4), // it knows no epoch this old: only the committed part stays
        (3, 12, 12), // at our end: still through the log (an empty epoch must go)
    ] {
        assert_eq!(
            r.truncation_target(3, epoch, end, &log),
            Ok(Some(target)),
            "answer ({epoch}, {end})"
        );
    }
    assert_eq!(r.check_follower_append(), Err(Refusal::NotFollowing));
    assert_eq!(r.truncated(3).high_watermark, Some(3), "HW within the log");
    assert_eq!(r.check_follower_append(), Ok(()));
    assert_eq!(r.truncation_needed(&log), None);
}

#[test]
fn a_follower_takes_the_leaders_hw_within_its_log_and_resets_on_out_of_range() {
    let mut log = Log::new(5, &[(0, 0)]);
    let mut r = ReplicaState::new(2, 0, 1);
    r.apply_metadata(&meta(1, &[1, 2], 0, 0), 1, &log, 0);
    r.truncated(5);
    assert_eq!(r.follower_appended(9, &log).high_watermark, Some(5));
    log.end = 9;
    assert_eq!(r.follower_appended(9, &log).high_watermark, Some(9));
    // Below the leader's log start: start over there; else find the divergence again.
    assert_eq!(r.fetch_out_of_range(20, &log), Reset::StartOver(20));
    assert_eq!(r.started_over(20).high_watermark, Some(20));
    assert_eq!(r.fetch_out_of_range(3, &log), Reset::Retruncate);
    assert_eq!(r.check_follower_append(), Err(Refusal::NotFollowing));
}

#[test]
fn a_leader_cut_off_from_the_controller_acknowledges_nothing() {
    let (r, _) = leader(0);
    for acks in [-1, 0, 1] {
        assert_eq!(
            r.check_append(acks, true),
            Err(Refusal::NotLeader { leader: None }),
            "acks {acks}"
        );
        assert_eq!(r.check_append(acks, false), Ok(0));
    }
}

#[test]
fn stale_metadata_is_ignored() {
    let log = Log::new(0, &[]);
    let mut r = ReplicaState::new(1, 0, 1);
    r.apply_metadata(&meta(2, &[2, 1], 3, 3), 1, &log, 0);
    for m in [meta(1, &[1], 2, 9), meta(1, &[1], 3, 2)] {
        let u = r.apply_metadata(&m, 1, &log, 0);
        assert_eq!(u.role_change, RoleChange::Unchanged);
        assert_eq!((r.leader(), r.isr()), (2, &[2, 1][..]));
    }
}

#[test]
fn the_low_watermark_waits_for_live_followers() {
    let (mut r, log) = leader(10);
    assert_eq!(r.low_watermark(0, |_| true), -1, "followers not heard from");
    let mut f = fetch(2, 10);
    f.log_start_offset = 6;
    r.follower_fetch(&f, &log, 1_000).expect("fetch");
    f.replica = 3;
    f.log_start_offset = 4;
    r.follower_fetch(&f, &log, 1_000).expect("fetch");
    assert_eq!(r.low_watermark(8, |_| true), 4);
    assert_eq!(
        r.low_watermark(8, |b| b != 3),
        6,
        "a dead follower does not count"
    );
}

#[test]
fn every_mutation_changes_a_decision() {
    let m = |m| Some(m);
    // hw-from-non-isr: one follower's progress moves the HW.
    let (r, log) = leader(10);
    let mut r = r.with_mutation(m(Mutation::HwFromNonIsr));
    fetched(&mut r, &log, 2, 10, 1_000);
    assert_eq!(r.high_watermark(), 10);
    // ack-before-hw: acknowledged at once.
    let (r, _) = leader(10);
    let mut r = r.with_mutation(m(Mutation::AckBeforeHw));
    assert_eq!(r.await_ack(9, 0), AckWait::Done(Ok(())));
    // skip-truncation and empty-epoch-livelock: the log is not truncated.
    let log = Log::new(12, &[(0, 0), (3, 8)]);
    let mut f = ReplicaState::new(2, 0, 1);
    f.apply_metadata(&meta(1, &[1, 2], 4, 4), 1, &log, 0);
    let skip = f.clone().with_mutation(m(Mutation::SkipTruncation));
    assert_eq!(skip.truncation_target(3, 0, 8, &log), Ok(None));
    let live = f.clone().with_mutation(m(Mutation::EmptyEpochLivelock));
    assert_eq!(live.truncation_target(3, 3, 12, &log), Ok(None));
    assert_eq!(live.truncation_target(3, 0, 8, &log), Ok(Some(8)));
    // ignore-incarnation: progress of an old incarnation lets the replica join.
    let (r, log) = leader(10);
    let mut r = r.with_mutation(m(Mutation::IgnoreIncarnation));
    fetched(&mut r, &log, 2, 10, 1_000);
    r.isr_change(20_000, 10_000, |_| Some(7)).expect("shrink");
    r.isr_change_done(IsrAnswer::Committed(&meta(1, &[1, 2], 0, 1)), &log, 20_000);
    fetched(&mut r, &log, 2, 10, 20_000);
    fetched(&mut r, &log, 3, 10, 20_000);
    let change = r.isr_change(20_000, 10_000, |_| Some(8)).expect("joins");
    assert_eq!(change.added_epochs, vec![(3, 8)]);
    for mutation in Mutation::ALL {
        assert_eq!(Mutation::from_name(mutation.name()), Some(mutation));
    }
}
