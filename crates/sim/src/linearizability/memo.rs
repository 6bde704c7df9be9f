//! The set of linearized operations and Lowe's memo of visited configurations, extended with
//! dominance on indeterminate operations.
//!
//! A configuration is (linearized determinate ops, linearized indeterminate ops, state).
//! Lowe prunes a configuration visited before. Here a configuration is also pruned when one
//! with the same determinate ops and state but a *subset* of its indeterminate ops was
//! visited: an indeterminate op never has to take effect, so every completion of the larger
//! configuration is also a completion of the smaller one (skip the extra ops). Without this,
//! each pending indeterminate op doubles the configurations explored after its call.

use std::collections::HashMap;
use std::hash::Hash;

use super::bitset::Bitset;

/// Which of the two sets an operation belongs to, and its position there.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Determinate(usize),
    Indeterminate(usize),
}

/// The operations linearized on the current search path.
///
/// Invariant: an operation is in at most one of the two sets, the one of its kind.
#[derive(Debug)]
pub(super) struct Linearized {
    /// The set and position of each operation of the history.
    slot_of: Vec<Slot>,
    /// Linearized operations with known outputs, by dense position.
    determinate: Bitset,
    /// Linearized operations with unknown outputs, by dense position.
    indeterminate: Bitset,
}

impl Linearized {
    /// An empty set over operations whose kinds are `is_determinate` (one per operation).
    pub(super) fn new(is_determinate: impl Iterator<Item = bool>) -> Self {
        let (mut determinate, mut indeterminate) = (0, 0);
        let slot_of: Vec<Slot> = is_determinate
            .map(|is_determinate| {
                let counter = if is_determinate { &mut determinate } else { &mut indeterminate };
                *counter += 1;
                if is_determinate { Slot::Determinate(*counter - 1) } else { Slot::Indeterminate(*counter - 1) }
            })
            .collect();
        Self { slot_of, determinate: Bitset::new(determinate), indeterminate: Bitset::new(indeterminate) }
    }

    /// Adds operation `op`, which must not be linearized yet.
    pub(super) fn insert(&mut self, op: usize) {
        match self.slot_of[op] {
            Slot::Determinate(position) => self.determinate.insert(position),
            Slot::Indeterminate(position) => self.indeterminate.insert(position),
        }
    }

    /// Removes operation `op`, which must be linearized.
    pub(super) fn remove(&mut self, op: usize) {
        match self.slot_of[op] {
            Slot::Determinate(position) => self.determinate.remove(position),
            Slot::Indeterminate(position) => self.indeterminate.remove(position),
        }
    }
}

/// Configurations visited so far.
///
/// Invariant: the indeterminate sets stored under one key form an antichain (none is a
/// subset of another), since a stored superset is dominated and dropped.
pub(super) struct Memo<S> {
    /// For each (determinate set, state), the minimal indeterminate sets visited with it.
    visited: HashMap<(Bitset, S), Vec<Bitset>>,
}

impl<S: Clone + Eq + Hash> Memo<S> {
    /// An empty memo.
    pub(super) fn new() -> Self {
        Self { visited: HashMap::new() }
    }

    /// Records the configuration (`linearized`, `state`). Returns `false`, recording nothing,
    /// if a visited configuration dominates it, so it cannot lead anywhere new.
    pub(super) fn insert(&mut self, linearized: &Linearized, state: &S) -> bool {
        let key = (linearized.determinate.clone(), state.clone());
        let minimal = self.visited.entry(key).or_default();
        let current = &linearized.indeterminate;
        if minimal.iter().any(|seen| seen.is_subset(current)) {
            return false;
        }
        minimal.retain(|seen| !current.is_subset(seen));
        minimal.push(current.clone());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::{Linearized, Memo};

    #[test]
    fn configurations_with_extra_indeterminate_ops_are_dominated() {
        // Ops 0 and 2 are determinate, 1 and 3 indeterminate.
        let mut linearized = Linearized::new([true, false, true, false].into_iter());
        let mut memo = Memo::new();
        assert!(memo.insert(&linearized, &0u8));
        assert!(!memo.insert(&linearized, &0u8), "exact repeat");
        linearized.insert(1);
        assert!(!memo.insert(&linearized, &0u8), "superset of indeterminate ops");
        assert!(memo.insert(&linearized, &1u8), "another state");
        linearized.insert(0);
        assert!(memo.insert(&linearized, &1u8), "another determinate set");
        linearized.remove(1);
        assert!(memo.insert(&linearized, &1u8), "a strict subset is new");
        linearized.insert(3);
        assert!(!memo.insert(&linearized, &1u8), "dominated by the subset just stored");
    }
}
