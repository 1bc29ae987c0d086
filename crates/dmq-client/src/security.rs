//! Connecting to a secured cluster (Kafka's `security.protocol`): TLS (rustls, the CA to trust
//! and an optional client certificate) and SASL PLAIN or SCRAM-SHA-256/512 after it.
//!
//! ```
//! use dmq_client::{ClientConfig, Sasl, SaslMechanism, Security};
//! let mut config = ClientConfig::new("localhost:19192");
//! config.security = Some(Security {
//!     tls: None,
//!     sasl: Some(Sasl::new(SaslMechanism::ScramSha512, "alice", "alice-secret")),
//! });
//! ```

use std::path::PathBuf;
use std::sync::Arc;

pub use dmq_auth::SaslMechanism;
use dmq_auth::{Password, ScramClient};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls;

use crate::error::{ClientError, Result};

/// TLS and/or SASL for every connection of a client.
#[derive(Debug, Clone, Default)]
pub struct Security {
    pub tls: Option<Tls>,
    pub sasl: Option<Sasl>,
}

/// The CA file to trust (PEM) and, for SSL listeners that ask, a client certificate and key.
#[derive(Debug, Clone)]
pub struct Tls {
    pub ca_file: PathBuf,
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// SASL credentials. `Debug` leaves the password out.
#[derive(Clone)]
pub struct Sasl {
    pub mechanism: SaslMechanism,
    pub username: String,
    password: Password,
}

impl Sasl {
    pub fn new(
        mechanism: SaslMechanism,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Sasl {
        Sasl {
            mechanism,
            username: username.into(),
            password: Password::new(password.into()),
        }
    }
}

impl std::fmt::Debug for Sasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

fn config_error(what: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Config(format!("TLS {what}: {e}"))
}

/// The rustls client configuration of `tls`.
pub(crate) fn client_config(tls: &Tls) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&tls.ca_file)
        .map_err(|e| config_error(&format!("CA file {}", tls.ca_file.display()), e))?
    {
        let cert = cert.map_err(|e| config_error("CA certificate", e))?;
        roots
            .add(cert)
            .map_err(|e| config_error("CA certificate", e))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| config_error("versions", e))?
    .with_root_certificates(roots);
    let config = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| config_error("client certificate", e))?
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| config_error("client certificate", e))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| config_error("client key", e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| config_error("client certificate", e))?
        }
    };
    Ok(Arc::new(config))
}

/// The name the broker's certificate must carry: the host part of `host:port`.
pub(crate) fn server_name(addr: &str) -> Result<ServerName<'static>> {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| ClientError::Config(format!("{host:?} is not a TLS server name: {e}")))
}

/// The SASL exchange on a fresh connection: SaslHandshake v1, then SaslAuthenticate steps.
pub(crate) async fn authenticate(conn: &crate::conn::Connection, sasl: &Sasl) -> Result<()> {
    use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
    use kafka_protocol::protocol::StrBytes;
    let failed = |what: &str, code: i16, msg: Option<&StrBytes>| ClientError::Kafka {
        code,
        context: format!(
            "SASL {what} with {} as {}{}",
            conn.addr(),
            sasl.username,
            msg.map_or(String::new(), |m| format!(": {}", m.as_str()))
        ),
    };
    let hs = conn
        .send_at(
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str(sasl.mechanism.name())),
            1,
            std::time::Duration::ZERO,
        )
        .await?;
    if hs.error_code != 0 {
        return Err(failed("handshake", hs.error_code, None));
    }
    let version = conn.version(kafka_protocol::messages::ApiKey::SaslAuthenticate)?;
    let step = |bytes: Vec<u8>| {
        SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::from(bytes))
    };
    let protocol = |e: dmq_auth::AuthError| ClientError::Protocol(e.to_string());
    match sasl.mechanism.scram() {
        None => {
            let msg = dmq_auth::plain::client_message(&sasl.username, &sasl.password);
            let r = conn
                .send_at(&step(msg), version, std::time::Duration::ZERO)
                .await?;
            if r.error_code != 0 {
                return Err(failed("PLAIN", r.error_code, r.error_message.as_ref()));
            }
        }
        Some(mech) => {
            let mut client = ScramClient::new(mech, sasl.username.clone(), sasl.password.clone());
            let first = client.client_first().map_err(protocol)?;
            let r = conn
                .send_at(&step(first), version, std::time::Duration::ZERO)
                .await?;
            if r.error_code != 0 {
                return Err(failed(mech.name(), r.error_code, r.error_message.as_ref()));
            }
            let fin = client.client_final(&r.auth_bytes).map_err(protocol)?;
            let r = conn
                .send_at(&step(fin), version, std::time::Duration::ZERO)
                .await?;
            if r.error_code != 0 {
                return Err(failed(mech.name(), r.error_code, r.error_message.as_ref()));
            }
            client
                .verify_server_final(&r.auth_bytes)
                .map_err(protocol)?;
        }
    }
    Ok(())
}
