//! Share groups (KIP-932, issue #19) with confluent-kafka's `ShareConsumer` (librdkafka 2.16):
//! three members of one share group on a one-partition RF-3 topic all receive records, each
//! record is accepted exactly once across them, a RELEASEd record comes back with delivery
//! count 2, a REJECTed one never comes back (tests/interop/share_consumers.py).
//!
//! Then, with `group.share.record.lock.duration.ms` set cluster-wide to 3 s (a dynamic broker
//! config), a member that dies with records in flight loses them to the surviving member after
//! its locks expire, with delivery count 2 (tests/interop/share_dead_member.py).
//!
//! `share_groups_dead_letter_rejected_records_and_back_off_releases`: group configs set with
//! IncrementalAlterConfigs on the GROUP resource (earliest, `share.dlq.topic`, delivery limit 2,
//! `share.redelivery.backoff.ms` 2 s) and read back with DescribeConfigs; REJECTed records and a
//! record past the delivery limit land in the dead-letter topic once each with their source in
//! `dmq.dlq.*` headers; a RELEASEd record is not delivered again before the backoff
//! (tests/interop/share_dlq.py). The fault case is `share_faults.rs`.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_groups_dead_letter_rejected_records_and_back_off_releases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    for topic in ["share-src", "share-src-dlq"] {
        let body =
            serde_json::json!({"topicName": topic, "numPartitions": 1, "replicationFactor": 3});
        let (status, created) = post_leader(&cluster, "/api/v1/metadata/topics", &body).await;
        assert_eq!(status, 201, "{created}");
        wait_topic_on_brokers(&cluster, topic, 1, 3).await;
    }
    let mut cmd = Command::new(venv_python());
    cmd.arg("tests/interop/share_dlq.py")
        .args(["--bootstrap", &cluster.bootstrap()])
        .args(["--topic", "share-src", "--dlq", "share-src-dlq"])
        .args(["--group", "share-dlq-g"]);
    let out = run_interop(cmd).await;
    assert!(out.contains("OK group configs set and described"), "{out}");
    assert!(out.contains("OK RELEASE: x12 came back after"), "{out}");
    assert!(out.contains("OK dead-letter topic: x5, x6"), "{out}");

    // The quorum holds the group's configs and its share-partition state: 30 records settled,
    // 3 of them archived.
    let leader = cluster
        .wait_for_leader(std::time::Duration::from_secs(10))
        .await
        .expect("leader");
    let (status, state) = cluster
        .get(
            leader,
            "/api/v1/metadata/share-groups/share-dlq-g?consistent=true",
        )
        .await
        .expect("share group");
    assert_eq!(status, 200, "{state}");
    assert_eq!(
        state["config"]["share.dlq.topic"], "share-src-dlq",
        "{state}"
    );
    let snapshot = &state["partitions"][0]["snapshot"];
    assert_eq!(snapshot["startOffset"], 30, "{state}");
    assert_eq!(snapshot["archivedTotal"], 3, "{state}");
    assert_eq!(snapshot["deadLetteredTotal"], 3, "{state}");
}

/// dmq-client's `ShareConsumer` and the `dmq share` CLI: two members split one partition (one
/// commits synchronously, one asynchronously), a RELEASEd record comes back to a member with
/// delivery count 2, every other record is accepted once; `dmq share describe` shows the members and the share-partition; `dmq share consume
/// --max` prints records with their delivery counts. The group starts at the earliest offset by
/// a group config set over HTTP (`PATCH /api/v1/metadata/group-configs/{group}`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_share_consumer_and_the_cli_share_a_partition() {
    use dmq_client::{
        AckType, Producer, ProducerConfig, ProducerRecord, ShareConsumer, ShareConsumerConfig,
    };
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let body =
        serde_json::json!({"topicName": "share-rs", "numPartitions": 1, "replicationFactor": 3});
    let (status, created) = post_leader(&cluster, "/api/v1/metadata/topics", &body).await;
    assert_eq!(status, 201, "{created}");
    wait_topic_on_brokers(&cluster, "share-rs", 1, 3).await;
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    for group in ["share-rs-g", "share-cli-g"] {
        let (status, _, answer) = cluster
            .patch(
                leader,
                &format!("/api/v1/metadata/group-configs/{group}"),
                &serde_json::json!({"set": {"share.auto.offset.reset": "earliest"}}),
            )
            .await
            .expect("PATCH group-configs");
        assert_eq!(status, 200, "{answer}");
    }
    // A config that is not a group config is refused with 400 INVALID_CONFIG.
    let (status, _, answer) = cluster
        .patch(
            leader,
            "/api/v1/metadata/group-configs/share-rs-g",
            &serde_json::json!({"set": {"retention.ms": "1"}}),
        )
        .await
        .expect("PATCH group-configs");
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("INVALID_CONFIG")),
        "{answer}"
    );

    let producer = Producer::new(ProducerConfig::new(cluster.bootstrap()))
        .await
        .expect("producer");
    for i in 0..200 {
        producer
            .send(ProducerRecord::new("share-rs", format!("v{i}")))
            .await
            .expect("send")
            .await
            .expect("delivered");
    }

    let mut members = Vec::new();
    for _ in 0..2 {
        let mut config = ShareConsumerConfig::new(cluster.bootstrap(), "share-rs-g");
        config.max_records = 10;
        let mut c = ShareConsumer::new(config).await.expect("share consumer");
        c.subscribe(&["share-rs"]);
        members.push(c);
    }
    let mut accepted: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_member = [0usize; 2];
    let mut released: Vec<i16> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while accepted.len() < 200 {
        assert!(
            Instant::now() < deadline,
            "accepted {} of 200",
            accepted.len()
        );
        for (i, c) in members.iter_mut().enumerate() {
            let records = c.poll(Duration::from_millis(300)).await.expect("poll");
            for r in &records {
                let v = String::from_utf8_lossy(r.record.value.as_deref().unwrap_or_default())
                    .into_owned();
                per_member[i] += 1;
                if v == "v5" && r.delivery_count == 1 {
                    released.push(r.delivery_count);
                    c.acknowledge(r, AckType::Release);
                    continue;
                }
                if v == "v5" {
                    released.push(r.delivery_count);
                }
                assert!(
                    accepted.insert(v.clone(), i).is_none(),
                    "{v} accepted twice"
                );
                c.acknowledge(r, AckType::Accept);
            }
            // Member 0 waits for its acknowledgements, member 1 does not.
            if i == 0 {
                for (tp, err) in c.commit_sync().await.expect("commit") {
                    assert!(err.is_none(), "{tp:?}: {err:?}");
                }
            } else {
                c.commit_async().await.expect("commit_async");
            }
        }
    }
    assert_eq!(released, vec![1, 2], "v5's deliveries");
    // The asynchronous acknowledgements land too: the quorum's state passes every record.
    dmq::procs::wait_until(
        Duration::from_secs(20),
        "every acknowledgement committed",
        || async {
            let (_, v) = cluster
                .get(
                    leader,
                    "/api/v1/metadata/share-groups/share-rs-g?consistent=true",
                )
                .await?;
            (v["partitions"][0]["snapshot"]["startOffset"] == 200).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        per_member.iter().all(|n| *n > 0),
        "a member got nothing: {per_member:?}"
    );

    let describe = Command::new(env!("CARGO_BIN_EXE_dmq"))
        .args(["share", "describe", "share-rs-g", "--output", "json"])
        .env("DMQ_BOOTSTRAP", cluster.bootstrap())
        .env("DMQ_METADATA", cluster.url(leader))
        .output()
        .expect("dmq share describe");
    assert!(describe.status.success(), "{describe:?}");
    let d: serde_json::Value = serde_json::from_slice(&describe.stdout).expect("json");
    assert_eq!(d["members"].as_array().map(Vec::len), Some(2), "{d}");
    assert!(
        d["members"][0]["clientHost"]
            .as_str()
            .is_some_and(|h| h.starts_with("/127.0.0.1")),
        "{d}"
    );
    assert_eq!(d["config"]["share.auto.offset.reset"], "earliest", "{d}");
    assert_eq!(d["partitions"][0]["counts"]["startOffset"], 200, "{d}");
    assert_eq!(
        d["partitions"][0]["counts"]["acknowledgedTotal"], 200,
        "{d}"
    );
    assert_eq!(d["stored"][0]["snapshot"]["startOffset"], 200, "{d}");
    for c in members {
        c.close().await.expect("close");
    }

    // An administrator's reset (what AlterShareGroupOffsets commits: the next state epoch)
    // reaches the leader that holds the share-partition loaded: a new member gets 190..=199.
    let state_epoch = d["stored"][0]["snapshot"]["stateEpoch"]
        .as_i64()
        .unwrap_or(0);
    let leader_epoch = common::topic_partitions(&cluster, "share-rs")
        .await
        .expect("partitions")[0]["leaderEpoch"]
        .clone();
    let body = serde_json::json!({"writes": [{
        "group": "share-rs-g", "topic": "share-rs", "partition": 0, "leaderEpoch": leader_epoch,
        "snapshot": {"version": 1, "stateEpoch": state_epoch + 1, "startOffset": 190,
                     "endOffset": 190, "stateBatches": []}}]});
    let (status, written) = post_leader(&cluster, "/api/v1/metadata/share-states", &body).await;
    assert_eq!(
        (status, &written["written"]),
        (200, &serde_json::json!(1)),
        "{written}"
    );
    let mut config = ShareConsumerConfig::new(cluster.bootstrap(), "share-rs-g");
    config.max_records = 50;
    let mut again = ShareConsumer::new(config).await.expect("share consumer");
    again.subscribe(&["share-rs"]);
    let mut offsets = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while offsets.len() < 10 {
        assert!(Instant::now() < deadline, "after the reset: {offsets:?}");
        for r in again.poll(Duration::from_millis(300)).await.expect("poll") {
            offsets.push(r.record.offset);
            again.acknowledge(&r, AckType::Accept);
        }
    }
    again.commit_sync().await.expect("commit");
    assert_eq!(offsets, (190..200).collect::<Vec<i64>>());
    again.close().await.expect("close");

    let consume = Command::new(env!("CARGO_BIN_EXE_dmq"))
        .args(["share", "consume", "share-rs", "--group", "share-cli-g"])
        .args(["--max", "5", "--output", "json", "--timeout-ms", "20000"])
        .env("DMQ_BOOTSTRAP", cluster.bootstrap())
        .env("DMQ_METADATA", cluster.url(leader))
        .output()
        .expect("dmq share consume");
    assert!(consume.status.success(), "{consume:?}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&consume.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(lines.iter().all(|l| l["deliveryCount"] == 1), "{lines:?}");
}

/// The reference Java client's `KafkaShareConsumer` (kafka-clients 4.1) with its Admin client:
/// tests/interop/java/ShareCheck.java.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_java_share_consumer_shares_a_partition_and_acknowledges_each_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let mut cmd = Command::new("java");
    cmd.arg("-cp")
        .arg(format!("{}/*", common::judges_lib().display()))
        .arg("tests/interop/java/ShareCheck.java")
        .args([&cluster.bootstrap(), "share-java", "share-java-g"]);
    let out = run_interop(cmd).await;
    print!("{out}");
    assert!(out.contains("OK java-share config:"), "{out}");
    assert!(out.contains("OK java-share consume:"), "{out}");
}
