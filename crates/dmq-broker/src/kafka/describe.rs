//! Read-only admin APIs: DescribeTopicPartitions (KIP-966's paged topic description, which
//! kafka-topics --describe uses) and DescribeProducers (KIP-664, the idempotent producers a
//! partition leader knows).

use dmq_auth::{Operation, ResourceType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse,
};

use super::handlers::{authorized, s, topic_name, Ctx};
use crate::produce;

/// Partitions one DescribeTopicPartitions answer holds at most (Kafka's
/// `max.request.partition.size.limit` default).
const PARTITIONS_PER_RESPONSE_MAX: i32 = 2000;

pub fn describe_topic_partitions(
    ctx: &mut Ctx<'_>,
    r: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let image = ctx.shared.image();
    let online = |id: i32| {
        image
            .brokers
            .get(&id)
            .is_some_and(|b| b.status == dmq_types::model::BrokerStatus::Online)
    };
    // Requested topics in name order (every topic when none is named), from the cursor on.
    // Every describable topic when none is named (Kafka hides the others).
    let mut names: Vec<String> = if r.topics.is_empty() {
        image
            .topics
            .keys()
            .filter(|t| ctx.allowed(Operation::Describe, ResourceType::Topic, t))
            .cloned()
            .collect()
    } else {
        r.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort();
    names.dedup();
    let (from_topic, from_partition) = r
        .cursor
        .as_ref()
        .map(|c| (c.topic_name.0.to_string(), c.partition_index.max(0)))
        .unwrap_or_default();
    let limit = match r.response_partition_limit {
        l if l <= 0 => PARTITIONS_PER_RESPONSE_MAX,
        l => l.min(PARTITIONS_PER_RESPONSE_MAX),
    };
    let mut left = limit;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names.into_iter().filter(|n| *n >= from_topic) {
        if !ctx.allowed(Operation::Describe, ResourceType::Topic, &name) {
            ctx.had_error = true;
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(topic_name(&name)))
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code()),
            );
            continue;
        }
        let Some(t) = image.topics.get(&name) else {
            ctx.had_error = true;
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(topic_name(&name)))
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
            );
            continue;
        };
        let start = if name == from_topic {
            from_partition
        } else {
            0
        };
        let mut partitions = Vec::new();
        for p in t.partitions.iter().filter(|p| p.partition_id >= start) {
            if left == 0 {
                next_cursor = Some(
                    Cursor::default()
                        .with_topic_name(topic_name(&name))
                        .with_partition_index(p.partition_id),
                );
                break;
            }
            left -= 1;
            let error = if online(p.leader) {
                0
            } else {
                ResponseError::LeaderNotAvailable.code()
            };
            partitions.push(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(error)
                    .with_partition_index(p.partition_id)
                    .with_leader_id(p.leader.into())
                    .with_leader_epoch(p.leader_epoch)
                    .with_replica_nodes(p.replicas.iter().map(|b| (*b).into()).collect())
                    .with_isr_nodes(p.isr.iter().map(|b| (*b).into()).collect())
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
                    .with_offline_replicas(
                        p.replicas
                            .iter()
                            .filter(|b| !online(**b))
                            .map(|b| (*b).into())
                            .collect(),
                    ),
            );
        }
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topic_name(&name)))
                .with_topic_id(t.topic_id.parse().unwrap_or_default())
                .with_partitions(partitions)
                .with_topic_authorized_operations(super::handlers::authorized_ops(
                    ctx,
                    authorized::TOPIC,
                    ResourceType::Topic,
                    &name,
                )),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}

pub fn describe_producers(
    ctx: &mut Ctx<'_>,
    r: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let shared = ctx.shared;
    let mut topics = Vec::new();
    for t in r.topics {
        let name = t.name.0.to_string();
        let mut parts = Vec::new();
        // Kafka asks READ on the topic.
        let readable = ctx.allowed(Operation::Read, ResourceType::Topic, &name);
        for index in t.partition_indexes {
            if !readable {
                ctx.had_error = true;
                parts.push(
                    PartitionResponse::default()
                        .with_partition_index(index)
                        .with_error_code(ResponseError::TopicAuthorizationFailed.code()),
                );
                continue;
            }
            let result =
                produce::partition(shared, &name, index).and_then(|part| part.active_producers());
            parts.push(match result {
                Ok(active) => PartitionResponse::default()
                    .with_partition_index(index)
                    .with_active_producers(
                        active
                            .into_iter()
                            .map(|p| {
                                ProducerState::default()
                                    .with_producer_id(p.producer_id.into())
                                    .with_producer_epoch(i32::from(p.epoch))
                                    .with_last_sequence(p.last_sequence)
                                    .with_last_timestamp(p.last_timestamp)
                                    .with_coordinator_epoch(-1)
                                    .with_current_txn_start_offset(p.current_txn_start_offset)
                            })
                            .collect(),
                    ),
                Err(e) => PartitionResponse::default()
                    .with_partition_index(index)
                    .with_error_code(ctx.code(&e))
                    .with_error_message(Some(s(e.to_string()))),
            });
        }
        topics.push(
            TopicResponse::default()
                .with_name(topic_name(&name))
                .with_partitions(parts),
        );
    }
    DescribeProducersResponse::default().with_topics(topics)
}
