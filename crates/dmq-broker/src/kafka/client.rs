//! A minimal Kafka protocol connection: one request at a time, typed by `kafka-protocol`.
//! Followers use it to fetch from leaders; tests use it to speak to brokers byte-exactly.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use dmq_types::REQUEST_BYTES_MAX;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use dmq_auth::ScramClient;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};

use crate::error::{BrokerError, Result};
use crate::security::InterBrokerAuth;

pub struct KafkaConnection {
    stream: TcpStream,
    correlation_id: i32,
    client_id: StrBytes,
    timeout: Duration,
}

impl KafkaConnection {
    pub async fn connect(addr: &str, client_id: &str, timeout: Duration) -> Result<Self> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| BrokerError::Protocol(format!("connect to {addr} timed out")))??;
        stream.set_nodelay(true)?;
        Ok(KafkaConnection {
            stream,
            correlation_id: 0,
            client_id: StrBytes::from_string(client_id.to_string()),
            timeout,
        })
    }

    /// [`KafkaConnection::connect`], then SASL authentication with the inter-broker
    /// credentials when the cluster is secured (`auth` is `Some`).
    pub async fn connect_as_broker(
        addr: &str,
        client_id: &str,
        timeout: Duration,
        auth: Option<&InterBrokerAuth>,
    ) -> Result<Self> {
        let mut conn = KafkaConnection::connect(addr, client_id, timeout).await?;
        if let Some(auth) = auth {
            conn.authenticate(auth).await?;
        }
        Ok(conn)
    }

    /// SaslHandshake v1 and SaslAuthenticate exchanges for `auth`'s mechanism (PLAIN: one
    /// message; SCRAM: client-first, client-final, and the server's signature is checked).
    pub async fn authenticate(&mut self, auth: &InterBrokerAuth) -> Result<()> {
        let refused = |what: &str, code: i16, msg: Option<&StrBytes>| {
            BrokerError::Protocol(format!(
                "SASL {what} refused by the leader: error {code} {}",
                msg.map_or("", |m| m.as_str())
            ))
        };
        let hs = self
            .send(
                &SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(auth.mechanism.name())),
                1,
                Duration::ZERO,
            )
            .await?;
        if hs.error_code != 0 {
            return Err(refused("handshake", hs.error_code, None));
        }
        let step = |bytes: Vec<u8>| {
            SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::from(bytes))
        };
        match auth.mechanism.scram() {
            None => {
                let msg = dmq_auth::plain::client_message(&auth.user, &auth.password);
                let r = self.send(&step(msg), 1, Duration::ZERO).await?;
                if r.error_code != 0 {
                    return Err(refused("PLAIN", r.error_code, r.error_message.as_ref()));
                }
            }
            Some(mech) => {
                let mut client = ScramClient::new(mech, auth.user.clone(), auth.password.clone());
                let first = client
                    .client_first()
                    .map_err(|e| BrokerError::Protocol(e.to_string()))?;
                let r = self.send(&step(first), 1, Duration::ZERO).await?;
                if r.error_code != 0 {
                    return Err(refused("SCRAM", r.error_code, r.error_message.as_ref()));
                }
                let fin = client
                    .client_final(&r.auth_bytes)
                    .map_err(|e| BrokerError::Protocol(e.to_string()))?;
                let r = self.send(&step(fin), 1, Duration::ZERO).await?;
                if r.error_code != 0 {
                    return Err(refused("SCRAM", r.error_code, r.error_message.as_ref()));
                }
                client
                    .verify_server_final(&r.auth_bytes)
                    .map_err(|e| BrokerError::Protocol(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Sends `req` at `version` and waits (bounded by the connection timeout plus `extra`) for
    /// its response.
    pub async fn send<R: Request>(
        &mut self,
        req: &R,
        version: i16,
        extra: Duration,
    ) -> Result<R::Response> {
        let mut body = self
            .send_raw(R::KEY, version, |buf| req.encode(buf, version), extra)
            .await?;
        R::Response::decode(&mut body, version)
            .map_err(|e| BrokerError::Protocol(format!("cannot decode response: {e}")))
    }

    /// Sends a request whose body `encode` writes; returns the response body after its header.
    pub async fn send_raw(
        &mut self,
        key: i16,
        version: i16,
        encode: impl FnOnce(&mut BytesMut) -> anyhow::Result<()>,
        extra: Duration,
    ) -> Result<Bytes> {
        let api = ApiKey::try_from(key)
            .map_err(|_| BrokerError::Protocol(format!("unknown api key {key}")))?;
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        header
            .encode(&mut buf, api.request_header_version(version))
            .map_err(|e| BrokerError::Protocol(e.to_string()))?;
        encode(&mut buf).map_err(|e| BrokerError::Protocol(e.to_string()))?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let fut = async {
            self.stream.write_all(&buf).await?;
            read_frame(&mut self.stream).await
        };
        let mut frame = tokio::time::timeout(self.timeout + extra, fut)
            .await
            .map_err(|_| BrokerError::Protocol("response timed out".into()))??;
        let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))
            .map_err(|e| BrokerError::Protocol(format!("bad response header: {e}")))?;
        if header.correlation_id != self.correlation_id {
            return Err(BrokerError::Protocol(format!(
                "correlation id {} does not match request {}",
                header.correlation_id, self.correlation_id
            )));
        }
        Ok(frame)
    }
}

/// Reads one size-prefixed frame, refusing sizes over [`REQUEST_BYTES_MAX`] before allocating.
pub async fn read_frame<S: AsyncReadExt + Unpin>(stream: &mut S) -> Result<Bytes> {
    let size = stream.read_i32().await?;
    if size < 0 || size as usize > REQUEST_BYTES_MAX {
        return Err(BrokerError::Protocol(format!(
            "frame of {size} bytes is outside 0..={REQUEST_BYTES_MAX}"
        )));
    }
    let mut buf = BytesMut::zeroed(size as usize);
    stream.read_exact(&mut buf).await?;
    Ok(buf.freeze())
}
