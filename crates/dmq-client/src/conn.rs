//! One Kafka connection with pipelining: many requests in flight, responses matched in order.
//!
//! Callers encode their request in their own task (so encoding runs in parallel), hand the
//! frame to a writer task and await a oneshot. The reader task pops the oldest pending request
//! for every response frame (Kafka answers in request order on a connection) and checks the
//! correlation id. Any socket error or timeout closes the connection and fails everything
//! pending on it; the [`crate::Cluster`] pool then opens a fresh one.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::error::{ClientError, Result};
use crate::security::Security;

/// The largest response frame accepted (a fetch answer is bounded by `fetch.max.bytes`).
pub const RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// The API versions this client speaks: `(key, min, max)`. The version used with a broker is
/// the highest both sides support.
const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::FindCoordinator, 1, 4),
    (ApiKey::JoinGroup, 1, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    // From producers, AddPartitionsToTxn stops at v3 (v4 is the brokers' batched form).
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    // Share groups (KIP-932): v1 is what Kafka 4.1+ and librdkafka speak.
    (ApiKey::ShareGroupHeartbeat, 1, 1),
    (ApiKey::ShareFetch, 1, 1),
    (ApiKey::ShareAcknowledge, 1, 1),
];

struct Pending {
    correlation_id: i32,
    header_version: i16,
    reply: oneshot::Sender<Result<Bytes>>,
}

struct Outgoing {
    frame: Bytes,
    pending: Option<Pending>,
}

/// The queue of requests awaiting their response, and whether the connection is dead.
#[derive(Default)]
struct Shared {
    pending: VecDeque<Pending>,
    closed: bool,
}

/// A pipelined connection to one broker. Cheap to share (`Arc`); requests from many tasks
/// interleave safely.
pub struct Connection {
    addr: String,
    tx: mpsc::Sender<Outgoing>,
    shared: Arc<Mutex<Shared>>,
    closed: Arc<AtomicBool>,
    correlation: AtomicI32,
    client_id: StrBytes,
    timeout: Duration,
    versions: HashMap<i16, (i16, i16)>,
    tasks: [tokio::task::AbortHandle; 2],
}

impl Drop for Connection {
    fn drop(&mut self) {
        // An answer must not outlive the reader that would deliver it. Failed now (retriable),
        // its request is retried at once; left pending, it would wait out the request timeout
        // while a new connection to the same broker carries later requests — for an
        // idempotent producer, later batches of the same partition acknowledged ahead of an
        // earlier one, whose retry then falls out of the broker's five-batch duplicate
        // window (OUT_OF_ORDER_SEQUENCE_NUMBER). The pool drops a connection when a metadata
        // answer leaves its broker out, with requests still in flight.
        fail_all(&self.shared, &self.closed, "connection dropped");
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`) and negotiates API versions.
    pub async fn connect(addr: &str, client_id: &str, timeout: Duration) -> Result<Connection> {
        Connection::connect_secured(addr, client_id, timeout, None).await
    }

    /// [`Connection::connect`] with TLS and/or SASL first (Kafka's SSL, SASL_PLAINTEXT and
    /// SASL_SSL).
    pub async fn connect_secured(
        addr: &str,
        client_id: &str,
        timeout: Duration,
        security: Option<&Security>,
    ) -> Result<Connection> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(format!("connecting to {addr}")))?
            .map_err(|e| ClientError::io(format!("connecting to {addr}"), e))?;
        let _ = stream.set_nodelay(true);
        let tls = security.and_then(|s| s.tls.as_ref());
        let mut conn = match tls {
            None => {
                let (rd, wr) = stream.into_split();
                Connection::spawn_io(addr, client_id, timeout, rd, wr)
            }
            Some(tls) => {
                let connector =
                    tokio_rustls::TlsConnector::from(crate::security::client_config(tls)?);
                let name = crate::security::server_name(addr)?;
                let stream = tokio::time::timeout(timeout, connector.connect(name, stream))
                    .await
                    .map_err(|_| ClientError::Timeout(format!("TLS handshake with {addr}")))?
                    .map_err(|e| ClientError::io(format!("TLS handshake with {addr}"), e))?;
                let (rd, wr) = tokio::io::split(stream);
                Connection::spawn_io(addr, client_id, timeout, rd, wr)
            }
        };
        conn.versions = conn.negotiate().await?;
        if let Some(sasl) = security.and_then(|s| s.sasl.as_ref()) {
            crate::security::authenticate(&conn, sasl).await?;
        }
        Ok(conn)
    }

    /// The connection's reader and writer tasks over `rd`/`wr` (versions not negotiated yet).
    fn spawn_io<R, W>(addr: &str, client_id: &str, timeout: Duration, rd: R, wr: W) -> Connection
    where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
        W: tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let closed = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(256);
        let writer = tokio::spawn(write_loop(wr, rx, shared.clone(), closed.clone()));
        let reader = tokio::spawn(read_loop(
            BufReader::with_capacity(256 * 1024, rd),
            shared.clone(),
            closed.clone(),
            writer.abort_handle(),
        ));
        Connection {
            addr: addr.to_string(),
            tx,
            shared,
            closed,
            correlation: AtomicI32::new(0),
            client_id: StrBytes::from_string(client_id.to_string()),
            timeout,
            versions: HashMap::new(),
            tasks: [writer.abort_handle(), reader.abort_handle()],
        }
    }

    /// `host:port` of the broker.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the connection has failed; a closed connection fails every request.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    async fn negotiate(&self) -> Result<HashMap<i16, (i16, i16)>> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("dmq-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        // v3 first; a broker that does not know it answers in v0 form with its ranges (KIP-511).
        let resp: ApiVersionsResponse = match self.send_at(&req, 3, Duration::ZERO).await {
            Ok(r) if r.error_code == 0 => r,
            Ok(r) if r.error_code == 35 => self.send_at(&req, 0, Duration::ZERO).await?,
            Ok(r) => return Err(ClientError::kafka(r.error_code, "ApiVersions")),
            Err(ClientError::Protocol(_)) => self.send_at(&req, 0, Duration::ZERO).await?,
            Err(e) => return Err(e),
        };
        Ok(resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect())
    }

    /// The version of `key` to use with this broker: the highest both sides support.
    pub fn version(&self, key: ApiKey) -> Result<i16> {
        let (_, our_min, our_max) = CLIENT_VERSIONS
            .iter()
            .copied()
            .find(|(k, _, _)| *k == key)
            .ok_or_else(|| ClientError::Protocol(format!("{key:?} is not spoken by the client")))?;
        let (their_min, their_max) =
            self.versions.get(&(key as i16)).copied().ok_or_else(|| {
                ClientError::Protocol(format!("broker {} does not support {key:?}", self.addr))
            })?;
        let v = our_max.min(their_max);
        if v < our_min || v < their_min {
            return Err(ClientError::Protocol(format!(
                "no common {key:?} version with {} (client {our_min}..={our_max}, broker {their_min}..={their_max})",
                self.addr
            )));
        }
        Ok(v)
    }

    /// Sends `req` at the negotiated version and awaits its response, for at most the
    /// connection timeout plus `extra` (for requests that wait on the broker, like a fetch's
    /// `max_wait_ms` or a JoinGroup's rebalance).
    pub async fn send<R: Request>(&self, req: &R, extra: Duration) -> Result<(R::Response, i16)> {
        let version = self.version(
            ApiKey::try_from(R::KEY)
                .map_err(|_| ClientError::Protocol(format!("unknown api key {}", R::KEY)))?,
        )?;
        Ok((self.send_at(req, version, extra).await?, version))
    }

    /// Sends `req` at `version`.
    pub async fn send_at<R: Request>(
        &self,
        req: &R,
        version: i16,
        extra: Duration,
    ) -> Result<R::Response> {
        self.start(req, version, extra).await?.await
    }

    /// Queues `req` on the connection and returns a future of its response. Requests started
    /// one after the other from one task go on the wire in that order (the producer relies on
    /// it for the order of a partition's batches).
    pub async fn start<R: Request>(
        &self,
        req: &R,
        version: i16,
        extra: Duration,
    ) -> Result<impl std::future::Future<Output = Result<R::Response>> + Send + 'static> {
        let (frame, correlation_id, header_version) = self.encode(req, version)?;
        let (reply, rx) = oneshot::channel();
        let pending = Pending {
            correlation_id,
            header_version,
            reply,
        };
        self.tx
            .send(Outgoing {
                frame,
                pending: Some(pending),
            })
            .await
            .map_err(|_| self.closed_error())?;
        let wait = self.timeout + extra;
        let addr = self.addr.clone();
        let shared = self.shared.clone();
        let closed = self.closed.clone();
        Ok(async move {
            let mut body = match tokio::time::timeout(wait, rx).await {
                Ok(Ok(r)) => r?,
                Ok(Err(_)) => return Err(closed_error(&addr)),
                Err(_) => {
                    // Kafka clients close a connection whose request timed out: answers that
                    // arrive later would be matched against the wrong request otherwise.
                    fail_all(&shared, &closed, "request timed out");
                    return Err(ClientError::Timeout(format!(
                        "{:?} to {addr} after {wait:?}",
                        ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions)
                    )));
                }
            };
            R::Response::decode(&mut body, version).map_err(|e| {
                ClientError::Protocol(format!("cannot decode {} response: {e}", R::KEY))
            })
        })
    }

    /// Sends a request that gets no response (a Produce with acks=0).
    pub async fn send_oneway<R: Request>(&self, req: &R, version: i16) -> Result<()> {
        let (frame, _, _) = self.encode(req, version)?;
        self.tx
            .send(Outgoing {
                frame,
                pending: None,
            })
            .await
            .map_err(|_| self.closed_error())
    }

    fn encode<R: Request>(&self, req: &R, version: i16) -> Result<(Bytes, i32, i16)> {
        let api = ApiKey::try_from(R::KEY)
            .map_err(|_| ClientError::Protocol(format!("unknown api key {}", R::KEY)))?;
        let correlation_id = self.correlation.fetch_add(1, Ordering::Relaxed);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::with_capacity(128);
        buf.put_i32(0);
        header
            .encode(&mut buf, api.request_header_version(version))
            .and_then(|_| req.encode(&mut buf, version))
            .map_err(|e| ClientError::Protocol(format!("cannot encode {api:?} v{version}: {e}")))?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        Ok((
            buf.freeze(),
            correlation_id,
            api.response_header_version(version),
        ))
    }

    /// Marks the connection dead and fails everything pending on it.
    pub fn close(&self) {
        fail_all(&self.shared, &self.closed, "connection closed");
        for t in &self.tasks {
            t.abort();
        }
    }

    fn closed_error(&self) -> ClientError {
        closed_error(&self.addr)
    }
}

fn closed_error(addr: &str) -> ClientError {
    ClientError::io(
        format!("connection to {addr}"),
        std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "connection closed"),
    )
}

fn fail_all(shared: &Mutex<Shared>, closed: &AtomicBool, why: &str) {
    let drained: Vec<Pending> = {
        let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
        s.closed = true;
        closed.store(true, Ordering::Release);
        s.pending.drain(..).collect()
    };
    for p in drained {
        let _ = p.reply.send(Err(ClientError::io(
            "awaiting a response",
            std::io::Error::new(std::io::ErrorKind::ConnectionAborted, why.to_string()),
        )));
    }
}

async fn write_loop<W: tokio::io::AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<Outgoing>,
    shared: Arc<Mutex<Shared>>,
    closed: Arc<AtomicBool>,
) {
    while let Some(out) = rx.recv().await {
        if let Some(p) = out.pending {
            let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
            if s.closed {
                drop(s);
                let _ = p.reply.send(Err(ClientError::io(
                    "sending",
                    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "closed"),
                )));
                continue;
            }
            s.pending.push_back(p);
        }
        if let Err(e) = wr.write_all(&out.frame).await {
            tracing::debug!("write failed: {e}");
            fail_all(&shared, &closed, "write failed");
            return;
        }
    }
}

async fn read_loop<R: tokio::io::AsyncRead + Unpin>(
    mut rd: BufReader<R>,
    shared: Arc<Mutex<Shared>>,
    closed: Arc<AtomicBool>,
    writer: tokio::task::AbortHandle,
) {
    let why = loop {
        let mut frame = match read_frame(&mut rd).await {
            Ok(f) => f,
            Err(e) => break e.to_string(),
        };
        let Some(p) = shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pending
            .pop_front()
        else {
            break "a response arrived for no request".to_string();
        };
        match ResponseHeader::decode(&mut frame, p.header_version) {
            Ok(h) if h.correlation_id == p.correlation_id => {
                let _ = p.reply.send(Ok(frame));
            }
            Ok(h) => {
                let msg = format!(
                    "response correlation id {} does not match request {}",
                    h.correlation_id, p.correlation_id
                );
                let _ = p.reply.send(Err(ClientError::Protocol(msg.clone())));
                break msg;
            }
            Err(e) => {
                let _ = p.reply.send(Err(ClientError::Protocol(format!(
                    "bad response header: {e}"
                ))));
                break format!("bad response header: {e}");
            }
        }
    };
    tracing::debug!("connection closed: {why}");
    writer.abort();
    fail_all(&shared, &closed, &why);
}

/// Reads one size-prefixed frame, refusing sizes over [`RESPONSE_BYTES_MAX`] before allocating.
pub async fn read_frame<S: AsyncReadExt + Unpin>(stream: &mut S) -> Result<Bytes> {
    let size = stream
        .read_i32()
        .await
        .map_err(|e| ClientError::io("reading a frame", e))?;
    if size < 0 || size as usize > RESPONSE_BYTES_MAX {
        return Err(ClientError::Protocol(format!(
            "frame of {size} bytes is outside 0..={RESPONSE_BYTES_MAX}"
        )));
    }
    let mut buf = BytesMut::zeroed(size as usize);
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| ClientError::io("reading a frame", e))?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiVersionsRequest;

    #[tokio::test]
    async fn dropping_a_connection_fails_its_pending_requests_at_once() {
        // The other end reads nothing and never answers.
        let (client, _server) = tokio::io::duplex(1 << 16);
        let (rd, wr) = tokio::io::split(client);
        let conn = Connection::spawn_io("t:1", "t", Duration::from_secs(600), rd, wr);
        let answer = conn
            .start(&ApiVersionsRequest::default(), 0, Duration::ZERO)
            .await
            .expect("queued");
        let shared = conn.shared.clone();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while shared.lock().expect("lock").pending.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the request was never written"
            );
            tokio::task::yield_now().await;
        }
        drop(conn); // what the pool does when a metadata answer leaves the broker out
        let result = tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .expect("answered long before the 600 s request timeout");
        assert!(result.is_err(), "a dropped connection's request fails");
    }
}
