//! Who may do what: users with API tokens, roles that grant access on key prefixes, and whether auth is on.
//!
//! All of it is replicated state, changed only by [`AuthCommand`]s applied in log order (one log index each,
//! like any key write) and carried in the kv snapshot, so every node makes the same decisions. The store never
//! sees a token: a user is stored with the SHA-256 hash of its token ([`TokenHash`]), computed by the server that
//! generated the token.
//!
//! ```text
//!  AuthCommand ──validate (no change on error)──▶ apply ──▶ AuthState { enabled, users, roles }
//!                                                              │
//!  request (user, key or prefix, access) ──▶ AuthState::authorize ──▶ Ok | Denied (what is missing)
//! ```
//!
//! # Model
//!
//! A role grants [`Access`] `read`, `write` or `admin` on key prefixes (write implies read, admin implies write;
//! the empty prefix is the whole keyspace). A user holds roles; its access on a key is the highest access any
//! of its roles grants on a prefix of that key. Admin on the whole keyspace covers the cluster calls and every
//! auth change.
//!
//! Invariant: while auth is enabled, at least one user holds admin on the whole keyspace, so someone can always
//! change auth again (no lockout). Enabling auth without such a user, and any change that would remove the last
//! one while auth is enabled, is refused.
//!
//! Invariant: every role a user holds exists (deleting a role takes it from every user).

mod command;
mod error;
mod state_codec;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub use command::AuthCommand;
pub use error::{AuthError, Denied, show_bytes};

/// The longest user or role name, in bytes.
pub const AUTH_NAME_MAX_BYTES: usize = 64;
/// The longest prefix a role may be granted access on, in bytes (the HTTP layer's key limit is far lower).
pub const AUTH_PREFIX_MAX_BYTES: usize = 64 * 1024;
/// The most users.
pub const USERS_MAX: usize = 10_000;
/// The most roles.
pub const ROLES_MAX: usize = 1_000;
/// The most permissions (prefixes) one role grants.
pub const PERMISSIONS_PER_ROLE_MAX: usize = 1_000;
/// The most roles one user holds.
pub const ROLES_PER_USER_MAX: usize = 64;

/// What a permission allows. Ordered: `Read < Write < Admin`, and a higher access implies every lower one.
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
    /// Every access, lowest first.
    pub const ALL: [Access; 3] = [Access::Read, Access::Write, Access::Admin];

    /// The name used in the API and the CLI: `read`, `write` or `admin`.
    pub fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Admin => "admin",
        }
    }

    /// The access named `name` (see [`Access::name`]), if any.
    pub fn from_name(name: &str) -> Option<Access> {
        Access::ALL.into_iter().find(|access| access.name() == name)
    }

    /// The byte that encodes it in commands and snapshots.
    pub(crate) fn code(self) -> u8 {
        match self {
            Access::Read => 1,
            Access::Write => 2,
            Access::Admin => 3,
        }
    }

    /// The access encoded by `code`, if any.
    pub(crate) fn from_code(code: u8) -> Option<Access> {
        Access::ALL.into_iter().find(|access| access.code() == code)
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The SHA-256 hash of a user's token: all the store keeps of it. Its `Debug` does not print the bytes, so no
/// log line can carry even the hash.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

/// A user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The hash of its token; the server compares the hash of a presented token with it.
    pub token_hash: TokenHash,
    /// The roles it holds, each an existing role.
    pub roles: BTreeSet<String>,
}

/// A role: the access it grants on each prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Role {
    /// Prefix → access. One access per prefix: granting again replaces it.
    pub permissions: BTreeMap<Vec<u8>, Access>,
}

impl Role {
    /// Whether this role grants admin on the whole keyspace.
    fn is_root_admin(&self) -> bool {
        self.permissions.get(&b""[..]) == Some(&Access::Admin)
    }
}

/// What a request touches, for [`AuthState::authorize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// One key (get, put, delete).
    Key(&'a [u8]),
    /// Every key starting with a prefix (a list): covered only by a permission on a prefix of it.
    Prefix(&'a [u8]),
    /// The whole keyspace (cluster calls, auth changes).
    Keyspace,
}

impl Scope<'_> {
    /// The bytes a permission's prefix must be a prefix of to cover this scope.
    fn bytes(&self) -> &[u8] {
        match self {
            Scope::Key(bytes) | Scope::Prefix(bytes) => bytes,
            Scope::Keyspace => b"",
        }
    }
}

/// The replicated auth state. Fields are private so that only [`AuthState::apply`] (and a checked snapshot
/// restore) change them: the module invariants always hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthState {
    /// Whether requests must carry a token; off, every request is allowed (as before auth existed).
    pub(crate) enabled: bool,
    /// Users by name. `BTreeMap`s throughout: the snapshot and checksum iterate them in one order everywhere.
    pub(crate) users: BTreeMap<String, User>,
    /// Roles by name.
    pub(crate) roles: BTreeMap<String, Role>,
}

/// What a change takes away, for the no-lockout check: some user must still hold admin on the whole keyspace
/// without any of it.
#[derive(Clone, Copy, Default)]
struct Removal<'a> {
    /// A user deleted.
    user: Option<&'a str>,
    /// A role deleted, or one whose permission on the empty prefix is revoked or lowered.
    role: Option<&'a str>,
    /// A role taken from a user: `(user, role)`.
    grant: Option<(&'a str, &'a str)>,
}

impl AuthState {
    /// Whether auth is enabled.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Every user, by name.
    pub fn users(&self) -> &BTreeMap<String, User> {
        &self.users
    }

    /// Every role, by name.
    pub fn roles(&self) -> &BTreeMap<String, Role> {
        &self.roles
    }

    /// The highest access `user` holds on every key starting with `bytes` (on the key `bytes` itself, and on
    /// the whole range it starts): the highest access of a permission whose prefix is a prefix of `bytes`.
    /// `None` for an unknown user or no such permission. Prefixes match on bytes, not characters.
    pub fn access(&self, user: &str, bytes: &[u8]) -> Option<Access> {
        let user = self.users.get(user)?;
        user.roles
            .iter()
            .filter_map(|name| self.roles.get(name))
            .flat_map(|role| role.permissions.iter())
            .filter(|(prefix, _)| bytes.starts_with(prefix))
            .map(|(_, access)| *access)
            .max()
    }

    /// Whether `user` may have `needed` access on `scope`.
    ///
    /// # Errors
    /// [`Denied`], saying what was needed and what the user holds there.
    pub fn authorize(&self, user: &str, scope: Scope<'_>, needed: Access) -> Result<(), Denied> {
        let held = self.access(user, scope.bytes());
        if held.is_some_and(|held| held >= needed) {
            return Ok(());
        }
        let needed = match scope {
            Scope::Key(key) => format!("{needed} on key {}", show_bytes(key)),
            Scope::Prefix(prefix) => {
                format!(
                    "{needed} on every key under prefix {} (a list needs it on the whole prefix)",
                    show_bytes(prefix)
                )
            }
            Scope::Keyspace => format!("{needed} on the whole keyspace, which this call needs"),
        };
        Err(Denied { user: user.to_string(), needed, held })
    }

    /// Whether some user holds admin on the whole keyspace.
    pub fn has_root_admin(&self) -> bool {
        self.root_admin_survives(Removal::default())
    }

    /// Checks `command` against the state without changing anything: `Ok` if [`AuthState::apply`] would
    /// succeed.
    ///
    /// # Errors
    /// The [`AuthError`] that `apply` would return.
    pub fn validate(&self, command: &AuthCommand) -> Result<(), AuthError> {
        match command {
            AuthCommand::Enable => self.has_root_admin().then_some(()).ok_or(AuthError::NoAdmin),
            AuthCommand::Disable => Ok(()),
            AuthCommand::AddUser { name, roles, .. } => self.validate_add_user(name, roles),
            AuthCommand::SetToken { name, .. } => self.user(name).map(drop),
            AuthCommand::DeleteUser { name } => {
                self.user(name)?;
                self.keeps_root_admin(Removal { user: Some(name), ..Removal::default() })
            }
            AuthCommand::AddRole { name } => {
                check_name(name)?;
                if self.roles.contains_key(name) {
                    return Err(AuthError::RoleExists { name: name.clone() });
                }
                check_limit(self.roles.len(), ROLES_MAX, "roles")
            }
            AuthCommand::DeleteRole { name } => {
                self.role(name)?;
                self.keeps_root_admin(Removal { role: Some(name), ..Removal::default() })
            }
            AuthCommand::GrantPermission { role, prefix, access } => self.validate_grant(role, prefix, *access),
            AuthCommand::RevokePermission { role, prefix } => {
                if !self.role(role)?.permissions.contains_key(prefix) {
                    return Err(AuthError::PermissionNotGranted { role: role.clone(), prefix: prefix.clone() });
                }
                let lowers_root = prefix.is_empty();
                self.keeps_root_admin(Removal { role: lowers_root.then_some(role), ..Removal::default() })
            }
            AuthCommand::GrantRole { user, role } => {
                self.role(role)?;
                let holder = self.user(user)?;
                if holder.roles.contains(role) {
                    return Ok(()); // granting again changes nothing
                }
                check_limit(holder.roles.len(), ROLES_PER_USER_MAX, "roles per user")
            }
            AuthCommand::RevokeRole { user, role } => {
                if !self.user(user)?.roles.contains(role) {
                    return Err(AuthError::RoleNotGranted { user: user.clone(), role: role.clone() });
                }
                self.keeps_root_admin(Removal { grant: Some((user, role)), ..Removal::default() })
            }
        }
    }

    /// Applies `command`, or changes nothing and says why not.
    ///
    /// # Errors
    /// See [`AuthState::validate`]: unknown names, names that exist already, limits, and the no-lockout rule.
    pub fn apply(&mut self, command: &AuthCommand) -> Result<(), AuthError> {
        self.validate(command)?;
        match command {
            AuthCommand::Enable => self.enabled = true,
            AuthCommand::Disable => self.enabled = false,
            AuthCommand::AddUser { name, token_hash, roles } => {
                let user = User { token_hash: *token_hash, roles: roles.iter().cloned().collect() };
                self.users.insert(name.clone(), user);
            }
            AuthCommand::SetToken { name, token_hash } => self.user_mut(name).token_hash = *token_hash,
            AuthCommand::DeleteUser { name } => {
                self.users.remove(name);
            }
            AuthCommand::AddRole { name } => {
                self.roles.insert(name.clone(), Role::default());
            }
            AuthCommand::DeleteRole { name } => {
                self.roles.remove(name);
                for user in self.users.values_mut() {
                    user.roles.remove(name);
                }
            }
            AuthCommand::GrantPermission { role, prefix, access } => {
                self.role_mut(role).permissions.insert(prefix.clone(), *access);
            }
            AuthCommand::RevokePermission { role, prefix } => {
                self.role_mut(role).permissions.remove(prefix);
            }
            AuthCommand::GrantRole { user, role } => {
                self.user_mut(user).roles.insert(role.clone());
            }
            AuthCommand::RevokeRole { user, role } => {
                self.user_mut(user).roles.remove(role);
            }
        }
        debug_assert!(self.check_invariants().is_ok(), "{command:?} broke an invariant: {:?}", self.check_invariants());
        Ok(())
    }

    /// Checks the module invariants and the limits, in O(size). Meant for tests, the simulator and snapshot
    /// restore.
    ///
    /// # Errors
    /// Which invariant is broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.enabled && !self.has_root_admin() {
            return Err("auth is enabled but no user holds admin on the whole keyspace".to_string());
        }
        if self.users.len() > USERS_MAX || self.roles.len() > ROLES_MAX {
            return Err(format!("{} users and {} roles exceed the limits", self.users.len(), self.roles.len()));
        }
        for (name, user) in &self.users {
            if user.roles.len() > ROLES_PER_USER_MAX {
                return Err(format!("user {name:?} holds {} roles", user.roles.len()));
            }
            if let Some(role) = user.roles.iter().find(|role| !self.roles.contains_key(*role)) {
                return Err(format!("user {name:?} holds role {role:?}, which does not exist"));
            }
        }
        for (name, role) in &self.roles {
            if role.permissions.len() > PERMISSIONS_PER_ROLE_MAX {
                return Err(format!("role {name:?} grants {} permissions", role.permissions.len()));
            }
        }
        let mut names = self.users.keys().chain(self.roles.keys());
        if let Some(bad) = names.find(|name| check_name(name).is_err()) {
            return Err(format!("bad name {bad:?}"));
        }
        Ok(())
    }

    /// The user named `name`.
    fn user(&self, name: &str) -> Result<&User, AuthError> {
        self.users.get(name).ok_or_else(|| AuthError::UnknownUser { name: name.to_string() })
    }

    /// The role named `name`.
    fn role(&self, name: &str) -> Result<&Role, AuthError> {
        self.roles.get(name).ok_or_else(|| AuthError::UnknownRole { name: name.to_string() })
    }

    /// The user named `name`, validated to exist.
    fn user_mut(&mut self, name: &str) -> &mut User {
        self.users.get_mut(name).unwrap_or_else(|| unreachable!("validated user {name:?} is missing"))
    }

    /// The role named `name`, validated to exist.
    fn role_mut(&mut self, name: &str) -> &mut Role {
        self.roles.get_mut(name).unwrap_or_else(|| unreachable!("validated role {name:?} is missing"))
    }

    /// Checks a new user: a good new name, existing roles within the limit, room for one more user.
    fn validate_add_user(&self, name: &str, roles: &[String]) -> Result<(), AuthError> {
        check_name(name)?;
        if self.users.contains_key(name) {
            return Err(AuthError::UserExists { name: name.to_string() });
        }
        check_limit(self.users.len(), USERS_MAX, "users")?;
        for role in roles {
            self.role(role)?;
        }
        let distinct: BTreeSet<&String> = roles.iter().collect();
        if distinct.len() > ROLES_PER_USER_MAX {
            return Err(AuthError::LimitReached { what: "roles per user", max: ROLES_PER_USER_MAX });
        }
        Ok(())
    }

    /// Checks a grant: an existing role, a prefix within the limit, room for a new prefix, and no lockout if it
    /// lowers the role's admin on the whole keyspace.
    fn validate_grant(&self, role: &str, prefix: &[u8], access: Access) -> Result<(), AuthError> {
        let granted = self.role(role)?;
        if prefix.len() > AUTH_PREFIX_MAX_BYTES {
            return Err(AuthError::PrefixTooLong { len: prefix.len() });
        }
        if !granted.permissions.contains_key(prefix) {
            check_limit(granted.permissions.len(), PERMISSIONS_PER_ROLE_MAX, "permissions per role")?;
        }
        let lowers_root = prefix.is_empty() && access < Access::Admin && granted.is_root_admin();
        self.keeps_root_admin(Removal { role: lowers_root.then_some(role), ..Removal::default() })
    }

    /// `Ok` unless auth is enabled and `removal` would leave no user holding admin on the whole keyspace.
    fn keeps_root_admin(&self, removal: Removal<'_>) -> Result<(), AuthError> {
        if !self.enabled || self.root_admin_survives(removal) { Ok(()) } else { Err(AuthError::WouldLockOut) }
    }

    /// Whether some user still holds admin on the whole keyspace once `removal` is taken away.
    fn root_admin_survives(&self, removal: Removal<'_>) -> bool {
        self.users.iter().filter(|(name, _)| removal.user != Some(name.as_str())).any(|(name, user)| {
            user.roles.iter().any(|role| {
                removal.role != Some(role.as_str())
                    && removal.grant != Some((name.as_str(), role.as_str()))
                    && self.roles.get(role).is_some_and(Role::is_root_admin)
            })
        })
    }
}

/// `Ok` if `name` is 1 to [`AUTH_NAME_MAX_BYTES`] bytes of `A-Z a-z 0-9 . _ -`: safe in a URL path, a shell
/// and a log line.
///
/// # Errors
/// [`AuthError::BadName`].
pub fn check_name(name: &str) -> Result<(), AuthError> {
    let valid = (1..=AUTH_NAME_MAX_BYTES).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid { Ok(()) } else { Err(AuthError::BadName { name: name.to_string() }) }
}

/// `Ok` if one more fits under `max`.
fn check_limit(count: usize, max: usize, what: &'static str) -> Result<(), AuthError> {
    if count < max { Ok(()) } else { Err(AuthError::LimitReached { what, max }) }
}

#[cfg(test)]
mod tests;
