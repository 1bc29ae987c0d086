//! `dmq dev`: the whole cluster in one process. It serves Kafka clients, stops within seconds
//! on Ctrl-C (SIGINT), and a second run on the same data dir still has the topics and records.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dmq::procs::{wait_until, MetadataCluster};
use dmq_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, NewTopic, Offset, Producer, ProducerConfig,
    ProducerRecord,
};

fn start_dev(cluster: &MetadataCluster, data: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dmq"))
        .args(["dev", "--config"])
        .arg(cluster.config_path())
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dmq dev")
}

/// SIGINT, then the seconds until the process exited.
fn interrupt(child: &mut Child) -> Duration {
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "dmq dev did not stop within 20 s of Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn admin_when_up(cluster: &MetadataCluster) -> Admin {
    wait_until(
        Duration::from_secs(30),
        "the dev cluster to serve Kafka",
        || async {
            let admin = Admin::new(ClientConfig::new(cluster.bootstrap()))
                .await
                .ok()?;
            let brokers = admin.describe_cluster().await.ok()?.brokers.len();
            (brokers == 3).then_some(admin)
        },
    )
    .await
    .expect("dev cluster up")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_cluster_serves_stops_on_ctrl_c_and_keeps_its_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = MetadataCluster::new(
        Path::new(env!("CARGO_BIN_EXE_dmq")),
        dir.path(),
        3,
        common::long_sessions(),
    )
    .with_brokers(3);
    cluster.write_config().expect("services.json");
    let data = dir.path().join("dev-data");

    let mut dev = start_dev(&cluster, &data);
    let admin = admin_when_up(&cluster).await;
    admin
        .create_topic(NewTopic::new("kept", 2, 3))
        .await
        .expect("create topic");
    let producer = Producer::new(ProducerConfig::new(cluster.bootstrap()))
        .await
        .expect("producer");
    for i in 0..50 {
        producer
            .send(ProducerRecord::new("kept", format!("record-{i}")).key(format!("{i}")))
            .await
            .expect("send");
    }
    producer.flush().await;
    drop(producer);
    drop(admin);
    let took = interrupt(&mut dev);
    eprintln!("dmq dev stopped {took:?} after Ctrl-C");

    let mut dev = start_dev(&cluster, &data);
    let admin = admin_when_up(&cluster).await;
    let topic = wait_until(Duration::from_secs(30), "the topic after a restart", || {
        let admin = &admin;
        async move { admin.describe_topic("kept").await.ok() }
    })
    .await
    .expect("topic kept");
    assert_eq!(topic.partitions.len(), 2);
    let mut consumer = Consumer::new(ConsumerConfig::new(cluster.bootstrap()))
        .await
        .expect("consumer");
    consumer.assign_topic("kept").await.expect("assign");
    consumer.seek_all(Offset::Beginning);
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while values.len() < 50 {
        assert!(
            Instant::now() < deadline,
            "only {} of 50 records after the restart",
            values.len()
        );
        for r in consumer
            .poll(Duration::from_millis(500))
            .await
            .expect("poll")
        {
            values
                .push(String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned());
        }
    }
    values.sort();
    let mut want: Vec<String> = (0..50).map(|i| format!("record-{i}")).collect();
    want.sort();
    assert_eq!(values, want);
    interrupt(&mut dev);
}
