//! Transactions, the partition side (KIP-98), with real processes: transactional batches
//! written by hand, WriteTxnMarkers sent as the transaction coordinator would, and what
//! `read_committed` consumers see — the last stable offset (LSO), the aborted-transaction
//! list, ListOffsets — on the leader, on the leaders elected after SIGKILLs, and on brokers
//! that rebuilt that state from their logs on restart. Also the fencing of a zombie producer
//! by a marker of a newer epoch.

mod common;

use std::time::Duration;

use common::kafka::{self, Fetched};
use dmq::procs::{wait_until, MetadataCluster};
use dmq_broker::kafka::client::KafkaConnection;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::InitProducerIdRequest;
use serde_json::{json, Value};

const TOPIC: &str = "txn";
const READ_UNCOMMITTED: i8 = 0;
const READ_COMMITTED: i8 = 1;

/// The topic's partitions as the quorum has committed them.
async fn partitions(cluster: &MetadataCluster) -> Option<Vec<Value>> {
    let leader = cluster.leader().await?;
    let (status, topic) = cluster
        .get(
            leader,
            &format!("/api/v1/metadata/topics/{TOPIC}?consistent=true"),
        )
        .await?;
    (status == 200).then(|| topic["partitions"].as_array().cloned())?
}

fn leader_of(p: &Value) -> i32 {
    p["leader"].as_i64().unwrap_or(-1) as i32
}

fn isr_len(p: &Value) -> usize {
    p["isr"].as_array().map_or(0, Vec::len)
}

/// Waits (20 s) until partition 0 as committed satisfies `ready`; returns it.
async fn wait_partition(
    cluster: &MetadataCluster,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let ready = &ready;
    wait_until(Duration::from_secs(20), what, || async move {
        let p = partitions(cluster).await?.into_iter().next()?;
        ready(&p).then_some(p)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn records(prefix: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| ("k".to_string(), format!("{prefix}{i}")))
        .collect()
}

fn offsets(f: &Fetched) -> Vec<i64> {
    f.records.iter().map(|r| r.0).collect()
}

/// Waits (20 s) until `broker` answers a READ_COMMITTED fetch from 0 with `hw` and `lso`;
/// returns that answer.
async fn wait_committed_view(cluster: &MetadataCluster, broker: i32, hw: i64, lso: i64) -> Fetched {
    let addr = cluster.kafka_addr(broker);
    let addr = &addr;
    let last = std::sync::Mutex::new(None);
    let last = &last;
    wait_until(
        Duration::from_secs(20),
        &format!("broker {broker} to serve HW {hw} and LSO {lso}"),
        || async move {
            let mut conn = KafkaConnection::connect(addr, "txn-test", Duration::from_secs(5))
                .await
                .ok()?;
            let f = kafka::fetch_isolated(&mut conn, TOPIC, 0, 0, READ_COMMITTED).await;
            let done = f.error_code == 0 && f.high_watermark == hw && f.last_stable_offset == lso;
            *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(f.clone());
            done.then_some(f)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}; last answer {:?}", last.lock().ok()))
}

/// Kafka's LSO contract (KIP-98), checked across leaders and restarts:
///
/// ```text
///  offset  0 1 | 2 3 4 | 5  | 6 7 | 8  | 9 10 | 11     | 12 13 | 14
///  batch   d d | T T T | C  | T T | A  | T T  | A(e=1) | T T   | C(e=1)
///               txn 1 committed  txn 2 aborted  txn 3 fenced  txn 4, open across the kills
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_decide_what_read_committed_consumers_see_across_leaders_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = common::start_cluster(dir.path(), 3, 3).await;
    let body = json!({"topicName": TOPIC, "numPartitions": 1, "replicationFactor": 3,
        "config": {"min.insync.replicas": "2"}});
    let (status, body) = common::post_leader(&cluster, "/api/v1/metadata/topics", &body).await;
    assert_eq!(status, 201, "create topic: {body}");
    wait_partition(&cluster, "every replica in the ISR", |p| isr_len(p) == 3).await;
    common::wait_topic_on_brokers(&cluster, TOPIC, 1, 3).await;
    let leader = leader_of(&partitions(&cluster).await.expect("partitions")[0]);
    let mut conn = kafka::connect(&cluster.kafka_addr(leader)).await;

    // A producer id, as a non-transactional InitProducerId hands it out.
    let init = conn
        .send(
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
            4,
            Duration::from_secs(10),
        )
        .await
        .expect("init producer id");
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);

    // 0-1: plain records; 2-4: transaction 1, open.
    let r = kafka::produce(
        &mut conn,
        TOPIC,
        0,
        kafka::batch(&records("d", 2), None),
        -1,
    )
    .await;
    assert_eq!((r.error_code, r.base_offset), (0, 0));
    let t1 = kafka::txn_batch(&records("t1-", 3), pid, epoch, 0);
    let r = kafka::produce(&mut conn, TOPIC, 0, t1, -1).await;
    assert_eq!((r.error_code, r.base_offset), (0, 2));
    let rc = kafka::fetch_isolated(&mut conn, TOPIC, 0, 0, READ_COMMITTED).await;
    assert_eq!(rc.error_code, 0);
    assert_eq!(
        (rc.high_watermark, rc.last_stable_offset),
        (5, 2),
        "LSO = the open transaction's first offset"
    );
    assert_eq!(offsets(&rc), vec![0, 1], "nothing of the open transaction");
    assert_eq!(rc.aborted, Some(vec![]));
    let ru = kafka::fetch_isolated(&mut conn, TOPIC, 0, 0, READ_UNCOMMITTED).await;
    assert_eq!(offsets(&ru), vec![0, 1, 2, 3, 4]);
    assert_eq!(ru.last_stable_offset, 2, "every answer carries the LSO");
    assert_eq!(ru.aborted, None, "READ_UNCOMMITTED gets no aborted list");
    assert_eq!(
        kafka::list_latest(&mut conn, TOPIC, 0, READ_COMMITTED).await,
        (0, 2)
    );
    assert_eq!(
        kafka::list_latest(&mut conn, TOPIC, 0, READ_UNCOMMITTED).await,
        (0, 5)
    );

    // Commit at 5: answered once replicated to the ISR, so the LSO is the HW at once.
    let code = kafka::write_txn_marker(&mut conn, TOPIC, 0, (pid, epoch), true, 0).await;
    assert_eq!(code, 0, "commit marker");
    let rc = kafka::fetch_isolated(&mut conn, TOPIC, 0, 0, READ_COMMITTED).await;
    assert_eq!((rc.high_watermark, rc.last_stable_offset), (6, 6));
    assert_eq!(offsets(&rc), vec![0, 1, 2, 3, 4]);
    assert_eq!(rc.markers, vec![(5, pid)]);
    assert_eq!(rc.aborted, Some(vec![]), "a commit is not listed");

    // 6-7: transaction 2, aborted at 8.
    let t2 = kafka::txn_batch(&records("t2-", 2), pid, epoch, 3);
    let r = kafka::produce(&mut conn, TOPIC, 0, t2, -1).await;
    assert_eq!((r.error_code, r.base_offset), (0, 6));
    let rc = kafka::fetch_isolated(&mut conn, TOPIC, 0, 6, READ_COMMITTED).await;
    assert_eq!((rc.last_stable_offset, offsets(&rc)), (6, vec![]));
    let code = kafka::write_txn_marker(&mut conn, TOPIC, 0, (pid, epoch), false, 0).await;
    assert_eq!(code, 0, "abort marker");
    let rc = kafka::fetch_isolated(&mut conn, TOPIC, 0, 6, READ_COMMITTED).await;
    assert_eq!((rc.high_watermark, rc.last_stable_offset), (9, 9));
    assert_eq!(rc.aborted, Some(vec![(pid, 6)]));
    assert_eq!(rc.markers, vec![(8, pid)]);
    assert_eq!(
        kafka::list_latest(&mut conn, TOPIC, 0, READ_COMMITTED).await,
        (0, 9)
    );

    // 9-10: transaction 3, which the coordinator times out: it aborts with a bumped epoch.
    let t3 = kafka::txn_batch(&records("t3-", 2), pid, epoch, 5);
    let r = kafka::produce(&mut conn, TOPIC, 0, t3, -1).await;
    assert_eq!((r.error_code, r.base_offset), (0, 9));
    let bumped = epoch + 1;
    let code = kafka::write_txn_marker(&mut conn, TOPIC, 0, (pid, bumped), false, 1).await;
    assert_eq!(code, 0, "abort marker of the bumped epoch");
    // The zombie (old epoch) is fenced, its data and its markers alike.
    let zombie = kafka::txn_batch(&records("zombie", 1), pid, epoch, 7);
    let r = kafka::produce(&mut conn, TOPIC, 0, zombie, -1).await;
    assert_eq!(
        ResponseError::try_from_code(r.error_code),
        Some(ResponseError::InvalidProducerEpoch),
        "data of the fenced epoch"
    );
    let code = kafka::write_txn_marker(&mut conn, TOPIC, 0, (pid, epoch), true, 1).await;
    assert_eq!(
        ResponseError::try_from_code(code),
        Some(ResponseError::InvalidProducerEpoch),
        "a marker of the fenced epoch"
    );
    // A client cannot forge a marker through Produce.
    let forged = dmq_log::batch::control_batch(pid, bumped, true, 1, 0);
    let r = kafka::produce(&mut conn, TOPIC, 0, forged, -1).await;
    assert_eq!(
        ResponseError::try_from_code(r.error_code),
        Some(ResponseError::InvalidRecord)
    );

    // 12-13: transaction 4 of the new epoch, left open across the kills below.
    let t4 = kafka::txn_batch(&records("t4-", 2), pid, bumped, 0);
    let r = kafka::produce(&mut conn, TOPIC, 0, t4, -1).await;
    assert_eq!((r.error_code, r.base_offset), (0, 12));
    let expected_aborted = Some(vec![(pid, 6), (pid, 9)]);
    let rc = wait_committed_view(&cluster, leader, 14, 12).await;
    assert_eq!(rc.aborted, expected_aborted);
    assert_eq!(offsets(&rc), vec![0, 1, 2, 3, 4, 6, 7, 9, 10]);
    drop(conn);

    // SIGKILL the leader three times over, restarting each victim: the leaders elected are
    // followers that built the state from replicated batches, and (by the third round at the
    // latest) brokers that rebuilt it from their own logs on restart.
    let mut current = leader;
    for round in 0..3 {
        let p = partitions(&cluster).await.expect("partitions");
        let epoch_before = p[0]["leaderEpoch"].as_i64().unwrap_or(0);
        cluster.kill_broker(current);
        let p = wait_partition(&cluster, "a new leader from the ISR", |p| {
            leader_of(p) >= 0
                && leader_of(p) != current
                && p["leaderEpoch"].as_i64().unwrap_or(0) > epoch_before
        })
        .await;
        let victim = current;
        current = leader_of(&p);
        let rc = wait_committed_view(&cluster, current, 14, 12).await;
        assert_eq!(
            rc.aborted, expected_aborted,
            "round {round}, leader {current}"
        );
        let mut conn = kafka::connect(&cluster.kafka_addr(current)).await;
        assert_eq!(
            kafka::list_latest(&mut conn, TOPIC, 0, READ_COMMITTED).await,
            (0, 12),
            "round {round}, leader {current}"
        );
        // The fence holds on every leader.
        let zombie = kafka::txn_batch(&records("zombie", 1), pid, epoch, 7);
        let r = kafka::produce(&mut conn, TOPIC, 0, zombie, -1).await;
        assert_eq!(
            ResponseError::try_from_code(r.error_code),
            Some(ResponseError::InvalidProducerEpoch),
            "round {round}, leader {current}"
        );
        eprintln!("round {round}: killed {victim}; {current} leads with the same state");
        cluster.start_broker(victim).expect("restart broker");
        wait_partition(&cluster, "the restarted broker back in the ISR", |p| {
            isr_len(p) == 3
        })
        .await;
    }

    // Transaction 4 still completes: committed at 14 by the coordinator's bumped epoch.
    let mut conn = kafka::connect(&cluster.kafka_addr(current)).await;
    let code = kafka::write_txn_marker(&mut conn, TOPIC, 0, (pid, bumped), true, 1).await;
    assert_eq!(code, 0, "commit of the transaction open across the kills");
    let rc = wait_committed_view(&cluster, current, 15, 15).await;
    assert_eq!(rc.aborted, expected_aborted);
    assert_eq!(offsets(&rc), vec![0, 1, 2, 3, 4, 6, 7, 9, 10, 12, 13]);
    assert_eq!(rc.markers, vec![(5, pid), (8, pid), (11, pid), (14, pid)]);
}
