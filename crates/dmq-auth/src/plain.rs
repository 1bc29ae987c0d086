//! SASL PLAIN (RFC 4616) against the users configured in `services.json`.
//!
//! ```text
//!   message = [authzid] NUL authcid NUL passwd      (UTF-8, NUL = 0x00)
//!   e.g.      "" NUL "alice" NUL "alice-secret"
//! ```
//!
//! The server answers with an empty message on success (Kafka's `PlainSaslServer`). PLAIN sends
//! the password itself, so it belongs on SASL_SSL listeners; on SASL_PLAINTEXT anyone on the
//! path reads it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::sasl::{SaslMechanism, SaslServer, SaslStep};
use crate::{AuthError, AuthFailure, Password, Result};

/// The longest PLAIN message accepted. RFC 4616 §2 asks servers to accept at least 255 octets
/// for each of the three fields; this leaves room for long passwords while bounding the work a
/// client can ask for.
pub const PLAIN_MESSAGE_BYTES_MAX: usize = 4096;

const MECHANISM: &str = "PLAIN";

/// A parsed PLAIN message. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainMessage<'a> {
    /// The identity to act as; empty means "the authcid". Kafka refuses any other value.
    pub authzid: &'a str,
    /// The user name (RFC 4616's authcid).
    pub username: &'a str,
    /// The password in clear.
    password: &'a str,
}

impl<'a> PlainMessage<'a> {
    /// Parses `authzid NUL authcid NUL passwd`, with Kafka's checks: exactly three fields, a
    /// non-empty user name and password. Errors never contain the message's bytes.
    pub fn parse(message: &'a [u8]) -> Result<Self> {
        let malformed = |reason| AuthError::MalformedSaslMessage {
            mechanism: MECHANISM,
            message: "message",
            reason,
        };
        if message.len() > PLAIN_MESSAGE_BYTES_MAX {
            return Err(malformed("longer than 4096 bytes"));
        }
        let text = std::str::from_utf8(message).map_err(|_| malformed("not UTF-8"))?;
        let mut fields = text.split('\0');
        let (Some(authzid), Some(username), Some(password), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(malformed(
                "expected 3 NUL-separated fields: authzid, username, password",
            ));
        };
        if username.is_empty() {
            return Err(malformed("username not specified"));
        }
        if password.is_empty() {
            return Err(malformed("password not specified"));
        }
        Ok(PlainMessage {
            authzid,
            username,
            password,
        })
    }

    /// The password in clear.
    pub fn expose_password(&self) -> &'a str {
        self.password
    }
}

impl fmt::Debug for PlainMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainMessage")
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The client's PLAIN message for `username` and `password`, without an authzid (what Kafka's
/// own client sends).
pub fn client_message(username: &str, password: &Password) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + username.len() + password.expose_secret().len());
    out.push(0);
    out.extend_from_slice(username.as_bytes());
    out.push(0);
    out.extend_from_slice(password.expose_secret().as_bytes());
    out
}

/// The users PLAIN accepts, kept as SHA-256 digests of their passwords so that the clear
/// passwords need not stay in memory and every comparison takes the same time whatever the
/// password's length. `Debug` lists the user names only.
#[derive(Clone, Default)]
pub struct PlainUsers {
    /// User name → SHA-256(password).
    digests: HashMap<String, [u8; 32]>,
}

impl PlainUsers {
    /// The users, from `(name, password)` pairs (`security.sasl.users` in `services.json`).
    pub fn new<N: Into<String>>(users: impl IntoIterator<Item = (N, Password)>) -> Self {
        let mut out = PlainUsers::default();
        for (name, password) in users {
            out.insert(name, &password);
        }
        out
    }

    /// Adds or replaces a user.
    pub fn insert(&mut self, name: impl Into<String>, password: &Password) {
        self.digests
            .insert(name.into(), digest(password.expose_secret()));
    }

    /// True when `name` is a configured user.
    pub fn contains(&self, name: &str) -> bool {
        self.digests.contains_key(name)
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// True when no user is configured.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Checks a password in constant time: both sides are SHA-256 digests, compared with
    /// `subtle`. An unknown user is compared against a dummy digest so that it costs the same.
    pub fn verify(&self, username: &str, password: &str) -> std::result::Result<(), AuthFailure> {
        const DUMMY: [u8; 32] = [0x5a; 32];
        let offered = digest(password);
        let (stored, known) = match self.digests.get(username) {
            Some(stored) => (stored, true),
            None => (&DUMMY, false),
        };
        let equal = bool::from(offered.ct_eq(stored));
        match (known, equal) {
            (true, true) => Ok(()),
            (true, false) => Err(AuthFailure::WrongPassword),
            (false, _) => Err(AuthFailure::UnknownUser),
        }
    }
}

impl fmt::Debug for PlainUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.digests.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("PlainUsers")
            .field("users", &names)
            .field("passwords", &"<redacted>")
            .finish()
    }
}

fn digest(password: &str) -> [u8; 32] {
    Sha256::digest(password.as_bytes()).into()
}

/// Authenticates one PLAIN message against `users` and returns the user name, in the order of
/// Kafka's `PlainSaslServer`: parse, check the password, then refuse an authzid other than the
/// user name. A wrong password and an unknown user give the same error.
pub fn authenticate(message: &[u8], users: &PlainUsers) -> Result<String> {
    let parsed = PlainMessage::parse(message)?;
    users
        .verify(parsed.username, parsed.expose_password())
        .map_err(|reason| AuthError::AuthenticationFailed {
            mechanism: MECHANISM,
            reason,
        })?;
    if !parsed.authzid.is_empty() && parsed.authzid != parsed.username {
        return Err(AuthError::SaslRefused {
            mechanism: MECHANISM,
            reason: "Client requested an authorization id that is different from username",
        });
    }
    Ok(parsed.username.to_owned())
}

/// The PLAIN exchange as a [`SaslServer`]: one message, one answer.
#[derive(Debug, Clone)]
pub struct PlainServer {
    /// The configured users, shared by every connection.
    users: Arc<PlainUsers>,
    /// Set after the one message, whatever its outcome.
    finished: bool,
}

impl PlainServer {
    /// A PLAIN exchange against `users`.
    pub fn new(users: Arc<PlainUsers>) -> Self {
        PlainServer {
            users,
            finished: false,
        }
    }
}

impl SaslServer for PlainServer {
    fn mechanism(&self) -> SaslMechanism {
        SaslMechanism::Plain
    }

    fn step(&mut self, client_message: &[u8]) -> Result<SaslStep> {
        if self.finished {
            return Err(AuthError::IllegalSaslState {
                mechanism: MECHANISM,
                state: "finished",
            });
        }
        self.finished = true;
        let username = authenticate(client_message, &self.users)?;
        Ok(SaslStep::Complete {
            response: Vec::new(),
            username,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> PlainUsers {
        PlainUsers::new([
            ("alice", Password::new("alice-secret")),
            ("bob", Password::new("bob-secret")),
        ])
    }

    #[test]
    fn correct_password_authenticates() {
        let msg = client_message("alice", &Password::new("alice-secret"));
        assert_eq!(authenticate(&msg, &users()), Ok("alice".to_owned()));
    }

    #[test]
    fn authzid_equal_to_username_is_allowed() {
        assert_eq!(
            authenticate(b"alice\0alice\0alice-secret", &users()),
            Ok("alice".to_owned())
        );
    }

    #[test]
    fn authzid_different_from_username_is_refused() {
        let err = authenticate(b"bob\0alice\0alice-secret", &users()).expect_err("refused");
        assert!(matches!(err, AuthError::SaslRefused { .. }), "{err:?}");
        assert_eq!(
            err.kafka_error_code(),
            crate::error_codes::SASL_AUTHENTICATION_FAILED
        );
    }

    #[test]
    fn wrong_password_and_unknown_user_look_the_same() {
        let wrong = authenticate(b"\0alice\0bob-secret", &users()).expect_err("wrong");
        let unknown = authenticate(b"\0carol\0alice-secret", &users()).expect_err("unknown");
        assert_eq!(wrong.to_string(), unknown.to_string());
        assert!(matches!(
            wrong,
            AuthError::AuthenticationFailed {
                reason: AuthFailure::WrongPassword,
                ..
            }
        ));
        assert!(matches!(
            unknown,
            AuthError::AuthenticationFailed {
                reason: AuthFailure::UnknownUser,
                ..
            }
        ));
        // A prefix or extension of the password is just as wrong.
        assert!(authenticate(b"\0alice\0alice-secre", &users()).is_err());
        assert!(authenticate(b"\0alice\0alice-secret2", &users()).is_err());
    }

    #[test]
    fn malformed_messages_get_clear_errors_without_the_password() {
        let cases: &[(&[u8], &str)] = &[
            (b"alice\0alice-secret", "expected 3"),
            (b"\0alice\0alice-secret\0extra", "expected 3"),
            (b"\0\0alice-secret", "username not specified"),
            (b"\0alice\0", "password not specified"),
            (b"\0alice\0\xff\xfe", "not UTF-8"),
        ];
        for (msg, expected) in cases {
            let err = authenticate(msg, &users()).expect_err(expected);
            let text = err.to_string();
            assert!(text.contains(expected), "{text}");
            assert!(!text.contains("alice-secret"), "{text}");
            assert_eq!(
                err.kafka_error_code(),
                crate::error_codes::SASL_AUTHENTICATION_FAILED
            );
        }
        let long = vec![b'a'; PLAIN_MESSAGE_BYTES_MAX + 1];
        assert!(authenticate(&long, &users()).is_err());
    }

    #[test]
    fn server_answers_once_then_refuses() {
        let mut server = PlainServer::new(Arc::new(users()));
        let step = server.step(b"\0bob\0bob-secret").expect("authenticates");
        assert_eq!(
            step,
            SaslStep::Complete {
                response: vec![],
                username: "bob".to_owned()
            }
        );
        let again = server.step(b"\0bob\0bob-secret").expect_err("finished");
        assert_eq!(
            again.kafka_error_code(),
            crate::error_codes::ILLEGAL_SASL_STATE
        );
        let mut failed = PlainServer::new(Arc::new(users()));
        assert!(failed.step(b"\0bob\0nope").is_err());
        assert!(matches!(
            failed.step(b"\0bob\0bob-secret"),
            Err(AuthError::IllegalSaslState { .. })
        ));
    }
}
