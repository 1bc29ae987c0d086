//! Group configs (Kafka's `GroupConfig`, set with IncrementalAlterConfigs on a GROUP resource,
//! type 32): the share-group settings Kafka 4.2 has, and dmq's dead-letter topic and redelivery
//! backoff (issue #19). One table: the quorum checks a change with it, brokers describe with it.

/// One group config: name, default (as DescribeConfigs shows it) and documentation.
#[derive(Debug, Clone, Copy)]
pub struct GroupConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

/// Every group config dmq knows.
pub const GROUP_CONFIGS: &[GroupConfigDef] = &[
    GroupConfigDef {
        name: "share.auto.offset.reset",
        default: "latest",
        doc: "Where a share-partition with no state begins: earliest or latest.",
    },
    GroupConfigDef {
        name: "share.record.lock.duration.ms",
        default: "30000",
        doc: "How long an acquired record stays locked to its member.",
    },
    GroupConfigDef {
        name: "share.delivery.count.limit",
        default: "5",
        doc: "Deliveries after which an unacknowledged record is archived.",
    },
    GroupConfigDef {
        name: "share.partition.max.record.locks",
        default: "2000",
        doc: "Records in flight per share-partition at most.",
    },
    GroupConfigDef {
        name: "share.redelivery.backoff.ms",
        default: "0",
        doc: "How long a released record waits before it is delivered again (dmq).",
    },
    GroupConfigDef {
        name: "share.dlq.topic",
        default: "",
        doc:
            "Topic every archived record (rejected, or past the delivery limit) is copied to (dmq).",
    },
    GroupConfigDef {
        name: "share.session.timeout.ms",
        default: "45000",
        doc: "How long a share-group member may go without a heartbeat.",
    },
    GroupConfigDef {
        name: "share.heartbeat.interval.ms",
        default: "5000",
        doc: "How often share-group members heartbeat.",
    },
];

/// Checks one group config value. `None`: not a group config.
pub fn check_group_config(name: &str, value: &str) -> Option<Result<(), String>> {
    let int_in = |lo: i64, hi: i64| match value.trim().parse::<i64>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(()),
        _ => Err(format!("{name} must be an integer in {lo}..={hi}")),
    };
    Some(match name {
        "share.auto.offset.reset" => match value {
            "earliest" | "latest" => Ok(()),
            _ => Err(format!("{name} must be earliest or latest")),
        },
        "share.record.lock.duration.ms" => int_in(1_000, 3_600_000),
        "share.delivery.count.limit" => int_in(2, 10),
        "share.redelivery.backoff.ms" => int_in(0, 3_600_000),
        "share.partition.max.record.locks" => int_in(100, 10_000),
        "share.session.timeout.ms" => int_in(1_000, 3_600_000),
        "share.heartbeat.interval.ms" => int_in(100, 3_600_000),
        "share.dlq.topic" => {
            if value.is_empty() || crate::validate_topic_name(value).is_ok() {
                Ok(())
            } else {
                Err(format!(
                    "{name} must be a valid topic name (or empty for none)"
                ))
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kip932_group_configs_are_checked() {
        for d in GROUP_CONFIGS {
            assert_eq!(
                check_group_config(d.name, d.default),
                Some(Ok(())),
                "{}",
                d.name
            );
        }
        assert!(matches!(
            check_group_config("share.auto.offset.reset", "none"),
            Some(Err(_))
        ));
        assert!(matches!(
            check_group_config("share.delivery.count.limit", "1"),
            Some(Err(_))
        ));
        assert!(matches!(
            check_group_config("share.record.lock.duration.ms", "x"),
            Some(Err(_))
        ));
        assert_eq!(
            check_group_config("share.dlq.topic", "orders.dlq"),
            Some(Ok(()))
        );
        assert!(matches!(
            check_group_config("share.dlq.topic", "a b"),
            Some(Err(_))
        ));
        assert_eq!(check_group_config("retention.ms", "1"), None);
    }
}
