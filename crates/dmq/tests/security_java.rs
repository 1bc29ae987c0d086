//! Security with the judges (issue #17, SPEC §11): Apache Kafka's own CLI tools and the reference
//! Java client (4.1, the jars `scripts/install-test-deps.sh` fetches into
//! `target/kafka-judges/lib`) against a secured 3-broker cluster — SASL on every Kafka port,
//! `admin` (PLAIN) a super user, the authorizer on with `allowEveryoneIfNoAclFound: false`,
//! brokers authenticating to each other, bearer tokens on HTTP.
//!
//! The admin's tools, with `--command-config` holding its PLAIN login: `kafka-topics` creates
//! the topic, `kafka-configs` makes dave a SCRAM-SHA-512 user and describes him, `kafka-acls`
//! grants him WRITE and READ on the topic and READ on the group and lists them. The Java client
//! (tests/interop/java/SecurityCheck.java) then checks, in one JVM: dave produces (idempotent,
//! the Java default) and consumes in the group; a user without ACLs sees no topic and gets
//! TopicAuthorizationException; wrong passwords get SaslAuthenticationException; the
//! AdminClient creates and deletes a SCRAM user and an ACL with effect and no restart; the same
//! over a SASL_SSL listener (SCRAM-SHA-512 and PLAIN). Twice it stops and waits for the test:
//! `kafka-acls --remove` takes dave's WRITE (his running producer then gets
//! TopicAuthorizationException), `kafka-configs --delete-config` deletes his credential (his
//! login is then refused).
//!
//! The Kafka ports of the main flow speak SASL_PLAINTEXT; each broker also has a SASL_SSL
//! listener (certificates from a throwaway CA) for the `sasl-ssl` case.
//!
//! Checks that need not stop the rest are collected and reported together at the end.
//! `kafka-configs --describe --entity-type users` asks DescribeClientQuotas (API 48) before
//! DescribeUserScramCredentials; dmq answers it with no quotas, as Kafka does without any.

mod common;

use std::io::{BufRead as _, Read as _, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{judges_lib, process_logs, repo_root};
use dmq::procs::MetadataCluster;
use dmq_types::security::{ListenerConfig, SecurityConfig, SecurityProtocol};

const ADMIN_PASSWORD: &str = "admin-secret-5be1";
const HTTP_TOKEN: &str = "http-token-c07d42";
const DAVE_PASSWORD: &str = "dave-secret-93aa";
const TOPIC: &str = "jsec-t";
const GROUP: &str = "jsec-g";

const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
const CONFIGS: &str = "kafka.admin.ConfigCommand";
const ACLS: &str = "org.apache.kafka.tools.AclCommand";

/// The bound of the whole Java check (its own waits are bounded at 30 s each).
const JAVA_DEADLINE: Duration = Duration::from_secs(300);

fn security(pki: &dmq::certs::Pki) -> SecurityConfig {
    serde_json::from_value(serde_json::json!({
        "tls": {"certFile": pki.cert_file, "keyFile": pki.key_file, "caFile": pki.ca_file,
                "clientAuth": "none"},
        "sasl": {"mechanisms": ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
                 "users": [{"name": "admin", "password": ADMIN_PASSWORD}]},
        "authorizer": {"enabled": true, "superUsers": ["User:admin"],
                       "allowEveryoneIfNoAclFound": false},
        "interBroker": {"user": "admin", "password": ADMIN_PASSWORD},
        "http": {"tokens": [{"token": HTTP_TOKEN, "principal": "User:admin"}]},
    }))
    .expect("security section")
}

/// Runs a Kafka tool's main class with `args`: (success, stdout, stderr).
async fn tool(class: &str, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new("java");
    cmd.arg("-cp")
        .arg(format!("{}/*", judges_lib().display()))
        .arg(class)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{class} {}", args.join(" "));
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run java");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    eprintln!(
        "$ {shown}  ({:.1} s)\n{stdout}{}",
        started.elapsed().as_secs_f64(),
        tail(&stderr)
    );
    (out.status.success(), stdout, stderr)
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The admin's tools: `--bootstrap-server` and `--command-config` before `args`.
struct Tools {
    bootstrap: String,
    command_config: String,
}

impl Tools {
    async fn run(&self, class: &str, args: &[&str]) -> (bool, String, String) {
        let mut all = vec![
            "--bootstrap-server",
            &self.bootstrap,
            "--command-config",
            &self.command_config,
        ];
        all.extend_from_slice(args);
        tool(class, &all).await
    }

    /// Like [`Tools::run`], and the tool must succeed: its stdout.
    async fn ok(&self, class: &str, args: &[&str]) -> String {
        let (success, stdout, stderr) = self.run(class, args).await;
        assert!(
            success,
            "{class} {args:?} failed:\n{stdout}\n{}",
            tail(&stderr)
        );
        stdout
    }

    /// Runs the tool until its stdout satisfies `holds` (a change reaches each broker with its
    /// next metadata update, and a tool may ask any broker): Ok(stdout), or Err naming what was
    /// last seen when the tool fails or [`PROPAGATION`] passes.
    async fn until(
        &self,
        class: &str,
        args: &[&str],
        holds: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let deadline = Instant::now() + PROPAGATION;
        loop {
            let (success, stdout, stderr) = self.run(class, args).await;
            if !success {
                return Err(format!(
                    "{class} {args:?} failed:\n{stdout}\n{}",
                    tail(&stderr)
                ));
            }
            if holds(&stdout) {
                return Ok(stdout);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{class} {args:?}: still not as expected after {PROPAGATION:?}:\n{stdout}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// How long a change made through one broker may take to show at the broker a tool asks.
const PROPAGATION: Duration = Duration::from_secs(30);

/// The ACL line `kafka-acls --list` prints for an ALLOW entry of `principal`.
fn acl_line(principal: &str, operation: &str) -> String {
    format!("(principal={principal}, host=*, operation={operation}, permissionType=ALLOW)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_tools_and_the_java_client_manage_users_and_acls_on_a_secured_cluster() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let pki =
        dmq::certs::Pki::generate(&dir.path().join("certs"), "dmq java test CA").expect("pki");
    let mut cluster = MetadataCluster::new(
        std::path::Path::new(env!("CARGO_BIN_EXE_dmq")),
        dir.path(),
        3,
        common::long_sessions(),
    )
    .with_brokers(3);
    cluster.config.topic_defaults.default_replication_factor = 3;
    cluster.config.security = Some(security(&pki));
    let mut sasl_ssl = Vec::new();
    for b in &mut cluster.config.services.storage_services {
        let port = dmq::procs::free_port();
        b.listeners = vec![ListenerConfig {
            name: "SECURE".into(),
            port,
            protocol: SecurityProtocol::SaslSsl,
        }];
        sasl_ssl.push(format!("127.0.0.1:{port}"));
    }
    cluster.start_all().expect("start cluster processes");
    if let Err(e) = cluster.wait_for_leader(Duration::from_secs(15)).await {
        panic!("metadata leader: {e}\n{}", process_logs(dir.path()));
    }
    if let Err(e) = cluster.wait_for_brokers(Duration::from_secs(30)).await {
        panic!("brokers up: {e}\n{}", process_logs(dir.path()));
    }
    eprintln!("cluster up after {:.1} s", started.elapsed().as_secs_f64());

    let command_config = dir.path().join("admin.properties");
    std::fs::write(
        &command_config,
        format!(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n\
             sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \
             username=\"admin\" password=\"{ADMIN_PASSWORD}\";\n"
        ),
    )
    .expect("write admin.properties");
    let tools = Tools {
        bootstrap: cluster.bootstrap(),
        command_config: command_config.display().to_string(),
    };
    // Checks whose failure does not stop the rest; reported together at the end.
    let mut failures: Vec<String> = Vec::new();

    // kafka-topics (as the admin) creates the topic.
    let out = tools
        .ok(
            TOPICS,
            &[
                "--create",
                "--topic",
                TOPIC,
                "--partitions",
                "3",
                "--replication-factor",
                "3",
            ],
        )
        .await;
    assert!(out.contains(&format!("Created topic {TOPIC}.")), "{out}");

    // kafka-configs makes dave a SCRAM-SHA-512 user and describes him.
    let scram = format!("SCRAM-SHA-512=[iterations=8192,password={DAVE_PASSWORD}]");
    let dave_entity = ["--entity-type", "users", "--entity-name", "dave"];
    let mut args = vec!["--alter", "--add-config", &scram];
    args.extend_from_slice(&dave_entity);
    let out = tools.ok(CONFIGS, &args).await;
    assert!(
        out.contains("Completed updating config for user dave."),
        "{out}"
    );
    let mut args = vec!["--describe"];
    args.extend_from_slice(&dave_entity);
    let described = "SCRAM credential configs for user-principal 'dave' are \
                     SCRAM-SHA-512=iterations=8192";
    if let Err(e) = tools
        .until(CONFIGS, &args, |out| out.contains(described))
        .await
    {
        failures.push(format!(
            "kafka-configs --describe of dave should print {described:?}: {e}"
        ));
    }

    // kafka-acls grants dave WRITE and READ on the topic, READ on the group, and lists them.
    let out = tools
        .ok(
            ACLS,
            &[
                "--add",
                "--allow-principal",
                "User:dave",
                "--operation",
                "Write",
                "--operation",
                "Read",
                "--topic",
                TOPIC,
            ],
        )
        .await;
    assert!(out.contains(&acl_line("User:dave", "WRITE")), "{out}");
    tools
        .ok(
            ACLS,
            &[
                "--add",
                "--allow-principal",
                "User:dave",
                "--operation",
                "Read",
                "--group",
                GROUP,
            ],
        )
        .await;
    tools
        .until(ACLS, &["--list", "--topic", TOPIC], |out| {
            out.contains(&acl_line("User:dave", "WRITE"))
                && out.contains(&acl_line("User:dave", "READ"))
        })
        .await
        .unwrap_or_else(|e| panic!("kafka-acls --list --topic shows WRITE and READ: {e}"));
    tools
        .until(ACLS, &["--list", "--group", GROUP], |out| {
            out.contains(&acl_line("User:dave", "READ")) && !out.contains("operation=WRITE")
        })
        .await
        .unwrap_or_else(|e| panic!("kafka-acls --list --group shows READ: {e}"));
    tools
        .until(ACLS, &["--list", "--principal", "User:dave"], |out| {
            out.matches("(principal=User:dave,").count() == 3
        })
        .await
        .unwrap_or_else(|e| panic!("kafka-acls --list --principal shows 3 ACLs: {e}"));
    eprintln!(
        "users and ACLs made with the tools after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The Java client, which twice waits for the tools to take something away.
    let java_started = Instant::now();
    let mut child = Command::new("java")
        .arg("-cp")
        .arg(format!("{}/*", judges_lib().display()))
        .arg("tests/interop/java/SecurityCheck.java")
        .args([&cluster.bootstrap(), ADMIN_PASSWORD, TOPIC, GROUP, "dave"])
        .arg(DAVE_PASSWORD)
        .arg(sasl_ssl.join(","))
        .arg(&pki.ca_file)
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn java");
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().expect("stderr");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut stdin = child.stdin.take();
    let deadline = tokio::time::Instant::now() + JAVA_DEADLINE;
    let mut out = String::new();
    loop {
        let line = match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "SecurityCheck.java still running after {JAVA_DEADLINE:?}:\n{out}\n{}",
                    tail(&stderr_reader.join().unwrap_or_default())
                );
            }
        };
        println!("{line}");
        out.push_str(&line);
        out.push('\n');
        let Some(step) = line.strip_prefix("READY ") else {
            continue;
        };
        let step_started = Instant::now();
        let done = match step {
            // kafka-acls --remove takes dave's WRITE on the topic; READ stays.
            "revoke" => {
                let (removed, o, e) = tools
                    .run(
                        ACLS,
                        &[
                            "--remove",
                            "--force",
                            "--allow-principal",
                            "User:dave",
                            "--operation",
                            "Write",
                            "--topic",
                            TOPIC,
                        ],
                    )
                    .await;
                if !removed {
                    failures.push(format!("kafka-acls --remove failed:\n{o}\n{}", tail(&e)));
                }
                let listed = tools
                    .until(ACLS, &["--list", "--topic", TOPIC], |out| {
                        !out.contains(&acl_line("User:dave", "WRITE"))
                            && out.contains(&acl_line("User:dave", "READ"))
                    })
                    .await;
                if let Err(e) = &listed {
                    failures.push(format!(
                        "kafka-acls --list after --remove should show READ only: {e}"
                    ));
                }
                removed && listed.is_ok()
            }
            // kafka-configs --delete-config deletes dave's credential.
            "user-removed" => {
                let mut args = vec!["--alter", "--delete-config", "SCRAM-SHA-512"];
                args.extend_from_slice(&dave_entity);
                let (deleted, o, e) = tools.run(CONFIGS, &args).await;
                let ok = deleted && o.contains("Completed updating config for user dave.");
                if !ok {
                    failures.push(format!(
                        "kafka-configs --delete-config SCRAM-SHA-512 (exit ok {deleted}):\n{o}\n{}",
                        tail(&e)
                    ));
                }
                ok
            }
            other => panic!("SecurityCheck.java waits for an unknown step {other:?}"),
        };
        eprintln!(
            "step {step} by the tools took {:.1} s",
            step_started.elapsed().as_secs_f64()
        );
        // Answer, or close stdin so that the check fails at once instead of waiting out its
        // deadline for an effect that was never made.
        let answered = done
            && stdin
                .as_mut()
                .is_some_and(|s| writeln!(s, "GO {step}").and_then(|_| s.flush()).is_ok());
        if !answered {
            stdin = None;
        }
    }
    drop(stdin);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("java exit status");
    let err = stderr_reader.join().unwrap_or_default();
    eprintln!(
        "SecurityCheck.java took {:.1} s",
        java_started.elapsed().as_secs_f64()
    );
    let cases = [
        "login",
        "allowed",
        "users",
        "denied",
        "filtered",
        "acl",
        "user-delete",
        "refused",
        "sasl-ssl",
        "revoke",
        "user-removed",
    ];
    let missing: Vec<&str> = cases
        .iter()
        .copied()
        .filter(|case| !out.contains(&format!("OK java-security {case}:")))
        .collect();
    if !status.success() || !missing.is_empty() {
        failures.push(format!(
            "SecurityCheck.java ({status}), cases without an OK line: {missing:?}\nstdout:\n{out}\
             stderr (tail):\n{}",
            err.lines()
                .filter(|l| l.starts_with("FAIL") || !l.starts_with('\t'))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }

    // kafka-configs no longer describes a credential for dave.
    let mut args = vec!["--describe"];
    args.extend_from_slice(&dave_entity);
    if let Err(e) = tools
        .until(CONFIGS, &args, |out| {
            !out.contains("SCRAM credential configs for user-principal 'dave'")
        })
        .await
    {
        failures.push(format!(
            "kafka-configs --describe after --delete-config should show no credential for \
             dave: {e}"
        ));
    }

    // No secret in any log line of any process.
    for entry in std::fs::read_dir(dir.path()).expect("read dir").flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for secret in [ADMIN_PASSWORD, DAVE_PASSWORD, "erin-secret", HTTP_TOKEN] {
                if text.contains(secret) {
                    failures.push(format!("{} contains a secret", path.display()));
                }
            }
        }
    }

    eprintln!("whole test: {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        failures.is_empty(),
        "{} failure(s):\n\n{}\n\n{}",
        failures.len(),
        failures.join("\n\n"),
        process_logs(dir.path())
    );
}
