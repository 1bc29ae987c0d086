//! Share groups in the metadata quorum over HTTP (see [`crate::shares`]).
//!
//! ```text
//!   partition leaders ── POST  /api/v1/metadata/share-states {"writes":[…]}     ──▶ one WriteShareStates entry
//!   leaders, admins   ── GET   /api/v1/metadata/share-groups[/{g}]              ──▶ states (and configs)
//!   admins            ── DELETE /api/v1/metadata/share-groups/{g}               ──▶ DeleteGroups
//!   admins            ── POST  /api/v1/metadata/share-groups/{g}/offsets/delete ──▶ DeleteShareGroupOffsets
//!   admins, brokers   ── GET/PATCH /api/v1/metadata/group-configs/{g}           ──▶ group configs
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{ensure_consistent, parse_json, result_error, ReadQuery};
use crate::error::MetadataError;
use crate::node::NodeShared;
use crate::shares::{ShareGroupState, ShareStateWrite};
use crate::state::{Command, CommandResult, TopicPartitionRef};

type Shared = Arc<NodeShared>;
type ApiResult<T> = Result<T, MetadataError>;

/// Largest number of share-partition states one request may carry.
const WRITES_PER_REQUEST_MAX: usize = 10_000;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/metadata/share-states", post(write_states))
        .route("/api/v1/metadata/share-groups", get(list_share_groups))
        .route(
            "/api/v1/metadata/share-groups/{group}",
            get(describe_share_group).delete(delete_share_group),
        )
        .route(
            "/api/v1/metadata/share-groups/{group}/offsets/delete",
            post(delete_share_offsets),
        )
        .route(
            "/api/v1/metadata/group-configs/{group}",
            get(group_config).patch(alter_group_config),
        )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WriteRequest {
    writes: Vec<ShareStateWrite>,
}

/// Internal (partition leaders): share-partition states as one Raft entry. Each write is
/// stored or refused on its own: `"rejected": [{"index", "code", "reason"}]`.
async fn write_states(State(shared): State<Shared>, body: Bytes) -> ApiResult<Json<Value>> {
    let req: WriteRequest = parse_json(&body)?;
    if req.writes.is_empty() || req.writes.len() > WRITES_PER_REQUEST_MAX {
        return Err(MetadataError::InvalidRequest(format!(
            "a request carries 1..={WRITES_PER_REQUEST_MAX} writes"
        )));
    }
    shared.require_leader()?;
    match shared
        .propose(Command::WriteShareStates { writes: req.writes })
        .await?
    {
        CommandResult::ShareStatesWritten { count, rejected } => Ok(Json(json!({
            "written": count,
            "rejected": rejected,
            "version": shared.sm.read().state.version,
        }))),
        other => Err(result_error(other)),
    }
}

fn group_json(group: &str, state: Option<&ShareGroupState>, config: Value) -> Value {
    let partitions: Vec<Value> = state
        .map(|g| {
            g.states()
                .map(|(topic, partition, s)| {
                    json!({
                        "topic": topic,
                        "partition": partition,
                        "leaderEpoch": s.leader_epoch,
                        "snapshot": s.snapshot,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({ "group": group, "config": config, "partitions": partitions })
}

/// Every share group with stored state or configs.
async fn list_share_groups(
    State(shared): State<Shared>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<Value>> {
    ensure_consistent(&shared, &q).await?;
    let data = shared.sm.read();
    let st = &data.state;
    let mut names: Vec<&String> = st.share_groups.keys().collect();
    names.extend(st.group_configs.keys());
    names.sort();
    names.dedup();
    let groups: Vec<Value> = names
        .into_iter()
        .map(|g| group_json(g, st.share_groups.get(g), json!(st.group_configs.get(g))))
        .collect();
    Ok(Json(json!({ "groups": groups, "version": st.version })))
}

/// One share group's states and configs (empty for a group the quorum knows nothing of: a
/// share group with no acknowledgement yet has no state).
async fn describe_share_group(
    State(shared): State<Shared>,
    Path(group): Path<String>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<Value>> {
    ensure_consistent(&shared, &q).await?;
    let data = shared.sm.read();
    let st = &data.state;
    let mut v = group_json(
        &group,
        st.share_groups.get(&group),
        json!(st.group_configs.get(&group).cloned().unwrap_or_default()),
    );
    v["version"] = json!(st.version);
    Ok(Json(v))
}

async fn delete_states(
    shared: &NodeShared,
    group: String,
    partitions: Option<Vec<TopicPartitionRef>>,
) -> ApiResult<Json<Value>> {
    shared.require_leader()?;
    match shared
        .propose(Command::DeleteShareStates { group, partitions })
        .await?
    {
        CommandResult::ShareStatesDeleted { count } => Ok(Json(json!({ "deleted": count }))),
        other => Err(result_error(other)),
    }
}

/// DeleteGroups for a share group: every state of the group goes.
async fn delete_share_group(
    State(shared): State<Shared>,
    Path(group): Path<String>,
) -> ApiResult<Json<Value>> {
    delete_states(&shared, group, None).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeleteOffsetsRequest {
    partitions: Vec<TopicPartitionRef>,
}

/// DeleteShareGroupOffsets: the listed share-partitions' states go (the next fetch starts
/// them over at `share.auto.offset.reset`).
async fn delete_share_offsets(
    State(shared): State<Shared>,
    Path(group): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: DeleteOffsetsRequest = parse_json(&body)?;
    delete_states(&shared, group, Some(req.partitions)).await
}

async fn group_config(
    State(shared): State<Shared>,
    Path(group): Path<String>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<Value>> {
    ensure_consistent(&shared, &q).await?;
    let data = shared.sm.read();
    let config = data
        .state
        .group_configs
        .get(&group)
        .cloned()
        .unwrap_or_default();
    Ok(Json(json!({ "group": group, "config": config })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AlterConfigRequest {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    delete: Vec<String>,
}

/// IncrementalAlterConfigs on a GROUP resource. An unknown name or a bad value is 400
/// INVALID_CONFIG and changes nothing.
async fn alter_group_config(
    State(shared): State<Shared>,
    Path(group): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: AlterConfigRequest = parse_json(&body)?;
    for (k, v) in &req.set {
        match crate::shares::check_group_config(k, v) {
            Some(Ok(())) => {}
            Some(Err(message)) => {
                return Err(MetadataError::Invalid {
                    code: "INVALID_CONFIG",
                    message,
                })
            }
            None => {
                return Err(MetadataError::Invalid {
                    code: "INVALID_CONFIG",
                    message: format!("{k} is not a group config"),
                })
            }
        }
    }
    if let Some(k) = req
        .delete
        .iter()
        .find(|k| crate::shares::check_group_config(k, "").is_none())
    {
        return Err(MetadataError::Invalid {
            code: "INVALID_CONFIG",
            message: format!("{k} is not a group config"),
        });
    }
    shared.require_leader()?;
    match shared
        .propose(Command::AlterGroupConfig {
            group,
            set: req.set,
            delete: req.delete,
        })
        .await?
    {
        CommandResult::GroupConfig { group, config } => {
            Ok(Json(json!({ "group": group, "config": config })))
        }
        other => Err(result_error(other)),
    }
}
