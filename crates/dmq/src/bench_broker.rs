//! Broker benchmarks, each on a private cluster of real processes (3 metadata nodes, 3
//! brokers, this executable) on free loopback ports, so that runs compare like with like:
//!
//! - `replication`: produce throughput and latency for a replication factor and acks setting
//!   (run it with `--replication-factor 3 --acks all` and `--replication-factor 1 --acks 1`);
//! - `broker-failover`: time from SIGKILL of a partition leader until an acks=all produce
//!   succeeds again, repeated, median reported.
//!
//! The load generator speaks the Kafka protocol through `dmq_broker`'s connection: one batch of
//! `--batch-records` records per Produce request, one request in flight per connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use dmq::procs::{wait_until, MetadataCluster};
use dmq_broker::kafka::client::KafkaConnection;
use dmq_types::ControllerConfig;
use hdrhistogram::Histogram;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

use crate::bench::Output;

const TOPIC: &str = "bench";

/// A private cluster of real processes in a temporary directory.
pub(crate) struct PrivateCluster {
    pub(crate) cluster: MetadataCluster,
    _dir: tempfile::TempDir,
}

pub(crate) async fn private_cluster() -> anyhow::Result<PrivateCluster> {
    let exe = std::env::current_exe().context("locating the dmq executable")?;
    let dir = tempfile::tempdir().context("temp dir")?;
    let mut cluster =
        MetadataCluster::new(&exe, dir.path(), 3, ControllerConfig::default()).with_brokers(3);
    cluster.start_all()?;
    cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .map_err(anyhow::Error::msg)?;
    cluster
        .wait_for_brokers(Duration::from_secs(30))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(PrivateCluster { cluster, _dir: dir })
}

/// Creates the benchmark topic and waits until every partition has a leader and a full ISR.
async fn create_topic(
    cluster: &MetadataCluster,
    partitions: i32,
    rf: i32,
    min_insync: i32,
) -> anyhow::Result<()> {
    create_topic_named(cluster, TOPIC, partitions, rf, min_insync).await
}

/// Creates `name` and waits until every partition has a leader and a full ISR.
pub(crate) async fn create_topic_named(
    cluster: &MetadataCluster,
    name: &str,
    partitions: i32,
    rf: i32,
    min_insync: i32,
) -> anyhow::Result<()> {
    let body = json!({"topicName": name, "numPartitions": partitions, "replicationFactor": rf,
        "config": {"min.insync.replicas": min_insync.to_string()}});
    cluster
        .post_until_created(
            // No node excluded: followers answer 503, the leader creates.
            0,
            "/api/v1/metadata/topics",
            &body,
            Duration::from_secs(10),
        )
        .await
        .map_err(anyhow::Error::msg)?;
    wait_until(
        Duration::from_secs(20),
        "partitions with full ISRs",
        || async {
            let ps = partitions_named(cluster, name).await?;
            ps.iter()
                .all(|p| p["leader"].as_i64().unwrap_or(-1) >= 0 && isr_len(p) == rf as usize)
                .then_some(())
        },
    )
    .await
    .map_err(anyhow::Error::msg)
}

async fn partitions_of(cluster: &MetadataCluster) -> Option<Vec<Value>> {
    partitions_named(cluster, TOPIC).await
}

async fn partitions_named(cluster: &MetadataCluster, name: &str) -> Option<Vec<Value>> {
    let leader = cluster.leader().await?;
    let (status, topic) = cluster
        .get(
            leader,
            &format!("/api/v1/metadata/topics/{name}?consistent=true"),
        )
        .await?;
    (status == 200).then(|| topic["partitions"].as_array().cloned())?
}

fn isr_len(p: &Value) -> usize {
    p["isr"].as_array().map_or(0, Vec::len)
}

/// One batch of `count` records of `size` bytes (no producer id: every send appends).
fn batch(count: usize, size: usize) -> Bytes {
    let mut b = dmq_log::RecordBatchBuilder::new(0);
    let value = vec![b'x'; size];
    let now = dmq_log::now_ms();
    for _ in 0..count {
        b.push(now, None, Some(&value), &[]);
    }
    Bytes::from(b.build())
}

fn produce_request(partition: i32, records: Bytes, acks: i16, timeout_ms: i32) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

/// Sends one Produce; `Ok(error code)` of the partition.
async fn send(conn: &mut KafkaConnection, req: &ProduceRequest) -> anyhow::Result<i16> {
    let resp = conn.send(req, 9, Duration::from_secs(30)).await?;
    resp.responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .map(|p| p.error_code)
        .ok_or_else(|| anyhow!("empty produce response"))
}

fn parse_acks(acks: &str) -> anyhow::Result<i16> {
    match acks {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        // acks=0 has no response to time.
        other => bail!("--acks must be 1 or all, not {other:?}"),
    }
}

/// Options of `dmq bench replication`.
pub struct ReplicationBench {
    pub records: u64,
    pub record_size: usize,
    pub batch_records: usize,
    pub partitions: i32,
    pub replication_factor: i32,
    pub acks: String,
    pub connections: usize,
    pub output: Output,
}

pub async fn bench_replication(o: ReplicationBench) -> anyhow::Result<()> {
    let acks = parse_acks(&o.acks)?;
    if o.batch_records == 0 || o.connections == 0 || o.partitions < 1 {
        bail!("--batch-records, --connections and --partitions must be positive");
    }
    let private = private_cluster().await?;
    let cluster = &private.cluster;
    let min_insync = if o.replication_factor >= 3 { 2 } else { 1 };
    create_topic(cluster, o.partitions, o.replication_factor, min_insync).await?;
    let ps = partitions_of(cluster)
        .await
        .ok_or_else(|| anyhow!("topic metadata unavailable"))?;
    let leaders: Vec<String> = ps
        .iter()
        .map(|p| cluster.kafka_addr(p["leader"].as_i64().unwrap_or(-1) as i32))
        .collect();
    let payload = batch(o.batch_records, o.record_size);
    let batches = o.records.div_ceil(o.batch_records as u64);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..o.connections {
        let partition = (c % o.partitions as usize) as i32;
        let addr = leaders[partition as usize].clone();
        let req = produce_request(partition, payload.clone(), acks, 30_000);
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut conn =
                KafkaConnection::connect(&addr, "dmq-bench", Duration::from_secs(10)).await?;
            while next.fetch_add(1, Ordering::Relaxed) < batches {
                let t0 = Instant::now();
                let code = send(&mut conn, &req).await?;
                if code != 0 {
                    bail!("produce failed with Kafka error {code}");
                }
                hist.record(t0.elapsed().as_micros().max(1) as u64)?;
            }
            Ok::<_, anyhow::Error>(hist)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        hist.add(t.await??)?;
    }
    let secs = started.elapsed().as_secs_f64();
    let records = batches * o.batch_records as u64;
    let mb = records as f64 * o.record_size as f64 / 1e6;
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let report = json!({
        "benchmark": "replication",
        "replicationFactor": o.replication_factor,
        "acks": o.acks,
        "minInsyncReplicas": min_insync,
        "partitions": o.partitions,
        "connections": o.connections,
        "recordSize": o.record_size,
        "batchRecords": o.batch_records,
        "records": records,
        "seconds": secs,
        "recordsPerSec": records as f64 / secs,
        "mbPerSec": mb / secs,
        "latencyMs": {"p50": ms(0.5), "p95": ms(0.95), "p99": ms(0.99), "p999": ms(0.999),
            "max": hist.max() as f64 / 1000.0},
    });
    match o.output {
        Output::Json => println!("{report}"),
        Output::Human => println!(
            "RF {} acks={}: {records} records of {} B in {secs:.2} s = {:.0} records/s, {:.1} MB/s; \
             produce latency p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            o.replication_factor,
            o.acks,
            o.record_size,
            records as f64 / secs,
            mb / secs,
            ms(0.5),
            ms(0.95),
            ms(0.99),
            ms(0.999),
            hist.max() as f64 / 1000.0
        ),
    }
    Ok(())
}

/// `dmq bench broker-failover`: SIGKILL the leader of an RF 3 (min.insync 2) partition while a
/// client produces with acks=all, and time until a produce succeeds again.
pub async fn bench_broker_failover(kills: usize, output: Output) -> anyhow::Result<()> {
    let mut private = private_cluster().await?;
    create_topic(&private.cluster, 1, 3, 2).await?;
    let payload = batch(1, 100);
    let mut times_ms = Vec::new();
    for k in 0..kills {
        let cluster = &mut private.cluster;
        let ps = partitions_of(cluster)
            .await
            .ok_or_else(|| anyhow!("topic metadata unavailable"))?;
        let leader = ps[0]["leader"].as_i64().unwrap_or(-1) as i32;
        // Produce is healthy before the kill.
        let mut conn = KafkaConnection::connect(
            &cluster.kafka_addr(leader),
            "dmq-bench",
            Duration::from_secs(5),
        )
        .await?;
        let code = send(&mut conn, &produce_request(0, payload.clone(), -1, 5_000)).await?;
        if code != 0 {
            bail!("produce before the kill failed with Kafka error {code}");
        }
        drop(conn);
        cluster.kill_broker(leader);
        let t0 = Instant::now();
        // The client's loop: ask for the leader, produce, retry after 20 ms on any failure.
        let took = loop {
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("produce did not recover within 30 s of killing broker {leader}");
            }
            let current = partitions_of(cluster)
                .await
                .and_then(|ps| ps[0]["leader"].as_i64())
                .unwrap_or(-1) as i32;
            if current >= 0 && current != leader {
                let attempt = async {
                    let mut c = KafkaConnection::connect(
                        &cluster.kafka_addr(current),
                        "dmq-bench",
                        Duration::from_secs(2),
                    )
                    .await?;
                    send(&mut c, &produce_request(0, payload.clone(), -1, 2_000)).await
                };
                if let Ok(0) = attempt.await {
                    break t0.elapsed().as_secs_f64() * 1000.0;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if matches!(output, Output::Human) {
            println!(
                "kill {}: broker {leader} SIGKILLed, acks=all produce succeeded after {took:.0} ms",
                k + 1
            );
        }
        times_ms.push(took);
        cluster.start_broker(leader)?;
        let c = &*cluster;
        wait_until(
            Duration::from_secs(30),
            "the broker back in the ISR",
            || async move {
                let ps = partitions_of(c).await?;
                (isr_len(&ps[0]) == 3).then_some(())
            },
        )
        .await
        .map_err(anyhow::Error::msg)?;
    }
    crate::bench::report_failover(
        "broker-failover",
        "leader broker failover (until acks=all produce succeeds)",
        kills,
        times_ms,
        output,
    );
    Ok(())
}
