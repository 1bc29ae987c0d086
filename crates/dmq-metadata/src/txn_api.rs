//! Transactions in the metadata quorum (SPEC §9): the brokers' transaction coordinators
//! propose every change here, and read the state back.
//!
//! ```text
//!   coordinator broker ── POST /api/v1/metadata/transactions {"op": "INIT", …} ──▶ one Txn entry
//!   coordinator broker ── GET  /api/v1/metadata/transactions                  ──▶ all (drives markers, timeouts)
//!   operators, brokers ── GET  /api/v1/metadata/transactions/{id}             ──▶ one
//! ```
//!
//! A refused op answers 409 with Kafka's error name as `error` (CONCURRENT_TRANSACTIONS,
//! PRODUCER_FENCED, …), which the broker passes on to the client as its code.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::api::{ensure_consistent, parse_json, result_error, ReadQuery};
use crate::error::MetadataError;
use crate::node::NodeShared;
use crate::state::{Command, CommandResult, TxnError, TxnOp};

type Shared = Arc<NodeShared>;
type ApiResult<T> = Result<T, MetadataError>;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/api/v1/metadata/transactions",
            get(list_transactions).post(change_transaction),
        )
        .route(
            "/api/v1/metadata/transactions/{id}",
            get(describe_transaction),
        )
}

/// Internal (coordinator brokers): one [`TxnOp`] as one Raft entry; answers the transaction
/// after it, or 409 with Kafka's error name.
async fn change_transaction(State(shared): State<Shared>, body: Bytes) -> ApiResult<Json<Value>> {
    let op: TxnOp = parse_json(&body)?;
    shared.require_leader()?;
    match shared.propose(Command::Txn { op }).await? {
        CommandResult::Txn { transaction } => Ok(Json(json!(transaction))),
        // A bad timeout is the request's fault (400); the rest are refusals of the state (409).
        CommandResult::TxnRefused {
            error: TxnError::InvalidTransactionTimeout,
            message,
        } => Err(MetadataError::Invalid {
            code: TxnError::InvalidTransactionTimeout.name(),
            message,
        }),
        CommandResult::TxnRefused { error, message } => Err(MetadataError::Fenced {
            code: error.name(),
            message,
        }),
        other => Err(result_error(other)),
    }
}

/// Every transactional id's state (`?consistent=true` for the leader's committed state).
async fn list_transactions(
    State(shared): State<Shared>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<Value>> {
    ensure_consistent(&shared, &q).await?;
    let data = shared.sm.read();
    let txns: Vec<&dmq_types::txn::Transaction> = data.state.transactions.values().collect();
    Ok(Json(json!({
        "transactions": txns,
        "version": data.state.version,
    })))
}

/// One transactional id's state; 404 if unknown.
async fn describe_transaction(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<Value>> {
    ensure_consistent(&shared, &q).await?;
    let data = shared.sm.read();
    match data.state.transactions.get(&id) {
        Some(t) => Ok(Json(json!(t))),
        None => Err(MetadataError::NotFound(format!(
            "transactional id {id:?} is unknown"
        ))),
    }
}
