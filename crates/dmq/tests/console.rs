//! The web console (SPEC §12) in a real browser: a cluster of real processes (3 metadata nodes,
//! 3 brokers), Debian's chromium driven by playwright-core (`tests/console/console.test.mjs`)
//! against one metadata node's `/ui/`. The script creates a topic from the UI, sees records a
//! client produced and a consumer group's lag change, resets the group's offsets, draws the
//! live charts, and asks this test to SIGKILL a broker, which the console must show OFFLINE
//! within 3 s, with the partitions' leaders moved. Screenshots go to
//! `target/console-screenshots/`.
//!
//! Needs `/usr/bin/chromium` and `tests/console/node_modules` (both installed by
//! `scripts/install-test-deps.sh`, which `scripts/test.sh` runs).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{process_logs, repo_root, start_cluster};

/// The browser the script drives (`CHROMIUM` overrides).
const CHROMIUM_DEFAULT: &str = "/usr/bin/chromium";

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

#[tokio::test(flavor = "multi_thread")]
async fn console_in_a_real_browser() {
    let root = repo_root();
    let script_dir = root.join("tests/console");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| CHROMIUM_DEFAULT.to_string());
    assert!(
        std::path::Path::new(&chromium).exists()
            && script_dir.join("node_modules/playwright-core").exists(),
        "{chromium} or tests/console/node_modules is missing: run scripts/install-test-deps.sh \
         (scripts/test.sh does), which installs Debian's chromium and playwright-core"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = start_cluster(dir.path(), 3, 3).await;
    let ids = cluster.ids();
    // A follower's console: every write must reach the leader through the console's relays.
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    let node = ids
        .iter()
        .copied()
        .find(|id| *id != leader)
        .unwrap_or(leader);
    let console_url = format!("{}/ui/", cluster.url(node));
    let metadata: Vec<String> = ids.iter().map(|id| cluster.url(*id)).collect();
    let shots = root.join("target/console-screenshots");

    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(script_dir.join("console.test.mjs"))
        .current_dir(&script_dir)
        .env("DMQ_CONSOLE_URL", &console_url)
        .env("DMQ_METADATA", metadata.join(","))
        .env("DMQ_BOOTSTRAP", cluster.bootstrap())
        .env("DMQ_BIN", env!("CARGO_BIN_EXE_dmq"))
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn node (Node.js 18+ is needed)");
    let mut stdin = child.stdin.take().expect("script stdin");
    let stdout = BufReader::new(child.stdout.take().expect("script stdout"));
    let mut killed = None;
    let mut offline_shown_ms = None;
    // The script bounds its own run (5 min) and exits; its stdout closes with it.
    for line in stdout.lines() {
        let line = line.expect("read script stdout");
        eprintln!("script: {line}");
        if let Some(id) = line.strip_prefix("@@ KILL_BROKER ") {
            let id: i32 = id.trim().parse().expect("broker id");
            let at = now_ms();
            cluster.kill_broker(id);
            killed = Some(id);
            writeln!(stdin, "KILLED {at}").expect("answer the script");
            stdin.flush().expect("flush");
        } else if let Some(ms) = line.strip_prefix("@@ OFFLINE_SHOWN_MS ") {
            offline_shown_ms = ms.trim().parse::<u64>().ok();
        }
    }
    let status = child.wait().expect("wait for the script");
    eprintln!(
        "console e2e: {:.1} s, broker {killed:?} shown OFFLINE after {offline_shown_ms:?} ms, \
         screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
    assert!(
        status.success(),
        "the browser script failed ({status}); screenshots in {}\n{}",
        shots.display(),
        process_logs(dir.path())
    );
    assert!(killed.is_some(), "the script never asked for a broker kill");
    assert!(
        offline_shown_ms.is_some_and(|ms| ms <= 3_000),
        "OFFLINE shown after {offline_shown_ms:?} ms"
    );
}
