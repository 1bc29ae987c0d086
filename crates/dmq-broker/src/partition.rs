//! One partition replica on this broker: the shell around its replication core.
//!
//! ```text
//!   leader:   produce ──► append_as_leader ──► LEO ─┐            (wakes follower fetches)
//!             follower Fetch(offset) ──► follower LEO ─┴─► HW = min LEO over the ISR
//!                                                        │     (acks=all answered, consumer fetches woken)
//!   follower: fetcher ──► append_replicated ──► HW = min(leader's HW, own LEO)
//! ```
//!
//! Every replication rule — the high watermark, acks=all, leader-epoch fencing, the follower
//! divergence check, truncation targets, ISR proposals — is decided by the pure
//! [`ReplicaState`] of `dmq-replica`; this type feeds it events (metadata, appends, fetches,
//! the controller's answers) and performs what it decides: it writes and truncates the log,
//! publishes the high watermark, answers acks=all producers, records leader epochs. It also
//! holds what is not replication: the idempotent-producer and transaction state (the last
//! stable offset, aborted transactions; see `producer_state`) and the topic's settings.
//!
//! All state changes happen under one short `std::sync::Mutex`; waiting happens outside it —
//! acks=all on a oneshot answered the moment the core decides (no polling, no re-check),
//! long-poll fetches on `tokio::sync::watch` channels.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use dmq_log::batch::Batches;
use dmq_log::{now_ms, BatchHeader, Log, TxnIndexEntry};
use dmq_replica::{
    AckWait, Effects, FetchGrant, FollowerFetch, IsrAnswer, LogView, PartitionMeta, Refusal,
    ReplicaState, Reset, WaiterId,
};
use dmq_types::model;
use dmq_types::BrokerId;
use kafka_protocol::error::ResponseError;
use tokio::sync::{oneshot, watch};

use crate::config::TopicSettings;
use crate::error::{BrokerError, Result};
use crate::producer_snapshot;
use crate::producer_state::{AbortedTxn, ProducerStates, SeqCheck};

pub use dmq_replica::{FollowerProgress, IsrChange, Role};

/// The log as the replication core sees it.
struct LogRef<'a>(&'a Log);

impl LogView for LogRef<'_> {
    fn log_start_offset(&self) -> i64 {
        self.0.log_start_offset()
    }
    fn log_end_offset(&self) -> i64 {
        self.0.log_end_offset()
    }
    fn latest_epoch(&self) -> Option<i32> {
        self.0.latest_epoch()
    }
    fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.0.end_offset_for_epoch(epoch)
    }
}

/// A poisoned lock only means a panic elsewhere; the data it guards stays usable.
fn lock_unpoisoned<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct State {
    core: ReplicaState,
    producers: ProducerStates,
    settings: TopicSettings,
    /// acks=all producers waiting for the core's verdict.
    acks: HashMap<WaiterId, oneshot::Sender<std::result::Result<(), Refusal>>>,
    /// Offset of the newest producer snapshot written or loaded (`producer_snapshot`).
    snapshot_offset: i64,
    /// A `.txnindex` append failed: no snapshot may claim the index complete until the next
    /// open rebuilds it.
    txn_index_broken: bool,
}

/// A produce that reached the log (or was found there already).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_append_time_ms: i64,
    pub leader_epoch: i32,
    pub records: i64,
    /// An idempotent retry of a batch already in the log: nothing was written.
    pub duplicate: bool,
}

/// A transaction marker to write at a partition (one partition of a WriteTxnMarkers request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Commit (true) or abort (false).
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// How a metadata update changed this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    Unchanged,
    BecameLeader,
    BecameFollower,
}

pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub topic_id: String,
    pub log: Arc<Log>,
    /// Serializes what writes the log or moves the role: leader and follower appends,
    /// truncations, metadata. Taken before `state`, never after. The state lock is not held
    /// while a leader writes, so followers' fetches (which move the HW and answer acks=all)
    /// and consumers go on during a slow write.
    writer: Mutex<()>,
    /// Held for a whole producer snapshot (capture, fsyncs, file) and by truncations, which
    /// take it before `writer`: no truncation slips between a snapshot's capture and its file,
    /// while appends go on during the snapshot's fsyncs.
    snapshot_io: Mutex<()>,
    state: Mutex<State>,
    /// The core's high watermark, readable without the lock.
    hw: AtomicI64,
    /// Bumped whenever the high watermark moves or the role changes.
    hw_tx: watch::Sender<i64>,
    /// Bumped whenever the log end moves (wakes followers' long polls).
    leo_tx: watch::Sender<i64>,
    /// The high watermark last written to the broker's checkpoint
    /// (`ReplicaManager::checkpoint_hws`).
    checkpointed_hw: AtomicI64,
}

/// Per-partition file that held the checkpointed high watermark (decimal text) before the
/// broker-wide `replication-offset-checkpoint`; still read when that file has no entry for the
/// partition (a data directory written by an earlier version).
pub const HW_CHECKPOINT_FILE: &str = "high-watermark-checkpoint";

/// The high watermark checkpointed in `dir`, if a readable one is there.
fn read_hw_checkpoint(dir: &Path) -> Option<i64> {
    std::fs::read_to_string(dir.join(HW_CHECKPOINT_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn partition_meta(meta: &model::Partition) -> PartitionMeta {
    PartitionMeta {
        leader: meta.leader,
        leader_epoch: meta.leader_epoch,
        partition_epoch: meta.partition_epoch,
        replicas: meta.replicas.clone(),
        isr: meta.isr.clone(),
    }
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.index)
    }
}

impl Partition {
    /// Opens (recovering) or creates the log in `dir`, as a follower of nobody until
    /// [`Partition::apply_metadata`] says otherwise.
    pub fn open(
        dir: &Path,
        topic: &model::Topic,
        meta: &model::Partition,
        broker_id: BrokerId,
    ) -> Result<Partition> {
        Self::open_with_hw(dir, topic, meta, broker_id, None)
    }

    /// [`Partition::open`] with the high watermark the broker's checkpoint holds for it
    /// (`None`: the per-partition file of earlier versions, if any).
    pub fn open_with_hw(
        dir: &Path,
        topic: &model::Topic,
        meta: &model::Partition,
        broker_id: BrokerId,
        checkpointed_hw: Option<i64>,
    ) -> Result<Partition> {
        let settings = TopicSettings::from_config(&topic.config);
        let log = Arc::new(Log::open(dir, settings.log_config())?);
        let (mut producers, snapshot_offset) = load_producers(&log)?;
        let leo = log.log_end_offset();
        // The checkpointed high watermark (Kafka's replication-offset-checkpoint), within what
        // the log holds after recovery: a restarted leader serves what was committed at once
        // instead of waiting for its followers' first fetch.
        let checkpointed = checkpointed_hw.or_else(|| read_hw_checkpoint(dir));
        let hw = checkpointed.map_or(log.log_start_offset(), |h| {
            h.clamp(log.log_start_offset(), leo)
        });
        producers.on_high_watermark(hw);
        let (hw_tx, _) = watch::channel(hw);
        let (leo_tx, _) = watch::channel(leo);
        let core = ReplicaState::new(broker_id, hw, settings.min_insync_replicas);
        Ok(Partition {
            topic: topic.topic_name.clone(),
            index: meta.partition_id,
            topic_id: topic.topic_id.clone(),
            log,
            writer: Mutex::new(()),
            snapshot_io: Mutex::new(()),
            state: Mutex::new(State {
                core,
                producers,
                settings,
                acks: HashMap::new(),
                snapshot_offset,
                txn_index_broken: false,
            }),
            hw: AtomicI64::new(hw),
            hw_tx,
            leo_tx,
            checkpointed_hw: AtomicI64::new(hw),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock_unpoisoned(&self.state)
    }

    fn write_lock(&self) -> MutexGuard<'_, ()> {
        lock_unpoisoned(&self.writer)
    }

    fn view(&self) -> LogRef<'_> {
        LogRef(&self.log)
    }

    /// Performs what the core decided: publishes a moved high watermark and answers the
    /// acks=all producers it decided.
    fn perform(&self, st: &mut State, effects: Effects) {
        if let Some(hw) = effects.high_watermark {
            // Before the HW is published: whoever sees the new HW sees the LSO it allows.
            st.producers.on_high_watermark(hw);
            self.hw.store(hw, Ordering::Release);
            self.hw_tx.send_replace(hw);
        }
        for (id, verdict) in effects.acks {
            if let Some(tx) = st.acks.remove(&id) {
                // A producer that gave up (timed out) dropped its receiver: nothing to answer.
                let _ = tx.send(verdict);
            }
        }
    }

    /// The error a client sees for a refusal of the core.
    fn refused(&self, r: Refusal) -> BrokerError {
        let e = match &r {
            Refusal::NotLeader { leader } => {
                return BrokerError::NotLeader {
                    topic: self.topic.clone(),
                    partition: self.index,
                    leader: *leader,
                }
            }
            Refusal::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
            Refusal::UnknownLeaderEpoch { .. } => ResponseError::UnknownLeaderEpoch,
            Refusal::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas,
            Refusal::NotEnoughReplicasAfterAppend { .. } => {
                ResponseError::NotEnoughReplicasAfterAppend
            }
            Refusal::NotAReplica { .. } | Refusal::NotFollowing => {
                ResponseError::NotLeaderOrFollower
            }
            // Fetch v12 followers truncate again on OFFSET_OUT_OF_RANGE.
            Refusal::OffsetOutOfRange { .. } | Refusal::Diverging { .. } => {
                ResponseError::OffsetOutOfRange
            }
        };
        BrokerError::kafka(e, r.to_string())
    }

    /// Takes the leader, epoch, replicas and ISR of the metadata and the topic's configs. A
    /// partition entry older than what this replica already acts on is ignored (the core's
    /// rule).
    pub fn apply_metadata(&self, topic: &model::Topic, meta: &model::Partition) -> RoleChange {
        let _writer = self.write_lock();
        let mut st = self.lock();
        let settings = TopicSettings::from_config(&topic.config);
        if settings != st.settings {
            // A config change (AlterConfigs): in force from now on, no restart needed.
            if settings.log != st.settings.log
                || settings.max_message_bytes != st.settings.max_message_bytes
            {
                self.log.set_config(settings.log_config());
            }
            st.settings = settings;
        }
        let min_insync = st.settings.min_insync_replicas;
        let update =
            st.core
                .apply_metadata(&partition_meta(meta), min_insync, &self.view(), now_ms());
        let change = match update.role_change {
            dmq_replica::RoleChange::Unchanged => RoleChange::Unchanged,
            dmq_replica::RoleChange::BecameLeader {
                epoch,
                start_offset,
            } => {
                if let Err(e) = self.log.assign_epoch(epoch, start_offset) {
                    tracing::warn!(partition = ?self, "cannot record leader epoch: {e}");
                }
                RoleChange::BecameLeader
            }
            dmq_replica::RoleChange::BecameFollower => RoleChange::BecameFollower,
        };
        self.perform(&mut st, update.effects);
        if change != RoleChange::Unchanged {
            // Wake long polls: they re-check the role.
            self.hw_tx.send_modify(|_| {});
            self.leo_tx.send_modify(|_| {});
        }
        change
    }

    pub fn role(&self) -> Role {
        self.lock().core.role()
    }

    pub fn leader(&self) -> BrokerId {
        self.lock().core.leader()
    }

    pub fn leader_epoch(&self) -> i32 {
        self.lock().core.leader_epoch()
    }

    pub fn high_watermark(&self) -> i64 {
        self.hw.load(Ordering::Acquire)
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    pub fn settings(&self) -> TopicSettings {
        self.lock().settings.clone()
    }

    /// Role, leader, epoch, ISR and (leader only) followers' log end offsets.
    pub fn snapshot(&self) -> ReplicaSnapshot {
        let st = self.lock();
        let c = &st.core;
        ReplicaSnapshot {
            role: c.role(),
            leader: c.leader(),
            leader_epoch: c.leader_epoch(),
            partition_epoch: c.partition_epoch(),
            replicas: c.replicas().to_vec(),
            isr: c.isr().to_vec(),
            pending_isr: c.pending_isr().map(<[BrokerId]>::to_vec),
            followers: c.followers().clone(),
            min_insync_replicas: c.min_insync(),
            high_watermark: c.high_watermark(),
            log_end_offset: self.log.log_end_offset(),
            log_start_offset: self.log.log_start_offset(),
        }
    }

    /// Fails unless this replica leads; `current_leader_epoch` (-1 = unchecked) is the epoch
    /// the client believes in (KIP-320 fencing).
    pub fn check_leader(&self, current_leader_epoch: i32) -> Result<i32> {
        let st = self.lock();
        st.core
            .check_leader(current_leader_epoch)
            .map_err(|r| self.refused(r))
    }

    /// A producer's batches (validated, de-duplicated, offsets assigned). With `acks=all` the
    /// ISR must hold `min.insync.replicas` members first, or nothing is written. `cut_off`:
    /// this broker lost the controller for a session (it is being deposed).
    pub fn append_as_leader(
        &self,
        records: &mut [u8],
        acks: i16,
        cut_off: bool,
    ) -> Result<Appended> {
        let _writer = self.write_lock();
        let (epoch, compacts) = {
            let st = self.lock();
            let epoch = st
                .core
                .check_append(acks, cut_off)
                .map_err(|r| self.refused(r))?;
            (epoch, st.settings.log.cleanup_policy.compacts())
        };
        if compacts {
            crate::keys::require_keys(records)?;
        }
        // Sequence checks on the headers; the log validates sizes and CRCs. The producer
        // state changes only under the writer lock, which this append holds.
        let mut pos = 0;
        let mut batches = 0;
        let mut duplicate = None;
        {
            let st = self.lock();
            while pos < records.len() {
                let h = BatchHeader::new(&records[pos..]).map_err(|reason| {
                    BrokerError::Log(dmq_log::LogError::InvalidBatch {
                        position: pos,
                        reason,
                    })
                })?;
                if let SeqCheck::Duplicate { base_offset } = st.producers.check(&h)? {
                    duplicate = Some((base_offset, h.last_offset_delta()));
                }
                batches += 1;
                pos += h.total_size().max(1);
            }
        }
        if let Some((base_offset, delta)) = duplicate {
            if batches > 1 {
                return Err(BrokerError::kafka(
                    ResponseError::DuplicateSequenceNumber,
                    "a retried batch arrived together with new ones",
                ));
            }
            return Ok(Appended {
                base_offset,
                last_offset: base_offset + i64::from(delta),
                log_append_time_ms: -1,
                leader_epoch: epoch,
                records: 0,
                duplicate: true,
            });
        }
        self.leader_write(records, epoch)
    }

    /// The common tail of the leader's appends, under the writer lock the caller holds: writes
    /// `records` (checked already) in leader `epoch`, records their producer and transaction
    /// state, and tells the core the log end moved.
    fn leader_write(&self, records: &mut [u8], epoch: i32) -> Result<Appended> {
        // The write itself holds only the writer lock.
        let info = self.log.append_as_leader(records, epoch, now_ms())?;
        let mut st = self.lock();
        let mut count = 0i64;
        for (_, bytes) in Batches::new(records, false).flatten() {
            if let Ok(h) = BatchHeader::new(bytes) {
                count += i64::from(h.record_count());
                self.record_producer_state(&mut st, bytes);
            }
        }
        self.leo_tx.send_replace(info.last_offset + 1);
        let effects = st.core.leader_appended(info.last_offset + 1);
        self.perform(&mut st, effects);
        Ok(Appended {
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            log_append_time_ms: info.log_append_time_ms,
            leader_epoch: epoch,
            records: count,
            duplicate: false,
        })
    }

    /// Leader: appends a transaction marker (WriteTxnMarkers, KIP-98) through the same leader
    /// path as produce, under acks=all's rule that the ISR holds `min.insync.replicas` members
    /// (else NOT_ENOUGH_REPLICAS and nothing is written). The caller then waits for the ISR
    /// with [`Partition::wait_replicated`] (see `produce::write_txn_marker`): the coordinator
    /// may only consider the transaction complete once the marker is committed.
    ///
    /// Refused with INVALID_PRODUCER_EPOCH when the producer's epoch here is newer than the
    /// marker's, TRANSACTION_COORDINATOR_FENCED when a newer coordinator wrote here already.
    pub fn append_txn_marker(&self, marker: TxnMarker, cut_off: bool) -> Result<Appended> {
        let _writer = self.write_lock();
        let epoch = {
            let st = self.lock();
            let epoch = st
                .core
                .check_append(-1, cut_off)
                .map_err(|r| self.refused(r))?;
            st.producers.check_marker(
                marker.producer_id,
                marker.producer_epoch,
                marker.coordinator_epoch,
            )?;
            epoch
        };
        let mut records = dmq_log::batch::control_batch(
            marker.producer_id,
            marker.producer_epoch,
            marker.commit,
            marker.coordinator_epoch,
            now_ms(),
        );
        self.leader_write(&mut records, epoch)
    }

    /// The last stable offset: `min(high watermark, first offset of a transaction not yet
    /// decided)`, never above the high watermark. `read_committed` consumers read below it.
    ///
    /// It moves only when the high watermark does (a marker counts once the HW passes it), so
    /// the consumers' long polls, woken by HW moves, also see every LSO move.
    pub fn last_stable_offset(&self) -> i64 {
        let st = self.lock();
        let hw = self.high_watermark();
        st.producers
            .first_unstable_offset()
            .map_or(hw, |first| first.min(hw))
    }

    /// Aborted transactions overlapping `[from, upper)`, for a `read_committed` fetch answer.
    /// Those whose marker went with the log start (retention, DeleteRecords) are dropped here.
    pub fn aborted_transactions(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let mut st = self.lock();
        st.producers
            .drop_aborted_before(self.log.log_start_offset());
        st.producers.aborted_between(from, upper)
    }

    /// First offset of `producer_id`'s open transaction at this partition, if it has one.
    pub fn ongoing_transaction(&self, producer_id: i64) -> Option<i64> {
        self.lock().producers.ongoing_transaction(producer_id)
    }

    /// Leader: a follower's fetch. Served (what it may read, up to the log end) unless the core
    /// refuses it: fenced, out of range, or diverging (it must truncate first).
    pub fn fetch_for_follower(&self, fetch: &FollowerFetch) -> Result<FetchGrant> {
        let mut st = self.lock();
        let (grant, effects) = st
            .core
            .follower_fetch(fetch, &self.view(), now_ms())
            .map_err(|r| self.refused(r))?;
        self.perform(&mut st, effects);
        Ok(grant)
    }

    /// Leader: a consumer's fetch at `fetch_offset` (it reads below the high watermark).
    pub fn fetch_for_consumer(
        &self,
        current_leader_epoch: i32,
        fetch_offset: i64,
    ) -> Result<FetchGrant> {
        let st = self.lock();
        st.core
            .consumer_fetch(current_leader_epoch, fetch_offset, &self.view())
            .map_err(|r| self.refused(r))
    }

    /// Leader: the low watermark — the smallest log start offset of this replica and of every
    /// follower on a live broker (Kafka's `lowWatermarkIfLeader`). DeleteRecords is complete
    /// when it reaches the deletion point.
    pub fn low_watermark(&self, alive: impl Fn(BrokerId) -> bool) -> i64 {
        let st = self.lock();
        st.core.low_watermark(self.log.log_start_offset(), alive)
    }

    /// Leader: the ISR change the followers' progress calls for, if any (see
    /// [`ReplicaState::isr_change`]); report the controller's answer with
    /// [`Partition::isr_change_done`].
    pub fn isr_change(
        &self,
        now_ms: i64,
        lag_max_ms: i64,
        broker_epoch: impl Fn(BrokerId) -> Option<u64>,
    ) -> Option<IsrChange> {
        self.lock()
            .core
            .isr_change(now_ms, lag_max_ms, broker_epoch)
    }

    /// Leader: whether `change` is still pending (an unanswered change is sent again while it
    /// is; see [`ReplicaState::isr_change_pending`]).
    pub fn isr_change_pending(&self, change: &IsrChange) -> bool {
        self.lock().core.isr_change_pending(change)
    }

    /// Leader: the controller's answer to the pending [`IsrChange`]: the committed partition,
    /// or `None` when it was refused — report that only after the committed metadata has been
    /// applied (see [`ReplicaState::isr_change_done`]).
    pub fn isr_change_done(&self, committed: Option<&model::Partition>) {
        let mut st = self.lock();
        let committed = committed.map(partition_meta);
        let answer = match &committed {
            Some(p) => IsrAnswer::Committed(p),
            None => IsrAnswer::Refused,
        };
        let effects = st.core.isr_change_done(answer, &self.view(), now_ms());
        self.perform(&mut st, effects);
    }

    /// Follower: `Some((current leader epoch, latest local epoch))` while the divergent suffix
    /// has not been truncated (ask the leader OffsetForLeaderEpoch first); `None` to fetch.
    pub fn truncation_needed(&self) -> Option<(i32, i32)> {
        let mut st = self.lock();
        st.core.truncation_needed(&self.view())
    }

    /// Follower: truncate to where this log and the leader's agree (KIP-279). The leader
    /// answered `(epoch, end_offset)` for our latest epoch `asked`.
    pub fn truncate_to_leader(&self, asked: i32, epoch: i32, end_offset: i64) -> Result<i64> {
        let _snapshot = lock_unpoisoned(&self.snapshot_io);
        let _writer = self.write_lock();
        let mut st = self.lock();
        let leo = self.log.log_end_offset();
        let target = st
            .core
            .truncation_target(asked, epoch, end_offset, &self.view())
            .map_err(|r| self.refused(r))?;
        // Through the log also when no data goes: an epoch this replica began as a leader
        // without writing ends its epoch cache and would make every fetch diverge.
        let new_end = match target {
            Some(target) => self.log.truncate_to(target)?,
            None => leo,
        };
        if new_end < leo {
            tracing::info!(
                partition = ?self,
                from = leo,
                to = new_end,
                leader_epoch = epoch,
                "truncated a divergent suffix"
            );
            let (producers, snapshot_offset) = load_producers(&self.log)?;
            st.producers = producers;
            st.snapshot_offset = snapshot_offset;
            st.txn_index_broken = false;
            st.producers.on_high_watermark(self.high_watermark());
            self.leo_tx.send_replace(new_end);
        }
        let effects = st.core.truncated(new_end);
        self.perform(&mut st, effects);
        Ok(new_end)
    }

    /// Follower: the leader answered a fetch with OFFSET_OUT_OF_RANGE. Below the leader's log
    /// start, start over there; otherwise find the divergence again before fetching.
    pub fn fetch_out_of_range(&self, leader_log_start: i64) -> Result<()> {
        let _snapshot = lock_unpoisoned(&self.snapshot_io);
        let _writer = self.write_lock();
        let mut st = self.lock();
        match st.core.fetch_out_of_range(leader_log_start, &self.view()) {
            Reset::Nothing | Reset::Retruncate => Ok(()),
            Reset::StartOver(start) => {
                tracing::info!(partition = ?self, start, "behind the leader's log start; starting over there");
                self.log.truncate_fully_and_start_at(start)?;
                producer_snapshot::remove_all(self.log.dir())?;
                st.producers = ProducerStates::default();
                st.snapshot_offset = start;
                self.leo_tx.send_replace(start);
                let effects = st.core.started_over(start);
                self.perform(&mut st, effects);
                Ok(())
            }
        }
    }

    /// Records a batch now in the log in the producer state; an abort marker that ended a
    /// transaction also goes to its segment's `.txnindex`. Caller holds the writer lock.
    fn record_producer_state(&self, st: &mut State, batch: &[u8]) {
        let Some(aborted) = st.producers.record(batch) else {
            return;
        };
        if let Err(e) = self
            .log
            .append_aborted_txn(index_entry(&st.producers, aborted))
        {
            // The in-memory list has it; the next open derives the index from the log again.
            tracing::error!(partition = ?self, "writing the aborted-transaction index: {e}");
            st.txn_index_broken = true;
        }
    }

    /// Writes a producer snapshot at the log end if the log rolled a segment since the last
    /// one (Kafka snapshots at every roll), or unconditionally with `force` (clean shutdown),
    /// so that the next open scans only the log after it. The `.txnindex` entries below it
    /// are fsynced first.
    ///
    /// The state is captured under the writer lock; the fsyncs (which can take a second under
    /// write-back) run without it, so appends go on meanwhile: they only add above the
    /// captured offset.
    pub fn snapshot_producers(&self, force: bool) -> Result<()> {
        let _snapshot = lock_unpoisoned(&self.snapshot_io);
        let (leo, body) = {
            let _writer = self.write_lock();
            let st = self.lock();
            let leo = self.log.log_end_offset();
            let rolled = self.log.active_base_offset() > st.snapshot_offset;
            if leo == st.snapshot_offset || !(rolled || force) || st.txn_index_broken {
                return Ok(());
            }
            (leo, st.producers.snapshot_body())
        };
        self.log.sync_txn_indexes()?;
        producer_snapshot::write(self.log.dir(), leo, &body)?;
        self.lock().snapshot_offset = leo;
        Ok(())
    }

    /// The high watermark, if it moved since it was last checkpointed.
    pub fn hw_to_checkpoint(&self) -> Option<i64> {
        let hw = self.high_watermark();
        (hw != self.checkpointed_hw.load(Ordering::Acquire)).then_some(hw)
    }

    /// The broker's checkpoint now holds `hw` for this partition.
    pub fn hw_checkpointed(&self, hw: i64) {
        self.checkpointed_hw.store(hw, Ordering::Release);
    }

    /// Leader: the idempotent producers this partition knows (Kafka's DescribeProducers).
    pub fn active_producers(&self) -> Result<Vec<crate::producer_state::ActiveProducer>> {
        let st = self.lock();
        st.core.check_leader(-1).map_err(|r| self.refused(r))?;
        Ok(st.producers.active())
    }

    /// Leader: Kafka's DeleteRecords. Moves the log start to `offset` (-1 = the high
    /// watermark), which must not pass the high watermark; returns the new log start (the low
    /// watermark). Durable (the log-start checkpoint); followers follow with their next fetch.
    pub fn delete_records(&self, offset: i64) -> Result<i64> {
        let _writer = self.write_lock();
        let st = self.lock();
        st.core.check_leader(-1).map_err(|r| self.refused(r))?;
        let hw = st.core.high_watermark();
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(BrokerError::kafka(
                ResponseError::OffsetOutOfRange,
                format!("cannot delete records before {offset}: the high watermark is {hw}"),
            ));
        }
        let before = self.log.log_start_offset();
        let start = self.log.delete_records_before(target)?;
        if start > before {
            tracing::info!(partition = ?self, log_start = start, "records deleted (DeleteRecords)");
        }
        Ok(start)
    }

    /// Follower: batches fetched from the leader, with the leader's high watermark and log
    /// start (a DeleteRecords or retention on the leader moves the follower's start too).
    pub fn append_replicated(
        &self,
        records: &[u8],
        leader_hw: i64,
        leader_log_start: i64,
    ) -> Result<usize> {
        let _writer = self.write_lock();
        let mut st = self.lock();
        st.core
            .check_follower_append()
            .map_err(|r| self.refused(r))?;
        let mut appended = 0;
        if !records.is_empty() {
            let info = self.log.append_replicated(records)?;
            for (_, bytes) in Batches::new(records, false).flatten() {
                self.record_producer_state(&mut st, bytes);
            }
            appended = info.bytes;
            self.leo_tx.send_replace(info.last_offset + 1);
        }
        if leader_log_start > self.log.log_start_offset()
            && leader_log_start <= self.log.log_end_offset()
        {
            self.log.delete_records_before(leader_log_start)?;
        }
        let effects = st.core.follower_appended(leader_hw, &self.view());
        self.perform(&mut st, effects);
        Ok(appended)
    }

    /// Whole batches from `offset` up to `max_bytes`, ending below `upper` (exclusive; the
    /// high watermark for consumers, the log end for followers). The first batch may start
    /// before `offset`, as in Kafka; clients skip what they did not ask for.
    pub fn read(&self, offset: i64, max_bytes: usize, upper: i64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        if offset >= upper {
            return Ok(out);
        }
        let Some(slice) = self.log.read(offset, max_bytes)? else {
            return Ok(out);
        };
        slice.read_into(&mut out)?;
        let mut keep = 0;
        for (at, bytes) in Batches::new(&out, false).flatten() {
            match BatchHeader::new(bytes) {
                Ok(h) if h.last_offset() < upper => keep = at + bytes.len(),
                _ => break,
            }
        }
        out.truncate(keep);
        Ok(out)
    }

    /// Waits until the core decides an acks=all batch ending at `last_offset`, appended in
    /// leader `epoch`: acknowledged once the high watermark passes it with the ISR still at
    /// `min.insync.replicas` (else NOT_ENOUGH_REPLICAS_AFTER_APPEND — the batch stays in the
    /// log, and an idempotent retry is recognised as a duplicate), NOT_LEADER when leadership
    /// moves first, REQUEST_TIMED_OUT at `deadline`. The answer comes the moment the core
    /// decides it, from the event that decided it (a follower's fetch, an ISR change).
    pub async fn wait_replicated(
        &self,
        last_offset: i64,
        epoch: i32,
        deadline: Instant,
    ) -> Result<()> {
        let (id, rx) = {
            let mut st = self.lock();
            match st.core.await_ack(last_offset, epoch) {
                AckWait::Done(verdict) => return verdict.map_err(|r| self.refused(r)),
                AckWait::Pending(id) => {
                    let (tx, rx) = oneshot::channel();
                    st.acks.insert(id, tx);
                    (id, rx)
                }
            }
        };
        match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(verdict)) => verdict.map_err(|r| self.refused(r)),
            Ok(Err(_)) | Err(_) => {
                let mut st = self.lock();
                st.core.cancel_ack(id, last_offset);
                st.acks.remove(&id);
                Err(BrokerError::kafka(
                    ResponseError::RequestTimedOut,
                    format!(
                        "offset {last_offset} not replicated to the ISR in time (high watermark {})",
                        self.high_watermark()
                    ),
                ))
            }
        }
    }

    /// Wakes when the high watermark (consumers) or the log end (followers) moves.
    pub fn subscribe(&self, follower: bool) -> watch::Receiver<i64> {
        if follower {
            self.leo_tx.subscribe()
        } else {
            self.hw_tx.subscribe()
        }
    }

    /// Wakes every waiter (shutdown, deletion): acks=all waits are answered NOT_LEADER.
    pub fn wake_all(&self) {
        let mut st = self.lock();
        let leader = st.core.leader();
        for (_, tx) in st.acks.drain() {
            let _ = tx.send(Err(Refusal::NotLeader {
                leader: (leader >= 0).then_some(leader),
            }));
        }
        self.hw_tx.send_modify(|_| {});
        self.leo_tx.send_modify(|_| {});
    }
}

/// A consistent view of a replica for the status API and metrics.
#[derive(Debug, Clone)]
pub struct ReplicaSnapshot {
    pub role: Role,
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub pending_isr: Option<Vec<BrokerId>>,
    pub followers: HashMap<BrokerId, FollowerProgress>,
    pub min_insync_replicas: usize,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    pub log_start_offset: i64,
}

/// The `.txnindex` entry of a transaction just aborted, with the last stable offset it leaves
/// (before the high watermark's limit).
fn index_entry(producers: &ProducerStates, a: AbortedTxn) -> TxnIndexEntry {
    let after = a.last_offset + 1;
    TxnIndexEntry {
        producer_id: a.producer_id,
        first_offset: a.first_offset,
        last_offset: a.last_offset,
        last_stable_offset: producers
            .first_unstable_offset()
            .map_or(after, |f| f.min(after)),
    }
}

/// Producer and transaction state for the log as it is now (open, truncation): the newest
/// usable producer snapshot, the aborted transactions below it from the `.txnindex` files, and
/// a scan of the batch headers (and markers) after it, which also writes the index entries of
/// the aborts it finds. See `producer_snapshot` for why each piece can be trusted. Returns the
/// state and the offset the scan began at.
fn load_producers(log: &Log) -> Result<(ProducerStates, i64)> {
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    let mut loaded = None;
    for (offset, path) in producer_snapshot::drop_above(log.dir(), end)?.iter().rev() {
        if *offset < start {
            break;
        }
        let Some(body) = producer_snapshot::read(path)? else {
            tracing::warn!(path = %path.display(), "ignoring a torn or corrupt producer snapshot");
            continue;
        };
        let aborted = log
            .aborted_txns_before(*offset)?
            .into_iter()
            .map(|e| AbortedTxn {
                producer_id: e.producer_id,
                first_offset: e.first_offset,
                last_offset: e.last_offset,
            })
            .collect();
        match ProducerStates::from_snapshot_body(&body, aborted) {
            Some(states) => {
                loaded = Some((states, *offset));
                break;
            }
            None => {
                tracing::warn!(path = %path.display(), "ignoring an unreadable producer snapshot")
            }
        }
    }
    let (mut producers, from) = loaded.unwrap_or_else(|| (ProducerStates::default(), start));
    log.truncate_txn_indexes_from(from)?;
    let mut offset = from;
    let mut buf = Vec::new();
    while offset < end {
        let Some(slice) = log.read(offset, 4 << 20)? else {
            break;
        };
        slice.read_into(&mut buf)?;
        let before = offset;
        for (_, bytes) in Batches::new(&buf, false).flatten() {
            if let Ok(h) = BatchHeader::new(bytes) {
                if let Some(a) = producers.record(bytes) {
                    log.append_aborted_txn(index_entry(&producers, a))?;
                }
                offset = h.last_offset() + 1;
            }
        }
        if offset <= before {
            break;
        }
    }
    Ok((producers, from))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn topic() -> model::Topic {
        model::Topic {
            topic_name: "t".into(),
            topic_id: "id".into(),
            num_partitions: 1,
            replication_factor: 3,
            config: BTreeMap::new(),
            partitions: Vec::new(),
            created_at: 0,
        }
    }

    fn meta(
        leader: BrokerId,
        isr: &[BrokerId],
        leader_epoch: i32,
        partition_epoch: i32,
    ) -> model::Partition {
        model::Partition {
            partition_id: 0,
            leader,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            leader_epoch,
            partition_epoch,
        }
    }

    fn produce(p: &Partition, n: usize) {
        for i in 0..n {
            let mut b = dmq_log::RecordBatchBuilder::new(0);
            b.push(0, Some(b"k"), Some(format!("v{i}").as_bytes()), &[]);
            let mut bytes = b.build();
            p.append_as_leader(&mut bytes, 1, false).expect("append");
        }
    }

    fn follower_fetch(p: &Partition, replica: BrokerId, offset: i64) -> Result<FetchGrant> {
        p.fetch_for_follower(&FollowerFetch {
            replica,
            fetch_offset: offset,
            last_fetched_epoch: -1,
            current_leader_epoch: 0,
            broker_epoch: Some(1),
            log_start_offset: 0,
        })
    }

    /// The shell answers an acks=all producer from the follower fetch that moves the high
    /// watermark past its batch, and NOT_LEADER when leadership moves first.
    #[tokio::test]
    async fn acks_all_is_answered_by_the_fetch_that_commits_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Arc::new(
            Partition::open(dir.path(), &topic(), &meta(1, &[1, 2], 0, 0), 1).expect("open"),
        );
        p.apply_metadata(&topic(), &meta(1, &[1, 2], 0, 0));
        produce(&p, 2);
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        let waiting = tokio::spawn({
            let p = p.clone();
            async move { p.wait_replicated(1, 0, deadline).await }
        });
        // The wait is registered with the core before the fetch arrives.
        while p.lock().core.waiting_acks() == 0 {
            tokio::task::yield_now().await;
        }
        follower_fetch(&p, 2, 2).expect("fetch");
        waiting.await.expect("join").expect("acknowledged");
        produce(&p, 1);
        let waiting = tokio::spawn({
            let p = p.clone();
            async move { p.wait_replicated(2, 0, deadline).await }
        });
        while p.lock().core.waiting_acks() == 0 {
            tokio::task::yield_now().await;
        }
        p.apply_metadata(&topic(), &meta(2, &[2], 1, 1));
        let err = waiting.await.expect("join").expect_err("deposed");
        assert!(
            matches!(
                err,
                BrokerError::NotLeader {
                    leader: Some(2),
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn lagging_followers_leave_the_isr_and_caught_up_ones_rejoin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Partition::open(dir.path(), &topic(), &meta(1, &[1, 2, 3], 0, 0), 1).expect("open");
        assert_eq!(
            p.apply_metadata(&topic(), &meta(1, &[1, 2, 3], 0, 0)),
            RoleChange::BecameLeader
        );
        produce(&p, 3);
        let now = now_ms();
        // Both followers are granted a lag window from the election; nothing changes within it.
        assert_eq!(p.isr_change(now, 10_000, |_| Some(1)), None);
        // Follower 2 catches up; follower 3 never fetches.
        follower_fetch(&p, 2, 3).expect("fetch");
        assert_eq!(
            p.high_watermark(),
            0,
            "3 has not fetched: the HW waits for it"
        );
        let change = p
            .isr_change(now + 20_000, 10_000, |_| Some(1))
            .expect("shrink");
        assert_eq!(
            (change.isr.clone(), change.removed.clone()),
            (vec![1], vec![2, 3])
        );
        assert_eq!(change.partition_epoch, 0);
        // While the shrink is pending nothing else is proposed and the HW still waits for 3.
        assert_eq!(p.isr_change(now + 20_000, 10_000, |_| Some(1)), None);
        assert_eq!(p.high_watermark(), 0);
        p.isr_change_done(Some(&meta(1, &[1, 2], 0, 1)));
        assert_eq!(p.snapshot().isr, vec![1, 2]);
        assert_eq!(
            p.high_watermark(),
            3,
            "with 3 out of the ISR the HW follows 2"
        );
        // 3 catches up to the HW: it may rejoin; the HW counts it while that is pending.
        follower_fetch(&p, 3, 3).expect("fetch");
        let change = p.isr_change(now_ms(), 10_000, |_| Some(1)).expect("expand");
        assert_eq!(
            (change.isr.clone(), change.added.clone()),
            (vec![1, 2, 3], vec![3])
        );
        assert_eq!(change.partition_epoch, 1);
        // A refused change (fenced) clears the pending state; metadata decides.
        p.isr_change_done(None);
        assert_eq!(p.snapshot().pending_isr, None);
        assert_eq!(p.snapshot().isr, vec![1, 2]);
        // An older image (lower partition epoch) never rolls the ISR back.
        p.apply_metadata(&topic(), &meta(1, &[1, 2, 3], 0, 2));
        p.apply_metadata(&topic(), &meta(1, &[1], 0, 1));
        assert_eq!(p.snapshot().isr, vec![1, 2, 3]);
    }

    #[test]
    fn a_deposed_leader_truncates_to_the_new_leaders_epoch_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Partition::open(dir.path(), &topic(), &meta(1, &[1, 2, 3], 0, 0), 1).expect("open");
        p.apply_metadata(&topic(), &meta(1, &[1, 2, 3], 0, 0));
        produce(&p, 5);
        // Broker 2 leads epoch 1; it had offsets 0..3 of epoch 0.
        assert_eq!(
            p.apply_metadata(&topic(), &meta(2, &[2, 3], 1, 1)),
            RoleChange::BecameFollower
        );
        assert_eq!(p.truncation_needed(), Some((1, 0)));
        let err = p
            .append_replicated(&[], 0, 0)
            .expect_err("no fetching before truncation");
        assert!(matches!(err, BrokerError::Kafka { .. }), "{err:?}");
        assert_eq!(p.truncate_to_leader(0, 0, 3).expect("truncate"), 3);
        assert_eq!(p.log_end_offset(), 3);
        assert_eq!(p.truncation_needed(), None);
        // The dropped batches' producer state is gone with them (rebuilt from the log).
        assert_eq!(p.log.latest_epoch(), Some(0));
    }

    /// What the per-partition checkpoint of earlier versions held (the broker-wide file is
    /// written by `ReplicaManager::checkpoint_hws`, tested there).
    fn write_legacy_hw_checkpoint(p: &Partition) {
        std::fs::write(
            p.log.dir().join(HW_CHECKPOINT_FILE),
            format!("{}\n", p.high_watermark()),
        )
        .expect("write");
    }

    /// Kafka's replication-offset-checkpoint: the high watermark survives a restart (within
    /// what the log still holds), so committed records are readable at once.
    #[test]
    fn the_high_watermark_is_checkpointed_and_restored_within_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let p = Partition::open(dir.path(), &topic(), &meta(1, &[1], 0, 0), 1).expect("open");
            p.apply_metadata(&topic(), &meta(1, &[1], 0, 0));
            produce(&p, 4);
            assert_eq!(p.high_watermark(), 4, "an ISR of one commits at once");
            write_legacy_hw_checkpoint(&p);
            p.log.close().expect("close");
        }
        let p = Partition::open(dir.path(), &topic(), &meta(1, &[1, 2, 3], 1, 1), 1).expect("open");
        assert_eq!(
            p.high_watermark(),
            4,
            "restored before any follower fetched"
        );
        p.log.close().expect("close");
        drop(p);
        // A checkpoint past the log (its tail lost in a crash) is cut to the log end.
        std::fs::write(dir.path().join(HW_CHECKPOINT_FILE), "99\n").expect("write");
        let p = Partition::open(dir.path(), &topic(), &meta(1, &[1, 2, 3], 1, 1), 1).expect("open");
        assert_eq!(p.high_watermark(), 4);
        p.log.close().expect("close");
        drop(p);
        std::fs::write(dir.path().join(HW_CHECKPOINT_FILE), "garbage").expect("write");
        let p = Partition::open(dir.path(), &topic(), &meta(1, &[1, 2, 3], 1, 1), 1).expect("open");
        assert_eq!(
            p.high_watermark(),
            0,
            "an unreadable checkpoint counts for nothing"
        );
    }

    /// Kafka's truncateTo: a replica elected for an epoch in which it wrote nothing keeps that
    /// epoch at its log end; as a follower of a leader that never had it, truncation to its
    /// own end must still drop it, or every fetch names an unknown epoch and diverges forever.
    #[test]
    fn a_leader_epoch_without_data_is_dropped_by_truncation_to_the_log_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Partition::open(dir.path(), &topic(), &meta(1, &[1, 2, 3], 0, 0), 1).expect("open");
        p.apply_metadata(&topic(), &meta(1, &[1, 2, 3], 0, 0));
        produce(&p, 4);
        // Elected for epoch 1, deposed before writing anything.
        p.apply_metadata(&topic(), &meta(1, &[1, 2, 3], 1, 1));
        assert_eq!(p.log.latest_epoch(), Some(1));
        // Broker 2 leads epoch 2 and never saw epoch 1: it answers epoch 0 ending at 4.
        p.apply_metadata(&topic(), &meta(2, &[2, 3], 2, 2));
        assert_eq!(p.truncation_needed(), Some((2, 1)));
        assert_eq!(p.truncate_to_leader(1, 0, 4).expect("truncate"), 4);
        assert_eq!(p.log_end_offset(), 4, "no data lost");
        assert_eq!(
            p.log.latest_epoch(),
            Some(0),
            "the empty epoch 1 is gone, so the next fetch names epoch 0"
        );
    }

    /// A transactional batch (attribute bit 0x10; the CRC covers it, so it is recomputed).
    fn txn_batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
        let mut b = dmq_log::RecordBatchBuilder::new(0).producer(pid, epoch, seq);
        for i in 0..n {
            // Timestamps of now, like the markers': a jump in time would roll a segment.
            b.push(now_ms(), Some(b"k"), Some(format!("t{i}").as_bytes()), &[]);
        }
        let mut bytes = b.build();
        let attributes = BatchHeader::new(&bytes).expect("header").attributes() | 0x10;
        bytes[21..23].copy_from_slice(&attributes.to_be_bytes());
        let crc = dmq_log::batch::compute_crc(&bytes);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    fn marker(pid: i64, epoch: i16, commit: bool) -> TxnMarker {
        TxnMarker {
            producer_id: pid,
            producer_epoch: epoch,
            commit,
            coordinator_epoch: 0,
        }
    }

    /// KIP-98 at the partition: the LSO stops at an open transaction's first offset, an abort
    /// lands in the aborted list, a marker of a newer epoch fences the old one — and all of it
    /// is rebuilt from the log when the partition is opened again.
    #[test]
    fn transaction_state_follows_markers_and_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let aborted = vec![AbortedTxn {
            producer_id: 7,
            first_offset: 4,
            last_offset: 5,
        }];
        let fenced = |p: &Partition| {
            let err = p
                .append_as_leader(&mut txn_batch(7, 0, 9, 1), -1, false)
                .expect_err("data of the fenced epoch");
            assert_eq!(err.kafka_code(), ResponseError::InvalidProducerEpoch.code());
            let err = p
                .append_txn_marker(marker(7, 0, true), false)
                .expect_err("a marker of the fenced epoch");
            assert_eq!(err.kafka_code(), ResponseError::InvalidProducerEpoch.code());
        };
        {
            // An ISR of one: every append is committed at once.
            let p = Partition::open(dir.path(), &topic(), &meta(1, &[1], 0, 0), 1).expect("open");
            p.apply_metadata(&topic(), &meta(1, &[1], 0, 0));
            produce(&p, 1); // 0
            p.append_as_leader(&mut txn_batch(7, 0, 0, 2), -1, false)
                .expect("txn 1"); // 1-2
            assert_eq!(p.last_stable_offset(), 1);
            assert_eq!(p.ongoing_transaction(7), Some(1));
            let m = p
                .append_txn_marker(marker(7, 0, true), false)
                .expect("commit"); // 3
            assert_eq!(m.base_offset, 3);
            assert_eq!(p.last_stable_offset(), 4, "committed and below the HW");
            p.append_as_leader(&mut txn_batch(7, 0, 2, 1), -1, false)
                .expect("txn 2"); // 4
            p.append_txn_marker(marker(7, 1, false), false)
                .expect("abort with a bumped epoch"); // 5
            p.append_as_leader(&mut txn_batch(7, 1, 0, 2), -1, false)
                .expect("txn 3"); // 6-7
            assert_eq!(p.aborted_transactions(0, 8), aborted);
            assert_eq!(p.last_stable_offset(), 6);
            fenced(&p);
            write_legacy_hw_checkpoint(&p);
            p.log.close().expect("close");
        }
        let p = Partition::open(dir.path(), &topic(), &meta(1, &[1], 1, 1), 1).expect("reopen");
        p.apply_metadata(&topic(), &meta(1, &[1], 1, 1));
        assert_eq!(p.high_watermark(), 8);
        assert_eq!(
            p.last_stable_offset(),
            6,
            "transaction 3 is still open at 6"
        );
        assert_eq!(p.ongoing_transaction(7), Some(6));
        assert_eq!(p.aborted_transactions(0, 8), aborted);
        assert_eq!(p.aborted_transactions(6, 8), vec![], "the abort ended at 5");
        fenced(&p);
        p.append_txn_marker(marker(7, 1, true), false)
            .expect("commit 3"); // 8
        assert_eq!(p.last_stable_offset(), 9);
    }

    /// The LSO never passes the high watermark, and a marker counts only once the HW passes
    /// it (Kafka's unreplicated transactions): until then a new leader might not have it.
    #[test]
    fn a_marker_counts_for_the_lso_only_once_replicated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Partition::open(dir.path(), &topic(), &meta(1, &[1, 2], 0, 0), 1).expect("open");
        p.apply_metadata(&topic(), &meta(1, &[1, 2], 0, 0));
        produce(&p, 2); // 0-1
        p.append_as_leader(&mut txn_batch(7, 0, 0, 2), 1, false)
            .expect("txn"); // 2-3
        assert_eq!(
            p.last_stable_offset(),
            0,
            "nothing replicated: LSO = HW = 0"
        );
        follower_fetch(&p, 2, 3).expect("fetch");
        assert_eq!(p.high_watermark(), 3);
        assert_eq!(p.last_stable_offset(), 2);
        p.append_txn_marker(marker(7, 0, false), false)
            .expect("abort"); // 4
        follower_fetch(&p, 2, 4).expect("fetch");
        assert_eq!(p.high_watermark(), 4, "the marker is not replicated yet");
        assert_eq!(p.last_stable_offset(), 2);
        follower_fetch(&p, 2, 5).expect("fetch");
        assert_eq!(p.last_stable_offset(), 5);
        assert_eq!(p.aborted_transactions(0, 5).len(), 1);
    }

    /// What a reopened partition knows about producers and transactions, for comparison.
    type TxnView = (
        Vec<AbortedTxn>,
        i64,
        Vec<crate::producer_state::ActiveProducer>,
        Option<i64>,
    );

    fn txn_view(p: &Partition) -> TxnView {
        (
            p.aborted_transactions(0, i64::MAX),
            p.last_stable_offset(),
            p.active_producers().expect("leader"),
            p.ongoing_transaction(8),
        )
    }

    fn reopen(dir: &Path) -> Partition {
        let p = Partition::open(dir, &topic(), &meta(1, &[1], 0, 0), 1).expect("open");
        p.apply_metadata(&topic(), &meta(1, &[1], 0, 0));
        p
    }

    fn files(dir: &Path, ext: &str) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(ext))
            .collect();
        out.sort();
        out
    }

    /// Kafka's producer snapshots and per-segment `.txnindex`: an open scans the log only from
    /// the newest snapshot and takes the earlier aborted transactions from the index files; the
    /// result is the same as a scan of the whole log, which is what an open without a snapshot
    /// (or with a torn one) does. Aborted transactions are on disk next to their segments.
    #[test]
    fn producer_state_reopens_from_a_snapshot_and_the_txn_indexes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (expected, snapshot_at) = {
            let p = reopen(dir.path());
            p.append_as_leader(&mut txn_batch(7, 0, 0, 2), -1, false)
                .expect("txn"); // 0-1
            p.append_txn_marker(marker(7, 0, false), false)
                .expect("abort"); // 2
            p.log.roll().expect("roll");
            p.append_as_leader(&mut txn_batch(8, 0, 0, 1), -1, false)
                .expect("txn of 8, open across the snapshot"); // 3
            p.append_as_leader(&mut txn_batch(7, 0, 2, 1), -1, false)
                .expect("txn"); // 4
            p.append_txn_marker(marker(7, 0, false), false)
                .expect("abort"); // 5
            p.snapshot_producers(false).expect("snapshot after a roll");
            let snapshot_at = p.log_end_offset();
            assert_eq!(snapshot_at, 6);
            p.append_as_leader(&mut txn_batch(7, 0, 3, 1), -1, false)
                .expect("txn"); // 6
            p.append_txn_marker(marker(7, 0, false), false)
                .expect("abort after the snapshot"); // 7
            p.snapshot_producers(false)
                .expect("no roll since the last snapshot: nothing written");
            let view = txn_view(&p);
            assert_eq!(view.0.len(), 3);
            assert_eq!(view.1, 3, "8's transaction holds the LSO");
            assert_eq!(view.3, Some(3));
            // A crash: no clean close, no snapshot at the end.
            (view, snapshot_at)
        };
        assert_eq!(files(dir.path(), ".snapshot").len(), 1);
        assert_eq!(
            files(dir.path(), ".txnindex"),
            vec![
                "00000000000000000000.txnindex".to_string(),
                "00000000000000000003.txnindex".to_string()
            ],
            "each abort is indexed in the segment of its marker"
        );
        {
            let p = reopen(dir.path());
            assert_eq!(
                p.lock().snapshot_offset,
                snapshot_at,
                "scanned from the snapshot"
            );
            assert_eq!(txn_view(&p), expected);
            p.snapshot_producers(true).expect("clean shutdown snapshot");
            p.log.close().expect("close");
        }
        {
            let p = reopen(dir.path());
            assert_eq!(
                p.lock().snapshot_offset,
                8,
                "a clean close leaves nothing to scan"
            );
            assert_eq!(txn_view(&p), expected);
        }
        // Without snapshots (and with a stale index entry that the scan must not double).
        for f in files(dir.path(), ".snapshot") {
            std::fs::remove_file(dir.path().join(f)).expect("rm");
        }
        let p = reopen(dir.path());
        assert_eq!(p.lock().snapshot_offset, 0, "a whole scan");
        assert_eq!(txn_view(&p), expected);
        // A torn snapshot is skipped the same way.
        p.snapshot_producers(true).expect("snapshot");
        drop(p);
        let only = files(dir.path(), ".snapshot");
        let path = dir.path().join(&only[only.len() - 1]);
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("tear");
        let p = reopen(dir.path());
        assert_eq!(p.lock().snapshot_offset, 0, "the torn snapshot was skipped");
        assert_eq!(txn_view(&p), expected);
    }

    /// A crash loses the log's unflushed tail, and with it offsets a snapshot was taken at:
    /// that snapshot is deleted and the state comes from the older one (or a whole scan), and
    /// the index entry of an abort marker lost with the tail is gone too.
    #[test]
    fn a_snapshot_above_the_recovered_log_end_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seg_bytes;
        {
            let p = reopen(dir.path());
            p.append_as_leader(&mut txn_batch(7, 0, 0, 1), -1, false)
                .expect("txn"); // 0
            p.append_txn_marker(marker(7, 0, false), false)
                .expect("abort"); // 1
            p.log.roll().expect("roll");
            p.append_as_leader(&mut txn_batch(7, 0, 1, 1), -1, false)
                .expect("txn"); // 2
            seg_bytes = p.log.segments().last().expect("active").size_bytes;
            p.append_txn_marker(marker(7, 0, false), false)
                .expect("abort"); // 3
            p.snapshot_producers(false).expect("snapshot at 4");
            assert_eq!(p.aborted_transactions(0, 10).len(), 2);
        }
        assert_eq!(
            files(dir.path(), ".snapshot"),
            vec!["00000000000000000004.snapshot"]
        );
        // The marker at 3 never reached the disk: the segment ends after the batch at 2.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("00000000000000000002.log"))
            .expect("open");
        f.set_len(seg_bytes).expect("truncate");
        let p = reopen(dir.path());
        assert_eq!(p.log_end_offset(), 3);
        assert_eq!(files(dir.path(), ".snapshot"), Vec::<String>::new());
        assert_eq!(
            p.aborted_transactions(0, 10),
            vec![AbortedTxn {
                producer_id: 7,
                first_offset: 0,
                last_offset: 1
            }]
        );
        assert_eq!(
            p.ongoing_transaction(7),
            Some(2),
            "its marker is lost: open again"
        );
        assert_eq!(
            files(dir.path(), ".txnindex"),
            vec!["00000000000000000000.txnindex".to_string()]
        );
    }
}
