//! The broker's Prometheus metrics (SPEC §8) on the node's own [`dmq_metrics::Registry`], so
//! that `dmq dev`, which runs three brokers in one process, reports each separately. Names
//! follow Kafka's (as its JMX exporter spells them) and Redpanda's conventions.

use std::sync::Arc;
use std::time::Duration;

use dmq_metrics::Registry;

const CONNECTIONS: &str = "kafka_server_socket_server_metrics_connection_count";
const CONNECTIONS_CREATED: &str = "kafka_server_socket_server_metrics_connection_creation_total";
const REQUEST_LATENCY: &str = "kafka_request_latency_seconds";
const REQUEST_ERRORS: &str = "kafka_request_errors_total";
const BYTES_IN: &str = "kafka_server_brokertopicmetrics_bytes_in_total";
const BYTES_OUT: &str = "kafka_server_brokertopicmetrics_bytes_out_total";
const MESSAGES_IN: &str = "kafka_server_brokertopicmetrics_messages_in_total";
const MESSAGES_OUT: &str = "kafka_server_brokertopicmetrics_messages_out_total";
const REPLICATION_BYTES_IN: &str = "kafka_server_brokertopicmetrics_replication_bytes_in_total";
const ISR_SHRINKS: &str = "kafka_server_replicamanager_isr_shrinks_total";
const ISR_EXPANDS: &str = "kafka_server_replicamanager_isr_expands_total";

/// Point-in-time gauges the `/metrics` handler computes from the replicas at scrape time.
pub const PARTITION_COUNT: &str = "kafka_server_replicamanager_partition_count";
pub const LEADER_COUNT: &str = "kafka_server_replicamanager_leader_count";
pub const UNDER_REPLICATED: &str = "kafka_server_replicamanager_under_replicated_partitions";
pub const UNDER_MIN_ISR: &str = "kafka_server_replicamanager_under_min_isr_partition_count";
pub const MAX_FOLLOWER_LAG: &str = "kafka_server_replicafetchermanager_max_lag";
pub const METADATA_VERSION: &str = "kafka_server_broker_metadata_version";

pub struct Metrics {
    registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        for (name, help) in [
            (CONNECTIONS_CREATED, "Kafka connections accepted."),
            (
                REQUEST_ERRORS,
                "Kafka requests answered with an error, per API.",
            ),
            (
                BYTES_IN,
                "Bytes produced to the partitions this broker leads.",
            ),
            (BYTES_OUT, "Bytes fetched by consumers."),
            (
                MESSAGES_IN,
                "Records produced to the partitions this broker leads.",
            ),
            (MESSAGES_OUT, "Records fetched by consumers."),
            (
                REPLICATION_BYTES_IN,
                "Bytes this broker copied from leaders as a follower.",
            ),
            (
                ISR_SHRINKS,
                "ISR shrinks committed for partitions this broker leads.",
            ),
            (
                ISR_EXPANDS,
                "ISR expansions committed for partitions this broker leads.",
            ),
        ] {
            registry.describe_counter(name, help);
        }
        for (name, help) in [
            (CONNECTIONS, "Open Kafka connections."),
            (PARTITION_COUNT, "Partition replicas hosted by this broker."),
            (LEADER_COUNT, "Partitions this broker leads."),
            (
                UNDER_REPLICATED,
                "Led partitions whose ISR is smaller than the replica set.",
            ),
            (
                UNDER_MIN_ISR,
                "Led partitions whose ISR is below min.insync.replicas.",
            ),
            (
                MAX_FOLLOWER_LAG,
                "Largest lag in records (leader log end minus follower log end) among the \
                 followers of partitions this broker leads.",
            ),
            (
                METADATA_VERSION,
                "The metadata version this broker acts on.",
            ),
        ] {
            registry.describe_gauge(name, help);
        }
        registry.describe_histogram(REQUEST_LATENCY, "Kafka request latency per API.");
        Metrics {
            registry: Arc::new(registry),
        }
    }
}

impl Metrics {
    /// The registry, for the HTTP latency middleware.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// A Kafka request of `api` took `elapsed`; `error`: some part of it was refused.
    pub fn observe(&self, api: &'static str, elapsed: Duration, error: bool) {
        self.registry
            .histogram(REQUEST_LATENCY, &[("request", api)])
            .record(elapsed.as_secs_f64());
        let errors = self.registry.counter(REQUEST_ERRORS, &[("request", api)]);
        if error {
            errors.increment(1);
        } else {
            // Registered at zero, so that rates exist before the first error.
            errors.increment(0);
        }
    }

    pub fn connection_opened(&self) {
        self.registry.counter(CONNECTIONS_CREATED, &[]).increment(1);
        self.registry.gauge(CONNECTIONS, &[]).increment(1.0);
    }

    pub fn connection_closed(&self) {
        self.registry.gauge(CONNECTIONS, &[]).decrement(1.0);
    }

    /// Registers the per-topic series of a topic this broker hosts at zero, so that
    /// dashboards see them (with a rate of 0) before the first record or ISR change.
    pub fn topic_hosted(&self, topic: &str) {
        for name in [
            BYTES_IN,
            BYTES_OUT,
            MESSAGES_IN,
            MESSAGES_OUT,
            REPLICATION_BYTES_IN,
            ISR_SHRINKS,
            ISR_EXPANDS,
        ] {
            self.registry
                .counter(name, &[("topic", topic)])
                .increment(0);
        }
    }

    pub fn produced(&self, topic: &str, bytes: u64, records: u64) {
        self.registry
            .counter(BYTES_IN, &[("topic", topic)])
            .increment(bytes);
        self.registry
            .counter(MESSAGES_IN, &[("topic", topic)])
            .increment(records);
    }

    pub fn consumed(&self, topic: &str, bytes: u64, records: u64) {
        self.registry
            .counter(BYTES_OUT, &[("topic", topic)])
            .increment(bytes);
        self.registry
            .counter(MESSAGES_OUT, &[("topic", topic)])
            .increment(records);
    }

    pub fn replicated_bytes(&self, topic: &str, bytes: u64) {
        self.registry
            .counter(REPLICATION_BYTES_IN, &[("topic", topic)])
            .increment(bytes);
    }

    pub fn isr_shrink(&self, topic: &str) {
        self.registry
            .counter(ISR_SHRINKS, &[("topic", topic)])
            .increment(1);
        self.registry
            .counter(ISR_EXPANDS, &[("topic", topic)])
            .increment(0);
    }

    pub fn isr_expand(&self, topic: &str) {
        self.registry
            .counter(ISR_EXPANDS, &[("topic", topic)])
            .increment(1);
        self.registry
            .counter(ISR_SHRINKS, &[("topic", topic)])
            .increment(0);
    }

    /// Prometheus text exposition; `gauges` are point-in-time values computed by the caller.
    pub fn render(&self, gauges: &[(&'static str, f64)]) -> String {
        for (name, value) in gauges {
            self.registry.gauge(name, &[]).set(*value);
        }
        self.registry.render()
    }

    /// Folds histogram samples into buckets (the housekeeping loop calls it).
    pub fn upkeep(&self) {
        self.registry.upkeep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_with_buckets_errors_and_topics() {
        let m = Metrics::default();
        m.observe("Produce", Duration::from_micros(300), false);
        m.observe("Produce", Duration::from_millis(30), true);
        m.produced("t", 100, 3);
        m.isr_shrink("t");
        m.connection_opened();
        let text = m.render(&[(UNDER_REPLICATED, 2.0)]);
        for want in [
            "kafka_request_latency_seconds_bucket{request=\"Produce\",le=\"0.0005\"} 1",
            "kafka_request_latency_seconds_bucket{request=\"Produce\",le=\"0.05\"} 2",
            "kafka_request_errors_total{request=\"Produce\"} 1",
            "kafka_server_brokertopicmetrics_messages_in_total{topic=\"t\"} 3",
            "kafka_server_brokertopicmetrics_bytes_in_total{topic=\"t\"} 100",
            "kafka_server_replicamanager_isr_shrinks_total{topic=\"t\"} 1",
            "kafka_server_replicamanager_isr_expands_total{topic=\"t\"} 0",
            "kafka_server_socket_server_metrics_connection_count 1",
            "kafka_server_replicamanager_under_replicated_partitions 2",
            "# TYPE kafka_request_latency_seconds histogram",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
    }
}
