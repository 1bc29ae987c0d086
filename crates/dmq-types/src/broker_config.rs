//! The one table of broker configs: Kafka's names, types, ranges and defaults, and whether each
//! can change while the cluster runs. Dynamic configs are set for the whole cluster (Kafka's
//! `--entity-default`, resource name `""`) or for one broker, are stored in the metadata quorum
//! and take effect on the brokers without a restart; read-only ones come from services.json.
//!
//! Most dynamic broker configs are the cluster's defaults for a topic config (`log.retention.ms`
//! for `retention.ms`, ...): a topic without its own value takes the broker's, then the
//! cluster's, then the built-in default — Kafka's order of config sources.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::topic_config::{
    choice, def, validate_value, ConfigType, TopicConfigDef, I32_MAX, I64_MAX,
};
use crate::BrokerId;

/// Whether a broker config can change at run time (Kafka's update modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    /// Only from services.json, at start.
    ReadOnly,
    /// For the whole cluster or per broker, without a restart.
    ClusterWide,
}

/// One broker config.
#[derive(Debug, Clone, Copy)]
pub struct BrokerConfigDef {
    /// Name, type, range, default and documentation, checked like a topic config.
    pub def: TopicConfigDef,
    pub mode: UpdateMode,
    /// The topic config this one is the cluster default of.
    pub topic_synonym: Option<&'static str>,
}

const fn dynamic(def: TopicConfigDef, topic_synonym: Option<&'static str>) -> BrokerConfigDef {
    BrokerConfigDef {
        def,
        mode: UpdateMode::ClusterWide,
        topic_synonym,
    }
}

const fn read_only(def: TopicConfigDef) -> BrokerConfigDef {
    BrokerConfigDef {
        def,
        mode: UpdateMode::ReadOnly,
        topic_synonym: None,
    }
}

/// Kafka's `log.cleaner.io.max.bytes.per.second` default here (Kafka leaves it unlimited): a
/// quarter of a modest SSD, so that compaction never starves producers.
pub const CLEANER_IO_BYTES_PER_SEC_DEFAULT: u64 = 64 << 20;

/// Every broker config dmq knows, Kafka's names and defaults.
pub const BROKER_CONFIGS: &[BrokerConfigDef] = &[
    read_only(def(
        "broker.id",
        ConfigType::Int,
        "",
        Some(0.0),
        Some(I32_MAX),
        true,
        "This broker's id (services.json or --broker-id).",
    )),
    read_only(def(
        "num.partitions",
        ConfigType::Int,
        "1",
        Some(1.0),
        Some(I32_MAX),
        true,
        "Partitions of an auto-created topic (services.json topicDefaults).",
    )),
    read_only(def(
        "default.replication.factor",
        ConfigType::Int,
        "1",
        Some(1.0),
        Some(I32_MAX),
        true,
        "Replication factor of an auto-created topic (services.json topicDefaults).",
    )),
    read_only(choice(
        "auto.create.topics.enable",
        ConfigType::Boolean,
        "true",
        &[],
        true,
        "Whether producing to or fetching metadata of an unknown topic creates it.",
    )),
    read_only(def(
        "log.dirs",
        ConfigType::String,
        "",
        None,
        None,
        true,
        "Where this broker keeps its partitions' logs.",
    )),
    dynamic(
        choice(
            "log.cleanup.policy",
            ConfigType::List,
            "delete",
            &["delete", "compact"],
            true,
            "Default cleanup.policy of topics.",
        ),
        Some("cleanup.policy"),
    ),
    dynamic(
        def(
            "log.retention.ms",
            ConfigType::Long,
            "604800000",
            Some(-1.0),
            Some(I64_MAX),
            true,
            "Default retention.ms of topics.",
        ),
        Some("retention.ms"),
    ),
    dynamic(
        def(
            "log.retention.bytes",
            ConfigType::Long,
            "-1",
            Some(-1.0),
            Some(I64_MAX),
            true,
            "Default retention.bytes of topics.",
        ),
        Some("retention.bytes"),
    ),
    dynamic(
        def(
            "log.segment.bytes",
            ConfigType::Int,
            "1073741824",
            Some(16384.0),
            Some(I32_MAX),
            true,
            "Default segment.bytes of topics.",
        ),
        Some("segment.bytes"),
    ),
    dynamic(
        def(
            "log.cleaner.delete.retention.ms",
            ConfigType::Long,
            "86400000",
            Some(0.0),
            Some(I64_MAX),
            true,
            "Default delete.retention.ms of topics.",
        ),
        Some("delete.retention.ms"),
    ),
    dynamic(
        def(
            "log.cleaner.min.cleanable.ratio",
            ConfigType::Double,
            "0.5",
            Some(0.0),
            Some(1.0),
            true,
            "Default min.cleanable.dirty.ratio of topics.",
        ),
        Some("min.cleanable.dirty.ratio"),
    ),
    dynamic(
        def(
            "log.cleaner.min.compaction.lag.ms",
            ConfigType::Long,
            "0",
            Some(0.0),
            Some(I64_MAX),
            true,
            "Default min.compaction.lag.ms of topics.",
        ),
        Some("min.compaction.lag.ms"),
    ),
    dynamic(
        def(
            "log.cleaner.max.compaction.lag.ms",
            ConfigType::Long,
            "9223372036854775807",
            Some(1.0),
            Some(I64_MAX),
            true,
            "Default max.compaction.lag.ms of topics.",
        ),
        Some("max.compaction.lag.ms"),
    ),
    dynamic(
        def(
            "group.share.record.lock.duration.ms",
            ConfigType::Int,
            "30000",
            Some(1000.0),
            Some(3_600_000.0),
            true,
            "How long a share-group member holds the records it acquired before they are \
             released to the others (KIP-932).",
        ),
        None,
    ),
    dynamic(
        def(
            "group.share.delivery.count.limit",
            ConfigType::Int,
            "5",
            Some(2.0),
            Some(10.0),
            true,
            "Deliveries after which an unacknowledged share-group record is archived (KIP-932).",
        ),
        None,
    ),
    dynamic(
        def(
            "log.cleaner.io.max.bytes.per.second",
            ConfigType::Double,
            "67108864",
            Some(0.0),
            None,
            true,
            "Cap on the log cleaner's reads and writes per broker (0 = no cap).",
        ),
        None,
    ),
    dynamic(
        def(
            "message.max.bytes",
            ConfigType::Int,
            "1048588",
            Some(0.0),
            Some(I32_MAX),
            true,
            "Default max.message.bytes of topics: the largest record batch accepted.",
        ),
        Some("max.message.bytes"),
    ),
    dynamic(
        def(
            "min.insync.replicas",
            ConfigType::Int,
            "1",
            Some(1.0),
            Some(I32_MAX),
            true,
            "Default min.insync.replicas of topics.",
        ),
        Some("min.insync.replicas"),
    ),
    dynamic(
        choice(
            "unclean.leader.election.enable",
            ConfigType::Boolean,
            "false",
            &[],
            true,
            "Default unclean.leader.election.enable of topics (the controller reads the \
             cluster-wide value).",
        ),
        Some("unclean.leader.election.enable"),
    ),
    dynamic(
        choice(
            "compression.type",
            ConfigType::String,
            "producer",
            &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"],
            false,
            "Default compression.type of topics.",
        ),
        Some("compression.type"),
    ),
];

/// The definition of broker config `name`, if dmq has one.
pub fn broker_config(name: &str) -> Option<&'static BrokerConfigDef> {
    BROKER_CONFIGS.iter().find(|d| d.def.name == name)
}

/// The broker config that is the cluster default of topic config `topic_key`.
pub fn broker_synonym(topic_key: &str) -> Option<&'static BrokerConfigDef> {
    BROKER_CONFIGS
        .iter()
        .find(|d| d.topic_synonym == Some(topic_key))
}

/// Checks that `name` may be set at run time to `value`; the error names the config and says
/// why (`Err((true, _))`: the config exists but is read-only — Kafka's INVALID_REQUEST rather
/// than INVALID_CONFIG).
pub fn validate_dynamic_broker_config(name: &str, value: &str) -> Result<(), (bool, String)> {
    let d = check_dynamic(name)?;
    validate_value(&d.def, value).map_err(|e| (false, e))
}

/// Checks that `name` is a dynamic broker config (for deletes).
pub fn check_dynamic(name: &str) -> Result<&'static BrokerConfigDef, (bool, String)> {
    let Some(d) = broker_config(name) else {
        return Err((false, format!("unknown broker config {name:?}")));
    };
    if d.mode == UpdateMode::ReadOnly {
        return Err((
            true,
            format!("{name} cannot be updated dynamically; it comes from services.json"),
        ));
    }
    Ok(d)
}

/// The dynamic broker configs in force: the cluster-wide defaults and per-broker values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerConfigs {
    /// Kafka's `--entity-default` configs.
    #[serde(default)]
    pub cluster: BTreeMap<String, String>,
    /// Per-broker configs, by broker id (in decimal: JSON object keys are strings, and
    /// integer keys do not survive serde's internally tagged enums).
    #[serde(default)]
    pub brokers: BTreeMap<String, BTreeMap<String, String>>,
}

/// Where a config's value in force comes from (Kafka's DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic,
    DynamicBroker,
    DynamicDefaultBroker,
    StaticBroker,
    Default,
}

impl ConfigSource {
    pub fn kafka_code(self) -> i8 {
        match self {
            ConfigSource::DynamicTopic => 1,
            ConfigSource::DynamicBroker => 2,
            ConfigSource::DynamicDefaultBroker => 3,
            ConfigSource::StaticBroker => 4,
            ConfigSource::Default => 5,
        }
    }
}

impl BrokerConfigs {
    /// The configs set for `broker` alone.
    pub fn of_broker(&self, broker: BrokerId) -> Option<&BTreeMap<String, String>> {
        self.brokers.get(&broker.to_string())
    }

    /// The dynamic value of broker config `name` for `broker` (`None`: the cluster default)
    /// and where it comes from, if one is set.
    pub fn dynamic_value(
        &self,
        broker: Option<BrokerId>,
        name: &str,
    ) -> Option<(&str, ConfigSource)> {
        broker
            .and_then(|b| self.of_broker(b))
            .and_then(|c| c.get(name))
            .map(|v| (v.as_str(), ConfigSource::DynamicBroker))
            .or_else(|| {
                self.cluster
                    .get(name)
                    .map(|v| (v.as_str(), ConfigSource::DynamicDefaultBroker))
            })
    }

    /// Every value topic config `key` has on `broker`, most specific first (Kafka's synonyms):
    /// the topic's own, the broker's, the cluster's, then the built-in default.
    pub fn topic_value_chain(
        &self,
        topic_config: &BTreeMap<String, String>,
        broker: Option<BrokerId>,
        key: &str,
        default: &str,
    ) -> Vec<(String, String, ConfigSource)> {
        let mut chain = Vec::new();
        if let Some(v) = topic_config.get(key) {
            chain.push((key.to_string(), v.clone(), ConfigSource::DynamicTopic));
        }
        if let Some(syn) = broker_synonym(key) {
            let name = syn.def.name;
            if let Some(v) = broker
                .and_then(|b| self.of_broker(b))
                .and_then(|c| c.get(name))
            {
                chain.push((name.to_string(), v.clone(), ConfigSource::DynamicBroker));
            }
            if let Some(v) = self.cluster.get(name) {
                chain.push((
                    name.to_string(),
                    v.clone(),
                    ConfigSource::DynamicDefaultBroker,
                ));
            }
        }
        chain.push((key.to_string(), default.to_string(), ConfigSource::Default));
        chain
    }

    /// A topic's configs as `broker` applies them: the topic's own values, and for every
    /// other topic config whose broker synonym is set dynamically, that value.
    pub fn effective_topic_config(
        &self,
        topic_config: &BTreeMap<String, String>,
        broker: Option<BrokerId>,
    ) -> BTreeMap<String, String> {
        let mut out = topic_config.clone();
        for d in BROKER_CONFIGS {
            let Some(key) = d.topic_synonym else {
                continue;
            };
            if out.contains_key(key) {
                continue;
            }
            if let Some((v, _)) = self.dynamic_value(broker, d.def.name) {
                out.insert(key.to_string(), v.to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic_config::topic_config;

    #[test]
    fn the_table_is_consistent_with_the_topic_table() {
        for d in BROKER_CONFIGS {
            assert_eq!(
                BROKER_CONFIGS
                    .iter()
                    .filter(|x| x.def.name == d.def.name)
                    .count(),
                1,
                "{}",
                d.def.name
            );
            if !d.def.default.is_empty() {
                assert_eq!(
                    validate_value(&d.def, d.def.default),
                    Ok(()),
                    "{}",
                    d.def.name
                );
            }
            if let Some(t) = d.topic_synonym {
                let t = topic_config(t).expect("the synonym is a topic config");
                assert_eq!(t.default, d.def.default, "{} ~ {}", d.def.name, t.name);
                assert_eq!(t.kind, d.def.kind, "{}", d.def.name);
                assert_eq!(d.mode, UpdateMode::ClusterWide);
            }
        }
    }

    #[test]
    fn only_dynamic_configs_may_change_and_values_are_checked() {
        assert_eq!(
            validate_dynamic_broker_config("log.retention.ms", "1000"),
            Ok(())
        );
        assert!(matches!(
            validate_dynamic_broker_config("log.retention.ms", "-7"),
            Err((false, e)) if e.contains("log.retention.ms")
        ));
        assert!(matches!(
            validate_dynamic_broker_config("broker.id", "3"),
            Err((true, e)) if e.contains("broker.id")
        ));
        assert!(matches!(
            validate_dynamic_broker_config("no.such.thing", "3"),
            Err((false, e)) if e.contains("unknown broker config")
        ));
    }

    #[test]
    fn a_topic_value_beats_the_broker_value_which_beats_the_cluster_default() {
        let mut c = BrokerConfigs::default();
        c.cluster.insert("log.retention.ms".into(), "1000".into());
        c.cluster.insert("min.insync.replicas".into(), "2".into());
        c.brokers
            .entry("3".into())
            .or_default()
            .insert("log.retention.ms".into(), "2000".into());
        let mut topic = BTreeMap::new();
        topic.insert("min.insync.replicas".to_string(), "1".to_string());
        let on3 = c.effective_topic_config(&topic, Some(3));
        assert_eq!(on3.get("retention.ms").map(String::as_str), Some("2000"));
        assert_eq!(
            on3.get("min.insync.replicas").map(String::as_str),
            Some("1")
        );
        let on1 = c.effective_topic_config(&topic, Some(1));
        assert_eq!(on1.get("retention.ms").map(String::as_str), Some("1000"));
        let chain = c.topic_value_chain(&topic, Some(3), "retention.ms", "604800000");
        let sources: Vec<ConfigSource> = chain.iter().map(|x| x.2).collect();
        assert_eq!(
            sources,
            vec![
                ConfigSource::DynamicBroker,
                ConfigSource::DynamicDefaultBroker,
                ConfigSource::Default
            ]
        );
        assert_eq!(chain[0].0, "log.retention.ms");
    }
}
