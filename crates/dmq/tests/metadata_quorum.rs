//! The metadata quorum as real processes: election, replication, redirects, SIGKILL failover,
//! restart on the same data dir, and catch-up by snapshot.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use dmq::procs::wait_until;
use dmq_types::ControllerConfig;
use serde_json::Value;

/// Records which nodes claimed leadership in which term; Raft §5.2: at most one leader per term.
#[derive(Default)]
struct LeaderLedger(BTreeMap<u64, BTreeSet<u64>>);

impl LeaderLedger {
    async fn observe(&mut self, cluster: &dmq::procs::MetadataCluster) {
        for id in cluster.ids() {
            if let Some(s) = cluster.status(id).await {
                if s["isLeader"] == Value::Bool(true) {
                    let term = s["currentTerm"].as_u64().expect("term");
                    self.0.entry(term).or_default().insert(id);
                }
            }
        }
    }

    fn assert_single_leader_per_term(&self) {
        for (term, leaders) in &self.0 {
            assert!(leaders.len() <= 1, "term {term} had leaders {leaders:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_within_3s_and_never_two_in_a_term() {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let cluster = start_quorum(dir.path(), ControllerConfig::default());
    let leader = cluster
        .wait_for_leader(Duration::from_secs(3))
        .await
        .expect("a leader within 3 s of start");
    println!(
        "leader {leader} elected {:?} after start",
        started.elapsed()
    );
    // Watch the quorum settle for a while: every observation must show at most one leader a term,
    // and followers must agree on who leads.
    let mut ledger = LeaderLedger::default();
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        ledger.observe(&cluster).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ledger.assert_single_leader_per_term();
    for id in cluster.ids() {
        let s = cluster.status(id).await.expect("status");
        assert_eq!(s["leaderId"], Value::from(leader), "node {id}: {s}");
        let expected = if id == leader { "LEADER" } else { "FOLLOWER" };
        assert_eq!(s["state"], expected, "node {id}: {s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_reads_back_identically_everywhere_and_followers_redirect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_quorum(dir.path(), long_sessions());
    register_brokers(&cluster, &[101, 102, 103]).await;
    let created = create_topic(&cluster, "orders", 6, 2).await;
    assert_eq!(created["numPartitions"], 6);
    assert_eq!(created["partitions"].as_array().map(Vec::len), Some(6));

    // Every node serves byte-identical topic JSON once it has applied the entry.
    for id in cluster.ids() {
        let c = &cluster;
        let created = &created;
        wait_until(
            Duration::from_secs(5),
            "topic on every node",
            || async move {
                let (status, body) = c.get(id, "/api/v1/metadata/topics/orders").await?;
                (status == 200 && &body == created).then_some(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("node {id}: {e}"));
        // A consistent read goes through the leader's read index: during an election it is
        // refused with 503 (correctly), so it is retried until the quorum answers.
        let (status, body) = wait_until(
            Duration::from_secs(10),
            "a consistent read",
            || async move {
                let got = c
                    .get(id, "/api/v1/metadata/topics/orders?consistent=true")
                    .await?;
                (got.0 != 503).then_some(got)
            },
        )
        .await
        .unwrap_or_else(|e| panic!("node {id}: {e}"));
        assert_eq!((status, &body), (200, created), "node {id} consistent read");
    }

    let leader = cluster
        .wait_for_leader(Duration::from_secs(3))
        .await
        .expect("leader");
    let follower = cluster
        .ids()
        .into_iter()
        .find(|i| *i != leader)
        .expect("a follower");
    let body =
        serde_json::json!({"topicName": "other", "numPartitions": 1, "replicationFactor": 1});
    let (status, headers, body) = cluster
        .post(follower, "/api/v1/metadata/topics", &body)
        .await
        .expect("follower answers");
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        headers
            .get("X-Controller-Leader")
            .and_then(|v| v.to_str().ok()),
        Some(cluster.url(leader).as_str())
    );
    assert_eq!(
        headers
            .get("X-Controller-Leader-Id")
            .and_then(|v| v.to_str().ok()),
        Some(leader.to_string().as_str())
    );
    assert_eq!(body["error"], "NOT_LEADER");
    assert_eq!(body["leaderId"], Value::from(leader));
    let (_, topics) = cluster
        .get(leader, "/api/v1/metadata/topics")
        .await
        .expect("list");
    assert_eq!(
        topics.as_array().map(Vec::len),
        Some(1),
        "the redirected write changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sigkill_fails_over_within_3s_and_the_old_leader_rejoins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = start_quorum(dir.path(), long_sessions());
    register_brokers(&cluster, &[101]).await;
    for i in 0..10 {
        create_topic(&cluster, &format!("t{i}"), 2, 1).await;
    }
    let mut ledger = LeaderLedger::default();
    ledger.observe(&cluster).await;
    let old = cluster
        .wait_for_leader(Duration::from_secs(3))
        .await
        .expect("leader");
    cluster.kill(old);
    let killed_at = Instant::now();
    let body = serde_json::json!({"topicName": "after-failover", "numPartitions": 1, "replicationFactor": 1});
    let new_leader = cluster
        .post_until_created(
            old,
            "/api/v1/metadata/topics",
            &body,
            Duration::from_secs(3),
        )
        .await
        .expect("another node accepts writes within 3 s of SIGKILL");
    println!(
        "node {new_leader} accepted a write {:?} after the kill",
        killed_at.elapsed()
    );
    ledger.observe(&cluster).await;

    let (_, topics) = cluster
        .get(new_leader, "/api/v1/metadata/topics")
        .await
        .expect("topics");
    let names: BTreeSet<&str> = topics
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|t| t["topicName"].as_str())
        .collect();
    for i in 0..10 {
        assert!(
            names.contains(format!("t{i}").as_str()),
            "committed topic t{i} lost: {names:?}"
        );
    }

    // The killed node restarts on its data dir, follows, and catches up.
    cluster.start(old).expect("restart");
    let c = &cluster;
    let topics = &topics;
    wait_until(
        Duration::from_secs(10),
        "restarted node to follow and catch up",
        || async move {
            let s = c.status(old).await?;
            let (_, mine) = c.get(old, "/api/v1/metadata/topics").await?;
            (s["state"] == "FOLLOWER" && &mine == topics).then_some(())
        },
    )
    .await
    .expect("old leader rejoins as a follower with every topic");
    ledger.observe(&cluster).await;
    ledger.assert_single_leader_per_term();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_down_for_10000_commits_catches_up_by_snapshot() {
    const COMMANDS: u64 = 10_000;
    let dir = tempfile::tempdir().expect("tempdir");
    // Concurrent writes are group-committed, several commands to a Raft entry: the snapshot
    // interval counts entries, so it is small here to snapshot many times over the run.
    const INTERVAL: u64 = 50;
    const KEPT: u64 = 5;
    // Entries a snapshot may trail the last one by (the state machine applies in batches).
    const SLACK: u64 = 32;
    let controller = ControllerConfig {
        snapshot_interval_entries: INTERVAL,
        snapshot_log_entries_kept: KEPT,
        ..long_sessions()
    };
    let mut cluster = start_quorum(dir.path(), controller);
    register_brokers(&cluster, &[101]).await;
    let leader = cluster
        .wait_for_leader(Duration::from_secs(3))
        .await
        .expect("leader");
    let down = cluster
        .ids()
        .into_iter()
        .find(|i| *i != leader)
        .expect("follower");
    // (A node busy settling a start-up election may not answer at once.)
    let c = &cluster;
    let down_last_index = dmq::procs::wait_until(
        Duration::from_secs(10),
        "the follower's status",
        || async move { c.status(down).await?["lastLogIndex"].as_u64() },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    cluster.kill(down);

    // 10,000 commits from 16 concurrent writers.
    let next = std::sync::atomic::AtomicU64::new(0);
    let writers = (0..16).map(|_| async {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i >= COMMANDS {
                return;
            }
            let body = serde_json::json!({"topicName": format!("bulk-{i}"), "numPartitions": 1, "replicationFactor": 1});
            let (status, body) = post_leader(&cluster, "/api/v1/metadata/topics", &body).await;
            assert_eq!(status, 201, "{body}");
        }
    });
    futures::future::join_all(writers).await;

    let leader = cluster
        .wait_for_leader(Duration::from_secs(3))
        .await
        .expect("leader");
    let written_last = cluster.status(leader).await.expect("status")["lastLogIndex"]
        .as_u64()
        .expect("last log index");
    println!(
        "{COMMANDS} commands took {} log entries",
        written_last - down_last_index
    );
    let c = &cluster;
    let s = wait_until(
        Duration::from_secs(10),
        "leader to purge its log behind a snapshot",
        || async move {
            let s = c.status(leader).await?;
            (s["purgedIndex"].as_u64()? + INTERVAL + KEPT + INTERVAL + SLACK >= written_last)
                .then_some(s)
        },
    )
    .await
    .unwrap_or_else(|e| {
        let status = futures::executor::block_on(c.status(leader));
        panic!("log not compacted: {e}; leader status {status:?}")
    });
    let purged = s["purgedIndex"].as_u64().expect("purged");
    let file_bytes = s["logFileBytes"].as_u64().expect("bytes");
    let last = s["lastLogIndex"].as_u64().expect("last");
    println!("leader log: purged through {purged}, last {last}, {file_bytes} bytes on disk");
    assert!(
        purged > down_last_index + 1,
        "the log alone cannot catch the node up"
    );
    assert!(
        last - purged <= INTERVAL + KEPT + INTERVAL + SLACK,
        "entries kept: {}",
        last - purged
    );
    let on_disk = std::fs::metadata(cluster.data_dir(leader).join("raft.log"))
        .expect("raft.log")
        .len();
    assert!(
        on_disk < 1_500_000,
        "raft.log is {on_disk} bytes after compaction"
    );
    let log_bytes = std::fs::read(cluster.data_dir(leader).join("raft.log")).expect("raft.log");
    let commands_on_disk = log_bytes.windows(6).filter(|w| w == b"\"bulk-").count();
    assert!(
        commands_on_disk < COMMANDS as usize / 2,
        "raft.log still holds {commands_on_disk} of the {COMMANDS} commands"
    );

    cluster.start(down).expect("restart");
    let c = &cluster;
    let target = s["lastApplied"].as_u64().expect("applied");
    let caught_up = wait_until(
        Duration::from_secs(30),
        "the restarted node to catch up",
        || async move {
            let s = c.status(down).await?;
            (s["lastApplied"].as_u64()? >= target).then_some(s)
        },
    )
    .await
    .expect("catch up");
    assert!(
        caught_up["snapshotIndex"].as_u64().unwrap_or(0) > down_last_index,
        "caught up through a snapshot: {caught_up}"
    );
    let (_, topics) = cluster
        .get(down, "/api/v1/metadata/topics")
        .await
        .expect("topics");
    assert_eq!(topics.as_array().map(Vec::len), Some(COMMANDS as usize));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writes_are_group_committed_and_each_answered_alone() {
    use futures::StreamExt;
    const NAMES: usize = 200;
    const TRIES: usize = 4;
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_quorum(dir.path(), long_sessions());
    register_brokers(&cluster, &[101]).await;
    let leader = cluster
        .wait_for_leader(Duration::from_secs(3))
        .await
        .expect("leader");
    let before = cluster.status(leader).await.expect("status")["lastLogIndex"]
        .as_u64()
        .expect("last index");

    // Every name is asked for TRIES times in a row by 64 concurrent clients: the tries of one
    // name mostly land in the same batch entry, where the first must win and the rest see 409.
    let c = &cluster;
    let answers: Vec<(usize, u16, Value)> = futures::stream::iter(0..NAMES * TRIES)
        .map(|i| async move {
            let name = i / TRIES;
            let body = serde_json::json!({"topicName": format!("race-{name}"), "numPartitions": 1, "replicationFactor": 1});
            let (status, _, body) = c
                .post(leader, "/api/v1/metadata/topics", &body)
                .await
                .expect("leader answers");
            (name, status, body)
        })
        .buffer_unordered(64)
        .collect()
        .await;

    let mut created = vec![0; NAMES];
    for (name, status, body) in &answers {
        match status {
            201 => {
                // The answer is about this request's topic, not a batch neighbour's.
                assert_eq!(body["topicName"], format!("race-{name}"), "{body}");
                created[*name] += 1;
            }
            409 => {
                let message = body["message"].as_str().unwrap_or_default();
                assert!(message.contains(&format!("\"race-{name}\"")), "{body}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(
        created.iter().all(|n| *n == 1),
        "each name created exactly once: {created:?}"
    );
    let after = cluster.status(leader).await.expect("status")["lastLogIndex"]
        .as_u64()
        .expect("last index");
    println!(
        "{} writes took {} log entries",
        NAMES * TRIES,
        after - before
    );
    assert!(
        after - before < (NAMES * TRIES) as u64,
        "concurrent writes share entries"
    );
    for id in cluster.ids() {
        let c = &cluster;
        wait_until(
            Duration::from_secs(5),
            "every node to hold each raced topic once",
            || async move {
                let (_, topics) = c.get(id, "/api/v1/metadata/topics").await?;
                let names: Vec<&str> = topics
                    .as_array()?
                    .iter()
                    .filter_map(|t| t["topicName"].as_str())
                    .filter(|n| n.starts_with("race-"))
                    .collect();
                (names.len() == NAMES).then_some(())
            },
        )
        .await
        .expect("replicated");
    }
}
