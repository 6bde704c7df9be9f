//! Simulated clients: each issues one request at a time (get, put, delete, cas on a few hot keys, and in some
//! runs auth commands on a few users and roles, and the transaction workload of [`crate::txn_client`]) to the
//! node it believes leads, follows leader hints, and records every key operation for the linearizability check.

use std::collections::BTreeMap;

use tally_kv::{Access, AuthCommand, Command, TokenHash};
use tally_node::RequestId;
use tally_raft::{NodeId, SplitMix64};

use crate::linearizability::KvInput;
use crate::txn_client::{TxnRequest, TxnView};

/// A request a client is waiting on.
#[derive(Clone, Debug)]
pub struct Pending {
    /// The node's request id.
    pub request: RequestId,
    /// The node it was sent to.
    pub node: NodeId,
    /// What it is for, which decides how its answer is checked and recorded.
    pub purpose: Purpose,
    /// When it was sent.
    pub sent_at: u64,
    /// For writes: the fingerprint of the encoded command (to match the applied entry).
    pub fingerprint: Option<u64>,
}

/// What a request is for.
#[derive(Clone, Debug)]
pub enum Purpose {
    /// A key operation, at this position in the linearizability history.
    Kv(usize),
    /// An auth command: not a key operation, so the linearizability check does not see it (the durability,
    /// auth agreement and answer checkers do).
    Auth,
    /// A request of the transaction workload: outside the linearizability history (the answer checkers see it).
    Txn(TxnRequest),
}

/// One simulated client.
pub struct Client {
    /// The client's id (also part of every value it writes, which keeps values unique).
    pub id: u64,
    /// The node it sends its next request to.
    pub target: NodeId,
    /// The request in flight, if any.
    pub pending: Option<Pending>,
    /// Not before this time will it send the next request.
    pub next_at: u64,
    /// Requests issued so far (makes values unique).
    pub seq: u64,
    /// The modify index this client last saw for each key: what it uses as a cas expectation.
    pub seen_index: BTreeMap<Vec<u8>, u64>,
    /// What it last saw of the transaction keys and accounts.
    pub txn_view: TxnView,
}

/// What a client decided to do next.
pub struct Intent {
    /// The key.
    pub key: Vec<u8>,
    /// The operation, as recorded in the history.
    pub input: KvInput,
    /// For writes, the command to propose.
    pub command: Option<Command>,
}

/// Users the auth commands name: few, so commands collide (a grant to a role another client just deleted).
const AUTH_USERS: [&str; 3] = ["u0", "u1", "u2"];
/// Roles the auth commands name.
const AUTH_ROLES: [&str; 3] = ["r0", "r1", "r2"];
/// Prefixes the grants name (the empty one is the whole keyspace: admin there lets auth be enabled).
const AUTH_PREFIXES: [&[u8]; 4] = [b"", b"k", b"k0", b"k1"];

impl Client {
    /// A client that starts by talking to `target`.
    pub fn new(id: u64, target: NodeId) -> Client {
        Client {
            id,
            target,
            pending: None,
            next_at: 0,
            seq: 0,
            seen_index: BTreeMap::new(),
            txn_view: TxnView::default(),
        }
    }

    /// Picks an auth command: mostly roles, grants and users (so some user often holds admin on everything and
    /// enabling succeeds), sometimes revocations and deletions (which the no-lockout rule may refuse).
    pub fn next_auth_command(rng: &mut SplitMix64) -> Command {
        let mut pick = |names: &[&str]| names[rng.range(0, names.len() as u64) as usize].to_string();
        let (user, role) = (pick(&AUTH_USERS), pick(&AUTH_ROLES));
        let command = match rng.range(0, 100) {
            0..15 => AuthCommand::AddRole { name: role },
            15..40 => {
                let prefix = AUTH_PREFIXES[rng.range(0, AUTH_PREFIXES.len() as u64) as usize].to_vec();
                let access = [Access::Read, Access::Write, Access::Admin][rng.range(0, 3) as usize];
                AuthCommand::GrantPermission { role, prefix, access }
            }
            40..48 => {
                let prefix = AUTH_PREFIXES[rng.range(0, AUTH_PREFIXES.len() as u64) as usize].to_vec();
                AuthCommand::RevokePermission { role, prefix }
            }
            48..62 => AuthCommand::AddUser { name: user, token_hash: token_hash(rng), roles: vec![role] },
            62..76 => AuthCommand::GrantRole { user, role },
            76..81 => AuthCommand::RevokeRole { user, role },
            81..84 => AuthCommand::DeleteUser { name: user },
            84..87 => AuthCommand::DeleteRole { name: role },
            87..90 => AuthCommand::SetToken { name: user, token_hash: token_hash(rng) },
            90..96 => AuthCommand::Enable,
            _ => AuthCommand::Disable,
        };
        Command::Auth(command)
    }

    /// Picks the next operation: reads and writes mixed, cas expectations sometimes right and sometimes stale.
    pub fn next_intent(&mut self, rng: &mut SplitMix64, keys: usize) -> Intent {
        self.seq += 1;
        let key = format!("k{}", rng.range(0, keys as u64)).into_bytes();
        let value = format!("c{}-{}", self.id, self.seq).into_bytes();
        match rng.range(0, 10) {
            0..=3 => Intent { key, input: KvInput::Get, command: None },
            4..=6 => {
                let command = Command::Put { key: key.clone(), value: value.clone(), cas: None };
                Intent { key, input: KvInput::Put { value }, command: Some(command) }
            }
            7 => {
                let command = Command::Delete { key: key.clone(), cas: None };
                Intent { key, input: KvInput::Delete, command: Some(command) }
            }
            _ => {
                let seen = self.seen_index.get(&key).copied().unwrap_or(0);
                let expected = match rng.range(0, 4) {
                    0 => 0,
                    1 => seen.saturating_sub(rng.range(1, 5)),
                    _ => seen,
                };
                let command = Command::Put { key: key.clone(), value: value.clone(), cas: Some(expected) };
                Intent { key, input: KvInput::Cas { expected, value }, command: Some(command) }
            }
        }
    }
}

/// A token hash drawn from the run's generator (the simulator never sees a token).
fn token_hash(rng: &mut SplitMix64) -> TokenHash {
    let mut hash = [0; 32];
    for chunk in hash.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    TokenHash(hash)
}
