//! Consumer groups with real clients: confluent-kafka members splitting, rebalancing and taking
//! over from a SIGKILLed member; kcat -G and kafka-python committing; committed offsets that
//! survive SIGKILL of the coordinator broker and of the metadata leader; lag over HTTP.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use common::kafka;
use common::{process_logs, start_cluster, venv_python};
use dmq::procs::{wait_until, MetadataCluster};
use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

/// Creates `topic` (RF 3) and produces `count` records `"<topic>-<i>"` round-robin over its
/// partitions, starting at `first`.
async fn produce(
    cluster: &MetadataCluster,
    topic: &str,
    partitions: i32,
    first: usize,
    count: usize,
) {
    let leader_node = cluster.leader().await.expect("metadata leader");
    let (_, t) = cluster
        .get(
            leader_node,
            &format!("/api/v1/metadata/topics/{topic}?consistent=true"),
        )
        .await
        .expect("topic");
    let leaders: Vec<i32> = t["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["leader"].as_i64().unwrap_or(-1) as i32)
        .collect();
    assert_eq!(leaders.len(), partitions as usize);
    for p in 0..partitions {
        let mut conn = kafka::connect(&cluster.kafka_addr(leaders[p as usize])).await;
        let records: Vec<(String, String)> = (first..first + count)
            .filter(|i| *i as i32 % partitions == p)
            .map(|i| (i.to_string(), format!("{topic}-{i}")))
            .collect();
        for chunk in records.chunks(50) {
            let r = kafka::produce(&mut conn, topic, p, kafka::batch(chunk, None), -1).await;
            assert_eq!(r.error_code, 0, "produce to {topic}-{p}");
        }
    }
}

async fn create_topic(cluster: &MetadataCluster, topic: &str, partitions: i32) {
    let body = json!({"topicName": topic, "numPartitions": partitions, "replicationFactor": 3});
    let (status, body) = common::post_leader(cluster, "/api/v1/metadata/topics", &body).await;
    assert_eq!(status, 201, "{body}");
    let c = cluster;
    wait_until(
        Duration::from_secs(20),
        "partition leaders",
        || async move {
            let leader = c.leader().await?;
            let (_, t) = c
                .get(
                    leader,
                    &format!("/api/v1/metadata/topics/{topic}?consistent=true"),
                )
                .await?;
            t["partitions"]
                .as_array()?
                .iter()
                .all(|p| {
                    p["leader"].as_i64().unwrap_or(-1) >= 0
                        && p["isr"].as_array().map_or(0, Vec::len) == 3
                })
                .then_some(())
        },
    )
    .await
    .expect("topic ready");
    common::wait_topic_on_brokers(cluster, topic, partitions, 3).await;
}

/// One `group_consumer.py` process.
struct Member {
    child: Child,
    out: PathBuf,
    stop: PathBuf,
}

impl Member {
    fn start(
        cluster: &MetadataCluster,
        dir: &Path,
        name: &str,
        topic: &str,
        group: &str,
        extra: &[&str],
    ) -> Member {
        let out = dir.join(format!("{name}.jsonl"));
        let stop = dir.join(format!("{name}.stop"));
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("member log");
        let child = Command::new(venv_python())
            .current_dir(common::repo_root())
            .arg("tests/interop/group_consumer.py")
            .args([
                "--bootstrap",
                &cluster.bootstrap(),
                "--topic",
                topic,
                "--group",
                group,
            ])
            .arg("--out")
            .arg(&out)
            .arg("--stop-file")
            .arg(&stop)
            .args(extra)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start group member");
        Member { child, out, stop }
    }

    /// `(partition, offset, value)` of every record received so far.
    fn records(&self) -> Vec<(i32, i64, String)> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| {
                (
                    v["p"].as_i64().unwrap_or(-1) as i32,
                    v["o"].as_i64().unwrap_or(-1),
                    v["v"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    fn assignment(&self) -> BTreeSet<i32> {
        let path = format!("{}.assign", self.out.display());
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| serde_json::from_str::<Vec<i32>>(&s).ok())
            .unwrap_or_default()
            .into_iter()
            .collect()
    }

    /// Asks the member to stop and waits until it has left the group and exited.
    async fn stop(mut self) {
        std::fs::write(&self.stop, b"stop").expect("stop file");
        self.wait_exit().await;
    }

    /// Waits (60 s) for the process to exit on its own and requires success.
    async fn wait_exit(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let log =
                    std::fs::read_to_string(self.out.with_extension("log")).unwrap_or_default();
                assert!(status.success(), "group member failed ({status}):\n{log}");
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "group member did not exit"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn values(members: &[&Member]) -> BTreeSet<String> {
    members
        .iter()
        .flat_map(|m| m.records())
        .map(|r| r.2)
        .collect()
}

fn expected(topic: &str, n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!("{topic}-{i}")).collect()
}

async fn wait_for(what: &str, dir: &Path, mut ok: impl FnMut() -> bool) {
    let ok = &mut ok;
    let r = wait_until(Duration::from_secs(30), what, || {
        let done = ok();
        async move { done.then_some(()) }
    })
    .await;
    if let Err(e) = r {
        panic!("{e}\n{}", member_logs(dir));
    }
}

fn member_logs(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "log") && !p.to_string_lossy().contains("meta-") {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(10).collect();
            out.push_str(&format!("--- {} ---\n", p.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_members_split_rebalance_and_take_over_from_a_killed_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let cluster = start_cluster(d, 3, 3).await;
    create_topic(&cluster, "split", 4).await;
    produce(&cluster, "split", 4, 0, 400).await;
    let a = Member::start(&cluster, d, "a", "split", "g-split", &[]);
    let b = Member::start(&cluster, d, "b", "split", "g-split", &[]);
    wait_for("two members to split four partitions", d, || {
        let (x, y) = (a.assignment(), b.assignment());
        x.len() == 2 && y.len() == 2 && x.union(&y).count() == 4
    })
    .await;
    wait_for("the two members to read everything", d, || {
        values(&[&a, &b]) == expected("split", 400)
    })
    .await;

    let c = Member::start(&cluster, d, "c", "split", "g-split", &[]);
    wait_for("a third member to get partitions", d, || {
        let sets = [a.assignment(), b.assignment(), c.assignment()];
        let mut sizes: Vec<usize> = sets.iter().map(BTreeSet::len).collect();
        sizes.sort_unstable();
        let all: BTreeSet<i32> = sets.iter().flatten().copied().collect();
        sizes == vec![1, 1, 2] && all.len() == 4
    })
    .await;

    a.kill();
    wait_for(
        "the survivors to take over the killed member's partitions",
        d,
        || {
            let (x, y) = (b.assignment(), c.assignment());
            x.union(&y).count() == 4 && x.intersection(&y).count() == 0
        },
    )
    .await;
    produce(&cluster, "split", 4, 400, 200).await;
    wait_for("the survivors to read the new records", d, || {
        let got = values(&[&b, &c]);
        (400..600).all(|i| got.contains(&format!("split-{i}")))
    })
    .await;
    b.stop().await;
    c.stop().await;
}

/// The group's per-partition rows from `GET /api/v1/metadata/groups/{g}`.
async fn group_rows(cluster: &MetadataCluster, group: &str) -> Option<Value> {
    let leader = cluster.leader().await?;
    let (status, v) = cluster
        .get(
            leader,
            &format!("/api/v1/metadata/groups/{group}?consistent=true"),
        )
        .await?;
    (status == 200).then_some(v)
}

fn committed_total(v: &Value) -> i64 {
    v["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["committedOffset"].as_i64())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_and_kafka_python_consume_and_commit_in_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let cluster = start_cluster(d, 3, 3).await;
    create_topic(&cluster, "kg", 2).await;
    produce(&cluster, "kg", 2, 0, 100).await;

    let out = Command::new("kcat")
        .args(["-b", &cluster.bootstrap(), "-G", "g-kcat", "kg"])
        .args([
            "-X",
            "auto.offset.reset=earliest",
            "-c",
            "100",
            "-q",
            "-f",
            "%s\\n",
        ])
        .output()
        .expect("run kcat");
    assert!(
        out.status.success(),
        "kcat -G failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(got, expected("kg", 100), "kcat -G read every record once");
    let c = &cluster;
    wait_until(Duration::from_secs(20), "kcat's commits", || async move {
        let v = group_rows(c, "g-kcat").await?;
        (committed_total(&v) == 100 && v["totalLag"] == 0).then_some(())
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {:?}",
            futures::executor::block_on(group_rows(c, "g-kcat"))
        )
    });

    let mut m = Member::start(
        &cluster,
        d,
        "kp",
        "kg",
        "g-kp",
        &["--client", "kafka-python", "--max", "100"],
    );
    m.wait_exit().await;
    let got: BTreeSet<String> = m.records().into_iter().map(|r| r.2).collect();
    assert_eq!(got, expected("kg", 100), "kafka-python read every record");
    let v = group_rows(&cluster, "g-kp")
        .await
        .expect("kafka-python's group");
    assert_eq!(
        committed_total(&v),
        100,
        "kafka-python committed everything: {v}"
    );
}

/// The coordinator of `group`, asked through FindCoordinator on any live broker.
async fn find_coordinator(cluster: &MetadataCluster, group: &str) -> i32 {
    let broker = cluster.broker_ids()[0];
    let mut conn = kafka::connect(&cluster.kafka_addr(broker)).await;
    let req = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(group.to_string()))
        .with_key_type(0);
    let resp: FindCoordinatorResponse = conn
        .send(&req, 3, Duration::from_secs(5))
        .await
        .expect("FindCoordinator");
    assert_eq!(resp.error_code, 0, "FindCoordinator");
    resp.node_id.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_killing_the_coordinator_and_the_metadata_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut cluster = start_cluster(d, 3, 3).await;
    create_topic(&cluster, "resume", 2).await;
    produce(&cluster, "resume", 2, 0, 200).await;

    let mut first = Member::start(&cluster, d, "first", "resume", "g-resume", &["--max", "80"]);
    first.wait_exit().await;
    let r1 = first.records();
    assert_eq!(r1.len(), 80);

    // Lag over HTTP: log end offset − committed offset, per partition and in total.
    let v = group_rows(&cluster, "g-resume").await.expect("group");
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, o, _) in &r1 {
        let e = next.entry(*p).or_insert(0);
        *e = (*e).max(o + 1);
    }
    for row in v["partitions"].as_array().expect("rows") {
        let p = row["partition"].as_i64().expect("partition") as i32;
        let committed = row["committedOffset"].as_i64().expect("committed");
        let end = row["logEndOffset"].as_i64().expect("log end");
        assert_eq!(committed, next[&p], "committed offset of partition {p}");
        assert_eq!(
            row["lag"].as_i64(),
            Some(end - committed),
            "lag of partition {p}"
        );
        assert_eq!(end, 100, "each partition holds 100 records");
    }
    // Only partitions with a commit have a row (the member may have read one partition only).
    let rows = v["partitions"].as_array().map_or(0, Vec::len);
    assert_eq!(rows, next.len(), "{v}");
    let lag: i64 = next.values().map(|n| 100 - n).sum();
    assert_eq!(v["totalLag"], lag, "{v}");
    // The list shows the same group with the same lag, from any node; unknown groups are 404.
    let any = cluster.ids()[0];
    let (status, list) = cluster
        .get(any, "/api/v1/metadata/groups?consistent=true")
        .await
        .expect("list");
    assert_eq!(status, 200);
    let listed = list
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["groupId"] == "g-resume"))
        .cloned()
        .expect("group listed");
    assert_eq!(listed["totalLag"], lag, "{listed}");
    let (status, body) = cluster
        .get(any, "/api/v1/metadata/groups/no-such-group")
        .await
        .expect("get");
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "NOT_FOUND");

    let coordinator = find_coordinator(&cluster, "g-resume").await;
    cluster.kill_broker(coordinator);
    let meta_leader = cluster.leader().await.expect("metadata leader");
    cluster.kill(meta_leader);

    let mut second = Member::start(
        &cluster,
        d,
        "second",
        "resume",
        "g-resume",
        &["--max", "120"],
    );
    second.wait_exit().await;
    let r2 = second.records();
    let firsts: BTreeMap<i32, i64> = r2.iter().fold(BTreeMap::new(), |mut m, (p, o, _)| {
        let e = m.entry(*p).or_insert(*o);
        *e = (*e).min(*o);
        m
    });
    for (p, o) in &firsts {
        // A partition without a commit starts at the beginning (auto.offset.reset=earliest).
        let expect = next.get(p).copied().unwrap_or(0);
        assert_eq!(
            *o, expect,
            "partition {p} resumed right after its last commit"
        );
    }
    let v1: BTreeSet<String> = r1.into_iter().map(|r| r.2).collect();
    let v2: BTreeSet<String> = r2.into_iter().map(|r| r.2).collect();
    assert!(v1.is_disjoint(&v2), "a committed record was read again");
    let all: BTreeSet<String> = v1.union(&v2).cloned().collect();
    assert_eq!(
        all,
        expected("resume", 200),
        "no record skipped\n{}",
        process_logs(d)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_requests_with_bad_input_get_kafka_errors() {
    use kafka_protocol::error::ResponseError;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, JoinGroupRequest, OffsetCommitRequest};

    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    create_topic(&cluster, "bad", 1).await;
    let group = "g-bad";
    let coordinator = find_coordinator(&cluster, group).await;
    let other = cluster
        .broker_ids()
        .into_iter()
        .find(|b| *b != coordinator)
        .expect("another broker");
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let join = |session: i32| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(session)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default().with_name(s("range"))
            ])
    };
    let err = |c: i16| ResponseError::try_from_code(c);

    let mut elsewhere = kafka::connect(&cluster.kafka_addr(other)).await;
    let r = elsewhere
        .send(&join(10_000), 5, Duration::from_secs(5))
        .await
        .expect("join");
    assert_eq!(err(r.error_code), Some(ResponseError::NotCoordinator));

    let mut conn = kafka::connect(&cluster.kafka_addr(coordinator)).await;
    let r = conn
        .send(&join(10), 5, Duration::from_secs(5))
        .await
        .expect("join");
    assert_eq!(
        err(r.error_code),
        Some(ResponseError::InvalidSessionTimeout)
    );
    let r = conn
        .send(
            &join(10_000).with_protocols(vec![]),
            5,
            Duration::from_secs(5),
        )
        .await
        .expect("join");
    assert_eq!(
        err(r.error_code),
        Some(ResponseError::InconsistentGroupProtocol)
    );
    let r = conn
        .send(&join(10_000), 5, Duration::from_secs(5))
        .await
        .expect("join");
    assert_eq!(err(r.error_code), Some(ResponseError::MemberIdRequired));
    assert!(
        !r.member_id.is_empty(),
        "MEMBER_ID_REQUIRED carries the id to use"
    );

    let commit = |generation: i32, member: &str, topic: &str, metadata: usize| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(kafka::name(topic))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(5)
                    .with_committed_metadata(Some(s(&"m".repeat(metadata))))])])
    };
    let code_of = |r: kafka_protocol::messages::OffsetCommitResponse| {
        err(r.topics[0].partitions[0].error_code)
    };
    let r = conn
        .send(&commit(3, "nobody", "bad", 1), 8, Duration::from_secs(5))
        .await
        .expect("commit");
    assert_eq!(code_of(r), Some(ResponseError::UnknownMemberId));
    let r = conn
        .send(
            &commit(-1, "", "no-such-topic", 1),
            8,
            Duration::from_secs(5),
        )
        .await
        .expect("commit");
    assert_eq!(code_of(r), Some(ResponseError::UnknownTopicOrPartition));
    let r = conn
        .send(&commit(-1, "", "bad", 5000), 8, Duration::from_secs(5))
        .await
        .expect("commit");
    assert_eq!(code_of(r), Some(ResponseError::OffsetMetadataTooLarge));
    // Nothing of that was stored; a valid simple commit is.
    assert!(
        group_rows(&cluster, group).await.is_none(),
        "refused commits stored nothing"
    );
    let r = conn
        .send(&commit(-1, "", "bad", 1), 8, Duration::from_secs(5))
        .await
        .expect("commit");
    assert_eq!(
        r.topics[0].partitions[0].error_code, 0,
        "a generation-less commit to an empty group"
    );
    let v = group_rows(&cluster, group).await.expect("stored");
    assert_eq!(committed_total(&v), 5);
}
