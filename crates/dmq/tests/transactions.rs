//! Kafka transactions (KIP-98/KIP-447) with real clients against a real cluster (3 metadata
//! nodes, 3 brokers, RF 3): commit, abort, read_committed, fencing, the transaction timeout
//! and offsets committed in a transaction (tests/interop/confluent_transactions.py).

mod common;

use std::process::Command;

use common::{run_interop, start_cluster, venv_python};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_commits_aborts_fences_and_times_out_transactions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let mut cmd = Command::new(venv_python());
    cmd.arg("tests/interop/confluent_transactions.py")
        .arg("--bootstrap")
        .arg(cluster.bootstrap())
        .arg("--topic-prefix")
        .arg("txn");
    let out = run_interop(cmd).await;
    for case in ["commit", "abort", "fencing", "timeout", "offsets"] {
        assert!(
            out.contains(&format!("OK confluent-txn {case}")),
            "{case}: {out}\n{}",
            common::process_logs(dir.path())
        );
    }

    // No transaction is left open: on every leader of txn-out the LSO is the HW (the
    // abandoned transaction was aborted, the fenced producer's was never opened).
    for id in cluster.broker_ids() {
        let (_, status) = cluster
            .broker_get(id, "/api/v1/storage/replication/status")
            .await
            .expect("replication status");
        for p in status["partitions"].as_array().expect("partitions") {
            if p["topic"] == "txn-out" && p["role"] == "LEADER" {
                assert_eq!(p["lastStableOffset"], p["highWatermark"], "{p}");
                assert!(p["highWatermark"].as_i64() > Some(0), "{p}");
            }
        }
    }

    // `dmq txn list | describe` show what the quorum has.
    let metadata: Vec<String> = cluster
        .ids()
        .into_iter()
        .map(|id| cluster.url(id))
        .collect();
    let dmq = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_dmq"))
            .args(args)
            .args(["--metadata", &metadata.join(","), "--output", "json"])
            .output()
            .expect("run dmq");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    let list = dmq(&["txn", "list"]);
    let state = |id: &str| {
        list.as_array()
            .and_then(|l| l.iter().find(|t| t["transactionalId"] == id))
            .map(|t| t["status"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(state("txn-a").as_deref(), Some("CompleteCommit"), "{list}");
    assert_eq!(
        state("txn-t").as_deref(),
        Some("CompleteAbort"),
        "timed out: {list}"
    );
    // `dmq bench produce --txn-records`: four transactions of 500, each commit measured.
    let out = Command::new(env!("CARGO_BIN_EXE_dmq"))
        .args([
            "bench",
            "produce",
            "txn-bench",
            "--records",
            "2000",
            "--record-size",
            "100",
        ])
        .args([
            "--acks",
            "all",
            "--txn-records",
            "500",
            "--replication-factor",
            "3",
        ])
        .args(["--output", "json", "--bootstrap", &cluster.bootstrap()])
        .output()
        .expect("run dmq bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let commit: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["bench"] == "commit")
        .unwrap_or_else(|| panic!("no commit line: {stdout}"));
    assert_eq!(commit["transactions"], 4, "{commit}");
    let one = dmq(&["txn", "describe", "txn-a"]);
    assert_eq!(one["producerEpoch"], 1, "fenced once: {one}");
    assert_eq!(one["partitions"], serde_json::json!([]), "{one}");
}
