//! A running broker: its shared state and the tasks around it.
//!
//! ```text
//!   BrokerNode::start
//!     ├─ bind the Kafka and HTTP listeners (fail fast if a port is taken)
//!     ├─ membership loop   discover → register → heartbeat; pulls metadata → ReplicaManager
//!     ├─ Kafka listener    one task per connection (kafka::server)
//!     ├─ HTTP listener     seeds' storage API, push endpoint, /metrics, /health (http)
//!     ├─ fetchers          one per leader broker this broker follows (fetcher)
//!     ├─ group timers      session expiry and rebalance deadlines of coordinated groups
//!     ├─ offset committer  batches OffsetCommits into the metadata quorum
//!     ├─ ISR manager       proposes ISR shrinks/expands for partitions it leads (AlterPartition)
//!     ├─ housekeeping      interval flushes, fsyncs of rolled segments, HW checkpoints, retention
//!     ├─ write-back        starts write-back of new appends every 25 ms (no fsync)
//!     └─ log cleaner       compacts the compacted topics' logs, one at a time, I/O-throttled
//!
//!   BrokerNode::controlled_shutdown (SIGTERM): stop heartbeating → ask the controller to move
//!     the leaderships away → wait until the metadata shows none here → shutdown
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex as AsyncMutex, Notify};
use tokio::task::JoinHandle;

use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::fetcher::FetcherManager;
use crate::meta_client::{ClusterImage, MetaClient};
use crate::metrics::Metrics;
use crate::partition::{IsrChange, Partition};
use crate::replica_manager::{Housekeeping, ReplicaManager};

/// Producer ids are taken from the quorum in blocks of this many.
const PRODUCER_ID_BLOCK: u32 = 1_000;
/// Retention runs at most this often.
const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// How long the cleaner rests when no compacted log needs a pass (Kafka's
/// `log.cleaner.backoff.ms` is 15 s).
const CLEANER_BACKOFF: Duration = Duration::from_secs(2);
/// How often moved high watermarks are checkpointed (Kafka's
/// `replica.high.watermark.checkpoint.interval.ms`): one fsync per moved partition each time.
const HW_CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

pub struct BrokerShared {
    pub config: BrokerConfig,
    pub meta: MetaClient,
    image: RwLock<Arc<ClusterImage>>,
    pub replicas: ReplicaManager,
    pub fetchers: FetcherManager,
    pub metrics: Metrics,
    /// Consumer groups this broker coordinates (membership; offsets are in the quorum).
    pub groups: crate::group::coordinator::GroupCoordinator,
    pub offsets: crate::group::offsets::OffsetCommitter,
    producer_ids: AsyncMutex<(i64, i64)>,
    /// Serialises metadata pulls so that images are applied in order.
    refresh_lock: AsyncMutex<()>,
    /// A push said the controller changed: heartbeat now.
    pub controller_changed: Notify,
    /// A push said metadata changed: pull now.
    pub metadata_changed: Notify,
    pub shutdown: watch::Receiver<bool>,
    /// Controlled shutdown under way: no more heartbeats (they would readmit the broker).
    pub shutting_down: AtomicBool,
    /// The broker epoch this process registered with (0 before its registration).
    pub registered_epoch: AtomicU64,
    /// When a heartbeat (or the registration) last succeeded, ms since the Unix epoch.
    pub heartbeat_ok_ms: AtomicI64,
    /// This process's incarnation id, sent with every registration (a restart is a new one).
    pub incarnation_id: String,
    /// The current silence past the session timeout has been logged.
    pub cut_off_announced: AtomicBool,
    /// Paces the log cleaner's reads and writes (`log.cleaner.io.max.bytes.per.second`).
    pub cleaner_throttle: dmq_log::IoThrottle,
    /// The transaction coordinator's decisions in progress and marker connections.
    pub txns: crate::txn::TxnCoordinator,
    /// Share groups (KIP-932), in memory for now.
    pub shares: crate::share::Shares,
    /// SASL mechanisms, ACLs and SCRAM credentials.
    pub security: crate::security::BrokerSecurity,
}

impl BrokerShared {
    /// Whether this broker has gone a whole session timeout without reaching the controller.
    /// The controller has fenced it and moved its leaderships by then, so as a leader it must
    /// stop acknowledging writes (clients told NOT_LEADER_OR_FOLLOWER refresh their metadata
    /// and find the new leader) until a heartbeat gets through again.
    pub fn lost_the_controller(&self) -> bool {
        let silent_ms = dmq_log::now_ms() - self.heartbeat_ok_ms.load(Ordering::Acquire);
        self.registered_epoch.load(Ordering::Acquire) > 0
            && silent_ms > self.config.session_timeout.as_millis() as i64
    }

    /// Ready to serve (`/health/ready`, `dmq dev`): this process has registered and its
    /// metadata shows that registration ONLINE, so clients and the controller count it.
    pub fn is_ready(&self) -> bool {
        let epoch = self.registered_epoch.load(Ordering::Acquire);
        epoch > 0
            && !self.shutting_down.load(Ordering::Acquire)
            && self
                .image()
                .brokers
                .get(&self.config.broker_id)
                .is_some_and(|b| {
                    b.broker_epoch >= epoch && b.status == dmq_types::model::BrokerStatus::Online
                })
    }

    pub fn image(&self) -> Arc<ClusterImage> {
        self.image.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Pulls the committed metadata from the controller and applies it (unless older than what
    /// this broker already has). Returns the version now applied.
    pub async fn refresh_metadata(self: &Arc<Self>) -> Result<u64> {
        let _one_at_a_time = self.refresh_lock.lock().await;
        let image = self.meta.cluster().await?;
        let current = self.image().version;
        if image.version < current {
            return Ok(current);
        }
        let image = Arc::new(image);
        let shared = self.clone();
        let applied = image.clone();
        // Opening logs touches the disk (recovery may scan segments).
        let groups = tokio::task::spawn_blocking(move || shared.replicas.apply(&applied))
            .await
            .map_err(|e| BrokerError::Metadata(format!("metadata apply panicked: {e}")))?;
        *self.image.write().unwrap_or_else(|e| e.into_inner()) = image.clone();
        self.security.set_image(&image.security);
        self.cleaner_throttle
            .set_rate(cleaner_rate(&image, self.config.broker_id));
        self.fetchers.update(self, groups);
        if image.version > current {
            tracing::debug!(from = current, to = image.version, "metadata applied");
            let hosted: std::collections::BTreeSet<String> = self
                .replicas
                .all()
                .into_iter()
                .map(|p| p.topic.clone())
                .collect();
            for topic in &hosted {
                self.metrics.topic_hosted(topic);
            }
        }
        Ok(image.version)
    }

    /// Waits (bounded) until the cached metadata satisfies `ready`, pulling as needed.
    pub async fn wait_for_metadata(
        self: &Arc<Self>,
        timeout: Duration,
        ready: impl Fn(&ClusterImage) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if ready(&self.image()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            if let Err(e) = self.refresh_metadata().await {
                tracing::debug!("metadata pull: {e}");
            }
            if ready(&self.image()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The next producer id for InitProducerId, from a block handed out by the quorum.
    pub async fn next_producer_id(&self) -> Result<i64> {
        let mut block = self.producer_ids.lock().await;
        if block.0 >= block.1 {
            let (first, count) = self
                .meta
                .allocate_producer_ids(self.config.broker_id, PRODUCER_ID_BLOCK)
                .await?;
            *block = (first, first + i64::from(count));
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}

pub struct BrokerNode {
    shared: Arc<BrokerShared>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    kafka_addr: SocketAddr,
    http_addr: SocketAddr,
}

impl BrokerNode {
    pub async fn start(config: BrokerConfig) -> Result<BrokerNode> {
        std::fs::create_dir_all(&config.data_dir)?;
        let bind = config
            .bind_host
            .clone()
            .unwrap_or_else(|| config.host.clone());
        let kafka = listen(&bind, config.kafka_port, "Kafka").await?;
        let http = listen(&bind, config.http_port, "HTTP").await?;
        let kafka_addr = kafka.local_addr()?;
        let http_addr = http.local_addr()?;
        let mut config = config;
        // Port 0 (tests) means "pick one": advertise what was picked.
        config.kafka_port = kafka_addr.port();
        config.http_port = http_addr.port();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (offsets, commit_queue) = crate::group::offsets::OffsetCommitter::new();
        let security = crate::security::BrokerSecurity::from_config(config.security.as_ref());
        let mut extra_listeners = Vec::new();
        for l in config
            .listeners
            .get(&config.broker_id)
            .cloned()
            .unwrap_or_default()
        {
            let tls = if l.protocol.uses_tls() {
                let cfg = config
                    .security
                    .as_ref()
                    .and_then(|s| s.tls.as_ref())
                    .ok_or_else(|| {
                        BrokerError::InvalidRequest(format!(
                            "listener {} is {} but security.tls is not set",
                            l.name,
                            l.protocol.name()
                        ))
                    })?;
                Some(tokio_rustls::TlsAcceptor::from(crate::tls::server_config(
                    cfg,
                )?))
            } else {
                None
            };
            let socket = listen(&bind, l.port, "Kafka listener").await?;
            extra_listeners.push((socket, l, tls));
        }
        let http_tls = dmq_types::https::server_config_for(config.security.as_ref())
            .map_err(|e| BrokerError::InvalidRequest(e.to_string()))?;
        let shared = Arc::new(BrokerShared {
            meta: MetaClient::new(
                config.metadata_urls.clone(),
                config.metadata_timeout,
                dmq_types::http::BearerTokens::from_config(config.security.as_ref())
                    .map(|t| t.internal_header()),
                dmq_types::https::client_builder_for(config.security.as_ref())
                    .map_err(|e| BrokerError::Metadata(e.to_string()))?,
            )?,
            replicas: ReplicaManager::new(config.broker_id, config.data_dir.clone()),
            config,
            image: RwLock::new(Arc::new(ClusterImage::default())),
            fetchers: FetcherManager::default(),
            metrics: Metrics::default(),
            groups: Default::default(),
            offsets,
            producer_ids: AsyncMutex::new((0, 0)),
            refresh_lock: AsyncMutex::new(()),
            controller_changed: Notify::new(),
            metadata_changed: Notify::new(),
            shutdown: shutdown_rx,
            shutting_down: AtomicBool::new(false),
            registered_epoch: AtomicU64::new(0),
            heartbeat_ok_ms: AtomicI64::new(dmq_log::now_ms()),
            incarnation_id: uuid::Uuid::new_v4().to_string(),
            cut_off_announced: AtomicBool::new(false),
            cleaner_throttle: dmq_log::IoThrottle::new(
                dmq_types::broker_config::CLEANER_IO_BYTES_PER_SEC_DEFAULT,
            ),
            txns: Default::default(),
            shares: Default::default(),
            security,
        });
        tracing::info!(
            broker = shared.config.broker_id,
            kafka = %kafka_addr,
            http = %http_addr,
            data_dir = %shared.config.data_dir.display(),
            "storage broker starting"
        );
        let default_listener = crate::kafka::server::Listener {
            name: crate::kafka::server::DEFAULT_LISTENER.to_string(),
            protocol: shared.config.kafka_port_protocol(),
        };
        let mut tasks = vec![
            tokio::spawn(crate::kafka::server::serve(
                shared.clone(),
                kafka,
                default_listener,
                None,
            )),
            tokio::spawn(crate::http::serve(shared.clone(), http, http_tls)),
            tokio::spawn(crate::membership::run(shared.clone())),
            tokio::spawn(housekeeping(shared.clone())),
            tokio::spawn(writeback(shared.clone())),
            tokio::spawn(log_cleaner(shared.clone())),
            tokio::spawn(crate::share::writer(shared.clone())),
            tokio::spawn(isr_manager(shared.clone())),
            tokio::spawn(crate::group::offsets::run(shared.clone(), commit_queue)),
            tokio::spawn(group_timers(shared.clone())),
            tokio::spawn(crate::txn::driver(shared.clone())),
        ];
        for (socket, l, tls) in extra_listeners {
            tracing::info!(name = %l.name, port = l.port, protocol = l.protocol.name(), "Kafka listener");
            let listener = crate::kafka::server::Listener {
                name: l.name,
                protocol: l.protocol,
            };
            tasks.push(tokio::spawn(crate::kafka::server::serve(
                shared.clone(),
                socket,
                listener,
                tls,
            )));
        }
        Ok(BrokerNode {
            shared,
            shutdown_tx,
            tasks,
            kafka_addr,
            http_addr,
        })
    }

    pub fn kafka_addr(&self) -> SocketAddr {
        self.kafka_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn shared(&self) -> &Arc<BrokerShared> {
        &self.shared
    }

    /// Kafka's controlled shutdown: hands every leadership that has another ISR member to it
    /// before stopping, so producers see at most a retriable NOT_LEADER_OR_FOLLOWER. Gives up
    /// waiting after `timeout` (a controller that cannot be reached cannot move anything).
    pub async fn controlled_shutdown(self, timeout: Duration) {
        let shared = self.shared.clone();
        let id = shared.config.broker_id;
        shared.shutting_down.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + timeout;
        let movable = |image: &ClusterImage| {
            image
                .topics
                .values()
                .flat_map(|t| t.partitions.iter())
                .filter(|p| p.leader == id && p.isr.iter().any(|b| *b != id))
                .count()
        };
        tracing::info!(
            broker = id,
            leaderships = movable(&shared.image()),
            "controlled shutdown: asking the controller to move leaderships"
        );
        let mut asked = false;
        while !asked && tokio::time::Instant::now() < deadline {
            match shared.meta.controlled_shutdown(id).await {
                Ok(()) => asked = true,
                Err(e) => {
                    tracing::warn!(broker = id, "controlled shutdown request failed: {e}");
                    if shared.meta.controller().is_none() {
                        let _ = shared.meta.discover().await;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        if asked {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let moved = shared
                .wait_for_metadata(left, |image| movable(image) == 0)
                .await;
            tracing::info!(
                broker = id,
                moved,
                "controlled shutdown: leaderships {}",
                if moved {
                    "moved"
                } else {
                    "not all moved in time"
                }
            );
        }
        self.shutdown().await;
    }

    /// Stops serving, then flushes and closes every log.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        self.shared.fetchers.stop_all();
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.replicas.close_all()).await;
        tracing::info!(
            broker = self.shared.config.broker_id,
            "storage broker stopped"
        );
    }
}

/// The log cleaner's I/O cap in force on `broker` (`log.cleaner.io.max.bytes.per.second`).
fn cleaner_rate(image: &ClusterImage, broker: dmq_types::BrokerId) -> u64 {
    image
        .broker_configs
        .dynamic_value(Some(broker), "log.cleaner.io.max.bytes.per.second")
        .and_then(|(v, _)| v.trim().parse::<f64>().ok())
        .filter(|r| r.is_finite() && *r >= 0.0)
        .map_or(
            dmq_types::broker_config::CLEANER_IO_BYTES_PER_SEC_DEFAULT,
            |r| r.min(u64::MAX as f64) as u64,
        )
}

/// Binds `host:port`, naming the listener in the error (a taken port stops start-up clearly).
async fn listen(host: &str, port: u16, what: &str) -> Result<TcpListener> {
    TcpListener::bind((host, port)).await.map_err(|e| {
        BrokerError::Io(std::io::Error::new(
            e.kind(),
            format!("cannot listen on {host}:{port} ({what}): {e}"),
        ))
    })
}

/// Proposes the ISR changes the followers' progress calls for (Kafka's AlterPartition), each
/// as its own call so that one slow partition does not hold up the others.
async fn isr_manager(shared: Arc<BrokerShared>) {
    let lag = shared.config.replica_lag_time_max;
    let mut tick = tokio::time::interval(
        (lag / 4).clamp(Duration::from_millis(20), Duration::from_millis(200)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = dmq_log::now_ms();
        // Once per silence, when it first passes the session timeout.
        if shared.lost_the_controller() && !shared.cut_off_announced.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                broker = shared.config.broker_id,
                session_timeout_ms = shared.config.session_timeout.as_millis() as u64,
                "no heartbeat got through for a session timeout: the controller has fenced this \
                 broker, which acknowledges no writes as a leader until it is back"
            );
        }
        let image = shared.image();
        let broker_epoch = |id| image.brokers.get(&id).map(|b| b.broker_epoch);
        for part in shared.replicas.all() {
            let Some(change) = part.isr_change(now, lag.as_millis() as i64, broker_epoch) else {
                continue;
            };
            tokio::spawn(alter_partition(shared.clone(), part, change));
        }
    }
}

/// Sends one ISR change until the controller answers it or it stops being pending. An
/// unanswered change may have been committed, so it stays pending (the HW goes on counting its
/// ISR) and is sent again; a refusal is settled only after the committed metadata is applied,
/// because it may follow an earlier attempt that was committed.
async fn alter_partition(shared: Arc<BrokerShared>, part: Arc<Partition>, change: IsrChange) {
    let id = shared.config.broker_id;
    let mut backoff = Duration::from_millis(100);
    while part.isr_change_pending(&change) {
        let result = shared
            .meta
            .alter_partition(id, &part.topic, part.index, &change)
            .await;
        match result {
            Ok(Some(p)) => {
                if !change.removed.is_empty() {
                    shared.metrics.isr_shrink(&part.topic);
                }
                if !change.added.is_empty() {
                    shared.metrics.isr_expand(&part.topic);
                }
                tracing::info!(
                    partition = ?part,
                    isr = ?p.isr,
                    removed = ?change.removed,
                    added = ?change.added,
                    partition_epoch = p.partition_epoch,
                    "ISR changed"
                );
                part.isr_change_done(Some(&p));
                return;
            }
            Ok(None) => match shared.refresh_metadata().await {
                Ok(_) => {
                    if part.isr_change_pending(&change) {
                        part.isr_change_done(None);
                    }
                    return;
                }
                Err(e) => tracing::warn!(
                    partition = ?part,
                    "ISR change refused and the committed metadata not readable: {e}"
                ),
            },
            Err(e) => tracing::warn!(
                partition = ?part,
                "ISR change unanswered, sending it again: {e}"
            ),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Session expiry and rebalance deadlines of the groups this broker coordinates.
async fn group_timers(shared: Arc<BrokerShared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        shared.groups.tick(std::time::Instant::now());
    }
}

/// Kafka's log cleaner: one pass at a time on a blocking thread, the neediest log first,
/// resting [`CLEANER_BACKOFF`] when no log needs one.
async fn log_cleaner(shared: Arc<BrokerShared>) {
    loop {
        let s = shared.clone();
        let cleaned = tokio::task::spawn_blocking(move || {
            s.replicas
                .clean_dirtiest(dmq_log::now_ms(), &s.cleaner_throttle)
        })
        .await
        .unwrap_or(false);
        if !cleaned {
            tokio::time::sleep(CLEANER_BACKOFF).await;
        }
    }
}

/// How often the write-back timer looks for logs with a megabyte of new dirty pages.
const WRITEBACK_EVERY: Duration = Duration::from_millis(25);

/// Starts write-back of recent appends as they come (see
/// [`dmq_log::Log::start_writeback`]), on a blocking thread of its own: a submission can wait
/// behind a device flush, and no append or async worker should wait with it.
async fn writeback(shared: Arc<BrokerShared>) {
    let mut tick = tokio::time::interval(WRITEBACK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || s.replicas.start_writeback()).await;
    }
}

async fn housekeeping(shared: Arc<BrokerShared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last_retention = tokio::time::Instant::now();
    let mut last_checkpoint = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        let retention = last_retention.elapsed() >= RETENTION_EVERY;
        if retention {
            last_retention = tokio::time::Instant::now();
        }
        let checkpoint = last_checkpoint.elapsed() >= HW_CHECKPOINT_EVERY;
        if checkpoint {
            last_checkpoint = tokio::time::Instant::now();
        }
        shared.metrics.upkeep();
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            s.replicas.housekeeping(
                dmq_log::now_ms(),
                Housekeeping {
                    retention,
                    checkpoint,
                },
            )
        })
        .await;
    }
}
