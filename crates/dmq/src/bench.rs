//! `dmq bench`: measurements that back the performance claims in issue notes.
//!
//! - `metadata`: committed metadata writes per second and commit latency (HDR histogram) with N
//!   concurrent HTTP clients creating topics, against a 3-node quorum with fsync. Without
//!   `--metadata` it starts its own quorum in a temporary directory on free loopback ports.
//! - `failover`: controller failover time — SIGKILL the leader of a 3-process quorum N times and
//!   time from the kill until another node commits a write.
//! - `replication`, `broker-failover`: see [`crate::bench_broker`].
//! - `offsets`, `rebalance`: see [`crate::bench_groups`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};
use dmq::procs::{loopback_quorum_config, wait_until, MetadataCluster};
use dmq_metadata::{MetadataNode, MetadataNodeOptions};
use dmq_types::ControllerConfig;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::RwLock;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Producer throughput and latency through dmq-client against a running cluster
    /// (kafka-producer-perf-test).
    Produce(Box<crate::bench_client::ProduceBench>),
    /// Consumer throughput against a running cluster (reads a topic from the beginning).
    Consume(crate::bench_client::ConsumeBench),
    /// Share-group consumption (KIP-932) with N members, each record acknowledged.
    Share(crate::bench_client::ShareBench),
    /// Committed metadata writes/s and commit latency with concurrent clients.
    Metadata {
        /// Metadata node URLs (comma-separated). Default: start a private 3-node quorum.
        #[arg(long, env = "DMQ_METADATA", value_delimiter = ',')]
        metadata: Vec<String>,
        /// Concurrent clients, each with one request in flight.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Total committed writes (topic creations).
        #[arg(long, default_value_t = 20_000)]
        requests: u64,
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
    /// Controller failover time: SIGKILL the Raft leader repeatedly.
    Failover {
        /// How many leaders to kill.
        #[arg(long, default_value_t = 10)]
        kills: usize,
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
    /// Produce throughput and latency for a replication factor and acks setting, on a private
    /// 3-broker cluster (compare `--replication-factor 3 --acks all` with `1 --acks 1`).
    Replication {
        #[arg(long, default_value_t = 2_000_000)]
        records: u64,
        #[arg(long, default_value_t = 1024)]
        record_size: usize,
        /// Records per Produce request (one batch).
        #[arg(long, default_value_t = 100)]
        batch_records: usize,
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        #[arg(long, default_value_t = 3)]
        replication_factor: i32,
        /// 1 or all.
        #[arg(long, default_value = "all")]
        acks: String,
        /// Connections, each with one Produce in flight (spread over the partitions).
        #[arg(long, default_value_t = 6)]
        connections: usize,
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
    /// Offset commits/s one coordinator sustains with N members committing in a loop.
    Offsets {
        #[arg(long, default_value_t = 64)]
        members: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
    /// Rebalance time: a third member joins a stable group of two, repeatedly.
    Rebalance {
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// How often the members heartbeat (Kafka clients default to 3000).
        #[arg(long, default_value_t = 500)]
        heartbeat_ms: u64,
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
    /// Partition leader failover: SIGKILL the leader broker of an RF 3 partition repeatedly and
    /// time until acks=all produce succeeds again.
    BrokerFailover {
        #[arg(long, default_value_t = 10)]
        kills: usize,
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

pub async fn run(which: BenchCommand) -> anyhow::Result<()> {
    match which {
        BenchCommand::Produce(o) => crate::bench_client::produce(*o).await,
        BenchCommand::Consume(o) => crate::bench_client::consume(o).await,
        BenchCommand::Share(o) => crate::bench_client::share(o).await,
        BenchCommand::Metadata {
            metadata,
            clients,
            requests,
            output,
        } => bench_metadata(metadata, clients, requests, output).await,
        BenchCommand::Failover { kills, output } => bench_failover(kills, output).await,
        BenchCommand::Replication {
            records,
            record_size,
            batch_records,
            partitions,
            replication_factor,
            acks,
            connections,
            output,
        } => {
            crate::bench_broker::bench_replication(crate::bench_broker::ReplicationBench {
                records,
                record_size,
                batch_records,
                partitions,
                replication_factor,
                acks,
                connections,
                output,
            })
            .await
        }
        BenchCommand::Offsets {
            members,
            seconds,
            output,
        } => crate::bench_groups::bench_offsets(members, seconds, output).await,
        BenchCommand::Rebalance {
            rounds,
            heartbeat_ms,
            output,
        } => crate::bench_groups::bench_rebalance(rounds, heartbeat_ms, output).await,
        BenchCommand::BrokerFailover { kills, output } => {
            crate::bench_broker::bench_broker_failover(kills, output).await
        }
    }
}

/// A private quorum of in-process nodes for the benchmark.
struct PrivateQuorum {
    _dir: tempfile::TempDir,
    nodes: Vec<MetadataNode>,
    urls: Vec<String>,
}

async fn private_quorum() -> anyhow::Result<PrivateQuorum> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let config = loopback_quorum_config(3, ControllerConfig::default());
    let urls = config
        .services
        .metadata_services
        .iter()
        .map(|n| n.base_url())
        .collect();
    let mut nodes = Vec::new();
    for meta in &config.services.metadata_services {
        nodes.push(
            MetadataNode::start(MetadataNodeOptions {
                node_id: meta.id,
                config: config.clone(),
                data_dir: dir.path().join(format!("meta-{}", meta.id)),
                bind_host: None,
            })
            .await?,
        );
    }
    Ok(PrivateQuorum {
        _dir: dir,
        nodes,
        urls,
    })
}

async fn find_leader(http: &reqwest::Client, urls: &[String]) -> Option<String> {
    for url in urls {
        let Ok(resp) = http
            .get(format!("{url}/api/v1/metadata/controller"))
            .send()
            .await
        else {
            continue;
        };
        if let Ok(v) = resp.json::<Value>().await {
            if let Some(u) = v["controllerUrl"].as_str() {
                return Some(u.to_string());
            }
        }
    }
    None
}

/// POSTs `body` to the leader, following `X-Controller-Leader` redirects; returns the status.
async fn post_to_leader(
    http: &reqwest::Client,
    leader: &RwLock<String>,
    path: &str,
    body: &Value,
) -> anyhow::Result<u16> {
    // Up to ~5 s of redirects and elections before giving up on one write.
    for _ in 0..100 {
        let url = leader.read().await.clone();
        let resp = http.post(format!("{url}{path}")).json(body).send().await?;
        let status = resp.status().as_u16();
        if status == 503 {
            if let Some(next) = resp
                .headers()
                .get("X-Controller-Leader")
                .and_then(|v| v.to_str().ok())
            {
                *leader.write().await = next.to_string();
                continue;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        return Ok(status);
    }
    bail!("no leader accepted the write within ~5 s")
}

async fn bench_metadata(
    urls: Vec<String>,
    clients: usize,
    requests: u64,
    output: Output,
) -> anyhow::Result<()> {
    let private = if urls.is_empty() {
        Some(private_quorum().await?)
    } else {
        None
    };
    let urls = private.as_ref().map_or(urls, |p| p.urls.clone());
    let http = dmq_types::https::client_builder(None)?
        .pool_max_idle_per_host(clients.max(1))
        .tcp_nodelay(true)
        .build()?;
    let leader = wait_until(Duration::from_secs(10), "a controller", || {
        find_leader(&http, &urls)
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let leader = Arc::new(RwLock::new(leader));

    // Topic placement needs ONLINE brokers: register three benchmark brokers and keep them alive.
    let run_id = dmq_metadata::node::now_ms();
    let broker_ids: Vec<i32> = (0..3).map(|i| 1_000_000 + i).collect();
    for id in &broker_ids {
        // Ports nobody listens on, one pair per broker: an address held by an ONLINE broker
        // is refused (DUPLICATE_BROKER_REGISTRATION).
        let port = 40_000 + 2 * (id - 1_000_000);
        let body =
            json!({"brokerId": id, "host": "127.0.0.1", "port": port, "kafkaPort": port + 1});
        let status = post_to_leader(&http, &leader, "/api/v1/metadata/brokers", &body).await?;
        if status >= 300 {
            bail!("registering benchmark broker {id} failed with HTTP {status}");
        }
    }
    let keepalive = {
        let (http, leader, ids) = (http.clone(), leader.clone(), broker_ids.clone());
        tokio::spawn(async move {
            loop {
                for id in &ids {
                    let path = format!("/api/v1/metadata/heartbeat/{id}");
                    let _ = post_to_leader(&http, &leader, &path, &json!({})).await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (http, leader, next) = (http.clone(), leader.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).map_err(|e| anyhow::anyhow!("{e}"))?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return Ok::<_, anyhow::Error>(hist);
                }
                let body = json!({"topicName": format!("bench-{run_id}-{i}"), "numPartitions": 1, "replicationFactor": 1});
                let t0 = Instant::now();
                let status = post_to_leader(&http, &leader, "/api/v1/metadata/topics", &body).await?;
                if status != 201 {
                    bail!("topic create answered HTTP {status}");
                }
                hist.record(t0.elapsed().as_micros() as u64)?;
            }
        }));
    }
    let mut hist = Histogram::<u64>::new(3).map_err(|e| anyhow::anyhow!("{e}"))?;
    for t in tasks {
        hist.add(t.await??)?;
    }
    let elapsed = started.elapsed();
    keepalive.abort();
    let rate = requests as f64 / elapsed.as_secs_f64();
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let report = json!({
        "benchmark": "metadata-commits",
        "clients": clients,
        "requests": requests,
        "elapsedSeconds": elapsed.as_secs_f64(),
        "commitsPerSecond": rate,
        "latencyMs": {"p50": ms(0.5), "p95": ms(0.95), "p99": ms(0.99), "p999": ms(0.999), "max": hist.max() as f64 / 1000.0},
    });
    match output {
        Output::Json => println!("{report}"),
        Output::Human => println!(
            "{requests} committed writes with {clients} clients in {:.2}s: {rate:.0} commits/s; latency ms p50 {:.2} p95 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
            elapsed.as_secs_f64(),
            ms(0.5),
            ms(0.95),
            ms(0.99),
            ms(0.999),
            hist.max() as f64 / 1000.0
        ),
    }
    if let Some(p) = private {
        for n in p.nodes {
            n.shutdown().await;
        }
    }
    Ok(())
}

/// Prints a failover benchmark's result: median, min and max of `times_ms` over `kills`.
pub(crate) fn report_failover(
    benchmark: &str,
    what: &str,
    kills: usize,
    mut times_ms: Vec<f64>,
    output: Output,
) {
    times_ms.sort_by(f64::total_cmp);
    let median = median(&times_ms);
    let report = json!({
        "benchmark": benchmark,
        "kills": kills,
        "medianMs": median,
        "minMs": times_ms.first(),
        "maxMs": times_ms.last(),
        "allMs": times_ms,
    });
    match output {
        Output::Json => println!("{report}"),
        Output::Human => println!(
            "{what} over {kills} SIGKILLs: median {median:.0} ms, min {:.0} ms, max {:.0} ms",
            times_ms.first().copied().unwrap_or(0.0),
            times_ms.last().copied().unwrap_or(0.0)
        ),
    }
}

/// The median of sorted `values` (0 when empty).
pub(crate) fn median(values: &[f64]) -> f64 {
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

async fn bench_failover(kills: usize, output: Output) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the dmq executable")?;
    let dir = tempfile::tempdir().context("temp dir")?;
    let mut cluster = MetadataCluster::new(&exe, dir.path(), 3, ControllerConfig::default());
    cluster.start_all()?;
    let mut times_ms = Vec::new();
    for k in 0..kills {
        let leader = cluster
            .wait_for_leader(Duration::from_secs(15))
            .await
            .map_err(anyhow::Error::msg)?;
        // Every node caught up before the kill, so any of them may win the election.
        let target = cluster
            .status(leader)
            .await
            .map_or(0, |s| s["lastApplied"].as_u64().unwrap_or(0));
        for id in cluster.ids() {
            let c = &cluster;
            wait_until(
                Duration::from_secs(15),
                "followers to catch up",
                || async move {
                    let s = c.status(id).await?;
                    (s["lastApplied"].as_u64()? >= target).then_some(())
                },
            )
            .await
            .map_err(anyhow::Error::msg)?;
        }
        cluster.kill(leader);
        let t0 = Instant::now();
        // A fresh address per round: the previous round's broker is still ONLINE, and an
        // address it holds would be refused until its session ends (the measure would include
        // that wait).
        let port = 50_000 + 2 * (k % 7_000) as i64;
        let body = json!({"brokerId": 7_000_000 + k as i64, "host": "127.0.0.1", "port": port, "kafkaPort": port + 1});
        let new_leader = cluster
            .post_until_created(
                leader,
                "/api/v1/metadata/brokers",
                &body,
                Duration::from_secs(20),
            )
            .await
            .map_err(anyhow::Error::msg)?;
        let took = t0.elapsed().as_secs_f64() * 1000.0;
        if matches!(output, Output::Human) {
            println!(
                "kill {}: leader {leader} killed, node {new_leader} committed after {took:.0} ms",
                k + 1
            );
        }
        times_ms.push(took);
        cluster.start(leader)?;
    }
    report_failover(
        "controller-failover",
        "controller failover",
        kills,
        times_ms,
        output,
    );
    Ok(())
}
