//! DistributedMQ's security core: the SASL mechanisms, SCRAM credentials and Kafka's ACL
//! authorizer, as plain data and pure functions.
//!
//! ```text
//!   SaslHandshake / SaslAuthenticate bytes            CreateAcls / DescribeAcls / every request
//!                  │                                                   │
//!        ┌─────────▼──────────┐                            ┌───────────▼───────────┐
//!        │ sasl::SaslServer   │  PLAIN   → plain.rs        │ acl::AclIndex          │
//!        │   step(bytes)      │  SCRAM-* → scram.rs        │   authorize(principal, │
//!        └─────────┬──────────┘                            │     host, op, resource)│
//!                  │ username                              └───────────┬───────────┘
//!        ┌─────────▼──────────┐                                        │
//!        │ principal.rs       │ "User:alice" ──────────────────────────┘
//!        └────────────────────┘
//! ```
//!
//! Nothing here opens a socket, reads a file or looks at a clock. The only thing taken from the
//! outside world is randomness (SCRAM nonces and salts), and every constructor that draws it has a
//! twin that takes the value as an argument so that tests replay exactly.
//!
//! # Secrets
//!
//! Passwords, salted passwords and SCRAM keys live in types whose `Debug` prints `<redacted>`
//! ([`Password`], [`SaltedPassword`], [`scram::ScramCredential`], [`plain::PlainUsers`], the
//! SASL state machines), and no [`AuthError`] message ever contains one: a SASL failure says
//! which mechanism failed, never what the client sent. SPEC §11: "No secret ever appears in a
//! log line, a metric or an error message."

pub mod acl;
pub mod http;
pub mod plain;
pub mod principal;
pub mod sasl;
pub mod scram;
mod secret;

pub use acl::{
    authorize, AclBinding, AclBindingFilter, AclIndex, AuthorizerConfig, Decision, Operation,
    PatternType, Permission, ResourceType, Rule,
};
pub use http::{decide_http, http_access, HttpAccess};
pub use principal::KafkaPrincipal;
pub use sasl::{SaslMechanism, SaslServer, SaslStep};
pub use scram::{ScramClient, ScramCredential, ScramMechanism, ScramServer};
pub use secret::{Password, SaltedPassword};

/// Kafka error codes this crate's errors map to (`org.apache.kafka.common.protocol.Errors`).
/// They are used exactly, never reused for something else (STYLE habit 2).
pub mod error_codes {
    /// The authorizer denied an operation on a topic.
    pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    /// The authorizer denied an operation on a group.
    pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    /// The authorizer denied an operation on the cluster.
    pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
    /// The broker does not support the requested SASL mechanism.
    pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
    /// Request is not valid given the current SASL state.
    pub const ILLEGAL_SASL_STATE: i16 = 34;
    /// The request is malformed or carries values the broker refuses (e.g. an ACL with ANY).
    pub const INVALID_REQUEST: i16 = 42;
    /// The authorizer denied an operation on a transactional id.
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    /// SASL authentication failed; the broker closes the connection after sending it.
    pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
    /// A SCRAM credential upsertion does not meet the criteria (iterations out of range, ...).
    pub const UNACCEPTABLE_CREDENTIAL: i16 = 93;
}

/// Why an authentication failed, for the server's own (debug-level) log.
///
/// It is deliberately *not* part of [`AuthError`]'s message: a client must not learn whether the
/// user exists or only the password was wrong. None of the variants carries a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credential is stored for the user (the SCRAM exchange ran with a mock credential).
    UnknownUser,
    /// PLAIN: the password does not match.
    WrongPassword,
    /// SCRAM: the ClientProof does not verify against the StoredKey.
    InvalidProof,
    /// SCRAM: the client-final message echoes a nonce other than the combined nonce.
    NonceMismatch,
    /// SCRAM: the client-final `c=` is not the base64 of the client-first GS2 header.
    ChannelBindingMismatch,
    /// SCRAM: the stored credential has fewer iterations than the mechanism's minimum.
    IterationsTooLow,
}

impl std::fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthFailure::UnknownUser => "unknown user",
            AuthFailure::WrongPassword => "wrong password",
            AuthFailure::InvalidProof => "invalid client proof",
            AuthFailure::NonceMismatch => "nonce mismatch",
            AuthFailure::ChannelBindingMismatch => "channel binding mismatch",
            AuthFailure::IterationsTooLow => "stored credential has too few iterations",
        })
    }
}

/// The one error type of `dmq-auth`.
///
/// Every variant's message is safe to send to a client and to log: it names fields, codes and
/// mechanisms, never a password, salted password, key, proof or the raw SASL bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A wire code outside the enum (e.g. resource type 9 in a CreateAcls request).
    #[error("unknown {kind} code {code}")]
    UnknownCode {
        /// Which enum: "resource type", "pattern type", "operation", "permission type",
        /// "SCRAM mechanism".
        kind: &'static str,
        /// The code as received.
        code: i8,
    },

    /// A name that parses as none of the enum's values (CLI flags, JSON).
    #[error("unknown {kind} {name:?}; expected one of {expected}")]
    UnknownName {
        /// Which enum, as in [`AuthError::UnknownCode`].
        kind: &'static str,
        /// The name as given.
        name: String,
        /// The accepted names, for the operator.
        expected: &'static str,
    },

    /// A principal not of the form `principalType:principalName`.
    #[error(
        "invalid principal {principal:?}: expected principalType:principalName, e.g. User:alice"
    )]
    InvalidPrincipal {
        /// The principal as given (principals are names, not secrets).
        principal: String,
    },

    /// An ACL binding that CreateAcls must refuse (Kafka answers INVALID_REQUEST).
    #[error("invalid ACL binding: {field} {value}: {rule}")]
    InvalidAclBinding {
        /// The binding's field at fault, in Kafka's JSON spelling (`resourceType`, `host`, ...).
        field: &'static str,
        /// The value found, rendered for the operator.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },

    /// SaslHandshake named a mechanism this broker does not offer.
    #[error("unsupported SASL mechanism {name:?}; supported: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512")]
    UnsupportedMechanism {
        /// The mechanism name as received (a name, not a secret).
        name: String,
    },

    /// A SASL message that does not follow its RFC grammar. The message bytes are not echoed:
    /// PLAIN carries the password and SCRAM's client-final carries the proof.
    #[error("Authentication failed: malformed {mechanism} {message}: {reason}")]
    MalformedSaslMessage {
        /// "PLAIN", "SCRAM-SHA-256", ...
        mechanism: &'static str,
        /// Which message: "client-first-message", "client-final-message", ...
        message: &'static str,
        /// What is wrong, without any of the message's content.
        reason: &'static str,
    },

    /// The client asked for something the server refuses before credentials are even checked:
    /// a different authorization id, channel binding, a delegation token.
    #[error("Authentication failed: {reason} ({mechanism})")]
    SaslRefused {
        /// "PLAIN", "SCRAM-SHA-256", ...
        mechanism: &'static str,
        /// What was refused, e.g. "Client requested an authorization id that is different
        /// from username".
        reason: &'static str,
    },

    /// Wrong credentials. The message is the same whatever the [`AuthFailure`]; log `reason`
    /// at debug level on the server if wanted.
    #[error(
        "Authentication failed during authentication due to invalid credentials with SASL \
         mechanism {mechanism}"
    )]
    AuthenticationFailed {
        /// "PLAIN", "SCRAM-SHA-256", ...
        mechanism: &'static str,
        /// Why, for the server's log only.
        reason: AuthFailure,
    },

    /// A SASL message arrived when the exchange did not expect one (after it completed or
    /// failed, or a client-final before the client-first).
    #[error("SASL {mechanism} exchange does not expect a message in state {state}")]
    IllegalSaslState {
        /// "PLAIN", "SCRAM-SHA-256", ...
        mechanism: &'static str,
        /// The state the exchange is in.
        state: &'static str,
    },

    /// A SCRAM credential that AlterUserScramCredentials (or `dmq user create`) must refuse.
    #[error("unacceptable {mechanism} credential: {reason}")]
    UnacceptableCredential {
        /// "SCRAM-SHA-256" or "SCRAM-SHA-512".
        mechanism: &'static str,
        /// What is wrong, e.g. "Too few iterations: 1000 < 4096".
        reason: String,
    },

    /// Client side: the server's `v=` signature does not verify, so the server does not know the
    /// user's credential (RFC 5802 §3: the client MUST fail).
    #[error("{mechanism} server signature does not verify; the server is not who it claims")]
    ServerSignatureMismatch {
        /// "SCRAM-SHA-256" or "SCRAM-SHA-512".
        mechanism: &'static str,
    },

    /// Client side: the server answered `e=<error>` (RFC 5802 server-error values are words
    /// like `invalid-proof`, never secrets).
    #[error("{mechanism} server refused authentication: {error}")]
    ServerRefused {
        /// "SCRAM-SHA-256" or "SCRAM-SHA-512".
        mechanism: &'static str,
        /// The server-error-value.
        error: String,
    },
}

impl AuthError {
    /// The Kafka error code this error is answered with on the wire.
    pub fn kafka_error_code(&self) -> i16 {
        use error_codes::*;
        match self {
            AuthError::UnknownCode { .. }
            | AuthError::UnknownName { .. }
            | AuthError::InvalidPrincipal { .. }
            | AuthError::InvalidAclBinding { .. } => INVALID_REQUEST,
            AuthError::UnsupportedMechanism { .. } => UNSUPPORTED_SASL_MECHANISM,
            AuthError::IllegalSaslState { .. } => ILLEGAL_SASL_STATE,
            AuthError::UnacceptableCredential { .. } => UNACCEPTABLE_CREDENTIAL,
            AuthError::MalformedSaslMessage { .. }
            | AuthError::SaslRefused { .. }
            | AuthError::AuthenticationFailed { .. }
            | AuthError::ServerSignatureMismatch { .. }
            | AuthError::ServerRefused { .. } => SASL_AUTHENTICATION_FAILED,
        }
    }
}

/// `Result` with this crate's error.
pub type Result<T, E = AuthError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
