//! TLS for the Kafka listeners (SPEC §11): rustls with PEM files from services.json, optional
//! client certificates (`clientAuth: none | requested | required`, checked against `caFile`),
//! and Kafka's default principal for a certificate: `User:` + its subject as an RFC 2253 DN
//! (`User:CN=alice,OU=eng`).

use std::path::Path;
use std::sync::Arc;

use dmq_types::security::{ClientAuth, TlsConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

use crate::error::{BrokerError, Result};

fn bad(what: &str, path: &Path, why: impl std::fmt::Display) -> BrokerError {
    BrokerError::InvalidRequest(format!("TLS {what} {}: {why}", path.display()))
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad("certificates", path, e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad("certificates", path, e))?;
    if certs.is_empty() {
        return Err(bad("certificates", path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side of a TLS listener.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<rustls::ServerConfig>> {
    let chain = certs(&tls.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| bad("private key", &tls.key_file, e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| BrokerError::InvalidRequest(format!("TLS versions: {e}")))?;
    let builder = match tls.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let ca = tls.ca_file.as_ref().ok_or_else(|| {
                BrokerError::InvalidRequest(
                    "security.tls.clientAuth needs security.tls.caFile".into(),
                )
            })?;
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca)? {
                roots.add(c).map_err(|e| bad("CA certificate", ca, e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            );
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| BrokerError::InvalidRequest(format!("TLS client verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| bad("certificate and key", &tls.cert_file, e))?;
    Ok(Arc::new(config))
}

/// Kafka's principal for a client certificate: `User:` + the subject as an RFC 2253 DN
/// (most specific RDN first, `CN=alice,OU=eng,O=acme`); `None` if it cannot be parsed.
pub fn principal_of(cert: &CertificateDer<'_>) -> Option<dmq_auth::KafkaPrincipal> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<Vec<(String, String)>> = parsed
        .subject()
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type();
                    let name = x509_parser::objects::oid2abbrev(oid, registry)
                        .map(str::to_string)
                        .unwrap_or_else(|_| oid.to_id_string());
                    let value = atv.as_str().map(str::to_string).unwrap_or_default();
                    (name, value)
                })
                .collect()
        })
        .collect();
    let borrowed: Vec<Vec<(&str, &str)>> = rdns
        .iter()
        .map(|r| r.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect())
        .collect();
    let slices: Vec<&[(&str, &str)]> = borrowed.iter().map(Vec::as_slice).collect();
    let dn = dmq_auth::principal::format_rfc2253(&slices);
    Some(dmq_auth::KafkaPrincipal::from_tls_subject(Some(&dn)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_subject_becomes_kafkas_principal() {
        let mut params = rcgen_params();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "acme");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationalUnitName, "eng");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let principal = principal_of(cert.der()).expect("parsed");
        assert_eq!(principal.to_string(), "User:CN=alice,OU=eng,O=acme");
    }

    fn rcgen_params() -> rcgen::CertificateParams {
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params")
    }
}
