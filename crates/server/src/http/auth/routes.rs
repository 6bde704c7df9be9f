//! The `/v1/auth` calls: status, enable/disable, users (with their tokens) and roles (with their permissions).
//!
//! Changes are auth commands proposed through the log like key writes (a follower forwards the request to the
//! leader, which generates any new token), each applied at one index, and refused deterministically (unknown
//! name, no-lockout rule, ...) with the reason. Reads of users and roles go through the node loop with the
//! usual `consistency` (linearizable by default). Every call but `status` needs admin on the whole keyspace.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tally_kv::{
    Access, AuthCommand, AuthState, Command, ROLES_PER_USER_MAX, Response as KvResponse, Scope, check_name,
};
use tally_node::{KvQuery, KvQueryOutput};

use super::{Caller, authenticate, new_token};
use crate::http::json::parse_body;
use crate::http::kv::{Written, propose, read, read_body};
use crate::http::params::{Params, percent_decode};
use crate::http::{ApiError, AppState, HEADER_INDEX};

/// The largest body of an auth call: a grant with a prefix of the largest key, base64-encoded, fits easily.
const AUTH_BODY_MAX: usize = 64 * 1024;

/// The `/v1/auth` routes, merged into the client API's router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/status", get(status))
        .route("/v1/auth/enable", post(enable))
        .route("/v1/auth/disable", post(disable))
        .route("/v1/auth/users", get(list_users))
        .route("/v1/auth/users/{name}", get(get_user).put(add_user).delete(delete_user))
        .route("/v1/auth/users/{name}/token", post(rotate_token))
        .route("/v1/auth/users/{name}/roles/{role}", post(grant_role).delete(revoke_role))
        .route("/v1/auth/roles", get(list_roles))
        .route("/v1/auth/roles/{name}", get(get_role).put(add_role).delete(delete_role))
        .route("/v1/auth/roles/{name}/grant", post(grant_permission))
        .route("/v1/auth/roles/{name}/revoke", post(revoke_permission))
}

/// A user as the API shows it (never its token or hash).
#[derive(Serialize)]
struct UserView {
    /// Its name.
    name: String,
    /// The roles it holds, in name order.
    roles: Vec<String>,
}

/// One permission of a role.
#[derive(Serialize)]
struct PermissionView {
    /// The prefix, if UTF-8 (`""`: the whole keyspace).
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    /// The prefix in base64, if not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix_b64: Option<String>,
    /// `read`, `write` or `admin`.
    access: &'static str,
}

/// A role as the API shows it.
#[derive(Serialize)]
struct RoleView {
    /// Its name.
    name: String,
    /// What it grants, in prefix order.
    permissions: Vec<PermissionView>,
}

/// The body of `PUT /v1/auth/users/{name}` (optional).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewUser {
    /// Roles the user holds from the start.
    #[serde(default)]
    roles: Vec<String>,
}

/// The body of a grant or revoke: the prefix as text or base64, and for a grant the access.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PermissionBody {
    /// The prefix as text (`""`: the whole keyspace).
    prefix: Option<String>,
    /// The prefix in base64, for one that is not UTF-8.
    prefix_b64: Option<String>,
    /// `read`, `write` or `admin` (grants only).
    access: Option<String>,
}

/// `GET /v1/auth/status`: whether auth is on, and whose token the request carries. Any valid token will do.
async fn status(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let result = async {
        let caller = authenticate(&state, &headers)?;
        let (index, auth) = read_auth(&state, uri.query()).await?;
        let roles = caller.user().and_then(|user| auth.users().get(user)).map(|user| user.roles.clone());
        Ok(indexed(index, json!({ "enabled": auth.is_enabled(), "user": caller.user(), "roles": roles })))
    }
    .await;
    state.finish(result)
}

/// `POST /v1/auth/enable`: refused (`409 would_lock_out`) unless some user holds admin on the whole keyspace.
async fn enable(State(state): State<AppState>, request: Request) -> Response {
    let result = async {
        let (parts, body) = admin_request(&state, request).await?;
        let changed = change(&state, &parts, body, AuthCommand::Enable).await?;
        Ok(changed.answer(json!({ "enabled": true })))
    }
    .await;
    state.finish(result)
}

/// `POST /v1/auth/disable`: every call is open again.
async fn disable(State(state): State<AppState>, request: Request) -> Response {
    let result = async {
        let (parts, body) = admin_request(&state, request).await?;
        let changed = change(&state, &parts, body, AuthCommand::Disable).await?;
        Ok(changed.answer(json!({ "enabled": false })))
    }
    .await;
    state.finish(result)
}

/// `GET /v1/auth/users`.
async fn list_users(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let result = async {
        authenticate(&state, &headers)?.require(Scope::Keyspace, Access::Admin)?;
        let (index, auth) = read_auth(&state, uri.query()).await?;
        let users: Vec<UserView> = auth.users().keys().filter_map(|name| user_view(&auth, name)).collect();
        Ok(indexed(index, json!({ "users": users })))
    }
    .await;
    state.finish(result)
}

/// `GET /v1/auth/users/{name}`.
async fn get_user(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let result = async {
        authenticate(&state, &headers)?.require(Scope::Keyspace, Access::Admin)?;
        let name = name_at(uri.path(), 4)?;
        let (index, auth) = read_auth(&state, uri.query()).await?;
        let user = user_view(&auth, &name).ok_or_else(|| ApiError::not_found(format!("no user named {name:?}")))?;
        Ok(indexed(index, json!(user)))
    }
    .await;
    state.finish(result)
}

/// `PUT /v1/auth/users/{name}` with an optional body `{"roles": [...]}`: creates the user and answers its new
/// token, the only time it is shown.
async fn add_user(State(state): State<AppState>, request: Request) -> Response {
    let result = async {
        let (parts, body) = admin_request(&state, request).await?;
        let name = name_at(parts.uri.path(), 4)?;
        let new_user: NewUser = parse_json(&body, "{\"roles\": [\"ROLE\", ...]} or nothing")?;
        if new_user.roles.len() > ROLES_PER_USER_MAX {
            return Err(ApiError::bad_request(format!("at most {ROLES_PER_USER_MAX} roles per user")));
        }
        for role in &new_user.roles {
            check_name(role).map_err(|error| ApiError::bad_request(error.to_string()))?;
        }
        let (token, token_hash) = new_token()?;
        let command = AuthCommand::AddUser { name: name.clone(), token_hash, roles: new_user.roles };
        let changed = change(&state, &parts, body, command).await?;
        Ok(changed.answer(json!({ "user": name, "token": token })))
    }
    .await;
    state.finish(result)
}

/// `POST /v1/auth/users/{name}/token`: a new token for the user; the old one stops working.
async fn rotate_token(State(state): State<AppState>, request: Request) -> Response {
    let result = async {
        let (parts, body) = admin_request(&state, request).await?;
        let name = name_at(parts.uri.path(), 4)?;
        let (token, token_hash) = new_token()?;
        let changed = change(&state, &parts, body, AuthCommand::SetToken { name: name.clone(), token_hash }).await?;
        Ok(changed.answer(json!({ "user": name, "token": token })))
    }
    .await;
    state.finish(result)
}

/// `DELETE /v1/auth/users/{name}`.
async fn delete_user(State(state): State<AppState>, request: Request) -> Response {
    named_change(state, request, |name, _| Ok(AuthCommand::DeleteUser { name })).await
}

/// `POST /v1/auth/users/{name}/roles/{role}`.
async fn grant_role(State(state): State<AppState>, request: Request) -> Response {
    named_change(state, request, |user, path| Ok(AuthCommand::GrantRole { user, role: name_at(path, 6)? })).await
}

/// `DELETE /v1/auth/users/{name}/roles/{role}`.
async fn revoke_role(State(state): State<AppState>, request: Request) -> Response {
    named_change(state, request, |user, path| Ok(AuthCommand::RevokeRole { user, role: name_at(path, 6)? })).await
}

/// `GET /v1/auth/roles`.
async fn list_roles(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let result = async {
        authenticate(&state, &headers)?.require(Scope::Keyspace, Access::Admin)?;
        let (index, auth) = read_auth(&state, uri.query()).await?;
        let roles: Vec<RoleView> = auth.roles().keys().filter_map(|name| role_view(&auth, name)).collect();
        Ok(indexed(index, json!({ "roles": roles })))
    }
    .await;
    state.finish(result)
}

/// `GET /v1/auth/roles/{name}`.
async fn get_role(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let result = async {
        authenticate(&state, &headers)?.require(Scope::Keyspace, Access::Admin)?;
        let name = name_at(uri.path(), 4)?;
        let (index, auth) = read_auth(&state, uri.query()).await?;
        let role = role_view(&auth, &name).ok_or_else(|| ApiError::not_found(format!("no role named {name:?}")))?;
        Ok(indexed(index, json!(role)))
    }
    .await;
    state.finish(result)
}

/// `PUT /v1/auth/roles/{name}`: a role that grants nothing yet.
async fn add_role(State(state): State<AppState>, request: Request) -> Response {
    named_change(state, request, |name, _| Ok(AuthCommand::AddRole { name })).await
}

/// `DELETE /v1/auth/roles/{name}`: also takes the role from every user.
async fn delete_role(State(state): State<AppState>, request: Request) -> Response {
    named_change(state, request, |name, _| Ok(AuthCommand::DeleteRole { name })).await
}

/// `POST /v1/auth/roles/{name}/grant` with `{"prefix": "app/", "access": "write"}` (or `prefix_b64`).
async fn grant_permission(State(state): State<AppState>, request: Request) -> Response {
    let result = async {
        let (parts, body) = admin_request(&state, request).await?;
        let role = name_at(parts.uri.path(), 4)?;
        let permission: PermissionBody = parse_json(&body, GRANT_SHAPE)?;
        let prefix = prefix_of(&permission, state.limits.max_key_bytes)?;
        let Some(access) = permission.access.as_deref() else {
            return Err(ApiError::bad_request(format!("missing access; expected {GRANT_SHAPE}")));
        };
        let access = Access::from_name(access)
            .ok_or_else(|| ApiError::bad_request(format!("bad access {access:?}: expected read, write or admin")))?;
        let changed = change(&state, &parts, body, AuthCommand::GrantPermission { role, prefix, access }).await?;
        Ok(changed.answer(json!({})))
    }
    .await;
    state.finish(result)
}

/// `POST /v1/auth/roles/{name}/revoke` with `{"prefix": "app/"}` (or `prefix_b64`).
async fn revoke_permission(State(state): State<AppState>, request: Request) -> Response {
    let result = async {
        let (parts, body) = admin_request(&state, request).await?;
        let role = name_at(parts.uri.path(), 4)?;
        let permission: PermissionBody = parse_json(&body, "{\"prefix\": \"app/\"}")?;
        if permission.access.is_some() {
            return Err(ApiError::bad_request("a revoke takes the whole permission on the prefix: drop \"access\""));
        }
        let prefix = prefix_of(&permission, state.limits.max_key_bytes)?;
        let changed = change(&state, &parts, body, AuthCommand::RevokePermission { role, prefix }).await?;
        Ok(changed.answer(json!({})))
    }
    .await;
    state.finish(result)
}

/// The shape of a grant's body, for messages.
const GRANT_SHAPE: &str = "{\"prefix\": \"app/\", \"access\": \"read\" | \"write\" | \"admin\"}";

/// A change named by the path's name (position 4) and no body: `make(name, path)` builds the command.
async fn named_change(
    state: AppState,
    request: Request,
    make: impl FnOnce(String, &str) -> Result<AuthCommand, ApiError>,
) -> Response {
    let result = async {
        let (parts, body) = admin_request(&state, request).await?;
        let command = make(name_at(parts.uri.path(), 4)?, parts.uri.path())?;
        let changed = change(&state, &parts, body, command).await?;
        Ok(changed.answer(json!({})))
    }
    .await;
    state.finish(result)
}

/// Authenticates a change (admin on the whole keyspace), refuses query parameters, and reads the body.
///
/// # Errors
/// `401`/`403`, `400` for a query parameter, `413` for a body over [`AUTH_BODY_MAX`].
async fn admin_request(state: &AppState, request: Request) -> Result<(Parts, Bytes), ApiError> {
    let (parts, body) = request.into_parts();
    let caller: Caller = authenticate(state, &parts.headers)?;
    caller.require(Scope::Keyspace, Access::Admin)?;
    Params::parse(parts.uri.query(), &[])?;
    let body = read_body(body, AUTH_BODY_MAX).await?;
    Ok((parts, body))
}

/// What became of a change.
enum Changed {
    /// Forwarded to the leader: its answer, relayed as it is.
    Forwarded(Response),
    /// Applied here at this index.
    Applied(u64),
}

impl Changed {
    /// The answer: the leader's relayed, or `fields` plus `"index"` with `X-Tally-Index`.
    fn answer(self, mut fields: serde_json::Value) -> Response {
        match self {
            Changed::Forwarded(response) => response,
            Changed::Applied(index) => {
                fields["index"] = json!(index);
                indexed(index, fields)
            }
        }
    }
}

/// Proposes an auth command here if this node leads, or forwards the request to the leader.
///
/// # Errors
/// As for a key write; a refused command gives the status its [`tally_kv::AuthError`] maps to.
async fn change(state: &AppState, parts: &Parts, body: Bytes, command: AuthCommand) -> Result<Changed, ApiError> {
    match propose(state, parts, body, &Command::Auth(command)).await? {
        Written::Forwarded(response) => Ok(Changed::Forwarded(response)),
        Written::Applied(KvResponse::Auth { index }) => Ok(Changed::Applied(index)),
        Written::Applied(KvResponse::AuthRefused { error, .. }) => Err(ApiError::from_auth(&error)),
        Written::Applied(other) => {
            Err(ApiError::unavailable(format!("internal error: an auth command was answered with {other:?}")))
        }
    }
}

/// Reads the auth state through the node loop, with `?consistency=` (linearizable by default).
async fn read_auth(state: &AppState, query: Option<&str>) -> Result<(u64, Arc<AuthState>), ApiError> {
    let consistency = Params::parse(query, &["consistency"])?.consistency()?;
    match read(state, KvQuery::Auth, consistency).await? {
        (index, KvQueryOutput::Auth(auth)) => Ok((index, auth)),
        _ => Err(ApiError::unavailable("internal error: an auth read was answered with another query's answer")),
    }
}

/// A JSON answer with `X-Tally-Index: index`.
fn indexed(index: u64, body: serde_json::Value) -> Response {
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(HEADER_INDEX, HeaderValue::from(index));
    response
}

/// The name in path segment `position` (`/v1/auth/users/NAME` is position 4), decoded and checked.
///
/// # Errors
/// `400` for a malformed or invalid name.
fn name_at(path: &str, position: usize) -> Result<String, ApiError> {
    let segment = path.split('/').nth(position).unwrap_or_default();
    let name = String::from_utf8(percent_decode(segment, false)?)
        .map_err(|_| ApiError::bad_request(format!("the name {segment:?} is not UTF-8")))?;
    check_name(&name).map_err(|error| ApiError::bad_request(error.to_string()))?;
    Ok(name)
}

/// Decodes a JSON body; an empty body is `T::default()` where that makes sense (the caller's type decides).
///
/// # Errors
/// `400` naming the expected shape.
fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8], shape: &str) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    parse_body(body, "body", shape)
}

/// The prefix of a grant or revoke body: exactly one of `prefix` and `prefix_b64`, at most `max_bytes`.
///
/// # Errors
/// `400` for none or both or bad base64, `413` for a prefix longer than the largest key.
fn prefix_of(body: &PermissionBody, max_bytes: usize) -> Result<Vec<u8>, ApiError> {
    let prefix = match (&body.prefix, &body.prefix_b64) {
        (Some(text), None) => text.as_bytes().to_vec(),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|error| ApiError::bad_request(format!("prefix_b64 is not base64: {error}")))?,
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of \"prefix\" (text; \"\" is the whole keyspace) and \"prefix_b64\"",
            ));
        }
    };
    if prefix.len() > max_bytes {
        let message = format!("the prefix is {} bytes; no key is longer than {max_bytes}", prefix.len());
        return Err(ApiError::too_large(message));
    }
    Ok(prefix)
}

/// The API's view of user `name`, if it exists.
fn user_view(auth: &AuthState, name: &str) -> Option<UserView> {
    let user = auth.users().get(name)?;
    Some(UserView { name: name.to_string(), roles: user.roles.iter().cloned().collect() })
}

/// The API's view of role `name`, if it exists.
fn role_view(auth: &AuthState, name: &str) -> Option<RoleView> {
    let role = auth.roles().get(name)?;
    let permissions = role
        .permissions
        .iter()
        .map(|(prefix, access)| {
            let (prefix, prefix_b64) = match std::str::from_utf8(prefix) {
                Ok(text) => (Some(text.to_string()), None),
                Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(prefix))),
            };
            PermissionView { prefix, prefix_b64, access: access.name() }
        })
        .collect();
    Some(RoleView { name: name.to_string(), permissions })
}
