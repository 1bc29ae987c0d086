//! Security with real clients (SPEC §11): a cluster whose services.json has a `security`
//! section — Kafka ports speak SASL_PLAINTEXT, `admin` (PLAIN, from the file) is a super user,
//! the authorizer denies what no ACL allows, brokers authenticate to each other — driven by
//! confluent-kafka and kafka-python (tests/interop/security_sasl.py): SCRAM users and ACLs
//! made through the AdminClient, allowed and denied produce and consume, a revoked ACL taking
//! effect at once, wrong passwords and non-SASL clients refused. Replication runs over the
//! authenticated inter-broker connections (RF 3, acks=all). No secret appears in any log.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{process_logs, run_interop, venv_python};
use dmq::procs::MetadataCluster;
use dmq_types::security::SecurityConfig;

const ADMIN_PASSWORD: &str = "admin-secret-7f3a";
const HTTP_TOKEN: &str = "http-token-91c2e5";
/// A token for `User:viewer`, who has no ACLs at first.
const VIEWER_TOKEN: &str = "viewer-token-5d0b7a";

fn security() -> SecurityConfig {
    serde_json::from_value(serde_json::json!({
        "sasl": {"mechanisms": ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
                 "users": [{"name": "admin", "password": ADMIN_PASSWORD}]},
        "authorizer": {"enabled": true, "superUsers": ["User:admin"],
                       "allowEveryoneIfNoAclFound": false},
        "interBroker": {"user": "admin", "password": ADMIN_PASSWORD},
        "http": {"tokens": [{"token": HTTP_TOKEN, "principal": "User:admin"},
                            {"token": VIEWER_TOKEN, "principal": "User:viewer"}]},
    }))
    .expect("security section")
}

/// Waits (20 s) until `viewer`'s `method` on `url` answers `want`; the last answer's JSON.
async fn viewer_until(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    want: u16,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let resp = http
            .request(method.clone(), url)
            .bearer_auth(VIEWER_TOKEN)
            .send()
            .await
            .expect("answer");
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if status == want {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{method} {url} as viewer: {status} {body}, waiting for {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn allow(principal: &str, op: &str, resource_type: &str, name: &str) -> serde_json::Value {
    serde_json::json!({"principal": principal, "host": "*", "resourceType": resource_type,
        "resourceName": name, "patternType": "LITERAL", "operation": op,
        "permissionType": "ALLOW"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_and_acls_with_confluent_kafka_and_kafka_python() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = MetadataCluster::new(
        std::path::Path::new(env!("CARGO_BIN_EXE_dmq")),
        dir.path(),
        3,
        common::long_sessions(),
    )
    .with_brokers(3);
    cluster.config.topic_defaults.default_replication_factor = 3;
    cluster.config.security = Some(security());
    cluster.start_all().expect("start cluster processes");
    if let Err(e) = cluster.wait_for_leader(Duration::from_secs(15)).await {
        panic!("metadata leader: {e}\n{}", process_logs(dir.path()));
    }
    if let Err(e) = cluster.wait_for_brokers(Duration::from_secs(30)).await {
        panic!("brokers up: {e}\n{}", process_logs(dir.path()));
    }

    let mut cmd = Command::new(venv_python());
    cmd.arg("tests/interop/security_sasl.py")
        .arg("--bootstrap")
        .arg(cluster.bootstrap())
        .arg("--admin-password")
        .arg(ADMIN_PASSWORD);
    let out = run_interop(cmd).await;
    for case in [
        "users",
        "acls",
        "allowed",
        "denied",
        "kafka-python",
        "revoke",
        "refused",
    ] {
        assert!(
            out.contains(&format!("OK security {case}")),
            "{case}: {out}\n{}",
            process_logs(dir.path())
        );
    }

    // Every partition of the RF-3 topic kept its full ISR: the followers fetched through
    // SASL with the inter-broker credentials.
    let (_, topic) = cluster
        .get(cluster.ids()[0], "/api/v1/metadata/topics/sec-t")
        .await
        .expect("topic");
    for p in topic["partitions"].as_array().expect("partitions") {
        assert_eq!(
            p["isr"].as_array().map(Vec::len),
            Some(3),
            "followers fetch with inter-broker SASL: {p}"
        );
    }

    // `dmq user` and `dmq acl` (with --token) make a SCRAM user and its ACLs; kcat
    // (librdkafka) uses them; after `dmq acl delete` and `dmq user delete` it cannot.
    let metadata: Vec<String> = cluster
        .ids()
        .into_iter()
        .map(|id| cluster.url(id))
        .collect();
    let dmq = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_dmq"))
            .args(args)
            .args(["--metadata", &metadata.join(","), "--output", "json"])
            .env("DMQ_TOKEN", HTTP_TOKEN)
            .output()
            .expect("run dmq");
        assert!(
            out.status.success(),
            "dmq {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    cluster
        .post_until_created(
            0,
            "/api/v1/metadata/topics",
            &serde_json::json!({"topicName": "sec-cli", "numPartitions": 1}),
            Duration::from_secs(10),
        )
        .await
        .expect("topic sec-cli created");
    dmq(&[
        "user",
        "create",
        "carol",
        "--password",
        "carol-secret",
        "--mechanism",
        "SCRAM-SHA-512",
    ]);
    let users = dmq(&["user", "list"]);
    assert!(
        users
            .as_array()
            .is_some_and(|u| u.iter().any(|u| u["user"] == "carol")),
        "{users}"
    );
    dmq(&[
        "acl",
        "create",
        "--principal",
        "User:carol",
        "--operation",
        "WRITE",
        "--operation",
        "READ",
        "--topic",
        "sec-cli",
    ]);
    dmq(&[
        "acl",
        "create",
        "--principal",
        "User:carol",
        "--operation",
        "READ",
        "--group",
        "kcat-carol",
    ]);
    let listed = dmq(&["acl", "list", "--principal", "User:carol"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
    let bootstrap = cluster.bootstrap();
    let kcat = |extra: &[&str], stdin: &str| {
        let mut child = Command::new("kcat")
            .args(["-b", &bootstrap, "-X", "security.protocol=SASL_PLAINTEXT"])
            .args([
                "-X",
                "sasl.mechanisms=SCRAM-SHA-512",
                "-X",
                "sasl.username=carol",
            ])
            .args(["-X", "sasl.password=carol-secret", "-t", "sec-cli"])
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kcat is installed (scripts/test.sh installs it)");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write");
        child.wait_with_output().expect("kcat runs")
    };
    // The brokers learn of carol with their next metadata pull (a heartbeat or a push).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let md = kcat(&["-L", "-m", "5"], "");
        if md.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "carol cannot log in: {}",
            String::from_utf8_lossy(&md.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let produced = kcat(&["-P"], "k1\nk2\nk3\n");
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    let consumed = kcat(
        &[
            "-C",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-X",
            "group.id=kcat-carol",
        ],
        "",
    );
    assert_eq!(
        String::from_utf8_lossy(&consumed.stdout)
            .lines()
            .collect::<Vec<_>>(),
        vec!["k1", "k2", "k3"],
        "{}",
        String::from_utf8_lossy(&consumed.stderr)
    );
    let deleted = dmq(&[
        "acl",
        "delete",
        "--principal",
        "User:carol",
        "--topic",
        "sec-cli",
    ]);
    assert_eq!(deleted.as_array().map(Vec::len), Some(2), "{deleted}");
    dmq(&["user", "delete", "carol"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while kcat(&["-L", "-m", "3"], "").status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "carol was deleted but still logs in"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // HTTP: every API asks for the token (401 JSON without it or with a wrong one), /health
    // stays open; the processes reach each other with it (the brokers registered above).
    let http = dmq_types::https::client();
    let node = cluster.url(cluster.ids()[0]);
    let broker = cluster.broker_url(cluster.broker_ids()[0]);
    for url in [
        format!("{node}/api/v1/metadata/cluster?security=true"),
        format!("{node}/api/v1/metadata/acls"),
        format!("{node}/ui/api/overview"),
        format!("{broker}/api/v1/storage/replication/status"),
        format!("{broker}/metrics"),
    ] {
        for token in [None, Some("not-the-token")] {
            let mut req = http.get(&url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.expect("answer");
            assert_eq!(resp.status().as_u16(), 401, "{url} with {token:?}");
            let body: serde_json::Value = resp.json().await.expect("JSON 401");
            assert_eq!(body["error"], "UNAUTHENTICATED", "{url}: {body}");
        }
        let resp = http
            .get(&url)
            .bearer_auth(HTTP_TOKEN)
            .send()
            .await
            .expect("answer");
        assert_eq!(resp.status().as_u16(), 200, "{url} with the token");
    }
    for url in [format!("{node}/health"), format!("{broker}/health")] {
        let status = http.get(&url).send().await.expect("answer").status();
        assert_eq!(status.as_u16(), 200, "{url} stays open");
    }

    // ACLs hold on HTTP too: viewer's token is valid but names a principal without ACLs, so
    // every call is refused with 403 and the Kafka error name, until the admin grants what
    // the call's Kafka counterpart needs — effective without restart, on nodes and brokers.
    let denied = viewer_until(
        &http,
        reqwest::Method::GET,
        &format!("{node}/api/v1/metadata/cluster"),
        403,
    )
    .await;
    assert_eq!(denied["error"], "CLUSTER_AUTHORIZATION_FAILED", "{denied}");
    let denied = viewer_until(
        &http,
        reqwest::Method::DELETE,
        &format!("{node}/api/v1/metadata/topics/sec-t"),
        403,
    )
    .await;
    assert_eq!(denied["error"], "TOPIC_AUTHORIZATION_FAILED", "{denied}");
    let consume = format!("{broker}/api/v1/storage/topics/sec-t/partitions/0?offset=0");
    let denied = viewer_until(&http, reqwest::Method::GET, &consume, 403).await;
    assert_eq!(denied["error"], "TOPIC_AUTHORIZATION_FAILED", "{denied}");
    let (status, body) = common::post_leader(
        &cluster,
        "/api/v1/metadata/acls",
        &serde_json::json!({"bindings": [
            allow("User:viewer", "DESCRIBE", "CLUSTER", "kafka-cluster"),
            allow("User:viewer", "READ", "TOPIC", "sec-t"),
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    viewer_until(
        &http,
        reqwest::Method::GET,
        &format!("{node}/api/v1/metadata/cluster"),
        200,
    )
    .await;
    viewer_until(&http, reqwest::Method::GET, &consume, 200).await;
    // DESCRIBE is not CLUSTER_ACTION: no SCRAM keys, no Raft RPCs, no broker registration.
    for (method, url) in [
        (
            reqwest::Method::GET,
            format!("{node}/api/v1/metadata/cluster?security=true"),
        ),
        (
            reqwest::Method::POST,
            format!("{node}/api/v1/raft/request-vote"),
        ),
        (
            reqwest::Method::POST,
            format!("{node}/api/v1/metadata/brokers"),
        ),
        (
            reqwest::Method::POST,
            format!("{broker}/api/v1/storage/metadata/update"),
        ),
        (
            reqwest::Method::DELETE,
            format!("{node}/api/v1/metadata/topics/sec-t"),
        ),
    ] {
        let resp = http
            .request(method.clone(), &url)
            .bearer_auth(VIEWER_TOKEN)
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("answer");
        assert_eq!(resp.status().as_u16(), 403, "viewer {method} {url}");
    }
    let (_, topic) = cluster
        .get(cluster.ids()[0], "/api/v1/metadata/topics/sec-t")
        .await
        .expect("topic");
    assert_eq!(
        topic["topicName"], "sec-t",
        "the topic survived viewer's DELETE"
    );

    // A forged Raft vote with a huge term, without the token, changes nothing.
    let (_, before) = cluster
        .get(cluster.ids()[0], "/api/v1/raft/status")
        .await
        .expect("raft status");
    for id in cluster.ids() {
        let resp = http
            .post(format!("{}/api/v1/raft/request-vote", cluster.url(id)))
            .json(&serde_json::json!({
                "vote": {"leader_id": {"term": 1_000_000, "node_id": 99}, "committed": false},
                "last_log_id": null
            }))
            .send()
            .await
            .expect("answer");
        assert_eq!(resp.status().as_u16(), 401, "forged vote at node {id}");
    }
    let (_, after) = cluster
        .get(cluster.ids()[0], "/api/v1/raft/status")
        .await
        .expect("raft status");
    assert_eq!(
        before["currentTerm"], after["currentTerm"],
        "{before} {after}"
    );
    assert!(after["currentTerm"].as_u64() < Some(1_000_000), "{after}");

    // No secret in any log line of any process.
    for entry in std::fs::read_dir(dir.path()).expect("read dir").flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for secret in [
                ADMIN_PASSWORD,
                "alice-secret",
                "bob-secret",
                "not-her-password",
            ] {
                assert!(
                    !text.contains(secret),
                    "{} contains a secret",
                    path.display()
                );
            }
        }
    }
}

/// TLS listeners (SPEC §11): each broker has a SASL_SSL and an SSL listener beside its
/// SASL_PLAINTEXT `kafkaPort`, with a certificate from a throwaway CA and client certificates
/// requested. confluent-kafka (tests/interop/security_tls.py): SCRAM and PLAIN over TLS, a client
/// certificate as the principal, Metadata advertising the listener's ports, plaintext and
/// untrusted-CA clients refused. Followers keep fetching over the SASL_PLAINTEXT port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listeners_with_sasl_ssl_and_client_certificates() {
    use dmq_types::security::{ListenerConfig, SecurityProtocol};
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dmq::certs::Pki::generate(&dir.path().join("certs"), "dmq test CA").expect("pki");
    let (client_cert, client_key) = pki
        .client(
            "alice",
            &[
                (rcgen::DnType::OrganizationalUnitName, "eng"),
                (rcgen::DnType::CommonName, "alice"),
            ],
        )
        .expect("client certificate");
    let other = dmq::certs::Pki::generate(&dir.path().join("other"), "another CA").expect("pki");
    let mut security = security();
    security.tls = Some(
        serde_json::from_value(serde_json::json!({
            "certFile": pki.cert_file, "keyFile": pki.key_file, "caFile": pki.ca_file,
            "clientAuth": "requested"
        }))
        .expect("tls section"),
    );
    let mut cluster = MetadataCluster::new(
        std::path::Path::new(env!("CARGO_BIN_EXE_dmq")),
        dir.path(),
        3,
        common::long_sessions(),
    )
    .with_brokers(3);
    cluster.config.topic_defaults.default_replication_factor = 3;
    cluster.config.security = Some(security);
    let (mut sasl_ssl, mut ssl) = (Vec::new(), Vec::new());
    for b in &mut cluster.config.services.storage_services {
        let (p1, p2) = (dmq::procs::free_port(), dmq::procs::free_port());
        b.listeners = vec![
            ListenerConfig {
                name: "SECURE".into(),
                port: p1,
                protocol: SecurityProtocol::SaslSsl,
            },
            ListenerConfig {
                name: "MTLS".into(),
                port: p2,
                protocol: SecurityProtocol::Ssl,
            },
        ];
        sasl_ssl.push(format!("127.0.0.1:{p1}"));
        ssl.push(format!("127.0.0.1:{p2}"));
    }
    cluster.start_all().expect("start cluster processes");
    if let Err(e) = cluster.wait_for_leader(Duration::from_secs(15)).await {
        panic!("metadata leader: {e}\n{}", process_logs(dir.path()));
    }
    if let Err(e) = cluster.wait_for_brokers(Duration::from_secs(30)).await {
        panic!("brokers up: {e}\n{}", process_logs(dir.path()));
    }
    let mut cmd = Command::new(venv_python());
    cmd.arg("tests/interop/security_tls.py")
        .args(["--sasl-ssl", &sasl_ssl.join(",")])
        .args(["--ssl", &ssl.join(",")])
        .arg("--ca")
        .arg(&pki.ca_file)
        .arg("--client-cert")
        .arg(&client_cert)
        .arg("--client-key")
        .arg(&client_key)
        .arg("--wrong-ca")
        .arg(&other.ca_file)
        .args(["--admin-password", ADMIN_PASSWORD]);
    let out = run_interop(cmd).await;
    for case in ["sasl-ssl", "mtls", "refused"] {
        assert!(
            out.contains(&format!("OK tls {case}")),
            "{case}: {out}\n{}",
            process_logs(dir.path())
        );
    }

    // dmq-client over SASL_SSL: `dmq bench produce` as the admin (PLAIN), acks=all, RF 3.
    let out = Command::new(env!("CARGO_BIN_EXE_dmq"))
        .args(["bench", "produce", "tls-bench", "--records", "2000"])
        .args([
            "--record-size",
            "100",
            "--acks",
            "all",
            "--replication-factor",
            "3",
        ])
        .args(["--output", "json", "--bootstrap", &sasl_ssl.join(",")])
        .args([
            "--security-protocol",
            "SASL_SSL",
            "--sasl-mechanism",
            "PLAIN",
        ])
        .args(["--sasl-username", "admin", "--ssl-ca"])
        .arg(&pki.ca_file)
        .env("DMQ_SASL_PASSWORD", ADMIN_PASSWORD)
        .output()
        .expect("run dmq bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let produced: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["records"].is_number())
        .unwrap_or_else(|| panic!("no result line: {stdout}"));
    assert_eq!(produced["records"], 2000, "{produced}");
    // Without credentials the same command is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_dmq"))
        .args(["topic", "list", "--bootstrap", &sasl_ssl.join(",")])
        .args([
            "--security-protocol",
            "SASL_SSL",
            "--sasl-mechanism",
            "SCRAM-SHA-512",
        ])
        .args(["--sasl-username", "admin", "--ssl-ca"])
        .arg(&pki.ca_file)
        .env("DMQ_SASL_PASSWORD", "wrong")
        .output()
        .expect("run dmq topic list");
    assert!(!out.status.success(), "a wrong password listed topics");
}
