//! `dmq-metrics` — the Prometheus metrics of every DistributedMQ node (SPEC §8), on the `metrics`
//! crate and its Prometheus exporter.
//!
//! Each node owns a [`Registry`]: its own `PrometheusRecorder`, not the process-global one,
//! because `dmq dev` runs three metadata nodes and three brokers in one process and each must
//! report only itself on its `/metrics`. Series are registered on the registry directly
//! ([`Registry::counter`], [`Registry::gauge`], [`Registry::histogram`]); handles may be kept or
//! looked up per call (the recorder keys them by name and labels).
//!
//! Names follow Kafka's JMX-exporter and Redpanda conventions as far as Prometheus allows
//! (snake case, `_total` counters, seconds): e.g.
//! `kafka_server_brokertopicmetrics_bytes_in_total{topic}`,
//! `kafka_request_latency_seconds{request="Produce"}`, and for HTTP the OpenTelemetry name
//! `http_server_request_duration_seconds{method,route,status}` ([`track_http`]).
//! Every histogram is a latency in seconds with [`LATENCY_BUCKETS`].

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Upper bounds (seconds) of every latency histogram: 100 µs to 10 s.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The HTTP request latency histogram ([`track_http`]).
pub const HTTP_REQUEST_DURATION: &str = "http_server_request_duration_seconds";

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

/// One node's metrics.
pub struct Registry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Registry {
        let builder = PrometheusBuilder::new();
        // Buckets are a non-empty constant; the fallback (summaries) cannot happen.
        let builder = match builder.set_buckets(&LATENCY_BUCKETS) {
            Ok(b) => b,
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let registry = Registry { recorder, handle };
        registry.describe_histogram(
            HTTP_REQUEST_DURATION,
            "HTTP request latency per method, route and status.",
        );
        registry
    }

    fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.to_string()))
            .collect();
        Key::from_parts(name, labels)
    }

    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.recorder
            .register_counter(&Self::key(name, labels), &METADATA)
    }

    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder
            .register_gauge(&Self::key(name, labels), &METADATA)
    }

    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        self.recorder
            .register_histogram(&Self::key(name, labels), &METADATA)
    }

    /// The `# HELP` line of a counter.
    pub fn describe_counter(&self, name: &'static str, help: &'static str) {
        self.recorder
            .describe_counter(KeyName::from_const_str(name), None, help.into());
    }

    pub fn describe_gauge(&self, name: &'static str, help: &'static str) {
        self.recorder
            .describe_gauge(KeyName::from_const_str(name), None, help.into());
    }

    pub fn describe_histogram(&self, name: &'static str, help: &'static str) {
        self.recorder
            .describe_histogram(KeyName::from_const_str(name), None, help.into());
    }

    /// The Prometheus text exposition of everything recorded so far.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Folds recorded histogram samples into their buckets. Call it every few seconds (the
    /// recorder buffers samples until then, or until a scrape).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// Axum middleware (`route_layer`, so that the matched route is known): records every
/// request's latency in [`HTTP_REQUEST_DURATION`] labelled with the method, the route
/// template (`/api/v1/metadata/topics/{name}`, never the raw path) and the status code.
pub async fn track_http(registry: Arc<Registry>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().as_str().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    registry
        .histogram(
            HTTP_REQUEST_DURATION,
            &[
                ("method", &method),
                ("route", &route),
                ("status", resp.status().as_str()),
            ],
        )
        .record(started.elapsed().as_secs_f64());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_registry_renders_only_its_own_series_as_prometheus_text() {
        let a = Registry::new();
        let b = Registry::new();
        a.describe_counter("kafka_test_total", "A test counter.");
        a.counter("kafka_test_total", &[("topic", "t")])
            .increment(3);
        a.counter("kafka_test_total", &[("topic", "t")])
            .increment(2);
        a.gauge("kafka_test_gauge", &[]).set(7.0);
        let h = a.histogram("kafka_test_seconds", &[("request", "Produce")]);
        h.record(0.0003);
        h.record(0.03);
        a.upkeep();
        let text = a.render();
        assert!(
            text.contains("# HELP kafka_test_total A test counter."),
            "{text}"
        );
        assert!(text.contains("kafka_test_total{topic=\"t\"} 5"), "{text}");
        assert!(text.contains("kafka_test_gauge 7"), "{text}");
        assert!(
            text.contains("kafka_test_seconds_bucket{request=\"Produce\",le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kafka_test_seconds_bucket{request=\"Produce\",le=\"0.05\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("kafka_test_seconds_count{request=\"Produce\"} 2"),
            "{text}"
        );
        assert!(
            !b.render().contains("kafka_test"),
            "registries are separate"
        );
    }

    #[tokio::test]
    async fn http_latency_is_labelled_with_the_route_template() {
        use axum::routing::get;
        let registry = Arc::new(Registry::new());
        let r = registry.clone();
        let app: axum::Router = axum::Router::new()
            .route("/items/{id}", get(|| async { "ok" }))
            .route_layer(axum::middleware::from_fn(move |req, next| {
                track_http(r.clone(), req, next)
            }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /items/42 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let text = registry.render();
        assert!(
            text.contains(
                "http_server_request_duration_seconds_count{method=\"GET\",route=\"/items/{id}\",status=\"200\"} 1"
            ),
            "{text}"
        );
    }
}
