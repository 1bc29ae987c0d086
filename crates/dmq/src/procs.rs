//! Real `dmq` processes on free loopback ports, for integration tests and failover benchmarks.
//!
//! Each cluster lives in its own directory: `services.json`, one data dir and one log file per
//! node. Ports are chosen by binding port 0, so suites can run side by side. Waiting is always on
//! a condition with a deadline ([`wait_until`]), never a bare sleep.

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dmq_types::{ControllerConfig, MetadataNodeConfig, NodeId, ServicesConfig};
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

/// A free TCP port on 127.0.0.1 (bound and released; the OS does not hand it out again soon).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
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

/// A metadata quorum of real processes.
pub struct MetadataCluster {
    exe: PathBuf,
    dir: PathBuf,
    /// The topology every node was started with.
    pub config: ServicesConfig,
    children: BTreeMap<NodeId, Child>,
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
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
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

    /// Starts every node.
    pub fn start_all(&mut self) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(&self.config).map_err(std::io::Error::other)?;
        std::fs::write(self.config_path(), text)?;
        for id in self.ids() {
            self.start(id)?;
        }
        Ok(())
    }

    /// Starts (or restarts) node `id` on its data dir.
    pub fn start(&mut self, id: NodeId) -> std::io::Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(id))?;
        let child = Command::new(&self.exe)
            .arg("metadata")
            .arg("--node-id")
            .arg(id.to_string())
            .arg("--config")
            .arg(self.config_path())
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
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
            .http
            .get(format!("{}{path}", self.url(id)))
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
        let resp = self
            .http
            .post(format!("{}{path}", self.url(id)))
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
        for id in self.ids() {
            self.kill(id);
        }
    }
}
