//! Client authentication and authorization, and the `/v1/auth` API (docs/http-api.md, "Users, roles and
//! tokens").
//!
//! ```text
//!  request ──▶ authenticate: the auth state the node loop published after its last apply (no round trip)
//!                auth off ──▶ anyone (a valid token still names its user, for /v1/auth/status)
//!                auth on  ──▶ Authorization: Bearer TOKEN ──SHA-256──▶ hash ──constant-time scan of users──▶ user
//!                             no token, or no user with that hash ──▶ 401 unauthenticated
//!          ──▶ Caller::require(key | prefix | keyspace, read | write | admin), against the same state
//!                             ──▶ 403 permission_denied, naming what is missing
//! ```
//!
//! A follower checks a write before forwarding it; the leader checks it again (the `Authorization` header is
//! forwarded with the request). Which permission each route needs is in [`routes`] and in the handlers of
//! `kv.rs`, `cluster.rs` and `join.rs`: get and list need read on the key or the whole prefix listed, put and
//! delete need write on the key, `GET /v1/cluster` and `GET /v1/auth/status` any valid token, and
//! transfer-leader, join (unless it carries the cluster token) and every other `/v1/auth` call need admin on
//! the whole keyspace. `/livez`, `/readyz` and `/metrics` are open.
//!
//! Tokens are 256 bits from the operating system's RNG, written `tly_` + 64 hex digits, shown once in the
//! answer that created them, and replicated only as their SHA-256 hash. No token is ever logged: no tracing
//! call takes one, [`Caller`] holds only the user's name, the store's `Debug` shows no hash, and the forwarder
//! marks the `Authorization` header it passes on as sensitive.

mod routes;

use std::fmt::Write;
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tally_kv::{Access, AuthState, Scope, TokenHash};

pub(crate) use routes::routes;

use super::{ApiError, Shared};
use crate::auth::bearer_token;

/// What every token starts with, so a leaked one is recognisable (by secret scanners, and by people).
pub(crate) const TOKEN_PREFIX: &str = "tly_";

/// Random bytes in a token: 256 bits.
const TOKEN_BYTES: usize = 32;

/// Who sent a request, as far as auth is concerned, and the auth state it is judged by.
pub(crate) struct Caller {
    /// The auth state as published when the request arrived: one state for every check of the request.
    auth: Arc<AuthState>,
    /// The user the token belongs to; with auth off, `None` unless a valid token was presented anyway.
    user: Option<String>,
}

impl Caller {
    /// The user whose token the request carries, if any.
    pub(crate) fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// `Ok` if auth is off, or the caller holds `access` on `scope`.
    ///
    /// # Errors
    /// `403 permission_denied`, saying which permission on which key or prefix is missing.
    pub(crate) fn require(&self, scope: Scope<'_>, access: Access) -> Result<(), ApiError> {
        if !self.auth.is_enabled() {
            return Ok(());
        }
        let user = self.user.as_deref().unwrap_or_else(|| unreachable!("auth is on and no user was authenticated"));
        self.auth.authorize(user, scope, access).map_err(|denied| ApiError::permission_denied(denied.to_string()))
    }
}

/// Who sent the request with these headers, judged by the auth state this node last applied.
///
/// # Errors
/// `401 unauthenticated` if auth is on and the request carries no token, or one no user has.
pub(crate) fn authenticate(state: &Shared, headers: &HeaderMap) -> Result<Caller, ApiError> {
    authenticate_with(state.published.auth(), headers)
}

/// [`authenticate`] against a given auth state.
pub(crate) fn authenticate_with(auth: Arc<AuthState>, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let presented = headers.get(header::AUTHORIZATION).map(|value| value.to_str().ok().and_then(bearer_token));
    let user = match presented {
        Some(Some(token)) => user_with_token(&auth, &hash_token(token)).map(str::to_string),
        _ => None,
    };
    if user.is_some() || !auth.is_enabled() {
        return Ok(Caller { auth, user });
    }
    Err(ApiError::unauthenticated(match presented {
        None => "auth is enabled: send a user's token as Authorization: Bearer TOKEN (tally --token / TALLY_TOKEN)",
        Some(None) => "auth is enabled and the Authorization header is not of the form Bearer TOKEN",
        Some(Some(_)) => "the token is not valid (unknown, rotated, or its user was deleted)",
    }))
}

/// The SHA-256 hash of a token: what the auth state stores and compares.
pub(crate) fn hash_token(token: &str) -> TokenHash {
    TokenHash(Sha256::digest(token.as_bytes()).into())
}

/// The user whose token hash is `hash`. Every user's hash is compared in constant time, and every one is
/// compared whatever matched, so the time taken says nothing about the stored hashes.
fn user_with_token<'a>(auth: &'a AuthState, hash: &TokenHash) -> Option<&'a str> {
    let mut found = None;
    for (name, user) in auth.users() {
        if bool::from(user.token_hash.0.ct_eq(&hash.0)) {
            found = Some(name.as_str());
        }
    }
    found
}

/// A new token and its hash: [`TOKEN_BYTES`] from the operating system's RNG.
///
/// # Errors
/// `503 unavailable` if the OS has no randomness to give (nothing was written).
pub(crate) fn new_token() -> Result<(String, TokenHash), ApiError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|error| ApiError::unavailable(format!("no randomness for a token ({error}); nothing was written")))?;
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + 2 * TOKEN_BYTES);
    token.push_str(TOKEN_PREFIX);
    for byte in bytes {
        let _ = write!(token, "{byte:02x}"); // writing to a String cannot fail
    }
    let hash = hash_token(&token);
    Ok((token, hash))
}

#[cfg(test)]
mod tests;
