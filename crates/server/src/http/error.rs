//! The JSON error every failed call answers with (docs/http-api.md, "Errors").

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tally_kv::AuthError;
use tally_node::RequestError;
use tally_raft::{NodeId, ProposeError};

/// A failed call: a status, a stable machine-readable `code`, and a message a person can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// The HTTP status.
    pub(crate) status: StatusCode,
    /// A stable code (`not_found`, `no_leader`, ...).
    pub(crate) code: &'static str,
    /// What happened and what to do about it.
    pub(crate) message: String,
    /// The leader, when known (filled in by the router for every error).
    pub(crate) leader: Option<NodeId>,
    /// For `cas_failed`: the key's modify index now (0: absent).
    pub(crate) current_modify_index: Option<u64>,
    /// For `compacted`: the oldest index the history still covers.
    pub(crate) oldest_index: Option<u64>,
}

impl ApiError {
    /// An error with no leader hint.
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), leader: None, current_modify_index: None, oldest_index: None }
    }

    /// `400 bad_request`.
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// `413 too_large`.
    pub(crate) fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    /// `404 not_found`.
    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// `401 unauthenticated`: auth is on and the request carries no valid token.
    pub(crate) fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// `403 permission_denied`: the token is valid but its user lacks the permission the message names.
    pub(crate) fn permission_denied(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "permission_denied", message)
    }

    /// The error for an auth command the store refused (deterministic: the same on every node).
    pub(crate) fn from_auth(error: &AuthError) -> ApiError {
        let (status, code) = match error {
            AuthError::UnknownUser { .. }
            | AuthError::UnknownRole { .. }
            | AuthError::PermissionNotGranted { .. }
            | AuthError::RoleNotGranted { .. } => (StatusCode::NOT_FOUND, "not_found"),
            AuthError::UserExists { .. } | AuthError::RoleExists { .. } => (StatusCode::CONFLICT, "already_exists"),
            AuthError::LimitReached { .. } => (StatusCode::CONFLICT, "limit_reached"),
            AuthError::NoAdmin | AuthError::WouldLockOut => (StatusCode::CONFLICT, "would_lock_out"),
            _ => (StatusCode::BAD_REQUEST, "bad_request"),
        };
        ApiError::new(status, code, format!("{error}; nothing changed"))
    }

    /// `503 no_leader`: nothing was written, retry.
    pub(crate) fn no_leader(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_leader", message)
    }

    /// `507 no_space`: this node's disk is full or its data is over the quota, and it leads, so it
    /// refused the write before anything was written. Safe to retry (leadership moves off a full disk).
    pub(crate) fn no_space(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "no_space", message)
    }

    /// `503 unavailable`: this node cannot serve; nothing was written.
    pub(crate) fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// `504 timeout` for a write whose outcome is unknown; `message` says why. Every such answer goes through
    /// here, so none can be mistaken for "nothing was written" (which clients would retry).
    pub(crate) fn outcome_unknown(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message)
    }

    /// `504 timeout` for a write that got no answer within `after_ms`.
    pub(crate) fn write_timeout(after_ms: u128) -> ApiError {
        ApiError::outcome_unknown(format!(
            "no answer within {after_ms} ms: the write may or may not have been applied; read the key to find out \
             before retrying"
        ))
    }

    /// `504 timeout` for a write whose outcome cannot be known because `why`: once a write is queued for the
    /// node, it may have been proposed, replicated and committed even if this node then fails.
    pub(crate) fn write_unknown(why: &str) -> ApiError {
        ApiError::outcome_unknown(format!(
            "{why} after the write was queued: it may or may not have been applied; read the key to find out"
        ))
    }

    /// `504 timeout` for a read: nothing changed, retry.
    pub(crate) fn read_timeout(after_ms: u128) -> ApiError {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("no answer within {after_ms} ms (is a quorum of nodes up?); reads are safe to retry"),
        )
    }

    /// `412 cas_failed`.
    pub(crate) fn cas_failed(expected: u64, current: u64) -> ApiError {
        let now = if current == 0 { "the key does not exist".to_string() } else { format!("it is {current}") };
        let mut error = ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "cas_failed",
            format!("cas expected the key's modify index to be {expected}, but {now}; nothing was written"),
        );
        error.current_modify_index = Some(current);
        error
    }

    /// `410 compacted`: a watch or blocking read asked for changes older than the history keeps; the client
    /// re-reads the current state and watches on from its index + 1 (or from `oldest_index`).
    pub(crate) fn compacted(message: impl Into<String>, oldest_index: u64) -> ApiError {
        let mut error = ApiError::new(StatusCode::GONE, "compacted", message);
        error.oldest_index = Some(oldest_index);
        error
    }

    /// The error for a request the node could not complete.
    pub(crate) fn from_request(error: &RequestError, is_write: bool) -> ApiError {
        match error {
            RequestError::Rejected(ProposeError::NotLeader { leader }) => {
                let mut e = ApiError::no_leader(match leader {
                    Some(l) => format!("this node is not the leader ({l} is); nothing was written, retry there"),
                    None => "no leader is known (an election is in progress or a quorum is down); nothing was \
                             written, retry shortly"
                        .to_string(),
                });
                e.leader = *leader;
                e
            }
            RequestError::Rejected(ProposeError::Overloaded(n)) => ApiError::unavailable(format!(
                "the leader has {n} uncommitted entries and refuses more for now; nothing was written, retry shortly"
            )),
            RequestError::Rejected(
                error @ (ProposeError::InvalidTransferTarget(_) | ProposeError::InvalidMembershipChange(_)),
            ) => ApiError::bad_request(format!("refused: {error}")),
            RequestError::Rejected(other) => {
                ApiError::unavailable(format!("refused: {other}; nothing was written, retry shortly"))
            }
            RequestError::NoSpace(_) => ApiError::no_space(error.to_string()),
            RequestError::Dropped => ApiError::no_leader(
                "leadership changed before the write committed and it was NOT applied; it is safe to retry",
            ),
            RequestError::Indeterminate(why) => ApiError::outcome_unknown(format!(
                "outcome unknown ({why}): the write may or may not have been applied"
            )),
            RequestError::Stopped(why) if is_write => ApiError::write_unknown(&format!("this node stopped ({why})")),
            RequestError::Stopped(why) => ApiError::unavailable(format!("this node cannot serve: {why}")),
            other => ApiError::unavailable(other.to_string()),
        }
    }
}

/// The body of an error.
#[derive(Serialize)]
struct ErrorBody<'a> {
    /// The error.
    error: ErrorFields<'a>,
}

/// The fields of an error.
#[derive(Serialize)]
struct ErrorFields<'a> {
    /// The stable code.
    code: &'a str,
    /// The human message.
    message: &'a str,
    /// The leader, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    leader: Option<String>,
    /// For `cas_failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    current_modify_index: Option<u64>,
    /// For `compacted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest_index: Option<u64>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorFields {
                code: self.code,
                message: &self.message,
                leader: self.leader.map(|l| l.to_string()),
                current_modify_index: self.current_modify_index,
                oldest_index: self.oldest_index,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9110 §15.5.2: a 401 names the scheme the client should use.
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"tally\""));
        }
        response
    }
}
