//! ACLs and SCRAM credentials over HTTP (SPEC §11). Brokers forward the Kafka admin APIs
//! (CreateAcls, DeleteAcls, AlterUserScramCredentials) here, `dmq acl` and `dmq user` call it,
//! and brokers read both back with the cluster image (`GET /api/v1/metadata/cluster`).
//!
//! ```text
//!   GET  /api/v1/metadata/acls                      {"acls": [binding…]}
//!   POST /api/v1/metadata/acls                      {"bindings": [binding…]} → {"results": [{"error": null | "…"}]}
//!   POST /api/v1/metadata/acls/delete               {"filters": [filter…]}   → {"results": [{"deleted": [binding…]}]}
//!   GET  /api/v1/metadata/scram-users               {"users": [{"user", "mechanisms": [{"mechanism", "iterations"}]}]}
//!   POST /api/v1/metadata/scram-credentials         {"upsertions": […], "deletions": […]} → {"results": [{"user", "errorCode", "message"}]}
//! ```
//!
//! The list of users shows mechanisms and iteration counts only; salts and keys go to brokers
//! inside the cluster image, never to this listing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use dmq_auth::{AclBinding, AclBindingFilter};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{ensure_consistent, parse_json, result_error, ReadQuery};
use crate::error::MetadataError;
use crate::node::NodeShared;
use crate::security::{ScramDelete, ScramUpsert};
use crate::state::{Command, CommandResult};

type Shared = Arc<NodeShared>;
type ApiResult<T> = Result<T, MetadataError>;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/metadata/acls", get(list_acls).post(create_acls))
        .route("/api/v1/metadata/acls/delete", post(delete_acls))
        .route("/api/v1/metadata/scram-users", get(list_scram_users))
        .route("/api/v1/metadata/scram-credentials", post(alter_scram))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateAclsRequest {
    bindings: Vec<AclBinding>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeleteAclsRequest {
    filters: Vec<AclBindingFilter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AlterScramRequest {
    #[serde(default)]
    upsertions: Vec<ScramUpsert>,
    #[serde(default)]
    deletions: Vec<ScramDelete>,
}

/// Every ACL (`?consistent=true` for the leader's committed state).
async fn list_acls(
    State(shared): State<Shared>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<Value>> {
    ensure_consistent(&shared, &q).await?;
    let data = shared.sm.read();
    Ok(Json(json!({
        "acls": data.state.security.acls,
        "version": data.state.version,
    })))
}

/// CreateAcls: one Raft entry for the whole request; per-binding results.
async fn create_acls(State(shared): State<Shared>, body: Bytes) -> ApiResult<Json<Value>> {
    let req: CreateAclsRequest = parse_json(&body)?;
    shared.require_leader()?;
    match shared
        .propose(Command::CreateAcls {
            bindings: req.bindings,
        })
        .await?
    {
        CommandResult::AclsCreated { errors } => Ok(Json(json!({
            "results": errors.into_iter().map(|e| json!({"error": e})).collect::<Vec<_>>(),
        }))),
        other => Err(result_error(other)),
    }
}

/// DeleteAcls: one Raft entry; per filter, the bindings removed.
async fn delete_acls(State(shared): State<Shared>, body: Bytes) -> ApiResult<Json<Value>> {
    let req: DeleteAclsRequest = parse_json(&body)?;
    shared.require_leader()?;
    match shared
        .propose(Command::DeleteAcls {
            filters: req.filters,
        })
        .await?
    {
        CommandResult::AclsDeleted { deleted } => Ok(Json(json!({
            "results": deleted.into_iter().map(|d| json!({"deleted": d})).collect::<Vec<_>>(),
        }))),
        other => Err(result_error(other)),
    }
}

/// The SCRAM users: mechanisms and iterations, no salts or keys.
async fn list_scram_users(
    State(shared): State<Shared>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<Value>> {
    ensure_consistent(&shared, &q).await?;
    let data = shared.sm.read();
    let users: Vec<Value> = data
        .state
        .security
        .scram
        .iter()
        .map(|(user, mechs)| {
            let mechs: Vec<Value> = mechs
                .iter()
                .map(|(m, c)| json!({"mechanism": m, "iterations": c.iterations}))
                .collect();
            json!({"user": user, "mechanisms": mechs})
        })
        .collect();
    Ok(Json(json!({"users": users})))
}

/// AlterUserScramCredentials with keys already derived: one Raft entry; per-user results.
async fn alter_scram(State(shared): State<Shared>, body: Bytes) -> ApiResult<Json<Value>> {
    let req: AlterScramRequest = parse_json(&body)?;
    shared.require_leader()?;
    match shared
        .propose(Command::AlterScram {
            upsertions: req.upsertions,
            deletions: req.deletions,
        })
        .await?
    {
        CommandResult::ScramAltered { results } => Ok(Json(json!({"results": results}))),
        other => Err(result_error(other)),
    }
}

/// The ACL decision on one HTTP call (SPEC §11): everything is allowed with the authorizer off;
/// otherwise the call's principal needs what [`dmq_auth::http_access`] names, with this node's
/// committed ACLs.
pub(crate) fn authorize_http(
    shared: &NodeShared,
    call: &dmq_types::http::HttpCall<'_>,
) -> dmq_types::http::HttpVerdict {
    let Some(a) = shared
        .config
        .security
        .as_ref()
        .map(|s| &s.authorizer)
        .filter(|a| a.enabled)
    else {
        return Ok(());
    };
    let cfg = dmq_auth::AuthorizerConfig {
        super_users: a.super_users.clone(),
        allow_everyone_if_no_acl_found: a.allow_everyone_if_no_acl_found,
    };
    dmq_auth::decide_http(
        &cfg.super_users,
        call.principal,
        call.method,
        call.path,
        call.query,
        |op, rt, name| {
            let acls = dmq_auth::AclIndex::new(shared.sm.read().state.security.acls.clone());
            acls.authorize(&cfg, call.principal, &call.host, op, rt, name)
        },
    )
}
