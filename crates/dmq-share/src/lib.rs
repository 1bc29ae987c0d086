//! The record states of one share-partition (one share group × one topic partition), as a pure
//! state machine (sans-I/O): Kafka's `SharePartition` (KIP-932) without its locks, timers and
//! persister.
//!
//! ```text
//!   offsets:  … done │ in flight ───────────────────────────────│ not yet acquired …
//!                    ▲ start_offset (SPSO)                      ▲ end_offset (SPEO)
//!
//!                       acquire (delivery count + 1)
//!        ┌───────────┐ ─────────────────────────────▶ ┌──────────┐  ACCEPT   ┌──────────────┐
//!        │ AVAILABLE │                                │ ACQUIRED │ ────────▶ │ ACKNOWLEDGED │
//!        └───────────┘ ◀───────────────────────────── └──────────┘           └──────────────┘
//!              ▲        RELEASE, lock expiry, member      │  │ RENEW (new lock)
//!              │        left (after the redelivery        │  └──────┘
//!   new offsets│        backoff), unless the delivery     │ REJECT, GAP, or RELEASE / expiry
//!   (SPEO → HW)│        count reached the limit           ▼ at the delivery count limit
//!                                                     ┌──────────┐
//!                                                     │ ARCHIVED │ ──▶ dead letter (not GAP)
//!                                                     └──────────┘
//! ```
//!
//! [`SharePartition`] holds the offsets between the share-partition start offset (everything
//! below is ACKNOWLEDGED or ARCHIVED and forgotten) and the end offset (the next offset never
//! handed out), as ranges of records in the same state with the same delivery count, keyed by
//! first offset. A range is split only where an operation ends inside it and neighbours in the
//! same state merge again, so a million untouched records cost one map entry. The number of
//! offsets in flight (`end_offset - start_offset`) is bounded by
//! `group.share.partition.max.record.locks`: new records are handed out only below that window,
//! which also bounds the map.
//!
//! The caller (the broker's ShareFetch/ShareAcknowledge handlers, later) passes what the core
//! cannot know as plain inputs: the member id, the high watermark or last stable offset that
//! bounds acquisition, the log start offset, and the time as `now_ms`. It gets back what to do:
//! the [`AcquiredRecords`] to read and send, and the [`DeadLetter`]s to copy to the group's
//! dead-letter topic. Durability is whole [`ShareSnapshot`]s: [`SharePartition::snapshot`] after
//! a change, [`SharePartition::from_snapshot`] on a new leader.
//!
//! The coordinator's side — members, epochs and which partitions each member fetches from — is
//! [`group::ShareGroup`] (ShareGroupHeartbeat). What the broker still has to do to serve
//! librdkafka's share consumer with both is in `PROTOCOL.md` next to this crate.
//!
//! The rules, and where they come from:
//! - **Acquisition** (KIP-932): released records below the end offset first, in offset order,
//!   then new ones from the end offset up to the bound the caller passes; each acquisition adds
//!   one to the delivery count and locks the records to the member for
//!   `group.share.record.lock.duration.ms`.
//! - **Acknowledgement** (KIP-932, ShareAcknowledge/ShareFetch): only the member holding a
//!   record's lock may acknowledge it, else INVALID_RECORD_STATE; a request is applied whole or
//!   not at all. ACCEPT → ACKNOWLEDGED, REJECT and GAP → ARCHIVED, RELEASE → AVAILABLE, RENEW
//!   (KIP-1222) → a new lock.
//! - **Delivery limit** (KIP-932): a record released or timed out after
//!   `group.share.delivery.count.limit` deliveries is ARCHIVED instead.
//! - **Start offset** (KIP-932): moves over the prefix of ACKNOWLEDGED/ARCHIVED records.
//! - **Beyond Kafka** (issue #19): a redelivery backoff (`share.redelivery.backoff.ms`) before a
//!   released record is AVAILABLE again, and a dead letter for every record archived by REJECT or
//!   by the delivery limit, reported exactly once (the transition to ARCHIVED happens once).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod group;
#[cfg(test)]
mod tests;

/// `group.share.record.lock.duration.ms`: how long an acquired record stays locked to its member.
pub const RECORD_LOCK_DURATION_MS_DEFAULT: i64 = 30_000;
/// `group.share.delivery.count.limit`: deliveries after which an unacknowledged record is archived.
pub const DELIVERY_COUNT_LIMIT_DEFAULT: i16 = 5;
/// `group.share.partition.max.record.locks`: offsets in flight (start to end offset) at most.
pub const PARTITION_MAX_RECORD_LOCKS_DEFAULT: u32 = 2_000;
/// `share.redelivery.backoff.ms` (issue #19): how long a released record waits before it is
/// handed out again.
pub const REDELIVERY_BACKOFF_MS_DEFAULT: i64 = 0;
/// The version [`SharePartition::snapshot`] writes and [`SharePartition::from_snapshot`] reads.
pub const SNAPSHOT_VERSION: u16 = 1;

/// The group configs that govern a share-partition. They may change at any time
/// (IncrementalAlterConfigs on the group); new values apply to later transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareConfig {
    /// `group.share.record.lock.duration.ms`.
    pub record_lock_duration_ms: i64,
    /// `group.share.delivery.count.limit`.
    pub delivery_count_limit: i16,
    /// `group.share.partition.max.record.locks`.
    pub max_record_locks: u32,
    /// `share.redelivery.backoff.ms`.
    pub redelivery_backoff_ms: i64,
}

impl Default for ShareConfig {
    fn default() -> Self {
        ShareConfig {
            record_lock_duration_ms: RECORD_LOCK_DURATION_MS_DEFAULT,
            delivery_count_limit: DELIVERY_COUNT_LIMIT_DEFAULT,
            max_record_locks: PARTITION_MAX_RECORD_LOCKS_DEFAULT,
            redelivery_backoff_ms: REDELIVERY_BACKOFF_MS_DEFAULT,
        }
    }
}

impl ShareConfig {
    /// INVALID_CONFIG for a value the state machine cannot work with.
    pub fn validate(&self) -> Result<(), ShareError> {
        let bad = |name, value| Err(ShareError::InvalidConfig { name, value });
        if self.record_lock_duration_ms <= 0 {
            return bad(
                "group.share.record.lock.duration.ms",
                self.record_lock_duration_ms,
            );
        }
        if self.delivery_count_limit < 1 {
            return bad(
                "group.share.delivery.count.limit",
                i64::from(self.delivery_count_limit),
            );
        }
        if self.max_record_locks < 1 {
            return bad(
                "group.share.partition.max.record.locks",
                i64::from(self.max_record_locks),
            );
        }
        if self.redelivery_backoff_ms < 0 {
            return bad("share.redelivery.backoff.ms", self.redelivery_backoff_ms);
        }
        Ok(())
    }
}

/// `share.auto.offset.reset`: where a share-partition with no state begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AutoOffsetReset {
    /// At the log start offset.
    Earliest,
    /// At the high watermark (Kafka's default).
    Latest,
}

impl AutoOffsetReset {
    pub fn from_name(name: &str) -> Option<AutoOffsetReset> {
        match name {
            "earliest" => Some(AutoOffsetReset::Earliest),
            "latest" => Some(AutoOffsetReset::Latest),
            _ => None,
        }
    }
}

/// A record's delivery state, with Kafka's ids (`SharePartition.RecordState`, and the
/// `DeliveryState` of the share-group state batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecordState {
    Available,
    Acquired,
    Acknowledged,
    Archived,
}

impl RecordState {
    pub fn id(self) -> i8 {
        match self {
            RecordState::Available => 0,
            RecordState::Acquired => 1,
            RecordState::Acknowledged => 2,
            RecordState::Archived => 4,
        }
    }

    pub fn from_id(id: i8) -> Option<RecordState> {
        match id {
            0 => Some(RecordState::Available),
            1 => Some(RecordState::Acquired),
            2 => Some(RecordState::Acknowledged),
            4 => Some(RecordState::Archived),
            _ => None,
        }
    }

    /// ACKNOWLEDGED and ARCHIVED are final: the start offset may move over them.
    pub fn is_terminal(self) -> bool {
        matches!(self, RecordState::Acknowledged | RecordState::Archived)
    }
}

/// The `AcknowledgeTypes` of ShareFetch/ShareAcknowledge, with their wire codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcknowledgeType {
    /// 0: the offset is not in the log (compacted away, a control record); archived, no dead
    /// letter.
    Gap,
    /// 1: processed.
    Accept,
    /// 2: hand it out again (to anyone).
    Release,
    /// 3: unprocessable; archived, dead-lettered.
    Reject,
    /// 4 (KIP-1222): still working on it; a fresh lock.
    Renew,
}

impl AcknowledgeType {
    /// INVALID_REQUEST for a code Kafka does not define.
    pub fn from_code(code: i8) -> Result<AcknowledgeType, ShareError> {
        match code {
            0 => Ok(AcknowledgeType::Gap),
            1 => Ok(AcknowledgeType::Accept),
            2 => Ok(AcknowledgeType::Release),
            3 => Ok(AcknowledgeType::Reject),
            4 => Ok(AcknowledgeType::Renew),
            _ => Err(ShareError::UnknownAcknowledgeType { code }),
        }
    }

    pub fn code(self) -> i8 {
        match self {
            AcknowledgeType::Gap => 0,
            AcknowledgeType::Accept => 1,
            AcknowledgeType::Release => 2,
            AcknowledgeType::Reject => 3,
            AcknowledgeType::Renew => 4,
        }
    }
}

/// One `AcknowledgementBatches` entry: either one type for the whole range or one per offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckBatch {
    pub first_offset: i64,
    pub last_offset: i64,
    pub types: Vec<AcknowledgeType>,
}

impl AckBatch {
    /// One type for `first_offset..=last_offset`.
    pub fn new(first_offset: i64, last_offset: i64, ack: AcknowledgeType) -> AckBatch {
        AckBatch {
            first_offset,
            last_offset,
            types: vec![ack],
        }
    }

    fn type_at(&self, offset: i64) -> AcknowledgeType {
        if self.types.len() == 1 {
            return self.types[0];
        }
        // Checked in `validate_shape`: one type per offset.
        self.types[(offset - self.first_offset) as usize]
    }
}

/// What ShareFetch's `AcquiredRecords` carries: records handed to the member, all with the same
/// delivery count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcquiredRecords {
    pub first_offset: i64,
    pub last_offset: i64,
    pub delivery_count: i16,
}

/// Why records went to the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeadLetterReason {
    /// A member acknowledged them with REJECT.
    Rejected,
    /// Released or timed out after `group.share.delivery.count.limit` deliveries.
    DeliveryLimit,
}

/// Records that became ARCHIVED by REJECT or by the delivery limit, for the caller to copy to
/// `share.dlq.topic`. Each offset is reported once: ARCHIVED is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub first_offset: i64,
    pub last_offset: i64,
    pub delivery_count: i16,
    pub reason: DeadLetterReason,
}

impl DeadLetter {
    pub fn offsets(&self) -> std::ops::RangeInclusive<i64> {
        self.first_offset..=self.last_offset
    }
}

/// What [`SharePartition::acquire`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acquisition {
    /// The records now locked to the member, in offset order.
    pub records: Vec<AcquiredRecords>,
    /// Locks that had expired by `now_ms` were released first; records that reached the delivery
    /// limit there, or on the way to being handed out again, are archived and reported here.
    pub dead_letters: Vec<DeadLetter>,
    /// Whether any state changed (the caller may persist a snapshot).
    pub changed: bool,
}

impl Acquisition {
    /// How many records were acquired.
    pub fn count(&self) -> u64 {
        self.records
            .iter()
            .map(|r| span(r.first_offset, r.last_offset))
            .sum()
    }
}

/// What a settling operation (acknowledge, expiry, member left, log start movement) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub dead_letters: Vec<DeadLetter>,
    /// Whether any state changed (the caller should persist a snapshot before answering).
    pub changed: bool,
}

/// One range of in-flight records as [`SharePartition::ranges`] shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeView<'a> {
    pub first_offset: i64,
    pub last_offset: i64,
    pub state: RecordState,
    pub delivery_count: i16,
    /// The member holding the lock, when ACQUIRED.
    pub member: Option<&'a str>,
    /// When ACQUIRED: the lock runs out at this time. When AVAILABLE: not handed out before it.
    pub until_ms: Option<i64>,
}

/// Numbers for DescribeShareGroupOffsets and `GET /api/v1/storage/share-groups/{group}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareCounts {
    pub start_offset: i64,
    pub end_offset: i64,
    /// Offsets between the start and the end offset, in any state.
    pub in_flight: u64,
    pub acquired: u64,
    /// AVAILABLE in flight, including records still in their redelivery backoff.
    pub available: u64,
    /// Records ACCEPTed since the share-partition was initialized.
    pub acknowledged_total: u64,
    /// Records ARCHIVED (REJECT, GAP, delivery limit, retention) since initialization.
    pub archived_total: u64,
    /// Of those, the dead-lettered ones (REJECT and delivery limit).
    pub dead_lettered_total: u64,
}

/// One range of a [`ShareSnapshot`]: Kafka's `PersisterStateBatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateBatch {
    pub first_offset: i64,
    pub last_offset: i64,
    pub delivery_state: RecordState,
    pub delivery_count: i16,
}

/// The durable state of a share-partition (what Kafka's share coordinator keeps in
/// `__share_group_state`). Offsets in `[start_offset, end_offset)` not covered by a batch were
/// never delivered: they are AVAILABLE with delivery count 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareSnapshot {
    pub version: u16,
    /// Bumped by every re-initialization ([`SharePartition::reset_to`]).
    pub state_epoch: i32,
    pub start_offset: i64,
    pub end_offset: i64,
    /// Sorted, disjoint, inside `[start_offset, end_offset)`.
    pub state_batches: Vec<StateBatch>,
    #[serde(default)]
    pub acknowledged_total: u64,
    #[serde(default)]
    pub archived_total: u64,
    #[serde(default)]
    pub dead_lettered_total: u64,
}

/// The crate's errors, each with its Kafka error code ([`ShareError::kafka_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// INVALID_RECORD_STATE: the record is not ACQUIRED by this member (another member holds it,
    /// it was acknowledged or released, or its lock ran out).
    #[error("record {offset} cannot be acknowledged: {reason}")]
    InvalidRecordState { offset: i64, reason: &'static str },
    /// INVALID_REQUEST: an acknowledgement type Kafka does not define.
    #[error("unknown acknowledge type {code}")]
    UnknownAcknowledgeType { code: i8 },
    /// INVALID_REQUEST: a malformed acknowledgement batch.
    #[error("acknowledgement batch {first_offset}..={last_offset}: {reason}")]
    InvalidAckBatch {
        first_offset: i64,
        last_offset: i64,
        reason: &'static str,
    },
    /// INVALID_REQUEST: a negative offset to reset to.
    #[error("cannot reset the share-partition to offset {offset}")]
    InvalidResetOffset { offset: i64 },
    /// NON_EMPTY_GROUP: AlterShareGroupOffsets while members hold records.
    #[error("{acquired} records are still acquired by members")]
    RecordsStillAcquired { acquired: u64 },
    /// INVALID_CONFIG.
    #[error("invalid value {value} for {name}")]
    InvalidConfig { name: &'static str, value: i64 },
    /// UNKNOWN_SERVER_ERROR: a snapshot that breaks its own contract (Kafka fails the
    /// share-partition's initialization the same way).
    #[error("invalid share snapshot at offset {offset}: {reason}")]
    InvalidSnapshot { offset: i64, reason: &'static str },
}

impl ShareError {
    /// The Kafka error code to answer with.
    pub fn kafka_code(&self) -> i16 {
        match self {
            ShareError::InvalidRecordState { .. } => 121,
            ShareError::UnknownAcknowledgeType { .. }
            | ShareError::InvalidAckBatch { .. }
            | ShareError::InvalidResetOffset { .. } => 42,
            ShareError::RecordsStillAcquired { .. } => 68,
            ShareError::InvalidConfig { .. } => 40,
            ShareError::InvalidSnapshot { .. } => -1,
        }
    }
}

/// The state of a range of records, with what each state needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    /// May be acquired from `not_before_ms` on (the redelivery backoff; `i64::MIN` for none).
    Available {
        not_before_ms: i64,
    },
    Acquired {
        member: String,
        lock_expiry_ms: i64,
    },
    Acknowledged,
    Archived,
}

impl Slot {
    fn state(&self) -> RecordState {
        match self {
            Slot::Available { .. } => RecordState::Available,
            Slot::Acquired { .. } => RecordState::Acquired,
            Slot::Acknowledged => RecordState::Acknowledged,
            Slot::Archived => RecordState::Archived,
        }
    }
}

/// Records `first..=last_offset` (the key in the map is `first`), all in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InFlight {
    last_offset: i64,
    delivery_count: i16,
    slot: Slot,
}

/// Offsets in `first..=last`, for counting (never negative: callers keep `first <= last + 1`).
fn span(first: i64, last: i64) -> u64 {
    u64::try_from(last - first + 1).unwrap_or(0)
}

/// One share-partition: the in-flight records of one share group on one topic partition.
///
/// Contract kept by every method: the ranges are disjoint, sorted, contiguous, and cover exactly
/// `[start_offset, end_offset)`; the first range is never ACKNOWLEDGED or ARCHIVED (the start
/// offset has moved over it); a method that returns an error changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharePartition {
    config: ShareConfig,
    /// SPSO: every offset below is ACKNOWLEDGED or ARCHIVED (and forgotten).
    start_offset: i64,
    /// SPEO: the next offset never handed out.
    end_offset: i64,
    /// Bumped by each re-initialization, persisted with the state.
    state_epoch: i32,
    /// The partition's log start offset as last reported: records below it are gone, so they
    /// are archived instead of handed out again.
    log_start_offset: i64,
    /// In-flight ranges by first offset.
    ranges: BTreeMap<i64, InFlight>,
    acknowledged_total: u64,
    archived_total: u64,
    dead_lettered_total: u64,
}

impl SharePartition {
    /// A share-partition with no persisted state, starting per `share.auto.offset.reset`.
    pub fn new(
        config: ShareConfig,
        reset: AutoOffsetReset,
        log_start_offset: i64,
        high_watermark: i64,
    ) -> Result<SharePartition, ShareError> {
        config.validate()?;
        let start = match reset {
            AutoOffsetReset::Earliest => log_start_offset,
            AutoOffsetReset::Latest => high_watermark.max(log_start_offset),
        }
        .max(0);
        Ok(SharePartition {
            config,
            start_offset: start,
            end_offset: start,
            state_epoch: 0,
            log_start_offset: log_start_offset.max(0),
            ranges: BTreeMap::new(),
            acknowledged_total: 0,
            archived_total: 0,
            dead_lettered_total: 0,
        })
    }

    pub fn config(&self) -> &ShareConfig {
        &self.config
    }

    /// New group configs; they apply to later transitions (locks already granted keep their
    /// expiry).
    pub fn set_config(&mut self, config: ShareConfig) -> Result<(), ShareError> {
        config.validate()?;
        self.config = config;
        Ok(())
    }

    pub fn start_offset(&self) -> i64 {
        self.start_offset
    }

    pub fn end_offset(&self) -> i64 {
        self.end_offset
    }

    pub fn state_epoch(&self) -> i32 {
        self.state_epoch
    }

    /// The in-flight ranges, in offset order.
    pub fn ranges(&self) -> impl Iterator<Item = RangeView<'_>> + '_ {
        self.ranges.iter().map(|(&first, r)| {
            let (member, until_ms) = match &r.slot {
                Slot::Acquired {
                    member,
                    lock_expiry_ms,
                } => (Some(member.as_str()), Some(*lock_expiry_ms)),
                Slot::Available { not_before_ms } if *not_before_ms != i64::MIN => {
                    (None, Some(*not_before_ms))
                }
                _ => (None, None),
            };
            RangeView {
                first_offset: first,
                last_offset: r.last_offset,
                state: r.slot.state(),
                delivery_count: r.delivery_count,
                member,
                until_ms,
            }
        })
    }

    /// The state and delivery count of one offset: `None` below the start offset (done) and at
    /// or beyond the end offset (never delivered).
    pub fn record(&self, offset: i64) -> Option<(RecordState, i16)> {
        let (_, r) = self.ranges.range(..=offset).next_back()?;
        (offset <= r.last_offset).then(|| (r.slot.state(), r.delivery_count))
    }

    /// The number of in-map ranges (how much memory the in-flight state takes).
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    pub fn counts(&self) -> ShareCounts {
        let mut counts = ShareCounts {
            start_offset: self.start_offset,
            end_offset: self.end_offset,
            in_flight: span(self.start_offset, self.end_offset - 1),
            acknowledged_total: self.acknowledged_total,
            archived_total: self.archived_total,
            dead_lettered_total: self.dead_lettered_total,
            ..ShareCounts::default()
        };
        for (&first, r) in &self.ranges {
            match r.slot {
                Slot::Acquired { .. } => counts.acquired += span(first, r.last_offset),
                Slot::Available { .. } => counts.available += span(first, r.last_offset),
                Slot::Acknowledged | Slot::Archived => {}
            }
        }
        counts
    }

    /// When the caller should call [`SharePartition::expire_locks`] or retry an acquisition:
    /// the earliest lock expiry or end of a redelivery backoff, if any.
    pub fn next_wakeup_ms(&self) -> Option<i64> {
        self.ranges
            .values()
            .filter_map(|r| match r.slot {
                Slot::Acquired { lock_expiry_ms, .. } => Some(lock_expiry_ms),
                Slot::Available { not_before_ms } if not_before_ms != i64::MIN => {
                    Some(not_before_ms)
                }
                _ => None,
            })
            .min()
    }

    /// Hands up to `max_records` AVAILABLE records to `member`: released ones below the end
    /// offset first (in offset order, once their redelivery backoff is over), then new ones from
    /// the end offset up to `fetch_end_offset` (exclusive: the high watermark, or the last stable
    /// offset for read_committed) while fewer than `max.record.locks` offsets are in flight.
    /// Locks that ran out by `now_ms` are released first. A released record whose delivery
    /// count already reached the limit (possible after [`SharePartition::from_snapshot`]) is
    /// archived rather than delivered again.
    pub fn acquire(
        &mut self,
        member: &str,
        max_records: u32,
        fetch_end_offset: i64,
        now_ms: i64,
    ) -> Acquisition {
        let mut out = Acquisition::default();
        out.changed = self.expire_due(now_ms, &mut out.dead_letters);
        let mut remaining = i64::from(max_records);
        let lock_expiry_ms = now_ms.saturating_add(self.config.record_lock_duration_ms);
        let acquired = |member: &str| Slot::Acquired {
            member: member.to_string(),
            lock_expiry_ms,
        };
        let touched_first = self.start_offset;

        // Released records below the end offset, in offset order.
        let mut cursor = self.start_offset;
        while remaining > 0 {
            let next = self.ranges.range(cursor..).find(|(_, r)| {
                matches!(r.slot, Slot::Available { not_before_ms } if not_before_ms <= now_ms)
            });
            let Some((&first, r)) = next else { break };
            let (last, delivery_count) = (r.last_offset, r.delivery_count);
            cursor = last.saturating_add(1);
            out.changed = true;
            if delivery_count >= self.config.delivery_count_limit {
                self.archive(
                    first,
                    DeadLetterReason::DeliveryLimit,
                    &mut out.dead_letters,
                );
                continue;
            }
            let take_last = last.min(first + remaining - 1);
            self.split_at(take_last + 1);
            if let Some(r) = self.ranges.get_mut(&first) {
                r.delivery_count = r.delivery_count.saturating_add(1);
                r.slot = acquired(member);
                push_acquired(&mut out.records, first, take_last, r.delivery_count);
            }
            remaining -= take_last - first + 1;
        }

        // New records from the end offset, inside the in-flight window.
        self.advance_start();
        if remaining > 0 {
            let window_end = self
                .start_offset
                .saturating_add(i64::from(self.config.max_record_locks));
            let first = self.end_offset;
            let end = fetch_end_offset
                .min(window_end)
                .min(first.saturating_add(remaining));
            if end > first {
                let last = end - 1;
                self.ranges.insert(
                    first,
                    InFlight {
                        last_offset: last,
                        delivery_count: 1,
                        slot: acquired(member),
                    },
                );
                self.end_offset = end;
                push_acquired(&mut out.records, first, last, 1);
                out.changed = true;
            }
        }
        self.finish(touched_first, self.end_offset);
        out
    }

    /// ShareAcknowledge (or a ShareFetch's piggy-backed acknowledgements) from `member`. The
    /// batches must be sorted and disjoint; offsets below the start offset are already done and
    /// skipped (as Kafka does); every other offset must be ACQUIRED by `member` with its lock
    /// still running at `now_ms`, else INVALID_RECORD_STATE and nothing changes.
    pub fn acknowledge(
        &mut self,
        member: &str,
        batches: &[AckBatch],
        now_ms: i64,
    ) -> Result<Outcome, ShareError> {
        let mut previous_last: Option<i64> = None;
        for b in batches {
            validate_shape(b)?;
            if previous_last.is_some_and(|p| b.first_offset <= p) {
                return Err(invalid_batch(b, "batches overlap or are out of order"));
            }
            previous_last = Some(b.last_offset);
            self.check_held(member, b, now_ms)?;
        }

        let start = self.start_offset;
        let mut out = Outcome::default();
        for b in batches.iter().filter(|b| b.last_offset >= start) {
            let lo = b.first_offset.max(start);
            if b.types.len() == 1 {
                self.settle(lo, b.last_offset, b.types[0], now_ms, &mut out.dead_letters);
            } else {
                // One type per offset: settle each run of offsets with the same type.
                let mut run_first = lo;
                for offset in lo..=b.last_offset {
                    let ack = b.type_at(offset);
                    if offset == b.last_offset || b.type_at(offset + 1) != ack {
                        self.settle(run_first, offset, ack, now_ms, &mut out.dead_letters);
                        run_first = offset + 1;
                    }
                }
            }
            out.changed = true;
        }
        self.finish(start, self.end_offset);
        Ok(out)
    }

    /// Releases every lock that ran out by `now_ms` (the acquisition lock timeout), with the
    /// RELEASE rule: AVAILABLE after the backoff, or ARCHIVED at the delivery limit.
    pub fn expire_locks(&mut self, now_ms: i64) -> Outcome {
        let mut out = Outcome::default();
        out.changed = self.expire_due(now_ms, &mut out.dead_letters);
        out
    }

    /// The member left the group (or its share session closed): everything it holds is
    /// released, with the RELEASE rule.
    pub fn member_left(&mut self, member: &str, now_ms: i64) -> Outcome {
        let mut out = Outcome::default();
        out.changed = self.expire_due(now_ms, &mut out.dead_letters);
        let start = self.start_offset;
        let mut cursor = start;
        loop {
            let next = self
                .ranges
                .range(cursor..)
                .find(|(_, r)| matches!(&r.slot, Slot::Acquired { member: m, .. } if m == member));
            let Some((&first, _)) = next else { break };
            cursor = self.release(first, now_ms, &mut out.dead_letters) + 1;
            out.changed = true;
        }
        self.finish(start, self.end_offset);
        out
    }

    /// The partition's log start offset moved (retention, DeleteRecords): AVAILABLE records
    /// below it are archived (without dead letter: they are gone from the log), ACQUIRED ones
    /// are archived when released, and acquisition resumes at the new log start.
    pub fn advance_log_start(&mut self, log_start_offset: i64) -> Outcome {
        let mut out = Outcome::default();
        if log_start_offset <= self.log_start_offset {
            return out;
        }
        self.log_start_offset = log_start_offset;
        if self.ranges.is_empty() {
            if self.end_offset < log_start_offset {
                self.start_offset = log_start_offset;
                self.end_offset = log_start_offset;
                out.changed = true;
            }
            return out;
        }
        if self.end_offset < log_start_offset {
            // The offsets between the end and the new log start were never handed out.
            self.archived_total += span(self.end_offset, log_start_offset - 1);
            self.ranges.insert(
                self.end_offset,
                InFlight {
                    last_offset: log_start_offset - 1,
                    delivery_count: 0,
                    slot: Slot::Archived,
                },
            );
            self.end_offset = log_start_offset;
            out.changed = true;
        }
        self.split_at(log_start_offset);
        let start = self.start_offset;
        for (&first, r) in self.ranges.range_mut(..log_start_offset) {
            if matches!(r.slot, Slot::Available { .. }) {
                r.slot = Slot::Archived;
                self.archived_total += span(first, r.last_offset);
                out.changed = true;
            }
        }
        self.finish(start, log_start_offset);
        out
    }

    /// AlterShareGroupOffsets: start over at `offset` (not below the log start offset), with a
    /// new state epoch. Refused with NON_EMPTY_GROUP while any record is ACQUIRED. Records
    /// skipped or rewound over are not dead-lettered; rewinding may deliver (and dead-letter)
    /// records again: that is what the administrator asked for.
    pub fn reset_to(&mut self, offset: i64) -> Result<(), ShareError> {
        if offset < 0 {
            return Err(ShareError::InvalidResetOffset { offset });
        }
        let acquired = self.counts().acquired;
        if acquired > 0 {
            return Err(ShareError::RecordsStillAcquired { acquired });
        }
        let at = offset.max(self.log_start_offset);
        self.ranges.clear();
        self.start_offset = at;
        self.end_offset = at;
        self.state_epoch = self.state_epoch.saturating_add(1);
        Ok(())
    }

    /// The durable state. ACQUIRED ranges are written as they are (without their member, whose
    /// lock does not survive a leader change); AVAILABLE ranges never delivered are left out.
    pub fn snapshot(&self) -> ShareSnapshot {
        let mut state_batches: Vec<StateBatch> = Vec::new();
        for (&first, r) in &self.ranges {
            if matches!(r.slot, Slot::Available { .. }) && r.delivery_count == 0 {
                continue;
            }
            let delivery_state = r.slot.state();
            if let Some(prev) = state_batches.last_mut() {
                if prev.last_offset + 1 == first
                    && prev.delivery_state == delivery_state
                    && prev.delivery_count == r.delivery_count
                {
                    prev.last_offset = r.last_offset;
                    continue;
                }
            }
            state_batches.push(StateBatch {
                first_offset: first,
                last_offset: r.last_offset,
                delivery_state,
                delivery_count: r.delivery_count,
            });
        }
        ShareSnapshot {
            version: SNAPSHOT_VERSION,
            state_epoch: self.state_epoch,
            start_offset: self.start_offset,
            end_offset: self.end_offset,
            state_batches,
            acknowledged_total: self.acknowledged_total,
            archived_total: self.archived_total,
            dead_lettered_total: self.dead_lettered_total,
        }
    }

    /// Rebuilds a share-partition on a new leader. ACQUIRED records become AVAILABLE (their
    /// locks went with the old leader; they wait out the redelivery backoff from `now_ms`) and
    /// keep their delivery counts, so nothing acknowledged is delivered again and nothing
    /// unacknowledged is lost. The caller then reports the log start offset with
    /// [`SharePartition::advance_log_start`].
    pub fn from_snapshot(
        config: ShareConfig,
        snapshot: &ShareSnapshot,
        now_ms: i64,
    ) -> Result<SharePartition, ShareError> {
        config.validate()?;
        let bad = |offset, reason| Err(ShareError::InvalidSnapshot { offset, reason });
        if snapshot.version != SNAPSHOT_VERSION {
            return bad(-1, "unknown snapshot version");
        }
        let (start, end) = (snapshot.start_offset, snapshot.end_offset);
        if start < 0 || end < start {
            return bad(start, "start offset negative or past the end offset");
        }
        let never_delivered = InFlight {
            last_offset: 0,
            delivery_count: 0,
            slot: Slot::Available {
                not_before_ms: i64::MIN,
            },
        };
        let lost_lock_not_before_ms = if config.redelivery_backoff_ms > 0 {
            now_ms.saturating_add(config.redelivery_backoff_ms)
        } else {
            i64::MIN
        };
        let mut ranges = BTreeMap::new();
        let mut next = start;
        for b in &snapshot.state_batches {
            if b.first_offset < next {
                return bad(
                    b.first_offset,
                    "batches overlap, are unsorted or start early",
                );
            }
            if b.last_offset < b.first_offset || b.last_offset >= end {
                return bad(b.first_offset, "batch empty or past the end offset");
            }
            if b.delivery_count < 0 {
                return bad(b.first_offset, "negative delivery count");
            }
            if b.first_offset > next {
                let last_offset = b.first_offset - 1;
                ranges.insert(
                    next,
                    InFlight {
                        last_offset,
                        ..never_delivered.clone()
                    },
                );
            }
            let slot = match b.delivery_state {
                RecordState::Available => Slot::Available {
                    not_before_ms: i64::MIN,
                },
                RecordState::Acquired => Slot::Available {
                    not_before_ms: lost_lock_not_before_ms,
                },
                RecordState::Acknowledged => Slot::Acknowledged,
                RecordState::Archived => Slot::Archived,
            };
            ranges.insert(
                b.first_offset,
                InFlight {
                    last_offset: b.last_offset,
                    delivery_count: b.delivery_count,
                    slot,
                },
            );
            next = b.last_offset + 1;
        }
        if next < end {
            let last_offset = end - 1;
            ranges.insert(
                next,
                InFlight {
                    last_offset,
                    ..never_delivered
                },
            );
        }
        let mut partition = SharePartition {
            config,
            start_offset: start,
            end_offset: end,
            state_epoch: snapshot.state_epoch,
            log_start_offset: 0,
            ranges,
            acknowledged_total: snapshot.acknowledged_total,
            archived_total: snapshot.archived_total,
            dead_lettered_total: snapshot.dead_lettered_total,
        };
        partition.finish(start, end);
        Ok(partition)
    }

    // ---- internals ----

    /// INVALID_RECORD_STATE unless every offset of `b` at or above the start offset is
    /// ACQUIRED by `member` with a running lock; INVALID_REQUEST past the end offset.
    fn check_held(&self, member: &str, b: &AckBatch, now_ms: i64) -> Result<(), ShareError> {
        if b.last_offset < self.start_offset {
            return Ok(());
        }
        if b.last_offset >= self.end_offset {
            return Err(invalid_batch(b, "past the last acquired record"));
        }
        let lo = b.first_offset.max(self.start_offset);
        let from = self
            .ranges
            .range(..=lo)
            .next_back()
            .map_or(lo, |(&first, _)| first);
        for (&first, r) in self.ranges.range(from..=b.last_offset) {
            let offset = first.max(lo);
            let reason = match &r.slot {
                Slot::Acquired {
                    member: holder,
                    lock_expiry_ms,
                } => {
                    if holder != member {
                        "acquired by another member"
                    } else if *lock_expiry_ms <= now_ms {
                        "the acquisition lock has expired"
                    } else {
                        continue;
                    }
                }
                Slot::Available { .. } => "not acquired",
                Slot::Acknowledged => "already acknowledged",
                Slot::Archived => "archived",
            };
            return Err(ShareError::InvalidRecordState { offset, reason });
        }
        Ok(())
    }

    /// Applies one acknowledgement type to `first..=last`, all ACQUIRED (checked before).
    fn settle(
        &mut self,
        first: i64,
        last: i64,
        ack: AcknowledgeType,
        now_ms: i64,
        dead: &mut Vec<DeadLetter>,
    ) {
        self.split_at(first);
        self.split_at(last + 1);
        let mut cursor = first;
        while cursor <= last {
            let Some(r) = self.ranges.get_mut(&cursor) else {
                break;
            };
            let range_last = r.last_offset;
            match ack {
                AcknowledgeType::Accept => {
                    r.slot = Slot::Acknowledged;
                    self.acknowledged_total += span(cursor, range_last);
                }
                AcknowledgeType::Gap => {
                    r.slot = Slot::Archived;
                    self.archived_total += span(cursor, range_last);
                }
                AcknowledgeType::Reject => {
                    self.archive(cursor, DeadLetterReason::Rejected, dead);
                }
                AcknowledgeType::Renew => {
                    if let Slot::Acquired { lock_expiry_ms, .. } = &mut r.slot {
                        *lock_expiry_ms =
                            now_ms.saturating_add(self.config.record_lock_duration_ms);
                    }
                }
                AcknowledgeType::Release => {
                    self.release(cursor, now_ms, dead);
                }
            }
            cursor = range_last + 1;
        }
    }

    /// Archives the range at `first` and reports it as a dead letter.
    fn archive(&mut self, first: i64, reason: DeadLetterReason, dead: &mut Vec<DeadLetter>) {
        let Some(r) = self.ranges.get_mut(&first) else {
            return;
        };
        r.slot = Slot::Archived;
        let n = span(first, r.last_offset);
        self.archived_total += n;
        self.dead_lettered_total += n;
        push_dead_letter(
            dead,
            DeadLetter {
                first_offset: first,
                last_offset: r.last_offset,
                delivery_count: r.delivery_count,
                reason,
            },
        );
    }

    /// The RELEASE rule for the whole ACQUIRED range at `first` (also lock expiry and member
    /// left): ARCHIVED below the log start offset (without dead letter) or at the delivery
    /// limit (with one), else AVAILABLE once the redelivery backoff is over. Returns the
    /// range's last offset.
    fn release(&mut self, first: i64, now_ms: i64, dead: &mut Vec<DeadLetter>) -> i64 {
        let Some(last) = self.ranges.get(&first).map(|r| r.last_offset) else {
            return first;
        };
        let log_start = self.log_start_offset;
        if first < log_start && log_start <= last {
            self.split_at(log_start);
        }
        let not_before_ms = if self.config.redelivery_backoff_ms > 0 {
            now_ms.saturating_add(self.config.redelivery_backoff_ms)
        } else {
            i64::MIN
        };
        let mut cursor = first;
        while cursor <= last {
            let Some(r) = self.ranges.get_mut(&cursor) else {
                break;
            };
            let range_last = r.last_offset;
            if range_last < log_start {
                r.slot = Slot::Archived;
                self.archived_total += span(cursor, range_last);
            } else if r.delivery_count >= self.config.delivery_count_limit {
                self.archive(cursor, DeadLetterReason::DeliveryLimit, dead);
            } else {
                r.slot = Slot::Available { not_before_ms };
            }
            cursor = range_last + 1;
        }
        last
    }

    /// Releases the locks that ran out by `now_ms`; whether anything changed.
    fn expire_due(&mut self, now_ms: i64, dead: &mut Vec<DeadLetter>) -> bool {
        let start = self.start_offset;
        let mut cursor = start;
        let mut changed = false;
        loop {
            let next = self.ranges.range(cursor..).find(|(_, r)| {
                matches!(r.slot, Slot::Acquired { lock_expiry_ms, .. } if lock_expiry_ms <= now_ms)
            });
            let Some((&first, _)) = next else { break };
            cursor = self.release(first, now_ms, dead) + 1;
            changed = true;
        }
        if changed {
            self.finish(start, self.end_offset);
        }
        changed
    }

    /// Makes `at` the first offset of a range, if a range spans it.
    fn split_at(&mut self, at: i64) {
        let Some((_, r)) = self.ranges.range_mut(..at).next_back() else {
            return;
        };
        if r.last_offset < at {
            return;
        }
        let tail = InFlight {
            last_offset: r.last_offset,
            ..r.clone()
        };
        r.last_offset = at - 1;
        self.ranges.insert(at, tail);
    }

    /// After a change to offsets `lo..=hi`: merges neighbours in the same state with the same
    /// delivery count, then moves the start offset over the finished prefix.
    fn finish(&mut self, lo: i64, hi: i64) {
        let from = self
            .ranges
            .range(..lo)
            .next_back()
            .map_or(lo, |(&first, _)| first);
        let to = hi.saturating_add(1);
        let keys: Vec<i64> = if from <= to {
            self.ranges
                .range(from..=to)
                .map(|(&first, _)| first)
                .collect()
        } else {
            Vec::new()
        };
        let mut current: Option<i64> = None;
        for key in keys {
            if let Some(c) = current {
                let mergeable = match (self.ranges.get(&c), self.ranges.get(&key)) {
                    (Some(a), Some(b)) => {
                        a.last_offset + 1 == key
                            && a.delivery_count == b.delivery_count
                            && a.slot == b.slot
                    }
                    _ => false,
                };
                if mergeable {
                    if let Some(b) = self.ranges.remove(&key) {
                        if let Some(a) = self.ranges.get_mut(&c) {
                            a.last_offset = b.last_offset;
                        }
                    }
                    continue;
                }
            }
            current = Some(key);
        }
        self.advance_start();
    }

    /// Moves the start offset over the prefix of ACKNOWLEDGED/ARCHIVED ranges and forgets them.
    fn advance_start(&mut self) {
        while let Some(entry) = self.ranges.first_entry() {
            if !entry.get().slot.state().is_terminal() {
                break;
            }
            let done = entry.remove();
            self.start_offset = done.last_offset + 1;
        }
        if self.ranges.is_empty() {
            self.start_offset = self.end_offset;
        }
    }
}

/// INVALID_REQUEST for a batch that cannot be read: empty, negative, or with neither one type
/// nor one per offset.
fn validate_shape(b: &AckBatch) -> Result<(), ShareError> {
    if b.first_offset < 0 || b.last_offset < b.first_offset {
        return Err(invalid_batch(b, "empty or negative range"));
    }
    let offsets = span(b.first_offset, b.last_offset);
    let types = b.types.len() as u64;
    if types != 1 && types != offsets {
        return Err(invalid_batch(
            b,
            "needs one acknowledge type, or one per offset",
        ));
    }
    Ok(())
}

fn invalid_batch(b: &AckBatch, reason: &'static str) -> ShareError {
    ShareError::InvalidAckBatch {
        first_offset: b.first_offset,
        last_offset: b.last_offset,
        reason,
    }
}

/// Appends `first..=last`, extending the previous entry when it continues it.
fn push_acquired(out: &mut Vec<AcquiredRecords>, first: i64, last: i64, delivery_count: i16) {
    if let Some(prev) = out.last_mut() {
        if prev.last_offset + 1 == first && prev.delivery_count == delivery_count {
            prev.last_offset = last;
            return;
        }
    }
    out.push(AcquiredRecords {
        first_offset: first,
        last_offset: last,
        delivery_count,
    });
}

fn push_dead_letter(out: &mut Vec<DeadLetter>, letter: DeadLetter) {
    if let Some(prev) = out.last_mut() {
        if prev.last_offset + 1 == letter.first_offset
            && prev.delivery_count == letter.delivery_count
            && prev.reason == letter.reason
        {
            prev.last_offset = letter.last_offset;
            return;
        }
    }
    out.push(letter);
}
