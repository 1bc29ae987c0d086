//! The web console (SPEC §12): a single-page app served at `/ui/` by every metadata node, and
//! the few same-origin endpoints under `/ui/api/` it needs besides the public API.
//!
//! ```text
//!  browser ── GET /ui/, /ui/app.js, /ui/app.css ──▶ assets compiled into the binary (ui/*)
//!     │
//!     ├── GET /api/v1/metadata/… ─────────────────▶ the public API of SPEC §3, read as-is
//!     │
//!     └── /ui/api/… ──▶ this node ─┬─ leader-only writes ──────▶ the controller leader's API
//!                                  ├─ Raft status of each member ▶ every metadata node
//!                                  └─ log offsets, sizes, records,
//!                                     group members, /metrics ──▶ the brokers' HTTP API (SPEC §4)
//! ```
//!
//! The browser can only reach the origin it loaded the page from, so whatever lives on another
//! port (other metadata nodes, brokers) or only on the leader is fetched here and relayed. The
//! endpoints add no capability of their own: each one is a composition of public HTTP APIs,
//! and every answer is JSON (errors `{"error", "message"}` with a 4xx/5xx status).
//!
//! The assets are built from `console/` (Preact + htm + uPlot, bundled by esbuild) with
//! `scripts/build-console.sh`; the bundle is committed in `crates/dmq-metadata/ui/`, so
//! `cargo build` needs no Node.js.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use dmq_types::model::BrokerStatus;
use dmq_types::{BrokerId, NO_LEADER};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::parse_json;
use crate::error::MetadataError;
use crate::groups_api::{group_json, leader_urls, log_ends};
use crate::node::{now_ms, NodeShared};

type Shared = Arc<NodeShared>;
type ApiResult<T> = Result<T, MetadataError>;

/// How long a relayed leader-only write may take (a topic creation waits for its commit).
const LEADER_FORWARD_TIMEOUT_MS: u64 = 15_000;
/// How long one broker may take to answer a console read before it counts as unreachable.
const BROKER_ASK_TIMEOUT_MS: u64 = 1_500;
/// How long one metadata node may take to report its Raft status.
const RAFT_STATUS_TIMEOUT_MS: u64 = 800;
/// Records one message-browser page shows at most.
const BROWSE_LIMIT_MAX: u32 = 500;
/// Largest `/metrics` text relayed per broker.
const METRICS_BYTES_MAX: usize = 8 << 20;
/// Redirects followed when the leader moves while a write is relayed.
const LEADER_HOPS_MAX: usize = 3;

/// Assets compiled into the binary: `(file name, content type, bytes)`.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../ui/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../ui/favicon.svg"),
    ),
];

/// The console's routes; merged into the node's router by `api::router`.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/ui", get(redirect_to_console))
        .route("/ui/", get(index))
        .route("/ui/{file}", get(asset))
        .route("/ui/api/overview", get(overview))
        .route("/ui/api/metrics", get(broker_metrics))
        .route("/ui/api/topics", post(create_topic))
        .route(
            "/ui/api/topics/{name}",
            get(topic_detail).delete(delete_topic),
        )
        .route("/ui/api/topics/{name}/partitions", post(create_partitions))
        .route("/ui/api/topics/{name}/config", patch(alter_topic_config))
        .route(
            "/ui/api/topics/{name}/partitions/{partition}/records",
            get(browse_records),
        )
        .route("/ui/api/groups", get(list_groups))
        .route("/ui/api/groups/{group}", get(describe_group))
        .route("/ui/api/groups/{group}/reset-offsets", post(reset_offsets))
}

// ---------------------------------------------------------------------------------------------
// Static assets
// ---------------------------------------------------------------------------------------------

async fn redirect_to_console() -> Response {
    (StatusCode::PERMANENT_REDIRECT, [(LOCATION, "/ui/")]).into_response()
}

async fn index() -> Response {
    serve_asset("index.html")
}

async fn asset(Path(file): Path<String>) -> Response {
    serve_asset(&file)
}

fn serve_asset(file: &str) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        // The bundle's names do not change between builds, so browsers revalidate each time
        // (a few hundred KiB on loopback); a new binary is then picked up at once.
        Some((_, content_type, bytes)) => (
            [(CONTENT_TYPE, *content_type), (CACHE_CONTROL, "no-cache")],
            *bytes,
        )
            .into_response(),
        None => {
            MetadataError::NotFound(format!("the console has no file {file:?}")).into_response()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Relaying to the leader and to brokers
// ---------------------------------------------------------------------------------------------

/// `base` + the path `segments`, each percent-encoded (topic and group names come from users).
fn url_with(base: &str, segments: &[&str]) -> ApiResult<reqwest::Url> {
    let mut url = reqwest::Url::parse(base)
        .map_err(|e| MetadataError::Unavailable(format!("bad node URL {base:?}: {e}")))?;
    url.path_segments_mut()
        .map_err(|()| MetadataError::Unavailable(format!("node URL {base:?} has no path")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// A relayed answer as this node's answer: same status, same JSON body.
async fn relay(resp: reqwest::Response) -> Response {
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    match resp.bytes().await {
        Ok(body) => (status, [(CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => {
            MetadataError::Unavailable(format!("the answer was cut short: {e}")).into_response()
        }
    }
}

/// Sends a leader-only request (`segments` under the leader's base URL) to the controller
/// leader, following its redirect if the leadership moved meanwhile, and answers with what
/// the leader answered.
async fn forward_to_leader(
    shared: &NodeShared,
    method: Method,
    segments: &[&str],
    body: Option<Bytes>,
) -> ApiResult<Response> {
    let (_, leader_url) = shared.leader();
    let mut base = leader_url.ok_or_else(|| {
        MetadataError::Unavailable("no controller is elected right now; retry shortly".into())
    })?;
    for _ in 0..LEADER_HOPS_MAX {
        let url = url_with(&base, segments)?;
        let mut req = shared
            .http
            .request(method.clone(), url)
            .timeout(Duration::from_millis(LEADER_FORWARD_TIMEOUT_MS));
        if let Some(body) = &body {
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let resp = req.send().await.map_err(|e| {
            MetadataError::Unavailable(format!("the controller at {base} did not answer: {e}"))
        })?;
        let moved = (resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE)
            .then(|| resp.headers().get("X-Controller-Leader"))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .filter(|next| *next != base)
            .map(str::to_string);
        match moved {
            Some(next) => base = next,
            None => return Ok(relay(resp).await),
        }
    }
    Err(MetadataError::Unavailable(
        "the controller leadership kept moving; retry shortly".into(),
    ))
}

/// The HTTP base URL of every registered broker, with whether it is ONLINE.
fn broker_urls(shared: &NodeShared) -> BTreeMap<BrokerId, (String, bool)> {
    let scheme = shared.config.http_scheme();
    shared
        .sm
        .read()
        .state
        .brokers
        .values()
        .map(|b| {
            (
                b.broker_id,
                (
                    format!("{scheme}://{}:{}", b.host, b.port),
                    b.status == BrokerStatus::Online,
                ),
            )
        })
        .collect()
}

/// GETs `url` and parses its JSON: `Ok((status, body))`, or `Err` with why nothing usable came.
async fn get_json(
    shared: &NodeShared,
    url: reqwest::Url,
    timeout_ms: u64,
) -> Result<(u16, Value), String> {
    let resp = shared
        .http
        .get(url)
        .timeout(Duration::from_millis(timeout_ms))
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .json::<Value>()
        .await
        .map_err(|e| format!("answer is not JSON: {e}"))?;
    Ok((status, body))
}

/// Each listed broker's replication status (`GET /api/v1/storage/replication/status`), asked
/// in parallel; a broker that does not answer maps to its error.
async fn replication_statuses(
    shared: &NodeShared,
    brokers: Vec<(BrokerId, String)>,
) -> BTreeMap<BrokerId, Result<Value, String>> {
    let asks = brokers.into_iter().map(|(id, base)| async move {
        let answer = match url_with(&base, &["api", "v1", "storage", "replication", "status"]) {
            Ok(url) => match get_json(shared, url, BROKER_ASK_TIMEOUT_MS).await {
                Ok((200, v)) => Ok(v),
                Ok((status, v)) => Err(format!("HTTP {status}: {}", v["message"])),
                Err(e) => Err(e),
            },
            Err(e) => Err(e.to_string()),
        };
        (id, answer)
    });
    futures::future::join_all(asks).await.into_iter().collect()
}

/// `(topic, partition) → that partition's entry in its leader's replication status`.
fn leader_rows(
    statuses: &BTreeMap<BrokerId, Result<Value, String>>,
) -> BTreeMap<(String, i64), Value> {
    let mut rows = BTreeMap::new();
    for status in statuses.values().flatten() {
        for p in status["partitions"].as_array().into_iter().flatten() {
            if p["role"] != "LEADER" {
                continue;
            }
            if let (Some(t), Some(i)) = (p["topic"].as_str(), p["partition"].as_i64()) {
                rows.insert((t.to_string(), i), p.clone());
            }
        }
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------------------------

/// Everything the overview page shows in one answer: the controller, each Raft member's
/// status and how far its applied index trails the leader's commit index, the brokers with
/// their state and partition counts, and the under-replicated and offline partitions (by the
/// metadata: ISR smaller than the replica set; no leader, or a leader that is not ONLINE).
async fn overview(State(shared): State<Shared>) -> Json<Value> {
    let m = shared.raft.metrics().borrow().clone();
    let (version, brokers, topics) = {
        let data = shared.sm.read();
        (
            data.state.version,
            data.state.brokers.values().cloned().collect::<Vec<_>>(),
            data.state.topics.values().cloned().collect::<Vec<_>>(),
        )
    };
    let online: BTreeSet<BrokerId> = brokers
        .iter()
        .filter(|b| b.status == BrokerStatus::Online)
        .map(|b| b.broker_id)
        .collect();
    let mut replicas: BTreeMap<BrokerId, usize> = BTreeMap::new();
    let mut leaders: BTreeMap<BrokerId, usize> = BTreeMap::new();
    let (mut under_replicated, mut offline) = (Vec::new(), Vec::new());
    let mut partitions = 0usize;
    for t in &topics {
        for p in &t.partitions {
            partitions += 1;
            for r in &p.replicas {
                *replicas.entry(*r).or_default() += 1;
            }
            if p.leader != NO_LEADER {
                *leaders.entry(p.leader).or_default() += 1;
            }
            let row = json!({
                "topic": t.topic_name, "partition": p.partition_id, "leader": p.leader,
                "replicas": p.replicas, "isr": p.isr,
            });
            if p.leader == NO_LEADER || !online.contains(&p.leader) {
                offline.push(row);
            } else if p.isr.len() < p.replicas.len() {
                under_replicated.push(row);
            }
        }
    }
    let brokers: Vec<Value> = brokers
        .into_iter()
        .map(|b| {
            let b = shared.with_live_heartbeat(b);
            json!({
                "brokerId": b.broker_id, "host": b.host, "port": b.port,
                "kafkaPort": b.kafka_port, "status": b.status,
                "lastHeartbeat": b.last_heartbeat, "brokerEpoch": b.broker_epoch,
                "replicas": replicas.get(&b.broker_id).copied().unwrap_or(0),
                "leaders": leaders.get(&b.broker_id).copied().unwrap_or(0),
            })
        })
        .collect();
    let raft_members = raft_members(&shared).await;
    Json(json!({
        "servedBy": shared.node_id,
        "version": version,
        "timestamp": now_ms(),
        "controller": {
            "controllerId": m.current_leader,
            "controllerUrl": m.current_leader.and_then(|id| shared.member_url(id)),
            "controllerTerm": m.current_term,
        },
        "raftMembers": raft_members,
        "brokers": brokers,
        "topics": topics.len(),
        "partitions": partitions,
        "underReplicated": under_replicated,
        "offline": offline,
    }))
}

/// Each quorum member's `GET /api/v1/raft/status`, with `lag`: the leader's commit index minus
/// the member's applied index (entries it has yet to apply). A member that does not answer is
/// listed with `reachable: false` and the reason.
async fn raft_members(shared: &NodeShared) -> Vec<Value> {
    let asks = shared.members.iter().map(|(id, base)| async move {
        let status = match url_with(base, &["api", "v1", "raft", "status"]) {
            Ok(url) => get_json(shared, url, RAFT_STATUS_TIMEOUT_MS).await,
            Err(e) => Err(e.to_string()),
        };
        (*id, base.clone(), status)
    });
    let answers = futures::future::join_all(asks).await;
    let leader_commit = answers
        .iter()
        .filter_map(|(_, _, s)| s.as_ref().ok())
        .find(|(_, v)| v["isLeader"] == true)
        .and_then(|(_, v)| v["commitIndex"].as_u64());
    answers
        .into_iter()
        .map(|(id, url, status)| match status {
            Ok((200, v)) => {
                let applied = v["lastApplied"].as_u64();
                let lag = leader_commit.zip(applied).map(|(c, a)| c.saturating_sub(a));
                json!({
                    "nodeId": id, "url": url, "reachable": true,
                    "state": v["state"], "currentTerm": v["currentTerm"],
                    "commitIndex": v["commitIndex"], "lastApplied": v["lastApplied"],
                    "lastLogIndex": v["lastLogIndex"], "snapshotIndex": v["snapshotIndex"],
                    "lag": lag,
                })
            }
            Ok((status, v)) => json!({
                "nodeId": id, "url": url, "reachable": false,
                "error": format!("HTTP {status}: {}", v["message"]),
            }),
            Err(e) => json!({"nodeId": id, "url": url, "reachable": false, "error": e}),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// Every registered broker's `/metrics` text (Prometheus exposition format), as
/// `{"timestamp", "brokers": [{"brokerId", "status", "text"} | {"brokerId", "status", "error"}]}`.
/// The console parses the text and computes rates and quantiles from successive scrapes.
async fn broker_metrics(State(shared): State<Shared>) -> Json<Value> {
    let brokers = broker_urls(&shared);
    let asks = brokers.into_iter().map(|(id, (base, online))| {
        let shared = shared.clone();
        async move {
            let status = if online { "ONLINE" } else { "OFFLINE" };
            if !online {
                return json!({"brokerId": id, "status": status, "error": "broker is OFFLINE"});
            }
            match scrape(&shared, &base).await {
                Ok(text) => json!({"brokerId": id, "status": status, "text": text}),
                Err(e) => json!({"brokerId": id, "status": status, "error": e}),
            }
        }
    });
    let brokers = futures::future::join_all(asks).await;
    Json(json!({"timestamp": now_ms(), "brokers": brokers}))
}

async fn scrape(shared: &NodeShared, base: &str) -> Result<String, String> {
    let url = url_with(base, &["metrics"]).map_err(|e| e.to_string())?;
    let resp = shared
        .http
        .get(url)
        .timeout(Duration::from_millis(BROKER_ASK_TIMEOUT_MS))
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status().as_u16()));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > METRICS_BYTES_MAX as u64)
    {
        return Err(format!("metrics text is over {METRICS_BYTES_MAX} bytes"));
    }
    let body = resp.bytes().await.map_err(|e| format!("cut short: {e}"))?;
    if body.len() > METRICS_BYTES_MAX {
        return Err(format!("metrics text is over {METRICS_BYTES_MAX} bytes"));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Topics
// ---------------------------------------------------------------------------------------------

/// `POST /api/v1/metadata/topics` on the leader.
async fn create_topic(State(shared): State<Shared>, body: Bytes) -> ApiResult<Response> {
    forward_to_leader(
        &shared,
        Method::POST,
        &["api", "v1", "metadata", "topics"],
        Some(body),
    )
    .await
}

/// `DELETE /api/v1/metadata/topics/{name}` on the leader.
async fn delete_topic(
    State(shared): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    forward_to_leader(
        &shared,
        Method::DELETE,
        &["api", "v1", "metadata", "topics", &name],
        None,
    )
    .await
}

/// `POST /api/v1/metadata/topics/{name}/partitions` on the leader (grow the topic).
async fn create_partitions(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    forward_to_leader(
        &shared,
        Method::POST,
        &["api", "v1", "metadata", "topics", &name, "partitions"],
        Some(body),
    )
    .await
}

/// `PATCH /api/v1/metadata/topics/{name}/config` on the leader.
async fn alter_topic_config(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    forward_to_leader(
        &shared,
        Method::PATCH,
        &["api", "v1", "metadata", "topics", &name, "config"],
        Some(body),
    )
    .await
}

/// A topic as the metadata has it, each partition completed with what its leader broker
/// reports: log start and end offsets, high watermark and size on disk (`null` when the leader
/// did not answer; `brokerErrors` then says why).
async fn topic_detail(
    State(shared): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let topic = shared
        .sm
        .read()
        .state
        .topics
        .get(&name)
        .cloned()
        .ok_or_else(|| MetadataError::NotFound(format!("topic {name:?} does not exist")))?;
    let brokers = broker_urls(&shared);
    let leaders: BTreeSet<BrokerId> = topic.partitions.iter().map(|p| p.leader).collect();
    let asked: Vec<(BrokerId, String)> = leaders
        .iter()
        .filter_map(|id| {
            let (url, online) = brokers.get(id)?;
            online.then(|| (*id, url.clone()))
        })
        .collect();
    let statuses = replication_statuses(&shared, asked).await;
    let rows = leader_rows(&statuses);
    let partitions: Vec<Value> = topic
        .partitions
        .iter()
        .map(|p| {
            let live = rows.get(&(name.clone(), i64::from(p.partition_id)));
            let field = |k: &str| live.map_or(Value::Null, |r| r[k].clone());
            let leader_online = brokers.get(&p.leader).is_some_and(|(_, online)| *online);
            json!({
                "partitionId": p.partition_id, "leader": p.leader, "leaderEpoch": p.leader_epoch,
                "replicas": p.replicas, "isr": p.isr,
                "underReplicated": p.isr.len() < p.replicas.len(),
                "offline": p.leader == NO_LEADER || !leader_online,
                "logStartOffset": field("logStartOffset"), "logEndOffset": field("logEndOffset"),
                "highWatermark": field("highWatermark"), "sizeBytes": field("sizeBytes"),
            })
        })
        .collect();
    let broker_errors: BTreeMap<String, String> = statuses
        .into_iter()
        .filter_map(|(id, s)| s.err().map(|e| (id.to_string(), e)))
        .collect();
    Ok(Json(json!({
        "topicName": topic.topic_name,
        "topicId": topic.topic_id,
        "numPartitions": topic.num_partitions,
        "replicationFactor": topic.replication_factor,
        "config": topic.config,
        "createdAt": topic.created_at,
        "partitions": partitions,
        "brokerErrors": broker_errors,
    })))
}

#[derive(Debug, Deserialize)]
struct BrowseQuery {
    offset: Option<String>,
    limit: Option<String>,
}

/// One page of a partition's records from its leader broker
/// (`GET /api/v1/storage/topics/{topic}/partitions/{p}?offset=&limit=`, SPEC §4), relayed as
/// the broker answered. Follows the broker's `X-Partition-Leader` once if leadership moved.
async fn browse_records(
    State(shared): State<Shared>,
    Path((name, partition)): Path<(String, String)>,
    Query(q): Query<BrowseQuery>,
) -> ApiResult<Response> {
    let partition: i32 = partition.parse().map_err(|_| {
        MetadataError::InvalidRequest(format!("partition must be an integer, got {partition:?}"))
    })?;
    let offset: i64 = match q.offset.as_deref() {
        None => 0,
        Some(s) => s.parse().map_err(|_| {
            MetadataError::InvalidRequest(format!("offset must be an integer, got {s:?}"))
        })?,
    };
    let limit: u32 = match q.limit.as_deref() {
        None => 50,
        Some(s) => s
            .parse()
            .ok()
            .filter(|n| (1..=BROWSE_LIMIT_MAX).contains(n))
            .ok_or_else(|| {
                MetadataError::InvalidRequest(format!(
                    "limit must be within 1..={BROWSE_LIMIT_MAX}"
                ))
            })?,
    };
    let leader = {
        let data = shared.sm.read();
        let topic = data
            .state
            .topics
            .get(&name)
            .ok_or_else(|| MetadataError::NotFound(format!("topic {name:?} does not exist")))?;
        topic
            .partitions
            .get(usize::try_from(partition).unwrap_or(usize::MAX))
            .map(|p| p.leader)
            .ok_or_else(|| {
                MetadataError::NotFound(format!("topic {name:?} has no partition {partition}"))
            })?
    };
    let Some((mut base, _)) = broker_urls(&shared).remove(&leader) else {
        return Err(MetadataError::Unavailable(format!(
            "partition {partition} of {name:?} has no leader right now"
        )));
    };
    let part = partition.to_string();
    for _ in 0..2 {
        let mut url = url_with(
            &base,
            &["api", "v1", "storage", "topics", &name, "partitions", &part],
        )?;
        url.query_pairs_mut()
            .append_pair("offset", &offset.to_string())
            .append_pair("limit", &limit.to_string());
        let resp = shared
            .http
            .get(url)
            .timeout(Duration::from_millis(BROKER_ASK_TIMEOUT_MS * 2))
            .send()
            .await
            .map_err(|e| {
                MetadataError::Unavailable(format!("leader broker {base} did not answer: {e}"))
            })?;
        let moved = (resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE)
            .then(|| resp.headers().get("X-Partition-Leader"))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .filter(|next| *next != base)
            .map(str::to_string);
        match moved {
            Some(next) => base = next,
            None => return Ok(relay(resp).await),
        }
    }
    Err(MetadataError::Unavailable(format!(
        "the leadership of partition {partition} of {name:?} is moving; retry shortly"
    )))
}

// ---------------------------------------------------------------------------------------------
// Consumer groups
// ---------------------------------------------------------------------------------------------

/// What the brokers know of a group's membership: the answer of the broker that coordinates
/// it (or of any broker that has members of it), or `Ok(None)` if no broker has members.
/// `Err` names the ONLINE brokers that did not answer: membership is then unknown.
async fn group_membership(shared: &NodeShared, group: &str) -> Result<Option<Value>, String> {
    let asks = broker_urls(shared)
        .into_iter()
        .filter(|(_, (_, online))| *online)
        .map(|(id, (base, _))| async move {
            let url = url_with(&base, &["api", "v1", "storage", "groups", group])
                .map_err(|e| e.to_string())?;
            match get_json(shared, url, BROKER_ASK_TIMEOUT_MS).await {
                Ok((200, v)) => Ok(Some(v)),
                Ok((404, _)) => Ok(None),
                Ok((status, v)) => Err(format!("broker {id}: HTTP {status}: {}", v["message"])),
                Err(e) => Err(format!("broker {id}: {e}")),
            }
        });
    let answers = futures::future::join_all(asks).await;
    let mut found: Vec<Value> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    for a in answers {
        match a {
            Ok(Some(v)) => found.push(v),
            Ok(None) => {}
            Err(e) => failed.push(e),
        }
    }
    found.sort_by_key(|v| v["coordinator"] != true);
    match found.into_iter().next() {
        Some(v) => Ok(Some(v)),
        None if failed.is_empty() => Ok(None),
        None => Err(failed.join("; ")),
    }
}

/// Every group known to the quorum (committed offsets) or to a coordinator broker (members):
/// `[{"groupId", "state", "members", "protocolType", "coordinator", "partitions", "totalLag"}]`.
async fn list_groups(State(shared): State<Shared>) -> Json<Value> {
    let (committed, leaders) = {
        let data = shared.sm.read();
        let groups = data.state.groups.clone();
        let leaders = leader_urls(shared.config.http_scheme(), &data.state, groups.values());
        (groups, leaders)
    };
    let ends = log_ends(&shared, leaders.values().cloned().collect()).await;
    let listings = broker_urls(&shared)
        .into_iter()
        .filter(|(_, (_, online))| *online)
        .map(|(id, (base, _))| {
            let shared = shared.clone();
            async move {
                let url = url_with(&base, &["api", "v1", "storage", "groups"]).ok()?;
                match get_json(&shared, url, BROKER_ASK_TIMEOUT_MS).await {
                    Ok((200, v)) => Some((id, v)),
                    _ => None,
                }
            }
        });
    let mut active: BTreeMap<String, Value> = BTreeMap::new();
    for (id, listing) in futures::future::join_all(listings)
        .await
        .into_iter()
        .flatten()
    {
        for g in listing["groups"].as_array().into_iter().flatten() {
            let Some(gid) = g["groupId"].as_str() else {
                continue;
            };
            let mut g = g.clone();
            g["coordinatorId"] = json!(id);
            // Two brokers know the group only while it moves; prefer its coordinator's view.
            let keep = active
                .get(gid)
                .is_some_and(|old| old["coordinator"] == true && g["coordinator"] != true);
            if !keep {
                active.insert(gid.to_string(), g);
            }
        }
    }
    let ids: BTreeSet<String> = committed.keys().chain(active.keys()).cloned().collect();
    let out: Vec<Value> = ids
        .into_iter()
        .map(|id| {
            let lag = committed
                .get(&id)
                .map(|g| group_json(&id, g, &leaders, &ends));
            let live = active.get(&id);
            json!({
                "groupId": id,
                "state": live.map_or(json!("Empty"), |g| g["state"].clone()),
                "protocolType": live.map_or(json!("consumer"), |g| g["protocolType"].clone()),
                "members": live.map_or(json!(0), |g| g["members"].clone()),
                "coordinator": live.map_or(Value::Null, |g| g["coordinatorId"].clone()),
                "partitions": lag.as_ref().map_or(0, |l| l["partitions"].as_array().map_or(0, Vec::len)),
                "totalLag": lag.as_ref().map_or(json!(0), |l| l["totalLag"].clone()),
            })
        })
        .collect();
    Json(json!(out))
}

/// One group: its members and their assignments (from the coordinator broker) and its
/// committed offsets with log end offset and lag per partition (from the quorum). 404 when
/// neither knows the group.
async fn describe_group(
    State(shared): State<Shared>,
    Path(group): Path<String>,
) -> ApiResult<Json<Value>> {
    let (committed, leaders) = {
        let data = shared.sm.read();
        let g = data.state.groups.get(&group).cloned();
        let leaders = g
            .as_ref()
            .map(|g| leader_urls(shared.config.http_scheme(), &data.state, std::iter::once(g)))
            .unwrap_or_default();
        (g, leaders)
    };
    let (ends, membership) = futures::future::join(
        log_ends(&shared, leaders.values().cloned().collect()),
        group_membership(&shared, &group),
    )
    .await;
    let (membership, membership_error) = match membership {
        Ok(m) => (m, None),
        Err(e) => (None, Some(e)),
    };
    if committed.is_none() && membership.is_none() && membership_error.is_none() {
        return Err(MetadataError::NotFound(format!(
            "group {group:?} has neither members nor committed offsets"
        )));
    }
    let offsets = committed
        .as_ref()
        .map(|g| group_json(&group, g, &leaders, &ends));
    let m = membership.unwrap_or(Value::Null);
    Ok(Json(json!({
        "groupId": group,
        "state": if m.is_null() { json!("Empty") } else { m["state"].clone() },
        "generation": m["generation"],
        "protocolType": m["protocolType"],
        "protocol": m["protocol"],
        "leader": m["leader"],
        "coordinator": m["brokerId"],
        "members": if m.is_null() { json!([]) } else { m["members"].clone() },
        "membershipError": membership_error,
        "partitions": offsets.as_ref().map_or(json!([]), |o| o["partitions"].clone()),
        "totalLag": offsets.as_ref().map_or(json!(0), |o| o["totalLag"].clone()),
    })))
}

/// Body of `POST /ui/api/groups/{group}/reset-offsets`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ResetRequest {
    /// `earliest` (log start), `latest` (high watermark) or `offset` (with `offset`).
    to: String,
    offset: Option<i64>,
    /// Only this topic (default: every topic the group has offsets for).
    topic: Option<String>,
    /// Only this partition of `topic`.
    partition: Option<i32>,
    /// Answer the new offsets without committing them.
    #[serde(default)]
    dry_run: bool,
}

/// Where a reset moves the group's offsets.
#[derive(Debug, Clone, Copy)]
enum ResetTarget {
    Earliest,
    Latest,
    Offset(i64),
}

/// Moves a consumer group's committed offsets, as `kafka-consumer-groups --reset-offsets` (and
/// `dmq group reset-offsets`) do: only while the group has no active members (409
/// `NON_EMPTY_GROUP` otherwise, 503 when a broker that might coordinate it does not answer),
/// to the log start, the high watermark or a given offset (kept within the two), through the
/// quorum's offset commit. Answers `{"groupId", "dryRun", "partitions": [{"topic",
/// "partition", "previousOffset", "newOffset"}]}`.
async fn reset_offsets(
    State(shared): State<Shared>,
    Path(group): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: ResetRequest = parse_json(&body)?;
    let target =
        match (req.to.as_str(), req.offset) {
            ("earliest", None) => ResetTarget::Earliest,
            ("latest", None) => ResetTarget::Latest,
            ("offset", Some(o)) if o >= 0 => ResetTarget::Offset(o),
            _ => return Err(MetadataError::InvalidRequest(
                "\"to\" is \"earliest\", \"latest\" or \"offset\" (with a non-negative \"offset\")"
                    .into(),
            )),
        };
    if req.partition.is_some() && req.topic.is_none() {
        return Err(MetadataError::InvalidRequest(
            "\"partition\" needs \"topic\"".into(),
        ));
    }
    match group_membership(&shared, &group).await {
        Ok(Some(m)) if m["members"].as_array().is_some_and(|v| !v.is_empty()) => {
            return Err(MetadataError::Fenced {
                code: "NON_EMPTY_GROUP",
                message: format!(
                    "group {group:?} has {} active member(s) (state {}); stop them before \
                     resetting its offsets",
                    m["members"].as_array().map_or(0, Vec::len),
                    m["state"].as_str().unwrap_or("?")
                ),
            })
        }
        Ok(_) => {}
        Err(e) => {
            return Err(MetadataError::Unavailable(format!(
                "cannot tell whether group {group:?} has active members: {e}"
            )))
        }
    }
    let (previous, partitions, leaders) = reset_partitions(&shared, &group, &req)?;
    let asked: Vec<(BrokerId, String)> = leaders.into_iter().collect();
    let rows = leader_rows(&replication_statuses(&shared, asked).await);
    let mut moves = Vec::new();
    for (topic, p) in &partitions {
        let Some(live) = rows.get(&(topic.clone(), i64::from(*p))) else {
            return Err(MetadataError::Unavailable(format!(
                "the leader of {topic}-{p} did not report its offsets; retry shortly"
            )));
        };
        let start = live["logStartOffset"].as_i64().unwrap_or(0);
        let end = live["highWatermark"].as_i64().unwrap_or(start);
        let new = match target {
            ResetTarget::Earliest => start,
            ResetTarget::Latest => end,
            ResetTarget::Offset(o) => o.clamp(start, end.max(start)),
        };
        let old = previous.get(&(topic.clone(), *p)).copied();
        moves.push((topic.clone(), *p, old, new));
    }
    if !req.dry_run {
        let commit_timestamp = now_ms();
        let commits: Vec<Value> = moves
            .iter()
            .map(|(topic, p, _, new)| {
                json!({"groupId": group, "topic": topic, "partition": p, "offset": new,
                       "commitTimestamp": commit_timestamp})
            })
            .collect();
        let body = Bytes::from(json!({ "commits": commits }).to_string());
        let resp = forward_to_leader(
            &shared,
            Method::POST,
            &["api", "v1", "metadata", "offsets"],
            Some(body),
        )
        .await?;
        let status = resp.status();
        let answer = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(MetadataError::Unavailable(format!(
                "the controller refused the commit ({status}): {}",
                answer["message"]
            )));
        }
        if answer["rejected"].as_array().is_some_and(|r| !r.is_empty()) {
            return Err(MetadataError::InvalidRequest(format!(
                "the controller refused some offsets: {}",
                answer["rejected"]
            )));
        }
    }
    Ok(Json(json!({
        "groupId": group,
        "dryRun": req.dry_run,
        "partitions": moves.iter().map(|(topic, p, old, new)| json!({
            "topic": topic, "partition": p, "previousOffset": old, "newOffset": new,
        })).collect::<Vec<_>>(),
    })))
}

/// Previous offsets, the `(topic, partition)`s a reset moves, and the leader brokers
/// (`id → URL`) to ask for their log start and high watermark.
#[allow(clippy::type_complexity)]
fn reset_partitions(
    shared: &NodeShared,
    group: &str,
    req: &ResetRequest,
) -> ApiResult<(
    BTreeMap<(String, i32), i64>,
    Vec<(String, i32)>,
    BTreeMap<BrokerId, String>,
)> {
    let data = shared.sm.read();
    let state = &data.state;
    let previous: BTreeMap<(String, i32), i64> = state
        .groups
        .get(group)
        .map(|g| {
            g.offsets
                .iter()
                .flat_map(|(t, parts)| parts.iter().map(move |(p, c)| ((t.clone(), *p), c.offset)))
                .collect()
        })
        .unwrap_or_default();
    let mut partitions: Vec<(String, i32)> = match &req.topic {
        None => previous.keys().cloned().collect(),
        Some(topic) => {
            let t = state.topics.get(topic).ok_or_else(|| {
                MetadataError::NotFound(format!("topic {topic:?} does not exist"))
            })?;
            t.partitions
                .iter()
                .map(|p| (topic.clone(), p.partition_id))
                .filter(|(_, p)| req.partition.is_none_or(|only| only == *p))
                .collect()
        }
    };
    partitions.retain(|(t, _)| state.topics.contains_key(t));
    if partitions.is_empty() {
        return Err(MetadataError::InvalidRequest(format!(
            "group {group:?} has no committed offsets to reset; name a topic"
        )));
    }
    let mut leaders = BTreeMap::new();
    for (topic, p) in &partitions {
        let leader = state
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(usize::try_from(*p).unwrap_or(usize::MAX)))
            .map_or(NO_LEADER, |x| x.leader);
        let Some(b) = state
            .brokers
            .get(&leader)
            .filter(|b| b.status == BrokerStatus::Online)
        else {
            return Err(MetadataError::Unavailable(format!(
                "{topic}-{p} has no ONLINE leader right now"
            )));
        };
        leaders.insert(
            leader,
            format!("{}://{}:{}", shared.config.http_scheme(), b.host, b.port),
        );
    }
    Ok((previous, partitions, leaders))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_segments_are_percent_encoded() {
        let url = url_with(
            "http://127.0.0.1:8081",
            &["api", "v1", "storage", "groups", "a/b c?#"],
        )
        .expect("url");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8081/api/v1/storage/groups/a%2Fb%20c%3F%23"
        );
        let url = url_with("http://h:1/", &["metrics"]).expect("url");
        assert_eq!(url.as_str(), "http://h:1/metrics");
    }

    #[test]
    fn every_asset_is_embedded_and_the_page_loads_them() {
        for (name, _, bytes) in ASSETS {
            assert!(
                !bytes.is_empty(),
                "{name} is empty: run scripts/build-console.sh"
            );
        }
        let index = String::from_utf8_lossy(ASSETS[0].2);
        for file in ["app.js", "app.css", "favicon.svg"] {
            assert!(index.contains(file), "index.html does not load {file}");
        }
    }

    #[tokio::test]
    async fn unknown_assets_are_json_404s() {
        let resp = serve_asset("../Cargo.toml");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .expect("body");
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["error"], "NOT_FOUND");
        let resp = serve_asset("app.js");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("text/javascript; charset=utf-8")
        );
    }
}
