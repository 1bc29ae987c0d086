//! One broker cut off from the metadata quorum while clients and the other brokers still reach
//! it (issue 15, item 3): the controller fences it after the session timeout and elects a new
//! leader, the cut-off leader stops acknowledging and names no leader, and a real idempotent
//! acks=all producer (confluent-kafka) moves to the new leader within the session timeout plus
//! one metadata refresh, with no delivery error and every acknowledged record read back once,
//! in order. Also: a frozen controller fences no broker (heartbeats follow the new controller's
//! announcement instead of waiting on the frozen one), which the short default session relies on.
//!
//! The cut is made with TCP relays ([`common::netsplit`]): the isolated broker's services.json
//! routes every metadata node through a relay in this process. Timings are the defaults
//! (`ControllerConfig::default()`), so the measured times are what a default cluster costs.

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::netsplit::{Netsplit, OwnConfigBroker};
use common::{process_logs, venv_python};
use dmq::procs::{wait_until, MetadataCluster};
use dmq_broker::kafka::client::KafkaConnection;
use dmq_types::ControllerConfig;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::MetadataRequest;
use serde_json::{json, Value};

const TOPIC: &str = "isolated";
/// The broker that gets cut off.
const CUT: i32 = 101;
/// One metadata refresh of librdkafka after NOT_LEADER_OR_FOLLOWER, at its longest:
/// `retry.backoff.max.ms` (1 s by default) between leader queries.
const CLIENT_REFRESH: Duration = Duration::from_millis(1_000);
/// Scheduling slack on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(1_000);

/// The test's directory: removed afterwards unless `DMQ_KEEP_TEST_DIR` is set (then its path,
/// with every process log, is printed).
fn test_dir() -> tempfile::TempDir {
    let keep = std::env::var_os("DMQ_KEEP_TEST_DIR").is_some();
    let dir = tempfile::Builder::new()
        .prefix("dmq-isolation-")
        .disable_cleanup(keep)
        .tempdir()
        .expect("tempdir");
    if keep {
        eprintln!("test directory kept: {}", dir.path().display());
    }
    dir
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Metadata nodes and brokers 102, 103 on the real addresses; broker 101 with a services.json
/// that reaches the quorum only through `split`'s relays. Waits until a controller is elected
/// and every broker is registered and UP.
async fn start(
    dir: &Path,
    controller: ControllerConfig,
) -> (MetadataCluster, Netsplit, OwnConfigBroker) {
    let mut cluster =
        MetadataCluster::new(Path::new(env!("CARGO_BIN_EXE_dmq")), dir, 3, controller)
            .with_brokers(3);
    cluster.config.topic_defaults.default_replication_factor = 3;
    cluster.write_config().expect("services.json");
    for id in cluster.ids() {
        cluster.start(id).expect("start metadata node");
    }
    let split = Netsplit::start(&cluster.config).await;
    for id in cluster.broker_ids().into_iter().filter(|b| *b != CUT) {
        cluster.start_broker(id).expect("start broker");
    }
    let routed = split.routed(&cluster.config);
    let cut = OwnConfigBroker::start(&cluster, dir, CUT, &routed).expect("start broker 101");
    if let Err(e) = cluster.wait_for_leader(Duration::from_secs(15)).await {
        panic!("metadata leader: {e}\n{}", process_logs(dir));
    }
    if let Err(e) = cluster.wait_for_brokers(Duration::from_secs(30)).await {
        panic!("brokers up: {e}\n{}", process_logs(dir));
    }
    (cluster, split, cut)
}

/// The topic's partitions as the quorum has committed them (read from the leader).
async fn partitions(cluster: &MetadataCluster) -> Option<Vec<Value>> {
    common::topic_partitions(cluster, TOPIC).await
}

fn isr_len(p: &Value) -> usize {
    p["isr"].as_array().map_or(0, Vec::len)
}

fn num(p: &Value, key: &str) -> i64 {
    p[key].as_i64().unwrap_or(-1)
}

/// The leader that broker `addr`'s Kafka Metadata names for `partition` (-1: none).
async fn leader_named_by(addr: &str, partition: i32) -> Option<i32> {
    let mut conn = KafkaConnection::connect(addr, "isolation-test", Duration::from_secs(2))
        .await
        .ok()?;
    let req = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(common::kafka::name(TOPIC)))
    ]));
    let meta = conn.send(&req, 9, Duration::ZERO).await.ok()?;
    meta.topics
        .first()?
        .partitions
        .iter()
        .find(|p| p.partition_index == partition)
        .map(|p| p.leader_id.0)
}

/// The last `lines` lines of a file.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The Python producer (tests/interop/isolation_producer.py), running until its stop file
/// appears.
struct Producer {
    child: std::process::Child,
    stop: std::path::PathBuf,
    out: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Producer {
    fn start(cluster: &MetadataCluster, dir: &Path, partition: i32) -> Producer {
        let stop = dir.join("producer.stop");
        let out = dir.join("producer.json");
        let log = dir.join("producer.log");
        let file = std::fs::File::create(&log).expect("producer log");
        let child = std::process::Command::new(venv_python())
            .current_dir(common::repo_root())
            .arg("tests/interop/isolation_producer.py")
            .args(["--bootstrap", &cluster.bootstrap(), "--topic", TOPIC])
            .args(["--partition", &partition.to_string()])
            .arg("--stop-file")
            .arg(&stop)
            .arg("--out")
            .arg(&out)
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("start the producer");
        Producer {
            child,
            stop,
            out,
            log,
        }
    }

    fn acked(&self) -> u64 {
        std::fs::read_to_string(self.out.with_extension("json.progress"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until `more` records beyond the current count are acknowledged.
    async fn wait_progress(&self, more: u64, within: Duration, what: &str) {
        let target = self.acked() + more;
        wait_until(within, what, || async move {
            (self.acked() >= target).then_some(())
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}: {} acknowledged\n--- producer (tail) ---\n{}",
                self.acked(),
                tail(&self.log, 40)
            )
        });
    }

    /// Stops producing; the script flushes, reads the partition back and checks it. Returns
    /// the report's records `(value, offset, delivered_ms, leader_epoch)`.
    async fn finish(mut self) -> Vec<(i64, i64, i64, i64)> {
        std::fs::write(&self.stop, b"stop").expect("stop file");
        let deadline = Instant::now() + Duration::from_secs(240);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the producer") {
                break status;
            }
            assert!(Instant::now() < deadline, "producer did not finish");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(
            status.success() && log.contains("OK isolation-producer"),
            "producer failed ({status}):\n{}",
            tail(&self.log, 40)
        );
        let text = std::fs::read_to_string(&self.out).expect("producer report");
        let v: Value = serde_json::from_str(&text).expect("report JSON");
        assert_eq!(v["errors"], json!({}), "no delivery error may surface");
        v["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| {
                let n = |i: usize| r[i].as_i64().expect("number");
                (n(0), n(1), n(2), n(3))
            })
            .collect()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_behind_a_leader_cut_off_from_the_quorum_moves_to_the_new_leader() {
    let dir = test_dir();
    let timings = ControllerConfig::default();
    let session = Duration::from_millis(timings.broker_session_timeout_ms);
    let interval = Duration::from_millis(timings.broker_heartbeat_interval_ms);
    let (cluster, split, _cut_broker) = start(dir.path(), timings).await;

    // Three partitions on three brokers: one is led by broker 101.
    let body = json!({"topicName": TOPIC, "numPartitions": 3, "replicationFactor": 3,
        "config": {"min.insync.replicas": "2"}});
    let (status, body) = common::post_leader(&cluster, "/api/v1/metadata/topics", &body).await;
    assert_eq!(status, 201, "create topic: {body}");
    let c = &cluster;
    let ps = wait_until(Duration::from_secs(20), "full ISRs", || async move {
        let ps = partitions(c).await?;
        ps.iter().all(|p| isr_len(p) == 3).then_some(ps)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", process_logs(dir.path())));
    common::wait_topic_on_brokers(&cluster, TOPIC, 3, 3).await;
    let p = ps
        .iter()
        .find(|p| num(p, "leader") == i64::from(CUT))
        .expect("a partition led by broker 101");
    let partition = num(p, "partitionId") as i32;
    let first_epoch = num(p, "leaderEpoch");

    let producer = Producer::start(&cluster, dir.path(), partition);
    producer
        .wait_progress(300, Duration::from_secs(60), "the producer to get going")
        .await;

    // The cut.
    let cut_ms = wall_ms();
    let cut_at = Instant::now();
    split.cut();
    let addr = cluster.kafka_addr(CUT);
    let addr = &addr;
    let refused = wait_until(
        Duration::from_secs(30),
        "broker 101 to stop naming itself leader",
        || async move {
            let named = leader_named_by(addr, partition).await?;
            (named != CUT).then(Instant::now)
        },
    );
    let elected = wait_until(
        Duration::from_secs(30),
        "the controller to elect a new leader",
        || async move {
            let ps = partitions(c).await?;
            let p = ps
                .iter()
                .find(|p| num(p, "partitionId") == i64::from(partition))?;
            let leader = num(p, "leader");
            (leader >= 0 && leader != i64::from(CUT) && num(p, "leaderEpoch") > first_epoch)
                .then(|| (Instant::now(), leader))
        },
    );
    let (refused, elected) = tokio::join!(refused, elected);
    let refused = refused.unwrap_or_else(|e| panic!("{e}\n{}", process_logs(dir.path())));
    let (elected, new_leader) =
        elected.unwrap_or_else(|e| panic!("{e}\n{}", process_logs(dir.path())));
    eprintln!(
        "refused after {:?}, elected {new_leader} after {:?}",
        refused - cut_at,
        elected - cut_at
    );
    // Deliveries go on, through the new leader (broker 101 refuses every write now).
    producer
        .wait_progress(
            200,
            Duration::from_secs(30),
            "deliveries to resume through the new leader",
        )
        .await;

    // Heal: broker 101 comes back as a follower and rejoins the ISR.
    split.heal();
    wait_until(
        Duration::from_secs(40),
        "broker 101 back in the ISR",
        || async move {
            let ps = partitions(c).await?;
            let p = ps
                .iter()
                .find(|p| num(p, "partitionId") == i64::from(partition))?;
            (isr_len(p) == 3).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", process_logs(dir.path())));
    producer
        .wait_progress(200, Duration::from_secs(30), "deliveries after healing")
        .await;
    let records = producer.finish().await;

    // The timeline, from the records' delivery times and the leader epochs that wrote them.
    let first_new = records
        .iter()
        .filter(|r| r.3 > first_epoch && r.2 >= cut_ms)
        .map(|r| r.2)
        .min()
        .expect("records written by the new leader");
    let last_old = records
        .iter()
        .filter(|r| r.2 <= first_new)
        .filter(|r| r.3 == first_epoch)
        .map(|r| r.2)
        .max()
        .unwrap_or(cut_ms);
    let refused_after = refused - cut_at;
    let elected_after = elected - cut_at;
    let client_after = Duration::from_millis((first_new - cut_ms).max(0) as u64);
    eprintln!(
        "isolation of broker {CUT} (heartbeat {interval:?}, session {session:?}), {} records:\n  \
         cut -> old leader stops naming itself (and refuses writes): {refused_after:?}\n  \
         cut -> controller elected broker {new_leader}: {elected_after:?}\n  \
         cut -> first delivery via the new leader: {client_after:?}\n  \
         deliveries paused for {} ms (last through broker {CUT} {} ms after the cut)",
        records.len(),
        first_new - last_old,
        last_old - cut_ms,
    );
    // Counted from the last heartbeat that got through, at most one interval before the cut.
    assert!(
        refused_after + interval + Duration::from_millis(100) >= session,
        "broker {CUT} refused before its session ran out: {refused_after:?}"
    );
    assert!(
        refused_after <= session + MARGIN,
        "broker {CUT} went on leading for {refused_after:?}"
    );
    assert!(
        elected_after <= session + MARGIN,
        "the controller took {elected_after:?} to move the leadership"
    );
    assert!(
        client_after <= session + CLIENT_REFRESH + MARGIN,
        "the producer reached the new leader only {client_after:?} after the cut"
    );
}

/// A controller frozen mid-session (SIGSTOP): a new one is elected and every broker heartbeats
/// it before its session (started at the election) ends, so none is fenced. A heartbeat stuck
/// on the frozen controller is abandoned when the new one announces itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_controller_fences_no_broker() {
    let dir = test_dir();
    let timings = ControllerConfig::default();
    let session = timings.broker_session_timeout_ms as i64;
    let cluster = common::start_cluster_with(dir.path(), 3, 3, timings).await;
    let frozen = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("controller");
    cluster
        .signal_node(frozen, libc::SIGSTOP)
        .expect("SIGSTOP the controller");
    let frozen_ms = wall_ms();
    let others: Vec<u64> = cluster.ids().into_iter().filter(|n| *n != frozen).collect();
    let others = &others;
    let c = &cluster;
    let result = async {
        let (next, elected_ms) =
            wait_until(Duration::from_secs(20), "a new controller", || async move {
                for n in others {
                    if c.status(*n).await?["isLeader"] == json!(true) {
                        return Some((*n, wall_ms()));
                    }
                }
                None
            })
            .await?;
        // Every broker has heartbeated the new controller after its session there (started at
        // the election) would have run out: a broker it fenced by then shows in its log.
        wait_until(
            Duration::from_secs(20),
            "every broker heartbeating the new controller past a session",
            || async move {
                let (_, brokers) = c.get(next, "/api/v1/metadata/brokers").await?;
                brokers
                    .as_array()?
                    .iter()
                    .all(|b| b["lastHeartbeat"].as_i64().unwrap_or(0) > elected_ms + session)
                    .then_some(())
            },
        )
        .await?;
        Ok::<_, String>((next, elected_ms))
    }
    .await;
    cluster
        .signal_node(frozen, libc::SIGCONT)
        .expect("SIGCONT the controller");
    let (next, elected_ms) = result.unwrap_or_else(|e| panic!("{e}\n{}", process_logs(dir.path())));
    eprintln!(
        "controller {frozen} frozen; node {next} elected {} ms later",
        elected_ms - frozen_ms
    );
    let log = std::fs::read_to_string(cluster.log_path(next)).unwrap_or_default();
    assert!(
        !log.contains("missed its session timeout"),
        "a broker was fenced while the controller changed:\n{}",
        process_logs(dir.path())
    );
}
