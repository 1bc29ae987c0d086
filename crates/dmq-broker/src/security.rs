//! The broker's security (SPEC §11): who a connection is (SASL), and what it may do (ACLs).
//!
//! ```text
//!   services.json "security"  ─┐                      ┌─ ACLs, SCRAM credentials
//!   (mechanisms, PLAIN users,  ├─▶ BrokerSecurity ◀───┤  (cluster image, refreshed with
//!    authorizer, inter-broker) ┘     │                └─  every metadata pull)
//!                                    ├─ sasl_server(mechanism) → one exchange per connection
//!                                    └─ allowed(principal, host, op, resource) → bool
//! ```
//!
//! Without a `security` section everything is open and every check answers allowed, as
//! before. The decisions themselves are `dmq_auth`'s pure functions; this module only keeps
//! the data they read current.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use dmq_auth::plain::{PlainServer, PlainUsers};
use dmq_auth::{
    AclBinding, AclIndex, AuthorizerConfig, Decision, KafkaPrincipal, Operation, Password,
    ResourceType, SaslMechanism, SaslServer, ScramCredential, ScramMechanism, ScramServer,
};
use dmq_types::security::SecurityConfig;
use serde::Deserialize;

/// The security part of the cluster image (`GET /api/v1/metadata/cluster?security=true`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityImage {
    #[serde(default)]
    pub acls: Vec<AclBinding>,
    /// User → mechanism name → credential.
    #[serde(default)]
    pub scram: BTreeMap<String, BTreeMap<String, ScramCredential>>,
}

struct Current {
    acls: AclIndex,
    scram: Arc<BTreeMap<String, BTreeMap<String, ScramCredential>>>,
}

/// Credentials a broker presents to other brokers (follower fetches, transaction markers).
#[derive(Clone)]
pub struct InterBrokerAuth {
    pub mechanism: SaslMechanism,
    pub user: String,
    pub password: Password,
}

impl std::fmt::Debug for InterBrokerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterBrokerAuth")
            .field("mechanism", &self.mechanism)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

pub struct BrokerSecurity {
    enabled: bool,
    mechanisms: Vec<SaslMechanism>,
    plain: Arc<PlainUsers>,
    /// `None`: the authorizer is off and every operation is allowed.
    authorizer: Option<AuthorizerConfig>,
    inter_broker: Option<InterBrokerAuth>,
    /// Shared by every broker of the cluster (derived from the inter-broker password), so an
    /// unknown user's fake salt is the same whichever broker answers.
    mock_key: [u8; 32],
    current: RwLock<Arc<Current>>,
}

impl std::fmt::Debug for BrokerSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerSecurity")
            .field("enabled", &self.enabled)
            .field("mechanisms", &self.mechanisms)
            .field("authorizer", &self.authorizer.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a SASL mechanism cannot be used on this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedMechanism;

impl BrokerSecurity {
    /// No `security` section: everything open.
    pub fn open() -> BrokerSecurity {
        BrokerSecurity {
            enabled: false,
            mechanisms: Vec::new(),
            plain: Arc::new(PlainUsers::new(Vec::<(String, Password)>::new())),
            authorizer: None,
            inter_broker: None,
            mock_key: [0; 32],
            current: RwLock::new(Arc::new(Current {
                acls: AclIndex::new(Vec::new()),
                scram: Arc::new(BTreeMap::new()),
            })),
        }
    }

    pub fn from_config(config: Option<&SecurityConfig>) -> BrokerSecurity {
        let Some(c) = config else {
            return BrokerSecurity::open();
        };
        let mut s = BrokerSecurity::open();
        s.enabled = true;
        if let Some(sasl) = &c.sasl {
            s.mechanisms = sasl
                .mechanisms
                .iter()
                .filter_map(|m| SaslMechanism::from_name(m).ok())
                .collect();
            s.plain = Arc::new(PlainUsers::new(
                sasl.users
                    .iter()
                    .map(|u| (u.name.clone(), Password::new(u.password.expose()))),
            ));
        }
        if c.authorizer.enabled {
            s.authorizer = Some(AuthorizerConfig {
                super_users: c.authorizer.super_users.clone(),
                allow_everyone_if_no_acl_found: c.authorizer.allow_everyone_if_no_acl_found,
            });
        }
        if let Some(ib) = &c.inter_broker {
            // PLAIN when offered (the user is then one of the file's), else SCRAM-SHA-512.
            let mechanism = if s.mechanisms.contains(&SaslMechanism::Plain) {
                SaslMechanism::Plain
            } else {
                SaslMechanism::ScramSha512
            };
            s.inter_broker = Some(InterBrokerAuth {
                mechanism,
                user: ib.user.clone(),
                password: Password::new(ib.password.expose()),
            });
            use sha2::Digest;
            let digest = sha2::Sha256::digest(format!("dmq-mock-salt:{}", ib.password.expose()));
            s.mock_key.copy_from_slice(&digest);
        }
        s
    }

    /// Whether a `security` section is present.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The mechanisms SaslHandshake offers, by Kafka name.
    pub fn mechanism_names(&self) -> Vec<&'static str> {
        self.mechanisms.iter().map(|m| m.name()).collect()
    }

    pub fn inter_broker(&self) -> Option<&InterBrokerAuth> {
        self.inter_broker.as_ref()
    }

    /// Takes the ACLs and SCRAM credentials of a new cluster image.
    pub fn set_image(&self, image: &SecurityImage) {
        let next = Arc::new(Current {
            acls: AclIndex::new(image.acls.iter().cloned()),
            scram: Arc::new(image.scram.clone()),
        });
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
    }

    fn current(&self) -> Arc<Current> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A server for one SASL exchange with `mechanism` (SaslHandshake's name).
    pub fn sasl_server(
        &self,
        mechanism: &str,
    ) -> Result<Box<dyn SaslServer + Send>, UnsupportedMechanism> {
        let m = SaslMechanism::from_name(mechanism).map_err(|_| UnsupportedMechanism)?;
        if !self.mechanisms.contains(&m) {
            return Err(UnsupportedMechanism);
        }
        Ok(match m.scram() {
            None => Box::new(PlainServer::new(self.plain.clone())),
            Some(scram) => {
                let creds = self.current().scram.clone();
                let lookup = move |mech: ScramMechanism, user: &str| {
                    creds.get(user)?.get(mech.name()).cloned()
                };
                Box::new(ScramServer::new(scram, lookup).with_mock_key(self.mock_key))
            }
        })
    }

    /// May `principal` connecting from `host` do `op` on the resource? Always yes with the
    /// authorizer off.
    pub fn allowed(
        &self,
        principal: &KafkaPrincipal,
        host: &str,
        op: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        let Some(cfg) = &self.authorizer else {
            return true;
        };
        let principal = principal.to_string();
        self.current()
            .acls
            .authorize(cfg, &principal, host, op, resource_type, name)
            == Decision::Allowed
    }

    /// The ACL decision on one HTTP call (SPEC §11), with the ACLs of the last cluster image:
    /// allowed with the authorizer off, else the call's principal needs what
    /// [`dmq_auth::http_access`] names.
    pub fn authorize_http(
        &self,
        call: &dmq_types::http::HttpCall<'_>,
    ) -> dmq_types::http::HttpVerdict {
        let Some(cfg) = &self.authorizer else {
            return Ok(());
        };
        dmq_auth::decide_http(
            &cfg.super_users,
            call.principal,
            call.method,
            call.path,
            call.query,
            |op, rt, name| {
                self.current()
                    .acls
                    .authorize(cfg, call.principal, &call.host, op, rt, name)
            },
        )
    }

    /// May `principal` do `op` on some resource of the type (Kafka's
    /// `authorizeByResourceType`: how an idempotent producer with WRITE on any topic may get a
    /// producer id without IDEMPOTENT_WRITE on the cluster).
    pub fn allowed_on_any(
        &self,
        principal: &KafkaPrincipal,
        host: &str,
        op: Operation,
        resource_type: ResourceType,
    ) -> bool {
        let Some(cfg) = &self.authorizer else {
            return true;
        };
        let principal = principal.to_string();
        self.current()
            .acls
            .authorize_by_resource_type(cfg, &principal, host, op, resource_type)
            == Decision::Allowed
    }

    /// The SCRAM mechanisms and iteration counts of `user` (DescribeUserScramCredentials).
    pub fn scram_mechanisms(&self, user: &str) -> Vec<(ScramMechanism, u32)> {
        self.current()
            .scram
            .get(user)
            .map(|m| {
                m.iter()
                    .filter_map(|(name, c)| {
                        Some((ScramMechanism::from_name(name).ok()?, c.iterations))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every SCRAM user.
    pub fn scram_users(&self) -> Vec<String> {
        self.current().scram.keys().cloned().collect()
    }

    /// The ACLs (DescribeAcls).
    pub fn acls(&self) -> Vec<AclBinding> {
        self.current().acls.bindings().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use dmq_auth::{PatternType, Permission};
    use dmq_types::security::SecurityConfig;

    use super::*;

    fn config() -> SecurityConfig {
        serde_json::from_str(
            r#"{"sasl": {"users": [{"name": "admin", "password": "admin-secret"}]},
                "authorizer": {"enabled": true, "superUsers": ["User:admin"]},
                "interBroker": {"user": "admin", "password": "admin-secret"}}"#,
        )
        .expect("config")
    }

    #[test]
    fn the_image_decides_and_the_authorizer_can_be_off() {
        let s = BrokerSecurity::from_config(Some(&config()));
        let alice = KafkaPrincipal::user("alice");
        let admin = KafkaPrincipal::user("admin");
        let read = |s: &BrokerSecurity, p| {
            s.allowed(p, "127.0.0.1", Operation::Read, ResourceType::Topic, "t")
        };
        assert!(!read(&s, &alice), "no ACL, allowEveryoneIfNoAclFound false");
        assert!(read(&s, &admin), "super user");
        s.set_image(&SecurityImage {
            acls: vec![AclBinding {
                principal: "User:alice".into(),
                host: "*".into(),
                resource_type: ResourceType::Topic,
                resource_name: "t".into(),
                pattern_type: PatternType::Literal,
                operation: Operation::Read,
                permission: Permission::Allow,
            }],
            scram: BTreeMap::new(),
        });
        assert!(read(&s, &alice));
        assert!(
            s.allowed(&alice, "h", Operation::Describe, ResourceType::Topic, "t"),
            "implied"
        );
        assert!(
            read(&BrokerSecurity::open(), &alice),
            "no security section: open"
        );
    }

    #[test]
    fn only_configured_mechanisms_are_offered() {
        let mut c = config();
        if let Some(sasl) = &mut c.sasl {
            sasl.mechanisms = vec!["SCRAM-SHA-512".into()];
        }
        let s = BrokerSecurity::from_config(Some(&c));
        assert_eq!(s.mechanism_names(), vec!["SCRAM-SHA-512"]);
        assert!(s.sasl_server("PLAIN").is_err());
        assert!(s.sasl_server("SCRAM-SHA-512").is_ok());
        assert!(s.sasl_server("GSSAPI").is_err());
        assert_eq!(
            s.inter_broker().map(|i| i.mechanism),
            Some(SaslMechanism::ScramSha512)
        );
        assert!(!format!("{s:?}{:?}", s.inter_broker()).contains("admin-secret"));
    }
}
