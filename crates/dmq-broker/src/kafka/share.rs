//! Share groups on the wire (KIP-932; `crates/dmq-share/PROTOCOL.md`): ShareGroupHeartbeat on
//! the group's coordinator, ShareFetch and ShareAcknowledge on the partition leaders, as
//! librdkafka's and the Java client's share consumers use them (v1).
//!
//! The record states live in `dmq_share::SharePartition` (pure), the membership in
//! `dmq_share::group::ShareGroup` (pure); this module routes, checks sessions and permissions,
//! reads the log for the acquired records, and long-polls when nothing is available.

use std::time::Duration;

use bytes::Bytes;
use dmq_auth::{Operation, ResourceType};
use dmq_share::group::{GroupConfig, Heartbeat};
use dmq_share::{AckBatch, AcknowledgeType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::share_acknowledge_response::{
    PartitionData as AckPartitionData, ShareAcknowledgeTopicResponse,
};
use kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, PartitionData, ShareFetchableTopicResponse,
};
use kafka_protocol::messages::share_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ShareAcknowledgeRequest, ShareAcknowledgeResponse, ShareFetchRequest, ShareFetchResponse,
    ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse,
};

use super::groups::coordinator_error;
use super::handlers::{s, Ctx};
use crate::partition::Role;
use crate::produce;
use crate::share::{SessionStep, ShareKey};

/// The longest a ShareFetch with nothing to hand out waits.
const MAX_WAIT_CAP_MS: i32 = 5_000;

fn now_ms() -> i64 {
    dmq_log::now_ms()
}

fn uuid_of(id: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(id).unwrap_or_default()
}

pub fn share_group_heartbeat(
    ctx: &mut Ctx<'_>,
    r: ShareGroupHeartbeatRequest,
) -> ShareGroupHeartbeatResponse {
    let group = r.group_id.0.to_string();
    let failed = |code: i16, message: String| {
        ShareGroupHeartbeatResponse::default()
            .with_error_code(code)
            .with_error_message(Some(s(message)))
            .with_member_epoch(-1)
    };
    if let Some(code) = coordinator_error(ctx, &group, Operation::Read) {
        return failed(
            code,
            format!("share group {group:?} is not coordinated here"),
        );
    }
    let topics: Option<Vec<String>> = r
        .subscribed_topic_names
        .as_ref()
        .map(|ts| ts.iter().map(|t| t.0.to_string()).collect());
    if let Some(ts) = &topics {
        if let Some(t) = ts
            .iter()
            .find(|t| !ctx.allowed(Operation::Describe, ResourceType::Topic, t))
        {
            ctx.had_error = true;
            return failed(
                ResponseError::TopicAuthorizationFailed.code(),
                format!("DESCRIBE on topic {t:?} is needed"),
            );
        }
    }
    let image = ctx.shared.image();
    let counts = |t: &str| image.topics.get(t).map(|x| x.partitions.len() as i32);
    let hb = Heartbeat {
        member_id: r.member_id.to_string(),
        member_epoch: r.member_epoch,
        subscribed_topics: topics,
        client_id: ctx
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        // Kafka shows the host as "/address".
        client_host: ctx.peer.map(|p| format!("/{}", p.ip())).unwrap_or_default(),
    };
    let now = now_ms();
    let mut st = ctx
        .shared
        .shares
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let config = GroupConfig::default();
    let g = st.groups.entry(group.clone()).or_default();
    let expired = g.expire(&config, now, counts);
    let answer = g.heartbeat(&hb, counts, &config, now);
    // A group whose last member left stays (Empty, as in Kafka) until DeleteGroups removes it.
    let mut changed = Vec::new();
    let mut dead = Vec::new();
    for m in expired {
        let (c, d) = st.member_left(&group, &m, now);
        changed.extend(c);
        dead.extend(d);
    }
    if hb.member_epoch == -1 {
        let (c, d) = st.member_left(&group, &hb.member_id, now);
        changed.extend(c);
        dead.extend(d);
    }
    drop(st);
    if !dead.is_empty() {
        let shared = ctx.shared.clone();
        tokio::spawn(async move {
            crate::share_dlq::copy_all(&shared, dead).await;
            shared.shares.persist_later(changed);
        });
    } else {
        ctx.shared.shares.persist_later(changed);
    }
    match answer {
        Ok(a) => ShareGroupHeartbeatResponse::default()
            .with_member_id(Some(s(a.member_id)))
            .with_member_epoch(a.member_epoch)
            .with_heartbeat_interval_ms(a.heartbeat_interval_ms)
            .with_assignment(a.assignment.map(|parts| {
                Assignment::default().with_topic_partitions(
                    parts
                        .into_iter()
                        .filter_map(|(topic, partitions)| {
                            let id = image.topics.get(&topic)?.topic_id.clone();
                            Some(
                                TopicPartitions::default()
                                    .with_topic_id(uuid_of(&id))
                                    .with_partitions(partitions),
                            )
                        })
                        .collect(),
                )
            })),
        Err(e) => {
            ctx.had_error = true;
            failed(e.kafka_code(), e.to_string())
        }
    }
}

/// Acknowledgement batches of the wire as the core takes them.
fn ack_batches(batches: &[(i64, i64, Vec<i8>)]) -> Result<Vec<AckBatch>, i16> {
    batches
        .iter()
        .map(|(first, last, types)| {
            let types = types
                .iter()
                .map(|t| AcknowledgeType::from_code(*t))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.kafka_code())?;
            Ok(AckBatch {
                first_offset: *first,
                last_offset: *last,
                types,
            })
        })
        .collect()
}

/// Reads whole batches from `first` until `last` is covered (below `upper`), skipping what
/// `covered` (the last offset already in `out`) says was read for an earlier range: a batch
/// twice in the answer would give the client its records twice.
fn read_covering(
    part: &crate::partition::Partition,
    first: i64,
    last: i64,
    upper: i64,
    covered: &mut i64,
    out: &mut Vec<u8>,
) -> crate::error::Result<()> {
    let mut offset = first.max(*covered + 1);
    while offset <= last {
        let chunk = part.read(offset, 1 << 20, upper)?;
        let mut end = None;
        for (_, bytes) in dmq_log::batch::Batches::new(&chunk, false).flatten() {
            if let Ok(h) = dmq_log::BatchHeader::new(bytes) {
                end = Some(h.last_offset());
            }
        }
        let Some(end) = end else { break };
        out.extend_from_slice(&chunk);
        *covered = end;
        offset = end + 1;
    }
    Ok(())
}

/// The group and member of a ShareFetch/ShareAcknowledge, once both are named and the
/// principal may READ the group; else the top-level error code and message.
fn session_caller(
    ctx: &mut Ctx<'_>,
    group: Option<&kafka_protocol::messages::GroupId>,
    member: Option<&kafka_protocol::protocol::StrBytes>,
) -> Result<(String, String), (i16, &'static str)> {
    let group = group.map(|g| g.0.to_string()).unwrap_or_default();
    let member = member.map(|m| m.to_string()).unwrap_or_default();
    if group.is_empty() || member.is_empty() {
        ctx.had_error = true;
        return Err((
            ResponseError::InvalidRequest.code(),
            "group and member are needed",
        ));
    }
    if !ctx.allowed(Operation::Read, ResourceType::Group, &group) {
        ctx.had_error = true;
        return Err((
            ResponseError::GroupAuthorizationFailed.code(),
            "READ on the group",
        ));
    }
    Ok((group, member))
}

type Acks = Vec<(i64, i64, Vec<i8>)>;

pub async fn share_fetch(ctx: &mut Ctx<'_>, r: ShareFetchRequest) -> ShareFetchResponse {
    let shared = ctx.shared;
    let top = |code: i16, message: &str| {
        ShareFetchResponse::default()
            .with_error_code(code)
            .with_error_message(Some(s(message)))
    };
    let (group, member) = match session_caller(ctx, r.group_id.as_ref(), r.member_id.as_ref()) {
        Ok(gm) => gm,
        Err((code, message)) => return top(code, message),
    };
    let image = shared.image();
    let name_of = |id: &uuid::Uuid| {
        image
            .topic_by_id(&id.to_string())
            .map(|t| t.topic_name.clone())
    };
    // Requested partitions and their piggy-backed acknowledgements, merged by partition (the
    // same topic may come twice).
    let mut add: Vec<(String, i32)> = Vec::new();
    let mut acks: std::collections::BTreeMap<(String, i32), Acks> = Default::default();
    let mut unknown: Vec<(uuid::Uuid, i32)> = Vec::new();
    for t in &r.topics {
        for p in &t.partitions {
            let Some(name) = name_of(&t.topic_id) else {
                unknown.push((t.topic_id, p.partition_index));
                continue;
            };
            add.push((name.clone(), p.partition_index));
            let list = acks.entry((name, p.partition_index)).or_default();
            for b in &p.acknowledgement_batches {
                list.push((b.first_offset, b.last_offset, b.acknowledge_types.clone()));
            }
        }
    }
    let forget: Vec<(String, i32)> = r
        .forgotten_topics_data
        .iter()
        .flat_map(|t| {
            let name = name_of(&t.topic_id);
            t.partitions
                .iter()
                .filter_map(move |p| name.clone().map(|n| (n, *p)))
        })
        .collect();
    let has_acks = acks.values().any(|a| !a.is_empty());
    if r.share_session_epoch == 0 && has_acks {
        ctx.had_error = true;
        return top(
            ResponseError::InvalidRequest.code(),
            "acknowledgements need an open share session",
        );
    }
    let now = now_ms();
    let session = {
        let mut st = shared
            .shares
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match st.step_session(
            &group,
            &member,
            r.share_session_epoch,
            &add,
            &forget,
            now_ms(),
        ) {
            Ok(step) => {
                let parts = st
                    .sessions
                    .get(&(group.clone(), member.clone()))
                    .map(|s| s.partitions.clone())
                    .unwrap_or_default();
                (step, parts)
            }
            Err(code) => {
                drop(st);
                ctx.had_error = true;
                return top(code, "share session");
            }
        }
    };
    let (step, session_parts) = session;
    // Acknowledgements first (committed through the quorum before the answer), then
    // acquisition.
    let mut ack_codes: std::collections::BTreeMap<(String, i32), i16> = Default::default();
    let mut acked = Vec::new();
    let mut dead_letters = Vec::new();
    for ((topic, index), list) in &acks {
        if list.is_empty() {
            continue;
        }
        let (code, changed, dead) = apply_acks(ctx, &group, &member, topic, *index, list, now);
        ack_codes.insert((topic.clone(), *index), code);
        let key: ShareKey = (group.clone(), topic.clone(), *index);
        dead_letters.extend(dead.into_iter().map(|d| (key.clone(), d)));
        if changed {
            acked.push(key);
        }
    }
    if step == SessionStep::Closed {
        let mut st = shared
            .shares
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (changed, dead) = st.member_left(&group, &member, now);
        drop(st);
        dead_letters.extend(dead);
        shared.shares.persist_later(changed);
    }
    crate::share_dlq::copy_all(shared, std::mem::take(&mut dead_letters)).await;
    settle_persisted(shared, acked, &mut ack_codes).await;
    let max_records = r.max_records.max(1) as u32;
    let (config, _) = crate::share::group_share_config(shared, &group);
    // Share-partitions this broker leads are loaded from the quorum's state first.
    let mut load_errors: std::collections::BTreeMap<(String, i32), i16> = Default::default();
    if step != SessionStep::Closed {
        for (topic, index) in &session_parts {
            if let Ok(part) = produce::partition(shared, topic, *index) {
                if part.role() == Role::Leader {
                    if let Err(code) =
                        crate::share::ensure_loaded(shared, &group, topic, *index, &part).await
                    {
                        load_errors.insert((topic.clone(), *index), code);
                    }
                }
            }
        }
    }
    let max_wait = Duration::from_millis(r.max_wait_ms.clamp(0, MAX_WAIT_CAP_MS) as u64);
    let deadline = tokio::time::Instant::now() + max_wait;
    // Records archived at the delivery limit while acquiring: copied to the dead-letter topic
    // before the answer.
    let mut fetch_dead: Vec<(ShareKey, dmq_share::DeadLetter)> = Vec::new();
    loop {
        let mut watches = Vec::new();
        let mut acquired_any = false;
        let mut per_partition: Vec<((String, i32), PartitionData)> = Vec::new();
        let mut budget = max_records;
        for (topic, index) in &session_parts {
            let key = (topic.clone(), *index);
            let mut pd = PartitionData::default()
                .with_partition_index(*index)
                .with_records(Some(Bytes::new()))
                .with_acknowledge_error_code(ack_codes.get(&key).copied().unwrap_or(0));
            if !ctx.allowed(Operation::Read, ResourceType::Topic, topic) {
                pd = pd.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                per_partition.push((key, pd));
                continue;
            }
            let part = match produce::partition(shared, topic, *index) {
                Ok(p) if p.role() == Role::Leader => p,
                Ok(_) | Err(_) => {
                    let leader = image
                        .topics
                        .get(topic)
                        .and_then(|t| t.partitions.iter().find(|p| p.partition_id == *index))
                        .map_or(-1, |p| p.leader);
                    pd = pd.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    pd.current_leader.leader_id = leader;
                    per_partition.push((key, pd));
                    continue;
                }
            };
            pd.current_leader.leader_id = shared.config.broker_id;
            pd.current_leader.leader_epoch = part.leader_epoch();
            if let Some(code) = load_errors.get(&key) {
                pd = pd.with_error_code(*code);
                per_partition.push((key, pd));
                continue;
            }
            watches.push(part.subscribe(false));
            if step != SessionStep::Closed && budget > 0 {
                let hw = part.high_watermark();
                let mut st = shared
                    .shares
                    .state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let share_key: ShareKey = (group.clone(), topic.clone(), *index);
                let epoch = part.leader_epoch();
                let resets = crate::share::share_resets(shared, &group);
                if let Some(sp) = st
                    .partitions
                    .get_mut(&share_key)
                    .filter(|l| l.current(epoch, resets))
                    .map(|l| &mut l.sp)
                {
                    if *sp.config() != config {
                        // A changed config applies to later transitions (a bad one is ignored).
                        let _ = sp.set_config(config);
                    }
                    sp.advance_log_start(part.log.log_start_offset());
                    let got = sp.acquire(&member, budget, hw, now_ms());
                    fetch_dead.extend(got.dead_letters.iter().map(|d| (share_key.clone(), *d)));
                    let mut records = Vec::new();
                    let mut ranges = Vec::new();
                    let mut covered = -1;
                    for a in &got.records {
                        let read = read_covering(
                            &part,
                            a.first_offset,
                            a.last_offset,
                            hw,
                            &mut covered,
                            &mut records,
                        );
                        if read.is_err() {
                            break;
                        }
                        ranges.push(
                            AcquiredRecords::default()
                                .with_first_offset(a.first_offset)
                                .with_last_offset(a.last_offset)
                                .with_delivery_count(a.delivery_count),
                        );
                    }
                    budget = budget.saturating_sub(got.count() as u32);
                    acquired_any |= !ranges.is_empty();
                    pd = pd
                        .with_records(Some(Bytes::from(records)))
                        .with_acquired_records(ranges);
                }
            }
            per_partition.push((key, pd));
        }
        let expired = tokio::time::Instant::now() >= deadline;
        if acquired_any || expired || watches.is_empty() || step == SessionStep::Closed {
            if !fetch_dead.is_empty() {
                let keys: Vec<ShareKey> = fetch_dead.iter().map(|(k, _)| k.clone()).collect();
                crate::share_dlq::copy_all(shared, std::mem::take(&mut fetch_dead)).await;
                shared.shares.persist_later(keys);
            }
            let mut by_topic: Vec<ShareFetchableTopicResponse> = Vec::new();
            for ((topic, _), pd) in per_partition {
                let id = image
                    .topics
                    .get(&topic)
                    .map(|t| uuid_of(&t.topic_id))
                    .unwrap_or_default();
                match by_topic.iter_mut().find(|t| t.topic_id == id) {
                    Some(t) => t.partitions.push(pd),
                    None => by_topic.push(
                        ShareFetchableTopicResponse::default()
                            .with_topic_id(id)
                            .with_partitions(vec![pd]),
                    ),
                }
            }
            for (id, index) in &unknown {
                by_topic.push(
                    ShareFetchableTopicResponse::default()
                        .with_topic_id(*id)
                        .with_partitions(vec![PartitionData::default()
                            .with_partition_index(*index)
                            .with_error_code(ResponseError::UnknownTopicId.code())
                            .with_records(Some(Bytes::new()))]),
                );
            }
            return ShareFetchResponse::default()
                .with_acquisition_lock_timeout_ms(
                    i32::try_from(config.record_lock_duration_ms).unwrap_or(i32::MAX),
                )
                .with_responses(by_topic);
        }
        // Nothing to hand out: wait for new records (or a lock to expire: poll at 200 ms).
        let wake = (tokio::time::Instant::now() + Duration::from_millis(200)).min(deadline);
        let changes = watches.iter_mut().map(|w| Box::pin(w.changed()));
        let _ = tokio::time::timeout_at(wake, futures::future::select_all(changes)).await;
    }
}

/// Applies `member`'s acknowledgements on one partition: the partition's error code, and
/// whether its state changed (and must be persisted before the answer).
fn apply_acks(
    ctx: &mut Ctx<'_>,
    group: &str,
    member: &str,
    topic: &str,
    index: i32,
    list: &Acks,
    now: i64,
) -> (i16, bool, Vec<dmq_share::DeadLetter>) {
    let batches = match ack_batches(list) {
        Ok(b) => b,
        Err(code) => return (code, false, Vec::new()),
    };
    let mut st = ctx
        .shared
        .shares
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let key = (group.to_string(), topic.to_string(), index);
    let Some(loaded) = st.partitions.get_mut(&key) else {
        return (121, false, Vec::new()); // INVALID_RECORD_STATE: nothing acquired here
    };
    match loaded.sp.acknowledge(member, &batches, now) {
        Ok(out) => (0, out.changed, out.dead_letters),
        Err(e) => {
            ctx.had_error = true;
            (e.kafka_code(), false, Vec::new())
        }
    }
}

/// Waits until the acknowledged share-partitions' states are committed in the quorum; an
/// acknowledgement whose state could not be committed answers the persist's error instead.
async fn settle_persisted(
    shared: &crate::node::BrokerShared,
    acked: Vec<ShareKey>,
    codes: &mut std::collections::BTreeMap<(String, i32), i16>,
) {
    if acked.is_empty() {
        return;
    }
    let result = shared.shares.persist(acked.iter().cloned()).await;
    for k in acked {
        let persisted = result.get(&k).copied().unwrap_or(REQUEST_TIMED_OUT);
        if persisted != 0 {
            codes.insert((k.1, k.2), persisted);
        }
    }
}

const REQUEST_TIMED_OUT: i16 = 7;

pub async fn share_acknowledge(
    ctx: &mut Ctx<'_>,
    r: ShareAcknowledgeRequest,
) -> ShareAcknowledgeResponse {
    let shared = ctx.shared;
    let top = |code: i16, message: &str| {
        ShareAcknowledgeResponse::default()
            .with_error_code(code)
            .with_error_message(Some(s(message)))
    };
    let (group, member) = match session_caller(ctx, r.group_id.as_ref(), r.member_id.as_ref()) {
        Ok(gm) => gm,
        Err((code, message)) => return top(code, message),
    };
    if r.share_session_epoch == 0 {
        ctx.had_error = true;
        return top(
            crate::share::INVALID_SHARE_SESSION_EPOCH,
            "acknowledgements need an open share session",
        );
    }
    let image = shared.image();
    let step = {
        let mut st = shared
            .shares
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        st.step_session(&group, &member, r.share_session_epoch, &[], &[], now_ms())
    };
    let step = match step {
        Ok(s) => s,
        Err(code) => {
            ctx.had_error = true;
            return top(code, "share session");
        }
    };
    let now = now_ms();
    let mut codes: std::collections::BTreeMap<(String, i32), i16> = Default::default();
    let mut acked = Vec::new();
    let mut dead_letters = Vec::new();
    for t in &r.topics {
        let Some(name) = image
            .topic_by_id(&t.topic_id.to_string())
            .map(|x| x.topic_name.clone())
        else {
            continue;
        };
        for p in &t.partitions {
            let list: Acks = p
                .acknowledgement_batches
                .iter()
                .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()))
                .collect();
            let (code, changed, dead) =
                apply_acks(ctx, &group, &member, &name, p.partition_index, &list, now);
            codes.insert((name.clone(), p.partition_index), code);
            let key: ShareKey = (group.clone(), name.clone(), p.partition_index);
            dead_letters.extend(dead.into_iter().map(|d| (key.clone(), d)));
            if changed {
                acked.push(key);
            }
        }
    }
    if step == SessionStep::Closed {
        let mut st = shared
            .shares
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (changed, dead) = st.member_left(&group, &member, now);
        drop(st);
        dead_letters.extend(dead);
        shared.shares.persist_later(changed);
    }
    crate::share_dlq::copy_all(shared, dead_letters).await;
    settle_persisted(shared, acked, &mut codes).await;
    let mut responses = Vec::new();
    for t in &r.topics {
        let name = image
            .topic_by_id(&t.topic_id.to_string())
            .map(|x| x.topic_name.clone());
        let mut parts = Vec::new();
        for p in &t.partitions {
            let code = match &name {
                None => ResponseError::UnknownTopicId.code(),
                Some(n) => codes
                    .get(&(n.clone(), p.partition_index))
                    .copied()
                    .unwrap_or(0),
            };
            parts.push(
                AckPartitionData::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code),
            );
        }
        responses.push(
            ShareAcknowledgeTopicResponse::default()
                .with_topic_id(t.topic_id)
                .with_partitions(parts),
        );
    }
    ShareAcknowledgeResponse::default().with_responses(responses)
}
