//! Why a request or an auth command is refused: [`Denied`] (a permission check) and [`AuthError`] (a command
//! the store refuses, deterministically on every node).

use std::fmt;

use super::{AUTH_NAME_MAX_BYTES, AUTH_PREFIX_MAX_BYTES, Access};

/// Why a user may not do something: what it needed and what it holds there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// The user.
    pub user: String,
    /// What was needed, e.g. `write on key "app/x"`.
    pub needed: String,
    /// The highest access the user holds on that key or prefix, if any.
    pub held: Option<Access>,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = self.held.map_or("no access", Access::name);
        write!(f, "user {:?} lacks {} (it holds {held} there)", self.user, self.needed)
    }
}

/// Why an auth command was refused. Deterministic: every node refuses the same command the same way, and the
/// client gets the error.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No user has this name.
    #[error("there is no user named {name:?}")]
    UnknownUser {
        /// The name.
        name: String,
    },
    /// No role has this name.
    #[error("there is no role named {name:?}")]
    UnknownRole {
        /// The name.
        name: String,
    },
    /// A user of this name exists already.
    #[error("a user named {name:?} exists already (rotate its token, or delete it first)")]
    UserExists {
        /// The name.
        name: String,
    },
    /// A role of this name exists already.
    #[error("a role named {name:?} exists already")]
    RoleExists {
        /// The name.
        name: String,
    },
    /// The role grants nothing on this exact prefix.
    #[error("role {role:?} has no permission on prefix {}", show_bytes(prefix))]
    PermissionNotGranted {
        /// The role.
        role: String,
        /// The prefix.
        prefix: Vec<u8>,
    },
    /// The user does not hold this role.
    #[error("user {user:?} does not hold role {role:?}")]
    RoleNotGranted {
        /// The user.
        user: String,
        /// The role.
        role: String,
    },
    /// A user or role name that is not 1 to [`AUTH_NAME_MAX_BYTES`] of `A-Z a-z 0-9 . _ -`.
    #[error("bad name {name:?}: use 1 to {AUTH_NAME_MAX_BYTES} characters of A-Z a-z 0-9 . _ -")]
    BadName {
        /// The name.
        name: String,
    },
    /// A prefix longer than [`AUTH_PREFIX_MAX_BYTES`].
    #[error("a prefix of {len} bytes is over the limit of {AUTH_PREFIX_MAX_BYTES}")]
    PrefixTooLong {
        /// Its length.
        len: usize,
    },
    /// A limit on the number of users, roles or permissions was reached.
    #[error("the limit of {max} {what} is reached")]
    LimitReached {
        /// What is limited, e.g. "users".
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// Enabling auth needs a user holding admin on the whole keyspace.
    #[error(
        "auth cannot be enabled before some user holds admin on the whole keyspace (a role granting admin on the \
         empty prefix): nobody could change auth afterwards"
    )]
    NoAdmin,
    /// The change would leave no user holding admin on the whole keyspace while auth is enabled.
    #[error(
        "refused: this would leave no user holding admin on the whole keyspace while auth is enabled (give another \
         user admin first, or disable auth)"
    )]
    WouldLockOut,
}

/// A key or prefix for a message: quoted text if UTF-8, else escaped bytes.
pub fn show_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("\"{}\"", bytes.escape_ascii()),
    }
}
