//! The Kafka group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete.
//! ListGroups and DeleteGroups also cover share groups (`share_admin`).
//!
//! Every group request first checks that this broker coordinates the group (NOT_COORDINATOR
//! otherwise, so clients look it up again); membership is [`crate::group::coordinator`],
//! committed offsets go to the metadata quorum through [`crate::group::offsets`].

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId as KBrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse,
};
use serde_json::{json, Value};

use super::handlers::{s, topic_name, Ctx};
use dmq_auth::{Operation, ResourceType};

use crate::group::coordinator::{GroupState, JoinOutcome, JoinParams, Reply, SyncOutcome};
use crate::group::coordinator_for;

/// Kafka's `offset.metadata.max.bytes`.
const OFFSET_METADATA_MAX_BYTES: usize = 4096;
/// Extra time a JoinGroup/SyncGroup may wait beyond the member's rebalance timeout.
const WAIT_MARGIN: Duration = Duration::from_secs(5);

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// `None` when the principal may do `op` on `group` and this broker coordinates it, else the
/// error to answer with (GROUP_AUTHORIZATION_FAILED first, as Kafka checks before routing).
pub(super) fn coordinator_error(ctx: &mut Ctx<'_>, group: &str, op: Operation) -> Option<i16> {
    if !ctx.allowed(op, ResourceType::Group, group) {
        ctx.had_error = true;
        return Some(code(ResponseError::GroupAuthorizationFailed));
    }
    let e = match coordinator_for(&ctx.shared.image(), group) {
        Some(b) if b == ctx.shared.config.broker_id => return None,
        Some(_) => ResponseError::NotCoordinator,
        None => ResponseError::CoordinatorNotAvailable,
    };
    ctx.had_error = true;
    Some(code(e))
}

fn client_id(ctx: &Ctx<'_>) -> String {
    ctx.header
        .client_id
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default()
}

fn client_host(ctx: &Ctx<'_>) -> String {
    ctx.peer.map(|p| format!("/{}", p.ip())).unwrap_or_default()
}

/// Kafka's UNSTABLE_OFFSET_COMMIT (KIP-447): retriable, the client asks again.
const UNSTABLE_OFFSET_COMMIT: i16 = 88;

/// FindCoordinator key types (KIP-98): consumer groups and transactional ids.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub fn find_coordinator(ctx: &mut Ctx<'_>, r: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let keys: Vec<String> = if ctx.version >= 4 {
        r.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![r.key.to_string()]
    };
    let image = ctx.shared.image();
    let mut coordinators = Vec::new();
    for key in keys {
        // Groups and transactional ids are spread over the ONLINE brokers by the same hash;
        // a transaction's state lives in the quorum, so any broker can take one over.
        let found = if r.key_type != KEY_TYPE_GROUP && r.key_type != KEY_TYPE_TRANSACTION {
            Err((
                ResponseError::InvalidRequest,
                "unknown coordinator key type",
            ))
        } else if r.key_type == KEY_TYPE_GROUP
            && !ctx.allowed(Operation::Describe, ResourceType::Group, &key)
        {
            Err((
                ResponseError::GroupAuthorizationFailed,
                "DESCRIBE on the group is needed",
            ))
        } else if r.key_type == KEY_TYPE_TRANSACTION
            && !ctx.allowed(Operation::Describe, ResourceType::TransactionalId, &key)
        {
            Err((
                ResponseError::TransactionalIdAuthorizationFailed,
                "DESCRIBE on the transactional id is needed",
            ))
        } else {
            coordinator_for(&image, &key)
                .and_then(|id| image.brokers.get(&id))
                .and_then(|b| Some((b, super::handlers::advertised_port(ctx, b)?)))
                .ok_or((
                    ResponseError::CoordinatorNotAvailable,
                    "no broker is ONLINE",
                ))
        };
        let c = match found {
            Ok((b, port)) => Coordinator::default()
                .with_key(s(key))
                .with_node_id(KBrokerId(b.broker_id))
                .with_host(s(b.host.clone()))
                .with_port(i32::from(port)),
            Err((e, why)) => {
                ctx.had_error = true;
                Coordinator::default()
                    .with_key(s(key))
                    .with_node_id(KBrokerId(-1))
                    .with_host(s(""))
                    .with_port(-1)
                    .with_error_code(code(e))
                    .with_error_message(Some(s(why)))
            }
        };
        coordinators.push(c);
    }
    if ctx.version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = coordinators.into_iter().next().unwrap_or_default();
    // v0 has no error message field.
    let message = if ctx.version >= 1 {
        c.error_message
    } else {
        None
    };
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_error_message(message)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}

fn join_response(version: i16, o: JoinOutcome) -> JoinGroupResponse {
    let name = match (o.protocol_name, version >= 7) {
        (Some(n), _) => Some(s(n)),
        (None, true) => None,
        (None, false) => Some(s("")),
    };
    JoinGroupResponse::default()
        .with_error_code(o.error)
        .with_generation_id(o.generation)
        .with_protocol_type(o.protocol_type.map(s))
        .with_protocol_name(name)
        .with_leader(s(o.leader))
        .with_member_id(s(o.member_id))
        .with_members(
            o.members
                .into_iter()
                .map(|(id, inst, meta)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(s(id))
                        .with_group_instance_id(inst.map(s))
                        .with_metadata(meta)
                })
                .collect(),
        )
}

pub async fn join_group(ctx: &mut Ctx<'_>, r: JoinGroupRequest) -> JoinGroupResponse {
    let group = r.group_id.0.to_string();
    if let Some(e) = coordinator_error(ctx, &group, Operation::Read) {
        return join_response(
            ctx.version,
            JoinOutcome {
                error: e,
                generation: -1,
                member_id: r.member_id.to_string(),
                ..JoinOutcome::default()
            },
        );
    }
    let rebalance_timeout_ms = if ctx.version == 0 {
        r.session_timeout_ms
    } else {
        r.rebalance_timeout_ms
    };
    let params = JoinParams {
        group_id: group,
        member_id: r.member_id.to_string(),
        instance_id: r.group_instance_id.map(|i| i.to_string()),
        client_id: client_id(ctx),
        client_host: client_host(ctx),
        session_timeout_ms: r.session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type: r.protocol_type.to_string(),
        protocols: r
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member: ctx.version >= 4,
    };
    let member_id = params.member_id.clone();
    let wait = Duration::from_millis(rebalance_timeout_ms.max(0) as u64) + WAIT_MARGIN;
    let outcome = match ctx.shared.groups.join(params, Instant::now()) {
        Reply::Now(o) => o,
        Reply::Wait(rx) => match tokio::time::timeout(wait, rx).await {
            Ok(Ok(o)) => o,
            _ => JoinOutcome {
                error: code(ResponseError::RebalanceInProgress),
                generation: -1,
                member_id,
                ..JoinOutcome::default()
            },
        },
    };
    if outcome.error != 0 {
        ctx.had_error = true;
    }
    join_response(ctx.version, outcome)
}

fn sync_response(o: SyncOutcome) -> SyncGroupResponse {
    SyncGroupResponse::default()
        .with_error_code(o.error)
        .with_protocol_type(o.protocol_type.map(s))
        .with_protocol_name(o.protocol_name.map(s))
        .with_assignment(o.assignment)
}

pub async fn sync_group(ctx: &mut Ctx<'_>, r: SyncGroupRequest) -> SyncGroupResponse {
    let group = r.group_id.0.to_string();
    if let Some(e) = coordinator_error(ctx, &group, Operation::Read) {
        return sync_response(SyncOutcome {
            error: e,
            ..SyncOutcome::default()
        });
    }
    let assignments: Vec<(String, Bytes)> = r
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let reply = ctx.shared.groups.sync(
        &group,
        r.generation_id,
        r.member_id.as_str(),
        r.group_instance_id.as_deref(),
        r.protocol_type.as_deref(),
        r.protocol_name.as_deref(),
        assignments,
        Instant::now(),
    );
    let outcome = match reply {
        Reply::Now(o) => o,
        Reply::Wait(rx) => match tokio::time::timeout(Duration::from_secs(300), rx).await {
            Ok(Ok(o)) => o,
            _ => SyncOutcome {
                error: code(ResponseError::RebalanceInProgress),
                ..SyncOutcome::default()
            },
        },
    };
    if outcome.error != 0 {
        ctx.had_error = true;
    }
    sync_response(outcome)
}

pub fn heartbeat(ctx: &mut Ctx<'_>, r: HeartbeatRequest) -> HeartbeatResponse {
    let group = r.group_id.0.to_string();
    let e = coordinator_error(ctx, &group, Operation::Read).unwrap_or_else(|| {
        ctx.shared.groups.heartbeat(
            &group,
            r.generation_id,
            r.member_id.as_str(),
            r.group_instance_id.as_deref(),
            Instant::now(),
        )
    });
    if e != 0 {
        ctx.had_error = true;
    }
    HeartbeatResponse::default().with_error_code(e)
}

pub fn leave_group(ctx: &mut Ctx<'_>, r: LeaveGroupRequest) -> LeaveGroupResponse {
    let group = r.group_id.0.to_string();
    let members: Vec<(String, Option<String>)> = if ctx.version >= 3 {
        r.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(r.member_id.to_string(), None)]
    };
    if let Some(e) = coordinator_error(ctx, &group, Operation::Read) {
        return LeaveGroupResponse::default().with_error_code(e);
    }
    let codes = ctx.shared.groups.leave(&group, &members, Instant::now());
    if codes.iter().any(|c| *c != 0) {
        ctx.had_error = true;
    }
    if ctx.version < 3 {
        return LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(0));
    }
    LeaveGroupResponse::default().with_members(
        members
            .into_iter()
            .zip(codes)
            .map(|((id, inst), c)| {
                MemberResponse::default()
                    .with_member_id(s(id))
                    .with_group_instance_id(inst.map(s))
                    .with_error_code(c)
            })
            .collect(),
    )
}

pub async fn offset_commit(ctx: &mut Ctx<'_>, r: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = r.group_id.0.to_string();
    let group_error = coordinator_error(ctx, &group, Operation::Read).or_else(|| {
        let e = ctx.shared.groups.validate_commit(
            &group,
            r.generation_id_or_member_epoch,
            r.member_id.as_str(),
            r.group_instance_id.as_deref(),
            Instant::now(),
        );
        (e != 0).then_some(e)
    });
    let image = ctx.shared.image();
    let now_ms = dmq_log::now_ms().max(0) as u64;
    // (topic index, partition index, error) and the commits to store.
    let mut results: Vec<(String, Vec<(i32, i16)>)> = Vec::new();
    let mut commits = Vec::new();
    let mut stored: Vec<(usize, usize)> = Vec::new();
    for (ti, t) in r.topics.iter().enumerate() {
        let name = t.name.0.to_string();
        let topic = image.topics.get(&name);
        let topic_denied = !ctx.allowed(Operation::Read, ResourceType::Topic, &name);
        let mut parts = Vec::new();
        for (pi, p) in t.partitions.iter().enumerate() {
            let meta_len = p.committed_metadata.as_ref().map_or(0, |m| m.len());
            let e = if let Some(e) = group_error {
                e
            } else if topic_denied {
                code(ResponseError::TopicAuthorizationFailed)
            } else if !topic
                .is_some_and(|t| p.partition_index >= 0 && p.partition_index < t.num_partitions)
            {
                code(ResponseError::UnknownTopicOrPartition)
            } else if meta_len > OFFSET_METADATA_MAX_BYTES {
                code(ResponseError::OffsetMetadataTooLarge)
            } else {
                commits.push(json!({
                    "groupId": group,
                    "topic": name,
                    "partition": p.partition_index,
                    "offset": p.committed_offset,
                    "leaderEpoch": p.committed_leader_epoch,
                    "metadata": p.committed_metadata.as_ref().map(|m| m.to_string()),
                    "commitTimestamp": now_ms,
                }));
                stored.push((ti, pi));
                0
            };
            parts.push((p.partition_index, e));
        }
        results.push((name, parts));
    }
    if !commits.is_empty() {
        match ctx.shared.offsets.commit(commits).await {
            Ok(outcomes) => {
                for ((ti, pi), outcome) in stored.into_iter().zip(outcomes) {
                    if let Some(reason) = outcome {
                        // Only a topic or partition deleted since the check above gets here.
                        tracing::debug!(group = %group, "offset commit refused: {reason}");
                        results[ti].1[pi].1 = code(ResponseError::UnknownTopicOrPartition);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(group = %group, "offset commit failed: {e}");
                for (ti, pi) in stored {
                    results[ti].1[pi].1 = code(ResponseError::CoordinatorNotAvailable);
                }
            }
        }
    }
    if results
        .iter()
        .any(|(_, ps)| ps.iter().any(|(_, e)| *e != 0))
    {
        ctx.had_error = true;
    }
    OffsetCommitResponse::default().with_topics(
        results
            .into_iter()
            .map(|(name, parts)| {
                OffsetCommitResponseTopic::default()
                    .with_name(topic_name(&name))
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, e)| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_error_code(e)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// One committed offset as `(offset, leader epoch, metadata)`; `(-1, -1, "")` when none.
fn committed(offsets: &Value, topic: &str, partition: i32) -> (i64, i32, String) {
    let c = &offsets[topic][partition.to_string()];
    match c["offset"].as_i64() {
        Some(o) => (
            o,
            c["leaderEpoch"].as_i64().unwrap_or(-1) as i32,
            c["metadata"].as_str().unwrap_or("").to_string(),
        ),
        None => (-1, -1, String::new()),
    }
}

/// `(topic, partitions)` to answer: the requested ones, or every committed one.
fn wanted(offsets: &Value, requested: Option<Vec<(String, Vec<i32>)>>) -> Vec<(String, Vec<i32>)> {
    match requested {
        Some(r) => r,
        None => offsets
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(t, ps)| {
                        let mut parts: Vec<i32> = ps
                            .as_object()
                            .map(|m| m.keys().filter_map(|k| k.parse().ok()).collect())
                            .unwrap_or_default();
                        parts.sort_unstable();
                        (t.clone(), parts)
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// One group's answer: the group-level error and `(topic, [(partition, offset, epoch, meta)])`.
/// The group error, and per topic: (partition, offset, leader epoch, metadata, error).
type FetchedGroup = (i16, Vec<(String, Vec<(i32, i64, i32, String, i16)>)>);

async fn fetch_group(
    ctx: &mut Ctx<'_>,
    group: &str,
    requested: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> FetchedGroup {
    if let Some(e) = coordinator_error(ctx, group, Operation::Describe) {
        return (e, Vec::new());
    }
    let (offsets, pending) = match ctx.shared.meta.group_offsets_and_pending(group).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(group, "offset fetch from the quorum failed: {e}");
            ctx.had_error = true;
            return (code(ResponseError::CoordinatorLoadInProgress), Vec::new());
        }
    };
    // Kafka: a named topic the principal may not describe answers TOPIC_AUTHORIZATION_FAILED
    // on its partitions; with all topics asked for, such topics are left out.
    let all_topics = requested.is_none();
    let topics = wanted(&offsets, requested)
        .into_iter()
        .filter(|(t, _)| !all_topics || ctx.allowed(Operation::Describe, ResourceType::Topic, t))
        .map(|(t, parts)| {
            if !ctx.allowed(Operation::Describe, ResourceType::Topic, &t) {
                let denied = code(ResponseError::TopicAuthorizationFailed);
                let rows = parts
                    .into_iter()
                    .map(|p| (p, -1, -1, String::new(), denied))
                    .collect();
                return (t, rows);
            }
            let rows = parts
                .into_iter()
                .map(|p| {
                    // KIP-447: an offset a transaction still holds is not stable yet.
                    if require_stable && pending.iter().any(|(pt, pp)| *pt == t && *pp == p) {
                        return (p, -1, -1, String::new(), UNSTABLE_OFFSET_COMMIT);
                    }
                    let (o, e, m) = committed(&offsets, &t, p);
                    (p, o, e, m, 0)
                })
                .collect();
            (t, rows)
        })
        .collect();
    (0, topics)
}

pub async fn offset_fetch(ctx: &mut Ctx<'_>, r: OffsetFetchRequest) -> OffsetFetchResponse {
    if ctx.version >= 8 {
        let mut groups = Vec::new();
        for g in r.groups {
            let requested = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes))
                    .collect()
            });
            let (e, topics) =
                fetch_group(ctx, g.group_id.0.as_str(), requested, r.require_stable).await;
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(e)
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(t, rows)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(topic_name(&t))
                                    .with_partitions(
                                        rows.into_iter()
                                            .map(|(p, o, ep, m, pe)| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(o)
                                                    .with_committed_leader_epoch(ep)
                                                    .with_metadata(Some(s(m)))
                                                    .with_error_code(pe)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let requested = r.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect::<Vec<_>>()
    });
    let partition_names: Vec<(String, Vec<i32>)> = requested.clone().unwrap_or_default();
    let require_stable = ctx.version >= 7 && r.require_stable;
    let (e, topics) = fetch_group(ctx, r.group_id.0.as_str(), requested, require_stable).await;
    // v1 has no group-level error: the error goes on every requested partition.
    let topics = if e != 0 && ctx.version < 2 {
        partition_names
            .into_iter()
            .map(|(t, ps)| {
                (
                    t,
                    ps.into_iter()
                        .map(|p| (p, -1, -1, String::new(), e))
                        .collect(),
                )
            })
            .collect()
    } else {
        topics
    };
    let per_partition = if ctx.version < 2 { e } else { 0 };
    OffsetFetchResponse::default()
        .with_error_code(e)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, rows)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(topic_name(&t))
                        .with_partitions(
                            rows.into_iter()
                                .map(|(p, o, ep, m, pe)| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(o)
                                        .with_committed_leader_epoch(ep)
                                        .with_metadata(Some(s(m)))
                                        .with_error_code(if pe != 0 { pe } else { per_partition })
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

pub async fn list_groups(ctx: &mut Ctx<'_>, r: ListGroupsRequest) -> ListGroupsResponse {
    let shared = ctx.shared;
    let image = shared.image();
    let me = shared.config.broker_id;
    // (group, protocol type, state, group type): dmq's consumer groups are Kafka's "classic".
    let mut groups: Vec<(String, String, String, &'static str)> = shared
        .groups
        .list()
        .into_iter()
        .map(|(id, ptype, st)| (id, ptype, st.as_str().to_string(), "classic"))
        .collect();
    // Groups with only committed offsets are Empty groups this broker would coordinate.
    match shared.meta.group_ids().await {
        Ok(ids) => {
            for id in ids {
                if coordinator_for(&image, &id) == Some(me) && !groups.iter().any(|g| g.0 == id) {
                    groups.push((
                        id,
                        "consumer".into(),
                        GroupState::Empty.as_str().into(),
                        "classic",
                    ));
                }
            }
        }
        Err(e) => tracing::debug!("listing stored groups: {e}"),
    }
    // Share groups (KIP-932) coordinated here.
    for (id, st) in super::share_admin::listed_share_groups(ctx).await {
        if !groups.iter().any(|g| g.0 == id) {
            groups.push((id, "share".into(), st.into(), "share"));
        }
    }
    groups.sort();
    // Kafka lists every group with DESCRIBE on the cluster, else those the principal may
    // describe.
    if !ctx.allowed_on_cluster(Operation::Describe) {
        groups.retain(|g| ctx.allowed(Operation::Describe, ResourceType::Group, &g.0));
    }
    let states: Vec<String> = r.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = if ctx.version >= 5 {
        r.types_filter.iter().map(|s| s.to_lowercase()).collect()
    } else {
        Vec::new()
    };
    ListGroupsResponse::default().with_groups(
        groups
            .into_iter()
            .filter(|(_, _, st, _)| states.is_empty() || states.contains(&st.to_lowercase()))
            .filter(|(_, _, _, gt)| types.is_empty() || types.iter().any(|t| t == gt))
            .map(|(id, ptype, st, gt)| {
                ListedGroup::default()
                    .with_group_id(GroupId(s(id)))
                    .with_protocol_type(s(ptype))
                    .with_group_state(s(st))
                    .with_group_type(s(gt))
            })
            .collect(),
    )
}

pub async fn describe_groups(
    ctx: &mut Ctx<'_>,
    r: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut out = Vec::new();
    for g in r.groups {
        let id = g.0.to_string();
        let mut d = DescribedGroup::default().with_group_id(g.clone());
        if ctx.version >= 3 && r.include_authorized_operations {
            d = d.with_authorized_operations(super::handlers::authorized_ops(
                ctx,
                super::handlers::authorized::GROUP,
                ResourceType::Group,
                &id,
            ));
        }
        if let Some(e) = coordinator_error(ctx, &id, Operation::Describe) {
            out.push(d.with_error_code(e));
            continue;
        }
        match ctx.shared.groups.describe(&id) {
            Some(v) => {
                d = d
                    .with_group_state(s(v.state.as_str()))
                    .with_protocol_type(s(v.protocol_type))
                    .with_protocol_data(s(v.protocol))
                    .with_members(
                        v.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(s(m.member_id))
                                    .with_group_instance_id(m.instance_id.map(s))
                                    .with_client_id(s(m.client_id))
                                    .with_client_host(s(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    );
            }
            None => {
                let stored = ctx
                    .shared
                    .meta
                    .group_offsets(&id)
                    .await
                    .ok()
                    .is_some_and(|o| o.as_object().is_some_and(|m| !m.is_empty()));
                d = if stored {
                    d.with_group_state(s("Empty"))
                        .with_protocol_type(s("consumer"))
                } else {
                    d.with_group_state(s("Dead"))
                };
            }
        }
        out.push(d);
    }
    DescribeGroupsResponse::default().with_groups(out)
}

pub async fn delete_groups(ctx: &mut Ctx<'_>, r: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for g in r.groups_names {
        let id = g.0.to_string();
        let e = if let Some(e) = coordinator_error(ctx, &id, Operation::Delete) {
            e
        } else if ctx
            .shared
            .groups
            .describe(&id)
            .is_some_and(|g| !g.members.is_empty())
        {
            code(ResponseError::NonEmptyGroup)
        } else {
            // A share group (KIP-932): refused while it has members, else its durable states go.
            match super::share_admin::delete_share_group(ctx, &id).await {
                Err(e) => e,
                Ok(share_known) => match ctx.shared.groups.remove_if_empty(&id) {
                    None => code(ResponseError::NonEmptyGroup),
                    Some(known) => match ctx.shared.meta.delete_group_offsets(&id, None).await {
                        // An empty group without committed offsets still existed if its
                        // members had joined here (Kafka keeps it as Empty).
                        Ok(had_offsets) if had_offsets || known || share_known => 0,
                        Ok(_) => code(ResponseError::GroupIdNotFound),
                        Err(err) => {
                            tracing::warn!(group = %id, "delete group: {err}");
                            code(ResponseError::CoordinatorNotAvailable)
                        }
                    },
                },
            }
        };
        if e != 0 {
            ctx.had_error = true;
        }
        results.push(
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(e),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

pub async fn offset_delete(ctx: &mut Ctx<'_>, r: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = r.group_id.0.to_string();
    if let Some(e) = coordinator_error(ctx, &group, Operation::Delete) {
        return OffsetDeleteResponse::default().with_error_code(e);
    }
    // Kafka refuses for topics the group's members subscribe to; we refuse while the group has
    // members at all (stricter, never wrong).
    let active = ctx
        .shared
        .groups
        .describe(&group)
        .is_some_and(|g| !g.members.is_empty());
    let parts: Vec<(String, i32)> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    let (top, per) = if active {
        (0, code(ResponseError::GroupSubscribedToTopic))
    } else {
        match ctx
            .shared
            .meta
            .delete_group_offsets(&group, Some(parts))
            .await
        {
            Ok(true) => (0, 0),
            Ok(false) => (code(ResponseError::GroupIdNotFound), 0),
            Err(err) => {
                tracing::warn!(group = %group, "offset delete: {err}");
                (code(ResponseError::CoordinatorNotAvailable), 0)
            }
        }
    };
    if top != 0 || per != 0 {
        ctx.had_error = true;
    }
    OffsetDeleteResponse::default()
        .with_error_code(top)
        .with_topics(
            r.topics
                .into_iter()
                .map(|t| {
                    OffsetDeleteResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partitions
                                .into_iter()
                                .map(|p| {
                                    OffsetDeleteResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(per)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}
