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

use dmq_auth::{KafkaPrincipal, SaslServer, SaslStep};
use dmq_types::security::SecurityProtocol;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

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
    (ApiKey::ListGroups, 0, 5),
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
    // Security (SPEC §11). SaslHandshake v1 is followed by SaslAuthenticate requests, v0 by
    // bare tokens. Kafka 4 dropped v0 (KIP-896), but librdkafka before 2.10 (Debian's kcat)
    // only sees SASL support when v0 is advertised.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::ShareGroupHeartbeat, 1, 1),
    (ApiKey::ShareFetch, 1, 1),
    (ApiKey::ShareAcknowledge, 1, 1),
    // Share-group admin (KIP-932). The codec knows only v0 of the offsets APIs.
    (ApiKey::ShareGroupDescribe, 1, 1),
    (ApiKey::DescribeShareGroupOffsets, 0, 0),
    (ApiKey::AlterShareGroupOffsets, 0, 0),
    (ApiKey::DeleteShareGroupOffsets, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
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

/// The name of the listener on `kafkaPort`.
pub const DEFAULT_LISTENER: &str = "DEFAULT";

/// A Kafka listener: its name (Metadata advertises the same listener of every broker) and
/// protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub protocol: SecurityProtocol,
}

impl Listener {
    /// The listener of an open broker (no `security` section).
    pub fn plaintext() -> Listener {
        Listener {
            name: DEFAULT_LISTENER.to_string(),
            protocol: SecurityProtocol::Plaintext,
        }
    }
}

/// One connection's security state: on a SASL listener nothing but ApiVersions and the SASL
/// exchange is served until it authenticated (Kafka's `SaslServerAuthenticator`).
pub struct Session {
    pub listener: Listener,
    pub principal: KafkaPrincipal,
    pub authenticated: bool,
    sasl: Option<Box<dyn SaslServer + Send>>,
    /// After a SaslHandshake v0 the SASL tokens come as bare size-prefixed frames, without
    /// Kafka request headers, until the exchange completes (Kafka's pre-KIP-152 flow).
    raw_sasl: bool,
    /// The response being sent is the last one: a failed or refused authentication.
    pub close_after: bool,
}

impl Session {
    pub fn new(listener: Listener) -> Session {
        Session {
            authenticated: !listener.protocol.uses_sasl(),
            listener,
            principal: KafkaPrincipal::anonymous(),
            sasl: None,
            raw_sasl: false,
            close_after: false,
        }
    }
}

/// Accepts connections on `socket`; with `tls`, each is a TLS connection first (SSL and
/// SASL_SSL listeners).
pub async fn serve(
    shared: Arc<BrokerShared>,
    socket: TcpListener,
    listener: Listener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        match socket.accept().await {
            Ok((sock, peer)) => {
                let session = Session::new(listener.clone());
                match tls.clone() {
                    None => {
                        tokio::spawn(connection(shared.clone(), sock, peer, session));
                    }
                    Some(acceptor) => {
                        tokio::spawn(tls_connection(
                            shared.clone(),
                            acceptor,
                            sock,
                            peer,
                            session,
                        ));
                    }
                }
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn tls_connection(
    shared: Arc<BrokerShared>,
    acceptor: tokio_rustls::TlsAcceptor,
    sock: TcpStream,
    peer: SocketAddr,
    mut session: Session,
) {
    let _ = sock.set_nodelay(true);
    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            // A plaintext client on a TLS port, an untrusted certificate, …
            tracing::info!(%peer, listener = %session.listener.name, "TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake timed out");
            return;
        }
    };
    if !session.listener.protocol.uses_sasl() {
        // SSL: the client certificate (if any) names the principal (Kafka's default
        // principal builder); without one the connection is ANONYMOUS.
        let (_, conn) = stream.get_ref();
        if let Some(p) = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(crate::tls::principal_of)
        {
            session.principal = p;
        }
    }
    let (rd, wr) = tokio::io::split(stream);
    serve_frames(shared, rd, wr, peer, session).await;
}

async fn connection(
    shared: Arc<BrokerShared>,
    sock: TcpStream,
    peer: SocketAddr,
    session: Session,
) {
    let _ = sock.set_nodelay(true);
    let (rd, wr) = sock.into_split();
    serve_frames(shared, rd, wr, peer, session).await;
}

/// The request loop of one connection, over plain TCP or TLS.
async fn serve_frames<R, W>(
    shared: Arc<BrokerShared>,
    rd: R,
    mut wr: W,
    peer: SocketAddr,
    mut session: Session,
) where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    shared.metrics.connection_opened();
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
        match handle_session_frame(&shared, frame, Some(peer), &mut session).await {
            Ok(Some(out)) => {
                if let Err(e) = wr.write_all(&out).await {
                    tracing::debug!(%peer, "write failed: {e}");
                    break;
                }
                if session.close_after {
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

/// Handles one request frame of an open (PLAINTEXT, anonymous) connection; `Ok(None)` means no
/// response (acks=0 produce).
pub async fn handle_frame(
    shared: &Arc<BrokerShared>,
    frame: Bytes,
    peer: Option<SocketAddr>,
) -> Result<Option<BytesMut>> {
    let mut session = Session::new(Listener::plaintext());
    handle_session_frame(shared, frame, peer, &mut session).await
}

/// Handles one request frame of a connection in `session`; an error closes the connection.
pub async fn handle_session_frame(
    shared: &Arc<BrokerShared>,
    mut frame: Bytes,
    peer: Option<SocketAddr>,
    session: &mut Session,
) -> Result<Option<BytesMut>> {
    if session.raw_sasl {
        return raw_sasl_token(session, &frame, peer);
    }
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
    if !session.authenticated
        && !matches!(
            api,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        )
    {
        // Kafka closes such a connection too: the client is not speaking SASL.
        return Err(BrokerError::Protocol(format!(
            "{api:?} before SASL authentication on listener {} ({})",
            session.listener.name,
            session.listener.protocol.name()
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
    let request = match request {
        RequestKind::SaslHandshake(r) => {
            let resp = ResponseKind::SaslHandshake(sasl_handshake(shared, session, r));
            if version == 0 && session.sasl.is_some() {
                session.raw_sasl = true;
            }
            return encode_response(correlation_id, api, version, &resp).map(Some);
        }
        RequestKind::SaslAuthenticate(r) => {
            let resp = ResponseKind::SaslAuthenticate(sasl_authenticate(session, r, peer));
            shared
                .metrics
                .observe(api_name(api), started.elapsed(), session.close_after);
            return encode_response(correlation_id, api, version, &resp).map(Some);
        }
        other => other,
    };
    let mut ctx = handlers::Ctx {
        shared,
        header: &header,
        version,
        peer,
        had_error: false,
        principal: &session.principal,
        listener: &session.listener,
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

/// One bare SASL token after a SaslHandshake v0: the server's token goes back size-prefixed;
/// a failure closes the connection without an answer (v0 has no error frame).
fn raw_sasl_token(
    session: &mut Session,
    token: &[u8],
    peer: Option<SocketAddr>,
) -> Result<Option<BytesMut>> {
    let Some(server) = session.sasl.as_mut() else {
        return Err(BrokerError::Protocol(
            "a SASL token without an exchange".into(),
        ));
    };
    let reply = match server.step(token) {
        Ok(SaslStep::Continue(bytes)) => bytes,
        Ok(SaslStep::Complete { response, username }) => {
            session.sasl = None;
            session.raw_sasl = false;
            session.authenticated = true;
            session.principal = KafkaPrincipal::user(username);
            tracing::debug!(principal = %session.principal, ?peer, "SASL authenticated (v0 handshake)");
            response
        }
        Err(e) => {
            tracing::info!(?peer, "SASL authentication failed: {e}");
            return Err(BrokerError::Protocol(format!(
                "SASL authentication failed: {e}"
            )));
        }
    };
    let mut out = BytesMut::with_capacity(4 + reply.len());
    out.put_i32(reply.len() as i32);
    out.extend_from_slice(&reply);
    Ok(Some(out))
}

/// SaslHandshake: picks the mechanism for the exchange that follows (v1: SaslAuthenticate
/// requests; v0: bare tokens).
fn sasl_handshake(
    shared: &BrokerShared,
    session: &mut Session,
    r: SaslHandshakeRequest,
) -> SaslHandshakeResponse {
    let offered: Vec<StrBytes> = shared
        .security
        .mechanism_names()
        .into_iter()
        .map(StrBytes::from_static_str)
        .collect();
    let resp = SaslHandshakeResponse::default().with_mechanisms(offered);
    if !session.listener.protocol.uses_sasl() || session.authenticated || session.sasl.is_some() {
        session.close_after = true;
        return resp.with_error_code(ResponseError::IllegalSaslState.code());
    }
    match shared.security.sasl_server(r.mechanism.as_str()) {
        Ok(server) => {
            session.sasl = Some(server);
            resp
        }
        Err(_) => {
            session.close_after = true;
            resp.with_error_code(ResponseError::UnsupportedSaslMechanism.code())
        }
    }
}

/// SaslAuthenticate: one step of the exchange SaslHandshake chose. A failure answers
/// SASL_AUTHENTICATION_FAILED with a message that names no secret, and closes the connection.
fn sasl_authenticate(
    session: &mut Session,
    r: SaslAuthenticateRequest,
    peer: Option<SocketAddr>,
) -> SaslAuthenticateResponse {
    let Some(server) = session.sasl.as_mut() else {
        session.close_after = true;
        return SaslAuthenticateResponse::default()
            .with_error_code(ResponseError::IllegalSaslState.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "SaslAuthenticate without a SaslHandshake",
            )));
    };
    match server.step(&r.auth_bytes) {
        Ok(SaslStep::Continue(bytes)) => {
            SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(bytes))
        }
        Ok(SaslStep::Complete { response, username }) => {
            let mechanism = server.mechanism();
            session.sasl = None;
            session.authenticated = true;
            session.principal = KafkaPrincipal::user(username);
            tracing::debug!(principal = %session.principal, %mechanism, ?peer, "SASL authenticated");
            SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(response))
        }
        Err(e) => {
            session.close_after = true;
            tracing::info!(?peer, "SASL authentication failed: {e}");
            SaslAuthenticateResponse::default()
                .with_error_code(e.kafka_error_code())
                .with_error_message(Some(StrBytes::from_string(e.to_string())))
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
        ApiKey::SaslHandshake => "SaslHandshake",
        ApiKey::SaslAuthenticate => "SaslAuthenticate",
        ApiKey::CreateAcls => "CreateAcls",
        ApiKey::DescribeAcls => "DescribeAcls",
        ApiKey::DeleteAcls => "DeleteAcls",
        ApiKey::DescribeUserScramCredentials => "DescribeUserScramCredentials",
        ApiKey::DescribeClientQuotas => "DescribeClientQuotas",
        ApiKey::ShareGroupHeartbeat => "ShareGroupHeartbeat",
        ApiKey::ShareFetch => "ShareFetch",
        ApiKey::ShareAcknowledge => "ShareAcknowledge",
        ApiKey::ShareGroupDescribe => "ShareGroupDescribe",
        ApiKey::DescribeShareGroupOffsets => "DescribeShareGroupOffsets",
        ApiKey::AlterShareGroupOffsets => "AlterShareGroupOffsets",
        ApiKey::DeleteShareGroupOffsets => "DeleteShareGroupOffsets",
        ApiKey::AlterUserScramCredentials => "AlterUserScramCredentials",
        _ => "Other",
    }
}
