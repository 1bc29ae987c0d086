//! Helpers shared by the integration tests: clusters of real `dmq` processes.
#![allow(dead_code)]

pub mod kafka;
pub mod netsplit;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dmq::procs::MetadataCluster;
use dmq_types::ControllerConfig;
use serde_json::{json, Value};

/// A 3-node metadata quorum of real processes under `dir`, started.
pub fn start_quorum(dir: &Path, controller: ControllerConfig) -> MetadataCluster {
    let mut cluster =
        MetadataCluster::new(Path::new(env!("CARGO_BIN_EXE_dmq")), dir, 3, controller);
    cluster.start_all().expect("start metadata processes");
    cluster
}

/// Controller timings with a broker session long enough that tests not about liveness never
/// see a broker fenced.
pub fn long_sessions() -> ControllerConfig {
    ControllerConfig {
        broker_session_timeout_ms: 600_000,
        ..ControllerConfig::default()
    }
}

/// POSTs to the current leader (found through any node), following 503 redirects.
pub async fn post_leader(cluster: &MetadataCluster, path: &str, body: &Value) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(leader) = cluster.wait_for_leader(Duration::from_secs(5)).await {
            if let Some((status, _, body)) = cluster.post(leader, path, body).await {
                if status != 503 || Instant::now() > deadline {
                    return (status, body);
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader accepted POST {path}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Registers brokers `ids` through the leader.
///
/// Each fake broker gets a real listening socket (never accepted from, kept open for the rest of
/// the test process) so that the controller's liveness probe finds a process there and leaves
/// the broker to its session timeout, as it would a live but silent broker.
pub async fn register_brokers(cluster: &MetadataCluster, ids: &[i32]) {
    static LISTENERS: Mutex<Vec<std::net::TcpListener>> = Mutex::new(Vec::new());
    for id in ids {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake broker port");
        let port = listener.local_addr().expect("local addr").port();
        LISTENERS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(listener);
        let body =
            json!({"brokerId": id, "host": "127.0.0.1", "port": port, "kafkaPort": 2000 + id});
        let (status, body) = post_leader(cluster, "/api/v1/metadata/brokers", &body).await;
        assert_eq!(status, 201, "register broker {id}: {body}");
    }
}

/// Creates a topic through the leader and returns its JSON.
pub async fn create_topic(
    cluster: &MetadataCluster,
    name: &str,
    partitions: i32,
    rf: i32,
) -> Value {
    let body = json!({"topicName": name, "numPartitions": partitions, "replicationFactor": rf});
    let (status, body) = post_leader(cluster, "/api/v1/metadata/topics", &body).await;
    assert_eq!(status, 201, "create topic {name}: {body}");
    body
}

/// Fake brokers that heartbeat the controller every `interval` while they are in `alive`;
/// `last_ok` records when each last got a 200.
pub struct Heartbeats {
    pub alive: Arc<Mutex<BTreeSet<i32>>>,
    pub last_ok: Arc<Mutex<std::collections::BTreeMap<i32, Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeats {
    pub fn start(urls: Vec<String>, ids: &[i32], interval: Duration) -> Self {
        let alive = Arc::new(Mutex::new(ids.iter().copied().collect::<BTreeSet<_>>()));
        let last_ok = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
        let (a, l) = (alive.clone(), last_ok.clone());
        let task = tokio::spawn(async move {
            let http = dmq_types::https::client_builder(None)
                .expect("tls")
                .timeout(Duration::from_millis(500))
                .build()
                .expect("client");
            let mut leader = 0usize;
            loop {
                let ids: Vec<i32> = a.lock().expect("lock").iter().copied().collect();
                for id in ids {
                    // Try the last good node first, then the others (brokers rediscover too).
                    for k in 0..urls.len() {
                        let i = (leader + k) % urls.len();
                        let url = format!("{}/api/v1/metadata/heartbeat/{id}", urls[i]);
                        let Ok(resp) = http.post(&url).json(&json!({"brokerId": id})).send().await
                        else {
                            continue;
                        };
                        if resp.status().as_u16() == 200 {
                            leader = i;
                            l.lock().expect("lock").insert(id, Instant::now());
                            break;
                        }
                    }
                }
                tokio::time::sleep(interval).await;
            }
        });
        Self {
            alive,
            last_ok,
            task,
        }
    }

    pub fn stop(&self, id: i32) {
        self.alive.lock().expect("lock").remove(&id);
    }

    pub fn resume(&self, id: i32) {
        self.alive.lock().expect("lock").insert(id);
    }

    pub fn last_ok(&self, id: i32) -> Option<Instant> {
        self.last_ok.lock().expect("lock").get(&id).copied()
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A stand-in for a broker's HTTP port that records every `POST /api/v1/storage/metadata/update`.
pub struct PushCatcher {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PushCatcher {
    pub async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let app = axum::Router::new().route(
            "/api/v1/storage/metadata/update",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let sink = sink.clone();
                async move {
                    sink.lock().expect("lock").push(body);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            port,
            received,
            task,
        }
    }

    pub fn pushes(&self) -> Vec<Value> {
        self.received.lock().expect("lock").clone()
    }
}

impl Drop for PushCatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A 3-node quorum plus `brokers` brokers (ids 101…) whose default replication factor is `rf`,
/// started and waited for: a leader is elected and every broker is registered and UP.
pub async fn start_cluster(dir: &Path, brokers: i32, rf: i16) -> MetadataCluster {
    start_cluster_with(dir, brokers, rf, long_sessions()).await
}

/// [`start_cluster`] with the given controller timings.
pub async fn start_cluster_with(
    dir: &Path,
    brokers: i32,
    rf: i16,
    controller: ControllerConfig,
) -> MetadataCluster {
    let mut cluster =
        MetadataCluster::new(Path::new(env!("CARGO_BIN_EXE_dmq")), dir, 3, controller)
            .with_brokers(brokers);
    cluster.config.topic_defaults.default_replication_factor = rf;
    cluster.start_all().expect("start cluster processes");
    if let Err(e) = cluster.wait_for_leader(Duration::from_secs(15)).await {
        panic!("metadata leader: {e}\n{}", process_logs(dir));
    }
    if let Err(e) = cluster.wait_for_brokers(Duration::from_secs(30)).await {
        panic!("brokers up: {e}\n{}", process_logs(dir));
    }
    cluster
}

/// The tail of every process log under `dir`, for failure messages.
pub fn process_logs(dir: &Path) -> String {
    let mut out = String::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    for path in entries
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
    {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        out.push_str(&format!("--- {} ---\n", path.display()));
        for line in tail.into_iter().rev() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The repository root (tests run in the crate's directory).
pub fn repo_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The interop venv's python (`DMQ_VENV`, default `target/interop-venv`), installed by
/// `scripts/install-test-deps.sh` (which `scripts/test.sh` runs).
pub fn venv_python() -> std::path::PathBuf {
    let venv = std::env::var_os("DMQ_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/interop-venv"));
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} is missing: run ./scripts/test.sh (or scripts/install-test-deps.sh), which installs \
         kcat and the Python Kafka clients",
        py.display()
    );
    py
}

/// Runs an interop script to completion (the scripts bound their own waits) and fails the test
/// with its output unless it exits 0.
pub async fn run_interop(mut cmd: std::process::Command) -> String {
    cmd.current_dir(repo_root());
    let shown = format!("{cmd:?}");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("spawn interop script");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let tail: String = stderr
        .lines()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        out.status.success(),
        "{shown} failed ({}):\nstdout:\n{stdout}\nstderr (tail):\n{tail}",
        out.status
    );
    stdout
}

/// Waits until the broker's log file contains `needle`.
pub async fn wait_for_log(cluster: &MetadataCluster, broker: i32, needle: &str, timeout: Duration) {
    let path = cluster.broker_log_path(broker);
    dmq::procs::wait_until(
        timeout,
        &format!("broker {broker} to log {needle:?}"),
        || {
            let path = path.clone();
            async move {
                let text = std::fs::read_to_string(&path).ok()?;
                text.contains(needle).then_some(())
            }
        },
    )
    .await
    .unwrap_or_else(|e| {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        panic!("{e}\n--- broker {broker} log ---\n{text}")
    });
}

/// Waits (20 s) until every broker hosting `topic` has applied its metadata: each of the
/// `partitions` is reported by all `replication_factor` replicas, and exactly one of them leads it (so produce and
/// fetch are served, not answered UNKNOWN_TOPIC_OR_PARTITION by a broker a push behind).
pub async fn wait_topic_on_brokers(
    cluster: &MetadataCluster,
    topic: &str,
    partitions: i32,
    replication_factor: usize,
) {
    let ids = cluster.broker_ids();
    let ids = &ids;
    dmq::procs::wait_until(
        Duration::from_secs(20),
        &format!("brokers to serve {topic}"),
        || async move {
            let mut leaders = std::collections::BTreeMap::<i64, usize>::new();
            let mut hosted = 0;
            for b in ids {
                let (_, status) = cluster
                    .broker_get(*b, "/api/v1/storage/replication/status")
                    .await?;
                for p in status["partitions"].as_array()? {
                    if p["topic"] != topic {
                        continue;
                    }
                    hosted += 1;
                    if p["role"] == "LEADER" {
                        *leaders.entry(p["partition"].as_i64()?).or_default() += 1;
                    }
                }
            }
            let all_led = leaders.len() == partitions as usize && leaders.values().all(|n| *n == 1);
            (all_led && hosted == partitions as usize * replication_factor).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// `target/kafka-judges/lib` (or `$DMQ_KAFKA_JUDGES/lib`), checked to hold the jars.
pub fn judges_lib() -> std::path::PathBuf {
    let root = std::env::var_os("DMQ_KAFKA_JUDGES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/kafka-judges"));
    let lib = root.join("lib");
    let has_clients = std::fs::read_dir(&lib)
        .map(|d| {
            d.flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("kafka-clients-")
            })
        })
        .unwrap_or(false);
    assert!(
        has_clients,
        "{} has no Kafka jars: run ./scripts/test.sh (or scripts/install-test-deps.sh), which \
         fetches the Java client and Kafka's CLI tools",
        lib.display()
    );
    lib
}

/// `topic`'s partitions as the quorum has committed them (a consistent read at the leader).
pub async fn topic_partitions(
    cluster: &dmq::procs::MetadataCluster,
    topic: &str,
) -> Option<Vec<serde_json::Value>> {
    let leader = cluster.leader().await?;
    let (status, v) = cluster
        .get(
            leader,
            &format!("/api/v1/metadata/topics/{topic}?consistent=true"),
        )
        .await?;
    (status == 200).then(|| v["partitions"].as_array().cloned())?
}
