//! `dmq-client`'s transactional producer and read_committed consumer against a real cluster
//! (3 metadata nodes, 3 brokers, RF 3): commits and aborts across three partitions; a
//! read_committed consumer sees exactly the committed records in order, a read_uncommitted one
//! sees everything; an open transaction holds read_committed's "latest" back at its first
//! offset; a second producer with the same transactional id fences the first; a group's
//! offsets sent to a transaction are committed with it and dropped with an abort; an abort
//! drops records not sent yet; the CLI's `--transactional-id` and `--isolation`.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{process_logs, start_cluster, wait_topic_on_brokers};
use dmq::procs::{wait_until, MetadataCluster};
use dmq_client::{
    Admin, ClientConfig, ClientError, Consumer, ConsumerConfig, GroupConfig, GroupConsumer,
    IsolationLevel, NewTopic, Offset, OffsetReset, Producer, ProducerConfig, ProducerRecord,
    TopicPartition,
};

const TOPIC: &str = "txn-in";
const OUT: &str = "txn-out";
const PARTITIONS: i32 = 3;

fn txn_producer_config(cluster: &MetadataCluster, id: &str) -> ProducerConfig {
    let mut c = ProducerConfig::new(cluster.bootstrap());
    c.client.request_timeout = Duration::from_secs(10);
    c.retry_backoff = Duration::from_millis(50);
    c.max_block = Duration::from_secs(15);
    c.transactional_id = Some(id.to_string());
    c.transaction_timeout = Duration::from_secs(30);
    c
}

fn consumer_config(cluster: &MetadataCluster, isolation: IsolationLevel) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(cluster.bootstrap());
    c.isolation_level = isolation;
    c.auto_offset_reset = OffsetReset::Earliest;
    c.fetch_max_wait = Duration::from_millis(100);
    c
}

/// Sends `values` round-robin over the partitions and waits for every acknowledgement.
async fn send_all(producer: &Producer, topic: &str, values: &[String]) {
    let mut acks = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let record = ProducerRecord::new(topic, v.clone()).partition(i as i32 % PARTITIONS);
        acks.push(producer.send(record).await.expect("send in a transaction"));
    }
    for ack in acks {
        ack.await.expect("record acknowledged");
    }
}

fn named(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

/// What `values` sent with [`send_all`] look like per partition, in order.
fn by_partition(values: &[String]) -> BTreeMap<i32, Vec<String>> {
    let mut out: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for (i, v) in values.iter().enumerate() {
        out.entry(i as i32 % PARTITIONS)
            .or_default()
            .push(v.clone());
    }
    out
}

/// Reads `topic` from the beginning until every partition's position reached its end (the
/// high watermark; read_committed stops at the last stable offset, which equals it once no
/// transaction is open): the values per partition, in offset order.
async fn read_to_end(
    cluster: &MetadataCluster,
    topic: &str,
    isolation: IsolationLevel,
) -> BTreeMap<i32, Vec<String>> {
    let mut consumer = Consumer::new(consumer_config(cluster, isolation))
        .await
        .expect("consumer connects");
    consumer.assign_topic(topic).await.expect("assign");
    consumer.seek_all(Offset::Beginning);
    let tps: Vec<TopicPartition> = consumer.assignment();
    let mut out: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for r in consumer
            .poll(Duration::from_millis(200))
            .await
            .expect("poll")
        {
            let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
            out.entry(r.partition).or_default().push(v);
        }
        let at_end = tps.iter().all(|tp| {
            let hw = consumer.high_watermark(tp);
            hw >= 0 && consumer.position(tp) == Some(hw)
        });
        if at_end {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{isolation:?} consumer of {topic} did not reach the end: {out:?}"
        );
    }
}

/// "latest" of partition 0 as a consumer with `isolation` resolves it (ListOffsets).
async fn latest(cluster: &MetadataCluster, isolation: IsolationLevel) -> i64 {
    let mut consumer = Consumer::new(consumer_config(cluster, isolation))
        .await
        .expect("consumer connects");
    let tp = TopicPartition::new(TOPIC, 0);
    consumer.assign([tp.clone()]);
    consumer.seek(&tp, Offset::End).expect("seek");
    // The seek resolves at the next poll.
    let _ = consumer
        .poll(Duration::from_millis(50))
        .await
        .expect("poll");
    consumer.position(&tp).expect("position resolved")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_abort_fence_and_carry_group_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let admin = Admin::new(ClientConfig::new(cluster.bootstrap()))
        .await
        .expect("admin");
    for t in [TOPIC, OUT] {
        admin
            .create_topic(NewTopic::new(t, PARTITIONS, 3))
            .await
            .expect("create topic");
        wait_topic_on_brokers(&cluster, t, PARTITIONS, 3).await;
    }

    // Before init_transactions, nothing transactional is allowed.
    let a = Producer::new(txn_producer_config(&cluster, "client-a"))
        .await
        .expect("producer");
    assert!(matches!(
        a.send(ProducerRecord::new(TOPIC, "x")).await,
        Err(ClientError::InvalidState(_))
    ));
    assert!(matches!(
        a.begin_transaction(),
        Err(ClientError::InvalidState(_))
    ));
    a.init_transactions().await.expect("init_transactions");
    assert!(a.producer_id().0 >= 0);
    assert!(
        matches!(
            a.send(ProducerRecord::new(TOPIC, "x")).await,
            Err(ClientError::InvalidState(_))
        ),
        "send outside a transaction"
    );

    // Commit, abort, commit, across the three partitions.
    let committed1 = named("c", 0..9);
    let aborted = named("a", 0..9);
    let committed2 = named("d", 0..6);
    a.begin_transaction().expect("begin");
    send_all(&a, TOPIC, &committed1).await;
    a.commit_transaction().await.expect("commit");
    a.begin_transaction().expect("begin");
    send_all(&a, TOPIC, &aborted).await;
    a.abort_transaction().await.expect("abort");
    a.begin_transaction().expect("begin");
    send_all(&a, TOPIC, &committed2).await;
    a.commit_transaction().await.expect("commit");

    // An open transaction: read_committed's "latest" of partition 0 stays at its first record.
    a.begin_transaction().expect("begin");
    let open = a
        .send(ProducerRecord::new(TOPIC, "open").partition(0))
        .await
        .expect("send");
    let open_offset = open.await.expect("acknowledged").offset;
    assert_eq!(
        latest(&cluster, IsolationLevel::ReadCommitted).await,
        open_offset,
        "the last stable offset is the open transaction's first offset"
    );
    assert_eq!(
        latest(&cluster, IsolationLevel::ReadUncommitted).await,
        open_offset + 1
    );
    // A group's lag: against the high watermark (as kafka-consumer-groups.sh measures it) and,
    // as `stableLag`, against the last stable offset a read_committed consumer can reach.
    let p0 = TopicPartition::new(TOPIC, 0);
    admin
        .alter_group_offsets("lag-group", &BTreeMap::from([(p0, 0)]))
        .await
        .expect("commit offset 0");
    let row = wait_until(Duration::from_secs(20), "the group's lag", || async {
        let (_, g) = cluster
            .get(cluster.ids()[0], "/api/v1/metadata/groups/lag-group")
            .await?;
        let row = g["partitions"].as_array()?.first()?.clone();
        (row["lag"].as_i64() == Some(open_offset + 1)).then_some(row)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(row["lastStableOffset"], open_offset, "{row}");
    assert_eq!(row["stableLag"], open_offset, "{row}");

    // A second instance with the same transactional id fences the first and aborts its open
    // transaction.
    let b = Producer::new(txn_producer_config(&cluster, "client-a"))
        .await
        .expect("producer b");
    b.init_transactions().await.expect("b init_transactions");
    assert_eq!(b.producer_id().0, a.producer_id().0, "same producer id");
    assert!(b.producer_id().1 > a.producer_id().1, "a newer epoch");
    let fenced = a.commit_transaction().await;
    assert!(
        matches!(fenced, Err(ClientError::ProducerFatal { .. })),
        "the fenced producer's commit: {fenced:?}"
    );
    assert!(matches!(
        a.send(ProducerRecord::new(TOPIC, "late").partition(1))
            .await,
        Err(ClientError::ProducerFatal { .. })
    ));
    assert!(matches!(
        a.begin_transaction(),
        Err(ClientError::ProducerFatal { .. })
    ));

    // read_committed: exactly the committed records, in order; read_uncommitted: all of them.
    let mut expected = by_partition(&committed1);
    for (p, vs) in by_partition(&committed2) {
        expected.entry(p).or_default().extend(vs);
    }
    let got = read_to_end(&cluster, TOPIC, IsolationLevel::ReadCommitted).await;
    assert_eq!(got, expected, "{}", process_logs(dir.path()));
    let got = read_to_end(&cluster, TOPIC, IsolationLevel::ReadUncommitted).await;
    let mut everything = by_partition(&committed1);
    for (p, vs) in by_partition(&aborted) {
        everything.entry(p).or_default().extend(vs);
    }
    for (p, vs) in by_partition(&committed2) {
        everything.entry(p).or_default().extend(vs);
    }
    everything.entry(0).or_default().push("open".to_string());
    assert_eq!(got, everything);

    // Read-process-write: the group's offsets go with the transaction.
    const GROUP: &str = "txn-group";
    let mut gc = GroupConfig::new(GROUP);
    gc.enable_auto_commit = false;
    gc.heartbeat_interval = Duration::from_millis(200);
    gc.session_timeout = Duration::from_secs(6);
    let mut member = GroupConsumer::new(
        consumer_config(&cluster, IsolationLevel::ReadCommitted),
        gc,
        vec![TOPIC.to_string()],
    )
    .await
    .expect("group consumer");
    let total: usize = expected.values().map(Vec::len).sum();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < total {
        assert!(Instant::now() < deadline, "the group read {seen:?}");
        seen.extend(
            member
                .poll(Duration::from_millis(200))
                .await
                .expect("group poll"),
        );
    }
    let offsets: BTreeMap<TopicPartition, i64> = member
        .assignment()
        .iter()
        .filter_map(|tp| member.position(tp).map(|o| (tp.clone(), o)))
        .collect();
    assert_eq!(offsets.len(), PARTITIONS as usize, "{offsets:?}");
    let metadata = member.group_metadata();
    assert!(metadata.generation_id > 0 && !metadata.member_id.is_empty());

    let committed_now = || async {
        admin
            .describe_group(GROUP)
            .await
            .expect("describe")
            .committed
    };
    b.begin_transaction().expect("begin");
    send_all(&b, OUT, &named("o", 0..3)).await;
    b.send_offsets_to_transaction(&offsets, &metadata)
        .await
        .expect("send offsets");
    b.abort_transaction().await.expect("abort");
    assert!(
        committed_now().await.is_empty(),
        "an aborted transaction commits no offsets"
    );
    b.begin_transaction().expect("begin");
    send_all(&b, OUT, &named("p", 0..3)).await;
    b.send_offsets_to_transaction(&offsets, &metadata)
        .await
        .expect("send offsets");
    b.commit_transaction().await.expect("commit");
    let offsets = &offsets;
    wait_until(
        Duration::from_secs(10),
        "the group's offsets committed by the transaction",
        || async move { (committed_now().await == *offsets).then_some(()) },
    )
    .await
    .expect("offsets committed");
    let out = read_to_end(&cluster, OUT, IsolationLevel::ReadCommitted).await;
    assert_eq!(out, by_partition(&named("p", 0..3)));

    // An abort drops the records not sent yet (here: all of them, lingering) instead of
    // sending them for the marker to cancel.
    let mut config = txn_producer_config(&cluster, "client-c");
    config.linger = Duration::from_secs(60);
    let c = Producer::new(config).await.expect("producer c");
    c.init_transactions().await.expect("c init_transactions");
    c.begin_transaction().expect("begin");
    let mut unsent = Vec::new();
    for (i, v) in named("u", 0..3).into_iter().enumerate() {
        let record = ProducerRecord::new(OUT, v).partition(i as i32);
        unsent.push(c.send(record).await.expect("send"));
    }
    c.abort_transaction().await.expect("abort");
    for f in unsent {
        let r = f.await;
        assert!(matches!(r, Err(ClientError::TransactionAborted)), "{r:?}");
    }
    let mut sent = by_partition(&named("o", 0..3));
    for (p, vs) in by_partition(&named("p", 0..3)) {
        sent.entry(p).or_default().extend(vs);
    }
    let out = read_to_end(&cluster, OUT, IsolationLevel::ReadUncommitted).await;
    assert_eq!(out, sent, "what reached the log");
    // KIP-447: a zombie (an old generation) cannot commit through a transaction, and the
    // transaction can then only abort.
    let zombie = dmq_client::ConsumerGroupMetadata {
        generation_id: metadata.generation_id - 1,
        ..metadata.clone()
    };
    b.begin_transaction().expect("begin");
    let refused = b.send_offsets_to_transaction(offsets, &zombie).await;
    assert_eq!(
        refused.as_ref().err().and_then(ClientError::code),
        Some(22),
        "{refused:?}"
    );
    let commit = b.commit_transaction().await;
    assert!(
        matches!(
            commit,
            Err(ClientError::AbortRequired { code: Some(22), .. })
        ),
        "{commit:?}"
    );
    b.abort_transaction().await.expect("abort");
    assert_eq!(committed_now().await, *offsets, "unchanged");
    member.close().await.expect("close");

    // The CLI: `dmq produce --transactional-id` commits stdin at its end; `dmq consume
    // --isolation read_committed` skips an aborted transaction that read_uncommitted shows.
    const CLI: &str = "txn-cli";
    admin
        .create_topic(NewTopic::new(CLI, 1, 3))
        .await
        .expect("create topic");
    wait_topic_on_brokers(&cluster, CLI, 1, 3).await;
    b.begin_transaction().expect("begin");
    b.send(ProducerRecord::new(CLI, "gone"))
        .await
        .expect("send")
        .await
        .expect("acknowledged");
    b.abort_transaction().await.expect("abort");
    let dmq = |args: &[&str], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dmq"))
            .args(args)
            .env("DMQ_BOOTSTRAP", cluster.bootstrap())
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run dmq");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("dmq exits");
        assert!(
            out.status.success(),
            "dmq {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    dmq(&["produce", CLI, "--transactional-id", "cli-txn"], "x\ny\n");
    let consume = |isolation: &'static str| {
        let args = [
            "consume",
            CLI,
            "--from-beginning",
            "--isolation",
            isolation,
            "--timeout-ms",
            "2000",
        ];
        dmq(&args, "")
    };
    assert_eq!(consume("read_committed"), "x\ny\n");
    assert_eq!(consume("read_uncommitted"), "gone\nx\ny\n");
}
