//! Bad input answers a clear 4xx JSON error (or a clear start-up error) and changes nothing.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_quorum(dir.path(), long_sessions());
    register_brokers(&cluster, &[101]).await;
    create_topic(&cluster, "dup", 1, 1).await;
    let leader = cluster
        .wait_for_leader(Duration::from_secs(3))
        .await
        .expect("leader");
    let url = cluster.url(leader);
    let http = dmq_types::https::client();
    // What the quorum holds (brokers, topics, configs), without the version: a leader elected
    // meanwhile (a start-up election settling) commits a blank entry, which changes nothing.
    let image = || async {
        let (status, v) = cluster
            .get(leader, "/api/v1/metadata/cluster?consistent=true")
            .await
            .expect("cluster");
        assert_eq!(status, 200, "{v}");
        json!({"brokers": v["brokers"], "topics": v["topics"], "brokerConfigs": v["brokerConfigs"]})
    };
    let before = image().await;

    let long_name = "x".repeat(250);
    let huge = "y".repeat(2 * 1024 * 1024);
    let posts: Vec<(&str, String, u16, &str)> = vec![
        (
            "malformed JSON",
            "{\"topicName\": ".into(),
            400,
            "INVALID_REQUEST",
        ),
        ("not an object", "[1,2]".into(), 400, "INVALID_REQUEST"),
        (
            "space in name",
            json!({"topicName": "a b", "numPartitions": 1}).to_string(),
            400,
            "INVALID_TOPIC_EXCEPTION",
        ),
        (
            "empty name",
            json!({"topicName": "", "numPartitions": 1}).to_string(),
            400,
            "INVALID_TOPIC_EXCEPTION",
        ),
        (
            "dot",
            json!({"topicName": ".", "numPartitions": 1}).to_string(),
            400,
            "INVALID_TOPIC_EXCEPTION",
        ),
        (
            "dotdot",
            json!({"topicName": "..", "numPartitions": 1}).to_string(),
            400,
            "INVALID_TOPIC_EXCEPTION",
        ),
        (
            "250 chars",
            json!({"topicName": long_name, "numPartitions": 1}).to_string(),
            400,
            "INVALID_TOPIC_EXCEPTION",
        ),
        (
            "slash",
            json!({"topicName": "a/b", "numPartitions": 1}).to_string(),
            400,
            "INVALID_TOPIC_EXCEPTION",
        ),
        (
            "0 partitions",
            json!({"topicName": "p", "numPartitions": 0}).to_string(),
            400,
            "INVALID_PARTITIONS",
        ),
        (
            "10001 partitions",
            json!({"topicName": "p", "numPartitions": 10001}).to_string(),
            400,
            "INVALID_PARTITIONS",
        ),
        (
            "string partitions",
            json!({"topicName": "p", "numPartitions": "3"}).to_string(),
            400,
            "INVALID_REQUEST",
        ),
        (
            "rf 0",
            json!({"topicName": "p", "numPartitions": 1, "replicationFactor": 0}).to_string(),
            400,
            "INVALID_REPLICATION_FACTOR",
        ),
        (
            "rf above ONLINE",
            json!({"topicName": "p", "numPartitions": 1, "replicationFactor": 2}).to_string(),
            400,
            "INVALID_REPLICATION_FACTOR",
        ),
        (
            "duplicate",
            json!({"topicName": "dup", "numPartitions": 1, "replicationFactor": 1}).to_string(),
            409,
            "ALREADY_EXISTS",
        ),
        (
            "2 MiB body",
            json!({"topicName": "p", "pad": huge}).to_string(),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "9 MiB body (over the framework's limit)",
            json!({"topicName": "p", "pad": "y".repeat(9 * 1024 * 1024)}).to_string(),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            // Still being sent when the answer is ready: read and dropped first, so the client
            // gets the 413 and not a connection reset.
            "101 MiB body",
            json!({"topicName": "p", "pad": "y".repeat(101 * 1024 * 1024)}).to_string(),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (what, body, status, code) in posts {
        // A leadership change while the suite loads the machine is not what this test is
        // about: a NOT_LEADER answer is sent again to the leader of the moment.
        let mut target = url.clone();
        let (got, json) = loop {
            let resp = http
                .post(format!("{target}/api/v1/metadata/topics"))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("answer");
            let got = resp.status().as_u16();
            let json: Value = resp.json().await.unwrap_or(Value::Null);
            if got != 503 || json["error"] != "NOT_LEADER" {
                break (got, json);
            }
            let leader = cluster
                .wait_for_leader(Duration::from_secs(10))
                .await
                .expect("a leader again");
            target = cluster.url(leader);
        };
        assert_eq!(
            (got, json["error"].as_str()),
            (status, Some(code)),
            "{what}: {json}"
        );
        assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {json}"
        );
    }
    // A client that asks before sending (Expect: 100-continue) is told at once and never
    // has to send the body.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = url.trim_start_matches("http://").to_string();
        let mut tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let head = format!(
            "POST /api/v1/metadata/topics HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\
             Expect: 100-continue\r\n\r\n",
            101 * 1024 * 1024
        );
        tcp.write_all(head.as_bytes()).await.expect("send head");
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("PAYLOAD_TOO_LARGE") {
            let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
                .await
                .expect("an answer without the body")
                .expect("read");
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 413") && answer.contains("PAYLOAD_TOO_LARGE"),
            "{answer}"
        );
    }
    let (_, _, rf) = cluster
        .post(
            leader,
            "/api/v1/metadata/topics",
            &json!({"topicName": "p", "numPartitions": 1, "replicationFactor": 2}),
        )
        .await
        .expect("answer");
    assert!(
        rf["message"].as_str().unwrap_or("").contains("ONLINE"),
        "clear RF message: {rf}"
    );

    let checks: Vec<(reqwest::Method, &str, u16)> = vec![
        (reqwest::Method::GET, "/api/v1/metadata/topics/nope", 404),
        (reqwest::Method::DELETE, "/api/v1/metadata/topics/nope", 404),
        (reqwest::Method::GET, "/api/v1/metadata/brokers/999", 404),
        (reqwest::Method::GET, "/api/v1/metadata/brokers/abc", 400),
        (reqwest::Method::POST, "/api/v1/metadata/heartbeat/999", 404),
        (reqwest::Method::POST, "/api/v1/metadata/heartbeat/-5", 400),
        (reqwest::Method::GET, "/api/v1/no/such/path", 404),
        (reqwest::Method::PUT, "/api/v1/metadata/topics", 405),
    ];
    for (method, path, status) in checks {
        let resp = http
            .request(method.clone(), format!("{url}{path}"))
            .send()
            .await
            .expect("answer");
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        let json: Value = resp.json().await.expect("JSON error body");
        assert!(json["error"].is_string(), "{method} {path}: {json}");
    }
    let bad_register = [
        json!({"brokerId": -1, "host": "h", "port": 1}),
        json!({"brokerId": 5, "host": "", "port": 1}),
        json!({"brokerId": 5, "host": "h", "port": 70000}),
        json!({"host": "h", "port": 1}),
        json!({"brokerId": 5, "host": "h", "port": 1, "kafkaPort": 0}),
        json!({"brokerId": 5, "host": "h", "port": 7, "kafkaPort": 7}),
        json!({"brokerId": 5, "host": "h".repeat(300 * 1024), "port": 1}),
        json!({"brokerId": 5, "host": "a\nb", "port": 1}),
        json!({"brokerId": 5, "host": "a b", "port": 1}),
        json!({"brokerId": 5, "host": "h", "port": 1, "incarnationId": ""}),
    ];
    for body in bad_register {
        let (status, _, json) = cluster
            .post(leader, "/api/v1/metadata/brokers", &body)
            .await
            .expect("answer");
        assert_eq!(
            status,
            400,
            "{}: {json}",
            &body.to_string()[..80.min(body.to_string().len())]
        );
        assert_eq!(json["error"], "INVALID_REQUEST", "{json}");
    }
    // Kafka's DUPLICATE_BROKER_REGISTRATION: another ONLINE broker's address, or a live
    // broker's id from another process at another address. Nothing is overwritten.
    let (_, b101) = cluster
        .get(leader, "/api/v1/metadata/brokers/101")
        .await
        .expect("broker 101");
    let port = b101["port"].as_u64().expect("port");
    let duplicates = [
        json!({"brokerId": 7, "host": "127.0.0.1", "port": port}),
        json!({"brokerId": 7, "host": "127.0.0.1", "port": 9, "kafkaPort": 2101}),
        json!({"brokerId": 101, "host": "127.0.0.1", "port": 1234, "kafkaPort": 1235,
               "incarnationId": "another-process"}),
    ];
    for body in duplicates {
        let (status, _, json) = cluster
            .post(leader, "/api/v1/metadata/brokers", &body)
            .await
            .expect("answer");
        assert_eq!(
            (status, json["error"].as_str()),
            (409, Some("DUPLICATE_BROKER_REGISTRATION")),
            "{body}: {json}"
        );
    }
    let (_, after) = cluster
        .get(leader, "/api/v1/metadata/brokers/101")
        .await
        .expect("broker 101");
    assert_eq!(after["port"], b101["port"], "address kept: {after}");
    // Unregistering: an ONLINE broker cannot go; an unknown one is not found.
    for (path, status, code) in [
        ("/api/v1/metadata/brokers/101", 409, "BROKER_IN_USE"),
        ("/api/v1/metadata/brokers/999", 404, "NOT_FOUND"),
        ("/api/v1/metadata/brokers/x", 400, "INVALID_REQUEST"),
    ] {
        let r = http
            .delete(format!("{url}{path}"))
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status().as_u16(), status, "{path}");
        let json: Value = r.json().await.expect("JSON");
        assert_eq!(json["error"], code, "{path}: {json}");
    }

    // Growing a topic (CreatePartitions): "dup" has 1 partition, RF 1, on broker 101.
    let grow = [
        (
            "dup",
            json!({"numPartitions": 1}),
            400,
            "larger than the current 1",
        ),
        (
            "dup",
            json!({"numPartitions": 0}),
            400,
            "larger than the current",
        ),
        ("dup", json!({"numPartitions": 10001}), 400, "1..=10000"),
        ("dup", json!({"numPartitions": "2"}), 400, "expected i64"),
        (
            "dup",
            json!({"numPartitions": 2, "assignment": [[101], [101]]}),
            400,
            "lists 2 partitions, but 1",
        ),
        (
            "dup",
            json!({"numPartitions": 2, "assignment": [[101, 101]]}),
            400,
            "1 distinct brokers",
        ),
        (
            "dup",
            json!({"numPartitions": 2, "assignment": [[999]]}),
            400,
            "broker 999 is not registered",
        ),
        (
            "dup",
            json!({"numPartitions": 2, "extra": 1}),
            400,
            "unknown field",
        ),
        ("nope", json!({"numPartitions": 2}), 404, "does not exist"),
    ];
    for (topic, body, status, says) in grow {
        let path = format!("/api/v1/metadata/topics/{topic}/partitions");
        let (got, _, json) = cluster.post(leader, &path, &body).await.expect("answer");
        assert_eq!(got, status, "{body}: {json}");
        let message = json["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{body}: {message}");
    }
    // validateOnly answers what the topic would become, and changes nothing.
    let (got, _, preview) = cluster
        .post(
            leader,
            "/api/v1/metadata/topics/dup/partitions",
            &json!({"numPartitions": 3, "validateOnly": true}),
        )
        .await
        .expect("answer");
    assert_eq!(got, 200, "{preview}");
    assert_eq!(preview["numPartitions"], 3, "{preview}");

    let after = image().await;
    assert_eq!(before, after, "bad input committed nothing");
    let (_, dup) = cluster
        .get(leader, "/api/v1/metadata/topics/dup")
        .await
        .expect("topic");
    assert_eq!(dup["numPartitions"], 1, "{dup}");
    let (_, topics) = cluster
        .get(leader, "/api/v1/metadata/topics")
        .await
        .expect("topics");
    assert_eq!(topics.as_array().map(Vec::len), Some(1));
}

fn run_with_config(dir: &std::path::Path, text: &str, node: &str) -> (Option<i32>, String) {
    let path = dir.join("services.json");
    std::fs::write(&path, text).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_dmq"))
        .args(["metadata", "--node-id", node, "--config"])
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .output()
        .expect("run dmq");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_services_json_stops_start_up_with_one_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let duplicate_port = r#"{"services":{"metadata-services":[
        {"id":1,"host":"127.0.0.1","port":1},{"id":2,"host":"127.0.0.1","port":1}]}}"#;
    let (code, err) = run_with_config(dir.path(), duplicate_port, "1");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("port 1 on 127.0.0.1 is used by both metadata node 1 and metadata node 2"),
        "{err}"
    );

    let (code, err) = run_with_config(dir.path(), "{\"services\": {", "1");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("malformed"), "{err}");

    let ok = r#"{"services":{"metadata-services":[{"id":1,"host":"127.0.0.1","port":1}]}}"#;
    let (code, err) = run_with_config(dir.path(), ok, "7");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("metadata node id 7 is not listed"), "{err}");
}

/// Transaction changes (the brokers' transaction coordinators' internal API): malformed ops
/// are 400s, refusals name Kafka's error, and a refused op changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_changes_are_checked_and_refusals_name_kafka_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_quorum(dir.path(), long_sessions());
    register_brokers(&cluster, &[101]).await;
    create_topic(&cluster, "out", 2, 1).await;
    let leader = cluster
        .wait_for_leader(Duration::from_secs(3))
        .await
        .expect("leader");
    let url = format!("{}/api/v1/metadata/transactions", cluster.url(leader));
    let http = dmq_types::https::client();
    let post = |body: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("POST");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let init = |timeout: i64| {
        json!({"op": "INIT", "transactionalId": "t1", "timeoutMs": timeout,
               "producerId": -1, "producerEpoch": -1, "nowMs": 1})
        .to_string()
    };
    let add = |partition: i32, epoch: i32| {
        json!({"op": "ADD_PARTITIONS", "transactionalId": "t1", "producerId": 0,
               "producerEpoch": epoch, "partitions": [{"topic": "out", "partition": partition}],
               "nowMs": 2})
        .to_string()
    };
    let refusals: Vec<(&str, String, u16, &str)> = vec![
        ("malformed", "{\"op\": ".into(), 400, "INVALID_REQUEST"),
        (
            "unknown op",
            json!({"op": "FLY", "transactionalId": "t1"}).to_string(),
            400,
            "INVALID_REQUEST",
        ),
        (
            "no producer id yet",
            add(0, 0),
            409,
            "INVALID_PRODUCER_ID_MAPPING",
        ),
        (
            "timeout too long",
            init(15 * 60 * 1000 + 1),
            400,
            "INVALID_TRANSACTION_TIMEOUT",
        ),
        ("timeout zero", init(0), 400, "INVALID_TRANSACTION_TIMEOUT"),
    ];
    for (what, body, status, code) in &refusals {
        let (got, v) = post(body.clone()).await;
        assert_eq!(
            (got, v["error"].as_str()),
            (*status, Some(*code)),
            "{what}: {v}"
        );
    }
    let (status, v) = post(init(60_000)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["producerEpoch"].as_i64(), v["status"].as_str()),
        (Some(0), Some("Empty"))
    );
    let pid = v["producerId"].as_i64().expect("producer id");
    let add = |partition: i32, epoch: i32| {
        json!({"op": "ADD_PARTITIONS", "transactionalId": "t1", "producerId": pid,
               "producerEpoch": epoch, "partitions": [{"topic": "out", "partition": partition}],
               "nowMs": 2})
        .to_string()
    };
    let (status, v) = post(add(2, 0)).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("UNKNOWN_TOPIC_OR_PARTITION")),
        "{v}"
    );
    let (status, v) = post(add(1, 1)).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("PRODUCER_FENCED")),
        "{v}"
    );
    let got = http
        .get(format!("{url}/t1?consistent=true"))
        .send()
        .await
        .expect("GET");
    let t: Value = got.json().await.expect("json");
    assert_eq!(t["status"], "Empty", "refusals changed nothing: {t}");
    let (status, v) = post(add(1, 0)).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("Ongoing")),
        "{v}"
    );
    let unknown = http.get(format!("{url}/nope")).send().await.expect("GET");
    assert_eq!(unknown.status().as_u16(), 404);
    let list: Value = http
        .get(&url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(list["transactions"][0]["transactionalId"], "t1", "{list}");
}
