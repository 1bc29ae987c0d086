//! `dmq dev`: the whole local cluster (SPEC §1) in one process: three metadata nodes and three
//! storage brokers on the example ports. Data lives under `--data-dir` (one sub-directory per
//! node), so running it again keeps every topic.

use std::path::PathBuf;

use dmq::load_config;
use dmq_broker::{BrokerConfig, BrokerNode};
use dmq_metadata::{MetadataNode, MetadataNodeOptions};

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
