//! `POST /v1/txn`: compare guards, then the `success` or the `failure` ops, atomically at one index
//! (docs/http-api.md, "Transactions").
//!
//! ```text
//!  body ──json::parse_txn: shape, limits, Txn::validate (400/413 naming the op)──▶ Txn
//!       ──authorize every compare and op of both branches (403 naming the op)
//!       ──▶ writes:     propose (here if leading, else forwarded to the leader, as a key write) ──▶ Response::Txn
//!       ──▶ read-only:  read (ReadIndex, or consistency=stale) ──▶ KvQueryOutput::Txn
//!  ──answer::answer──▶ 200 {"succeeded", "index", "results"} with X-Tally-Index
//! ```
//!
//! A transaction with writes is a write in every way that matters to a client: forwarded like a put, never
//! retried by the forwarder, and a `504` leaves it unknown whether it applied. A read-only one is a read.

mod answer;
pub(crate) mod json;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use tally_kv::{Access, Command, OpList, OpPosition, Response as KvResponse, Scope, Txn, TxnOp};
use tally_node::{KvQuery, KvQueryOutput, ReadConsistency};

use super::auth::{Caller, authenticate};
use super::kv::{Written, propose, read, read_at_leader_if_full, read_body, write_response};
use super::params::Params;
use super::{ApiError, AppState, HEADER_INDEX};

/// `POST /v1/txn[?consistency=stale]`: the body is the transaction.
pub(crate) async fn post_txn(State(state): State<AppState>, request: Request) -> Response {
    let result = async {
        let (parts, body) = request.into_parts();
        let caller = authenticate(&state, &parts.headers)?;
        let consistency = Params::parse(parts.uri.query(), &["consistency"])?.consistency()?;
        let body = read_body(body, state.limits.max_body_bytes).await?;
        let txn = json::parse_txn(&body, &state.limits)?;
        authorize(&caller, &txn)?;
        if txn.is_read_only() {
            return read_txn(&state, &parts, body, txn, consistency).await;
        }
        if consistency == ReadConsistency::Stale {
            let (at, op) = first_write(&txn);
            return Err(ApiError::bad_request(format!(
                "{at} is a {}, so the transaction writes: it goes through the log and cannot be consistency=stale \
                 (only a transaction of get and list ops can)",
                op.name()
            )));
        }
        write_txn(&state, &parts, body, txn).await
    }
    .await;
    state.finish(result)
}

/// Checks the permission every compare and op needs (docs/http-api.md): read on the key of a compare or `get`
/// and on the prefix of a `list`, write on the key of a `put` or `delete` and on the prefix of a
/// `delete_prefix`. Both branches are checked, as either may run.
///
/// # Errors
/// `403 permission_denied` for the first compare or op not allowed, naming it.
fn authorize(caller: &Caller, txn: &Txn) -> Result<(), ApiError> {
    let named = |at: OpPosition| {
        move |mut error: ApiError| {
            error.message = format!("{at}: {}", error.message);
            error
        }
    };
    for (index, compare) in txn.compare.iter().enumerate() {
        let at = OpPosition { list: OpList::Compare, index };
        caller.require(Scope::Key(&compare.key), Access::Read).map_err(named(at))?;
    }
    for (list, ops) in [(OpList::Success, &txn.success), (OpList::Failure, &txn.failure)] {
        for (index, op) in ops.iter().enumerate() {
            let (scope, access) = match op {
                TxnOp::Put { key, .. } | TxnOp::Delete { key } => (Scope::Key(key), Access::Write),
                TxnOp::DeletePrefix { prefix } => (Scope::Prefix(prefix), Access::Write),
                TxnOp::Get { key } => (Scope::Key(key), Access::Read),
                TxnOp::List { prefix, .. } => (Scope::Prefix(prefix), Access::Read),
            };
            caller.require(scope, access).map_err(named(OpPosition { list, index }))?;
        }
    }
    Ok(())
}

/// The first write of a transaction that has one, and where it is.
///
/// # Panics
/// If the transaction is read-only: the caller checked that it is not.
fn first_write(txn: &Txn) -> (OpPosition, &TxnOp) {
    [(OpList::Success, &txn.success), (OpList::Failure, &txn.failure)]
        .into_iter()
        .flat_map(|(list, ops)| ops.iter().enumerate().map(move |(index, op)| (OpPosition { list, index }, op)))
        .find(|(_, op)| op.is_write())
        .unwrap_or_else(|| unreachable!("first_write of a read-only transaction"))
}

/// A read-only transaction: through the read path, as a `GET` (at the leader when this node's disk is full).
async fn read_txn(
    state: &AppState,
    parts: &Parts,
    body: Bytes,
    txn: Txn,
    consistency: ReadConsistency,
) -> Result<Response, ApiError> {
    if let Some(response) = read_at_leader_if_full(state, parts, body, consistency).await? {
        return Ok(response);
    }
    match read(state, KvQuery::Txn(txn.clone()), consistency).await? {
        (index, KvQueryOutput::Txn { succeeded, results }) => respond(&txn, index, succeeded, results),
        (_, KvQueryOutput::TxnRefused(error)) => Err(ApiError::bad_request(error.to_string())),
        (_, other) => Err(ApiError::unavailable(format!("internal error: a transaction was answered with {other:?}"))),
    }
}

/// A transaction with writes: proposed here if this node leads, else forwarded to the leader.
async fn write_txn(state: &AppState, parts: &Parts, body: Bytes, txn: Txn) -> Result<Response, ApiError> {
    let command = Command::Txn(txn);
    let written = propose(state, parts, body, &command).await?;
    let Command::Txn(txn) = command else { unreachable!("the command was built as a transaction above") };
    match written {
        Written::Forwarded(response) => Ok(response),
        Written::Applied(KvResponse::Txn { index, succeeded, results }) => respond(&txn, index, succeeded, results),
        Written::Applied(other) => write_response(other, None),
    }
}

/// `200` with the answer's JSON and `X-Tally-Index: index`.
fn respond(txn: &Txn, index: u64, succeeded: bool, results: Vec<tally_kv::TxnOpResult>) -> Result<Response, ApiError> {
    let answer = answer::answer(txn, index, succeeded, results)
        .map_err(|problem| ApiError::unavailable(format!("internal error: a transaction's results: {problem}")))?;
    let mut response = axum::Json(answer).into_response();
    response.headers_mut().insert(HEADER_INDEX, HeaderValue::from(index));
    Ok(response)
}
