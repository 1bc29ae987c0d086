//! The broker's Prometheus metrics (SPEC §8), kept per broker instance so that `dmq dev`, which
//! runs three brokers in one process, reports each separately.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the request latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
    errors: u64,
}

#[derive(Default, Clone, Copy)]
struct TopicCounters {
    bytes_in: u64,
    records_in: u64,
    bytes_out: u64,
    records_out: u64,
    replicated_bytes: u64,
    isr_shrinks: u64,
    isr_expands: u64,
}

/// A per-topic counter family: name, help, accessor.
type Series = (&'static str, &'static str, fn(&TopicCounters) -> u64);

#[derive(Default)]
pub struct Metrics {
    pub connections: AtomicI64,
    pub connections_total: AtomicU64,
    requests: Mutex<BTreeMap<&'static str, Histogram>>,
    topics: Mutex<BTreeMap<String, TopicCounters>>,
}

impl Metrics {
    pub fn observe(&self, api: &'static str, elapsed: Duration, error: bool) {
        let secs = elapsed.as_secs_f64();
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let h = m.entry(api).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
        if error {
            h.errors += 1;
        }
    }

    fn topic(&self, topic: &str, f: impl FnOnce(&mut TopicCounters)) {
        let mut m = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(topic) {
            Some(c) => f(c),
            None => f(m.entry(topic.to_string()).or_default()),
        }
    }

    pub fn produced(&self, topic: &str, bytes: u64, records: u64) {
        self.topic(topic, |c| {
            c.bytes_in += bytes;
            c.records_in += records;
        });
    }

    pub fn consumed(&self, topic: &str, bytes: u64, records: u64) {
        self.topic(topic, |c| {
            c.bytes_out += bytes;
            c.records_out += records;
        });
    }

    pub fn replicated_bytes(&self, topic: &str, bytes: u64) {
        self.topic(topic, |c| c.replicated_bytes += bytes);
    }

    pub fn isr_shrink(&self, topic: &str) {
        self.topic(topic, |c| c.isr_shrinks += 1);
    }

    pub fn isr_expand(&self, topic: &str) {
        self.topic(topic, |c| c.isr_expands += 1);
    }

    /// Prometheus text exposition; `gauges` are point-in-time values computed by the caller.
    pub fn render(&self, broker_id: i32, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        let b = broker_id;
        let _ = writeln!(out, "# HELP dmq_broker_connections Open Kafka connections.\n# TYPE dmq_broker_connections gauge");
        let _ = writeln!(
            out,
            "dmq_broker_connections{{broker=\"{b}\"}} {}",
            self.connections.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP dmq_broker_connections_total Kafka connections accepted.\n# TYPE dmq_broker_connections_total counter");
        let _ = writeln!(
            out,
            "dmq_broker_connections_total{{broker=\"{b}\"}} {}",
            self.connections_total.load(Ordering::Relaxed)
        );
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            let _ = writeln!(out, "{name}{{broker=\"{b}\"}} {value}");
        }
        let topics = self
            .topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let series: [Series; 7] = [
            (
                "dmq_topic_bytes_in_total",
                "Bytes produced to the partitions this broker leads.",
                |c| c.bytes_in,
            ),
            ("dmq_topic_records_in_total", "Records produced.", |c| {
                c.records_in
            }),
            (
                "dmq_topic_bytes_out_total",
                "Bytes fetched by consumers.",
                |c| c.bytes_out,
            ),
            (
                "dmq_topic_records_out_total",
                "Records fetched by consumers (batch record counts).",
                |c| c.records_out,
            ),
            (
                "dmq_topic_replicated_bytes_total",
                "Bytes this broker copied from leaders as a follower.",
                |c| c.replicated_bytes,
            ),
            (
                "dmq_topic_isr_shrinks_total",
                "ISR shrinks committed for partitions this broker leads.",
                |c| c.isr_shrinks,
            ),
            (
                "dmq_topic_isr_expands_total",
                "ISR expansions committed for partitions this broker leads.",
                |c| c.isr_expands,
            ),
        ];
        for (name, help, get) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (topic, c) in &topics {
                let _ = writeln!(out, "{name}{{broker=\"{b}\",topic=\"{topic}\"}} {}", get(c));
            }
        }
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let name = "dmq_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Request latency per API (Kafka and HTTP).\n# TYPE {name} histogram"
        );
        for (api, h) in &requests {
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{broker=\"{b}\",api=\"{api}\",le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{broker=\"{b}\",api=\"{api}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "{name}_sum{{broker=\"{b}\",api=\"{api}\"}} {}", h.sum);
            let _ = writeln!(
                out,
                "{name}_count{{broker=\"{b}\",api=\"{api}\"}} {}",
                h.count
            );
        }
        let name = "dmq_request_errors_total";
        let _ = writeln!(
            out,
            "# HELP {name} Requests answered with an error, per API.\n# TYPE {name} counter"
        );
        for (api, h) in &requests {
            let _ = writeln!(out, "{name}{{broker=\"{b}\",api=\"{api}\"}} {}", h.errors);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe("Produce", Duration::from_micros(300), false);
        m.observe("Produce", Duration::from_millis(30), true);
        m.produced("t", 100, 3);
        m.isr_shrink("t");
        let text = m.render(101, &[]);
        assert!(text.contains(
            "dmq_request_duration_seconds_bucket{broker=\"101\",api=\"Produce\",le=\"0.0005\"} 1"
        ));
        assert!(text.contains(
            "dmq_request_duration_seconds_bucket{broker=\"101\",api=\"Produce\",le=\"0.05\"} 2"
        ));
        assert!(text.contains("dmq_request_errors_total{broker=\"101\",api=\"Produce\"} 1"));
        assert!(text.contains("dmq_topic_records_in_total{broker=\"101\",topic=\"t\"} 3"));
        assert!(text.contains("dmq_topic_isr_shrinks_total{broker=\"101\",topic=\"t\"} 1"));
        assert!(text.contains("dmq_topic_isr_expands_total{broker=\"101\",topic=\"t\"} 0"));
    }
}
