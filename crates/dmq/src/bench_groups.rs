//! Consumer-group benchmarks on a private cluster (3 metadata nodes, 3 brokers), speaking the
//! group protocol directly so that the numbers are the coordinator's, not a client's:
//!
//! - `offsets`: N members of one group each commit offsets in a loop (one OffsetCommit in
//!   flight per member) for `--seconds`; commits/s and commit latency.
//! - `rebalance`: two members are stable, a third joins; time until all three have synced the
//!   new generation (members heartbeat every `--heartbeat-ms`, as clients do), repeated.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use dmq_broker::kafka::client::KafkaConnection;
use hdrhistogram::Histogram;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    OffsetCommitRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use crate::bench::Output;
use crate::bench_broker::{create_topic_named, private_cluster};

const GROUP_TOPIC: &str = "bench-groups";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A group member over its own connection to the coordinator.
struct Member {
    conn: KafkaConnection,
    group: String,
    id: String,
    generation: i32,
}

impl Member {
    async fn connect(addr: &str, group: &str) -> anyhow::Result<Member> {
        Ok(Member {
            conn: KafkaConnection::connect(addr, "dmq-bench", Duration::from_secs(10)).await?,
            group: group.to_string(),
            id: String::new(),
            generation: -1,
        })
    }

    /// JoinGroup v5 (with the MEMBER_ID_REQUIRED round) and SyncGroup; the leader assigns
    /// nothing in particular (the benchmark needs generations, not partitions).
    async fn join_and_sync(&mut self) -> anyhow::Result<()> {
        loop {
            let req = JoinGroupRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_session_timeout_ms(30_000)
                .with_rebalance_timeout_ms(30_000)
                .with_member_id(s(&self.id))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(Bytes::from_static(b"bench"))]);
            let resp = self.conn.send(&req, 5, Duration::from_secs(60)).await?;
            self.id = resp.member_id.to_string();
            if resp.error_code == ResponseError::MemberIdRequired.code() {
                continue;
            }
            if resp.error_code != 0 {
                bail!("JoinGroup failed with Kafka error {}", resp.error_code);
            }
            self.generation = resp.generation_id;
            let assignments = resp
                .members
                .iter()
                .map(|m| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(m.member_id.clone())
                        .with_assignment(Bytes::from_static(b"a"))
                })
                .collect();
            let req = SyncGroupRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_generation_id(self.generation)
                .with_member_id(s(&self.id))
                .with_assignments(assignments);
            let resp = self.conn.send(&req, 3, Duration::from_secs(60)).await?;
            if resp.error_code == ResponseError::RebalanceInProgress.code() {
                continue;
            }
            if resp.error_code != 0 {
                bail!("SyncGroup failed with Kafka error {}", resp.error_code);
            }
            return Ok(());
        }
    }

    async fn heartbeat(&mut self) -> anyhow::Result<i16> {
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_generation_id(self.generation)
            .with_member_id(s(&self.id));
        Ok(self
            .conn
            .send(&req, 3, Duration::from_secs(10))
            .await?
            .error_code)
    }

    async fn commit(&mut self, partition: i32, offset: i64) -> anyhow::Result<i16> {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_generation_id_or_member_epoch(self.generation)
            .with_member_id(s(&self.id))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(GROUP_TOPIC)))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(partition)
                    .with_committed_offset(offset)])]);
        let resp = self.conn.send(&req, 8, Duration::from_secs(10)).await?;
        resp.topics
            .first()
            .and_then(|t| t.partitions.first())
            .map(|p| p.error_code)
            .ok_or_else(|| anyhow!("empty OffsetCommit response"))
    }

    async fn leave(&mut self) -> anyhow::Result<()> {
        let req = LeaveGroupRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_member_id(s(&self.id));
        self.conn.send(&req, 2, Duration::from_secs(10)).await?;
        Ok(())
    }
}

/// The coordinator's Kafka address for `group`.
async fn coordinator(bootstrap: &str, group: &str) -> anyhow::Result<String> {
    let first = bootstrap.split(',').next().unwrap_or_default();
    let mut conn = KafkaConnection::connect(first, "dmq-bench", Duration::from_secs(10)).await?;
    let req = FindCoordinatorRequest::default().with_key(s(group));
    let resp = conn.send(&req, 3, Duration::from_secs(10)).await?;
    if resp.error_code != 0 {
        bail!(
            "FindCoordinator failed with Kafka error {}",
            resp.error_code
        );
    }
    Ok(format!("{}:{}", resp.host, resp.port))
}

pub async fn bench_offsets(members: usize, seconds: u64, output: Output) -> anyhow::Result<()> {
    if members == 0 {
        bail!("--members must be positive");
    }
    let private = private_cluster().await?;
    let cluster = &private.cluster;
    create_topic_named(cluster, GROUP_TOPIC, members as i32, 1, 1).await?;
    let group = "bench-offsets";
    let addr = coordinator(&cluster.bootstrap(), group).await?;
    let mut joined = Vec::new();
    for _ in 0..members {
        let mut m = Member::connect(&addr, group).await?;
        joined.push(tokio::spawn(
            async move { m.join_and_sync().await.map(|_| m) },
        ));
    }
    let mut ms = Vec::new();
    for j in joined {
        ms.push(j.await.context("join task")??);
    }
    let generation = ms.first().map_or(-1, |m| m.generation);
    if ms.iter().any(|m| m.generation != generation) {
        bail!("members ended in different generations");
    }
    let committed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (i, mut m) in ms.into_iter().enumerate() {
        let committed = committed.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut offset = 0;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let code = m.commit(i as i32, offset).await?;
                if code != 0 {
                    bail!("OffsetCommit failed with Kafka error {code}");
                }
                hist.record(t0.elapsed().as_micros().max(1) as u64)?;
                committed.fetch_add(1, Ordering::Relaxed);
                offset += 1;
            }
            m.leave().await?;
            Ok::<_, anyhow::Error>(hist)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        hist.add(t.await??)?;
    }
    let secs = started.elapsed().as_secs_f64();
    let n = committed.load(Ordering::Relaxed);
    let q = |x: f64| hist.value_at_quantile(x) as f64 / 1000.0;
    let report = json!({
        "benchmark": "group-offset-commits",
        "members": members,
        "seconds": secs,
        "commits": n,
        "commitsPerSec": n as f64 / secs,
        "latencyMs": {"p50": q(0.5), "p99": q(0.99), "p999": q(0.999), "max": hist.max() as f64 / 1000.0},
    });
    match output {
        Output::Json => println!("{report}"),
        Output::Human => println!(
            "{members} members, one coordinator: {n} offset commits in {secs:.1} s = {:.0} commits/s; \
             latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
            n as f64 / secs,
            q(0.5),
            q(0.99),
            q(0.999)
        ),
    }
    Ok(())
}

/// Heartbeats until told to rejoin, then rejoins; returns the generation it synced.
async fn heartbeat_until_rebalanced(m: &mut Member, every: Duration) -> anyhow::Result<i32> {
    let before = m.generation;
    loop {
        tokio::time::sleep(every).await;
        let code = m.heartbeat().await?;
        if code == ResponseError::RebalanceInProgress.code() {
            m.join_and_sync().await?;
            if m.generation > before {
                return Ok(m.generation);
            }
        } else if code != 0 {
            bail!("Heartbeat failed with Kafka error {code}");
        }
    }
}

pub async fn bench_rebalance(
    rounds: usize,
    heartbeat_ms: u64,
    output: Output,
) -> anyhow::Result<()> {
    let private = private_cluster().await?;
    let cluster = &private.cluster;
    create_topic_named(cluster, GROUP_TOPIC, 3, 1, 1).await?;
    let group = "bench-rebalance";
    let addr = coordinator(&cluster.bootstrap(), group).await?;
    let every = Duration::from_millis(heartbeat_ms.max(10));
    let mut a = Member::connect(&addr, group).await?;
    let mut b = Member::connect(&addr, group).await?;
    let (ra, rb) = tokio::join!(a.join_and_sync(), b.join_and_sync());
    ra?;
    rb?;
    let mut times = Vec::new();
    for round in 0..rounds {
        let mut c = Member::connect(&addr, group).await?;
        let t0 = Instant::now();
        let (ga, gb, gc) = tokio::join!(
            heartbeat_until_rebalanced(&mut a, every),
            heartbeat_until_rebalanced(&mut b, every),
            async { c.join_and_sync().await.map(|_| c.generation) }
        );
        let took = t0.elapsed().as_secs_f64() * 1000.0;
        let (ga, gb, gc) = (ga?, gb?, gc?);
        if ga != gb || gb != gc {
            bail!("members synced different generations {ga}, {gb}, {gc}");
        }
        if matches!(output, Output::Human) {
            println!(
                "round {}: 3 members synced generation {gc} after {took:.0} ms",
                round + 1
            );
        }
        times.push(took);
        // The third member leaves; the other two rebalance back to two.
        c.leave().await?;
        let (ra, rb) = tokio::join!(
            heartbeat_until_rebalanced(&mut a, every),
            heartbeat_until_rebalanced(&mut b, every)
        );
        ra?;
        rb?;
    }
    times.sort_by(f64::total_cmp);
    let median = crate::bench::median(&times);
    let report = json!({
        "benchmark": "group-rebalance",
        "members": 3,
        "heartbeatMs": heartbeat_ms,
        "medianMs": median,
        "allMs": times,
    });
    match output {
        Output::Json => println!("{report}"),
        Output::Human => println!(
            "rebalance to 3 members (heartbeat every {heartbeat_ms} ms): median {median:.0} ms over {rounds} rounds"
        ),
    }
    Ok(())
}
