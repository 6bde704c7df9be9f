//! The canonical encoding of an [`AuthState`], part of the kv snapshot and of the state checksum.
//!
//! ```text
//! u8  enabled            0 or 1
//! u64 user count         then per user, names strictly increasing:
//!     name, [u8; 32] token hash, u64 role count, role names strictly increasing
//! u64 role count         then per role, names strictly increasing:
//!     name, u64 permission count, per permission (prefixes strictly increasing): u32 len + prefix, u8 access
//! ```
//!
//! A name is a `u32` length and UTF-8 bytes. Reading checks the order (one state, one encoding) and then every
//! invariant of [`AuthState`], so a restored state is always one that applying commands could have built.

use std::collections::{BTreeMap, BTreeSet};

use super::command::read_access;
use super::{AuthState, Role, TokenHash, User};
use crate::DecodeError;
use crate::cluster::read_text;
use crate::codec::{Reader, Sink};

impl AuthState {
    /// Writes the canonical encoding.
    pub(crate) fn write(&self, sink: &mut impl Sink) {
        sink.put_u8(u8::from(self.enabled));
        sink.put_u64(self.users.len() as u64);
        for (name, user) in &self.users {
            sink.put_bytes(name.as_bytes());
            sink.put(&user.token_hash.0);
            sink.put_u64(user.roles.len() as u64);
            for role in &user.roles {
                sink.put_bytes(role.as_bytes());
            }
        }
        sink.put_u64(self.roles.len() as u64);
        for (name, role) in &self.roles {
            sink.put_bytes(name.as_bytes());
            sink.put_u64(role.permissions.len() as u64);
            for (prefix, access) in &role.permissions {
                sink.put_bytes(prefix);
                sink.put_u8(access.code());
            }
        }
    }

    /// Reads what [`AuthState::write`] wrote.
    ///
    /// # Errors
    /// Truncation, a bad flag or access byte, names or prefixes out of order, or a state that breaks an
    /// invariant ([`DecodeError::BadAuthState`]).
    pub(crate) fn read(reader: &mut Reader<'_>) -> Result<AuthState, DecodeError> {
        let offset = reader.offset();
        let enabled = match reader.u8()? {
            0 => false,
            1 => true,
            tag => return Err(DecodeError::BadTag { what: "auth enabled flag", tag, offset }),
        };
        let mut users = BTreeMap::new();
        for _ in 0..reader.u64()? {
            let name = read_ordered(reader, users.last_key_value().map(|(name, _)| name))?;
            let token_hash = TokenHash(reader.array()?);
            let mut roles = BTreeSet::new();
            for _ in 0..reader.u64()? {
                let role = read_ordered(reader, roles.last())?;
                roles.insert(role);
            }
            users.insert(name, User { token_hash, roles });
        }
        let mut roles = BTreeMap::new();
        for _ in 0..reader.u64()? {
            let name = read_ordered(reader, roles.last_key_value().map(|(name, _)| name))?;
            let mut permissions: BTreeMap<Vec<u8>, _> = BTreeMap::new();
            for _ in 0..reader.u64()? {
                let offset = reader.offset();
                let prefix = reader.bytes()?.to_vec();
                if permissions.last_key_value().is_some_and(|(last, _)| *last >= prefix) {
                    return Err(DecodeError::KeysOutOfOrder { offset });
                }
                permissions.insert(prefix, read_access(reader)?);
            }
            roles.insert(name, Role { permissions });
        }
        let state = AuthState { enabled, users, roles };
        state.check_invariants().map_err(|detail| DecodeError::BadAuthState { offset, detail })?;
        Ok(state)
    }
}

/// Reads a name that must sort strictly after `previous`.
fn read_ordered(reader: &mut Reader<'_>, previous: Option<&String>) -> Result<String, DecodeError> {
    let offset = reader.offset();
    let name = read_text(reader)?;
    if previous.is_some_and(|previous| *previous >= name) {
        return Err(DecodeError::KeysOutOfOrder { offset });
    }
    Ok(name)
}
