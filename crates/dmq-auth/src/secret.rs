//! Wrappers for secrets whose `Debug` never prints them and that have no `Display` at all, so a
//! `{:?}` in a log line or a `format!` in an error cannot leak one by accident. Reading the value
//! takes an explicit `expose_secret()`, which is easy to grep for.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A password in clear: a PLAIN user's from `services.json`, or the one our own client sends.
///
/// Serde reads and writes it as a plain JSON string (config files hold it so); the type exists
/// to keep it out of `Debug` output.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Password(password.into())
    }

    /// The password in clear. Call it only where the password is used (hashing, the wire).
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// True when the password is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Password {
    fn from(password: String) -> Self {
        Password(password)
    }
}

impl From<&str> for Password {
    fn from(password: &str) -> Self {
        Password(password.to_owned())
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// SCRAM's SaltedPassword, `Hi(Normalize(password), salt, i)` (RFC 5802 §3): whoever holds it
/// can log in as the user, so it is as secret as the password. AlterUserScramCredentials carries
/// it (KIP-554) so that the password itself never leaves the client.
#[derive(Clone, PartialEq, Eq)]
pub struct SaltedPassword(Vec<u8>);

impl SaltedPassword {
    /// Wraps salted-password bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        SaltedPassword(bytes)
    }

    /// The bytes. Call it only where they are used (key derivation, the wire).
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SaltedPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SaltedPassword(<redacted>)")
    }
}
