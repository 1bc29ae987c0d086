//! `dmq dev`: the whole local cluster (SPEC §1) in one process.
//!
//! Today that is the three metadata nodes; storage brokers join it when they exist. Data lives
//! under `--data-dir` (one sub-directory per node), so running it again keeps every topic.

use std::path::PathBuf;

use dmq::load_config;
use dmq_metadata::{MetadataNode, MetadataNodeOptions};

pub async fn run(data_dir: PathBuf, config: Option<PathBuf>) -> anyhow::Result<()> {
    let (config, origin) = load_config(config.as_deref())?;
    let mut nodes = Vec::new();
    for meta in &config.services.metadata_services {
        let node = MetadataNode::start(MetadataNodeOptions {
            node_id: meta.id,
            config: config.clone(),
            data_dir: data_dir.join(format!("metadata-{}", meta.id)),
            bind_host: None,
        })
        .await;
        match node {
            Ok(node) => nodes.push(node),
            Err(e) => {
                for n in nodes {
                    n.shutdown().await;
                }
                return Err(e.into());
            }
        }
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
    println!();
    if let Some(first) = config.services.metadata_services.first() {
        println!("Try: curl {}/api/v1/metadata/cluster", first.base_url());
    }
    println!("Press Ctrl-C to stop.");
    crate::shutdown_signal().await;
    println!("stopping…");
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}
