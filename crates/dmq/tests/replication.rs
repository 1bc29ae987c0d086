//! Replication under faults, Jepsen-style: real brokers, a real idempotent acks=all producer
//! (librdkafka through confluent-kafka), and faults injected with signals — SIGKILL, SIGSTOP,
//! SIGTERM. Afterwards every replica's log is read from disk and compared byte for byte, and
//! every acknowledged record is looked up: none lost, none duplicated, none reordered.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::kafka;
use common::{process_logs, venv_python, wait_for_log};
use dmq::procs::{wait_until, MetadataCluster};
use dmq_types::ControllerConfig;
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::RecordBatchDecoder;
use serde_json::{json, Value};

const TOPIC: &str = "jepsen";

/// A 3-broker cluster (RF 3 by default) with the given controller timings.
async fn cluster(dir: &Path, controller: ControllerConfig) -> MetadataCluster {
    common::start_cluster_with(dir, 3, 3, controller).await
}

/// Creates `TOPIC` with RF 3 and `min.insync.replicas=2`.
async fn create_topic(cluster: &MetadataCluster, partitions: i32) {
    let body = json!({"topicName": TOPIC, "numPartitions": partitions, "replicationFactor": 3,
        "config": {"min.insync.replicas": "2"}});
    let (status, body) = common::post_leader(cluster, "/api/v1/metadata/topics", &body).await;
    assert_eq!(status, 201, "create topic: {body}");
    wait_partitions(cluster, "every replica in the ISR", |ps| {
        ps.iter().all(|p| isr(p).len() == 3)
    })
    .await;
    common::wait_topic_on_brokers(cluster, TOPIC, partitions, 3).await;
}

/// The topic's partitions as the quorum has committed them.
async fn partitions(cluster: &MetadataCluster) -> Option<Vec<Value>> {
    let leader = cluster.leader().await?;
    let (status, topic) = cluster
        .get(
            leader,
            &format!("/api/v1/metadata/topics/{TOPIC}?consistent=true"),
        )
        .await?;
    (status == 200).then(|| topic["partitions"].as_array().cloned())?
}

fn isr(p: &Value) -> Vec<i64> {
    p["isr"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

fn leader_of(p: &Value) -> i32 {
    p["leader"].as_i64().unwrap_or(-1) as i32
}

/// Waits (20 s) until the committed partitions satisfy `ready`; returns them.
async fn wait_partitions(
    cluster: &MetadataCluster,
    what: &str,
    ready: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let ready = &ready;
    wait_until(Duration::from_secs(20), what, || async move {
        let ps = partitions(cluster).await?;
        ready(&ps).then_some(ps)
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}; partitions {:?}",
            futures::executor::block_on(partitions(cluster))
        )
    })
}

/// The Python producer, running until its stop file appears.
struct Producer {
    child: std::process::Child,
    stop: PathBuf,
    out: PathBuf,
}

impl Producer {
    fn start(cluster: &MetadataCluster, dir: &Path, partitions: i32) -> Producer {
        Producer::start_with(&cluster.bootstrap(), dir, partitions, &[])
    }

    /// [`Producer::start`] at `bootstrap` with extra librdkafka properties (`KEY=VALUE`).
    fn start_with(bootstrap: &str, dir: &Path, partitions: i32, extra: &[String]) -> Producer {
        let stop = dir.join("producer.stop");
        let out = dir.join("producer.json");
        let log = std::fs::File::create(dir.join("producer.log")).expect("producer log");
        let child = std::process::Command::new(venv_python())
            .current_dir(common::repo_root())
            .arg("tests/interop/jepsen_producer.py")
            .args(["--bootstrap", bootstrap, "--topic", TOPIC])
            .args(extra.iter().flat_map(|kv| ["--config", kv.as_str()]))
            .args(["--partitions", &partitions.to_string()])
            .arg("--stop-file")
            .arg(&stop)
            .arg("--out")
            .arg(&out)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the producer");
        Producer { child, stop, out }
    }

    fn acked(&self) -> u64 {
        let progress = self.out.with_extension("json.progress");
        std::fs::read_to_string(progress)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until `more` records beyond the current count are acknowledged.
    async fn wait_progress(&self, more: u64, what: &str) {
        let target = self.acked() + more;
        let me = &self;
        wait_until(Duration::from_secs(30), what, || async move {
            (me.acked() >= target).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {} acknowledged", self.acked()));
    }

    /// Stops producing, waits for the final flush and returns the report.
    async fn finish(mut self) -> Report {
        std::fs::write(&self.stop, b"stop").expect("stop file");
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "producer failed: {status}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "producer did not finish"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let text = std::fs::read_to_string(&self.out).expect("producer report");
        let v: Value = serde_json::from_str(&text).expect("report JSON");
        let acked = v["acked"]
            .as_array()
            .expect("acked")
            .iter()
            .map(|a| {
                let n = |i: usize| a[i].as_i64().expect("number");
                (n(0) as i32, n(1), n(2))
            })
            .collect();
        let errors = v["errors"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        Report {
            sent: v["sent"].as_i64().unwrap_or(0),
            acked,
            errors,
            unflushed: v["unflushed"].as_i64().unwrap_or(-1),
        }
    }
}

struct Report {
    sent: i64,
    /// (partition, offset, value)
    acked: Vec<(i32, i64, i64)>,
    errors: BTreeMap<String, u64>,
    unflushed: i64,
}

/// Waits until every replica of every partition has the leader's whole log (HW = LEO
/// everywhere), so that replicas can be compared in full.
async fn wait_replicas_converged(cluster: &MetadataCluster, partitions: i32) {
    wait_partitions(cluster, "full ISRs", |ps| {
        ps.iter().all(|p| isr(p).len() == 3)
    })
    .await;
    wait_until(
        Duration::from_secs(30),
        "replicas to converge",
        || async move {
            let mut ends: BTreeMap<i32, BTreeSet<(i64, i64)>> = BTreeMap::new();
            for b in cluster.broker_ids() {
                let (_, status) = cluster
                    .broker_get(b, "/api/v1/storage/replication/status")
                    .await?;
                for p in status["partitions"].as_array()? {
                    if p["topic"] != TOPIC {
                        continue;
                    }
                    let hw = p["highWatermark"].as_i64()?;
                    let leo = p["logEndOffset"].as_i64()?;
                    ends.entry(p["partition"].as_i64()? as i32)
                        .or_default()
                        .insert((hw, leo));
                }
            }
            let converged = ends.len() == partitions as usize
                && ends
                    .values()
                    .all(|s| s.len() == 1 && s.iter().all(|(hw, leo)| hw == leo));
            converged.then_some(())
        },
    )
    .await
    .expect("replicas converge");
}

/// Every batch of a replica's log, read from disk (the broker is stopped).
fn read_log(dir: &Path) -> Vec<u8> {
    let log = dmq_log::Log::open(dir, dmq_log::LogConfig::default()).expect("open replica log");
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let mut buf = Vec::new();
    while offset < log.log_end_offset() {
        let Some(slice) = log.read(offset, 1 << 20).expect("read") else {
            break;
        };
        buf.clear();
        slice.read_into(&mut buf).expect("read slice");
        let mut next = offset;
        for (_, batch) in dmq_log::batch::Batches::new(&buf, false).flatten() {
            let h = dmq_log::BatchHeader::new(batch).expect("batch header");
            if h.last_offset() >= offset {
                out.extend_from_slice(batch);
                next = h.last_offset() + 1;
            }
        }
        assert!(next > offset, "log read stalled at {offset}");
        offset = next;
    }
    out
}

/// `(offset, value)` of every record in `batches`.
fn decode(batches: &[u8]) -> Vec<(i64, i64)> {
    let mut bytes = Bytes::copy_from_slice(batches);
    let sets = RecordBatchDecoder::decode_all(&mut bytes).expect("batches decode");
    sets.into_iter()
        .flat_map(|s| s.records)
        .map(|r| {
            let v = r.value.unwrap_or_default();
            let v: i64 = std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(-1);
            (r.offset, v)
        })
        .collect()
}

/// Stops every broker, then checks the logs on disk: replicas identical, every acknowledged
/// record at its acknowledged offset, no value twice, values increasing in each partition.
/// Negative values are records the test wrote itself with acks=1; they may or may not survive.
fn verify(cluster: &mut MetadataCluster, partitions: i32, report: &Report) {
    for b in cluster.broker_ids() {
        cluster.kill_broker(b);
    }
    let mut seen = BTreeSet::new();
    let mut records = 0;
    for p in 0..partitions {
        let logs: Vec<(i32, Vec<u8>)> = cluster
            .broker_ids()
            .into_iter()
            .map(|b| {
                (
                    b,
                    read_log(&cluster.broker_data_dir(b).join(format!("{TOPIC}-{p}"))),
                )
            })
            .collect();
        let (first, reference) = &logs[0];
        for (b, log) in &logs[1..] {
            assert!(
                log == reference,
                "partition {p}: broker {b}'s log ({} bytes) differs from broker {first}'s ({} bytes)",
                log.len(),
                reference.len()
            );
        }
        let decoded = decode(reference);
        let by_offset: BTreeMap<i64, i64> = decoded.iter().copied().collect();
        let mut last = -1;
        for (offset, value) in &decoded {
            if *value < 0 {
                // Written by the test itself with acks=1 (kept or lost: both are allowed).
                continue;
            }
            assert!(
                *value > last,
                "partition {p}: value {value} at {offset} after {last}"
            );
            assert!(seen.insert(*value), "value {value} stored twice");
            assert_eq!(
                value % i64::from(partitions),
                i64::from(p),
                "value in the wrong partition"
            );
            last = *value;
        }
        records += decoded.len();
        for (ap, offset, value) in report.acked.iter().filter(|a| a.0 == p) {
            assert_eq!(
                by_offset.get(offset),
                Some(value),
                "acknowledged value {value} at {ap}-{offset} is not in the log"
            );
        }
    }
    println!(
        "verified: {} sent, {} acknowledged, {records} stored, errors {:?}",
        report.sent,
        report.acked.len(),
        report.errors
    );
    assert_eq!(
        report.unflushed, 0,
        "the producer could not deliver everything"
    );
    assert!(report.acked.len() as i64 <= report.sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_writes_survive_five_leader_sigkills() {
    const PARTITIONS: i32 = 3;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(dir.path(), common::long_sessions()).await;
    create_topic(&cluster, PARTITIONS).await;
    let producer = Producer::start(&cluster, dir.path(), PARTITIONS);
    producer.wait_progress(500, "the producer to start").await;
    for round in 0..5 {
        let ps = partitions(&cluster).await.expect("partitions");
        let p = &ps[round % ps.len()];
        let victim = leader_of(p);
        let epoch = p["leaderEpoch"].as_i64().unwrap_or(0);
        cluster.kill_broker(victim);
        // Long sessions: only the refused-connection probe can fence the broker this fast.
        let pid = p["partitionId"].as_i64().unwrap_or(0) as usize;
        wait_partitions(&cluster, "a new leader from the ISR", |ps| {
            leader_of(&ps[pid]) != victim
                && leader_of(&ps[pid]) >= 0
                && ps[pid]["leaderEpoch"].as_i64().unwrap_or(0) > epoch
        })
        .await;
        producer
            .wait_progress(300, "produce to resume after the SIGKILL")
            .await;
        cluster.start_broker(victim).expect("restart broker");
        wait_partitions(&cluster, "the restarted broker back in every ISR", |ps| {
            ps.iter().all(|p| isr(p).len() == 3)
        })
        .await;
        producer
            .wait_progress(300, "produce to continue after the restart")
            .await;
        println!(
            "round {round}: killed {victim}, {} acknowledged",
            producer.acked()
        );
    }
    let report = producer.finish().await;
    wait_replicas_converged(&cluster, PARTITIONS).await;
    verify(&mut cluster, PARTITIONS, &report);
}

/// The same with security on (SPEC §11): the producer writes over SASL_SSL (TLS with a
/// throwaway CA, PLAIN), followers fetch over the inter-broker SASL connections, and every HTTP
/// API — Raft RPCs, broker registration and heartbeats, metadata pushes — speaks HTTPS and
/// needs the token. Three leader SIGKILLs; nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_writes_survive_leader_sigkills_over_sasl_ssl() {
    use dmq_types::security::{ListenerConfig, SecurityProtocol};
    const PARTITIONS: i32 = 3;
    const PASSWORD: &str = "jepsen-admin-secret";
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dmq::certs::Pki::generate(&dir.path().join("certs"), "jepsen CA").expect("pki");
    let mut cluster = MetadataCluster::new(
        Path::new(env!("CARGO_BIN_EXE_dmq")),
        dir.path(),
        3,
        common::long_sessions(),
    )
    .with_brokers(3);
    cluster.config.topic_defaults.default_replication_factor = 3;
    cluster.config.security = Some(
        serde_json::from_value(json!({
            "tls": {"certFile": pki.cert_file, "keyFile": pki.key_file, "caFile": pki.ca_file},
            "sasl": {"mechanisms": ["PLAIN"], "users": [{"name": "admin", "password": PASSWORD}]},
            "authorizer": {"enabled": true, "superUsers": ["User:admin"]},
            "interBroker": {"user": "admin", "password": PASSWORD},
            "http": {"tokens": [{"token": "jepsen-token", "principal": "User:admin"}], "tls": true},
        }))
        .expect("security"),
    );
    let mut bootstrap = Vec::new();
    for b in &mut cluster.config.services.storage_services {
        let port = dmq::procs::free_port();
        b.listeners = vec![ListenerConfig {
            name: "SECURE".into(),
            port,
            protocol: SecurityProtocol::SaslSsl,
        }];
        bootstrap.push(format!("127.0.0.1:{port}"));
    }
    cluster.start_all().expect("start cluster processes");
    if let Err(e) = cluster.wait_for_leader(Duration::from_secs(15)).await {
        panic!("metadata leader: {e}\n{}", process_logs(dir.path()));
    }
    if let Err(e) = cluster.wait_for_brokers(Duration::from_secs(30)).await {
        panic!("brokers up: {e}\n{}", process_logs(dir.path()));
    }
    // Every HTTP API speaks HTTPS only: plain HTTP gets no answer, HTTPS without the token a
    // 401, `/health` is open, and a client that does not trust the CA is refused.
    let trusting = dmq_types::https::client_builder(Some(&pki.ca_file))
        .expect("tls")
        .build()
        .expect("client");
    for url in [cluster.url(1), cluster.broker_url(101)] {
        assert!(url.starts_with("https://"), "{url}");
        let plain = url.replacen("https://", "http://", 1);
        assert!(
            dmq_types::https::client()
                .get(format!("{plain}/health"))
                .send()
                .await
                .is_err(),
            "plain HTTP to {plain}"
        );
        let health = trusting.get(format!("{url}/health")).send().await;
        assert_eq!(health.map(|r| r.status().as_u16()).ok(), Some(200), "{url}");
        let untrusted = dmq_types::https::client()
            .get(format!("{url}/health"))
            .send()
            .await;
        assert!(untrusted.is_err(), "a client without the CA at {url}");
    }
    let no_token = trusting
        .get(format!("{}/api/v1/metadata/cluster", cluster.url(1)))
        .send()
        .await
        .expect("https");
    assert_eq!(no_token.status().as_u16(), 401);
    create_topic(&cluster, PARTITIONS).await;
    let extra = [
        "security.protocol=SASL_SSL".to_string(),
        format!("ssl.ca.location={}", pki.ca_file.display()),
        "sasl.mechanism=PLAIN".to_string(),
        "sasl.username=admin".to_string(),
        format!("sasl.password={PASSWORD}"),
    ];
    let producer = Producer::start_with(&bootstrap.join(","), dir.path(), PARTITIONS, &extra);
    producer.wait_progress(500, "the producer to start").await;
    for round in 0..3 {
        let ps = partitions(&cluster).await.expect("partitions");
        let p = &ps[round % ps.len()];
        let victim = leader_of(p);
        let epoch = p["leaderEpoch"].as_i64().unwrap_or(0);
        cluster.kill_broker(victim);
        let pid = p["partitionId"].as_i64().unwrap_or(0) as usize;
        wait_partitions(&cluster, "a new leader from the ISR", |ps| {
            leader_of(&ps[pid]) != victim
                && leader_of(&ps[pid]) >= 0
                && ps[pid]["leaderEpoch"].as_i64().unwrap_or(0) > epoch
        })
        .await;
        producer
            .wait_progress(300, "produce to resume after the SIGKILL")
            .await;
        cluster.start_broker(victim).expect("restart broker");
        wait_partitions(&cluster, "the restarted broker back in every ISR", |ps| {
            ps.iter().all(|p| isr(p).len() == 3)
        })
        .await;
        producer
            .wait_progress(300, "produce to continue after the restart")
            .await;
        println!(
            "round {round}: killed {victim}, {} acknowledged over SASL_SSL",
            producer.acked()
        );
    }
    // The controller too: the metadata leader is SIGKILLed; the others elect a new one over
    // HTTPS Raft RPCs, the brokers find it, and produce goes on. Then a broker is killed so
    // that the new controller must move a leadership.
    let old = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .expect("metadata leader");
    cluster.kill(old);
    let new = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("a new metadata leader: {e}\n{}", process_logs(dir.path())));
    assert_ne!(new, old);
    // A consistent read right after the election may be refused (503) until the new leader
    // has committed in its term: wait for one.
    let ps = wait_partitions(&cluster, "the partitions from the new controller", |ps| {
        !ps.is_empty() && leader_of(&ps[0]) >= 0
    })
    .await;
    let victim = leader_of(&ps[0]);
    let epoch = ps[0]["leaderEpoch"].as_i64().unwrap_or(0);
    cluster.kill_broker(victim);
    wait_partitions(&cluster, "the new controller to move a leadership", |ps| {
        leader_of(&ps[0]) != victim
            && leader_of(&ps[0]) >= 0
            && ps[0]["leaderEpoch"].as_i64().unwrap_or(0) > epoch
    })
    .await;
    producer
        .wait_progress(300, "produce to resume under the new controller")
        .await;
    cluster.start(old).expect("restart metadata node");
    cluster.start_broker(victim).expect("restart broker");
    wait_partitions(&cluster, "every ISR full again", |ps| {
        ps.iter().all(|p| isr(p).len() == 3)
    })
    .await;
    println!(
        "controller {old} killed ({new} took over), broker {victim} killed: {} acknowledged",
        producer.acked()
    );
    let report = producer.finish().await;
    wait_replicas_converged(&cluster, PARTITIONS).await;
    verify(&mut cluster, PARTITIONS, &report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_leader_acknowledges_nothing_and_truncates_its_divergent_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let controller = ControllerConfig {
        broker_heartbeat_interval_ms: 300,
        broker_session_timeout_ms: 2_000,
        ..ControllerConfig::default()
    };
    let mut cluster = cluster(dir.path(), controller).await;
    create_topic(&cluster, 1).await;
    let producer = Producer::start(&cluster, dir.path(), 1);
    producer.wait_progress(300, "the producer to start").await;

    let ps = partitions(&cluster).await.expect("partitions");
    let old = leader_of(&ps[0]);
    let epoch = ps[0]["leaderEpoch"].as_i64().unwrap_or(0);
    let followers: Vec<i32> = cluster
        .broker_ids()
        .into_iter()
        .filter(|b| *b != old)
        .collect();
    // Freeze the followers so that the leader's next writes reach no one: its divergent tail.
    for f in &followers {
        cluster
            .signal_broker(*f, libc::SIGSTOP)
            .expect("SIGSTOP follower");
    }
    // A frozen follower may still receive the answer to the one fetch it had in flight (the
    // first of these writes wakes it); everything after that stays on the leader alone.
    let mut conn = kafka::connect(&cluster.kafka_addr(old)).await;
    for i in 0..20 {
        let batch = kafka::batch(&[(format!("tail-{i}"), "-1".to_string())], None);
        let r = kafka::produce(&mut conn, TOPIC, 0, batch, 1).await;
        assert_eq!(r.error_code, 0, "acks=1 to the leader");
    }
    let old_end = leader_end(&cluster, old).await;
    cluster
        .signal_broker(old, libc::SIGSTOP)
        .expect("SIGSTOP leader");
    for f in &followers {
        cluster
            .signal_broker(*f, libc::SIGCONT)
            .expect("SIGCONT follower");
    }
    let ps = wait_partitions(&cluster, "a leader to replace the paused one", |ps| {
        leader_of(&ps[0]) != old
            && leader_of(&ps[0]) >= 0
            && ps[0]["leaderEpoch"].as_i64().unwrap_or(0) > epoch
    })
    .await;
    println!("paused {old}; new leader {}", leader_of(&ps[0]));
    producer
        .wait_progress(300, "produce to resume on the new leader")
        .await;

    cluster
        .signal_broker(old, libc::SIGCONT)
        .expect("SIGCONT leader");
    // The deposed leader must not acknowledge an acks=all write, whatever it believes.
    let batch = kafka::batch(&[("late".to_string(), "-2".to_string())], None);
    let r = kafka::produce(&mut conn, TOPIC, 0, batch, -1).await;
    assert_ne!(
        r.error_code, 0,
        "the deposed leader acknowledged an acks=all write"
    );
    // The deposed leader holds a divergent tail unless the followers' in-flight fetches
    // happened to carry all of it: where the old epoch ends on the new leader tells.
    let epoch0_end = epoch_end(&cluster, leader_of(&ps[0]), epoch as i32).await;
    if old_end > epoch0_end {
        wait_for_log(
            &cluster,
            old,
            "truncated a divergent suffix",
            Duration::from_secs(20),
        )
        .await;
    }
    wait_partitions(&cluster, "the old leader back in the ISR", |ps| {
        isr(&ps[0]).len() == 3
    })
    .await;
    producer.wait_progress(300, "produce to continue").await;
    let report = producer.finish().await;
    wait_replicas_converged(&cluster, 1).await;
    verify(&mut cluster, 1, &report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_down_refuses_acks_all_until_they_return() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(dir.path(), common::long_sessions()).await;
    create_topic(&cluster, 1).await;
    let ps = partitions(&cluster).await.expect("partitions");
    let leader = leader_of(&ps[0]);
    let mut conn = kafka::connect(&cluster.kafka_addr(leader)).await;
    let one = |v: &str| kafka::batch(&[("k".to_string(), v.to_string())], None);
    let r = kafka::produce(&mut conn, TOPIC, 0, one("0"), -1).await;
    assert_eq!(r.error_code, 0);

    let others = followers(&cluster, leader);
    for b in &others {
        cluster.kill_broker(*b);
    }
    wait_partitions(&cluster, "the ISR to shrink to the leader", |ps| {
        isr(&ps[0]) == vec![i64::from(leader)]
    })
    .await;
    // The controller fenced the dead brokers; the leader hears of the smaller ISR from the
    // next metadata push. Until then it would still take the write (and then answer
    // NOT_ENOUGH_REPLICAS_AFTER_APPEND: see the next test).
    let c = &cluster;
    wait_until(
        Duration::from_secs(10),
        "the leader to see the ISR shrink",
        || async move { (leader_state(c, leader).await?["isr"] == json!([leader])).then_some(()) },
    )
    .await
    .expect("leader's ISR");
    let end_before = leader_end(&cluster, leader).await;
    for v in ["1", "2", "3"] {
        let r = kafka::produce(&mut conn, TOPIC, 0, one(v), -1).await;
        assert_eq!(
            ResponseError::try_from_code(r.error_code),
            Some(ResponseError::NotEnoughReplicas),
            "acks=all with one in-sync replica"
        );
    }
    assert_eq!(
        leader_end(&cluster, leader).await,
        end_before,
        "a refused acks=all write must append nothing"
    );

    for b in &others {
        cluster.start_broker(*b).expect("restart");
    }
    wait_partitions(&cluster, "both back in the ISR", |ps| {
        isr(&ps[0]).len() == 3
    })
    .await;
    // The ISR is full again, so acks=all must succeed at once.
    let r = kafka::produce(&mut conn, TOPIC, 0, one("4"), -1).await;
    assert_eq!(
        r.error_code, 0,
        "acks=all once both replicas are back in the ISR"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_is_refused_after_append_when_the_isr_falls_below_min_insync_meanwhile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cluster, leader) = quick_lag_cluster(dir.path()).await;
    let others = followers(&cluster, leader);
    // Frozen followers keep their sessions and accept connections: the leader still counts
    // them in the ISR when the write arrives, and drops them only by the lag rule.
    for b in &others {
        cluster.signal_broker(*b, libc::SIGSTOP).expect("SIGSTOP");
    }
    let mut conn = kafka::connect(&cluster.kafka_addr(leader)).await;
    let one = |v: &str| kafka::batch(&[("k".to_string(), v.to_string())], None);
    let r = kafka::produce(&mut conn, TOPIC, 0, one("alone"), -1).await;
    // The ISR shrank to the leader alone while the write waited: its HW moved past the write,
    // but one copy is not what acks=all with min.insync.replicas=2 promises.
    assert_eq!(
        ResponseError::try_from_code(r.error_code),
        Some(ResponseError::NotEnoughReplicasAfterAppend),
        "acks=all whose ISR fell to one while it waited"
    );
    let state = leader_state(&cluster, leader).await.expect("leader state");
    assert_eq!(state["isr"], json!([leader]), "{state}");
    assert_eq!(state["logEndOffset"], 1, "the batch was appended: {state}");

    for b in &others {
        cluster.signal_broker(*b, libc::SIGCONT).expect("SIGCONT");
    }
    let c = &cluster;
    wait_until(
        Duration::from_secs(15),
        "the followers back in the leader's ISR",
        || async move {
            let isr = leader_state(c, leader).await?["isr"].as_array()?.len();
            (isr == 3).then_some(())
        },
    )
    .await
    .expect("ISR restored");
    let r = kafka::produce(&mut conn, TOPIC, 0, one("replicated"), -1).await;
    assert_eq!(r.error_code, 0, "acks=all with the ISR whole again");
    assert_eq!(r.base_offset, 1);
}

/// A cluster whose leaders drop a follower after 1 s without catching up, with `TOPIC` (one
/// partition, RF 3, every replica in the ISR); returns the partition's leader.
async fn quick_lag_cluster(dir: &Path) -> (MetadataCluster, i32) {
    let controller = ControllerConfig {
        replica_lag_time_max_ms: 1_000,
        ..common::long_sessions()
    };
    let cluster = cluster(dir, controller).await;
    create_topic(&cluster, 1).await;
    let ps = partitions(&cluster).await.expect("partitions");
    let leader = leader_of(&ps[0]);
    (cluster, leader)
}

/// Every broker but `leader`.
fn followers(cluster: &MetadataCluster, leader: i32) -> Vec<i32> {
    cluster
        .broker_ids()
        .into_iter()
        .filter(|b| *b != leader)
        .collect()
}

/// The leader's replication status of `TOPIC`-0 (`/api/v1/storage/replication/status`).
async fn leader_state(cluster: &MetadataCluster, leader: i32) -> Option<Value> {
    let (_, status) = cluster
        .broker_get(leader, "/api/v1/storage/replication/status")
        .await?;
    status["partitions"]
        .as_array()?
        .iter()
        .find(|p| p["topic"] == TOPIC)
        .cloned()
}

/// Where `epoch` ends in `leader`'s log of `TOPIC`-0 (OffsetForLeaderEpoch, as a consumer).
async fn epoch_end(cluster: &MetadataCluster, leader: i32, epoch: i32) -> i64 {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::OffsetForLeaderEpochRequest;
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(kafka::name(TOPIC))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_leader_epoch(epoch)])]);
    let mut conn = kafka::connect(&cluster.kafka_addr(leader)).await;
    let resp = conn
        .send(&req, 4, Duration::ZERO)
        .await
        .expect("OffsetForLeaderEpoch");
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "OffsetForLeaderEpoch");
    p.end_offset
}

/// The leader's log end offset for `TOPIC`-0.
async fn leader_end(cluster: &MetadataCluster, leader: i32) -> i64 {
    leader_state(cluster, leader)
        .await
        .and_then(|p| p["logEndOffset"].as_i64())
        .expect("log end offset")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_a_leader_hands_over_without_producer_errors() {
    const PARTITIONS: i32 = 3;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(dir.path(), common::long_sessions()).await;
    create_topic(&cluster, PARTITIONS).await;
    let producer = Producer::start(&cluster, dir.path(), PARTITIONS);
    producer.wait_progress(500, "the producer to start").await;
    for round in 0..2 {
        let ps = partitions(&cluster).await.expect("partitions");
        let victim = leader_of(&ps[round]);
        let status = cluster
            .terminate_broker(victim, Duration::from_secs(20))
            .await
            .expect("the broker exits after a controlled shutdown");
        assert!(status.success(), "broker exit status {status}");
        let log = std::fs::read_to_string(cluster.broker_log_path(victim)).unwrap_or_default();
        assert!(
            log.contains("controlled shutdown: leaderships moved"),
            "no controlled shutdown in the log:\n{}",
            process_logs(dir.path())
        );
        producer
            .wait_progress(300, "produce to continue after the SIGTERM")
            .await;
        cluster.start_broker(victim).expect("restart");
        wait_partitions(&cluster, "the restarted broker back in every ISR", |ps| {
            ps.iter().all(|p| isr(p).len() == 3)
        })
        .await;
        producer.wait_progress(300, "produce to continue").await;
    }
    let report = producer.finish().await;
    assert!(
        report.errors.is_empty(),
        "the producer saw errors beyond retries: {:?}",
        report.errors
    );
    wait_replicas_converged(&cluster, PARTITIONS).await;
    verify(&mut cluster, PARTITIONS, &report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_follower_leaves_the_isr_after_the_lag_time_and_rejoins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cluster, leader) = quick_lag_cluster(dir.path()).await;
    let stalled = followers(&cluster, leader)[0];
    // Frozen, the follower still accepts connections: only the lag rule can remove it.
    cluster
        .signal_broker(stalled, libc::SIGSTOP)
        .expect("SIGSTOP");
    let mut conn = kafka::connect(&cluster.kafka_addr(leader)).await;
    let batch = kafka::batch(&[("k".to_string(), "1".to_string())], None);
    // acks=all waits for the stalled follower until the leader drops it from the ISR.
    let r = kafka::produce(&mut conn, TOPIC, 0, batch, -1).await;
    assert_eq!(r.error_code, 0, "acks=all once the ISR has shrunk");
    let ps = partitions(&cluster).await.expect("partitions");
    assert!(
        !isr(&ps[0]).contains(&i64::from(stalled)),
        "stalled follower still in the ISR: {:?}",
        ps[0]
    );
    cluster
        .signal_broker(stalled, libc::SIGCONT)
        .expect("SIGCONT");
    wait_partitions(&cluster, "the follower back in the ISR", |ps| {
        isr(&ps[0]).len() == 3
    })
    .await;
    let (_, _) = cluster
        .broker_get(leader, "/health")
        .await
        .expect("leader up");
    let metrics = dmq_types::https::client()
        .get(format!("{}/metrics", cluster.broker_url(leader)))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    for (name, at_least) in [
        ("kafka_server_replicamanager_isr_shrinks_total", 1),
        ("kafka_server_replicamanager_isr_expands_total", 1),
    ] {
        let value: u64 = metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains(TOPIC))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(value >= at_least, "{name} = {value}");
    }
}

/// The status of `TOPIC`-0 on `broker` (`/api/v1/storage/replication/status`).
async fn replica_state(cluster: &MetadataCluster, broker: i32) -> Option<Value> {
    leader_state(cluster, broker).await
}

/// `broker`'s log end offset of `TOPIC`-0, as it reports it.
async fn log_end(cluster: &MetadataCluster, broker: i32) -> Option<i64> {
    replica_state(cluster, broker).await?["logEndOffset"].as_i64()
}

/// The broker epoch (KIP-903) the quorum has for `broker`.
async fn broker_epoch(cluster: &MetadataCluster, broker: i32) -> Option<u64> {
    let leader = cluster.leader().await?;
    let (status, b) = cluster
        .get(leader, &format!("/api/v1/metadata/brokers/{broker}"))
        .await?;
    (status == 200).then(|| b["brokerEpoch"].as_u64())?
}

/// `count` acks=all records `v{first}`… to `TOPIC`-0 through `leader`, all acknowledged.
async fn produce_acked(cluster: &MetadataCluster, leader: i32, first: usize, count: usize) {
    let records: Vec<(String, String)> = (first..first + count)
        .map(|i| ("k".to_string(), format!("v{i}")))
        .collect();
    let mut conn = kafka::connect(&cluster.kafka_addr(leader)).await;
    let r = kafka::produce(&mut conn, TOPIC, 0, kafka::batch(&records, None), -1).await;
    assert_eq!(r.error_code, 0, "acks=all produce of v{first}..");
}

/// Issue 15, scenario 1 (KIP-903). A follower crashes and loses the unflushed tail of its log
/// (as an OS crash or power loss does). Restarted, it registers with a new broker epoch: the
/// controller takes it out of the ISR, and the leader's memory of its old log end no longer
/// counts, so it rejoins only after fetching back to the high watermark. Killing the leader
/// right after the restart then elects the replica that has everything: nothing acknowledged
/// is lost. (Before: the restarted replica stayed or came back in the ISR at once, was elected,
/// and the full replica truncated offsets 50–99 away.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_lost_its_tail_rejoins_the_isr_only_after_catching_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(dir.path(), common::long_sessions()).await;
    create_topic(&cluster, 1).await;
    let ps = partitions(&cluster).await.expect("partitions");
    let leader = leader_of(&ps[0]);
    let replicas: Vec<i32> = ps[0]["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .filter_map(Value::as_i64)
        .map(|b| b as i32)
        .collect();
    // The victim is the replica the controller prefers after the leader (replica order).
    let victim = *replicas.iter().find(|b| **b != leader).expect("victim");
    let other = *replicas
        .iter()
        .find(|b| **b != leader && **b != victim)
        .expect("third replica");
    produce_acked(&cluster, leader, 0, 50).await;
    wait_until(Duration::from_secs(20), "the victim to hold 50", || async {
        (log_end(&cluster, victim).await? == 50).then_some(())
    })
    .await
    .expect("victim at 50");
    let segment = cluster
        .broker_data_dir(victim)
        .join(format!("{TOPIC}-0"))
        .join("00000000000000000000.log");
    let flushed_len = std::fs::metadata(&segment).expect("segment").len();
    produce_acked(&cluster, leader, 50, 50).await;
    wait_until(
        Duration::from_secs(20),
        "the victim to hold 100",
        || async { (log_end(&cluster, victim).await? == 100).then_some(()) },
    )
    .await
    .expect("victim at 100");
    let old_epoch = broker_epoch(&cluster, victim).await.expect("broker epoch");

    // Crash, and the tail after offset 50 never reached the disk.
    cluster.kill_broker(victim);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open segment");
    f.set_len(flushed_len).expect("cut the tail");
    drop(f);
    cluster.start_broker(victim).expect("restart victim");
    let new_epoch = wait_until(
        Duration::from_secs(20),
        "the victim to register again",
        || async {
            broker_epoch(&cluster, victim)
                .await
                .filter(|e| *e > old_epoch)
        },
    )
    .await
    .expect("re-registration");
    // Freeze it at once: whatever it has fetched by now is all it has.
    cluster
        .signal_broker(victim, libc::SIGSTOP)
        .expect("SIGSTOP victim");
    let ps = partitions(&cluster).await.expect("partitions");
    if isr(&ps[0]).contains(&i64::from(victim)) {
        // Only possible if it caught up in its new incarnation before the freeze.
        let leader_view = leader_state(&cluster, leader).await.expect("leader state");
        let followed = leader_view["followers"]
            .as_array()
            .and_then(|fs| fs.iter().find(|f| f["brokerId"] == victim))
            .and_then(|f| f["logEndOffset"].as_i64())
            .unwrap_or(-1);
        assert!(
            followed >= 100,
            "victim (epoch {new_epoch}) in the ISR with log end {followed} < 100: {:?}",
            ps[0]
        );
    }

    // The leader dies now: the controller must elect the replica that has all 100.
    cluster.kill_broker(leader);
    let ps = wait_partitions(&cluster, "a new leader", |ps| {
        let l = leader_of(&ps[0]);
        l != leader && l >= 0
    })
    .await;
    let new_leader = leader_of(&ps[0]);
    cluster
        .signal_broker(victim, libc::SIGCONT)
        .expect("SIGCONT victim");
    if new_leader == victim {
        // Allowed only if it had caught up before the freeze (checked above).
        assert!(
            log_end(&cluster, victim).await.unwrap_or(0) >= 100,
            "the cut replica was elected"
        );
    } else {
        assert_eq!(new_leader, other);
    }
    wait_until(
        Duration::from_secs(30),
        "the victim to catch up",
        || async { (log_end(&cluster, victim).await? >= 100).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", process_logs(dir.path())));
    let addr = cluster.kafka_addr(new_leader);
    wait_until(Duration::from_secs(20), "the new leader to serve", || {
        let addr = addr.clone();
        async move {
            let mut conn = kafka::connect(&addr).await;
            let (code, hw, _) = kafka::fetch_once(&mut conn, TOPIC, 0, 0).await;
            (code == 0 && hw >= 100).then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", process_logs(dir.path())));
    let mut conn = kafka::connect(&addr).await;
    let records = kafka::fetch_all(&mut conn, TOPIC, 0).await;
    let values: Vec<String> = records.iter().map(|r| r.2.clone()).collect();
    let want: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
    assert_eq!(values, want, "every acknowledged record, once, in order");
    let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
    assert_eq!(offsets, (0..100).collect::<Vec<i64>>());
    // Caught up in its new incarnation, the victim is admitted again.
    wait_partitions(&cluster, "the victim back in the ISR", |ps| {
        isr(&ps[0]).contains(&i64::from(victim))
    })
    .await;
}

/// Issue 15, scenario 2. A replica elected leader that wrote nothing in its epoch keeps that
/// epoch at its log end; deposed (without a restart, whose recovery would trim it) and made a
/// follower of a leader that never had the epoch, it must drop it on truncation, or every
/// fetch diverges and it never rejoins the ISR (before: ~9,000 Fetch + OffsetForLeaderEpoch
/// requests/s until restarted). Leaders are deposed here by pausing them past the broker
/// session: A leads epoch 0; paused, B leads epoch 1 and writes nothing; paused too, C leads
/// epoch 2; both resume as followers of C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twice_bounced_replicas_rejoin_the_isr_without_spinning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let controller = ControllerConfig {
        broker_session_timeout_ms: 2_000,
        ..ControllerConfig::default()
    };
    let cluster = cluster(dir.path(), controller).await;
    create_topic(&cluster, 1).await;
    let ps = partitions(&cluster).await.expect("partitions");
    let first = leader_of(&ps[0]);
    produce_acked(&cluster, first, 0, 10).await;
    let mut paused = Vec::new();
    for round in 0..2 {
        let ps = partitions(&cluster).await.expect("partitions");
        let victim = leader_of(&ps[0]);
        let epoch = ps[0]["leaderEpoch"].as_i64().expect("epoch");
        cluster
            .signal_broker(victim, libc::SIGSTOP)
            .expect("SIGSTOP");
        paused.push(victim);
        wait_partitions(&cluster, "a new leader", |ps| {
            ps[0]["leaderEpoch"].as_i64() > Some(epoch) && !paused.contains(&leader_of(&ps[0]))
        })
        .await;
        eprintln!("round {round}: {victim} paused and deposed");
    }
    for b in &paused {
        cluster.signal_broker(*b, libc::SIGCONT).expect("SIGCONT");
    }
    wait_until(
        Duration::from_secs(20),
        "every replica back in the ISR",
        || async { (isr(&partitions(&cluster).await?[0]).len() == 3).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", process_logs(dir.path())));
    // Settled: every replica at the same end, and the Fetch rate back to the long-poll rate.
    let ps = partitions(&cluster).await.expect("partitions");
    let leader = leader_of(&ps[0]);
    produce_acked(&cluster, leader, 10, 10).await;
    for b in cluster.broker_ids() {
        wait_until(Duration::from_secs(20), "every replica at 20", || async {
            (log_end(&cluster, b).await? == 20).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("broker {b}: {e}"));
    }
    let url = format!("{}/metrics", cluster.broker_url(leader));
    let fetches = || {
        let url = url.clone();
        async move {
            let text = dmq_types::https::client()
                .get(url)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.lines()
                .filter(|l| {
                    (l.contains("request=\"Fetch\"")
                        || l.contains("request=\"OffsetForLeaderEpoch\""))
                        && l.starts_with("kafka_request_latency_seconds_count")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .reduce(|a, b| a + b)
        }
    };
    let before = fetches().await.expect("request counters");
    let started = std::time::Instant::now();
    wait_until(Duration::from_secs(3), "two seconds of traffic", || async {
        (started.elapsed() >= Duration::from_secs(2)).then_some(())
    })
    .await
    .expect("time passes");
    let after = fetches().await.expect("request counters");
    let rate = (after - before) / started.elapsed().as_secs_f64();
    // Two idle followers long-poll (500 ms) once each: ~4/s; a divergence loop is thousands.
    assert!(
        rate < 100.0,
        "{rate:.0} Fetch+OffsetForLeaderEpoch requests/s on the leader"
    );
}

/// Issue 15, scenario 3 (the broker's side). A leader that cannot reach the controller for a
/// session timeout has been fenced and replaced by then: it stops acknowledging writes and
/// answers NOT_LEADER_OR_FOLLOWER at once (not REQUEST_TIMED_OUT, which clients retry against
/// it without refreshing), and its Metadata names no leader for its partitions, so clients
/// look elsewhere. When heartbeats get through again it leads again. (Here the whole quorum
/// is frozen, so nobody else can lead meanwhile; a partition of one broker is the same on its
/// side.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_controller_stops_acknowledging_until_it_is_back() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::MetadataRequest;

    let dir = tempfile::tempdir().expect("tempdir");
    let controller = ControllerConfig {
        broker_heartbeat_interval_ms: 300,
        broker_session_timeout_ms: 2_000,
        ..ControllerConfig::default()
    };
    let cluster = cluster(dir.path(), controller).await;
    create_topic(&cluster, 1).await;
    let ps = partitions(&cluster).await.expect("partitions");
    let leader = leader_of(&ps[0]);
    produce_acked(&cluster, leader, 0, 10).await;
    let addr = cluster.kafka_addr(leader);
    let one = || kafka::batch(&[("k".to_string(), "v".to_string())], None);

    for node in cluster.ids() {
        cluster
            .signal_node(node, libc::SIGSTOP)
            .expect("SIGSTOP metadata node");
    }
    let cut_off = std::time::Instant::now();
    let refused = wait_until(
        Duration::from_secs(15),
        "the leader to refuse writes",
        || async {
            let mut conn = kafka::connect(&addr).await;
            let r = kafka::produce(&mut conn, TOPIC, 0, one(), 1).await;
            (r.error_code == ResponseError::NotLeaderOrFollower.code()).then_some(())
        },
    )
    .await;
    let took = cut_off.elapsed();
    // Metadata from the cut-off broker, while it is cut off.
    let mut conn = kafka::connect(&addr).await;
    let req = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(kafka::name(TOPIC)))
    ]));
    let meta = conn.send(&req, 9, Duration::ZERO).await.expect("metadata");
    wait_for_log(
        &cluster,
        leader,
        "no heartbeat got through",
        Duration::from_secs(5),
    )
    .await;
    for node in cluster.ids() {
        cluster
            .signal_node(node, libc::SIGCONT)
            .expect("SIGCONT metadata node");
    }
    refused.unwrap_or_else(|e| panic!("{e}\n{}", process_logs(dir.path())));
    eprintln!("writes refused {took:?} after the cut (session timeout 2 s)");
    // Counted from the last heartbeat that got through, at most one interval before the cut.
    assert!(
        took >= Duration::from_millis(1_700),
        "not before the session timeout: {took:?}"
    );
    // It names the likely successor (a live ISR member other than itself), never itself.
    let p = &meta.topics[0].partitions[0];
    assert_ne!(
        p.leader_id.0, leader,
        "itself named as leader while cut off"
    );
    assert!(
        p.isr_nodes.iter().any(|b| b.0 == p.leader_id.0),
        "the named leader {} is not in the ISR {:?}",
        p.leader_id.0,
        p.isr_nodes
    );
    assert_eq!(p.error_code, 0);
    wait_for_log(
        &cluster,
        leader,
        "no heartbeat got through",
        Duration::from_secs(5),
    )
    .await;

    // Back in touch: writes are acknowledged again (by whoever leads now).
    wait_until(
        Duration::from_secs(30),
        "writes acknowledged again",
        || async {
            let l = leader_of(&partitions(&cluster).await?[0]);
            if l < 0 {
                return None;
            }
            let mut conn = kafka::connect(&cluster.kafka_addr(l)).await;
            let r = kafka::produce(&mut conn, TOPIC, 0, one(), -1).await;
            (r.error_code == 0).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", process_logs(dir.path())));
}
