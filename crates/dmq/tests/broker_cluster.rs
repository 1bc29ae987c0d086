//! Brokers as real processes in a real cluster: durability across SIGKILL, life through a
//! controller switch, the storage HTTP API, and bad input on the Kafka port.

mod common;

use std::io::Write as _;
use std::time::Duration;

use common::kafka::{batch, connect, fetch_all, fetch_once, produce};
use common::{post_leader, process_logs, start_cluster, wait_for_log};
use dmq::procs::{wait_until, MetadataCluster};
use serde_json::{json, Value};

/// Creates a topic and waits until every partition's leader serves it; returns the leaders.
async fn create_and_wait(
    cluster: &MetadataCluster,
    topic: &str,
    partitions: i32,
    rf: i32,
    config: Value,
) -> Vec<i32> {
    let body = json!({"topicName": topic, "numPartitions": partitions, "replicationFactor": rf, "config": config});
    let (status, created) = post_leader(cluster, "/api/v1/metadata/topics", &body).await;
    assert_eq!(status, 201, "{created}");
    let leaders: Vec<i32> = created["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["leader"].as_i64().expect("leader") as i32)
        .collect();
    for (p, leader) in leaders.iter().enumerate() {
        wait_until(
            Duration::from_secs(20),
            "partition leader ready",
            || async move {
                let (_, v) = cluster
                    .broker_get(*leader, "/api/v1/storage/replication/status")
                    .await?;
                v["partitions"]
                    .as_array()?
                    .iter()
                    .any(|x| {
                        x["topic"] == topic && x["partition"] == p as i64 && x["role"] == "LEADER"
                    })
                    .then_some(())
            },
        )
        .await
        .expect("leader ready");
    }
    leaders
}

fn records(prefix: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("{prefix}-k{i}"), format!("{prefix}-v{i}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_brokers_serve_every_acknowledged_record_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = start_cluster(dir.path(), 3, 3).await;
    let topic = "durable";
    let leaders = create_and_wait(&cluster, topic, 3, 3, json!({})).await;
    let mut acked: Vec<Vec<(i64, String, String)>> = vec![Vec::new(); 3];
    for (p, leader) in leaders.iter().enumerate() {
        let mut conn = connect(&cluster.kafka_addr(*leader)).await;
        for b in 0..50 {
            let recs = records(&format!("p{p}b{b}"), 20);
            let r = produce(&mut conn, topic, p as i32, batch(&recs, None), -1).await;
            assert_eq!(r.error_code, 0, "produce p{p} b{b}: {:?}", r.error_message);
            for (i, (k, v)) in recs.into_iter().enumerate() {
                acked[p].push((r.base_offset + i as i64, k, v));
            }
        }
    }
    for id in cluster.broker_ids() {
        cluster.kill_broker(id);
    }
    // A torn write at the end of one replica's active segment: recovery must cut it off.
    let seg = cluster
        .broker_data_dir(leaders[0])
        .join(format!("{topic}-0"))
        .join(format!("{:020}.log", 0));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .expect("segment");
    f.write_all(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 200, 0xde, 0xad])
        .expect("torn tail");
    drop(f);
    for id in cluster.broker_ids() {
        cluster.start_broker(id).expect("restart broker");
    }
    cluster
        .wait_for_brokers(Duration::from_secs(30))
        .await
        .expect("brokers back");
    for (p, want) in acked.iter().enumerate() {
        // Restarted brokers register anew and leave the ISRs that still have a registered peer
        // (KIP-903), so leaderships may have moved: read from whoever leads now, once the high
        // watermark is back (after the followers have fetched again).
        let got = wait_until(
            Duration::from_secs(30),
            "every acknowledged record",
            || async {
                let leader = current_leader(&cluster, topic, p).await?;
                let mut conn = connect(&cluster.kafka_addr(leader)).await;
                let (code, hw, _) = fetch_once(&mut conn, topic, p as i32, 0).await;
                if code != 0 || hw < want.len() as i64 {
                    return None;
                }
                Some(fetch_all(&mut conn, topic, p as i32).await)
            },
        )
        .await
        .unwrap_or_else(|e| panic!("partition {p}: {e}\n{}", process_logs(dir.path())));
        assert_eq!(&got, want, "partition {p} after restart");
    }
}

/// The leader of `topic`-`partition` as the quorum has it.
async fn current_leader(cluster: &MetadataCluster, topic: &str, partition: usize) -> Option<i32> {
    let node = cluster.leader().await?;
    let (status, t) = cluster
        .get(
            node,
            &format!("/api/v1/metadata/topics/{topic}?consistent=true"),
        )
        .await?;
    if status != 200 {
        return None;
    }
    let leader = t["partitions"][partition]["leader"].as_i64()? as i32;
    (leader >= 0).then_some(leader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_follow_a_controller_switch_without_restarting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = start_cluster(dir.path(), 3, 3).await;
    for id in cluster.broker_ids() {
        wait_for_log(
            &cluster,
            id,
            "discovered the controller",
            Duration::from_secs(5),
        )
        .await;
        wait_for_log(
            &cluster,
            id,
            "registered with the controller",
            Duration::from_secs(5),
        )
        .await;
    }
    let old = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    cluster.kill(old);
    let new = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .expect("new leader");
    assert_ne!(old, new);
    // Whichever way a broker learns of it first (the new controller's push, a heartbeat's
    // answer or rediscovery after failed heartbeats), it logs "controller switched".
    for id in cluster.broker_ids() {
        wait_for_log(&cluster, id, "controller switched", Duration::from_secs(15)).await;
    }
    // Admin requests forwarded by a broker reach the new controller, and data flows.
    let leaders = create_and_wait(&cluster, "after-switch", 1, 3, json!({})).await;
    let mut conn = connect(&cluster.kafka_addr(leaders[0])).await;
    let r = produce(
        &mut conn,
        "after-switch",
        0,
        batch(&records("x", 5), None),
        -1,
    )
    .await;
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    // Every broker keeps heartbeating the new controller: none is fenced.
    let (status, brokers) = cluster
        .get(new, "/api/v1/metadata/brokers")
        .await
        .expect("brokers");
    assert_eq!(status, 200);
    for b in brokers.as_array().expect("array") {
        assert_eq!(b["status"], "ONLINE", "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_produces_consumes_and_rejects_bad_requests_with_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let leaders = create_and_wait(&cluster, "web", 1, 3, json!({})).await;
    let leader = leaders[0];
    let follower = cluster
        .broker_ids()
        .into_iter()
        .find(|b| *b != leader)
        .expect("follower");
    let http = dmq_types::https::client();
    let url =
        |b: i32, rest: &str| format!("{}/api/v1/storage/topics/{rest}", cluster.broker_url(b));

    let r = http
        .post(url(leader, "web/partitions/0"))
        .json(&json!({"key": "k1", "value": "hello", "headers": {"h": "v"}}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        (
            v["topic"].as_str(),
            v["partition"].as_i64(),
            v["baseOffset"].as_i64()
        ),
        (Some("web"), Some(0), Some(0))
    );
    assert!(v["logAppendTime"].as_i64().is_some());

    let binary = json!({"records": [
        {"key": "AAE=", "value": "/w==", "encoding": "base64"},
        {"key": null, "value": "plain", "timestamp": 1234}
    ]});
    let r = http
        .post(url(leader, "web/partitions/0?acks=1"))
        .json(&binary)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json")["baseOffset"], 1);

    let got = wait_until(
        Duration::from_secs(10),
        "3 records below the high watermark",
        || async {
            let v: Value = http
                .get(url(leader, "web/partitions/0?offset=0&limit=10"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (v["records"].as_array()?.len() == 3).then_some(v)
        },
    )
    .await
    .expect("consume");
    let recs = got["records"].as_array().expect("records");
    assert_eq!(recs[0]["value"], "hello");
    assert_eq!(recs[0]["headers"]["h"], "v");
    assert_eq!(recs[1]["encoding"], "base64");
    assert_eq!(recs[1]["key"], "AAE=");
    assert_eq!(recs[1]["value"], "/w==");
    assert_eq!(recs[2]["key"], Value::Null);
    assert_eq!(recs[2]["timestamp"], 1234);
    assert_eq!(got["highWatermark"], 3);
    assert_eq!(got["nextOffset"], 3);

    // A follower redirects to the leader.
    let r = http
        .post(url(follower, "web/partitions/0"))
        .json(&json!({"value": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 503);
    let leader_hdr = r
        .headers()
        .get("X-Partition-Leader")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    assert_eq!(
        leader_hdr.as_deref(),
        Some(cluster.broker_url(leader).as_str())
    );
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"],
        "NOT_LEADER_OR_FOLLOWER"
    );

    // Bad input: clear JSON errors, and nothing is appended.
    let cases: Vec<(String, Value, u16, &str)> = vec![
        (
            url(leader, "nope/partitions/0"),
            json!({"value": "x"}),
            404,
            "UNKNOWN_TOPIC_OR_PARTITION",
        ),
        (
            url(leader, "web/partitions/7"),
            json!({"value": "x"}),
            404,
            "UNKNOWN_TOPIC_OR_PARTITION",
        ),
        (
            url(leader, "web/partitions/0?acks=7"),
            json!({"value": "x"}),
            400,
            "INVALID_REQUEST",
        ),
        (
            url(leader, "web/partitions/0"),
            json!({"records": []}),
            400,
            "INVALID_REQUEST",
        ),
        (
            url(leader, "web/partitions/0"),
            json!({"value": 12}),
            400,
            "INVALID_REQUEST",
        ),
        (
            url(leader, "web/partitions/0"),
            json!({"value": "!!", "encoding": "base64"}),
            400,
            "INVALID_REQUEST",
        ),
        (
            url(leader, "bad*name/partitions/0"),
            json!({"value": "x"}),
            400,
            "INVALID_TOPIC_EXCEPTION",
        ),
    ];
    for (u, body, status, code) in cases {
        let r = http.post(&u).json(&body).send().await.expect("post");
        assert_eq!(r.status().as_u16(), status, "{u} {body}");
        assert_eq!(
            r.json::<Value>().await.expect("json")["error"],
            code,
            "{u} {body}"
        );
    }
    let r = http
        .post(url(leader, "web/partitions/0"))
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    // The framework's own refusals are the same JSON: a body over the limit.
    let huge = format!("{{\"value\": \"{}\"}}", "z".repeat(3 * 1024 * 1024));
    let r = http
        .post(url(leader, "web/partitions/0"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.expect("a JSON 413");
    assert_eq!(body["error"], "PAYLOAD_TOO_LARGE", "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let r = http
        .get(url(leader, "web/partitions/0?offset=99"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"],
        "OFFSET_OUT_OF_RANGE"
    );
    let v: Value = http
        .get(url(leader, "web/partitions/0?offset=0"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        v["highWatermark"], 3,
        "a rejected request appended something: {v}"
    );

    // Replication status on the leader shows both followers caught up.
    wait_until(Duration::from_secs(10), "followers caught up", || async {
        let (_, v) = cluster
            .broker_get(leader, "/api/v1/storage/replication/status")
            .await?;
        let p = v["partitions"]
            .as_array()?
            .iter()
            .find(|p| p["topic"] == "web")?
            .clone();
        let f = p["followers"].as_array()?;
        (f.len() == 2 && f.iter().all(|x| x["lag"] == 0)).then_some(())
    })
    .await
    .expect("status");
    let text = http
        .get(format!("{}/metrics", cluster.broker_url(leader)))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains("kafka_server_brokertopicmetrics_messages_in_total{topic=\"web\"} 3"),
        "{text}"
    );
    // HTTP latency per route template (not per raw path), method and status.
    assert!(
        text.contains(
            "http_server_request_duration_seconds_bucket{method=\"POST\",\
             route=\"/api/v1/storage/topics/{topic}/partitions/{partition}\",status=\"200\",le=\"+Inf\"}"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_apis_describe_and_delete_topics_and_acks_zero_and_one_append() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::{
        DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let leaders =
        create_and_wait(&cluster, "admin", 2, 3, json!({"retention.ms": "3600000"})).await;
    let mut conn = connect(&cluster.kafka_addr(leaders[0])).await;

    // acks=1 answers after the leader's append; acks=0 gets no answer at all, yet appends.
    let r = produce(&mut conn, "admin", 0, batch(&records("one", 3), None), 1).await;
    assert_eq!((r.error_code, r.base_offset), (0, 0));
    {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::ProduceRequest;
        use kafka_protocol::protocol::Encodable;
        let req = ProduceRequest::default()
            .with_acks(0)
            .with_timeout_ms(1000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(common::kafka::name("admin"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(&records("zero", 2), None).into()))])]);
        let sent = tokio::time::timeout(
            Duration::from_millis(500),
            conn.send_raw(0, 9, |b| req.encode(b, 9), Duration::ZERO),
        )
        .await;
        assert!(
            sent.is_err() || sent.is_ok_and(|r| r.is_err()),
            "acks=0 must not be answered"
        );
    }
    let mut conn = connect(&cluster.kafka_addr(leaders[0])).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, hw, _) = common::kafka::fetch_once(&mut conn, "admin", 0, 0).await;
        if hw == 5 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "acks=0 batch never became visible (hw {hw})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // DescribeConfigs: explicit topic config, Kafka defaults for the rest; unknown topics fail.
    let req = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name("admin".into()),
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name("ghost".into()),
    ]);
    let resp = conn
        .send(&req, 4, Duration::from_secs(5))
        .await
        .expect("describe configs");
    let admin = &resp.results[0];
    assert_eq!(admin.error_code, 0);
    let get = |k: &str| {
        admin
            .configs
            .iter()
            .find(|c| c.name.as_str() == k)
            .map(|c| (c.value.as_ref().map(|v| v.to_string()), c.config_source))
    };
    assert_eq!(get("retention.ms"), Some((Some("3600000".into()), 1)));
    assert_eq!(get("cleanup.policy"), Some((Some("delete".into()), 5)));
    assert_eq!(resp.results[1].error_code, 3);

    // DescribeCluster lists every broker.
    let resp = conn
        .send(
            &DescribeClusterRequest::default(),
            0,
            Duration::from_secs(5),
        )
        .await
        .expect("describe cluster");
    let mut ids: Vec<i32> = resp.brokers.iter().map(|b| b.broker_id.0).collect();
    ids.sort_unstable();
    assert_eq!(ids, cluster.broker_ids());

    // DeleteTopics removes the topic and, on every broker, its data.
    let req = DeleteTopicsRequest::default()
        .with_topic_names(vec![
            common::kafka::name("admin"),
            common::kafka::name("ghost"),
        ])
        .with_timeout_ms(10_000);
    let resp = conn
        .send(&req, 4, Duration::from_secs(15))
        .await
        .expect("delete topics");
    let codes: Vec<i16> = resp.responses.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![0, 3]);
    for id in cluster.broker_ids() {
        let dir0 = cluster.broker_data_dir(id).join("admin-0");
        wait_until(Duration::from_secs(10), "partition data deleted", || {
            let gone = !dir0.exists();
            async move { gone.then_some(()) }
        })
        .await
        .expect("data deleted");
    }
}

/// `broker`'s log start offset of `topic`-0, as it reports it.
async fn log_start(cluster: &MetadataCluster, broker: i32, topic: &str) -> Option<i64> {
    let (_, v) = cluster
        .broker_get(broker, "/api/v1/storage/replication/status")
        .await?;
    v["partitions"]
        .as_array()?
        .iter()
        .find(|p| p["topic"] == topic)?["logStartOffset"]
        .as_i64()
}

/// Runs the `dmq` CLI against the cluster: (exit code, stdout, stderr).
fn cli(cluster: &MetadataCluster, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dmq"))
        .args(args)
        .arg("--bootstrap")
        .arg(cluster.bootstrap())
        .output()
        .expect("run dmq");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// Kafka's DeleteRecords (kafka-delete-records, Streams' repartition purge): the log start
/// moves on the leader and every follower, consumers see it (earliest offset, out of range
/// below it), and it survives a SIGKILL of every broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_log_start_on_every_replica_and_survives_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = start_cluster(dir.path(), 3, 3).await;
    let topic = "purged";
    let leaders = create_and_wait(&cluster, topic, 1, 3, json!({})).await;
    let mut conn = connect(&cluster.kafka_addr(leaders[0])).await;
    for b in 0..10 {
        let r = produce(
            &mut conn,
            topic,
            0,
            batch(&records(&format!("b{b}"), 10), None),
            -1,
        )
        .await;
        assert_eq!(r.error_code, 0);
    }
    let (code, out, err) = cli(
        &cluster,
        &[
            "topic",
            "delete-records",
            topic,
            "--partition",
            "0",
            "--offset",
            "40",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "Partition purged-0 now starts at offset 40.");
    // Kafka's DeleteRecords answers once every live replica has moved its log start (the low
    // watermark in the answer is theirs): no waiting here.
    for b in cluster.broker_ids() {
        assert_eq!(
            log_start(&cluster, b, topic).await,
            Some(40),
            "broker {b}'s log start when the answer came"
        );
    }
    let (code, _, _) = fetch_once(&mut conn, topic, 0, 0).await;
    assert_eq!(code, 1, "OFFSET_OUT_OF_RANGE below the log start");
    let (code, _, fetched) = fetch_once(&mut conn, topic, 0, 40).await;
    assert_eq!((code, fetched.first().map(|r| r.0)), (0, Some(40)));
    // Past the high watermark: refused, nothing moves.
    let (code, _, err) = cli(
        &cluster,
        &["topic", "delete-records", topic, "--offset", "101"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("OFFSET_OUT_OF_RANGE"), "{err}");

    for id in cluster.broker_ids() {
        cluster.kill_broker(id);
    }
    for id in cluster.broker_ids() {
        cluster.start_broker(id).expect("restart");
    }
    cluster
        .wait_for_brokers(Duration::from_secs(30))
        .await
        .expect("brokers back");
    for b in cluster.broker_ids() {
        wait_until(Duration::from_secs(20), "log start kept", || async {
            (log_start(&cluster, b, topic).await? == 40).then_some(())
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "broker {b} after restart: {e}\n{}",
                process_logs(dir.path())
            )
        });
    }
    // -1: everything up to the high watermark.
    let (code, out, err) = wait_until(Duration::from_secs(20), "delete-records -1", || async {
        let r = cli(
            &cluster,
            &["topic", "delete-records", topic, "--offset", "-1"],
        );
        (r.0 == Some(0)).then_some(r)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "Partition purged-0 now starts at offset 100.");

    // A follower that was down while the log start moved past its log end gets
    // OFFSET_OUT_OF_RANGE with the leader's log start, starts over there and rejoins the ISR
    // (it used to be told -1 and retry forever).
    let leader = wait_until(Duration::from_secs(20), "a leader", || {
        current_leader(&cluster, topic, 0)
    })
    .await
    .expect("leader");
    let behind = cluster
        .broker_ids()
        .into_iter()
        .find(|b| *b != leader)
        .expect("a follower");
    cluster.kill_broker(behind);
    let mut conn = connect(&cluster.kafka_addr(leader)).await;
    for b in 0..10 {
        let r = produce(
            &mut conn,
            topic,
            0,
            batch(&records(&format!("c{b}"), 10), None),
            1,
        )
        .await;
        assert_eq!(r.error_code, 0);
    }
    // Once the dead follower is out of the ISR the high watermark reaches 200.
    wait_until(Duration::from_secs(30), "delete-records to 200", || async {
        let r = cli(
            &cluster,
            &["topic", "delete-records", topic, "--offset", "-1"],
        );
        (r.1 == "Partition purged-0 now starts at offset 200.").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", process_logs(dir.path())));
    cluster.start_broker(behind).expect("restart the follower");
    wait_until(
        Duration::from_secs(30),
        "the follower starts over",
        || async { (log_start(&cluster, behind, topic).await? == 200).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("broker {behind}: {e}\n{}", process_logs(dir.path())));
    wait_until(
        Duration::from_secs(30),
        "the follower rejoins the ISR",
        || async {
            let node = cluster.leader().await?;
            let (_, t) = cluster
                .get(node, &format!("/api/v1/metadata/topics/{topic}"))
                .await?;
            t["partitions"][0]["isr"]
                .as_array()?
                .iter()
                .any(|b| b.as_i64() == Some(i64::from(behind)))
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("broker {behind}: {e}\n{}", process_logs(dir.path())));
}

/// `cleanup.policy=compact` (issue: compaction never ran): the broker's cleaner keeps the last
/// record per key in sealed segments while consumers read on (offsets never move, the last
/// value of every key survives), compressed batches included, and a keyless record is refused
/// with INVALID_RECORD.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_shrinks_to_the_last_record_per_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 1, 1).await;
    let topic = "compacted";
    let leaders = create_and_wait(
        &cluster,
        topic,
        1,
        1,
        json!({"cleanup.policy": "compact", "segment.bytes": "16384"}),
    )
    .await;
    let mut conn = connect(&cluster.kafka_addr(leaders[0])).await;
    // Every batch compressed, each codec in turn: compressed batches are compacted too. The
    // values are hex noise, so that batches stay large and segments roll.
    let codecs = [
        dmq_log::codec::GZIP,
        dmq_log::codec::SNAPPY,
        dmq_log::codec::LZ4,
        dmq_log::codec::ZSTD,
    ];
    let mut noise = 0x9e37_79b9_7f4a_7c15u64;
    let mut pad = || -> String {
        (0..64)
            .map(|_| {
                noise = noise
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                format!("{:016x}", noise >> 1)
            })
            .collect()
    };
    for round in 0..20 {
        let recs: Vec<(String, String)> = (0..5)
            .map(|k| (format!("key{k}"), format!("round{round}-{}", pad())))
            .collect();
        let packed = dmq_log::codec::compress_batch(&batch(&recs, None), codecs[round % 4])
            .expect("compress");
        let r = produce(&mut conn, topic, 0, packed, -1).await;
        assert_eq!(r.error_code, 0, "round {round}: {:?}", r.error_message);
    }
    // A record without a key can never be compacted away: refused, nothing written.
    let mut keyless = dmq_log::RecordBatchBuilder::new(0);
    keyless.push(0, Some(b"key0"), Some(b"fine"), &[]);
    keyless.push(0, None, Some(b"no key"), &[]);
    let r = produce(&mut conn, topic, 0, keyless.build(), -1).await;
    assert_eq!(r.error_code, 87, "INVALID_RECORD: {:?}", r.error_message);

    // Read with the dmq client, which (like every Kafka client) steps over the batches the
    // cleaner emptied.
    let read_all = || async {
        let config = dmq_client::ConsumerConfig::new(cluster.bootstrap());
        let mut consumer = dmq_client::Consumer::new(config).await.ok()?;
        consumer.assign_topic(topic).await.ok()?;
        consumer.seek_all(dmq_client::Offset::Beginning);
        let mut all: Vec<(i64, String, String)> = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while all.last().map(|r| r.0) != Some(99) && std::time::Instant::now() < deadline {
            for r in consumer.poll(Duration::from_millis(200)).await.ok()? {
                let text = |b: Option<bytes::Bytes>| {
                    String::from_utf8_lossy(b.as_deref().unwrap_or_default()).into_owned()
                };
                all.push((r.offset, text(r.key), text(r.value)));
            }
        }
        Some(all)
    };
    let compacted = wait_until(Duration::from_secs(40), "the cleaner to run", || async {
        let all = read_all().await?;
        (all.len() < 100 && all.last().map(|r| r.0) == Some(99)).then_some(all)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", process_logs(dir.path())));
    let offsets: Vec<i64> = compacted.iter().map(|r| r.0).collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "offsets ascend: {offsets:?}"
    );
    assert_eq!(
        offsets.last(),
        Some(&99),
        "the newest record keeps its offset"
    );
    for k in 0..5 {
        let last = compacted
            .iter()
            .rev()
            .find(|r| r.1 == format!("key{k}"))
            .map(|r| r.2.split('-').next().unwrap_or_default().to_string());
        assert_eq!(
            last.as_deref(),
            Some("round19"),
            "key{k}'s last value survives"
        );
    }
    eprintln!("compacted from 100 to {} records", compacted.len());
}
