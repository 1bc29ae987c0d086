//! The one table of topic configs: every key Kafka defines for topics, with its type, valid
//! values, default and documentation. CreateTopics, AlterConfigs, IncrementalAlterConfigs,
//! DescribeConfigs, the HTTP API and the CLI all validate and describe through it, so a bad value
//! is refused where it enters (Kafka's INVALID_CONFIG) and nothing is stored.
//!
//! Keys dmq does not act on yet are still accepted when Kafka accepts them (Kafka Streams and
//! Connect create topics with them); [`TopicConfigDef::honoured`] says which ones act.

/// How a config's value is written and checked (Kafka's `ConfigDef.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    Int,
    Long,
    Double,
    String,
    /// Comma-separated values.
    List,
}

impl ConfigType {
    /// Kafka's DescribeConfigs `config_type` code (KIP-569).
    pub fn kafka_code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
        }
    }
}

/// One topic config.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfigDef {
    pub name: &'static str,
    pub kind: ConfigType,
    pub default: &'static str,
    /// Inclusive bounds for numbers.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The values a string (or each list element) may take; empty = any.
    pub allowed: &'static [&'static str],
    /// Whether dmq acts on it (the others are stored and described only).
    pub honoured: bool,
    pub doc: &'static str,
}

pub(crate) const fn def(
    name: &'static str,
    kind: ConfigType,
    default: &'static str,
    min: Option<f64>,
    max: Option<f64>,
    honoured: bool,
    doc: &'static str,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        kind,
        default,
        min,
        max,
        allowed: &[],
        honoured,
        doc,
    }
}

pub(crate) const fn choice(
    name: &'static str,
    kind: ConfigType,
    default: &'static str,
    allowed: &'static [&'static str],
    honoured: bool,
    doc: &'static str,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        kind,
        default,
        min: None,
        max: None,
        allowed,
        honoured,
        doc,
    }
}

pub(crate) const I32_MAX: f64 = i32::MAX as f64;
pub(crate) const I64_MAX: f64 = i64::MAX as f64;

/// Every topic config, Kafka's names and defaults.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    choice(
        "cleanup.policy",
        ConfigType::List,
        "delete",
        &["delete", "compact"],
        true,
        "delete: drop old segments by retention.ms/retention.bytes; compact: keep the last record per key.",
    ),
    choice(
        "compression.type",
        ConfigType::String,
        "producer",
        &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"],
        false,
        "Final compression of the topic's data; 'producer' keeps what the producer sent.",
    ),
    def(
        "delete.retention.ms",
        ConfigType::Long,
        "86400000",
        Some(0.0),
        Some(I64_MAX),
        true,
        "How long tombstones are kept in a compacted topic.",
    ),
    def(
        "file.delete.delay.ms",
        ConfigType::Long,
        "60000",
        Some(0.0),
        Some(I64_MAX),
        false,
        "Wait before a deleted segment's file is removed.",
    ),
    def(
        "flush.messages",
        ConfigType::Long,
        "9223372036854775807",
        Some(1.0),
        Some(I64_MAX),
        false,
        "Force an fsync after this many records (the broker's flush policy decides otherwise).",
    ),
    def(
        "flush.ms",
        ConfigType::Long,
        "9223372036854775807",
        Some(0.0),
        Some(I64_MAX),
        false,
        "Force an fsync after this long (the broker's flush policy decides otherwise).",
    ),
    choice(
        "follower.replication.throttled.replicas",
        ConfigType::List,
        "",
        &[],
        false,
        "Replicas whose follower fetches are throttled (partition:broker pairs, or *).",
    ),
    def(
        "index.interval.bytes",
        ConfigType::Int,
        "4096",
        Some(0.0),
        Some(I32_MAX),
        false,
        "Bytes between two offset index entries.",
    ),
    choice(
        "leader.replication.throttled.replicas",
        ConfigType::List,
        "",
        &[],
        false,
        "Replicas whose leader-side replication is throttled (partition:broker pairs, or *).",
    ),
    def(
        "max.compaction.lag.ms",
        ConfigType::Long,
        "9223372036854775807",
        Some(1.0),
        Some(I64_MAX),
        true,
        "Longest a record stays uncompacted.",
    ),
    def(
        "max.message.bytes",
        ConfigType::Int,
        "1048588",
        Some(0.0),
        Some(I32_MAX),
        true,
        "Largest record batch the topic accepts.",
    ),
    choice(
        "message.timestamp.type",
        ConfigType::String,
        "CreateTime",
        &["CreateTime", "LogAppendTime"],
        false,
        "Whether record timestamps are the producer's or the broker's append time.",
    ),
    def(
        "message.timestamp.after.max.ms",
        ConfigType::Long,
        "3600000",
        Some(0.0),
        Some(I64_MAX),
        false,
        "How far in the future a record's timestamp may be.",
    ),
    def(
        "message.timestamp.before.max.ms",
        ConfigType::Long,
        "9223372036854775807",
        Some(0.0),
        Some(I64_MAX),
        false,
        "How far in the past a record's timestamp may be.",
    ),
    def(
        "min.cleanable.dirty.ratio",
        ConfigType::Double,
        "0.5",
        Some(0.0),
        Some(1.0),
        true,
        "Share of the log that must be uncompacted before the cleaner runs.",
    ),
    def(
        "min.compaction.lag.ms",
        ConfigType::Long,
        "0",
        Some(0.0),
        Some(I64_MAX),
        true,
        "Shortest time a record stays uncompacted.",
    ),
    def(
        "min.insync.replicas",
        ConfigType::Int,
        "1",
        Some(1.0),
        Some(I32_MAX),
        true,
        "Replicas that must be in sync for an acks=all write to be accepted.",
    ),
    choice(
        "preallocate",
        ConfigType::Boolean,
        "false",
        &[],
        false,
        "Preallocate segment files.",
    ),
    def(
        "retention.bytes",
        ConfigType::Long,
        "-1",
        Some(-1.0),
        Some(I64_MAX),
        true,
        "Largest size a partition keeps before deleting old segments; -1 = no limit.",
    ),
    def(
        "retention.ms",
        ConfigType::Long,
        "604800000",
        Some(-1.0),
        Some(I64_MAX),
        true,
        "How long records are kept; -1 = forever.",
    ),
    def(
        "segment.bytes",
        ConfigType::Int,
        "1073741824",
        Some(16384.0),
        Some(I32_MAX),
        true,
        "Size at which a new segment file is started.",
    ),
    def(
        "segment.index.bytes",
        ConfigType::Int,
        "10485760",
        Some(4.0),
        Some(I32_MAX),
        false,
        "Size of each segment's offset index.",
    ),
    def(
        "segment.jitter.ms",
        ConfigType::Long,
        "0",
        Some(0.0),
        Some(I64_MAX),
        false,
        "Random jitter subtracted from segment.ms.",
    ),
    def(
        "segment.ms",
        ConfigType::Long,
        "604800000",
        Some(1.0),
        Some(I64_MAX),
        false,
        "Age at which a new segment file is started.",
    ),
    choice(
        "unclean.leader.election.enable",
        ConfigType::Boolean,
        "false",
        &[],
        true,
        "Whether a replica outside the ISR may lead when no in-sync replica can (may lose data).",
    ),
];

/// The definition of topic config `name`, if Kafka has one.
pub fn topic_config(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one topic config value; the error names the config and says why.
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), String> {
    let Some(d) = topic_config(name) else {
        return Err(format!("unknown topic config {name:?}"));
    };
    validate_value(d, value)
}

/// Checks `value` against one config definition (type, range, allowed values); the error
/// names the config and says why. Topic and broker configs share it.
pub fn validate_value(d: &TopicConfigDef, value: &str) -> Result<(), String> {
    let name = d.name;
    let bad = |why: String| Err(format!("invalid value {value:?} for {name}: {why}"));
    let v = value.trim();
    match d.kind {
        ConfigType::Boolean => {
            if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") {
                return bad("expected true or false".into());
            }
        }
        ConfigType::Int | ConfigType::Long => {
            let parsed = if d.kind == ConfigType::Int {
                v.parse::<i32>().map(f64::from).map_err(|e| e.to_string())
            } else {
                v.parse::<i64>()
                    .map(|x| x as f64)
                    .map_err(|e| e.to_string())
            };
            let n = match parsed {
                Ok(n) => n,
                Err(e) => {
                    let what = if d.kind == ConfigType::Int {
                        "a 32-bit integer"
                    } else {
                        "a 64-bit integer"
                    };
                    return bad(format!("expected {what} ({e})"));
                }
            };
            return check_range(d, n).or_else(bad);
        }
        ConfigType::Double => {
            let n: f64 = match v.parse() {
                Ok(n) if f64::is_finite(n) => n,
                _ => return bad("expected a number".into()),
            };
            return check_range(d, n).or_else(bad);
        }
        ConfigType::String => {
            if !d.allowed.is_empty() && !d.allowed.contains(&v) {
                return bad(format!("expected one of {}", d.allowed.join(", ")));
            }
        }
        ConfigType::List => {
            let items: Vec<&str> = v.split(',').map(str::trim).collect();
            if !d.allowed.is_empty() {
                if let Some(x) = items.iter().find(|x| !d.allowed.contains(x)) {
                    return bad(format!("{x:?} is not one of {}", d.allowed.join(", ")));
                }
            }
        }
    }
    Ok(())
}

fn check_range(d: &TopicConfigDef, n: f64) -> Result<(), String> {
    if d.min.is_some_and(|min| n < min) || d.max.is_some_and(|max| n > max) {
        let lo = d.min.map_or("-inf".to_string(), fmt_bound);
        let hi = d.max.map_or("+inf".to_string(), fmt_bound);
        return Err(format!("must be within [{lo}, {hi}]"));
    }
    Ok(())
}

fn fmt_bound(b: f64) -> String {
    if b.fract() == 0.0 && b.abs() < 1e18 {
        format!("{}", b as i64)
    } else if b >= I64_MAX {
        i64::MAX.to_string()
    } else {
        b.to_string()
    }
}

/// Checks every entry of a topic's config map; the first problem found.
pub fn validate_topic_configs<'a>(
    configs: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<(), String> {
    for (k, v) in configs {
        validate_topic_config(k, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_valid_and_names_are_unique() {
        for d in TOPIC_CONFIGS {
            assert_eq!(
                validate_topic_config(d.name, d.default),
                Ok(()),
                "{}",
                d.name
            );
            assert_eq!(
                TOPIC_CONFIGS.iter().filter(|x| x.name == d.name).count(),
                1,
                "{}",
                d.name
            );
        }
    }

    /// (key, value, whether it is valid, a word the error must contain)
    #[test]
    fn values_are_checked_by_type_range_and_choice() {
        let table: &[(&str, &str, bool, &str)] = &[
            ("min.insync.replicas", "2", true, ""),
            ("min.insync.replicas", "abc", false, "32-bit integer"),
            ("min.insync.replicas", "0", false, "[1, 2147483647]"),
            ("min.insync.replicas", "2147483648", false, "32-bit integer"),
            ("cleanup.policy", "compact", true, ""),
            ("cleanup.policy", "compact,delete", true, ""),
            ("cleanup.policy", "delete, compact", true, ""),
            ("cleanup.policy", "bogus", false, "not one of"),
            ("cleanup.policy", "compact,bogus", false, "bogus"),
            ("retention.ms", "-1", true, ""),
            ("retention.ms", "-5", false, "[-1,"),
            ("retention.ms", "9223372036854775807", true, ""),
            ("retention.ms", "1e3", false, "64-bit integer"),
            ("retention.bytes", "-2", false, "[-1,"),
            ("segment.bytes", "0", false, "[16384,"),
            ("segment.bytes", "1048576", true, ""),
            ("max.message.bytes", "-1", false, "[0,"),
            ("unclean.leader.election.enable", "TRUE", true, ""),
            (
                "unclean.leader.election.enable",
                "yes",
                false,
                "true or false",
            ),
            ("compression.type", "zstd", true, ""),
            ("compression.type", "brotli", false, "one of"),
            ("message.timestamp.type", "LogAppendTime", true, ""),
            ("min.cleanable.dirty.ratio", "1.5", false, "[0, 1]"),
            ("min.cleanable.dirty.ratio", "NaN", false, "number"),
            ("min.cleanable.dirty.ratio", "0.25", true, ""),
            ("no.such.config", "1", false, "unknown topic config"),
            ("", "1", false, "unknown topic config"),
        ];
        for (k, v, ok, word) in table {
            let r = validate_topic_config(k, v);
            assert_eq!(r.is_ok(), *ok, "{k}={v}: {r:?}");
            if let Err(e) = r {
                assert!(e.contains(word), "{k}={v}: {e:?} lacks {word:?}");
                assert!(e.contains(k), "{k}={v}: the error names the config: {e:?}");
            }
        }
    }
}
