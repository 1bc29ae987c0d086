//! One function per Kafka API. Record batches stay opaque bytes: the produce path reads only
//! batch headers, the fetch path returns stored bytes as they are.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dmq_types::{validate_topic_name, BrokerId};
use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    fetch_request, ApiVersionsResponse, CreatePartitionsRequest, CreatePartitionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeClusterRequest, DescribeClusterResponse, FetchRequest, FetchResponse,
    InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    ProduceRequest, ProduceResponse, RequestHeader, RequestKind, ResponseKind, TopicName,
    WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

use dmq_auth::{Operation, ResourceType};

use crate::error::BrokerError;
use crate::kafka::server::api_versions_list;
use crate::node::BrokerShared;
use crate::partition::{Appended, Partition, TxnMarker};
use crate::produce;
use dmq_replica::FollowerFetch;

/// The cluster id clients see (Metadata v2+, DescribeCluster).
pub const CLUSTER_ID: &str = "dmq-cluster";
/// Long polls are capped so a confused client cannot pin a connection forever.
const MAX_WAIT_CAP_MS: i32 = 30_000;
/// How long Metadata waits for an auto-created topic to get leaders before answering.
const AUTO_CREATE_WAIT: Duration = Duration::from_secs(3);

pub struct Ctx<'a> {
    pub shared: &'a Arc<BrokerShared>,
    pub header: &'a RequestHeader,
    pub version: i16,
    /// The client's address (group members' `client_host`).
    pub peer: Option<std::net::SocketAddr>,
    /// Set when any part of the answer carries an error (for the error counter).
    pub had_error: bool,
    /// Who the connection authenticated as (`User:ANONYMOUS` without SASL).
    pub principal: &'a dmq_auth::KafkaPrincipal,
    /// The listener the request came in on.
    pub listener: &'a crate::kafka::server::Listener,
}

impl Ctx<'_> {
    /// The client's address as ACL hosts name it.
    pub(super) fn client_host(&self) -> String {
        self.peer
            .map_or_else(|| "*".to_string(), |p| p.ip().to_string())
    }

    /// May this connection's principal do `op` on the resource (always, authorizer off)?
    pub(super) fn allowed(
        &self,
        op: dmq_auth::Operation,
        resource_type: dmq_auth::ResourceType,
        name: &str,
    ) -> bool {
        self.shared
            .security
            .allowed(self.principal, &self.client_host(), op, resource_type, name)
    }

    /// [`Ctx::allowed`] on the cluster resource.
    pub(super) fn allowed_on_cluster(&self, op: dmq_auth::Operation) -> bool {
        self.allowed(
            op,
            dmq_auth::ResourceType::Cluster,
            dmq_auth::acl::CLUSTER_NAME,
        )
    }

    pub(super) fn code(&mut self, e: &BrokerError) -> i16 {
        self.had_error = true;
        e.kafka_code()
    }
}

/// Kafka's authorized-operations bitfield (KIP-430) of one resource for this connection's
/// principal: the bits of the resource type's operations (`authorized::TOPIC` …) the
/// authorizer allows. Without an authorizer that is all of them, as in Kafka.
pub(super) fn authorized_ops(
    ctx: &Ctx<'_>,
    all: i32,
    resource_type: ResourceType,
    name: &str,
) -> i32 {
    let mut bits = 0;
    for code in 3..=14i8 {
        if all & (1 << code) == 0 {
            continue;
        }
        if let Ok(op) = Operation::from_code(code) {
            if ctx.allowed(op, resource_type, name) {
                bits |= 1 << code;
            }
        }
    }
    bits
}

/// The bitfields of every operation each resource type has (what Kafka answers without an
/// authorizer).
pub(super) mod authorized {
    /// AclOperation codes: READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8,
    /// CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12,
    /// CREATE_TOKENS 13, DESCRIBE_TOKENS 14.
    const fn bits(ops: &[i32]) -> i32 {
        let mut v = 0;
        let mut i = 0;
        while i < ops.len() {
            v |= 1 << ops[i];
            i += 1;
        }
        v
    }
    pub const TOPIC: i32 = bits(&[3, 4, 5, 6, 7, 8, 10, 11]);
    pub const CLUSTER: i32 = bits(&[5, 7, 8, 9, 10, 11, 12, 13, 14]);
    pub const GROUP: i32 = bits(&[3, 6, 8]);
    /// What Kafka sends when the client did not ask.
    pub const NOT_ASKED: i32 = i32::MIN;
}

/// The Kafka port of broker `b` on the listener `ctx`'s request came in on (Kafka advertises
/// the same listener of every broker); `None` when `b` has no such listener.
pub(super) fn advertised_port(ctx: &Ctx<'_>, b: &dmq_types::model::Broker) -> Option<u16> {
    if ctx.listener.name == crate::kafka::server::DEFAULT_LISTENER {
        return Some(b.kafka_port);
    }
    ctx.shared
        .config
        .listeners
        .get(&b.broker_id)?
        .iter()
        .find(|l| l.name == ctx.listener.name)
        .map(|l| l.port)
}

pub(super) fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

pub(super) fn topic_name(v: &str) -> TopicName {
    TopicName(s(v))
}

fn uuid_of(id: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(id).unwrap_or_default()
}

pub async fn handle(ctx: &mut Ctx<'_>, request: RequestKind) -> Option<ResponseKind> {
    Some(match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(
            ApiVersionsResponse::default().with_api_keys(api_versions_list()),
        ),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata(ctx, r).await),
        RequestKind::Produce(r) => return produce_request(ctx, r).await.map(ResponseKind::Produce),
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch(ctx, r).await),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets(ctx, r)),
        RequestKind::WriteTxnMarkers(r) => {
            ResponseKind::WriteTxnMarkers(write_txn_markers(ctx, r).await)
        }
        RequestKind::DeleteRecords(r) => ResponseKind::DeleteRecords(delete_records(ctx, r).await),
        RequestKind::ElectLeaders(r) => ResponseKind::ElectLeaders(elect_leaders(ctx, r).await),
        RequestKind::DescribeTopicPartitions(r) => ResponseKind::DescribeTopicPartitions(
            super::describe::describe_topic_partitions(ctx, r),
        ),
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(super::describe::describe_producers(ctx, r))
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch(ctx, r))
        }
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(create_topics(ctx, r).await),
        RequestKind::CreateAcls(r) => {
            ResponseKind::CreateAcls(super::security::create_acls(ctx, r).await)
        }
        RequestKind::DescribeAcls(r) => {
            ResponseKind::DescribeAcls(super::security::describe_acls(ctx, r))
        }
        RequestKind::DeleteAcls(r) => {
            ResponseKind::DeleteAcls(super::security::delete_acls(ctx, r).await)
        }
        RequestKind::ShareGroupHeartbeat(r) => {
            ResponseKind::ShareGroupHeartbeat(super::share::share_group_heartbeat(ctx, r))
        }
        RequestKind::ShareFetch(r) => {
            ResponseKind::ShareFetch(super::share::share_fetch(ctx, r).await)
        }
        RequestKind::ShareAcknowledge(r) => {
            ResponseKind::ShareAcknowledge(super::share::share_acknowledge(ctx, r).await)
        }
        RequestKind::ShareGroupDescribe(r) => {
            ResponseKind::ShareGroupDescribe(super::share_admin::share_group_describe(ctx, r).await)
        }
        RequestKind::DescribeShareGroupOffsets(r) => ResponseKind::DescribeShareGroupOffsets(
            super::share_admin::describe_share_group_offsets(ctx, r).await,
        ),
        RequestKind::AlterShareGroupOffsets(r) => ResponseKind::AlterShareGroupOffsets(
            super::share_admin::alter_share_group_offsets(ctx, r).await,
        ),
        RequestKind::DeleteShareGroupOffsets(r) => ResponseKind::DeleteShareGroupOffsets(
            super::share_admin::delete_share_group_offsets(ctx, r).await,
        ),
        RequestKind::DescribeClientQuotas(r) => {
            ResponseKind::DescribeClientQuotas(super::security::describe_client_quotas(ctx, r))
        }
        RequestKind::DescribeUserScramCredentials(r) => ResponseKind::DescribeUserScramCredentials(
            super::security::describe_user_scram_credentials(ctx, r),
        ),
        RequestKind::AlterUserScramCredentials(r) => ResponseKind::AlterUserScramCredentials(
            super::security::alter_user_scram_credentials(ctx, r).await,
        ),
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(delete_topics(ctx, r).await),
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions(ctx, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id(ctx, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(super::configs::describe_configs(ctx, r))
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(super::configs::alter_configs(ctx, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            super::configs::incremental_alter_configs(ctx, r).await,
        ),
        RequestKind::DescribeCluster(r) => ResponseKind::DescribeCluster(describe_cluster(ctx, r)),
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(super::groups::find_coordinator(ctx, r))
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(super::groups::join_group(ctx, r).await)
        }
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(super::groups::sync_group(ctx, r).await)
        }
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(super::groups::heartbeat(ctx, r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(super::groups::leave_group(ctx, r)),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(super::groups::offset_commit(ctx, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(super::groups::offset_fetch(ctx, r).await)
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(super::groups::list_groups(ctx, r).await)
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(super::groups::describe_groups(ctx, r).await)
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(super::groups::delete_groups(ctx, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(super::groups::offset_delete(ctx, r).await)
        }
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(super::txn::add_partitions_to_txn(ctx, r).await)
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(super::txn::add_offsets_to_txn(ctx, r).await)
        }
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(super::txn::txn_offset_commit(ctx, r).await)
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(super::txn::end_txn(ctx, r).await),
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(super::txn::describe_transactions(ctx, r).await)
        }
        RequestKind::ListTransactions(r) => {
            ResponseKind::ListTransactions(super::txn::list_transactions(ctx, r).await)
        }
        other => {
            // The dispatcher only decodes advertised APIs; this is unreachable in practice.
            tracing::warn!("no handler for {other:?}");
            return None;
        }
    })
}

// ---------------------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------------------

async fn metadata(ctx: &mut Ctx<'_>, r: MetadataRequest) -> MetadataResponse {
    let shared = ctx.shared;
    // v0: an empty list means every topic; v1+: null means every topic.
    let requested: Option<Vec<MetadataRequestTopic>> = match r.topics {
        Some(t) if t.is_empty() && ctx.version == 0 => None,
        other => other,
    };
    let auto_create = r.allow_auto_topic_creation || ctx.version < 4;
    let mut names: Option<Vec<Result<String, uuid::Uuid>>> = requested.map(|ts| {
        ts.into_iter()
            .map(|t| match t.name {
                Some(n) => Ok(n.0.to_string()),
                None => Err(t.topic_id),
            })
            .collect()
    });
    // Auto-create what is missing (through the controller), then wait briefly for leaders.
    if auto_create {
        if let Some(list) = &names {
            let image = shared.image();
            // Kafka: auto-creation needs CREATE on the cluster or on the topic.
            let may_create = |n: &str| {
                ctx.allowed_on_cluster(Operation::Create)
                    || ctx.allowed(Operation::Create, ResourceType::Topic, n)
            };
            let missing: Vec<String> = list
                .iter()
                .filter_map(|n| n.as_ref().ok())
                .filter(|n| {
                    !image.topics.contains_key(*n)
                        && validate_topic_name(n).is_ok()
                        && may_create(n)
                })
                .cloned()
                .collect();
            if !missing.is_empty() {
                for name in &missing {
                    match shared.meta.create_topic(json!({"topicName": name})).await {
                        Ok(reply) if reply.status.is_success() || reply.status.as_u16() == 409 => {
                            tracing::info!(topic = %name, "auto-created topic (Metadata request)");
                        }
                        Ok(reply) => {
                            tracing::warn!(topic = %name, "auto-create refused: {} {}", reply.status, reply.message())
                        }
                        Err(e) => tracing::warn!(topic = %name, "auto-create failed: {e}"),
                    }
                }
                shared
                    .wait_for_metadata(AUTO_CREATE_WAIT, |img| {
                        missing.iter().all(|n| {
                            img.topics.get(n).is_some_and(|t| {
                                t.partitions.iter().all(|p| {
                                    img.brokers.get(&p.leader).is_some_and(|b| {
                                        b.status == dmq_types::model::BrokerStatus::Online
                                    })
                                })
                            })
                        })
                    })
                    .await;
            }
        }
    }
    let image = shared.image();
    let cut_off = shared.lost_the_controller();
    let me = shared.config.broker_id;
    let online = |id: BrokerId| {
        image
            .brokers
            .get(&id)
            .is_some_and(|b| b.status == dmq_types::model::BrokerStatus::Online)
    };
    let brokers: Vec<MetadataResponseBroker> = image
        .brokers
        .values()
        .filter(|b| b.status == dmq_types::model::BrokerStatus::Online)
        .filter_map(|b| {
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(b.broker_id.into())
                    .with_host(s(b.host.clone()))
                    .with_port(i32::from(advertised_port(ctx, b)?)),
            )
        })
        .collect();
    if names.is_none() {
        // Every topic the principal may describe (Kafka hides the others).
        names = Some(
            image
                .topics
                .keys()
                .filter(|t| ctx.allowed(Operation::Describe, ResourceType::Topic, t))
                .cloned()
                .map(Ok)
                .collect(),
        );
    }
    let mut topics = Vec::new();
    for n in names.unwrap_or_default() {
        let topic = match &n {
            Ok(name) => image.topics.get(name),
            Err(id) => image.topic_by_id(&id.to_string()),
        };
        // A topic named but not describable: TOPIC_AUTHORIZATION_FAILED whether it exists or
        // not (Kafka does not tell an unauthorized client which topics exist).
        let denied = match (&n, topic) {
            (_, Some(t)) => !ctx.allowed(Operation::Describe, ResourceType::Topic, &t.topic_name),
            (Ok(name), None) => !ctx.allowed(Operation::Describe, ResourceType::Topic, name),
            (Err(_), None) => false,
        };
        if denied {
            ctx.had_error = true;
            let mut mt = MetadataResponseTopic::default()
                .with_error_code(ResponseError::TopicAuthorizationFailed.code());
            match n {
                Ok(name) => mt = mt.with_name(Some(topic_name(&name))),
                Err(id) => mt = mt.with_topic_id(id),
            }
            topics.push(mt);
            continue;
        }
        let Some(t) = topic else {
            let code = match &n {
                Ok(name) if validate_topic_name(name).is_err() => {
                    ResponseError::InvalidTopicException
                }
                Ok(_) => ResponseError::UnknownTopicOrPartition,
                Err(_) => ResponseError::UnknownTopicId,
            };
            ctx.had_error = true;
            let mut mt = MetadataResponseTopic::default().with_error_code(code.code());
            match n {
                Ok(name) => mt = mt.with_name(Some(topic_name(&name))),
                Err(id) => mt = mt.with_topic_id(id),
            }
            topics.push(mt);
            continue;
        };
        let partitions = t
            .partitions
            .iter()
            .map(|p| {
                // Cut off from the controller, this broker has been deposed by now. It names
                // the replica the controller will most likely have elected (the first live ISR
                // member other than itself, the controller's own choice) rather than itself, so
                // clients move there and learn the real leader from it; with none, no leader.
                // (A client that is told "no leader" keeps the cached one: librdkafka does.)
                let leader = if cut_off && p.leader == me {
                    p.replicas
                        .iter()
                        .copied()
                        .find(|b| *b != me && p.isr.contains(b) && online(*b))
                        .unwrap_or(dmq_types::NO_LEADER)
                } else {
                    p.leader
                };
                let error = if online(leader) {
                    0
                } else {
                    ResponseError::LeaderNotAvailable.code()
                };
                MetadataResponsePartition::default()
                    .with_error_code(error)
                    .with_partition_index(p.partition_id)
                    .with_leader_id(leader.into())
                    .with_leader_epoch(p.leader_epoch)
                    .with_replica_nodes(p.replicas.iter().map(|b| (*b).into()).collect())
                    .with_isr_nodes(p.isr.iter().map(|b| (*b).into()).collect())
                    .with_offline_replicas(
                        p.replicas
                            .iter()
                            .filter(|b| !online(**b))
                            .map(|b| (*b).into())
                            .collect(),
                    )
            })
            .collect();
        let mut mt = MetadataResponseTopic::default()
            .with_name(Some(topic_name(&t.topic_name)))
            .with_topic_id(uuid_of(&t.topic_id))
            .with_partitions(partitions);
        if ctx.version >= 8 && r.include_topic_authorized_operations {
            mt = mt.with_topic_authorized_operations(authorized_ops(
                ctx,
                authorized::TOPIC,
                ResourceType::Topic,
                &t.topic_name,
            ));
        }
        topics.push(mt);
    }
    let mut resp = MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(s(CLUSTER_ID)))
        .with_controller_id(ctx.shared.config.broker_id.into())
        .with_topics(topics);
    // v8–v10 carry the cluster's operations; v11 moved them to DescribeCluster.
    if (8..=10).contains(&ctx.version) && r.include_cluster_authorized_operations {
        resp = resp.with_cluster_authorized_operations(authorized_ops(
            ctx,
            authorized::CLUSTER,
            ResourceType::Cluster,
            dmq_auth::acl::CLUSTER_NAME,
        ));
    }
    resp
}

// ---------------------------------------------------------------------------------------
// Produce
// ---------------------------------------------------------------------------------------

type AppendOutcome = Result<(Arc<Partition>, Appended), BrokerError>;

/// KIP-890: a transactional producer's first batch at a partition (no transaction of that
/// producer open here yet) needs the quorum to have the partition in its ongoing transaction.
/// Later batches of the same transaction, batches for partitions led elsewhere (the append
/// refuses them) and unparsable input (the append names the defect) pass through.
async fn verify_transactional(
    shared: &BrokerShared,
    transactional_id: &str,
    topic: &str,
    index: i32,
    records: &[u8],
) -> Result<(), BrokerError> {
    let Ok(h) = dmq_log::BatchHeader::new(records) else {
        return Ok(());
    };
    if !h.is_transactional() || h.is_control() || h.producer_id() < 0 {
        return Ok(());
    }
    let Some(part) = shared.replicas.get(topic, index) else {
        return Ok(());
    };
    if part.ongoing_transaction(h.producer_id()).is_some() {
        return Ok(());
    }
    crate::txn::verify_produce(
        shared,
        transactional_id,
        topic,
        index,
        h.producer_id(),
        h.producer_epoch(),
    )
    .await
}

async fn produce_request(ctx: &mut Ctx<'_>, r: ProduceRequest) -> Option<ProduceResponse> {
    let shared = ctx.shared;
    let acks = r.acks;
    let timeout = Duration::from_millis(r.timeout_ms.clamp(0, 300_000) as u64);
    let deadline = Instant::now() + timeout;
    let transactional_id = r
        .transactional_id
        .as_ref()
        .map(|id| id.to_string())
        .filter(|id| !id.is_empty());
    // Append everything first (each partition on the blocking pool, all at once), then wait
    // for replication of all partitions together. The connection takes its next request only
    // after this one is answered, so a partition's batches keep their order.
    let mut pending: Vec<(String, i32, Result<Vec<u8>, BrokerError>)> = Vec::new();
    let txn_denied = transactional_id
        .as_ref()
        .is_some_and(|id| !ctx.allowed(Operation::Write, ResourceType::TransactionalId, id));
    for t in r.topic_data {
        let name = t.name.0.to_string();
        let topic_denied = !ctx.allowed(Operation::Write, ResourceType::Topic, &name);
        for p in t.partition_data {
            if txn_denied || topic_denied {
                let (code, what) = if txn_denied {
                    (
                        ResponseError::TransactionalIdAuthorizationFailed,
                        "WRITE on the transactional id",
                    )
                } else {
                    (
                        ResponseError::TopicAuthorizationFailed,
                        "WRITE on the topic",
                    )
                };
                let e = BrokerError::kafka(code, format!("{} lacks {what}", ctx.principal));
                pending.push((name.clone(), p.index, Err(e)));
                continue;
            }
            let verified = match (&transactional_id, p.records.as_ref()) {
                (Some(id), Some(records)) => {
                    verify_transactional(shared, id, &name, p.index, records).await
                }
                _ => Ok(()),
            };
            let result = verified.and_then(|()| {
                if let Err(e) = validate_topic_name(&name) {
                    return Err(BrokerError::kafka(
                        ResponseError::InvalidTopicException,
                        e.to_string(),
                    ));
                }
                let Some(records) = p.records.as_ref().filter(|b| !b.is_empty()) else {
                    return Err(BrokerError::kafka(
                        ResponseError::InvalidRecord,
                        "no records",
                    ));
                };
                Ok(records.to_vec())
            });
            pending.push((name.clone(), p.index, result));
        }
    }
    let appends = pending
        .into_iter()
        .map(|(name, index, records)| async move {
            let outcome: AppendOutcome = match records {
                Ok(records) => {
                    produce::append(shared.clone(), name.clone(), index, records, acks).await
                }
                Err(e) => Err(e),
            };
            (name, index, outcome)
        });
    let pending = join_all(appends).await;
    if acks == 0 {
        for (name, index, result) in &pending {
            if let Err(e) = result {
                tracing::debug!(topic = %name, partition = index, "acks=0 produce failed: {e}");
            }
        }
        return None;
    }
    let waits = pending.into_iter().map(|(name, index, result)| async move {
        let outcome = match result {
            Ok((part, appended)) => produce::replicated(&part, appended, acks, deadline)
                .await
                .map(|()| (part, appended)),
            Err(e) => Err(e),
        };
        (name, index, outcome)
    });
    let done = join_all(waits).await;
    let mut by_topic: BTreeMap<String, Vec<PartitionProduceResponse>> = BTreeMap::new();
    for (name, index, outcome) in done {
        let pr = match outcome {
            Ok((part, a)) => PartitionProduceResponse::default()
                .with_index(index)
                .with_base_offset(a.base_offset)
                .with_log_append_time_ms(a.log_append_time_ms)
                .with_log_start_offset(part.log.log_start_offset()),
            Err(e) => {
                if !matches!(e, BrokerError::NotLeader { .. }) {
                    tracing::debug!(topic = %name, partition = index, "produce refused: {e}");
                }
                PartitionProduceResponse::default()
                    .with_index(index)
                    .with_error_code(ctx.code(&e))
                    .with_base_offset(-1)
                    .with_error_message(Some(s(e.to_string())))
            }
        };
        by_topic.entry(name).or_default().push(pr);
    }
    Some(
        ProduceResponse::default().with_responses(
            by_topic
                .into_iter()
                .map(|(name, parts)| {
                    TopicProduceResponse::default()
                        .with_name(topic_name(&name))
                        .with_partition_responses(parts)
                })
                .collect(),
        ),
    )
}

// ---------------------------------------------------------------------------------------
// Fetch
// ---------------------------------------------------------------------------------------

/// Records in the whole batches of a fetch answer (a trailing partial batch is not counted).
fn record_count(data: &[u8]) -> u64 {
    dmq_log::batch::Batches::new(data, false)
        .flatten()
        .filter_map(|(_, b)| dmq_log::BatchHeader::new(b).ok())
        .filter(|h| !h.is_control())
        .map(|h| h.record_count().max(0) as u64)
        .sum()
}

/// Longest a DeleteRecords answer waits for the followers' log starts.
const DELETE_RECORDS_WAIT_CAP_MS: i32 = 30_000;

async fn fetch(ctx: &mut Ctx<'_>, r: FetchRequest) -> FetchResponse {
    let shared = ctx.shared;
    let replica_id: i32 = if ctx.version >= 15 {
        r.replica_state.replica_id.0
    } else {
        r.replica_id.0
    };
    let follower = replica_id >= 0;
    let max_wait = Duration::from_millis(r.max_wait_ms.clamp(0, MAX_WAIT_CAP_MS) as u64);
    let deadline = tokio::time::Instant::now() + max_wait;
    let max_bytes = if r.max_bytes <= 0 {
        i32::MAX
    } else {
        r.max_bytes
    } as usize;
    let min_bytes = r.min_bytes.max(0) as usize;
    // KIP-98: READ_COMMITTED consumers read below the last stable offset only. The long poll
    // needs no watch of its own: the LSO moves only when the high watermark does.
    let read_committed = r.isolation_level == READ_COMMITTED && !follower;
    let image = shared.image();
    // The follower's registration as this broker knows it (KIP-903), once per request.
    let broker_epoch = image.brokers.get(&replica_id).map(|b| b.broker_epoch);
    // Resolve topics (v13+ would name them by id; we advertise ≤ 12, but accept ids anyway).
    let wanted: Vec<(String, uuid::Uuid, Vec<fetch_request::FetchPartition>)> = r
        .topics
        .into_iter()
        .map(|t| {
            let name = if t.topic.0.is_empty() {
                image
                    .topic_by_id(&t.topic_id.to_string())
                    .map(|x| x.topic_name.clone())
                    .unwrap_or_default()
            } else {
                t.topic.0.to_string()
            };
            (name, t.topic_id, t.partitions)
        })
        .collect();
    // Followers need CLUSTER_ACTION on the cluster, consumers READ on each topic.
    let follower_allowed = !follower || ctx.allowed_on_cluster(Operation::ClusterAction);
    let denied: std::collections::BTreeSet<String> = wanted
        .iter()
        .filter(|(name, _, _)| {
            !follower_allowed
                || (!follower && !ctx.allowed(Operation::Read, ResourceType::Topic, name))
        })
        .map(|(name, _, _)| name.clone())
        .collect();
    loop {
        // Subscribe before reading so that no append between the read and the wait is missed.
        let mut watches = Vec::new();
        for (name, _, parts) in &wanted {
            for p in parts {
                if let Some(part) = shared.replicas.get(name, p.partition) {
                    watches.push(part.subscribe(follower));
                }
            }
        }
        let mut total = 0usize;
        let mut any_error = false;
        let mut responses = Vec::new();
        for (name, id, parts) in &wanted {
            let mut out = Vec::new();
            for p in parts {
                let pd = if denied.contains(name) {
                    Err(BrokerError::kafka(
                        ResponseError::TopicAuthorizationFailed,
                        "not authorized",
                    ))
                } else {
                    fetch_partition(
                        shared,
                        name,
                        p,
                        read_committed,
                        replica_id,
                        broker_epoch,
                        max_bytes.saturating_sub(total),
                    )
                };
                match pd {
                    Ok((data, records)) => {
                        total += records.as_ref().map_or(0, |b| b.len());
                        out.push(data.with_records(records));
                    }
                    Err(e) => {
                        any_error = true;
                        let code = ctx.code(&e);
                        // The log start tells a follower (or a consumer) out of range below
                        // it where to start over (KIP-107/KIP-392 followers rely on it).
                        let log_start = shared
                            .replicas
                            .get(name, p.partition)
                            .map_or(-1, |part| part.log.log_start_offset());
                        out.push(
                            PartitionData::default()
                                .with_partition_index(p.partition)
                                .with_error_code(code)
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1)
                                .with_log_start_offset(log_start)
                                .with_records(Some(Bytes::new())),
                        );
                    }
                }
            }
            responses.push(
                FetchableTopicResponse::default()
                    .with_topic(topic_name(name))
                    .with_topic_id(*id)
                    .with_partitions(out),
            );
        }
        let expired = tokio::time::Instant::now() >= deadline;
        if total >= min_bytes.max(1) || any_error || expired || watches.is_empty() {
            if !follower {
                for t in &responses {
                    let (mut bytes, mut records) = (0u64, 0u64);
                    for p in &t.partitions {
                        if let Some(b) = &p.records {
                            bytes += b.len() as u64;
                            records += record_count(b);
                        }
                    }
                    if bytes > 0 {
                        shared.metrics.consumed(t.topic.0.as_str(), bytes, records);
                    }
                }
            }
            return FetchResponse::default()
                .with_session_id(0)
                .with_responses(responses);
        }
        let changes = watches.iter_mut().map(|w| Box::pin(w.changed()));
        let _ = tokio::time::timeout_at(deadline, futures::future::select_all(changes)).await;
    }
}

/// `FetchRequest::isolation_level` / `ListOffsetsRequest::isolation_level` of a
/// `read_committed` consumer (0 is READ_UNCOMMITTED).
const READ_COMMITTED: i8 = 1;

/// One partition of a Fetch: a follower when `replica_id >= 0`, else a consumer, which reads
/// below the last stable offset when `read_committed` and then also gets the aborted
/// transactions of the range it reads.
fn fetch_partition(
    shared: &BrokerShared,
    topic: &str,
    p: &fetch_request::FetchPartition,
    read_committed: bool,
    replica_id: i32,
    broker_epoch: Option<u64>,
    budget: usize,
) -> Result<(PartitionData, Option<Bytes>), BrokerError> {
    let follower = replica_id >= 0;
    let part = produce::partition(shared, topic, p.partition)?;
    // The replica core decides: fenced, out of range, or (a follower) diverging — then it must
    // truncate first and its fetch offset does not count towards the high watermark.
    let grant = if follower {
        part.fetch_for_follower(&FollowerFetch {
            replica: replica_id,
            fetch_offset: p.fetch_offset,
            last_fetched_epoch: p.last_fetched_epoch,
            current_leader_epoch: p.current_leader_epoch,
            broker_epoch,
            log_start_offset: p.log_start_offset,
        })?
    } else {
        part.fetch_for_consumer(p.current_leader_epoch, p.fetch_offset)?
    };
    let (hw, mut upper) = (grant.high_watermark, grant.upper);
    // Every answer carries the LSO (Kafka does, whatever the isolation level).
    let lso = part.last_stable_offset().min(hw);
    if read_committed {
        upper = upper.min(lso);
    }
    let log_start = part.log.log_start_offset();
    let limit = (p.partition_max_bytes.max(0) as usize).min(budget.max(1));
    let data = part.read(p.fetch_offset, limit, upper)?;
    // Kafka answers null for READ_UNCOMMITTED and a list (maybe empty) for READ_COMMITTED.
    let aborted = read_committed.then(|| {
        let end = dmq_log::batch::Batches::new(&data, false)
            .flatten()
            .filter_map(|(_, b)| dmq_log::BatchHeader::new(b).ok())
            .map(|h| h.last_offset() + 1)
            .last();
        end.map_or_else(Vec::new, |end| {
            part.aborted_transactions(p.fetch_offset, end)
                .into_iter()
                .map(|t| {
                    AbortedTransaction::default()
                        .with_producer_id(t.producer_id.into())
                        .with_first_offset(t.first_offset)
                })
                .collect()
        })
    });
    let pd = PartitionData::default()
        .with_partition_index(p.partition)
        .with_high_watermark(hw)
        .with_last_stable_offset(lso)
        .with_log_start_offset(log_start)
        .with_aborted_transactions(aborted)
        .with_preferred_read_replica((-1).into());
    Ok((pd, Some(Bytes::from(data))))
}

// ---------------------------------------------------------------------------------------
// ListOffsets, OffsetForLeaderEpoch
// ---------------------------------------------------------------------------------------

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

fn list_offsets(ctx: &mut Ctx<'_>, r: ListOffsetsRequest) -> ListOffsetsResponse {
    let shared = ctx.shared;
    let isolation_level = r.isolation_level;
    let mut topics = Vec::new();
    for t in r.topics {
        let name = t.name.0.to_string();
        let mut parts = Vec::new();
        let describe = ctx.allowed(Operation::Describe, ResourceType::Topic, &name);
        for p in t.partitions {
            let result = (|| {
                if !describe {
                    return Err(BrokerError::kafka(
                        ResponseError::TopicAuthorizationFailed,
                        "DESCRIBE on the topic is needed",
                    ));
                }
                let part = produce::partition(shared, &name, p.partition_index)?;
                let epoch = part.check_leader(p.current_leader_epoch)?;
                // READ_COMMITTED (v2+) sees the log up to the last stable offset only.
                let visible = if isolation_level == READ_COMMITTED {
                    part.last_stable_offset()
                } else {
                    part.high_watermark()
                };
                Ok::<_, BrokerError>(match p.timestamp {
                    EARLIEST => (part.log.log_start_offset(), -1, -1),
                    LATEST => (visible, -1, epoch),
                    ts if ts >= 0 => match part.log.offset_for_timestamp(ts)? {
                        Some((offset, found_ts)) if offset < visible => (offset, found_ts, -1),
                        _ => (-1, -1, -1),
                    },
                    other => {
                        return Err(BrokerError::kafka(
                            ResponseError::InvalidRequest,
                            format!("unsupported ListOffsets timestamp {other}"),
                        ))
                    }
                })
            })();
            parts.push(match result {
                Ok((offset, ts, epoch)) => ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_offset(offset)
                    .with_timestamp(ts)
                    // The leader epoch exists from v4 on (KIP-320); a field a version lacks
                    // must keep its default or the response cannot be encoded.
                    .with_leader_epoch(if ctx.version >= 4 { epoch } else { -1 }),
                Err(e) => ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(ctx.code(&e))
                    .with_offset(-1)
                    .with_timestamp(-1),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic_name(&name))
                .with_partitions(parts),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

// ---------------------------------------------------------------------------------------
// WriteTxnMarkers (KIP-98)
// ---------------------------------------------------------------------------------------

/// How long a WriteTxnMarkers partition waits for its marker to reach the ISR (Kafka uses
/// `request.timeout.ms`, 30 s by default); then REQUEST_TIMED_OUT, and the coordinator retries.
const WRITE_TXN_MARKERS_TIMEOUT: Duration = Duration::from_secs(30);

/// Kafka's WriteTxnMarkers: the transaction coordinator (on some broker) asks this broker,
/// the leader of the named partitions, to write each producer's commit or abort marker.
/// Every partition's marker is written and waited for concurrently; each is answered once it
/// is replicated to the ISR, with its own error code.
async fn write_txn_markers(
    ctx: &mut Ctx<'_>,
    r: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let shared = ctx.shared;
    if !ctx.allowed_on_cluster(Operation::ClusterAction) {
        // Only brokers write markers (Kafka: CLUSTER_ACTION on the cluster).
        ctx.had_error = true;
        let denied = ResponseError::ClusterAuthorizationFailed.code();
        return WriteTxnMarkersResponse::default().with_markers(
            r.markers
                .iter()
                .map(|m| {
                    WritableTxnMarkerResult::default()
                        .with_producer_id(m.producer_id)
                        .with_topics(
                            m.topics
                                .iter()
                                .map(|t| {
                                    WritableTxnMarkerTopicResult::default()
                                        .with_name(t.name.clone())
                                        .with_partitions(
                                            t.partition_indexes
                                                .iter()
                                                .map(|&i| {
                                                    WritableTxnMarkerPartitionResult::default()
                                                        .with_partition_index(i)
                                                        .with_error_code(denied)
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    }
    let writes = r.markers.iter().map(|m| {
        let marker = TxnMarker {
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
            commit: m.transaction_result,
            coordinator_epoch: m.coordinator_epoch,
        };
        join_all(m.topics.iter().map(move |t| {
            join_all(t.partition_indexes.iter().map(move |&index| {
                produce::write_txn_marker(
                    shared,
                    t.name.0.as_str(),
                    index,
                    marker,
                    WRITE_TXN_MARKERS_TIMEOUT,
                )
            }))
        }))
    });
    let outcomes = join_all(writes).await;
    let mut markers = Vec::with_capacity(r.markers.len());
    for (m, topics) in r.markers.iter().zip(outcomes) {
        let mut topic_results = Vec::with_capacity(m.topics.len());
        for (t, parts) in m.topics.iter().zip(topics) {
            let mut partitions = Vec::with_capacity(parts.len());
            for (&index, outcome) in t.partition_indexes.iter().zip(parts) {
                let code = match outcome {
                    Ok(_) => 0,
                    Err(e) => {
                        tracing::debug!(
                            topic = t.name.0.as_str(),
                            partition = index,
                            producer_id = m.producer_id.0,
                            "transaction marker not written: {e}"
                        );
                        ctx.code(&e)
                    }
                };
                partitions.push(
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(index)
                        .with_error_code(code),
                );
            }
            topic_results.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions),
            );
        }
        markers.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topic_results),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}

/// Kafka's ElectLeaders (kafka-leader-election): the controller elects (preferred or unclean)
/// and answers per partition; the broker waits (bounded) until its metadata shows the new
/// leaders, so a Metadata request right after sees them.
async fn elect_leaders(
    ctx: &mut Ctx<'_>,
    r: kafka_protocol::messages::ElectLeadersRequest,
) -> kafka_protocol::messages::ElectLeadersResponse {
    use kafka_protocol::messages::elect_leaders_response::{
        PartitionResult, ReplicaElectionResult,
    };
    use kafka_protocol::messages::ElectLeadersResponse;
    let shared = ctx.shared;
    if !ctx.allowed_on_cluster(Operation::Alter) {
        ctx.had_error = true;
        let mut resp = ElectLeadersResponse::default();
        if ctx.version >= 1 {
            resp = resp.with_error_code(ResponseError::ClusterAuthorizationFailed.code());
        }
        return resp;
    }
    // v0 has no election type: preferred.
    let kind = if ctx.version == 0 || r.election_type == 0 {
        "PREFERRED"
    } else if r.election_type == 1 {
        "UNCLEAN"
    } else {
        ctx.had_error = true;
        let mut resp = ElectLeadersResponse::default();
        if ctx.version >= 1 {
            resp = resp.with_error_code(ResponseError::InvalidRequest.code());
        }
        return resp;
    };
    let partitions = r.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| json!({"topic": t.topic.0.as_str(), "partition": p}))
            })
            .collect::<Vec<Value>>()
    });
    let mut body = json!({ "electionType": kind });
    if let Some(ps) = partitions {
        body["partitions"] = json!(ps);
    }
    let reply = match shared.meta.elect_leaders(body).await {
        Ok(reply) if reply.status.is_success() => reply,
        Ok(reply) => {
            ctx.had_error = true;
            let e = metadata_error(reply.status.as_u16(), reply.error_code());
            let mut resp = ElectLeadersResponse::default();
            if ctx.version >= 1 {
                resp = resp.with_error_code(e.code());
            }
            return resp;
        }
        Err(e) => {
            tracing::warn!("ElectLeaders: {e}");
            ctx.had_error = true;
            let mut resp = ElectLeadersResponse::default();
            if ctx.version >= 1 {
                resp = resp.with_error_code(ResponseError::RequestTimedOut.code());
            }
            return resp;
        }
    };
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    let mut elected: Vec<(String, i32, i32)> = Vec::new();
    for res in reply.body["results"].as_array().into_iter().flatten() {
        let topic = res["topic"].as_str().unwrap_or_default().to_string();
        let partition = res["partition"].as_i64().unwrap_or(-1) as i32;
        let error = match res["error"].as_str() {
            None => 0,
            Some("ELECTION_NOT_NEEDED") => ResponseError::ElectionNotNeeded.code(),
            Some("PREFERRED_LEADER_NOT_AVAILABLE") => {
                ResponseError::PreferredLeaderNotAvailable.code()
            }
            Some("ELIGIBLE_LEADERS_NOT_AVAILABLE") => {
                ResponseError::EligibleLeadersNotAvailable.code()
            }
            Some(_) => ResponseError::UnknownTopicOrPartition.code(),
        };
        if let (0, Some(leader)) = (error, res["leader"].as_i64()) {
            elected.push((topic.clone(), partition, leader as i32));
        }
        by_topic.entry(topic).or_default().push(
            PartitionResult::default()
                .with_partition_id(partition)
                .with_error_code(error)
                .with_error_message(res["error"].as_str().map(s)),
        );
    }
    if !elected.is_empty() {
        let wait = Duration::from_millis(r.timeout_ms.clamp(0, 30_000) as u64);
        shared
            .wait_for_metadata(wait, |img| {
                elected.iter().all(|(t, p, l)| {
                    img.topics
                        .get(t)
                        .and_then(|x| x.partitions.get(*p as usize))
                        .is_some_and(|x| x.leader == *l)
                })
            })
            .await;
    }
    ElectLeadersResponse::default().with_replica_election_results(
        by_topic
            .into_iter()
            .map(|(t, parts)| {
                ReplicaElectionResult::default()
                    .with_topic(topic_name(&t))
                    .with_partition_result(parts)
            })
            .collect(),
    )
}

/// Kafka's DeleteRecords: each partition's leader moves its log start to the given offset
/// (-1 = the high watermark), then the answer waits (up to the request's timeout) until every
/// replica on a live broker has moved its own there with its next fetch — the low watermark
/// in the answer is theirs, as in Kafka's DelayedDeleteRecords. A partition whose replicas do
/// not get there in time answers REQUEST_TIMED_OUT.
async fn delete_records(
    ctx: &mut Ctx<'_>,
    r: kafka_protocol::messages::DeleteRecordsRequest,
) -> kafka_protocol::messages::DeleteRecordsResponse {
    use kafka_protocol::messages::delete_records_response::{
        DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
    };
    let shared = ctx.shared;
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(r.timeout_ms.clamp(0, DELETE_RECORDS_WAIT_CAP_MS) as u64);
    // (topic, partition index, the partition and its new log start | the error)
    let mut started = Vec::new();
    for t in &r.topics {
        let name = t.name.0.to_string();
        let allowed = ctx.allowed(Operation::Delete, ResourceType::Topic, &name);
        for p in &t.partitions {
            let result = if allowed {
                produce::partition(shared, &name, p.partition_index)
                    .and_then(|part| part.delete_records(p.offset).map(|start| (part, start)))
            } else {
                Err(BrokerError::kafka(
                    ResponseError::TopicAuthorizationFailed,
                    "DELETE on the topic is needed",
                ))
            };
            started.push((name.clone(), p.partition_index, result));
        }
    }
    let alive = |id: BrokerId| {
        shared
            .image()
            .brokers
            .get(&id)
            .is_some_and(|b| b.status == dmq_types::model::BrokerStatus::Online)
    };
    loop {
        let waiting = started.iter().any(|(_, _, res)| {
            res.as_ref()
                .is_ok_and(|(part, start)| part.low_watermark(alive) < *start)
        });
        if !waiting || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut by_topic: BTreeMap<String, Vec<DeleteRecordsPartitionResult>> = BTreeMap::new();
    for (name, index, result) in started {
        let result = result.and_then(|(part, start)| {
            let low = part.low_watermark(alive);
            if low < start {
                return Err(BrokerError::kafka(
                    ResponseError::RequestTimedOut,
                    format!(
                        "the leader's log starts at {start}, but a live replica's is still at {low}"
                    ),
                ));
            }
            Ok(low)
        });
        by_topic.entry(name).or_default().push(match result {
            Ok(low) => DeleteRecordsPartitionResult::default()
                .with_partition_index(index)
                .with_low_watermark(low),
            Err(e) => DeleteRecordsPartitionResult::default()
                .with_partition_index(index)
                .with_low_watermark(-1)
                .with_error_code(ctx.code(&e)),
        });
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, parts)| {
            DeleteRecordsTopicResult::default()
                .with_name(topic_name(&name))
                .with_partitions(parts)
        })
        .collect();
    kafka_protocol::messages::DeleteRecordsResponse::default().with_topics(topics)
}

fn offset_for_leader_epoch(
    ctx: &mut Ctx<'_>,
    r: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let shared = ctx.shared;
    let mut topics = Vec::new();
    // Followers (replica id ≥ 0, v3+) need CLUSTER_ACTION, clients DESCRIBE on the topic.
    let follower = ctx.version >= 3 && r.replica_id.0 >= 0;
    let cluster_ok = !follower || ctx.allowed_on_cluster(Operation::ClusterAction);
    for t in r.topics {
        let name = t.topic.0.to_string();
        let mut parts = Vec::new();
        let allowed = cluster_ok
            && (follower || ctx.allowed(Operation::Describe, ResourceType::Topic, &name));
        for p in t.partitions {
            let result = if !allowed {
                Err(BrokerError::kafka(
                    ResponseError::TopicAuthorizationFailed,
                    "not authorized",
                ))
            } else {
                produce::partition(shared, &name, p.partition)
            }
            .and_then(|part| {
                part.check_leader(p.current_leader_epoch)?;
                Ok(part.log.end_offset_for_epoch(p.leader_epoch))
            });
            parts.push(match result {
                Ok((epoch, end)) => EpochEndOffset::default()
                    .with_partition(p.partition)
                    .with_leader_epoch(epoch)
                    .with_end_offset(end),
                Err(e) => EpochEndOffset::default()
                    .with_partition(p.partition)
                    .with_error_code(ctx.code(&e))
                    .with_leader_epoch(-1)
                    .with_end_offset(-1),
            });
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(topic_name(&name))
                .with_partitions(parts),
        );
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

// ---------------------------------------------------------------------------------------
// CreateTopics, CreatePartitions, DeleteTopics (forwarded to the controller)
// ---------------------------------------------------------------------------------------

/// The Kafka error for a refusal of the metadata API: by its machine-readable `error` code
/// (never by the wording of its message).
pub(super) fn metadata_error(status: u16, code: &str) -> ResponseError {
    match (status, code) {
        (409, "ALREADY_EXISTS") => ResponseError::TopicAlreadyExists,
        (404, _) => ResponseError::UnknownTopicOrPartition,
        (400, "INVALID_CONFIG") => ResponseError::InvalidConfig,
        (400, "INVALID_PARTITIONS") => ResponseError::InvalidPartitions,
        (400, "INVALID_REPLICATION_FACTOR") => ResponseError::InvalidReplicationFactor,
        (400, "INVALID_REPLICA_ASSIGNMENT") => ResponseError::InvalidReplicaAssignment,
        (400, "INVALID_TOPIC_EXCEPTION") => ResponseError::InvalidTopicException,
        (400, _) => ResponseError::InvalidRequest,
        (503, _) => ResponseError::NotController,
        _ => ResponseError::UnknownServerError,
    }
}

async fn create_topics(ctx: &mut Ctx<'_>, r: CreateTopicsRequest) -> CreateTopicsResponse {
    let shared = ctx.shared;
    let mut results = Vec::new();
    let mut created = Vec::new();
    for t in r.topics {
        let name = t.name.0.to_string();
        let mut result = CreatableTopicResult::default()
            .with_name(topic_name(&name))
            .with_num_partitions(t.num_partitions)
            .with_replication_factor(t.replication_factor);
        let fail = |result: CreatableTopicResult, e: ResponseError, msg: String| {
            result
                .with_error_code(e.code())
                .with_error_message(Some(s(msg)))
        };
        if let Err(e) = validate_topic_name(&name) {
            ctx.had_error = true;
            results.push(fail(
                result,
                ResponseError::InvalidTopicException,
                e.to_string(),
            ));
            continue;
        }
        if !ctx.allowed_on_cluster(Operation::Create)
            && !ctx.allowed(Operation::Create, ResourceType::Topic, &name)
        {
            ctx.had_error = true;
            results.push(fail(
                result,
                ResponseError::TopicAuthorizationFailed,
                "CREATE on the cluster or the topic is needed".into(),
            ));
            continue;
        }
        if !t.assignments.is_empty() {
            ctx.had_error = true;
            results.push(fail(
                result,
                ResponseError::InvalidReplicaAssignment,
                "manual replica assignments are not supported; give numPartitions and replicationFactor".into(),
            ));
            continue;
        }
        let mut config = serde_json::Map::new();
        for c in &t.configs {
            if let Some(v) = &c.value {
                config.insert(c.name.to_string(), Value::String(v.to_string()));
            }
        }
        let mut body = json!({"topicName": name, "config": config});
        if t.num_partitions > 0 {
            body["numPartitions"] = json!(t.num_partitions);
        } else if t.num_partitions != -1 {
            ctx.had_error = true;
            results.push(fail(
                result,
                ResponseError::InvalidPartitions,
                format!(
                    "numPartitions must be positive or -1, got {}",
                    t.num_partitions
                ),
            ));
            continue;
        }
        if t.replication_factor > 0 {
            body["replicationFactor"] = json!(t.replication_factor);
        } else if t.replication_factor != -1 {
            ctx.had_error = true;
            results.push(fail(
                result,
                ResponseError::InvalidReplicationFactor,
                format!(
                    "replicationFactor must be positive or -1, got {}",
                    t.replication_factor
                ),
            ));
            continue;
        }
        if r.validate_only {
            // The controller checks everything (existing topic, replication factor against
            // its ONLINE brokers) and changes nothing.
            body["validateOnly"] = json!(true);
        }
        match shared.meta.create_topic(body).await {
            Ok(reply) if reply.status.is_success() => {
                let b = &reply.body;
                if let Some(id) = b.get("topicId").and_then(Value::as_str) {
                    result = result.with_topic_id(uuid_of(id));
                }
                if let Some(n) = b.get("numPartitions").and_then(Value::as_i64) {
                    result = result.with_num_partitions(n as i32);
                }
                if let Some(n) = b.get("replicationFactor").and_then(Value::as_i64) {
                    result = result.with_replication_factor(n as i16);
                }
                if !r.validate_only {
                    created.push(name.clone());
                }
                results.push(result);
            }
            Ok(reply) => {
                ctx.had_error = true;
                let msg = reply.message();
                results.push(fail(
                    result,
                    metadata_error(reply.status.as_u16(), reply.error_code()),
                    msg,
                ));
            }
            Err(e) => {
                ctx.had_error = true;
                results.push(fail(result, ResponseError::RequestTimedOut, e.to_string()));
            }
        }
    }
    if !created.is_empty() {
        let wait = Duration::from_millis(r.timeout_ms.clamp(0, 30_000) as u64);
        shared
            .wait_for_metadata(wait, |img| {
                created.iter().all(|n| img.topics.contains_key(n))
            })
            .await;
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// Kafka's CreatePartitions: each topic grows to `count` partitions through the controller; the
/// answer waits (up to the request timeout) until this broker's metadata shows them.
async fn create_partitions(
    ctx: &mut Ctx<'_>,
    r: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let shared = ctx.shared;
    let mut results = Vec::new();
    let mut grown: Vec<(String, usize)> = Vec::new();
    let mut seen = BTreeMap::new();
    for t in &r.topics {
        *seen.entry(t.name.0.to_string()).or_insert(0) += 1;
    }
    for t in r.topics {
        let name = t.name.0.to_string();
        let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let fail = |e: ResponseError, msg: String| {
            result
                .clone()
                .with_error_code(e.code())
                .with_error_message(Some(s(msg)))
        };
        if seen.get(&name).copied().unwrap_or(0) > 1 {
            ctx.had_error = true;
            results.push(fail(
                ResponseError::InvalidRequest,
                format!("topic {name:?} is named more than once in the request"),
            ));
            continue;
        }
        if !ctx.allowed(Operation::Alter, ResourceType::Topic, &name) {
            ctx.had_error = true;
            results.push(fail(
                ResponseError::TopicAuthorizationFailed,
                "ALTER on the topic is needed".into(),
            ));
            continue;
        }
        if let Err(e) = validate_topic_name(&name) {
            ctx.had_error = true;
            results.push(fail(ResponseError::InvalidTopicException, e.to_string()));
            continue;
        }
        let mut body = json!({"numPartitions": t.count, "validateOnly": r.validate_only});
        if let Some(assignments) = &t.assignments {
            let lists: Vec<Vec<i32>> = assignments
                .iter()
                .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                .collect();
            body["assignment"] = json!(lists);
        }
        match shared.meta.create_partitions(&name, body).await {
            Ok(reply) if reply.status.is_success() => {
                if !r.validate_only {
                    grown.push((name, t.count.max(0) as usize));
                }
                results.push(result);
            }
            Ok(reply) => {
                ctx.had_error = true;
                let msg = reply.message();
                results.push(fail(
                    metadata_error(reply.status.as_u16(), reply.error_code()),
                    msg,
                ));
            }
            Err(e) => {
                ctx.had_error = true;
                results.push(fail(ResponseError::RequestTimedOut, e.to_string()));
            }
        }
    }
    if !grown.is_empty() {
        let wait = Duration::from_millis(r.timeout_ms.clamp(0, 30_000) as u64);
        shared
            .wait_for_metadata(wait, |img| {
                grown.iter().all(|(n, count)| {
                    img.topics
                        .get(n)
                        .is_some_and(|t| t.partitions.len() >= *count)
                })
            })
            .await;
    }
    CreatePartitionsResponse::default().with_results(results)
}

async fn delete_topics(ctx: &mut Ctx<'_>, r: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let shared = ctx.shared;
    let image = shared.image();
    // v0-5 name topics in `topic_names`; v6 in `topics` (by name or id).
    let mut targets: Vec<(Option<String>, uuid::Uuid)> = r
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
        .collect();
    for t in &r.topics {
        let name = match &t.name {
            Some(n) => Some(n.0.to_string()),
            None => image
                .topic_by_id(&t.topic_id.to_string())
                .map(|x| x.topic_name.clone()),
        };
        targets.push((name, t.topic_id));
    }
    let mut results = Vec::new();
    let mut deleted = Vec::new();
    for (name, id) in targets {
        let mut result = DeletableTopicResult::default().with_topic_id(id);
        let Some(name) = name else {
            ctx.had_error = true;
            results.push(result.with_error_code(ResponseError::UnknownTopicId.code()));
            continue;
        };
        result = result.with_name(Some(topic_name(&name)));
        if !ctx.allowed(Operation::Delete, ResourceType::Topic, &name) {
            ctx.had_error = true;
            results.push(
                result
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    .with_error_message(Some(s("DELETE on the topic is needed"))),
            );
            continue;
        }
        if let Err(e) = validate_topic_name(&name) {
            ctx.had_error = true;
            results.push(
                result
                    .with_error_code(ResponseError::InvalidTopicException.code())
                    .with_error_message(Some(s(e.to_string()))),
            );
            continue;
        }
        match shared.meta.delete_topic(&name).await {
            Ok(reply) if reply.status.is_success() => {
                deleted.push(name);
                results.push(result);
            }
            Ok(reply) => {
                ctx.had_error = true;
                let msg = reply.message();
                results.push(
                    result
                        .with_error_code(
                            metadata_error(reply.status.as_u16(), reply.error_code()).code(),
                        )
                        .with_error_message(Some(s(msg))),
                );
            }
            Err(e) => {
                ctx.had_error = true;
                results.push(
                    result
                        .with_error_code(ResponseError::RequestTimedOut.code())
                        .with_error_message(Some(s(e.to_string()))),
                );
            }
        }
    }
    if !deleted.is_empty() {
        let wait = Duration::from_millis(r.timeout_ms.clamp(0, 30_000) as u64);
        shared
            .wait_for_metadata(wait, |img| {
                deleted.iter().all(|n| !img.topics.contains_key(n))
            })
            .await;
    }
    DeleteTopicsResponse::default().with_responses(results)
}

// ---------------------------------------------------------------------------------------
// InitProducerId, DescribeConfigs, DescribeCluster
// ---------------------------------------------------------------------------------------

async fn init_producer_id(ctx: &mut Ctx<'_>, r: InitProducerIdRequest) -> InitProducerIdResponse {
    let fail = |e: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(e.code())
            .with_producer_id((-1).into())
            .with_producer_epoch(-1)
    };
    if let Some(id) = r.transactional_id.as_ref().filter(|id| !id.is_empty()) {
        let id = id.to_string();
        return super::txn::init_producer_id(ctx, &r, &id).await;
    }
    // An idempotent producer: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic
    // (Kafka 3.0+, KIP-679), which Java producers rely on by default.
    let host = ctx.client_host();
    if !ctx.allowed_on_cluster(Operation::IdempotentWrite)
        && !ctx.shared.security.allowed_on_any(
            ctx.principal,
            &host,
            Operation::Write,
            ResourceType::Topic,
        )
    {
        ctx.had_error = true;
        return fail(ResponseError::ClusterAuthorizationFailed);
    }
    // KIP-360: a producer that already has an id asks for an epoch bump.
    if r.producer_id.0 >= 0 && r.producer_epoch >= 0 && r.producer_epoch < i16::MAX {
        return InitProducerIdResponse::default()
            .with_producer_id(r.producer_id)
            .with_producer_epoch(r.producer_epoch + 1);
    }
    match ctx.shared.next_producer_id().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(id.into())
            .with_producer_epoch(0),
        Err(e) => {
            tracing::warn!("cannot allocate a producer id: {e}");
            ctx.had_error = true;
            fail(ResponseError::CoordinatorNotAvailable)
        }
    }
}

fn describe_cluster(ctx: &mut Ctx<'_>, r: DescribeClusterRequest) -> DescribeClusterResponse {
    let image = ctx.shared.image();
    let brokers = image
        .brokers
        .values()
        .filter(|b| b.status == dmq_types::model::BrokerStatus::Online)
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(b.broker_id.into())
                .with_host(s(b.host.clone()))
                .with_port(i32::from(b.kafka_port))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(s(CLUSTER_ID))
        .with_controller_id(ctx.shared.config.broker_id.into())
        .with_brokers(brokers)
        .with_cluster_authorized_operations(if r.include_cluster_authorized_operations {
            authorized_ops(
                ctx,
                authorized::CLUSTER,
                ResourceType::Cluster,
                dmq_auth::acl::CLUSTER_NAME,
            )
        } else {
            authorized::NOT_ASKED
        })
}
