//! Cutting one broker off from the metadata quorum on loopback, while clients and the other
//! brokers still reach it.
//!
//! The broker gets its own services.json in which every metadata node's URL is a TCP relay in
//! the test process ([`Netsplit`]); the metadata nodes and the other brokers use the real
//! addresses. The broker reaches the controller at the URL its own config gives the controller's
//! id, so all its traffic to the quorum goes through the relays, and [`Netsplit::cut`] silences
//! it as a network partition would: relayed connections stop carrying bytes (held open, never
//! answered) and new ones are accepted and never answered. [`Netsplit::heal`] closes the held
//! connections and relays again.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use dmq::procs::MetadataCluster;
use dmq_types::{BrokerId, ServicesConfig};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One relay per metadata node, all cut and healed together.
pub struct Netsplit {
    cut: watch::Sender<bool>,
    /// (metadata node id, relay port)
    relays: Vec<(u64, u16)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Netsplit {
    /// Starts a relay in front of every metadata node of `config`.
    pub async fn start(config: &ServicesConfig) -> Netsplit {
        let (cut, _) = watch::channel(false);
        let mut relays = Vec::new();
        let mut tasks = Vec::new();
        for node in &config.services.metadata_services {
            let target: SocketAddr = format!("{}:{}", node.host, node.port)
                .parse()
                .expect("metadata nodes listen on IP literals in tests");
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
            let port = listener.local_addr().expect("relay addr").port();
            relays.push((node.id, port));
            tasks.push(tokio::spawn(relay(listener, target, cut.subscribe())));
        }
        Netsplit { cut, relays, tasks }
    }

    /// `config` with every metadata node's address replaced by its relay's.
    pub fn routed(&self, config: &ServicesConfig) -> ServicesConfig {
        let mut routed = config.clone();
        for node in &mut routed.services.metadata_services {
            if let Some((_, port)) = self.relays.iter().find(|(id, _)| *id == node.id) {
                node.host = "127.0.0.1".into();
                node.port = *port;
                node.url = Some(format!("http://127.0.0.1:{port}"));
            }
        }
        routed
    }

    /// Silences every relayed connection and every new one.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Relays again; connections held during the cut are closed.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Netsplit {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn relay(listener: TcpListener, target: SocketAddr, cut: watch::Receiver<bool>) {
    let mut conns = tokio::task::JoinSet::new();
    while let Ok((inbound, _)) = listener.accept().await {
        let _ = inbound.set_nodelay(true);
        conns.spawn(connection(inbound, target, cut.clone()));
        // Reap finished connections so the set does not grow with the test.
        while conns.try_join_next().is_some() {}
    }
}

/// Relays one connection until either side closes it or the split is cut; during a cut the
/// inbound side is held open and unanswered (its bytes read and dropped) until healed.
async fn connection(mut inbound: TcpStream, target: SocketAddr, mut cut: watch::Receiver<bool>) {
    if !*cut.borrow_and_update() {
        let Ok(mut outbound) = TcpStream::connect(target).await else {
            return;
        };
        let _ = outbound.set_nodelay(true);
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
            _ = cut.wait_for(|c| *c) => {}
        }
    }
    // Blackholed: swallow what the broker sends, answer nothing, close once healed.
    let mut sink = [0u8; 4096];
    loop {
        tokio::select! {
            read = inbound.read(&mut sink) => {
                if matches!(read, Ok(0) | Err(_)) {
                    return;
                }
            }
            _ = cut.wait_for(|c| !*c) => return,
        }
    }
}

/// A broker process started with its own services.json (written next to the cluster's), on
/// the data dir and log file the cluster would give it. Killed when dropped.
pub struct OwnConfigBroker {
    child: Child,
    pub config_path: PathBuf,
}

impl OwnConfigBroker {
    pub fn start(
        cluster: &MetadataCluster,
        dir: &Path,
        id: BrokerId,
        config: &ServicesConfig,
    ) -> std::io::Result<OwnConfigBroker> {
        let config_path = dir.join(format!("services-broker-{id}.json"));
        let text = serde_json::to_string_pretty(config).map_err(std::io::Error::other)?;
        std::fs::write(&config_path, text)?;
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(cluster.broker_log_path(id))?;
        let child = Command::new(env!("CARGO_BIN_EXE_dmq"))
            .args(["broker", "--broker-id", &id.to_string()])
            .arg("--config")
            .arg(&config_path)
            .arg("--data-dir")
            .arg(cluster.broker_data_dir(id))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(OwnConfigBroker { child, config_path })
    }
}

impl Drop for OwnConfigBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
