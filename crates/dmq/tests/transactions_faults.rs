//! Transactions (KIP-98, KIP-447) checked by real clients, one of them under faults.
//!
//! - `exactly_once_survives_killing_leaders_the_coordinator_and_the_metadata_leader`: a
//!   consume-transform-produce loop (tests/interop/eos_faults.py, confluent-kafka) turns every
//!   record of an RF 3 input topic into one record of an RF 3 output topic, one transaction per
//!   batch with the consumer's offsets sent in it, while this test SIGKILLs and restarts, one at
//!   a time and each while the loop is in a transaction: the leader of an output partition, the
//!   leader of an input partition (three different brokers where the leaders allow), the broker
//!   coordinating the transactional id (asked with FindCoordinator key type 1), and the
//!   metadata quorum's leader. Each fault must be followed by committed progress while the
//!   victim is down and again after it is back. Afterwards a read_committed read of the whole
//!   output holds every input exactly once (checked by value, in input order per partition),
//!   the group's committed offsets cover every input, and the transactional id's last
//!   transaction is complete. About 30 s.
//! - `the_java_client_commits_aborts_fences_and_sends_offsets_in_transactions`: the reference
//!   Java client (tests/interop/java/TxnCheck.java) through its transactional API and admin
//!   calls, with no faults. About 15 s.
//!
//! The two start their own clusters and take turns (one cluster at a time keeps the fault test's
//! timing on a 2-core CI machine). `DMQ_KEEP_TEST_DIR=1` keeps the test directory (process logs,
//! the loop's `eos.log` and report); `RDKAFKA_DEBUG=eos,broker` adds librdkafka's debug log of
//! the loop's producer to `eos.log`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{judges_lib, process_logs, repo_root, start_cluster, venv_python};
use dmq::procs::{wait_until, MetadataCluster};
use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

/// One cluster at a time in this binary (see the module docs).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const INPUT: &str = "eos-in";
const OUTPUT: &str = "eos-out";
const GROUP: &str = "eos-group";
const TXN_ID: &str = "eos-txn";
const PARTITIONS: i32 = 3;
/// Records in the input topic, each to come out exactly once.
const INPUTS: u64 = 3000;
/// Inputs the loop may commit beyond what the test waits for: it keeps the loop busy (in a
/// transaction) when a fault lands, and keeps it from finishing before the last fault.
const AHEAD: u64 = 100;
/// Committed inputs required while the victim is down, and again after it is back.
const PROGRESS_WHILE_DOWN: u64 = 150;
const PROGRESS_AFTER_RESTART: u64 = 60;
/// How long one fault may stall the loop before the test fails.
const RECOVERY_MAX: Duration = Duration::from_secs(40);

/// Creates `topic` (RF 3, `min.insync.replicas=2`) and waits until every replica serves it.
async fn create_topic(cluster: &MetadataCluster, topic: &str) {
    let body = json!({"topicName": topic, "numPartitions": PARTITIONS, "replicationFactor": 3,
        "config": {"min.insync.replicas": "2"}});
    let (status, body) = common::post_leader(cluster, "/api/v1/metadata/topics", &body).await;
    assert_eq!(status, 201, "create topic {topic}: {body}");
    common::wait_topic_on_brokers(cluster, topic, PARTITIONS, 3).await;
}

/// The test's directory: removed afterwards unless `DMQ_KEEP_TEST_DIR` is set (then its path,
/// with every process log and the loop's `eos.log`, is printed).
fn test_dir(prefix: &str) -> tempfile::TempDir {
    let keep = std::env::var_os("DMQ_KEEP_TEST_DIR").is_some();
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .disable_cleanup(keep)
        .tempdir()
        .expect("tempdir");
    if keep {
        eprintln!("test directory kept: {}", dir.path().display());
    }
    dir
}

fn leader_of(p: &Value) -> i32 {
    p["leader"].as_i64().unwrap_or(-1) as i32
}

fn isr_len(p: &Value) -> usize {
    p["isr"].as_array().map(Vec::len).unwrap_or(0)
}

/// Waits (30 s) until every partition of both topics has all 3 replicas in its ISR.
async fn wait_isr_full(cluster: &MetadataCluster) {
    let waited = wait_until(
        Duration::from_secs(30),
        "every replica back in every ISR",
        || async {
            for topic in [INPUT, OUTPUT] {
                let ps = common::topic_partitions(cluster, topic).await?;
                if ps.len() != PARTITIONS as usize || !ps.iter().all(|p| isr_len(p) == 3) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    if let Err(e) = waited {
        let input = common::topic_partitions(cluster, INPUT).await;
        let output = common::topic_partitions(cluster, OUTPUT).await;
        panic!("{e}: {INPUT} {input:?}, {OUTPUT} {output:?}");
    }
}

/// The leader of `topic`-`partition`, once it has one.
async fn leader(cluster: &MetadataCluster, topic: &str, partition: usize) -> i32 {
    wait_until(
        Duration::from_secs(20),
        &format!("a leader for {topic}-{partition}"),
        || async {
            let ps = common::topic_partitions(cluster, topic).await?;
            let l = leader_of(ps.get(partition)?);
            (l >= 0).then_some(l)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A partition of `topic` and its leader, preferring a leader not in `avoid`.
async fn pick_leader(cluster: &MetadataCluster, topic: &str, avoid: &[i32]) -> (usize, i32) {
    let mut leaders = Vec::new();
    for p in 0..PARTITIONS as usize {
        leaders.push((p, leader(cluster, topic, p).await));
    }
    leaders
        .iter()
        .find(|(_, l)| !avoid.contains(l))
        .copied()
        .unwrap_or(leaders[0])
}

/// The broker coordinating `transactional_id`, asked with FindCoordinator v3 (key type 1,
/// TRANSACTION) of the running brokers in turn, as a client finds it.
async fn txn_coordinator(cluster: &MetadataCluster, transactional_id: &str) -> i32 {
    wait_until(
        Duration::from_secs(20),
        &format!("the coordinator of {transactional_id}"),
        || async {
            for b in cluster.broker_ids() {
                let Ok(mut conn) = dmq_broker::kafka::client::KafkaConnection::connect(
                    &cluster.kafka_addr(b),
                    "dmq-test",
                    Duration::from_secs(2),
                )
                .await
                else {
                    continue;
                };
                let req = FindCoordinatorRequest::default()
                    .with_key(StrBytes::from_string(transactional_id.to_string()))
                    .with_key_type(1);
                let resp: Result<FindCoordinatorResponse, _> =
                    conn.send(&req, 3, Duration::from_secs(5)).await;
                if let Ok(r) = resp {
                    if r.error_code == 0 && r.node_id.0 >= 0 {
                        return Some(r.node_id.0);
                    }
                }
            }
            None
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// `path` with `suffix` appended (`eos.json` → `eos.json.progress`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Writes the loop's budget beside its report `out`, atomically (the loop reads it often).
fn allow(out: &Path, inputs: u64) {
    let tmp = with_suffix(out, ".budget.tmp");
    std::fs::write(&tmp, inputs.to_string()).expect("write budget");
    std::fs::rename(&tmp, with_suffix(out, ".budget")).expect("rename budget");
}

/// tests/interop/eos_faults.py, running; `<out>.budget` caps how far it may go.
struct EosLoop {
    child: Child,
    /// What the loop may commit (its `<out>.budget`); only grows.
    budget: u64,
    out: PathBuf,
    log: PathBuf,
    dir: PathBuf,
}

impl EosLoop {
    fn start(cluster: &MetadataCluster, dir: &Path) -> EosLoop {
        let out = dir.join("eos.json");
        let log = dir.join("eos.log");
        allow(&out, AHEAD);
        let log_file = std::fs::File::create(&log).expect("eos log");
        let child = Command::new(venv_python())
            .current_dir(repo_root())
            .arg("tests/interop/eos_faults.py")
            .args(["--bootstrap", &cluster.bootstrap()])
            .args(["--input", INPUT, "--output", OUTPUT])
            .args(["--partitions", &PARTITIONS.to_string()])
            .args(["--group", GROUP, "--transactional-id", TXN_ID])
            .args(["--count", &INPUTS.to_string()])
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("start tests/interop/eos_faults.py");
        EosLoop {
            child,
            budget: AHEAD,
            out,
            log,
            dir: dir.to_path_buf(),
        }
    }

    /// Inputs whose outputs are committed, as the loop last wrote it.
    fn committed(&self) -> u64 {
        std::fs::read_to_string(with_suffix(&self.out, ".progress"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Lets the loop commit up to `inputs` inputs (never fewer than before).
    fn allow(&mut self, inputs: u64) {
        self.budget = self.budget.max(inputs.min(INPUTS));
        allow(&self.out, self.budget);
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Lets the loop run to `AHEAD` past `target` and waits until at least `target` inputs are
    /// committed; fails naming `what` if the loop exits or `within` passes first.
    async fn wait_committed(&mut self, target: u64, within: Duration, what: &str) {
        self.allow(target + AHEAD);
        let deadline = Instant::now() + within;
        loop {
            if self.committed() >= target {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the loop exited ({status}) while waiting for {what}; {} committed\n\
                     --- eos.log ---\n{}",
                    self.committed(),
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {within:?} waiting for {what}: {} of {target} committed\n\
                     --- eos.log ---\n{}\n{}",
                    self.committed(),
                    self.log_tail(),
                    process_logs(&self.dir)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Lifts the cap, waits (`within`) for the loop to finish and check the output; its stdout
    /// and report.
    async fn finish(mut self, within: Duration) -> (String, Value) {
        self.allow(INPUTS);
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the loop") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the loop did not finish within {within:?}: {} committed\n--- eos.log ---\n{}\n{}",
                    self.committed(),
                    self.log_tail(),
                    process_logs(&self.dir)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            use std::io::Read as _;
            let _ = out.read_to_string(&mut stdout);
        }
        let report: Value = std::fs::read_to_string(&self.out)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(Value::Null);
        assert!(
            status.success(),
            "the loop failed ({status}); report {report}\n--- eos.log ---\n{}\n{}",
            self.log_tail(),
            process_logs(&self.dir)
        );
        (stdout, report)
    }
}

impl Drop for EosLoop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGKILLs broker `victim` while the loop is busy, requires committed progress without it,
/// restarts it, waits for it to catch up and requires progress again.
async fn kill_broker_round(
    cluster: &mut MetadataCluster,
    eos: &mut EosLoop,
    role: &str,
    victim: i32,
) -> String {
    let started = Instant::now();
    let before = eos.committed();
    // Kill it while a transaction is under way: right after the loop commits again.
    eos.wait_committed(before + 1, RECOVERY_MAX, "the loop to run")
        .await;
    let at = eos.committed();
    cluster.kill_broker(victim);
    eos.wait_committed(
        at + PROGRESS_WHILE_DOWN,
        RECOVERY_MAX,
        &format!("commits after SIGKILL of broker {victim} ({role})"),
    )
    .await;
    let down = started.elapsed();
    cluster.start_broker(victim).expect("restart broker");
    wait_isr_full(cluster).await;
    let back = eos.committed();
    eos.wait_committed(
        back + PROGRESS_AFTER_RESTART,
        RECOVERY_MAX,
        &format!("commits after broker {victim} ({role}) came back"),
    )
    .await;
    format!(
        "killed broker {victim} ({role}) at {at} committed; {} committed {:.1}s later; back in \
         every ISR, {} committed after {:.1}s",
        at + PROGRESS_WHILE_DOWN,
        down.as_secs_f64(),
        eos.committed(),
        started.elapsed().as_secs_f64()
    )
}

/// The same for the metadata quorum's leader.
async fn kill_metadata_leader_round(cluster: &mut MetadataCluster, eos: &mut EosLoop) -> String {
    let started = Instant::now();
    let old = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("metadata leader");
    let before = eos.committed();
    eos.wait_committed(before + 1, RECOVERY_MAX, "the loop to run")
        .await;
    let at = eos.committed();
    cluster.kill(old);
    let new = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", process_logs(&eos.dir)));
    assert_ne!(old, new, "the killed node still leads");
    eos.wait_committed(
        at + PROGRESS_WHILE_DOWN,
        RECOVERY_MAX,
        &format!("commits after SIGKILL of metadata leader {old}"),
    )
    .await;
    let down = started.elapsed();
    cluster.start(old).expect("restart metadata node");
    wait_until(
        Duration::from_secs(20),
        &format!("metadata node {old} to rejoin"),
        || async {
            let s = cluster.status(old).await?;
            s["leaderId"].as_u64().is_some().then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let back = eos.committed();
    eos.wait_committed(
        back + PROGRESS_AFTER_RESTART,
        RECOVERY_MAX,
        &format!("commits after metadata node {old} came back"),
    )
    .await;
    format!(
        "killed metadata leader {old} at {at} committed (node {new} took over); {} committed \
         {:.1}s later; restarted, {} committed after {:.1}s",
        at + PROGRESS_WHILE_DOWN,
        down.as_secs_f64(),
        eos.committed(),
        started.elapsed().as_secs_f64()
    )
}

fn count(report: &Value, key: &str) -> i64 {
    report[key].as_i64().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_survives_killing_leaders_the_coordinator_and_the_metadata_leader() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let dir = test_dir("dmq-eos-");
    let d = dir.path();
    let mut cluster = start_cluster(d, 3, 3).await;
    create_topic(&cluster, INPUT).await;
    create_topic(&cluster, OUTPUT).await;
    let mut eos = EosLoop::start(&cluster, d);
    eos.wait_committed(
        AHEAD,
        Duration::from_secs(60),
        "the inputs and the first transactions",
    )
    .await;
    println!(
        "{:.1}s: cluster up, {INPUTS} inputs produced, {} committed",
        started.elapsed().as_secs_f64(),
        eos.committed()
    );

    // Three broker kills, on three different brokers where the leaders allow it: the
    // coordinator of the transactional id is the same broker whenever all three are ONLINE (a
    // hash of the id), so the partition leaders are picked around it.
    let mut rounds = Vec::new();
    let coordinator = txn_coordinator(&cluster, TXN_ID).await;
    let (p, victim) = pick_leader(&cluster, OUTPUT, &[coordinator]).await;
    let role = format!("leader of {OUTPUT}-{p}");
    rounds.push(kill_broker_round(&mut cluster, &mut eos, &role, victim).await);

    let (p, victim) = pick_leader(&cluster, INPUT, &[coordinator, victim]).await;
    let role = format!("leader of {INPUT}-{p}");
    rounds.push(kill_broker_round(&mut cluster, &mut eos, &role, victim).await);

    let coordinator = txn_coordinator(&cluster, TXN_ID).await;
    let role = format!("transaction coordinator of {TXN_ID}");
    rounds.push(kill_broker_round(&mut cluster, &mut eos, &role, coordinator).await);

    rounds.push(kill_metadata_leader_round(&mut cluster, &mut eos).await);
    for r in &rounds {
        println!("{r}");
    }
    let faults_done = eos.committed();
    assert!(
        faults_done < INPUTS,
        "the loop had finished before the last fault ({faults_done} committed)"
    );

    let (stdout, report) = eos.finish(Duration::from_secs(90)).await;
    print!("{stdout}");
    println!("report: {report}");
    assert_eq!(count(&report, "inputs"), INPUTS as i64, "{report}");
    assert_eq!(count(&report, "lost"), 0, "inputs lost: {report}");
    assert_eq!(
        count(&report, "duplicated"),
        0,
        "inputs duplicated: {report}"
    );
    assert_eq!(count(&report, "out_of_order"), 0, "{report}");
    assert_eq!(count(&report, "read_committed"), INPUTS as i64, "{report}");
    assert_eq!(count(&report, "unique"), INPUTS as i64, "{report}");
    assert!(
        count(&report, "uncommitted_total") >= INPUTS as i64,
        "read_uncommitted saw fewer records than read_committed: {report}"
    );
    assert!(stdout.contains("OK eos-faults"), "{stdout}");

    // The quorum agrees: the group's offsets cover every input, the last transaction is done.
    let leader_node = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("metadata leader");
    let (status, group) = cluster
        .get(
            leader_node,
            &format!("/api/v1/metadata/groups/{GROUP}?consistent=true"),
        )
        .await
        .expect("group");
    assert_eq!(status, 200, "{group}");
    let offsets: i64 = group["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["topic"] == INPUT)
                .filter_map(|p| p["committedOffset"].as_i64())
                .sum()
        })
        .unwrap_or(-1);
    assert_eq!(offsets, INPUTS as i64, "group offsets: {group}");
    let (status, txn) = cluster
        .get(
            leader_node,
            &format!("/api/v1/metadata/transactions/{TXN_ID}?consistent=true"),
        )
        .await
        .expect("transaction");
    assert_eq!(status, 200, "{txn}");
    assert_eq!(txn["status"], "CompleteCommit", "{txn}");
    println!(
        "exactly once: {INPUTS} inputs, {} outputs read_committed ({} lost, {} duplicated), {} \
         records in the log read_uncommitted; {} transactions committed, {} aborted, {} fatal \
         (fenced), {} client restarts, {} retried calls, errors {}; producer epoch {}; {:.1}s in all",
        count(&report, "read_committed"),
        count(&report, "lost"),
        count(&report, "duplicated"),
        count(&report, "uncommitted_total"),
        count(&report, "commits"),
        count(&report, "aborts"),
        count(&report, "fatal"),
        count(&report, "restarts"),
        count(&report, "retries"),
        report["errors"],
        txn["producerEpoch"],
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_java_client_commits_aborts_fences_and_sends_offsets_in_transactions() {
    let _serial = SERIAL.lock().await;
    let dir = test_dir("dmq-java-txn-");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let mut cmd = Command::new("java");
    cmd.arg("-cp")
        .arg(format!("{}/*", judges_lib().display()))
        .arg("tests/interop/java/TxnCheck.java")
        .args([&cluster.bootstrap(), "jtx"]);
    let out = common::run_interop(cmd).await;
    print!("{out}");
    for case in [
        "read_committed",
        "read_uncommitted",
        "lso",
        "fencing",
        "offsets",
        "admin",
    ] {
        assert!(
            out.contains(&format!("OK java-txn {case}:")),
            "{case}: {out}\n{}",
            process_logs(dir.path())
        );
    }
}
