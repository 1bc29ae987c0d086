//! The broker's side of the metadata quorum's HTTP API (SPEC §3): controller discovery,
//! registration, heartbeats, metadata pulls and the admin calls brokers forward.
//!
//! Leader-only calls go to the controller this broker last heard of; a `503` with
//! `X-Controller-Leader` moves the broker to the named node (once per call), and a connection
//! failure makes the call fail so that the membership loop can count it and rediscover.
//!
//! A controller is named by its node id, and the broker reaches it at the URL its own
//! services.json gives that id (as Kafka's `controller.quorum.voters`: the client's config says
//! where node N is). The URL the metadata node hands out (`controllerUrl`, the redirect header,
//! a push) is the node's own idea of its address, which may not be the route from this broker;
//! it is used only for an id this broker's config does not list.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Duration;

use dmq_auth::{AclBinding, AclBindingFilter};
use dmq_types::broker_config::BrokerConfigs;
use dmq_types::model::{Broker, Partition, Topic};
use dmq_types::txn::{Transaction, TxnError, TxnOp};
use dmq_types::BrokerId;
use futures::stream::{FuturesUnordered, StreamExt};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{BrokerError, Result};
use crate::partition::IsrChange;
use crate::security::SecurityImage;

/// The cluster as a broker caches it.
#[derive(Debug, Clone, Default)]
pub struct ClusterImage {
    /// The metadata version (applied Raft index) this image was read at.
    pub version: u64,
    pub brokers: BTreeMap<BrokerId, Broker>,
    pub topics: BTreeMap<String, Topic>,
    /// Dynamic broker configs (cluster-wide and per broker).
    pub broker_configs: BrokerConfigs,
    /// ACLs and SCRAM credentials.
    pub security: SecurityImage,
    /// Group configs (share groups' `share.*`), by group id.
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Per share group, the count of administrator resets of its share-partition states: a
    /// leader whose copy was loaded at another count loads it again.
    pub share_resets: BTreeMap<String, u64>,
}

impl ClusterImage {
    pub fn topic_by_id(&self, id: &str) -> Option<&Topic> {
        self.topics.values().find(|t| t.topic_id == id)
    }
}

#[derive(Deserialize)]
struct ClusterResponse {
    version: u64,
    brokers: Vec<Broker>,
    topics: Vec<Topic>,
    #[serde(default, rename = "brokerConfigs")]
    broker_configs: BrokerConfigs,
    #[serde(default)]
    security: Option<SecurityImage>,
    #[serde(default, rename = "groupConfigs")]
    group_configs: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default, rename = "shareResets")]
    share_resets: BTreeMap<String, u64>,
}

/// A transaction change the quorum refused, with Kafka's error for it.
#[derive(Debug, Clone)]
pub struct TxnRefused {
    pub error: TxnError,
    pub message: String,
}

/// Where the controller is, as last learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerRef {
    pub id: u64,
    pub url: String,
}

/// A failed call's answer, kept for mapping to Kafka errors.
#[derive(Debug)]
pub struct ApiReply {
    pub status: StatusCode,
    pub body: Value,
}

/// The quorum's answer to a batch of offset commits.
#[derive(Debug, Clone)]
pub enum OffsetsCommitted {
    /// Per commit, in order: `None` when stored, else why it was refused.
    Done(Vec<Option<String>>),
    /// The whole request was refused (`client_error`: a 4xx, something in the request itself).
    Refused { client_error: bool, message: String },
}

impl ApiReply {
    pub fn message(&self) -> String {
        self.body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }
    pub fn error_code(&self) -> &str {
        self.body.get("error").and_then(Value::as_str).unwrap_or("")
    }
}

/// A metadata node as this broker's config names it: its base URL and, from services.json,
/// its node id (`None` for a bare URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataUrl {
    pub node_id: Option<u64>,
    pub url: String,
}

impl From<&str> for MetadataUrl {
    fn from(url: &str) -> MetadataUrl {
        MetadataUrl {
            node_id: None,
            url: url.to_string(),
        }
    }
}

impl From<String> for MetadataUrl {
    fn from(url: String) -> MetadataUrl {
        MetadataUrl { node_id: None, url }
    }
}

/// Where to reach controller `c` from here: the URL `configured` gives its id, else the URL
/// the quorum handed out.
fn resolve(configured: &[MetadataUrl], c: ControllerRef) -> ControllerRef {
    match configured.iter().find(|m| m.node_id == Some(c.id)) {
        Some(m) => ControllerRef {
            id: c.id,
            url: m.url.clone(),
        },
        None => c,
    }
}

pub struct MetaClient {
    http: reqwest::Client,
    urls: Vec<MetadataUrl>,
    controller: RwLock<Option<ControllerRef>>,
}

impl MetaClient {
    /// `auth`: the `Authorization` header value every call carries (a secured cluster);
    /// `http`: the client builder (its TLS trusts the cluster's CA with `security.http.tls`).
    pub fn new(
        urls: Vec<MetadataUrl>,
        timeout: Duration,
        auth: Option<String>,
        http: reqwest::ClientBuilder,
    ) -> Result<MetaClient> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(auth) = auth {
            let mut value = reqwest::header::HeaderValue::from_str(&auth)
                .map_err(|_| BrokerError::Metadata("an HTTP token is not a valid header".into()))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = http
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| BrokerError::Metadata(format!("cannot build HTTP client: {e}")))?;
        Ok(MetaClient {
            http,
            urls,
            controller: RwLock::new(None),
        })
    }

    pub fn controller(&self) -> Option<ControllerRef> {
        self.controller
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Where to reach controller `c` from this broker (see the module documentation).
    pub fn resolve(&self, c: ControllerRef) -> ControllerRef {
        resolve(&self.urls, c)
    }

    /// Records a controller learnt from discovery, a push or a redirect, at the URL this
    /// broker's config gives its id. Returns whether it changed.
    pub fn set_controller(&self, c: ControllerRef) -> bool {
        let c = self.resolve(c);
        let mut g = self.controller.write().unwrap_or_else(|e| e.into_inner());
        let changed = g.as_ref() != Some(&c);
        *g = Some(c);
        changed
    }

    pub fn forget_controller(&self) {
        *self.controller.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Seed 001 phase 2: ask every metadata node at once; the first answer that names a leader
    /// wins.
    pub async fn discover(&self) -> Option<ControllerRef> {
        let mut asks: FuturesUnordered<_> = self
            .urls
            .iter()
            .map(|u| {
                let http = self.http.clone();
                let url = format!("{}/api/v1/metadata/controller", u.url);
                async move {
                    let resp = http.get(&url).send().await.ok()?;
                    if !resp.status().is_success() {
                        return None;
                    }
                    let v: Value = resp.json().await.ok()?;
                    Some(ControllerRef {
                        id: v.get("controllerId")?.as_u64()?,
                        url: v.get("controllerUrl")?.as_str()?.to_string(),
                    })
                }
            })
            .collect();
        while let Some(answer) = asks.next().await {
            if let Some(c) = answer {
                let c = self.resolve(c);
                self.set_controller(c.clone());
                return Some(c);
            }
        }
        None
    }

    /// A call to the controller, following one `503 X-Controller-Leader` redirect. `Ok` holds
    /// every answer the controller gave (including 4xx); `Err` means no controller answered.
    pub async fn leader_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<ApiReply> {
        let mut redirects = 0;
        loop {
            let Some(ctrl) = self.controller() else {
                return Err(BrokerError::Metadata("no controller known".into()));
            };
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", ctrl.url));
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    // The controller may have died: ask the quorum once who leads now.
                    if redirects == 0 {
                        redirects += 1;
                        if let Some(next) = self.discover().await {
                            if next.url != ctrl.url {
                                tracing::info!(
                                    from = ctrl.id,
                                    to = next.id,
                                    "controller unreachable; rediscovered a new one"
                                );
                                continue;
                            }
                        }
                    }
                    return Err(BrokerError::Metadata(format!(
                        "controller {} at {} did not answer: {e}",
                        ctrl.id, ctrl.url
                    )));
                }
            };
            let status = resp.status();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                let next = resp
                    .headers()
                    .get("X-Controller-Leader")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let next_id = resp
                    .headers()
                    .get("X-Controller-Leader-Id")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                if let (Some(url), Some(id)) = (next, next_id) {
                    let next = self.resolve(ControllerRef { id, url });
                    if redirects == 0 && next.url != ctrl.url {
                        tracing::info!(
                            from = ctrl.id,
                            to = id,
                            url = next.url,
                            "controller moved; following X-Controller-Leader"
                        );
                        self.set_controller(next);
                        redirects += 1;
                        continue;
                    }
                }
            }
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            return Ok(ApiReply { status, body });
        }
    }

    async fn leader_ok(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let reply = self.leader_call(method, path, body).await?;
        if reply.status.is_success() {
            Ok(reply.body)
        } else {
            Err(BrokerError::Metadata(format!(
                "{path}: {} {} {}",
                reply.status,
                reply.error_code(),
                reply.message()
            )))
        }
    }

    /// Registers this broker; returns the broker epoch the registration got.
    pub async fn register(
        &self,
        id: BrokerId,
        host: &str,
        port: u16,
        kafka_port: u16,
        incarnation_id: &str,
    ) -> Result<u64> {
        let body = json!({"brokerId": id, "host": host, "port": port, "kafkaPort": kafka_port,
                          "incarnationId": incarnation_id});
        self.leader_ok(Method::POST, "/api/v1/metadata/brokers", Some(body))
            .await
            .map(|b| b["brokerEpoch"].as_u64().unwrap_or(0))
    }

    /// One heartbeat; `Ok(None)` means the controller does not know this broker (register).
    pub async fn heartbeat(&self, id: BrokerId, version: u64) -> Result<Option<Heartbeat>> {
        let body = json!({"brokerId": id, "metadataVersion": version});
        let reply = self
            .leader_call(
                Method::POST,
                &format!("/api/v1/metadata/heartbeat/{id}"),
                Some(body),
            )
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(BrokerError::Metadata(format!(
                "heartbeat refused: {} {}",
                reply.status,
                reply.message()
            )));
        }
        let b = &reply.body;
        Ok(Some(Heartbeat {
            version: b.get("version").and_then(Value::as_u64).unwrap_or(0),
            controller_id: b.get("controllerId").and_then(Value::as_u64),
        }))
    }

    /// The committed cluster image, read linearizably from the controller.
    pub async fn cluster(&self) -> Result<ClusterImage> {
        let v = self
            .leader_ok(
                Method::GET,
                "/api/v1/metadata/cluster?consistent=true&security=true",
                None,
            )
            .await?;
        let c: ClusterResponse = serde_json::from_value(v)
            .map_err(|e| BrokerError::Metadata(format!("unexpected cluster document: {e}")))?;
        Ok(ClusterImage {
            version: c.version,
            brokers: c.brokers.into_iter().map(|b| (b.broker_id, b)).collect(),
            topics: c
                .topics
                .into_iter()
                .map(|t| (t.topic_name.clone(), t))
                .collect(),
            broker_configs: c.broker_configs,
            security: c.security.unwrap_or_default(),
            group_configs: c.group_configs,
            share_resets: c.share_resets,
        })
    }

    /// Share-partition states as one Raft entry (`writes`: `{group, topic, partition,
    /// leaderEpoch, snapshot}`). Per write, in order: `None` when stored, else the Kafka error
    /// name it was refused with (FENCED_LEADER_EPOCH for a deposed leader).
    pub async fn write_share_states(&self, writes: Vec<Value>) -> Result<Vec<Option<String>>> {
        let count = writes.len();
        let body = self
            .leader_ok(
                Method::POST,
                "/api/v1/metadata/share-states",
                Some(json!({ "writes": writes })),
            )
            .await?;
        let mut results = vec![None; count];
        if let Some(rejected) = body["rejected"].as_array() {
            for r in rejected {
                let index = r["index"].as_u64().unwrap_or(u64::MAX) as usize;
                if let Some(slot) = results.get_mut(index) {
                    *slot = Some(r["code"].as_str().unwrap_or("UNKNOWN").to_string());
                }
            }
        }
        Ok(results)
    }

    /// A share group's stored share-partition states and configs, read through the
    /// controller: `{"group", "config", "partitions": [{topic, partition, leaderEpoch,
    /// snapshot}]}`.
    pub async fn share_group_state(&self, group: &str) -> Result<Value> {
        self.leader_ok(
            Method::GET,
            &format!(
                "/api/v1/metadata/share-groups/{}?consistent=true",
                encode_segment(group)
            ),
            None,
        )
        .await
    }

    /// CreateAcls: per binding, `None` when stored, else why not.
    pub async fn create_acls(&self, bindings: &[AclBinding]) -> Result<Vec<Option<String>>> {
        let v = self
            .leader_ok(
                Method::POST,
                "/api/v1/metadata/acls",
                Some(json!({"bindings": bindings})),
            )
            .await?;
        let results = v["results"]
            .as_array()
            .ok_or_else(|| BrokerError::Metadata("CreateAcls answer without results".into()))?;
        Ok(results
            .iter()
            .map(|r| r["error"].as_str().map(str::to_string))
            .collect())
    }

    /// DeleteAcls: per filter, the bindings removed.
    pub async fn delete_acls(&self, filters: &[AclBindingFilter]) -> Result<Vec<Vec<AclBinding>>> {
        let v = self
            .leader_ok(
                Method::POST,
                "/api/v1/metadata/acls/delete",
                Some(json!({"filters": filters})),
            )
            .await?;
        let results = v["results"]
            .as_array()
            .ok_or_else(|| BrokerError::Metadata("DeleteAcls answer without results".into()))?;
        results
            .iter()
            .map(|r| {
                serde_json::from_value(r["deleted"].clone())
                    .map_err(|e| BrokerError::Metadata(format!("DeleteAcls answer: {e}")))
            })
            .collect()
    }

    /// AlterUserScramCredentials with keys derived: per user, Kafka's error code and message.
    pub async fn alter_scram(
        &self,
        body: Value,
    ) -> Result<BTreeMap<String, (i16, Option<String>)>> {
        let v = self
            .leader_ok(
                Method::POST,
                "/api/v1/metadata/scram-credentials",
                Some(body),
            )
            .await?;
        let results = v["results"].as_array().ok_or_else(|| {
            BrokerError::Metadata("AlterUserScramCredentials answer without results".into())
        })?;
        Ok(results
            .iter()
            .filter_map(|r| {
                let user = r["user"].as_str()?.to_string();
                let code = r["errorCode"].as_i64().unwrap_or(0) as i16;
                let msg = r["message"].as_str().map(str::to_string);
                Some((user, (code, msg)))
            })
            .collect())
    }

    pub async fn create_topic(&self, body: Value) -> Result<ApiReply> {
        self.leader_call(Method::POST, "/api/v1/metadata/topics", Some(body))
            .await
    }

    /// Kafka's (Incremental)AlterConfigs: `PATCH /api/v1/metadata/topics/{name}/config` with
    /// `{"set", "delete", "replace", "validateOnly"}`.
    /// Changes dynamic broker configs: one broker's, or (`None`) the cluster-wide defaults.
    pub async fn alter_broker_config(
        &self,
        broker: Option<BrokerId>,
        body: Value,
    ) -> Result<ApiReply> {
        let path = match broker {
            Some(id) => format!("/api/v1/metadata/broker-configs/{id}"),
            None => "/api/v1/metadata/broker-configs".to_string(),
        };
        self.leader_call(Method::PATCH, &path, Some(body)).await
    }

    pub async fn alter_topic_config(&self, name: &str, body: Value) -> Result<ApiReply> {
        self.leader_call(
            Method::PATCH,
            &format!("/api/v1/metadata/topics/{}/config", encode_segment(name)),
            Some(body),
        )
        .await
    }

    /// IncrementalAlterConfigs on a GROUP resource: `PATCH /api/v1/metadata/group-configs/{g}`
    /// with `{"set", "delete"}`.
    pub async fn alter_group_config(&self, group: &str, body: Value) -> Result<ApiReply> {
        self.leader_call(
            Method::PATCH,
            &format!("/api/v1/metadata/group-configs/{}", encode_segment(group)),
            Some(body),
        )
        .await
    }

    /// Kafka's ElectLeaders: `POST /api/v1/metadata/partitions/elect`.
    pub async fn elect_leaders(&self, body: Value) -> Result<ApiReply> {
        self.leader_call(
            Method::POST,
            "/api/v1/metadata/partitions/elect",
            Some(body),
        )
        .await
    }

    /// Kafka's CreatePartitions: `POST /api/v1/metadata/topics/{name}/partitions`.
    pub async fn create_partitions(&self, name: &str, body: Value) -> Result<ApiReply> {
        self.leader_call(
            Method::POST,
            &format!("/api/v1/metadata/topics/{name}/partitions"),
            Some(body),
        )
        .await
    }

    pub async fn delete_topic(&self, name: &str) -> Result<ApiReply> {
        self.leader_call(
            Method::DELETE,
            &format!("/api/v1/metadata/topics/{name}"),
            None,
        )
        .await
    }

    /// Kafka's AlterPartition: asks the controller to commit `isr` for a partition this broker
    /// leads. `Ok(Some)` is the committed partition; `Ok(None)` a refusal (fenced by a newer
    /// leader or partition epoch, or an ineligible replica) — the metadata will show why.
    pub async fn alter_partition(
        &self,
        id: BrokerId,
        topic: &str,
        partition: i32,
        change: &IsrChange,
    ) -> Result<Option<Partition>> {
        let body = json!({
            "brokerId": id,
            "topic": topic,
            "partition": partition,
            "leaderEpoch": change.leader_epoch,
            "partitionEpoch": change.partition_epoch,
            "isr": change.isr,
            "addedEpochs": change
                .added_epochs
                .iter()
                .map(|(id, epoch)| json!({"brokerId": id, "brokerEpoch": epoch}))
                .collect::<Vec<Value>>(),
        });
        let reply = self
            .leader_call(
                Method::POST,
                "/api/v1/metadata/partitions/alter",
                Some(body),
            )
            .await?;
        if reply.status.is_success() {
            let p: Partition = serde_json::from_value(reply.body.clone()).map_err(|e| {
                BrokerError::Metadata(format!("unexpected AlterPartition answer: {e}"))
            })?;
            return Ok(Some(p));
        }
        if reply.status == StatusCode::CONFLICT {
            tracing::info!(
                topic,
                partition,
                code = reply.error_code(),
                "ISR change refused: {}",
                reply.message()
            );
            return Ok(None);
        }
        Err(BrokerError::Metadata(format!(
            "AlterPartition: {} {} {}",
            reply.status,
            reply.error_code(),
            reply.message()
        )))
    }

    /// One transaction change (the transaction coordinator's proposals): the transaction after
    /// it, or Kafka's error when the quorum refused it. `Err`: no controller answered.
    pub async fn txn(&self, op: &TxnOp) -> Result<std::result::Result<Transaction, TxnRefused>> {
        let body = serde_json::to_value(op)
            .map_err(|e| BrokerError::Metadata(format!("cannot encode {op:?}: {e}")))?;
        let reply = self
            .leader_call(Method::POST, "/api/v1/metadata/transactions", Some(body))
            .await?;
        if reply.status.is_success() {
            let t: Transaction = serde_json::from_value(reply.body).map_err(|e| {
                BrokerError::Metadata(format!("unexpected transaction answer: {e}"))
            })?;
            return Ok(Ok(t));
        }
        let error =
            serde_json::from_value::<TxnError>(Value::String(reply.error_code().to_string()));
        match error {
            Ok(error) => Ok(Err(TxnRefused {
                error,
                message: reply.message(),
            })),
            Err(_) => Err(BrokerError::Metadata(format!(
                "transaction change: {} {} {}",
                reply.status,
                reply.error_code(),
                reply.message()
            ))),
        }
    }

    /// One transactional id's state as the controller has committed it (`None`: unknown).
    pub async fn transaction(&self, id: &str) -> Result<Option<Transaction>> {
        let path = format!(
            "/api/v1/metadata/transactions/{}?consistent=true",
            encode_segment(id)
        );
        let reply = self.leader_call(Method::GET, &path, None).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(BrokerError::Metadata(format!(
                "{path}: {} {} {}",
                reply.status,
                reply.error_code(),
                reply.message()
            )));
        }
        serde_json::from_value(reply.body)
            .map(Some)
            .map_err(|e| BrokerError::Metadata(format!("unexpected transaction: {e}")))
    }

    /// Every transactional id's state, as the controller has committed it.
    pub async fn transactions(&self) -> Result<Vec<Transaction>> {
        #[derive(Deserialize)]
        struct List {
            transactions: Vec<Transaction>,
        }
        let body = self
            .leader_ok(
                Method::GET,
                "/api/v1/metadata/transactions?consistent=true",
                None,
            )
            .await?;
        let list: List = serde_json::from_value(body)
            .map_err(|e| BrokerError::Metadata(format!("unexpected transaction list: {e}")))?;
        Ok(list.transactions)
    }

    /// Controlled shutdown: the controller fences this broker and moves its leaderships.
    pub async fn controlled_shutdown(&self, id: BrokerId) -> Result<()> {
        self.leader_ok(
            Method::POST,
            &format!("/api/v1/metadata/brokers/{id}/shutdown"),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Stores a batch of group offset commits (one Raft entry).
    pub async fn commit_offsets(&self, commits: Vec<Value>) -> Result<OffsetsCommitted> {
        let count = commits.len();
        let reply = self
            .leader_call(
                Method::POST,
                "/api/v1/metadata/offsets",
                Some(json!({ "commits": commits })),
            )
            .await?;
        if !reply.status.is_success() {
            return Ok(OffsetsCommitted::Refused {
                client_error: reply.status.is_client_error(),
                message: format!(
                    "{} {} {}",
                    reply.status,
                    reply.error_code(),
                    reply.message()
                ),
            });
        }
        let mut results = vec![None; count];
        if let Some(rejected) = reply.body["rejected"].as_array() {
            for r in rejected {
                let index = r["index"].as_u64().unwrap_or(u64::MAX) as usize;
                if let Some(slot) = results.get_mut(index) {
                    *slot = Some(r["reason"].as_str().unwrap_or("refused").to_string());
                }
            }
        }
        Ok(OffsetsCommitted::Done(results))
    }

    /// A group's committed offsets: `{"topic": {"partition": {"offset", "leaderEpoch",
    /// "metadata", …}}}` (empty for an unknown group), read through the controller.
    pub async fn group_offsets(&self, group: &str) -> Result<Value> {
        Ok(self.group_offsets_and_pending(group).await?.0)
    }

    /// [`MetaClient::group_offsets`], and the partitions with offsets committed in a
    /// transaction still open (KIP-447's unstable offsets).
    pub async fn group_offsets_and_pending(
        &self,
        group: &str,
    ) -> Result<(Value, Vec<(String, i32)>)> {
        let v = self
            .leader_ok(
                Method::GET,
                &format!(
                    "/api/v1/metadata/groups/{}/offsets?consistent=true",
                    encode_segment(group)
                ),
                None,
            )
            .await?;
        let pending = v
            .get("pendingTransactional")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|p| {
                        Some((
                            p.get("topic")?.as_str()?.to_string(),
                            i32::try_from(p.get("partition")?.as_i64()?).ok()?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok((v.get("offsets").cloned().unwrap_or(Value::Null), pending))
    }

    /// Ids of every group with committed offsets.
    pub async fn group_ids(&self) -> Result<Vec<String>> {
        let v = self
            .leader_ok(Method::GET, "/api/v1/metadata/groups?lag=false", None)
            .await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|g| g.get("groupId").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Deletes a group's offsets: all, or the given `(topic, partition)`s. `Ok(false)` when
    /// the group had none.
    pub async fn delete_group_offsets(
        &self,
        group: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<bool> {
        let (method, path, body) = delete_call("groups", group, partitions);
        let reply = self.leader_call(method, &path, body).await?;
        if reply.status.is_success() {
            Ok(true)
        } else if reply.status == StatusCode::NOT_FOUND {
            Ok(false)
        } else {
            Err(BrokerError::Metadata(format!(
                "deleting offsets of {group:?}: {} {}",
                reply.status,
                reply.message()
            )))
        }
    }

    /// A block of producer ids: `(first, count)`.
    pub async fn allocate_producer_ids(&self, id: BrokerId, count: u32) -> Result<(i64, u32)> {
        let v = self
            .leader_ok(
                Method::POST,
                "/api/v1/metadata/producer-ids",
                Some(json!({"brokerId": id, "count": count})),
            )
            .await?;
        let first = v.get("firstProducerId").and_then(Value::as_i64);
        let n = v.get("count").and_then(Value::as_u64);
        match (first, n) {
            (Some(first), Some(n)) => Ok((first, n as u32)),
            _ => Err(BrokerError::Metadata(format!(
                "unexpected producer-id answer {v}"
            ))),
        }
    }

    /// Deletes a share group's durable share-partition states: all of them (DeleteGroups), or
    /// the given `(topic, partition)`s (DeleteShareGroupOffsets). Returns how many went.
    pub async fn delete_share_group_states(
        &self,
        group: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<u64> {
        let (method, path, body) = delete_call("share-groups", group, partitions);
        let body = self.leader_ok(method, &path, body).await?;
        Ok(body["deleted"].as_u64().unwrap_or(0))
    }
}

/// The call deleting a group's offsets or share states under `/api/v1/metadata/{kind}/{g}`:
/// all of them (DELETE), or the given `(topic, partition)`s (POST `…/offsets/delete`).
fn delete_call(
    kind: &str,
    group: &str,
    partitions: Option<Vec<(String, i32)>>,
) -> (Method, String, Option<Value>) {
    let g = encode_segment(group);
    match partitions {
        None => (Method::DELETE, format!("/api/v1/metadata/{kind}/{g}"), None),
        Some(parts) => {
            let parts: Vec<Value> = parts
                .into_iter()
                .map(|(t, p)| json!({"topic": t, "partition": p}))
                .collect();
            (
                Method::POST,
                format!("/api/v1/metadata/{kind}/{g}/offsets/delete"),
                Some(json!({ "partitions": parts })),
            )
        }
    }
}

/// What a heartbeat answer tells the broker.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    pub version: u64,
    pub controller_id: Option<u64>,
}

/// Percent-encodes a URL path segment (group ids are arbitrary strings).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured() -> Vec<MetadataUrl> {
        vec![
            MetadataUrl {
                node_id: Some(1),
                url: "http://relay-1:7001".into(),
            },
            MetadataUrl {
                node_id: Some(2),
                url: "http://relay-2:7002".into(),
            },
            "http://bare:9999".into(),
        ]
    }

    #[test]
    fn a_controller_is_reached_where_this_brokers_config_puts_its_id() {
        let handed_out = ControllerRef {
            id: 2,
            url: "http://10.0.0.2:9092".into(),
        };
        let c = resolve(&configured(), handed_out);
        assert_eq!(c.id, 2);
        assert_eq!(c.url, "http://relay-2:7002");
    }

    #[test]
    fn an_id_the_config_does_not_list_keeps_the_url_the_quorum_handed_out() {
        let handed_out = ControllerRef {
            id: 4,
            url: "http://10.0.0.4:9094".into(),
        };
        assert_eq!(resolve(&configured(), handed_out.clone()), handed_out);
    }

    #[test]
    fn pushes_and_redirects_are_recorded_at_the_configured_url() {
        let client = MetaClient::new(
            configured(),
            Duration::from_millis(100),
            None,
            dmq_types::https::client_builder(None).expect("tls"),
        )
        .expect("client builds");
        assert!(client.set_controller(ControllerRef {
            id: 1,
            url: "http://10.0.0.1:9091".into(),
        }));
        assert_eq!(
            client.controller().map(|c| c.url),
            Some("http://relay-1:7001".to_string())
        );
        // The same node under another advertised address is no change.
        assert!(!client.set_controller(ControllerRef {
            id: 1,
            url: "http://node-1.internal:9091".into(),
        }));
    }
}
