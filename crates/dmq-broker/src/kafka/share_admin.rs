//! Share groups for admins (KIP-932): ShareGroupDescribe on the group's coordinator, and the
//! share-group offsets (DescribeShareGroupOffsets, AlterShareGroupOffsets,
//! DeleteShareGroupOffsets), which are the start offsets of the durable share-partition states
//! in the metadata quorum. ListGroups and DeleteGroups (`groups.rs`) use the helpers at the end.
//!
//! ```text
//!   admin ──ShareGroupDescribe──────────▶ coordinator: members, epochs, assignments (memory)
//!         ──DescribeShareGroupOffsets───▶ coordinator: GET  share-groups/{g}       (quorum)
//!         ──AlterShareGroupOffsets──────▶ coordinator: POST share-states            (quorum)
//!         ──DeleteShareGroupOffsets─────▶ coordinator: POST share-groups/{g}/offsets/delete
//! ```
//!
//! Membership lives only on the coordinator, so a group is known when it has members here or
//! durable state in the quorum. An alter (the next state epoch) or a delete counts as a reset
//! of the group in the quorum (`share_resets`); a leader holding the share-partition loaded sees
//! the count move in its cluster image and loads it again, and the quorum refuses its older
//! copy (FENCED_STATE_EPOCH).

use std::collections::BTreeMap;

use dmq_auth::{Operation, ResourceType};
use dmq_share::group::{GroupConfig, ShareGroup};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_share_group_offsets_response::{
    AlterShareGroupOffsetsResponsePartition, AlterShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::delete_share_group_offsets_response::DeleteShareGroupOffsetsResponseTopic;
use kafka_protocol::messages::describe_share_group_offsets_response::{
    DescribeShareGroupOffsetsResponseGroup, DescribeShareGroupOffsetsResponsePartition,
    DescribeShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::share_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    AlterShareGroupOffsetsRequest, AlterShareGroupOffsetsResponse, DeleteShareGroupOffsetsRequest,
    DeleteShareGroupOffsetsResponse, DescribeShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsResponse, ShareGroupDescribeRequest, ShareGroupDescribeResponse,
};
use serde_json::{json, Value};

use super::groups::coordinator_error;
use super::handlers::{authorized, authorized_ops, s, topic_name, Ctx};
use crate::group::coordinator_for;
use crate::meta_client::ClusterImage;

/// The assignor ShareGroupDescribe names (Kafka's `SimpleAssignor`, which `dmq_share::group`
/// follows).
const ASSIGNOR: &str = "simple";
/// The snapshot format the quorum stores (`dmq_share::ShareSnapshot::version`).
const SNAPSHOT_VERSION: u16 = 1;

fn code(e: ResponseError) -> i16 {
    e.code()
}

fn uuid_of(id: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(id).unwrap_or_default()
}

fn topic_uuid(image: &ClusterImage, topic: &str) -> uuid::Uuid {
    image
        .topics
        .get(topic)
        .map(|t| uuid_of(&t.topic_id))
        .unwrap_or_default()
}

/// A copy of the share group as this coordinator keeps it, without the members whose session
/// ran out (the next heartbeat expires them); `None` when it has no such group.
fn live_group(ctx: &Ctx<'_>, group: &str) -> Option<ShareGroup> {
    let st = ctx
        .shared
        .shares
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let mut g = st.groups.get(group)?.clone();
    drop(st);
    let now = dmq_log::now_ms();
    let timeout = GroupConfig::default().session_timeout_ms;
    g.members
        .retain(|_, m| now.saturating_sub(m.last_heartbeat_ms) <= timeout);
    Some(g)
}

/// One share-partition's durable state, as the quorum keeps it.
#[derive(Debug, Clone, Copy)]
struct Stored {
    leader_epoch: i32,
    start_offset: i64,
    state_epoch: i32,
}

/// The durable share-partition states of `share_group_state`'s answer, by (topic, partition).
fn stored_states(v: &Value) -> BTreeMap<(String, i32), Stored> {
    v.get("partitions")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| {
                    let topic = p.get("topic")?.as_str()?.to_string();
                    let partition = i32::try_from(p.get("partition")?.as_i64()?).ok()?;
                    let snap = p.get("snapshot")?;
                    let stored = Stored {
                        leader_epoch: p
                            .get("leaderEpoch")
                            .and_then(Value::as_i64)
                            .and_then(|e| i32::try_from(e).ok())
                            .unwrap_or(-1),
                        start_offset: snap.get("startOffset")?.as_i64()?,
                        state_epoch: snap
                            .get("stateEpoch")
                            .and_then(Value::as_i64)
                            .and_then(|e| i32::try_from(e).ok())
                            .unwrap_or(0),
                    };
                    Some(((topic, partition), stored))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The group's durable states, or the group-level error (the quorum did not answer).
async fn read_states(
    ctx: &mut Ctx<'_>,
    group: &str,
) -> Result<BTreeMap<(String, i32), Stored>, i16> {
    match ctx.shared.meta.share_group_state(group).await {
        Ok(v) => Ok(stored_states(&v)),
        Err(e) => {
            tracing::warn!(group, "reading share-group state from the quorum: {e}");
            ctx.had_error = true;
            Err(code(ResponseError::CoordinatorLoadInProgress))
        }
    }
}

// ---------------------------------------------------------------------------------------
// ShareGroupDescribe
// ---------------------------------------------------------------------------------------

pub async fn share_group_describe(
    ctx: &mut Ctx<'_>,
    r: ShareGroupDescribeRequest,
) -> ShareGroupDescribeResponse {
    let mut out = Vec::new();
    for g in r.group_ids {
        let id = g.0.to_string();
        let mut d = DescribedGroup::default()
            .with_group_id(g.clone())
            .with_authorized_operations(authorized::NOT_ASKED);
        if r.include_authorized_operations {
            d = d.with_authorized_operations(authorized_ops(
                ctx,
                authorized::GROUP,
                ResourceType::Group,
                &id,
            ));
        }
        let failed = |d: DescribedGroup, e: i16, message: String| {
            d.with_error_code(e).with_error_message(Some(s(message)))
        };
        if let Some(e) = coordinator_error(ctx, &id, Operation::Describe) {
            out.push(failed(
                d,
                e,
                format!("share group {id:?} is not described here"),
            ));
            continue;
        }
        let live = live_group(ctx, &id);
        let group = match live {
            Some(g) if !g.members.is_empty() => g,
            other => {
                // No members here: the group exists (Empty) when the quorum holds its state.
                let known = match read_states(ctx, &id).await {
                    Ok(states) => other.is_some() || !states.is_empty(),
                    Err(e) => {
                        out.push(failed(d, e, "the share-group state is unavailable".into()));
                        continue;
                    }
                };
                if !known {
                    ctx.had_error = true;
                    out.push(failed(
                        d,
                        code(ResponseError::GroupIdNotFound),
                        format!("share group {id:?} not found"),
                    ));
                    continue;
                }
                other.unwrap_or_default()
            }
        };
        let image = ctx.shared.image();
        let state = if group.members.is_empty() {
            "Empty"
        } else {
            "Stable"
        };
        let members = group
            .members
            .iter()
            .map(|(member_id, m)| {
                let assignment = Assignment::default().with_topic_partitions(
                    m.assignment
                        .iter()
                        .filter_map(|(topic, partitions)| {
                            let t = image.topics.get(topic)?;
                            Some(
                                TopicPartitions::default()
                                    .with_topic_id(uuid_of(&t.topic_id))
                                    .with_topic_name(topic_name(topic))
                                    .with_partitions(partitions.clone()),
                            )
                        })
                        .collect(),
                );
                Member::default()
                    .with_member_id(s(member_id.clone()))
                    .with_rack_id(None)
                    .with_member_epoch(m.epoch)
                    .with_client_id(s(m.client_id.clone()))
                    .with_client_host(s(m.client_host.clone()))
                    .with_subscribed_topic_names(
                        m.subscribed.iter().map(|t| topic_name(t)).collect(),
                    )
                    .with_assignment(assignment)
            })
            .collect();
        out.push(
            d.with_group_state(s(state))
                .with_group_epoch(group.group_epoch)
                // Share groups revoke nothing: the target assignment is the group epoch's.
                .with_assignment_epoch(group.group_epoch)
                .with_assignor_name(s(ASSIGNOR))
                .with_members(members),
        );
    }
    ShareGroupDescribeResponse::default().with_groups(out)
}

// ---------------------------------------------------------------------------------------
// DescribeShareGroupOffsets
// ---------------------------------------------------------------------------------------

fn offsets_partition(
    partition: i32,
    stored: Option<&Stored>,
    error: i16,
) -> DescribeShareGroupOffsetsResponsePartition {
    DescribeShareGroupOffsetsResponsePartition::default()
        .with_partition_index(partition)
        .with_start_offset(stored.map_or(-1, |s| s.start_offset))
        .with_leader_epoch(stored.map_or(-1, |s| s.leader_epoch))
        .with_error_code(error)
}

async fn describe_group_offsets(
    ctx: &mut Ctx<'_>,
    group: &str,
    requested: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Vec<DescribeShareGroupOffsetsResponseTopic>, (i16, String)> {
    if let Some(e) = coordinator_error(ctx, group, Operation::Describe) {
        return Err((e, format!("share group {group:?} is not described here")));
    }
    let states = read_states(ctx, group)
        .await
        .map_err(|e| (e, "the share-group state is unavailable".to_string()))?;
    let image = ctx.shared.image();
    let all = requested.is_none();
    let wanted: Vec<(String, Vec<i32>)> = requested.unwrap_or_else(|| {
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (t, p) in states.keys() {
            by_topic.entry(t.clone()).or_default().push(*p);
        }
        by_topic.into_iter().collect()
    });
    let mut topics = Vec::new();
    for (t, parts) in wanted {
        let may_describe = ctx.allowed(Operation::Describe, ResourceType::Topic, &t);
        // With every topic asked for, topics the principal may not describe are left out.
        if all && !may_describe {
            continue;
        }
        let exists = image.topics.get(&t);
        let rows = parts
            .into_iter()
            .map(|p| {
                if !may_describe {
                    offsets_partition(p, None, code(ResponseError::TopicAuthorizationFailed))
                } else if !exists.is_some_and(|x| p >= 0 && p < x.num_partitions) {
                    offsets_partition(p, None, code(ResponseError::UnknownTopicOrPartition))
                } else {
                    offsets_partition(p, states.get(&(t.clone(), p)), 0)
                }
            })
            .collect::<Vec<_>>();
        if rows.iter().any(|r| r.error_code != 0) {
            ctx.had_error = true;
        }
        topics.push(
            DescribeShareGroupOffsetsResponseTopic::default()
                .with_topic_id(if may_describe {
                    topic_uuid(&image, &t)
                } else {
                    uuid::Uuid::nil()
                })
                .with_topic_name(topic_name(&t))
                .with_partitions(rows),
        );
    }
    Ok(topics)
}

pub async fn describe_share_group_offsets(
    ctx: &mut Ctx<'_>,
    r: DescribeShareGroupOffsetsRequest,
) -> DescribeShareGroupOffsetsResponse {
    let mut groups = Vec::new();
    for g in r.groups {
        let requested = g.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.topic_name.0.to_string(), t.partitions))
                .collect()
        });
        let answer = describe_group_offsets(ctx, g.group_id.0.as_str(), requested).await;
        let group = DescribeShareGroupOffsetsResponseGroup::default().with_group_id(g.group_id);
        groups.push(match answer {
            Ok(topics) => group.with_topics(topics),
            Err((e, message)) => group
                .with_error_code(e)
                .with_error_message(Some(s(message))),
        });
    }
    DescribeShareGroupOffsetsResponse::default().with_groups(groups)
}

// ---------------------------------------------------------------------------------------
// AlterShareGroupOffsets
// ---------------------------------------------------------------------------------------

fn error_of_name(name: &str) -> ResponseError {
    match name {
        "FENCED_LEADER_EPOCH" => ResponseError::FencedLeaderEpoch,
        "UNKNOWN_TOPIC_OR_PARTITION" => ResponseError::UnknownTopicOrPartition,
        "INVALID_REQUEST" => ResponseError::InvalidRequest,
        _ => ResponseError::UnknownServerError,
    }
}

pub async fn alter_share_group_offsets(
    ctx: &mut Ctx<'_>,
    r: AlterShareGroupOffsetsRequest,
) -> AlterShareGroupOffsetsResponse {
    let group = r.group_id.0.to_string();
    let top = |e: i16, message: String| {
        AlterShareGroupOffsetsResponse::default()
            .with_error_code(e)
            .with_error_message(Some(s(message)))
    };
    if let Some(e) = coordinator_error(ctx, &group, Operation::Read) {
        return top(e, format!("share group {group:?} is not coordinated here"));
    }
    if live_group(ctx, &group).is_some_and(|g| !g.members.is_empty()) {
        ctx.had_error = true;
        return top(
            code(ResponseError::NonEmptyGroup),
            "the share group has members: offsets are altered only in an empty group".into(),
        );
    }
    let states = match read_states(ctx, &group).await {
        Ok(st) => st,
        Err(e) => return top(e, "the share-group state is unavailable".into()),
    };
    let image = ctx.shared.image();
    // (topic index, partition index) → error, and the writes with their positions.
    let mut errors: Vec<Vec<(i32, i16, Option<String>)>> = Vec::new();
    let mut writes = Vec::new();
    let mut written: Vec<(usize, usize)> = Vec::new();
    for (ti, t) in r.topics.iter().enumerate() {
        let name = t.topic_name.0.to_string();
        let may_read = ctx.allowed(Operation::Read, ResourceType::Topic, &name);
        let topic = image.topics.get(&name);
        let mut rows = Vec::new();
        for (pi, p) in t.partitions.iter().enumerate() {
            let part = topic.and_then(|x| {
                x.partitions
                    .iter()
                    .find(|q| q.partition_id == p.partition_index)
            });
            let e = if !may_read {
                Some(ResponseError::TopicAuthorizationFailed)
            } else if part.is_none() {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if p.start_offset < 0 {
                Some(ResponseError::InvalidRequest)
            } else {
                None
            };
            if let (None, Some(part)) = (e, part) {
                let old_epoch = states
                    .get(&(name.clone(), p.partition_index))
                    .map_or(0, |s| s.state_epoch);
                writes.push(json!({
                    "group": group,
                    "topic": name,
                    "partition": p.partition_index,
                    "leaderEpoch": part.leader_epoch,
                    "snapshot": {
                        "version": SNAPSHOT_VERSION,
                        "stateEpoch": old_epoch.saturating_add(1),
                        "startOffset": p.start_offset,
                        "endOffset": p.start_offset,
                        "stateBatches": [],
                        "acknowledgedTotal": 0,
                        "archivedTotal": 0,
                        "deadLetteredTotal": 0,
                    },
                }));
                written.push((ti, pi));
            }
            rows.push((
                p.partition_index,
                e.map_or(0, |e| e.code()),
                e.map(|_| "not altered".to_string()),
            ));
        }
        errors.push(rows);
    }
    if !writes.is_empty() {
        match ctx.shared.meta.write_share_states(writes).await {
            Ok(results) => {
                for ((ti, pi), refused) in written.iter().zip(results) {
                    if let (Some(name), Some(row)) = (
                        refused,
                        errors.get_mut(*ti).and_then(|rows| rows.get_mut(*pi)),
                    ) {
                        row.1 = error_of_name(&name).code();
                        row.2 = Some(format!("the quorum refused the state: {name}"));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(group, "altering share-group offsets: {e}");
                for (ti, pi) in &written {
                    if let Some(row) = errors.get_mut(*ti).and_then(|rows| rows.get_mut(*pi)) {
                        row.1 = code(ResponseError::CoordinatorNotAvailable);
                        row.2 = Some("the metadata quorum did not answer".into());
                    }
                }
            }
        }
    }
    if errors.iter().flatten().any(|r| r.1 != 0) {
        ctx.had_error = true;
    }
    let responses = r
        .topics
        .iter()
        .zip(errors)
        .map(|(t, rows)| {
            let name = t.topic_name.0.to_string();
            AlterShareGroupOffsetsResponseTopic::default()
                .with_topic_name(t.topic_name.clone())
                .with_topic_id(topic_uuid(&image, &name))
                .with_partitions(
                    rows.into_iter()
                        .map(|(p, e, m)| {
                            AlterShareGroupOffsetsResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(e)
                                .with_error_message(m.map(s))
                        })
                        .collect(),
                )
        })
        .collect();
    AlterShareGroupOffsetsResponse::default().with_responses(responses)
}

// ---------------------------------------------------------------------------------------
// DeleteShareGroupOffsets
// ---------------------------------------------------------------------------------------

pub async fn delete_share_group_offsets(
    ctx: &mut Ctx<'_>,
    r: DeleteShareGroupOffsetsRequest,
) -> DeleteShareGroupOffsetsResponse {
    let group = r.group_id.0.to_string();
    let top = |e: i16, message: String| {
        DeleteShareGroupOffsetsResponse::default()
            .with_error_code(e)
            .with_error_message(Some(s(message)))
    };
    if let Some(e) = coordinator_error(ctx, &group, Operation::Delete) {
        return top(e, format!("share group {group:?} is not coordinated here"));
    }
    let live = live_group(ctx, &group);
    if live.as_ref().is_some_and(|g| !g.members.is_empty()) {
        ctx.had_error = true;
        return top(
            code(ResponseError::NonEmptyGroup),
            "the share group has members: offsets are deleted only in an empty group".into(),
        );
    }
    let states = match read_states(ctx, &group).await {
        Ok(st) => st,
        Err(e) => return top(e, "the share-group state is unavailable".into()),
    };
    if live.is_none() && states.is_empty() {
        ctx.had_error = true;
        return top(
            code(ResponseError::GroupIdNotFound),
            format!("share group {group:?} not found"),
        );
    }
    let image = ctx.shared.image();
    let mut rows: Vec<(String, i16)> = Vec::new();
    let mut partitions = Vec::new();
    for t in &r.topics {
        let name = t.topic_name.0.to_string();
        let e = if !ctx.allowed(Operation::Read, ResourceType::Topic, &name) {
            code(ResponseError::TopicAuthorizationFailed)
        } else if !image.topics.contains_key(&name) {
            code(ResponseError::UnknownTopicOrPartition)
        } else {
            partitions.extend(
                states
                    .keys()
                    .filter(|(st, _)| *st == name)
                    .map(|(st, p)| (st.clone(), *p)),
            );
            0
        };
        rows.push((name, e));
    }
    if !partitions.is_empty() {
        if let Err(e) = ctx
            .shared
            .meta
            .delete_share_group_states(&group, Some(partitions))
            .await
        {
            tracing::warn!(group, "deleting share-group offsets: {e}");
            for row in rows.iter_mut().filter(|r| r.1 == 0) {
                row.1 = code(ResponseError::CoordinatorNotAvailable);
            }
        }
    }
    if rows.iter().any(|r| r.1 != 0) {
        ctx.had_error = true;
    }
    DeleteShareGroupOffsetsResponse::default().with_responses(
        rows.into_iter()
            .map(|(name, e)| {
                DeleteShareGroupOffsetsResponseTopic::default()
                    .with_topic_id(topic_uuid(&image, &name))
                    .with_topic_name(topic_name(&name))
                    .with_error_code(e)
                    .with_error_message((e != 0).then(|| s("not deleted")))
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------
// For ListGroups and DeleteGroups
// ---------------------------------------------------------------------------------------

/// Ids of the share groups with durable state in the quorum (`GET
/// /api/v1/metadata/share-groups`; groups with only configs are not groups yet).
async fn stored_share_groups(ctx: &Ctx<'_>) -> crate::error::Result<Vec<String>> {
    let reply = ctx
        .shared
        .meta
        .leader_call(reqwest::Method::GET, "/api/v1/metadata/share-groups", None)
        .await?;
    if !reply.status.is_success() {
        return Err(crate::error::BrokerError::Metadata(format!(
            "listing share groups: {} {}",
            reply.status,
            reply.message()
        )));
    }
    Ok(reply
        .body
        .get("groups")
        .and_then(Value::as_array)
        .map(|gs| {
            gs.iter()
                .filter(|g| {
                    g.get("partitions")
                        .and_then(Value::as_array)
                        .is_some_and(|ps| !ps.is_empty())
                })
                .filter_map(|g| g.get("group")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// Share groups this broker coordinates: `(group, state)`, "Stable" with members here, else
/// "Empty" (in memory without members, or only durable state in the quorum).
pub(super) async fn listed_share_groups(ctx: &Ctx<'_>) -> Vec<(String, &'static str)> {
    let image = ctx.shared.image();
    let me = ctx.shared.config.broker_id;
    let mut names: Vec<String> = {
        let st = ctx
            .shared
            .shares
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        st.groups.keys().cloned().collect()
    };
    match stored_share_groups(ctx).await {
        Ok(stored) => names.extend(stored),
        Err(e) => tracing::debug!("listing stored share groups: {e}"),
    }
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|g| coordinator_for(&image, g) == Some(me))
        .map(|g| {
            let stable = live_group(ctx, &g).is_some_and(|l| !l.members.is_empty());
            (g, if stable { "Stable" } else { "Empty" })
        })
        .collect()
}

/// DeleteGroups' share side, after the coordinator check: `Err(NON_EMPTY_GROUP)` while the
/// share group has members here; else the in-memory group is forgotten, the group's durable
/// states are deleted, and `Ok(existed)` says whether there was a share group at all.
pub(super) async fn delete_share_group(ctx: &mut Ctx<'_>, group: &str) -> Result<bool, i16> {
    let in_memory = {
        let mut st = ctx
            .shared
            .shares
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = dmq_log::now_ms();
        let timeout = GroupConfig::default().session_timeout_ms;
        let has_members = st.groups.get(group).is_some_and(|g| {
            g.members
                .values()
                .any(|m| now.saturating_sub(m.last_heartbeat_ms) <= timeout)
        });
        if has_members {
            return Err(code(ResponseError::NonEmptyGroup));
        }
        st.groups.remove(group).is_some()
    };
    match ctx.shared.meta.delete_share_group_states(group, None).await {
        Ok(deleted) => Ok(in_memory || deleted > 0),
        Err(e) => {
            tracing::warn!(group, "deleting share-group state: {e}");
            Err(code(ResponseError::CoordinatorNotAvailable))
        }
    }
}
