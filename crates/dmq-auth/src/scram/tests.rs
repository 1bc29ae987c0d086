//! SCRAM tests. References: RFC 5802 §3, §5, §7; RFC 7677 §3 (the SCRAM-SHA-256 example);
//! KIP-554 (credentials from salt + SaltedPassword).

use std::collections::HashMap;

use super::*;
use crate::error_codes::{ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED};

/// A credential store for tests.
fn store(
    entries: &[(ScramMechanism, &str, &str)],
) -> impl Fn(ScramMechanism, &str) -> Option<ScramCredential> {
    let map: HashMap<(ScramMechanism, String), ScramCredential> = entries
        .iter()
        .map(|&(mechanism, user, password)| {
            let salt = format!("salt-of-{user}");
            let credential = ScramCredential::from_password(
                mechanism,
                &Password::new(password),
                salt.as_bytes(),
                4096,
            )
            .expect("valid credential");
            ((mechanism, user.to_owned()), credential)
        })
        .collect();
    move |mechanism, user| map.get(&(mechanism, user.to_owned())).cloned()
}

const MOCK_KEY: [u8; 32] = [7; 32];

/// Runs a whole exchange between our client and our server.
fn exchange<L: CredentialLookup>(
    mut client: ScramClient,
    mut server: ScramServer<L>,
) -> (Result<String>, ScramClient, ScramServer<L>) {
    let result = (|| {
        let first = client.client_first()?;
        let server_first = server.client_first(&first)?;
        let last = client.client_final(&server_first)?;
        let (server_final, username) = server.client_final(&last)?;
        client.verify_server_final(&server_final)?;
        Ok(username)
    })();
    (result, client, server)
}

// ---- RFC 7677 §3: the SCRAM-SHA-256 example ----

const RFC7677_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const RFC7677_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC7677_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC7677_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC7677_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC7677_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc7677_credential() -> ScramCredential {
    let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("base64");
    ScramCredential::from_password(
        ScramMechanism::Sha256,
        &Password::new("pencil"),
        &salt,
        4096,
    )
    .expect("valid")
}

#[test]
fn rfc7677_client_sends_the_rfc_messages() {
    let mut client = ScramClient::with_nonce(
        ScramMechanism::Sha256,
        "user",
        Password::new("pencil"),
        RFC7677_CLIENT_NONCE,
    );
    assert_eq!(
        client.client_first().expect("first"),
        RFC7677_CLIENT_FIRST.as_bytes()
    );
    assert_eq!(
        client
            .client_final(RFC7677_SERVER_FIRST.as_bytes())
            .expect("final"),
        RFC7677_CLIENT_FINAL.as_bytes()
    );
    client
        .verify_server_final(RFC7677_SERVER_FINAL.as_bytes())
        .expect("server signature");
    assert!(client.is_complete());
}

#[test]
fn rfc7677_server_sends_the_rfc_messages() {
    let credential = rfc7677_credential();
    let lookup = move |_: ScramMechanism, user: &str| (user == "user").then(|| credential.clone());
    let mut server =
        ScramServer::new(ScramMechanism::Sha256, lookup).with_server_nonce(RFC7677_SERVER_NONCE);
    assert_eq!(
        server
            .client_first(RFC7677_CLIENT_FIRST.as_bytes())
            .expect("first"),
        RFC7677_SERVER_FIRST.as_bytes()
    );
    let (server_final, username) = server
        .client_final(RFC7677_CLIENT_FINAL.as_bytes())
        .expect("proof verifies");
    assert_eq!(server_final, RFC7677_SERVER_FINAL.as_bytes());
    assert_eq!(username, "user");
    assert!(server.is_complete());
}

#[test]
fn rfc7677_credential_from_salted_password_matches_from_password() {
    // KIP-554: the client sends salt + SaltedPassword; the server derives the same keys.
    let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("base64");
    let salted = salted_password(
        ScramMechanism::Sha256,
        &Password::new("pencil"),
        &salt,
        4096,
    )
    .expect("salted");
    let from_salted =
        ScramCredential::from_salted_password(ScramMechanism::Sha256, &salt, &salted, 4096)
            .expect("valid");
    assert_eq!(from_salted, rfc7677_credential());
}

// ---- round trips ----

#[test]
fn sha512_round_trip_authenticates() {
    let lookup = store(&[(ScramMechanism::Sha512, "alice", "alice-secret")]);
    let client = ScramClient::new(
        ScramMechanism::Sha512,
        "alice",
        Password::new("alice-secret"),
    );
    let (result, client, server) =
        exchange(client, ScramServer::new(ScramMechanism::Sha512, lookup));
    assert_eq!(result, Ok("alice".to_owned()));
    assert!(client.is_complete() && server.is_complete());
}

#[test]
fn sha256_round_trip_authenticates() {
    let lookup = store(&[(ScramMechanism::Sha256, "alice", "alice-secret")]);
    let client = ScramClient::new(
        ScramMechanism::Sha256,
        "alice",
        Password::new("alice-secret"),
    );
    let (result, _, _) = exchange(client, ScramServer::new(ScramMechanism::Sha256, lookup));
    assert_eq!(result, Ok("alice".to_owned()));
}

#[test]
fn sha512_keys_have_the_hash_length() {
    let c =
        ScramCredential::from_password(ScramMechanism::Sha512, &Password::new("p"), b"salt", 4096)
            .expect("valid");
    assert_eq!((c.stored_key.len(), c.server_key.len()), (64, 64));
    let c = ScramCredential::generate(ScramMechanism::Sha256, &Password::new("p"), 8192)
        .expect("valid");
    assert_eq!(
        (c.salt.len(), c.stored_key.len(), c.iterations),
        (SALT_BYTES, 32, 8192)
    );
}

#[test]
fn usernames_with_comma_and_equals_are_escaped_and_round_trip() {
    let lookup = store(&[(ScramMechanism::Sha256, "a,b=c", "pw-pw-pw")]);
    let mut client = ScramClient::with_nonce(
        ScramMechanism::Sha256,
        "a,b=c",
        Password::new("pw-pw-pw"),
        "abc",
    );
    let first = client.client_first().expect("first");
    assert_eq!(first, b"n,,n=a=2Cb=3Dc,r=abc");
    let mut server = ScramServer::new(ScramMechanism::Sha256, lookup);
    let server_first = server.client_first(&first).expect("server-first");
    let last = client.client_final(&server_first).expect("final");
    let (_, username) = server.client_final(&last).expect("verifies");
    assert_eq!(username, "a,b=c");
}

// ---- failures ----

#[test]
fn wrong_password_fails_at_the_proof() {
    let lookup = store(&[(ScramMechanism::Sha256, "alice", "alice-secret")]);
    let client = ScramClient::new(
        ScramMechanism::Sha256,
        "alice",
        Password::new("wrong-password"),
    );
    let (result, _, server) = exchange(client, ScramServer::new(ScramMechanism::Sha256, lookup));
    let err = result.expect_err("wrong password");
    assert_eq!(
        err,
        AuthError::AuthenticationFailed {
            mechanism: "SCRAM-SHA-256",
            reason: AuthFailure::InvalidProof
        }
    );
    assert_eq!(err.kafka_error_code(), SASL_AUTHENTICATION_FAILED);
    assert!(!err.to_string().contains("wrong-password"));
    assert!(!server.is_complete());
}

#[test]
fn unknown_user_gets_a_mock_challenge_and_fails_at_the_proof() {
    let lookup = store(&[(ScramMechanism::Sha256, "alice", "alice-secret")]);
    let mut server = ScramServer::new(ScramMechanism::Sha256, &lookup).with_mock_key(MOCK_KEY);
    let server_first = server
        .client_first(b"n,,n=mallory,r=abc")
        .expect("answered like a real user");
    let text = String::from_utf8(server_first.clone()).expect("utf8");
    assert!(
        text.starts_with("r=abc") && text.contains(",s=") && text.ends_with(",i=4096"),
        "{text}"
    );

    let mut client = ScramClient::with_nonce(
        ScramMechanism::Sha256,
        "mallory",
        Password::new("guess"),
        "abc",
    );
    client.client_first().expect("first");
    let last = client.client_final(&server_first).expect("final");
    let err = server.client_final(&last).expect_err("unknown user");
    // The same message as a wrong password; only the log-only reason differs.
    let wrong = AuthError::AuthenticationFailed {
        mechanism: "SCRAM-SHA-256",
        reason: AuthFailure::InvalidProof,
    };
    assert_eq!(err.to_string(), wrong.to_string());
    assert!(matches!(
        err,
        AuthError::AuthenticationFailed {
            reason: AuthFailure::UnknownUser,
            ..
        }
    ));
}

#[test]
fn unknown_user_salt_is_stable_per_name_and_key() {
    let nobody = |_: ScramMechanism, _: &str| None;
    let salt_of = |user: &str, key: [u8; 32]| {
        let mut server = ScramServer::new(ScramMechanism::Sha256, nobody)
            .with_mock_key(key)
            .with_server_nonce("s");
        let first = format!("n,,n={user},r=c");
        String::from_utf8(server.client_first(first.as_bytes()).expect("first")).expect("utf8")
    };
    assert_eq!(salt_of("mallory", MOCK_KEY), salt_of("mallory", MOCK_KEY));
    assert_ne!(salt_of("mallory", MOCK_KEY), salt_of("eve", MOCK_KEY));
    assert_ne!(salt_of("mallory", MOCK_KEY), salt_of("mallory", [8; 32]));
}

#[test]
fn nonce_not_echoed_fails() {
    let lookup = store(&[(ScramMechanism::Sha256, "alice", "alice-secret")]);
    let mut server = ScramServer::new(ScramMechanism::Sha256, lookup).with_server_nonce("SERVER");
    let mut client = ScramClient::with_nonce(
        ScramMechanism::Sha256,
        "alice",
        Password::new("alice-secret"),
        "c1",
    );
    let server_first = server
        .client_first(&client.client_first().expect("first"))
        .expect("server-first");
    let last = client.client_final(&server_first).expect("final");
    let tampered = String::from_utf8(last)
        .expect("utf8")
        .replace("r=c1SERVER", "r=c1SERVEX");
    let err = server.client_final(tampered.as_bytes()).expect_err("nonce");
    assert!(matches!(
        err,
        AuthError::AuthenticationFailed {
            reason: AuthFailure::NonceMismatch,
            ..
        }
    ));
}

#[test]
fn channel_binding_must_encode_the_gs2_header() {
    let lookup = store(&[(ScramMechanism::Sha256, "alice", "alice-secret")]);
    let mut server = ScramServer::new(ScramMechanism::Sha256, lookup).with_server_nonce("S");
    let mut client = ScramClient::with_nonce(
        ScramMechanism::Sha256,
        "alice",
        Password::new("alice-secret"),
        "c",
    );
    let server_first = server
        .client_first(&client.client_first().expect("first"))
        .expect("server-first");
    let last = client.client_final(&server_first).expect("final");
    // base64("y,,") instead of base64("n,,").
    let tampered = String::from_utf8(last)
        .expect("utf8")
        .replace("c=biws", "c=eSws");
    let err = server
        .client_final(tampered.as_bytes())
        .expect_err("channel binding");
    assert!(matches!(
        err,
        AuthError::AuthenticationFailed {
            reason: AuthFailure::ChannelBindingMismatch,
            ..
        }
    ));
}

#[test]
fn y_flag_is_accepted_with_its_own_channel_binding() {
    // RFC 5802 §6: "y" means the client could bind but thinks the server cannot; a server
    // without channel binding accepts it, and c= must then be base64("y,,").
    let credential = rfc7677_credential();
    let lookup = move |_: ScramMechanism, _: &str| Some(credential.clone());
    let mut server = ScramServer::new(ScramMechanism::Sha256, lookup).with_server_nonce("S");
    let bare = "n=user,r=c";
    let server_first = server
        .client_first(format!("y,,{bare}").as_bytes())
        .expect("first");
    let server_first = String::from_utf8(server_first).expect("utf8");
    let without_proof = "c=eSws,r=cS";
    let auth_message = format!("{bare},{server_first},{without_proof}");
    let m = ScramMechanism::Sha256;
    let salted = salted_password(
        m,
        &Password::new("pencil"),
        &rfc7677_credential().salt,
        4096,
    )
    .expect("salted");
    let client_key = m.hmac(salted.expose_secret(), b"Client Key");
    let signature = m.hmac(&m.hash(&client_key), auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    let last = format!("{without_proof},p={}", STANDARD.encode(proof));
    assert_eq!(
        server.client_final(last.as_bytes()).map(|(_, u)| u),
        Ok("user".to_owned())
    );
}

#[test]
fn client_first_refusals() {
    let cases: &[(&str, &str)] = &[
        (
            "p=tls-unique,,n=user,r=abc",
            "channel binding is not supported",
        ),
        (
            "n,a=admin,n=user,r=abc",
            "authorization id that is different",
        ),
        ("n,,m=ext,n=user,r=abc", "mandatory extensions"),
        ("n,,n=user,r=abc,tokenauth=true", "delegation tokens"),
        ("x,,n=user,r=abc", "channel-binding flag"),
        ("n,,n=user", "expected r=<nonce>"),
        ("n,,r=abc", "expected n=<username>"),
        ("n,,n=,r=abc", "not a valid saslname"),
        ("n,,n=us=er,r=abc", "not a valid saslname"),
        ("n,,n=user,r=", "nonce must be printable"),
        ("n,,n=user,r=a b", "nonce must be printable"),
        ("n,,n=user,r=abc,1x=y", "extension"),
        ("n,admin,n=user,r=abc", "authzid must be a="),
        ("nothing", "no GS2 header"),
        ("", "no GS2 header"),
    ];
    for (message, expected) in cases {
        let credential = rfc7677_credential();
        let lookup = move |_: ScramMechanism, _: &str| Some(credential.clone());
        let mut server = ScramServer::new(ScramMechanism::Sha256, lookup);
        let err = server.client_first(message.as_bytes()).expect_err(message);
        assert!(err.to_string().contains(expected), "{message}: {err}");
        assert_eq!(
            err.kafka_error_code(),
            SASL_AUTHENTICATION_FAILED,
            "{message}"
        );
        assert!(
            matches!(
                server.step(b"again"),
                Err(AuthError::IllegalSaslState { .. })
            ),
            "{message}"
        );
    }
}

#[test]
fn client_first_accepts_matching_authzid_and_ignores_other_extensions() {
    let credential = rfc7677_credential();
    let lookup = move |_: ScramMechanism, _: &str| Some(credential.clone());
    for message in [
        "n,a=user,n=user,r=abc",
        "n,,n=user,r=abc,foo=bar,tokenauth=false",
    ] {
        let mut server = ScramServer::new(ScramMechanism::Sha256, lookup.clone());
        server.client_first(message.as_bytes()).expect(message);
    }
}

#[test]
fn client_final_malformed_messages_are_refused_without_echo() {
    let cases: &[(&str, &str)] = &[
        ("c=biws,r=abcS", "p=<proof>"),
        ("c=biws,r=abcS,p=!!!", "proof is not base64"),
        ("r=abcS,c=biws,p=AAAA", "expected c="),
        ("c=biws,p=AAAA", "expected r="),
        ("c=%%%,r=abcS,p=AAAA", "channel binding is not base64"),
    ];
    for (message, expected) in cases {
        let credential = rfc7677_credential();
        let lookup = move |_: ScramMechanism, _: &str| Some(credential.clone());
        let mut server = ScramServer::new(ScramMechanism::Sha256, lookup).with_server_nonce("S");
        server.client_first(b"n,,n=user,r=abc").expect("first");
        let err = server.client_final(message.as_bytes()).expect_err(message);
        assert!(err.to_string().contains(expected), "{message}: {err}");
        assert!(!err.to_string().contains("AAAA"), "{err}");
    }
}

#[test]
fn proof_of_the_wrong_length_fails_as_a_wrong_proof() {
    let credential = rfc7677_credential();
    let lookup = move |_: ScramMechanism, _: &str| Some(credential.clone());
    let mut server = ScramServer::new(ScramMechanism::Sha256, lookup).with_server_nonce("S");
    server.client_first(b"n,,n=user,r=abc").expect("first");
    let err = server
        .client_final(b"c=biws,r=abcS,p=AAAA")
        .expect_err("short proof");
    assert!(matches!(
        err,
        AuthError::AuthenticationFailed {
            reason: AuthFailure::InvalidProof,
            ..
        }
    ));
}

#[test]
fn stored_credential_with_too_few_iterations_is_refused() {
    let mut weak = rfc7677_credential();
    weak.iterations = 1000;
    let lookup = move |_: ScramMechanism, _: &str| Some(weak.clone());
    let mut server = ScramServer::new(ScramMechanism::Sha256, lookup);
    let err = server.client_first(b"n,,n=user,r=abc").expect_err("weak");
    assert!(matches!(
        err,
        AuthError::AuthenticationFailed {
            reason: AuthFailure::IterationsTooLow,
            ..
        }
    ));
}

#[test]
fn messages_out_of_order_are_an_illegal_state() {
    let credential = rfc7677_credential();
    let lookup = move |_: ScramMechanism, _: &str| Some(credential.clone());
    let mut server =
        ScramServer::new(ScramMechanism::Sha256, lookup).with_server_nonce(RFC7677_SERVER_NONCE);
    let err = server
        .client_final(RFC7677_CLIENT_FINAL.as_bytes())
        .expect_err("too early");
    assert_eq!(err.kafka_error_code(), ILLEGAL_SASL_STATE);
    // The early message did not spoil the exchange: it still runs in order.
    assert!(matches!(
        server.step(RFC7677_CLIENT_FIRST.as_bytes()),
        Ok(SaslStep::Continue(_))
    ));
    assert!(matches!(
        server.step(RFC7677_CLIENT_FINAL.as_bytes()),
        Ok(SaslStep::Complete { .. })
    ));
    let err = server
        .step(RFC7677_CLIENT_FINAL.as_bytes())
        .expect_err("after completion");
    assert_eq!(err.kafka_error_code(), ILLEGAL_SASL_STATE);

    let mut client = ScramClient::new(ScramMechanism::Sha256, "user", Password::new("pencil"));
    assert!(matches!(
        client.client_final(b"r=x,s=eA==,i=4096"),
        Err(AuthError::IllegalSaslState { .. })
    ));
    assert!(matches!(
        client.verify_server_final(b"v=AAAA"),
        Err(AuthError::IllegalSaslState { .. })
    ));
}

#[test]
fn failed_exchange_refuses_further_messages() {
    let lookup = store(&[(ScramMechanism::Sha256, "alice", "alice-secret")]);
    let client = ScramClient::new(ScramMechanism::Sha256, "alice", Password::new("nope"));
    let (result, _, mut server) =
        exchange(client, ScramServer::new(ScramMechanism::Sha256, lookup));
    assert!(result.is_err());
    assert!(matches!(
        server.step(b"n,,n=alice,r=x"),
        Err(AuthError::IllegalSaslState { .. })
    ));
}

#[test]
fn step_drives_the_exchange_as_a_sasl_server() {
    let credential = rfc7677_credential();
    let lookup = move |_: ScramMechanism, _: &str| Some(credential.clone());
    let mut server =
        ScramServer::new(ScramMechanism::Sha256, lookup).with_server_nonce(RFC7677_SERVER_NONCE);
    assert_eq!(SaslServer::mechanism(&server), SaslMechanism::ScramSha256);
    assert_eq!(
        server.step(RFC7677_CLIENT_FIRST.as_bytes()),
        Ok(SaslStep::Continue(RFC7677_SERVER_FIRST.as_bytes().to_vec()))
    );
    assert_eq!(
        server.step(RFC7677_CLIENT_FINAL.as_bytes()),
        Ok(SaslStep::Complete {
            response: RFC7677_SERVER_FINAL.as_bytes().to_vec(),
            username: "user".to_owned()
        })
    );
}

// ---- the client's checks of the server ----

fn client_after_first(nonce: &str) -> ScramClient {
    let mut client = ScramClient::with_nonce(
        ScramMechanism::Sha256,
        "user",
        Password::new("pencil"),
        nonce,
    );
    client.client_first().expect("first");
    client
}

#[test]
fn client_refuses_a_bad_server_signature() {
    let mut client = client_after_first(RFC7677_CLIENT_NONCE);
    client
        .client_final(RFC7677_SERVER_FIRST.as_bytes())
        .expect("final");
    let err = client
        .verify_server_final(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .expect_err("forged");
    assert_eq!(
        err,
        AuthError::ServerSignatureMismatch {
            mechanism: "SCRAM-SHA-256"
        }
    );
    assert!(!client.is_complete());
}

#[test]
fn client_reports_a_server_error() {
    let mut client = client_after_first(RFC7677_CLIENT_NONCE);
    client
        .client_final(RFC7677_SERVER_FIRST.as_bytes())
        .expect("final");
    let err = client
        .verify_server_final(b"e=invalid-proof")
        .expect_err("refused");
    assert_eq!(
        err,
        AuthError::ServerRefused {
            mechanism: "SCRAM-SHA-256",
            error: "invalid-proof".to_owned()
        }
    );
}

#[test]
fn client_refuses_a_bad_server_first() {
    let cases: &[(&str, &str)] = &[
        (
            "r=otherNonce,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "does not extend",
        ),
        (
            "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "does not extend",
        ),
        (
            "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4095",
            "outside 4096..=16384",
        ),
        (
            "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1000000",
            "outside 4096..=16384",
        ),
        (
            "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=x",
            "iteration count",
        ),
        ("r=rOprNGfwEbeRWgbNEkqOx,s=,i=4096", "salt is empty"),
        ("r=rOprNGfwEbeRWgbNEkqOx,s=***,i=4096", "not base64"),
        (
            "m=x,r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "mandatory",
        ),
    ];
    for (message, expected) in cases {
        let mut client = client_after_first(RFC7677_CLIENT_NONCE);
        let err = client.client_final(message.as_bytes()).expect_err(message);
        assert!(err.to_string().contains(expected), "{message}: {err}");
    }
}

#[test]
fn client_refuses_an_invalid_own_nonce_or_empty_user() {
    let mut client =
        ScramClient::with_nonce(ScramMechanism::Sha256, "user", Password::new("p"), "a,b");
    assert!(client.client_first().is_err());
    let mut client = ScramClient::with_nonce(ScramMechanism::Sha256, "", Password::new("p"), "abc");
    assert!(client.client_first().is_err());
}

// ---- credentials ----

#[test]
fn iterations_must_be_within_kafkas_range() {
    let m = ScramMechanism::Sha512;
    let p = Password::new("p");
    for (iterations, ok) in [
        (4095, false),
        (4096, true),
        (16384, true),
        (16385, false),
        (0, false),
    ] {
        let result = ScramCredential::from_password(m, &p, b"salt", iterations);
        assert_eq!(result.is_ok(), ok, "{iterations}");
        if let Err(err) = result {
            assert_eq!(
                err.kafka_error_code(),
                crate::error_codes::UNACCEPTABLE_CREDENTIAL
            );
            assert!(err.to_string().contains("iterations"), "{err}");
        }
    }
}

#[test]
fn salted_password_must_have_the_hash_length_and_salt_must_not_be_empty() {
    let m = ScramMechanism::Sha512;
    let short = SaltedPassword::new(vec![1; 32]);
    let err = ScramCredential::from_salted_password(m, b"salt", &short, 4096).expect_err("short");
    assert!(err.to_string().contains("must be 64 bytes"), "{err}");
    let ok = SaltedPassword::new(vec![1; 64]);
    assert!(ScramCredential::from_salted_password(m, b"", &ok, 4096).is_err());
    assert!(ScramCredential::from_salted_password(m, b"s", &ok, 4096).is_ok());
}

#[test]
fn credential_serde_is_base64() {
    let c = rfc7677_credential();
    let json = serde_json::to_value(&c).expect("serialize");
    assert_eq!(json["salt"], "W22ZaJ0SNY7soEsUEjb6gQ==");
    assert_eq!(json["iterations"], 4096);
    assert!(json["storedKey"].is_string() && json["serverKey"].is_string());
    let back: ScramCredential = serde_json::from_value(json).expect("deserialize");
    assert_eq!(back, c);
    let bad = r#"{"salt":"***","storedKey":"","serverKey":"","iterations":4096}"#;
    assert!(serde_json::from_str::<ScramCredential>(bad).is_err());
}

#[test]
fn mechanism_names_and_codes_are_kafkas() {
    assert_eq!(ScramMechanism::from_code(1), Ok(ScramMechanism::Sha256));
    assert_eq!(ScramMechanism::from_code(2), Ok(ScramMechanism::Sha512));
    assert!(ScramMechanism::from_code(0).is_err());
    assert_eq!(
        ScramMechanism::from_name("SCRAM-SHA-512"),
        Ok(ScramMechanism::Sha512)
    );
    assert!(ScramMechanism::from_name("SCRAM-SHA-1").is_err());
    assert_eq!(ScramMechanism::Sha256.code(), 1);
    assert_eq!(
        serde_json::to_string(&ScramMechanism::Sha512).expect("serialize"),
        "\"SCRAM-SHA-512\""
    );
}
