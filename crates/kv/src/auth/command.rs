//! The auth commands and their encoding, the body of a [`crate::Command::Auth`] log entry.
//!
//! # Format (after the command's version byte and kind tag 6)
//!
//! ```text
//! u8  op     1 = enable, 2 = disable, 3 = add user, 4 = set token, 5 = delete user, 6 = add role,
//!            7 = delete role, 8 = grant permission, 9 = revoke permission, 10 = grant role, 11 = revoke role
//! enable, disable:      nothing
//! add user:             name, [u8; 32] token hash, u64 role count, role count × name
//! set token:            name, [u8; 32] token hash
//! delete user/role,
//! add role:             name
//! grant permission:     role name, u32 len + prefix bytes, u8 access (1 = read, 2 = write, 3 = admin)
//! revoke permission:    role name, u32 len + prefix bytes
//! grant/revoke role:    user name, role name
//! ```
//!
//! A name is a `u32` length and UTF-8 bytes, at most [`crate::METADATA_TEXT_MAX_BYTES`] (whether it is a valid
//! name is decided when the command is applied, so a bad name is a deterministic refusal, not a decode error).

use crate::DecodeError;
use crate::auth::{Access, TokenHash};
use crate::cluster::read_text;
use crate::codec::{Reader, Sink};

/// A change to the auth state, carried in a log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthCommand {
    /// Requests must carry a token from now on; refused unless some user holds admin on the whole keyspace.
    Enable,
    /// Every request is allowed again.
    Disable,
    /// Creates a user holding `roles`.
    AddUser {
        /// Its name.
        name: String,
        /// The hash of its token.
        token_hash: TokenHash,
        /// The roles it holds from the start (each must exist).
        roles: Vec<String>,
    },
    /// Replaces a user's token (rotation): the old token stops working.
    SetToken {
        /// The user.
        name: String,
        /// The hash of the new token.
        token_hash: TokenHash,
    },
    /// Deletes a user.
    DeleteUser {
        /// The user.
        name: String,
    },
    /// Creates a role that grants nothing yet.
    AddRole {
        /// Its name.
        name: String,
    },
    /// Deletes a role and takes it from every user.
    DeleteRole {
        /// The role.
        name: String,
    },
    /// Grants `access` on `prefix` (replacing what the role granted on that exact prefix).
    GrantPermission {
        /// The role.
        role: String,
        /// The key prefix; empty: the whole keyspace.
        prefix: Vec<u8>,
        /// The access.
        access: Access,
    },
    /// Takes away what the role granted on exactly `prefix`.
    RevokePermission {
        /// The role.
        role: String,
        /// The key prefix.
        prefix: Vec<u8>,
    },
    /// Gives a user a role.
    GrantRole {
        /// The user.
        user: String,
        /// The role.
        role: String,
    },
    /// Takes a role from a user.
    RevokeRole {
        /// The user.
        user: String,
        /// The role.
        role: String,
    },
}

/// Op tag of [`AuthCommand::Enable`].
const OP_ENABLE: u8 = 1;
/// Op tag of [`AuthCommand::Disable`].
const OP_DISABLE: u8 = 2;
/// Op tag of [`AuthCommand::AddUser`].
const OP_ADD_USER: u8 = 3;
/// Op tag of [`AuthCommand::SetToken`].
const OP_SET_TOKEN: u8 = 4;
/// Op tag of [`AuthCommand::DeleteUser`].
const OP_DELETE_USER: u8 = 5;
/// Op tag of [`AuthCommand::AddRole`].
const OP_ADD_ROLE: u8 = 6;
/// Op tag of [`AuthCommand::DeleteRole`].
const OP_DELETE_ROLE: u8 = 7;
/// Op tag of [`AuthCommand::GrantPermission`].
const OP_GRANT_PERMISSION: u8 = 8;
/// Op tag of [`AuthCommand::RevokePermission`].
const OP_REVOKE_PERMISSION: u8 = 9;
/// Op tag of [`AuthCommand::GrantRole`].
const OP_GRANT_ROLE: u8 = 10;
/// Op tag of [`AuthCommand::RevokeRole`].
const OP_REVOKE_ROLE: u8 = 11;

impl AuthCommand {
    /// Writes the op tag and fields (the caller wrote the version and kind).
    ///
    /// # Panics
    /// If a name is longer than [`crate::METADATA_TEXT_MAX_BYTES`] or a prefix longer than `u32::MAX`: the
    /// server checks names and prefixes long before.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        match self {
            AuthCommand::Enable => out.put_u8(OP_ENABLE),
            AuthCommand::Disable => out.put_u8(OP_DISABLE),
            AuthCommand::AddUser { name, token_hash, roles } => {
                out.put_u8(OP_ADD_USER);
                put_name(out, name);
                out.put(&token_hash.0);
                out.put_u64(roles.len() as u64);
                for role in roles {
                    put_name(out, role);
                }
            }
            AuthCommand::SetToken { name, token_hash } => {
                out.put_u8(OP_SET_TOKEN);
                put_name(out, name);
                out.put(&token_hash.0);
            }
            AuthCommand::DeleteUser { name } => {
                out.put_u8(OP_DELETE_USER);
                put_name(out, name);
            }
            AuthCommand::AddRole { name } => {
                out.put_u8(OP_ADD_ROLE);
                put_name(out, name);
            }
            AuthCommand::DeleteRole { name } => {
                out.put_u8(OP_DELETE_ROLE);
                put_name(out, name);
            }
            AuthCommand::GrantPermission { role, prefix, access } => {
                out.put_u8(OP_GRANT_PERMISSION);
                put_name(out, role);
                out.put_bytes(prefix);
                out.put_u8(access.code());
            }
            AuthCommand::RevokePermission { role, prefix } => {
                out.put_u8(OP_REVOKE_PERMISSION);
                put_name(out, role);
                out.put_bytes(prefix);
            }
            AuthCommand::GrantRole { user, role } | AuthCommand::RevokeRole { user, role } => {
                let op = if matches!(self, AuthCommand::GrantRole { .. }) { OP_GRANT_ROLE } else { OP_REVOKE_ROLE };
                out.put_u8(op);
                put_name(out, user);
                put_name(out, role);
            }
        }
    }

    /// Reads what [`AuthCommand::write`] wrote (the caller checks that nothing follows).
    pub(crate) fn read(reader: &mut Reader<'_>) -> Result<AuthCommand, DecodeError> {
        let offset = reader.offset();
        let command = match reader.u8()? {
            OP_ENABLE => AuthCommand::Enable,
            OP_DISABLE => AuthCommand::Disable,
            OP_ADD_USER => {
                let name = read_text(reader)?;
                let token_hash = TokenHash(reader.array()?);
                let count = reader.u64()?;
                // Each name takes at least its 4-byte length, so the input bounds the loop and the allocation.
                let mut roles = Vec::new();
                for _ in 0..count {
                    roles.push(read_text(reader)?);
                }
                AuthCommand::AddUser { name, token_hash, roles }
            }
            OP_SET_TOKEN => AuthCommand::SetToken { name: read_text(reader)?, token_hash: TokenHash(reader.array()?) },
            OP_DELETE_USER => AuthCommand::DeleteUser { name: read_text(reader)? },
            OP_ADD_ROLE => AuthCommand::AddRole { name: read_text(reader)? },
            OP_DELETE_ROLE => AuthCommand::DeleteRole { name: read_text(reader)? },
            OP_GRANT_PERMISSION => {
                let role = read_text(reader)?;
                let prefix = reader.bytes()?.to_vec();
                let access = read_access(reader)?;
                AuthCommand::GrantPermission { role, prefix, access }
            }
            OP_REVOKE_PERMISSION => {
                AuthCommand::RevokePermission { role: read_text(reader)?, prefix: reader.bytes()?.to_vec() }
            }
            OP_GRANT_ROLE => AuthCommand::GrantRole { user: read_text(reader)?, role: read_text(reader)? },
            OP_REVOKE_ROLE => AuthCommand::RevokeRole { user: read_text(reader)?, role: read_text(reader)? },
            tag => return Err(DecodeError::BadTag { what: "auth op", tag, offset }),
        };
        Ok(command)
    }

    /// The exact size of what [`AuthCommand::write`] writes.
    pub(crate) fn encoded_len(&self) -> usize {
        let name = |name: &String| 4 + name.len();
        1 + match self {
            AuthCommand::Enable | AuthCommand::Disable => 0,
            AuthCommand::AddUser { name: user, roles, .. } => {
                name(user) + 32 + 8 + roles.iter().map(name).sum::<usize>()
            }
            AuthCommand::SetToken { name: user, .. } => name(user) + 32,
            AuthCommand::DeleteUser { name: n }
            | AuthCommand::AddRole { name: n }
            | AuthCommand::DeleteRole { name: n } => name(n),
            AuthCommand::GrantPermission { role, prefix, .. } => name(role) + 4 + prefix.len() + 1,
            AuthCommand::RevokePermission { role, prefix } => name(role) + 4 + prefix.len(),
            AuthCommand::GrantRole { user, role } | AuthCommand::RevokeRole { user, role } => name(user) + name(role),
        }
    }
}

/// Writes a name as a length-prefixed string.
///
/// # Panics
/// If it is longer than [`crate::METADATA_TEXT_MAX_BYTES`] (it could not be read back).
fn put_name(out: &mut Vec<u8>, name: &str) {
    assert!(name.len() <= crate::METADATA_TEXT_MAX_BYTES, "auth name of {} bytes", name.len());
    out.put_bytes(name.as_bytes());
}

/// Reads an access byte.
pub(crate) fn read_access(reader: &mut Reader<'_>) -> Result<Access, DecodeError> {
    let offset = reader.offset();
    let tag = reader.u8()?;
    Access::from_code(tag).ok_or(DecodeError::BadTag { what: "access", tag, offset })
}
