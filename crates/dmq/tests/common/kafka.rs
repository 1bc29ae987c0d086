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
