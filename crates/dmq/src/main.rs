//! `dmq`: every DistributedMQ role and tool in one binary.
//!
//! ```text
//! dmq metadata --node-id N      a metadata quorum member (Raft + controller + HTTP API)
//! dmq broker --broker-id ID     a storage broker (Kafka protocol + HTTP API)
//! dmq dev                       the whole local cluster in one process
//! dmq bench metadata|failover   metadata commit throughput/latency, controller failover time
//! dmq bench replication|broker-failover   produce throughput by RF/acks, partition failover time
//! dmq bench offsets|rebalance   group offset commits/s, rebalance time
//! dmq bench produce|consume     client throughput and latency against a running cluster
//! dmq topic create|list|describe|delete, produce, consume [--group], group list|describe|
//!     reset-offsets, cluster status                                            (SPEC §7)
//! ```

mod bench;
mod bench_broker;
mod bench_client;
mod bench_groups;
mod cli;
mod dev;
mod rolling;
mod security_cli;
mod table;

/// Malformed Kafka frames may claim absurd array lengths; see `dmq_broker::alloc`.
#[global_allocator]
static ALLOC: dmq_broker::alloc::NoReserveHuge = dmq_broker::alloc::NoReserveHuge;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use dmq::load_config;
use dmq_metadata::{MetadataNode, MetadataNodeOptions};
use dmq_types::NodeId;

#[derive(Parser, Debug)]
#[command(
    name = "dmq",
    version,
    about = "DistributedMQ: a Kafka-compatible distributed message queue"
)]
struct Cli {
    /// Log format on stderr (level from RUST_LOG, default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
enum Commands {
    /// Run a metadata node (a member of the Raft controller quorum).
    Metadata {
        /// This node's id in services.json "metadata-services".
        #[arg(
            long,
            required_unless_present = "id_from_hostname",
            conflicts_with = "id_from_hostname"
        )]
        node_id: Option<NodeId>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Run a storage broker: partitions on disk, the Kafka protocol and the storage HTTP API.
    Broker {
        /// This broker's id ("storage-services" in services.json, or any id with explicit ports).
        #[arg(
            long,
            required_unless_present = "id_from_hostname",
            conflicts_with = "id_from_hostname"
        )]
        broker_id: Option<i32>,
        /// Kafka listener port, overriding services.json.
        #[arg(long)]
        kafka_port: Option<u16>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Run a whole local cluster in one process: 3 metadata nodes and 3 brokers.
    Dev {
        /// Where every node keeps its data (one sub-directory each).
        #[arg(long, default_value = "./dmq-data")]
        data_dir: PathBuf,
        /// services.json to use (default: config/services.json, else the built-in example).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Security on (SPEC §11): a fresh CA and certificates, SASL (PLAIN, SCRAM) on the
        /// Kafka ports plus a SASL_SSL listener per broker, ACLs, HTTP tokens; the admin
        /// credentials are printed (and kept in the data dir for the next run).
        #[arg(long)]
        secure: bool,
    },
    /// Create, list, describe and delete topics.
    Topic {
        #[command(subcommand)]
        cmd: cli::TopicCommand,
        #[command(flatten)]
        client: cli::ClientArgs,
    },
    /// Produce one record per line of stdin.
    Produce {
        #[command(flatten)]
        args: cli::ProduceArgs,
        #[command(flatten)]
        client: cli::ClientArgs,
    },
    /// Print the records of a topic.
    Consume {
        #[command(flatten)]
        args: cli::ConsumeArgs,
        #[command(flatten)]
        client: cli::ClientArgs,
    },
    /// Consumer groups: list, describe (offsets and lag), reset offsets.
    Group {
        #[command(subcommand)]
        cmd: cli::GroupCommand,
        #[command(flatten)]
        client: cli::ClientArgs,
    },
    /// Transactions: list, describe.
    Txn {
        #[command(subcommand)]
        cmd: cli::TxnCommand,
        #[command(flatten)]
        client: cli::ClientArgs,
    },
    /// Share groups (queues): consume as a member, describe.
    Share {
        #[command(subcommand)]
        cmd: cli::ShareCommand,
        #[command(flatten)]
        client: cli::ClientArgs,
    },
    /// SCRAM users: create (salted and hashed here), delete, list.
    User {
        #[command(subcommand)]
        cmd: security_cli::UserCommand,
        #[command(flatten)]
        client: cli::ClientArgs,
    },
    /// ACLs: create, list, delete (Kafka's authorizer model).
    Acl {
        #[command(subcommand)]
        cmd: security_cli::AclCommand,
        #[command(flatten)]
        client: cli::ClientArgs,
    },
    /// The cluster's health at a glance.
    Cluster {
        #[command(subcommand)]
        cmd: cli::ClusterCommand,
        #[command(flatten)]
        client: cli::ClientArgs,
    },
    /// Measure the cluster.
    Bench {
        #[command(subcommand)]
        which: bench::BenchCommand,
    },
}

/// Flags every server role takes (SPEC §1).
#[derive(clap::Args, Debug)]
struct CommonArgs {
    /// services.json to use (default: config/services.json, else the built-in example).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (default: ./dmq-data/<role>-<id>).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Host instead of the configured one (a metadata node binds it; a broker binds and
    /// advertises it).
    #[arg(long)]
    host: Option<String>,
    /// HTTP port, overriding services.json.
    #[arg(long)]
    http_port: Option<u16>,
    /// Address to listen on (e.g. 0.0.0.0) while peers and clients keep using the configured host.
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// Instead of --node-id/--broker-id: the number ending this host's name plus BASE (a
    /// StatefulSet pod dmq-broker-2 with BASE 101 is broker 103).
    #[arg(long, value_name = "BASE")]
    id_from_hostname: Option<u64>,
}

impl CommonArgs {
    /// The id given with `--node-id`/`--broker-id`, or derived with `--id-from-hostname`.
    fn id<T: TryFrom<u64>>(&self, explicit: Option<T>, what: &str) -> anyhow::Result<T> {
        if let Some(id) = explicit {
            return Ok(id);
        }
        let Some(base) = self.id_from_hostname else {
            anyhow::bail!("give --{what} or --id-from-hostname");
        };
        let host = dmq::hostname()?;
        let id = dmq::id_from_hostname(&host, base)?;
        let id = T::try_from(id).map_err(|_| {
            anyhow::anyhow!("id {id} derived from host name {host:?} is out of range for --{what}")
        })?;
        tracing::info!("host name {host:?} and --id-from-hostname {base} give this process its id");
        Ok(id)
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Commands::Metadata { node_id, common } => run_metadata(node_id, common).await,
        Commands::Broker {
            broker_id,
            kafka_port,
            common,
        } => run_broker(broker_id, kafka_port, common).await,
        Commands::Dev {
            data_dir,
            config,
            secure,
        } => dev::run(data_dir, config, secure).await,
        Commands::Bench { which } => bench::run(which).await,
        Commands::Topic { cmd, client } => cli::topic(cmd, client).await,
        Commands::Produce { args, client } => cli::produce(args, client).await,
        Commands::Consume { args, client } => cli::consume(args, client).await,
        Commands::Cluster { cmd, client } => cli::cluster(cmd, client).await,
        Commands::Group { cmd, client } => cli::group(cmd, client).await,
        Commands::Txn { cmd, client } => cli::txn(cmd, client).await,
        Commands::Share { cmd, client } => cli::share(cmd, client).await,
        Commands::User { cmd, client } => security_cli::user(cmd, client).await,
        Commands::Acl { cmd, client } => security_cli::acl(cmd, client).await,
    }
}

async fn run_metadata(node_id: Option<NodeId>, common: CommonArgs) -> anyhow::Result<()> {
    let node_id = common.id(node_id, "node-id")?;
    let (mut config, origin) = load_config(common.config.as_deref())?;
    let scheme = config.http_scheme();
    let Some(me) = config
        .services
        .metadata_services
        .iter_mut()
        .find(|n| n.id == node_id)
    else {
        anyhow::bail!(
            "metadata node id {node_id} is not listed in \"metadata-services\" of {origin}"
        );
    };
    if let Some(port) = common.http_port {
        me.port = port;
        me.url = Some(format!("{scheme}://{}:{port}", me.host));
    }
    let data_dir = common
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!("./dmq-data/metadata-{node_id}")));
    tracing::info!(config = %origin, "starting metadata node {node_id}");
    let node = MetadataNode::start(MetadataNodeOptions {
        node_id,
        config,
        data_dir,
        bind_host: common.bind.or(common.host),
    })
    .await
    .context("metadata node failed to start")?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}

async fn run_broker(
    broker_id: Option<i32>,
    kafka_port: Option<u16>,
    common: CommonArgs,
) -> anyhow::Result<()> {
    let broker_id = common.id(broker_id, "broker-id")?;
    let (config, origin) = load_config(common.config.as_deref())?;
    let data_dir = common
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!("./dmq-data/broker-{broker_id}")));
    let listed = config.storage_node(broker_id).is_some();
    let mut broker = dmq_broker::BrokerConfig::from_services(&config, broker_id, data_dir);
    if let Some(host) = common.host {
        broker.host = host;
    }
    broker.bind_host = common.bind;
    if let Some(port) = common.http_port {
        broker.http_port = port;
    }
    if let Some(port) = kafka_port {
        broker.kafka_port = port;
    }
    if !listed && (common.http_port.is_none() || kafka_port.is_none()) {
        anyhow::bail!(
            "broker id {broker_id} is not listed in \"storage-services\" of {origin}; \
             an unlisted broker needs --http-port and --kafka-port"
        );
    }
    tracing::info!(config = %origin, "starting storage broker {broker_id}");
    let node = dmq_broker::BrokerNode::start(broker)
        .await
        .context("storage broker failed to start")?;
    shutdown_signal().await;
    tracing::info!("shutting down: controlled shutdown first (a second signal stops at once)");
    tokio::select! {
        _ = node.controlled_shutdown(CONTROLLED_SHUTDOWN_TIMEOUT) => {}
        _ = shutdown_signal() => tracing::warn!("second signal: stopping without waiting"),
    }
    Ok(())
}

/// How long a stopping broker waits for the controller to move its leaderships away.
const CONTROLLED_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
