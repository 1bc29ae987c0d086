//! The `dmq` CLI (SPEC §7) against a real cluster, as a snapshot: every command, its output
//! (tables and `--output json`), its errors on bad input and its exit code are recorded in
//! `tests/snapshots/cli_session.txt`. Values that change from run to run (ports, topic ids,
//! timestamps, Raft terms and roles) are masked. `DMQ_UPDATE_SNAPSHOTS=1` rewrites the file;
//! review the diff before committing it.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::start_cluster;
use dmq::procs::MetadataCluster;
use serde_json::Value;

struct Session<'a> {
    cluster: &'a MetadataCluster,
    transcript: String,
    masks: Vec<(String, String)>,
}

struct Outcome {
    code: i32,
    stdout: String,
}

impl Session<'_> {
    fn metadata(&self) -> String {
        self.cluster
            .ids()
            .iter()
            .map(|id| self.cluster.url(*id))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs `dmq args…` with `stdin`, records it in the transcript. `sort` sorts stdout lines
    /// (records of several partitions arrive in any order).
    fn run(&mut self, args: &[&str], stdin: &str, sort: bool) -> Outcome {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dmq"))
            .args(args)
            .env("DMQ_BOOTSTRAP", self.cluster.bootstrap())
            .env("DMQ_METADATA", self.metadata())
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run dmq");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("dmq exits");
        let mut stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if sort {
            let mut lines: Vec<&str> = stdout.lines().collect();
            lines.sort();
            stdout = lines.iter().map(|l| format!("{l}\n")).collect();
        }
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let code = out.status.code().unwrap_or(-1);
        self.transcript
            .push_str(&format!("$ dmq {}\n", args.join(" ")));
        for line in stdin.lines() {
            self.transcript.push_str(&format!("< {line}\n"));
        }
        self.transcript.push_str(&self.mask(&stdout));
        for line in self.mask(&stderr).lines() {
            self.transcript.push_str(&format!("stderr: {line}\n"));
        }
        self.transcript.push_str(&format!("(exit {code})\n\n"));
        Outcome { code, stdout }
    }

    fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (from, to) in &self.masks {
            out = out.replace(from.as_str(), to);
        }
        // Other topics' ids (random UUIDs).
        let out = mask_uuids(&out);
        // Record timestamps (13-digit milliseconds) differ on every run.
        let mut masked = String::with_capacity(out.len());
        let mut digits = String::new();
        for c in out.chars().chain(std::iter::once('\0')) {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            if digits.len() == 13 {
                masked.push_str("<timestamp>");
            } else {
                masked.push_str(&digits);
            }
            digits.clear();
            if c != '\0' {
                masked.push(c);
            }
        }
        masked
    }
}

/// Replaces every UUID (`8-4-4-4-12` hex digits) with `<uuid>`.
fn mask_uuids(text: &str) -> String {
    let is_uuid = |w: &[u8]| {
        w.len() == 36
            && w.iter().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => *b == b'-',
                _ => b.is_ascii_hexdigit(),
            })
    };
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes.get(i..i + 36).is_some_and(is_uuid) {
            out.push_str("<uuid>");
            i += 36;
        } else {
            let ch = text[i..].chars().next().unwrap_or('\0');
            out.push(ch);
            i += ch.len_utf8().max(1);
        }
    }
    out
}

fn snapshot_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/cli_session.txt")
}

/// Replaces the columns of the Raft table that change between runs (role, term, indexes).
fn mask_raft_table(text: &str) -> String {
    let mut out = String::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with("NODE ") {
            in_table = true;
        } else if line.trim().is_empty() {
            in_table = false;
        } else if line.starts_with("Controller: metadata node") {
            out.push_str("Controller: metadata node <id>   metadata version <n>\n");
            continue;
        } else if in_table {
            let cells: Vec<&str> = line.split_whitespace().collect();
            if cells.len() == 6 {
                out.push_str(&format!(
                    "{}  {}  <role>  <term>  <commit>  <applied>\n",
                    cells[0], cells[1]
                ));
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cli_command_prints_what_the_snapshot_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let mut masks = Vec::new();
    for id in cluster.ids() {
        masks.push((cluster.url(id), format!("<metadata-{id}>")));
    }
    for id in cluster.broker_ids() {
        let addr = cluster.kafka_addr(id);
        let port = addr.rsplit(':').next().unwrap_or_default().to_string();
        masks.push((addr, format!("<kafka-{id}>")));
        masks.push((port, format!("<kafka-port-{id}>")));
        let url = cluster.broker_url(id);
        let http = url.rsplit(':').next().unwrap_or_default().to_string();
        masks.push((http, format!("<http-port-{id}>")));
    }
    let mut s = Session {
        cluster: &cluster,
        transcript: String::new(),
        masks,
    };

    // Topics, including every kind of bad input.
    let created = s.run(
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "3",
            "--config",
            "retention.ms=86400000",
        ],
        "",
        false,
    );
    assert_eq!(created.code, 0);
    s.run(&["topic", "create", "events"], "", false);
    s.run(
        &["topic", "create", "orders", "--partitions", "3"],
        "",
        false,
    );
    s.run(&["topic", "create", "bad/name"], "", false);
    s.run(&["topic", "create", "zero", "--partitions", "0"], "", false);
    s.run(
        &["topic", "create", "wide", "--replication-factor", "5"],
        "",
        false,
    );
    s.run(
        &["topic", "create", "cfg", "--config", "novalue"],
        "",
        false,
    );
    s.run(&["topic", "list"], "", false);
    s.run(&["topic", "list", "--output", "json"], "", false);
    let described = s.run(
        &["topic", "describe", "orders", "--output", "json"],
        "",
        false,
    );
    let json: Value = serde_json::from_str(&described.stdout).expect("describe json");
    assert_eq!(json["partitions"].as_array().map(Vec::len), Some(3));
    s.run(&["topic", "describe", "orders"], "", false);
    s.run(&["topic", "describe", "missing"], "", false);
    // Growing a topic (CreatePartitions); shrinking is refused.
    s.run(
        &["topic", "alter", "events", "--partitions", "4"],
        "",
        false,
    );
    s.run(&["topic", "describe", "events"], "", false);
    s.run(
        &["topic", "alter", "events", "--partitions", "2"],
        "",
        false,
    );
    s.run(
        &[
            "topic",
            "alter",
            "missing",
            "--partitions",
            "2",
            "--output",
            "json",
        ],
        "",
        false,
    );

    // Produce and consume. Keys decide partitions (murmur2), so the output is stable.
    s.run(
        &["produce", "orders", "--key", "user-1"],
        "one\ntwo\nthree\n",
        false,
    );
    s.run(
        &[
            "produce",
            "orders",
            "--key-separator",
            ":",
            "--output",
            "json",
        ],
        "alice:1\nbob:2\ncarol:3\n",
        false,
    );
    s.run(
        &["produce", "orders", "--partition", "2", "--acks", "1"],
        "p2\n",
        false,
    );
    s.run(&["produce", "orders", "--acks", "2"], "x\n", false);
    s.run(
        &["produce", "orders", "--key-separator", ":"],
        "no-separator\n",
        false,
    );
    s.run(&["produce", "orders", "--partition", "9"], "x\n", false);
    s.run(
        &[
            "consume",
            "orders",
            "--from-beginning",
            "--max",
            "7",
            "--format",
            "kv",
        ],
        "",
        true,
    );
    s.run(
        &[
            "consume",
            "orders",
            "--partition",
            "2",
            "--offset",
            "0",
            "--max",
            "2",
            "--format",
            "full",
        ],
        "",
        false,
    );
    s.run(
        &[
            "consume",
            "orders",
            "--from-beginning",
            "--timeout-ms",
            "1500",
            "--output",
            "json",
        ],
        "",
        true,
    );
    s.run(
        &["consume", "orders", "--partition", "7", "--max", "1"],
        "",
        false,
    );
    s.run(
        &["consume", "orders", "--partition", "0", "--offset", "abc"],
        "",
        false,
    );
    s.run(&["consume", "missing", "--max", "1"], "", false);

    // The cluster.
    let before = s.transcript.len();
    let status = s.run(&["cluster", "status"], "", false);
    assert_eq!(status.code, 0);
    let masked = mask_raft_table(&s.transcript[before..]);
    s.transcript.truncate(before);
    s.transcript.push_str(&masked);
    let before = s.transcript.len();
    let status = s.run(&["cluster", "status", "--output", "json"], "", false);
    s.transcript.truncate(before);
    let json: Value = serde_json::from_str(&status.stdout).expect("status json");
    let leaders: Vec<&Value> = json["metadataNodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["state"] == "LEADER")
        .collect();
    assert_eq!(leaders.len(), 1, "{json}");
    assert_eq!(leaders[0]["nodeId"], json["controllerId"], "{json}");
    assert_eq!(json["brokers"].as_array().map(Vec::len), Some(3), "{json}");
    assert_eq!(json["underReplicatedPartitions"], serde_json::json!([]));

    s.run(&["topic", "delete", "orders"], "", false);
    s.run(&["topic", "delete", "orders"], "", false);
    s.run(&["topic", "list"], "", false);
    s.run(&["topic", "list", "--bootstrap", "127.0.0.1:1"], "", false);
    s.run(
        &["cluster", "status", "--metadata", "http://127.0.0.1:1"],
        "",
        false,
    );

    let path = snapshot_path();
    if std::env::var_os("DMQ_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, &s.transcript).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing; run with DMQ_UPDATE_SNAPSHOTS=1 to create it",
            path.display()
        )
    });
    if expected != s.transcript {
        let diff: Vec<String> = expected
            .lines()
            .zip(s.transcript.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(10)
            .map(|(i, (a, b))| format!("line {}:\n  snapshot: {a}\n  now:      {b}", i + 1))
            .collect();
        panic!(
            "CLI output differs from {} (DMQ_UPDATE_SNAPSHOTS=1 rewrites it):\n{}\n\nwhole output:\n{}",
            path.display(),
            diff.join("\n"),
            s.transcript
        );
    }
}
