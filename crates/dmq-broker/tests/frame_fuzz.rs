//! Property tests: random, truncated and bit-flipped request frames thrown at the Kafka request
//! decoder (through the broker's real frame handler) and record batches thrown at the batch
//! validator. The property is "an answer or an error, never a panic".

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dmq_broker::kafka::server::{handle_frame, SUPPORTED};
use dmq_broker::{BrokerConfig, BrokerNode, BrokerShared};
use dmq_log::batch::validate_batch;
use dmq_types::{ServicesConfig, TopicDefaults};
use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest, RequestHeader};
use kafka_protocol::protocol::Encodable;
use proptest::prelude::*;

/// As in the `dmq` binary: absurd claimed array lengths must not abort the process.
#[global_allocator]
static ALLOC: dmq_broker::alloc::NoReserveHuge = dmq_broker::alloc::NoReserveHuge;

/// One broker with no reachable metadata quorum: requests are decoded and answered from an
/// empty cluster image, which is all the decoder needs.
fn broker() -> (tokio::runtime::Runtime, BrokerNode, tempfile::TempDir) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config =
        BrokerConfig::from_services(&ServicesConfig::example(), 101, dir.path().to_path_buf());
    config.host = "127.0.0.1".into();
    config.http_port = 0;
    config.kafka_port = 0;
    config.metadata_urls = vec!["http://127.0.0.1:1".into()];
    config.metadata_timeout = Duration::from_millis(200);
    config.topic_defaults = TopicDefaults::default();
    let node = rt.block_on(BrokerNode::start(config)).expect("broker");
    (rt, node, dir)
}

/// Well-formed frames of several APIs and versions (size prefix excluded), for truncation and
/// bit flips.
fn valid_frames() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (api, min, max) in SUPPORTED {
        for version in *min..=*max {
            let header = RequestHeader::default()
                .with_request_api_key(*api as i16)
                .with_request_api_version(version)
                .with_correlation_id(9)
                .with_client_id(Some("fuzz".into()));
            let mut buf = BytesMut::new();
            if header
                .encode(&mut buf, api.request_header_version(version))
                .is_err()
            {
                continue;
            }
            let ok = match api {
                kafka_protocol::messages::ApiKey::ApiVersions => ApiVersionsRequest::default()
                    .encode(&mut buf, version)
                    .is_ok(),
                kafka_protocol::messages::ApiKey::Metadata => {
                    MetadataRequest::default().encode(&mut buf, version).is_ok()
                }
                _ => true, // header only: the body decoder sees a truncated body
            };
            if ok {
                out.push(buf.to_vec());
            }
        }
    }
    out
}

fn run(shared: &Arc<BrokerShared>, rt: &tokio::runtime::Runtime, frame: Vec<u8>) {
    let shared = shared.clone();
    // Answer or error within the bound; never a panic (a panic fails the test through join).
    let handle = rt.spawn(async move {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            handle_frame(&shared, Bytes::from(frame), None),
        )
        .await;
    });
    rt.block_on(handle).expect("handler must not panic");
}

/// Frames that claim 2³¹ (or 2³²) array elements right after the fixed fields: the decoder must
/// fail on the missing bytes, not abort the process trying to pre-allocate them.
#[test]
fn absurd_array_lengths_are_errors_not_aborts() {
    let (rt, node, _dir) = broker();
    let header = |key: i16, version: i16| {
        let mut f = Vec::new();
        f.extend_from_slice(&key.to_be_bytes());
        f.extend_from_slice(&version.to_be_bytes());
        f.extend_from_slice(&1i32.to_be_bytes());
        f.extend_from_slice(&(-1i16).to_be_bytes());
        f
    };
    // Produce v3: transactional id (null), acks, timeout, then topic count.
    let mut produce = header(0, 3);
    produce.extend_from_slice(&(-1i16).to_be_bytes());
    produce.extend_from_slice(&1i16.to_be_bytes());
    produce.extend_from_slice(&1000i32.to_be_bytes());
    produce.extend_from_slice(&i32::MAX.to_be_bytes());
    // Metadata v1: topic count.
    let mut metadata = header(3, 1);
    metadata.extend_from_slice(&i32::MAX.to_be_bytes());
    // Metadata v9 (flexible): header tagged fields, then a compact array length varint of 2^32-1.
    let mut flexible = header(3, 9);
    flexible.push(0);
    flexible.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    for frame in [produce, metadata, flexible] {
        let shared = node.shared().clone();
        let out = rt.block_on(handle_frame(&shared, Bytes::from(frame), None));
        assert!(out.is_err(), "a truncated body must be refused");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, .. ProptestConfig::default() })]

    #[test]
    fn random_frames_never_panic(
        key in prop_oneof![0i16..70, any::<i16>()],
        version in prop_oneof![-1i16..20, any::<i16>()],
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        static BROKER: std::sync::OnceLock<(tokio::runtime::Runtime, BrokerNode, tempfile::TempDir)> = std::sync::OnceLock::new();
        let (rt, node, _) = BROKER.get_or_init(broker);
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&key.to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&body);
        run(node.shared(), rt, frame);
    }

    #[test]
    fn truncated_and_flipped_valid_frames_never_panic(
        pick in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        static BROKER: std::sync::OnceLock<(tokio::runtime::Runtime, BrokerNode, tempfile::TempDir)> = std::sync::OnceLock::new();
        static FRAMES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        let (rt, node, _) = BROKER.get_or_init(broker);
        let frames = FRAMES.get_or_init(valid_frames);
        let mut frame = pick.get(frames).clone();
        let at = flip.index(frame.len());
        frame[at] ^= 1 << bit;
        let len = cut.index(frame.len() + 1);
        frame.truncate(len);
        run(node.shared(), rt, frame);
    }

    #[test]
    fn batch_validator_never_panics(
        records in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..40), proptest::collection::vec(any::<u8>(), 0..200)), 1..8),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
        garbage in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let mut b = dmq_log::RecordBatchBuilder::new(0);
        for (k, v) in &records {
            b.push(1, Some(k), Some(v), &[]);
        }
        let mut batch = b.build();
        prop_assert!(validate_batch(&batch, true).is_ok());
        let at = flip.index(batch.len());
        batch[at] ^= 1 << bit;
        let _ = validate_batch(&batch, true);
        let _ = dmq_log::batch::records(&batch).map(|it| it.count());
        batch.truncate(cut.index(batch.len()));
        prop_assert!(validate_batch(&batch, true).is_err(), "a truncated batch must be refused");
        let _ = validate_batch(&garbage, true);
        let _ = validate_batch(&garbage, false);
    }
}
