//! `dmq cluster rolling-restart` while an `acks=all` producer runs: every broker is restarted
//! (SIGTERM → controlled shutdown, then started again), one at a time and only when the ISRs
//! are full, and the producer sees no error and loses nothing.
//!
//! The restart command is what an operator's supervisor offers (`systemctl restart …`); here
//! the test plays the supervisor on a loopback HTTP port: `curl -X POST …/restart/{id}` makes
//! it SIGTERM the real broker process, wait for it to exit and start it again.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{process_logs, start_cluster, wait_topic_on_brokers};
use dmq::procs::MetadataCluster;
use dmq_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, NewTopic, Offset, Producer, ProducerConfig,
    ProducerRecord,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

const TOPIC: &str = "steady";

/// Serves `POST /restart/{id}`: SIGTERMs broker `id`, waits for it to exit, starts it again.
async fn supervisor(cluster: Arc<Mutex<MetadataCluster>>) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let id: Option<i32> = head
                .strip_prefix("POST /restart/")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|id| id.parse().ok());
            let status = match id {
                Some(id) => {
                    let mut c = cluster.lock().await;
                    let stopped = c.terminate_broker(id, Duration::from_secs(30)).await;
                    match (stopped, c.start_broker(id)) {
                        (Some(_), Ok(())) => "200 OK",
                        _ => "500 Internal Server Error",
                    }
                }
                None => "404 Not Found",
            };
            let answer =
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = sock.write_all(answer.as_bytes()).await;
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_acks_all_load_surfaces_no_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let bootstrap = cluster.bootstrap();
    let metadata: Vec<String> = cluster.ids().iter().map(|id| cluster.url(*id)).collect();
    let broker_ids = cluster.broker_ids();
    let admin = Admin::new(ClientConfig::new(bootstrap.clone()))
        .await
        .expect("admin");
    admin
        .create_topic(NewTopic::new(TOPIC, 3, 3).config("min.insync.replicas", "2"))
        .await
        .expect("create topic");
    wait_topic_on_brokers(&cluster, TOPIC, 3, 3).await;
    let cluster = Arc::new(Mutex::new(cluster));
    let (port, supervisor) = supervisor(cluster.clone()).await;

    let mut config = ProducerConfig::new(bootstrap.clone());
    config.client.request_timeout = Duration::from_secs(10);
    config.retry_backoff = Duration::from_millis(50);
    config.linger = Duration::from_millis(2);
    let producer = Arc::new(Producer::new(config).await.expect("producer"));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sending = {
        let producer = producer.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut acks = Vec::new();
            let mut n = 0u64;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let record = ProducerRecord::new(TOPIC, Bytes::from(n.to_string()))
                    .key(Bytes::from(format!("k{}", n % 31)));
                acks.push((n, producer.send(record).await));
                if n.is_multiple_of(50) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                n += 1;
            }
            acks
        })
    };

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_dmq"))
        .args(["cluster", "rolling-restart", "--restart-command"])
        .arg(format!(
            "curl -sf -X POST http://127.0.0.1:{port}/restart/{{id}}"
        ))
        .args(["--step-timeout-secs", "60", "--metadata"])
        .arg(metadata.join(","))
        .output()
        .await
        .expect("dmq cluster rolling-restart");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        process_logs(dir.path())
    );
    for id in &broker_ids {
        assert!(
            stdout.contains(&format!("broker {id}: back (broker epoch")),
            "{stdout}"
        );
    }
    assert!(stdout.ends_with("Rolling restart done.\n"), "{stdout}");
    eprintln!("{stdout}");

    done.store(true, std::sync::atomic::Ordering::Release);
    let acks = sending.await.expect("sender");
    producer.flush().await;
    let mut acked = BTreeSet::new();
    for (n, send) in acks {
        let delivery = send.unwrap_or_else(|e| panic!("record {n} refused at send: {e}"));
        delivery
            .await
            .unwrap_or_else(|e| panic!("record {n} failed during the rolling restart: {e}"));
        acked.insert(n.to_string());
    }
    assert!(
        acked.len() > 500,
        "the producer kept sending: {}",
        acked.len()
    );
    eprintln!(
        "{} records acknowledged during the rolling restart",
        acked.len()
    );

    // Every acknowledged record is there, exactly once (idempotent producer).
    let mut consumer = Consumer::new(ConsumerConfig::new(bootstrap))
        .await
        .expect("consumer");
    consumer.assign_topic(TOPIC).await.expect("assign");
    consumer.seek_all(Offset::Beginning);
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < acked.len() && std::time::Instant::now() < deadline {
        for r in consumer
            .poll(Duration::from_millis(500))
            .await
            .expect("poll")
        {
            seen.push(String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_string());
        }
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicates");
    let lost: Vec<&String> = acked.difference(&unique).take(10).collect();
    assert!(lost.is_empty(), "acknowledged records lost: {lost:?}");
    supervisor.abort();
}
