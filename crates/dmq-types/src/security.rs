//! The `security` section of `services.json` (SPEC §11) and the per-broker Kafka listeners.
//! Absent: everything is open, as `dmq dev` wants it. Present: the Kafka port speaks
//! `SASL_PLAINTEXT` unless a listener says otherwise, and the parts given below turn on.
//!
//! ```json
//! "security": {
//!   "tls": {"certFile": "certs/broker.pem", "keyFile": "certs/broker.key", "caFile": "certs/ca.pem",
//!           "clientAuth": "none"},
//!   "sasl": {"mechanisms": ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
//!            "users": [{"name": "admin", "password": "admin-secret"}]},
//!   "authorizer": {"enabled": true, "superUsers": ["User:admin"], "allowEveryoneIfNoAclFound": false},
//!   "interBroker": {"user": "admin", "password": "admin-secret"},
//!   "http": {"tokens": [{"token": "…", "principal": "User:admin"}]}
//! }
//! ```
//!
//! Every secret may instead be given as a path to a file holding it (`passwordFile`,
//! `tokenFile`); paths are relative to the config file ([`SecurityConfig::resolve`]). Secrets
//! are [`Secret`]s: their `Debug` shows `"***"`, so no log line or error message prints them.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ConfigProblem;

/// A password, token or key: kept as given, never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that needs it (a credential check).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// The protocol of a Kafka listener (Kafka's `security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

/// An extra Kafka listener of a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerConfig {
    /// Kafka's listener name (`SECURE`, `INTERNAL`…); unique per broker.
    pub name: String,
    pub port: u16,
    pub protocol: SecurityProtocol,
}

/// The whole `security` section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityConfig {
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
    #[serde(default)]
    pub authorizer: AuthorizerConfig,
    /// The credentials brokers use towards each other (follower fetches, transaction markers).
    #[serde(default)]
    pub inter_broker: Option<Credentials>,
    #[serde(default)]
    pub http: Option<HttpSecurity>,
}

/// Whether a TLS listener asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    #[default]
    None,
    Requested,
    Required,
}

/// PEM files (paths relative to the config file until [`SecurityConfig::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub client_auth: ClientAuth,
}

/// SASL mechanisms offered and the PLAIN users of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaslConfig {
    #[serde(default = "default_mechanisms")]
    pub mechanisms: Vec<String>,
    #[serde(default)]
    pub users: Vec<UserConfig>,
}

fn default_mechanisms() -> Vec<String> {
    SASL_MECHANISMS.iter().map(|m| m.to_string()).collect()
}

/// The SASL mechanisms dmq implements.
pub const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// A PLAIN user of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserConfig {
    pub name: String,
    #[serde(default)]
    pub password: Secret,
    /// A file holding the password (read by [`SecurityConfig::resolve`]).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// Kafka's authorizer settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Principals (`User:admin`) allowed everything.
    #[serde(default)]
    pub super_users: Vec<String>,
    /// Kafka's `allow.everyone.if.no.acl.found`.
    #[serde(default)]
    pub allow_everyone_if_no_acl_found: bool,
}

/// A user name and password (or password file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub user: String,
    #[serde(default)]
    pub password: Secret,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// Bearer tokens for every HTTP API, and whether they speak HTTPS.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpSecurity {
    #[serde(default)]
    pub tokens: Vec<HttpToken>,
    /// Every HTTP API (metadata, storage, console, Raft RPCs, broker↔controller calls) over
    /// TLS with `security.tls`'s certificate; the nodes trust `security.tls.caFile`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpToken {
    #[serde(default)]
    pub token: Secret,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    pub principal: String,
}

fn read_secret(base: &Path, file: &Path, what: &str) -> Result<Secret, ConfigProblem> {
    let path = base.join(file);
    std::fs::read_to_string(&path)
        .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_string()))
        .map_err(|e| ConfigProblem(format!("{what}: cannot read {}: {e}", path.display())))
}

impl SecurityConfig {
    /// Makes the file paths absolute against `base` (the config file's directory) and reads
    /// the secrets given as files.
    pub fn resolve(&mut self, base: &Path) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if let Some(tls) = &mut self.tls {
            tls.cert_file = base.join(&tls.cert_file);
            tls.key_file = base.join(&tls.key_file);
            tls.ca_file = tls.ca_file.as_ref().map(|f| base.join(f));
        }
        if let Some(sasl) = &mut self.sasl {
            for u in &mut sasl.users {
                if let Some(f) = &u.password_file {
                    match read_secret(base, f, &format!("sasl user {:?}", u.name)) {
                        Ok(s) => u.password = s,
                        Err(p) => problems.push(p),
                    }
                }
            }
        }
        if let Some(c) = &mut self.inter_broker {
            if let Some(f) = &c.password_file {
                match read_secret(base, f, "interBroker") {
                    Ok(s) => c.password = s,
                    Err(p) => problems.push(p),
                }
            }
        }
        if let Some(h) = &mut self.http {
            for t in &mut h.tokens {
                if let Some(f) = &t.token_file {
                    match read_secret(base, f, &format!("http token of {}", t.principal)) {
                        Ok(s) => t.token = s,
                        Err(p) => problems.push(p),
                    }
                }
            }
        }
        problems
    }

    /// Inconsistencies of the section, one sentence each (never quoting a secret).
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut say = |s: String| out.push(ConfigProblem(s));
        if let Some(sasl) = &self.sasl {
            for m in &sasl.mechanisms {
                if !SASL_MECHANISMS.contains(&m.as_str()) {
                    say(format!(
                        "security.sasl.mechanisms: {m:?} is not one of {SASL_MECHANISMS:?}"
                    ));
                }
            }
            for u in &sasl.users {
                if u.name.is_empty() {
                    say("security.sasl.users: a user has no name".into());
                }
                if u.password.is_empty() && u.password_file.is_none() {
                    say(format!(
                        "security.sasl.users: user {:?} has neither password nor passwordFile",
                        u.name
                    ));
                }
            }
            if self.inter_broker.is_none() {
                say("security.sasl is set but security.interBroker is not: brokers could not authenticate to each other".into());
            }
        }
        for p in &self.authorizer.super_users {
            if p.split_once(':')
                .is_none_or(|(t, n)| t.is_empty() || n.is_empty())
            {
                say(format!(
                    "security.authorizer.superUsers: {p:?} is not a principal like \"User:admin\""
                ));
            }
        }
        if let Some(first) = self.http.as_ref().and_then(|h| h.tokens.first()) {
            // The processes call each other with the first token (Raft RPCs, registration,
            // heartbeats): with the authorizer on, its principal must be allowed everything.
            if self.authorizer.enabled && !self.authorizer.super_users.contains(&first.principal) {
                say(format!(
                    "security.http.tokens: the first token is the one the nodes use with each other, so its principal {:?} must be one of security.authorizer.superUsers",
                    first.principal
                ));
            }
        }
        if let Some(h) = &self.http {
            for t in &h.tokens {
                if t.token.is_empty() && t.token_file.is_none() {
                    say(format!(
                        "security.http.tokens: the token of {:?} is empty",
                        t.principal
                    ));
                }
            }
        }
        out
    }

    /// The protocol of a broker's `kafkaPort` with this section present.
    pub fn default_protocol(&self) -> SecurityProtocol {
        SecurityProtocol::SaslPlaintext
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c: SecurityConfig = serde_json::from_str(
            r#"{"sasl": {"users": [{"name": "admin", "password": "hunter2-secret"}]},
                "interBroker": {"user": "admin", "password": "hunter2-secret"},
                "http": {"tokens": [{"token": "tok-secret", "principal": "User:admin"}]}}"#,
        )
        .expect("parse");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("tok-secret"), "{shown}");
        assert!(shown.contains("admin"));
    }

    #[test]
    fn secrets_can_come_from_files_relative_to_the_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pw"), "from-file\n").expect("write");
        let mut c: SecurityConfig = serde_json::from_str(
            r#"{"sasl": {"users": [{"name": "a", "passwordFile": "pw"}]},
                "interBroker": {"user": "a", "passwordFile": "missing"},
                "tls": {"certFile": "c.pem", "keyFile": "k.pem"}}"#,
        )
        .expect("parse");
        let problems = c.resolve(dir.path());
        let sasl = c.sasl.as_ref().expect("sasl");
        assert_eq!(sasl.users[0].password.expose(), "from-file");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].0.contains("interBroker"));
        assert_eq!(
            c.tls.as_ref().map(|t| t.cert_file.clone()),
            Some(dir.path().join("c.pem"))
        );
        assert_eq!(sasl.mechanisms.len(), 3, "all mechanisms by default");
    }

    #[test]
    fn bad_sections_are_named() {
        let c: SecurityConfig = serde_json::from_str(
            r#"{"sasl": {"mechanisms": ["GSSAPI"], "users": [{"name": "x"}]},
                "authorizer": {"enabled": true, "superUsers": ["admin"]}}"#,
        )
        .expect("parse");
        let p: Vec<String> = c.problems().into_iter().map(|p| p.0).collect();
        assert!(p.iter().any(|s| s.contains("GSSAPI")), "{p:?}");
        assert!(p.iter().any(|s| s.contains("neither password")), "{p:?}");
        assert!(p.iter().any(|s| s.contains("interBroker")), "{p:?}");
        assert!(p.iter().any(|s| s.contains("\"admin\"")), "{p:?}");
    }

    #[test]
    fn the_first_http_token_must_belong_to_a_super_user_with_the_authorizer_on() {
        let with = |principal: &str, enabled: bool| -> SecurityConfig {
            serde_json::from_value(serde_json::json!({
                "authorizer": {"enabled": enabled, "superUsers": ["User:admin"]},
                "http": {"tokens": [{"token": "t1", "principal": principal},
                                    {"token": "t2", "principal": "User:viewer"}]},
            }))
            .expect("parse")
        };
        let says = |c: &SecurityConfig| c.problems().iter().any(|p| p.0.contains("first token"));
        assert!(!says(&with("User:admin", true)));
        assert!(says(&with("User:viewer", true)));
        assert!(!says(&with("User:viewer", false)), "no authorizer, no rule");
    }
}
