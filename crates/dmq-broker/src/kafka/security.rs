//! The Kafka security admin APIs (SPEC §11): CreateAcls, DescribeAcls, DeleteAcls,
//! DescribeUserScramCredentials and AlterUserScramCredentials, as the AdminClient,
//! `kafka-acls.sh` and `kafka-configs.sh --alter --add-config SCRAM-…` use them; and
//! DescribeClientQuotas, which `kafka-configs.sh --describe --entity-type users` asks first.
//!
//! ACL and credential changes are committed in the metadata quorum; the broker that made one
//! pulls the new image before answering, so its own next request already sees the change,
//! and the others follow within a heartbeat. A SCRAM upsertion's salted password is turned
//! into StoredKey and ServerKey here; neither it nor a password reaches the quorum.

use std::collections::BTreeMap;

use dmq_auth::{
    AclBinding, AclBindingFilter, Operation, PatternType, Permission, ResourceType, SaltedPassword,
    ScramCredential, ScramMechanism,
};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    alter_user_scram_credentials_response::AlterUserScramCredentialsResult,
    describe_user_scram_credentials_response::{
        CredentialInfo, DescribeUserScramCredentialsResult,
    },
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, CreateAclsRequest,
    CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use serde_json::json;

use super::handlers::{s, Ctx};
use crate::error::BrokerError;

const RESOURCE_NOT_FOUND: i16 = 91;
const DUPLICATE_RESOURCE: i16 = 92;
const UNACCEPTABLE_CREDENTIAL: i16 = 93;

fn binding_of(
    resource_type: i8,
    name: &str,
    pattern_type: i8,
    principal: &str,
    host: &str,
    operation: i8,
    permission: i8,
) -> Result<AclBinding, String> {
    Ok(AclBinding {
        principal: principal.to_string(),
        host: host.to_string(),
        resource_type: ResourceType::from_code(resource_type).map_err(|e| e.to_string())?,
        resource_name: name.to_string(),
        pattern_type: PatternType::from_code(pattern_type).map_err(|e| e.to_string())?,
        operation: Operation::from_code(operation).map_err(|e| e.to_string())?,
        permission: Permission::from_code(permission).map_err(|e| e.to_string())?,
    })
}

#[allow(clippy::too_many_arguments)]
fn filter_of(
    resource_type: i8,
    name: Option<&str>,
    pattern_type: i8,
    principal: Option<&str>,
    host: Option<&str>,
    operation: i8,
    permission: i8,
) -> Result<AclBindingFilter, String> {
    Ok(AclBindingFilter {
        resource_type: ResourceType::from_code(resource_type).map_err(|e| e.to_string())?,
        resource_name: name.map(str::to_string),
        pattern_type: PatternType::from_code(pattern_type).map_err(|e| e.to_string())?,
        principal: principal.map(str::to_string),
        host: host.map(str::to_string),
        operation: Operation::from_code(operation).map_err(|e| e.to_string())?,
        permission: Permission::from_code(permission).map_err(|e| e.to_string())?,
    })
}

/// Pulls the image the change just committed, so this broker decides with it at once.
async fn settle(ctx: &Ctx<'_>) {
    if let Err(e) = ctx.shared.refresh_metadata().await {
        tracing::debug!("metadata pull after a security change: {e}");
    }
}

pub async fn create_acls(ctx: &mut Ctx<'_>, r: CreateAclsRequest) -> CreateAclsResponse {
    let fail = |code: ResponseError, msg: String| {
        AclCreationResult::default()
            .with_error_code(code.code())
            .with_error_message(Some(s(msg)))
    };
    if !ctx.allowed_on_cluster(Operation::Alter) {
        ctx.had_error = true;
        return CreateAclsResponse::default().with_results(
            r.creations
                .iter()
                .map(|_| {
                    fail(
                        ResponseError::ClusterAuthorizationFailed,
                        "ALTER on the cluster is needed".into(),
                    )
                })
                .collect(),
        );
    }
    // Per creation: the binding to store, or the reason it cannot be.
    let parsed: Vec<Result<AclBinding, String>> = r
        .creations
        .iter()
        .map(|c| {
            binding_of(
                c.resource_type,
                &c.resource_name,
                c.resource_pattern_type,
                &c.principal,
                &c.host,
                c.operation,
                c.permission_type,
            )
            .and_then(|b| b.validate().map(|()| b).map_err(|e| e.to_string()))
        })
        .collect();
    let valid: Vec<AclBinding> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
    let stored = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        ctx.shared.meta.create_acls(&valid).await
    };
    settle(ctx).await;
    let mut stored = match stored {
        Ok(v) => v.into_iter(),
        Err(e) => {
            tracing::warn!("CreateAcls: {e}");
            ctx.had_error = true;
            return CreateAclsResponse::default().with_results(
                parsed
                    .iter()
                    .map(|_| fail(ResponseError::UnknownServerError, e.to_string()))
                    .collect(),
            );
        }
    };
    let results = parsed
        .into_iter()
        .map(|p| match p {
            Err(why) => {
                ctx.had_error = true;
                fail(ResponseError::InvalidRequest, why)
            }
            Ok(_) => match stored.next().flatten() {
                None => AclCreationResult::default(),
                Some(why) => {
                    ctx.had_error = true;
                    fail(ResponseError::InvalidRequest, why)
                }
            },
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

pub fn describe_acls(ctx: &mut Ctx<'_>, r: DescribeAclsRequest) -> DescribeAclsResponse {
    let fail = |code: ResponseError, msg: String| {
        DescribeAclsResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(s(msg)))
    };
    if !ctx.allowed_on_cluster(Operation::Describe) {
        ctx.had_error = true;
        return fail(
            ResponseError::ClusterAuthorizationFailed,
            "DESCRIBE on the cluster is needed".into(),
        );
    }
    let filter = match filter_of(
        r.resource_type_filter,
        r.resource_name_filter.as_deref(),
        r.pattern_type_filter,
        r.principal_filter.as_deref(),
        r.host_filter.as_deref(),
        r.operation,
        r.permission_type,
    ) {
        Ok(f) => f,
        Err(why) => {
            ctx.had_error = true;
            return fail(ResponseError::InvalidRequest, why);
        }
    };
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for b in ctx.shared.security.acls() {
        if !filter.matches(&b) {
            continue;
        }
        by_resource
            .entry((
                b.resource_type.code(),
                b.resource_name.clone(),
                b.pattern_type.code(),
            ))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(s(b.principal))
                    .with_host(s(b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
    }
    DescribeAclsResponse::default().with_resources(
        by_resource
            .into_iter()
            .map(|((rt, name, pt), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(rt)
                    .with_resource_name(s(name))
                    .with_pattern_type(pt)
                    .with_acls(acls)
            })
            .collect(),
    )
}

pub async fn delete_acls(ctx: &mut Ctx<'_>, r: DeleteAclsRequest) -> DeleteAclsResponse {
    let fail = |code: ResponseError, msg: String| {
        DeleteAclsFilterResult::default()
            .with_error_code(code.code())
            .with_error_message(Some(s(msg)))
    };
    if !ctx.allowed_on_cluster(Operation::Alter) {
        ctx.had_error = true;
        return DeleteAclsResponse::default().with_filter_results(
            r.filters
                .iter()
                .map(|_| {
                    fail(
                        ResponseError::ClusterAuthorizationFailed,
                        "ALTER on the cluster is needed".into(),
                    )
                })
                .collect(),
        );
    }
    let parsed: Vec<Result<AclBindingFilter, String>> = r
        .filters
        .iter()
        .map(|f| {
            filter_of(
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                f.principal_filter.as_deref(),
                f.host_filter.as_deref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclBindingFilter> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
    let deleted = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        ctx.shared.meta.delete_acls(&valid).await
    };
    settle(ctx).await;
    let mut deleted = match deleted {
        Ok(d) => d.into_iter(),
        Err(e) => {
            tracing::warn!("DeleteAcls: {e}");
            ctx.had_error = true;
            return DeleteAclsResponse::default().with_filter_results(
                parsed
                    .iter()
                    .map(|_| fail(ResponseError::UnknownServerError, e.to_string()))
                    .collect(),
            );
        }
    };
    let results = parsed
        .into_iter()
        .map(|p| match p {
            Err(why) => {
                ctx.had_error = true;
                fail(ResponseError::InvalidRequest, why)
            }
            Ok(_) => DeleteAclsFilterResult::default().with_matching_acls(
                deleted
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|b| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type.code())
                            .with_resource_name(s(b.resource_name))
                            .with_pattern_type(b.pattern_type.code())
                            .with_principal(s(b.principal))
                            .with_host(s(b.host))
                            .with_operation(b.operation.code())
                            .with_permission_type(b.permission.code())
                    })
                    .collect(),
            ),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

/// DescribeClientQuotas (v0–1): the quotas matching a filter. dmq enforces no client quotas
/// (AlterClientQuotas is not offered), so a valid filter matches no entity and the answer is an
/// empty list, which is what Kafka answers for a cluster without quotas. The filter is still
/// checked as Kafka checks it (known entity types, each once, a name for an exact match), and the caller needs DESCRIBE_CONFIGS on the cluster.
pub fn describe_client_quotas(
    ctx: &mut Ctx<'_>,
    r: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let failed = |ctx: &mut Ctx<'_>, code: ResponseError, message: String| {
        ctx.had_error = true;
        DescribeClientQuotasResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(s(message)))
            .with_entries(None)
    };
    if !ctx.allowed_on_cluster(Operation::DescribeConfigs) {
        return failed(
            ctx,
            ResponseError::ClusterAuthorizationFailed,
            "DESCRIBE_CONFIGS on the cluster is needed".into(),
        );
    }
    if let Err(why) = client_quota_filter_problem(&r) {
        return failed(ctx, ResponseError::InvalidRequest, why);
    }
    DescribeClientQuotasResponse::default().with_entries(Some(Vec::new()))
}

/// Kafka's checks of a client-quota filter (`ClientQuotaFilterComponent`).
fn client_quota_filter_problem(r: &DescribeClientQuotasRequest) -> Result<(), String> {
    let mut seen = Vec::new();
    for c in &r.components {
        let entity = c.entity_type.as_str();
        if !matches!(entity, "user" | "client-id" | "ip") {
            return Err(format!("Custom entity type {entity:?} not supported"));
        }
        if seen.contains(&entity) {
            return Err(format!("Duplicate {entity} filter component entity type"));
        }
        seen.push(entity);
        // A default (1) or any-name (2) match ignores the name, as Kafka does.
        match (c.match_type, &c._match) {
            (0, Some(_)) | (1 | 2, _) => {}
            (0, None) => return Err(format!("Exact match on {entity} needs a name")),
            (t, _) => return Err(format!("Unknown match type {t}")),
        }
    }
    Ok(())
}

pub fn describe_user_scram_credentials(
    ctx: &mut Ctx<'_>,
    r: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !ctx.allowed_on_cluster(Operation::Describe) {
        ctx.had_error = true;
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(s("DESCRIBE on the cluster is needed")));
    }
    let security = &ctx.shared.security;
    // Null or empty: every user with a credential.
    let (users, all) = match &r.users {
        Some(u) if !u.is_empty() => (u.iter().map(|u| u.name.to_string()).collect(), false),
        _ => (security.scram_users(), true),
    };
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for u in &users {
        *seen.entry(u.as_str()).or_default() += 1;
    }
    let results = users
        .iter()
        .map(|user| {
            let result = DescribeUserScramCredentialsResult::default().with_user(s(user.clone()));
            if !all && seen.get(user.as_str()).copied().unwrap_or(0) > 1 {
                return result
                    .with_error_code(DUPLICATE_RESOURCE)
                    .with_error_message(Some(s("the user is named more than once")));
            }
            let infos = security.scram_mechanisms(user);
            if infos.is_empty() {
                return result
                    .with_error_code(RESOURCE_NOT_FOUND)
                    .with_error_message(Some(s(format!(
                        "Attempt to describe a user credential that does not exist: {user}"
                    ))));
            }
            result.with_credential_infos(
                infos
                    .into_iter()
                    .map(|(m, iterations)| {
                        CredentialInfo::default()
                            .with_mechanism(m.code())
                            .with_iterations(iterations as i32)
                    })
                    .collect(),
            )
        })
        .collect();
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

pub async fn alter_user_scram_credentials(
    ctx: &mut Ctx<'_>,
    r: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let users: Vec<String> = {
        let mut u: Vec<String> = r
            .deletions
            .iter()
            .map(|d| d.name.to_string())
            .chain(r.upsertions.iter().map(|u| u.name.to_string()))
            .collect();
        u.dedup();
        let mut seen = std::collections::BTreeSet::new();
        u.retain(|x| seen.insert(x.clone()));
        u
    };
    let result = |user: &str, code: i16, msg: Option<String>| {
        AlterUserScramCredentialsResult::default()
            .with_user(s(user.to_string()))
            .with_error_code(code)
            .with_error_message(msg.map(s))
    };
    if !ctx.allowed_on_cluster(Operation::Alter) {
        ctx.had_error = true;
        let code = ResponseError::ClusterAuthorizationFailed.code();
        return AlterUserScramCredentialsResponse::default().with_results(
            users
                .iter()
                .map(|u| result(u, code, Some("ALTER on the cluster is needed".into())))
                .collect(),
        );
    }
    // Checks made here, per user; the first failing one answers for the user.
    let mut refused: BTreeMap<String, (i16, String)> = BTreeMap::new();
    let mut deletions = Vec::new();
    for d in &r.deletions {
        let user = d.name.to_string();
        match ScramMechanism::from_code(d.mechanism) {
            Ok(m) => deletions.push(json!({"user": user, "mechanism": m})),
            Err(_) => {
                refused.entry(user).or_insert((
                    ResponseError::UnsupportedSaslMechanism.code(),
                    format!("unknown SCRAM mechanism {}", d.mechanism),
                ));
            }
        }
    }
    let mut upsertions = Vec::new();
    for u in &r.upsertions {
        let user = u.name.to_string();
        if user.is_empty() {
            refused
                .entry(user)
                .or_insert((UNACCEPTABLE_CREDENTIAL, "the user name is empty".into()));
            continue;
        }
        let mech = match ScramMechanism::from_code(u.mechanism) {
            Ok(m) => m,
            Err(_) => {
                refused.entry(user).or_insert((
                    ResponseError::UnsupportedSaslMechanism.code(),
                    format!("unknown SCRAM mechanism {}", u.mechanism),
                ));
                continue;
            }
        };
        let iterations = u32::try_from(u.iterations).unwrap_or(0);
        let salted = SaltedPassword::new(u.salted_password.to_vec());
        match ScramCredential::from_salted_password(mech, &u.salt, &salted, iterations) {
            Ok(credential) => {
                upsertions.push(json!({"user": user, "mechanism": mech, "credential": credential}))
            }
            Err(e) => {
                refused
                    .entry(user)
                    .or_insert((e.kafka_error_code(), e.to_string()));
            }
        }
    }
    let keep = |v: &serde_json::Value| v["user"].as_str().is_some_and(|u| !refused.contains_key(u));
    upsertions.retain(keep);
    deletions.retain(keep);
    let answered: Result<BTreeMap<String, (i16, Option<String>)>, BrokerError> =
        if upsertions.is_empty() && deletions.is_empty() {
            Ok(BTreeMap::new())
        } else {
            ctx.shared
                .meta
                .alter_scram(json!({"upsertions": upsertions, "deletions": deletions}))
                .await
        };
    settle(ctx).await;
    let answered = match answered {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("AlterUserScramCredentials: {e}");
            ctx.had_error = true;
            let code = ResponseError::UnknownServerError.code();
            return AlterUserScramCredentialsResponse::default().with_results(
                users
                    .iter()
                    .map(|u| result(u, code, Some(e.to_string())))
                    .collect(),
            );
        }
    };
    let results = users
        .iter()
        .map(|u| {
            if let Some((code, msg)) = refused.get(u) {
                ctx.had_error = true;
                return result(u, *code, Some(msg.clone()));
            }
            match answered.get(u) {
                Some((code, msg)) => {
                    if *code != 0 {
                        ctx.had_error = true;
                    }
                    result(u, *code, msg.clone())
                }
                None => result(u, 0, None),
            }
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}
