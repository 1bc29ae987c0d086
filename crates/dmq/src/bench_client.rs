//! `dmq bench produce|consume`: `kafka-producer-perf-test` for DistributedMQ, driving any
//! running cluster (the dev cluster by default) through `dmq-client`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use dmq_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, DeliveryFuture, NewTopic, Offset, Producer,
    ProducerConfig, ProducerRecord,
};
use hdrhistogram::Histogram;
use serde_json::json;

use crate::bench::Output;

/// Options of `dmq bench produce`.
#[derive(clap::Args, Debug)]
pub struct ProduceBench {
    /// Topic (created with --partitions/--replication-factor if missing).
    #[arg(default_value = "dmq-bench")]
    pub topic: String,
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// 0, 1 or all.
    #[arg(long, default_value = "1")]
    pub acks: String,
    /// Bytes per partition batch (librdkafka's default, 1 MB).
    #[arg(long, default_value_t = 1_000_000)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Independent producers (connections), each sending records/producers.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Records/s over all producers; -1 = as fast as possible.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub throughput: i64,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Partitions when the topic is created.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Replication factor when the topic is created.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i16,
    /// Buffer memory per producer, bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub buffer_memory: usize,
    /// Records per transaction (transactional producers, acks=all); 0: no transactions. The
    /// commit latency (commit_transaction: the last records, EndTxn and the markers) is
    /// reported too.
    #[arg(long, default_value_t = 0)]
    pub txn_records: u64,
    #[arg(long, env = "DMQ_BOOTSTRAP", default_value = crate::cli::DEV_BOOTSTRAP)]
    pub bootstrap: String,
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    #[command(flatten)]
    pub security: crate::cli::KafkaSecurityArgs,
}

/// Options of `dmq bench consume`.
#[derive(clap::Args, Debug)]
pub struct ConsumeBench {
    #[arg(default_value = "dmq-bench")]
    pub topic: String,
    /// Records to read (from the beginning of every partition).
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Bytes per partition per fetch.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    pub max_partition_fetch_bytes: i32,
    /// Give up after this long.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
    #[arg(long, env = "DMQ_BOOTSTRAP", default_value = crate::cli::DEV_BOOTSTRAP)]
    pub bootstrap: String,
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
}

/// `dmq bench share`: share-group consumption (KIP-932) of a topic with N members, each record
/// ACCEPTed (acknowledgements committed through the quorum before they are answered), against
/// a plain consumer reading the same records.
#[derive(clap::Args, Debug)]
pub struct ShareBench {
    #[arg(default_value = "dmq-bench")]
    pub topic: String,
    /// Records to accept across the members (from the beginning of the topic).
    #[arg(long, default_value_t = 200_000)]
    pub records: u64,
    /// Members of the share group, each polled by its own task.
    #[arg(long, default_value_t = 1)]
    pub members: usize,
    /// Records one ShareFetch asks for at most (max.poll.records).
    #[arg(long, default_value_t = 500)]
    pub max_records: i32,
    /// Give up after this long.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    #[arg(long, env = "DMQ_BOOTSTRAP", default_value = crate::cli::DEV_BOOTSTRAP)]
    pub bootstrap: String,
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
}

pub async fn share(o: ShareBench) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let group = format!(
        "dmq-bench-share-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let admin = dmq_client::Admin::new(dmq_client::ClientConfig::new(o.bootstrap.clone()))
        .await
        .with_context(|| format!("connecting to {}", o.bootstrap))?;
    admin
        .alter_group_configs(
            &group,
            &[("share.auto.offset.reset".into(), Some("earliest".into()))],
        )
        .await?;
    let accepted = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(o.timeout_secs);
    let mut tasks = Vec::new();
    for _ in 0..o.members.max(1) {
        let mut config = dmq_client::ShareConsumerConfig::new(o.bootstrap.clone(), group.clone());
        config.max_records = o.max_records;
        let mut c = dmq_client::ShareConsumer::new(config).await?;
        c.subscribe(&[o.topic.as_str()]);
        let (accepted, bytes, want) = (accepted.clone(), bytes.clone(), o.records);
        tasks.push(tokio::spawn(async move {
            while accepted.load(Ordering::Relaxed) < want && Instant::now() < deadline {
                let records = c.poll(Duration::from_millis(500)).await?;
                let mut n = 0;
                for r in &records {
                    bytes.fetch_add(
                        r.record.value.as_ref().map_or(0, |v| v.len()) as u64,
                        Ordering::Relaxed,
                    );
                    c.acknowledge(r, dmq_client::AckType::Accept);
                    n += 1;
                }
                if n > 0 {
                    let failed = c
                        .commit_sync()
                        .await?
                        .into_iter()
                        .filter(|(_, e)| e.is_some())
                        .count();
                    anyhow::ensure!(
                        failed == 0,
                        "acknowledgements failed on {failed} partitions"
                    );
                    accepted.fetch_add(n, Ordering::Relaxed);
                }
            }
            c.close().await?;
            anyhow::Ok(())
        }));
    }
    let progress = Progress::new(o.records);
    let mut shown = Instant::now();
    while accepted.load(Ordering::Relaxed) < o.records && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if shown.elapsed() >= progress.interval() {
            progress.show(
                accepted.load(Ordering::Relaxed),
                bytes.load(Ordering::Relaxed),
            );
            shown = Instant::now();
        }
    }
    let elapsed = started.elapsed();
    for t in tasks {
        t.await??;
    }
    progress.finish();
    let n = accepted.load(Ordering::Relaxed);
    anyhow::ensure!(
        n >= o.records,
        "only {n} of {} records accepted within {} s",
        o.records,
        o.timeout_secs
    );
    let secs = elapsed.as_secs_f64();
    let b = bytes.load(Ordering::Relaxed);
    match o.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "bench": "share", "members": o.members, "records": n, "bytes": b,
                "seconds": secs, "recordsPerSec": n as f64 / secs,
                "mbPerSec": b as f64 / secs / 1e6,
            })
        ),
        Output::Human => println!(
            "share: {} members accepted {n} records in {secs:.2} s: {:.0} records/s, {:.1} MB/s",
            o.members,
            n as f64 / secs,
            b as f64 / secs / 1e6
        ),
    }
    Ok(())
}

/// Progress on stderr: a redrawn line on a terminal, a line every 5 s otherwise.
struct Progress {
    total: u64,
    started: Instant,
    tty: bool,
}

impl Progress {
    fn new(total: u64) -> Self {
        Progress {
            total,
            started: Instant::now(),
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn interval(&self) -> Duration {
        if self.tty {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        }
    }

    fn show(&self, done: u64, bytes: u64) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let pct = if self.total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / self.total as f64
        };
        let width = 30;
        let filled = ((pct / 100.0) * width as f64) as usize;
        let bar = format!(
            "{}{}",
            "=".repeat(filled.min(width)),
            " ".repeat(width - filled.min(width))
        );
        let line = format!(
            "[{bar}] {pct:5.1}%  {done} records  {:.0} rec/s  {:.1} MB/s",
            done as f64 / secs,
            bytes as f64 / secs / 1e6
        );
        if self.tty {
            eprint!("\r{line}");
        } else {
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

fn summary(
    what: &str,
    records: u64,
    bytes: u64,
    elapsed: Duration,
    hist: &Histogram<u64>,
    latency_name: &str,
    output: Output,
) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    match output {
        Output::Json => println!(
            "{}",
            json!({
                "bench": what,
                "records": records,
                "bytes": bytes,
                "seconds": secs,
                "recordsPerSec": records as f64 / secs,
                "mbPerSec": bytes as f64 / secs / 1e6,
                latency_name: {
                    "p50Ms": ms(0.5), "p95Ms": ms(0.95), "p99Ms": ms(0.99),
                    "p999Ms": ms(0.999), "maxMs": hist.max() as f64 / 1000.0,
                },
            })
        ),
        Output::Human => {
            println!(
                "{records} records in {secs:.2} s: {:.0} records/s, {:.1} MB/s",
                records as f64 / secs,
                bytes as f64 / secs / 1e6
            );
            println!(
                "{latency_name} ms: p50 {:.2}  p95 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
                ms(0.5),
                ms(0.95),
                ms(0.99),
                ms(0.999),
                hist.max() as f64 / 1000.0
            );
        }
    }
}

pub async fn produce(o: ProduceBench) -> anyhow::Result<()> {
    anyhow::ensure!(o.producers > 0, "--producers must be at least 1");
    anyhow::ensure!(o.record_size > 0, "--record-size must be at least 1");
    let mut client = ClientConfig::new(o.bootstrap.clone());
    client.client_id = "dmq-bench".into();
    client.security = o.security.security();
    let admin = Admin::new(client.clone())
        .await
        .with_context(|| format!("connecting to {}", o.bootstrap))?;
    if admin.cluster().topic(&o.topic, false).await.is_err() {
        admin
            .create_topic(NewTopic::new(&o.topic, o.partitions, o.replication_factor))
            .await?;
    }
    let transactional = o.txn_records > 0;
    anyhow::ensure!(
        !transactional || matches!(o.acks.as_str(), "all" | "-1"),
        "--txn-records needs --acks all (transactions are idempotent)"
    );
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut producers = Vec::new();
    for i in 0..o.producers {
        let mut c = ProducerConfig::new(o.bootstrap.clone());
        c.client = client.clone();
        c.acks = o.acks.parse()?;
        if transactional {
            c.transactional_id = Some(format!("dmq-bench-{run_id}-{i}"));
        }
        c.batch_size = o.batch_size;
        c.linger = Duration::from_millis(o.linger_ms);
        c.compression = o.compression.parse()?;
        c.buffer_memory = o.buffer_memory.max(o.batch_size * 2);
        c.max_request_size = c.max_request_size.max(o.batch_size + 1024);
        let producer = Producer::new(c).await?;
        if transactional {
            producer.init_transactions().await?;
        }
        producers.push(Arc::new(producer));
    }
    let commits = Arc::new(std::sync::Mutex::new(Histogram::<u64>::new_with_bounds(
        1,
        120_000_000,
        3,
    )?));
    // kafka-producer-perf-test's payload: random printable bytes, the same for every record.
    let payload: Bytes = {
        use rand::Rng;
        let mut rng = rand::rng();
        (0..o.record_size)
            .map(|_| rng.random_range(b'A'..=b'Z'))
            .collect::<Vec<u8>>()
            .into()
    };
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let per_rate = (o.throughput > 0).then(|| o.throughput as f64 / o.producers as f64);
    let mut tasks = Vec::new();
    for (i, producer) in producers.iter().enumerate() {
        let n =
            o.records / o.producers as u64 + u64::from((i as u64) < o.records % o.producers as u64);
        let producer = producer.clone();
        let payload = payload.clone();
        let topic = o.topic.clone();
        let acked = acked.clone();
        let commits = commits.clone();
        let per_txn = o.txn_records;
        tasks.push(tokio::spawn(async move {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, DeliveryFuture)>();
            let settle = tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
                let mut errors = 0u64;
                let mut first_error = None;
                while let Some((t0, f)) = rx.recv().await {
                    match f.wait().await {
                        Ok(_) => {
                            let t1 = f.completed_at().unwrap_or_else(Instant::now);
                            let _ = hist.record(t1.duration_since(t0).as_micros().max(1) as u64);
                        }
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                        }
                    }
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok((hist, errors, first_error))
            });
            let start = Instant::now();
            for k in 0..n {
                if per_txn > 0 && k % per_txn == 0 {
                    if k > 0 {
                        let t0 = Instant::now();
                        producer.commit_transaction().await?;
                        let us = t0.elapsed().as_micros().max(1) as u64;
                        let _ = commits.lock().unwrap_or_else(|e| e.into_inner()).record(us);
                    }
                    producer.begin_transaction()?;
                }
                if let Some(rate) = per_rate {
                    let due = start + Duration::from_secs_f64(k as f64 / rate);
                    if due > Instant::now() + Duration::from_millis(1) {
                        tokio::time::sleep_until(due.into()).await;
                    }
                }
                let t0 = Instant::now();
                let record = ProducerRecord {
                    topic: topic.clone(),
                    value: Some(payload.clone()),
                    ..Default::default()
                };
                let f = producer.send(record).await?;
                let _ = tx.send((t0, f));
            }
            drop(tx);
            if per_txn > 0 && n > 0 {
                let t0 = Instant::now();
                producer.commit_transaction().await?;
                let us = t0.elapsed().as_micros().max(1) as u64;
                let _ = commits.lock().unwrap_or_else(|e| e.into_inner()).record(us);
            }
            producer.flush().await;
            settle.await?
        }));
    }
    let progress = Progress::new(o.records);
    let mut tick = tokio::time::interval(progress.interval());
    tick.tick().await;
    let all = futures::future::join_all(tasks);
    tokio::pin!(all);
    let results = loop {
        tokio::select! {
            r = &mut all => break r,
            _ = tick.tick() => {
                let done = acked.load(Ordering::Relaxed);
                progress.show(done, done * o.record_size as u64);
            }
        }
    };
    let elapsed = started.elapsed();
    progress.finish();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let mut errors = 0;
    let mut first_error = None;
    for r in results {
        let (h, e, first) = r??;
        hist.add(&h)?;
        errors += e;
        if first_error.is_none() {
            first_error = first;
        }
    }
    if let Some(e) = first_error {
        anyhow::bail!("{errors} of {} records failed; first error: {e}", o.records);
    }
    summary(
        "produce",
        o.records,
        o.records * o.record_size as u64,
        elapsed,
        &hist,
        "latency",
        o.output,
    );
    if transactional {
        let h = commits.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        match o.output {
            Output::Json => println!(
                "{}",
                json!({
                    "bench": "commit", "transactions": h.len(), "recordsPerTransaction": o.txn_records,
                    "p50Ms": ms(0.5), "p99Ms": ms(0.99), "maxMs": h.max() as f64 / 1000.0,
                })
            ),
            Output::Human => println!(
                "commit ms ({} transactions of {} records): p50 {:.2}  p99 {:.2}  max {:.2}",
                h.len(),
                o.txn_records,
                ms(0.5),
                ms(0.99),
                h.max() as f64 / 1000.0
            ),
        }
    }
    for p in producers {
        if let Ok(p) = Arc::try_unwrap(p) {
            p.close().await;
        }
    }
    Ok(())
}

pub async fn consume(o: ConsumeBench) -> anyhow::Result<()> {
    let mut config = ConsumerConfig::new(o.bootstrap.clone());
    config.client.client_id = "dmq-bench".into();
    config.max_partition_fetch_bytes = o.max_partition_fetch_bytes;
    let mut consumer = Consumer::new(config)
        .await
        .with_context(|| format!("connecting to {}", o.bootstrap))?;
    consumer.assign_topic(&o.topic).await?;
    consumer.seek_all(Offset::Beginning);
    let progress = Progress::new(o.records);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(o.timeout_secs);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut last_progress = Instant::now();
    while records < o.records {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {records} of {} records arrived within {} s",
            o.records,
            o.timeout_secs
        );
        let t0 = Instant::now();
        let batch = consumer.poll(Duration::from_secs(1)).await?;
        if batch.is_empty() {
            continue;
        }
        let _ = hist.record(t0.elapsed().as_micros().max(1) as u64);
        for r in &batch {
            bytes += r.value.as_ref().map_or(0, |v| v.len()) as u64
                + r.key.as_ref().map_or(0, |k| k.len()) as u64;
        }
        records += batch.len() as u64;
        if last_progress.elapsed() >= progress.interval() {
            progress.show(records, bytes);
            last_progress = Instant::now();
        }
    }
    let elapsed = started.elapsed();
    progress.finish();
    summary(
        "consume",
        records,
        bytes,
        elapsed,
        &hist,
        "poll latency",
        o.output,
    );
    Ok(())
}
