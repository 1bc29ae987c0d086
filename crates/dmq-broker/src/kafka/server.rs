//! The Kafka listener: size-prefixed frames in, one response per request out, in order.
//!
//! Like Kafka, a connection's requests are handled one at a time, so responses keep the
//! order of requests for pipelining clients. Frame sizes are checked before anything is
//! allocated. A frame that cannot be decoded closes its connection (after logging why); it never
//! affects other connections or the broker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::error::{BrokerError, Result};
use crate::kafka::client::read_frame;
use crate::kafka::handlers;
use crate::node::BrokerShared;

/// What this broker implements: API key → (min, max) version. ApiVersions advertises exactly
/// this table.
///
/// Produce starts at v3, as in Kafka 4 (KIP-896): v0–v2 carry the pre-0.11 message format,
/// which dmq does not store. librdkafka's features that need Produce v0–v2 also need Fetch
/// v0–v3, which was never advertised, so no client loses a feature by it.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // Transactions (KIP-98/KIP-447). AddPartitionsToTxn v4 is the batched inter-broker form
    // (KIP-890 verification); the "transaction version 2" forms (EndTxn v5 and the epoch bump
    // per transaction) are not offered, so clients use the KIP-98/447 flow.
    (ApiKey::AddPartitionsToTxn, 0, 4),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    // Inter-broker (the transaction coordinator to partition leaders). v1 (flexible) only:
    // the codec, generated from Kafka 4's message definitions, decodes no other version.
    (ApiKey::WriteTxnMarkers, 1, 1),
];

pub fn supported(key: i16) -> Option<(ApiKey, i16, i16)> {
    SUPPORTED.iter().copied().find(|(k, _, _)| *k as i16 == key)
}

pub fn api_versions_list() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|(k, min, max)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect()
}

pub async fn serve(shared: Arc<BrokerShared>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((sock, peer)) => {
                tokio::spawn(connection(shared.clone(), sock, peer));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(shared: Arc<BrokerShared>, sock: TcpStream, peer: SocketAddr) {
    shared.metrics.connection_opened();
    let _ = sock.set_nodelay(true);
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    loop {
        let frame = match read_frame(&mut rd).await {
            Ok(f) => f,
            Err(BrokerError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => {
                tracing::debug!(%peer, "closing Kafka connection: {e}");
                break;
            }
        };
        match handle_frame(&shared, frame, Some(peer)).await {
            Ok(Some(out)) => {
                if let Err(e) = wr.write_all(&out).await {
                    tracing::debug!(%peer, "write failed: {e}");
                    break;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::info!(%peer, "closing Kafka connection after a malformed request: {e}");
                break;
            }
        }
    }
    shared.metrics.connection_closed();
}

/// Handles one request frame; `Ok(None)` means no response (acks=0 produce).
pub async fn handle_frame(
    shared: &Arc<BrokerShared>,
    mut frame: Bytes,
    peer: Option<SocketAddr>,
) -> Result<Option<BytesMut>> {
    if frame.len() < 8 {
        return Err(BrokerError::Protocol(format!(
            "request of {} bytes is shorter than a request header",
            frame.len()
        )));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Some((api, min, max)) = supported(key) else {
        tracing::debug!(
            key,
            version,
            "request for an API this broker does not implement"
        );
        return Ok(Some(bare_error(
            correlation_id,
            ResponseError::UnsupportedVersion,
        )));
    };
    if version < min || version > max {
        if api == ApiKey::ApiVersions {
            // KIP-511: answer in v0 form with the supported list so the client can downgrade.
            let resp = ApiVersionsResponse::default()
                .with_error_code(ResponseError::UnsupportedVersion.code())
                .with_api_keys(api_versions_list());
            return encode_response(correlation_id, api, 0, &ResponseKind::ApiVersions(resp))
                .map(Some);
        }
        tracing::debug!(?api, version, "unsupported API version");
        return Ok(Some(bare_error(
            correlation_id,
            ResponseError::UnsupportedVersion,
        )));
    }
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(|e| BrokerError::Protocol(format!("bad {api:?} v{version} header: {e}")))?;
    // The codec returns errors for malformed input; the unwind guard is defence in depth so a
    // codec bug closes one connection instead of taking the task down with a panic.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        RequestKind::decode(api, &mut frame, version)
    }))
    .map_err(|_| {
        BrokerError::Protocol(format!("{api:?} v{version} body made the decoder panic"))
    })?;
    let request =
        decoded.map_err(|e| BrokerError::Protocol(format!("bad {api:?} v{version} body: {e}")))?;
    if frame.has_remaining() {
        tracing::debug!(
            ?api,
            version,
            extra = frame.remaining(),
            "trailing bytes after request"
        );
    }
    let started = Instant::now();
    let mut ctx = handlers::Ctx {
        shared,
        header: &header,
        version,
        peer,
        had_error: false,
    };
    let response = handlers::handle(&mut ctx, request).await;
    shared
        .metrics
        .observe(api_name(api), started.elapsed(), ctx.had_error);
    let Some(response) = response else {
        return Ok(None);
    };
    match encode_response(correlation_id, api, version, &response) {
        Ok(out) => Ok(Some(out)),
        Err(e) => {
            // A handler set a field this version lacks: our bug, never the client's. Answer
            // with UNKNOWN_SERVER_ERROR where the response has a top-level error code.
            tracing::error!(?api, version, "cannot encode a response: {e}");
            shared
                .metrics
                .observe(api_name(api), started.elapsed(), true);
            match server_error_response(api) {
                Some(fallback) => {
                    encode_response(correlation_id, api, version, &fallback).map(Some)
                }
                None => Err(e),
            }
        }
    }
}

/// An empty response of `api` whose top-level error code is UNKNOWN_SERVER_ERROR, for the APIs
/// that have one in every version we advertise.
fn server_error_response(api: ApiKey) -> Option<ResponseKind> {
    use kafka_protocol::messages::*;
    let code = ResponseError::UnknownServerError.code();
    Some(match api {
        ApiKey::ApiVersions => {
            ResponseKind::ApiVersions(ApiVersionsResponse::default().with_error_code(code))
        }
        ApiKey::InitProducerId => ResponseKind::InitProducerId(
            InitProducerIdResponse::default()
                .with_error_code(code)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
        ),
        ApiKey::DescribeCluster => {
            ResponseKind::DescribeCluster(DescribeClusterResponse::default().with_error_code(code))
        }
        ApiKey::JoinGroup => {
            ResponseKind::JoinGroup(JoinGroupResponse::default().with_error_code(code))
        }
        ApiKey::SyncGroup => {
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(code))
        }
        ApiKey::Heartbeat => {
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code))
        }
        ApiKey::LeaveGroup => {
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(code))
        }
        ApiKey::ListGroups => {
            ResponseKind::ListGroups(ListGroupsResponse::default().with_error_code(code))
        }
        ApiKey::OffsetDelete => {
            ResponseKind::OffsetDelete(OffsetDeleteResponse::default().with_error_code(code))
        }
        ApiKey::AddOffsetsToTxn => {
            ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(code))
        }
        ApiKey::EndTxn => ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(code)),
        ApiKey::ListTransactions => ResponseKind::ListTransactions(
            ListTransactionsResponse::default().with_error_code(code),
        ),
        _ => return None,
    })
}

fn encode_response(
    correlation_id: i32,
    api: ApiKey,
    version: i16,
    resp: &ResponseKind,
) -> Result<BytesMut> {
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api.response_header_version(version))
        .map_err(|e| BrokerError::Protocol(format!("encoding {api:?} header: {e}")))?;
    resp.encode(&mut buf, version)
        .map_err(|e| BrokerError::Protocol(format!("encoding {api:?} v{version}: {e}")))?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// A response to a request whose body cannot be answered in its own format: the correlation
/// id and an error code, which every client at least reports instead of hanging.
fn bare_error(correlation_id: i32, error: ResponseError) -> BytesMut {
    let mut buf = BytesMut::with_capacity(10);
    buf.put_i32(6);
    buf.put_i32(correlation_id);
    buf.put_i16(error.code());
    buf
}

pub fn api_name(api: ApiKey) -> &'static str {
    match api {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::ElectLeaders => "ElectLeaders",
        ApiKey::DescribeProducers => "DescribeProducers",
        ApiKey::DescribeTopicPartitions => "DescribeTopicPartitions",
        ApiKey::Metadata => "Metadata",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::AddPartitionsToTxn => "AddPartitionsToTxn",
        ApiKey::AddOffsetsToTxn => "AddOffsetsToTxn",
        ApiKey::EndTxn => "EndTxn",
        ApiKey::TxnOffsetCommit => "TxnOffsetCommit",
        ApiKey::DescribeTransactions => "DescribeTransactions",
        ApiKey::ListTransactions => "ListTransactions",
        ApiKey::WriteTxnMarkers => "WriteTxnMarkers",
        _ => "Other",
    }
}
