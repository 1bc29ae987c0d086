//! `/metrics` on real processes (SPEC §8): Kafka request latency histograms per API and HTTP
//! ones per route, per-topic bytes and records, replication gauges on brokers; Raft, the
//! controller's counts and consumer-group lag on the metadata nodes (one active controller);
//! and every series the shipped Grafana dashboard queries exists.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::kafka::{batch, connect, produce};
use common::{post_leader, start_cluster, wait_topic_on_brokers};
use dmq::procs::{wait_until, MetadataCluster};
use serde_json::{json, Value};

async fn scrape(url: &str) -> String {
    dmq_types::https::client()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of the first sample line starting with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Every metric family name in a Prometheus text exposition (histograms by their base name).
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The metric names a PromQL expression uses (identifiers followed by `{` or `[`, or bare
/// inside a function call).
fn promql_metrics(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if c == '"' {
            // Skip label values.
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += 1;
            }
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < bytes.len()
                && ((bytes[i] as char).is_ascii_alphanumeric() || bytes[i] == b'_')
            {
                i += 1;
            }
            let word = &expr[start..i];
            let next = expr[i..].trim_start().chars().next();
            let is_metric =
                (word.starts_with("kafka_") || word.starts_with("http_")) && next != Some('(');
            if is_metric {
                out.push(word.to_string());
            }
            continue;
        }
        i += 1;
    }
    out
}

async fn metadata_leader(cluster: &MetadataCluster) -> u64 {
    cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_export_kafka_named_metrics_and_the_dashboard_uses_only_real_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let body = json!({"topicName": "metered", "numPartitions": 1, "replicationFactor": 3});
    let (status, created) = post_leader(&cluster, "/api/v1/metadata/topics", &body).await;
    assert_eq!(status, 201, "{created}");
    wait_topic_on_brokers(&cluster, "metered", 1, 3).await;
    let leader = created["partitions"][0]["leader"].as_i64().expect("leader") as i32;
    let mut conn = connect(&cluster.kafka_addr(leader)).await;
    let records: Vec<(String, String)> = (0..10)
        .map(|i| (format!("k{i}"), format!("value {i}")))
        .collect();
    for _ in 0..5 {
        let r = produce(&mut conn, "metered", 0, batch(&records, None), -1).await;
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    }
    // A consumer group 20 records behind the end (committed through the HTTP offsets API
    // the brokers' coordinators use).
    let (status, answer) = post_leader(
        &cluster,
        "/api/v1/metadata/offsets",
        &json!({"commits": [{"groupId": "watchers", "topic": "metered", "partition": 0,
                              "offset": 30, "commitTimestamp": 1}]}),
    )
    .await;
    assert_eq!((status, &answer["committed"]), (200, &json!(1)), "{answer}");

    // The leader broker: Produce latency histogram, per-topic counters, gauges.
    let broker = cluster.broker_url(leader);
    let text = wait_until(
        Duration::from_secs(20),
        "the followers caught up",
        || async {
            let text = scrape(&broker).await;
            (sample(
                &text,
                "kafka_server_replicamanager_under_replicated_partitions ",
            ) == Some(0.0))
            .then_some(text)
        },
    )
    .await
    .expect("ISR full");
    for want in [
        "# TYPE kafka_request_latency_seconds histogram",
        "kafka_request_latency_seconds_bucket{request=\"Produce\",le=\"+Inf\"} 5",
        "kafka_request_latency_seconds_count{request=\"Produce\"} 5",
        "kafka_server_brokertopicmetrics_messages_in_total{topic=\"metered\"} 50",
        "kafka_server_replicamanager_leader_count 1",
        "kafka_server_replicamanager_partition_count 1",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    assert!(
        text.contains("kafka_request_latency_seconds_bucket{request=\"Fetch\""),
        "followers' fetches are timed:\n{text}"
    );
    let mut seen = families(&text);

    // A consumer's fetch counts bytes and records out.
    let (code, _, fetched) = common::kafka::fetch_once(&mut conn, "metered", 0, 0).await;
    assert_eq!(code, 0);
    assert!(!fetched.is_empty());
    let text = scrape(&broker).await;
    assert_eq!(
        sample(
            &text,
            "kafka_server_brokertopicmetrics_messages_out_total{topic=\"metered\"}"
        ),
        Some(fetched.len() as f64),
        "{text}"
    );

    // A follower counts what it copied.
    let follower = cluster
        .broker_ids()
        .into_iter()
        .find(|b| *b != leader)
        .expect("a follower");
    let text = scrape(&cluster.broker_url(follower)).await;
    assert!(
        sample(
            &text,
            "kafka_server_brokertopicmetrics_replication_bytes_in_total{topic=\"metered\"}"
        )
        .is_some_and(|b| b > 0.0),
        "{text}"
    );
    seen.extend(families(&text));

    // Metadata nodes: exactly one active controller; the controller's counts and the lag.
    let controller = metadata_leader(&cluster).await;
    let mut active = 0.0;
    for id in cluster.ids() {
        let text = scrape(&cluster.url(id)).await;
        active += sample(
            &text,
            "kafka_controller_kafkacontroller_active_controller_count ",
        )
        .expect("active controller gauge");
        assert!(
            sample(&text, "kafka_server_raftmetrics_current_epoch ").is_some_and(|t| t >= 1.0),
            "{text}"
        );
        seen.extend(families(&text));
    }
    assert_eq!(active, 1.0, "one active controller");
    let text = scrape(&cluster.url(controller)).await;
    for (prefix, want) in [
        ("kafka_controller_kafkacontroller_active_broker_count ", 3.0),
        (
            "kafka_controller_kafkacontroller_offline_partitions_count ",
            0.0,
        ),
        ("kafka_controller_kafkacontroller_global_topic_count ", 1.0),
        (
            "kafka_consumergroup_lag{consumergroup=\"watchers\",topic=\"metered\",partition=\"0\"}",
            20.0,
        ),
        (
            "kafka_consumergroup_lag_sum{consumergroup=\"watchers\"}",
            20.0,
        ),
    ] {
        assert_eq!(sample(&text, prefix), Some(want), "{prefix}\n{text}");
    }
    // HTTP latency per route on the metadata node (the offsets POST above went to it).
    assert!(
        text.contains(
            "http_server_request_duration_seconds_count{method=\"POST\",\
             route=\"/api/v1/metadata/offsets\",status=\"200\"} 1"
        ),
        "{text}"
    );
    seen.extend(families(&text));

    // The dashboard: valid JSON with an import input, and every query on a real series.
    let path = common::repo_root().join("deploy/grafana/dmq-dashboard.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard file"))
            .expect("dashboard JSON");
    assert_eq!(dashboard["__inputs"][0]["pluginId"], "prometheus");
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            let names = promql_metrics(expr);
            assert!(!names.is_empty(), "no metric in {expr:?}");
            used.extend(names);
        }
    }
    // A histogram's `_bucket`/`_count`/`_sum` series belong to its family.
    let exported = |name: &str| {
        seen.contains(name)
            || ["_bucket", "_count", "_sum"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|family| seen.contains(family))
            })
    };
    let missing: Vec<&String> = used.iter().filter(|n| !exported(n)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries series no node exports: {missing:?}"
    );
    assert!(used.len() >= 20, "{used:?}");
}

#[test]
fn promql_names_are_found() {
    assert_eq!(
        promql_metrics(
            "histogram_quantile(0.99, sum by (le, request) (rate(kafka_request_latency_seconds_bucket{request=~\"Produce|Fetch\"}[1m])))"
        ),
        vec!["kafka_request_latency_seconds_bucket"]
    );
    assert_eq!(
        promql_metrics("sum by (topic) (rate(kafka_server_brokertopicmetrics_bytes_in_total[1m]))"),
        vec!["kafka_server_brokertopicmetrics_bytes_in_total"]
    );
}
