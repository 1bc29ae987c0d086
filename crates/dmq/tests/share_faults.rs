//! Share groups under faults (KIP-932, issue #19): no record lost, no acknowledged record
//! delivered again.
//!
//! Three confluent-kafka `ShareConsumer`s (tests/interop/share_faults.py) consume a one-partition
//! RF 3 topic, ACCEPTing every record and confirming with commit_sync, while this test SIGKILLs
//! and restarts, one at a time: the partition's leader, the share group's coordinator (asked
//! with FindCoordinator key type 0) and the metadata quorum's leader. Each fault must be followed
//! by confirmed acceptances while the victim is down and again after it is back. Afterwards every
//! record was accepted, and no record was delivered after its acceptance was confirmed.
//! Unacknowledged records delivered again (their locks went with a killed leader) are allowed
//! and printed. About 40 s. `DMQ_KEEP_TEST_DIR=1` keeps the directory (process logs, the
//! members' `share.log` and report).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{process_logs, repo_root, start_cluster, venv_python};
use dmq::procs::{wait_until, MetadataCluster};
use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

const TOPIC: &str = "share-faults";
const GROUP: &str = "share-faults-group";
const RECORDS: u64 = 3000;
/// Confirmed acceptances the members may run ahead of what the test waits for.
const AHEAD: u64 = 100;
const PROGRESS_WHILE_DOWN: u64 = 300;
const PROGRESS_AFTER_RESTART: u64 = 100;
/// How long one fault may stall the members before the test fails.
const RECOVERY_MAX: Duration = Duration::from_secs(60);

fn test_dir() -> tempfile::TempDir {
    let keep = std::env::var_os("DMQ_KEEP_TEST_DIR").is_some();
    let dir = tempfile::Builder::new()
        .prefix("dmq-share-faults-")
        .disable_cleanup(keep)
        .tempdir()
        .expect("tempdir");
    if keep {
        eprintln!("test directory kept: {}", dir.path().display());
    }
    dir
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// tests/interop/share_faults.py, running; `<out>.budget` caps how far it may go.
struct Members {
    child: Child,
    budget: u64,
    out: PathBuf,
    log: PathBuf,
    dir: PathBuf,
}

impl Members {
    fn start(cluster: &MetadataCluster, dir: &Path) -> Members {
        let out = dir.join("share.json");
        let log = dir.join("share.log");
        let mut m = Members {
            child: Command::new(venv_python())
                .current_dir(repo_root())
                .arg("tests/interop/share_faults.py")
                .args(["--bootstrap", &cluster.bootstrap()])
                .args(["--topic", TOPIC, "--group", GROUP])
                .args(["--records", &RECORDS.to_string()])
                .arg("--out")
                .arg(&out)
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&log).expect("share log"))
                .spawn()
                .expect("start tests/interop/share_faults.py"),
            budget: 0,
            out,
            log,
            dir: dir.to_path_buf(),
        };
        m.allow(AHEAD);
        m
    }

    fn accepted(&self) -> u64 {
        std::fs::read_to_string(with_suffix(&self.out, ".progress"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn allow(&mut self, records: u64) {
        self.budget = self.budget.max(records.min(RECORDS));
        let tmp = with_suffix(&self.out, ".budget.tmp");
        std::fs::write(&tmp, self.budget.to_string()).expect("write budget");
        std::fs::rename(&tmp, with_suffix(&self.out, ".budget")).expect("rename budget");
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    async fn wait_accepted(&mut self, target: u64, within: Duration, what: &str) {
        self.allow(target + AHEAD);
        let deadline = Instant::now() + within;
        loop {
            if self.accepted() >= target {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the members exited ({status}) while waiting for {what}; {} accepted\n\
                     --- share.log ---\n{}",
                    self.accepted(),
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {within:?} waiting for {what}: {} of {target} accepted\n\
                     --- share.log ---\n{}\n{}",
                    self.accepted(),
                    self.log_tail(),
                    process_logs(&self.dir)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn finish(mut self, within: Duration) -> (String, Value) {
        self.allow(RECORDS);
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the members") {
                break status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the members did not finish within {within:?}: {} accepted\n--- share.log ---\n{}",
                    self.accepted(),
                    self.log_tail()
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
            "the members failed ({status}); report {report}\n--- share.log ---\n{}\n{}",
            self.log_tail(),
            process_logs(&self.dir)
        );
        (stdout, report)
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn partition(cluster: &MetadataCluster) -> Option<Value> {
    common::topic_partitions(cluster, TOPIC)
        .await?
        .into_iter()
        .next()
}

async fn leader(cluster: &MetadataCluster) -> i32 {
    wait_until(Duration::from_secs(20), "a leader", || async {
        let l = partition(cluster).await?["leader"].as_i64()? as i32;
        (l >= 0).then_some(l)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn wait_isr_full(cluster: &MetadataCluster) {
    wait_until(
        Duration::from_secs(30),
        "every replica in the ISR",
        || async {
            let isr = partition(cluster).await?["isr"].as_array()?.len();
            (isr == 3).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// The broker coordinating `group`, asked with FindCoordinator (key type 0) as a client does.
async fn group_coordinator(cluster: &MetadataCluster, group: &str) -> i32 {
    wait_until(Duration::from_secs(20), "the group coordinator", || async {
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
                .with_key(StrBytes::from_string(group.to_string()))
                .with_key_type(0);
            let resp: Result<FindCoordinatorResponse, _> =
                conn.send(&req, 3, Duration::from_secs(5)).await;
            if let Ok(r) = resp {
                if r.error_code == 0 && r.node_id.0 >= 0 {
                    return Some(r.node_id.0);
                }
            }
        }
        None
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn kill_broker_round(
    cluster: &mut MetadataCluster,
    members: &mut Members,
    role: &str,
    victim: i32,
) -> String {
    let started = Instant::now();
    let before = members.accepted();
    members
        .wait_accepted(before + 1, RECOVERY_MAX, "the members to run")
        .await;
    let at = members.accepted();
    cluster.kill_broker(victim);
    members
        .wait_accepted(
            at + PROGRESS_WHILE_DOWN,
            RECOVERY_MAX,
            &format!("acceptances after SIGKILL of broker {victim} ({role})"),
        )
        .await;
    let down = started.elapsed();
    cluster.start_broker(victim).expect("restart broker");
    wait_isr_full(cluster).await;
    let back = members.accepted();
    members
        .wait_accepted(
            back + PROGRESS_AFTER_RESTART,
            RECOVERY_MAX,
            &format!("acceptances after broker {victim} ({role}) came back"),
        )
        .await;
    format!(
        "killed broker {victim} ({role}) at {at} accepted; {} accepted {:.1}s later; back in \
         the ISR, {} accepted after {:.1}s",
        at + PROGRESS_WHILE_DOWN,
        down.as_secs_f64(),
        members.accepted(),
        started.elapsed().as_secs_f64()
    )
}

async fn kill_metadata_leader_round(
    cluster: &mut MetadataCluster,
    members: &mut Members,
) -> String {
    let started = Instant::now();
    let old = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("metadata leader");
    let before = members.accepted();
    members
        .wait_accepted(before + 1, RECOVERY_MAX, "the members to run")
        .await;
    let at = members.accepted();
    cluster.kill(old);
    let new = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    members
        .wait_accepted(
            at + PROGRESS_WHILE_DOWN,
            RECOVERY_MAX,
            &format!("acceptances after SIGKILL of metadata leader {old}"),
        )
        .await;
    cluster.start(old).expect("restart metadata node");
    format!(
        "killed metadata leader {old} at {at} accepted (node {new} took over); {} accepted \
         {:.1}s later",
        at + PROGRESS_WHILE_DOWN,
        started.elapsed().as_secs_f64()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_consumers_lose_nothing_and_see_no_accepted_record_again_across_kills() {
    let started = Instant::now();
    let dir = test_dir();
    let d = dir.path();
    let mut cluster = start_cluster(d, 3, 3).await;
    let body = json!({"topicName": TOPIC, "numPartitions": 1, "replicationFactor": 3,
        "config": {"min.insync.replicas": "2"}});
    let (status, created) = common::post_leader(&cluster, "/api/v1/metadata/topics", &body).await;
    assert_eq!(status, 201, "{created}");
    common::wait_topic_on_brokers(&cluster, TOPIC, 1, 3).await;

    let mut members = Members::start(&cluster, d);
    members
        .wait_accepted(AHEAD, Duration::from_secs(90), "the first acceptances")
        .await;
    println!(
        "{:.1}s: {RECORDS} records produced, {} accepted",
        started.elapsed().as_secs_f64(),
        members.accepted()
    );

    let mut rounds = Vec::new();
    let victim = leader(&cluster).await;
    rounds.push(kill_broker_round(&mut cluster, &mut members, "partition leader", victim).await);
    let coordinator = group_coordinator(&cluster, GROUP).await;
    let leader_now = leader(&cluster).await;
    let role = if coordinator == leader_now {
        "group coordinator and partition leader"
    } else {
        "group coordinator"
    };
    rounds.push(kill_broker_round(&mut cluster, &mut members, role, coordinator).await);
    rounds.push(kill_metadata_leader_round(&mut cluster, &mut members).await);
    for r in &rounds {
        println!("{r}");
    }
    assert!(
        members.accepted() < RECORDS,
        "the members had finished before the last fault"
    );

    let (stdout, report) = members.finish(Duration::from_secs(120)).await;
    print!("{stdout}");
    println!("report: {report}");
    let settled =
        report["accepted"].as_u64().unwrap_or(0) + report["ambiguous"].as_u64().unwrap_or(0);
    assert_eq!(settled, RECORDS, "{report}");
    assert_eq!(report["lost"], json!(0), "{report}");
    assert_eq!(report["acked_redelivered_count"], json!(0), "{report}");
    assert!(stdout.contains("OK share faults:"), "{stdout}");

    // The quorum holds the share-partition's state: every record acknowledged (the ambiguous
    // ones too: committed by a leader that died before it answered), nothing in flight.
    let state = || async {
        let leader = cluster.leader().await?;
        cluster
            .get(
                leader,
                &format!("/api/v1/metadata/share-groups/{GROUP}?consistent=true"),
            )
            .await
    };
    let settled = wait_until(
        Duration::from_secs(30),
        "the share-partition's start offset past every record",
        || async {
            let (status, v) = state().await?;
            let start = v["partitions"][0]["snapshot"]["startOffset"].as_u64();
            (status == 200 && start >= Some(RECORDS)).then_some(())
        },
    )
    .await;
    assert!(settled.is_ok(), "{settled:?}: {:?}", state().await);
    println!("total {:.1}s", started.elapsed().as_secs_f64());
}
