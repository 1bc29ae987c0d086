//! Consumer-group offsets in the metadata quorum (seed flow 2, SPEC §3 "groups").
//!
//! ```text
//!   coordinator broker ── POST /api/v1/metadata/offsets {"commits":[…]} ──▶ one CommitOffsets entry
//!                         (many members' commits batched into one Raft entry)
//!   coordinator broker ── GET  /api/v1/metadata/groups/{g}/offsets     ──▶ OffsetFetch
//!   operators          ── GET  /api/v1/metadata/groups[/{g}]            ──▶ offsets, log end, lag
//! ```
//!
//! Group membership (generations, members, assignments) lives on the coordinator broker; only
//! committed offsets are replicated, which is what must survive any single node's loss.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use dmq_types::NO_LEADER;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{ensure_consistent, parse_json, result_error, ReadQuery};
use crate::error::MetadataError;
use crate::node::NodeShared;
use crate::state::{Command, CommandResult, GroupOffsets, OffsetCommit, TopicPartitionRef};

type Shared = Arc<NodeShared>;
type ApiResult<T> = Result<T, MetadataError>;

/// Largest number of commits one request may carry.
const COMMITS_PER_REQUEST_MAX: usize = 10_000;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/metadata/offsets", post(commit_offsets))
        .route("/api/v1/metadata/groups", get(list_groups))
        .route(
            "/api/v1/metadata/groups/{group}",
            get(describe_group).delete(delete_group),
        )
        .route(
            "/api/v1/metadata/groups/{group}/offsets",
            get(group_offsets),
        )
        .route(
            "/api/v1/metadata/groups/{group}/offsets/delete",
            post(delete_offsets),
        )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CommitRequest {
    commits: Vec<OffsetCommit>,
}

/// Internal (coordinator brokers): commits a batch of offsets as one Raft entry. Each commit is
/// stored or refused on its own: the answer lists the refused ones as
/// `"rejected": [{"index", "reason"}]` (unknown topic or partition, no group id, metadata too long).
async fn commit_offsets(State(shared): State<Shared>, body: Bytes) -> ApiResult<Json<Value>> {
    let req: CommitRequest = parse_json(&body)?;
    if req.commits.is_empty() || req.commits.len() > COMMITS_PER_REQUEST_MAX {
        return Err(MetadataError::InvalidRequest(format!(
            "a request carries 1..={COMMITS_PER_REQUEST_MAX} commits"
        )));
    }
    shared.require_leader()?;
    match shared
        .propose(Command::CommitOffsets {
            commits: req.commits,
        })
        .await?
    {
        CommandResult::OffsetsCommitted { count, rejected } => Ok(Json(json!({
            "committed": count,
            "rejected": rejected,
            "version": shared.sm.read().state.version,
        }))),
        other => Err(result_error(other)),
    }
}

/// Leader broker URL per (topic, partition) of the given groups' committed partitions.
pub(crate) fn leader_urls<'a>(
    scheme: &str,
    state: &crate::state::MetadataState,
    groups: impl Iterator<Item = &'a GroupOffsets>,
) -> BTreeMap<(String, i32), String> {
    let mut leaders = BTreeMap::new();
    for g in groups {
        for (topic, parts) in &g.offsets {
            let Some(t) = state.topics.get(topic) else {
                continue;
            };
            for p in parts.keys() {
                let leader = t
                    .partitions
                    .get(*p as usize)
                    .map_or(NO_LEADER, |x| x.leader);
                if let Some(b) = state.brokers.get(&leader) {
                    leaders.insert(
                        (topic.clone(), *p),
                        format!("{scheme}://{}:{}", b.host, b.port),
                    );
                }
            }
        }
    }
    leaders
}

/// Where a partition's consumers can read to, from its leader's replication status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartitionEnd {
    /// The high watermark: what `read_uncommitted` consumers reach, and the log end offset
    /// `kafka-consumer-groups.sh` measures lag against.
    pub high_watermark: i64,
    /// The last stable offset: what `read_committed` consumers reach (Kafka's consumer
    /// reports their lag against it).
    pub last_stable_offset: i64,
}

/// Each leader's URL → `(topic, partition)` → its [`PartitionEnd`].
pub(crate) type LogEnds = BTreeMap<String, BTreeMap<(String, i32), PartitionEnd>>;

/// The end of a partition, from what its leader answered.
fn log_end(
    leaders: &BTreeMap<(String, i32), String>,
    ends: &LogEnds,
    topic: &str,
    partition: i32,
) -> Option<PartitionEnd> {
    let key = (topic.to_string(), partition);
    leaders
        .get(&key)
        .and_then(|url| ends.get(url))
        .and_then(|m| m.get(&key))
        .copied()
}

/// One group's JSON: committed offset, log end offset and lag per partition, and the total
/// lag. `lag` is measured against the high watermark, as `kafka-consumer-groups.sh` does;
/// `stableLag` against the last stable offset, which is what a `read_committed` consumer can
/// still read (records of open transactions and markers are not counted).
pub(crate) fn group_json(
    id: &str,
    g: &GroupOffsets,
    leaders: &BTreeMap<(String, i32), String>,
    ends: &LogEnds,
) -> Value {
    let mut rows = Vec::new();
    let mut total_lag = 0i64;
    for (topic, parts) in &g.offsets {
        for (p, c) in parts {
            let end = log_end(leaders, ends, topic, *p);
            let lag = end.map(|e| (e.high_watermark - c.offset).max(0));
            let stable_lag = end.map(|e| (e.last_stable_offset - c.offset).max(0));
            total_lag += lag.unwrap_or(0);
            rows.push(json!({
                "topic": topic,
                "partition": p,
                "committedOffset": c.offset,
                "leaderEpoch": c.leader_epoch,
                "metadata": c.metadata,
                "commitTimestamp": c.commit_timestamp,
                "logEndOffset": end.map(|e| e.high_watermark),
                "lastStableOffset": end.map(|e| e.last_stable_offset),
                "lag": lag,
                "stableLag": stable_lag,
            }));
        }
    }
    json!({"groupId": id, "partitions": rows, "totalLag": total_lag})
}

/// `(group, topic, partition, lag)` of every committed partition of every group (lag `None`
/// when the partition's leader did not answer): what `/metrics` exports as consumer lag.
pub(crate) async fn group_lags(shared: &NodeShared) -> Vec<(String, String, i32, Option<i64>)> {
    let (groups, leaders) = {
        let data = shared.sm.read();
        let groups = data.state.groups.clone();
        let leaders = leader_urls(shared.config.http_scheme(), &data.state, groups.values());
        (groups, leaders)
    };
    let ends = log_ends(shared, leaders.values().cloned().collect()).await;
    let mut out = Vec::new();
    for (id, g) in &groups {
        for (topic, parts) in &g.offsets {
            for (p, c) in parts {
                let lag = log_end(&leaders, &ends, topic, *p)
                    .map(|e| (e.high_watermark - c.offset).max(0));
                out.push((id.clone(), topic.clone(), *p, lag));
            }
        }
    }
    out
}

/// `?lag=false` skips asking the brokers for log end offsets (brokers listing group ids).
#[derive(Debug, Deserialize)]
struct LagQuery {
    lag: Option<bool>,
}

/// Every group with committed offsets, each as [`group_json`] shows it.
async fn list_groups(
    State(shared): State<Shared>,
    Query(q): Query<ReadQuery>,
    Query(lag): Query<LagQuery>,
) -> ApiResult<Json<Value>> {
    ensure_consistent(&shared, &q).await?;
    let (groups, leaders) = {
        let data = shared.sm.read();
        let groups = data.state.groups.clone();
        let leaders = leader_urls(shared.config.http_scheme(), &data.state, groups.values());
        (groups, leaders)
    };
    let ends = if lag.lag == Some(false) {
        BTreeMap::new()
    } else {
        log_ends(&shared, leaders.values().cloned().collect()).await
    };
    let out: Vec<Value> = groups
        .iter()
        .map(|(id, g)| group_json(id, g, &leaders, &ends))
        .collect();
    Ok(Json(json!(out)))
}

/// The raw committed offsets (what OffsetFetch needs); an unknown group has none.
async fn group_offsets(
    State(shared): State<Shared>,
    Path(group): Path<String>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<Value>> {
    ensure_consistent(&shared, &q).await?;
    let data = shared.sm.read();
    let g = data.state.groups.get(&group).cloned().unwrap_or_default();
    // Offsets committed in transactions still open (KIP-447): a consumer that asks for stable
    // offsets waits for them (UNSTABLE_OFFSET_COMMIT) instead of reading what they replace.
    let pending: Vec<Value> = data
        .state
        .transactions
        .values()
        .filter(|t| t.status == dmq_types::txn::TxnStatus::Ongoing)
        .flat_map(|t| t.pending_offsets.iter())
        .filter(|o| o.group == group)
        .map(|o| json!({"topic": o.topic, "partition": o.partition}))
        .collect();
    Ok(Json(
        json!({"groupId": group, "offsets": g.offsets, "pendingTransactional": pending}),
    ))
}

/// One group: committed offset, log end offset and lag for every committed partition.
async fn describe_group(
    State(shared): State<Shared>,
    Path(group): Path<String>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<Value>> {
    ensure_consistent(&shared, &q).await?;
    let (offsets, leaders) = {
        let data = shared.sm.read();
        let Some(g) = data.state.groups.get(&group).cloned() else {
            return Err(MetadataError::NotFound(format!(
                "group {group:?} has no committed offsets"
            )));
        };
        let leaders = leader_urls(
            shared.config.http_scheme(),
            &data.state,
            std::iter::once(&g),
        );
        (g, leaders)
    };
    let ends = log_ends(&shared, leaders.values().cloned().collect()).await;
    Ok(Json(group_json(&group, &offsets, &leaders, &ends)))
}

/// `(topic, partition) → high watermark and last stable offset` from each leader broker's
/// replication status, asked in parallel; a broker that does not answer within a second
/// contributes nothing (lag null).
pub(crate) async fn log_ends(shared: &NodeShared, urls: Vec<String>) -> LogEnds {
    let mut urls = urls;
    urls.sort();
    urls.dedup();
    let asks = urls.into_iter().map(|url| async move {
        let resp = shared
            .http
            .get(format!("{url}/api/v1/storage/replication/status"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .ok()?;
        let v: Value = resp.json().await.ok()?;
        let mut ends = BTreeMap::new();
        for p in v["partitions"].as_array()? {
            if p["role"] != "LEADER" {
                continue;
            }
            if let (Some(t), Some(i), Some(hw)) = (
                p["topic"].as_str(),
                p["partition"].as_i64(),
                p["highWatermark"].as_i64(),
            ) {
                let end = PartitionEnd {
                    high_watermark: hw,
                    last_stable_offset: p["lastStableOffset"].as_i64().unwrap_or(hw),
                };
                ends.insert((t.to_string(), i as i32), end);
            }
        }
        Some((url, ends))
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

async fn delete_group(
    State(shared): State<Shared>,
    Path(group): Path<String>,
) -> ApiResult<Json<Value>> {
    shared.require_leader()?;
    match shared
        .propose(Command::DeleteGroupOffsets {
            group: group.clone(),
            partitions: None,
        })
        .await?
    {
        CommandResult::GroupOffsetsDeleted { count } => Ok(Json(
            json!({"groupId": group, "deleted": true, "partitions": count}),
        )),
        other => Err(result_error(other)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeleteOffsetsRequest {
    partitions: Vec<TopicPartitionRef>,
}

async fn delete_offsets(
    State(shared): State<Shared>,
    Path(group): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: DeleteOffsetsRequest = parse_json(&body)?;
    shared.require_leader()?;
    match shared
        .propose(Command::DeleteGroupOffsets {
            group: group.clone(),
            partitions: Some(req.partitions),
        })
        .await?
    {
        CommandResult::GroupOffsetsDeleted { count } => {
            Ok(Json(json!({"groupId": group, "deleted": count})))
        }
        other => Err(result_error(other)),
    }
}
