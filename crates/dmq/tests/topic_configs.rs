//! Topic configs: every bad value is refused where it enters — HTTP create and PATCH, Kafka
//! CreateTopics (also validate-only), AlterConfigs and IncrementalAlterConfigs — with
//! INVALID_CONFIG naming the config, and nothing is stored; good changes take effect on the
//! brokers without a restart and DescribeConfigs shows where each value comes from.

mod common;

use std::process::Command;
use std::time::Duration;

use common::kafka::{batch, connect, produce};
use common::{post_leader, start_cluster, wait_topic_on_brokers};
use dmq::procs::{wait_until, MetadataCluster};
use dmq_broker::kafka::client::KafkaConnection;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    AlterConfigsRequest, CreateTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

const INVALID_CONFIG: i16 = 40;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Invalid values, one per kind of check, and the config each names.
const BAD: &[(&str, &str)] = &[
    ("min.insync.replicas", "abc"),
    ("min.insync.replicas", "0"),
    ("cleanup.policy", "bogus"),
    ("retention.ms", "-5"),
    ("retention.bytes", "1.5"),
    ("segment.bytes", "0"),
    ("max.message.bytes", "-1"),
    ("unclean.leader.election.enable", "maybe"),
    ("compression.type", "brotli"),
    ("min.cleanable.dirty.ratio", "2"),
    ("message.timestamp.type", "Whenever"),
    ("no.such.config", "1"),
];

async fn topic_json(cluster: &MetadataCluster, name: &str) -> (u16, Value) {
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    cluster
        .get(
            leader,
            &format!("/api/v1/metadata/topics/{name}?consistent=true"),
        )
        .await
        .expect("GET topic")
}

async fn patch(cluster: &MetadataCluster, name: &str, body: &str) -> (u16, Value) {
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    let resp = dmq_types::https::client()
        .patch(format!(
            "{}/api/v1/metadata/topics/{name}/config",
            cluster.url(leader)
        ))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("PATCH");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// One resource's (error code, message) of an AlterConfigs or IncrementalAlterConfigs.
async fn alter(
    conn: &mut KafkaConnection,
    topic: &str,
    key: &str,
    value: &str,
    incremental: bool,
) -> (i16, String) {
    if incremental {
        use kafka_protocol::messages::incremental_alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s(topic))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(s(key))
                    .with_config_operation(0)
                    .with_value(Some(s(value)))]),
        ]);
        let r = conn
            .send(&req, 1, Duration::ZERO)
            .await
            .expect("IncrementalAlterConfigs");
        let x = &r.responses[0];
        (
            x.error_code,
            x.error_message.as_deref().unwrap_or("").to_string(),
        )
    } else {
        use kafka_protocol::messages::alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        let req =
            AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s(topic))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(s(key))
                    .with_value(Some(s(value)))])]);
        let r = conn
            .send(&req, 2, Duration::ZERO)
            .await
            .expect("AlterConfigs");
        let x = &r.responses[0];
        (
            x.error_code,
            x.error_message.as_deref().unwrap_or("").to_string(),
        )
    }
}

/// `key`'s (value, source) in DescribeConfigs of `topic`.
async fn described(conn: &mut KafkaConnection, topic: &str, key: &str) -> (Option<String>, i8) {
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(topic))
            .with_configuration_keys(Some(vec![s(key)]))]);
    let r = conn
        .send(&req, 4, Duration::ZERO)
        .await
        .expect("DescribeConfigs");
    let c = &r.results[0].configs[0];
    (c.value.as_deref().map(str::to_string), c.config_source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_topic_configs_are_refused_on_every_write_path_and_nothing_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 1, 1).await;
    let body = json!({"topicName": "base", "numPartitions": 1, "replicationFactor": 1,
                      "config": {"retention.ms": "1000"}});
    let (status, created) = post_leader(&cluster, "/api/v1/metadata/topics", &body).await;
    assert_eq!(status, 201, "{created}");
    wait_topic_on_brokers(&cluster, "base", 1, 1).await;
    let mut conn = connect(&cluster.kafka_addr(cluster.broker_ids()[0])).await;

    for (i, (key, value)) in BAD.iter().enumerate() {
        let case = format!("{key}={value}");
        // HTTP create.
        let name = format!("bad-http-{i}");
        let body = json!({"topicName": name, "numPartitions": 1, "replicationFactor": 1,
                          "config": {*key: *value}});
        let (status, answer) = post_leader(&cluster, "/api/v1/metadata/topics", &body).await;
        assert_eq!(status, 400, "{case}: {answer}");
        assert_eq!(answer["error"], "INVALID_CONFIG", "{case}: {answer}");
        assert!(
            answer["message"].as_str().unwrap_or("").contains(key),
            "{case}: {answer}"
        );
        assert_eq!(
            topic_json(&cluster, &name).await.0,
            404,
            "{case}: nothing created"
        );
        // Kafka CreateTopics, real and validate-only.
        for validate_only in [false, true] {
            let name = format!("bad-kafka-{i}-{validate_only}");
            let mut topic = CreatableTopic::default()
                .with_name(TopicName(s(&name)))
                .with_num_partitions(1)
                .with_replication_factor(1);
            topic.configs = vec![CreatableTopicConfig::default()
                .with_name(s(key))
                .with_value(Some(s(value)))];
            let req = CreateTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_validate_only(validate_only)
                .with_topics(vec![topic]);
            let r = conn
                .send(&req, 7, Duration::from_secs(10))
                .await
                .expect("CreateTopics");
            let t = &r.topics[0];
            assert_eq!(
                t.error_code, INVALID_CONFIG,
                "{case} (validate_only {validate_only})"
            );
            assert!(
                t.error_message.as_deref().unwrap_or("").contains(key),
                "{case}: {:?}",
                t.error_message
            );
            assert_eq!(topic_json(&cluster, &name).await.0, 404, "{case}");
        }
        // HTTP PATCH and both Kafka alter APIs on the existing topic.
        let (status, answer) = patch(
            &cluster,
            "base",
            &json!({"set": {*key: *value}}).to_string(),
        )
        .await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("INVALID_CONFIG")),
            "{case}: {answer}"
        );
        for incremental in [false, true] {
            let (code, message) = alter(&mut conn, "base", key, value, incremental).await;
            assert_eq!(
                code, INVALID_CONFIG,
                "{case} (incremental {incremental}): {message}"
            );
            assert!(message.contains(key), "{case}: {message}");
        }
    }
    // Malformed PATCH bodies and targets: JSON errors, nothing stored.
    for (body, status, code) in [
        ("{not json", 400, "INVALID_REQUEST"),
        ("[1,2]", 400, "INVALID_REQUEST"),
        (r#"{"set": {"retention.ms": 5}}"#, 400, "INVALID_REQUEST"),
        (r#"{"sett": {}}"#, 400, "INVALID_REQUEST"),
        (r#"{"delete": ["no.such.config"]}"#, 400, "INVALID_CONFIG"),
        (
            r#"{"replace": true, "delete": ["retention.ms"]}"#,
            400,
            "INVALID_REQUEST",
        ),
    ] {
        let (got, answer) = patch(&cluster, "base", body).await;
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    let (got, answer) = patch(&cluster, "missing", r#"{"set": {"retention.ms": "5"}}"#).await;
    assert_eq!(
        (got, answer["error"].as_str()),
        (404, Some("NOT_FOUND")),
        "{answer}"
    );

    let (_, base) = topic_json(&cluster, "base").await;
    assert_eq!(
        base["config"],
        json!({"retention.ms": "1000"}),
        "base unchanged"
    );
    let leader = cluster.leader().await.expect("leader");
    let (_, topics) = cluster
        .get(leader, "/api/v1/metadata/topics")
        .await
        .expect("topics");
    assert_eq!(
        topics.to_string().matches("topicName").count(),
        1,
        "only base: {topics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_take_effect_on_the_brokers_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 1, 1).await;
    let body = json!({"topicName": "live", "numPartitions": 1, "replicationFactor": 1});
    let (status, created) = post_leader(&cluster, "/api/v1/metadata/topics", &body).await;
    assert_eq!(status, 201, "{created}");
    wait_topic_on_brokers(&cluster, "live", 1, 1).await;
    let addr = cluster.kafka_addr(cluster.broker_ids()[0]);
    let mut conn = connect(&addr).await;
    let big = || batch(&[("k".to_string(), "x".repeat(5000))], None);
    assert_eq!(produce(&mut conn, "live", 0, big(), 1).await.error_code, 0);
    assert_eq!(
        described(&mut conn, "live", "max.message.bytes").await,
        (Some("1048588".into()), 5)
    );

    // Lowered through IncrementalAlterConfigs: the same batch is now too large.
    let (code, message) = alter(&mut conn, "live", "max.message.bytes", "2000", true).await;
    assert_eq!(code, 0, "{message}");
    assert_eq!(
        described(&mut conn, "live", "max.message.bytes").await,
        (Some("2000".into()), 1)
    );
    let r = produce(&mut conn, "live", 0, big(), 1).await;
    assert_eq!(r.error_code, 10, "MESSAGE_TOO_LARGE: {:?}", r.error_message);

    // Reverted to the default with the CLI (kafka-configs --delete-config): accepted again.
    let out = Command::new(env!("CARGO_BIN_EXE_dmq"))
        .args([
            "topic",
            "alter",
            "live",
            "--delete-config",
            "max.message.bytes",
            "--bootstrap",
        ])
        .arg(&addr)
        .output()
        .expect("dmq topic alter");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Altered 1 config(s) of topic live."
    );
    wait_until(Duration::from_secs(10), "the default back", || {
        let addr = addr.clone();
        async move {
            let mut conn = connect(&addr).await;
            (described(&mut conn, "live", "max.message.bytes").await.1 == 5).then_some(())
        }
    })
    .await
    .expect("default");
    assert_eq!(produce(&mut conn, "live", 0, big(), 1).await.error_code, 0);

    // A bad value through the CLI: a clear error, exit code 2, nothing changed.
    let out = Command::new(env!("CARGO_BIN_EXE_dmq"))
        .args([
            "topic",
            "alter",
            "live",
            "--config",
            "retention.ms=-5",
            "--bootstrap",
        ])
        .arg(&addr)
        .output()
        .expect("dmq topic alter");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("INVALID_CONFIG") && err.contains("retention.ms"),
        "{err}"
    );
    assert_eq!(
        described(&mut conn, "live", "retention.ms").await,
        (Some("604800000".into()), 5)
    );
}

/// DescribeConfigs of a BROKER resource: `key`'s (value, source, read-only, synonym sources).
async fn described_broker(
    conn: &mut KafkaConnection,
    broker: &str,
    key: &str,
) -> (Option<String>, i8, bool, Vec<i8>) {
    let req = DescribeConfigsRequest::default()
        .with_include_synonyms(true)
        .with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(s(broker))
            .with_configuration_keys(Some(vec![s(key)]))]);
    let r = conn
        .send(&req, 4, Duration::ZERO)
        .await
        .expect("DescribeConfigs");
    assert_eq!(
        r.results[0].error_code, 0,
        "{:?}",
        r.results[0].error_message
    );
    let c = &r.results[0].configs[0];
    (
        c.value.as_deref().map(str::to_string),
        c.config_source,
        c.read_only,
        c.synonyms.iter().map(|x| x.source).collect(),
    )
}

/// One BROKER resource's (error code, message) of an IncrementalAlterConfigs SET (`Some`) or
/// DELETE (`None`).
async fn alter_broker(
    conn: &mut KafkaConnection,
    broker: &str,
    key: &str,
    value: Option<&str>,
) -> (i16, String) {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(s(broker))
            .with_configs(vec![AlterableConfig::default()
                .with_name(s(key))
                .with_config_operation(if value.is_some() { 0 } else { 1 })
                .with_value(value.map(s))]),
    ]);
    let r = conn
        .send(&req, 1, Duration::ZERO)
        .await
        .expect("IncrementalAlterConfigs");
    let x = &r.responses[0];
    (
        x.error_code,
        x.error_message.as_deref().unwrap_or("").to_string(),
    )
}

/// Dynamic broker configs (kafka-configs --entity-type brokers): a cluster-wide default and a
/// per-broker value apply to topics without their own value, without a restart, in Kafka's
/// order (topic, broker, cluster, default); read-only and bad values are refused and nothing
/// is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_broker_configs_apply_to_topics_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 1, 1).await;
    let body = json!({"topicName": "dyn", "numPartitions": 1, "replicationFactor": 1});
    let (status, created) = post_leader(&cluster, "/api/v1/metadata/topics", &body).await;
    assert_eq!(status, 201, "{created}");
    wait_topic_on_brokers(&cluster, "dyn", 1, 1).await;
    let id = cluster.broker_ids()[0].to_string();
    let addr = cluster.kafka_addr(cluster.broker_ids()[0]);
    let mut conn = connect(&addr).await;
    let big = || batch(&[("k".to_string(), "x".repeat(5000))], None);
    assert_eq!(produce(&mut conn, "dyn", 0, big(), 1).await.error_code, 0);

    // The cluster-wide default, set with the CLI: the topic inherits it.
    let dmq = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_dmq"))
            .args(args)
            .arg("--bootstrap")
            .arg(&addr)
            .output()
            .expect("dmq");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    };
    let (code, out, err) = dmq(&["cluster", "config", "--config", "message.max.bytes=2000"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "Dynamic broker configs for the cluster:\n  message.max.bytes=2000 \
         (DYNAMIC_DEFAULT_BROKER_CONFIG)"
    );
    assert_eq!(
        described(&mut conn, "dyn", "max.message.bytes").await,
        (Some("2000".into()), 3)
    );
    let r = produce(&mut conn, "dyn", 0, big(), 1).await;
    assert_eq!(r.error_code, 10, "MESSAGE_TOO_LARGE: {:?}", r.error_message);

    // This broker's own value beats the cluster's.
    let (code, message) = alter_broker(&mut conn, &id, "message.max.bytes", Some("1000000")).await;
    assert_eq!(code, 0, "{message}");
    assert_eq!(
        described(&mut conn, "dyn", "max.message.bytes").await,
        (Some("1000000".into()), 2)
    );
    assert_eq!(
        described_broker(&mut conn, &id, "message.max.bytes").await,
        (Some("1000000".into()), 2, false, vec![2, 3, 5]),
        "value, DYNAMIC_BROKER_CONFIG, not read-only, synonyms broker > cluster > default"
    );
    assert_eq!(produce(&mut conn, "dyn", 0, big(), 1).await.error_code, 0);

    // The topic's own value beats both.
    let (code, message) = alter(&mut conn, "dyn", "max.message.bytes", "3000", true).await;
    assert_eq!(code, 0, "{message}");
    assert_eq!(
        described(&mut conn, "dyn", "max.message.bytes").await,
        (Some("3000".into()), 1)
    );
    assert_eq!(produce(&mut conn, "dyn", 0, big(), 1).await.error_code, 10);

    // Refused, nothing stored: a read-only config, a bad value, an unknown key, a bad entity.
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    let stored = || async {
        cluster
            .get(leader, "/api/v1/metadata/broker-configs?consistent=true")
            .await
            .expect("GET broker-configs")
    };
    let before = stored().await;
    assert_eq!(before.0, 200);
    assert_eq!(
        before.1,
        json!({"cluster": {"message.max.bytes": "2000"},
               "brokers": {id.clone(): {"message.max.bytes": "1000000"}}})
    );
    for (entity, key, value, want) in [
        (id.as_str(), "broker.id", "7", 42),
        ("", "num.partitions", "7", 42),
        (id.as_str(), "min.insync.replicas", "0", 40),
        ("", "log.retention.ms", "-5", 40),
        ("", "no.such.config", "1", 40),
        ("not-a-broker", "log.retention.ms", "1000", 42),
    ] {
        let (code, message) = alter_broker(&mut conn, entity, key, Some(value)).await;
        assert_eq!(code, want, "{entity:?} {key}={value}: {message}");
        assert!(
            message.contains(key) || message.contains(entity),
            "{message}"
        );
    }
    let (status, answer) = {
        let resp = dmq_types::https::client()
            .patch(format!(
                "{}/api/v1/metadata/broker-configs",
                cluster.url(leader)
            ))
            .header("content-type", "application/json")
            .body(r#"{"set": {"log.segment.bytes": "0"}}"#)
            .send()
            .await
            .expect("PATCH");
        (
            resp.status().as_u16(),
            resp.json::<Value>().await.unwrap_or(Value::Null),
        )
    };
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("INVALID_CONFIG"))
    );
    assert_eq!(stored().await, before, "nothing stored");
    let (value, source, read_only, _) = described_broker(&mut conn, &id, "broker.id").await;
    assert_eq!((value, source, read_only), (Some(id.clone()), 4, true));

    // Deleting the broker's value falls back to the cluster's.
    let (code, out, err) = dmq(&[
        "cluster",
        "config",
        "--broker",
        &id,
        "--delete-config",
        "message.max.bytes",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        format!(
            "Dynamic broker configs for broker {id}:\n  message.max.bytes=2000 \
             (DYNAMIC_DEFAULT_BROKER_CONFIG)"
        )
    );
    let (code, _, err) = dmq(&[
        "topic",
        "alter",
        "dyn",
        "--delete-config",
        "max.message.bytes",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        described(&mut conn, "dyn", "max.message.bytes").await,
        (Some("2000".into()), 3),
        "without its own value the topic is back on the cluster's"
    );
}
