//! Real `dmq` processes on free loopback ports, for integration tests and failover benchmarks.
//!
//! Each cluster lives in its own directory: `services.json`, one data dir and one log file per
//! node. Ports are chosen by binding port 0, so suites can run side by side. Waiting is always on
//! a condition with a deadline ([`wait_until`]), never a bare sleep.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dmq_types::{
    BrokerId, ControllerConfig, MetadataNodeConfig, NodeId, ServicesConfig, StorageNodeConfig,
};
use serde_json::Value;

/// Polls `probe` every 25 ms until it yields `Some`, or fails after `timeout` naming `what`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The harness's HTTP client, trusting the cluster's CA when its HTTP APIs speak HTTPS.
fn http_client(security: Option<&dmq_types::security::SecurityConfig>) -> reqwest::Client {
    dmq_types::https::client_builder_for(security)
        .and_then(|b| {
            b.timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| dmq_types::TypesError::Tls(e.to_string()))
        })
        .unwrap_or_else(|e| panic!("the test harness's HTTP client: {e}"))
}

/// A free TCP port on 127.0.0.1, never one this process handed out before. The port is bound
/// and released, and the OS may offer a released port again at once, so without the memory two
/// calls for one topology can return the same port (services.json then refuses to start).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        if port != 0 && given.insert(port) {
            return port;
        }
    }
    0
}

/// A topology of `nodes` metadata nodes (ids 1..=nodes) on free 127.0.0.1 ports, no brokers.
pub fn loopback_quorum_config(nodes: u64, controller: ControllerConfig) -> ServicesConfig {
    let mut config = ServicesConfig::example();
    config.services.storage_services.clear();
    config.services.metadata_services = (1..=nodes)
        .map(|id| {
            let port = free_port();
            MetadataNodeConfig {
                id,
                host: "127.0.0.1".into(),
                port,
                url: Some(format!("http://127.0.0.1:{port}")),
            }
        })
        .collect();
    config.controller = controller;
    config
}

/// A cluster of real processes: a metadata quorum and (optionally) storage brokers.
pub struct MetadataCluster {
    exe: PathBuf,
    dir: PathBuf,
    /// The topology every node was started with.
    pub config: ServicesConfig,
    children: BTreeMap<NodeId, Child>,
    brokers: BTreeMap<BrokerId, Child>,
    http: reqwest::Client,
}

impl MetadataCluster {
    /// Writes `services.json` for `nodes` metadata nodes on free ports under `dir`.
    pub fn new(exe: &Path, dir: &Path, nodes: u64, controller: ControllerConfig) -> Self {
        let config = loopback_quorum_config(nodes, controller);
        Self {
            exe: exe.to_path_buf(),
            dir: dir.to_path_buf(),
            config,
            children: BTreeMap::new(),
            brokers: BTreeMap::new(),
            http: http_client(None),
        }
    }

    /// Path of the cluster's `services.json`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("services.json")
    }

    /// Data directory of node `id`.
    pub fn data_dir(&self, id: NodeId) -> PathBuf {
        self.dir.join(format!("meta-{id}"))
    }

    /// Log file of node `id` (stderr and stdout of every run, appended).
    pub fn log_path(&self, id: NodeId) -> PathBuf {
        self.dir.join(format!("meta-{id}.log"))
    }

    /// Base URL of node `id`.
    pub fn url(&self, id: NodeId) -> String {
        self.config
            .metadata_node(id)
            .map(|n| n.base_url())
            .unwrap_or_default()
    }

    /// Node ids, ascending.
    pub fn ids(&self) -> Vec<NodeId> {
        self.config
            .services
            .metadata_services
            .iter()
            .map(|n| n.id)
            .collect()
    }

    /// Adds `count` storage brokers (ids 101, 102, …) on free ports; call before
    /// [`MetadataCluster::start_all`].
    pub fn with_brokers(mut self, count: i32) -> Self {
        for i in 0..count {
            let port = free_port();
            self.config
                .services
                .storage_services
                .push(StorageNodeConfig {
                    id: 101 + i,
                    host: "127.0.0.1".into(),
                    port,
                    kafka_port: Some(free_port()),
                    url: Some(format!("http://127.0.0.1:{port}")),
                    listeners: Vec::new(),
                });
        }
        self
    }

    /// Broker ids, ascending.
    pub fn broker_ids(&self) -> Vec<BrokerId> {
        self.config
            .services
            .storage_services
            .iter()
            .map(|b| b.id)
            .collect()
    }

    /// Kafka bootstrap list of every configured broker (`127.0.0.1:p1,127.0.0.1:p2,…`).
    pub fn bootstrap(&self) -> String {
        self.config
            .services
            .storage_services
            .iter()
            .map(|b| format!("{}:{}", b.host, b.kafka_port()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kafka address of broker `id`.
    pub fn kafka_addr(&self, id: BrokerId) -> String {
        self.config
            .storage_node(id)
            .map(|b| format!("{}:{}", b.host, b.kafka_port()))
            .unwrap_or_default()
    }

    /// HTTP base URL of broker `id`.
    pub fn broker_url(&self, id: BrokerId) -> String {
        self.config
            .storage_node(id)
            .map(|b| b.base_url())
            .unwrap_or_default()
    }

    pub fn broker_data_dir(&self, id: BrokerId) -> PathBuf {
        self.dir.join(format!("broker-{id}"))
    }

    pub fn broker_log_path(&self, id: BrokerId) -> PathBuf {
        self.dir.join(format!("broker-{id}.log"))
    }

    /// Starts every metadata node, then every broker.
    pub fn start_all(&mut self) -> std::io::Result<()> {
        if self.config.http_tls() {
            // With `security.http.tls` every node is reached at https://.
            self.config.use_https_urls();
        }
        self.write_config()?;
        // With `security.http.tls` the nodes speak HTTPS: trust the cluster's CA.
        self.http = http_client(self.config.security.as_ref());
        for id in self.ids() {
            self.start(id)?;
        }
        for id in self.broker_ids() {
            self.start_broker(id)?;
        }
        Ok(())
    }

    /// (Re)writes `services.json` from [`MetadataCluster::config`].
    pub fn write_config(&self) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(&self.config).map_err(std::io::Error::other)?;
        std::fs::write(self.config_path(), text)
    }

    /// Starts (or restarts) broker `id` on its data dir.
    pub fn start_broker(&mut self, id: BrokerId) -> std::io::Result<()> {
        let child = self.spawn(
            &["broker", "--broker-id", &id.to_string()],
            &self.broker_data_dir(id),
            &self.broker_log_path(id),
        )?;
        self.brokers.insert(id, child);
        Ok(())
    }

    /// Runs `dmq <role args> --config <services.json> --data-dir <data>`, appending its
    /// stdout and stderr to `log`.
    fn spawn(&self, role: &[&str], data: &Path, log: &Path) -> std::io::Result<Child> {
        let log = File::options().create(true).append(true).open(log)?;
        Command::new(&self.exe)
            .args(role)
            .arg("--config")
            .arg(self.config_path())
            .arg("--data-dir")
            .arg(data)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
    }

    /// SIGKILLs broker `id` and reaps it.
    pub fn kill_broker(&mut self, id: BrokerId) {
        if let Some(mut child) = self.brokers.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (e.g. `libc::SIGSTOP`, `libc::SIGCONT`) to broker `id`'s process.
    pub fn signal_broker(&self, id: BrokerId, signal: i32) -> std::io::Result<()> {
        let child = self.brokers.get(&id).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("broker {id} is not running"),
            )
        })?;
        signal_child(child, signal)
    }

    /// Sends `signal` to metadata node `id`'s process.
    pub fn signal_node(&self, id: NodeId, signal: i32) -> std::io::Result<()> {
        let child = self.children.get(&id).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("metadata node {id} is not running"),
            )
        })?;
        signal_child(child, signal)
    }

    /// SIGTERMs broker `id` and waits up to `timeout` for it to exit; `None` if it did not (it
    /// is SIGKILLed then). The broker is no longer running afterwards either way.
    pub async fn terminate_broker(
        &mut self,
        id: BrokerId,
        timeout: Duration,
    ) -> Option<std::process::ExitStatus> {
        self.signal_broker(id, libc::SIGTERM).ok()?;
        let mut child = self.brokers.remove(&id)?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `req` with the cluster's bearer token when its HTTP APIs are secured.
    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match dmq_types::http::BearerTokens::from_config(self.config.security.as_ref()) {
            Some(t) => req.header(reqwest::header::AUTHORIZATION, t.internal_header()),
            None => req,
        }
    }

    /// GET `path` on broker `id`'s HTTP port.
    pub async fn broker_get(&self, id: BrokerId, path: &str) -> Option<(u16, Value)> {
        let resp = self
            .authorized(self.http.get(format!("{}{path}", self.broker_url(id))))
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.json().await.ok()?))
    }

    /// Waits until every broker is registered, ONLINE and reports itself UP.
    pub async fn wait_for_brokers(&self, timeout: Duration) -> Result<(), String> {
        let ids = self.broker_ids();
        wait_until(timeout, "every broker registered and UP", || {
            let ids = ids.clone();
            async move {
                for id in ids {
                    match self.broker_get(id, "/health").await {
                        Some((200, v)) if v["status"] == "UP" => {}
                        _ => return None,
                    }
                }
                Some(())
            }
        })
        .await
    }

    /// Starts (or restarts) node `id` on its data dir.
    pub fn start(&mut self, id: NodeId) -> std::io::Result<()> {
        let child = self.spawn(
            &["metadata", "--node-id", &id.to_string()],
            &self.data_dir(id),
            &self.log_path(id),
        )?;
        self.children.insert(id, child);
        Ok(())
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill(&mut self, id: NodeId) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether node `id`'s process is running.
    pub fn is_running(&self, id: NodeId) -> bool {
        self.children.contains_key(&id)
    }

    /// GET `path` on node `id`; `None` on any transport error or non-JSON answer.
    pub async fn get(&self, id: NodeId, path: &str) -> Option<(u16, Value)> {
        let resp = self
            .authorized(self.http.get(format!("{}{path}", self.url(id))))
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.json().await.ok()?))
    }

    /// POST JSON to `path` on node `id`, returning status, headers and body.
    pub async fn post(
        &self,
        id: NodeId,
        path: &str,
        body: &Value,
    ) -> Option<(u16, reqwest::header::HeaderMap, Value)> {
        self.send_json(reqwest::Method::POST, id, path, body).await
    }

    /// PATCH JSON to `path` on node `id`, returning status, headers and body.
    pub async fn patch(
        &self,
        id: NodeId,
        path: &str,
        body: &Value,
    ) -> Option<(u16, reqwest::header::HeaderMap, Value)> {
        self.send_json(reqwest::Method::PATCH, id, path, body).await
    }

    /// `method` with a JSON body to `path` on node `id`: status, headers and body.
    async fn send_json(
        &self,
        method: reqwest::Method,
        id: NodeId,
        path: &str,
        body: &Value,
    ) -> Option<(u16, reqwest::header::HeaderMap, Value)> {
        let resp = self
            .authorized(self.http.request(method, format!("{}{path}", self.url(id))))
            .json(body)
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        Some((status, headers, resp.json().await.unwrap_or(Value::Null)))
    }

    /// POSTs `body` to `path` on each running node but `except` in turn until one answers 201;
    /// returns that node. This is how a client finds the controller after the old one died.
    pub async fn post_until_created(
        &self,
        except: NodeId,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<NodeId, String> {
        let candidates: Vec<NodeId> = self
            .children
            .keys()
            .copied()
            .filter(|id| *id != except)
            .collect();
        wait_until(timeout, &format!("a node to accept POST {path}"), || {
            let candidates = candidates.clone();
            async move {
                for id in candidates {
                    if let Some((201, _, _)) = self.post(id, path, body).await {
                        return Some(id);
                    }
                }
                None
            }
        })
        .await
    }

    /// `/api/v1/raft/status` of node `id`.
    pub async fn status(&self, id: NodeId) -> Option<Value> {
        match self.get(id, "/api/v1/raft/status").await {
            Some((200, v)) => Some(v),
            _ => None,
        }
    }

    /// The id of the node that reports itself leader, among running nodes, if exactly one does.
    pub async fn leader(&self) -> Option<NodeId> {
        let mut leaders = Vec::new();
        for id in self.children.keys() {
            if let Some(s) = self.status(*id).await {
                if s["isLeader"] == Value::Bool(true) {
                    leaders.push(*id);
                }
            }
        }
        (leaders.len() == 1).then(|| leaders[0])
    }

    /// Waits for a single leader among the running nodes.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, String> {
        wait_until(timeout, "a single Raft leader", || self.leader()).await
    }
}

impl Drop for MetadataCluster {
    fn drop(&mut self) {
        for id in self.broker_ids() {
            self.kill_broker(id);
        }
        for id in self.ids() {
            self.kill(id);
        }
    }
}

/// kill(2) of a child process we spawned.
fn signal_child(child: &std::process::Child, signal: i32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(child.id())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: kill(2) on a child we spawned and have not reaped; no memory is involved.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
