//! What can go wrong talking to a cluster, and the mapping of the server's JSON errors onto it.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// The server's error codes (`error.code` of an error answer; see `docs/http-api.md`).
pub mod code {
    /// 400: malformed path, query or body.
    pub const BAD_REQUEST: &str = "bad_request";
    /// 404: the key does not exist (or an unknown route).
    pub const NOT_FOUND: &str = "not_found";
    /// 405: wrong method for the route.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// 412: the cas condition did not hold.
    pub const CAS_FAILED: &str = "cas_failed";
    /// 413: key, value or body over its limit.
    pub const TOO_LARGE: &str = "too_large";
    /// 503: no leader is known; nothing was written.
    pub const NO_LEADER: &str = "no_leader";
    /// 503: the node is stopping or stopped; nothing was written.
    pub const UNAVAILABLE: &str = "unavailable";
    /// 504: no answer in time; a write may or may not have been applied.
    pub const TIMEOUT: &str = "timeout";
    /// 502: a follower could not reach the leader to forward a write; nothing was written.
    pub const FORWARD_FAILED: &str = "forward_failed";
    /// 401: auth is on and the call carried no valid token.
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    /// 403: the token's user lacks the permission the message names.
    pub const PERMISSION_DENIED: &str = "permission_denied";
}

/// An error answer from a node: `{"error": {"code", "message", "leader"?, "current_modify_index"?}}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The server's code (see [`code`]); `http_{status}` when the body was not a Tally error.
    pub code: String,
    /// The server's message, meant for a person.
    pub message: String,
    /// The leader the answering node knows of, if any.
    pub leader: Option<String>,
    /// For `cas_failed`: the key's modify index now (`0`: the key is absent).
    pub current_modify_index: Option<u64>,
    /// The endpoint that answered.
    pub endpoint: String,
    /// Set on a `504 timeout` of a write: it may or may not have been applied.
    pub outcome_unknown: bool,
}

impl ApiError {
    /// Builds the error of an answer with a non-success `status` and `body`; `leader_header` is
    /// `X-Tally-Leader`, used when the body names no leader. A body that is not a Tally error (a proxy's
    /// page, say) keeps its first line as the message.
    pub fn from_response(endpoint: &str, status: u16, leader_header: Option<String>, body: &[u8]) -> ApiError {
        let parsed = serde_json::from_slice::<WireErrorBody>(body).ok();
        let (code, message, leader, current_modify_index) = match parsed {
            Some(WireErrorBody { error, current_modify_index }) => {
                (error.code, error.message, error.leader, error.current_modify_index.or(current_modify_index))
            }
            None => {
                let text = String::from_utf8_lossy(body);
                let first_line = text.lines().next().unwrap_or("").trim();
                let message = if first_line.is_empty() {
                    format!("HTTP {status} with no error body")
                } else {
                    first_line.chars().take(200).collect()
                };
                (format!("http_{status}"), message, None, None)
            }
        };
        ApiError {
            status,
            code,
            message,
            leader: leader.or(leader_header),
            current_modify_index,
            endpoint: endpoint.to_string(),
            outcome_unknown: false,
        }
    }

    /// Whether the code is `code`.
    pub fn is(&self, code: &str) -> bool {
        self.code == code
    }

    /// A hint on what to do, for the codes where the message alone does not say.
    fn hint(&self) -> Option<&'static str> {
        if self.outcome_unknown {
            return Some("the write may or may not have been applied: read the key to find out before retrying");
        }
        match self.code.as_str() {
            code::NO_LEADER => Some("no leader is known (election in progress or no quorum); nothing was written"),
            code::UNAVAILABLE => Some("the node is stopping or stopped; nothing was written, try another node"),
            code::FORWARD_FAILED => Some("the node could not reach the leader; nothing was written"),
            code::TIMEOUT => Some("no answer in time"),
            _ => None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} {}, from {})", self.message, self.status, self.code, self.endpoint)?;
        if let Some(index) = self.current_modify_index {
            write!(f, "; the key's modify index is now {index}")?;
        }
        if let Some(hint) = self.hint() {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// An error answer as it travels.
#[derive(Deserialize)]
struct WireErrorBody {
    /// The error.
    error: WireError,
    /// `current_modify_index`, tolerated beside `error` as well as inside it.
    #[serde(default)]
    current_modify_index: Option<u64>,
}

/// The `error` object of an error answer.
#[derive(Deserialize)]
struct WireError {
    /// See [`ApiError::code`].
    code: String,
    /// See [`ApiError::message`].
    #[serde(default)]
    message: String,
    /// See [`ApiError::leader`].
    #[serde(default)]
    leader: Option<String>,
    /// See [`ApiError::current_modify_index`].
    #[serde(default)]
    current_modify_index: Option<u64>,
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A node answered with an error.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// No endpoint accepted a connection before the retry deadline; nothing was sent.
    #[error("cannot connect to any of {}: {detail}", .endpoints.join(", "))]
    Connect {
        /// The endpoints tried.
        endpoints: Vec<String>,
        /// The last connection error.
        detail: String,
    },
    /// No answer within the request timeout.
    #[error("no answer from {endpoint} within {after:?}{}", outcome_note(*.write))]
    Timeout {
        /// The endpoint that did not answer.
        endpoint: String,
        /// The request timeout.
        after: Duration,
        /// Whether the request was a write (whose outcome is then unknown).
        write: bool,
    },
    /// The connection broke after the request was sent.
    #[error("the connection to {endpoint} broke: {detail}{}", outcome_note(*.write))]
    Interrupted {
        /// The endpoint.
        endpoint: String,
        /// What broke.
        detail: String,
        /// Whether the request was a write (whose outcome is then unknown).
        write: bool,
    },
    /// A node answered success with a body or headers this client cannot read.
    #[error("cannot read the answer of {endpoint}: {detail}")]
    Decode {
        /// The endpoint.
        endpoint: String,
        /// What is wrong with the answer.
        detail: String,
    },
    /// An endpoint is not a usable URL, or the list is empty.
    #[error("bad endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it is refused.
        reason: String,
    },
    /// The key cannot be sent (it is empty, or cannot be expressed in a URL path).
    #[error("bad key: {reason}")]
    InvalidKey {
        /// Why it is refused.
        reason: String,
    },
    /// A CA, certificate or key file cannot be used (the message names the file).
    #[error("TLS: {0}")]
    Tls(#[from] tally_net::tls::TlsError),
    /// The bearer token cannot be sent.
    #[error("bad token: {reason}")]
    InvalidToken {
        /// Why it is refused.
        reason: String,
    },
}

/// The note appended to a timeout or broken connection: whether a write may have been applied.
fn outcome_note(write: bool) -> &'static str {
    if write { "; the write may or may not have been applied: read the key to find out before retrying" } else { "" }
}

impl ClientError {
    /// The node's error answer, if this is one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            ClientError::Api(error) => Some(error),
            _ => None,
        }
    }

    /// The HTTP status of the node's error answer, if this is one.
    pub fn status(&self) -> Option<u16> {
        self.api().map(|e| e.status)
    }

    /// Whether a node answered `not_found`.
    pub fn is_not_found(&self) -> bool {
        self.api().is_some_and(|e| e.is(code::NOT_FOUND))
    }

    /// For a `cas_failed` answer: the key's modify index now (`0`: absent).
    pub fn cas_current_modify_index(&self) -> Option<u64> {
        self.api().filter(|e| e.is(code::CAS_FAILED)).map(|e| e.current_modify_index.unwrap_or(0))
    }

    /// The leader named by the node's error answer, if any.
    pub fn leader_hint(&self) -> Option<&str> {
        self.api().and_then(|e| e.leader.as_deref())
    }

    /// Whether this failed a write whose outcome is unknown: it may or may not have been applied.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            ClientError::Api(error) => error.outcome_unknown,
            ClientError::Timeout { write, .. } | ClientError::Interrupted { write, .. } => *write,
            _ => false,
        }
    }
}

impl From<ApiError> for ClientError {
    fn from(error: ApiError) -> ClientError {
        ClientError::Api(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_a_tally_error() {
        let body = br#"{"error": {"code": "not_found", "message": "key \"user/9\" does not exist", "leader": "n2"}}"#;
        let error = ClientError::from(ApiError::from_response("http://127.0.0.1:7001", 404, None, body));
        assert!(error.is_not_found());
        assert_eq!(error.status(), Some(404));
        assert_eq!(error.leader_hint(), Some("n2"));
        assert_eq!(error.to_string(), r#"key "user/9" does not exist (404 not_found, from http://127.0.0.1:7001)"#);
    }

    #[test]
    fn cas_failures_carry_the_current_index() {
        let body = br#"{"error": {"code": "cas_failed", "message": "cas failed", "current_modify_index": 17}}"#;
        let error = ClientError::from(ApiError::from_response("e", 412, Some("n1".into()), body));
        assert_eq!(error.cas_current_modify_index(), Some(17));
        assert_eq!(error.leader_hint(), Some("n1"), "the header fills in a missing leader");
        assert!(error.to_string().contains("modify index is now 17"), "{error}");
        let beside = br#"{"error": {"code": "cas_failed", "message": "m"}, "current_modify_index": 0}"#;
        let error = ClientError::from(ApiError::from_response("e", 412, None, beside));
        assert_eq!(error.cas_current_modify_index(), Some(0));
        let not_cas = ClientError::from(ApiError::from_response("e", 404, None, br#"{"error":{"code":"not_found"}}"#));
        assert_eq!(not_cas.cas_current_modify_index(), None);
    }

    #[test]
    fn foreign_bodies_keep_their_first_line() {
        let error = ApiError::from_response("e", 502, None, b"Bad Gateway\n<html>...</html>");
        assert_eq!((error.code.as_str(), error.message.as_str()), ("http_502", "Bad Gateway"));
        let empty = ApiError::from_response("e", 500, None, b"");
        assert_eq!(empty.message, "HTTP 500 with no error body");
    }

    #[test]
    fn messages_say_whether_a_write_may_have_applied() {
        let mut error =
            ApiError::from_response("e", 504, None, br#"{"error":{"code":"timeout","message":"timed out"}}"#);
        assert!(!error.to_string().contains("may or may not"));
        error.outcome_unknown = true;
        let error = ClientError::from(error);
        assert!(error.outcome_unknown());
        assert!(error.to_string().contains("may or may not have been applied"), "{error}");
        let timeout = ClientError::Timeout { endpoint: "e".into(), after: Duration::from_secs(1), write: true };
        assert!(timeout.outcome_unknown() && timeout.to_string().contains("may or may not"), "{timeout}");
        let read = ClientError::Timeout { endpoint: "e".into(), after: Duration::from_secs(1), write: false };
        assert!(!read.outcome_unknown() && !read.to_string().contains("may or may not"), "{read}");
        let no_leader = ApiError::from_response("e", 503, None, br#"{"error":{"code":"no_leader","message":"m"}}"#);
        assert!(no_leader.to_string().contains("nothing was written"), "{no_leader}");
    }

    #[test]
    fn connect_errors_list_the_endpoints() {
        let error = ClientError::Connect {
            endpoints: vec!["http://a:1".into(), "http://b:2".into()],
            detail: "refused".into(),
        };
        assert_eq!(error.to_string(), "cannot connect to any of http://a:1, http://b:2: refused");
    }
}
