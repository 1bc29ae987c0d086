//! Protocol conformance: every (API, version) the broker advertises in ApiVersions is answered
//! with a response that decodes at that version, consumes the whole frame and carries the
//! fields that matter (error codes, offsets, epochs where the version has them).
//!
//! The requests are built with `kafka-protocol` at each version, as a client of that version
//! would send them. An API the broker advertises without a case here fails the test, so a new
//! API cannot be advertised untested.

mod common;

use std::time::Duration;

use bytes::{Buf, Bytes};
use common::kafka::{batch, connect, name, produce, write_txn_marker};
use common::{post_leader, start_cluster, wait_topic_on_brokers};
use dmq::procs::MetadataCluster;
use dmq_broker::kafka::client::KafkaConnection;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Request, StrBytes};
use serde_json::json;

const TOPIC: &str = "conformance";
/// Records produced before the cases run (offsets 0..RECORDS).
const RECORDS: i64 = 5;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn group(v: &str) -> GroupId {
    GroupId(s(v))
}

/// Sends `req` at `version` on a fresh connection to `addr` and decodes the response at that
/// version; the response must fill its frame exactly.
async fn call<R: Request>(addr: &str, req: &R, version: i16) -> R::Response {
    let mut conn: KafkaConnection = connect(addr).await;
    let what = format!("{:?} v{version}", ApiKey::try_from(R::KEY).expect("key"));
    let mut body: Bytes = conn
        .send_raw(
            R::KEY,
            version,
            |buf| req.encode(buf, version),
            Duration::ZERO,
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: no answer (the broker closed or failed): {e}"));
    let resp = R::Response::decode(&mut body, version)
        .unwrap_or_else(|e| panic!("{what}: response does not decode: {e}"));
    assert!(
        !body.has_remaining(),
        "{what}: {} bytes left after the response",
        body.remaining()
    );
    resp
}

fn ok(code: i16, what: &str) {
    assert_eq!(
        code,
        0,
        "{what}: error {:?}",
        ResponseError::try_from_code(code)
    );
}

struct Ctx<'a> {
    cluster: &'a MetadataCluster,
    /// The leader of partition 0 of [`TOPIC`].
    leader: String,
    /// Any broker.
    any: String,
    bootstrap: Vec<String>,
}

impl Ctx<'_> {
    /// The coordinator's address for `group_id` (FindCoordinator v1 on any broker).
    async fn coordinator(&self, group_id: &str) -> String {
        let resp = call(
            &self.any,
            &FindCoordinatorRequest::default().with_key(s(group_id)),
            1,
        )
        .await;
        ok(resp.error_code, "FindCoordinator");
        format!("{}:{}", resp.host, resp.port)
    }

    /// The transaction coordinator's address for `id` (FindCoordinator v1, key type 1).
    async fn txn_coordinator(&self, id: &str) -> String {
        let resp = call(
            &self.any,
            &FindCoordinatorRequest::default()
                .with_key(s(id))
                .with_key_type(1),
            1,
        )
        .await;
        ok(resp.error_code, "FindCoordinator (transaction)");
        format!("{}:{}", resp.host, resp.port)
    }

    /// A transactional producer for `id`: its coordinator, producer id and epoch.
    async fn txn_producer(&self, id: &str) -> (String, i64, i16) {
        let coord = self.txn_coordinator(id).await;
        let resp = call(
            &coord,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(s(id))))
                .with_transaction_timeout_ms(60_000),
            1,
        )
        .await;
        ok(resp.error_code, "InitProducerId (transactional)");
        (coord, resp.producer_id.0, resp.producer_epoch)
    }

    /// Opens a transaction of `id` on partition 0 of [`TOPIC`] (AddPartitionsToTxn v3).
    async fn open_txn(&self, id: &str) -> (String, i64, i16) {
        let (coord, pid, epoch) = self.txn_producer(id).await;
        let resp = call(&coord, &add_partitions_v3(id, pid, epoch), 3).await;
        ok(
            resp.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
            "AddPartitionsToTxn",
        );
        (coord, pid, epoch)
    }

    /// Joins `group_id` as its only member (JoinGroup v5 with the member id round of KIP-394
    /// and SyncGroup v3); returns the coordinator, member id and generation.
    async fn stable_member(&self, group_id: &str) -> (String, String, i32) {
        let coord = self.coordinator(group_id).await;
        let mut req = JoinGroupRequest::default()
            .with_group_id(group(group_id))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0]))]);
        let mut resp = call(&coord, &req, 5).await;
        if resp.error_code == ResponseError::MemberIdRequired.code() {
            req = req.with_member_id(resp.member_id.clone());
            resp = call(&coord, &req, 5).await;
        }
        ok(resp.error_code, "JoinGroup v5");
        let member = resp.member_id.to_string();
        let generation = resp.generation_id;
        let sync = SyncGroupRequest::default()
            .with_group_id(group(group_id))
            .with_generation_id(generation)
            .with_member_id(s(&member))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(s(&member))
                .with_assignment(Bytes::from_static(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0]))]);
        ok(call(&coord, &sync, 3).await.error_code, "SyncGroup v3");
        (coord, member, generation)
    }
}

/// One conformance case: API `key` at `version`.
async fn case(ctx: &Ctx<'_>, key: ApiKey, v: i16) {
    let what = format!("{key:?} v{v}");
    match key {
        ApiKey::ApiVersions => {
            let mut req = ApiVersionsRequest::default();
            if v >= 3 {
                req = req
                    .with_client_software_name(s("dmq-conformance"))
                    .with_client_software_version(s("1.0"));
            }
            let resp = call(&ctx.any, &req, v).await;
            ok(resp.error_code, &what);
            assert!(
                resp.api_keys
                    .iter()
                    .any(|k| k.api_key == ApiKey::Fetch as i16),
                "{what}: Fetch missing"
            );
        }
        ApiKey::Metadata => {
            let topics = Some(vec![
                MetadataRequestTopic::default().with_name(Some(name(TOPIC)))
            ]);
            let mut req = MetadataRequest::default().with_topics(topics);
            if v >= 4 {
                req = req.with_allow_auto_topic_creation(false);
            }
            if (8..=10).contains(&v) {
                req = req.with_include_cluster_authorized_operations(true);
            }
            if v >= 8 {
                req = req.with_include_topic_authorized_operations(true);
            }
            let resp = call(&ctx.any, &req, v).await;
            assert_eq!(resp.brokers.len(), ctx.bootstrap.len(), "{what}: brokers");
            let t = resp.topics.first().expect("one topic");
            ok(t.error_code, &what);
            let p = t.partitions.first().expect("partition 0");
            assert!(p.leader_id.0 >= 0, "{what}: leader");
            assert_eq!(p.replica_nodes.len(), 3, "{what}: replicas");
            if v >= 7 {
                assert!(p.leader_epoch >= 0, "{what}: leader epoch");
            } else {
                assert_eq!(p.leader_epoch, -1, "{what}: no leader epoch before v7");
            }
            if v >= 1 {
                assert!(resp.controller_id.0 >= 0, "{what}: controller id");
            }
            if v >= 10 {
                assert!(!t.topic_id.is_nil(), "{what}: topic id");
            }
            // Asked for, the authorized operations are filled in (no authorizer: all of them,
            // READ (bit 3) among them), never left at "not asked".
            if v >= 8 {
                assert!(
                    t.topic_authorized_operations & (1 << 3) != 0,
                    "{what}: topic ops"
                );
            }
            if (8..=10).contains(&v) {
                assert!(
                    resp.cluster_authorized_operations & (1 << 8) != 0,
                    "{what}: cluster ops"
                );
            }
        }
        ApiKey::Produce => {
            let records = batch(&[("k".into(), format!("produce-v{v}"))], None);
            let req = ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(10_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(name(TOPIC))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from(records)))])]);
            let resp = call(&ctx.leader, &req, v).await;
            let p = &resp.responses[0].partition_responses[0];
            ok(p.error_code, &what);
            assert!(
                p.base_offset >= RECORDS,
                "{what}: base offset {}",
                p.base_offset
            );
            if v >= 5 {
                assert_eq!(p.log_start_offset, 0, "{what}: log start");
            }
        }
        ApiKey::Fetch => {
            let mut fp = FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20);
            if v >= 9 {
                fp = fp.with_current_leader_epoch(-1);
            }
            if v >= 5 {
                fp = fp.with_log_start_offset(-1);
            }
            let mut req = FetchRequest::default()
                .with_replica_id((-1).into())
                .with_max_wait_ms(100)
                .with_min_bytes(1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(name(TOPIC))
                    .with_partitions(vec![fp])]);
            if v >= 3 {
                req = req.with_max_bytes(4 << 20);
            }
            if v >= 7 {
                req = req.with_session_epoch(-1);
            }
            let resp = call(&ctx.leader, &req, v).await;
            ok(resp.error_code, &what);
            let p = &resp.responses[0].partitions[0];
            ok(p.error_code, &what);
            assert!(
                p.high_watermark >= RECORDS,
                "{what}: HW {}",
                p.high_watermark
            );
            if v >= 5 {
                assert_eq!(p.log_start_offset, 0, "{what}: log start");
            }
            if v >= 4 {
                assert!(p.last_stable_offset >= RECORDS, "{what}: LSO");
            }
            assert!(
                p.records.as_ref().is_some_and(|r| !r.is_empty()),
                "{what}: records"
            );
        }
        ApiKey::ListOffsets => {
            for (ts, want) in [(-1i64, None), (-2, Some(0i64)), (0, Some(0))] {
                let mut lp = ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(ts);
                if v >= 4 {
                    lp = lp.with_current_leader_epoch(-1);
                }
                let mut req = ListOffsetsRequest::default()
                    .with_replica_id((-1).into())
                    .with_topics(vec![ListOffsetsTopic::default()
                        .with_name(name(TOPIC))
                        .with_partitions(vec![lp])]);
                if v >= 2 {
                    req = req.with_isolation_level(0);
                }
                let resp = call(&ctx.leader, &req, v).await;
                let p = &resp.topics[0].partitions[0];
                ok(p.error_code, &format!("{what} timestamp {ts}"));
                match want {
                    Some(o) => assert_eq!(p.offset, o, "{what} timestamp {ts}"),
                    None => assert!(p.offset >= RECORDS, "{what} latest: {}", p.offset),
                }
                if v >= 4 && ts == -1 {
                    assert!(p.leader_epoch >= 0, "{what}: leader epoch of latest");
                }
            }
        }
        ApiKey::OffsetForLeaderEpoch => {
            let mut op = OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_leader_epoch(0);
            if v >= 2 {
                op = op.with_current_leader_epoch(-1);
            }
            let mut req = OffsetForLeaderEpochRequest::default().with_topics(vec![
                OffsetForLeaderTopic::default()
                    .with_topic(name(TOPIC))
                    .with_partitions(vec![op]),
            ]);
            if v >= 3 {
                req = req.with_replica_id((-1).into());
            }
            let resp = call(&ctx.leader, &req, v).await;
            let p = &resp.topics[0].partitions[0];
            ok(p.error_code, &what);
            assert!(
                p.end_offset >= RECORDS,
                "{what}: end offset {}",
                p.end_offset
            );
            if v >= 1 {
                assert!(p.leader_epoch >= 0, "{what}: leader epoch");
            }
        }
        ApiKey::CreateTopics => {
            let t = format!("conf-create-{v}");
            let mut topic = CreatableTopic::default()
                .with_name(name(&t))
                .with_num_partitions(2)
                .with_replication_factor(3);
            topic.configs = vec![CreatableTopicConfig::default()
                .with_name(s("retention.ms"))
                .with_value(Some(s("3600000")))];
            let req = CreateTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![topic.clone()]);
            let resp = call(&ctx.any, &req, v).await;
            let r = &resp.topics[0];
            ok(r.error_code, &what);
            if v >= 5 {
                assert_eq!(r.num_partitions, 2, "{what}: partitions");
                assert_eq!(r.replication_factor, 3, "{what}: RF");
            }
            if v >= 7 {
                assert!(!r.topic_id.is_nil(), "{what}: topic id");
            }
            // Again: TOPIC_ALREADY_EXISTS, also when only validating.
            let again = call(&ctx.any, &req.clone().with_validate_only(true), v).await;
            assert_eq!(
                again.topics[0].error_code,
                ResponseError::TopicAlreadyExists.code(),
                "{what}: validate-only of an existing topic"
            );
        }
        ApiKey::DeleteTopics => {
            let t = format!("conf-delete-{v}");
            let (status, body) = create_through_http(ctx, &t).await;
            assert_eq!(status, 201, "{what}: {body}");
            let mut req = DeleteTopicsRequest::default().with_timeout_ms(10_000);
            if v >= 6 {
                req = req.with_topics(vec![DeleteTopicState::default().with_name(Some(name(&t)))]);
            } else {
                req = req.with_topic_names(vec![name(&t)]);
            }
            let resp = call(&ctx.any, &req, v).await;
            ok(resp.responses[0].error_code, &what);
            if v < 6 {
                assert_eq!(
                    resp.responses[0].name.as_ref().map(|n| n.0.as_str()),
                    Some(t.as_str())
                );
            }
        }
        ApiKey::CreatePartitions => {
            let t = format!("conf-grow-{v}");
            let (status, body) = create_through_http(ctx, &t).await;
            assert_eq!(status, 201, "{what}: {body}");
            let req = CreatePartitionsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(name(&t))
                    .with_count(2)
                    .with_assignments(None)]);
            let resp = call(&ctx.any, &req, v).await;
            ok(resp.results[0].error_code, &what);
        }
        ApiKey::InitProducerId => {
            let mut req = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000);
            if v >= 3 {
                req = req.with_producer_id((-1).into()).with_producer_epoch(-1);
            }
            let resp = call(&ctx.any, &req, v).await;
            ok(resp.error_code, &what);
            assert!(resp.producer_id.0 >= 0, "{what}: producer id");
        }
        ApiKey::DescribeConfigs => {
            let mut req = DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(TOPIC))
                    .with_configuration_keys(None),
            ]);
            if v >= 1 {
                req = req.with_include_synonyms(true);
            }
            if v >= 3 {
                req = req.with_include_documentation(true);
            }
            let resp = call(&ctx.any, &req, v).await;
            let r = &resp.results[0];
            ok(r.error_code, &what);
            assert!(
                r.configs.iter().any(|c| c.name.as_str() == "retention.ms"),
                "{what}: retention.ms"
            );
        }
        ApiKey::DescribeCluster => {
            let req =
                DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
            let resp = call(&ctx.any, &req, v).await;
            ok(resp.error_code, &what);
            assert_eq!(resp.brokers.len(), ctx.bootstrap.len(), "{what}: brokers");
            assert!(resp.controller_id.0 >= 0, "{what}: controller");
            assert!(
                resp.cluster_authorized_operations & (1 << 8) != 0,
                "{what}: cluster ops"
            );
        }
        ApiKey::FindCoordinator => {
            let g = format!("conf-find-{v}");
            if v >= 4 {
                let req = FindCoordinatorRequest::default()
                    .with_key_type(0)
                    .with_coordinator_keys(vec![s(&g)]);
                let resp = call(&ctx.any, &req, v).await;
                ok(resp.coordinators[0].error_code, &what);
                assert!(resp.coordinators[0].node_id.0 >= 0, "{what}: node");
                assert_eq!(resp.coordinators[0].key.as_str(), g, "{what}: key");
            } else {
                let req = FindCoordinatorRequest::default().with_key(s(&g));
                let resp = call(&ctx.any, &req, v).await;
                ok(resp.error_code, &what);
                assert!(resp.node_id.0 >= 0, "{what}: node");
            }
        }
        ApiKey::JoinGroup => {
            let g = format!("conf-join-{v}");
            let coord = ctx.coordinator(&g).await;
            let mut req = JoinGroupRequest::default()
                .with_group_id(group(&g))
                .with_session_timeout_ms(30_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(Bytes::from_static(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0]))]);
            if v >= 1 {
                req = req.with_rebalance_timeout_ms(30_000);
            }
            let mut resp = call(&coord, &req, v).await;
            if v >= 4 {
                assert_eq!(
                    resp.error_code,
                    ResponseError::MemberIdRequired.code(),
                    "{what}: KIP-394 first join"
                );
                req = req.with_member_id(resp.member_id.clone());
                resp = call(&coord, &req, v).await;
            }
            ok(resp.error_code, &what);
            assert_eq!(resp.generation_id, 1, "{what}: generation");
            assert_eq!(resp.leader, resp.member_id, "{what}: leader");
            if v >= 7 {
                assert_eq!(resp.protocol_type.as_deref(), Some("consumer"), "{what}");
            }
            assert_eq!(resp.protocol_name.as_deref(), Some("range"), "{what}");
        }
        ApiKey::SyncGroup => {
            let g = format!("conf-sync-{v}");
            let coord = ctx.coordinator(&g).await;
            let join = JoinGroupRequest::default()
                .with_group_id(group(&g))
                .with_session_timeout_ms(30_000)
                .with_rebalance_timeout_ms(30_000)
                .with_member_id(s(""))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(Bytes::from_static(&[0, 1]))]);
            // JoinGroup v3 (before KIP-394) joins in one round.
            let joined = call(&coord, &join, 3).await;
            ok(joined.error_code, "JoinGroup v3");
            let mut req = SyncGroupRequest::default()
                .with_group_id(group(&g))
                .with_generation_id(joined.generation_id)
                .with_member_id(joined.member_id.clone())
                .with_assignments(vec![SyncGroupRequestAssignment::default()
                    .with_member_id(joined.member_id.clone())
                    .with_assignment(Bytes::from_static(&[7, 7]))]);
            if v >= 5 {
                req = req
                    .with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(Some(s("range")));
            }
            let resp = call(&coord, &req, v).await;
            ok(resp.error_code, &what);
            assert_eq!(resp.assignment.as_ref(), &[7, 7], "{what}: assignment");
            if v >= 5 {
                assert_eq!(resp.protocol_name.as_deref(), Some("range"), "{what}");
            }
        }
        ApiKey::Heartbeat => {
            let g = format!("conf-hb-{v}");
            let (coord, member, generation) = ctx.stable_member(&g).await;
            let req = HeartbeatRequest::default()
                .with_group_id(group(&g))
                .with_generation_id(generation)
                .with_member_id(s(&member));
            ok(call(&coord, &req, v).await.error_code, &what);
            let stale = req.with_generation_id(generation + 5);
            assert_eq!(
                call(&coord, &stale, v).await.error_code,
                ResponseError::IllegalGeneration.code(),
                "{what}: stale generation"
            );
        }
        ApiKey::LeaveGroup => {
            let g = format!("conf-leave-{v}");
            let (coord, member, _) = ctx.stable_member(&g).await;
            let req = if v >= 3 {
                LeaveGroupRequest::default()
                    .with_group_id(group(&g))
                    .with_members(vec![MemberIdentity::default().with_member_id(s(&member))])
            } else {
                LeaveGroupRequest::default()
                    .with_group_id(group(&g))
                    .with_member_id(s(&member))
            };
            let resp = call(&coord, &req, v).await;
            ok(resp.error_code, &what);
            if v >= 3 {
                ok(resp.members[0].error_code, &what);
                assert_eq!(resp.members[0].member_id.as_str(), member, "{what}");
            }
        }
        ApiKey::OffsetCommit | ApiKey::OffsetFetch => {
            // A standalone ("simple") group: generation -1, no member.
            let g = format!("conf-offsets-{key:?}-{v}");
            let coord = ctx.coordinator(&g).await;
            let (commit_v, fetch_v) = if key == ApiKey::OffsetCommit {
                (v, 1)
            } else {
                (2, v)
            };
            let mut part = OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(3)
                .with_committed_metadata(Some(s("m")));
            if commit_v >= 6 {
                part = part.with_committed_leader_epoch(0);
            }
            let mut req = OffsetCommitRequest::default()
                .with_group_id(group(&g))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(name(TOPIC))
                    .with_partitions(vec![part])]);
            if (2..=4).contains(&commit_v) {
                req = req.with_retention_time_ms(-1);
            }
            let resp = call(&coord, &req, commit_v).await;
            ok(
                resp.topics[0].partitions[0].error_code,
                &format!("OffsetCommit v{commit_v}"),
            );
            let fetched = if fetch_v >= 8 {
                let req = OffsetFetchRequest::default().with_groups(vec![
                    OffsetFetchRequestGroup::default()
                        .with_group_id(group(&g))
                        .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                            .with_name(name(TOPIC))
                            .with_partition_indexes(vec![0])])),
                ]);
                let resp = call(&coord, &req, fetch_v).await;
                let gr = &resp.groups[0];
                ok(gr.error_code, &what);
                let p = &gr.topics[0].partitions[0];
                ok(p.error_code, &what);
                (
                    p.committed_offset,
                    p.committed_leader_epoch,
                    p.metadata.clone(),
                )
            } else {
                let req = OffsetFetchRequest::default()
                    .with_group_id(group(&g))
                    .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                        .with_name(name(TOPIC))
                        .with_partition_indexes(vec![0])]));
                let resp = call(&coord, &req, fetch_v).await;
                if fetch_v >= 2 {
                    ok(resp.error_code, &what);
                }
                let p = &resp.topics[0].partitions[0];
                ok(p.error_code, &what);
                (
                    p.committed_offset,
                    p.committed_leader_epoch,
                    p.metadata.clone(),
                )
            };
            assert_eq!(fetched.0, 3, "{what}: committed offset");
            assert_eq!(fetched.2.as_deref(), Some("m"), "{what}: metadata");
            if fetch_v >= 5 && commit_v >= 6 {
                assert_eq!(fetched.1, 0, "{what}: committed leader epoch");
            } else {
                assert_eq!(fetched.1, -1, "{what}: no leader epoch at this version");
            }
        }
        ApiKey::ListGroups => {
            let g = format!("conf-list-{v}");
            let _member = ctx.stable_member(&g).await;
            let mut req = ListGroupsRequest::default();
            if v >= 4 {
                req = req.with_states_filter(vec![s("Stable")]);
            }
            let mut found = false;
            for b in &ctx.bootstrap {
                let resp = call(b, &req, v).await;
                ok(resp.error_code, &what);
                if let Some(lg) = resp.groups.iter().find(|x| x.group_id.as_str() == g) {
                    found = true;
                    assert_eq!(lg.protocol_type.as_str(), "consumer", "{what}");
                    if v >= 4 {
                        assert_eq!(lg.group_state.as_str(), "Stable", "{what}: state");
                    }
                }
            }
            assert!(found, "{what}: {g} listed by its coordinator");
            if v >= 5 {
                // KIP-932/KIP-848: share groups are listed with type "share"; the type filter
                // picks them alone, and a filter of the other types leaves them out.
                let sg = format!("conf-list-share-{v}");
                let member = format!("conf-list-share-member-{v}");
                let coord = ctx.coordinator(&sg).await;
                ok(share_join(&coord, &sg, &member).await.error_code, &what);
                let listed = |types: &[&str]| {
                    ListGroupsRequest::default()
                        .with_types_filter(types.iter().map(|t| s(t)).collect())
                };
                let shares = call(&coord, &listed(&["share"]), v).await;
                ok(shares.error_code, &what);
                let lg = shares
                    .groups
                    .iter()
                    .find(|x| x.group_id.as_str() == sg)
                    .unwrap_or_else(|| panic!("{what}: {sg} not listed: {shares:?}"));
                assert_eq!(lg.group_type.as_str(), "share", "{what}");
                assert_eq!(lg.protocol_type.as_str(), "share", "{what}");
                assert_eq!(lg.group_state.as_str(), "Stable", "{what}");
                assert!(
                    shares
                        .groups
                        .iter()
                        .all(|x| x.group_type.as_str() == "share"),
                    "{what}: {shares:?}"
                );
                for b in &ctx.bootstrap {
                    let others = call(b, &listed(&["consumer", "classic"]), v).await;
                    ok(others.error_code, &what);
                    assert!(
                        others
                            .groups
                            .iter()
                            .all(|x| x.group_type.as_str() != "share"),
                        "{what}: {others:?}"
                    );
                    if let Some(x) = others.groups.iter().find(|x| x.group_id.as_str() == g) {
                        assert_eq!(x.group_type.as_str(), "classic", "{what}");
                    }
                }
                ok(share_leave(&coord, &sg, &member).await, &what);
            }
        }
        ApiKey::DescribeGroups => {
            let g = format!("conf-describe-{v}");
            let (coord, member, _) = ctx.stable_member(&g).await;
            let mut req = DescribeGroupsRequest::default().with_groups(vec![group(&g)]);
            if v >= 3 {
                req = req.with_include_authorized_operations(true);
            }
            let resp = call(&coord, &req, v).await;
            let d = &resp.groups[0];
            ok(d.error_code, &what);
            assert_eq!(d.group_state.as_str(), "Stable", "{what}");
            assert_eq!(d.protocol_type.as_str(), "consumer", "{what}");
            assert_eq!(d.members[0].member_id.as_str(), member, "{what}");
            if v >= 3 {
                assert!(d.authorized_operations & (1 << 3) != 0, "{what}: group ops");
            }
        }
        ApiKey::DeleteGroups => {
            let g = format!("conf-delgroup-{v}");
            let coord = ctx.coordinator(&g).await;
            ok(commit_one(&coord, &g, -1, 0, 1, "").await, "commit");
            let req = DeleteGroupsRequest::default().with_groups_names(vec![group(&g)]);
            let resp = call(&coord, &req, v).await;
            ok(resp.results[0].error_code, &what);
            assert_eq!(resp.results[0].group_id.as_str(), g, "{what}");
            // A share group: refused while it has members, then its durable state goes.
            let sg = format!("conf-delgroup-share-{v}");
            let member = format!("conf-delgroup-share-member-{v}");
            let coord = ctx.coordinator(&sg).await;
            ok(share_join(&coord, &sg, &member).await.error_code, &what);
            let req = DeleteGroupsRequest::default().with_groups_names(vec![group(&sg)]);
            let refused = call(&coord, &req, v).await;
            assert_eq!(refused.results[0].error_code, 68, "{what}: NON_EMPTY_GROUP");
            ok(share_leave(&coord, &sg, &member).await, &what);
            let altered = share_alter(&coord, &sg, 0, 2).await;
            ok(altered.error_code, &what);
            ok(altered.responses[0].partitions[0].error_code, &what);
            assert_eq!(share_start_offset(&coord, &sg).await, 2, "{what}");
            ok(call(&coord, &req, v).await.results[0].error_code, &what);
            assert_eq!(share_start_offset(&coord, &sg).await, -1, "{what}");
            let gone = call(
                &coord,
                &ShareGroupDescribeRequest::default().with_group_ids(vec![group(&sg)]),
                1,
            )
            .await;
            assert_eq!(gone.groups[0].error_code, 69, "{what}: GROUP_ID_NOT_FOUND");
        }
        ApiKey::OffsetDelete => {
            let g = format!("conf-offdel-{v}");
            let coord = ctx.coordinator(&g).await;
            ok(commit_one(&coord, &g, -1, 0, 1, "").await, "commit");
            let req = OffsetDeleteRequest::default()
                .with_group_id(group(&g))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(name(TOPIC))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0)
                    ])]);
            let resp = call(&coord, &req, v).await;
            ok(resp.error_code, &what);
            ok(resp.topics[0].partitions[0].error_code, &what);
        }
        ApiKey::AlterConfigs | ApiKey::IncrementalAlterConfigs => {
            let t = format!("conf-{key:?}-{v}").to_lowercase();
            let (status, body) = create_through_http(ctx, &t).await;
            assert_eq!(status, 201, "{what}: {body}");
            let value = format!("{}", 3_600_000 + i64::from(v));
            let code = if key == ApiKey::AlterConfigs {
                use kafka_protocol::messages::alter_configs_request::{
                    AlterConfigsResource, AlterableConfig,
                };
                let req = AlterConfigsRequest::default().with_resources(vec![
                    AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s(&t))
                        .with_configs(vec![AlterableConfig::default()
                            .with_name(s("retention.ms"))
                            .with_value(Some(s(&value)))]),
                ]);
                let resp = call(&ctx.any, &req, v).await;
                assert_eq!(resp.responses[0].resource_name.as_str(), t, "{what}");
                resp.responses[0].error_code
            } else {
                use kafka_protocol::messages::incremental_alter_configs_request::{
                    AlterConfigsResource, AlterableConfig,
                };
                let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
                    AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s(&t))
                        .with_configs(vec![AlterableConfig::default()
                            .with_name(s("retention.ms"))
                            .with_config_operation(0)
                            .with_value(Some(s(&value)))]),
                ]);
                let resp = call(&ctx.any, &req, v).await;
                assert_eq!(resp.responses[0].resource_name.as_str(), t, "{what}");
                resp.responses[0].error_code
            };
            ok(code, &what);
            // The broker that answered shows it at once, as set on the topic.
            let describe = DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(&t))
                    .with_configuration_keys(Some(vec![s("retention.ms")])),
            ]);
            let resp = call(&ctx.any, &describe, 1).await;
            let c = &resp.results[0].configs[0];
            assert_eq!(c.value.as_deref(), Some(value.as_str()), "{what}");
            assert_eq!(c.config_source, 1, "{what}: DYNAMIC_TOPIC_CONFIG");
        }
        ApiKey::DeleteRecords => {
            let t = format!("conf-delrec-{v}");
            let (status, body) = create_through_http(ctx, &t).await;
            assert_eq!(status, 201, "{what}: {body}");
            wait_topic_on_brokers(ctx.cluster, &t, 1, 3).await;
            let leader = ctx
                .cluster
                .kafka_addr(body["partitions"][0]["leader"].as_i64().expect("leader") as i32);
            let mut conn = connect(&leader).await;
            let recs: Vec<(String, String)> =
                (0..5).map(|i| ("k".into(), format!("{i}"))).collect();
            ok(
                produce(&mut conn, &t, 0, batch(&recs, None), -1)
                    .await
                    .error_code,
                &what,
            );
            use kafka_protocol::messages::delete_records_request::{
                DeleteRecordsPartition, DeleteRecordsTopic,
            };
            let req = DeleteRecordsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![DeleteRecordsTopic::default()
                    .with_name(name(&t))
                    .with_partitions(vec![DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(2)])]);
            let resp = call(&leader, &req, v).await;
            let p = &resp.topics[0].partitions[0];
            ok(p.error_code, &what);
            assert_eq!(p.low_watermark, 2, "{what}: low watermark");
        }
        ApiKey::ElectLeaders => {
            // The partition is led by its preferred replica: nothing to elect.
            let mut req = ElectLeadersRequest::default()
                .with_timeout_ms(10_000)
                .with_topic_partitions(Some(vec![
                    kafka_protocol::messages::elect_leaders_request::TopicPartitions::default()
                        .with_topic(name(TOPIC))
                        .with_partitions(vec![0]),
                ]));
            if v >= 1 {
                req = req.with_election_type(0);
            }
            let resp = call(&ctx.any, &req, v).await;
            if v >= 1 {
                ok(resp.error_code, &what);
            }
            let r = &resp.replica_election_results[0];
            assert_eq!(r.topic.0.as_str(), TOPIC, "{what}");
            assert_eq!(
                r.partition_result[0].error_code,
                ResponseError::ElectionNotNeeded.code(),
                "{what}"
            );
        }
        ApiKey::DescribeTopicPartitions => {
            use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
            let req = DescribeTopicPartitionsRequest::default()
                .with_response_partition_limit(1)
                .with_topics(vec![
                    TopicRequest::default().with_name(name(TOPIC)),
                    TopicRequest::default().with_name(name("no-such-topic")),
                ]);
            let resp = call(&ctx.any, &req, v).await;
            let known = resp
                .topics
                .iter()
                .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(TOPIC))
                .expect("the topic");
            ok(known.error_code, &what);
            assert_eq!(known.partitions.len(), 1, "{what}");
            let p = &known.partitions[0];
            assert!(p.leader_id.0 >= 0 && p.leader_epoch >= 0, "{what}: {p:?}");
            assert_eq!(p.replica_nodes.len(), 3, "{what}");
            assert!(!known.topic_id.is_nil(), "{what}: topic id");
            let missing = resp
                .topics
                .iter()
                .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("no-such-topic"))
                .expect("the unknown topic");
            assert_eq!(
                missing.error_code,
                ResponseError::UnknownTopicOrPartition.code(),
                "{what}"
            );
        }
        ApiKey::DescribeProducers => {
            // An idempotent producer writes one batch; the leader lists it.
            let init = call(
                &ctx.leader,
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000),
                1,
            )
            .await;
            ok(init.error_code, "InitProducerId");
            let pid = init.producer_id.0;
            let mut conn = connect(&ctx.leader).await;
            let one = vec![("k".to_string(), "idempotent".to_string())];
            ok(
                produce(&mut conn, TOPIC, 0, batch(&one, Some((pid, 0, 0))), -1)
                    .await
                    .error_code,
                "idempotent produce",
            );
            use kafka_protocol::messages::describe_producers_request::TopicRequest;
            let req = DescribeProducersRequest::default()
                .with_topics(vec![TopicRequest::default()
                    .with_name(name(TOPIC))
                    .with_partition_indexes(vec![0])]);
            let resp = call(&ctx.leader, &req, v).await;
            let p = &resp.topics[0].partitions[0];
            ok(p.error_code, &what);
            let me = p
                .active_producers
                .iter()
                .find(|x| x.producer_id.0 == pid)
                .unwrap_or_else(|| panic!("{what}: producer {pid} in {:?}", p.active_producers));
            assert_eq!((me.producer_epoch, me.last_sequence), (0, 0), "{what}");
            assert!(me.last_timestamp > 0, "{what}");
            // A follower does not answer for the partition.
            let follower = ctx
                .bootstrap
                .iter()
                .find(|b| **b != ctx.leader)
                .expect("a follower");
            let resp = call(follower, &req, v).await;
            assert_eq!(
                resp.topics[0].partitions[0].error_code,
                ResponseError::NotLeaderOrFollower.code(),
                "{what}"
            );
        }
        ApiKey::WriteTxnMarkers => {
            assert_eq!(v, 1, "the helper speaks v1");
            // KIP-98: a marker for a producer with no transaction here is legal and decides
            // nothing; it is answered once replicated to the ISR.
            let pid = 1_000_000 + i64::from(v);
            let mut conn = connect(&ctx.leader).await;
            ok(
                write_txn_marker(&mut conn, TOPIC, 0, (pid, 0), false, 0).await,
                &what,
            );
            // Only the leader writes markers.
            let follower = ctx
                .bootstrap
                .iter()
                .find(|b| **b != ctx.leader)
                .expect("a follower");
            let mut conn = connect(follower).await;
            assert_eq!(
                write_txn_marker(&mut conn, TOPIC, 0, (pid, 0), true, 0).await,
                ResponseError::NotLeaderOrFollower.code(),
                "{what}"
            );
        }
        ApiKey::AddPartitionsToTxn => {
            use kafka_protocol::messages::add_partitions_to_txn_request::{
                AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
            };
            let id = format!("conf-add-{v}");
            let (coord, pid, epoch) = ctx.txn_producer(&id).await;
            if v <= 3 {
                let resp = call(&coord, &add_partitions_v3(&id, pid, epoch), v).await;
                let r = &resp.results_by_topic_v3_and_below[0].results_by_partition[0];
                ok(r.partition_error_code, &what);
                // A stale epoch is fenced.
                let resp = call(&coord, &add_partitions_v3(&id, pid, epoch - 1), v).await;
                assert_ne!(
                    resp.results_by_topic_v3_and_below[0].results_by_partition[0]
                        .partition_error_code,
                    0,
                    "{what}: a stale epoch"
                );
            } else {
                // The batched inter-broker form: verify_only asks whether the partition is
                // in the transaction (KIP-890) and changes nothing.
                let txn = |verify_only| {
                    AddPartitionsToTxnTransaction::default()
                        .with_transactional_id(TransactionalId(s(&id)))
                        .with_producer_id(ProducerId(pid))
                        .with_producer_epoch(epoch)
                        .with_verify_only(verify_only)
                        .with_topics(vec![AddPartitionsToTxnTopic::default()
                            .with_name(name(TOPIC))
                            .with_partitions(vec![0])])
                };
                let verify =
                    AddPartitionsToTxnRequest::default().with_transactions(vec![txn(true)]);
                let resp = call(&coord, &verify, v).await;
                ok(resp.error_code, &what);
                assert_eq!(
                    resp.results_by_transaction[0].topic_results[0].results_by_partition[0]
                        .partition_error_code,
                    ResponseError::InvalidTxnState.code(),
                    "{what}: not added yet"
                );
                let add = AddPartitionsToTxnRequest::default().with_transactions(vec![txn(false)]);
                let resp = call(&coord, &add, v).await;
                ok(
                    resp.results_by_transaction[0].topic_results[0].results_by_partition[0]
                        .partition_error_code,
                    &what,
                );
                let resp = call(&coord, &verify, v).await;
                ok(
                    resp.results_by_transaction[0].topic_results[0].results_by_partition[0]
                        .partition_error_code,
                    &format!("{what}: verified once added"),
                );
            }
        }
        ApiKey::AddOffsetsToTxn => {
            let id = format!("conf-offsets-{v}");
            let (coord, pid, epoch) = ctx.txn_producer(&id).await;
            let req = AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s(&id)))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_group_id(group(&format!("conf-offsets-g{v}")));
            ok(call(&coord, &req, v).await.error_code, &what);
        }
        ApiKey::TxnOffsetCommit => {
            use kafka_protocol::messages::txn_offset_commit_request::{
                TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
            };
            let id = format!("conf-txnoff-{v}");
            let g = format!("conf-txnoff-g{v}");
            let (coord, pid, epoch) = ctx.txn_producer(&id).await;
            let add = AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s(&id)))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_group_id(group(&g));
            ok(call(&coord, &add, 1).await.error_code, "AddOffsetsToTxn");
            let mut req = TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(s(&id)))
                .with_group_id(group(&g))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                    .with_name(name(TOPIC))
                    .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(3)])]);
            if v >= 3 {
                req = req.with_generation_id(-1).with_member_id(s(""));
            }
            let group_coord = ctx.coordinator(&g).await;
            let resp = call(&group_coord, &req, v).await;
            ok(resp.topics[0].partitions[0].error_code, &what);
            // KIP-447: while the transaction is open the offset is unstable for a consumer
            // asking for stable offsets, and not yet the group's for one that does not.
            for (stable, code, offset) in [(true, 88, -1), (false, 0, -1)] {
                let fetch = OffsetFetchRequest::default()
                    .with_group_id(group(&g))
                    .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                        .with_name(name(TOPIC))
                        .with_partition_indexes(vec![0])]))
                    .with_require_stable(stable);
                let resp = call(&group_coord, &fetch, 7).await;
                let p = &resp.topics[0].partitions[0];
                assert_eq!(
                    (p.error_code, p.committed_offset),
                    (code, offset),
                    "{what}: OffsetFetch v7 require_stable={stable}"
                );
            }
        }
        ApiKey::EndTxn => {
            let id = format!("conf-end-{v}");
            let (coord, pid, epoch) = ctx.open_txn(&id).await;
            let req = EndTxnRequest::default()
                .with_transactional_id(TransactionalId(s(&id)))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_committed(false);
            ok(call(&coord, &req, v).await.error_code, &what);
            // A retried abort of the completed decision is answered OK; a commit is not.
            ok(
                call(&coord, &req, v).await.error_code,
                &format!("{what}: retried"),
            );
            assert_eq!(
                call(&coord, &req.clone().with_committed(true), v)
                    .await
                    .error_code,
                ResponseError::InvalidTxnState.code(),
                "{what}: commit after abort"
            );
        }
        ApiKey::DescribeTransactions => {
            let id = format!("conf-describe-{v}");
            let (coord, pid, _) = ctx.open_txn(&id).await;
            let req = DescribeTransactionsRequest::default().with_transactional_ids(vec![
                TransactionalId(s(&id)),
                TransactionalId(s("conf-none")),
            ]);
            let resp = call(&coord, &req, v).await;
            let t = &resp.transaction_states[0];
            ok(t.error_code, &what);
            assert_eq!(
                (t.transaction_state.as_str(), t.producer_id.0),
                ("Ongoing", pid),
                "{what}"
            );
            assert_eq!(t.topics[0].partitions, vec![0], "{what}");
            assert_ne!(
                resp.transaction_states[1].error_code, 0,
                "{what}: unknown id"
            );
        }
        ApiKey::ListTransactions => {
            let id = format!("conf-list-{v}");
            let (coord, _, _) = ctx.open_txn(&id).await;
            let mut req = ListTransactionsRequest::default().with_state_filters(vec![s("Ongoing")]);
            if v >= 1 {
                req = req.with_duration_filter(-1);
            }
            let resp = call(&coord, &req, v).await;
            ok(resp.error_code, &what);
            assert!(
                resp.transaction_states
                    .iter()
                    .any(|t| t.transactional_id.as_str() == id
                        && t.transaction_state.as_str() == "Ongoing"),
                "{what}: {resp:?}"
            );
        }
        ApiKey::SaslHandshake => {
            // An open (PLAINTEXT) listener has no SASL exchange to start.
            let resp = call(
                &ctx.any,
                &SaslHandshakeRequest::default().with_mechanism(s("PLAIN")),
                v,
            )
            .await;
            assert_eq!(
                resp.error_code,
                ResponseError::IllegalSaslState.code(),
                "{what}"
            );
        }
        ApiKey::SaslAuthenticate => {
            // Without a SaslHandshake first: ILLEGAL_SASL_STATE, with a message.
            let resp = call(
                &ctx.any,
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"x")),
                v,
            )
            .await;
            assert_eq!(
                resp.error_code,
                ResponseError::IllegalSaslState.code(),
                "{what}"
            );
            assert!(resp.error_message.is_some(), "{what}");
        }
        ApiKey::CreateAcls | ApiKey::DescribeAcls | ApiKey::DeleteAcls => {
            use kafka_protocol::messages::create_acls_request::AclCreation;
            use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
            // One ACL per (API, version): created, described, deleted; an invalid one is
            // refused with INVALID_REQUEST (the authorizer is off, so all are allowed).
            let topic = format!("acl-{key:?}-{v}");
            let principal = format!("User:conf-{v}");
            let creation = AclCreation::default()
                .with_resource_type(2)
                .with_resource_name(s(&topic))
                .with_resource_pattern_type(3)
                .with_principal(s(&principal))
                .with_host(s("*"))
                .with_operation(3)
                .with_permission_type(3);
            let cv = if key == ApiKey::CreateAcls { v } else { 1 };
            let created = call(
                &ctx.any,
                &CreateAclsRequest::default().with_creations(vec![
                    creation.clone(),
                    creation.clone().with_operation(1), // ANY is no operation to grant
                ]),
                cv,
            )
            .await;
            ok(created.results[0].error_code, &what);
            assert_eq!(
                created.results[1].error_code,
                ResponseError::InvalidRequest.code(),
                "{what}"
            );
            let dv = if key == ApiKey::DescribeAcls { v } else { 1 };
            let described = call(
                &ctx.any,
                &DescribeAclsRequest::default()
                    .with_resource_type_filter(1)
                    .with_resource_name_filter(None)
                    .with_pattern_type_filter(1)
                    .with_principal_filter(Some(s(&principal)))
                    .with_host_filter(None)
                    .with_operation(1)
                    .with_permission_type(1),
                dv,
            )
            .await;
            ok(described.error_code, &what);
            assert_eq!(described.resources.len(), 1, "{what}: {described:?}");
            assert_eq!(described.resources[0].resource_name.as_str(), topic);
            let xv = if key == ApiKey::DeleteAcls { v } else { 1 };
            let deleted = call(
                &ctx.any,
                &DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
                    .with_resource_type_filter(2)
                    .with_resource_name_filter(Some(s(&topic)))
                    .with_pattern_type_filter(3)
                    .with_principal_filter(Some(s(&principal)))
                    .with_host_filter(Some(s("*")))
                    .with_operation(3)
                    .with_permission_type(3)]),
                xv,
            )
            .await;
            ok(deleted.filter_results[0].error_code, &what);
            assert_eq!(deleted.filter_results[0].matching_acls.len(), 1, "{what}");
        }
        ApiKey::DescribeUserScramCredentials | ApiKey::AlterUserScramCredentials => {
            use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
            use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
            let user = format!("scram-{key:?}-{v}");
            let describe = || {
                DescribeUserScramCredentialsRequest::default()
                    .with_users(Some(vec![UserName::default().with_name(s(&user))]))
            };
            let before = call(&ctx.any, &describe(), 0).await;
            assert_eq!(
                before.results[0].error_code, 91,
                "{what}: RESOURCE_NOT_FOUND before"
            );
            let mech = dmq_auth::ScramMechanism::Sha512;
            let salted = dmq_auth::scram::salted_password(
                mech,
                &dmq_auth::Password::new("pw"),
                b"salt-of-conformance",
                4096,
            )
            .expect("salted");
            let upsert = ScramCredentialUpsertion::default()
                .with_name(s(&user))
                .with_mechanism(mech.code())
                .with_iterations(4096)
                .with_salt(Bytes::from_static(b"salt-of-conformance"))
                .with_salted_password(Bytes::from(salted.expose_secret().to_vec()));
            let altered = call(
                &ctx.any,
                &AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                    upsert.clone(),
                    upsert.with_name(s("too-few")).with_iterations(10),
                ]),
                0,
            )
            .await;
            ok(altered.results[0].error_code, &what);
            assert_eq!(
                altered.results[1].error_code, 93,
                "{what}: UNACCEPTABLE_CREDENTIAL"
            );
            let after = call(&ctx.any, &describe(), 0).await;
            ok(after.results[0].error_code, &what);
            let info = &after.results[0].credential_infos[0];
            assert_eq!((info.mechanism, info.iterations), (2, 4096), "{what}");
        }
        ApiKey::DescribeClientQuotas => {
            use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
            // No quotas exist (dmq enforces none): a valid filter matches nothing.
            let any_user = ComponentData::default()
                .with_entity_type(s("user"))
                .with_match_type(2)
                .with_match(None);
            let resp = call(
                &ctx.any,
                &DescribeClientQuotasRequest::default().with_components(vec![any_user.clone()]),
                v,
            )
            .await;
            ok(resp.error_code, &what);
            assert_eq!(resp.entries, Some(Vec::new()), "{what}");
            // A filter Kafka refuses is refused the same way.
            for bad in [
                vec![any_user.clone(), any_user.clone()],
                vec![any_user.clone().with_entity_type(s("tenant"))],
                vec![any_user.clone().with_match_type(0)],
                vec![any_user.clone().with_match_type(7)],
            ] {
                let resp = call(
                    &ctx.any,
                    &DescribeClientQuotasRequest::default().with_components(bad.clone()),
                    v,
                )
                .await;
                assert_eq!(resp.error_code, 42, "{what}: INVALID_REQUEST for {bad:?}");
                assert_eq!(resp.entries, None, "{what}");
            }
        }
        ApiKey::ShareGroupHeartbeat | ApiKey::ShareFetch | ApiKey::ShareAcknowledge => {
            use kafka_protocol::messages::share_acknowledge_request as ack;
            use kafka_protocol::messages::share_fetch_request as sf;
            let g = format!("conf-share-{key:?}-{v}");
            let member = format!("conf-share-member-{key:?}-{v}");
            let coord = ctx.coordinator(&g).await;
            let join = ShareGroupHeartbeatRequest::default()
                .with_group_id(group(&g))
                .with_member_id(s(&member))
                .with_member_epoch(0)
                .with_subscribed_topic_names(Some(vec![name(TOPIC)]));
            let joined = call(&coord, &join, v).await;
            ok(joined.error_code, &what);
            assert!(joined.member_epoch >= 1, "{what}: {joined:?}");
            let assignment = joined.assignment.clone().expect("assignment on join");
            assert_eq!(assignment.topic_partitions.len(), 1, "{what}");
            assert_eq!(assignment.topic_partitions[0].partitions, vec![0], "{what}");
            let topic_id = assignment.topic_partitions[0].topic_id;
            let fenced = call(
                &coord,
                &join
                    .clone()
                    .with_member_epoch(joined.member_epoch + 5)
                    .with_subscribed_topic_names(None),
                v,
            )
            .await;
            assert_eq!(fenced.error_code, 110, "{what}: FENCED_MEMBER_EPOCH");
            let unknown = call(
                &coord,
                &join
                    .clone()
                    .with_member_id(s("nobody"))
                    .with_member_epoch(3),
                v,
            )
            .await;
            assert_eq!(unknown.error_code, 25, "{what}: UNKNOWN_MEMBER_ID");
            // The leader's share session: epoch 0 opens it, a wrong epoch is refused, the right
            // one continues (nothing to hand out: a new share-partition starts at the HW).
            let fetch = |epoch: i32| {
                ShareFetchRequest::default()
                    .with_group_id(Some(group(&g)))
                    .with_member_id(Some(s(&member)))
                    .with_share_session_epoch(epoch)
                    .with_max_wait_ms(0)
                    .with_max_bytes(1 << 20)
                    .with_max_records(10)
                    .with_batch_size(10)
                    .with_topics(vec![sf::FetchTopic::default()
                        .with_topic_id(topic_id)
                        .with_partitions(vec![
                            sf::FetchPartition::default().with_partition_index(0)
                        ])])
            };
            let opened = call(&ctx.leader, &fetch(0), v).await;
            ok(opened.error_code, &what);
            let p = &opened.responses[0].partitions[0];
            ok(p.error_code, &what);
            assert_eq!(
                p.records.as_ref().map(|r| r.len()),
                Some(0),
                "{what}: {p:?}"
            );
            assert_eq!(
                call(&ctx.leader, &fetch(7), v).await.error_code,
                123,
                "{what}"
            );
            ok(call(&ctx.leader, &fetch(1), v).await.error_code, &what);
            let acknowledge = |epoch: i32| {
                ShareAcknowledgeRequest::default()
                    .with_group_id(Some(group(&g)))
                    .with_member_id(Some(s(&member)))
                    .with_share_session_epoch(epoch)
                    .with_topics(vec![ack::AcknowledgeTopic::default()
                        .with_topic_id(topic_id)
                        .with_partitions(vec![ack::AcknowledgePartition::default()
                            .with_partition_index(0)
                            .with_acknowledgement_batches(vec![
                                ack::AcknowledgementBatch::default()
                                    .with_first_offset(1_000_000)
                                    .with_last_offset(1_000_000)
                                    .with_acknowledge_types(vec![1]),
                            ])])])
            };
            assert_eq!(
                call(&ctx.leader, &acknowledge(0), v).await.error_code,
                123,
                "{what}"
            );
            let acked = call(&ctx.leader, &acknowledge(2), v).await;
            ok(acked.error_code, &what);
            assert_eq!(
                acked.responses[0].partitions[0].error_code, 42,
                "{what}: INVALID_REQUEST for a record past the acquired ones"
            );
            ok(
                call(&ctx.leader, &acknowledge(-1), v).await.error_code,
                &what,
            );
            assert_eq!(
                call(&ctx.leader, &acknowledge(-1), v).await.error_code,
                122,
                "{what}"
            );
            let left = call(&coord, &join.clone().with_member_epoch(-1), v).await;
            ok(left.error_code, &what);
            assert_eq!(left.member_epoch, -1, "{what}");
        }
        ApiKey::ShareGroupDescribe => {
            let g = format!("conf-share-describe-{v}");
            let member = format!("conf-share-describe-member-{v}");
            let coord = ctx.coordinator(&g).await;
            let req = ShareGroupDescribeRequest::default()
                .with_group_ids(vec![group(&g)])
                .with_include_authorized_operations(true);
            let unknown = call(&coord, &req, v).await;
            assert_eq!(
                unknown.groups[0].error_code, 69,
                "{what}: GROUP_ID_NOT_FOUND {unknown:?}"
            );
            let joined = share_join(&coord, &g, &member).await;
            ok(joined.error_code, &what);
            let topic_id = joined
                .assignment
                .as_ref()
                .map(|a| a.topic_partitions[0].topic_id)
                .expect("assignment on join");
            let resp = call(&coord, &req, v).await;
            let d = &resp.groups[0];
            ok(d.error_code, &what);
            assert_eq!(d.group_id.as_str(), g, "{what}");
            assert_eq!(d.group_state.as_str(), "Stable", "{what}");
            assert!(d.group_epoch >= 1, "{what}: {d:?}");
            assert_eq!(d.assignment_epoch, d.group_epoch, "{what}");
            assert_eq!(d.assignor_name.as_str(), "simple", "{what}");
            assert!(d.authorized_operations & (1 << 8) != 0, "{what}: group ops");
            assert_eq!(d.members.len(), 1, "{what}: {d:?}");
            let m = &d.members[0];
            assert_eq!(m.member_id.as_str(), member, "{what}");
            assert_eq!(m.member_epoch, joined.member_epoch, "{what}");
            assert_eq!(m.rack_id, None, "{what}");
            assert!(
                m.client_host.as_str().starts_with("/127.0.0.1"),
                "{what}: client host {m:?}"
            );
            assert_eq!(
                m.subscribed_topic_names
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>(),
                vec![TOPIC],
                "{what}"
            );
            let tp = &m.assignment.topic_partitions;
            assert_eq!(tp.len(), 1, "{what}: {m:?}");
            assert_eq!(tp[0].topic_id, topic_id, "{what}");
            assert_eq!(tp[0].topic_name.as_str(), TOPIC, "{what}");
            assert_eq!(tp[0].partitions, vec![0], "{what}");
            // Another broker does not coordinate the group.
            if let Some(other) = ctx.bootstrap.iter().find(|b| **b != coord) {
                let resp = call(other, &req, v).await;
                assert_eq!(resp.groups[0].error_code, 16, "{what}: NOT_COORDINATOR");
            }
            ok(share_leave(&coord, &g, &member).await, &what);
            // Its last member gone, the group stays, Empty (as in Kafka).
            let resp = call(&coord, &req, v).await;
            let d = &resp.groups[0];
            ok(d.error_code, &what);
            assert_eq!(
                (d.group_state.as_str(), d.members.len()),
                ("Empty", 0),
                "{what}: {d:?}"
            );
        }
        ApiKey::DescribeShareGroupOffsets => {
            use kafka_protocol::messages::describe_share_group_offsets_request as d;
            let g = format!("conf-share-offsets-{v}");
            let member = format!("conf-share-offsets-member-{v}");
            let coord = ctx.coordinator(&g).await;
            ok(share_join(&coord, &g, &member).await.error_code, &what);
            let asked = |topics| {
                DescribeShareGroupOffsetsRequest::default().with_groups(vec![
                    d::DescribeShareGroupOffsetsRequestGroup::default()
                        .with_group_id(group(&g))
                        .with_topics(topics),
                ])
            };
            let topics = Some(vec![d::DescribeShareGroupOffsetsRequestTopic::default()
                .with_topic_name(name(TOPIC))
                .with_partitions(vec![0, 9])]);
            let resp = call(&coord, &asked(topics), v).await;
            let rg = &resp.groups[0];
            ok(rg.error_code, &what);
            let t = &rg.topics[0];
            assert_eq!(t.topic_name.as_str(), TOPIC, "{what}");
            assert!(!t.topic_id.is_nil(), "{what}: topic id");
            let p = &t.partitions[0];
            ok(p.error_code, &what);
            assert_eq!(
                (p.partition_index, p.start_offset),
                (0, -1),
                "{what}: no state yet"
            );
            assert_eq!(t.partitions[1].error_code, 3, "{what}: partition 9");
            // All topics: only share-partitions with state, so none.
            let all = call(&coord, &asked(None), v).await;
            ok(all.groups[0].error_code, &what);
            assert!(all.groups[0].topics.is_empty(), "{what}: {all:?}");
            ok(share_leave(&coord, &g, &member).await, &what);
        }
        ApiKey::AlterShareGroupOffsets => {
            let g = format!("conf-share-alter-{v}");
            let member = format!("conf-share-alter-member-{v}");
            let coord = ctx.coordinator(&g).await;
            let altered = share_alter(&coord, &g, 0, 3).await;
            ok(altered.error_code, &what);
            let t = &altered.responses[0];
            assert_eq!(t.topic_name.as_str(), TOPIC, "{what}");
            assert!(!t.topic_id.is_nil(), "{what}: topic id");
            ok(t.partitions[0].error_code, &what);
            assert_eq!(share_start_offset(&coord, &g).await, 3, "{what}");
            // Again: a new state epoch, the new offset.
            ok(share_alter(&coord, &g, 0, 1).await.error_code, &what);
            assert_eq!(share_start_offset(&coord, &g).await, 1, "{what}");
            let bad = share_alter(&coord, &g, 5, 1).await;
            ok(bad.error_code, &what);
            assert_eq!(
                bad.responses[0].partitions[0].error_code, 3,
                "{what}: UNKNOWN_TOPIC_OR_PARTITION"
            );
            // Only an empty group's offsets are altered.
            ok(share_join(&coord, &g, &member).await.error_code, &what);
            assert_eq!(
                share_alter(&coord, &g, 0, 0).await.error_code,
                68,
                "{what}: NON_EMPTY_GROUP"
            );
            ok(share_leave(&coord, &g, &member).await, &what);
            assert_eq!(share_start_offset(&coord, &g).await, 1, "{what}");
        }
        ApiKey::DeleteShareGroupOffsets => {
            use kafka_protocol::messages::delete_share_group_offsets_request as d;
            let g = format!("conf-share-deloff-{v}");
            let member = format!("conf-share-deloff-member-{v}");
            let coord = ctx.coordinator(&g).await;
            let req = DeleteShareGroupOffsetsRequest::default()
                .with_group_id(group(&g))
                .with_topics(vec![
                    d::DeleteShareGroupOffsetsRequestTopic::default().with_topic_name(name(TOPIC))
                ]);
            let unknown = call(&coord, &req, v).await;
            assert_eq!(unknown.error_code, 69, "{what}: GROUP_ID_NOT_FOUND");
            ok(share_alter(&coord, &g, 0, 2).await.error_code, &what);
            assert_eq!(share_start_offset(&coord, &g).await, 2, "{what}");
            ok(share_join(&coord, &g, &member).await.error_code, &what);
            assert_eq!(
                call(&coord, &req, v).await.error_code,
                68,
                "{what}: NON_EMPTY_GROUP"
            );
            ok(share_leave(&coord, &g, &member).await, &what);
            let resp = call(&coord, &req, v).await;
            ok(resp.error_code, &what);
            let t = &resp.responses[0];
            ok(t.error_code, &what);
            assert_eq!(t.topic_name.as_str(), TOPIC, "{what}");
            assert!(!t.topic_id.is_nil(), "{what}: topic id");
            assert_eq!(share_start_offset(&coord, &g).await, -1, "{what}");
        }
        other => panic!("{other:?} is advertised but has no conformance case"),
    }
}

fn add_partitions_v3(id: &str, pid: i64, epoch: i16) -> AddPartitionsToTxnRequest {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(id)))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(name(TOPIC))
            .with_partitions(vec![0])])
}

/// Creates `topic` (1 partition, RF 3) through the metadata API.
async fn create_through_http(ctx: &Ctx<'_>, topic: &str) -> (u16, serde_json::Value) {
    let body = json!({"topicName": topic, "numPartitions": 1, "replicationFactor": 3});
    post_leader(ctx.cluster, "/api/v1/metadata/topics", &body).await
}

#[tokio::test(flavor = "current_thread")]
async fn every_advertised_api_version_is_answered_in_its_own_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let body = json!({"topicName": TOPIC, "numPartitions": 1, "replicationFactor": 3});
    let (status, topic) = post_leader(&cluster, "/api/v1/metadata/topics", &body).await;
    assert_eq!(status, 201, "{topic}");
    wait_topic_on_brokers(&cluster, TOPIC, 1, 3).await;
    let leader = topic["partitions"][0]["leader"].as_i64().expect("leader") as i32;
    let bootstrap: Vec<String> = cluster
        .broker_ids()
        .into_iter()
        .map(|b| cluster.kafka_addr(b))
        .collect();
    let ctx = Ctx {
        cluster: &cluster,
        leader: cluster.kafka_addr(leader),
        any: bootstrap[0].clone(),
        bootstrap,
    };
    let mut conn = connect(&ctx.leader).await;
    let records: Vec<(String, String)> = (0..RECORDS)
        .map(|i| ("k".into(), format!("v{i}")))
        .collect();
    let p = produce(&mut conn, TOPIC, 0, batch(&records, None), -1).await;
    ok(p.error_code, "seed produce");

    let advertised = call(&ctx.any, &ApiVersionsRequest::default(), 0).await;
    ok(advertised.error_code, "ApiVersions");
    let mut checked = 0;
    for k in &advertised.api_keys {
        let key = ApiKey::try_from(k.api_key).expect("known API key");
        for v in k.min_version..=k.max_version {
            case(&ctx, key, v).await;
            checked += 1;
        }
    }
    eprintln!(
        "conformance: {checked} (API, version) pairs over {} APIs",
        advertised.api_keys.len()
    );
    assert!(checked > 100, "only {checked} pairs advertised");
}

/// One OffsetCommit v8 of `offset` (with `metadata`) for `partition` of [`TOPIC`] by a
/// standalone member of `group_id`; the partition's error code.
async fn commit_one(
    addr: &str,
    group_id: &str,
    generation: i32,
    partition: i32,
    offset: i64,
    metadata: &str,
) -> i16 {
    let req = OffsetCommitRequest::default()
        .with_group_id(group(group_id))
        .with_generation_id_or_member_epoch(generation)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(name(TOPIC))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(partition)
                .with_committed_offset(offset)
                .with_committed_metadata(Some(s(metadata)))])]);
    call(addr, &req, 8).await.topics[0].partitions[0].error_code
}

/// Joins share group `group_id` as `member`, subscribed to [`TOPIC`] (ShareGroupHeartbeat v1).
async fn share_join(addr: &str, group_id: &str, member: &str) -> ShareGroupHeartbeatResponse {
    let req = ShareGroupHeartbeatRequest::default()
        .with_group_id(group(group_id))
        .with_member_id(s(member))
        .with_member_epoch(0)
        .with_subscribed_topic_names(Some(vec![name(TOPIC)]));
    call(addr, &req, 1).await
}

/// `member` leaves share group `group_id`: the heartbeat's error code.
async fn share_leave(addr: &str, group_id: &str, member: &str) -> i16 {
    let req = ShareGroupHeartbeatRequest::default()
        .with_group_id(group(group_id))
        .with_member_id(s(member))
        .with_member_epoch(-1);
    call(addr, &req, 1).await.error_code
}

/// AlterShareGroupOffsets v0: `partition` of [`TOPIC`] starts at `offset` for `group_id`.
async fn share_alter(
    addr: &str,
    group_id: &str,
    partition: i32,
    offset: i64,
) -> AlterShareGroupOffsetsResponse {
    use kafka_protocol::messages::alter_share_group_offsets_request as a;
    let req = AlterShareGroupOffsetsRequest::default()
        .with_group_id(group(group_id))
        .with_topics(vec![a::AlterShareGroupOffsetsRequestTopic::default()
            .with_topic_name(name(TOPIC))
            .with_partitions(vec![
                a::AlterShareGroupOffsetsRequestPartition::default()
                    .with_partition_index(partition)
                    .with_start_offset(offset),
            ])]);
    call(addr, &req, 0).await
}

/// The share-partition start offset of partition 0 of [`TOPIC`] for `group_id`
/// (DescribeShareGroupOffsets v0; -1 without state).
async fn share_start_offset(addr: &str, group_id: &str) -> i64 {
    use kafka_protocol::messages::describe_share_group_offsets_request as d;
    let req = DescribeShareGroupOffsetsRequest::default().with_groups(vec![
        d::DescribeShareGroupOffsetsRequestGroup::default()
            .with_group_id(group(group_id))
            .with_topics(Some(vec![
                d::DescribeShareGroupOffsetsRequestTopic::default()
                    .with_topic_name(name(TOPIC))
                    .with_partitions(vec![0]),
            ])),
    ]);
    let resp = call(addr, &req, 0).await;
    ok(resp.groups[0].error_code, "DescribeShareGroupOffsets");
    let p = &resp.groups[0].topics[0].partitions[0];
    ok(p.error_code, "DescribeShareGroupOffsets");
    p.start_offset
}

/// The committed offset of partition 0 of [`TOPIC`] for `group_id` (OffsetFetch v8).
async fn committed_offset(addr: &str, group_id: &str) -> i64 {
    let req = OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
        .with_group_id(group(group_id))
        .with_topics(Some(vec![OffsetFetchRequestTopics::default()
            .with_name(name(TOPIC))
            .with_partition_indexes(vec![0])]))]);
    let resp = call(addr, &req, 8).await;
    resp.groups[0].topics[0].partitions[0].committed_offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_groups_bad_offset_commits_never_fail_another_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 1, 1).await;
    let body = json!({"topicName": TOPIC, "numPartitions": 1, "replicationFactor": 1});
    let (status, topic) = post_leader(&cluster, "/api/v1/metadata/topics", &body).await;
    assert_eq!(status, 201, "{topic}");
    wait_topic_on_brokers(&cluster, TOPIC, 1, 1).await;
    // One broker: both groups share its coordinator and its commit batches.
    let addr = cluster.kafka_addr(cluster.broker_ids()[0]);

    // Kafka stores any offset, including the reset markers clients commit.
    for offset in [-1, -2, -100] {
        ok(
            commit_one(&addr, "neg", -1, 0, offset, "").await,
            "negative commit",
        );
        assert_eq!(committed_offset(&addr, "neg").await, offset);
    }

    let spam = {
        let addr = addr.clone();
        tokio::spawn(async move {
            let long = "x".repeat(5000);
            let mut codes = std::collections::BTreeSet::new();
            for i in 0..150i64 {
                let code = match i % 4 {
                    0 => commit_one(&addr, "group-a", -1, 0, -7 - i, "").await,
                    1 => commit_one(&addr, "group-a", -1, 0, 1, &long).await,
                    2 => commit_one(&addr, "group-a", -1, 99, 1, "").await,
                    _ => commit_one(&addr, "group-a", 42, 0, 1, "").await,
                };
                codes.insert(code);
            }
            codes
        })
    };
    let mut b_commits = 0;
    for offset in 0..150i64 {
        let code = commit_one(&addr, "group-b", -1, 0, offset, "b").await;
        ok(
            code,
            &format!("group-b commit {offset} while group-a sends bad ones"),
        );
        b_commits += 1;
    }
    let a_codes = spam.await.expect("spam task");
    assert_eq!(b_commits, 150);
    assert_eq!(committed_offset(&addr, "group-b").await, 149);
    // group-a's errors are its own: metadata too large, unknown partition, and the coordinator
    // refusing a generation for a group without members; its negative offsets were stored.
    assert!(
        a_codes.contains(&ResponseError::OffsetMetadataTooLarge.code())
            && a_codes.contains(&ResponseError::UnknownTopicOrPartition.code()),
        "group-a codes {a_codes:?}"
    );
    assert!(!a_codes.contains(&ResponseError::CoordinatorNotAvailable.code()));

    // The internal endpoint refuses commits for unknown topics or partitions one by one.
    let bad = json!({"commits": [
        {"groupId": "http", "topic": TOPIC, "partition": 0, "offset": 5, "commitTimestamp": 1},
        {"groupId": "http", "topic": "no-such-topic", "partition": 0, "offset": 5, "commitTimestamp": 1},
        {"groupId": "http", "topic": TOPIC, "partition": -1, "offset": 5, "commitTimestamp": 1},
        {"groupId": "http", "topic": TOPIC, "partition": 99, "offset": 5, "commitTimestamp": 1},
        {"groupId": "", "topic": TOPIC, "partition": 0, "offset": 5, "commitTimestamp": 1},
    ]});
    let (status, answer) = post_leader(&cluster, "/api/v1/metadata/offsets", &bad).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["committed"], 1, "{answer}");
    let rejected: Vec<u64> = answer["rejected"]
        .as_array()
        .expect("rejected list")
        .iter()
        .filter_map(|r| r["index"].as_u64())
        .collect();
    assert_eq!(rejected, vec![1, 2, 3, 4], "{answer}");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(5))
        .await
        .expect("leader");
    let (_, offsets) = cluster
        .get(
            leader,
            "/api/v1/metadata/groups/http/offsets?consistent=true",
        )
        .await
        .expect("offsets");
    let committed = offsets["offsets"].as_object().expect("offsets object");
    assert_eq!(committed.len(), 1, "only {TOPIC}: {offsets}");
    assert_eq!(offsets["offsets"][TOPIC]["0"]["offset"], 5, "{offsets}");
}
