//! `dmq-client` against a real cluster: the idempotent producer keeps every record exactly once
//! and in order across leader SIGKILLs and controlled shutdowns; keyed records land where
//! librdkafka's Java-compatible murmur2 partitioner puts them; every compression codec
//! interoperates with librdkafka (kcat) both ways; seek, reset and high watermark; group members
//! that split, rebalance cooperatively, commit and resume, with lag matching the HTTP API;
//! partitions added to a topic reach a running producer and group.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{process_logs, start_cluster, wait_topic_on_brokers};
use dmq::procs::{wait_until, MetadataCluster};
use dmq_client::{
    partition_for_key, Acks, Admin, ClientConfig, Compression, Consumer, ConsumerConfig,
    ConsumerRecord, GroupConfig, GroupConsumer, NewTopic, Offset, OffsetReset, Producer,
    ProducerConfig, ProducerRecord, TopicPartition,
};

fn producer_config(cluster: &MetadataCluster) -> ProducerConfig {
    let mut c = ProducerConfig::new(cluster.bootstrap());
    c.client.request_timeout = Duration::from_secs(10);
    c.retry_backoff = Duration::from_millis(50);
    c
}

async fn admin(cluster: &MetadataCluster) -> Admin {
    Admin::new(ClientConfig::new(cluster.bootstrap()))
        .await
        .expect("admin connects")
}

/// Reads every partition of `topic` from the beginning until `count` records arrived.
async fn read_all(cluster: &MetadataCluster, topic: &str, count: usize) -> Vec<ConsumerRecord> {
    let mut consumer = Consumer::new(ConsumerConfig::new(cluster.bootstrap()))
        .await
        .expect("consumer connects");
    consumer.assign_topic(topic).await.expect("assign");
    consumer.seek_all(Offset::Beginning);
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while out.len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {count} records of {topic} arrived",
            out.len()
        );
        out.extend(
            consumer
                .poll(Duration::from_millis(500))
                .await
                .expect("poll"),
        );
    }
    out
}

/// The leader of `topic`/`partition` as the brokers' metadata says.
async fn leader_of(admin: &Admin, topic: &str, partition: usize) -> Option<i32> {
    let d = admin.describe_topic(topic).await.ok()?;
    let l = d.partitions.get(partition)?.leader;
    (l >= 0).then_some(l)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_keeps_every_record_once_and_in_order_across_leader_moves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = start_cluster(dir.path(), 3, 3).await;
    const TOPIC: &str = "moves";
    const MIN_RECORDS: u64 = 20_000;
    let admin = admin(&cluster).await;
    admin
        .create_topic(NewTopic::new(TOPIC, 3, 3).config("min.insync.replicas", "2"))
        .await
        .expect("create topic");
    wait_topic_on_brokers(&cluster, TOPIC, 3, 3).await;

    let mut config = producer_config(&cluster);
    config.batch_size = 4096;
    config.linger = Duration::from_millis(2);
    let producer = Arc::new(Producer::new(config).await.expect("producer"));
    assert!(
        producer.producer_id().0 >= 0,
        "idempotence is on with acks=all"
    );
    // The sender runs until the faults are over (and at least MIN_RECORDS were sent), so every
    // failover happens while records are in flight.
    let faults_over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sending = {
        let producer = producer.clone();
        let faults_over = faults_over.clone();
        tokio::spawn(async move {
            let mut acks = Vec::new();
            let mut n = 0u64;
            while n < MIN_RECORDS || !faults_over.load(std::sync::atomic::Ordering::Acquire) {
                let record = ProducerRecord::new(TOPIC, Bytes::from(n.to_string()))
                    .key(Bytes::from(format!("k{}", n % 97)));
                acks.push((n, producer.send(record).await.expect("send")));
                if n.is_multiple_of(200) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                n += 1;
            }
            acks
        })
    };

    // While it sends: SIGKILL the leader of partition 0 and bring it back, then stop the
    // leader of partition 1 with SIGTERM (controlled shutdown) and bring it back too.
    let victim = leader_of(&admin, TOPIC, 0)
        .await
        .expect("partition 0 has a leader");
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill_broker(victim);
    wait_until(
        Duration::from_secs(15),
        "a new leader for partition 0",
        || {
            let admin = &admin;
            async move {
                let l = leader_of(admin, TOPIC, 0).await?;
                (l != victim).then_some(())
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", process_logs(dir.path())));
    cluster.start_broker(victim).expect("restart broker");
    let second = leader_of(&admin, TOPIC, 1)
        .await
        .expect("partition 1 has a leader");
    cluster
        .terminate_broker(second, Duration::from_secs(20))
        .await
        .expect("controlled shutdown");
    cluster.start_broker(second).expect("restart broker");
    tokio::time::sleep(Duration::from_millis(200)).await;
    faults_over.store(true, std::sync::atomic::Ordering::Release);

    let acks = sending.await.expect("sender");
    let total = acks.len() as u64;
    eprintln!(
        "{total} records sent across the leader moves, {} batches retried",
        producer.retries()
    );
    assert!(
        producer.retries() > 0,
        "the leader moves caused no retry at all"
    );
    producer.flush().await;
    let mut acked: HashMap<u64, (i32, i64)> = HashMap::new();
    for (n, f) in acks {
        let meta = f
            .await
            .unwrap_or_else(|e| panic!("record {n} failed: {e}\n{}", process_logs(dir.path())));
        assert!(meta.offset >= 0, "record {n} has no offset");
        acked.insert(n, (meta.partition, meta.offset));
    }

    let records = read_all(&cluster, TOPIC, total as usize).await;
    let mut seen: HashMap<u64, (i32, i64)> = HashMap::new();
    let mut last_in_partition: BTreeMap<i32, u64> = BTreeMap::new();
    for r in &records {
        let n: u64 = std::str::from_utf8(r.value.as_deref().expect("value"))
            .expect("utf8")
            .parse()
            .expect("number");
        assert!(
            seen.insert(n, (r.partition, r.offset)).is_none(),
            "record {n} is in the log twice"
        );
        if let Some(prev) = last_in_partition.insert(r.partition, n) {
            assert!(prev < n, "partition {} has {prev} before {n}", r.partition);
        }
    }
    assert_eq!(seen.len() as u64, total, "records lost");
    for (n, at) in &acked {
        assert_eq!(
            seen.get(n),
            Some(at),
            "record {n} is not where it was acknowledged"
        );
    }
    // Keys stay on their murmur2 partition through all of it.
    for r in &records {
        let key = r.key.as_deref().expect("key");
        assert_eq!(r.partition, partition_for_key(key, 3));
    }
}

/// Runs kcat with `args`, feeding `stdin`; returns stdout.
fn kcat(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new("kcat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat is installed (scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write to kcat");
    let out = child.wait_with_output().expect("kcat runs");
    assert!(
        out.status.success(),
        "kcat {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_partitions_and_compressed_batches_match_librdkafka() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 1).await;
    let bootstrap = cluster.bootstrap();
    let admin = admin(&cluster).await;
    for t in ["keys-kcat", "keys-dmq"] {
        admin
            .create_topic(NewTopic::new(t, 12, 1))
            .await
            .expect("create");
        wait_topic_on_brokers(&cluster, t, 12, 1).await;
    }
    // librdkafka's murmur2_random is the Java client's partitioner.
    let keys: Vec<String> = (0..300)
        .map(|i| format!("customer-{i}-{}", i * 7919))
        .collect();
    let lines: String = keys.iter().map(|k| format!("{k}:v\n")).collect();
    kcat(
        &[
            "-P",
            "-b",
            &bootstrap,
            "-t",
            "keys-kcat",
            "-K:",
            "-X",
            "topic.partitioner=murmur2_random",
        ],
        &lines,
    );
    let producer = Producer::new(producer_config(&cluster))
        .await
        .expect("producer");
    for k in &keys {
        producer
            .send(ProducerRecord::new("keys-dmq", "v").key(Bytes::from(k.clone())))
            .await
            .expect("send");
    }
    producer.flush().await;
    let placement = |records: Vec<ConsumerRecord>| -> BTreeMap<String, i32> {
        records
            .into_iter()
            .map(|r| {
                let k = String::from_utf8(r.key.expect("key").to_vec()).expect("utf8");
                (k, r.partition)
            })
            .collect()
    };
    let by_kcat = placement(read_all(&cluster, "keys-kcat", keys.len()).await);
    let by_dmq = placement(read_all(&cluster, "keys-dmq", keys.len()).await);
    assert_eq!(by_kcat.len(), keys.len());
    assert_eq!(
        by_kcat, by_dmq,
        "dmq-client and librdkafka place keys differently"
    );
    for (k, p) in &by_kcat {
        assert_eq!(*p, partition_for_key(k.as_bytes(), 12), "{k}");
    }

    // Every codec, both ways: dmq-client → kcat and kcat → dmq-client.
    for (codec, name) in [
        (Compression::Gzip, "gzip"),
        (Compression::Snappy, "snappy"),
        (Compression::Lz4, "lz4"),
        (Compression::Zstd, "zstd"),
    ] {
        let topic = format!("z-{name}");
        admin
            .create_topic(NewTopic::new(&topic, 1, 1))
            .await
            .expect("create");
        wait_topic_on_brokers(&cluster, &topic, 1, 1).await;
        let mut config = producer_config(&cluster);
        config.compression = codec;
        config.acks = Acks::Leader;
        let producer = Producer::new(config).await.expect("producer");
        for i in 0..500 {
            producer
                .send(ProducerRecord::new(
                    &topic,
                    format!("{name}-record-{i}-{}", "x".repeat(50)),
                ))
                .await
                .expect("send");
        }
        producer.flush().await;
        let out = kcat(
            &[
                "-C",
                "-b",
                &bootstrap,
                "-t",
                &topic,
                "-o",
                "beginning",
                "-e",
                "-f",
                "%s\n",
            ],
            "",
        );
        let got: Vec<&str> = out.lines().collect();
        assert_eq!(got.len(), 500, "kcat read {} {name} records", got.len());
        assert!(got[499].starts_with(&format!("{name}-record-499-")));
        let input: String = (0..300).map(|i| format!("from-kcat-{i}\n")).collect();
        kcat(
            &[
                "-P",
                "-b",
                &bootstrap,
                "-t",
                &topic,
                "-z",
                name,
                "-X",
                "linger.ms=50",
            ],
            &input,
        );
        let records = read_all(&cluster, &topic, 800).await;
        let tail: Vec<String> = records[500..]
            .iter()
            .map(|r| String::from_utf8_lossy(r.value.as_deref().expect("value")).into_owned())
            .collect();
        let want: Vec<String> = (0..300).map(|i| format!("from-kcat-{i}")).collect();
        assert_eq!(tail, want, "{name} batches from librdkafka");
        assert_eq!(records[799].offset, 799);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_seeks_resets_and_reports_the_high_watermark() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 1, 1).await;
    admin(&cluster)
        .await
        .create_topic(NewTopic::new("seek", 1, 1))
        .await
        .expect("create");
    wait_topic_on_brokers(&cluster, "seek", 1, 1).await;
    let producer = Producer::new(producer_config(&cluster))
        .await
        .expect("producer");
    let mut last = None;
    for i in 0..100 {
        last = Some(
            producer
                .send(ProducerRecord::new("seek", format!("{i}")).partition(0))
                .await
                .expect("send"),
        );
    }
    let meta = last.expect("sent").await.expect("acknowledged");
    assert_eq!((meta.partition, meta.offset), (0, 99));

    let tp = TopicPartition::new("seek", 0);
    let mut config = ConsumerConfig::new(cluster.bootstrap());
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(config).await.expect("consumer");
    consumer.assign([tp.clone()]);
    consumer.seek(&tp, Offset::At(90)).expect("seek");
    let mut got = Vec::new();
    while got.len() < 10 {
        got.extend(consumer.poll(Duration::from_secs(2)).await.expect("poll"));
    }
    assert_eq!(got.first().map(|r| r.offset), Some(90));
    assert_eq!(got.last().map(|r| r.offset), Some(99));
    assert_eq!(consumer.high_watermark(&tp), 100);
    assert_eq!(consumer.position(&tp), Some(100));

    // Out of range: reset to earliest (auto_offset_reset), as the Java consumer does.
    consumer.seek(&tp, Offset::At(5000)).expect("seek");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let first = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no records after a reset"
        );
        let r = consumer
            .poll(Duration::from_millis(200))
            .await
            .expect("poll");
        if let Some(r) = r.first() {
            break r.offset;
        }
    };
    assert_eq!(first, 0);
    consumer.seek(&tp, Offset::End).expect("seek");
    assert!(consumer
        .poll(Duration::from_millis(300))
        .await
        .expect("poll")
        .is_empty());
    assert_eq!(consumer.position(&tp), Some(100));
    assert!(consumer
        .seek(&TopicPartition::new("other", 0), Offset::Beginning)
        .is_err());
}

/// One group member running in its own task: polls, commits what it read, and reports its
/// records and assignment until told to stop; then closes (commit + leave).
struct Member {
    stop: Arc<std::sync::atomic::AtomicBool>,
    assignment: tokio::sync::watch::Receiver<Vec<TopicPartition>>,
    task: tokio::task::JoinHandle<Vec<ConsumerRecord>>,
}

fn start_member(bootstrap: String, group: &str, assignor: &str) -> Member {
    start_member_of(bootstrap, "gq", group, assignor)
}

fn start_member_of(bootstrap: String, topic: &str, group: &str, assignor: &str) -> Member {
    let topic = topic.to_string();
    let mut gc = GroupConfig::new(group);
    gc.assignor = assignor.parse().expect("assignor");
    gc.heartbeat_interval = Duration::from_millis(200);
    gc.session_timeout = Duration::from_secs(6);
    gc.rebalance_timeout = Duration::from_secs(10);
    gc.enable_auto_commit = false;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, assignment) = tokio::sync::watch::channel(Vec::new());
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        let mut config = ConsumerConfig::new(bootstrap);
        config.auto_offset_reset = OffsetReset::Earliest;
        // A leader notices added partitions at its next metadata refresh.
        config.client.metadata_max_age = Duration::from_millis(300);
        let mut consumer = GroupConsumer::new(config, gc, vec![topic])
            .await
            .expect("group consumer");
        let mut got = Vec::new();
        while !flag.load(std::sync::atomic::Ordering::Acquire) {
            let records = consumer
                .poll(Duration::from_millis(200))
                .await
                .expect("poll");
            got.extend(records);
            consumer.commit().await.expect("commit");
            let _ = tx.send(consumer.assignment().to_vec());
        }
        consumer.close().await.expect("close");
        got
    });
    Member {
        stop,
        assignment,
        task,
    }
}

async fn wait_assignments(members: &[&Member], sizes: &[usize]) -> Vec<Vec<TopicPartition>> {
    wait_until(Duration::from_secs(30), "the group to settle", || async {
        let now: Vec<Vec<TopicPartition>> = members
            .iter()
            .map(|m| m.assignment.borrow().clone())
            .collect();
        let lens: Vec<usize> = now.iter().map(Vec::len).collect();
        (lens == sizes).then_some(now)
    })
    .await
    .expect("assignment")
}

fn values(records: &[ConsumerRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_split_rebalance_cooperatively_and_resume_after_their_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 1).await;
    let admin = admin(&cluster).await;
    admin
        .create_topic(NewTopic::new("gq", 6, 1))
        .await
        .expect("create");
    wait_topic_on_brokers(&cluster, "gq", 6, 1).await;
    let producer = Producer::new(producer_config(&cluster))
        .await
        .expect("producer");
    let produce = |from: u32, to: u32| {
        let producer = &producer;
        async move {
            for i in from..to {
                producer
                    .send(ProducerRecord::new("gq", format!("{i}")).key(format!("key-{i}")))
                    .await
                    .expect("send");
            }
            producer.flush().await;
        }
    };
    produce(0, 600).await;

    // cooperative-sticky: A takes all six; when B joins, A keeps three of its own and B gets
    // the other three — A never gives up the ones it keeps.
    let a = start_member(cluster.bootstrap(), "gq-group", "cooperative-sticky");
    let first = wait_assignments(&[&a], &[6]).await;
    let b = start_member(cluster.bootstrap(), "gq-group", "cooperative-sticky");
    let split = wait_assignments(&[&a, &b], &[3, 3]).await;
    assert!(split[0].iter().all(|tp| first[0].contains(tp)), "{split:?}");
    let disjoint: std::collections::BTreeSet<&TopicPartition> = split.iter().flatten().collect();
    assert_eq!(disjoint.len(), 6, "{split:?}");

    // Everything produced is read by someone, then both commit and leave.
    produce(600, 700).await;
    let group_end = wait_until(Duration::from_secs(30), "all 700 records committed", || {
        let admin = &admin;
        async move {
            let d = admin.describe_group("gq-group").await.ok()?;
            let total: i64 = d.committed.values().sum();
            (total == 700).then_some(d)
        }
    })
    .await
    .expect("commits");
    assert_eq!(group_end.members.len(), 2);
    for m in [&a, &b] {
        m.stop.store(true, std::sync::atomic::Ordering::Release);
    }
    let mut read = values(&a.task.await.expect("member a"));
    read.extend(values(&b.task.await.expect("member b")));
    read.sort();
    read.dedup();
    assert_eq!(read.len(), 700, "some records were never read");

    // Lag from the CLI matches the metadata quorum's HTTP view and log end - committed.
    produce(700, 710).await;
    let out = Command::new(env!("CARGO_BIN_EXE_dmq"))
        .args(["group", "describe", "gq-group", "--output", "json"])
        .args(["--bootstrap", &cluster.bootstrap()])
        .env("RUST_LOG", "error")
        .output()
        .expect("dmq group describe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let leader = cluster.leader().await.expect("metadata leader");
    let (_, http) = cluster
        .get(leader, "/api/v1/metadata/groups/gq-group")
        .await
        .expect("HTTP group");
    let lag_of = |rows: &serde_json::Value, offset_key: &str| -> BTreeMap<i64, (i64, i64, i64)> {
        rows.as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                (
                    r["partition"].as_i64().expect("partition"),
                    (
                        r[offset_key].as_i64().expect("offset"),
                        r["logEndOffset"].as_i64().expect("end"),
                        r["lag"].as_i64().expect("lag"),
                    ),
                )
            })
            .collect()
    };
    let cli_lag = lag_of(&cli["partitions"], "currentOffset");
    let http_lag = lag_of(&http["partitions"], "committedOffset");
    assert_eq!(cli_lag, http_lag);
    assert_eq!(cli_lag.values().map(|l| l.2).sum::<i64>(), 10);
    for (committed, end, lag) in cli_lag.values() {
        assert_eq!(*lag, end - committed);
    }

    // A member that joins later resumes right after the commits: exactly the 10 new records.
    let c = start_member(cluster.bootstrap(), "gq-group", "range");
    wait_assignments(&[&c], &[6]).await;
    wait_until(Duration::from_secs(20), "the new records committed", || {
        let admin = &admin;
        async move {
            let d = admin.describe_group("gq-group").await.ok()?;
            (d.committed.values().sum::<i64>() == 710).then_some(())
        }
    })
    .await
    .expect("commits");
    c.stop.store(true, std::sync::atomic::Ordering::Release);
    let mut got = values(&c.task.await.expect("member c"));
    got.sort();
    let want: Vec<String> = {
        let mut w: Vec<String> = (700..710).map(|i| i.to_string()).collect();
        w.sort();
        w
    };
    assert_eq!(got, want, "the late member re-read or skipped records");

    // Resetting offsets needs an empty group; then the next member reads from there.
    let reset = Command::new(env!("CARGO_BIN_EXE_dmq"))
        .args(["group", "reset-offsets", "gq-group", "--shift-by", "-1"])
        .args(["--bootstrap", &cluster.bootstrap()])
        .env("RUST_LOG", "error")
        .output()
        .expect("dmq group reset-offsets");
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    let d = admin.describe_group("gq-group").await.expect("describe");
    assert_eq!(d.committed.values().sum::<i64>(), 710 - 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_added_to_a_topic_reach_a_running_producer_and_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 1).await;
    let admin = admin(&cluster).await;
    admin
        .create_topic(NewTopic::new("grown", 2, 1))
        .await
        .expect("create");
    wait_topic_on_brokers(&cluster, "grown", 2, 1).await;
    let mut config = producer_config(&cluster);
    config.client.metadata_max_age = Duration::from_millis(300);
    let producer = Producer::new(config).await.expect("producer");
    // A key that murmur2 puts on partition 2 or 3 once the topic has four partitions.
    let key = (0..)
        .map(|i| format!("key-{i}"))
        .find(|k| {
            partition_for_key(k.as_bytes(), 4) >= 2 && partition_for_key(k.as_bytes(), 2) == 0
        })
        .expect("a key");
    let before = producer
        .send(ProducerRecord::new("grown", "before").key(key.clone()))
        .await
        .expect("send")
        .wait()
        .await
        .expect("delivered");
    assert_eq!(before.partition, 0);

    let member = start_member_of(cluster.bootstrap(), "grown", "grown-group", "range");
    wait_assignments(&[&member], &[2]).await;

    admin.create_partitions("grown", 4).await.expect("grow");
    wait_topic_on_brokers(&cluster, "grown", 4, 1).await;
    // The running producer sees four partitions once its cached metadata ages out.
    let after = wait_until(
        Duration::from_secs(20),
        "the producer to hash onto the new partitions",
        || async {
            let d = producer
                .send(ProducerRecord::new("grown", "after").key(key.clone()))
                .await
                .ok()?
                .wait()
                .await
                .ok()?;
            (d.partition >= 2).then_some(d)
        },
    )
    .await
    .expect("new partition used");
    assert_eq!(after.partition, partition_for_key(key.as_bytes(), 4));
    // The group's leader notices the new partitions and rebalances; the member then owns all
    // four and reads the record on the new one.
    wait_assignments(&[&member], &[4]).await;
    // It commits after every poll: wait until the commit covers the record.
    let tp = TopicPartition::new("grown", after.partition);
    let admin = &admin;
    let tp = &tp;
    wait_until(
        Duration::from_secs(20),
        "the group to commit past the record on the new partition",
        || async move {
            let g = admin.describe_group("grown-group").await.ok()?;
            (g.committed.get(tp).copied()? > after.offset).then_some(())
        },
    )
    .await
    .expect("committed");
    member
        .stop
        .store(true, std::sync::atomic::Ordering::Release);
    let got = member.task.await.expect("member");
    assert!(
        got.iter()
            .any(|r| r.partition == after.partition && r.offset == after.offset),
        "the record on partition {} was not read: {:?}",
        after.partition,
        got.iter()
            .map(|r| (r.partition, r.offset))
            .collect::<Vec<_>>()
    );
}
