//! A metadata node that was paused (SIGSTOP) for longer than the election timeout and then resumed
//! must not depose a healthy leader (issue #15, item 7): it pre-votes before it campaigns (Raft
//! thesis §9.6), and the two nodes that still hear the leader refuse. The leader keeps its term
//! and metadata writes keep succeeding through every pause and resume.

mod common;

use std::time::{Duration, Instant};

use common::*;
use dmq::procs::{wait_until, MetadataCluster};
use dmq_types::{ControllerConfig, NodeId};
use serde_json::{json, Value};

/// How many times a follower is paused and resumed.
const ROUNDS: usize = 3;
/// Three election timeouts (default 1 s): the paused node's election timer has long expired when
/// it resumes.
const PAUSE: Duration = Duration::from_secs(3);
/// After a resume the quorum is watched for at least this long (two election timeouts), so that
/// the resumed node's timer fires at least once more after its first attempt.
const WATCH_AFTER_RESUME: Duration = Duration::from_secs(2);

/// Writes (topic creations) sent to the leader, and what went wrong.
struct Writes {
    client: reqwest::Client,
    sent: usize,
    slowest: Duration,
    problems: Vec<String>,
    /// When the first refused write of the current outage was sent.
    refused_since: Option<Instant>,
}

impl Writes {
    fn new() -> Self {
        Self {
            client: dmq_types::https::client_builder(None)
                .expect("tls")
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap_or_default(),
            sent: 0,
            slowest: Duration::ZERO,
            problems: Vec::new(),
            refused_since: None,
        }
    }

    /// Creates one topic on `node`; true when it answered 201.
    async fn write(&mut self, cluster: &MetadataCluster, node: NodeId) -> bool {
        self.sent += 1;
        let body = json!({
            "topicName": format!("prevote-{}", self.sent),
            "numPartitions": 1,
            "replicationFactor": 1,
        });
        let started = Instant::now();
        let answer = self
            .client
            .post(format!("{}/api/v1/metadata/topics", cluster.url(node)))
            .json(&body)
            .send()
            .await;
        let took = started.elapsed();
        match answer {
            Ok(r) if r.status().as_u16() == 201 => {
                self.slowest = self.slowest.max(took);
                if let Some(since) = self.refused_since.take() {
                    println!("writes were refused for {:?}", since.elapsed());
                }
                true
            }
            other => {
                let what = match other {
                    Ok(r) => format!("status {}", r.status()),
                    Err(e) => format!("error {e}"),
                };
                // The first failure tells the story; an outage would repeat it hundreds of times.
                if self.problems.len() < 3 {
                    self.problems.push(format!(
                        "write {} to node {node} failed after {took:?}: {what}",
                        self.sent
                    ));
                }
                self.refused_since.get_or_insert(started);
                false
            }
        }
    }
}

/// What `node` reports as (state, leader, term); None while it does not answer.
async fn raft_view(cluster: &MetadataCluster, node: NodeId) -> Option<(String, Option<u64>, u64)> {
    let s = cluster.status(node).await?;
    Some((
        s["state"].as_str()?.to_string(),
        s["leaderId"].as_u64(),
        s["currentTerm"].as_u64()?,
    ))
}

/// Checks that every node in `nodes` that answers still sees `leader` leading in `term`.
async fn check_leadership(
    cluster: &MetadataCluster,
    nodes: &[NodeId],
    leader: NodeId,
    term: u64,
    problems: &mut Vec<String>,
) {
    for &node in nodes {
        let Some((state, leader_id, current_term)) = raft_view(cluster, node).await else {
            continue;
        };
        let expected_state = if node == leader { "LEADER" } else { "FOLLOWER" };
        if current_term != term || leader_id != Some(leader) || state != expected_state {
            problems.push(format!(
                "node {node} reports {state}, leader {leader_id:?}, term {current_term} \
                 (expected {expected_state}, leader {leader}, term {term})"
            ));
        }
    }
}

/// How many pre-vote rounds `node` has lost so far, from its log (for the report: whether the
/// resumed node's timer fired before the leader's next heartbeat reached it is a race).
fn pre_votes_lost(cluster: &MetadataCluster, node: NodeId) -> usize {
    std::fs::read_to_string(cluster.log_path(node))
        .map(|log| log.matches("pre-vote lost").count())
        .unwrap_or(0)
}

/// After a failure: how long until some node accepts a write again (for the report).
async fn measure_outage(cluster: &MetadataCluster, writes: &mut Writes) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        for node in cluster.ids() {
            if writes.write(cluster, node).await {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_paused_past_the_election_timeout_does_not_depose_the_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let controller = ControllerConfig {
        broker_session_timeout_ms: 600_000,
        ..ControllerConfig::default()
    };
    assert!(PAUSE > Duration::from_millis(controller.election_timeout_ms * 2));
    let cluster = start_quorum(dir.path(), controller);
    register_brokers(&cluster, &[101]).await;
    // The leader and term every node agrees on (a start-up election may still be settling
    // when the first leader answers).
    let c = &cluster;
    let (leader, term) = wait_until(
        Duration::from_secs(10),
        "all nodes to agree on a leader",
        || async move {
            let mut seen = Vec::new();
            for id in c.ids() {
                let s = c.status(id).await?;
                seen.push((s["leaderId"].as_u64()?, s["currentTerm"].as_u64()?));
            }
            let first = *seen.first()?;
            seen.iter().all(|x| *x == first).then_some(first)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", process_logs(dir.path())));
    let followers: Vec<NodeId> = cluster.ids().into_iter().filter(|i| *i != leader).collect();
    let mut writes = Writes::new();
    let mut problems = Vec::new();

    for round in 0..ROUNDS {
        let paused_node = followers[round % followers.len()];
        let others: Vec<NodeId> = cluster
            .ids()
            .into_iter()
            .filter(|i| *i != paused_node)
            .collect();
        // The node to pause follows this leader in this term and has caught up.
        let c = &cluster;
        wait_until(
            Duration::from_secs(10),
            "the node to pause to follow the leader and catch up",
            || async move {
                let target = c.status(leader).await?["lastApplied"].as_u64()?;
                let s = c.status(paused_node).await?;
                (s["state"] == "FOLLOWER"
                    && s["leaderId"].as_u64() == Some(leader)
                    && s["currentTerm"].as_u64() == Some(term)
                    && s["lastApplied"].as_u64()? >= target)
                    .then_some(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("round {round}: {e}\n{}", process_logs(dir.path())));

        let lost_before = pre_votes_lost(&cluster, paused_node);
        cluster
            .signal_node(paused_node, libc::SIGSTOP)
            .expect("SIGSTOP");
        let paused_at = Instant::now();
        let sent_before = writes.sent;
        // The two others are a majority: writes keep succeeding while the node is stopped.
        while paused_at.elapsed() < PAUSE && problems.is_empty() && writes.problems.is_empty() {
            writes.write(&cluster, leader).await;
            check_leadership(&cluster, &others, leader, term, &mut problems).await;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        cluster
            .signal_node(paused_node, libc::SIGCONT)
            .expect("SIGCONT");
        let resumed_at = Instant::now();
        let paused_for = resumed_at - paused_at;

        // The resumed node must rejoin as a follower of the same leader in the same term, and
        // nothing may change while its (expired) election timer runs.
        let all = cluster.ids();
        let mut caught_up = false;
        while problems.is_empty() && writes.problems.is_empty() {
            writes.write(&cluster, leader).await;
            check_leadership(&cluster, &all, leader, term, &mut problems).await;
            if !caught_up {
                let target = cluster
                    .status(leader)
                    .await
                    .and_then(|s| s["lastApplied"].as_u64());
                let mine = cluster
                    .status(paused_node)
                    .await
                    .and_then(|s| s["lastApplied"].as_u64());
                caught_up = matches!((target, mine), (Some(t), Some(m)) if m >= t);
            }
            if caught_up && resumed_at.elapsed() >= WATCH_AFTER_RESUME {
                break;
            }
            if resumed_at.elapsed() > Duration::from_secs(15) {
                problems.push(format!(
                    "node {paused_node} did not catch up within 15 s of SIGCONT"
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        println!(
            "round {round}: node {paused_node} stopped {paused_for:?}, then lost {} pre-votes; \
             {} writes, slowest {:?}; leader {leader} term {term}: {}",
            pre_votes_lost(&cluster, paused_node) - lost_before,
            writes.sent - sent_before,
            writes.slowest,
            if problems.is_empty() && writes.problems.is_empty() {
                "unchanged".to_string()
            } else {
                format!("{:?} {:?}", problems, writes.problems)
            }
        );
        if !problems.is_empty() || !writes.problems.is_empty() {
            measure_outage(&cluster, &mut writes).await;
            for node in cluster.ids() {
                println!("node {node}: {:?}", raft_view(&cluster, node).await);
            }
            panic!(
                "round {round}: the resumed node disturbed the quorum:\n{}\n{}\n{}",
                problems.join("\n"),
                writes.problems.join("\n"),
                process_logs(dir.path())
            );
        }
    }
    let term_now: Vec<Option<Value>> = {
        let mut v = Vec::new();
        for node in cluster.ids() {
            v.push(cluster.status(node).await.map(|s| s["currentTerm"].clone()));
        }
        v
    };
    assert!(
        term_now
            .iter()
            .all(|t| t.as_ref().and_then(Value::as_u64) == Some(term)),
        "terms after {ROUNDS} pauses: {term_now:?} (started in {term})"
    );
    println!(
        "{ROUNDS} pauses of {PAUSE:?}: {} writes, all accepted by node {leader} in term {term}",
        writes.sent
    );
}
