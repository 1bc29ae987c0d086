//! Bad input on the Kafka port gets Kafka's error codes; malformed frames close only their own
//! connection; the broker keeps serving.

mod common;

use std::time::Duration;

use common::kafka::{batch, connect, produce};
use common::{post_leader, start_cluster};
use dmq::procs::wait_until;
use kafka_protocol::messages::ApiVersionsRequest;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn raw_roundtrip(addr: &str, frame: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(frame).await.expect("write");
    let read = async {
        let n = s.read_i32().await.ok()?;
        let mut buf = vec![0u8; n as usize];
        s.read_exact(&mut buf).await.ok()?;
        Some(buf)
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("answer or close in time")
}

fn frame(key: i16, version: i16, correlation: i32, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    let len = 2 + 2 + 4 + 2 + body.len();
    f.extend_from_slice(&(len as i32).to_be_bytes());
    f.extend_from_slice(&key.to_be_bytes());
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(&correlation.to_be_bytes());
    f.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    f.extend_from_slice(body);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_errors_for_bad_requests_and_the_broker_survives_malformed_frames() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, 3).await;
    let body = json!({"topicName": "strict", "numPartitions": 1, "replicationFactor": 3,
                      "config": {"max.message.bytes": "2000", "min.insync.replicas": "2"}});
    let (status, topic) = post_leader(&cluster, "/api/v1/metadata/topics", &body).await;
    assert_eq!(status, 201, "{topic}");
    let leader = topic["partitions"][0]["leader"].as_i64().expect("leader") as i32;
    let follower = cluster
        .broker_ids()
        .into_iter()
        .find(|b| *b != leader)
        .expect("follower");
    let addr = cluster.kafka_addr(leader);
    wait_until(Duration::from_secs(20), "leader ready", || async {
        let (_, v) = cluster
            .broker_get(leader, "/api/v1/storage/replication/status")
            .await?;
        v["partitions"]
            .as_array()?
            .iter()
            .any(|p| p["role"] == "LEADER")
            .then_some(())
    })
    .await
    .expect("leader");

    // Frames: oversized size prefix and garbage close the connection without an answer.
    assert_eq!(
        raw_roundtrip(&addr, &(200 * 1024 * 1024i32).to_be_bytes()).await,
        None
    );
    assert_eq!(raw_roundtrip(&addr, &[0, 0, 0, 3, 1, 2, 3]).await, None);
    assert_eq!(
        raw_roundtrip(&addr, &frame(0, 9, 1, &[0xff; 7])).await,
        None,
        "truncated Produce body"
    );
    // A frame claiming 2^31 topics: the decoder fails on the missing bytes instead of trying to
    // allocate ~200 GiB (which aborts a process using the default allocator).
    let absurd: Vec<u8> = [
        &(-1i16).to_be_bytes()[..],
        &1i16.to_be_bytes(),
        &1000i32.to_be_bytes(),
        &i32::MAX.to_be_bytes(),
    ]
    .concat();
    assert_eq!(raw_roundtrip(&addr, &frame(0, 3, 2, &absurd)).await, None);
    // Unknown API key: an answer carrying the correlation id and UNSUPPORTED_VERSION.
    let r = raw_roundtrip(&addr, &frame(999, 0, 42, &[]))
        .await
        .expect("answer");
    assert_eq!(
        r,
        [&42i32.to_be_bytes()[..], &35i16.to_be_bytes()[..]].concat()
    );
    // ApiVersions at an unsupported version: v0 answer, error 35, the supported list.
    let r = raw_roundtrip(&addr, &frame(18, 99, 7, &[]))
        .await
        .expect("answer");
    assert_eq!(&r[..4], &7i32.to_be_bytes());
    assert_eq!(&r[4..6], &35i16.to_be_bytes());
    let count = i32::from_be_bytes([r[6], r[7], r[8], r[9]]);
    assert!(count >= 10, "supported list has {count} entries");

    // ApiVersions v3: the trailing tagged-field section is empty (librdkafka 2.0.2 needs that).
    let mut conn = connect(&addr).await;
    let mut raw = conn
        .send_raw(
            18,
            3,
            |b| {
                use kafka_protocol::protocol::Encodable;
                ApiVersionsRequest::default()
                    .with_client_software_name("t".into())
                    .with_client_software_version("1".into())
                    .encode(b, 3)
            },
            Duration::ZERO,
        )
        .await
        .expect("ApiVersions v3");
    assert_eq!(raw.last(), Some(&0u8), "tagged fields must be empty");
    let resp = <kafka_protocol::messages::ApiVersionsResponse as kafka_protocol::protocol::Decodable>::decode(&mut raw, 3).expect("decode");
    let produce_range = resp
        .api_keys
        .iter()
        .find(|k| k.api_key == 0)
        .expect("Produce advertised");
    assert_eq!(
        (produce_range.min_version, produce_range.max_version),
        (3, 9),
        "Produce starts at v3 (RecordBatch v2), as in Kafka 4"
    );
    // Transactions: AddPartitionsToTxn (24) v0-3 for producers, v4 for brokers (KIP-890);
    // not v5, whose "transaction version 2" semantics are not offered.
    assert!(
        resp.api_keys
            .iter()
            .any(|k| k.api_key == 24 && (k.min_version, k.max_version) == (0, 4)),
        "AddPartitionsToTxn v0-4 is advertised"
    );
    assert!(
        resp.api_keys
            .iter()
            .any(|k| k.api_key == 11 && k.max_version == 9),
        "JoinGroup v0-9 is advertised"
    );

    let recs = |n: usize, size: usize| -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("k{i}"), "x".repeat(size)))
            .collect()
    };
    // Corrupt CRC.
    let mut bad = batch(&recs(2, 10), None);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let r = produce(&mut conn, "strict", 0, bad, -1).await;
    assert_eq!(r.error_code, 2, "CORRUPT_MESSAGE: {:?}", r.error_message);
    // Larger than the topic's max.message.bytes.
    let r = produce(&mut conn, "strict", 0, batch(&recs(5, 1000), None), -1).await;
    assert_eq!(r.error_code, 10, "MESSAGE_TOO_LARGE: {:?}", r.error_message);
    // Unknown topic, invalid topic name, bad acks.
    let r = produce(&mut conn, "no-such-topic", 0, batch(&recs(1, 1), None), -1).await;
    assert_eq!(r.error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    let r = produce(&mut conn, "bad name!", 0, batch(&recs(1, 1), None), -1).await;
    assert_eq!(r.error_code, 17, "INVALID_TOPIC_EXCEPTION");
    let r = produce(&mut conn, "strict", 0, batch(&recs(1, 1), None), 5).await;
    assert_eq!(r.error_code, 21, "INVALID_REQUIRED_ACKS");
    // A follower refuses produce.
    let mut fconn = connect(&cluster.kafka_addr(follower)).await;
    let r = produce(&mut fconn, "strict", 0, batch(&recs(1, 1), None), -1).await;
    assert_eq!(r.error_code, 6, "NOT_LEADER_OR_FOLLOWER");

    // Idempotence: a retry is answered with the original offset; a gap is refused.
    let b0 = batch(&recs(3, 5), Some((77, 0, 0)));
    let first = produce(&mut conn, "strict", 0, b0.clone(), -1).await;
    assert_eq!(first.error_code, 0, "{:?}", first.error_message);
    let retry = produce(&mut conn, "strict", 0, b0, -1).await;
    assert_eq!(
        (retry.error_code, retry.base_offset),
        (0, first.base_offset),
        "duplicate"
    );
    let gap = produce(
        &mut conn,
        "strict",
        0,
        batch(&recs(1, 5), Some((77, 0, 9))),
        -1,
    )
    .await;
    assert_eq!(gap.error_code, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");
    let next = produce(
        &mut conn,
        "strict",
        0,
        batch(&recs(1, 5), Some((77, 0, 3))),
        -1,
    )
    .await;
    assert_eq!(
        (next.error_code, next.base_offset),
        (0, first.base_offset + 3)
    );

    // Nothing refused was appended: the log holds exactly the 4 accepted records.
    let (code, hw, records) = common::kafka::fetch_once(&mut conn, "strict", 0, 0).await;
    assert_eq!(code, 0);
    assert_eq!((hw, records.len()), (4, 4));
    // And the broker still answers on fresh connections.
    let (status, v) = cluster.broker_get(leader, "/health").await.expect("health");
    assert_eq!((status, v["status"].clone()), (200, Value::from("UP")));
}
