//! The `/v1/auth` calls (docs/http-api.md, "Users, roles and tokens"): auth status, enabling and disabling
//! auth, users and their tokens, roles and their permissions. Methods of [`Client`], sent and retried like the
//! key calls: changes are writes (to the leader; not retried once sent), listings are linearizable reads.
//!
//! Once auth is enabled every call needs a token: build the client with [`Client::with_token`].

use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::Client;
use crate::client::{Answer, Request};
use crate::codec::{self, percent_encode_str};
use crate::endpoints::Route;
use crate::error::ClientError;
use crate::retry::Kind;

/// What a permission allows: `read < write < admin`, each implying the ones below.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// Get and list keys.
    Read,
    /// Also put and delete keys.
    Write,
    /// Also, on the whole keyspace (the empty prefix): cluster calls and auth changes.
    Admin,
}

impl Access {
    /// The name the API uses: `read`, `write` or `admin`.
    pub fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Admin => "admin",
        }
    }

    /// The access named `name`, if any.
    pub fn from_name(name: &str) -> Option<Access> {
        [Access::Read, Access::Write, Access::Admin].into_iter().find(|access| access.name() == name)
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether auth is on, and whose token the client sends.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AuthStatus {
    /// Whether calls need a token.
    pub enabled: bool,
    /// The user the client's token belongs to, if it sent a valid one.
    pub user: Option<String>,
    /// That user's roles.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// The applied index the answer reflects.
    #[serde(default)]
    pub index: u64,
}

/// A user's new token: shown once, when the user is created or its token rotated. Its `Debug` hides the
/// token.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct NewToken {
    /// The user.
    pub user: String,
    /// The token, to send as `Authorization: Bearer TOKEN`.
    pub token: String,
    /// The index of the change.
    pub index: u64,
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("user", &self.user)
            .field("token", &"<redacted>")
            .field("index", &self.index)
            .finish()
    }
}

/// A user (never its token).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct UserInfo {
    /// Its name.
    pub name: String,
    /// The roles it holds.
    pub roles: Vec<String>,
}

/// One permission of a role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    /// The key prefix (empty: the whole keyspace).
    pub prefix: Vec<u8>,
    /// What it allows there.
    pub access: Access,
}

/// A role and what it grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleInfo {
    /// Its name.
    pub name: String,
    /// Its permissions, in prefix order.
    pub permissions: Vec<Permission>,
}

/// A permission as it travels.
#[derive(Deserialize)]
struct WirePermission {
    /// The prefix as text.
    prefix: Option<String>,
    /// The prefix in base64.
    prefix_b64: Option<String>,
    /// The access's name.
    access: String,
}

/// A role as it travels.
#[derive(Deserialize)]
struct WireRole {
    /// Its name.
    name: String,
    /// Its permissions.
    permissions: Vec<WirePermission>,
}

impl Client {
    /// Whether auth is on, and whose token this client sends.
    ///
    /// # Errors
    /// See [`ClientError`]; `401 unauthenticated` if auth is on and the client's token is missing or invalid.
    pub async fn auth_status(&self) -> Result<AuthStatus, ClientError> {
        self.auth_read("/v1/auth/status").await?.json()
    }

    /// Enables auth: from now on every call needs a token. The cluster refuses (`409 would_lock_out`) unless
    /// some user holds admin on the whole keyspace. Returns the change's index.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn auth_enable(&self) -> Result<u64, ClientError> {
        self.auth_change(Method::POST, "/v1/auth/enable".into(), None).await
    }

    /// Disables auth: every call is open again. Returns the change's index.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn auth_disable(&self) -> Result<u64, ClientError> {
        self.auth_change(Method::POST, "/v1/auth/disable".into(), None).await
    }

    /// Creates user `name` holding `roles`, and returns its token (shown only this once).
    ///
    /// # Errors
    /// See [`ClientError`]; `409 already_exists` if the user exists, `404 not_found` for an unknown role.
    pub async fn user_add(&self, name: &str, roles: &[String]) -> Result<NewToken, ClientError> {
        let body = json!({ "roles": roles }).to_string();
        let answer = self.auth_write(Method::PUT, user_path(name), Some(body)).await?;
        answer.json()
    }

    /// Gives user `name` a new token (the old one stops working) and returns it.
    ///
    /// # Errors
    /// See [`ClientError`]; `404 not_found` for an unknown user.
    pub async fn user_rotate_token(&self, name: &str) -> Result<NewToken, ClientError> {
        let answer = self.auth_write(Method::POST, format!("{}/token", user_path(name)), None).await?;
        answer.json()
    }

    /// Deletes user `name`. Returns the change's index.
    ///
    /// # Errors
    /// See [`ClientError`]; `409 would_lock_out` for the last admin while auth is on.
    pub async fn user_delete(&self, name: &str) -> Result<u64, ClientError> {
        self.auth_change(Method::DELETE, user_path(name), None).await
    }

    /// Gives `role` to `user`. Returns the change's index.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn user_grant_role(&self, user: &str, role: &str) -> Result<u64, ClientError> {
        let path = format!("{}/roles/{}", user_path(user), percent_encode_str(role));
        self.auth_change(Method::POST, path, None).await
    }

    /// Takes `role` from `user`. Returns the change's index.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn user_revoke_role(&self, user: &str, role: &str) -> Result<u64, ClientError> {
        let path = format!("{}/roles/{}", user_path(user), percent_encode_str(role));
        self.auth_change(Method::DELETE, path, None).await
    }

    /// Every user, in name order.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn users(&self) -> Result<Vec<UserInfo>, ClientError> {
        /// The answer.
        #[derive(Deserialize)]
        struct Users {
            /// The users.
            users: Vec<UserInfo>,
        }
        Ok(self.auth_read("/v1/auth/users").await?.json::<Users>()?.users)
    }

    /// Creates role `name`, granting nothing yet. Returns the change's index.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn role_add(&self, name: &str) -> Result<u64, ClientError> {
        self.auth_change(Method::PUT, role_path(name), None).await
    }

    /// Deletes role `name` (and takes it from every user). Returns the change's index.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn role_delete(&self, name: &str) -> Result<u64, ClientError> {
        self.auth_change(Method::DELETE, role_path(name), None).await
    }

    /// Grants `access` on `prefix` to `role` (replacing what it granted on that exact prefix). Returns the
    /// change's index.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn role_grant(&self, role: &str, prefix: &[u8], access: Access) -> Result<u64, ClientError> {
        let mut body = prefix_json(prefix);
        body["access"] = json!(access.name());
        self.auth_change(Method::POST, format!("{}/grant", role_path(role)), Some(body.to_string())).await
    }

    /// Takes away what `role` granted on exactly `prefix`. Returns the change's index.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn role_revoke(&self, role: &str, prefix: &[u8]) -> Result<u64, ClientError> {
        let body = prefix_json(prefix).to_string();
        self.auth_change(Method::POST, format!("{}/revoke", role_path(role)), Some(body)).await
    }

    /// Every role and what it grants, in name order.
    ///
    /// # Errors
    /// See [`ClientError`]; [`ClientError::Decode`] for a permission the client cannot read.
    pub async fn roles(&self) -> Result<Vec<RoleInfo>, ClientError> {
        /// The answer.
        #[derive(Deserialize)]
        struct Roles {
            /// The roles.
            roles: Vec<WireRole>,
        }
        let answer = self.auth_read("/v1/auth/roles").await?;
        let roles = answer.json::<Roles>()?.roles;
        roles
            .into_iter()
            .map(|role| {
                let permissions = role
                    .permissions
                    .into_iter()
                    .map(|p| permission(p).map_err(|detail| answer.decode_error(detail)))
                    .collect::<Result<_, _>>()?;
                Ok(RoleInfo { name: role.name, permissions })
            })
            .collect()
    }

    /// A linearizable auth read.
    async fn auth_read(&self, path: &str) -> Result<Answer, ClientError> {
        let request =
            Request { method: Method::GET, path: path.to_string(), body: None, kind: Kind::Read, route: Route::Leader };
        self.execute(&request).await
    }

    /// An auth change; its answer.
    async fn auth_write(&self, method: Method, path: String, body: Option<String>) -> Result<Answer, ClientError> {
        let request = Request { method, path, body: body.map(Bytes::from), kind: Kind::Write, route: Route::Leader };
        self.execute(&request).await
    }

    /// An auth change; its index.
    async fn auth_change(&self, method: Method, path: String, body: Option<String>) -> Result<u64, ClientError> {
        let answer = self.auth_write(method, path, body).await?;
        answer.index()?.ok_or_else(|| answer.decode_error("the answer has no X-Tally-Index header".to_string()))
    }
}

/// `/v1/auth/users/{name}`.
fn user_path(name: &str) -> String {
    format!("/v1/auth/users/{}", percent_encode_str(name))
}

/// `/v1/auth/roles/{name}`.
fn role_path(name: &str) -> String {
    format!("/v1/auth/roles/{}", percent_encode_str(name))
}

/// `{"prefix": text}`, or `{"prefix_b64": ...}` for a prefix that is not UTF-8.
fn prefix_json(prefix: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(prefix) {
        Ok(text) => json!({ "prefix": text }),
        Err(_) => json!({ "prefix_b64": base64::engine::general_purpose::STANDARD.encode(prefix) }),
    }
}

/// A permission from its wire form.
fn permission(wire: WirePermission) -> Result<Permission, String> {
    let prefix = match (wire.prefix, wire.prefix_b64) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(b64)) => codec::decode_base64("prefix_b64", &b64)?,
        _ => return Err("a permission needs exactly one of prefix and prefix_b64".to_string()),
    };
    let access = Access::from_name(&wire.access).ok_or_else(|| format!("unknown access {:?}", wire.access))?;
    Ok(Permission { prefix, access })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_travel_as_text_or_base64() {
        assert_eq!(prefix_json(b"app/"), json!({ "prefix": "app/" }));
        assert_eq!(prefix_json(b""), json!({ "prefix": "" }));
        assert_eq!(prefix_json(&[0xff]), json!({ "prefix_b64": "/w==" }));
        let wire = WirePermission { prefix: None, prefix_b64: Some("/w==".into()), access: "write".into() };
        assert_eq!(permission(wire), Ok(Permission { prefix: vec![0xff], access: Access::Write }));
        let both = WirePermission { prefix: Some("a".into()), prefix_b64: Some("YQ==".into()), access: "read".into() };
        assert!(permission(both).is_err());
        let bad = WirePermission { prefix: Some("a".into()), prefix_b64: None, access: "root".into() };
        assert!(permission(bad).is_err());
    }

    #[test]
    fn names_are_encoded_in_paths() {
        assert_eq!(user_path("alice"), "/v1/auth/users/alice");
        assert_eq!(role_path("a b"), "/v1/auth/roles/a%20b");
    }

    #[test]
    fn new_tokens_do_not_show_in_debug_output() {
        let token = NewToken { user: "alice".into(), token: "tly_secret".into(), index: 3 };
        let text = format!("{token:?}");
        assert!(!text.contains("tly_secret") && text.contains("alice"), "{text}");
    }

    #[test]
    fn access_names_round_trip() {
        for access in [Access::Read, Access::Write, Access::Admin] {
            assert_eq!(Access::from_name(access.name()), Some(access));
        }
        assert!(Access::Read < Access::Admin);
    }
}
