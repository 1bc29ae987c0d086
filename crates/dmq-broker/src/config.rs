//! What a broker needs to know to run, and the per-topic settings it reads from topic configs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use dmq_log::{CleanupPolicy, LogConfig};
use dmq_types::security::{ListenerConfig, SecurityConfig, SecurityProtocol};
use dmq_types::{BrokerId, ServicesConfig, TopicDefaults, MESSAGE_BYTES_MAX_DEFAULT};

use crate::meta_client::MetadataUrl;

/// A broker's identity, addresses and timings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub broker_id: BrokerId,
    /// Advertised to clients and the controller; also bound unless `bind_host` is set.
    pub host: String,
    pub bind_host: Option<String>,
    pub http_port: u16,
    pub kafka_port: u16,
    pub data_dir: PathBuf,
    /// Base URLs of every metadata node, with the node ids services.json gives them: the
    /// controller, named by id, is reached at this URL (not the one the quorum hands out).
    pub metadata_urls: Vec<MetadataUrl>,
    pub heartbeat_interval: Duration,
    /// `brokerSessionTimeoutMs`: after this long without a successful heartbeat the controller
    /// has fenced this broker, so it stops acknowledging writes as a leader.
    pub session_timeout: Duration,
    /// `replica.lag.time.max.ms`: a follower this far from caught up leaves the ISR.
    pub replica_lag_time_max: Duration,
    /// Full metadata pull even when heartbeats show no change.
    pub periodic_refresh: Duration,
    /// Bound on one call to the metadata quorum.
    pub metadata_timeout: Duration,
    pub topic_defaults: TopicDefaults,
    /// services.json's `security` section (None: everything open).
    pub security: Option<SecurityConfig>,
    /// Every broker's extra Kafka listeners, by broker id (Metadata advertises the listener a
    /// client came in on).
    pub listeners: BTreeMap<BrokerId, Vec<ListenerConfig>>,
}

impl BrokerConfig {
    /// The broker `broker_id` of a services.json (it need not be listed there: SPEC §1 lets an
    /// unlisted broker join with explicit ports, which the caller sets afterwards).
    pub fn from_services(
        services: &ServicesConfig,
        broker_id: BrokerId,
        data_dir: PathBuf,
    ) -> BrokerConfig {
        let me = services.storage_node(broker_id);
        let http_port = me.map_or(0, |n| n.port);
        BrokerConfig {
            broker_id,
            host: me.map_or_else(|| "localhost".to_string(), |n| n.host.clone()),
            bind_host: None,
            http_port,
            kafka_port: me.map_or(0, |n| n.kafka_port()),
            data_dir,
            metadata_urls: services
                .services
                .metadata_services
                .iter()
                .map(|m| MetadataUrl {
                    node_id: Some(m.id),
                    url: m.base_url(),
                })
                .collect(),
            heartbeat_interval: Duration::from_millis(
                services.controller.broker_heartbeat_interval_ms.max(10),
            ),
            session_timeout: Duration::from_millis(
                services.controller.broker_session_timeout_ms.max(100),
            ),
            replica_lag_time_max: Duration::from_millis(
                services.controller.replica_lag_time_max_ms.max(100),
            ),
            periodic_refresh: Duration::from_millis(
                services
                    .metadata
                    .sync
                    .periodic_refresh_interval_ms
                    .max(1_000),
            ),
            metadata_timeout: Duration::from_millis(
                services.metadata.sync.sync_timeout_ms.clamp(500, 5_000),
            ),
            topic_defaults: services.topic_defaults.clone(),
            security: services.security.clone(),
            listeners: services
                .services
                .storage_services
                .iter()
                .map(|b| (b.id, b.listeners.clone()))
                .collect(),
        }
    }

    /// The protocol of `kafka_port`: PLAINTEXT without security, SASL_PLAINTEXT with it.
    pub fn kafka_port_protocol(&self) -> SecurityProtocol {
        if self.security.is_some() {
            SecurityProtocol::SaslPlaintext
        } else {
            SecurityProtocol::Plaintext
        }
    }

    pub fn http_url(&self) -> String {
        format!(
            "{}://{}:{}",
            dmq_types::https::scheme(self.security.as_ref()),
            self.host,
            self.http_port
        )
    }
}

/// Topic configs the broker acts on, with Kafka's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSettings {
    pub min_insync_replicas: usize,
    pub max_message_bytes: usize,
    pub log: LogSettings,
}

/// The part of [`TopicSettings`] that shapes the on-disk log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    pub segment_bytes: u64,
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<u64>,
    pub cleanup_policy: CleanupPolicy,
    pub delete_retention_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    /// `preallocate` (Kafka's default false): reserve the active segment's disk space ahead
    /// of the writer with `fallocate(2)`. Off by default because on ext4 a fallocate waits for
    /// the journal, which under write-back held appends for up to a second here.
    pub preallocate: bool,
}

fn parse<T: std::str::FromStr>(config: &BTreeMap<String, String>, key: &str) -> Option<T> {
    config.get(key).and_then(|v| v.trim().parse().ok())
}

impl TopicSettings {
    pub fn from_config(config: &BTreeMap<String, String>) -> TopicSettings {
        let cleanup_policy = match config.get("cleanup.policy").map(|s| s.replace(' ', "")) {
            Some(p) if p == "compact" => CleanupPolicy::Compact,
            Some(p) if p == "compact,delete" || p == "delete,compact" => {
                CleanupPolicy::DeleteAndCompact
            }
            _ => CleanupPolicy::Delete,
        };
        let retention_ms: i64 = parse(config, "retention.ms").unwrap_or(604_800_000);
        let retention_bytes: i64 = parse(config, "retention.bytes").unwrap_or(-1);
        TopicSettings {
            min_insync_replicas: parse::<usize>(config, "min.insync.replicas")
                .unwrap_or(1)
                .max(1),
            max_message_bytes: parse(config, "max.message.bytes")
                .unwrap_or(MESSAGE_BYTES_MAX_DEFAULT + 12),
            log: LogSettings {
                segment_bytes: parse(config, "segment.bytes")
                    .unwrap_or(dmq_log::SEGMENT_BYTES_DEFAULT)
                    .clamp(1 << 14, dmq_log::SEGMENT_BYTES_MAX),
                retention_ms: (retention_ms >= 0).then_some(retention_ms),
                retention_bytes: u64::try_from(retention_bytes).ok(),
                cleanup_policy,
                delete_retention_ms: parse(config, "delete.retention.ms")
                    .unwrap_or(dmq_log::DELETE_RETENTION_MS_DEFAULT),
                min_cleanable_dirty_ratio: parse::<f64>(config, "min.cleanable.dirty.ratio")
                    .filter(|r| (0.0..=1.0).contains(r))
                    .unwrap_or(0.5),
                min_compaction_lag_ms: parse(config, "min.compaction.lag.ms").unwrap_or(0),
                max_compaction_lag_ms: parse(config, "max.compaction.lag.ms").unwrap_or(i64::MAX),
                preallocate: parse(config, "preallocate").unwrap_or(false),
            },
        }
    }

    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.log.segment_bytes,
            max_batch_bytes: self.max_message_bytes,
            retention_ms: self.log.retention_ms,
            retention_bytes: self.log.retention_bytes,
            cleanup_policy: self.log.cleanup_policy,
            delete_retention_ms: self.log.delete_retention_ms,
            min_cleanable_dirty_ratio: self.log.min_cleanable_dirty_ratio,
            min_compaction_lag_ms: self.log.min_compaction_lag_ms,
            max_compaction_lag_ms: self.log.max_compaction_lag_ms,
            preallocate_bytes: if self.log.preallocate {
                dmq_log::PREALLOCATE_BYTES_DEFAULT
            } else {
                0
            },
            ..LogConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_settings_read_kafka_keys_and_fall_back_to_defaults() {
        let mut c = BTreeMap::new();
        let d = TopicSettings::from_config(&c);
        assert_eq!(d.min_insync_replicas, 1);
        assert_eq!(d.log.cleanup_policy, CleanupPolicy::Delete);
        assert_eq!(d.log.retention_ms, Some(604_800_000));
        c.insert("min.insync.replicas".into(), "2".into());
        c.insert("cleanup.policy".into(), "compact".into());
        c.insert("retention.ms".into(), "-1".into());
        c.insert("segment.bytes".into(), "garbage".into());
        let s = TopicSettings::from_config(&c);
        assert_eq!(s.min_insync_replicas, 2);
        assert_eq!(s.log.cleanup_policy, CleanupPolicy::Compact);
        assert_eq!(s.log.retention_ms, None);
        assert_eq!(s.log.segment_bytes, dmq_log::SEGMENT_BYTES_DEFAULT);
        assert_eq!(d.log_config().preallocate_bytes, 0, "Kafka's default: off");
        c.insert("preallocate".into(), "true".into());
        let s = TopicSettings::from_config(&c);
        assert_eq!(
            s.log_config().preallocate_bytes,
            dmq_log::PREALLOCATE_BYTES_DEFAULT
        );
    }
}
