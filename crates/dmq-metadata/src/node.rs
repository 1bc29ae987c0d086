//! A running metadata node: Raft, the HTTP server and the controller loop.
//!
//! ```text
//!  MetadataNode::start
//!    ├─ LogStore::open / StateMachineStore::open   (recover raft.log, load snapshot)
//!    ├─ openraft::Raft::new                        (openraft's election timer off)
//!    ├─ axum server on the node's HTTP port        (API + Raft RPCs)
//!    ├─ initialize(members) if the log is pristine (identical on every node; idempotent)
//!    ├─ election timer: pre-vote, then campaign    (raft/pre_vote.rs)
//!    └─ controller loop: while this node leads, fence silent brokers and move leaderships
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dmq_types::{BrokerId, NodeId, ServicesConfig};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::controller::{partition_changes, Liveness};
use crate::raft::{
    HttpNetworkFactory, LogStore, PreVote, Proposed, Proposer, Raft, SharedState, StateMachineStore,
};
use crate::state::{Broker, BrokerStatus, Command, CommandResult};
use crate::MetadataError;

/// How long a proposal may wait for a quorum before the API answers 503.
const PROPOSE_TIMEOUT_MS: u64 = 5_000;
/// Timeout of a CONTROLLER_CHANGED / METADATA_UPDATED push to one broker; failures are ignored.
const PUSH_TIMEOUT_MS: u64 = 1_000;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a metadata node needs to start.
#[derive(Debug, Clone)]
pub struct MetadataNodeOptions {
    /// This node's Raft id; must be listed in `config`.
    pub node_id: NodeId,
    /// The cluster topology and timings.
    pub config: ServicesConfig,
    /// Where the Raft log, vote and snapshot live.
    pub data_dir: PathBuf,
    /// Address to bind instead of the configured host (e.g. `0.0.0.0`).
    pub bind_host: Option<String>,
}

/// State shared by the HTTP handlers and the controller loop.
pub struct NodeShared {
    pub(crate) node_id: NodeId,
    pub(crate) config: ServicesConfig,
    pub(crate) raft: Raft,
    pub(crate) sm: SharedState,
    pub(crate) log: LogStore,
    /// Broker heartbeats as seen by this node while it is the controller.
    pub(crate) liveness: Mutex<Liveness>,
    /// On a follower: the controller's last-heartbeat times, mirrored every second (heartbeats
    /// are not replicated), and when they were fetched.
    pub(crate) mirrored_heartbeats: Mutex<(Option<std::time::Instant>, BTreeMap<BrokerId, u64>)>,
    pub(crate) http: reqwest::Client,
    /// Quorum members: Raft id → HTTP base URL.
    pub(crate) members: BTreeMap<NodeId, String>,
    /// Runs the controller loop's next reconciliation now instead of at the next tick.
    pub(crate) wake: tokio::sync::Notify,
    /// The newest committed version brokers should hear of; the pusher task coalesces.
    pub(crate) push_version: watch::Sender<u64>,
    /// Group commit in front of Raft: every write goes through it.
    pub(crate) proposer: Proposer,
    /// This node's metrics (`/metrics`).
    pub(crate) metrics: Arc<dmq_metrics::Registry>,
    /// The election timer and the answers to other voters' pre-votes.
    pub(crate) pre_vote: PreVote,
}

impl NodeShared {
    /// Asks the controller loop to reconcile now (a broker was fenced by a request).
    pub(crate) fn wake_controller(&self) {
        self.wake.notify_one();
    }

    pub(crate) fn member_url(&self, id: NodeId) -> Option<String> {
        self.members.get(&id).cloned()
    }

    /// The leader this node knows of, with its URL.
    pub(crate) fn leader(&self) -> (Option<NodeId>, Option<String>) {
        let leader = self.raft.metrics().borrow().current_leader;
        (leader, leader.and_then(|id| self.member_url(id)))
    }

    pub(crate) fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.node_id)
    }

    /// Fails with NOT_LEADER (503 + redirect headers) unless this node is the leader.
    pub(crate) fn require_leader(&self) -> Result<(), MetadataError> {
        if self.is_leader() {
            return Ok(());
        }
        let (leader_id, leader_url) = self.leader();
        Err(MetadataError::NotLeader {
            leader_id,
            leader_url,
        })
    }

    /// The leader's read index: a log index covering every write committed before this call
    /// (Raft §8, confirmed with a quorum round).
    pub(crate) async fn read_index(&self) -> Result<u64, MetadataError> {
        let fut = self.raft.ensure_linearizable();
        match tokio::time::timeout(Duration::from_millis(PROPOSE_TIMEOUT_MS), fut).await {
            Ok(Ok(log_id)) => Ok(log_id.map_or(0, |l| l.index)),
            Ok(Err(e)) => {
                Err(self.leader_error(e.to_string(), e.forward_to_leader().map(|f| f.leader_id)))
            }
            Err(_) => Err(MetadataError::Unavailable(
                "no quorum answered in time".into(),
            )),
        }
    }

    fn leader_error(&self, message: String, forward: Option<Option<NodeId>>) -> MetadataError {
        match forward {
            Some(leader_id) => MetadataError::NotLeader {
                leader_id,
                leader_url: leader_id.and_then(|id| self.member_url(id)),
            },
            None => MetadataError::Unavailable(message),
        }
    }

    /// Commits `command` through Raft and returns what applying it produced.
    pub(crate) async fn propose(&self, command: Command) -> Result<CommandResult, MetadataError> {
        // Brokers act on topics, partitions and brokers; producer-id blocks concern only the asker.
        // Producer ids and group offsets change nothing brokers cache: no push (offset commits
        // come by the thousand per second).
        let brokers_care = !matches!(
            command,
            Command::AllocateProducerIds { .. }
                | Command::CommitOffsets { .. }
                | Command::DeleteGroupOffsets { .. }
                | Command::Txn { .. }
        );
        let proposed = self.proposer.propose(command);
        match tokio::time::timeout(Duration::from_millis(PROPOSE_TIMEOUT_MS), proposed).await {
            Ok(Proposed::Applied { index, result }) => {
                if brokers_care && !matches!(result, CommandResult::Rejected { .. }) {
                    self.push_version.send_if_modified(|v| {
                        let newer = index > *v;
                        if newer {
                            *v = index;
                        }
                        newer
                    });
                }
                Ok(result)
            }
            Ok(Proposed::NotLeader(leader_id)) => Err(MetadataError::NotLeader {
                leader_id,
                leader_url: leader_id.and_then(|id| self.member_url(id)),
            }),
            Ok(Proposed::Failed(message)) => Err(MetadataError::Unavailable(message)),
            Err(_) => Err(MetadataError::Unavailable(
                "the write was not committed in time (no quorum?)".into(),
            )),
        }
    }

    /// Tells every registered broker about a change (`POST /api/v1/storage/metadata/update`),
    /// so that it pulls metadata now instead of at its next heartbeat. Fire and forget: a broker
    /// that misses a push still learns the version from its heartbeat answer.
    pub(crate) fn push_to_brokers(self: &Arc<Self>, body: &serde_json::Value) {
        let shared = self.clone();
        let body = body.clone();
        tokio::spawn(async move { shared.push_and_wait(&body).await });
    }

    /// Sends `body` to every ONLINE broker at once and waits for all answers (bounded by
    /// the push timeout); failures are logged and ignored.
    async fn push_and_wait(&self, body: &serde_json::Value) {
        let brokers: Vec<(String, u16)> = self
            .sm
            .read()
            .state
            .brokers
            .values()
            .filter(|b| b.status == BrokerStatus::Online)
            .map(|b| (b.host.clone(), b.port))
            .collect();
        let scheme = self.config.http_scheme();
        let sends = brokers.into_iter().map(|(host, port)| async move {
            let url = format!("{scheme}://{host}:{port}/api/v1/storage/metadata/update");
            let sent = self
                .http
                .post(&url)
                .timeout(Duration::from_millis(PUSH_TIMEOUT_MS))
                .json(body)
                .send()
                .await;
            if let Err(e) = sent {
                tracing::debug!(url, "metadata push failed (ignored): {e}");
            }
        });
        futures::future::join_all(sends).await;
    }

    pub(crate) fn record_heartbeat(&self, broker: BrokerId) {
        self.liveness
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .heartbeat(broker, now_ms());
    }

    /// A broker with the controller's live heartbeat time when this node is the controller.
    pub(crate) fn with_live_heartbeat(&self, mut broker: Broker) -> Broker {
        if self.is_leader() {
            let live = self.liveness.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(seen) = live.last_seen_ms(broker.broker_id) {
                broker.last_heartbeat = broker.last_heartbeat.max(seen);
            }
        } else {
            // A follower shows what the controller saw, as of its last mirror (if recent).
            let mirror = self
                .mirrored_heartbeats
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let fresh = mirror
                .0
                .is_some_and(|at| at.elapsed() <= HEARTBEAT_MIRROR_FRESH);
            if let Some(seen) = mirror.1.get(&broker.broker_id).filter(|_| fresh) {
                broker.last_heartbeat = broker.last_heartbeat.max(*seen);
            }
        }
        broker
    }
}

/// A running metadata node.
pub struct MetadataNode {
    shared: Arc<NodeShared>,
    http_addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    controller: JoinHandle<()>,
}

impl MetadataNode {
    /// Opens storage, starts Raft and the HTTP server, and joins (or forms) the quorum.
    pub async fn start(options: MetadataNodeOptions) -> Result<Self, MetadataError> {
        let config = options.config;
        let me = config
            .metadata_node(options.node_id)
            .cloned()
            .ok_or_else(|| {
                MetadataError::Startup(format!(
                    "metadata node id {} is not listed in \"metadata-services\"",
                    options.node_id
                ))
            })?;
        let members: BTreeMap<NodeId, String> = config
            .services
            .metadata_services
            .iter()
            .map(|n| (n.id, n.base_url()))
            .collect();
        let c = &config.controller;
        // openraft 0.9 has no pre-vote, so its own election timer is off (`enable_elect`) and
        // `PreVote` campaigns instead, 1.0–1.2 × `electionTimeoutMs` after the leader falls
        // silent and only once a majority of voters agree it is gone (see `raft/pre_vote.rs`).
        // openraft still uses the timeouts: `election_timeout_max` (0.6 T) is the leader lease
        // within which a voter refuses a vote request, which a granted pre-vote always outlasts.
        let raft_config = openraft::Config {
            cluster_name: "dmq-metadata".into(),
            election_timeout_min: c.election_timeout_ms * 2 / 5,
            election_timeout_max: c.election_timeout_ms * 3 / 5,
            heartbeat_interval: c.raft_heartbeat_interval_ms,
            enable_elect: false,
            install_snapshot_timeout: c.election_timeout_ms.max(2_000),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(c.snapshot_interval_entries),
            max_in_snapshot_log_to_keep: c.snapshot_log_entries_kept,
            // Purge after every snapshot (the log keeps at most an interval's worth of entries
            // plus those kept), in batches of at most 256 entries.
            purge_batch_size: c.snapshot_interval_entries.clamp(1, 256),
            // Small AppendEntries keep each RPC well inside openraft's per-RPC timeout, which is
            // one heartbeat interval.
            max_payload_entries: 64,
            // Chunks travel as JSON, where a byte costs up to 4 characters: 1 MiB chunks stay
            // well inside the API's 8 MiB body limit (openraft's default is 3 MiB).
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            ..Default::default()
        }
        .validate()
        .map_err(|e| MetadataError::Startup(format!("invalid Raft timings: {e}")))?;

        let log = LogStore::open(&options.data_dir)?;
        let sm = StateMachineStore::open(&options.data_dir)?;
        let sm_shared = sm.shared();
        // Raft RPCs, broker pushes and console fetches carry the cluster's token when HTTP
        // is secured (SPEC §11: nodes authenticate to each other).
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(tokens) = dmq_types::http::BearerTokens::from_config(config.security.as_ref()) {
            let mut value = reqwest::header::HeaderValue::from_str(&tokens.internal_header())
                .map_err(|_| {
                    MetadataError::Startup("an HTTP token is not a valid header value".into())
                })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = dmq_types::https::client_builder_for(config.security.as_ref())
            .map_err(|e| MetadataError::Startup(e.to_string()))?
            .default_headers(headers)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| MetadataError::Startup(format!("HTTP client: {e}")))?;
        let network = HttpNetworkFactory::new(
            http.clone(),
            Duration::from_millis(c.raft_heartbeat_interval_ms.max(50) * 2),
        );
        let raft = Raft::new(
            options.node_id,
            Arc::new(raft_config),
            network,
            log.clone(),
            sm,
        )
        .await
        .map_err(|e| MetadataError::Startup(format!("cannot start Raft: {e}")))?;

        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(NodeShared {
            node_id: options.node_id,
            config: config.clone(),
            raft: raft.clone(),
            sm: sm_shared,
            log,
            liveness: Mutex::new(Liveness::default()),
            mirrored_heartbeats: Mutex::new((None, BTreeMap::new())),
            metrics: {
                let registry = dmq_metrics::Registry::new();
                crate::metrics::describe(&registry);
                Arc::new(registry)
            },
            wake: tokio::sync::Notify::new(),
            push_version: watch::channel(0).0,
            pre_vote: PreVote::new(
                raft.clone(),
                options.node_id,
                members.clone(),
                http.clone(),
                Duration::from_millis(c.election_timeout_ms),
                Duration::from_millis(c.raft_heartbeat_interval_ms),
            ),
            http,
            members: members.clone(),
            proposer: Proposer::start(raft.clone(), stop_rx.clone()),
        });

        let bind_host = options.bind_host.unwrap_or_else(|| match me.host.as_str() {
            "localhost" => "127.0.0.1".to_string(),
            other => other.to_string(),
        });
        let listener = TcpListener::bind((bind_host.as_str(), me.port))
            .await
            .map_err(|e| {
                MetadataError::Startup(format!(
                    "metadata node {} cannot listen on {bind_host}:{}: {e}",
                    options.node_id, me.port
                ))
            })?;
        let http_addr = listener
            .local_addr()
            .map_err(|e| MetadataError::Startup(e.to_string()))?;
        let app = crate::api::router(shared.clone());
        let tls = dmq_types::https::server_config_for(config.security.as_ref())
            .map_err(|e| MetadataError::Startup(e.to_string()))?;
        let mut server_stop = stop_rx.clone();
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = server_stop.wait_for(|s| *s).await;
            };
            if let Err(e) = dmq_types::https::serve(listener, app, tls, shutdown).await {
                tracing::error!("metadata HTTP server failed: {e}");
            }
        });

        // Every node proposes the same initial membership; openraft accepts it only on a pristine
        // log, so restarts and late starters are unaffected.
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| MetadataError::Startup(e.to_string()))?;
        if !initialized {
            let nodes: BTreeMap<NodeId, BasicNode> = members
                .iter()
                .map(|(id, url)| (*id, BasicNode::new(url)))
                .collect();
            if let Err(e) = raft.initialize(nodes).await {
                tracing::debug!("initialize skipped: {e}");
            }
        }
        tracing::info!(
            node = options.node_id,
            addr = %http_addr,
            data_dir = %options.data_dir.display(),
            "metadata node started"
        );
        let controller = tokio::spawn(controller_loop(shared.clone(), stop_rx.clone()));
        tokio::spawn(shared.pre_vote.clone().run(stop_rx.clone()));
        tokio::spawn(heartbeat_mirror(shared.clone(), stop_rx.clone()));
        tokio::spawn(metadata_pusher(shared.clone(), stop_rx));
        Ok(Self {
            shared,
            http_addr,
            stop,
            server,
            controller,
        })
    }

    /// The address the HTTP server listens on.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// This node's Raft id.
    pub fn node_id(&self) -> NodeId {
        self.shared.node_id
    }

    /// Stops the controller loop, the HTTP server and Raft.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.controller.await;
        if let Err(e) = self.shared.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
        let _ = self.server.await;
        tracing::info!(node = self.shared.node_id, "metadata node stopped");
    }
}

/// How often a follower mirrors the controller's broker heartbeat times.
const HEARTBEAT_MIRROR_EVERY: Duration = Duration::from_secs(1);
/// A mirror older than this is not shown (the controller may be unreachable).
const HEARTBEAT_MIRROR_FRESH: Duration = Duration::from_secs(5);

/// Every second: metrics upkeep, and on a follower, a copy of the controller's view of broker
/// heartbeats. Broker liveness lives in the controller's memory (heartbeats are not Raft
/// entries); without the mirror a follower would report each broker's registration time as
/// its last heartbeat.
async fn heartbeat_mirror(shared: Arc<NodeShared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(HEARTBEAT_MIRROR_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        // Fold histogram samples into buckets between scrapes (bounded memory).
        shared.metrics.upkeep();
        if shared.is_leader() {
            continue;
        }
        let (Some(_), Some(url)) = shared.leader() else {
            continue;
        };
        let reply = shared
            .http
            .get(format!(
                "{}/api/v1/metadata/brokers",
                url.trim_end_matches('/')
            ))
            .timeout(HEARTBEAT_MIRROR_EVERY)
            .send()
            .await;
        let brokers: Option<Vec<Broker>> = match reply {
            Ok(r) if r.status().is_success() => r.json().await.ok(),
            _ => None,
        };
        if let Some(brokers) = brokers {
            let seen = brokers
                .into_iter()
                .map(|b| (b.broker_id, b.last_heartbeat))
                .collect();
            *shared
                .mirrored_heartbeats
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = (Some(std::time::Instant::now()), seen);
        }
    }
}

/// Pushes `METADATA_UPDATED` for the newest committed version to the ONLINE brokers. One push
/// round at a time: versions committed while a round is in flight are coalesced into the next,
/// so a burst of commits (topic creations, ISR changes) costs a few rounds, not one per commit.
async fn metadata_pusher(shared: Arc<NodeShared>, mut stop: watch::Receiver<bool>) {
    let mut versions = shared.push_version.subscribe();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            changed = versions.changed() => if changed.is_err() { return },
        }
        if *stop.borrow() {
            return;
        }
        let version = *versions.borrow_and_update();
        let body = json!({
            "type": "METADATA_UPDATED",
            "controllerId": shared.node_id,
            "version": version,
            "timestamp": now_ms(),
        });
        shared.push_and_wait(&body).await;
    }
}

/// Install-snapshot chunk size (raw bytes, before JSON encoding).
const SNAPSHOT_CHUNK_BYTES: u64 = 1 << 20;

/// The controller's duties, run on every node but acting only while it is the Raft leader.
///
/// Level-triggered: each tick compares the committed state with broker liveness and proposes the
/// difference (fence silent brokers, then move leaderships and shrink ISRs). A controller that
/// dies mid-way leaves a difference the next one finds and finishes.
async fn controller_loop(shared: Arc<NodeShared>, mut stop: watch::Receiver<bool>) {
    let c = &shared.config.controller;
    let session_timeout_ms = c.broker_session_timeout_ms;
    let tick = Duration::from_millis((session_timeout_ms / 20).clamp(20, 250));
    let mut metrics = shared.raft.metrics();
    let mut led_term: Option<u64> = None;
    let mut last_scan: Option<Vec<(BrokerId, BrokerStatus)>> = None;
    let mut timer = tokio::time::interval(tick);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Metrics change on every commit; they only wake the loop to notice leadership changes.
        // The O(partitions) reconciliation runs on the timer.
        let timer_fired = tokio::select! {
            _ = stop.changed() => return,
            _ = metrics.changed() => false,
            _ = timer.tick() => true,
            _ = shared.wake.notified() => true,
        };
        if *stop.borrow() {
            return;
        }
        let (state, term) = {
            let m = metrics.borrow_and_update();
            (m.state, m.current_term)
        };
        if state != ServerState::Leader {
            led_term = None;
            continue;
        }
        if led_term != Some(term) {
            // Newly elected. Raft only lets a leader commit once its blank entry is applied; wait
            // for that so the state read below includes everything the old controller committed.
            if shared.read_index().await.is_err() {
                continue;
            }
            led_term = Some(term);
            last_scan = None;
            on_elected(&shared, term);
        } else if !timer_fired {
            continue;
        }
        match controller_tick(&shared, last_scan.as_deref()).await {
            Ok(scanned) => last_scan = scanned,
            Err(e) => {
                last_scan = None;
                tracing::debug!("controller tick: {e}");
            }
        }
    }
}

/// A heartbeat this late makes the controller check whether the broker process still exists:
/// 1.2 intervals. The check is safe to make early (only a refused connection fences, a live
/// process always accepts), and each 100 ms here is 100 ms of a dead leader's failover.
fn overdue_after_ms(c: &dmq_types::ControllerConfig) -> u64 {
    (c.broker_heartbeat_interval_ms * 6 / 5).max(200)
}

/// True when connecting to `addr` is actively refused (nothing listens: the process is gone).
/// A timeout or any other error proves nothing and leaves the broker to its session timeout.
async fn probe_refused(addr: &str) -> bool {
    let attempt = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(addr),
    )
    .await;
    matches!(attempt, Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused)
}

/// Becoming controller: rebuild heartbeat state and tell the brokers (seed 000, Challenge 2).
fn on_elected(shared: &Arc<NodeShared>, term: u64) {
    let brokers: Vec<Broker> = {
        let data = shared.sm.read();
        shared
            .liveness
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rebuild(&data.state, now_ms());
        data.state.brokers.values().cloned().collect()
    };
    tracing::info!(
        node = shared.node_id,
        term,
        brokers = brokers.len(),
        "became controller; heartbeat state rebuilt, notifying brokers"
    );
    let body = json!({
        "type": "CONTROLLER_CHANGED",
        "controllerId": shared.node_id,
        "controllerUrl": shared.member_url(shared.node_id),
        "controllerTerm": term,
        "version": shared.sm.read().state.version,
        "timestamp": now_ms(),
    });
    shared.push_to_brokers(&body);
}

/// One reconciliation. Returns the broker liveness it judged partitions against, so that the next
/// tick can skip the partition scan while that is unchanged and every broker is ONLINE (then no
/// partition can need a change: leaders and ISRs only change because of liveness).
async fn controller_tick(
    shared: &NodeShared,
    last_scan: Option<&[(BrokerId, BrokerStatus)]>,
) -> Result<Option<Vec<(BrokerId, BrokerStatus)>>, MetadataError> {
    let c = &shared.config.controller;
    let session_timeout_ms = c.broker_session_timeout_ms;
    let (expired, overdue) = {
        let data = shared.sm.read();
        let mut live = shared.liveness.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_ms();
        let expired = live.expired(&data.state, now, session_timeout_ms);
        let overdue = live.overdue(&data.state, now, overdue_after_ms(c));
        (expired, overdue)
    };
    let mut fenced: Vec<(BrokerId, &str)> = expired
        .into_iter()
        .map(|b| (b, "broker missed its session timeout; marking it OFFLINE"))
        .collect();
    // Fast failure detection: a late heartbeat alone proves nothing (the broker may be slow),
    // but a refused connection means no process listens there any more.
    let probes = overdue
        .into_iter()
        .filter(|(id, _)| !fenced.iter().any(|(f, _)| f == id))
        .map(|(id, addr)| async move { (id, probe_refused(&addr).await) });
    for (id, refused) in futures::future::join_all(probes).await {
        if refused {
            fenced.push((
                id,
                "broker heartbeat is late and its port refuses connections; marking it OFFLINE",
            ));
        }
    }
    for (broker_id, why) in fenced {
        tracing::warn!(broker = broker_id, session_timeout_ms, "{why}");
        shared
            .propose(Command::UpdateBrokerStatus {
                broker_id,
                status: BrokerStatus::Offline,
                timestamp_ms: now_ms(),
            })
            .await?;
    }
    let (liveness, changes) = {
        let data = shared.sm.read();
        let liveness: Vec<(BrokerId, BrokerStatus)> = data
            .state
            .brokers
            .values()
            .map(|b| (b.broker_id, b.status))
            .collect();
        let all_online = liveness.iter().all(|(_, s)| *s == BrokerStatus::Online);
        if all_online && last_scan == Some(liveness.as_slice()) {
            return Ok(Some(liveness));
        }
        let changes = partition_changes(&data.state);
        (liveness, changes)
    };
    if changes.is_empty() {
        return Ok(Some(liveness));
    }
    for c in &changes {
        tracing::info!(
            topic = %c.topic,
            partition = c.partition,
            leader = c.leader,
            isr = ?c.isr,
            leader_epoch = c.leader_epoch,
            "moving partition leadership"
        );
    }
    let result = shared
        .propose(Command::UpdatePartitions { changes })
        .await?;
    if let CommandResult::Rejected { message, .. } = result {
        // Another change landed first; the next tick decides again on the new state.
        tracing::debug!("partition change rejected: {message}");
    }
    Ok(None)
}
