//! The Kafka transaction APIs (KIP-98, KIP-447): InitProducerId with a transactional id,
//! AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn, DescribeTransactions and
//! ListTransactions. The coordinator logic is [`crate::txn`]; the state is in the quorum.

use std::time::Instant;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTransaction;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

use super::handlers::{s, topic_name, Ctx};
use dmq_auth::{Operation, ResourceType};

use crate::meta_client::TxnRefused;
use crate::txn::{complete, coordinates, now_ms};
use dmq_types::txn::{Transaction, TxnError, TxnOffset, TxnOp, TxnPartition, TxnStatus};

/// How often InitProducerId and AddPartitionsToTxn finish a decision in their way and retry
/// before answering CONCURRENT_TRANSACTIONS (the client retries then).
const SETTLE_ATTEMPTS: usize = 3;

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// NOT_COORDINATOR unless this broker coordinates `id` (COORDINATOR_NOT_AVAILABLE with no
/// ONLINE broker).
fn coordinator_error(ctx: &mut Ctx<'_>, id: &str, op: Operation) -> Option<i16> {
    if id.is_empty() {
        ctx.had_error = true;
        return Some(code(ResponseError::InvalidRequest));
    }
    if !ctx.allowed(op, ResourceType::TransactionalId, id) {
        ctx.had_error = true;
        return Some(code(ResponseError::TransactionalIdAuthorizationFailed));
    }
    if coordinates(ctx.shared, id) {
        return None;
    }
    ctx.had_error = true;
    let online = crate::group::coordinator_for(&ctx.shared.image(), id).is_some();
    Some(code(if online {
        ResponseError::NotCoordinator
    } else {
        ResponseError::CoordinatorNotAvailable
    }))
}

/// Proposes `op`; when a decision of the same id is still being completed, completes it here
/// and tries again (so the client rarely sees CONCURRENT_TRANSACTIONS). Kafka's error code on
/// refusal; COORDINATOR_NOT_AVAILABLE when the quorum cannot be reached.
async fn propose(ctx: &mut Ctx<'_>, op: &TxnOp) -> Result<Transaction, i16> {
    let id = op.transactional_id().to_string();
    for attempt in 0..SETTLE_ATTEMPTS {
        match ctx.shared.meta.txn(op).await {
            Ok(Ok(t)) => return Ok(t),
            Ok(Err(TxnRefused {
                error: TxnError::ConcurrentTransactions,
                ..
            })) if attempt + 1 < SETTLE_ATTEMPTS => {
                if let Ok(Some(t)) = ctx.shared.meta.transaction(&id).await {
                    if t.status.is_prepared() {
                        complete(ctx.shared, &t).await;
                    }
                }
            }
            Ok(Err(refused)) => {
                tracing::debug!(transactional_id = %id, "refused: {}", refused.message);
                ctx.had_error = true;
                return Err(refused.error.code());
            }
            Err(e) => {
                tracing::warn!(transactional_id = %id, "transaction change not committed: {e}");
                ctx.had_error = true;
                return Err(code(ResponseError::CoordinatorNotAvailable));
            }
        }
    }
    ctx.had_error = true;
    Err(TxnError::ConcurrentTransactions.code())
}

/// InitProducerId with a transactional id: a producer id and a fresh epoch, fencing every
/// earlier producer with the same id.
pub async fn init_producer_id(
    ctx: &mut Ctx<'_>,
    r: &InitProducerIdRequest,
    transactional_id: &str,
) -> InitProducerIdResponse {
    let fail = |e: i16| {
        InitProducerIdResponse::default()
            .with_error_code(e)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if let Some(e) = coordinator_error(ctx, transactional_id, Operation::Write) {
        return fail(e);
    }
    let op = TxnOp::Init {
        transactional_id: transactional_id.to_string(),
        timeout_ms: r.transaction_timeout_ms,
        producer_id: r.producer_id.0,
        producer_epoch: r.producer_epoch,
        now_ms: now_ms(),
    };
    match propose(ctx, &op).await {
        Ok(t) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(t.producer_id))
            .with_producer_epoch(t.producer_epoch),
        Err(e) => fail(e),
    }
}

fn partitions_of(topics: &[AddPartitionsToTxnTopic]) -> Vec<TxnPartition> {
    topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| TxnPartition {
                topic: t.name.0.to_string(),
                partition: *p,
            })
        })
        .collect()
}

/// Per-topic results: `unknown` partitions get UNKNOWN_TOPIC_OR_PARTITION, the others
/// `error` (OPERATION_NOT_ATTEMPTED when only some were unknown, as Kafka answers).
fn topic_results(
    topics: &[AddPartitionsToTxnTopic],
    error: impl Fn(&str, i32) -> i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(error(t.name.0.as_str(), *p))
                        })
                        .collect(),
                )
        })
        .collect()
}

/// One transaction's AddPartitionsToTxn: its per-topic results.
async fn add_partitions(
    ctx: &mut Ctx<'_>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    verify_only: bool,
    topics: &[AddPartitionsToTxnTopic],
) -> Vec<AddPartitionsToTxnTopicResult> {
    if let Some(e) = coordinator_error(ctx, transactional_id, Operation::Write) {
        return topic_results(topics, |_, _| e);
    }
    let image = ctx.shared.image();
    let exists = |topic: &str, p: i32| {
        image
            .topics
            .get(topic)
            .is_some_and(|t| p >= 0 && p < t.num_partitions)
    };
    let partitions = partitions_of(topics);
    if partitions.iter().any(|p| !exists(&p.topic, p.partition)) {
        ctx.had_error = true;
        return topic_results(topics, |t, p| {
            if exists(t, p) {
                code(ResponseError::OperationNotAttempted)
            } else {
                code(ResponseError::UnknownTopicOrPartition)
            }
        });
    }
    if verify_only {
        // KIP-890 (a partition leader asks): is each partition in the ongoing transaction?
        let t = match ctx.shared.meta.transaction(transactional_id).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                ctx.had_error = true;
                return topic_results(topics, |_, _| code(ResponseError::InvalidProducerIdMapping));
            }
            Err(_) => {
                ctx.had_error = true;
                return topic_results(topics, |_, _| code(ResponseError::CoordinatorNotAvailable));
            }
        };
        let current = t.producer_id == producer_id && t.producer_epoch == producer_epoch;
        return topic_results(topics, |topic, p| {
            let added = t.status == TxnStatus::Ongoing
                && t.partitions
                    .iter()
                    .any(|x| x.topic == topic && x.partition == p);
            match (current, added) {
                (false, _) => code(ResponseError::InvalidProducerEpoch),
                (true, false) => code(ResponseError::InvalidTxnState),
                (true, true) => 0,
            }
        });
    }
    let op = TxnOp::AddPartitions {
        transactional_id: transactional_id.to_string(),
        producer_id,
        producer_epoch,
        partitions,
        now_ms: now_ms(),
    };
    let e = match propose(ctx, &op).await {
        Ok(_) => 0,
        Err(e) => e,
    };
    topic_results(topics, |_, _| e)
}

/// AddPartitionsToTxn: v0–v3 (one transaction, from producers) and v4+ (batched, from
/// brokers, with `verify_only`).
pub async fn add_partitions_to_txn(
    ctx: &mut Ctx<'_>,
    r: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if ctx.version <= 3 {
        let results = add_partitions(
            ctx,
            r.v3_and_below_transactional_id.0.as_str(),
            r.v3_and_below_producer_id.0,
            r.v3_and_below_producer_epoch,
            false,
            &r.v3_and_below_topics,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    let mut out = Vec::new();
    for t in &r.transactions {
        let results = add_partitions(
            ctx,
            t.transactional_id.0.as_str(),
            t.producer_id.0,
            t.producer_epoch,
            t.verify_only,
            &t.topics,
        )
        .await;
        out.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(out)
}

/// AddOffsetsToTxn: the group's offsets will be committed with the transaction.
pub async fn add_offsets_to_txn(
    ctx: &mut Ctx<'_>,
    r: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let id = r.transactional_id.0.to_string();
    if let Some(e) = coordinator_error(ctx, &id, Operation::Write) {
        return AddOffsetsToTxnResponse::default().with_error_code(e);
    }
    let group = r.group_id.0.to_string();
    if group.is_empty() {
        ctx.had_error = true;
        return AddOffsetsToTxnResponse::default()
            .with_error_code(code(ResponseError::InvalidGroupId));
    }
    let op = TxnOp::AddOffsets {
        transactional_id: id,
        producer_id: r.producer_id.0,
        producer_epoch: r.producer_epoch,
        group,
        now_ms: now_ms(),
    };
    let e = match propose(ctx, &op).await {
        Ok(_) => 0,
        Err(e) => e,
    };
    AddOffsetsToTxnResponse::default().with_error_code(e)
}

/// TxnOffsetCommit (sent to the group's coordinator): the offsets are held in the
/// transaction and become the group's offsets with its commit. From v3 (KIP-447) the member's
/// generation is checked as for OffsetCommit, so a zombie consumer cannot commit.
pub async fn txn_offset_commit(
    ctx: &mut Ctx<'_>,
    r: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let group = r.group_id.0.to_string();
    let mut group_error = super::groups::coordinator_error(ctx, &group, Operation::Read);
    if group_error.is_none() && ctx.version >= 3 && r.generation_id >= 0 {
        let e = ctx.shared.groups.validate_commit(
            &group,
            r.generation_id,
            r.member_id.as_str(),
            r.group_instance_id.as_deref(),
            Instant::now(),
        );
        if e != 0 {
            ctx.had_error = true;
            group_error = Some(e);
        }
    }
    let image = ctx.shared.image();
    let mut offsets = Vec::new();
    let mut unknown = Vec::new();
    for t in &r.topics {
        let name = t.name.0.to_string();
        let topic = image.topics.get(&name);
        for p in &t.partitions {
            if !topic
                .is_some_and(|x| p.partition_index >= 0 && p.partition_index < x.num_partitions)
            {
                unknown.push((name.clone(), p.partition_index));
                continue;
            }
            if p.committed_metadata
                .as_ref()
                .is_some_and(|m| m.len() > 4096)
            {
                group_error = group_error.or(Some(code(ResponseError::OffsetMetadataTooLarge)));
            }
            offsets.push(TxnOffset {
                group: group.clone(),
                topic: name.clone(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            });
        }
    }
    let e = match group_error {
        Some(e) => e,
        None if offsets.is_empty() => 0,
        None => {
            let op = TxnOp::CommitOffsets {
                transactional_id: r.transactional_id.0.to_string(),
                producer_id: r.producer_id.0,
                producer_epoch: r.producer_epoch,
                offsets,
                now_ms: now_ms(),
            };
            match ctx.shared.meta.txn(&op).await {
                Ok(Ok(_)) => 0,
                Ok(Err(refused)) => {
                    ctx.had_error = true;
                    // Kafka answers a fenced producer's offsets with INVALID_PRODUCER_EPOCH.
                    match refused.error {
                        TxnError::ProducerFenced => code(ResponseError::InvalidProducerEpoch),
                        other => other.code(),
                    }
                }
                Err(_) => {
                    ctx.had_error = true;
                    code(ResponseError::CoordinatorNotAvailable)
                }
            }
        }
    };
    if !unknown.is_empty() {
        ctx.had_error = true;
    }
    let topics = r
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            let is_unknown = unknown
                                .iter()
                                .any(|(n, i)| *n == name && *i == p.partition_index);
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(if is_unknown {
                                    code(ResponseError::UnknownTopicOrPartition)
                                } else {
                                    e
                                })
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// EndTxn: decides commit or abort, then writes the markers before answering, so the
/// producer's next transaction starts without CONCURRENT_TRANSACTIONS retries and a
/// read_committed consumer sees the commit once the producer has its answer.
pub async fn end_txn(ctx: &mut Ctx<'_>, r: EndTxnRequest) -> EndTxnResponse {
    let id = r.transactional_id.0.to_string();
    if let Some(e) = coordinator_error(ctx, &id, Operation::Write) {
        return EndTxnResponse::default().with_error_code(e);
    }
    let op = TxnOp::End {
        transactional_id: id,
        producer_id: r.producer_id.0,
        producer_epoch: r.producer_epoch,
        commit: r.committed,
        now_ms: now_ms(),
    };
    match propose(ctx, &op).await {
        Ok(t) => {
            // The decision is durable: the answer is success even if the markers are left to
            // the driver.
            if t.status.is_prepared() {
                complete(ctx.shared, &t).await;
            }
            EndTxnResponse::default()
                .with_producer_id(ProducerId(t.producer_id))
                .with_producer_epoch(t.producer_epoch)
        }
        Err(e) => EndTxnResponse::default().with_error_code(e),
    }
}

/// `t` as DescribeTransactions shows it, with only the partitions of topics `describable`
/// (Kafka leaves out the topics the principal may not describe).
fn described(t: &Transaction, describable: impl Fn(&str) -> bool) -> TransactionState {
    let mut topics: Vec<TopicData> = Vec::new();
    for p in t.partitions.iter().filter(|p| describable(&p.topic)) {
        match topics.iter_mut().find(|x| x.topic.0.as_str() == p.topic) {
            Some(x) => x.partitions.push(p.partition),
            None => topics.push(
                TopicData::default()
                    .with_topic(topic_name(&p.topic))
                    .with_partitions(vec![p.partition]),
            ),
        }
    }
    TransactionState::default()
        .with_transactional_id(TransactionalId(s(t.transactional_id.clone())))
        .with_transaction_state(s(t.status.kafka_name()))
        .with_transaction_timeout_ms(t.timeout_ms)
        .with_transaction_start_time_ms(if t.start_ms == 0 {
            -1
        } else {
            t.start_ms as i64
        })
        .with_producer_id(ProducerId(t.producer_id))
        .with_producer_epoch(t.producer_epoch)
        .with_topics(topics)
}

/// DescribeTransactions (sent to each id's coordinator, as kafka-transactions does).
pub async fn describe_transactions(
    ctx: &mut Ctx<'_>,
    r: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut states = Vec::new();
    for id in &r.transactional_ids {
        let name = id.0.to_string();
        let blank = TransactionState::default()
            .with_transactional_id(id.clone())
            .with_transaction_state(s(""))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_start_time_ms(-1);
        if let Some(e) = coordinator_error(ctx, &name, Operation::Describe) {
            states.push(blank.with_error_code(e));
            continue;
        }
        match ctx.shared.meta.transaction(&name).await {
            Ok(Some(t)) => states.push(described(&t, |topic| {
                ctx.allowed(Operation::Describe, ResourceType::Topic, topic)
            })),
            Ok(None) => {
                ctx.had_error = true;
                states.push(blank.with_error_code(TxnError::TransactionalIdNotFound.code()));
            }
            Err(_) => {
                ctx.had_error = true;
                states.push(blank.with_error_code(code(ResponseError::CoordinatorNotAvailable)));
            }
        }
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

/// ListTransactions: the transactional ids this broker coordinates (kafka-transactions asks
/// every broker and merges), filtered by state, producer id and (v1) minimum duration.
pub async fn list_transactions(
    ctx: &mut Ctx<'_>,
    r: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let known = [
        TxnStatus::Empty,
        TxnStatus::Ongoing,
        TxnStatus::PrepareCommit,
        TxnStatus::PrepareAbort,
        TxnStatus::CompleteCommit,
        TxnStatus::CompleteAbort,
    ];
    let unknown_filters: Vec<_> = r
        .state_filters
        .iter()
        .filter(|f| !known.iter().any(|k| k.kafka_name() == f.as_str()))
        .cloned()
        .collect();
    let txns = match ctx.shared.meta.transactions().await {
        Ok(t) => t,
        Err(_) => {
            ctx.had_error = true;
            return ListTransactionsResponse::default()
                .with_error_code(code(ResponseError::CoordinatorNotAvailable));
        }
    };
    let now = now_ms();
    let states = txns
        .iter()
        .filter(|t| coordinates(ctx.shared, &t.transactional_id))
        // Kafka lists only the transactional ids the principal may describe.
        .filter(|t| {
            ctx.allowed(
                Operation::Describe,
                ResourceType::TransactionalId,
                &t.transactional_id,
            )
        })
        .filter(|t| {
            r.state_filters.is_empty()
                || r.state_filters
                    .iter()
                    .any(|f| f.as_str() == t.status.kafka_name())
        })
        .filter(|t| {
            r.producer_id_filters.is_empty()
                || r.producer_id_filters.iter().any(|p| p.0 == t.producer_id)
        })
        .filter(|t| {
            r.duration_filter < 0
                || (t.status == TxnStatus::Ongoing
                    && now.saturating_sub(t.start_ms) as i64 >= r.duration_filter)
        })
        .map(|t| {
            ListedTransaction::default()
                .with_transactional_id(TransactionalId(s(t.transactional_id.clone())))
                .with_producer_id(ProducerId(t.producer_id))
                .with_transaction_state(s(t.status.kafka_name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown_filters)
        .with_transaction_states(states)
}
