//! The metadata node's HTTP API (SPEC §3), the internal Raft RPCs, `/metrics` and `/health`.
//!
//! Leader-only requests (topic create/delete, broker registration, heartbeats) answer 503 with
//! `X-Controller-Leader` / `X-Controller-Leader-Id` on a follower. Reads are served from the local
//! applied state; `?consistent=true` first makes sure the answer includes everything the leader
//! had committed when the request arrived (a linearizable read through the leader's read index).
//! Every error is JSON `{"error": CODE, "message": text}`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dmq_types::{
    validate_topic_configs, validate_topic_name, BrokerId, HTTP_BODY_BYTES_MAX,
    TOPIC_PARTITIONS_MAX,
};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::ServerState;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::controller::assign_replicas;
use crate::node::{now_ms, NodeShared};
use crate::raft::{PreVoteRequest, PreVoteResponse, TypeConfig};
use crate::state::{Broker, BrokerConfigs, Command, CommandResult, ReplicaEpoch, Topic};
use crate::MetadataError;

/// How long a linearizable read waits for the local state to catch up with the read index.
const CONSISTENT_READ_WAIT_MS_MAX: u64 = 5_000;

type Shared = Arc<NodeShared>;
type ApiResult<T> = Result<T, MetadataError>;

/// All routes of a metadata node.
pub fn router(shared: Shared) -> Router {
    let registry = shared.metrics.clone();
    let tokens = dmq_types::http::BearerTokens::from_config(shared.config.security.as_ref());
    Router::new()
        .route("/api/v1/metadata/controller", get(controller))
        .route("/api/v1/metadata/cluster", get(cluster))
        .route(
            "/api/v1/metadata/topics",
            get(list_topics).post(create_topic),
        )
        .route(
            "/api/v1/metadata/topics/{name}",
            get(get_topic).delete(delete_topic),
        )
        .route(
            "/api/v1/metadata/topics/{name}/partitions",
            post(create_partitions),
        )
        .route(
            "/api/v1/metadata/topics/{name}/config",
            axum::routing::patch(alter_topic_config),
        )
        .route(
            "/api/v1/metadata/brokers",
            get(list_brokers).post(register_broker),
        )
        .route(
            "/api/v1/metadata/broker-configs",
            get(get_broker_configs).patch(alter_cluster_broker_config),
        )
        .route(
            "/api/v1/metadata/broker-configs/{id}",
            axum::routing::patch(alter_one_broker_config),
        )
        .route(
            "/api/v1/metadata/brokers/{id}",
            get(get_broker).delete(unregister_broker),
        )
        .route("/api/v1/metadata/heartbeat/{id}", post(heartbeat))
        .route("/api/v1/metadata/producer-ids", post(allocate_producer_ids))
        .route("/api/v1/metadata/partitions/alter", post(alter_partition))
        .route("/api/v1/metadata/partitions/elect", post(elect_leaders))
        .route(
            "/api/v1/metadata/brokers/{id}/shutdown",
            post(controlled_shutdown),
        )
        .merge(crate::groups_api::routes())
        .merge(crate::txn_api::routes())
        .merge(crate::shares_api::routes())
        .merge(crate::security_api::routes())
        .merge(crate::ui::routes())
        .route("/api/v1/raft/status", get(raft_status))
        .route("/api/v1/raft/read-index", get(read_index))
        .route("/api/v1/raft/request-vote", post(raft_vote))
        .route("/api/v1/raft/append-entries", post(raft_append))
        .route("/api/v1/raft/install-snapshot", post(raft_snapshot))
        .route(crate::raft::PRE_VOTE_PATH, post(raft_pre_vote))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(axum::middleware::from_fn(move |req, next| {
            dmq_metrics::track_http(registry.clone(), req, next)
        }))
        // Raft snapshot chunks are bounded by openraft's `snapshot_max_chunk_size`; everything
        // else is far smaller. The JSON extractor below enforces the API's own limit.
        .layer(DefaultBodyLimit::max(8 * HTTP_BODY_BYTES_MAX))
        .layer(axum::middleware::map_response(dmq_types::http::json_errors))
        .layer(axum::middleware::from_fn(|req, next| {
            dmq_types::http::refuse_oversized((8 * HTTP_BODY_BYTES_MAX) as u64, req, next)
        }))
        // Inside the token check: the token's principal needs the ACL the call's Kafka
        // counterpart needs (dmq_auth::http_access).
        .layer(axum::middleware::from_fn({
            let shared = shared.clone();
            move |req, next| {
                let shared = shared.clone();
                dmq_types::http::authorize(
                    move |call| crate::security_api::authorize_http(&shared, call),
                    req,
                    next,
                )
            }
        }))
        // Outermost: nothing of a request without a valid token is read (SPEC §11).
        .layer(axum::middleware::from_fn(move |req, next| {
            dmq_types::http::require_bearer(tokens.clone(), req, next)
        }))
        .with_state(shared)
}

impl IntoResponse for MetadataError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::InvalidRequest(_) | Self::Invalid { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::AlreadyExists(_) | Self::Fenced { .. } => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotLeader { .. } | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Storage { .. } | Self::Startup(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut body = json!({"error": self.code(), "message": self.to_string()});
        let mut headers = HeaderMap::new();
        if let Self::NotLeader {
            leader_id,
            leader_url,
        } = &self
        {
            body["leaderId"] = json!(leader_id);
            body["leaderUrl"] = json!(leader_url);
            if let Some(url) = leader_url
                .as_deref()
                .and_then(|u| HeaderValue::from_str(u).ok())
            {
                headers.insert("X-Controller-Leader", url);
            }
            if let Some(id) = leader_id {
                headers.insert("X-Controller-Leader-Id", HeaderValue::from(*id));
            }
        }
        (status, headers, Json(body)).into_response()
    }
}

/// Parses a JSON body whatever its Content-Type (so `curl -d` works), within the API's limit.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    if body.len() > HTTP_BODY_BYTES_MAX {
        return Err(MetadataError::TooLarge(format!(
            "request body is {} bytes; the limit is {HTTP_BODY_BYTES_MAX}",
            body.len()
        )));
    }
    serde_json::from_slice(body)
        .map_err(|e| MetadataError::InvalidRequest(format!("malformed JSON body: {e}")))
}

async fn not_found() -> MetadataError {
    MetadataError::NotFound("no such endpoint".into())
}

async fn method_not_allowed() -> Response {
    let body = json!({"error": "METHOD_NOT_ALLOWED", "message": "method not allowed on this path"});
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ReadQuery {
    #[serde(default)]
    consistent: Option<String>,
}

impl ReadQuery {
    fn consistent(&self) -> bool {
        matches!(self.consistent.as_deref(), Some("true" | "1" | ""))
    }
}

/// Makes the local state at least as new as what the leader has committed right now.
pub(crate) async fn ensure_consistent(shared: &NodeShared, query: &ReadQuery) -> ApiResult<()> {
    if !query.consistent() {
        return Ok(());
    }
    let read_index = if shared.is_leader() {
        shared.read_index().await?
    } else {
        let (leader_id, leader_url) = shared.leader();
        let url = leader_url.ok_or(MetadataError::NotLeader {
            leader_id,
            leader_url: None,
        })?;
        let resp = shared
            .http
            .get(format!("{url}/api/v1/raft/read-index"))
            .timeout(Duration::from_millis(CONSISTENT_READ_WAIT_MS_MAX))
            .send()
            .await
            .map_err(|e| MetadataError::Unavailable(format!("leader unreachable: {e}")))?;
        let body: Value = resp
            .json()
            .await
            .map_err(|e| MetadataError::Unavailable(format!("bad read-index answer: {e}")))?;
        body.get("readIndex")
            .and_then(Value::as_u64)
            .ok_or_else(|| {
                MetadataError::Unavailable(format!("leader gave no read index: {body}"))
            })?
    };
    shared
        .raft
        .wait(Some(Duration::from_millis(CONSISTENT_READ_WAIT_MS_MAX)))
        .applied_index_at_least(Some(read_index), "consistent read")
        .await
        .map_err(|e| MetadataError::Unavailable(format!("state did not catch up: {e}")))?;
    Ok(())
}

async fn read_index(State(shared): State<Shared>) -> ApiResult<Json<Value>> {
    shared.require_leader()?;
    let index = shared.read_index().await?;
    Ok(Json(json!({ "readIndex": index })))
}

fn controller_json(shared: &NodeShared) -> ApiResult<Value> {
    let m = shared.raft.metrics().borrow().clone();
    let leader = m.current_leader.ok_or_else(|| {
        MetadataError::Unavailable("no controller is elected right now; retry shortly".into())
    })?;
    Ok(json!({
        "controllerId": leader,
        "controllerUrl": shared.member_url(leader),
        "controllerTerm": m.current_term,
        "timestamp": now_ms(),
    }))
}

async fn controller(State(shared): State<Shared>) -> ApiResult<Json<Value>> {
    controller_json(&shared).map(Json)
}

/// `?security=true`: the cluster image also carries ACLs and SCRAM credentials (salts and
/// keys, which brokers need to authenticate clients).
#[derive(Debug, Deserialize)]
struct SecurityQuery {
    security: Option<bool>,
}

async fn cluster(
    State(shared): State<Shared>,
    Query(q): Query<ReadQuery>,
    Query(sq): Query<SecurityQuery>,
) -> ApiResult<Json<Value>> {
    ensure_consistent(&shared, &q).await?;
    let m = shared.raft.metrics().borrow().clone();
    let (
        version,
        brokers,
        topics,
        total_partitions,
        broker_configs,
        security,
        group_configs,
        share_resets,
    ) = {
        let data = shared.sm.read();
        let brokers: Vec<Broker> = data.state.brokers.values().cloned().collect();
        let topics: Vec<Topic> = data.state.topics.values().cloned().collect();
        (
            data.state.version,
            brokers,
            topics,
            data.state.total_partitions(),
            data.state.broker_configs.clone(),
            (sq.security == Some(true)).then(|| data.state.security.clone()),
            data.state.group_configs.clone(),
            data.state.share_resets.clone(),
        )
    };
    let brokers: Vec<Broker> = brokers
        .into_iter()
        .map(|b| shared.with_live_heartbeat(b))
        .collect();
    let nodes: Vec<Value> = shared
        .members
        .iter()
        .map(|(id, url)| json!({"nodeId": id, "url": url, "isLeader": m.current_leader == Some(*id)}))
        .collect();
    Ok(Json(json!({
        "version": version,
        "brokers": brokers,
        "topics": topics,
        "controllerLeaderId": m.current_leader,
        "totalPartitions": total_partitions,
        "controllerInfo": controller_json(&shared).unwrap_or(Value::Null),
        "activeMetadataNodes": nodes,
        "brokerConfigs": broker_configs,
        "groupConfigs": group_configs,
        "shareResets": share_resets,
        "security": security,
    })))
}

async fn list_topics(
    State(shared): State<Shared>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<Vec<Topic>>> {
    ensure_consistent(&shared, &q).await?;
    let data = shared.sm.read();
    Ok(Json(data.state.topics.values().cloned().collect()))
}

async fn get_topic(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<Topic>> {
    ensure_consistent(&shared, &q).await?;
    let data = shared.sm.read();
    data.state
        .topics
        .get(&name)
        .cloned()
        .map(Json)
        .ok_or_else(|| MetadataError::NotFound(format!("topic {name:?} does not exist")))
}

/// Body of `POST /api/v1/metadata/topics`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateTopicRequest {
    topic_name: String,
    num_partitions: Option<i64>,
    replication_factor: Option<i64>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// Check everything against the controller's state, change nothing (answers 200 with the
    /// topic as it would be created).
    #[serde(default)]
    validate_only: bool,
}

async fn create_topic(State(shared): State<Shared>, body: Bytes) -> ApiResult<Response> {
    let req: CreateTopicRequest = parse_json(&body)?;
    shared.require_leader()?;
    let topic = shared
        .create_topic(
            &req.topic_name,
            req.num_partitions,
            req.replication_factor,
            req.config,
            req.validate_only,
        )
        .await?;
    let status = if req.validate_only {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(topic)).into_response())
}

/// Body of `POST /api/v1/metadata/topics/{name}/partitions` (Kafka's CreatePartitions).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreatePartitionsRequest {
    /// The new total, larger than the current count.
    num_partitions: i64,
    /// Replica lists (leader first) of the new partitions; placed by the controller if absent.
    assignment: Option<Vec<Vec<BrokerId>>>,
    /// Check everything, change nothing.
    #[serde(default)]
    validate_only: bool,
}

async fn create_partitions(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Topic>> {
    let req: CreatePartitionsRequest = parse_json(&body)?;
    shared.require_leader()?;
    let topic = shared
        .create_partitions(&name, req.num_partitions, req.assignment, req.validate_only)
        .await?;
    Ok(Json(topic))
}

/// Body of `PATCH /api/v1/metadata/topics/{name}/config` (Kafka's IncrementalAlterConfigs;
/// with `replace`, AlterConfigs).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AlterConfigRequest {
    /// Keys to set (or, with `replace`, the topic's whole config).
    #[serde(default)]
    set: BTreeMap<String, String>,
    /// Keys to revert to their defaults.
    #[serde(default)]
    delete: Vec<String>,
    #[serde(default)]
    replace: bool,
    /// Check everything, change nothing.
    #[serde(default)]
    validate_only: bool,
}

/// Changes a topic's configs: every value is checked against the config table first (400
/// `INVALID_CONFIG` naming the config, nothing stored); brokers apply the result when their
/// metadata shows it, without a restart. Answers the topic as it is (or would be) after.
async fn alter_topic_config(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Topic>> {
    let req: AlterConfigRequest = parse_json(&body)?;
    validate_topic_configs(&req.set).map_err(MetadataError::invalid_config)?;
    if let Some(k) = req
        .delete
        .iter()
        .find(|k| dmq_types::topic_config::topic_config(k).is_none())
    {
        return Err(MetadataError::invalid_config(format!(
            "unknown topic config {k:?}"
        )));
    }
    if req.replace && !req.delete.is_empty() {
        return Err(MetadataError::InvalidRequest(
            "replace sets the whole config; it takes no delete list".into(),
        ));
    }
    shared.require_leader()?;
    if req.validate_only {
        let state = &shared.sm.read().state;
        let mut topic = state
            .topics
            .get(&name)
            .cloned()
            .ok_or_else(|| MetadataError::NotFound(format!("topic {name:?} does not exist")))?;
        topic.config =
            crate::state::altered_config(&topic.config, &req.set, &req.delete, req.replace);
        return Ok(Json(topic));
    }
    match shared
        .propose(Command::AlterTopicConfig {
            name,
            set: req.set,
            delete: req.delete,
            replace: req.replace,
        })
        .await?
    {
        CommandResult::Topic(topic) => {
            tracing::info!(topic = %topic.topic_name, config = ?topic.config, "topic config changed");
            Ok(Json(topic))
        }
        other => Err(result_error(other)),
    }
}

/// The dynamic broker configs: `{"cluster": {…}, "brokers": {"<id>": {…}}}`.
async fn get_broker_configs(
    State(shared): State<Shared>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<BrokerConfigs>> {
    ensure_consistent(&shared, &q).await?;
    Ok(Json(shared.sm.read().state.broker_configs.clone()))
}

/// Changes the cluster-wide dynamic broker configs (Kafka's `--entity-default`).
async fn alter_cluster_broker_config(
    State(shared): State<Shared>,
    body: Bytes,
) -> ApiResult<Json<BrokerConfigs>> {
    alter_broker_config(shared, None, body).await
}

/// Changes one broker's dynamic configs.
async fn alter_one_broker_config(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<BrokerConfigs>> {
    let id: BrokerId = id
        .parse()
        .ok()
        .filter(|id: &BrokerId| *id >= 0)
        .ok_or_else(|| {
            MetadataError::InvalidRequest(format!("broker id {id:?} is not a non-negative integer"))
        })?;
    alter_broker_config(shared, Some(id), body).await
}

/// Body `{"set": {k: v}, "delete": [k], "validateOnly": bool}`: every key must be a dynamic
/// broker config and every value valid (400 `INVALID_CONFIG`, or `INVALID_REQUEST` for a
/// read-only config; nothing stored). Brokers apply the result without a restart.
async fn alter_broker_config(
    shared: Shared,
    broker: Option<BrokerId>,
    body: Bytes,
) -> ApiResult<Json<BrokerConfigs>> {
    let req: AlterConfigRequest = parse_json(&body)?;
    if req.replace {
        return Err(MetadataError::InvalidRequest(
            "broker configs take set and delete, not replace".into(),
        ));
    }
    let refuse = |(read_only, message): (bool, String)| {
        if read_only {
            MetadataError::InvalidRequest(message)
        } else {
            MetadataError::invalid_config(message)
        }
    };
    for (k, v) in &req.set {
        dmq_types::broker_config::validate_dynamic_broker_config(k, v).map_err(refuse)?;
    }
    for k in &req.delete {
        dmq_types::broker_config::check_dynamic(k).map_err(refuse)?;
    }
    shared.require_leader()?;
    if req.validate_only {
        let mut configs = shared.sm.read().state.broker_configs.clone();
        let target = match broker {
            Some(id) => configs.brokers.entry(id.to_string()).or_default(),
            None => &mut configs.cluster,
        };
        *target = crate::state::altered_config(target, &req.set, &req.delete, false);
        configs.brokers.retain(|_, c| !c.is_empty());
        return Ok(Json(configs));
    }
    match shared
        .propose(Command::AlterBrokerConfig {
            broker,
            set: req.set,
            delete: req.delete,
        })
        .await?
    {
        CommandResult::BrokerConfigs(configs) => {
            tracing::info!(broker = ?broker, configs = ?configs, "broker configs changed");
            Ok(Json(configs))
        }
        other => Err(result_error(other)),
    }
}

async fn delete_topic(
    State(shared): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    shared.require_leader()?;
    if !shared.sm.read().state.topics.contains_key(&name) {
        return Err(MetadataError::NotFound(format!(
            "topic {name:?} does not exist"
        )));
    }
    match shared
        .propose(Command::DeleteTopic { name: name.clone() })
        .await?
    {
        CommandResult::TopicDeleted { name } => {
            Ok(Json(json!({"topicName": name, "deleted": true})))
        }
        other => Err(result_error(other)),
    }
}

async fn list_brokers(
    State(shared): State<Shared>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<Vec<Broker>>> {
    ensure_consistent(&shared, &q).await?;
    let brokers: Vec<Broker> = shared.sm.read().state.brokers.values().cloned().collect();
    Ok(Json(
        brokers
            .into_iter()
            .map(|b| shared.with_live_heartbeat(b))
            .collect(),
    ))
}

fn parse_broker_id(raw: &str) -> ApiResult<BrokerId> {
    raw.parse::<BrokerId>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| {
            MetadataError::InvalidRequest(format!(
                "broker id {raw:?} is not a non-negative integer"
            ))
        })
}

/// Removes a broker that is gone for good (Kafka's UnregisterBroker): only an OFFLINE broker
/// that holds no replica may go (409 otherwise); 404 if it is not registered.
async fn unregister_broker(
    State(shared): State<Shared>,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_broker_id(&raw)?;
    shared.require_leader()?;
    shared
        .sm
        .read()
        .state
        .check_unregister(id)
        .map_err(result_error)?;
    match shared
        .propose(Command::UnregisterBroker { broker_id: id })
        .await?
    {
        CommandResult::BrokerUnregistered { broker_id } => {
            tracing::info!(broker = broker_id, "broker unregistered");
            Ok(Json(json!({ "unregistered": broker_id })))
        }
        other => Err(result_error(other)),
    }
}

async fn get_broker(
    State(shared): State<Shared>,
    Path(raw): Path<String>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<Broker>> {
    let id = parse_broker_id(&raw)?;
    ensure_consistent(&shared, &q).await?;
    let broker = shared.sm.read().state.brokers.get(&id).cloned();
    broker
        .map(|b| Json(shared.with_live_heartbeat(b)))
        .ok_or_else(|| MetadataError::NotFound(format!("broker {id} is not registered")))
}

/// Body of `POST /api/v1/metadata/brokers`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterBrokerRequest {
    broker_id: BrokerId,
    host: String,
    port: u16,
    kafka_port: Option<u16>,
    /// Chosen by the broker process at start; the same id again is the same process.
    #[serde(default)]
    incarnation_id: Option<String>,
}

/// Longest host name a broker may register (DNS's limit).
const HOST_LENGTH_MAX: usize = 253;
/// Longest incarnation id a broker may register.
const INCARNATION_ID_LENGTH_MAX: usize = 64;

/// Whether `host` can be a host name or an IP address literal (no spaces, no control
/// characters, nothing a client could not connect to).
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= HOST_LENGTH_MAX
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'))
}

async fn register_broker(State(shared): State<Shared>, body: Bytes) -> ApiResult<Response> {
    let req: RegisterBrokerRequest = parse_json(&body)?;
    if req.broker_id < 0 {
        return Err(MetadataError::InvalidRequest(
            "brokerId must be non-negative".into(),
        ));
    }
    if !valid_host(&req.host) {
        return Err(MetadataError::InvalidRequest(format!(
            "host must be a host name or IP address of 1..={HOST_LENGTH_MAX} characters \
             (letters, digits, '.', '-', '_', ':', '[', ']')"
        )));
    }
    let kafka_port = req
        .kafka_port
        .unwrap_or_else(|| req.port.saturating_add(11_011));
    if req.port == 0 || kafka_port == 0 {
        return Err(MetadataError::InvalidRequest(
            "port and kafkaPort must be non-zero".into(),
        ));
    }
    if req.port == kafka_port {
        return Err(MetadataError::InvalidRequest(
            "port and kafkaPort must differ".into(),
        ));
    }
    if req
        .incarnation_id
        .as_ref()
        .is_some_and(|i| i.is_empty() || i.len() > INCARNATION_ID_LENGTH_MAX)
    {
        return Err(MetadataError::InvalidRequest(format!(
            "incarnationId must be 1..={INCARNATION_ID_LENGTH_MAX} characters"
        )));
    }
    shared.require_leader()?;
    check_registration(&shared, &req, kafka_port)?;
    let command = Command::RegisterBroker {
        broker_id: req.broker_id,
        host: req.host,
        port: req.port,
        kafka_port,
        timestamp_ms: now_ms(),
        incarnation_id: req.incarnation_id,
    };
    match shared.propose(command).await? {
        CommandResult::Broker(broker) => {
            shared.record_heartbeat(broker.broker_id);
            tracing::info!(broker = broker.broker_id, host = %broker.host, "broker registered");
            Ok((StatusCode::CREATED, Json(broker)).into_response())
        }
        other => Err(result_error(other)),
    }
}

/// Kafka's DUPLICATE_BROKER_REGISTRATION (409): the address is an ONLINE broker's, or the id is
/// a live broker's (heartbeating within the session timeout) whose process is another one at
/// another address. A restarted broker at its own address may always register again.
fn check_registration(
    shared: &NodeShared,
    req: &RegisterBrokerRequest,
    kafka_port: u16,
) -> ApiResult<()> {
    let state = &shared.sm.read().state;
    let mine = [req.port, kafka_port];
    for b in state.brokers.values() {
        if b.broker_id == req.broker_id || b.status != crate::state::BrokerStatus::Online {
            continue;
        }
        if b.host == req.host && (mine.contains(&b.port) || mine.contains(&b.kafka_port)) {
            return Err(MetadataError::Fenced {
                code: "DUPLICATE_BROKER_REGISTRATION",
                message: format!(
                    "{}:{}/{} is the address of ONLINE broker {}",
                    req.host, req.port, kafka_port, b.broker_id
                ),
            });
        }
    }
    if let Some(b) = state.brokers.get(&req.broker_id) {
        let moved = b.host != req.host || b.port != req.port || b.kafka_port != kafka_port;
        let other_process = b.incarnation_id.is_none() || b.incarnation_id != req.incarnation_id;
        let session_ms = shared.config.controller.broker_session_timeout_ms;
        let live = b.status == crate::state::BrokerStatus::Online
            && shared
                .liveness
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .last_seen_ms(b.broker_id)
                .is_some_and(|seen| now_ms().saturating_sub(seen) < session_ms);
        if moved && other_process && live {
            return Err(MetadataError::Fenced {
                code: "DUPLICATE_BROKER_REGISTRATION",
                message: format!(
                    "broker {} is live at {}:{}/{}; another process cannot register it at \
                     {}:{}/{} until its session expires",
                    b.broker_id, b.host, b.port, b.kafka_port, req.host, req.port, kafka_port
                ),
            });
        }
    }
    Ok(())
}

/// Optional body of a heartbeat; an empty body is a valid heartbeat.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeartbeatRequest {
    broker_id: Option<BrokerId>,
    metadata_version: Option<u64>,
}

async fn heartbeat(
    State(shared): State<Shared>,
    Path(raw): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let id = parse_broker_id(&raw)?;
    let req: HeartbeatRequest = if body.iter().all(u8::is_ascii_whitespace) {
        HeartbeatRequest::default()
    } else {
        parse_json(&body)?
    };
    if req.broker_id.is_some_and(|b| b != id) {
        return Err(MetadataError::InvalidRequest(format!(
            "body brokerId {:?} does not match path broker {id}",
            req.broker_id
        )));
    }
    shared.require_leader()?;
    let status = shared.sm.read().state.brokers.get(&id).map(|b| b.status);
    let Some(status) = status else {
        return Err(MetadataError::NotFound(format!(
            "broker {id} never registered; register it with POST /api/v1/metadata/brokers"
        )));
    };
    shared.record_heartbeat(id);
    if status == crate::state::BrokerStatus::Offline {
        tracing::info!(
            broker = id,
            "heartbeat from an OFFLINE broker; marking it ONLINE"
        );
        shared
            .propose(Command::UpdateBrokerStatus {
                broker_id: id,
                status: crate::state::BrokerStatus::Online,
                timestamp_ms: now_ms(),
            })
            .await?;
    }
    let version = shared.sm.read().state.version;
    let mut body = controller_json(&shared)?;
    body["brokerId"] = json!(id);
    body["version"] = json!(version);
    body["metadataVersion"] = json!(version);
    body["stale"] = json!(req.metadata_version.is_some_and(|v| v < version));
    Ok(Json(body))
}

/// Body of `POST /api/v1/metadata/producer-ids` (broker → controller, for InitProducerId).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProducerIdsRequest {
    broker_id: BrokerId,
    count: u32,
}

async fn allocate_producer_ids(
    State(shared): State<Shared>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: ProducerIdsRequest = parse_json(&body)?;
    shared.require_leader()?;
    match shared
        .propose(Command::AllocateProducerIds {
            broker_id: req.broker_id,
            count: req.count,
        })
        .await?
    {
        CommandResult::ProducerIds { first, count } => Ok(Json(
            json!({"brokerId": req.broker_id, "firstProducerId": first, "count": count}),
        )),
        other => Err(result_error(other)),
    }
}

/// Body of `POST /api/v1/metadata/partitions/alter` (partition leader → controller): the ISR
/// the leader wants, with the epochs it computed it against (Kafka's AlterPartition).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AlterPartitionRequest {
    broker_id: BrokerId,
    topic: String,
    partition: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: Vec<BrokerId>,
    /// Broker epoch per replica the change adds, as the leader saw it fetch (KIP-903).
    #[serde(default)]
    added_epochs: Option<Vec<ReplicaEpoch>>,
}

async fn alter_partition(State(shared): State<Shared>, body: Bytes) -> ApiResult<Json<Value>> {
    let req: AlterPartitionRequest = parse_json(&body)?;
    shared.require_leader()?;
    // Checked against the applied state first: a change that would be refused never reaches
    // the Raft log (a leader retrying a fenced change would otherwise grow it during faults).
    // Applying checks again, against the state at the entry's own index.
    shared
        .sm
        .read()
        .state
        .check_alter_partition(
            req.broker_id,
            &req.topic,
            req.partition,
            req.leader_epoch,
            req.partition_epoch,
            &req.isr,
            req.added_epochs.as_deref(),
        )
        .map_err(result_error)?;
    match shared
        .propose(Command::AlterPartition {
            broker_id: req.broker_id,
            topic: req.topic,
            partition: req.partition,
            leader_epoch: req.leader_epoch,
            partition_epoch: req.partition_epoch,
            isr: req.isr,
            added_epochs: req.added_epochs,
        })
        .await?
    {
        CommandResult::Partition { topic, partition } => {
            let mut body = json!(partition);
            body["topic"] = json!(topic);
            body["version"] = json!(shared.sm.read().state.version);
            Ok(Json(body))
        }
        other => Err(result_error(other)),
    }
}

/// Body of `POST /api/v1/metadata/partitions/elect` (Kafka's ElectLeaders).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ElectRequest {
    /// `PREFERRED` or `UNCLEAN`.
    election_type: String,
    /// The partitions to elect for; every partition when absent.
    partitions: Option<Vec<crate::state::TopicPartitionRef>>,
}

/// Elects leaders (Kafka's ElectLeaders): every partition gets the leader the election type
/// calls for in one `UpdatePartitions` entry, or the reason it does not
/// (`ELECTION_NOT_NEEDED`, `PREFERRED_LEADER_NOT_AVAILABLE`, `ELIGIBLE_LEADERS_NOT_AVAILABLE`,
/// `UNKNOWN_TOPIC_OR_PARTITION`). Answers `{"results": [{"topic", "partition", "error",
/// "leader"}]}`.
async fn elect_leaders(State(shared): State<Shared>, body: Bytes) -> ApiResult<Json<Value>> {
    use crate::controller::{election_change, ElectionType};
    let req: ElectRequest = parse_json(&body)?;
    let kind = match req.election_type.as_str() {
        "PREFERRED" => ElectionType::Preferred,
        "UNCLEAN" => ElectionType::Unclean,
        other => {
            return Err(MetadataError::InvalidRequest(format!(
                "electionType must be PREFERRED or UNCLEAN, got {other:?}"
            )))
        }
    };
    shared.require_leader()?;
    let (changes, mut results) = {
        let state = &shared.sm.read().state;
        let wanted: Vec<(String, i32)> = match req.partitions {
            Some(ps) => ps.into_iter().map(|p| (p.topic, p.partition)).collect(),
            None => state
                .topics
                .values()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| (t.topic_name.clone(), p.partition_id))
                })
                .collect(),
        };
        let mut changes = Vec::new();
        let mut results = Vec::new();
        for (topic, partition) in wanted {
            match election_change(state, kind, &topic, partition) {
                Ok(c) => {
                    results.push(json!({"topic": topic, "partition": partition,
                                        "error": null, "leader": c.leader}));
                    changes.push(c);
                }
                Err(e) => results.push(json!({"topic": topic, "partition": partition,
                                              "error": e.code(), "leader": null})),
            }
        }
        (changes, results)
    };
    if !changes.is_empty() {
        let count = changes.len();
        match shared
            .propose(Command::UpdatePartitions { changes })
            .await?
        {
            CommandResult::PartitionsUpdated { .. } => {
                tracing::info!(count, ?kind, "leaders elected");
            }
            other => return Err(result_error(other)),
        }
    }
    results.sort_by(|a, b| {
        (a["topic"].as_str(), a["partition"].as_i64())
            .cmp(&(b["topic"].as_str(), b["partition"].as_i64()))
    });
    Ok(Json(json!({ "results": results })))
}

/// Controlled shutdown (Kafka's ControlledShutdown): the broker is fenced at once, so the
/// controller's next tick moves its leaderships to ISR peers and drops it from every ISR. The
/// broker stops heartbeating first and waits until its metadata shows no leaderships; its next
/// registration brings it back.
async fn controlled_shutdown(
    State(shared): State<Shared>,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_broker_id(&raw)?;
    shared.require_leader()?;
    let status = shared.sm.read().state.brokers.get(&id).map(|b| b.status);
    if status.is_none() {
        return Err(MetadataError::NotFound(format!(
            "broker {id} is not registered"
        )));
    }
    if status == Some(crate::state::BrokerStatus::Online) {
        tracing::info!(broker = id, "controlled shutdown: fencing the broker");
        shared
            .propose(Command::UpdateBrokerStatus {
                broker_id: id,
                status: crate::state::BrokerStatus::Offline,
                timestamp_ms: now_ms(),
            })
            .await?;
    }
    shared.wake_controller();
    let leaderships = shared
        .sm
        .read()
        .state
        .topics
        .values()
        .flat_map(|t| t.partitions.iter())
        .filter(|p| p.leader == id)
        .count();
    Ok(Json(json!({
        "brokerId": id,
        "status": "OFFLINE",
        "leaderships": leaderships,
        "version": shared.sm.read().state.version,
    })))
}

/// Maps a rejected or unexpected command result to the API error it stands for.
pub(crate) fn result_error(result: CommandResult) -> MetadataError {
    use crate::state::RejectCode::*;
    match result {
        CommandResult::Rejected { code, message } => match code {
            TopicAlreadyExists => MetadataError::AlreadyExists(message),
            StaleLeaderEpoch => MetadataError::Fenced {
                code: "FENCED_LEADER_EPOCH",
                message,
            },
            StalePartitionEpoch => MetadataError::Fenced {
                code: "INVALID_UPDATE_VERSION",
                message,
            },
            NotLeader => MetadataError::Fenced {
                code: "NOT_LEADER_OR_FOLLOWER",
                message,
            },
            IneligibleReplica => MetadataError::Fenced {
                code: "INELIGIBLE_REPLICA",
                message,
            },
            BrokerInUse => MetadataError::Fenced {
                code: "BROKER_IN_USE",
                message,
            },
            UnknownTopic | UnknownBroker | UnknownPartition | UnknownGroup => {
                MetadataError::NotFound(message)
            }
            InvalidCommand => MetadataError::InvalidRequest(message),
        },
        other => MetadataError::Unavailable(format!("unexpected command result {other:?}")),
    }
}

pub(crate) fn state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "LEADER",
        ServerState::Follower => "FOLLOWER",
        ServerState::Candidate => "CANDIDATE",
        ServerState::Learner => "LEARNER",
        ServerState::Shutdown => "SHUTDOWN",
    }
}

async fn raft_status(State(shared): State<Shared>) -> Json<Value> {
    let m = shared.raft.metrics().borrow().clone();
    let log = shared.log.stats();
    let last_applied = m.last_applied.map_or(0, |l| l.index);
    Json(json!({
        "nodeId": shared.node_id,
        "currentTerm": m.current_term,
        "state": state_name(m.state),
        "isLeader": m.state == ServerState::Leader,
        "leaderId": m.current_leader,
        "commitIndex": shared.log.committed_index().max(last_applied),
        "lastApplied": last_applied,
        "lastLogIndex": m.last_log_index,
        "snapshotIndex": m.snapshot.map(|l| l.index),
        "purgedIndex": log.last_purged_index,
        "logFirstIndex": log.first_index,
        "logFileBytes": log.file_bytes,
        "members": shared.members,
    }))
}

async fn raft_vote(
    State(shared): State<Shared>,
    Json(req): Json<VoteRequest<u64>>,
) -> Json<Result<VoteResponse<u64>, RaftError<u64>>> {
    Json(shared.raft.vote(req).await)
}

async fn raft_append(
    State(shared): State<Shared>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<Result<AppendEntriesResponse<u64>, RaftError<u64>>> {
    Json(shared.raft.append_entries(req).await)
}

/// Another voter asks whether it may campaign (pre-vote); answering changes nothing here.
async fn raft_pre_vote(
    State(shared): State<Shared>,
    Json(req): Json<PreVoteRequest>,
) -> Json<PreVoteResponse> {
    Json(shared.pre_vote.answer(&req).await)
}

async fn raft_snapshot(
    State(shared): State<Shared>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Json<Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>> {
    Json(shared.raft.install_snapshot(req).await)
}

/// Readiness for orchestrators and `dmq dev`: 200 once this node is running, knows the
/// quorum's leader and has applied the state (a leader: up to its own term's first entry, so
/// its reads and controller duties see everything committed before it). 503 (JSON) before.
async fn ready(State(shared): State<Shared>) -> Response {
    let m = shared.raft.metrics().borrow().clone();
    let applied = m.last_applied.as_ref();
    let ready = m.running_state.is_ok()
        && m.current_leader.is_some()
        && applied.is_some()
        && (m.state != openraft::ServerState::Leader
            || applied.is_some_and(|a| a.leader_id.term == m.current_term));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ready": ready,
        "nodeId": shared.node_id,
        "role": state_name(m.state),
        "leaderKnown": m.current_leader.is_some(),
    });
    (status, Json(body)).into_response()
}

async fn health(State(shared): State<Shared>) -> Json<Value> {
    let m = shared.raft.metrics().borrow().clone();
    Json(json!({
        "status": if m.running_state.is_ok() { "UP" } else { "DOWN" },
        "nodeId": shared.node_id,
        "role": state_name(m.state),
        "leaderKnown": m.current_leader.is_some(),
    }))
}

/// Prometheus text exposition, computed from Raft metrics and the applied state at scrape time.
async fn metrics(State(shared): State<Shared>) -> Response {
    let text = crate::metrics::render(&shared).await;
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

impl NodeShared {
    /// Validates a topic request, places its replicas on ONLINE brokers and commits it (or,
    /// with `validate_only`, answers the topic it would create).
    pub(crate) async fn create_topic(
        &self,
        name: &str,
        num_partitions: Option<i64>,
        replication_factor: Option<i64>,
        config: BTreeMap<String, String>,
        validate_only: bool,
    ) -> ApiResult<Topic> {
        validate_topic_name(name).map_err(|e| MetadataError::Invalid {
            code: "INVALID_TOPIC_EXCEPTION",
            message: e.to_string(),
        })?;
        validate_topic_configs(&config).map_err(MetadataError::invalid_config)?;
        let defaults = &self.config.topic_defaults;
        let partitions = num_partitions.unwrap_or(i64::from(defaults.num_partitions));
        if !(1..=i64::from(TOPIC_PARTITIONS_MAX)).contains(&partitions) {
            return Err(MetadataError::Invalid {
                code: "INVALID_PARTITIONS",
                message: format!(
                    "numPartitions must be within 1..={TOPIC_PARTITIONS_MAX}, got {partitions}"
                ),
            });
        }
        let (online, start) = {
            let data = self.sm.read();
            if data.state.topics.contains_key(name) {
                return Err(MetadataError::AlreadyExists(format!(
                    "topic {name:?} already exists"
                )));
            }
            (
                data.state.online_brokers(),
                data.state.topics_created as usize,
            )
        };
        let rf = match replication_factor {
            Some(rf) => rf,
            // Kafka caps the *default* at what the cluster can hold; an explicit one is checked.
            None => i64::from(defaults.default_replication_factor).min(online.len().max(1) as i64),
        };
        if rf < 1 {
            return Err(MetadataError::Invalid {
                code: "INVALID_REPLICATION_FACTOR",
                message: format!("replicationFactor must be at least 1, got {rf}"),
            });
        }
        if rf as usize > online.len() {
            return Err(MetadataError::Invalid {
                code: "INVALID_REPLICATION_FACTOR",
                message: format!(
                    "replicationFactor {rf} is larger than the number of ONLINE brokers ({})",
                    online.len()
                ),
            });
        }
        let assignment = assign_replicas(&online, partitions as usize, rf as usize, start);
        if validate_only {
            let id = uuid::Uuid::new_v4().to_string();
            return self
                .sm
                .read()
                .state
                .new_topic(name, &id, &config, &assignment, now_ms())
                .map_err(result_error);
        }
        let command = Command::CreateTopic {
            name: name.to_string(),
            topic_id: uuid::Uuid::new_v4().to_string(),
            config,
            assignment,
            timestamp_ms: now_ms(),
        };
        match self.propose(command).await? {
            CommandResult::Topic(topic) => {
                tracing::info!(topic = %topic.topic_name, partitions, rf, "topic created");
                Ok(topic)
            }
            other => Err(result_error(other)),
        }
    }

    /// Grows `name` to `total` partitions (Kafka's CreatePartitions). Without an `assignment`
    /// the new partitions continue the topic's round-robin over the ONLINE brokers, as Kafka
    /// places them (the start is where partition 0's leader sits). A given assignment names
    /// registered brokers, `replicationFactor` distinct ones per new partition.
    pub(crate) async fn create_partitions(
        &self,
        name: &str,
        total: i64,
        assignment: Option<Vec<Vec<BrokerId>>>,
        validate_only: bool,
    ) -> ApiResult<Topic> {
        let (current, rf, online, registered, first_leader) = {
            let data = self.sm.read();
            let topic =
                data.state.topics.get(name).ok_or_else(|| {
                    MetadataError::NotFound(format!("topic {name:?} does not exist"))
                })?;
            (
                topic.partitions.len() as i64,
                topic.replication_factor as usize,
                data.state.online_brokers(),
                data.state.brokers.keys().copied().collect::<Vec<_>>(),
                topic
                    .partitions
                    .first()
                    .and_then(|p| p.replicas.first().copied()),
            )
        };
        if total <= current {
            return Err(MetadataError::Invalid {
                code: "INVALID_PARTITIONS",
                message: format!(
                "numPartitions must be larger than the current {current} partitions of {name:?} \
                 (partitions cannot be removed), got {total}"
            ),
            });
        }
        if total > i64::from(TOPIC_PARTITIONS_MAX) {
            return Err(MetadataError::Invalid {
                code: "INVALID_PARTITIONS",
                message: format!(
                    "numPartitions must be within 1..={TOPIC_PARTITIONS_MAX}, got {total}"
                ),
            });
        }
        let added = (total - current) as usize;
        let assignment = match assignment {
            Some(given) => {
                if given.len() != added {
                    return Err(MetadataError::Invalid {
                        code: "INVALID_REPLICA_ASSIGNMENT",
                        message: format!(
                            "replica assignment lists {} partitions, but {added} are being added",
                            given.len()
                        ),
                    });
                }
                for (i, replicas) in given.iter().enumerate() {
                    let mut distinct = replicas.clone();
                    distinct.sort_unstable();
                    distinct.dedup();
                    if replicas.len() != rf || distinct.len() != rf {
                        return Err(MetadataError::Invalid {
                            code: "INVALID_REPLICA_ASSIGNMENT",
                            message: format!(
                                "replica assignment of new partition {}: {replicas:?} must name \
                             {rf} distinct brokers (the topic's replication factor)",
                                current as usize + i
                            ),
                        });
                    }
                    if let Some(b) = replicas.iter().find(|b| !registered.contains(b)) {
                        return Err(MetadataError::Invalid {
                            code: "INVALID_REPLICA_ASSIGNMENT",
                            message: format!(
                            "replica assignment of new partition {}: broker {b} is not registered",
                            current as usize + i
                        ),
                        });
                    }
                }
                given
            }
            None => {
                if rf > online.len() {
                    return Err(MetadataError::Invalid {
                        code: "INVALID_REPLICATION_FACTOR",
                        message: format!(
                        "replicationFactor {rf} of {name:?} is larger than the number of ONLINE \
                         brokers ({})",
                        online.len()
                    ),
                    });
                }
                let start = first_leader
                    .and_then(|l| online.iter().position(|b| *b == l))
                    .unwrap_or(0);
                assign_replicas(&online, total as usize, rf, start).split_off(current as usize)
            }
        };
        let command = Command::CreatePartitions {
            name: name.to_string(),
            assignment,
        };
        if validate_only {
            // The same apply on a copy of the topic: what the change would produce.
            let mut scratch = crate::state::MetadataState::default();
            if let Some(t) = self.sm.read().state.topics.get(name) {
                scratch.topics.insert(name.to_string(), t.clone());
            }
            return match scratch.apply(0, &command) {
                CommandResult::Topic(topic) => Ok(topic),
                other => Err(result_error(other)),
            };
        }
        match self.propose(command).await? {
            CommandResult::Topic(topic) => {
                tracing::info!(topic = %topic.topic_name, from = current, to = total, "partitions added");
                Ok(topic)
            }
            other => Err(result_error(other)),
        }
    }
}
