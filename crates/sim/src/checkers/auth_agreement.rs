//! Auth agreement: who may do what is part of the replicated state (Raft §5.4.3, State Machine Safety, applied
//! to the auth store), so two nodes that applied the log up to the same index hold equal auth states, and on
//! every node the auth store's own invariants hold (while auth is enabled some user holds admin on the whole
//! keyspace; every role a user holds exists). A node that applied an auth command differently would let a
//! request through on one replica that another refuses.
//!
//! The state checksum that [`super::StateMachineSafety`] compares covers the auth state too; this checker
//! compares the auth states themselves, so a difference is reported as what it is.

use std::collections::HashMap;
use std::sync::Arc;

use tally_kv::{AuthState, Role, show_bytes};
use tally_raft::{LogIndex, NodeId};

use super::{Check, violation};

/// The auth state after each applied index, as the first node to reach it had it.
#[derive(Default)]
pub struct AuthAgreement {
    /// applied index -> auth state. `Arc`s: consecutive indexes without an auth change share one state.
    states: HashMap<u64, Arc<AuthState>>,
}

impl AuthAgreement {
    /// Records `node`'s auth state at `applied` and checks it.
    ///
    /// # Errors
    /// The state breaks an invariant of the auth store, or another node had a different auth state at the
    /// same applied index.
    pub fn record(&mut self, node: NodeId, applied: LogIndex, auth: &Arc<AuthState>) -> Check {
        if let Err(broken) = auth.check_invariants() {
            return violation("auth_agreement", format!("{node} at applied {applied}: {broken}"));
        }
        let known = self.states.entry(applied.0).or_insert_with(|| Arc::clone(auth));
        if Arc::ptr_eq(known, auth) || known == auth {
            return Ok(());
        }
        let detail = format!("{node} at applied {applied}: {}", difference(auth, known));
        violation("auth_agreement", detail)
    }
}

/// What differs between `mine` and `theirs` (another node's state at the same index), for the report.
fn difference(mine: &AuthState, theirs: &AuthState) -> String {
    if mine.is_enabled() != theirs.is_enabled() {
        return format!("auth enabled {} here, {} on another node", mine.is_enabled(), theirs.is_enabled());
    }
    for (name, role) in mine.roles() {
        match theirs.roles().get(name) {
            Some(other) if other == role => {}
            other => {
                let theirs = other.map_or("nothing (no such role)".to_string(), grants);
                return format!("role {name} grants {} here, {theirs} on another node", grants(role));
            }
        }
    }
    for (name, user) in mine.users() {
        match theirs.users().get(name) {
            Some(other) if other == user => {}
            other => {
                let theirs = other.map(|u| &u.roles);
                return format!("user {name} (roles {:?}) differs here from another node's {theirs:?}", user.roles);
            }
        }
    }
    "another node has users or roles this one lacks".to_string()
}

/// What a role grants, for the report: `"k" admin, "" read`.
fn grants(role: &Role) -> String {
    let grants: Vec<String> =
        role.permissions.iter().map(|(prefix, access)| format!("{} {access}", show_bytes(prefix))).collect();
    if grants.is_empty() { "nothing".to_string() } else { grants.join(", ") }
}
