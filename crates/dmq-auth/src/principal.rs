//! Kafka principals: `principalType:principalName`, e.g. `User:alice`.
//!
//! Kafka's `DefaultKafkaPrincipalBuilder` gives every connection one principal:
//!
//! | listener                 | principal                                               |
//! | ------------------------ | ------------------------------------------------------- |
//! | PLAINTEXT                | `User:ANONYMOUS`                                        |
//! | SSL, no client cert      | `User:ANONYMOUS`                                        |
//! | SSL, client cert         | `User:` + the subject DN in RFC 2253 form (the default `ssl.principal.mapping.rules`) |
//! | SASL_* (PLAIN, SCRAM)    | `User:` + the authenticated username                    |
//!
//! ACLs and `super.users` compare principals as the exact string `Type:name`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{AuthError, Result};

/// The principal type of every principal Kafka's default builder makes.
pub const USER_TYPE: &str = "User";

/// The principal of an unauthenticated connection (Kafka's `KafkaPrincipal.ANONYMOUS`).
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// The ACL principal that matches every principal (Kafka's `WILDCARD_KAFKA_PRINCIPAL`).
pub const WILDCARD_PRINCIPAL: &str = "User:*";

/// A Kafka principal, `principal_type:name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KafkaPrincipal {
    /// `User` for everything Kafka's default principal builder makes.
    principal_type: String,
    /// The user name, or the certificate's DN; may contain ':' (only the first ':' separates).
    name: String,
}

impl KafkaPrincipal {
    /// `User:<name>`: the principal of a SASL-authenticated user.
    pub fn user(name: impl Into<String>) -> Self {
        KafkaPrincipal {
            principal_type: USER_TYPE.to_owned(),
            name: name.into(),
        }
    }

    /// `User:ANONYMOUS`: PLAINTEXT connections and SSL connections without a client certificate.
    pub fn anonymous() -> Self {
        KafkaPrincipal::user("ANONYMOUS")
    }

    /// The principal of an SSL connection: `User:` + the client certificate's subject DN, or
    /// `User:ANONYMOUS` when the client sent no certificate (Kafka's default builder with the
    /// DEFAULT `ssl.principal.mapping.rules`).
    ///
    /// `subject_dn_rfc2253` must be in the form Java's `X500Principal.getName()` gives, which is
    /// what Kafka ACLs are written against: RDNs most-specific first, `,` without spaces, e.g.
    /// `CN=alice,OU=eng,O=acme`. [`format_rfc2253`] builds it from a certificate's RDNs.
    pub fn from_tls_subject(subject_dn_rfc2253: Option<&str>) -> Self {
        match subject_dn_rfc2253 {
            Some(dn) => KafkaPrincipal::user(dn),
            None => KafkaPrincipal::anonymous(),
        }
    }

    /// Parses `principalType:principalName`, splitting at the first ':' as Kafka's
    /// `SecurityUtils.parseKafkaPrincipal` does. Unlike Kafka, an empty type or name is refused:
    /// `User:` or `:alice` is always a typo and would silently match nobody.
    pub fn parse(s: &str) -> Result<Self> {
        match s.split_once(':') {
            Some((principal_type, name)) if !principal_type.is_empty() && !name.is_empty() => {
                Ok(KafkaPrincipal {
                    principal_type: principal_type.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(AuthError::InvalidPrincipal {
                principal: s.to_owned(),
            }),
        }
    }

    /// `User` in `User:alice`.
    pub fn principal_type(&self) -> &str {
        &self.principal_type
    }

    /// `alice` in `User:alice`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True for `User:*`, which in an ACL matches every principal.
    pub fn is_wildcard(&self) -> bool {
        self.principal_type == USER_TYPE && self.name == "*"
    }
}

impl fmt::Display for KafkaPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.principal_type, self.name)
    }
}

impl FromStr for KafkaPrincipal {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self> {
        KafkaPrincipal::parse(s)
    }
}

impl Serialize for KafkaPrincipal {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KafkaPrincipal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        KafkaPrincipal::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Formats a distinguished name as RFC 2253 (what Java's `X500Principal.getName()` returns and
/// so what Kafka's SSL principals contain).
///
/// `rdns` lists the certificate subject's RDNs in their ASN.1 order (country or domain first,
/// common name last), each RDN as its `(attribute type, value)` pairs; the attribute type is
/// the caller's keyword (`CN`, `OU`, `O`, `L`, `ST`, `C`, `STREET`, `DC`, `UID`) or a dotted
/// OID. RFC 2253 §2.1 writes the RDNs in reverse order, joined by `,`; the pairs of a
/// multi-valued RDN are joined by `+`. Values are escaped per §2.4.
pub fn format_rfc2253(rdns: &[&[(&str, &str)]]) -> String {
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, (attribute_type, value)) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            out.push_str(attribute_type);
            out.push('=');
            escape_rfc2253_value(value, &mut out);
        }
    }
    out
}

/// RFC 2253 §2.4: escape `,` `+` `"` `\` `<` `>` `;`, a leading `#` or space, a trailing space.
fn escape_rfc2253_value(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_splits_at_the_first_colon() {
        let p = KafkaPrincipal::parse("User:CN=a:b,O=x").expect("valid");
        assert_eq!(p.principal_type(), "User");
        assert_eq!(p.name(), "CN=a:b,O=x");
        assert_eq!(p.to_string(), "User:CN=a:b,O=x");
    }

    #[test]
    fn parse_refuses_a_missing_colon_type_or_name() {
        for bad in ["alice", "", "User:", ":alice", ":"] {
            let err = KafkaPrincipal::parse(bad).expect_err(bad);
            assert!(matches!(err, AuthError::InvalidPrincipal { .. }), "{bad}");
            assert!(err.to_string().contains("principalType:principalName"));
        }
    }

    #[test]
    fn wildcard_and_anonymous() {
        assert!(KafkaPrincipal::parse(WILDCARD_PRINCIPAL)
            .expect("valid")
            .is_wildcard());
        assert!(!KafkaPrincipal::parse("Group:*")
            .expect("valid")
            .is_wildcard());
        assert_eq!(KafkaPrincipal::anonymous().to_string(), ANONYMOUS);
    }

    #[test]
    fn tls_principal_is_user_plus_the_full_dn() {
        assert_eq!(
            KafkaPrincipal::from_tls_subject(Some("CN=alice,OU=eng")).to_string(),
            "User:CN=alice,OU=eng"
        );
        assert_eq!(
            KafkaPrincipal::from_tls_subject(None).to_string(),
            ANONYMOUS
        );
    }

    #[test]
    fn rfc2253_reverses_rdns_and_escapes_values() {
        let dn = format_rfc2253(&[
            &[("C", "US")],
            &[("O", "Acme, Inc.")],
            &[("OU", "eng"), ("OU", "ops")],
            &[("CN", " alice ")],
        ]);
        assert_eq!(dn, r"CN=\ alice\ ,OU=eng+OU=ops,O=Acme\, Inc.,C=US");
        assert_eq!(format_rfc2253(&[&[("CN", "#a+b")]]), r"CN=\#a\+b");
        assert_eq!(format_rfc2253(&[]), "");
    }

    #[test]
    fn serde_is_the_display_string() {
        let p = KafkaPrincipal::user("alice");
        assert_eq!(
            serde_json::to_string(&p).expect("serialize"),
            "\"User:alice\""
        );
        let back: KafkaPrincipal = serde_json::from_str("\"User:alice\"").expect("deserialize");
        assert_eq!(back, p);
        assert!(serde_json::from_str::<KafkaPrincipal>("\"alice\"").is_err());
    }
}
