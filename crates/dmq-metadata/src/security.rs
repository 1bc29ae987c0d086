//! Security metadata in the quorum (SPEC §11): ACLs (Kafka's `AclControlManager`) and SCRAM
//! credentials (Kafka's `ScramControlManager`), as pure functions of the state and a command.
//!
//! - ACLs are kept sorted and unique. CreateAcls validates each binding and adds the valid ones
//!   (adding one that exists changes nothing and succeeds, as in Kafka); DeleteAcls removes
//!   every binding each filter matches and answers them per filter.
//! - SCRAM credentials are stored as Kafka stores them: salt, StoredKey, ServerKey, iterations
//!   per user and mechanism. The password and the salted password never reach the log: the
//!   broker that received AlterUserScramCredentials derives the keys first.

use std::collections::BTreeMap;

use dmq_auth::{AclBinding, AclBindingFilter, ScramCredential, ScramMechanism};
use serde::{Deserialize, Serialize};

/// ACLs and SCRAM credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityState {
    /// Every ACL, sorted, no duplicates.
    #[serde(default)]
    pub acls: Vec<AclBinding>,
    /// User → mechanism name (`SCRAM-SHA-256`) → credential.
    #[serde(default)]
    pub scram: BTreeMap<String, BTreeMap<String, ScramCredential>>,
}

/// One credential to set (AlterUserScramCredentials upsertion, keys already derived).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScramUpsert {
    pub user: String,
    pub mechanism: ScramMechanism,
    pub credential: ScramCredential,
}

/// One credential to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScramDelete {
    pub user: String,
    pub mechanism: ScramMechanism,
}

/// The outcome for one user of an AlterUserScramCredentials (Kafka answers per user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserResult {
    pub user: String,
    /// Kafka's error code, 0 on success.
    pub error_code: i16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

const RESOURCE_NOT_FOUND: i16 = 91;
const DUPLICATE_RESOURCE: i16 = 92;

fn sort_key(b: &AclBinding) -> impl Ord + '_ {
    (
        b.resource_type.code(),
        b.resource_name.as_str(),
        b.pattern_type.code(),
        b.principal.as_str(),
        b.host.as_str(),
        b.operation.code(),
        b.permission.code(),
    )
}

impl SecurityState {
    /// CreateAcls: one result per binding, `None` when it was added (or existed already), the
    /// reason otherwise.
    pub fn create_acls(&mut self, bindings: &[AclBinding]) -> Vec<Option<String>> {
        let mut results = Vec::with_capacity(bindings.len());
        for b in bindings {
            if let Err(e) = b.validate() {
                results.push(Some(e.to_string()));
                continue;
            }
            match self
                .acls
                .binary_search_by(|x| sort_key(x).cmp(&sort_key(b)))
            {
                Ok(_) => {}
                Err(at) => self.acls.insert(at, b.clone()),
            }
            results.push(None);
        }
        results
    }

    /// DeleteAcls: for each filter, the bindings it removed (a binding two filters match is
    /// removed once, answered for the first).
    pub fn delete_acls(&mut self, filters: &[AclBindingFilter]) -> Vec<Vec<AclBinding>> {
        filters
            .iter()
            .map(|f| {
                let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.acls)
                    .into_iter()
                    .partition(|b| f.matches(b));
                self.acls = kept;
                gone
            })
            .collect()
    }

    /// The ACLs a filter matches (DescribeAcls).
    pub fn describe_acls(&self, filter: &AclBindingFilter) -> Vec<AclBinding> {
        self.acls
            .iter()
            .filter(|b| filter.matches(b))
            .cloned()
            .collect()
    }

    /// AlterUserScramCredentials with Kafka's rules: a user named twice for one mechanism in
    /// one request gets DUPLICATE_RESOURCE and nothing of that user changes; deleting a
    /// credential that does not exist gets RESOURCE_NOT_FOUND; otherwise all changes of a user
    /// apply together. Results in first-mention order of the users.
    pub fn alter_scram(
        &mut self,
        upsertions: &[ScramUpsert],
        deletions: &[ScramDelete],
    ) -> Vec<UserResult> {
        let mut order: Vec<&str> = Vec::new();
        let mut seen: BTreeMap<(&str, ScramMechanism), usize> = BTreeMap::new();
        let mentions = deletions
            .iter()
            .map(|d| (d.user.as_str(), d.mechanism))
            .chain(upsertions.iter().map(|u| (u.user.as_str(), u.mechanism)));
        for (user, mech) in mentions {
            if !order.contains(&user) {
                order.push(user);
            }
            *seen.entry((user, mech)).or_default() += 1;
        }
        order
            .into_iter()
            .map(|user| {
                let fail = |code: i16, message: String| UserResult {
                    user: user.to_string(),
                    error_code: code,
                    message: Some(message),
                };
                if let Some(((_, m), _)) = seen.iter().find(|((u, _), n)| *u == user && **n > 1) {
                    return fail(
                        DUPLICATE_RESOURCE,
                        format!("user {user:?} is named more than once for {}", m.name()),
                    );
                }
                for d in deletions.iter().filter(|d| d.user == user) {
                    let exists = self
                        .scram
                        .get(user)
                        .is_some_and(|m| m.contains_key(d.mechanism.name()));
                    if !exists {
                        return fail(
                            RESOURCE_NOT_FOUND,
                            format!(
                                "user {user:?} has no {} credential to delete",
                                d.mechanism.name()
                            ),
                        );
                    }
                }
                for d in deletions.iter().filter(|d| d.user == user) {
                    if let Some(m) = self.scram.get_mut(user) {
                        m.remove(d.mechanism.name());
                    }
                }
                for u in upsertions.iter().filter(|u| u.user == user) {
                    self.scram
                        .entry(user.to_string())
                        .or_default()
                        .insert(u.mechanism.name().to_string(), u.credential.clone());
                }
                if self.scram.get(user).is_some_and(BTreeMap::is_empty) {
                    self.scram.remove(user);
                }
                UserResult {
                    user: user.to_string(),
                    error_code: 0,
                    message: None,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use dmq_auth::{Operation, Password, PatternType, Permission, ResourceType};

    use super::*;

    fn acl(principal: &str, topic: &str, op: Operation) -> AclBinding {
        AclBinding {
            principal: principal.into(),
            host: "*".into(),
            resource_type: ResourceType::Topic,
            resource_name: topic.into(),
            pattern_type: PatternType::Literal,
            operation: op,
            permission: Permission::Allow,
        }
    }

    fn cred(mech: ScramMechanism, pw: &str) -> ScramCredential {
        ScramCredential::from_password(mech, &Password::new(pw), b"salt", 4096).expect("cred")
    }

    #[test]
    fn acls_are_added_once_and_invalid_ones_refused() {
        let mut s = SecurityState::default();
        let a = acl("User:alice", "t", Operation::Read);
        let mut bad = acl("User:alice", "t", Operation::Any);
        bad.permission = Permission::Allow;
        let r = s.create_acls(&[a.clone(), a.clone(), bad]);
        assert_eq!(r[0], None);
        assert_eq!(r[1], None, "an existing binding is success");
        assert!(r[2].is_some(), "ANY is not an operation to grant");
        assert_eq!(s.acls, vec![a]);
    }

    #[test]
    fn delete_acls_answers_what_each_filter_removed() {
        let mut s = SecurityState::default();
        let (a, b) = (
            acl("User:alice", "t", Operation::Read),
            acl("User:bob", "t", Operation::Write),
        );
        s.create_acls(&[a.clone(), b.clone()]);
        let any = AclBindingFilter::any();
        let gone = s.delete_acls(&[AclBindingFilter::exact(&a), any]);
        assert_eq!(gone, vec![vec![a], vec![b]]);
        assert!(s.acls.is_empty());
    }

    #[test]
    fn scram_changes_follow_kafkas_per_user_rules() {
        let mut s = SecurityState::default();
        let up = |user: &str, m| ScramUpsert {
            user: user.into(),
            mechanism: m,
            credential: cred(m, "pw"),
        };
        let del = |user: &str, m| ScramDelete {
            user: user.into(),
            mechanism: m,
        };
        let r = s.alter_scram(
            &[
                up("alice", ScramMechanism::Sha512),
                up("bob", ScramMechanism::Sha256),
                up("bob", ScramMechanism::Sha256),
            ],
            &[del("carol", ScramMechanism::Sha256)],
        );
        let codes: Vec<(String, i16)> = r.iter().map(|r| (r.user.clone(), r.error_code)).collect();
        assert_eq!(
            codes,
            vec![
                ("carol".into(), RESOURCE_NOT_FOUND),
                ("alice".into(), 0),
                ("bob".into(), DUPLICATE_RESOURCE)
            ]
        );
        assert_eq!(s.scram.keys().collect::<Vec<_>>(), vec!["alice"]);
        let r = s.alter_scram(&[], &[del("alice", ScramMechanism::Sha512)]);
        assert_eq!(r[0].error_code, 0);
        assert!(s.scram.is_empty(), "a user without credentials is gone");
    }
}
