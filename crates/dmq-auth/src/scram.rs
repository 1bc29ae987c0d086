//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka runs them (KIP-84, KIP-554):
//! the credential, the server's state machine and a matching client.
//!
//! ```text
//!   client                                              server
//!   client-first  n,,n=<user>,r=<cnonce>          ──▶   looks up the user's ScramCredential
//!                                                 ◀──   server-first  r=<cnonce><snonce>,s=<salt>,i=<iterations>
//!   client-final  c=biws,r=<cnonce><snonce>,p=<ClientProof>
//!                                                 ──▶   checks the proof against StoredKey
//!                                                 ◀──   server-final  v=<ServerSignature>
//!
//!   SaltedPassword  := Hi(password, salt, i)                 (PBKDF2 with HMAC-H)
//!   ClientKey       := HMAC(SaltedPassword, "Client Key")
//!   StoredKey       := H(ClientKey)                          ── stored
//!   ServerKey       := HMAC(SaltedPassword, "Server Key")    ── stored
//!   AuthMessage     := client-first-bare "," server-first "," client-final-without-proof
//!   ClientSignature := HMAC(StoredKey, AuthMessage)
//!   ClientProof     := ClientKey XOR ClientSignature
//!   ServerSignature := HMAC(ServerKey, AuthMessage)
//! ```
//!
//! The server stores only salt, StoredKey, ServerKey and the iteration count: enough to check a
//! proof, not enough to compute one. AlterUserScramCredentials (KIP-554) carries the salt and
//! SaltedPassword, never the password; [`ScramCredential::from_salted_password`] derives the
//! keys from them as Kafka's `ScramControlManager` does.
//!
//! Like Kafka, usernames and passwords are used as UTF-8 without SASLprep, and only the `n`
//! (and `y`) GS2 channel-binding flags are accepted: there is no SCRAM-*-PLUS.

use std::fmt;
use std::sync::OnceLock;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::sasl::{SaslMechanism, SaslServer, SaslStep};
use crate::{AuthError, AuthFailure, Password, Result, SaltedPassword};

/// The fewest iterations Kafka accepts for SCRAM-SHA-256 and SCRAM-SHA-512 (`ScramMechanism`'s
/// `minIterations`, RFC 7677 §4's recommendation).
pub const ITERATIONS_MIN: u32 = 4096;

/// The most iterations Kafka's controller accepts in AlterUserScramCredentials
/// (`ScramControlManager.MAX_ITERATIONS`). Our client also refuses a server asking for more, so
/// a hostile server cannot make it spin.
pub const ITERATIONS_MAX: u32 = 16384;

/// The iteration count `dmq user create` uses when none is given (as `kafka-configs` does).
pub const ITERATIONS_DEFAULT: u32 = 4096;

/// The longest SCRAM message accepted from the other side. Real ones are under 300 bytes.
pub const SCRAM_MESSAGE_BYTES_MAX: usize = 4096;

/// Random bytes in a nonce we make (base64url-encoded to 32 printable characters).
const NONCE_BYTES: usize = 24;

/// Bytes of salt in a credential we generate (and in the mock credential of an unknown user).
pub const SALT_BYTES: usize = 32;

/// A SCRAM mechanism with Kafka's names and the codes of DescribeUserScramCredentials and
/// AlterUserScramCredentials (KIP-554).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScramMechanism {
    /// `SCRAM-SHA-256`, code 1.
    Sha256,
    /// `SCRAM-SHA-512`, code 2.
    Sha512,
}

impl ScramMechanism {
    /// Both mechanisms, in code order.
    pub const VALUES: &'static [ScramMechanism] = &[ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism's code in the SCRAM credential APIs (0 is Kafka's UNKNOWN).
    pub fn code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    /// The mechanism for a code; 0 (UNKNOWN) and others are an error.
    pub fn from_code(code: i8) -> Result<Self> {
        match code {
            1 => Ok(ScramMechanism::Sha256),
            2 => Ok(ScramMechanism::Sha512),
            _ => Err(AuthError::UnknownCode {
                kind: "SCRAM mechanism",
                code,
            }),
        }
    }

    /// The mechanism for its exact name.
    pub fn from_name(name: &str) -> Result<Self> {
        ScramMechanism::VALUES
            .iter()
            .copied()
            .find(|m| m.name() == name)
            .ok_or_else(|| AuthError::UnknownName {
                kind: "SCRAM mechanism",
                name: name.to_owned(),
                expected: "SCRAM-SHA-256 SCRAM-SHA-512",
            })
    }

    /// The SASL mechanism this is.
    pub fn sasl(self) -> SaslMechanism {
        match self {
            ScramMechanism::Sha256 => SaslMechanism::ScramSha256,
            ScramMechanism::Sha512 => SaslMechanism::ScramSha512,
        }
    }

    /// The hash's output length in bytes: the length of SaltedPassword, the keys and the proof.
    pub fn digest_len(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }

    /// `H(data)`.
    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// `HMAC(key, data)`. HMAC takes keys of any length, so creating it cannot fail.
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        const ANY_KEY_LENGTH: &str = "HMAC accepts keys of any length";
        match self {
            ScramMechanism::Sha256 => {
                let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect(ANY_KEY_LENGTH);
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            ScramMechanism::Sha512 => {
                let mut mac = <Hmac<Sha512> as KeyInit>::new_from_slice(key).expect(ANY_KEY_LENGTH);
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    /// `Hi(password, salt, i)`: PBKDF2 with HMAC-H, one block of the hash's length.
    fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.digest_len()];
        match self {
            ScramMechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
            }
            ScramMechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out)
            }
        }
        out
    }

    /// Refuses an iteration count outside `ITERATIONS_MIN..=ITERATIONS_MAX`, with Kafka's words.
    fn check_iterations(self, iterations: u32) -> Result<()> {
        let reason = if iterations < ITERATIONS_MIN {
            format!("Too few iterations: {iterations} < {ITERATIONS_MIN}")
        } else if iterations > ITERATIONS_MAX {
            format!("Too many iterations: {iterations} > {ITERATIONS_MAX}")
        } else {
            return Ok(());
        };
        Err(AuthError::UnacceptableCredential {
            mechanism: self.name(),
            reason,
        })
    }
}

impl fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for ScramMechanism {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ScramMechanism {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ScramMechanism::from_name(&s).map_err(serde::de::Error::custom)
    }
}

/// `SaltedPassword := Hi(Normalize(password), salt, i)` for `password`, as a client computes it
/// before AlterUserScramCredentials (KIP-554). Refuses iterations outside Kafka's range.
pub fn salted_password(
    mechanism: ScramMechanism,
    password: &Password,
    salt: &[u8],
    iterations: u32,
) -> Result<SaltedPassword> {
    mechanism.check_iterations(iterations)?;
    Ok(SaltedPassword::new(mechanism.hi(
        password.expose_secret().as_bytes(),
        salt,
        iterations,
    )))
}

/// `N` fresh random bytes from the thread's CSPRNG (rand's `ThreadRng`, a ChaCha CSPRNG
/// seeded from the operating system).
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A fresh printable nonce: base64url, so no ',' (RFC 5802 `printable`).
fn random_nonce() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<NONCE_BYTES>())
}

/// What the server stores for one user and mechanism (Kafka's `ScramCredential`,
/// `UserScramCredentialRecord` in the metadata log). `Debug` shows only the iteration count.
/// Serde writes the byte fields as standard base64 strings.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScramCredential {
    /// The salt the client salts the password with; sent in the server-first message.
    #[serde(with = "base64_bytes")]
    pub salt: Vec<u8>,
    /// `H(ClientKey)`: checks a ClientProof.
    #[serde(with = "base64_bytes")]
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`: signs the server-final message.
    #[serde(with = "base64_bytes")]
    pub server_key: Vec<u8>,
    /// The PBKDF2 iteration count the client must use.
    pub iterations: u32,
}

impl ScramCredential {
    /// The credential for `password` with this salt and iteration count (`dmq user create`,
    /// test fixtures). Refuses an empty salt and iterations outside Kafka's range.
    pub fn from_password(
        mechanism: ScramMechanism,
        password: &Password,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self> {
        let salted = salted_password(mechanism, password, salt, iterations)?;
        ScramCredential::from_salted_password(mechanism, salt, &salted, iterations)
    }

    /// The credential for `password` with a fresh random salt of [`SALT_BYTES`].
    pub fn generate(
        mechanism: ScramMechanism,
        password: &Password,
        iterations: u32,
    ) -> Result<Self> {
        ScramCredential::from_password(
            mechanism,
            password,
            &random_bytes::<SALT_BYTES>(),
            iterations,
        )
    }

    /// The credential from what an AlterUserScramCredentials upsertion carries (KIP-554: salt,
    /// SaltedPassword, iterations): `StoredKey = H(HMAC(SaltedPassword, "Client Key"))`,
    /// `ServerKey = HMAC(SaltedPassword, "Server Key")`, as Kafka's `ScramControlManager` does.
    /// Refuses, with UNACCEPTABLE_CREDENTIAL, iterations outside Kafka's range (Kafka's own
    /// check), and an empty salt or a SaltedPassword whose length is not the hash's (checks
    /// Kafka does not make; a real client can produce neither).
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salt: &[u8],
        salted_password: &SaltedPassword,
        iterations: u32,
    ) -> Result<Self> {
        mechanism.check_iterations(iterations)?;
        let unacceptable = |reason: String| AuthError::UnacceptableCredential {
            mechanism: mechanism.name(),
            reason,
        };
        if salt.is_empty() {
            return Err(unacceptable("the salt must not be empty".to_owned()));
        }
        let salted = salted_password.expose_secret();
        if salted.len() != mechanism.digest_len() {
            return Err(unacceptable(format!(
                "the salted password must be {} bytes, got {}",
                mechanism.digest_len(),
                salted.len()
            )));
        }
        let client_key = mechanism.hmac(salted, b"Client Key");
        Ok(ScramCredential {
            salt: salt.to_vec(),
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted, b"Server Key"),
            iterations,
        })
    }
}

impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("salt", &"<redacted>")
            .field("stored_key", &"<redacted>")
            .field("server_key", &"<redacted>")
            .field("iterations", &self.iterations)
            .finish()
    }
}

/// Serde for `Vec<u8>` as a standard base64 string.
mod base64_bytes {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(|_| serde::de::Error::custom("not standard base64"))
    }
}

/// Where the server finds a user's credential: the metadata quorum's image in the broker, a map
/// in tests. Any `Fn(ScramMechanism, &str) -> Option<ScramCredential>` is one.
pub trait CredentialLookup {
    /// The credential of `username` for `mechanism`, if the user has one.
    fn scram_credential(
        &self,
        mechanism: ScramMechanism,
        username: &str,
    ) -> Option<ScramCredential>;
}

impl<F> CredentialLookup for F
where
    F: Fn(ScramMechanism, &str) -> Option<ScramCredential>,
{
    fn scram_credential(
        &self,
        mechanism: ScramMechanism,
        username: &str,
    ) -> Option<ScramCredential> {
        self(mechanism, username)
    }
}

// ---- message grammar (RFC 5802 §7) ----

/// Builds the error for a message that breaks the grammar; never includes the message.
fn malformed(mechanism: ScramMechanism, message: &'static str, reason: &'static str) -> AuthError {
    AuthError::MalformedSaslMessage {
        mechanism: mechanism.name(),
        message,
        reason,
    }
}

/// Bounds the length and checks UTF-8.
fn message_text<'a>(
    mechanism: ScramMechanism,
    which: &'static str,
    bytes: &'a [u8],
) -> Result<&'a str> {
    if bytes.len() > SCRAM_MESSAGE_BYTES_MAX {
        return Err(malformed(mechanism, which, "longer than 4096 bytes"));
    }
    std::str::from_utf8(bytes).map_err(|_| malformed(mechanism, which, "not UTF-8"))
}

/// `saslname` → username: `=2C` is ',', `=3D` is '=', any other '=' is an error (RFC 5802
/// §5.1). An empty name or NUL is refused too.
fn decode_saslname(saslname: &str) -> Option<String> {
    let mut out = String::with_capacity(saslname.len());
    let mut rest = saslname;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    (!out.is_empty() && !out.contains('\0')).then_some(out)
}

/// username → `saslname`.
fn encode_saslname(username: &str) -> String {
    username.replace('=', "=3D").replace(',', "=2C")
}

/// RFC 5802 `printable`: 0x21..=0x7E except ','. A nonce is one or more of them.
fn is_valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// `attr-val = ALPHA "=" value`: an extension's name and value, if well formed.
fn attribute(field: &str) -> Option<(&str, &str)> {
    let (name, value) = field.split_once('=')?;
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphabetic())).then_some((name, value))
}

/// The parts of a client-first message the server keeps.
struct ClientFirst<'a> {
    /// `gs2-header`, e.g. `n,,`: the client-final's `c=` must be its base64.
    gs2_header: &'a str,
    /// `client-first-message-bare`: the start of the AuthMessage.
    bare: &'a str,
    /// The decoded user name.
    username: String,
    /// The client's nonce.
    nonce: &'a str,
}

/// Parses `gs2-header [reserved-mext ","] username "," nonce ["," extensions]`.
fn parse_client_first(mechanism: ScramMechanism, bytes: &[u8]) -> Result<ClientFirst<'_>> {
    const WHICH: &str = "client-first-message";
    let bad = |reason| malformed(mechanism, WHICH, reason);
    let refused = |reason| AuthError::SaslRefused {
        mechanism: mechanism.name(),
        reason,
    };
    let text = message_text(mechanism, WHICH, bytes)?;
    let (cbind_flag, rest) = text.split_once(',').ok_or_else(|| bad("no GS2 header"))?;
    match cbind_flag {
        "n" | "y" => {}
        flag if flag.starts_with("p=") => {
            return Err(refused("channel binding is not supported"));
        }
        _ => return Err(bad("the GS2 channel-binding flag must be n, y or p=")),
    }
    let (authzid_field, bare) = rest.split_once(',').ok_or_else(|| bad("no GS2 header"))?;
    let gs2_header = &text[..cbind_flag.len() + authzid_field.len() + 2];
    let authzid = match authzid_field {
        "" => None,
        field => {
            let name = field
                .strip_prefix("a=")
                .ok_or_else(|| bad("the authzid must be a=<name>"))?;
            Some(decode_saslname(name).ok_or_else(|| bad("the authzid is not a valid saslname"))?)
        }
    };
    let mut fields = bare.split(',');
    let first = fields.next().unwrap_or_default();
    if first.starts_with("m=") {
        return Err(refused("mandatory extensions (m=) are not supported"));
    }
    let username = first
        .strip_prefix("n=")
        .ok_or_else(|| bad("expected n=<username>"))?;
    let username =
        decode_saslname(username).ok_or_else(|| bad("the username is not a valid saslname"))?;
    let nonce = fields
        .next()
        .and_then(|f| f.strip_prefix("r="))
        .ok_or_else(|| bad("expected r=<nonce> after the username"))?;
    if !is_valid_nonce(nonce) {
        return Err(bad("the nonce must be printable ASCII without ','"));
    }
    for field in fields {
        let (name, value) =
            attribute(field).ok_or_else(|| bad("an extension is not name=value"))?;
        // Kafka's ScramExtensions: tokenauth=true asks to authenticate with a delegation token.
        if name == "tokenauth" && value.eq_ignore_ascii_case("true") {
            return Err(refused("delegation tokens are not supported"));
        }
        // Other extensions are ignored, as Kafka does.
    }
    if authzid.as_deref().is_some_and(|a| a != username) {
        return Err(refused(
            "Client requested an authorization id that is different from username",
        ));
    }
    Ok(ClientFirst {
        gs2_header,
        bare,
        username,
        nonce,
    })
}

/// The parts of a client-final message the server checks.
struct ClientFinal<'a> {
    /// `client-final-message-without-proof`: the end of the AuthMessage.
    without_proof: &'a str,
    /// The decoded `c=` value.
    channel_binding: Vec<u8>,
    /// The echoed combined nonce.
    nonce: &'a str,
    /// The decoded ClientProof.
    proof: Vec<u8>,
}

/// Parses `channel-binding "," nonce ["," extensions] "," proof`.
fn parse_client_final(mechanism: ScramMechanism, bytes: &[u8]) -> Result<ClientFinal<'_>> {
    const WHICH: &str = "client-final-message";
    let bad = |reason| malformed(mechanism, WHICH, reason);
    let text = message_text(mechanism, WHICH, bytes)?;
    let (without_proof, proof_field) = text
        .rsplit_once(',')
        .ok_or_else(|| bad("expected c=, r= and p="))?;
    let proof = proof_field
        .strip_prefix("p=")
        .ok_or_else(|| bad("the last attribute must be p=<proof>"))?;
    let proof = STANDARD
        .decode(proof.as_bytes())
        .map_err(|_| bad("the proof is not base64"))?;
    let mut fields = without_proof.split(',');
    let channel_binding = fields
        .next()
        .and_then(|f| f.strip_prefix("c="))
        .ok_or_else(|| bad("expected c=<channel binding> first"))?;
    let channel_binding = STANDARD
        .decode(channel_binding.as_bytes())
        .map_err(|_| bad("the channel binding is not base64"))?;
    let nonce = fields
        .next()
        .and_then(|f| f.strip_prefix("r="))
        .ok_or_else(|| bad("expected r=<nonce> after c="))?;
    for field in fields {
        attribute(field).ok_or_else(|| bad("an extension is not name=value"))?;
    }
    Ok(ClientFinal {
        without_proof,
        channel_binding,
        nonce,
        proof,
    })
}

/// The process-wide key mock credentials are derived from, unless a server is given one.
fn process_mock_key() -> [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    *KEY.get_or_init(random_bytes::<32>)
}

/// The credential an unknown user is challenged with, so that the exchange looks like a real
/// one up to the failed proof: a salt stable per user name (derived from `mock_key`, so asking
/// twice gives the same salt, as for a real user), the default iteration count, and keys no
/// password produces.
fn mock_credential(
    mechanism: ScramMechanism,
    mock_key: &[u8; 32],
    username: &str,
) -> ScramCredential {
    let derive = |label: &str| {
        let input = [
            label.as_bytes(),
            b"\0",
            mechanism.name().as_bytes(),
            b"\0",
            username.as_bytes(),
        ]
        .concat();
        mechanism.hmac(mock_key, &input)
    };
    let mut salt = derive("salt");
    salt.truncate(SALT_BYTES);
    ScramCredential {
        salt,
        stored_key: derive("stored key"),
        server_key: derive("server key"),
        iterations: ITERATIONS_DEFAULT,
    }
}

/// What the server remembers between its two steps.
struct Pending {
    /// The authenticated name, if the proof verifies.
    username: String,
    /// The client-first GS2 header, which the client-final's `c=` must encode.
    gs2_header: String,
    /// `client-first-message-bare`.
    client_first_bare: String,
    /// The server-first message as sent.
    server_first: String,
    /// The combined nonce the client must echo.
    nonce: String,
    /// The user's credential, or a mock one for an unknown user.
    credential: ScramCredential,
    /// False when `credential` is a mock: the exchange must fail at the proof.
    known_user: bool,
}

/// Where a server exchange stands.
enum ServerState {
    /// Waiting for the client-first message.
    AwaitingClientFirst,
    /// Sent the server-first message; waiting for the client-final message.
    AwaitingClientFinal(Box<Pending>),
    /// Authenticated; nothing more is expected.
    Complete,
    /// Failed; nothing more is expected.
    Failed,
}

impl ServerState {
    fn name(&self) -> &'static str {
        match self {
            ServerState::AwaitingClientFirst => "awaiting client-first-message",
            ServerState::AwaitingClientFinal(_) => "awaiting client-final-message",
            ServerState::Complete => "complete",
            ServerState::Failed => "failed",
        }
    }
}

/// The server side of one SCRAM exchange (Kafka's `ScramSaslServer`), as a state machine fed
/// the client's two messages.
///
/// An unknown user is not told apart from a wrong password by the flow: the server answers the
/// client-first with a mock credential (see [`ScramServer::with_mock_key`]) and fails at the
/// proof, with the same error and the same work. Proofs are compared in constant time.
pub struct ScramServer<L> {
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    mechanism: ScramMechanism,
    /// Where credentials come from.
    lookup: L,
    /// The key unknown users' mock credentials derive from.
    mock_key: [u8; 32],
    /// A fixed server nonce, for tests and the RFC vectors; `None` draws a random one.
    server_nonce: Option<String>,
    /// Where the exchange stands.
    state: ServerState,
}

impl<L> fmt::Debug for ScramServer<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramServer")
            .field("mechanism", &self.mechanism)
            .field("state", &self.state.name())
            .finish_non_exhaustive()
    }
}

impl<L: CredentialLookup> ScramServer<L> {
    /// A new exchange for `mechanism` with credentials from `lookup`.
    pub fn new(mechanism: ScramMechanism, lookup: L) -> Self {
        ScramServer {
            mechanism,
            lookup,
            mock_key: process_mock_key(),
            server_nonce: None,
            state: ServerState::AwaitingClientFirst,
        }
    }

    /// Derives unknown users' mock salts from `key` instead of a per-process random key. Give
    /// every broker of a cluster the same secret key so that an unknown user gets the same salt
    /// from each of them, as a real user does.
    pub fn with_mock_key(mut self, key: [u8; 32]) -> Self {
        self.mock_key = key;
        self
    }

    /// Uses `nonce` as the server's part of the nonce instead of a random one. For tests and
    /// the RFC vectors only: a predictable nonce allows replay.
    pub fn with_server_nonce(mut self, nonce: impl Into<String>) -> Self {
        self.server_nonce = Some(nonce.into());
        self
    }

    /// The mechanism this exchange runs.
    pub fn scram_mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// True once the client has proven its password.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, ServerState::Complete)
    }

    fn illegal_state(&self) -> AuthError {
        AuthError::IllegalSaslState {
            mechanism: self.mechanism.name(),
            state: self.state.name(),
        }
    }

    /// Consumes the client-first message and returns the server-first message.
    pub fn client_first(&mut self, message: &[u8]) -> Result<Vec<u8>> {
        if !matches!(self.state, ServerState::AwaitingClientFirst) {
            return Err(self.illegal_state());
        }
        match self.answer_client_first(message) {
            Ok(pending) => {
                let server_first = pending.server_first.clone().into_bytes();
                self.state = ServerState::AwaitingClientFinal(pending);
                Ok(server_first)
            }
            Err(e) => {
                self.state = ServerState::Failed;
                Err(e)
            }
        }
    }

    fn answer_client_first(&self, message: &[u8]) -> Result<Box<Pending>> {
        let first = parse_client_first(self.mechanism, message)?;
        let found = self
            .lookup
            .scram_credential(self.mechanism, &first.username);
        let known_user = found.is_some();
        let credential = found
            .unwrap_or_else(|| mock_credential(self.mechanism, &self.mock_key, &first.username));
        if credential.iterations < ITERATIONS_MIN {
            // Kafka refuses such a credential too; the quorum never stores one.
            return Err(AuthError::AuthenticationFailed {
                mechanism: self.mechanism.name(),
                reason: AuthFailure::IterationsTooLow,
            });
        }
        let server_nonce = self.server_nonce.clone().unwrap_or_else(random_nonce);
        debug_assert!(
            is_valid_nonce(&server_nonce),
            "server nonce must be printable without ','"
        );
        let nonce = format!("{}{}", first.nonce, server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&credential.salt),
            credential.iterations
        );
        Ok(Box::new(Pending {
            username: first.username,
            gs2_header: first.gs2_header.to_owned(),
            client_first_bare: first.bare.to_owned(),
            server_first,
            nonce,
            credential,
            known_user,
        }))
    }

    /// Consumes the client-final message; on success returns the server-final message and the
    /// authenticated user name.
    pub fn client_final(&mut self, message: &[u8]) -> Result<(Vec<u8>, String)> {
        let state = std::mem::replace(&mut self.state, ServerState::Failed);
        let ServerState::AwaitingClientFinal(pending) = state else {
            self.state = state;
            return Err(self.illegal_state());
        };
        let server_final = verify_client_final(self.mechanism, &pending, message)?;
        self.state = ServerState::Complete;
        Ok((server_final, pending.username))
    }
}

/// Checks the client-final message against the pending exchange (RFC 5802 §3 and §5.1) and
/// returns the server-final message.
fn verify_client_final(
    mechanism: ScramMechanism,
    pending: &Pending,
    message: &[u8],
) -> Result<Vec<u8>> {
    let fail = |reason| AuthError::AuthenticationFailed {
        mechanism: mechanism.name(),
        reason,
    };
    let last = parse_client_final(mechanism, message)?;
    if last.channel_binding != pending.gs2_header.as_bytes() {
        return Err(fail(AuthFailure::ChannelBindingMismatch));
    }
    // Kafka's ScramSaslServer checks that the nonce *ends with* the combined nonce it sent:
    // librdkafka before 2.1 sends the client nonce twice (client + client + server), and
    // Kafka accepts it. The proof is over the message as sent, so this loses nothing.
    if !last.nonce.ends_with(pending.nonce.as_str()) {
        return Err(fail(AuthFailure::NonceMismatch));
    }
    let auth_message = format!(
        "{},{},{}",
        pending.client_first_bare, pending.server_first, last.without_proof
    );
    let credential = &pending.credential;
    let client_signature = mechanism.hmac(&credential.stored_key, auth_message.as_bytes());
    // A proof of the wrong length is XORed as if zero-padded and so fails the comparison below
    // after the same work as any other wrong proof.
    let client_key: Vec<u8> = client_signature
        .iter()
        .enumerate()
        .map(|(i, s)| s ^ last.proof.get(i).copied().unwrap_or(0))
        .collect();
    let proof_len_ok = subtle::Choice::from(u8::from(last.proof.len() == client_signature.len()));
    let stored_key_ok = mechanism.hash(&client_key).ct_eq(&credential.stored_key);
    let known_user = subtle::Choice::from(u8::from(pending.known_user));
    if !bool::from(stored_key_ok & proof_len_ok & known_user) {
        let reason = if pending.known_user {
            AuthFailure::InvalidProof
        } else {
            AuthFailure::UnknownUser
        };
        return Err(fail(reason));
    }
    let server_signature = mechanism.hmac(&credential.server_key, auth_message.as_bytes());
    Ok(format!("v={}", STANDARD.encode(server_signature)).into_bytes())
}

impl<L: CredentialLookup> SaslServer for ScramServer<L> {
    fn mechanism(&self) -> SaslMechanism {
        self.mechanism.sasl()
    }

    fn step(&mut self, client_message: &[u8]) -> Result<SaslStep> {
        match self.state {
            ServerState::AwaitingClientFirst => {
                self.client_first(client_message).map(SaslStep::Continue)
            }
            ServerState::AwaitingClientFinal(_) => {
                let (response, username) = self.client_final(client_message)?;
                Ok(SaslStep::Complete { response, username })
            }
            ServerState::Complete | ServerState::Failed => Err(self.illegal_state()),
        }
    }
}

/// Where a client exchange stands.
enum ClientState {
    /// Nothing sent yet.
    Initial,
    /// Sent the client-first message.
    SentClientFirst {
        /// `client-first-message-bare`, the start of the AuthMessage.
        client_first_bare: String,
    },
    /// Sent the client-final message; expecting this signature from the server.
    SentClientFinal {
        /// The ServerSignature a server that knows the credential will send.
        server_signature: Vec<u8>,
    },
    /// The server proved itself.
    Complete,
    /// Failed; nothing more is expected.
    Failed,
}

impl ClientState {
    fn name(&self) -> &'static str {
        match self {
            ClientState::Initial => "initial",
            ClientState::SentClientFirst { .. } => "sent client-first-message",
            ClientState::SentClientFinal { .. } => "sent client-final-message",
            ClientState::Complete => "complete",
            ClientState::Failed => "failed",
        }
    }
}

/// The client side of one SCRAM exchange (our client, the CLI, inter-broker authentication):
/// `client_first()`, then `client_final(server_first)`, then `verify_server_final(server_final)`.
/// `Debug` shows neither the password nor the expected signature.
pub struct ScramClient {
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    mechanism: ScramMechanism,
    /// The user to authenticate as.
    username: String,
    /// The user's password.
    password: Password,
    /// The client's part of the nonce.
    client_nonce: String,
    /// Where the exchange stands.
    state: ClientState,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("state", &self.state.name())
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// A new exchange for `username` with a random nonce.
    pub fn new(mechanism: ScramMechanism, username: impl Into<String>, password: Password) -> Self {
        ScramClient::with_nonce(mechanism, username, password, random_nonce())
    }

    /// A new exchange with a fixed client nonce: for tests and the RFC vectors only. The nonce
    /// must be printable ASCII without ','; `client_first` refuses another.
    pub fn with_nonce(
        mechanism: ScramMechanism,
        username: impl Into<String>,
        password: Password,
        client_nonce: impl Into<String>,
    ) -> Self {
        ScramClient {
            mechanism,
            username: username.into(),
            password,
            client_nonce: client_nonce.into(),
            state: ClientState::Initial,
        }
    }

    /// True once the server has proven it knows the credential.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, ClientState::Complete)
    }

    fn illegal_state(&self) -> AuthError {
        AuthError::IllegalSaslState {
            mechanism: self.mechanism.name(),
            state: self.state.name(),
        }
    }

    /// The client-first message, `n,,n=<user>,r=<nonce>`.
    pub fn client_first(&mut self) -> Result<Vec<u8>> {
        if !matches!(self.state, ClientState::Initial) {
            return Err(self.illegal_state());
        }
        if !is_valid_nonce(&self.client_nonce) || self.username.is_empty() {
            self.state = ClientState::Failed;
            return Err(malformed(
                self.mechanism,
                "client-first-message",
                "the username must not be empty and the nonce must be printable ASCII without ','",
            ));
        }
        let client_first_bare = format!(
            "n={},r={}",
            encode_saslname(&self.username),
            self.client_nonce
        );
        let message = format!("n,,{client_first_bare}").into_bytes();
        self.state = ClientState::SentClientFirst { client_first_bare };
        Ok(message)
    }

    /// Consumes the server-first message and returns the client-final message with the proof.
    /// Refuses a server nonce that does not extend ours and iterations outside Kafka's range.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>> {
        let state = std::mem::replace(&mut self.state, ClientState::Failed);
        let ClientState::SentClientFirst { client_first_bare } = state else {
            self.state = state;
            return Err(self.illegal_state());
        };
        let (message, server_signature) = self.prove(&client_first_bare, server_first)?;
        self.state = ClientState::SentClientFinal { server_signature };
        Ok(message)
    }

    fn prove(
        &self,
        client_first_bare: &str,
        server_first_bytes: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        const WHICH: &str = "server-first-message";
        let mechanism = self.mechanism;
        let bad = |reason| malformed(mechanism, WHICH, reason);
        let server_first = message_text(mechanism, WHICH, server_first_bytes)?;
        let mut fields = server_first.split(',');
        let first = fields.next().unwrap_or_default();
        if first.starts_with("m=") {
            return Err(bad("mandatory extensions (m=) are not supported"));
        }
        let nonce = first
            .strip_prefix("r=")
            .ok_or_else(|| bad("expected r=<nonce> first"))?;
        if !is_valid_nonce(nonce)
            || nonce.len() <= self.client_nonce.len()
            || !nonce.starts_with(&self.client_nonce)
        {
            return Err(bad("the nonce does not extend the client's nonce"));
        }
        let salt = fields
            .next()
            .and_then(|f| f.strip_prefix("s="))
            .ok_or_else(|| bad("expected s=<salt> after the nonce"))?;
        let salt = STANDARD
            .decode(salt.as_bytes())
            .map_err(|_| bad("the salt is not base64"))?;
        if salt.is_empty() {
            return Err(bad("the salt is empty"));
        }
        let iterations: u32 = fields
            .next()
            .and_then(|f| f.strip_prefix("i="))
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| bad("expected i=<iteration count> after the salt"))?;
        if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) {
            return Err(bad("the iteration count is outside 4096..=16384"));
        }
        let salted = salted_password(mechanism, &self.password, &salt, iterations)?;
        let salted = salted.expose_secret();
        let client_key = mechanism.hmac(salted, b"Client Key");
        let stored_key = mechanism.hash(&client_key);
        let server_key = mechanism.hmac(salted, b"Server Key");
        // c= is the base64 of the GS2 header "n,,".
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = mechanism.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_signature = mechanism.hmac(&server_key, auth_message.as_bytes());
        let message = format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes();
        Ok((message, server_signature))
    }

    /// Checks the server-final message: `v=<ServerSignature>` must match (in constant time),
    /// `e=<error>` is the server's refusal.
    pub fn verify_server_final(&mut self, server_final: &[u8]) -> Result<()> {
        const WHICH: &str = "server-final-message";
        let state = std::mem::replace(&mut self.state, ClientState::Failed);
        let ClientState::SentClientFinal { server_signature } = state else {
            self.state = state;
            return Err(self.illegal_state());
        };
        let mechanism = self.mechanism;
        let text = message_text(mechanism, WHICH, server_final)?;
        let first = text.split(',').next().unwrap_or_default();
        if let Some(error) = first.strip_prefix("e=") {
            return Err(AuthError::ServerRefused {
                mechanism: mechanism.name(),
                error: error.to_owned(),
            });
        }
        let signature = first
            .strip_prefix("v=")
            .ok_or_else(|| malformed(mechanism, WHICH, "expected v=<signature> or e=<error>"))?;
        let signature = STANDARD
            .decode(signature.as_bytes())
            .map_err(|_| malformed(mechanism, WHICH, "the signature is not base64"))?;
        if !bool::from(signature.ct_eq(&server_signature)) {
            return Err(AuthError::ServerSignatureMismatch {
                mechanism: mechanism.name(),
            });
        }
        self.state = ClientState::Complete;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
