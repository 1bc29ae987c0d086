//! The broker's share-group state (KIP-932): the groups this broker coordinates
//! (`dmq_share::group::ShareGroup`, in memory: members rejoin a new coordinator), the share
//! sessions of members fetching from the partitions it leads, and those partitions' record
//! states (`dmq_share::SharePartition`).
//!
//! Record states are durable: a leader loads a share-partition from the snapshot the quorum
//! holds (`ensure_loaded`), and answers an acknowledgement only after [`Shares::persist`] has
//! committed a snapshot holding it (one Raft entry for every share-partition acknowledged
//! meanwhile: the [`writer`] task). Writes carry the leader epoch they were made under, so a
//! deposed leader cannot overwrite its successor's state. The Kafka APIs are in
//! `kafka/share.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dmq_share::group::ShareGroup;
use dmq_share::{AutoOffsetReset, ShareConfig, SharePartition, ShareSnapshot};
use serde_json::{json, Value};
use tokio::sync::{oneshot, Notify};

use crate::node::BrokerShared;
use crate::partition::Partition;

/// A share-partition: (group, topic, partition).
pub type ShareKey = (String, String, i32);

/// A share-partition this broker leads, with the leader epoch it was loaded under (a new
/// epoch means another leader may have moved it on: it is loaded again).
#[derive(Debug, Clone)]
pub struct LoadedShare {
    pub sp: SharePartition,
    pub leader_epoch: i32,
    /// The group's administrator resets (`ClusterImage::share_resets`) when it was loaded: a
    /// reset or deletion since (AlterShareGroupOffsets, DeleteShareGroupOffsets, DeleteGroups)
    /// makes it load again.
    pub resets: u64,
}

impl LoadedShare {
    /// Whether this copy is the one to serve at `leader_epoch` with `resets`.
    pub fn current(&self, leader_epoch: i32, resets: u64) -> bool {
        self.leader_epoch == leader_epoch && self.resets == resets
    }
}

/// The group's administrator reset count in this broker's image.
pub fn share_resets(shared: &BrokerShared, group: &str) -> u64 {
    shared.image().share_resets.get(group).copied().unwrap_or(0)
}

/// A member's share session on this broker (KIP-932 ShareFetch/ShareAcknowledge epochs).
#[derive(Debug, Clone, Default)]
pub struct ShareSession {
    /// The epoch the member's next request must carry.
    pub epoch: i32,
    /// (topic, partition) it fetches from here.
    pub partitions: BTreeSet<(String, i32)>,
    /// When a request last used it.
    pub last_used_ms: i64,
}

/// A share session no request used for this long is dropped when another opens (its member
/// died without closing it; its records were released when their locks ran out).
pub const SESSION_IDLE_MS: i64 = 120_000;

/// What one share session request did to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStep {
    Opened,
    Continued,
    Closed,
}

impl ShareSession {
    /// The next epoch after `epoch` (wrapping past `i32::MAX` to 1, as Kafka does).
    pub fn next_epoch(epoch: i32) -> i32 {
        if epoch == i32::MAX {
            1
        } else {
            epoch + 1
        }
    }
}

/// Everything share-related on one broker, behind one lock (requests are short: no I/O but
/// page-cache reads happens under it, and never an await).
#[derive(Default)]
pub struct Shares {
    pub state: Mutex<ShareState>,
    pending: Mutex<PendingWrites>,
    wake: Notify,
}

/// Per share-partition, the error code of its last persist (0: committed).
pub type PersistResult = Arc<HashMap<ShareKey, i16>>;

/// Share-partitions changed since the writer's last round, and who waits for them.
#[derive(Default)]
struct PendingWrites {
    dirty: BTreeSet<ShareKey>,
    waiters: Vec<oneshot::Sender<PersistResult>>,
}

/// Kafka error codes a persist can end with.
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const REQUEST_TIMED_OUT: i16 = 7;
/// How long the writer retries a write the quorum could not take (an election).
const WRITE_RETRY_FOR: Duration = Duration::from_secs(5);

impl Shares {
    /// Commits the current state of `keys` (with any other share-partition changed meanwhile)
    /// through the quorum; per key, 0 or the Kafka error code of the failure.
    pub async fn persist(&self, keys: impl IntoIterator<Item = ShareKey>) -> PersistResult {
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.dirty.extend(keys);
            p.waiters.push(tx);
        }
        self.wake.notify_one();
        rx.await.unwrap_or_default()
    }

    /// Writes `keys` in the writer's next round without waiting (released locks, archived
    /// records: a leader change before the write only delivers them again).
    pub fn persist_later(&self, keys: impl IntoIterator<Item = ShareKey>) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let before = p.dirty.len();
        p.dirty.extend(keys);
        if p.dirty.len() != before {
            self.wake.notify_one();
        }
    }
}

/// The share-partition settings for `group`: its group configs (`share.*`), else the dynamic
/// broker configs (`group.share.*`), else Kafka's defaults; and `share.auto.offset.reset`.
pub fn group_share_config(shared: &BrokerShared, group: &str) -> (ShareConfig, AutoOffsetReset) {
    let image = shared.image();
    let none = BTreeMap::new();
    let group_configs = image.group_configs.get(group).unwrap_or(&none);
    let value = |group_name: &str, broker_name: &str| {
        group_configs
            .get(group_name)
            .cloned()
            .or_else(|| {
                image
                    .broker_configs
                    .dynamic_value(Some(shared.config.broker_id), broker_name)
                    .map(|(v, _)| v.to_string())
            })
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    let mut config = ShareConfig::default();
    if let Some(ms) = value(
        "share.record.lock.duration.ms",
        "group.share.record.lock.duration.ms",
    ) {
        config.record_lock_duration_ms = ms;
    }
    if let Some(limit) = value(
        "share.delivery.count.limit",
        "group.share.delivery.count.limit",
    ) {
        config.delivery_count_limit = i16::try_from(limit).unwrap_or(config.delivery_count_limit);
    }
    if let Some(locks) = value(
        "share.partition.max.record.locks",
        "group.share.partition.max.record.locks",
    ) {
        config.max_record_locks = u32::try_from(locks).unwrap_or(config.max_record_locks);
    }
    if let Some(ms) = value(
        "share.redelivery.backoff.ms",
        "group.share.redelivery.backoff.ms",
    ) {
        config.redelivery_backoff_ms = ms;
    }
    if config.validate().is_err() {
        config = ShareConfig::default();
    }
    let reset = group_configs
        .get("share.auto.offset.reset")
        .and_then(|v| AutoOffsetReset::from_name(v))
        .unwrap_or(AutoOffsetReset::Latest);
    (config, reset)
}

/// The group's dead-letter topic (`share.dlq.topic`), if it has one.
pub fn dead_letter_topic(shared: &BrokerShared, group: &str) -> Option<String> {
    shared
        .image()
        .group_configs
        .get(group)
        .and_then(|c| c.get("share.dlq.topic"))
        .filter(|t| !t.is_empty())
        .cloned()
}

/// Makes sure this broker holds `group`'s share-partition of `part` (which it leads) as of the
/// partition's current leader epoch: from the quorum's snapshot (records that were acquired
/// become available again, nothing acknowledged comes back), or new at
/// `share.auto.offset.reset` if the quorum has none. `Err`: the Kafka error code.
pub async fn ensure_loaded(
    shared: &BrokerShared,
    group: &str,
    topic: &str,
    index: i32,
    part: &Partition,
) -> Result<(), i16> {
    let epoch = part.leader_epoch();
    let resets = share_resets(shared, group);
    let key: ShareKey = (group.to_string(), topic.to_string(), index);
    let loaded = |st: &ShareState| {
        st.partitions
            .get(&key)
            .is_some_and(|l| l.current(epoch, resets))
    };
    if loaded(
        &shared
            .shares
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    ) {
        return Ok(());
    }
    let stored = shared.meta.share_group_state(group).await.map_err(|e| {
        tracing::warn!(group, topic, index, error = %e, "share-partition state unavailable");
        LEADER_NOT_AVAILABLE
    })?;
    let snapshot: Option<ShareSnapshot> = stored["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["topic"] == topic && p["partition"] == index)
        .and_then(|p| serde_json::from_value(p["snapshot"].clone()).ok());
    let (config, reset) = group_share_config(shared, group);
    let now = dmq_log::now_ms();
    let log_start = part.log.log_start_offset();
    let mut sp = match &snapshot {
        Some(s) => SharePartition::from_snapshot(config, s, now).map_err(|e| {
            tracing::error!(group, topic, index, error = %e, "stored share-partition state is invalid");
            e.kafka_code()
        })?,
        None => SharePartition::new(config, reset, log_start, part.high_watermark())
            .map_err(|e| e.kafka_code())?,
    };
    sp.advance_log_start(log_start);
    let mut st = shared
        .shares
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    // Another request may have loaded it meanwhile: keep that one (it may hold locks).
    if !loaded(&st) && part.leader_epoch() == epoch {
        tracing::info!(
            group,
            topic,
            index,
            epoch,
            from_snapshot = snapshot.is_some(),
            start = sp.start_offset(),
            end = sp.end_offset(),
            "share-partition loaded"
        );
        st.partitions.insert(
            key,
            LoadedShare {
                sp,
                leader_epoch: epoch,
                resets,
            },
        );
    }
    Ok(())
}

const LEADER_NOT_AVAILABLE: i16 = 5;

/// The writer: each round commits the snapshots of every share-partition changed since the
/// last one as one Raft entry, then answers everyone who waited for them.
pub async fn writer(shared: Arc<BrokerShared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            _ = shared.shares.wake.notified() => {}
            _ = shutdown.changed() => return,
        }
        let (dirty, waiters) = {
            let mut p = shared
                .shares
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            (std::mem::take(&mut p.dirty), std::mem::take(&mut p.waiters))
        };
        let codes = write_round(&shared, dirty).await;
        let codes: PersistResult = Arc::new(codes);
        for w in waiters {
            let _ = w.send(codes.clone());
        }
    }
}

async fn write_round(shared: &BrokerShared, dirty: BTreeSet<ShareKey>) -> HashMap<ShareKey, i16> {
    let mut codes = HashMap::new();
    let mut keys = Vec::new();
    let mut writes: Vec<Value> = Vec::new();
    {
        let st = shared
            .shares
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for k in dirty {
            match st.partitions.get(&k) {
                Some(l) => {
                    writes.push(json!({
                        "group": k.0,
                        "topic": k.1,
                        "partition": k.2,
                        "leaderEpoch": l.leader_epoch,
                        "snapshot": l.sp.snapshot(),
                    }));
                    keys.push((k, l.leader_epoch));
                }
                None => {
                    codes.insert(k, NOT_LEADER_OR_FOLLOWER);
                }
            }
        }
    }
    if writes.is_empty() {
        return codes;
    }
    let deadline = tokio::time::Instant::now() + WRITE_RETRY_FOR;
    let mut backoff = Duration::from_millis(50);
    let result = loop {
        match shared.meta.write_share_states(writes.clone()).await {
            Ok(r) => break Some(r),
            Err(e) if tokio::time::Instant::now() + backoff < deadline => {
                tracing::debug!(error = %e, "share-state write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            Err(e) => {
                tracing::warn!(error = %e, writes = writes.len(), "share-state write failed");
                break None;
            }
        }
    };
    let Some(results) = result else {
        for (k, _) in keys {
            codes.insert(k, REQUEST_TIMED_OUT);
        }
        return codes;
    };
    let mut st = shared
        .shares
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    for ((k, epoch), refused) in keys.into_iter().zip(results) {
        let code = match refused.as_deref() {
            None => 0,
            Some(reason) => {
                tracing::info!(
                    group = k.0,
                    topic = k.1,
                    partition = k.2,
                    reason,
                    "share-state write refused"
                );
                // Fenced (or the partition is gone): this copy is stale, never serve it again.
                if st
                    .partitions
                    .get(&k)
                    .is_some_and(|l| l.leader_epoch == epoch)
                {
                    st.partitions.remove(&k);
                }
                NOT_LEADER_OR_FOLLOWER
            }
        };
        codes.insert(k, code);
    }
    codes
}

#[derive(Default)]
pub struct ShareState {
    /// Groups this broker coordinates, by group id.
    pub groups: HashMap<String, ShareGroup>,
    /// Share sessions, by (group, member).
    pub sessions: HashMap<(String, String), ShareSession>,
    /// Share-partitions this broker leads, by (group, topic, partition).
    pub partitions: HashMap<ShareKey, LoadedShare>,
}

/// Kafka's share session errors.
pub const SHARE_SESSION_NOT_FOUND: i16 = 122;
pub const INVALID_SHARE_SESSION_EPOCH: i16 = 123;

impl ShareState {
    /// Applies a request's session epoch (`0` opens, `-1` closes, else must match) and the
    /// partitions it adds and forgets. `Err` is the top-level error code.
    pub fn step_session(
        &mut self,
        group: &str,
        member: &str,
        epoch: i32,
        add: &[(String, i32)],
        forget: &[(String, i32)],
        now_ms: i64,
    ) -> Result<SessionStep, i16> {
        let key = (group.to_string(), member.to_string());
        match epoch {
            0 => {
                self.sessions
                    .retain(|_, s| now_ms.saturating_sub(s.last_used_ms) < SESSION_IDLE_MS);
                self.sessions.insert(
                    key,
                    ShareSession {
                        epoch: 1,
                        partitions: add.iter().cloned().collect(),
                        last_used_ms: now_ms,
                    },
                );
                Ok(SessionStep::Opened)
            }
            -1 => match self.sessions.remove(&key) {
                Some(_) => Ok(SessionStep::Closed),
                None => Err(SHARE_SESSION_NOT_FOUND),
            },
            n => {
                let Some(s) = self.sessions.get_mut(&key) else {
                    return Err(SHARE_SESSION_NOT_FOUND);
                };
                if s.epoch != n {
                    return Err(INVALID_SHARE_SESSION_EPOCH);
                }
                s.partitions.extend(add.iter().cloned());
                for f in forget {
                    s.partitions.remove(f);
                }
                s.epoch = ShareSession::next_epoch(n);
                s.last_used_ms = now_ms;
                Ok(SessionStep::Continued)
            }
        }
    }

    /// The member is gone (session closed, left the group, or expired): its records in every
    /// share-partition of the group here are released.
    /// Returns the share-partitions that changed, and the dead letters (with their key).
    pub fn member_left(
        &mut self,
        group: &str,
        member: &str,
        now_ms: i64,
    ) -> (Vec<ShareKey>, Vec<(ShareKey, dmq_share::DeadLetter)>) {
        self.sessions
            .remove(&(group.to_string(), member.to_string()));
        let mut changed = Vec::new();
        let mut dead = Vec::new();
        for (key, l) in self.partitions.iter_mut() {
            if key.0 == group {
                let out = l.sp.member_left(member, now_ms);
                if out.changed {
                    changed.push(key.clone());
                }
                dead.extend(out.dead_letters.into_iter().map(|d| (key.clone(), d)));
            }
        }
        (changed, dead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kip932_share_session_epochs() {
        let mut s = ShareState::default();
        let p = |n: i32| ("t".to_string(), n);
        assert_eq!(
            s.step_session("g", "m", 1, &[], &[], 1_000),
            Err(SHARE_SESSION_NOT_FOUND)
        );
        assert_eq!(
            s.step_session("g", "m", 0, &[p(0)], &[], 1_000),
            Ok(SessionStep::Opened)
        );
        assert_eq!(
            s.step_session("g", "m", 2, &[], &[], 1_000),
            Err(INVALID_SHARE_SESSION_EPOCH)
        );
        assert_eq!(
            s.step_session("g", "m", 1, &[p(1)], &[p(0)], 1_000),
            Ok(SessionStep::Continued)
        );
        let session = &s.sessions[&("g".to_string(), "m".to_string())];
        assert_eq!(session.epoch, 2);
        assert_eq!(session.partitions, BTreeSet::from([p(1)]));
        assert_eq!(
            s.step_session("g", "m", 1, &[], &[], 1_000),
            Err(INVALID_SHARE_SESSION_EPOCH)
        );
        assert_eq!(
            s.step_session("g", "m", -1, &[], &[], 1_000),
            Ok(SessionStep::Closed)
        );
        assert_eq!(
            s.step_session("g", "m", -1, &[], &[], 1_000),
            Err(SHARE_SESSION_NOT_FOUND)
        );
        assert_eq!(ShareSession::next_epoch(i32::MAX), 1);
        // A session idle past SESSION_IDLE_MS goes when another one opens.
        s.step_session("g", "dead", 0, &[p(0)], &[], 1_000)
            .expect("open");
        s.step_session("g", "m2", 0, &[p(0)], &[], 1_000 + SESSION_IDLE_MS)
            .expect("open");
        assert!(!s
            .sessions
            .contains_key(&("g".to_string(), "dead".to_string())));
    }
}
