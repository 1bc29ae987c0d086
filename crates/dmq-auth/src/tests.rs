//! Crate-wide checks: no secret-holding type prints its secret with `{:?}`, and no error message
//! carries one (SPEC §11: "No secret ever appears in a log line, a metric or an error message").

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::plain::{PlainMessage, PlainServer, PlainUsers};
use crate::scram::{salted_password, ScramClient, ScramCredential, ScramMechanism, ScramServer};
use crate::{Password, SaltedPassword};

const PASSWORD: &str = "hunter2-very-secret";

/// Every rendering of a secret that a leak could take: the clear text, its bytes in Debug list
/// form, hex and base64.
fn renderings(secret: &[u8]) -> Vec<String> {
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = vec![
        format!("{secret:?}"),
        hex,
        STANDARD.encode(secret),
        // Any 8 consecutive bytes in list form catch a partial dump too.
        format!("{:?}", &secret[..secret.len().min(8)])
            .trim_matches(['[', ']'])
            .to_owned(),
    ];
    if let Ok(text) = std::str::from_utf8(secret) {
        out.push(text.to_owned());
    }
    out
}

fn assert_hidden(what: &str, debug: &str, secret: &[u8]) {
    for rendering in renderings(secret) {
        assert!(
            !debug.contains(&rendering),
            "{what} leaks {rendering:?} in {debug}"
        );
    }
}

#[test]
fn debug_never_prints_secrets() {
    let m = ScramMechanism::Sha512;
    let password = Password::new(PASSWORD);
    let salt = b"some-salt-bytes";
    let salted = salted_password(m, &password, salt, 4096).expect("salted");
    let credential =
        ScramCredential::from_salted_password(m, salt, &salted, 4096).expect("credential");
    let secrets: Vec<&[u8]> = vec![
        PASSWORD.as_bytes(),
        salted.expose_secret(),
        &credential.stored_key,
        &credential.server_key,
    ];

    let users = PlainUsers::new([("alice", password.clone())]);
    let plain_message = crate::plain::client_message("alice", &password);
    let parsed = PlainMessage::parse(&plain_message).expect("parse");

    let mut client = ScramClient::new(m, "alice", password.clone());
    let first = client.client_first().expect("first");
    let stored = credential.clone();
    let mut server = ScramServer::new(m, move |_: ScramMechanism, _: &str| Some(stored.clone()));
    let server_first = server.client_first(&first).expect("server-first");
    client.client_final(&server_first).expect("client-final");

    let debugs: Vec<(&str, String)> = vec![
        ("Password", format!("{password:?}")),
        ("SaltedPassword", format!("{salted:?}")),
        ("SaltedPassword (alternate)", format!("{salted:#?}")),
        ("ScramCredential", format!("{credential:?}")),
        ("ScramCredential (alternate)", format!("{credential:#?}")),
        ("PlainUsers", format!("{users:?}")),
        ("PlainMessage", format!("{parsed:?}")),
        (
            "PlainServer",
            format!("{:?}", PlainServer::new(Arc::new(users.clone()))),
        ),
        ("ScramClient mid-exchange", format!("{client:?}")),
        ("ScramServer mid-exchange", format!("{server:?}")),
    ];
    for (what, debug) in &debugs {
        for secret in &secrets {
            assert_hidden(what, debug, secret);
        }
    }
    // The salt is not a secret in SCRAM, but the credential hides it anyway.
    assert_hidden("ScramCredential", &debugs[3].1, salt);
    // What is not secret still shows, so the redaction is not hiding everything.
    assert!(debugs[3].1.contains("4096"));
    assert!(debugs[5].1.contains("alice"));
    assert!(debugs[6].1.contains("alice"));
}

#[test]
fn errors_never_carry_secrets() {
    let users = PlainUsers::new([("alice", Password::new(PASSWORD))]);
    let wrong = format!("\0alice\0{PASSWORD}x");
    let authzid = format!("bob\0alice\0{PASSWORD}");
    let no_user = format!("\0\0{PASSWORD}");
    let bad_utf8 = [b"\0alice\0".as_slice(), PASSWORD.as_bytes(), &[0xff]].concat();
    for message in [
        wrong.as_bytes(),
        authzid.as_bytes(),
        no_user.as_bytes(),
        &bad_utf8,
    ] {
        let err = crate::plain::authenticate(message, &users).expect_err("fails");
        assert_hidden(
            "PLAIN error",
            &format!("{err} {err:?}"),
            PASSWORD.as_bytes(),
        );
    }
    let salted = SaltedPassword::new(vec![0xab; 10]);
    let err = ScramCredential::from_salted_password(ScramMechanism::Sha256, b"s", &salted, 4096)
        .expect_err("short");
    assert_hidden(
        "credential error",
        &format!("{err} {err:?}"),
        salted.expose_secret(),
    );
}
