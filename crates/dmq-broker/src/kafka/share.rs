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
use dmq_share::{AckBatch, AcknowledgeType, AutoOffsetReset, ShareConfig, SharePartition};
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
use crate::share::SessionStep;

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
    let empty = g.members.is_empty();
    if empty {
        st.groups.remove(&group);
    }
    for m in expired {
        st.member_left(&group, &m, now);
    }
    if hb.member_epoch == -1 {
        st.member_left(&group, &hb.member_id, now);
    }
    drop(st);
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

/// The share-partition settings in force on this broker: the dynamic broker configs
/// `group.share.record.lock.duration.ms` and `group.share.delivery.count.limit` (cluster-wide
/// or per broker), else Kafka's defaults.
fn share_config(shared: &crate::node::BrokerShared) -> ShareConfig {
    let image = shared.image();
    let value = |name: &str| {
        image
            .broker_configs
            .dynamic_value(Some(shared.config.broker_id), name)
            .and_then(|(v, _)| v.trim().parse::<i64>().ok())
    };
    let mut config = ShareConfig::default();
    if let Some(ms) = value("group.share.record.lock.duration.ms") {
        config.record_lock_duration_ms = ms;
    }
    if let Some(limit) = value("group.share.delivery.count.limit") {
        config.delivery_count_limit = i16::try_from(limit).unwrap_or(config.delivery_count_limit);
    }
    config
}

/// The share-partition of `group` on `topic`-`partition` with `config`, created at the high
/// watermark (`share.auto.offset.reset=latest`, Kafka's default) the first time a member
/// fetches it.
fn share_partition<'a>(
    partitions: &'a mut std::collections::HashMap<(String, String, i32), SharePartition>,
    group: &str,
    topic: &str,
    index: i32,
    part: &crate::partition::Partition,
    config: ShareConfig,
) -> Option<&'a mut SharePartition> {
    let key = (group.to_string(), topic.to_string(), index);
    if !partitions.contains_key(&key) {
        let sp = SharePartition::new(
            config,
            AutoOffsetReset::Latest,
            part.log.log_start_offset(),
            part.high_watermark(),
        )
        .ok()?;
        partitions.insert(key.clone(), sp);
    }
    let sp = partitions.get_mut(&key)?;
    if *sp.config() != config {
        // A changed config applies to later transitions (a bad value keeps the old one).
        let _ = sp.set_config(config);
    }
    Some(sp)
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
        match st.step_session(&group, &member, r.share_session_epoch, &add, &forget) {
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
    // Acknowledgements first, then acquisition.
    let mut ack_codes: std::collections::BTreeMap<(String, i32), i16> = Default::default();
    for ((topic, index), list) in &acks {
        if list.is_empty() {
            continue;
        }
        let code = apply_acks(ctx, &group, &member, topic, *index, list, now);
        ack_codes.insert((topic.clone(), *index), code);
    }
    if step == SessionStep::Closed {
        let mut st = shared
            .shares
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        st.member_left(&group, &member, now);
    }
    let max_records = r.max_records.max(1) as u32;
    let config = share_config(shared);
    let max_wait = Duration::from_millis(r.max_wait_ms.clamp(0, MAX_WAIT_CAP_MS) as u64);
    let deadline = tokio::time::Instant::now() + max_wait;
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
            watches.push(part.subscribe(false));
            if step != SessionStep::Closed && budget > 0 {
                let hw = part.high_watermark();
                let mut st = shared
                    .shares
                    .state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if let Some(sp) =
                    share_partition(&mut st.partitions, &group, topic, *index, &part, config)
                {
                    sp.advance_log_start(part.log.log_start_offset());
                    let got = sp.acquire(&member, budget, hw, now_ms());
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

/// Applies `member`'s acknowledgements on one partition; the partition's error code.
fn apply_acks(
    ctx: &mut Ctx<'_>,
    group: &str,
    member: &str,
    topic: &str,
    index: i32,
    list: &Acks,
    now: i64,
) -> i16 {
    let batches = match ack_batches(list) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let mut st = ctx
        .shared
        .shares
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let key = (group.to_string(), topic.to_string(), index);
    let Some(sp) = st.partitions.get_mut(&key) else {
        return 121; // INVALID_RECORD_STATE: nothing acquired here
    };
    match sp.acknowledge(member, &batches, now) {
        Ok(_) => 0,
        Err(e) => {
            ctx.had_error = true;
            e.kafka_code()
        }
    }
}

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
        st.step_session(&group, &member, r.share_session_epoch, &[], &[])
    };
    let step = match step {
        Ok(s) => s,
        Err(code) => {
            ctx.had_error = true;
            return top(code, "share session");
        }
    };
    let now = now_ms();
    let mut responses = Vec::new();
    for t in &r.topics {
        let name = image
            .topic_by_id(&t.topic_id.to_string())
            .map(|x| x.topic_name.clone());
        let mut parts = Vec::new();
        for p in &t.partitions {
            let code = match &name {
                None => ResponseError::UnknownTopicId.code(),
                Some(n) => {
                    let list: Acks = p
                        .acknowledgement_batches
                        .iter()
                        .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()))
                        .collect();
                    apply_acks(ctx, &group, &member, n, p.partition_index, &list, now)
                }
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
    if step == SessionStep::Closed {
        let mut st = shared
            .shares
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        st.member_left(&group, &member, now);
    }
    ShareAcknowledgeResponse::default().with_responses(responses)
}
