//! Kafka's ACL model and its authorizer, as data and pure functions.
//!
//! An ACL binding is a resource pattern plus an access control entry:
//!
//! ```text
//!   resource pattern                     access control entry
//!   ┌──────────────┬──────────┬─────────┐┌────────────┬──────┬───────────┬────────────┐
//!   │ resourceType │ name     │ pattern ││ principal  │ host │ operation │ permission │
//!   │ TOPIC        │ orders-  │ PREFIXED││ User:alice │ *    │ READ      │ ALLOW      │
//!   └──────────────┴──────────┴─────────┘└────────────┴──────┴───────────┴────────────┘
//! ```
//!
//! [`AclIndex::authorize`] decides one action the way Kafka's `StandardAuthorizer`
//! (`StandardAuthorizerData.authorize`, KIP-801) does:
//!
//! 1. A super user (`super.users`, compared as the exact string `User:name`) is allowed anything.
//! 2. The ACLs that apply to a resource are those of its type whose pattern is LITERAL with the
//!    same name, LITERAL `*`, or PREFIXED with a prefix of the name.
//! 3. Among those, an ACL matches the request when its principal is the request's or `User:*`,
//!    its host is the client's address or `*`, and its operation matches (below).
//! 4. A matching DENY wins over any ALLOW; else a matching ALLOW allows.
//! 5. Else, when no ACL at all applies to the resource (whatever its principal, host or
//!    operation), `allow.everyone.if.no.acl.found` decides; otherwise the request is denied.
//!
//! Operations match when equal or when the ACL says ALL. An ALLOW (never a DENY) of READ,
//! WRITE, DELETE or ALTER also allows DESCRIBE, and an ALLOW of ALTER_CONFIGS also allows
//! DESCRIBE_CONFIGS. So a DENY of READ does not deny DESCRIBE.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::principal::{KafkaPrincipal, WILDCARD_PRINCIPAL};
use crate::{error_codes, AuthError, Result};

/// The resource name that, in a LITERAL pattern, matches every resource of its type.
pub const WILDCARD_RESOURCE: &str = "*";

/// The ACL host that matches every client address.
pub const WILDCARD_HOST: &str = "*";

/// The only name a CLUSTER resource has (Kafka's `Resource.CLUSTER_NAME`).
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// The longest resource name CreateAcls accepts: no topic, group or transactional id that long
/// can exist, and it bounds the prefix scan of [`AclIndex::authorize`].
pub const RESOURCE_NAME_BYTES_MAX: usize = 4096;

/// Defines one of Kafka's ACL enums: its wire codes, its names (`TOPIC`, `IDEMPOTENT_WRITE`),
/// lenient parsing of CLI spellings and serde as the name.
macro_rules! kafka_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($kind:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal => $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in wire-code order.
            pub const VALUES: &'static [$name] = &[$($name::$variant),+];

            /// Kafka's wire code (an INT8 in CreateAcls, DescribeAcls, DeleteAcls).
            pub fn code(self) -> i8 {
                match self { $($name::$variant => $code,)+ }
            }

            /// The value for a wire code; codes Kafka calls UNKNOWN (0) or that this broker does
            /// not support are an error (answered with INVALID_REQUEST).
            pub fn from_code(code: i8) -> Result<Self> {
                match code {
                    $($code => Ok($name::$variant),)+
                    _ => Err(AuthError::UnknownCode { kind: $kind, code }),
                }
            }

            /// Kafka's name for the value (`name()` of the Java enum), e.g. `TRANSACTIONAL_ID`.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $wire,)+ }
            }

            /// Parses a name as Kafka's tools accept it: case-insensitively, with or without
            /// `_` (`Topic`, `prefixed`, `IdempotentWrite`, `IDEMPOTENT_WRITE`).
            pub fn parse(s: &str) -> Result<Self> {
                Self::VALUES
                    .iter()
                    .copied()
                    .find(|v| loose_eq(v.name(), s))
                    .ok_or_else(|| AuthError::UnknownName {
                        kind: $kind,
                        name: s.to_owned(),
                        expected: concat!($($wire, " "),+),
                    })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $name {
            type Err = AuthError;
            fn from_str(s: &str) -> Result<Self> {
                $name::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Compares an enum name with user input ignoring ASCII case and `_`/`-`, without allocating.
fn loose_eq(name: &str, input: &str) -> bool {
    fn significant(s: &str) -> impl Iterator<Item = char> + '_ {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .map(|c| c.to_ascii_uppercase())
    }
    significant(name).eq(significant(input))
}

kafka_enum! {
    /// The kind of resource an ACL protects (Kafka's `ResourceType`). DELEGATION_TOKEN (6) and
    /// USER (7) are not supported.
    pub enum ResourceType ("resource type") {
        /// Filters only: any resource type.
        Any = 1 => "ANY",
        /// A topic.
        Topic = 2 => "TOPIC",
        /// A consumer group.
        Group = 3 => "GROUP",
        /// The cluster itself, named `kafka-cluster`.
        Cluster = 4 => "CLUSTER",
        /// A transactional producer's id.
        TransactionalId = 5 => "TRANSACTIONAL_ID",
    }
}

kafka_enum! {
    /// How an ACL's resource name is matched (Kafka's `PatternType`, KIP-290).
    pub enum PatternType ("pattern type") {
        /// Filters only: bindings of any pattern type, names compared exactly.
        Any = 1 => "ANY",
        /// Filters only: bindings that would apply to the named resource (exact literal,
        /// literal `*`, or a prefix of the name).
        Match = 2 => "MATCH",
        /// The name is the resource's name, or `*` for every resource of the type.
        Literal = 3 => "LITERAL",
        /// The name is a prefix of the resources' names.
        Prefixed = 4 => "PREFIXED",
    }
}

kafka_enum! {
    /// What a principal does to a resource (Kafka's `AclOperation`). CREATE_TOKENS and
    /// DESCRIBE_TOKENS are not supported.
    pub enum Operation ("operation") {
        /// Filters only: any operation.
        Any = 1 => "ANY",
        /// In an ACL: every operation.
        All = 2 => "ALL",
        /// Fetch from a topic, join or commit in a group.
        Read = 3 => "READ",
        /// Produce to a topic, use a transactional id.
        Write = 4 => "WRITE",
        /// Create topics.
        Create = 5 => "CREATE",
        /// Delete topics, records or groups.
        Delete = 6 => "DELETE",
        /// Alter a topic's partitions, the cluster's ACLs.
        Alter = 7 => "ALTER",
        /// See a topic in Metadata, describe a group or ACLs.
        Describe = 8 => "DESCRIBE",
        /// Inter-broker requests (follower fetch, LeaderAndIsr).
        ClusterAction = 9 => "CLUSTER_ACTION",
        /// DescribeConfigs.
        DescribeConfigs = 10 => "DESCRIBE_CONFIGS",
        /// AlterConfigs, IncrementalAlterConfigs.
        AlterConfigs = 11 => "ALTER_CONFIGS",
        /// An idempotent producer's InitProducerId (on the cluster).
        IdempotentWrite = 12 => "IDEMPOTENT_WRITE",
    }
}

kafka_enum! {
    /// Whether an ACL allows or denies (Kafka's `AclPermissionType`).
    pub enum Permission ("permission type") {
        /// Filters only: either.
        Any = 1 => "ANY",
        /// Denies; wins over every ALLOW.
        Deny = 2 => "DENY",
        /// Allows, unless a DENY matches too.
        Allow = 3 => "ALLOW",
    }
}

impl ResourceType {
    /// The operations that mean something on this resource type (Kafka's
    /// `AclEntry.supportedOperations`, which `kafka-acls` checks; ALL is always accepted).
    /// The broker itself does not refuse other operations in CreateAcls.
    pub fn supported_operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Describe,
                Delete,
                Alter,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write],
            ResourceType::Any => &[],
        }
    }

    /// The name of [`ResourceType::authorization_error_code`] (the `error` of an HTTP 403).
    pub fn authorization_error_name(self) -> &'static str {
        match self {
            ResourceType::Topic => "TOPIC_AUTHORIZATION_FAILED",
            ResourceType::Group => "GROUP_AUTHORIZATION_FAILED",
            ResourceType::Cluster | ResourceType::Any => "CLUSTER_AUTHORIZATION_FAILED",
            ResourceType::TransactionalId => "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        }
    }

    /// The Kafka error a request gets when the authorizer denies it on a resource of this type
    /// (TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED, ...).
    pub fn authorization_error_code(self) -> i16 {
        match self {
            ResourceType::Topic => error_codes::TOPIC_AUTHORIZATION_FAILED,
            ResourceType::Group => error_codes::GROUP_AUTHORIZATION_FAILED,
            ResourceType::Cluster | ResourceType::Any => error_codes::CLUSTER_AUTHORIZATION_FAILED,
            ResourceType::TransactionalId => error_codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        }
    }
}

/// One ACL: a resource pattern and an access control entry (Kafka's `AclBinding`).
///
/// A binding that the quorum stores has passed [`AclBinding::validate`]; the authorizer ignores
/// any that would not.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AclBinding {
    /// Who: `User:alice`, or `User:*` for everyone.
    pub principal: String,
    /// From where: the client's IP address as text, or `*` for anywhere.
    pub host: String,
    /// What kind of resource.
    pub resource_type: ResourceType,
    /// Which resource: a name, a prefix, or (LITERAL only) `*` for all of the type.
    pub resource_name: String,
    /// How `resource_name` is matched: LITERAL or PREFIXED.
    pub pattern_type: PatternType,
    /// Which operation; ALL for every one.
    pub operation: Operation,
    /// ALLOW or DENY. Kafka's JSON calls it `permissionType`.
    #[serde(rename = "permissionType")]
    pub permission: Permission,
}

impl AclBinding {
    /// Checks a binding that CreateAcls wants to add, with the rules of Kafka's
    /// `AclControlManager.validateNewAcl` and `AclApis.handleCreateAcls`: a concrete resource
    /// type, LITERAL or PREFIXED, a concrete operation and permission, a non-empty name, the
    /// cluster named `kafka-cluster`. Beyond Kafka it also checks what Kafka only fails on later
    /// or never: the principal is `Type:name`, the host is not empty, the name is bounded.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field, value: &dyn fmt::Display, rule| {
            Err(AuthError::InvalidAclBinding {
                field,
                value: value.to_string(),
                rule,
            })
        };
        if self.resource_type == ResourceType::Any {
            return invalid(
                "resourceType",
                &self.resource_type,
                "must be TOPIC, GROUP, CLUSTER or TRANSACTIONAL_ID",
            );
        }
        if !matches!(
            self.pattern_type,
            PatternType::Literal | PatternType::Prefixed
        ) {
            return invalid(
                "patternType",
                &self.pattern_type,
                "must be LITERAL or PREFIXED",
            );
        }
        if self.operation == Operation::Any {
            return invalid(
                "operation",
                &self.operation,
                "must be a concrete operation or ALL",
            );
        }
        if self.permission == Permission::Any {
            return invalid("permissionType", &self.permission, "must be ALLOW or DENY");
        }
        if self.resource_name.is_empty() {
            return invalid("resourceName", &"\"\"", "must not be empty");
        }
        if self.resource_name.len() > RESOURCE_NAME_BYTES_MAX {
            return invalid(
                "resourceName",
                &format_args!("of {} bytes", self.resource_name.len()),
                "must be at most 4096 bytes",
            );
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return invalid(
                "resourceName",
                &format_args!("{:?}", self.resource_name),
                "the only valid name for the CLUSTER resource is kafka-cluster",
            );
        }
        if KafkaPrincipal::parse(&self.principal).is_err() {
            return invalid(
                "principal",
                &format_args!("{:?}", self.principal),
                "must be principalType:principalName, e.g. User:alice or User:*",
            );
        }
        if self.host.is_empty() {
            return invalid("host", &"\"\"", "must be an IP address or * for every host");
        }
        Ok(())
    }

    /// True when the binding's pattern applies to the resource `(resource_type, name)`:
    /// LITERAL equal or `*`, or PREFIXED with a prefix of `name`.
    pub fn applies_to(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => {
                    self.resource_name == name || self.resource_name == WILDCARD_RESOURCE
                }
                PatternType::Prefixed => name.starts_with(&self.resource_name),
                PatternType::Any | PatternType::Match => false,
            }
    }
}

/// Selects bindings for DescribeAcls and DeleteAcls (Kafka's `AclBindingFilter`: a
/// `ResourcePatternFilter` plus an `AccessControlEntryFilter`). `None` and `ANY` match every
/// value of their field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AclBindingFilter {
    /// A resource type, or ANY.
    pub resource_type: ResourceType,
    /// A resource name, or `None` for any. How it is compared depends on `pattern_type`.
    pub resource_name: Option<String>,
    /// LITERAL or PREFIXED: bindings of that type with exactly that name. ANY: bindings of any
    /// type with exactly that name. MATCH: bindings that apply to the named resource.
    pub pattern_type: PatternType,
    /// A principal (`User:alice`, compared exactly), or `None` for any.
    pub principal: Option<String>,
    /// A host (compared exactly), or `None` for any.
    pub host: Option<String>,
    /// An operation (compared exactly; ALL matches only ALL), or ANY.
    pub operation: Operation,
    /// ALLOW, DENY, or ANY.
    #[serde(rename = "permissionType")]
    pub permission: Permission,
}

impl AclBindingFilter {
    /// The filter that matches every binding (`kafka-acls --list` without arguments).
    pub fn any() -> Self {
        AclBindingFilter {
            resource_type: ResourceType::Any,
            resource_name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        }
    }

    /// The filter that matches exactly `binding` (`kafka-acls --remove` of one ACL).
    pub fn exact(binding: &AclBinding) -> Self {
        AclBindingFilter {
            resource_type: binding.resource_type,
            resource_name: Some(binding.resource_name.clone()),
            pattern_type: binding.pattern_type,
            principal: Some(binding.principal.clone()),
            host: Some(binding.host.clone()),
            operation: binding.operation,
            permission: binding.permission,
        }
    }

    /// Kafka's `AclBindingFilter.matches`: the pattern filter and the entry filter both match.
    pub fn matches(&self, binding: &AclBinding) -> bool {
        self.matches_pattern(binding) && self.matches_entry(binding)
    }

    /// `ResourcePatternFilter.matches`.
    fn matches_pattern(&self, binding: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != binding.resource_type {
            return false;
        }
        if !matches!(self.pattern_type, PatternType::Any | PatternType::Match)
            && self.pattern_type != binding.pattern_type
        {
            return false;
        }
        let Some(name) = &self.resource_name else {
            return true;
        };
        if self.pattern_type == PatternType::Any || self.pattern_type == binding.pattern_type {
            return *name == binding.resource_name;
        }
        // MATCH: the binding would apply to a resource with this name.
        match binding.pattern_type {
            PatternType::Literal => {
                *name == binding.resource_name || binding.resource_name == WILDCARD_RESOURCE
            }
            PatternType::Prefixed => name.starts_with(&binding.resource_name),
            PatternType::Any | PatternType::Match => false,
        }
    }

    /// `AccessControlEntryFilter.matches`.
    fn matches_entry(&self, binding: &AclBinding) -> bool {
        self.principal
            .as_ref()
            .is_none_or(|p| *p == binding.principal)
            && self.host.as_ref().is_none_or(|h| *h == binding.host)
            && (self.operation == Operation::Any || self.operation == binding.operation)
            && (self.permission == Permission::Any || self.permission == binding.permission)
    }

    /// True when the filter can match at most one binding (Kafka's `matchesAtMostOne`): no
    /// field is ANY, MATCH or `None`.
    pub fn matches_at_most_one(&self) -> bool {
        self.resource_type != ResourceType::Any
            && self.resource_name.is_some()
            && !matches!(self.pattern_type, PatternType::Any | PatternType::Match)
            && self.principal.is_some()
            && self.host.is_some()
            && self.operation != Operation::Any
            && self.permission != Permission::Any
    }
}

/// The authorizer's configuration (`authorizer` in `services.json`, Kafka's `super.users` and
/// `allow.everyone.if.no.acl.found`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerConfig {
    /// Principals (`User:admin`) allowed everything, whatever the ACLs say. Compared exactly:
    /// `User:*` here makes only a user literally named `*` super.
    #[serde(default)]
    pub super_users: Vec<String>,
    /// Whether a resource with no ACL at all is open to everyone (true) or to super users only
    /// (false, Kafka's default).
    #[serde(default)]
    pub allow_everyone_if_no_acl_found: bool,
}

/// The authorizer's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// The request may go ahead.
    Allowed,
    /// The request gets the resource type's *_AUTHORIZATION_FAILED error.
    Denied,
}

/// Why the authorizer decided as it did, for audit logs (Kafka's `MatchingRule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule<'a> {
    /// The principal is a super user: allowed.
    SuperUser,
    /// This DENY ACL matched: denied, whatever else matched.
    Deny(&'a AclBinding),
    /// This ALLOW ACL matched and no DENY did: allowed.
    Allow(&'a AclBinding),
    /// No ACL applies to the resource; `allow_everyone_if_no_acl_found` said `allowed`.
    NoAclFound {
        /// The configured `allow_everyone_if_no_acl_found`.
        allowed: bool,
    },
    /// ACLs apply to the resource but none allows this principal, host and operation: denied.
    NoMatchingAllow,
    /// The action names ANY as operation or resource type, which is not an action: denied.
    InvalidAction,
}

impl Rule<'_> {
    /// The decision the rule stands for.
    pub fn decision(&self) -> Decision {
        match self {
            Rule::SuperUser | Rule::Allow(_) | Rule::NoAclFound { allowed: true } => {
                Decision::Allowed
            }
            Rule::Deny(_)
            | Rule::NoAclFound { allowed: false }
            | Rule::NoMatchingAllow
            | Rule::InvalidAction => Decision::Denied,
        }
    }
}

impl fmt::Display for Rule<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let acl = |f: &mut fmt::Formatter<'_>, kind: &str, b: &AclBinding| {
            write!(
                f,
                "{kind} {} {} from {} on {}:{}:{}",
                b.principal, b.operation, b.host, b.resource_type, b.pattern_type, b.resource_name
            )
        };
        match self {
            Rule::SuperUser => f.write_str("SuperUser"),
            Rule::Deny(b) => acl(f, "DENY", b),
            Rule::Allow(b) => acl(f, "ALLOW", b),
            Rule::NoAclFound { allowed: true } => f.write_str("DefaultAllow"),
            Rule::NoAclFound { allowed: false } => f.write_str("DefaultDeny"),
            Rule::NoMatchingAllow => f.write_str("NoMatchingAllow"),
            Rule::InvalidAction => f.write_str("InvalidAction"),
        }
    }
}

/// The ACLs of one resource type, indexed by how they match a resource name.
#[derive(Debug, Clone, Default)]
struct Section {
    /// LITERAL bindings by exact name, including the wildcard `*`.
    literal: HashMap<String, Vec<usize>>,
    /// PREFIXED bindings by prefix.
    prefixed: HashMap<String, Vec<usize>>,
    /// The byte lengths of the prefixes in `prefixed`, so a lookup tries only those lengths.
    prefix_lens: BTreeSet<usize>,
}

/// The ACLs, indexed for [`AclIndex::authorize`]. Build it once per change of the ACL set (it
/// is immutable) and share it.
///
/// A lookup costs one hash probe for the literal name, one for `*`, and one per distinct
/// PREFIXED length no longer than the name, so its work does not grow with the number of ACLs
/// on other resources.
#[derive(Debug, Clone, Default)]
pub struct AclIndex {
    /// Every binding given, in order, valid or not: DescribeAcls and DeleteAcls see them all.
    bindings: Vec<AclBinding>,
    /// Valid bindings by resource type (positions in `bindings`).
    sections: HashMap<ResourceType, Section>,
}

impl FromIterator<AclBinding> for AclIndex {
    fn from_iter<I: IntoIterator<Item = AclBinding>>(iter: I) -> Self {
        AclIndex::new(iter)
    }
}

impl AclIndex {
    /// Indexes `bindings`. A binding that fails [`AclBinding::validate`] is kept (listed by
    /// [`AclIndex::bindings`] and [`AclIndex::matching`]) but never matches a request: the
    /// quorum only stores valid ones, and anything else is not to be trusted.
    pub fn new(bindings: impl IntoIterator<Item = AclBinding>) -> Self {
        let bindings: Vec<AclBinding> = bindings.into_iter().collect();
        let mut sections: HashMap<ResourceType, Section> = HashMap::new();
        for (i, b) in bindings.iter().enumerate() {
            if b.validate().is_err() {
                continue;
            }
            let section = sections.entry(b.resource_type).or_default();
            match b.pattern_type {
                PatternType::Literal => section
                    .literal
                    .entry(b.resource_name.clone())
                    .or_default()
                    .push(i),
                PatternType::Prefixed => {
                    section.prefix_lens.insert(b.resource_name.len());
                    section
                        .prefixed
                        .entry(b.resource_name.clone())
                        .or_default()
                        .push(i);
                }
                PatternType::Any | PatternType::Match => {}
            }
        }
        AclIndex { bindings, sections }
    }

    /// Every binding, in the order given.
    pub fn bindings(&self) -> &[AclBinding] {
        &self.bindings
    }

    /// The number of bindings.
    pub fn len(&self) -> usize {
        self.bindings.len()
    }

    /// True when there are no bindings.
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// The bindings `filter` selects (DescribeAcls; DeleteAcls deletes them).
    pub fn matching<'a>(
        &'a self,
        filter: &'a AclBindingFilter,
    ) -> impl Iterator<Item = &'a AclBinding> + 'a {
        self.bindings.iter().filter(move |b| filter.matches(b))
    }

    /// Calls `visit` with every valid binding that applies to the resource: LITERAL with
    /// the same name, LITERAL `*`, PREFIXED with a prefix of the name.
    fn for_each_applying<'a>(
        &'a self,
        resource_type: ResourceType,
        name: &str,
        mut visit: impl FnMut(&'a AclBinding),
    ) {
        let Some(section) = self.sections.get(&resource_type) else {
            return;
        };
        let mut visit_all = |positions: Option<&Vec<usize>>| {
            for &i in positions.into_iter().flatten() {
                visit(&self.bindings[i]);
            }
        };
        visit_all(section.literal.get(name));
        if name != WILDCARD_RESOURCE {
            visit_all(section.literal.get(WILDCARD_RESOURCE));
        }
        for &len in section.prefix_lens.range(..=name.len()) {
            if let Some(prefix) = name.get(..len) {
                visit_all(section.prefixed.get(prefix));
            }
        }
    }

    /// Decides whether `principal` (`User:alice`) connecting from `host` (the client's IP
    /// address) may do `operation` on the resource, with the rules in the module docs.
    pub fn authorize(
        &self,
        cfg: &AuthorizerConfig,
        principal: &str,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
        resource_name: &str,
    ) -> Decision {
        self.explain(
            cfg,
            principal,
            host,
            operation,
            resource_type,
            resource_name,
        )
        .decision()
    }

    /// Like [`AclIndex::authorize`], and says which rule decided (for the audit log).
    pub fn explain(
        &self,
        cfg: &AuthorizerConfig,
        principal: &str,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
        resource_name: &str,
    ) -> Rule<'_> {
        if cfg.super_users.iter().any(|s| s == principal) {
            return Rule::SuperUser;
        }
        if operation == Operation::Any || resource_type == ResourceType::Any {
            return Rule::InvalidAction;
        }
        let mut resource_has_acls = false;
        let mut deny = None;
        let mut allow = None;
        self.for_each_applying(resource_type, resource_name, |b| {
            resource_has_acls = true;
            if !entry_matches(b, principal, host, operation) {
                return;
            }
            match b.permission {
                Permission::Deny => {
                    deny.get_or_insert(b);
                }
                Permission::Allow => {
                    allow.get_or_insert(b);
                }
                Permission::Any => {}
            }
        });
        match (deny, allow) {
            (Some(b), _) => Rule::Deny(b),
            (None, Some(b)) => Rule::Allow(b),
            (None, None) if !resource_has_acls => Rule::NoAclFound {
                allowed: cfg.allow_everyone_if_no_acl_found,
            },
            (None, None) => Rule::NoMatchingAllow,
        }
    }

    /// Decides whether `principal` may do `operation` on *some* resource of the type (Kafka's
    /// `Authorizer.authorizeByResourceType`, KIP-679): an idempotent producer's InitProducerId
    /// passes with IDEMPOTENT_WRITE on the cluster or with this for WRITE on TOPIC.
    ///
    /// Kafka's default implementation, rule by rule: allowed when `authorize` allows the
    /// operation on a resource named `hardcode` (so super users, a wildcard ALLOW, or no ACLs
    /// with `allow_everyone_if_no_acl_found`); denied when a DENY on LITERAL `*` matches;
    /// allowed when an ALLOW on LITERAL `*` matches; allowed when some matching ALLOW pattern
    /// is not dominated by a matching DENY (a LITERAL DENY of the same name, for a LITERAL
    /// ALLOW, or a PREFIXED DENY that is a prefix of the ALLOW's name, for either); else denied.
    /// Here, unlike in `authorize`, operations match only when equal or ALL: no implied
    /// DESCRIBE.
    pub fn authorize_by_resource_type(
        &self,
        cfg: &AuthorizerConfig,
        principal: &str,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
    ) -> Decision {
        if self.authorize(cfg, principal, host, operation, resource_type, "hardcode")
            == Decision::Allowed
        {
            return Decision::Allowed;
        }
        let Some(section) = self.sections.get(&resource_type) else {
            return Decision::Denied;
        };
        let mut deny_literal: HashSet<&str> = HashSet::new();
        let mut deny_prefixed: HashSet<&str> = HashSet::new();
        let mut allow: Vec<&AclBinding> = Vec::new();
        let positions = section.literal.values().chain(section.prefixed.values());
        for b in positions.flatten().map(|&i| &self.bindings[i]) {
            let operation_matches = b.operation == operation || b.operation == Operation::All;
            if !operation_matches || !principal_matches(b, principal) || !host_matches(b, host) {
                continue;
            }
            let name = b.resource_name.as_str();
            let literal = b.pattern_type == PatternType::Literal;
            match b.permission {
                Permission::Deny if literal && name == WILDCARD_RESOURCE => {
                    return Decision::Denied;
                }
                Permission::Deny if literal => {
                    deny_literal.insert(name);
                }
                Permission::Deny => {
                    deny_prefixed.insert(name);
                }
                Permission::Allow => allow.push(b),
                Permission::Any => {}
            }
        }
        let wildcard_allow = allow.iter().any(|b| {
            b.pattern_type == PatternType::Literal && b.resource_name == WILDCARD_RESOURCE
        });
        if wildcard_allow {
            return Decision::Allowed;
        }
        let dominated = |b: &AclBinding| {
            let name = b.resource_name.as_str();
            (b.pattern_type == PatternType::Literal && deny_literal.contains(name))
                || name
                    .char_indices()
                    .map(|(i, c)| &name[..i + c.len_utf8()])
                    .any(|prefix| deny_prefixed.contains(prefix))
        };
        if allow.iter().any(|b| !dominated(b)) {
            Decision::Allowed
        } else {
            Decision::Denied
        }
    }
}

/// The free-function form of [`AclIndex::authorize`].
pub fn authorize(
    acls: &AclIndex,
    cfg: &AuthorizerConfig,
    principal: &str,
    host: &str,
    operation: Operation,
    resource_type: ResourceType,
    resource_name: &str,
) -> Decision {
    acls.authorize(
        cfg,
        principal,
        host,
        operation,
        resource_type,
        resource_name,
    )
}

/// Kafka's `StandardAuthorizerData.findResult` minus the resource-name check: principal, host
/// and operation (with the implied operations of ALLOW ACLs).
fn entry_matches(b: &AclBinding, principal: &str, host: &str, operation: Operation) -> bool {
    principal_matches(b, principal)
        && host_matches(b, host)
        && operation_matches(b.operation, b.permission, operation)
}

/// The ACL names the principal exactly, or is `User:*`.
fn principal_matches(b: &AclBinding, principal: &str) -> bool {
    b.principal == principal || b.principal == WILDCARD_PRINCIPAL
}

/// The ACL's host is `*` or the client's address. Two spellings of one IP address are equal
/// (Java writes `::1` as `0:0:0:0:0:0:0:1`, so ACLs written for Kafka still match).
fn host_matches(b: &AclBinding, host: &str) -> bool {
    b.host == WILDCARD_HOST
        || b.host == host
        || matches!(
            (b.host.parse::<IpAddr>(), host.parse::<IpAddr>()),
            (Ok(acl), Ok(client)) if acl == client
        )
}

/// Whether an ACL's operation covers the requested one: equal, ALL, or implied by an ALLOW
/// (READ, WRITE, DELETE, ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS).
fn operation_matches(acl: Operation, permission: Permission, requested: Operation) -> bool {
    use Operation::*;
    if acl == All || acl == requested {
        return true;
    }
    permission == Permission::Allow
        && match requested {
            Describe => matches!(acl, Read | Write | Delete | Alter),
            DescribeConfigs => acl == AlterConfigs,
            _ => false,
        }
}

#[cfg(test)]
mod tests;
