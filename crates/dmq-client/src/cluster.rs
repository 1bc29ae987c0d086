//! What the client knows about the cluster: brokers, topics and partition leaders (from
//! Metadata requests), and one pooled [`Connection`] per broker.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::conn::Connection;
use crate::error::{ClientError, Result};

/// A broker as the cluster advertises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
}

impl BrokerInfo {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: i32,
    /// -1 while the partition has no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// The partition's Kafka error code (0 = none; LEADER_NOT_AVAILABLE while it has no leader).
    pub error: i16,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub id: uuid::Uuid,
    pub internal: bool,
    pub partitions: Vec<PartitionInfo>,
    /// When a broker described the topic like this.
    pub fetched_at: Instant,
}

/// A snapshot of the cluster metadata.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: HashMap<String, Arc<TopicInfo>>,
}

impl Metadata {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicInfo>> {
        self.topics.get(name)
    }

    /// The leader of `topic`/`partition`, if it has one.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let p = self.topics.get(topic)?.partitions.get(partition as usize)?;
        (p.leader >= 0).then_some(p.leader)
    }
}

/// Connection settings shared by the producer, consumer and admin client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port,...` of any brokers; the rest are discovered.
    pub bootstrap: String,
    pub client_id: String,
    /// How long a request may wait for its response (Kafka's `request.timeout.ms`).
    pub request_timeout: Duration,
    /// Cached topic metadata older than this is fetched again before use, so producers and
    /// group leaders see partitions added to a topic (Kafka's `metadata.max.age.ms`, 5 min).
    pub metadata_max_age: Duration,
    /// TLS and/or SASL on every connection (Kafka's `security.protocol`); `None`: PLAINTEXT.
    pub security: Option<crate::security::Security>,
}

impl ClientConfig {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        ClientConfig {
            bootstrap: bootstrap.into(),
            client_id: "dmq-client".into(),
            request_timeout: Duration::from_secs(30),
            metadata_max_age: Duration::from_secs(300),
            security: None,
        }
    }
}

/// A topic name as the protocol carries it.
pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// The metadata cache and the connection pool. Shared (`Arc`) by everything one client runs.
pub struct Cluster {
    config: ClientConfig,
    bootstrap: Vec<String>,
    metadata: RwLock<Arc<Metadata>>,
    conns: Mutex<HashMap<i32, Arc<Connection>>>,
    /// Serialises connection attempts so that a burst of requests opens one connection per broker.
    connecting: tokio::sync::Mutex<()>,
}

impl Cluster {
    /// Connects to the bootstrap brokers and loads the broker list.
    pub async fn connect(config: ClientConfig) -> Result<Arc<Cluster>> {
        let bootstrap: Vec<String> = config
            .bootstrap
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if bootstrap.is_empty() {
            return Err(ClientError::Config("no bootstrap servers given".into()));
        }
        for b in &bootstrap {
            if !b.contains(':') {
                return Err(ClientError::Config(format!(
                    "bootstrap server {b:?} is not host:port"
                )));
            }
        }
        let cluster = Arc::new(Cluster {
            config,
            bootstrap,
            metadata: RwLock::new(Arc::new(Metadata::default())),
            conns: Mutex::new(HashMap::new()),
            connecting: tokio::sync::Mutex::new(()),
        });
        cluster.refresh(Some(&[]), false).await?;
        Ok(cluster)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The current metadata snapshot (cheap).
    pub fn metadata(&self) -> Arc<Metadata> {
        self.metadata
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Fetches metadata for `topics` (`None` = every topic) and merges it into the cache;
    /// `auto_create` asks the broker to create missing topics (as the Java producer does).
    pub async fn refresh(
        &self,
        topics: Option<&[String]>,
        auto_create: bool,
    ) -> Result<Arc<Metadata>> {
        let req = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(auto_create);
        let conn = self.any_broker().await?;
        let (resp, _) = conn.send(&req, Duration::ZERO).await?;
        Ok(self.merge(resp, topics.is_none()))
    }

    fn merge(&self, resp: MetadataResponse, all_topics: bool) -> Arc<Metadata> {
        let mut guard = self.metadata.write().unwrap_or_else(|p| p.into_inner());
        let mut next = Metadata::clone(&guard);
        next.cluster_id = resp.cluster_id.map(|s| s.to_string());
        next.controller_id = resp.controller_id.0;
        next.brokers = resp
            .brokers
            .iter()
            .map(|b| {
                (
                    b.node_id.0,
                    BrokerInfo {
                        id: b.node_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                    },
                )
            })
            .collect();
        if all_topics {
            next.topics.clear();
        }
        for t in resp.topics {
            let Some(name) = t.name.map(|n| n.0.to_string()) else {
                continue;
            };
            if t.error_code != 0 {
                next.topics.remove(&name);
                continue;
            }
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b: &BrokerId| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    error: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            next.topics.insert(
                name.clone(),
                Arc::new(TopicInfo {
                    name,
                    id: uuid::Uuid::from_bytes(*t.topic_id.as_bytes()),
                    internal: t.is_internal,
                    partitions,
                    fetched_at: Instant::now(),
                }),
            );
        }
        let next = Arc::new(next);
        *guard = next.clone();
        // Drop pooled connections to brokers that left the cluster.
        let ids: Vec<i32> = next.brokers.keys().copied().collect();
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| ids.contains(id));
        next
    }

    /// The cached metadata of `topic` while it is younger than `metadata_max_age`.
    pub fn fresh_topic(&self, topic: &str) -> Option<Arc<TopicInfo>> {
        self.metadata()
            .topic(topic)
            .filter(|t| t.fetched_at.elapsed() < self.config.metadata_max_age)
            .cloned()
    }

    /// Metadata for `topic`: the cache while fresh, else fetched (and auto-created when
    /// `auto_create`). When a refresh of stale metadata fails, the stale copy serves.
    pub async fn topic(&self, topic: &str, auto_create: bool) -> Result<Arc<TopicInfo>> {
        if let Some(t) = self.fresh_topic(topic) {
            return Ok(t);
        }
        let stale = self.metadata().topic(topic).cloned();
        match self.refresh(Some(&[topic.to_string()]), auto_create).await {
            Ok(meta) => meta
                .topic(topic)
                .cloned()
                .ok_or_else(|| ClientError::kafka(3, format!("topic {topic}"))),
            Err(e) => stale.ok_or(e),
        }
    }

    /// The pooled connection to broker `id`, opened (or re-opened after a failure) on demand.
    pub async fn broker(&self, id: i32) -> Result<Arc<Connection>> {
        if let Some(c) = self.pooled(id) {
            return Ok(c);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(c) = self.pooled(id) {
            return Ok(c);
        }
        // LEADER_NOT_AVAILABLE (retriable): while the controller moves leaderships away from a
        // dead broker, partitions may still name it after it left the broker list.
        let info =
            self.metadata().brokers.get(&id).cloned().ok_or_else(|| {
                ClientError::kafka(5, format!("broker {id} is not in the metadata"))
            })?;
        let conn = Arc::new(
            Connection::connect_secured(
                &info.addr(),
                &self.config.client_id,
                self.config.request_timeout,
                self.config.security.as_ref(),
            )
            .await?,
        );
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, conn.clone());
        Ok(conn)
    }

    fn pooled(&self, id: i32) -> Option<Arc<Connection>> {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.get(&id).filter(|c| !c.is_closed()).cloned()
    }

    /// A connection to any live broker (for requests any broker answers): known brokers
    /// first, then the bootstrap list; when none connects, the last connection error.
    pub async fn any_broker(&self) -> Result<Arc<Connection>> {
        let known: Vec<i32> = self.metadata().brokers.keys().copied().collect();
        let mut last = None;
        for id in known {
            match self.broker(id).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        for addr in &self.bootstrap {
            match Connection::connect_secured(
                addr,
                &self.config.client_id,
                self.config.request_timeout,
                self.config.security.as_ref(),
            )
            .await
            {
                Ok(c) => return Ok(Arc::new(c)),
                Err(e) => {
                    tracing::debug!(addr, "bootstrap connection failed: {e}");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Config("no bootstrap servers".into())))
    }

    /// A connection to the controller the brokers advertise (for CreateTopics/DeleteTopics),
    /// or any broker when none is advertised.
    pub async fn controller(&self) -> Result<Arc<Connection>> {
        let id = self.metadata().controller_id;
        if id >= 0 {
            if let Ok(c) = self.broker(id).await {
                return Ok(c);
            }
        }
        self.any_broker().await
    }
}
