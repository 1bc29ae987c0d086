//! The produce and consume paths shared by the Kafka listener and the HTTP API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;

use crate::error::{BrokerError, Result};
use crate::node::BrokerShared;
use crate::partition::{Appended, Partition, TxnMarker};

/// The hosted partition, or the error a client should see: not hosted here but known →
/// NOT_LEADER_OR_FOLLOWER (with the leader), unknown → UNKNOWN_TOPIC_OR_PARTITION.
pub fn partition(shared: &BrokerShared, topic: &str, index: i32) -> Result<Arc<Partition>> {
    if let Some(p) = shared.replicas.get(topic, index) {
        return Ok(p);
    }
    let image = shared.image();
    match image
        .topics
        .get(topic)
        .and_then(|t| t.partitions.iter().find(|p| p.partition_id == index))
    {
        Some(p) => Err(BrokerError::NotLeader {
            topic: topic.to_string(),
            partition: index,
            leader: (p.leader >= 0).then_some(p.leader),
        }),
        None => Err(BrokerError::kafka(
            ResponseError::UnknownTopicOrPartition,
            format!("this broker does not know {topic}-{index}"),
        )),
    }
}

/// Runs a log write on tokio's blocking pool and waits for it.
///
/// A `write(2)` into the page cache can wait in the kernel for a long time: under write-back
/// the file system's journal or page reclaim held appends for 30 ms–1 s here. On an async
/// worker (there are as many as cores) that wait would stall every connection, timer and
/// Raft heartbeat scheduled on it, so no log write runs there.
pub(crate) async fn off_runtime<T: Send + 'static>(
    write: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(write)
        .await
        .unwrap_or_else(|e| {
            Err(BrokerError::kafka(
                ResponseError::UnknownServerError,
                format!("the log write did not finish: {e}"),
            ))
        })
}

/// Validates `acks`, appends as leader (off the async runtime, see [`off_runtime`]) and
/// counts what was produced; the first half of [`produce`], for callers that wait for
/// several partitions together.
pub async fn append(
    shared: Arc<BrokerShared>,
    topic: String,
    index: i32,
    mut records: Vec<u8>,
    acks: i16,
) -> Result<(Arc<Partition>, Appended)> {
    off_runtime(move || append_blocking(&shared, &topic, index, &mut records, acks)).await
}

fn append_blocking(
    shared: &BrokerShared,
    topic: &str,
    index: i32,
    records: &mut [u8],
    acks: i16,
) -> Result<(Arc<Partition>, Appended)> {
    if !matches!(acks, -1..=1) {
        return Err(BrokerError::kafka(
            ResponseError::InvalidRequiredAcks,
            format!("acks must be -1 (all), 0 or 1, got {acks}"),
        ));
    }
    let part = partition(shared, topic, index)?;
    let bytes = records.len() as u64;
    // A broker silent to the controller for a session is deposed by now: its replicas refuse,
    // so clients refresh their metadata instead of retrying here until the partition heals.
    let appended = part.append_as_leader(records, acks, shared.lost_the_controller())?;
    if !appended.duplicate {
        shared
            .metrics
            .produced(topic, bytes, appended.records.max(0) as u64);
    }
    Ok((part, appended))
}

/// Appends as leader and, for `acks=all` (-1), waits until the ISR has the batch or `timeout`.
/// `acks=0` and `acks=1` return after the leader's append.
pub async fn produce(
    shared: &Arc<BrokerShared>,
    topic: &str,
    index: i32,
    records: Vec<u8>,
    acks: i16,
    timeout: Duration,
) -> Result<Appended> {
    let deadline = Instant::now() + timeout;
    let (part, appended) = append(shared.clone(), topic.to_string(), index, records, acks).await?;
    replicated(&part, appended, acks, deadline).await?;
    Ok(appended)
}

/// The second half of [`produce`]: for `acks=all` (-1), waits until the replica core decides
/// the appended batch (committed, refused, or `deadline`); other acks return at once.
pub async fn replicated(
    part: &Partition,
    appended: Appended,
    acks: i16,
    deadline: Instant,
) -> Result<()> {
    if acks == -1 {
        part.wait_replicated(appended.last_offset, appended.leader_epoch, deadline)
            .await?;
    }
    Ok(())
}

/// Writes a transaction marker at a partition this broker leads (WriteTxnMarkers) and answers
/// once it is replicated to the ISR — acks=all semantics, `min.insync.replicas` included —
/// or with the error the coordinator should see (NOT_LEADER_OR_FOLLOWER,
/// UNKNOWN_TOPIC_OR_PARTITION, NOT_ENOUGH_REPLICAS(_AFTER_APPEND), INVALID_PRODUCER_EPOCH,
/// REQUEST_TIMED_OUT after `timeout`).
pub async fn write_txn_marker(
    shared: &BrokerShared,
    topic: &str,
    index: i32,
    marker: TxnMarker,
    timeout: Duration,
) -> Result<Appended> {
    let deadline = Instant::now() + timeout;
    let part = partition(shared, topic, index)?;
    let cut_off = shared.lost_the_controller();
    let writer = part.clone();
    let appended = off_runtime(move || writer.append_txn_marker(marker, cut_off)).await?;
    replicated(&part, appended, -1, deadline).await?;
    Ok(appended)
}
