//! Write commands and their binary encoding, the payload of a Raft log entry.
//!
//! # Format (version 1)
//!
//! ```text
//! u8  version = 1
//! u8  kind            1 = put, 2 = delete, 3 = set member, 4 = remove member, 5 = set cluster id, 6 = auth,
//!                     7 = txn, 8 = delete prefix
//! put, delete:
//!   u32 key_len, key bytes
//!   u32 value_len, value bytes      (put only)
//!   u8  cas_flag        0 = no cas, 1 = cas follows
//!   u64 cas             (only if cas_flag = 1)
//! set member:           u64 node id, u32 len + peer URL, u32 len + client URL (UTF-8), u64 incarnation
//! remove member:        u64 node id
//! set cluster id:       u32 len + cluster id (UTF-8)
//! auth:                 an auth op and its fields (see [`crate::AuthCommand`] and `auth/command.rs`)
//! txn:                  compares, success ops, failure ops (see [`crate::Txn`] and `txn/codec.rs`);
//!                       each list at most [`crate::TXN_OPS_MAX`] long
//! delete prefix:        u32 len + prefix bytes, never empty (an empty prefix does not decode)
//! ```
//!
//! New kinds extend version 1: every version-1 command in an existing log decodes as before.
//!
//! Integers are little-endian. Text fields are at most [`METADATA_TEXT_MAX_BYTES`] bytes. Nothing may follow
//! the last field.

use crate::auth::AuthCommand;
use crate::cluster::{METADATA_TEXT_MAX_BYTES, read_text};
use crate::codec::{Reader, Sink};
use crate::{DecodeError, Txn};

/// A write command, carried as the payload of a Raft log entry.
///
/// For `cas`: `Some(m)` applies the command only if the key's modify index is `m`, and `Some(0)`
/// only if the key is absent (log indexes start at 1, so 0 is never a real modify index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Create or overwrite `key` with `value`.
    Put {
        /// The key to write.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
        /// Optional compare-and-set condition on the key's modify index.
        cas: Option<u64>,
    },
    /// Remove `key` if present.
    Delete {
        /// The key to remove.
        key: Vec<u8>,
        /// Optional compare-and-set condition on the key's modify index.
        cas: Option<u64>,
    },
    /// Records (or updates) where member `id` is reached: cluster metadata, not a key.
    SetMember {
        /// The Raft node id.
        id: u64,
        /// Its peer URL.
        peer_url: String,
        /// Its client URL.
        client_url: String,
        /// Its incarnation (see [`crate::MemberAddress::incarnation`]).
        incarnation: u64,
    },
    /// Forgets member `id`'s addresses (after it left the Raft membership).
    RemoveMember {
        /// The Raft node id.
        id: u64,
    },
    /// Names the cluster. Only the first one applied counts: later ones leave the id unchanged.
    SetClusterId {
        /// The id.
        cluster_id: String,
    },
    /// Changes who may do what (users, roles, enabling auth): outside the key space.
    Auth(AuthCommand),
    /// Compare guards, then one of two branches of ops, atomically in one entry (see [`Txn`]). A transaction
    /// that decodes but breaks [`Txn::validate`] is refused at apply with a deterministic
    /// [`crate::Response::Invalid`], nothing written.
    Txn(Txn),
    /// Removes every key starting with `prefix`, in one entry (so at one index, all or nothing).
    ///
    /// Invariant: `prefix` is not empty. Deleting every key by accident is too easy a mistake to be one
    /// encoding away, so an empty prefix neither encodes (a panic) nor decodes (a [`DecodeError`], so a
    /// deterministic [`crate::Response::Invalid`] at apply).
    DeletePrefix {
        /// The prefix of the keys to remove; not empty.
        prefix: Vec<u8>,
    },
}

/// The encoding version this build writes and the only one it reads.
const FORMAT_VERSION: u8 = 1;
/// Kind tag of [`Command::Put`].
const KIND_PUT: u8 = 1;
/// Kind tag of [`Command::Delete`].
const KIND_DELETE: u8 = 2;
/// Kind tag of [`Command::SetMember`].
const KIND_SET_MEMBER: u8 = 3;
/// Kind tag of [`Command::RemoveMember`].
const KIND_REMOVE_MEMBER: u8 = 4;
/// Kind tag of [`Command::SetClusterId`].
const KIND_SET_CLUSTER_ID: u8 = 5;
/// Kind tag of [`Command::Auth`].
const KIND_AUTH: u8 = 6;
/// Kind tag of [`Command::Txn`].
const KIND_TXN: u8 = 7;
/// Kind tag of [`Command::DeletePrefix`].
const KIND_DELETE_PREFIX: u8 = 8;
/// Flag byte: no cas condition.
const CAS_NONE: u8 = 0;
/// Flag byte: a `u64` cas condition follows.
const CAS_SOME: u8 = 1;

impl Command {
    /// The one key the command writes; `None` for cluster metadata and auth commands, and for a prefix
    /// delete or a transaction (which write several keys).
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Command::Put { key, .. } | Command::Delete { key, .. } => Some(key),
            Command::SetMember { .. }
            | Command::RemoveMember { .. }
            | Command::SetClusterId { .. }
            | Command::Auth(_)
            | Command::Txn(_)
            | Command::DeletePrefix { .. } => None,
        }
    }

    /// The command's compare-and-set condition, if any.
    pub fn cas(&self) -> Option<u64> {
        match self {
            Command::Put { cas, .. } | Command::Delete { cas, .. } => *cas,
            Command::SetMember { .. }
            | Command::RemoveMember { .. }
            | Command::SetClusterId { .. }
            | Command::Auth(_)
            | Command::Txn(_)
            | Command::DeletePrefix { .. } => None,
        }
    }

    /// Encodes the command in the versioned binary format described in the module docs.
    ///
    /// # Panics
    ///
    /// If the key or value is longer than `u32::MAX` bytes (size limits are enforced at the
    /// HTTP layer, far below that), a text field is longer than [`METADATA_TEXT_MAX_BYTES`], a
    /// prefix delete's prefix is empty, or a transaction list is longer than [`crate::TXN_OPS_MAX`].
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.put_u8(FORMAT_VERSION);
        let text = |out: &mut Vec<u8>, text: &str| {
            assert!(text.len() <= METADATA_TEXT_MAX_BYTES, "metadata text of {} bytes", text.len());
            out.put_bytes(text.as_bytes());
        };
        match self {
            Command::SetMember { id, peer_url, client_url, incarnation } => {
                out.put_u8(KIND_SET_MEMBER);
                out.put_u64(*id);
                text(&mut out, peer_url);
                text(&mut out, client_url);
                out.put_u64(*incarnation);
                return out;
            }
            Command::RemoveMember { id } => {
                out.put_u8(KIND_REMOVE_MEMBER);
                out.put_u64(*id);
                return out;
            }
            Command::SetClusterId { cluster_id } => {
                out.put_u8(KIND_SET_CLUSTER_ID);
                text(&mut out, cluster_id);
                return out;
            }
            Command::Auth(command) => {
                out.put_u8(KIND_AUTH);
                command.write(&mut out);
                return out;
            }
            Command::Txn(txn) => {
                out.put_u8(KIND_TXN);
                txn.write(&mut out);
                return out;
            }
            Command::DeletePrefix { prefix } => {
                assert!(!prefix.is_empty(), "a prefix delete with an empty prefix would delete every key");
                out.put_u8(KIND_DELETE_PREFIX);
                out.put_bytes(prefix);
                return out;
            }
            Command::Put { key, value, .. } => {
                out.put_u8(KIND_PUT);
                out.put_bytes(key);
                out.put_bytes(value);
            }
            Command::Delete { key, .. } => {
                out.put_u8(KIND_DELETE);
                out.put_bytes(key);
            }
        }
        match self.cas() {
            None => out.put_u8(CAS_NONE),
            Some(cas) => {
                out.put_u8(CAS_SOME);
                out.put_u64(cas);
            }
        }
        out
    }

    /// Decodes a command encoded by [`Command::encode`].
    ///
    /// # Errors
    ///
    /// Any input that is not exactly one well-formed command: an unknown version, a bad kind or
    /// cas tag, a truncated field, trailing bytes, or a prefix delete with an empty prefix. Never
    /// panics, whatever the input.
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        let mut reader = Reader::new(bytes);
        let version = reader.u8()?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: "command",
                found: version,
                oldest: FORMAT_VERSION,
                expected: FORMAT_VERSION,
            });
        }
        let kind_offset = reader.offset();
        let command = match reader.u8()? {
            KIND_PUT => {
                let key = reader.bytes()?.to_vec();
                let value = reader.bytes()?.to_vec();
                let cas = read_cas(&mut reader)?;
                Command::Put { key, value, cas }
            }
            KIND_DELETE => {
                let key = reader.bytes()?.to_vec();
                let cas = read_cas(&mut reader)?;
                Command::Delete { key, cas }
            }
            KIND_SET_MEMBER => {
                let id = reader.u64()?;
                let peer_url = read_text(&mut reader)?;
                let client_url = read_text(&mut reader)?;
                let incarnation = reader.u64()?;
                Command::SetMember { id, peer_url, client_url, incarnation }
            }
            KIND_REMOVE_MEMBER => Command::RemoveMember { id: reader.u64()? },
            KIND_SET_CLUSTER_ID => Command::SetClusterId { cluster_id: read_text(&mut reader)? },
            KIND_AUTH => Command::Auth(AuthCommand::read(&mut reader)?),
            KIND_TXN => Command::Txn(Txn::read(&mut reader)?),
            KIND_DELETE_PREFIX => Command::DeletePrefix { prefix: read_prefix(&mut reader)? },
            tag => {
                return Err(DecodeError::BadTag { what: "command kind", tag, offset: kind_offset });
            }
        };
        reader.finish()?;
        Ok(command)
    }

    /// The exact encoded size, so `encode` allocates once.
    fn encoded_len(&self) -> usize {
        let fields = match self {
            Command::Put { key, value, .. } => 8 + key.len() + value.len(),
            Command::Delete { key, .. } => 4 + key.len(),
            Command::SetMember { peer_url, client_url, .. } => {
                return 2 + 8 + 8 + peer_url.len() + client_url.len() + 8;
            }
            Command::RemoveMember { .. } => return 2 + 8,
            Command::SetClusterId { cluster_id } => return 2 + 4 + cluster_id.len(),
            Command::Auth(command) => return 2 + command.encoded_len(),
            Command::Txn(txn) => return 2 + txn.encoded_len(),
            Command::DeletePrefix { prefix } => return 2 + 4 + prefix.len(),
        };
        let cas = if self.cas().is_some() { 9 } else { 1 };
        2 + fields + cas
    }
}

/// Reads a prefix delete's prefix, refusing an empty one (see [`Command::DeletePrefix`]).
pub(crate) fn read_prefix(reader: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let offset = reader.offset();
    let prefix = reader.bytes()?;
    if prefix.is_empty() {
        return Err(DecodeError::EmptyPrefix { offset });
    }
    Ok(prefix.to_vec())
}

/// Reads the optional cas condition: a flag byte, then the `u64` if the flag says so.
fn read_cas(reader: &mut Reader<'_>) -> Result<Option<u64>, DecodeError> {
    let offset = reader.offset();
    match reader.u8()? {
        CAS_NONE => Ok(None),
        CAS_SOME => Ok(Some(reader.u64()?)),
        tag => Err(DecodeError::BadTag { what: "cas flag", tag, offset }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_command() -> impl Strategy<Value = Command> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..24);
        let cas = proptest::option::of(any::<u64>());
        let text = || "[a-z0-9:/.é]{0,24}";
        prop_oneof![
            (bytes(), bytes(), cas.clone()).prop_map(|(key, value, cas)| Command::Put { key, value, cas }),
            (bytes(), cas).prop_map(|(key, cas)| Command::Delete { key, cas }),
            (any::<u64>(), text(), text(), any::<u64>()).prop_map(|(id, peer_url, client_url, incarnation)| {
                Command::SetMember { id, peer_url, client_url, incarnation }
            }),
            any::<u64>().prop_map(|id| Command::RemoveMember { id }),
            text().prop_map(|cluster_id| Command::SetClusterId { cluster_id }),
            arb_auth().prop_map(Command::Auth),
            proptest::collection::vec(any::<u8>(), 1..24).prop_map(|prefix| Command::DeletePrefix { prefix }),
            crate::txn::tests::arb_txn().prop_map(Command::Txn),
        ]
    }

    fn arb_auth() -> impl Strategy<Value = AuthCommand> {
        use crate::{Access, TokenHash};
        let name = || "[a-z0-9é ]{0,12}";
        let hash = || any::<[u8; 32]>().prop_map(TokenHash);
        let access = || prop_oneof![Just(Access::Read), Just(Access::Write), Just(Access::Admin)];
        let prefix = || proptest::collection::vec(any::<u8>(), 0..12);
        prop_oneof![
            Just(AuthCommand::Enable),
            Just(AuthCommand::Disable),
            (name(), hash(), proptest::collection::vec(name(), 0..4))
                .prop_map(|(name, token_hash, roles)| AuthCommand::AddUser { name, token_hash, roles }),
            (name(), hash()).prop_map(|(name, token_hash)| AuthCommand::SetToken { name, token_hash }),
            name().prop_map(|name| AuthCommand::DeleteUser { name }),
            name().prop_map(|name| AuthCommand::AddRole { name }),
            name().prop_map(|name| AuthCommand::DeleteRole { name }),
            (name(), prefix(), access()).prop_map(|(role, prefix, access)| AuthCommand::GrantPermission {
                role,
                prefix,
                access
            }),
            (name(), prefix()).prop_map(|(role, prefix)| AuthCommand::RevokePermission { role, prefix }),
            (name(), name()).prop_map(|(user, role)| AuthCommand::GrantRole { user, role }),
            (name(), name()).prop_map(|(user, role)| AuthCommand::RevokeRole { user, role }),
        ]
    }

    #[test]
    fn encoding_is_the_documented_layout() {
        let put = Command::Put { key: b"k".to_vec(), value: b"vv".to_vec(), cas: Some(5) };
        let expected = [1, 1, 1, 0, 0, 0, b'k', 2, 0, 0, 0, b'v', b'v', 1, 5, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(put.encode(), expected);
        let delete = Command::Delete { key: b"k".to_vec(), cas: None };
        assert_eq!(delete.encode(), [1, 2, 1, 0, 0, 0, b'k', 0]);
        let grant = Command::Auth(AuthCommand::GrantPermission {
            role: "r".to_string(),
            prefix: b"p/".to_vec(),
            access: crate::Access::Write,
        });
        assert_eq!(grant.encode(), [1, 6, 8, 1, 0, 0, 0, b'r', 2, 0, 0, 0, b'p', b'/', 2]);
        assert_eq!(Command::Auth(AuthCommand::Enable).encode(), [1, 6, 1]);
        let delete_prefix = Command::DeletePrefix { prefix: b"p/".to_vec() };
        assert_eq!(delete_prefix.encode(), [1, 8, 2, 0, 0, 0, b'p', b'/']);
    }

    #[test]
    fn empty_delete_prefix_does_not_decode() {
        let error = Command::decode(&[1, 8, 0, 0, 0, 0]);
        assert_eq!(error, Err(DecodeError::EmptyPrefix { offset: 2 }));
        let message = error.map(|_| ()).expect_err("empty prefix").to_string();
        assert!(message.contains("name the keys to delete"), "{message}");
    }

    #[test]
    #[should_panic(expected = "would delete every key")]
    fn empty_delete_prefix_does_not_encode() {
        Command::DeletePrefix { prefix: Vec::new() }.encode();
    }

    #[test]
    fn decode_names_what_is_wrong() {
        assert_eq!(Command::decode(&[]), Err(DecodeError::Truncated { offset: 0, needed: 1, available: 0 }));
        assert!(matches!(Command::decode(&[9, 1]), Err(DecodeError::UnknownVersion { found: 9, .. })));
        assert!(matches!(
            Command::decode(&[1, 9]),
            Err(DecodeError::BadTag { what: "command kind", tag: 9, offset: 1 })
        ));
        assert_eq!(Command::decode(&[1, 5, 1, 0, 0, 0, 0xff]), Err(DecodeError::BadUtf8 { offset: 2 }));
        let mut long = vec![1, 5];
        long.extend_from_slice(&2000u32.to_le_bytes());
        long.extend_from_slice(&[b'a'; 2000]);
        assert!(matches!(Command::decode(&long), Err(DecodeError::TextTooLong { len: 2000, .. })));
        assert!(matches!(
            Command::decode(&[1, 2, 0, 0, 0, 0, 7]),
            Err(DecodeError::BadTag { what: "cas flag", tag: 7, offset: 6 })
        ));
        assert_eq!(
            Command::decode(&[1, 2, 0, 0, 0, 0, 0, 0xff]),
            Err(DecodeError::TrailingBytes { offset: 7, count: 1 })
        );
        assert_eq!(Command::decode(&[1, 6, 12]), Err(DecodeError::BadTag { what: "auth op", tag: 12, offset: 2 }));
        assert_eq!(
            Command::decode(&[1, 6, 8, 1, 0, 0, 0, b'r', 0, 0, 0, 0, 4]),
            Err(DecodeError::BadTag { what: "access", tag: 4, offset: 12 })
        );
        assert_eq!(Command::decode(&[1, 6, 2, 0]), Err(DecodeError::TrailingBytes { offset: 3, count: 1 }));
    }

    #[test]
    fn huge_length_prefix_is_truncation_not_allocation() {
        let bytes = [1, 2, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(Command::decode(&bytes), Err(DecodeError::Truncated { offset: 6, .. })));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn every_command_round_trips(command in arb_command()) {
            let encoded = command.encode();
            prop_assert_eq!(encoded.len(), command.encoded_len());
            prop_assert_eq!(Command::decode(&encoded), Ok(command));
        }

        #[test]
        fn every_strict_prefix_is_an_error(command in arb_command()) {
            let encoded = command.encode();
            for len in 0..encoded.len() {
                prop_assert!(Command::decode(&encoded[..len]).is_err());
            }
        }

        #[test]
        fn appended_bytes_are_an_error(command in arb_command(), extra in proptest::collection::vec(any::<u8>(), 1..8)) {
            let mut encoded = command.encode();
            encoded.extend_from_slice(&extra);
            let is_trailing = matches!(Command::decode(&encoded), Err(DecodeError::TrailingBytes { .. }));
            prop_assert!(is_trailing);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            // Any outcome is fine as long as it is not a panic; a success must re-encode exactly.
            if let Ok(command) = Command::decode(&bytes) {
                prop_assert_eq!(command.encode(), bytes);
            }
        }

        #[test]
        fn random_bytes_after_a_valid_header_never_panic(kind in 0u8..10, tail in proptest::collection::vec(any::<u8>(), 0..32)) {
            let mut bytes = vec![FORMAT_VERSION, kind];
            bytes.extend_from_slice(&tail);
            if let Ok(command) = Command::decode(&bytes) {
                prop_assert_eq!(command.encode(), bytes);
            }
        }

        #[test]
        fn random_bytes_after_an_auth_op_never_panic(op in 0u8..13, tail in proptest::collection::vec(any::<u8>(), 0..48)) {
            let mut bytes = vec![FORMAT_VERSION, KIND_AUTH, op];
            bytes.extend_from_slice(&tail);
            if let Ok(command) = Command::decode(&bytes) {
                prop_assert_eq!(command.encode(), bytes);
            }
        }
    }
}
