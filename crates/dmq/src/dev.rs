//! `dmq dev`: the whole local cluster (SPEC §1) in one process: three metadata nodes and three
//! storage brokers on the example ports. Data lives under `--data-dir` (one sub-directory per
//! node), so running it again keeps every topic.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dmq::load_config;
use dmq_broker::kafka::client::KafkaConnection;
use dmq_broker::{BrokerConfig, BrokerNode};
use dmq_metadata::{MetadataNode, MetadataNodeOptions};
use dmq_types::ServicesConfig;
use kafka_protocol::messages::MetadataRequest;

/// How long `dmq dev` waits for the whole cluster to be ready before giving up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn run(data_dir: PathBuf, config: Option<PathBuf>) -> anyhow::Result<()> {
    let (config, origin) = load_config(config.as_deref())?;
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
    if let Some(first) = bootstrap.first() {
        println!("Try: kcat -b {first} -L");
    }
    if let Some(first) = config.services.metadata_services.first() {
        println!("     curl {}/api/v1/metadata/cluster", first.base_url());
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
    let http = reqwest::Client::builder()
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
            let mut conn = KafkaConnection::connect(&addr, "dmq-dev", Duration::from_secs(2))
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
