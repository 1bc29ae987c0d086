//! The shape every server-side SASL mechanism shares, so the Kafka listener drives PLAIN and
//! SCRAM alike.
//!
//! ```text
//!   client                          broker
//!   SaslHandshake("SCRAM-SHA-512") → SaslMechanism::from_name → a SaslServer
//!   SaslAuthenticate(bytes)        → step(bytes) = Continue(challenge) → SaslAuthenticate answer
//!   SaslAuthenticate(bytes)        → step(bytes) = Complete{response, username}
//!                                    → principal User:<username>
//!   any Err(e)                     → e.kafka_error_code() (SASL_AUTHENTICATION_FAILED, ...),
//!                                    then the connection closes
//! ```

use std::fmt;

use crate::scram::ScramMechanism;
use crate::{AuthError, Result};

/// A SASL mechanism the broker offers (the names SaslHandshake carries, compared exactly as
/// Kafka does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SaslMechanism {
    /// RFC 4616, users from `services.json`.
    Plain,
    /// RFC 5802 / RFC 7677 with SHA-256, credentials in the metadata quorum.
    ScramSha256,
    /// RFC 5802 with SHA-512, credentials in the metadata quorum.
    ScramSha512,
}

impl SaslMechanism {
    /// Every mechanism, in the order SaslHandshake lists them.
    pub const VALUES: &'static [SaslMechanism] = &[
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ];

    /// The IANA name: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => ScramMechanism::Sha256.name(),
            SaslMechanism::ScramSha512 => ScramMechanism::Sha512.name(),
        }
    }

    /// The mechanism SaslHandshake asks for. SASL mechanism names are case-sensitive (RFC 4422
    /// §3.1 says upper case), and Kafka compares them exactly.
    pub fn from_name(name: &str) -> Result<Self> {
        SaslMechanism::VALUES
            .iter()
            .copied()
            .find(|m| m.name() == name)
            .ok_or_else(|| AuthError::UnsupportedMechanism {
                name: name.to_owned(),
            })
    }

    /// The SCRAM mechanism, if this is one.
    pub fn scram(self) -> Option<ScramMechanism> {
        match self {
            SaslMechanism::Plain => None,
            SaslMechanism::ScramSha256 => Some(ScramMechanism::Sha256),
            SaslMechanism::ScramSha512 => Some(ScramMechanism::Sha512),
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a server-side SASL step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep {
    /// Send these bytes back (SaslAuthenticate's `auth_bytes`) and wait for the next message.
    Continue(Vec<u8>),
    /// Authentication succeeded: send `response` (possibly empty) and treat the connection as
    /// `User:<username>` from now on.
    Complete {
        /// The last bytes for the client (SCRAM's server-final; empty for PLAIN).
        response: Vec<u8>,
        /// The authenticated user name (the principal is `User:<username>`).
        username: String,
    },
}

/// A server-side SASL exchange: one per connection, fed every SaslAuthenticate payload in order.
///
/// Contract: after an `Err` or a `Complete`, every further `step` returns
/// [`AuthError::IllegalSaslState`]; an exchange is never resumed or reused.
pub trait SaslServer {
    /// The mechanism this exchange runs.
    fn mechanism(&self) -> SaslMechanism;

    /// Consumes the client's next message.
    fn step(&mut self, client_message: &[u8]) -> Result<SaslStep>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_names_are_exact() {
        for m in SaslMechanism::VALUES {
            assert_eq!(SaslMechanism::from_name(m.name()), Ok(*m));
        }
        let err = SaslMechanism::from_name("scram-sha-256").expect_err("case-sensitive");
        assert_eq!(
            err.kafka_error_code(),
            crate::error_codes::UNSUPPORTED_SASL_MECHANISM
        );
        assert!(SaslMechanism::from_name("GSSAPI").is_err());
        assert_eq!(
            SaslMechanism::ScramSha512.scram(),
            Some(ScramMechanism::Sha512)
        );
        assert_eq!(SaslMechanism::Plain.scram(), None);
    }
}
