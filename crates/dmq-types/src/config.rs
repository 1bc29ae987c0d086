//! The `config/services.json` model (SPEC §2): the seeds' schema plus `kafkaPort`, controller
//! timings and topic defaults. Unknown fields are ignored; missing ones take defaults.
//!
//! ```text
//! { "services": { "metadata-services": [ {id, host, port, url} … ],
//!                 "storage-services":  [ {id, host, port, kafkaPort, url} … ] },
//!   "controller": { electionTimeoutMs, raftHeartbeatIntervalMs,
//!                   brokerHeartbeatIntervalMs, brokerSessionTimeoutMs, … },
//!   "metadata":   { "sync": { syncTimeoutMs, periodicRefreshIntervalMs } },
//!   "topicDefaults": { numPartitions, defaultReplicationFactor } }
//! ```

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::limits::*;
use crate::security::{ListenerConfig, SecurityConfig, SecurityProtocol};
use crate::{BrokerId, ConfigProblem, NodeId, TypesError};

/// The whole `services.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicesConfig {
    /// Where every metadata node and storage broker listens.
    #[serde(default)]
    pub services: Services,
    /// Raft and broker-liveness timings.
    #[serde(default)]
    pub controller: ControllerConfig,
    /// How brokers keep their metadata cache fresh.
    #[serde(default)]
    pub metadata: MetadataSection,
    /// Defaults for topics created without explicit settings (Kafka auto-creation, CLI).
    #[serde(default)]
    pub topic_defaults: TopicDefaults,
    /// TLS, SASL, ACLs and HTTP tokens (SPEC §11); absent: everything is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<SecurityConfig>,
}

/// The `services` section: the static topology.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Services {
    /// The Raft quorum members. Three in the example; one or five work too.
    #[serde(rename = "metadata-services", default)]
    pub metadata_services: Vec<MetadataNodeConfig>,
    /// The storage brokers known up front. More may join with explicit flags.
    #[serde(rename = "storage-services", default)]
    pub storage_services: Vec<StorageNodeConfig>,
}

/// One metadata node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataNodeConfig {
    /// Raft node id; unique within the quorum.
    pub id: NodeId,
    /// Host name or address the node is reached at.
    pub host: String,
    /// HTTP port: the API of SPEC §3 and the internal Raft RPCs.
    pub port: u16,
    /// Base URL; derived from host and port when absent.
    #[serde(default)]
    pub url: Option<String>,
}

impl MetadataNodeConfig {
    /// The node's base URL, `http://host:port` unless the file says otherwise.
    pub fn base_url(&self) -> String {
        base_url(self.url.as_deref(), &self.host, self.port)
    }
}

/// One storage broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageNodeConfig {
    /// Broker id; unique among brokers.
    pub id: BrokerId,
    /// Host name or address the broker is reached at.
    pub host: String,
    /// HTTP port (the seeds' storage API).
    pub port: u16,
    /// Kafka wire-protocol port; `port + 11011` when absent (8081 → 19092, as in the example).
    #[serde(default)]
    pub kafka_port: Option<u16>,
    /// Base URL; derived from host and port when absent.
    #[serde(default)]
    pub url: Option<String>,
    /// Kafka listeners beside `kafkaPort`, each with its own protocol (SPEC §11).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerConfig>,
}

impl StorageNodeConfig {
    /// The broker's Kafka port, explicit or derived.
    pub fn kafka_port(&self) -> u16 {
        self.kafka_port
            .unwrap_or_else(|| self.port.saturating_add(11_011))
    }

    /// The broker's HTTP base URL.
    pub fn base_url(&self) -> String {
        base_url(self.url.as_deref(), &self.host, self.port)
    }
}

/// Controller timings. Defaults are faster than the seeds' so that failover takes about a second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ControllerConfig {
    /// A follower that hears nothing from the leader for 1.0–1.2 × this starts an election.
    pub election_timeout_ms: u64,
    /// Interval of the Raft leader's heartbeats (AppendEntries with no entries).
    pub raft_heartbeat_interval_ms: u64,
    /// Interval of broker heartbeats to the controller.
    pub broker_heartbeat_interval_ms: u64,
    /// A broker with no heartbeat for this long is marked OFFLINE and loses its leaderships.
    pub broker_session_timeout_ms: u64,
    /// A follower that has not caught up with its leader for this long leaves the ISR (Kafka's
    /// `replica.lag.time.max.ms`; a dead broker leaves sooner, when it is fenced).
    pub replica_lag_time_max_ms: u64,
    /// Applied entries between two snapshots of the metadata state machine.
    pub snapshot_interval_entries: u64,
    /// Entries kept in the Raft log behind the latest snapshot.
    pub snapshot_log_entries_kept: u64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            election_timeout_ms: ELECTION_TIMEOUT_MS_DEFAULT,
            raft_heartbeat_interval_ms: RAFT_HEARTBEAT_INTERVAL_MS_DEFAULT,
            broker_heartbeat_interval_ms: BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT,
            broker_session_timeout_ms: BROKER_SESSION_TIMEOUT_MS_DEFAULT,
            replica_lag_time_max_ms: REPLICA_LAG_TIME_MAX_MS_DEFAULT,
            snapshot_interval_entries: SNAPSHOT_INTERVAL_ENTRIES_DEFAULT,
            snapshot_log_entries_kept: SNAPSHOT_LOG_ENTRIES_KEPT_DEFAULT,
        }
    }
}

/// The `metadata` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataSection {
    /// Broker-side metadata synchronisation.
    #[serde(default)]
    pub sync: MetadataSyncConfig,
}

/// How brokers keep their metadata cache fresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MetadataSyncConfig {
    /// Time limit of one metadata pull.
    pub sync_timeout_ms: u64,
    /// Pull metadata at least this often even when heartbeats show no newer version.
    pub periodic_refresh_interval_ms: u64,
}

impl Default for MetadataSyncConfig {
    fn default() -> Self {
        Self {
            sync_timeout_ms: 30_000,
            periodic_refresh_interval_ms: 120_000,
        }
    }
}

/// Cluster defaults for new topics (`num.partitions`, `default.replication.factor`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicDefaults {
    /// Partitions of a topic created without an explicit count.
    pub num_partitions: i32,
    /// Replication factor of a topic created without an explicit one (capped by ONLINE brokers).
    pub default_replication_factor: i16,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        Self {
            num_partitions: 1,
            default_replication_factor: 3,
        }
    }
}

/// A node's HTTP base URL: the configured `url` without a trailing slash, else `http://host:port`.
fn base_url(url: Option<&str>, host: &str, port: u16) -> String {
    match url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => format!("http://{host}:{port}"),
    }
}

impl ServicesConfig {
    /// The built-in example topology of SPEC §2: metadata nodes 1-3 on 9091-9093, brokers
    /// 101-103 on HTTP 8081-8083 and Kafka 19092-19094, all on localhost.
    pub fn example() -> Self {
        let metadata_services = (1..=3)
            .map(|id| MetadataNodeConfig {
                id,
                host: "localhost".into(),
                port: 9090 + id as u16,
                url: Some(format!("http://localhost:{}", 9090 + id)),
            })
            .collect();
        let storage_services = (0..3)
            .map(|i| StorageNodeConfig {
                id: 101 + i,
                host: "localhost".into(),
                port: 8081 + i as u16,
                kafka_port: Some(19092 + i as u16),
                url: Some(format!("http://localhost:{}", 8081 + i)),
                listeners: Vec::new(),
            })
            .collect();
        Self {
            services: Services {
                metadata_services,
                storage_services,
            },
            controller: ControllerConfig::default(),
            metadata: MetadataSection::default(),
            topic_defaults: TopicDefaults::default(),
            security: None,
        }
    }

    /// Reads, parses and validates a `services.json`.
    pub fn load(path: &Path) -> Result<Self, TypesError> {
        let text = std::fs::read_to_string(path).map_err(|source| TypesError::ConfigRead {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = Self::parse(&text, &path.display().to_string())?;
        if let Some(sec) = &mut config.security {
            let base = path.parent().unwrap_or(Path::new("."));
            let problems = sec.resolve(base);
            if !problems.is_empty() {
                return Err(TypesError::ConfigInvalid {
                    path: path.display().to_string(),
                    problems,
                });
            }
        }
        Ok(config)
    }

    /// With `security.http.tls`, a node without a `url` is reached at `https://host:port`.
    fn default_https_urls(&mut self) {
        if !self.http_tls() {
            return;
        }
        let https = |url: &mut Option<String>, host: &str, port: u16| {
            if url.is_none() {
                *url = Some(format!("https://{host}:{port}"));
            }
        };
        for m in &mut self.services.metadata_services {
            https(&mut m.url, &m.host, m.port);
        }
        for b in &mut self.services.storage_services {
            https(&mut b.url, &b.host, b.port);
        }
    }

    /// Points every node URL at `https://` (a configured `http://` one too): for `dmq dev
    /// --secure` and test clusters, which write their own topology.
    pub fn use_https_urls(&mut self) {
        let https = |url: &mut Option<String>, host: &str, port: u16| {
            let rest = url
                .as_deref()
                .and_then(|u| u.strip_prefix("http://"))
                .map(str::to_string);
            match rest {
                Some(rest) => *url = Some(format!("https://{rest}")),
                None if url.is_none() => *url = Some(format!("https://{host}:{port}")),
                None => {}
            }
        };
        for m in &mut self.services.metadata_services {
            https(&mut m.url, &m.host, m.port);
        }
        for b in &mut self.services.storage_services {
            https(&mut b.url, &b.host, b.port);
        }
    }

    /// Whether every HTTP API speaks HTTPS (`security.http.tls`).
    pub fn http_tls(&self) -> bool {
        self.security
            .as_ref()
            .and_then(|s| s.http.as_ref())
            .is_some_and(|h| h.tls)
    }

    /// `https` with `security.http.tls`, else `http`: the scheme of URLs built from a host and
    /// a port (brokers as the metadata registers them).
    pub fn http_scheme(&self) -> &'static str {
        if self.http_tls() {
            "https"
        } else {
            "http"
        }
    }

    /// The protocol of a broker's `kafkaPort`: PLAINTEXT without a `security` section,
    /// SASL_PLAINTEXT with one.
    pub fn kafka_port_protocol(&self) -> SecurityProtocol {
        self.security
            .as_ref()
            .map_or(SecurityProtocol::Plaintext, |s| s.default_protocol())
    }

    /// Parses and validates `services.json` text; `origin` names it in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self, TypesError> {
        let mut config: Self =
            serde_json::from_str(text).map_err(|e| TypesError::ConfigSyntax {
                path: origin.to_string(),
                message: e.to_string(),
            })?;
        config.default_https_urls();
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(TypesError::ConfigInvalid {
                path: origin.to_string(),
                problems,
            })
        }
    }

    /// Every inconsistency in the file, one clear sentence each. Empty when the file is usable.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut say = |s: String| problems.push(ConfigProblem(s));
        let meta = &self.services.metadata_services;
        if meta.is_empty() {
            say("\"metadata-services\" is empty: at least one metadata node is needed".into());
        }
        let mut node_ids = HashMap::new();
        for node in meta {
            if node_ids.insert(node.id, ()).is_some() {
                say(format!(
                    "metadata node id {} appears more than once",
                    node.id
                ));
            }
            if node.id == 0 {
                say("metadata node id 0 is reserved; use ids from 1".into());
            }
        }
        let mut broker_ids = HashMap::new();
        for broker in &self.services.storage_services {
            if broker_ids.insert(broker.id, ()).is_some() {
                say(format!(
                    "storage broker id {} appears more than once",
                    broker.id
                ));
            }
            if broker.id < 0 {
                say(format!("storage broker id {} is negative", broker.id));
            }
        }
        // Every listening socket must be unique: two services on one host:port cannot both bind.
        let mut sockets: HashMap<(String, u16), String> = HashMap::new();
        let mut claim = |host: &str, port: u16, who: String, say: &mut dyn FnMut(String)| {
            if port == 0 {
                say(format!("{who} has port 0; give it a real port"));
                return;
            }
            if let Some(first) = sockets.insert((host.to_string(), port), who.clone()) {
                say(format!(
                    "port {port} on {host} is used by both {first} and {who}"
                ));
            }
        };
        for node in meta {
            claim(
                &node.host,
                node.port,
                format!("metadata node {}", node.id),
                &mut say,
            );
        }
        for b in &self.services.storage_services {
            claim(&b.host, b.port, format!("broker {} (HTTP)", b.id), &mut say);
            claim(
                &b.host,
                b.kafka_port(),
                format!("broker {} (Kafka)", b.id),
                &mut say,
            );
            for l in &b.listeners {
                claim(
                    &b.host,
                    l.port,
                    format!("broker {} (listener {})", b.id, l.name),
                    &mut say,
                );
                let sec = self.security.as_ref();
                if l.protocol.uses_tls() && sec.and_then(|s| s.tls.as_ref()).is_none() {
                    say(format!(
                        "broker {} listener {} is {} but security.tls is not set",
                        b.id,
                        l.name,
                        l.protocol.name()
                    ));
                }
                if l.protocol.uses_sasl() && sec.and_then(|s| s.sasl.as_ref()).is_none() {
                    say(format!(
                        "broker {} listener {} is {} but security.sasl is not set",
                        b.id,
                        l.name,
                        l.protocol.name()
                    ));
                }
            }
        }
        if let Some(sec) = &self.security {
            for p in sec.problems() {
                say(p.0);
            }
            if sec.sasl.is_none() {
                say("security is set but security.sasl is not: the Kafka port speaks SASL_PLAINTEXT".into());
            }
            if self.http_tls() {
                if sec.tls.as_ref().is_none_or(|t| t.ca_file.is_none()) {
                    say("security.http.tls needs security.tls with a caFile (the nodes call each other over HTTPS and must trust each other's certificates)".into());
                }
                let urls = self
                    .services
                    .metadata_services
                    .iter()
                    .map(|m| (format!("metadata node {}", m.id), &m.url))
                    .chain(
                        self.services
                            .storage_services
                            .iter()
                            .map(|b| (format!("broker {}", b.id), &b.url)),
                    );
                for (who, url) in urls {
                    if let Some(u) = url.as_deref().filter(|u| !u.starts_with("https://")) {
                        say(format!(
                            "{who}: url {u:?} must start with https:// with security.http.tls"
                        ));
                    }
                }
            }
        }
        let c = &self.controller;
        if c.election_timeout_ms == 0 || c.raft_heartbeat_interval_ms == 0 {
            say("controller timings must be positive".into());
        } else if c.raft_heartbeat_interval_ms * 3 > c.election_timeout_ms {
            // Followers start campaigning 1.0–1.2 × electionTimeoutMs after the last heartbeat,
            // with a random spread of 0.2 × electionTimeoutMs; a heartbeat must fit in that
            // window several times or healthy leaders get deposed.
            say(format!(
                "raftHeartbeatIntervalMs ({}) must be at most a third of electionTimeoutMs ({})",
                c.raft_heartbeat_interval_ms, c.election_timeout_ms
            ));
        }
        if c.broker_heartbeat_interval_ms == 0
            || c.broker_heartbeat_interval_ms >= c.broker_session_timeout_ms
        {
            say(format!(
                "brokerHeartbeatIntervalMs ({}) must be positive and smaller than brokerSessionTimeoutMs ({})",
                c.broker_heartbeat_interval_ms, c.broker_session_timeout_ms
            ));
        }
        if c.replica_lag_time_max_ms < 100 {
            say(format!(
                "replicaLagTimeMaxMs ({}) must be at least 100",
                c.replica_lag_time_max_ms
            ));
        }
        if c.snapshot_interval_entries == 0 {
            say("snapshotIntervalEntries must be positive".into());
        }
        let d = &self.topic_defaults;
        if d.num_partitions < 1 || d.num_partitions > TOPIC_PARTITIONS_MAX {
            say(format!(
                "topicDefaults.numPartitions ({}) must be within 1..={TOPIC_PARTITIONS_MAX}",
                d.num_partitions
            ));
        }
        if d.default_replication_factor < 1 {
            say("topicDefaults.defaultReplicationFactor must be at least 1".into());
        }
        problems
    }

    /// The metadata node with this id, if the file lists it.
    pub fn metadata_node(&self, id: NodeId) -> Option<&MetadataNodeConfig> {
        self.services.metadata_services.iter().find(|n| n.id == id)
    }

    /// The storage broker with this id, if the file lists it.
    pub fn storage_node(&self, id: BrokerId) -> Option<&StorageNodeConfig> {
        self.services.storage_services.iter().find(|n| n.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_is_valid_and_round_trips() {
        let example = ServicesConfig::example();
        assert!(example.problems().is_empty(), "{:?}", example.problems());
        let text = serde_json::to_string_pretty(&example).expect("serialises");
        let back = ServicesConfig::parse(&text, "example").expect("parses");
        assert_eq!(back, example);
        assert_eq!(back.storage_node(101).map(|b| b.kafka_port()), Some(19092));
    }

    #[test]
    fn seeds_file_without_new_fields_takes_defaults() {
        let text = r#"{"services":{"metadata-services":[
            {"id":1,"host":"localhost","port":9091,"url":"http://localhost:9091"}],
            "storage-services":[{"id":101,"host":"localhost","port":8081,"url":"http://localhost:8081"}]},
            "somethingElse": true}"#;
        let cfg = ServicesConfig::parse(text, "seed").expect("valid");
        assert_eq!(cfg.controller, ControllerConfig::default());
        assert_eq!(cfg.storage_node(101).map(|b| b.kafka_port()), Some(19092));
    }

    #[test]
    fn every_problem_is_reported_once() {
        let text = r#"{"services":{"metadata-services":[
            {"id":1,"host":"localhost","port":9091},
            {"id":1,"host":"localhost","port":9091}],
            "storage-services":[{"id":101,"host":"localhost","port":8081,"kafkaPort":9091}]},
            "controller":{"brokerHeartbeatIntervalMs":9000}}"#;
        let err = ServicesConfig::parse(text, "bad.json").expect_err("invalid");
        let TypesError::ConfigInvalid { problems, .. } = &err else {
            panic!("unexpected error {err}");
        };
        let all = err.to_string();
        assert_eq!(problems.len(), 4, "{all}");
        assert!(
            all.contains("metadata node id 1 appears more than once"),
            "{all}"
        );
        assert!(
            all.contains(
                "port 9091 on localhost is used by both metadata node 1 and metadata node 1"
            ),
            "{all}"
        );
        assert!(all.contains("broker 101 (Kafka)"), "{all}");
        assert!(all.contains("brokerHeartbeatIntervalMs (9000)"), "{all}");
    }

    #[test]
    fn https_urls_follow_security_http_tls() {
        let with = |security: &str, url: &str| {
            format!(
                r#"{{"services":{{"metadata-services":[
                    {{"id":1,"host":"h1","port":9091{url}}}],
                "storage-services":[{{"id":101,"host":"h2","port":8081}}]}},
                "security":{security}}}"#
            )
        };
        let sasl = r#""sasl":{"users":[{"name":"a","password":"p"}]},"interBroker":{"user":"a","password":"p"}"#;
        let tls = r#""tls":{"certFile":"c.pem","keyFile":"k.pem","caFile":"ca.pem"}"#;
        let on = format!(r#"{{{sasl},{tls},"http":{{"tls":true}}}}"#);
        let c = ServicesConfig::parse(&with(&on, ""), "x").expect("valid");
        assert!(c.http_tls());
        assert_eq!(c.http_scheme(), "https");
        assert_eq!(
            c.services.metadata_services[0].base_url(),
            "https://h1:9091"
        );
        assert_eq!(c.services.storage_services[0].base_url(), "https://h2:8081");
        // An explicit http:// URL contradicts it.
        let err = ServicesConfig::parse(&with(&on, r#","url":"http://h1:9091""#), "x")
            .expect_err("http url");
        assert!(
            err.to_string().contains("must start with https://"),
            "{err}"
        );
        // The nodes must trust each other: a CA is needed.
        let no_ca = format!(
            r#"{{{sasl},"tls":{{"certFile":"c.pem","keyFile":"k.pem"}},"http":{{"tls":true}}}}"#
        );
        let err = ServicesConfig::parse(&with(&no_ca, ""), "x").expect_err("no ca");
        assert!(err.to_string().contains("caFile"), "{err}");
        // Off: plain http, and `use_https_urls` turns configured URLs over.
        let off = format!(r#"{{{sasl},{tls}}}"#);
        let mut c =
            ServicesConfig::parse(&with(&off, r#","url":"http://h1:9091""#), "x").expect("valid");
        assert_eq!(c.http_scheme(), "http");
        assert_eq!(c.services.storage_services[0].base_url(), "http://h2:8081");
        c.use_https_urls();
        assert_eq!(
            c.services.metadata_services[0].base_url(),
            "https://h1:9091"
        );
        assert_eq!(c.services.storage_services[0].base_url(), "https://h2:8081");
    }

    #[test]
    fn malformed_json_is_a_syntax_error() {
        let err = ServicesConfig::parse("{\"services\": [", "x.json").expect_err("malformed");
        assert!(matches!(err, TypesError::ConfigSyntax { .. }), "{err}");
    }
}
