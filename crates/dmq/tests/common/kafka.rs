//! A few typed Kafka requests over `dmq_broker`'s protocol connection, for tests that need to
//! see exact error codes and offsets.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use dmq_broker::kafka::client::KafkaConnection;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{FetchRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;

pub async fn connect(addr: &str) -> KafkaConnection {
    KafkaConnection::connect(addr, "dmq-test", Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

pub fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// A RecordBatch v2 of `records` (key, value), optionally idempotent.
pub fn batch(records: &[(String, String)], producer: Option<(i64, i16, i32)>) -> Vec<u8> {
    let mut b = dmq_log::RecordBatchBuilder::new(0);
    if let Some((pid, epoch, seq)) = producer {
        b = b.producer(pid, epoch, seq);
    }
    let now = dmq_log::now_ms();
    for (k, v) in records {
        b.push(now, Some(k.as_bytes()), Some(v.as_bytes()), &[]);
    }
    b.build()
}

/// Produce v9 of one batch to one partition; the partition's answer.
pub async fn produce(
    conn: &mut KafkaConnection,
    topic: &str,
    partition: i32,
    records: Vec<u8>,
    acks: i16,
) -> PartitionProduceResponse {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(15_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::from(records)))])]);
    let resp = conn
        .send(&req, 9, Duration::from_secs(20))
        .await
        .expect("produce response");
    resp.responses
        .into_iter()
        .next()
        .and_then(|t| t.partition_responses.into_iter().next())
        .expect("one partition in the produce response")
}

/// One consumer Fetch v12: `(error code, high watermark, records as (offset, key, value))`.
pub async fn fetch_once(
    conn: &mut KafkaConnection,
    topic: &str,
    partition: i32,
    offset: i64,
) -> (i16, i64, Vec<(i64, String, String)>) {
    let req = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(200)
        .with_min_bytes(1)
        .with_max_bytes(4 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(-1)
                .with_last_fetched_epoch(-1)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let resp = conn
        .send(&req, 12, Duration::from_secs(5))
        .await
        .expect("fetch response");
    let p = resp
        .responses
        .into_iter()
        .next()
        .and_then(|t| t.partitions.into_iter().next())
        .expect("one partition in the fetch response");
    let mut out = Vec::new();
    if let Some(mut records) = p.records {
        let sets = RecordBatchDecoder::decode_all(&mut records).expect("stored batches decode");
        for set in sets {
            for r in set.records {
                let text =
                    |b: Option<Bytes>| String::from_utf8_lossy(&b.unwrap_or_default()).to_string();
                out.push((r.offset, text(r.key), text(r.value)));
            }
        }
    }
    (p.error_code, p.high_watermark, out)
}

/// Every record of a partition below its high watermark, read from `offset` 0.
pub async fn fetch_all(
    conn: &mut KafkaConnection,
    topic: &str,
    partition: i32,
) -> Vec<(i64, String, String)> {
    let mut all: Vec<(i64, String, String)> = Vec::new();
    let mut next = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (code, hw, records) = fetch_once(conn, topic, partition, next).await;
        assert_eq!(code, 0, "fetch {topic}-{partition} at {next}");
        for r in records {
            if r.0 >= next {
                next = r.0 + 1;
                all.push(r);
            }
        }
        if next >= hw {
            return all;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fetching {topic}-{partition} stalled at {next} < {hw}"
        );
    }
}

/// A transactional RecordBatch v2 of `records` for producer `(pid, epoch)` from sequence
/// `seq`: [`batch`] with the transactional attribute bit (0x10) set and the CRC, which covers
/// the attributes, computed again.
pub fn txn_batch(records: &[(String, String)], pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
    let mut bytes = batch(records, Some((pid, epoch, seq)));
    let attributes = i16::from_be_bytes([bytes[21], bytes[22]]) | 0x10;
    bytes[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = dmq_log::batch::compute_crc(&bytes);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// WriteTxnMarkers v1 of one marker for `topic`-`partition`; the partition's error code.
pub async fn write_txn_marker(
    conn: &mut KafkaConnection,
    topic: &str,
    partition: i32,
    (pid, epoch): (i64, i16),
    commit: bool,
    coordinator_epoch: i32,
) -> i16 {
    use kafka_protocol::messages::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic,
    };
    let req = kafka_protocol::messages::WriteTxnMarkersRequest::default().with_markers(vec![
        WritableTxnMarker::default()
            .with_producer_id(pid.into())
            .with_producer_epoch(epoch)
            .with_transaction_result(commit)
            .with_coordinator_epoch(coordinator_epoch)
            .with_topics(vec![WritableTxnMarkerTopic::default()
                .with_name(name(topic))
                .with_partition_indexes(vec![partition])]),
    ]);
    let resp = conn
        .send(&req, 1, Duration::from_secs(40))
        .await
        .expect("write txn markers response");
    let m = resp.markers.into_iter().next().expect("one marker result");
    assert_eq!(m.producer_id.0, pid);
    let p = m
        .topics
        .into_iter()
        .next()
        .and_then(|t| t.partitions.into_iter().next())
        .expect("one partition in the marker result");
    assert_eq!(p.partition_index, partition);
    p.error_code
}

/// What a Fetch v12 answer says about one partition.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    /// `(producer id, first offset)`; `None` when the answer carries none (READ_UNCOMMITTED).
    pub aborted: Option<Vec<(i64, i64)>>,
    /// Data records as `(offset, key, value)`; control records are left out.
    pub records: Vec<(i64, String, String)>,
    /// Markers in the answer: `(offset, producer id)`.
    pub markers: Vec<(i64, i64)>,
}

/// One consumer Fetch v12 at `offset` with `isolation_level` (0 READ_UNCOMMITTED,
/// 1 READ_COMMITTED), answered at once (max wait 0).
pub async fn fetch_isolated(
    conn: &mut KafkaConnection,
    topic: &str,
    partition: i32,
    offset: i64,
    isolation_level: i8,
) -> Fetched {
    let req = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(4 << 20)
        .with_isolation_level(isolation_level)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(-1)
                .with_last_fetched_epoch(-1)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let resp = conn
        .send(&req, 12, Duration::from_secs(5))
        .await
        .expect("fetch response");
    let p = resp
        .responses
        .into_iter()
        .next()
        .and_then(|t| t.partitions.into_iter().next())
        .expect("one partition in the fetch response");
    let mut records = Vec::new();
    let mut markers = Vec::new();
    if let Some(mut bytes) = p.records {
        let sets = RecordBatchDecoder::decode_all(&mut bytes).expect("stored batches decode");
        for set in sets {
            for r in set.records {
                if r.control {
                    markers.push((r.offset, r.producer_id));
                    continue;
                }
                let text =
                    |b: Option<Bytes>| String::from_utf8_lossy(&b.unwrap_or_default()).to_string();
                records.push((r.offset, text(r.key), text(r.value)));
            }
        }
    }
    Fetched {
        error_code: p.error_code,
        high_watermark: p.high_watermark,
        last_stable_offset: p.last_stable_offset,
        aborted: p.aborted_transactions.map(|list| {
            list.into_iter()
                .map(|a| (a.producer_id.0, a.first_offset))
                .collect()
        }),
        records,
        markers,
    }
}

/// ListOffsets v6 LATEST (-1) of one partition with `isolation_level`: `(error code, offset)`.
pub async fn list_latest(
    conn: &mut KafkaConnection,
    topic: &str,
    partition: i32,
    isolation_level: i8,
) -> (i16, i64) {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let req = kafka_protocol::messages::ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_isolation_level(isolation_level)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_current_leader_epoch(-1)
                .with_timestamp(-1)])]);
    let resp = conn
        .send(&req, 6, Duration::from_secs(5))
        .await
        .expect("list offsets response");
    let p = resp
        .topics
        .into_iter()
        .next()
        .and_then(|t| t.partitions.into_iter().next())
        .expect("one partition in the list offsets response");
    (p.error_code, p.offset)
}
