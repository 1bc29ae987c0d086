//! Real Kafka clients against a real cluster (3 metadata nodes, 3 brokers, RF 3): Debian's kcat
//! (librdkafka 2.0.2), confluent-kafka (librdkafka 2.16), kafka-python and aiokafka, installed by
//! `scripts/test.sh`. Each script checks byte-identity, order and completeness itself.

mod common;

use std::process::Command;

use common::{run_interop, start_cluster, venv_python};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_lists_the_cluster_and_round_trips_100k_keyed_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let mut cmd = Command::new("bash");
    cmd.arg("tests/interop/kcat_roundtrip.sh")
        .arg(cluster.bootstrap())
        .arg("kcat-100k")
        .arg("100000")
        .arg("3");
    let out = run_interop(cmd).await;
    assert!(out.contains("OK kcat: 100000 records"), "{out}");
    assert!(
        out.contains("-Q and -o -1 tail"),
        "offset query and tail: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_round_trips_every_codec_and_the_idempotent_producer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let mut cmd = Command::new(venv_python());
    cmd.arg("tests/interop/confluent_roundtrip.py")
        .arg("--bootstrap")
        .arg(cluster.bootstrap())
        .arg("--topic-prefix")
        .arg("cf")
        .arg("--replication-factor")
        .arg("3");
    let out = run_interop(cmd).await;
    for codec in ["none", "gzip", "snappy", "lz4", "zstd", "idempotent"] {
        assert!(
            out.contains(&format!("OK confluent {codec}")),
            "{codec}: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_produces_and_consumes_with_auto_created_topics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    for compression in ["none", "gzip"] {
        let mut cmd = Command::new(venv_python());
        cmd.arg("tests/interop/kafka_python_roundtrip.py")
            .arg("--bootstrap")
            .arg(cluster.bootstrap())
            .arg("--topic")
            .arg(format!("kp-{compression}"))
            .arg("--compression")
            .arg(compression);
        let out = run_interop(cmd).await;
        assert!(out.contains("OK kafka-python"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_and_kafka_python_grow_a_topic_with_create_partitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let out = run_python(&cluster, "create_partitions.py").await;
    assert!(out.contains("OK create-partitions"), "{out}");
    // Every broker hosts its share of the six partitions (RF 3 on 3 brokers: all of them).
    for id in cluster.broker_ids() {
        let c = &cluster;
        dmq::procs::wait_until(
            std::time::Duration::from_secs(10),
            "the broker to host all six partitions",
            || async move {
                let (_, status) = c
                    .broker_get(id, "/api/v1/storage/replication/status")
                    .await?;
                let hosted = status["partitions"]
                    .as_array()?
                    .iter()
                    .filter(|p| p["topic"] == "grow")
                    .count();
                (hosted == 6).then_some(())
            },
        )
        .await
        .expect("partitions on disk");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiokafka_produces_idempotently_and_consumes_in_a_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let out = run_python(&cluster, "aiokafka_roundtrip.py").await;
    assert!(out.contains("OK aiokafka"), "{out}");
}

/// Runs `tests/interop/<script>` with the venv's Python against the cluster's brokers.
async fn run_python(cluster: &dmq::procs::MetadataCluster, script: &str) -> String {
    let mut cmd = Command::new(venv_python());
    cmd.arg(format!("tests/interop/{script}"))
        .arg("--bootstrap")
        .arg(cluster.bootstrap());
    run_interop(cmd).await
}

/// Consumers that start at "latest" with confluent-kafka, kafka-python and aiokafka read
/// exactly what was produced after they started (ListOffsets latest at their versions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_consumers_starting_at_latest_read_only_new_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let mut cmd = Command::new(venv_python());
    cmd.arg("tests/interop/latest_consumers.py")
        .arg("--bootstrap")
        .arg(cluster.bootstrap())
        .arg("--topic-prefix")
        .arg("latest");
    let out = run_interop(cmd).await;
    for client in ["confluent-kafka", "kafka-python", "aiokafka"] {
        assert!(
            out.contains(&format!("OK latest {client}")),
            "{client}: {out}"
        );
    }
}
