//! The client commands of SPEC §7: `topic`, `produce`, `consume`, `cluster status`.
//!
//! Everything Kafka goes through `dmq-client`; `cluster status` reads the metadata quorum's HTTP
//! API (Raft state is not part of the Kafka protocol). Human tables by default, `--output json`
//! for scripts; errors are one line on stderr and exit code 2 (see `main`).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use dmq_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, GroupConfig, GroupConsumer,
    NewTopic, Offset, OffsetReset, Producer, ProducerConfig, ProducerRecord, TopicPartition,
};
use serde_json::{json, Value};

use crate::table::Table;

/// The `dmq dev` cluster's Kafka listeners and metadata nodes.
pub const DEV_BOOTSTRAP: &str = "localhost:19092,localhost:19093,localhost:19094";
pub const DEV_METADATA: &str = "http://localhost:9091,http://localhost:9092,http://localhost:9093";

/// Where the cluster is, and how to print.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Kafka bootstrap servers, host:port,...
    #[arg(long, env = "DMQ_BOOTSTRAP", default_value = DEV_BOOTSTRAP, global = true)]
    pub bootstrap: String,
    /// Metadata node URLs, comma-separated.
    #[arg(long, env = "DMQ_METADATA", default_value = DEV_METADATA, global = true)]
    pub metadata: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub output: OutputFormat,
    /// Bearer token for the metadata nodes' HTTP API (a cluster with `security.http`).
    #[arg(long, env = "DMQ_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for https:// metadata URLs (a cluster with
    /// `security.http.tls`).
    #[arg(long, env = "DMQ_HTTP_CA", global = true)]
    pub http_ca: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub security: KafkaSecurityArgs,
}

/// Kafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SecurityProtocolArg {
    #[value(name = "PLAINTEXT", alias = "plaintext")]
    Plaintext,
    #[value(name = "SSL", alias = "ssl")]
    Ssl,
    #[value(name = "SASL_PLAINTEXT", alias = "sasl_plaintext")]
    SaslPlaintext,
    #[value(name = "SASL_SSL", alias = "sasl_ssl")]
    SaslSsl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaslMechanismArg {
    #[value(name = "PLAIN", alias = "plain")]
    Plain,
    #[value(name = "SCRAM-SHA-256", alias = "scram-sha-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512", alias = "scram-sha-512")]
    ScramSha512,
}

/// How the client connects to the Kafka listeners (TLS, SASL), as Kafka clients configure it.
#[derive(Args, Debug, Clone)]
pub struct KafkaSecurityArgs {
    #[arg(long, value_enum, env = "DMQ_SECURITY_PROTOCOL", default_value_t = SecurityProtocolArg::Plaintext, global = true)]
    pub security_protocol: SecurityProtocolArg,
    #[arg(long, value_enum, env = "DMQ_SASL_MECHANISM", default_value_t = SaslMechanismArg::ScramSha512, global = true)]
    pub sasl_mechanism: SaslMechanismArg,
    #[arg(long, env = "DMQ_SASL_USERNAME", global = true)]
    pub sasl_username: Option<String>,
    /// Prefer the environment variable over the command line.
    #[arg(long, env = "DMQ_SASL_PASSWORD", hide_env_values = true, global = true)]
    pub sasl_password: Option<String>,
    /// CA certificate (PEM) to trust for SSL and SASL_SSL.
    #[arg(long, env = "DMQ_SSL_CA", global = true)]
    pub ssl_ca: Option<std::path::PathBuf>,
    /// Client certificate and key (PEM) for SSL listeners that ask for one.
    #[arg(long, env = "DMQ_SSL_CERT", global = true)]
    pub ssl_cert: Option<std::path::PathBuf>,
    #[arg(long, env = "DMQ_SSL_KEY", global = true)]
    pub ssl_key: Option<std::path::PathBuf>,
}

impl KafkaSecurityArgs {
    /// The client's [`dmq_client::Security`]; `None` for PLAINTEXT.
    pub fn security(&self) -> Option<dmq_client::Security> {
        use SecurityProtocolArg::*;
        let p = self.security_protocol;
        if p == Plaintext {
            return None;
        }
        let tls = matches!(p, Ssl | SaslSsl).then(|| dmq_client::Tls {
            ca_file: self.ssl_ca.clone().unwrap_or_default(),
            client_cert: self.ssl_cert.clone().zip(self.ssl_key.clone()),
        });
        let sasl = matches!(p, SaslPlaintext | SaslSsl).then(|| {
            let mechanism = match self.sasl_mechanism {
                SaslMechanismArg::Plain => dmq_client::SaslMechanism::Plain,
                SaslMechanismArg::ScramSha256 => dmq_client::SaslMechanism::ScramSha256,
                SaslMechanismArg::ScramSha512 => dmq_client::SaslMechanism::ScramSha512,
            };
            dmq_client::Sasl::new(
                mechanism,
                self.sasl_username.clone().unwrap_or_default(),
                self.sasl_password.clone().unwrap_or_default(),
            )
        });
        Some(dmq_client::Security { tls, sasl })
    }
}

/// An HTTP client for the metadata API that carries `--token` when given.
pub(crate) fn http_client(args: &ClientArgs, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = &args.token {
        let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
            .map_err(|_| anyhow!("--token is not a valid header value"))?;
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    Ok(dmq_types::https::client_builder(args.http_ca.as_deref())?
        .default_headers(headers)
        .timeout(timeout)
        .build()?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

impl ClientArgs {
    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new(self.bootstrap.clone());
        c.client_id = "dmq-cli".into();
        c.request_timeout = Duration::from_secs(15);
        c.security = self.security.security();
        c
    }
}

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Default: 3, or the number of brokers if fewer.
        #[arg(long)]
        replication_factor: Option<i16>,
        /// Topic config, key=value (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics.
    List,
    /// Show a topic's partitions, leaders, replicas, ISR and configs.
    Describe { name: String },
    /// Grow a topic (kafka-topics --alter --partitions: the new total) and/or change its
    /// configs (kafka-configs --alter --add-config / --delete-config).
    Alter {
        name: String,
        #[arg(long)]
        partitions: Option<i32>,
        /// Set a topic config, key=value (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Revert a topic config to its default (repeatable).
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
    },
    /// Delete a topic.
    Delete { name: String },
    /// Delete the records of a partition below an offset (kafka-delete-records): the log start
    /// moves there and consumers can no longer read what is before it.
    DeleteRecords {
        name: String,
        #[arg(long, default_value_t = 0)]
        partition: i32,
        /// Records before this offset go; -1 means up to the high watermark (everything).
        #[arg(long, allow_hyphen_values = true)]
        offset: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Controller, Raft members, brokers and under-replicated partitions.
    Status,
    /// Show or change dynamic broker configs (kafka-configs --entity-type brokers): for one
    /// broker with --broker, else cluster-wide. Changes take effect without a restart.
    Config {
        /// The broker to configure (default: the cluster-wide defaults).
        #[arg(long)]
        broker: Option<i32>,
        /// Set a dynamic broker config, key=value (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Remove a dynamic broker config (repeatable).
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
    },
    /// Restart the brokers one at a time, each only when every broker is ONLINE and every ISR
    /// is full, and wait for it to come back (registered anew, ISRs full) before the next.
    RollingRestart {
        /// Restarts one broker, run with `sh -c`; `{id}` and `{host}` name it. It should stop
        /// the broker with SIGTERM (controlled shutdown) and start it again, e.g.
        /// "systemctl restart dmq-broker@{id}".
        #[arg(long)]
        restart_command: String,
        /// Only these brokers (repeatable; default: all, in id order).
        #[arg(long = "broker")]
        brokers: Vec<i64>,
        /// Longest wait for the cluster to be whole, before and after each restart.
        #[arg(long, default_value_t = 300)]
        step_timeout_secs: u64,
    },
}

/// `dmq produce` options.
#[derive(Args, Debug)]
pub struct ProduceArgs {
    pub topic: String,
    /// Key of every record.
    #[arg(long, conflicts_with = "key_separator")]
    pub key: Option<String>,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Send to this partition instead of the partitioner's choice.
    #[arg(long)]
    pub partition: Option<i32>,
    /// 0, 1 or all.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Produce all of stdin in one transaction with this transactional id, committed at the
    /// end of the input (read_committed consumers see all of it or, on failure, nothing).
    #[arg(long, value_name = "ID")]
    pub transactional_id: Option<String>,
}

/// `dmq consume` options.
#[derive(Args, Debug)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Start at the beginning of each partition (default: only new records).
    #[arg(long)]
    pub from_beginning: bool,
    /// Read only this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// With --partition: start at this offset (a number, "beginning" or "end").
    #[arg(long, requires = "partition")]
    pub offset: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    pub max: Option<u64>,
    /// Stop when no record arrived for this long.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// What to print of each record (with --output json: one JSON object per line).
    #[arg(long, value_enum, default_value_t = PrintFormat::Value)]
    pub format: PrintFormat,
    /// Consume as a member of this consumer group (offsets committed as records are printed;
    /// without --from-beginning a new group starts at the end).
    #[arg(long, conflicts_with_all = ["partition", "offset"])]
    pub group: Option<String>,
    /// With --group: range or cooperative-sticky.
    #[arg(long, default_value = "range", requires = "group")]
    pub assignor: String,
    /// read_committed: only records of committed transactions (and non-transactional ones);
    /// read_uncommitted: every record.
    #[arg(long, default_value = "read_uncommitted", value_name = "LEVEL")]
    pub isolation: String,
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List consumer groups.
    List,
    /// A group's state, members, committed offsets, log end offsets and lag.
    Describe { group: String },
    /// Move a group's committed offsets (the group must have no active members).
    ResetOffsets {
        group: String,
        /// Topics to reset (repeatable; default: every topic the group has offsets for).
        #[arg(long = "topic")]
        topics: Vec<String>,
        #[arg(long, group = "target")]
        to_earliest: bool,
        #[arg(long, group = "target")]
        to_latest: bool,
        /// Move each committed offset by N (negative: back), within the log.
        #[arg(long, group = "target", allow_negative_numbers = true)]
        shift_by: Option<i64>,
        /// The first offset at or after this time: RFC 3339 (2026-01-31T12:00:00Z) or epoch ms.
        #[arg(long, group = "target")]
        to_datetime: Option<String>,
        /// Show the new offsets without committing them.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TxnCommand {
    /// Every transactional id: producer id and epoch, state, partitions, age.
    List,
    /// One transactional id in full: state, timeout, partitions, groups, pending offsets.
    Describe { transactional_id: String },
}

#[derive(Subcommand, Debug)]
pub enum ShareCommand {
    /// Consume a topic as a member of a share group, acknowledging each record printed.
    Consume {
        topic: String,
        #[arg(long)]
        group: String,
        /// How each record is acknowledged: accept (done), release (deliver again), reject
        /// (archive; copied to the group's share.dlq.topic).
        #[arg(long, default_value = "accept")]
        ack: String,
        /// Stop after this many records.
        #[arg(long)]
        max: Option<u64>,
        /// Stop when no record arrived for this long.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// What to print of each record (with --output json: one JSON object per line, with
        /// its delivery count).
        #[arg(long, value_enum, default_value_t = PrintFormat::Value)]
        format: PrintFormat,
    },
    /// A share group: its configs, members (from its coordinator) and, per share-partition,
    /// start and end offsets and the in-flight, acquired, acknowledged and archived records.
    Describe { group: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrintFormat {
    /// The value.
    Value,
    /// key<TAB>value.
    Kv,
    /// partition, offset, timestamp, key and value.
    Full,
}

pub async fn topic(cmd: TopicCommand, args: ClientArgs) -> anyhow::Result<()> {
    let admin = Admin::new(args.client()).await?;
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let rf = match replication_factor {
                Some(rf) => rf,
                None => admin.describe_cluster().await?.brokers.len().clamp(1, 3) as i16,
            };
            let mut topic = NewTopic::new(&name, partitions, rf);
            for c in configs {
                let (k, v) = c
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--config {c:?} is not KEY=VALUE"))?;
                topic = topic.config(k, v);
            }
            admin.create_topic(topic).await?;
            match args.output {
                OutputFormat::Json => print_json(&json!({
                    "topic": name, "partitions": partitions, "replicationFactor": rf,
                })),
                OutputFormat::Table => println!(
                    "Created topic {name} ({partitions} partition{}, replication factor {rf}).",
                    if partitions == 1 { "" } else { "s" }
                ),
            }
        }
        TopicCommand::List => {
            let names = admin.list_topics().await?;
            let meta = admin.cluster().metadata();
            let rows: Vec<(String, usize, usize)> = names
                .iter()
                .filter_map(|n| meta.topic(n))
                .map(|t| {
                    let rf = t.partitions.first().map_or(0, |p| p.replicas.len());
                    (t.name.clone(), t.partitions.len(), rf)
                })
                .collect();
            match args.output {
                OutputFormat::Json => print_json(&Value::Array(
                    rows.iter()
                        .map(|(n, p, rf)| json!({"topic": n, "partitions": p, "replicationFactor": rf}))
                        .collect(),
                )),
                OutputFormat::Table => {
                    let mut t = Table::new(["TOPIC", "PARTITIONS", "REPLICATION-FACTOR"]);
                    for (n, p, rf) in &rows {
                        t.row([n.clone(), p.to_string(), rf.to_string()]);
                    }
                    t.print();
                }
            }
        }
        TopicCommand::Describe { name } => {
            let d = admin.describe_topic(&name).await?;
            match args.output {
                OutputFormat::Json => print_json(&json!({
                    "topic": d.name,
                    "topicId": d.id.to_string(),
                    "partitions": d.partitions.iter().map(|p| json!({
                        "partition": p.partition, "leader": p.leader, "leaderEpoch": p.leader_epoch,
                        "replicas": p.replicas, "isr": p.isr,
                    })).collect::<Vec<_>>(),
                    "configs": d.configs,
                })),
                OutputFormat::Table => {
                    println!(
                        "Topic: {}  TopicId: {}  Partitions: {}  ReplicationFactor: {}",
                        d.name,
                        d.id,
                        d.partitions.len(),
                        d.replication_factor()
                    );
                    let configs: Vec<String> =
                        d.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    println!(
                        "Configs: {}",
                        if configs.is_empty() {
                            "(defaults)".to_string()
                        } else {
                            configs.join(",")
                        }
                    );
                    let mut t = Table::new(["PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR"]);
                    for p in &d.partitions {
                        t.row([
                            p.partition.to_string(),
                            p.leader.to_string(),
                            p.leader_epoch.to_string(),
                            join(&p.replicas),
                            join(&p.isr),
                        ]);
                    }
                    t.print();
                }
            }
        }
        TopicCommand::Alter {
            name,
            partitions,
            configs,
            delete_configs,
        } => {
            if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
                bail!("topic alter needs --partitions, --config or --delete-config");
            }
            let changes = config_changes(&configs, &delete_configs)?;
            if !changes.is_empty() {
                admin.alter_topic_configs(&name, &changes).await?;
            }
            if let Some(p) = partitions {
                admin.create_partitions(&name, p).await?;
            }
            match args.output {
                OutputFormat::Json => print_json(&json!({
                    "topic": name,
                    "partitions": partitions,
                    "set": configs,
                    "deleted": delete_configs,
                })),
                OutputFormat::Table => {
                    if let Some(p) = partitions {
                        println!("Topic {name} now has {p} partitions.");
                    }
                    if !changes.is_empty() {
                        println!("Altered {} config(s) of topic {name}.", changes.len());
                    }
                }
            }
        }
        TopicCommand::DeleteRecords {
            name,
            partition,
            offset,
        } => {
            let tp = TopicPartition::new(name.clone(), partition);
            let done = admin
                .delete_records(&BTreeMap::from([(tp.clone(), offset)]))
                .await?;
            let low = done.get(&tp).copied().unwrap_or(-1);
            match args.output {
                OutputFormat::Json => {
                    print_json(&json!({"topic": name, "partition": partition, "lowWatermark": low}))
                }
                OutputFormat::Table => {
                    println!("Partition {name}-{partition} now starts at offset {low}.")
                }
            }
        }
        TopicCommand::Delete { name } => {
            admin.delete_topic(&name).await?;
            match args.output {
                OutputFormat::Json => print_json(&json!({"deleted": name})),
                OutputFormat::Table => println!("Deleted topic {name}."),
            }
        }
    }
    Ok(())
}

fn join(ids: &[i32]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// One record per stdin line.
pub async fn produce(a: ProduceArgs, args: ClientArgs) -> anyhow::Result<()> {
    let mut config = ProducerConfig::new(args.bootstrap.clone());
    config.client = args.client();
    config.acks = a.acks.parse()?;
    config.compression = a.compression.parse()?;
    config.max_block = Duration::from_secs(15);
    config.delivery_timeout = Duration::from_secs(30);
    config.transactional_id = a.transactional_id.clone();
    let producer = Producer::new(config).await?;
    if a.transactional_id.is_some() {
        producer.init_transactions().await?;
        producer.begin_transaction()?;
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<String>>(1024);
    // stdin is blocking: read it on its own thread.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut pending = std::collections::VecDeque::new();
    let mut partitions = BTreeMap::<i32, u64>::new();
    let mut count = 0u64;
    while let Some(line) = rx.recv().await {
        let line = line.context("reading stdin")?;
        let (key, value) = match (&a.key, &a.key_separator) {
            (Some(k), _) => (Some(k.clone()), line),
            (None, Some(sep)) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(k.to_string()), v.to_string()),
                None => bail!("line {} has no key separator {sep:?}", count + 1),
            },
            (None, None) => (None, line),
        };
        let mut record = ProducerRecord::new(a.topic.clone(), Bytes::from(value));
        record.key = key.map(Bytes::from);
        record.partition = a.partition;
        pending.push_back(producer.send(record).await?);
        count += 1;
        // Settle acknowledged records as they come, so memory does not grow with the input.
        while let Some(r) = pending.front().and_then(|f| f.try_result()) {
            pending.pop_front();
            *partitions.entry(r?.partition).or_default() += 1;
        }
    }
    if a.transactional_id.is_some() {
        // Waits for every record; fails (and aborts) if any of them failed.
        if let Err(e) = producer.commit_transaction().await {
            if let Err(abort) = producer.abort_transaction().await {
                tracing::debug!("aborting after a failed commit: {abort}");
            }
            return Err(e).context("committing the transaction (aborted)");
        }
    }
    producer.flush().await;
    for p in pending {
        let meta = p.await?;
        *partitions.entry(meta.partition).or_default() += 1;
    }
    producer.close().await;
    match args.output {
        OutputFormat::Json => print_json(&json!({
            "topic": a.topic, "records": count,
            "partitions": partitions.iter().map(|(p, n)| (p.to_string(), *n)).collect::<BTreeMap<_, _>>(),
        })),
        OutputFormat::Table => {
            let list: Vec<String> = partitions.keys().map(|p| p.to_string()).collect();
            println!(
                "Produced {count} record{} to {} (partitions: {}).",
                if count == 1 { "" } else { "s" },
                a.topic,
                if list.is_empty() {
                    "none".to_string()
                } else {
                    list.join(", ")
                }
            );
        }
    }
    Ok(())
}

pub async fn consume(a: ConsumeArgs, args: ClientArgs) -> anyhow::Result<()> {
    let mut config = ConsumerConfig::new(args.bootstrap.clone());
    config.client = args.client();
    config.isolation_level = a.isolation.parse()?;
    if let Some(group) = &a.group {
        return consume_group(group.clone(), a, config, args.output).await;
    }
    let mut consumer = Consumer::new(config).await?;
    let info = consumer.cluster().topic(&a.topic, false).await?;
    match a.partition {
        Some(p) => {
            if p < 0 || p as usize >= info.partitions.len() {
                bail!(
                    "topic {} has no partition {p} (it has {})",
                    a.topic,
                    info.partitions.len()
                );
            }
            let tp = TopicPartition::new(&a.topic, p);
            consumer.assign([tp.clone()]);
            let start = match a.offset.as_deref() {
                None if a.from_beginning => Offset::Beginning,
                None | Some("end") => Offset::End,
                Some("beginning") => Offset::Beginning,
                Some(o) => {
                    Offset::At(o.parse::<i64>().ok().filter(|o| *o >= 0).ok_or_else(|| {
                        anyhow!("--offset {o:?} is not a non-negative number, beginning or end")
                    })?)
                }
            };
            consumer.seek(&tp, start)?;
        }
        None => {
            consumer.assign_topic(&a.topic).await?;
            consumer.seek_all(if a.from_beginning {
                Offset::Beginning
            } else {
                Offset::End
            });
        }
    }
    let mut printed = 0u64;
    let idle = a.timeout_ms.map(Duration::from_millis);
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut last = std::time::Instant::now();
    loop {
        if a.max.is_some_and(|m| printed >= m) {
            break;
        }
        let wait = idle
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        let records = consumer.poll(wait).await?;
        if records.is_empty() {
            if idle.is_some_and(|t| last.elapsed() >= t) {
                break;
            }
            continue;
        }
        last = std::time::Instant::now();
        for r in records {
            if a.max.is_some_and(|m| printed >= m) {
                break;
            }
            print_record(&mut stdout, &r, a.format, args.output)?;
            printed += 1;
        }
        stdout.flush()?;
    }
    stdout.flush()?;
    Ok(())
}

fn lossy(b: &Option<Bytes>) -> Option<String> {
    b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

fn print_record(
    out: &mut impl Write,
    r: &ConsumerRecord,
    format: PrintFormat,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let key = lossy(&r.key);
    let value = lossy(&r.value);
    match output {
        OutputFormat::Json => {
            let mut v = json!({
                "topic": r.topic, "partition": r.partition, "offset": r.offset,
                "timestamp": r.timestamp, "key": key, "value": value,
            });
            if !r.headers.is_empty() {
                v["headers"] = Value::Object(
                    r.headers
                        .iter()
                        .map(|(k, v)| (k.clone(), json!(lossy(v))))
                        .collect(),
                );
            }
            writeln!(out, "{v}")?;
        }
        OutputFormat::Table => match format {
            PrintFormat::Value => writeln!(out, "{}", value.unwrap_or_default())?,
            PrintFormat::Kv => writeln!(
                out,
                "{}\t{}",
                key.unwrap_or_default(),
                value.unwrap_or_default()
            )?,
            PrintFormat::Full => writeln!(
                out,
                "partition={} offset={} timestamp={} key={} value={}",
                r.partition,
                r.offset,
                r.timestamp,
                key.unwrap_or_else(|| "null".into()),
                value.unwrap_or_else(|| "null".into())
            )?,
        },
    }
    Ok(())
}

/// `dmq txn list | describe ID`: transactions as the metadata quorum has them.
/// `dmq share consume | describe`.
pub async fn share(cmd: ShareCommand, args: ClientArgs) -> anyhow::Result<()> {
    match cmd {
        ShareCommand::Consume {
            topic,
            group,
            ack,
            max,
            timeout_ms,
            format,
        } => {
            let ack: dmq_client::AckType = ack.parse()?;
            let mut config = dmq_client::ShareConsumerConfig::new(args.bootstrap.clone(), group);
            config.client = args.client();
            let mut consumer = dmq_client::ShareConsumer::new(config).await?;
            consumer.subscribe(&[topic.as_str()]);
            let idle = timeout_ms.map(Duration::from_millis);
            let mut last = std::time::Instant::now();
            let mut count = 0u64;
            let mut stdout = std::io::stdout().lock();
            'outer: loop {
                let records = consumer.poll(Duration::from_millis(500)).await?;
                if records.is_empty() {
                    if idle.is_some_and(|d| last.elapsed() >= d) {
                        break;
                    }
                    continue;
                }
                last = std::time::Instant::now();
                for r in &records {
                    if max.is_some_and(|m| count >= m) {
                        // Not printed: released for the other members at close.
                        continue;
                    }
                    if args.output == OutputFormat::Json {
                        let mut v = json!({
                            "topic": r.record.topic, "partition": r.record.partition,
                            "offset": r.record.offset, "timestamp": r.record.timestamp,
                            "key": lossy(&r.record.key), "value": lossy(&r.record.value),
                            "deliveryCount": r.delivery_count,
                        });
                        if !r.record.headers.is_empty() {
                            v["headers"] = Value::Object(
                                r.record
                                    .headers
                                    .iter()
                                    .map(|(k, v)| (k.clone(), json!(lossy(v))))
                                    .collect(),
                            );
                        }
                        writeln!(stdout, "{v}")?;
                    } else {
                        print_record(&mut stdout, &r.record, format, args.output)?;
                    }
                    consumer.acknowledge(r, ack);
                    count += 1;
                }
                stdout.flush()?;
                for (tp, err) in consumer.commit_sync().await? {
                    if let Some(e) = err {
                        eprintln!(
                            "acknowledgements on {}-{} failed: {e}",
                            tp.topic, tp.partition
                        );
                    }
                }
                if max.is_some_and(|m| count >= m) {
                    break 'outer;
                }
            }
            consumer.close().await?;
            Ok(())
        }
        ShareCommand::Describe { group } => share_describe(&group, &args).await,
    }
}

/// `dmq share describe G`: the quorum's durable view, with the live one of every broker.
async fn share_describe(group: &str, args: &ClientArgs) -> anyhow::Result<()> {
    let http = http_client(args, Duration::from_secs(10))?;
    let urls = metadata_urls(args);
    let seg = dmq_broker::meta_client::encode_segment(group);
    let stored = metadata_get(
        &http,
        &urls,
        &format!("/api/v1/metadata/share-groups/{seg}?consistent=true"),
    )
    .await?;
    let cluster = metadata_get(&http, &urls, "/api/v1/metadata/cluster").await?;
    let scheme = if urls.iter().any(|u| u.starts_with("https://")) {
        "https"
    } else {
        "http"
    };
    let mut members = Vec::new();
    let mut live = Vec::new();
    for b in cluster["brokers"].as_array().into_iter().flatten() {
        let (Some(host), Some(port)) = (b["host"].as_str(), b["port"].as_u64()) else {
            continue;
        };
        let url = format!("{scheme}://{host}:{port}/api/v1/storage/share-groups/{seg}");
        let Ok(r) = http.get(&url).send().await else {
            continue;
        };
        if !r.status().is_success() {
            continue;
        }
        let v: Value = r.json().await?;
        if v["coordinator"] == json!(true) {
            members.extend(v["members"].as_array().cloned().unwrap_or_default());
        }
        live.extend(v["partitions"].as_array().cloned().unwrap_or_default());
    }
    if args.output == OutputFormat::Json {
        print_json(&json!({
            "group": group,
            "config": stored["config"],
            "members": members,
            "partitions": live,
            "stored": stored["partitions"],
        }));
        return Ok(());
    }
    println!("Share group: {group}");
    if let Some(c) = stored["config"].as_object().filter(|c| !c.is_empty()) {
        for (k, v) in c {
            println!("  {k} = {}", v.as_str().unwrap_or(""));
        }
    }
    let mut t = Table::new(["MEMBER", "EPOCH", "ASSIGNMENT"]);
    for m in &members {
        t.row([
            m["memberId"].as_str().unwrap_or("").to_string(),
            m["memberEpoch"].to_string(),
            m["assignment"].to_string(),
        ]);
    }
    t.print();
    let mut t = Table::new([
        "TOPIC",
        "PARTITION",
        "START",
        "END",
        "IN-FLIGHT",
        "ACQUIRED",
        "ACKNOWLEDGED",
        "ARCHIVED",
        "DEAD-LETTERED",
    ]);
    let stored_parts = stored["partitions"].as_array().cloned().unwrap_or_default();
    for p in &stored_parts {
        let (topic, partition) = (p["topic"].clone(), p["partition"].clone());
        let now = live
            .iter()
            .find(|l| l["topic"] == topic && l["partition"] == partition);
        let snap = &p["snapshot"];
        let row = match now {
            Some(l) => {
                let c = &l["counts"];
                [
                    c["startOffset"].to_string(),
                    c["endOffset"].to_string(),
                    c["inFlight"].to_string(),
                    c["acquired"].to_string(),
                    c["acknowledgedTotal"].to_string(),
                    c["archivedTotal"].to_string(),
                    c["deadLetteredTotal"].to_string(),
                ]
            }
            None => [
                snap["startOffset"].to_string(),
                snap["endOffset"].to_string(),
                (snap["endOffset"].as_i64().unwrap_or(0)
                    - snap["startOffset"].as_i64().unwrap_or(0))
                .to_string(),
                "-".into(),
                snap["acknowledgedTotal"].to_string(),
                snap["archivedTotal"].to_string(),
                snap["deadLetteredTotal"].to_string(),
            ],
        };
        let [a, b, c, d, e, f, g] = row;
        t.row([
            topic.as_str().unwrap_or("").to_string(),
            partition.to_string(),
            a,
            b,
            c,
            d,
            e,
            f,
            g,
        ]);
    }
    t.print();
    Ok(())
}

pub async fn txn(cmd: TxnCommand, args: ClientArgs) -> anyhow::Result<()> {
    let http = http_client(&args, Duration::from_secs(10))?;
    let urls = metadata_urls(&args);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    match cmd {
        TxnCommand::List => {
            let v = metadata_get(
                &http,
                &urls,
                "/api/v1/metadata/transactions?consistent=true",
            )
            .await?;
            let txns = v["transactions"].as_array().cloned().unwrap_or_default();
            match args.output {
                OutputFormat::Json => print_json(&Value::Array(txns)),
                OutputFormat::Table => {
                    let mut t = Table::new([
                        "TRANSACTIONAL-ID",
                        "PRODUCER-ID",
                        "EPOCH",
                        "STATE",
                        "PARTITIONS",
                        "OPEN-MS",
                    ]);
                    for x in &txns {
                        let start = x["startMs"].as_i64().unwrap_or(0);
                        t.row([
                            x["transactionalId"].as_str().unwrap_or("").to_string(),
                            x["producerId"].to_string(),
                            x["producerEpoch"].to_string(),
                            x["status"].as_str().unwrap_or("").to_string(),
                            x["partitions"].as_array().map_or(0, Vec::len).to_string(),
                            if start > 0 && x["status"] == "Ongoing" {
                                (now - start).max(0).to_string()
                            } else {
                                "-".into()
                            },
                        ]);
                    }
                    t.print();
                }
            }
        }
        TxnCommand::Describe { transactional_id } => {
            let path = format!(
                "/api/v1/metadata/transactions/{}?consistent=true",
                dmq_broker::meta_client::encode_segment(&transactional_id)
            );
            let x = metadata_get(&http, &urls, &path).await?;
            match args.output {
                OutputFormat::Json => print_json(&x),
                OutputFormat::Table => {
                    println!(
                        "Transactional id: {}  Producer id: {}  Epoch: {}  State: {}  Timeout: {} ms",
                        x["transactionalId"].as_str().unwrap_or(""),
                        x["producerId"],
                        x["producerEpoch"],
                        x["status"].as_str().unwrap_or(""),
                        x["timeoutMs"],
                    );
                    let mut t = Table::new(["TOPIC", "PARTITION"]);
                    for p in x["partitions"].as_array().into_iter().flatten() {
                        t.row([
                            p["topic"].as_str().unwrap_or("").to_string(),
                            p["partition"].to_string(),
                        ]);
                    }
                    t.print();
                    for o in x["pendingOffsets"].as_array().into_iter().flatten() {
                        println!(
                            "pending offset: group {} {}-{} at {}",
                            o["group"].as_str().unwrap_or(""),
                            o["topic"].as_str().unwrap_or(""),
                            o["partition"],
                            o["offset"]
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// GETs `path` from the first metadata node that answers.
pub(crate) async fn metadata_get(
    http: &reqwest::Client,
    urls: &[String],
    path: &str,
) -> anyhow::Result<Value> {
    let mut last = None;
    for u in urls {
        match http
            .get(format!("{}{path}", u.trim_end_matches('/')))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return Ok(r.json().await?),
            Ok(r) => last = Some(anyhow!("{u}{path}: HTTP {}", r.status())),
            Err(e) => {
                // reqwest keeps the reason (connection refused, …) in the source chain.
                let mut why = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    why = format!("{why}: {s}");
                    source = s.source();
                }
                last = Some(anyhow!("{why}"));
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("no metadata node given")))
}

pub async fn cluster(cmd: ClusterCommand, args: ClientArgs) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Status => cluster_status(args).await,
        ClusterCommand::Config {
            broker,
            configs,
            delete_configs,
        } => cluster_config(broker, configs, delete_configs, args).await,
        ClusterCommand::RollingRestart {
            restart_command,
            brokers,
            step_timeout_secs,
        } => {
            crate::rolling::run(
                &http_client(&args, Duration::from_secs(5))?,
                &metadata_urls(&args),
                &restart_command,
                &brokers,
                Duration::from_secs(step_timeout_secs),
            )
            .await
        }
    }
}

/// The `--metadata` URLs.
fn metadata_urls(args: &ClientArgs) -> Vec<String> {
    args.metadata
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `dmq cluster config`: changes (if asked) and then shows the dynamic broker configs.
async fn cluster_config(
    broker: Option<i32>,
    configs: Vec<String>,
    delete_configs: Vec<String>,
    args: ClientArgs,
) -> anyhow::Result<()> {
    let admin = Admin::new(args.client()).await?;
    let changes = config_changes(&configs, &delete_configs)?;
    if !changes.is_empty() {
        admin.alter_broker_configs(broker, &changes).await?;
    }
    let now = admin.describe_broker_configs(broker).await?;
    let whom = match broker {
        Some(b) => format!("broker {b}"),
        None => "the cluster".to_string(),
    };
    match args.output {
        OutputFormat::Json => print_json(&json!({
            "broker": broker,
            "configs": now
                .iter()
                .map(|(k, (v, source))| (k.clone(), json!({"value": v, "source": source})))
                .collect::<serde_json::Map<String, Value>>(),
        })),
        OutputFormat::Table => {
            if now.is_empty() {
                println!("No dynamic broker configs for {whom}.");
            } else {
                println!("Dynamic broker configs for {whom}:");
                for (k, (v, source)) in &now {
                    println!("  {k}={v} ({source})");
                }
            }
        }
    }
    Ok(())
}

/// `--config k=v` and `--delete-config k` as (key, Some(value) | None) changes.
fn config_changes(
    configs: &[String],
    delete_configs: &[String],
) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let mut changes: Vec<(String, Option<String>)> = Vec::new();
    for c in configs {
        let (k, v) = c
            .split_once('=')
            .ok_or_else(|| anyhow!("--config {c:?} is not KEY=VALUE"))?;
        changes.push((k.to_string(), Some(v.to_string())));
    }
    changes.extend(delete_configs.iter().map(|k| (k.clone(), None)));
    Ok(changes)
}

async fn cluster_status(args: ClientArgs) -> anyhow::Result<()> {
    let http = http_client(&args, Duration::from_secs(5))?;
    let urls: Vec<String> = args
        .metadata
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let cluster = metadata_get(&http, &urls, "/api/v1/metadata/cluster")
        .await
        .with_context(|| format!("reading cluster metadata from {}", args.metadata))?;
    let empty = Vec::new();
    let nodes = cluster["activeMetadataNodes"].as_array().unwrap_or(&empty);
    let mut raft = Vec::new();
    for n in nodes {
        let url = n["url"].as_str().unwrap_or_default().to_string();
        let status = metadata_get(&http, std::slice::from_ref(&url), "/api/v1/raft/status")
            .await
            .ok();
        raft.push((n["nodeId"].clone(), url, status));
    }
    let brokers = cluster["brokers"].as_array().unwrap_or(&empty);
    let mut under = Vec::new();
    for t in cluster["topics"].as_array().unwrap_or(&empty) {
        for p in t["partitions"].as_array().unwrap_or(&empty) {
            let replicas = p["replicas"].as_array().map_or(0, |r| r.len());
            let isr = p["isr"].as_array().map_or(0, |r| r.len());
            if isr < replicas || p["leader"].as_i64() == Some(-1) {
                under.push((t["topicName"].clone(), p.clone()));
            }
        }
    }
    let ids = |v: &Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    match args.output {
        OutputFormat::Json => print_json(&json!({
            "controllerId": cluster["controllerLeaderId"],
            "metadataVersion": cluster["version"],
            "metadataNodes": raft.iter().map(|(id, url, s)| json!({
                "nodeId": id, "url": url,
                "state": s.as_ref().map_or(json!("UNREACHABLE"), |s| s["state"].clone()),
                "term": s.as_ref().map(|s| s["currentTerm"].clone()),
                "commitIndex": s.as_ref().map(|s| s["commitIndex"].clone()),
                "lastApplied": s.as_ref().map(|s| s["lastApplied"].clone()),
            })).collect::<Vec<_>>(),
            "brokers": brokers,
            "underReplicatedPartitions": under.iter().map(|(t, p)| json!({
                "topic": t, "partition": p["partitionId"], "leader": p["leader"],
                "replicas": p["replicas"], "isr": p["isr"],
            })).collect::<Vec<_>>(),
        })),
        OutputFormat::Table => {
            println!(
                "Controller: metadata node {}   metadata version {}",
                cluster["controllerLeaderId"], cluster["version"]
            );
            println!();
            let mut t = Table::new(["NODE", "URL", "STATE", "TERM", "COMMIT", "APPLIED"]);
            for (id, url, s) in &raft {
                let field = |k: &str| s.as_ref().map_or("-".to_string(), |s| s[k].to_string());
                t.row([
                    id.to_string(),
                    url.clone(),
                    s.as_ref().map_or("UNREACHABLE".to_string(), |s| {
                        s["state"].as_str().unwrap_or("?").to_string()
                    }),
                    field("currentTerm"),
                    field("commitIndex"),
                    field("lastApplied"),
                ]);
            }
            t.print();
            println!();
            let mut t = Table::new(["BROKER", "HOST", "KAFKA-PORT", "HTTP-PORT", "STATUS"]);
            for b in brokers {
                t.row([
                    b["brokerId"].to_string(),
                    b["host"].as_str().unwrap_or_default().to_string(),
                    b["kafkaPort"].to_string(),
                    b["port"].to_string(),
                    b["status"].as_str().unwrap_or_default().to_string(),
                ]);
            }
            t.print();
            println!();
            if under.is_empty() {
                println!("Under-replicated partitions: none");
            } else {
                println!("Under-replicated partitions:");
                let mut t = Table::new(["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR"]);
                for (topic, p) in &under {
                    t.row([
                        topic.as_str().unwrap_or_default().to_string(),
                        p["partitionId"].to_string(),
                        p["leader"].to_string(),
                        ids(&p["replicas"]),
                        ids(&p["isr"]),
                    ]);
                }
                t.print();
            }
        }
    }
    Ok(())
}

/// `dmq consume --group G`: commits exactly what it printed (the offset after the last printed
/// record of each partition), every second and on exit, then leaves the group.
async fn consume_group(
    group: String,
    a: ConsumeArgs,
    mut config: ConsumerConfig,
    output: OutputFormat,
) -> anyhow::Result<()> {
    config.auto_offset_reset = if a.from_beginning {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    };
    let mut gc = GroupConfig::new(group);
    gc.assignor = a.assignor.parse()?;
    gc.enable_auto_commit = false;
    gc.session_timeout = Duration::from_secs(10);
    gc.heartbeat_interval = Duration::from_secs(1);
    gc.rebalance_timeout = Duration::from_secs(30);
    let mut consumer = GroupConsumer::new(config, gc, vec![a.topic.clone()]).await?;
    let mut printed = 0u64;
    let mut to_commit: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let mut last_commit = std::time::Instant::now();
    let mut last_record = std::time::Instant::now();
    let idle = a.timeout_ms.map(Duration::from_millis);
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let result: anyhow::Result<()> = async {
        while a.max.is_none_or(|m| printed < m) {
            let wait = idle
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            let records = consumer.poll(wait).await?;
            if records.is_empty() && idle.is_some_and(|t| last_record.elapsed() >= t) {
                break;
            }
            if !records.is_empty() {
                last_record = std::time::Instant::now();
            }
            for r in records {
                if a.max.is_some_and(|m| printed >= m) {
                    break;
                }
                print_record(&mut stdout, &r, a.format, output)?;
                to_commit.insert(
                    TopicPartition::new(r.topic.clone(), r.partition),
                    r.offset + 1,
                );
                printed += 1;
            }
            stdout.flush()?;
            if last_commit.elapsed() >= Duration::from_secs(1) && !to_commit.is_empty() {
                consumer.commit_offsets(&to_commit).await?;
                to_commit.clear();
                last_commit = std::time::Instant::now();
            }
        }
        Ok(())
    }
    .await;
    stdout.flush()?;
    if !to_commit.is_empty() {
        consumer.commit_offsets(&to_commit).await?;
    }
    consumer.close().await?;
    result
}

pub async fn group(cmd: GroupCommand, args: ClientArgs) -> anyhow::Result<()> {
    let admin = Admin::new(args.client()).await?;
    match cmd {
        GroupCommand::List => {
            let groups = admin.list_groups().await?;
            match args.output {
                OutputFormat::Json => print_json(&Value::Array(
                    groups
                        .iter()
                        .map(|g| json!({"group": g.group_id, "state": g.state, "protocolType": g.protocol_type}))
                        .collect(),
                )),
                OutputFormat::Table => {
                    let mut t = Table::new(["GROUP", "STATE", "PROTOCOL-TYPE"]);
                    for g in &groups {
                        t.row([g.group_id.clone(), g.state.clone(), g.protocol_type.clone()]);
                    }
                    t.print();
                }
            }
        }
        GroupCommand::Describe { group } => {
            let d = admin.describe_group(&group).await?;
            let mut owner: BTreeMap<TopicPartition, (String, String, String)> = BTreeMap::new();
            for m in &d.members {
                for tp in &m.assignment {
                    owner.insert(
                        tp.clone(),
                        (m.member_id.clone(), m.host.clone(), m.client_id.clone()),
                    );
                }
            }
            let mut tps: Vec<TopicPartition> = d.committed.keys().cloned().collect();
            tps.extend(owner.keys().cloned());
            tps.sort();
            tps.dedup();
            let ends = if tps.is_empty() {
                BTreeMap::new()
            } else {
                admin.list_offsets(&tps, -1).await?
            };
            let rows: Vec<Value> = tps
                .iter()
                .map(|tp| {
                    let current = d.committed.get(tp).copied();
                    let end = ends.get(tp).copied();
                    let lag = match (current, end) {
                        (Some(c), Some(e)) => Some((e - c).max(0)),
                        _ => None,
                    };
                    let who = owner.get(tp);
                    json!({
                        "topic": tp.topic, "partition": tp.partition,
                        "currentOffset": current, "logEndOffset": end, "lag": lag,
                        "consumerId": who.map(|w| w.0.clone()),
                        "host": who.map(|w| w.1.clone()),
                        "clientId": who.map(|w| w.2.clone()),
                    })
                })
                .collect();
            match args.output {
                OutputFormat::Json => print_json(&json!({
                    "group": d.group_id, "state": d.state, "protocol": d.protocol,
                    "coordinator": d.coordinator, "members": d.members.len(), "partitions": rows,
                })),
                OutputFormat::Table => {
                    println!(
                        "Group: {}  State: {}  Protocol: {}  Coordinator: broker {}  Members: {}",
                        d.group_id,
                        d.state,
                        if d.protocol.is_empty() {
                            "-"
                        } else {
                            &d.protocol
                        },
                        d.coordinator,
                        d.members.len()
                    );
                    let mut t = Table::new([
                        "TOPIC",
                        "PARTITION",
                        "CURRENT-OFFSET",
                        "LOG-END-OFFSET",
                        "LAG",
                        "CONSUMER-ID",
                        "HOST",
                        "CLIENT-ID",
                    ]);
                    let cell = |v: &Value| match v {
                        Value::Null => "-".to_string(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    for r in &rows {
                        t.row([
                            cell(&r["topic"]),
                            cell(&r["partition"]),
                            cell(&r["currentOffset"]),
                            cell(&r["logEndOffset"]),
                            cell(&r["lag"]),
                            cell(&r["consumerId"]),
                            cell(&r["host"]),
                            cell(&r["clientId"]),
                        ]);
                    }
                    t.print();
                }
            }
        }
        GroupCommand::ResetOffsets {
            group,
            topics,
            to_earliest,
            to_latest,
            shift_by,
            to_datetime,
            dry_run,
        } => {
            let d = admin.describe_group(&group).await?;
            let mut tps: Vec<TopicPartition> = if topics.is_empty() {
                d.committed.keys().cloned().collect()
            } else {
                let mut v = Vec::new();
                for t in &topics {
                    let info = admin.cluster().topic(t, false).await?;
                    v.extend(
                        info.partitions
                            .iter()
                            .map(|p| TopicPartition::new(t.clone(), p.partition)),
                    );
                }
                v
            };
            tps.sort();
            if tps.is_empty() {
                bail!("group {group} has no committed offsets; name the topics with --topic");
            }
            let earliest = admin.list_offsets(&tps, -2).await?;
            let latest = admin.list_offsets(&tps, -1).await?;
            let target: BTreeMap<TopicPartition, i64> = if to_earliest {
                earliest.clone()
            } else if to_latest {
                latest.clone()
            } else if let Some(n) = shift_by {
                tps.iter()
                    .map(|tp| {
                        let lo = earliest.get(tp).copied().unwrap_or(0);
                        let hi = latest.get(tp).copied().unwrap_or(lo);
                        let from = d.committed.get(tp).copied().unwrap_or(hi);
                        (tp.clone(), from.saturating_add(n).clamp(lo, hi))
                    })
                    .collect()
            } else if let Some(t) = &to_datetime {
                admin.list_offsets(&tps, parse_datetime(t)?).await?
            } else {
                bail!("say where to: --to-earliest, --to-latest, --shift-by N or --to-datetime T");
            };
            if !dry_run {
                if !d.members.is_empty() {
                    bail!(
                        "group {group} has {} active member(s) (state {}); stop them before resetting its offsets",
                        d.members.len(),
                        d.state
                    );
                }
                admin.alter_group_offsets(&group, &target).await?;
            }
            match args.output {
                OutputFormat::Json => print_json(&json!({
                    "group": group, "dryRun": dry_run,
                    "partitions": target.iter().map(|(tp, o)| json!({
                        "topic": tp.topic, "partition": tp.partition,
                        "previousOffset": d.committed.get(tp), "newOffset": o,
                    })).collect::<Vec<_>>(),
                })),
                OutputFormat::Table => {
                    let mut t = Table::new(["TOPIC", "PARTITION", "PREVIOUS-OFFSET", "NEW-OFFSET"]);
                    for (tp, o) in &target {
                        t.row([
                            tp.topic.clone(),
                            tp.partition.to_string(),
                            d.committed
                                .get(tp)
                                .map_or("-".to_string(), |c| c.to_string()),
                            o.to_string(),
                        ]);
                    }
                    t.print();
                    if dry_run {
                        println!("(dry run: nothing was committed)");
                    }
                }
            }
        }
    }
    Ok(())
}

/// Epoch milliseconds, or RFC 3339 (`2026-01-31T12:00:00Z`, `…T12:00:00.250+02:00`).
pub fn parse_datetime(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || {
        anyhow!(
            "--to-datetime {s:?} is neither epoch milliseconds nor RFC 3339 (2026-01-31T12:00:00Z)"
        )
    };
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> anyhow::Result<i64> {
        s.get(r).and_then(|x| x.parse::<i64>().ok()).ok_or_else(bad)
    };
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() {
            return Err(bad());
        }
        let padded = format!("{:0<3}", &digits[..digits.len().min(3)]);
        millis = padded.parse().map_err(|_| bad())?;
        rest = &frac[digits.len()..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) && &tz[3..4] == ":" => {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            let oh: i64 = tz[1..3].parse().map_err(|_| bad())?;
            let om: i64 = tz[4..6].parse().map_err(|_| bad())?;
            sign * (oh * 3600 + om * 60)
        }
        _ => return Err(bad()),
    };
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok((days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs) * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::parse_datetime;

    #[test]
    fn datetimes_parse_as_epoch_millis() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z").ok(), Some(0));
        assert_eq!(
            parse_datetime("2026-11-22T08:30:00Z").ok(),
            Some(1_795_336_200_000)
        );
        assert_eq!(
            parse_datetime("2026-11-22T10:30:00.250+02:00").ok(),
            Some(1_795_336_200_250)
        );
        assert_eq!(
            parse_datetime("1795336200000").ok(),
            Some(1_795_336_200_000)
        );
        for bad in [
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-22T08:30:00",
            "2026-11-22T08:30:00+0200",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad}");
        }
    }
}
