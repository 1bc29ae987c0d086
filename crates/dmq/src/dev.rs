//! `dmq dev`: the whole local cluster (SPEC §1) in one process: three metadata nodes and three
//! storage brokers on the example ports. Data lives under `--data-dir` (one sub-directory per
//! node), so running it again keeps every topic.

use std::path::{Path, PathBuf};

use anyhow::Context;
use dmq_types::security::{ListenerConfig, SecurityConfig, SecurityProtocol};
use std::time::{Duration, Instant};

use dmq::load_config;
use dmq_broker::kafka::client::KafkaConnection;
use dmq_broker::{BrokerConfig, BrokerNode};
use dmq_metadata::{MetadataNode, MetadataNodeOptions};
use dmq_types::ServicesConfig;
use kafka_protocol::messages::MetadataRequest;

/// How long `dmq dev` waits for the whole cluster to be ready before giving up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Port offset of the SASL_SSL listener `--secure` adds to each broker (19092 → 19192).
const SECURE_PORT_OFFSET: u16 = 100;
/// Where `--secure` keeps its security section, so a restart keeps the credentials.
const SECURE_FILE: &str = "dev-security.json";

/// `preferred` when it is free on `host`, else a port the OS picks (printed at start).
fn pick_port(host: &str, preferred: u16) -> u16 {
    if std::net::TcpListener::bind((host, preferred)).is_ok() {
        return preferred;
    }
    std::net::TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .map_or(preferred, |a| a.port())
}

/// The security section of `dmq dev --secure`: the one in the data dir from an earlier run,
/// else a fresh CA, server certificate, admin password and HTTP token.
fn secure_section(data_dir: &Path) -> anyhow::Result<SecurityConfig> {
    let file = data_dir.join(SECURE_FILE);
    if file.exists() {
        let text = std::fs::read_to_string(&file)?;
        return serde_json::from_str(&text).with_context(|| format!("reading {}", file.display()));
    }
    std::fs::create_dir_all(data_dir)?;
    let pki = dmq::certs::Pki::generate(&data_dir.join("certs"), "dmq dev CA")?;
    let secret = || {
        use rand::RngCore;
        let mut b = [0u8; 16];
        rand::rng().fill_bytes(&mut b);
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    };
    let password = secret();
    let section: SecurityConfig = serde_json::from_value(serde_json::json!({
        "tls": {"certFile": pki.cert_file, "keyFile": pki.key_file, "caFile": pki.ca_file,
                "clientAuth": "requested"},
        "sasl": {"mechanisms": ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
                 "users": [{"name": "admin", "password": password}]},
        "authorizer": {"enabled": true, "superUsers": ["User:admin"],
                       "allowEveryoneIfNoAclFound": false},
        "interBroker": {"user": "admin", "password": password},
        "http": {"tokens": [{"token": secret(), "principal": "User:admin"}], "tls": true},
    }))?;
    std::fs::write(&file, serde_json::to_string_pretty(&section)?)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(section)
}

pub async fn run(data_dir: PathBuf, config: Option<PathBuf>, secure: bool) -> anyhow::Result<()> {
    let (mut config, origin) = load_config(config.as_deref())?;
    if secure {
        config.security = Some(secure_section(&data_dir)?);
        if config.http_tls() {
            config.use_https_urls();
        }
        // A config that gives brokers their own listeners keeps them.
        for b in config
            .services
            .storage_services
            .iter_mut()
            .filter(|b| b.listeners.is_empty())
        {
            let port = pick_port(&b.host, b.kafka_port().saturating_add(SECURE_PORT_OFFSET));
            b.listeners.push(ListenerConfig {
                name: "SECURE".into(),
                port,
                protocol: SecurityProtocol::SaslSsl,
            });
        }
    }
    let mut nodes = Vec::new();
    let mut brokers = Vec::new();
    let started: anyhow::Result<()> = async {
        for meta in &config.services.metadata_services {
            nodes.push(
                MetadataNode::start(MetadataNodeOptions {
                    node_id: meta.id,
                    config: config.clone(),
                    data_dir: data_dir.join(format!("metadata-{}", meta.id)),
                    bind_host: None,
                })
                .await?,
            );
        }
        for b in &config.services.storage_services {
            let cfg = BrokerConfig::from_services(
                &config,
                b.id,
                data_dir.join(format!("broker-{}", b.id)),
            );
            brokers.push(BrokerNode::start(cfg).await?);
        }
        Ok(())
    }
    .await;
    let started = match started {
        Ok(()) => wait_ready(&config, &brokers, READY_TIMEOUT).await,
        Err(e) => Err(e),
    };
    if let Err(e) = started {
        for b in brokers {
            b.shutdown().await;
        }
        for n in nodes {
            n.shutdown().await;
        }
        return Err(e);
    }
    println!(
        "DistributedMQ dev cluster ({origin}), data in {}",
        data_dir.display()
    );
    println!();
    println!("{:<10} {:<4} {:<28} KAFKA", "ROLE", "ID", "HTTP");
    for meta in &config.services.metadata_services {
        println!("metadata   {:<4} {:<28} -", meta.id, meta.base_url());
    }
    for b in &config.services.storage_services {
        println!(
            "broker     {:<4} {:<28} {}:{}",
            b.id,
            b.base_url(),
            b.host,
            b.kafka_port()
        );
    }
    let bootstrap: Vec<String> = config
        .services
        .storage_services
        .iter()
        .map(|b| format!("{}:{}", b.host, b.kafka_port()))
        .collect();
    println!();
    println!("Kafka bootstrap: {}", bootstrap.join(","));
    if let Some(first) = config.services.metadata_services.first() {
        println!("Web console:     {}/ui/", first.base_url());
    }
    match &config.security {
        None => {
            if let Some(first) = bootstrap.first() {
                println!("Try: kcat -b {first} -L");
            }
            if let Some(first) = config.services.metadata_services.first() {
                println!("     curl {}/api/v1/metadata/cluster", first.base_url());
            }
        }
        Some(sec) => {
            let kept = if secure {
                data_dir.join(SECURE_FILE).display().to_string()
            } else {
                origin.clone()
            };
            print_secure(&config, sec, &kept)
        }
    }
    println!("Press Ctrl-C to stop.");
    crate::shutdown_signal().await;
    println!("stopping…");
    for b in brokers {
        b.shutdown().await;
    }
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}

/// What a user of `--secure` needs: the admin credentials, the CA, the token, and commands.
fn print_secure(config: &ServicesConfig, sec: &SecurityConfig, kept: &str) {
    let password = sec
        .sasl
        .as_ref()
        .and_then(|s| s.users.first())
        .map_or("", |u| u.password.expose());
    let token = sec
        .http
        .as_ref()
        .and_then(|h| h.tokens.first())
        .map_or("", |t| t.token.expose());
    let ca = sec
        .tls
        .as_ref()
        .and_then(|t| t.ca_file.as_ref())
        .map_or_else(String::new, |p| p.display().to_string());
    let secure: Vec<String> = config
        .services
        .storage_services
        .iter()
        .flat_map(|b| {
            b.listeners
                .iter()
                .filter(|l| l.protocol == SecurityProtocol::SaslSsl)
                .map(move |l| format!("{}:{}", b.host, l.port))
        })
        .collect();
    println!("Security is ON (kept in {kept}):");
    println!("  SASL_SSL bootstrap:  {}   (CA: {ca})", secure.join(","));
    println!("  SASL_PLAINTEXT:      the Kafka bootstrap above");
    println!("  admin (PLAIN, super user): admin / {password}");
    println!("  HTTP token:          {token}");
    let metadata: Vec<String> = config
        .services
        .metadata_services
        .iter()
        .map(|m| m.base_url())
        .collect();
    if let Some(first) = metadata.first() {
        println!("  Web console:         {first}/ui/?token={token}");
        if config.http_tls() {
            println!("                       (HTTPS with the dev CA above: import it, or accept the browser's warning)");
        }
    }
    if let Some(first) = secure.first() {
        println!("Try: kcat -b {first} -X security.protocol=SASL_SSL -X ssl.ca.location={ca} \\");
        println!("          -X sasl.mechanisms=PLAIN -X sasl.username=admin -X sasl.password={password} -L");
        if config.http_tls() {
            println!(
                "     export DMQ_METADATA={} DMQ_HTTP_CA={ca} DMQ_TOKEN={token}",
                metadata.join(",")
            );
        } else {
            println!("     export DMQ_TOKEN={token}");
        }
        println!("     dmq user create alice --password alice-secret");
        println!("     dmq acl create --principal User:alice --operation WRITE --operation READ --topic orders");
        if let Some(m) = metadata.first() {
            println!("     curl --cacert {ca} -H \"Authorization: Bearer $DMQ_TOKEN\" {m}/api/v1/metadata/cluster");
        }
    }
}

/// Waits until the cluster is ready for the README's next command: every metadata node answers
/// `/health/ready`, every broker has registered in this run and sees itself ONLINE, and every
/// broker answers a Kafka Metadata request naming all the brokers (so a topic with one replica
/// per broker can be created at once).
async fn wait_ready(
    config: &ServicesConfig,
    brokers: &[BrokerNode],
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let http = dmq_types::https::client_builder_for(config.security.as_ref())?
        .timeout(Duration::from_secs(2))
        .build()?;
    let want = brokers.len();
    let mut waiting_for = String::new();
    while Instant::now() < deadline {
        waiting_for = match readiness(config, brokers, &http, want).await {
            None => return Ok(()),
            Some(what) => what,
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the dev cluster was not ready within {timeout:?}: waiting for {waiting_for}")
}

/// `None` when ready, else what is still missing.
async fn readiness(
    config: &ServicesConfig,
    brokers: &[BrokerNode],
    http: &reqwest::Client,
    want: usize,
) -> Option<String> {
    for meta in &config.services.metadata_services {
        let url = format!("{}/health/ready", meta.base_url());
        let ok = http
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if !ok {
            return Some(format!("metadata node {}", meta.id));
        }
    }
    for b in brokers {
        let id = b.shared().config.broker_id;
        if !b.shared().is_ready() {
            return Some(format!("broker {id} to register"));
        }
        let addr = b.kafka_addr().to_string();
        let seen = async {
            let auth = b.shared().security.inter_broker();
            let mut conn =
                KafkaConnection::connect_as_broker(&addr, "dmq-dev", Duration::from_secs(2), auth)
                    .await
                    .ok()?;
            let req = MetadataRequest::default().with_topics(Some(Vec::new()));
            let resp = conn.send(&req, 4, Duration::ZERO).await.ok()?;
            Some(resp.brokers.len())
        }
        .await;
        if seen != Some(want) {
            return Some(format!("broker {id} to see all {want} brokers"));
        }
    }
    None
}
