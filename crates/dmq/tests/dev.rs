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

/// The commands of the README's "Five minutes with dmq" block after `cargo run --release --
/// dev`, with `./target/release/dmq` standing for this build's binary.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).expect("README");
    let section = readme
        .split("## Five minutes with dmq")
        .nth(1)
        .expect("a 'Five minutes with dmq' section");
    let block = section
        .split("```sh")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("its sh block");
    let lines: Vec<String> = block
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    assert!(
        lines[0].starts_with("cargo run --release -- dev"),
        "the block starts the cluster: {lines:?}"
    );
    lines[1..]
        .iter()
        .map(|l| l.replace("./target/release/dmq", env!("CARGO_BIN_EXE_dmq")))
        .collect()
}

/// The README's first steps, exactly as written, right after `dmq dev` says it is ready, on a
/// fresh data dir, three times in a row (issue: `dmq dev` printed "Press Ctrl-C to stop."
/// before the brokers had registered, so `topic create … --replication-factor 3` failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_first_steps_work_as_soon_as_dev_says_it_is_ready() {
    use std::io::{BufRead, BufReader};

    let commands = readme_commands();
    assert_eq!(commands.len(), 4, "{commands:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = MetadataCluster::new(
        Path::new(env!("CARGO_BIN_EXE_dmq")),
        dir.path(),
        3,
        common::long_sessions(),
    )
    .with_brokers(3);
    cluster.write_config().expect("services.json");
    let metadata_urls: Vec<String> = cluster
        .ids()
        .into_iter()
        .map(|id| cluster.url(id))
        .collect();
    for run in 0..3 {
        let data = dir.path().join(format!("fresh-{run}"));
        let mut dev = Command::new(env!("CARGO_BIN_EXE_dmq"))
            .args(["dev", "--config"])
            .arg(cluster.config_path())
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dmq dev");
        let stdout = dev.stdout.take().expect("stdout");
        let ready = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut seen = Vec::new();
            for line in lines.by_ref() {
                let line = line.unwrap_or_default();
                let done = line.contains("Press Ctrl-C to stop.");
                seen.push(line);
                if done {
                    // Keep draining so that dev never blocks on a full pipe.
                    std::thread::spawn(move || for _ in lines {});
                    return Ok(seen);
                }
            }
            Err(seen)
        });
        let seen = tokio::time::timeout(Duration::from_secs(90), ready)
            .await
            .expect("dev ready within 90 s")
            .expect("join")
            .unwrap_or_else(|seen| panic!("dev exited before it was ready: {seen:?}"));
        assert!(seen.iter().any(|l| l.starts_with("broker")), "{seen:?}");
        // Every node says so too (what an orchestrator's readiness probe asks).
        let urls = metadata_urls.iter().cloned().chain(
            cluster
                .broker_ids()
                .into_iter()
                .map(|b| cluster.broker_url(b)),
        );
        for url in urls {
            let r = dmq_types::https::client()
                .get(format!("{url}/health/ready"))
                .send()
                .await
                .expect("readiness probe");
            assert_eq!(r.status(), 200, "{url}/health/ready");
            let body: serde_json::Value = r.json().await.expect("JSON");
            assert_eq!(body["ready"], true, "{url}: {body}");
        }
        // At once, as a user would type them, with the cluster's ports in the environment.
        let run_line = |line: &str| {
            let out = Command::new("sh")
                .arg("-c")
                .arg(line)
                .env("DMQ_BOOTSTRAP", cluster.bootstrap())
                .env("DMQ_METADATA", metadata_urls.join(","))
                .output()
                .expect("run README command");
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(
                out.status.success(),
                "run {run}: `{line}` failed: {}\nstdout: {stdout}\nstderr: {stderr}",
                out.status
            );
            stdout
        };
        let created = run_line(&commands[0]);
        assert_eq!(
            created.trim(),
            "Created topic orders (3 partitions, replication factor 3).",
            "run {run}"
        );
        let produced = run_line(&commands[1]);
        assert!(
            produced.starts_with("Produced 1 record to orders (partitions: "),
            "run {run}: {produced}"
        );
        let consumed = run_line(&commands[2]);
        assert_eq!(consumed.trim(), "hello", "run {run}");
        // The bench as written sends 1,000,000 records; one smaller run shows it works here.
        if run == 0 {
            let bench = commands[3].replace("--records 1000000", "--records 20000");
            let report = run_line(&bench);
            assert!(report.contains("records/s"), "{report}");
        }
        let took = interrupt(&mut dev);
        eprintln!("run {run}: dmq dev stopped {took:?} after Ctrl-C");
    }
}

/// `dmq dev --secure`: one command gives a secured cluster — TLS with a fresh CA, SASL with a
/// printed admin credential, HTTP tokens — and a second run on the same data dir keeps the
/// same credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_secure_prints_working_credentials_and_keeps_them() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = MetadataCluster::new(
        Path::new(env!("CARGO_BIN_EXE_dmq")),
        dir.path(),
        3,
        common::long_sessions(),
    )
    .with_brokers(3);
    cluster.write_config().expect("config");
    let data = dir.path().join("data");
    let mut runs = Vec::new();
    for run in 0..2 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dmq"))
            .args(["dev", "--secure", "--config"])
            .arg(cluster.config_path())
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join(format!("dev-{run}.log"))).expect("log"))
            .spawn()
            .expect("start dmq dev --secure");
        let stdout = child.stdout.take().expect("stdout");
        let lines = tokio::task::spawn_blocking(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let done = line.starts_with("Press Ctrl-C");
                lines.push(line);
                if done {
                    break;
                }
            }
            lines
        });
        let lines = tokio::time::timeout(Duration::from_secs(90), lines)
            .await
            .expect("dmq dev --secure came up within 90 s")
            .expect("join");
        let field = |prefix: &str| {
            lines
                .iter()
                .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string()))
                .unwrap_or_else(|| {
                    let log = std::fs::read_to_string(dir.path().join(format!("dev-{run}.log")))
                        .unwrap_or_default();
                    panic!("no {prefix:?} line in {lines:#?}\n{log}")
                })
        };
        let password = field("admin (PLAIN, super user): admin /");
        let secure_bootstrap = field("SASL_SSL bootstrap:");
        let secure_bootstrap = secure_bootstrap
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let token = field("HTTP token:");
        let ca = data.join("certs").join("ca.pem");
        // kcat (librdkafka) over SASL_SSL with the printed credential and the CA.
        let out = Command::new("kcat")
            .args(["-b", &secure_bootstrap, "-L", "-m", "10"])
            .args(["-X", "security.protocol=SASL_SSL", "-X"])
            .arg(format!("ssl.ca.location={}", ca.display()))
            .args([
                "-X",
                "sasl.mechanisms=PLAIN",
                "-X",
                "sasl.username=admin",
                "-X",
            ])
            .arg(format!("sasl.password={password}"))
            .output()
            .expect("kcat");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("3 brokers"),
            "run {run}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The HTTP APIs speak HTTPS with the dev CA and want the printed token.
        let plain = format!("{}/api/v1/metadata/cluster", cluster.url(cluster.ids()[0]));
        let url = plain.replacen("http://", "https://", 1);
        let http = dmq_types::https::client_builder(Some(&ca))
            .expect("tls")
            .build()
            .expect("client");
        let without = http.get(&url).send().await.expect("answer").status();
        let with = http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("answer")
            .status();
        assert_eq!((without.as_u16(), with.as_u16()), (401, 200), "run {run}");
        assert!(
            http.get(&plain).send().await.is_err(),
            "run {run}: no plain HTTP"
        );
        // The printed environment makes the printed CLI commands work.
        let export = field("export ");
        let env: Vec<(String, String)> = export
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["DMQ_METADATA", "DMQ_HTTP_CA", "DMQ_TOKEN"],
            "{export}"
        );
        let user = format!("alice{run}");
        let out = Command::new(env!("CARGO_BIN_EXE_dmq"))
            .args(["user", "create", &user, "--password", "alice-secret"])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("dmq user create");
        assert!(
            out.status.success(),
            "run {run}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(env!("CARGO_BIN_EXE_dmq"))
            .args(["user", "list"])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("dmq user list");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&user),
            "run {run}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        runs.push((password, token));
        interrupt(&mut child);
    }
    assert_eq!(runs[0], runs[1], "a second run keeps the credentials");
}
