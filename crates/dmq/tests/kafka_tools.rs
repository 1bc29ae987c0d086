//! The judges: the reference Java client and Apache Kafka's own command-line tools (4.1, the
//! jars `scripts/install-test-deps.sh` fetches into `target/kafka-judges/lib`) against a dmq
//! cluster, each with its output checked.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{judges_lib, repo_root, start_cluster};
use dmq::procs::{wait_until, MetadataCluster};

/// Runs a Kafka tool's main class with `args` (stdin from `input`): (success, stdout, stderr).
async fn tool(class: &str, args: &[&str], input: Option<String>) -> (bool, String, String) {
    let lib = judges_lib();
    let mut cmd = Command::new("java");
    cmd.arg("-cp")
        .arg(format!("{}/*", lib.display()))
        .arg(class)
        .args(args)
        .current_dir(repo_root())
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{class} {}", args.join(" "));
    let out = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().expect("spawn java");
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(text.as_bytes()).expect("write stdin");
        }
        child.wait_with_output().expect("java output")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    eprintln!("$ {shown}\n{stdout}{}", tail(&stderr));
    (out.status.success(), stdout, stderr)
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Like [`tool`], and the tool must succeed.
async fn ok(class: &str, args: &[&str], input: Option<String>) -> String {
    let (success, stdout, stderr) = tool(class, args, input).await;
    assert!(
        success,
        "{class} {args:?} failed:\n{stdout}\n{}",
        tail(&stderr)
    );
    stdout
}

const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
const CONFIGS: &str = "kafka.admin.ConfigCommand";
const GROUPS: &str = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_java_client_round_trips_admin_producer_consumer_and_configs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let out = ok(
        "tests/interop/java/JavaClientCheck.java",
        &[&cluster.bootstrap(), "judge"],
        None,
    )
    .await;
    assert!(out.contains("OK java: 2020 records"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_cli_tools_manage_topics_configs_groups_and_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let bs = cluster.bootstrap();
    let b = bs.as_str();
    let broker = cluster.broker_ids()[0].to_string();

    // kafka-topics
    let out = ok(
        TOPICS,
        &[
            "--bootstrap-server",
            b,
            "--create",
            "--topic",
            "tools",
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ],
        None,
    )
    .await;
    assert!(out.contains("Created topic tools."), "{out}");
    let out = ok(TOPICS, &["--bootstrap-server", b, "--list"], None).await;
    assert!(out.lines().any(|l| l == "tools"), "{out}");
    ok(
        TOPICS,
        &[
            "--bootstrap-server",
            b,
            "--alter",
            "--topic",
            "tools",
            "--partitions",
            "4",
        ],
        None,
    )
    .await;
    let out = ok(
        TOPICS,
        &["--bootstrap-server", b, "--describe", "--topic", "tools"],
        None,
    )
    .await;
    assert!(
        out.contains("PartitionCount: 4") && out.contains("ReplicationFactor: 3"),
        "{out}"
    );
    assert_eq!(
        out.matches("Leader: 10").count(),
        4,
        "every partition led: {out}"
    );

    // kafka-configs
    let out = ok(
        CONFIGS,
        &[
            "--bootstrap-server",
            b,
            "--entity-type",
            "topics",
            "--entity-name",
            "tools",
            "--alter",
            "--add-config",
            "retention.ms=86400000,max.message.bytes=500000",
        ],
        None,
    )
    .await;
    assert!(
        out.contains("Completed updating config for topic tools."),
        "{out}"
    );
    let out = ok(
        CONFIGS,
        &[
            "--bootstrap-server",
            b,
            "--entity-type",
            "topics",
            "--entity-name",
            "tools",
            "--describe",
        ],
        None,
    )
    .await;
    assert!(
        out.contains("retention.ms=86400000") && out.contains("max.message.bytes=500000"),
        "{out}"
    );
    ok(
        CONFIGS,
        &[
            "--bootstrap-server",
            b,
            "--entity-type",
            "topics",
            "--entity-name",
            "tools",
            "--alter",
            "--delete-config",
            "max.message.bytes",
        ],
        None,
    )
    .await;
    let (success, out, err) = tool(
        CONFIGS,
        &[
            "--bootstrap-server",
            b,
            "--entity-type",
            "topics",
            "--entity-name",
            "tools",
            "--alter",
            "--add-config",
            "retention.ms=-5",
        ],
        None,
    )
    .await;
    assert!(
        !success && (out + &err).contains("InvalidConfigurationException"),
        "a bad value is refused"
    );

    // kafka-configs on brokers: a cluster-wide default (--entity-default) that the topic then
    // inherits, a per-broker value, and a read-only config refused.
    let out = ok(
        CONFIGS,
        &[
            "--bootstrap-server",
            b,
            "--entity-type",
            "brokers",
            "--entity-default",
            "--alter",
            "--add-config",
            "log.retention.ms=3600000",
        ],
        None,
    )
    .await;
    assert!(
        out.contains("Completed updating default config for brokers in the cluster."),
        "{out}"
    );
    let out = ok(
        CONFIGS,
        &[
            "--bootstrap-server",
            b,
            "--entity-type",
            "brokers",
            "--entity-default",
            "--describe",
        ],
        None,
    )
    .await;
    assert!(
        out.contains("log.retention.ms=3600000") && out.contains("DYNAMIC_DEFAULT_BROKER_CONFIG"),
        "{out}"
    );
    ok(
        CONFIGS,
        &[
            "--bootstrap-server",
            b,
            "--entity-type",
            "brokers",
            "--entity-name",
            &broker,
            "--alter",
            "--add-config",
            "log.retention.ms=7200000",
        ],
        None,
    )
    .await;
    let out = ok(
        CONFIGS,
        &[
            "--bootstrap-server",
            b,
            "--entity-type",
            "brokers",
            "--entity-name",
            &broker,
            "--describe",
        ],
        None,
    )
    .await;
    assert!(
        out.contains("log.retention.ms=7200000") && out.contains("DYNAMIC_BROKER_CONFIG"),
        "{out}"
    );
    let (success, out, err) = tool(
        CONFIGS,
        &[
            "--bootstrap-server",
            b,
            "--entity-type",
            "brokers",
            "--entity-name",
            &broker,
            "--alter",
            "--add-config",
            "num.partitions=7",
        ],
        None,
    )
    .await;
    assert!(!success, "a read-only broker config is refused: {out}{err}");
    for (entity, key) in [
        (&["--entity-default"][..], "log.retention.ms"),
        (&["--entity-name", &broker][..], "log.retention.ms"),
    ] {
        let mut args = vec!["--bootstrap-server", b, "--entity-type", "brokers"];
        args.extend_from_slice(entity);
        args.extend_from_slice(&["--alter", "--delete-config", key]);
        ok(CONFIGS, &args, None).await;
    }
    let out = ok(
        CONFIGS,
        &[
            "--bootstrap-server",
            b,
            "--entity-type",
            "topics",
            "--entity-name",
            "tools",
            "--describe",
        ],
        None,
    )
    .await;
    assert!(
        out.contains("retention.ms=86400000") && !out.contains("max.message.bytes"),
        "{out}"
    );

    // kafka-console-producer and -consumer, in a group
    let lines: String = (0..60).map(|i| format!("k{i}:v{i}\n")).collect();
    ok(
        "org.apache.kafka.tools.ConsoleProducer",
        &[
            "--bootstrap-server",
            b,
            "--topic",
            "tools",
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=:",
        ],
        Some(lines),
    )
    .await;
    let out = ok(
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        &[
            "--bootstrap-server",
            b,
            "--topic",
            "tools",
            "--from-beginning",
            "--max-messages",
            "60",
            "--group",
            "tools-group",
            "--property",
            "print.key=true",
            "--property",
            "key.separator=:",
            "--timeout-ms",
            "60000",
        ],
        None,
    )
    .await;
    let mut got: Vec<&str> = out.lines().filter(|l| l.starts_with('k')).collect();
    got.sort();
    let mut want: Vec<String> = (0..60).map(|i| format!("k{i}:v{i}")).collect();
    want.sort();
    assert_eq!(got, want, "every record once");

    // kafka-consumer-groups: lag per partition from the committed offsets, then a reset
    let out = ok(
        GROUPS,
        &[
            "--bootstrap-server",
            b,
            "--describe",
            "--group",
            "tools-group",
        ],
        None,
    )
    .await;
    let committed: i64 = out
        .lines()
        .filter(|l| l.starts_with("tools-group"))
        .filter_map(|l| l.split_whitespace().nth(3)?.parse::<i64>().ok())
        .sum();
    assert_eq!(committed, 60, "CURRENT-OFFSET adds up: {out}");
    let out = ok(GROUPS, &["--bootstrap-server", b, "--list"], None).await;
    assert!(out.lines().any(|l| l.trim() == "tools-group"), "{out}");
    let out = ok(
        GROUPS,
        &[
            "--bootstrap-server",
            b,
            "--reset-offsets",
            "--group",
            "tools-group",
            "--topic",
            "tools",
            "--to-earliest",
            "--execute",
        ],
        None,
    )
    .await;
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("tools-group"))
            .filter(|l| l.split_whitespace().nth(3) == Some("0"))
            .count(),
        4,
        "{out}"
    );

    // kafka-delete-records: everything below the high watermark of every partition
    let json_file = dir.path().join("delete.json");
    std::fs::write(
        &json_file,
        r#"{"version":1,"partitions":[{"topic":"tools","partition":0,"offset":-1},
            {"topic":"tools","partition":1,"offset":-1},{"topic":"tools","partition":2,"offset":-1},
            {"topic":"tools","partition":3,"offset":-1}]}"#,
    )
    .expect("offset json");
    let out = ok(
        "org.apache.kafka.tools.DeleteRecordsCommand",
        &[
            "--bootstrap-server",
            b,
            "--offset-json-file",
            &json_file.to_string_lossy(),
        ],
        None,
    )
    .await;
    let lows: i64 = out
        .lines()
        .filter_map(|l| {
            l.split("low_watermark: ")
                .nth(1)?
                .trim()
                .parse::<i64>()
                .ok()
        })
        .sum();
    assert_eq!(lows, 60, "the low watermarks add up to every record: {out}");

    // kafka-producer-perf-test and kafka-consumer-perf-test
    let out = ok(
        "org.apache.kafka.tools.ProducerPerformance",
        &[
            "--topic",
            "tools-perf",
            "--num-records",
            "20000",
            "--record-size",
            "1024",
            "--throughput",
            "-1",
            "--producer-props",
            &format!("bootstrap.servers={b}"),
            "acks=all",
        ],
        None,
    )
    .await;
    assert!(out.contains("20000 records sent"), "{out}");
    let out = ok(
        "org.apache.kafka.tools.ConsumerPerformance",
        &[
            "--bootstrap-server",
            b,
            "--topic",
            "tools-perf",
            "--messages",
            "20000",
            "--timeout",
            "60000",
        ],
        None,
    )
    .await;
    let data = out.lines().last().unwrap_or_default();
    assert_eq!(data.split(", ").nth(4), Some("20000"), "{out}");

    // kafka-topics --delete
    ok(
        TOPICS,
        &["--bootstrap-server", b, "--delete", "--topic", "tools"],
        None,
    )
    .await;
    gone(&cluster, "tools").await;
}

/// Waits until `topic` is no longer listed by kafka-topics.
async fn gone(cluster: &MetadataCluster, topic: &str) {
    let bs = cluster.bootstrap();
    wait_until(Duration::from_secs(30), "the topic gone", || {
        let bs = bs.clone();
        async move {
            let out = ok(TOPICS, &["--bootstrap-server", &bs, "--list"], None).await;
            (!out.lines().any(|l| l == topic)).then_some(())
        }
    })
    .await
    .expect("topic deleted");
}

/// kafka-leader-election: after a controlled shutdown moved a broker's leaderships away and it
/// came back into the ISRs, a preferred election gives them back; an unclean election of a
/// partition that has a live leader is not needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_leader_election_restores_preferred_leaders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = start_cluster(dir.path(), 3, 3).await;
    let bs = cluster.bootstrap();
    let b = bs.as_str();
    ok(
        TOPICS,
        &[
            "--bootstrap-server",
            b,
            "--create",
            "--topic",
            "elect",
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ],
        None,
    )
    .await;
    let leaders = |cluster: &MetadataCluster| {
        let bs = cluster.bootstrap();
        async move {
            let out = ok(
                TOPICS,
                &["--bootstrap-server", &bs, "--describe", "--topic", "elect"],
                None,
            )
            .await;
            let mut v: Vec<(i32, i32, i32, usize)> = out
                .lines()
                .filter(|l| l.contains("Partition: "))
                .filter_map(|l| {
                    let field = |name: &str| {
                        l.split(name)
                            .nth(1)?
                            .split_whitespace()
                            .next()
                            .map(str::to_string)
                    };
                    let replicas = field("Replicas: ")?;
                    let isr = field("Isr: ")?;
                    Some((
                        field("Partition: ")?.parse().ok()?,
                        field("Leader: ")?.parse().ok()?,
                        replicas.split(',').next()?.parse().ok()?,
                        isr.split(',').count(),
                    ))
                })
                .collect();
            v.sort();
            v
        }
    };
    let before = leaders(&cluster).await;
    assert!(before.iter().all(|(_, l, pref, _)| l == pref), "{before:?}");
    let victim = before[0].1;
    cluster
        .terminate_broker(victim, Duration::from_secs(20))
        .await
        .expect("controlled shutdown");
    cluster.start_broker(victim).expect("restart");
    let moved = wait_until(
        Duration::from_secs(30),
        "the victim back in every ISR",
        || async {
            let now = leaders(&cluster).await;
            (now.len() == 3 && now.iter().all(|p| p.3 == 3)).then_some(now)
        },
    )
    .await
    .expect("ISRs full again");
    assert_ne!(moved[0].1, victim, "its leadership moved away: {moved:?}");

    let out = ok(
        "org.apache.kafka.tools.LeaderElectionCommand",
        &[
            "--bootstrap-server",
            b,
            "--election-type",
            "preferred",
            "--all-topic-partitions",
        ],
        None,
    )
    .await;
    assert!(
        out.contains("Successfully completed leader election (PREFERRED)")
            && out.contains("elect-0"),
        "{out}"
    );
    let after = leaders(&cluster).await;
    assert!(after.iter().all(|(_, l, pref, _)| l == pref), "{after:?}");
    let (success, out, err) = tool(
        "org.apache.kafka.tools.LeaderElectionCommand",
        &[
            "--bootstrap-server",
            b,
            "--election-type",
            "unclean",
            "--topic",
            "elect",
            "--partition",
            "0",
        ],
        None,
    )
    .await;
    assert!(
        success && (out.clone() + &err).contains("Valid replica already elected"),
        "{out}\n{err}"
    );
}

const SHARE_GROUPS: &str = "org.apache.kafka.tools.consumer.group.ShareGroupCommand";

/// Joins share group `group` as `member`, subscribed to `topic` (ShareGroupHeartbeat v1 on the
/// group's coordinator); returns the coordinator's address.
async fn share_member(cluster: &MetadataCluster, group: &str, member: &str, topic: &str) -> String {
    use kafka_protocol::messages::{
        FindCoordinatorRequest, GroupId, ShareGroupHeartbeatRequest, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let any = cluster.kafka_addr(cluster.broker_ids()[0]);
    let mut conn = common::kafka::connect(&any).await;
    let found = conn
        .send(
            &FindCoordinatorRequest::default().with_key(s(group)),
            1,
            Duration::ZERO,
        )
        .await
        .expect("FindCoordinator");
    assert_eq!(found.error_code, 0, "{found:?}");
    let coord = format!("{}:{}", found.host, found.port);
    let mut conn = common::kafka::connect(&coord).await;
    let joined = conn
        .send(
            &ShareGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_member_id(s(member))
                .with_member_epoch(0)
                .with_subscribed_topic_names(Some(vec![TopicName(s(topic))])),
            1,
            Duration::ZERO,
        )
        .await
        .expect("ShareGroupHeartbeat");
    assert_eq!(joined.error_code, 0, "{joined:?}");
    coord
}

/// `member` leaves share group `group` on its coordinator `coord`.
async fn share_member_leaves(coord: &str, group: &str, member: &str) {
    use kafka_protocol::messages::{GroupId, ShareGroupHeartbeatRequest};
    use kafka_protocol::protocol::StrBytes;
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let mut conn = common::kafka::connect(coord).await;
    let left = conn
        .send(
            &ShareGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_member_id(s(member))
                .with_member_epoch(-1),
            1,
            Duration::ZERO,
        )
        .await
        .expect("ShareGroupHeartbeat");
    assert_eq!(left.error_code, 0, "{left:?}");
}

/// AlterShareGroupOffsets v0 on `coord`: every listed partition of `topic` starts at `offset`
/// for `group` (gives an empty share group durable state, as acknowledgements would).
async fn share_offsets_alter(
    coord: &str,
    group: &str,
    topic: &str,
    partitions: &[i32],
    offset: i64,
) {
    use kafka_protocol::messages::alter_share_group_offsets_request as a;
    use kafka_protocol::messages::{AlterShareGroupOffsetsRequest, GroupId, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let req = AlterShareGroupOffsetsRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(vec![a::AlterShareGroupOffsetsRequestTopic::default()
            .with_topic_name(TopicName(s(topic)))
            .with_partitions(
                partitions
                    .iter()
                    .map(|p| {
                        a::AlterShareGroupOffsetsRequestPartition::default()
                            .with_partition_index(*p)
                            .with_start_offset(offset)
                    })
                    .collect(),
            )]);
    let mut conn = common::kafka::connect(coord).await;
    let resp = conn
        .send(&req, 0, Duration::ZERO)
        .await
        .expect("AlterShareGroupOffsets");
    assert_eq!(resp.error_code, 0, "{resp:?}");
    assert!(
        resp.responses
            .iter()
            .flat_map(|t| &t.partitions)
            .all(|p| p.error_code == 0),
        "{resp:?}"
    );
}

/// Kafka 4.1's `kafka-share-groups.sh` (ShareGroupCommand): list, describe (state, members,
/// offsets), delete offsets and delete a share group. Its `--reset-offsets` is not implemented
/// in 4.1, so the start offsets are set with AlterShareGroupOffsets directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_share_group_tool_lists_describes_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let bs = cluster.bootstrap();
    let b = bs.as_str();
    ok(
        TOPICS,
        &[
            "--bootstrap-server",
            b,
            "--create",
            "--topic",
            "shares",
            "--partitions",
            "2",
            "--replication-factor",
            "3",
        ],
        None,
    )
    .await;
    let group = "tools-share";
    let member = "tools-share-member-0000";
    let coord = share_member(&cluster, group, member, "shares").await;
    let describe = |what: &'static str| {
        [
            "--bootstrap-server",
            b,
            "--describe",
            "--group",
            group,
            what,
        ]
    };

    let out = ok(SHARE_GROUPS, &["--bootstrap-server", b, "--list"], None).await;
    assert!(out.lines().any(|l| l.trim() == group), "{out}");
    let out = ok(SHARE_GROUPS, &describe("--state"), None).await;
    assert!(
        out.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&group) && f.contains(&"Stable") && f.last() == Some(&"1")
        }),
        "{out}"
    );
    let out = ok(SHARE_GROUPS, &describe("--members"), None).await;
    assert!(
        out.lines()
            .any(|l| l.starts_with(group) && l.contains(member) && l.contains("shares:0,1")),
        "{out}"
    );
    // No share-partition has state yet: no offsets to show.
    let out = ok(SHARE_GROUPS, &describe("--offsets"), None).await;
    assert!(out.contains("START-OFFSET"), "{out}");
    assert!(!out.lines().any(|l| l.starts_with(group)), "{out}");
    // A group with members is not deleted.
    let delete = ["--bootstrap-server", b, "--delete", "--group", group];
    let (_, out, err) = tool(SHARE_GROUPS, &delete, None).await;
    assert!(
        (out.clone() + &err).contains("GroupNotEmptyException"),
        "{out}\n{err}"
    );

    share_member_leaves(&coord, group, member).await;
    share_offsets_alter(&coord, group, "shares", &[0, 1], 0).await;
    let out = ok(
        SHARE_GROUPS,
        &["--bootstrap-server", b, "--list", "--state"],
        None,
    )
    .await;
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [group, "Empty"]),
        "{out}"
    );
    let out = ok(SHARE_GROUPS, &describe("--offsets"), None).await;
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.first() == Some(&group) && f.get(1) == Some(&"shares"))
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows.iter().all(|f| f.get(3) == Some(&"0")), "{out}");
    let out = ok(
        SHARE_GROUPS,
        &[
            "--bootstrap-server",
            b,
            "--delete-offsets",
            "--group",
            group,
            "--topic",
            "shares",
        ],
        None,
    )
    .await;
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["shares", "Successful"]),
        "{out}"
    );
    // Without state or members the group is gone; state again, then the group is deleted.
    share_offsets_alter(&coord, group, "shares", &[0], 1).await;
    let out = ok(SHARE_GROUPS, &delete, None).await;
    assert!(
        out.contains("Deletion of requested share groups ('tools-share') was successful."),
        "{out}"
    );
    let out = ok(SHARE_GROUPS, &["--bootstrap-server", b, "--list"], None).await;
    assert!(!out.lines().any(|l| l.trim() == group), "{out}");
}
