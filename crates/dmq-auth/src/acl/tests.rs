//! One test per authorizer rule, named after it. Reference: Kafka's
//! `StandardAuthorizerData.authorize`/`findResult` and `Authorizer.authorizeByResourceType`.

use super::*;
use Operation::*;
use ResourceType::*;

const ALICE: &str = "User:alice";
const BOB: &str = "User:bob";
const HOST: &str = "10.0.0.1";

/// An ACL on a topic from anywhere, to shorten the tables.
fn acl(
    principal: &str,
    pattern: PatternType,
    name: &str,
    operation: Operation,
    permission: Permission,
) -> AclBinding {
    AclBinding {
        principal: principal.to_owned(),
        host: WILDCARD_HOST.to_owned(),
        resource_type: Topic,
        resource_name: name.to_owned(),
        pattern_type: pattern,
        operation,
        permission,
    }
}

fn allow(principal: &str, name: &str, operation: Operation) -> AclBinding {
    acl(
        principal,
        PatternType::Literal,
        name,
        operation,
        Permission::Allow,
    )
}

fn deny(principal: &str, name: &str, operation: Operation) -> AclBinding {
    acl(
        principal,
        PatternType::Literal,
        name,
        operation,
        Permission::Deny,
    )
}

fn strict() -> AuthorizerConfig {
    AuthorizerConfig {
        super_users: vec!["User:admin".to_owned()],
        allow_everyone_if_no_acl_found: false,
    }
}

/// Asserts the decision of `op` on topic `name` for each `(principal, host, op, name, expected)`.
fn check(
    acls: Vec<AclBinding>,
    cfg: &AuthorizerConfig,
    cases: &[(&str, &str, Operation, &str, Decision)],
) {
    let index = AclIndex::new(acls);
    for &(principal, host, op, name, expected) in cases {
        let rule = index.explain(cfg, principal, host, op, Topic, name);
        assert_eq!(
            rule.decision(),
            expected,
            "{principal} from {host} {op} on topic {name}: rule {rule}"
        );
    }
}

use Decision::{Allowed, Denied};

#[test]
fn literal_allow_grants_only_that_principal_operation_and_resource() {
    check(
        vec![allow(ALICE, "orders", Read)],
        &strict(),
        &[
            (ALICE, HOST, Read, "orders", Allowed),
            (ALICE, HOST, Write, "orders", Denied),
            (BOB, HOST, Read, "orders", Denied),
            (ALICE, HOST, Read, "orders2", Denied),
            (ALICE, HOST, Read, "order", Denied),
        ],
    );
}

#[test]
fn deny_wins_over_allow() {
    check(
        vec![allow(ALICE, "orders", Read), deny(ALICE, "orders", Read)],
        &strict(),
        &[(ALICE, HOST, Read, "orders", Denied)],
    );
}

#[test]
fn super_user_bypasses_every_acl_including_deny() {
    check(
        vec![deny("User:admin", "orders", All), deny("User:*", "*", All)],
        &strict(),
        &[
            ("User:admin", HOST, Write, "orders", Allowed),
            ("User:admin", HOST, Delete, "no-acl-topic", Allowed),
        ],
    );
}

#[test]
fn super_users_are_compared_as_exact_strings() {
    let cfg = AuthorizerConfig {
        super_users: vec!["User:*".to_owned(), "User:Admin".to_owned()],
        allow_everyone_if_no_acl_found: false,
    };
    check(
        vec![],
        &cfg,
        &[
            (ALICE, HOST, Read, "t", Denied),
            ("User:admin", HOST, Read, "t", Denied),
            ("User:Admin", HOST, Read, "t", Allowed),
        ],
    );
}

#[test]
fn prefixed_pattern_matches_names_that_start_with_it() {
    check(
        vec![acl(
            ALICE,
            PatternType::Prefixed,
            "orders-",
            Write,
            Permission::Allow,
        )],
        &strict(),
        &[
            (ALICE, HOST, Write, "orders-eu", Allowed),
            (ALICE, HOST, Write, "orders-", Allowed),
            (ALICE, HOST, Write, "orders", Denied),
            (ALICE, HOST, Write, "x-orders-eu", Denied),
        ],
    );
}

#[test]
fn wildcard_resource_matches_every_name_of_its_type() {
    let mut group_acl = allow(ALICE, "*", Read);
    group_acl.resource_type = Group;
    let index = AclIndex::new(vec![allow(ALICE, "*", Read), group_acl]);
    let cfg = strict();
    assert_eq!(
        index.authorize(&cfg, ALICE, HOST, Read, Topic, "any"),
        Allowed
    );
    assert_eq!(
        index.authorize(&cfg, ALICE, HOST, Read, Group, "g"),
        Allowed
    );
    assert_eq!(
        index.authorize(&cfg, ALICE, HOST, Read, TransactionalId, "t"),
        Denied
    );
}

#[test]
fn prefixed_star_is_a_plain_prefix_not_a_wildcard() {
    check(
        vec![acl(
            ALICE,
            PatternType::Prefixed,
            "*",
            Read,
            Permission::Allow,
        )],
        &strict(),
        &[
            (ALICE, HOST, Read, "orders", Denied),
            (ALICE, HOST, Read, "*x", Allowed),
        ],
    );
}

#[test]
fn wildcard_principal_matches_every_principal() {
    check(
        vec![allow("User:*", "orders", Read)],
        &strict(),
        &[
            (ALICE, HOST, Read, "orders", Allowed),
            (BOB, HOST, Read, "orders", Allowed),
            ("User:ANONYMOUS", HOST, Read, "orders", Allowed),
        ],
    );
}

#[test]
fn principal_is_compared_exactly() {
    check(
        vec![allow(ALICE, "orders", Read)],
        &strict(),
        &[
            ("User:Alice", HOST, Read, "orders", Denied),
            ("Group:alice", HOST, Read, "orders", Denied),
        ],
    );
}

#[test]
fn host_matches_exactly_or_by_wildcard() {
    let mut from_one_host = allow(ALICE, "orders", Read);
    from_one_host.host = "10.0.0.1".to_owned();
    check(
        vec![from_one_host],
        &strict(),
        &[
            (ALICE, "10.0.0.1", Read, "orders", Allowed),
            (ALICE, "10.0.0.2", Read, "orders", Denied),
        ],
    );
    check(
        vec![allow(ALICE, "orders", Read)],
        &strict(),
        &[(ALICE, "192.168.1.9", Read, "orders", Allowed)],
    );
}

#[test]
fn host_matches_other_spellings_of_the_same_ip() {
    let mut ipv6 = allow(ALICE, "orders", Read);
    ipv6.host = "0:0:0:0:0:0:0:1".to_owned();
    check(
        vec![ipv6],
        &strict(),
        &[
            (ALICE, "::1", Read, "orders", Allowed),
            (ALICE, "::2", Read, "orders", Denied),
        ],
    );
}

#[test]
fn deny_from_one_host_leaves_other_hosts_allowed() {
    let mut deny_host = deny(ALICE, "orders", Read);
    deny_host.host = "10.0.0.66".to_owned();
    check(
        vec![allow(ALICE, "orders", Read), deny_host],
        &strict(),
        &[
            (ALICE, "10.0.0.66", Read, "orders", Denied),
            (ALICE, HOST, Read, "orders", Allowed),
        ],
    );
}

#[test]
fn allow_of_read_write_delete_alter_implies_describe() {
    for op in [Read, Write, Delete, Alter] {
        check(
            vec![allow(ALICE, "orders", op)],
            &strict(),
            &[(ALICE, HOST, Describe, "orders", Allowed)],
        );
    }
    for op in [
        Create,
        AlterConfigs,
        DescribeConfigs,
        ClusterAction,
        IdempotentWrite,
    ] {
        check(
            vec![allow(ALICE, "orders", op)],
            &strict(),
            &[(ALICE, HOST, Describe, "orders", Denied)],
        );
    }
}

#[test]
fn allow_of_alter_configs_implies_describe_configs() {
    check(
        vec![allow(ALICE, "orders", AlterConfigs)],
        &strict(),
        &[
            (ALICE, HOST, DescribeConfigs, "orders", Allowed),
            (ALICE, HOST, AlterConfigs, "orders", Allowed),
            (ALICE, HOST, Describe, "orders", Denied),
        ],
    );
}

#[test]
fn implied_operations_do_not_go_the_other_way() {
    check(
        vec![
            allow(ALICE, "orders", Describe),
            allow(ALICE, "orders", DescribeConfigs),
        ],
        &strict(),
        &[
            (ALICE, HOST, Read, "orders", Denied),
            (ALICE, HOST, AlterConfigs, "orders", Denied),
        ],
    );
}

#[test]
fn deny_of_read_does_not_deny_describe() {
    check(
        vec![
            allow(ALICE, "orders", Describe),
            deny(ALICE, "orders", Read),
        ],
        &strict(),
        &[
            (ALICE, HOST, Describe, "orders", Allowed),
            (ALICE, HOST, Read, "orders", Denied),
        ],
    );
}

#[test]
fn all_matches_every_operation() {
    let every_op = [
        Read,
        Write,
        Create,
        Delete,
        Alter,
        Describe,
        ClusterAction,
        DescribeConfigs,
        AlterConfigs,
        IdempotentWrite,
    ];
    let index = AclIndex::new(vec![allow(ALICE, "orders", All)]);
    for op in every_op {
        assert_eq!(
            index.authorize(&strict(), ALICE, HOST, op, Topic, "orders"),
            Allowed,
            "{op}"
        );
    }
    let index = AclIndex::new(vec![
        allow(ALICE, "orders", All),
        deny(ALICE, "orders", All),
    ]);
    for op in every_op {
        assert_eq!(
            index.authorize(&strict(), ALICE, HOST, op, Topic, "orders"),
            Denied,
            "{op}"
        );
    }
}

#[test]
fn no_acl_found_denies_by_default() {
    check(
        vec![allow(ALICE, "other", Read)],
        &strict(),
        &[(ALICE, HOST, Read, "orders", Denied)],
    );
    let empty = AclIndex::default();
    let rule = empty.explain(&strict(), ALICE, HOST, Read, Topic, "orders");
    assert_eq!(rule, Rule::NoAclFound { allowed: false });
}

#[test]
fn no_acl_found_allows_everyone_when_configured() {
    let open = AuthorizerConfig {
        super_users: vec![],
        allow_everyone_if_no_acl_found: true,
    };
    check(
        vec![allow(BOB, "other", Read)],
        &open,
        &[
            (ALICE, HOST, Read, "orders", Allowed),
            ("User:ANONYMOUS", HOST, Delete, "orders", Allowed),
        ],
    );
}

#[test]
fn any_acl_on_the_resource_closes_it_even_with_allow_everyone() {
    // Bob's ACL exists for "orders", so the no-ACL default no longer applies to anyone.
    let open = AuthorizerConfig {
        super_users: vec![],
        allow_everyone_if_no_acl_found: true,
    };
    let mut bob_elsewhere = allow(BOB, "orders", Read);
    bob_elsewhere.host = "10.9.9.9".to_owned();
    check(
        vec![bob_elsewhere.clone()],
        &open,
        &[
            (ALICE, HOST, Read, "orders", Denied),
            (BOB, HOST, Read, "orders", Denied),
        ],
    );
    let index = AclIndex::new(vec![bob_elsewhere]);
    assert_eq!(
        index.explain(&open, ALICE, HOST, Read, Topic, "orders"),
        Rule::NoMatchingAllow
    );
}

#[test]
fn prefixed_acl_counts_as_an_acl_on_the_resource() {
    let open = AuthorizerConfig {
        super_users: vec![],
        allow_everyone_if_no_acl_found: true,
    };
    check(
        vec![acl(
            BOB,
            PatternType::Prefixed,
            "ord",
            Read,
            Permission::Allow,
        )],
        &open,
        &[
            (ALICE, HOST, Read, "orders", Denied),
            (ALICE, HOST, Read, "payments", Allowed),
        ],
    );
}

#[test]
fn deny_on_prefix_overrides_allow_on_literal() {
    check(
        vec![
            allow(ALICE, "orders-eu", Write),
            acl(
                ALICE,
                PatternType::Prefixed,
                "orders-",
                Write,
                Permission::Deny,
            ),
        ],
        &strict(),
        &[(ALICE, HOST, Write, "orders-eu", Denied)],
    );
}

#[test]
fn deny_on_literal_overrides_allow_on_prefix() {
    check(
        vec![
            acl(
                ALICE,
                PatternType::Prefixed,
                "orders-",
                Write,
                Permission::Allow,
            ),
            deny(ALICE, "orders-eu", Write),
        ],
        &strict(),
        &[
            (ALICE, HOST, Write, "orders-eu", Denied),
            (ALICE, HOST, Write, "orders-us", Allowed),
        ],
    );
}

#[test]
fn deny_on_wildcard_overrides_allow_on_literal() {
    check(
        vec![allow(ALICE, "orders", Read), deny("User:*", "*", Read)],
        &strict(),
        &[(ALICE, HOST, Read, "orders", Denied)],
    );
}

#[test]
fn literal_acl_whose_name_is_a_prefix_does_not_match() {
    check(
        vec![allow(ALICE, "orders", Read)],
        &strict(),
        &[(ALICE, HOST, Read, "orders-eu", Denied)],
    );
}

#[test]
fn acls_of_other_resource_types_do_not_apply() {
    let mut group = allow(ALICE, "orders", Read);
    group.resource_type = Group;
    let index = AclIndex::new(vec![group]);
    assert_eq!(
        index.explain(&strict(), ALICE, HOST, Read, Topic, "orders"),
        Rule::NoAclFound { allowed: false }
    );
    assert_eq!(
        index.authorize(&strict(), ALICE, HOST, Read, Group, "orders"),
        Allowed
    );
}

#[test]
fn every_matching_prefix_length_is_consulted() {
    // Prefixes of several lengths, one of which denies: the deny must be found whatever the
    // order of the scan.
    check(
        vec![
            acl(ALICE, PatternType::Prefixed, "o", Read, Permission::Allow),
            acl(ALICE, PatternType::Prefixed, "ord", Read, Permission::Deny),
            acl(
                ALICE,
                PatternType::Prefixed,
                "orders-e",
                Read,
                Permission::Allow,
            ),
            acl(
                ALICE,
                PatternType::Prefixed,
                "orders-eu-long-prefix",
                Read,
                Permission::Deny,
            ),
        ],
        &strict(),
        &[
            (ALICE, HOST, Read, "orders-eu", Denied),
            (ALICE, HOST, Read, "oz", Allowed),
        ],
    );
}

#[test]
fn prefix_scan_respects_utf8_boundaries() {
    check(
        vec![acl(
            ALICE,
            PatternType::Prefixed,
            "é",
            Read,
            Permission::Allow,
        )],
        &strict(),
        &[
            (ALICE, HOST, Read, "éa", Allowed),
            (ALICE, HOST, Read, "e", Denied),
        ],
    );
}

#[test]
fn invalid_bindings_never_match() {
    let mut any_type = allow(ALICE, "orders", Read);
    any_type.resource_type = ResourceType::Any;
    let mut bad_principal = allow("alice", "orders", Read);
    bad_principal.principal = "alice".to_owned();
    let index = AclIndex::new(vec![any_type, bad_principal]);
    let open = AuthorizerConfig {
        super_users: vec![],
        allow_everyone_if_no_acl_found: true,
    };
    // Neither counts as an ACL on the resource either.
    assert_eq!(
        index.explain(&open, ALICE, HOST, Read, Topic, "orders"),
        Rule::NoAclFound { allowed: true }
    );
    assert_eq!(index.len(), 2, "kept for DescribeAcls");
}

#[test]
fn any_is_not_an_action() {
    let index = AclIndex::new(vec![allow("User:*", "*", All)]);
    assert_eq!(
        index.explain(&strict(), ALICE, HOST, Operation::Any, Topic, "t"),
        Rule::InvalidAction
    );
    assert_eq!(
        index.authorize(&strict(), ALICE, HOST, Read, ResourceType::Any, "t"),
        Denied
    );
}

#[test]
fn free_function_matches_the_method() {
    let index = AclIndex::new(vec![allow(ALICE, "orders", Read)]);
    assert_eq!(
        authorize(&index, &strict(), ALICE, HOST, Read, Topic, "orders"),
        Allowed
    );
}

// ---- authorize_by_resource_type (KIP-679) ----

fn by_type(acls: Vec<AclBinding>, cfg: &AuthorizerConfig, principal: &str) -> Decision {
    AclIndex::new(acls).authorize_by_resource_type(cfg, principal, HOST, Write, Topic)
}

#[test]
fn by_resource_type_allows_with_write_on_any_topic() {
    assert_eq!(
        by_type(vec![allow(ALICE, "orders", Write)], &strict(), ALICE),
        Allowed
    );
    assert_eq!(
        by_type(vec![allow(ALICE, "orders", Read)], &strict(), ALICE),
        Denied
    );
    assert_eq!(
        by_type(vec![allow(BOB, "orders", Write)], &strict(), ALICE),
        Denied
    );
    assert_eq!(by_type(vec![], &strict(), ALICE), Denied);
}

#[test]
fn by_resource_type_super_user_and_no_acl_default() {
    assert_eq!(
        by_type(vec![deny("User:*", "*", All)], &strict(), "User:admin"),
        Allowed
    );
    let open = AuthorizerConfig {
        super_users: vec![],
        allow_everyone_if_no_acl_found: true,
    };
    assert_eq!(by_type(vec![], &open, ALICE), Allowed);
}

#[test]
fn by_resource_type_literal_deny_dominates_the_same_literal_allow() {
    let acls = vec![allow(ALICE, "orders", Write), deny(ALICE, "orders", Write)];
    assert_eq!(by_type(acls, &strict(), ALICE), Denied);
    let acls = vec![
        allow(ALICE, "orders", Write),
        deny(ALICE, "orders", Write),
        allow(ALICE, "payments", Write),
    ];
    assert_eq!(by_type(acls, &strict(), ALICE), Allowed);
}

#[test]
fn by_resource_type_prefix_deny_dominates_allows_under_it() {
    let acls = vec![
        allow(ALICE, "orders-eu", Write),
        acl(
            ALICE,
            PatternType::Prefixed,
            "orders-e",
            Write,
            Permission::Allow,
        ),
        acl(
            ALICE,
            PatternType::Prefixed,
            "orders",
            Write,
            Permission::Deny,
        ),
    ];
    assert_eq!(by_type(acls, &strict(), ALICE), Denied);
    // A literal deny does not dominate a prefixed allow of the same name.
    let acls = vec![
        acl(
            ALICE,
            PatternType::Prefixed,
            "orders",
            Write,
            Permission::Allow,
        ),
        deny(ALICE, "orders", Write),
    ];
    assert_eq!(by_type(acls, &strict(), ALICE), Allowed);
}

#[test]
fn by_resource_type_wildcard_deny_and_allow() {
    let acls = vec![allow(ALICE, "orders", Write), deny(ALICE, "*", Write)];
    assert_eq!(by_type(acls, &strict(), ALICE), Denied);
    let acls = vec![allow(ALICE, "*", Write), deny(ALICE, "orders", Write)];
    assert_eq!(by_type(acls, &strict(), ALICE), Allowed);
}

#[test]
fn by_resource_type_has_no_implied_operations() {
    // ALLOW WRITE does not give DESCRIBE here, unlike in authorize.
    let index = AclIndex::new(vec![allow(ALICE, "orders", Write)]);
    assert_eq!(
        index.authorize_by_resource_type(&strict(), ALICE, HOST, Describe, Topic),
        Denied
    );
    let index = AclIndex::new(vec![allow(ALICE, "orders", All)]);
    assert_eq!(
        index.authorize_by_resource_type(&strict(), ALICE, HOST, Describe, Topic),
        Allowed
    );
}

// ---- validation (CreateAcls) ----

#[test]
fn validate_accepts_a_complete_binding() {
    allow(ALICE, "orders", Read).validate().expect("valid");
    let mut cluster = allow("User:*", CLUSTER_NAME, IdempotentWrite);
    cluster.resource_type = Cluster;
    cluster.validate().expect("valid");
}

#[test]
fn validate_refuses_filter_only_values_and_bad_fields() {
    let base = allow(ALICE, "orders", Read);
    let cases: Vec<(&str, AclBinding)> = vec![
        (
            "resourceType",
            AclBinding {
                resource_type: ResourceType::Any,
                ..base.clone()
            },
        ),
        (
            "patternType",
            AclBinding {
                pattern_type: PatternType::Any,
                ..base.clone()
            },
        ),
        (
            "patternType",
            AclBinding {
                pattern_type: PatternType::Match,
                ..base.clone()
            },
        ),
        (
            "operation",
            AclBinding {
                operation: Operation::Any,
                ..base.clone()
            },
        ),
        (
            "permissionType",
            AclBinding {
                permission: Permission::Any,
                ..base.clone()
            },
        ),
        (
            "resourceName",
            AclBinding {
                resource_name: String::new(),
                ..base.clone()
            },
        ),
        (
            "resourceName",
            AclBinding {
                resource_name: "x".repeat(4097),
                ..base.clone()
            },
        ),
        (
            "resourceName",
            AclBinding {
                resource_type: Cluster,
                ..base.clone()
            },
        ),
        (
            "principal",
            AclBinding {
                principal: "alice".to_owned(),
                ..base.clone()
            },
        ),
        (
            "principal",
            AclBinding {
                principal: "User:".to_owned(),
                ..base.clone()
            },
        ),
        (
            "host",
            AclBinding {
                host: String::new(),
                ..base.clone()
            },
        ),
    ];
    for (field, binding) in cases {
        let err = binding.validate().expect_err(field);
        match &err {
            AuthError::InvalidAclBinding { field: f, .. } => assert_eq!(*f, field, "{err}"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(err.kafka_error_code(), crate::error_codes::INVALID_REQUEST);
    }
    let err = AclBinding {
        resource_type: Cluster,
        ..base
    }
    .validate()
    .expect_err("cluster");
    assert!(err.to_string().contains("kafka-cluster"), "{err}");
}

// ---- filters (DescribeAcls, DeleteAcls) ----

#[test]
fn filter_any_matches_everything() {
    let b = acl(
        ALICE,
        PatternType::Prefixed,
        "orders",
        Read,
        Permission::Deny,
    );
    assert!(AclBindingFilter::any().matches(&b));
    assert!(!AclBindingFilter::any().matches_at_most_one());
}

#[test]
fn filter_exact_matches_only_that_binding() {
    let b = allow(ALICE, "orders", Read);
    let f = AclBindingFilter::exact(&b);
    assert!(f.matches_at_most_one());
    assert!(f.matches(&b));
    assert!(!f.matches(&allow(BOB, "orders", Read)));
    assert!(
        !f.matches(&allow(ALICE, "orders", All)),
        "ALL matches only ALL in a filter"
    );
    assert!(!f.matches(&deny(ALICE, "orders", Read)));
    let mut other_host = b.clone();
    other_host.host = HOST.to_owned();
    assert!(!f.matches(&other_host));
}

#[test]
fn filter_pattern_any_compares_names_exactly_across_pattern_types() {
    let f = AclBindingFilter {
        resource_type: Topic,
        resource_name: Some("orders".to_owned()),
        pattern_type: PatternType::Any,
        ..AclBindingFilter::any()
    };
    assert!(f.matches(&allow(ALICE, "orders", Read)));
    assert!(f.matches(&acl(
        ALICE,
        PatternType::Prefixed,
        "orders",
        Read,
        Permission::Allow
    )));
    assert!(!f.matches(&allow(ALICE, "*", Read)));
    assert!(!f.matches(&acl(
        ALICE,
        PatternType::Prefixed,
        "ord",
        Read,
        Permission::Allow
    )));
}

#[test]
fn filter_pattern_match_selects_bindings_that_apply_to_the_name() {
    let f = AclBindingFilter {
        resource_type: Topic,
        resource_name: Some("orders-eu".to_owned()),
        pattern_type: PatternType::Match,
        ..AclBindingFilter::any()
    };
    assert!(f.matches(&allow(ALICE, "orders-eu", Read)));
    assert!(f.matches(&allow(ALICE, "*", Read)));
    assert!(f.matches(&acl(
        ALICE,
        PatternType::Prefixed,
        "orders-",
        Read,
        Permission::Allow
    )));
    assert!(!f.matches(&allow(ALICE, "orders", Read)));
    assert!(!f.matches(&acl(
        ALICE,
        PatternType::Prefixed,
        "orders-eu-1",
        Read,
        Permission::Allow
    )));
    let mut group = allow(ALICE, "orders-eu", Read);
    group.resource_type = Group;
    assert!(!f.matches(&group));
}

#[test]
fn filter_literal_does_not_treat_star_as_wildcard() {
    let f = AclBindingFilter {
        resource_type: Topic,
        resource_name: Some("orders".to_owned()),
        pattern_type: PatternType::Literal,
        ..AclBindingFilter::any()
    };
    assert!(f.matches(&allow(ALICE, "orders", Read)));
    assert!(!f.matches(&allow(ALICE, "*", Read)));
    assert!(!f.matches(&acl(
        ALICE,
        PatternType::Prefixed,
        "orders",
        Read,
        Permission::Allow
    )));
}

#[test]
fn filter_without_name_matches_every_name_of_the_pattern_type() {
    let f = AclBindingFilter {
        pattern_type: PatternType::Prefixed,
        ..AclBindingFilter::any()
    };
    assert!(f.matches(&acl(
        ALICE,
        PatternType::Prefixed,
        "x",
        Read,
        Permission::Allow
    )));
    assert!(!f.matches(&allow(ALICE, "x", Read)));
}

#[test]
fn index_matching_lists_what_the_filter_selects() {
    let index = AclIndex::new(vec![allow(ALICE, "a", Read), allow(BOB, "b", Read)]);
    let f = AclBindingFilter {
        principal: Some(BOB.to_owned()),
        ..AclBindingFilter::any()
    };
    let found: Vec<_> = index.matching(&f).collect();
    assert_eq!(found, vec![&allow(BOB, "b", Read)]);
}

// ---- enums: codes, names, serde ----

#[test]
fn enum_codes_are_kafkas() {
    let codes = |v: &[i8]| v.to_vec();
    assert_eq!(
        codes(
            &ResourceType::VALUES
                .iter()
                .map(|v| v.code())
                .collect::<Vec<_>>()
        ),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        codes(
            &PatternType::VALUES
                .iter()
                .map(|v| v.code())
                .collect::<Vec<_>>()
        ),
        vec![1, 2, 3, 4]
    );
    assert_eq!(
        Operation::VALUES
            .iter()
            .map(|v| v.code())
            .collect::<Vec<_>>(),
        (1..=12).collect::<Vec<i8>>()
    );
    assert_eq!(
        Permission::VALUES
            .iter()
            .map(|v| v.code())
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(Operation::from_code(12), Ok(IdempotentWrite));
    assert_eq!(ResourceType::from_code(5), Ok(TransactionalId));
    for bad in [0, 6, 7, -1, 100] {
        let err = ResourceType::from_code(bad).expect_err("unknown");
        assert_eq!(
            err,
            AuthError::UnknownCode {
                kind: "resource type",
                code: bad
            }
        );
    }
    assert!(
        Operation::from_code(13).is_err(),
        "CREATE_TOKENS is not supported"
    );
    assert!(Permission::from_code(0).is_err(), "UNKNOWN is not a value");
}

#[test]
fn enum_names_parse_like_kafkas_cli() {
    assert_eq!("Topic".parse::<ResourceType>(), Ok(Topic));
    assert_eq!(
        "TRANSACTIONAL_ID".parse::<ResourceType>(),
        Ok(TransactionalId)
    );
    assert_eq!(
        "TransactionalId".parse::<ResourceType>(),
        Ok(TransactionalId)
    );
    assert_eq!("prefixed".parse::<PatternType>(), Ok(PatternType::Prefixed));
    assert_eq!("IdempotentWrite".parse::<Operation>(), Ok(IdempotentWrite));
    assert_eq!("IDEMPOTENT_WRITE".parse::<Operation>(), Ok(IdempotentWrite));
    assert_eq!("describe-configs".parse::<Operation>(), Ok(DescribeConfigs));
    assert_eq!("allow".parse::<Permission>(), Ok(Permission::Allow));
    let err = "Topics".parse::<ResourceType>().expect_err("unknown");
    assert!(err.to_string().contains("TRANSACTIONAL_ID"), "{err}");
}

#[test]
fn serde_uses_kafkas_names() {
    let b = AclBinding {
        resource_type: TransactionalId,
        ..acl(
            ALICE,
            PatternType::Prefixed,
            "tx-",
            IdempotentWrite,
            Permission::Allow,
        )
    };
    let json = serde_json::to_string(&b).expect("serialize");
    assert_eq!(
        json,
        r#"{"principal":"User:alice","host":"*","resourceType":"TRANSACTIONAL_ID","resourceName":"tx-","patternType":"PREFIXED","operation":"IDEMPOTENT_WRITE","permissionType":"ALLOW"}"#
    );
    let back: AclBinding = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, b);
    let lenient: Operation = serde_json::from_str("\"IdempotentWrite\"").expect("lenient");
    assert_eq!(lenient, IdempotentWrite);
    assert!(serde_json::from_str::<Operation>("\"Fly\"").is_err());
}

#[test]
fn authorizer_config_reads_services_json_names() {
    let cfg: AuthorizerConfig =
        serde_json::from_str(r#"{"superUsers":["User:admin"],"allowEveryoneIfNoAclFound":true}"#)
            .expect("deserialize");
    assert_eq!(cfg.super_users, vec!["User:admin".to_owned()]);
    assert!(cfg.allow_everyone_if_no_acl_found);
    assert_eq!(
        serde_json::from_str::<AuthorizerConfig>("{}").expect("defaults"),
        AuthorizerConfig::default()
    );
}

#[test]
fn resource_types_map_to_their_authorization_errors() {
    assert_eq!(Topic.authorization_error_code(), 29);
    assert_eq!(Group.authorization_error_code(), 30);
    assert_eq!(Cluster.authorization_error_code(), 31);
    assert_eq!(TransactionalId.authorization_error_code(), 53);
    assert!(Topic.supported_operations().contains(&Read));
    assert!(!Group.supported_operations().contains(&Write));
}
