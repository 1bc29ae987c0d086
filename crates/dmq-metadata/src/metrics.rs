//! A metadata node's Prometheus metrics (SPEC §8) on its own [`dmq_metrics::Registry`]: Raft
//! (KRaft's `raftmetrics` names: epoch, high watermark, log end, apply lag), the controller's
//! view of the cluster (Kafka's `kafkacontroller` names, reported by the active controller
//! only, as Kafka does) and consumer-group lag (kafka_exporter's `kafka_consumergroup_lag`,
//! also from the active controller only, so that a sum over nodes counts each group once).
//! HTTP route latencies come from `dmq_metrics::track_http` on the router.

use dmq_metrics::Registry;
use openraft::ServerState;

use crate::node::NodeShared;

const GAUGES: &[(&str, &str)] = &[
    (
        "kafka_server_raftmetrics_current_epoch",
        "Current Raft term.",
    ),
    (
        "kafka_server_raftmetrics_current_state",
        "1 for the Raft role this node is in (the label), 0 for the others.",
    ),
    (
        "kafka_server_raftmetrics_current_leader",
        "Node id of the Raft leader this node knows of (-1: none).",
    ),
    (
        "kafka_server_raftmetrics_high_watermark",
        "Highest committed log index known here.",
    ),
    (
        "kafka_server_raftmetrics_applied_offset",
        "Last log index applied to the state machine.",
    ),
    (
        "kafka_server_raftmetrics_apply_lag",
        "Committed entries not applied here yet.",
    ),
    (
        "kafka_server_raftmetrics_log_end_offset",
        "Last log index stored here.",
    ),
    (
        "kafka_server_raftmetrics_snapshot_offset",
        "Last log index covered by the snapshot.",
    ),
    (
        "kafka_server_raftmetrics_log_file_bytes",
        "Size of the Raft log file.",
    ),
    (
        "kafka_controller_metadata_version",
        "Metadata version (applied index) of this node's state.",
    ),
    (
        "kafka_controller_kafkacontroller_active_controller_count",
        "1 on the active controller (the Raft leader), 0 elsewhere.",
    ),
    (
        "kafka_controller_kafkacontroller_active_broker_count",
        "ONLINE brokers (active controller only).",
    ),
    (
        "kafka_controller_kafkacontroller_fenced_broker_count",
        "OFFLINE (fenced) brokers (active controller only).",
    ),
    (
        "kafka_controller_kafkacontroller_global_topic_count",
        "Topics (active controller only).",
    ),
    (
        "kafka_controller_kafkacontroller_global_partition_count",
        "Partitions over all topics (active controller only).",
    ),
    (
        "kafka_controller_kafkacontroller_offline_partitions_count",
        "Partitions without an ONLINE in-sync leader (active controller only).",
    ),
    (
        "kafka_controller_kafkacontroller_preferred_replica_imbalance_count",
        "Partitions not led by their first replica (active controller only).",
    ),
    (
        "kafka_consumergroup_lag",
        "Records between a group's committed offset and the partition's high watermark \
         (active controller only).",
    ),
    (
        "kafka_consumergroup_lag_sum",
        "A group's lag over all its partitions (active controller only).",
    ),
];

pub(crate) fn describe(registry: &Registry) {
    for (name, help) in GAUGES {
        registry.describe_gauge(name, help);
    }
}

/// Sets every gauge from the node's state now (consumer lag asks the partition leaders) and
/// renders the registry.
pub(crate) async fn render(shared: &NodeShared) -> String {
    let r = &shared.metrics;
    let m = shared.raft.metrics().borrow().clone();
    let log = shared.log.stats();
    let applied = m.last_applied.map_or(0, |l| l.index);
    let committed = shared.log.committed_index().max(applied);
    let set = |name: &'static str, value: f64| r.gauge(name, &[]).set(value);
    set(
        "kafka_server_raftmetrics_current_epoch",
        m.current_term as f64,
    );
    for state in [
        ServerState::Leader,
        ServerState::Follower,
        ServerState::Candidate,
        ServerState::Learner,
    ] {
        r.gauge(
            "kafka_server_raftmetrics_current_state",
            &[("state", crate::api::state_name(state))],
        )
        .set(if m.state == state { 1.0 } else { 0.0 });
    }
    set(
        "kafka_server_raftmetrics_current_leader",
        m.current_leader.map_or(-1.0, |l| l as f64),
    );
    set("kafka_server_raftmetrics_high_watermark", committed as f64);
    set("kafka_server_raftmetrics_applied_offset", applied as f64);
    set(
        "kafka_server_raftmetrics_apply_lag",
        committed.saturating_sub(applied) as f64,
    );
    set(
        "kafka_server_raftmetrics_log_end_offset",
        m.last_log_index.unwrap_or(0) as f64,
    );
    set(
        "kafka_server_raftmetrics_snapshot_offset",
        m.snapshot.map_or(0, |l| l.index) as f64,
    );
    set(
        "kafka_server_raftmetrics_log_file_bytes",
        log.file_bytes as f64,
    );
    let leader = shared.is_leader();
    set(
        "kafka_controller_kafkacontroller_active_controller_count",
        if leader { 1.0 } else { 0.0 },
    );
    let (version, online, fenced, topics, partitions, offline, imbalanced) = {
        let data = shared.sm.read();
        let s = &data.state;
        let online = s.online_brokers().len();
        let all = || s.topics.values().flat_map(|t| &t.partitions);
        let offline = all()
            .filter(|p| p.leader == dmq_types::NO_LEADER || !s.is_online(p.leader))
            .count();
        let imbalanced = all()
            .filter(|p| p.replicas.first().is_some_and(|first| *first != p.leader))
            .count();
        (
            s.version,
            online,
            s.brokers.len() - online,
            s.topics.len(),
            s.total_partitions(),
            offline,
            imbalanced,
        )
    };
    set("kafka_controller_metadata_version", version as f64);
    if leader {
        for (name, value) in [
            (
                "kafka_controller_kafkacontroller_active_broker_count",
                online,
            ),
            (
                "kafka_controller_kafkacontroller_fenced_broker_count",
                fenced,
            ),
            (
                "kafka_controller_kafkacontroller_global_topic_count",
                topics,
            ),
            (
                "kafka_controller_kafkacontroller_global_partition_count",
                partitions,
            ),
            (
                "kafka_controller_kafkacontroller_offline_partitions_count",
                offline,
            ),
            (
                "kafka_controller_kafkacontroller_preferred_replica_imbalance_count",
                imbalanced,
            ),
        ] {
            set(name, value as f64);
        }
        let mut sums = std::collections::BTreeMap::<String, i64>::new();
        for (group, topic, partition, lag) in crate::groups_api::group_lags(shared).await {
            let Some(lag) = lag else { continue };
            let p = partition.to_string();
            r.gauge(
                "kafka_consumergroup_lag",
                &[
                    ("consumergroup", &group),
                    ("topic", &topic),
                    ("partition", &p),
                ],
            )
            .set(lag as f64);
            *sums.entry(group).or_default() += lag;
        }
        for (group, sum) in sums {
            r.gauge("kafka_consumergroup_lag_sum", &[("consumergroup", &group)])
                .set(sum as f64);
        }
    }
    r.render()
}
