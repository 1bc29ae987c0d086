//! Dead-letter topics for share groups (issue #19, beyond Kafka 4.2; cf. KIP-1191): every record
//! a share-partition archives because a member REJECTed it or it reached the delivery limit is
//! copied to the group's `share.dlq.topic`, with headers naming where it came from and why.
//!
//! The copy is produced (acks=all) to the dead-letter topic's partition `source partition mod
//! its partition count` before the share-partition state that archives the record is
//! committed, so a record is never archived without its copy. Its `dmq.dlq.*` headers:
//! `group`, `topic`, `partition`, `offset`, `delivery.count`, `reason` (`rejected` or
//! `delivery_limit`); the record's own key, value, timestamp and headers are kept.
//!
//! Exactly once while the leader lives; a leader killed between the copy and the commit of the
//! state leaves the record unarchived in the quorum, and if it is rejected again on the next
//! leader it is copied again (the copy's headers let a reader drop the duplicate).

use std::time::Duration;

use dmq_log::batch::Batches;
use dmq_log::{BatchHeader, RecordBatchBuilder};
use dmq_share::{DeadLetter, DeadLetterReason};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::kafka::client::KafkaConnection;
use crate::node::BrokerShared;
use crate::partition::Partition;

/// How long one copy may take, retries included.
const COPY_TIMEOUT: Duration = Duration::from_secs(10);

fn reason_name(r: DeadLetterReason) -> &'static str {
    match r {
        DeadLetterReason::Rejected => "rejected",
        DeadLetterReason::DeliveryLimit => "delivery_limit",
    }
}

/// The records of `letters` (offsets of `part`), each as a dead-letter copy in one batch.
fn copies(
    part: &Partition,
    group: &str,
    topic: &str,
    index: i32,
    letters: &[DeadLetter],
) -> Result<Option<Vec<u8>>, String> {
    let mut builder = RecordBatchBuilder::new(0);
    let hw = part.high_watermark();
    for letter in letters {
        let mut offset = letter.first_offset;
        while offset <= letter.last_offset {
            let chunk = part
                .read(offset, 1 << 20, hw)
                .map_err(|e| format!("reading {topic}-{index} at {offset}: {e}"))?;
            let mut next = None;
            for (_, bytes) in Batches::new(&chunk, false).flatten() {
                let Ok(h) = BatchHeader::new(bytes) else {
                    continue;
                };
                next = Some(h.last_offset() + 1);
                if h.is_control() {
                    continue;
                }
                let body = bytes
                    .get(dmq_log::batch::BATCH_HEADER_BYTES..)
                    .ok_or("short batch")?;
                let section =
                    dmq_log::codec::decompress(h.compression(), body).map_err(|e| e.to_string())?;
                for r in dmq_log::batch::records_in(h, &section).flatten() {
                    if !letter.offsets().contains(&r.offset) || r.offset < offset {
                        continue;
                    }
                    let partition = index.to_string();
                    let source_offset = r.offset.to_string();
                    let count = letter.delivery_count.to_string();
                    let mut headers: Vec<(&[u8], Option<&[u8]>)> =
                        r.headers.iter().map(|h| (h.key, h.value)).collect();
                    headers.extend([
                        (&b"dmq.dlq.group"[..], Some(group.as_bytes())),
                        (&b"dmq.dlq.topic"[..], Some(topic.as_bytes())),
                        (&b"dmq.dlq.partition"[..], Some(partition.as_bytes())),
                        (&b"dmq.dlq.offset"[..], Some(source_offset.as_bytes())),
                        (&b"dmq.dlq.delivery.count"[..], Some(count.as_bytes())),
                        (
                            &b"dmq.dlq.reason"[..],
                            Some(reason_name(letter.reason).as_bytes()),
                        ),
                    ]);
                    builder.push(r.timestamp, r.key, r.value, &headers);
                }
            }
            match next {
                Some(n) if n > offset => offset = n,
                _ => break,
            }
        }
    }
    Ok((!builder.is_empty()).then(|| builder.build()))
}

/// Copies dead letters of several share-partitions of `group` (see [`copy`]); failures are
/// logged, the records stay archived.
pub async fn copy_all(shared: &BrokerShared, letters: Vec<(crate::share::ShareKey, DeadLetter)>) {
    let mut by_key: std::collections::BTreeMap<crate::share::ShareKey, Vec<DeadLetter>> =
        Default::default();
    for (k, l) in letters {
        by_key.entry(k).or_default().push(l);
    }
    for ((group, topic, index), letters) in by_key {
        let Ok(part) = crate::produce::partition(shared, &topic, index) else {
            continue;
        };
        if let Err(e) = copy(shared, &group, &topic, index, &part, &letters).await {
            tracing::error!(group, topic, index, error = %e, "dead letters not copied");
        }
    }
}

/// Copies `letters` of `group`'s share-partition on `topic`-`index` to the group's dead-letter
/// topic, if it has one. `Err`: why the copy failed (logged by the caller; the records stay
/// archived).
pub async fn copy(
    shared: &BrokerShared,
    group: &str,
    topic: &str,
    index: i32,
    part: &Partition,
    letters: &[DeadLetter],
) -> Result<usize, String> {
    if letters.is_empty() {
        return Ok(0);
    }
    let Some(dlq) = crate::share::dead_letter_topic(shared, group) else {
        return Ok(0);
    };
    let Some(batch) = copies(part, group, topic, index, letters)? else {
        return Ok(0);
    };
    let count = letters
        .iter()
        .map(|l| (l.last_offset - l.first_offset + 1) as usize)
        .sum();
    let deadline = tokio::time::Instant::now() + COPY_TIMEOUT;
    let mut last_error = String::new();
    while tokio::time::Instant::now() < deadline {
        match produce_once(shared, &dlq, index, &batch).await {
            Ok(()) => {
                tracing::debug!(group, topic, index, dlq, count, "dead letters copied");
                return Ok(count);
            }
            Err(e) => {
                last_error = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    Err(format!("copy to {dlq}: {last_error}"))
}

async fn produce_once(
    shared: &BrokerShared,
    dlq: &str,
    source_partition: i32,
    batch: &[u8],
) -> Result<(), String> {
    let image = shared.image();
    let t = image
        .topics
        .get(dlq)
        .ok_or_else(|| format!("dead-letter topic {dlq:?} does not exist"))?;
    let n = t.partitions.len().max(1) as i32;
    let p = source_partition.rem_euclid(n);
    let leader = t
        .partitions
        .iter()
        .find(|x| x.partition_id == p)
        .map(|x| x.leader)
        .ok_or("no such partition")?;
    let b = image
        .brokers
        .get(&leader)
        .ok_or_else(|| format!("{dlq}-{p} has no leader"))?;
    let addr = format!("{}:{}", b.host, b.kafka_port);
    let mut conn = KafkaConnection::connect_as_broker(
        &addr,
        "dmq-share-dlq",
        COPY_TIMEOUT,
        shared.security.inter_broker(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(COPY_TIMEOUT.as_millis() as i32)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(dlq.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(p)
                .with_records(Some(bytes::Bytes::copy_from_slice(batch)))])]);
    let resp: ProduceResponse = conn
        .send(&req, 9, Duration::ZERO)
        .await
        .map_err(|e| e.to_string())?;
    let code = resp
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .map_or(-1, |p| p.error_code);
    if code == 0 {
        Ok(())
    } else {
        Err(format!("{dlq}-{p}: produce error {code}"))
    }
}
