//! Share groups (KIP-932, issue #19) with confluent-kafka's `ShareConsumer` (librdkafka 2.16):
//! three members of one share group on a one-partition RF-3 topic all receive records, each
//! record is accepted exactly once across them, a RELEASEd record comes back with delivery
//! count 2, a REJECTed one never comes back (tests/interop/share_consumers.py).
//!
//! Then, with `group.share.record.lock.duration.ms` set cluster-wide to 3 s (a dynamic broker
//! config), a member that dies with records in flight loses them to the surviving member after
//! its locks expire, with delivery count 2 (tests/interop/share_dead_member.py).
//!
//! Share-partition state is in memory on the leader for now (not durable across a leader
//! change): the fault case of the issue is not covered yet.

mod common;

use std::process::Command;

use common::{post_leader, run_interop, start_cluster, venv_python, wait_topic_on_brokers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_consumers_split_one_partition_and_acknowledge_each_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let body =
        serde_json::json!({"topicName": "share-t", "numPartitions": 1, "replicationFactor": 3});
    let (status, created) = post_leader(&cluster, "/api/v1/metadata/topics", &body).await;
    assert_eq!(status, 201, "{created}");
    wait_topic_on_brokers(&cluster, "share-t", 1, 3).await;
    let mut cmd = Command::new(venv_python());
    cmd.arg("tests/interop/share_consumers.py")
        .args(["--bootstrap", &cluster.bootstrap()])
        .args([
            "--topic",
            "share-t",
            "--group",
            "share-g",
            "--records",
            "300",
        ]);
    let out = run_interop(cmd).await;
    assert!(out.contains("OK share group: 3 members received"), "{out}");
    assert!(out.contains("OK RELEASE:"), "{out}");

    let body = serde_json::json!({"set": {"group.share.record.lock.duration.ms": "3000"}});
    let (status, _, answer) = cluster
        .patch(
            cluster
                .wait_for_leader(std::time::Duration::from_secs(10))
                .await
                .expect("leader"),
            "/api/v1/metadata/broker-configs",
            &body,
        )
        .await
        .expect("PATCH broker-configs");
    assert_eq!(status, 200, "{answer}");
    let body =
        serde_json::json!({"topicName": "share-d", "numPartitions": 1, "replicationFactor": 3});
    let (status, created) = post_leader(&cluster, "/api/v1/metadata/topics", &body).await;
    assert_eq!(status, 201, "{created}");
    wait_topic_on_brokers(&cluster, "share-d", 1, 3).await;
    let mut cmd = Command::new(venv_python());
    cmd.arg("tests/interop/share_dead_member.py")
        .args(["--bootstrap", &cluster.bootstrap()])
        .args([
            "--topic",
            "share-d",
            "--group",
            "share-dead",
            "--lock-ms",
            "3000",
        ]);
    let out = run_interop(cmd).await;
    assert!(
        out.contains("OK dead member: A received all 20 records"),
        "{out}"
    );
}
