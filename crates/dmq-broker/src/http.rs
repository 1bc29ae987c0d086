//! The seeds' storage HTTP API (SPEC §4), the controller's push endpoint, `/metrics` and
//! `/health`. Records travel as UTF-8 strings, or base64 with `"encoding":"base64"`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use dmq_log::RecordBatchBuilder;
use dmq_types::HTTP_BODY_BYTES_MAX;
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::RecordBatchDecoder;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

use crate::error::BrokerError;
use crate::meta_client::ControllerRef;
use crate::node::BrokerShared;
use crate::partition::Role;
use crate::produce;

type Shared = Arc<BrokerShared>;

/// Records one HTTP consume returns at most.
const CONSUME_LIMIT_MAX: usize = 10_000;
/// acks=all over HTTP waits at most this long.
const HTTP_PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the broker's HTTP API, over TLS with `security.http.tls` (`tls` from
/// [`dmq_types::https::server_config_for`], checked at start-up).
pub async fn serve(
    shared: Shared,
    listener: TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) {
    let app = router(shared);
    if let Err(e) = dmq_types::https::serve(listener, app, tls, std::future::pending()).await {
        tracing::error!("broker HTTP server stopped: {e}");
    }
}

pub fn router(shared: Shared) -> Router {
    let registry = shared.metrics.registry();
    let tokens = dmq_types::http::BearerTokens::from_config(shared.config.security.as_ref());
    Router::new()
        .route(
            "/api/v1/storage/topics/{topic}/partitions/{partition}",
            post(produce_records).get(consume_records),
        )
        .route(
            "/api/v1/storage/replication/status",
            get(replication_status),
        )
        .route("/api/v1/storage/metadata/update", post(metadata_update))
        .route("/api/v1/storage/groups", get(list_groups))
        .route("/api/v1/storage/groups/{group}", get(describe_group))
        .route(
            "/api/v1/storage/share-groups/{group}",
            get(describe_share_group),
        )
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "method not allowed on this path",
            )
        })
        .route_layer(axum::middleware::from_fn(move |req, next| {
            dmq_metrics::track_http(registry.clone(), req, next)
        }))
        .layer(DefaultBodyLimit::max(2 * HTTP_BODY_BYTES_MAX))
        .layer(axum::middleware::map_response(dmq_types::http::json_errors))
        .layer(axum::middleware::from_fn(|req, next| {
            dmq_types::http::refuse_oversized((2 * HTTP_BODY_BYTES_MAX) as u64, req, next)
        }))
        // Inside the token check: the token's principal needs the ACL the call's Kafka
        // counterpart needs (dmq_auth::http_access).
        .layer(axum::middleware::from_fn({
            let shared = shared.clone();
            move |req, next| {
                let shared = shared.clone();
                dmq_types::http::authorize(
                    move |call| shared.security.authorize_http(call),
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

/// A JSON error answer `{"error", "message"}` (plus headers, e.g. `X-Partition-Leader`).
struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
    /// `X-Partition-Leader` URL and id, for NOT_LEADER answers.
    leader: Option<(String, i32)>,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            leader: None,
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.code, "message": self.message});
        let mut headers = HeaderMap::new();
        if let Some((url, id)) = self.leader {
            if let Ok(v) = HeaderValue::from_str(&url) {
                headers.insert("X-Partition-Leader", v);
            }
            headers.insert("X-Partition-Leader-Id", HeaderValue::from(id));
        }
        (self.status, headers, Json(body)).into_response()
    }
}

fn from_broker_error(shared: &BrokerShared, e: BrokerError) -> ApiError {
    let code = e.code_name();
    let kafka = e.kafka_code();
    let status = match ResponseError::try_from_code(kafka) {
        Some(ResponseError::UnknownTopicOrPartition) => StatusCode::NOT_FOUND,
        Some(
            ResponseError::NotLeaderOrFollower
            | ResponseError::NotEnoughReplicas
            | ResponseError::NotEnoughReplicasAfterAppend
            | ResponseError::LeaderNotAvailable,
        ) => StatusCode::SERVICE_UNAVAILABLE,
        Some(ResponseError::RequestTimedOut) => StatusCode::GATEWAY_TIMEOUT,
        Some(ResponseError::MessageTooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
        Some(ResponseError::OffsetOutOfRange) => StatusCode::RANGE_NOT_SATISFIABLE,
        Some(
            ResponseError::CorruptMessage
            | ResponseError::InvalidRequest
            | ResponseError::InvalidRequiredAcks
            | ResponseError::InvalidTopicException
            | ResponseError::InvalidRecord,
        ) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut err = ApiError::new(status, &code, e.to_string());
    if let BrokerError::NotLeader {
        leader: Some(leader),
        ..
    } = &e
    {
        if let Some(b) = shared.image().brokers.get(leader) {
            let scheme = dmq_types::https::scheme(shared.config.security.as_ref());
            err.leader = Some((format!("{scheme}://{}:{}", b.host, b.port), *leader));
        }
    }
    err
}

#[derive(Debug, Deserialize)]
struct ProduceQuery {
    acks: Option<String>,
}

fn parse_acks(raw: Option<&str>) -> Result<i16, ApiError> {
    match raw.unwrap_or("all") {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        "0" => Ok(0),
        other => Err(ApiError::bad_request(format!(
            "acks must be all, -1, 0 or 1, got {other:?}"
        ))),
    }
}

fn decode_field(v: Option<&Value>, base64: bool, what: &str) -> Result<Option<Vec<u8>>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if base64 => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(Some)
            .map_err(|e| ApiError::bad_request(format!("{what} is not valid base64: {e}"))),
        Some(Value::String(s)) => Ok(Some(s.as_bytes().to_vec())),
        Some(other) => Err(ApiError::bad_request(format!(
            "{what} must be a string or null, got {other}"
        ))),
    }
}

struct InRecord {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    timestamp: i64,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fn parse_record(v: &Value, default_base64: bool, now: i64) -> Result<InRecord, ApiError> {
    let Some(obj) = v.as_object() else {
        return Err(ApiError::bad_request("each record must be a JSON object"));
    };
    let base64 = match obj.get("encoding") {
        None | Some(Value::Null) => default_base64,
        Some(Value::String(s)) if s == "base64" => true,
        Some(Value::String(s)) if s == "utf8" || s == "utf-8" => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "encoding must be \"base64\" or \"utf8\", got {other}"
            )))
        }
    };
    let timestamp = match obj.get("timestamp") {
        None | Some(Value::Null) => now,
        Some(t) => t
            .as_i64()
            .filter(|t| *t >= 0)
            .ok_or_else(|| ApiError::bad_request("timestamp must be non-negative epoch ms"))?,
    };
    let mut headers = Vec::new();
    match obj.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                headers.push((
                    k.as_bytes().to_vec(),
                    decode_field(Some(v), base64, "header")?,
                ));
            }
        }
        Some(Value::Array(items)) => {
            for h in items {
                let k = h
                    .get("key")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ApiError::bad_request("header entries need a string \"key\""))?;
                headers.push((
                    k.as_bytes().to_vec(),
                    decode_field(h.get("value"), base64, "header")?,
                ));
            }
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "headers must be an object or an array",
            ))
        }
    }
    Ok(InRecord {
        key: decode_field(obj.get("key"), base64, "key")?,
        value: decode_field(obj.get("value"), base64, "value")?,
        timestamp,
        headers,
    })
}

async fn produce_records(
    State(shared): State<Shared>,
    Path((topic, partition)): Path<(String, String)>,
    Query(q): Query<ProduceQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    produce_inner(&shared, &topic, &partition, q, body).await
}

async fn produce_inner(
    shared: &Shared,
    topic: &str,
    partition: &str,
    q: ProduceQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let partition: i32 = partition.parse().map_err(|_| {
        ApiError::bad_request(format!("partition must be an integer, got {partition:?}"))
    })?;
    if let Err(e) = dmq_types::validate_topic_name(topic) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_TOPIC_EXCEPTION",
            e.to_string(),
        ));
    }
    let acks = parse_acks(q.acks.as_deref())?;
    if body.len() > HTTP_BODY_BYTES_MAX {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "MESSAGE_TOO_LARGE",
            format!("body of {} bytes exceeds {HTTP_BODY_BYTES_MAX}", body.len()),
        ));
    }
    let doc: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?;
    let now = dmq_log::now_ms();
    let default_base64 = doc.get("encoding").and_then(Value::as_str) == Some("base64");
    let records: Vec<InRecord> = match doc.get("records") {
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(ApiError::bad_request("\"records\" is empty"));
            }
            items
                .iter()
                .map(|r| parse_record(r, default_base64, now))
                .collect::<Result<_, _>>()?
        }
        Some(_) => return Err(ApiError::bad_request("\"records\" must be an array")),
        None => vec![parse_record(&doc, default_base64, now)?],
    };
    let mut builder = RecordBatchBuilder::new(0);
    for r in &records {
        let headers: Vec<(&[u8], Option<&[u8]>)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_deref()))
            .collect();
        builder.push(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers);
    }
    let batch = builder.build();
    let appended = produce::produce(shared, topic, partition, batch, acks, HTTP_PRODUCE_TIMEOUT)
        .await
        .map_err(|e| from_broker_error(shared, e))?;
    let log_append_time = if appended.log_append_time_ms >= 0 {
        appended.log_append_time_ms
    } else {
        now
    };
    Ok((
        StatusCode::OK,
        Json(json!({
            "topic": topic,
            "partition": partition,
            "baseOffset": appended.base_offset,
            "lastOffset": appended.last_offset,
            "logAppendTime": log_append_time,
        })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct ConsumeQuery {
    offset: Option<String>,
    limit: Option<String>,
}

fn encode_bytes(b: &Option<bytes::Bytes>, any_binary: &mut bool) -> Value {
    match b {
        None => Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => Value::String(s.to_string()),
            Err(_) => {
                *any_binary = true;
                Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
        },
    }
}

async fn consume_records(
    State(shared): State<Shared>,
    Path((topic, partition)): Path<(String, String)>,
    Query(q): Query<ConsumeQuery>,
) -> Result<Json<Value>, ApiError> {
    consume_inner(&shared, &topic, &partition, q).map(Json)
}

fn consume_inner(
    shared: &Shared,
    topic: &str,
    partition: &str,
    q: ConsumeQuery,
) -> Result<Value, ApiError> {
    let partition: i32 = partition.parse().map_err(|_| {
        ApiError::bad_request(format!("partition must be an integer, got {partition:?}"))
    })?;
    let offset: i64 = match q.offset.as_deref() {
        None => 0,
        Some(s) => s
            .parse()
            .map_err(|_| ApiError::bad_request(format!("offset must be an integer, got {s:?}")))?,
    };
    let limit: usize = match q.limit.as_deref() {
        None => 100,
        Some(s) => s
            .parse()
            .ok()
            .filter(|n| (1..=CONSUME_LIMIT_MAX).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit must be within 1..={CONSUME_LIMIT_MAX}"))
            })?,
    };
    let part =
        produce::partition(shared, topic, partition).map_err(|e| from_broker_error(shared, e))?;
    part.check_leader(-1)
        .map_err(|e| from_broker_error(shared, e))?;
    let hw = part.high_watermark();
    let log_start = part.log.log_start_offset();
    if offset < log_start || offset > part.log_end_offset() {
        return Err(ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "OFFSET_OUT_OF_RANGE",
            format!(
                "offset {offset} is outside [{log_start}, {}]",
                part.log_end_offset()
            ),
        ));
    }
    let mut out = Vec::new();
    let mut next = offset;
    let mut bytes_out = 0u64;
    while out.len() < limit && next < hw {
        let chunk = part
            .read(next, 1 << 20, hw)
            .map_err(|e| from_broker_error(shared, e))?;
        if chunk.is_empty() {
            break;
        }
        bytes_out += chunk.len() as u64;
        let mut buf = bytes::Bytes::from(chunk);
        let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "CORRUPT_MESSAGE",
                format!("stored batch does not decode: {e}"),
            )
        })?;
        let before = next;
        for set in sets {
            for r in set.records {
                if r.offset < next || r.control {
                    continue;
                }
                if out.len() >= limit {
                    break;
                }
                let mut binary = false;
                let mut headers = Map::new();
                for (k, v) in &r.headers {
                    headers.insert(k.to_string(), encode_bytes(v, &mut binary));
                }
                let key = encode_bytes(&r.key, &mut binary);
                let value = encode_bytes(&r.value, &mut binary);
                let mut rec = json!({
                    "offset": r.offset,
                    "key": key,
                    "value": value,
                    "timestamp": r.timestamp,
                    "headers": headers,
                });
                if binary {
                    // One encoding per record: re-encode the UTF-8 parts as base64 too.
                    let b64 = |b: &Option<bytes::Bytes>| {
                        b.as_ref().map_or(Value::Null, |b| {
                            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
                        })
                    };
                    rec["key"] = b64(&r.key);
                    rec["value"] = b64(&r.value);
                    let hs: Map<String, Value> = r
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), b64(v)))
                        .collect();
                    rec["headers"] = Value::Object(hs);
                    rec["encoding"] = json!("base64");
                }
                out.push(rec);
                next = r.offset + 1;
            }
        }
        if next <= before {
            break;
        }
    }
    shared.metrics.consumed(topic, bytes_out, out.len() as u64);
    Ok(json!({
        "topic": topic,
        "partition": partition,
        "records": out,
        "highWatermark": hw,
        "logStartOffset": log_start,
        "nextOffset": next,
    }))
}

async fn replication_status(State(shared): State<Shared>) -> Json<Value> {
    let mut parts = Vec::new();
    for p in shared.replicas.all() {
        let s = p.snapshot();
        let followers: Vec<Value> = if s.role == Role::Leader {
            s.replicas
                .iter()
                .filter(|r| **r != shared.config.broker_id)
                .map(|r| {
                    let f = s.followers.get(r);
                    let leo = f.and_then(|f| f.log_end_offset);
                    json!({
                        "brokerId": r,
                        "logEndOffset": leo,
                        "lag": leo.map(|l| (s.log_end_offset - l).max(0)),
                        "lastCaughtUpMs": f.map(|f| f.last_caught_up_ms),
                        "inSync": s.isr.contains(r),
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        parts.push(json!({
            "topic": p.topic,
            "partition": p.index,
            "role": s.role.as_str(),
            "leader": s.leader,
            "leaderEpoch": s.leader_epoch,
            "partitionEpoch": s.partition_epoch,
            "logStartOffset": s.log_start_offset,
            "logEndOffset": s.log_end_offset,
            "highWatermark": s.high_watermark,
            // What read_committed consumers can reach (below the first open transaction).
            "lastStableOffset": p.last_stable_offset(),
            "sizeBytes": p.log.size_bytes(),
            "replicas": s.replicas,
            "isr": s.isr,
            "pendingIsr": s.pending_isr,
            "underReplicated": s.role == Role::Leader && s.isr.len() < s.replicas.len(),
            "underMinIsr": s.role == Role::Leader && s.isr.len() < s.min_insync_replicas,
            "followers": followers,
        }));
    }
    Json(json!({
        "brokerId": shared.config.broker_id,
        "metadataVersion": shared.image().version,
        "partitions": parts,
    }))
}

/// The consumer groups this broker coordinates (membership lives on the coordinator only;
/// committed offsets are in the metadata quorum): id, protocol type, state, member count.
async fn list_groups(State(shared): State<Shared>) -> Json<Value> {
    let image = shared.image();
    let groups: Vec<Value> = shared
        .groups
        .list()
        .into_iter()
        .map(|(id, protocol_type, state)| {
            let members = shared.groups.describe(&id).map_or(0, |g| g.members.len());
            let coordinator = crate::group::coordinator_for(&image, &id);
            json!({
                "groupId": id,
                "protocolType": protocol_type,
                "state": state.as_str(),
                "members": members,
                "coordinator": coordinator == Some(shared.config.broker_id),
            })
        })
        .collect();
    Json(json!({"brokerId": shared.config.broker_id, "groups": groups}))
}

/// One group's membership as its coordinator sees it (read-only; Kafka's DescribeGroups over
/// HTTP): state, generation, protocol, leader and each member with its assignment, decoded
/// from the consumer protocol when the group is a `consumer` group. 404 `GROUP_ID_NOT_FOUND`
/// when this broker has no members of the group; `coordinator` says whether this broker is
/// the group's coordinator by the current metadata.
/// SPEC §10: a share group as this broker sees it — its members (when it coordinates the
/// group) and the share-partitions it leads, with their start and end offsets and in-flight,
/// acquired, acknowledged and archived counts. 404 when the broker knows nothing of the group.
async fn describe_share_group(
    State(shared): State<Shared>,
    Path(group): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let coordinator = crate::group::coordinator_for(&shared.image(), &group);
    let st = shared
        .shares
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let members: Option<Vec<Value>> = st.groups.get(&group).map(|g| {
        g.members
            .iter()
            .map(|(id, m)| {
                json!({
                    "memberId": id,
                    "clientId": m.client_id,
                    "clientHost": m.client_host,
                    "memberEpoch": m.epoch,
                    "subscribedTopics": m.subscribed,
                    "assignment": m.assignment,
                })
            })
            .collect()
    });
    let partitions: Vec<Value> = st
        .partitions
        .iter()
        .filter(|((g, _, _), _)| *g == group)
        .map(|((_, topic, partition), l)| {
            json!({
                "topic": topic,
                "partition": partition,
                "leaderEpoch": l.leader_epoch,
                "counts": l.sp.counts(),
            })
        })
        .collect();
    let epoch = st.groups.get(&group).map(|g| g.group_epoch);
    drop(st);
    if members.is_none() && partitions.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "GROUP_ID_NOT_FOUND",
            format!(
                "broker {} has no members or share-partitions of share group {group:?}",
                shared.config.broker_id
            ),
        ));
    }
    Ok(Json(json!({
        "groupId": group,
        "groupType": "share",
        "brokerId": shared.config.broker_id,
        "coordinator": coordinator == Some(shared.config.broker_id),
        "groupEpoch": epoch,
        "members": members.unwrap_or_default(),
        "partitions": partitions,
    })))
}

async fn describe_group(
    State(shared): State<Shared>,
    Path(group): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let coordinator = crate::group::coordinator_for(&shared.image(), &group);
    let Some(g) = shared.groups.describe(&group) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "GROUP_ID_NOT_FOUND",
            format!(
                "broker {} has no members of group {group:?}",
                shared.config.broker_id
            ),
        ));
    };
    let consumer = g.protocol_type == "consumer";
    let members: Vec<Value> = g
        .members
        .iter()
        .map(|m| {
            let assignment = if consumer {
                decode_assignment(&m.assignment)
            } else {
                Value::Null
            };
            json!({
                "memberId": m.member_id,
                "instanceId": m.instance_id,
                "clientId": m.client_id,
                "clientHost": m.client_host,
                "assignment": assignment,
            })
        })
        .collect();
    Ok(Json(json!({
        "groupId": group,
        "brokerId": shared.config.broker_id,
        "coordinator": coordinator == Some(shared.config.broker_id),
        "state": g.state.as_str(),
        "generation": g.generation,
        "protocolType": g.protocol_type,
        "protocol": g.protocol,
        "leader": g.leader,
        "members": members,
    })))
}

/// A consumer-protocol assignment (`ConsumerProtocolAssignment`, as SyncGroup carries it) as
/// `[{"topic", "partitions": [...]}]`; empty bytes (no assignment yet) are `[]` and bytes
/// that do not decode are `null` (the member sent something else).
fn decode_assignment(raw: &bytes::Bytes) -> Value {
    use bytes::Buf as _;
    use kafka_protocol::messages::ConsumerProtocolAssignment;
    use kafka_protocol::protocol::Decodable as _;
    let mut data = raw.clone();
    if data.remaining() < 2 {
        return json!([]);
    }
    let version = data.get_i16().clamp(0, 3);
    match ConsumerProtocolAssignment::decode(&mut data, version) {
        Ok(a) => Value::Array(
            a.assigned_partitions
                .iter()
                .map(|t| json!({"topic": t.topic.0.to_string(), "partitions": t.partitions}))
                .collect(),
        ),
        Err(_) => Value::Null,
    }
}

async fn metadata_update(
    State(shared): State<Shared>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let doc: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?;
    match doc.get("type").and_then(Value::as_str) {
        Some("CONTROLLER_CHANGED") => {
            let id = doc.get("controllerId").and_then(Value::as_u64);
            let url = doc.get("controllerUrl").and_then(Value::as_str);
            let (Some(id), Some(url)) = (id, url) else {
                return Err(ApiError::bad_request(
                    "CONTROLLER_CHANGED needs controllerId and controllerUrl",
                ));
            };
            if shared.meta.set_controller(ControllerRef {
                id,
                url: url.to_string(),
            }) {
                tracing::info!(
                    broker = shared.config.broker_id,
                    controller = id,
                    url,
                    "controller switched (CONTROLLER_CHANGED push)"
                );
            }
            shared.controller_changed.notify_one();
        }
        Some("METADATA_UPDATED") => {
            let version = doc
                .get("version")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            if version > shared.image().version {
                shared.metadata_changed.notify_one();
            }
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown update type {other:?}; expected CONTROLLER_CHANGED or METADATA_UPDATED"
            )))
        }
    }
    Ok(Json(
        json!({"accepted": true, "brokerId": shared.config.broker_id}),
    ))
}

async fn metrics(State(shared): State<Shared>) -> Response {
    let parts = shared.replicas.all();
    let mut leaders = 0.0;
    let mut under_replicated = 0.0;
    let mut under_min_isr = 0.0;
    let mut max_lag = 0i64;
    for p in &parts {
        let s = p.snapshot();
        if s.role == Role::Leader {
            leaders += 1.0;
            for f in s.followers.values() {
                if let Some(leo) = f.log_end_offset {
                    max_lag = max_lag.max(s.log_end_offset - leo);
                }
            }
            if s.isr.len() < s.replicas.len() {
                under_replicated += 1.0;
            }
            if s.isr.len() < s.min_insync_replicas {
                under_min_isr += 1.0;
            }
        }
    }
    use crate::metrics::*;
    let gauges = [
        (PARTITION_COUNT, parts.len() as f64),
        (LEADER_COUNT, leaders),
        (UNDER_REPLICATED, under_replicated),
        (UNDER_MIN_ISR, under_min_isr),
        (MAX_FOLLOWER_LAG, max_lag as f64),
        (METADATA_VERSION, shared.image().version as f64),
    ];
    let text = shared.metrics.render(&gauges);
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

/// Readiness for orchestrators and `dmq dev`: 200 once this process is registered and its
/// metadata shows it ONLINE; 503 (JSON) before that and during a controlled shutdown.
async fn ready(State(shared): State<Shared>) -> Response {
    let ready = shared.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ready": ready,
        "brokerId": shared.config.broker_id,
        "metadataVersion": shared.image().version,
    });
    (status, Json(body)).into_response()
}

async fn health(State(shared): State<Shared>) -> Json<Value> {
    let image = shared.image();
    let controller = shared.meta.controller();
    let registered = image.brokers.contains_key(&shared.config.broker_id);
    let mut roles: BTreeMap<&str, usize> = BTreeMap::new();
    for p in shared.replicas.all() {
        *roles.entry(p.role().as_str()).or_default() += 1;
    }
    Json(json!({
        "status": if registered { "UP" } else { "STARTING" },
        "brokerId": shared.config.broker_id,
        "registered": registered,
        "controllerId": controller.map(|c| c.id),
        "metadataVersion": image.version,
        "partitions": roles,
    }))
}
