//! Controller duties as real processes: broker liveness, leader moves from the ISR, and no false
//! fencing after a controller failover.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use dmq::procs::wait_until;
use dmq_types::ControllerConfig;
use serde_json::Value;

const SESSION_MS: u64 = 2_000;

fn liveness_config() -> ControllerConfig {
    ControllerConfig {
        broker_heartbeat_interval_ms: 300,
        broker_session_timeout_ms: SESSION_MS,
        ..ControllerConfig::default()
    }
}

fn leaders(topic: &Value) -> BTreeMap<i64, i64> {
    topic["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            (
                p["partitionId"].as_i64().expect("id"),
                p["leader"].as_i64().expect("leader"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_broker_goes_offline_and_its_partitions_move_within_the_isr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = start_quorum(dir.path(), liveness_config());
    cluster
        .wait_for_leader(Duration::from_secs(3))
        .await
        .expect("leader");
    register_brokers(&cluster, &[101, 102, 103]).await;
    let urls = cluster.ids().iter().map(|id| cluster.url(*id)).collect();
    let beats = Heartbeats::start(urls, &[101, 102, 103], Duration::from_millis(300));

    // Placement: 6 partitions, RF 2 on 3 brokers → exactly 2 leaderships each.
    let before = create_topic(&cluster, "p6", 6, 2).await;
    let mut per_broker: BTreeMap<i64, usize> = BTreeMap::new();
    for leader in leaders(&before).values() {
        *per_broker.entry(*leader).or_default() += 1;
    }
    assert_eq!(
        per_broker.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{per_broker:?}"
    );

    beats.stop(101);
    let c = &cluster;
    let offline_seen = wait_until(
        Duration::from_millis(SESSION_MS + 3_000),
        "broker 101 OFFLINE",
        || async move {
            for id in c.ids() {
                if let Some((200, b)) = c
                    .get(id, "/api/v1/metadata/brokers/101?consistent=true")
                    .await
                {
                    return (b["status"] == "OFFLINE").then(Instant::now);
                }
            }
            None
        },
    )
    .await
    .expect("broker fenced");
    let silent_for = offline_seen - beats.last_ok(101).expect("101 heartbeated once");
    println!("broker 101 OFFLINE {silent_for:?} after its last heartbeat");
    assert!(
        silent_for <= Duration::from_millis(SESSION_MS + 1_000),
        "OFFLINE after {silent_for:?}, session timeout is {SESSION_MS} ms"
    );

    // Every partition 101 led now has a new leader from its ISR, with a bumped epoch; 101 is in
    // no ISR.
    let after = wait_until(Duration::from_secs(3), "leaderships moved", || async move {
        let (_, t) = c
            .get(c.ids()[0], "/api/v1/metadata/topics/p6?consistent=true")
            .await?;
        let moved = t["partitions"].as_array()?.iter().all(|p| {
            p["leader"] != 101
                && !p["isr"]
                    .as_array()
                    .is_some_and(|isr| isr.contains(&Value::from(101)))
        });
        moved.then_some(t)
    })
    .await
    .expect("partitions moved off the dead broker");
    for (old, new) in before["partitions"]
        .as_array()
        .expect("p")
        .iter()
        .zip(after["partitions"].as_array().expect("p"))
    {
        if old["leader"] == 101 {
            let isr = old["isr"].as_array().expect("isr");
            assert!(
                isr.contains(&new["leader"]),
                "new leader {} not from ISR {isr:?}",
                new["leader"]
            );
            assert_eq!(
                new["leaderEpoch"].as_i64(),
                old["leaderEpoch"].as_i64().map(|e| e + 1),
                "epoch bumped on {new}"
            );
        } else {
            assert_eq!(
                new["leader"], old["leader"],
                "untouched leadership moved: {new}"
            );
        }
    }

    // Its next heartbeat brings it back ONLINE.
    beats.resume(101);
    wait_until(
        Duration::from_secs(5),
        "broker 101 ONLINE again",
        || async move {
            let (_, b) = c
                .get(c.ids()[0], "/api/v1/metadata/brokers/101?consistent=true")
                .await?;
            (b["status"] == "ONLINE").then_some(())
        },
    )
    .await
    .expect("readmitted");

    // A broker whose HTTP port is a recorder, to see the new controller's push.
    let catcher = PushCatcher::start().await;
    let body = serde_json::json!({"brokerId": 104, "host": "127.0.0.1", "port": catcher.port, "kafkaPort": 1});
    let (status, body) = post_leader(&cluster, "/api/v1/metadata/brokers", &body).await;
    assert_eq!(status, 201, "{body}");
    beats.resume(104);

    // Controller failover while every broker heartbeats: the new controller rebuilds heartbeat
    // state and fences nobody (seed 000, "Challenge 2"), and tells the brokers it took over.
    let old = cluster
        .wait_for_leader(Duration::from_secs(3))
        .await
        .expect("leader");
    cluster.kill(old);
    let new = cluster
        .wait_for_leader(Duration::from_secs(5))
        .await
        .expect("new leader");
    let catcher = &catcher;
    let push = wait_until(
        Duration::from_secs(3),
        "CONTROLLER_CHANGED push",
        || async move {
            catcher
                .pushes()
                .into_iter()
                .find(|p| p["type"] == "CONTROLLER_CHANGED" && p["controllerId"] == new)
        },
    )
    .await
    .expect("new controller pushes CONTROLLER_CHANGED");
    assert_eq!(
        push["controllerUrl"],
        Value::from(cluster.url(new)),
        "{push}"
    );
    // A burst of commits is pushed as METADATA_UPDATED, coalesced: the newest version arrives,
    // in far fewer pushes than commits.
    let before = catcher.pushes().len();
    let mut last_version = 0;
    for i in 0..20 {
        let body = serde_json::json!({"topicName": format!("burst-{i}"), "numPartitions": 1, "replicationFactor": 1});
        let (status, _) = post_leader(&cluster, "/api/v1/metadata/topics", &body).await;
        assert_eq!(status, 201);
    }
    if let Some((200, raft)) = cluster.get(new, "/api/v1/raft/status").await {
        last_version = raft["lastApplied"].as_u64().unwrap_or(0);
    }
    wait_until(
        Duration::from_secs(3),
        "METADATA_UPDATED with the newest version",
        || async move {
            catcher.pushes().into_iter().find(|p| {
                p["type"] == "METADATA_UPDATED" && p["version"].as_u64() >= Some(last_version)
            })
        },
    )
    .await
    .expect("metadata push");
    let updates = catcher.pushes()[before..]
        .iter()
        .filter(|p| p["type"] == "METADATA_UPDATED")
        .count();
    assert!(
        (1..=20).contains(&updates),
        "{updates} pushes for 20 commits"
    );
    let watch_until = Instant::now() + Duration::from_millis(SESSION_MS + 1_000);
    while Instant::now() < watch_until {
        if let Some((200, brokers)) = cluster.get(new, "/api/v1/metadata/brokers").await {
            for b in brokers.as_array().expect("brokers") {
                assert_eq!(
                    b["status"], "ONLINE",
                    "falsely fenced after controller failover: {b}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Heartbeats live in the controller's memory, not in the Raft log: a follower node mirrors
/// them, so its `lastHeartbeat` moves on with the broker's heartbeats instead of showing the
/// registration time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_nodes_report_the_controllers_last_heartbeat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_quorum(dir.path(), liveness_config());
    let leader = cluster
        .wait_for_leader(Duration::from_secs(3))
        .await
        .expect("leader");
    register_brokers(&cluster, &[101]).await;
    let registered = cluster
        .get(leader, "/api/v1/metadata/brokers/101?consistent=true")
        .await
        .expect("broker")
        .1["lastHeartbeat"]
        .as_u64()
        .expect("lastHeartbeat");
    let urls = cluster.ids().iter().map(|id| cluster.url(*id)).collect();
    let _beats = Heartbeats::start(urls, &[101], Duration::from_millis(300));
    let c = &cluster;
    let last_heartbeat = |node| async move {
        c.get(node, "/api/v1/metadata/brokers/101")
            .await
            .and_then(|(status, b)| (status == 200).then(|| b["lastHeartbeat"].as_u64()))
            .flatten()
    };
    // The controller has seen a heartbeat after the registration …
    let seen = wait_until(Duration::from_secs(5), "a heartbeat", || async {
        last_heartbeat(leader).await.filter(|t| *t > registered)
    })
    .await
    .expect("the controller records heartbeats");
    // … and every follower shows it (or a later one), and keeps up.
    for node in cluster.ids().into_iter().filter(|n| *n != leader) {
        let mirrored = wait_until(Duration::from_secs(5), "the follower's mirror", || async {
            last_heartbeat(node).await.filter(|t| *t >= seen)
        })
        .await
        .unwrap_or_else(|e| panic!("node {node}: {e}"));
        wait_until(Duration::from_secs(5), "a later heartbeat", || async {
            last_heartbeat(node).await.filter(|t| *t > mirrored)
        })
        .await
        .unwrap_or_else(|e| panic!("node {node} keeps up: {e}"));
    }
}
