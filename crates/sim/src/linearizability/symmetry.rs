//! Interchangeable indeterminate operations, tried in one canonical order.
//!
//! Indeterminate operations that behave identically in the model in every state (say, every
//! delete whose outcome is unknown) are interchangeable: a linearization that uses a later-
//! called one while an earlier-called one is still available can swap their roles. So the
//! search only ever tries the earliest-called unlinearized member of a class, and the members
//! linearized on any path form a prefix of the class in call order. Without this, `k`
//! pending identical operations multiply the configurations explored by `k` at every level.

/// The symmetry classes of a history's operations.
///
/// Invariant: for each class, the members linearized on the current path are exactly its
/// first `used[class]` members in call order.
#[derive(Debug)]
pub(super) struct Symmetry {
    /// The class of each operation, if it has one.
    class_of: Vec<Option<usize>>,
    /// Members of each class, ordered as their call entries are (by call time, then position).
    members: Vec<Vec<usize>>,
    /// Number of members of each class linearized on the current path.
    used: Vec<usize>,
}

impl Symmetry {
    /// No operation is interchangeable with another.
    pub(super) fn none(op_count: usize) -> Self {
        Self {
            class_of: vec![None; op_count],
            members: Vec::new(),
            used: Vec::new(),
        }
    }

    /// Classes `class_of` (dense ids from 0) over operations called at `call_times`.
    ///
    /// # Panics
    /// If the slices differ in length.
    pub(super) fn new(class_of: Vec<Option<usize>>, call_times: &[u64]) -> Self {
        assert!(
            class_of.len() == call_times.len(),
            "{} classes for {} operations",
            class_of.len(),
            call_times.len()
        );
        let class_count = class_of.iter().flatten().max().map_or(0, |max| max + 1);
        let mut members = vec![Vec::new(); class_count];
        for (op, class) in class_of.iter().enumerate() {
            if let Some(class) = class {
                members[*class].push(op);
            }
        }
        for class_members in &mut members {
            class_members.sort_by_key(|&op| (call_times[op], op));
        }
        Self {
            class_of,
            used: vec![0; class_count],
            members,
        }
    }

    /// Whether the class of operation `op` has one, i.e. it is subject to the canonical order.
    pub(super) fn has_class(&self, op: usize) -> bool {
        self.class_of[op].is_some()
    }

    /// Whether `op` may be linearized next: it has no class or is its class's next member.
    pub(super) fn is_canonical(&self, op: usize) -> bool {
        self.class_of[op].is_none_or(|class| self.members[class].get(self.used[class]) == Some(&op))
    }

    /// Records that `op` was linearized.
    ///
    /// # Panics
    /// If `op` is not canonical.
    pub(super) fn linearize(&mut self, op: usize) {
        assert!(self.is_canonical(op), "op {op} linearized out of its class order");
        if let Some(class) = self.class_of[op] {
            self.used[class] += 1;
        }
    }

    /// Records that `op`, the last linearized member of its class if it has one, was undone.
    ///
    /// # Panics
    /// If `op` has a class and is not its last linearized member.
    pub(super) fn undo(&mut self, op: usize) {
        let Some(class) = self.class_of[op] else {
            return;
        };
        let used = self.used[class];
        assert!(
            used > 0 && self.members[class][used - 1] == op,
            "op {op} undone but is not the last linearized member of class {class}"
        );
        self.used[class] = used - 1;
    }
}

#[cfg(test)]
mod tests {
    use super::Symmetry;

    #[test]
    fn members_are_used_in_call_order() {
        // Ops 0 and 2 share class 0; op 2 is called first. Op 1 has no class.
        let mut symmetry = Symmetry::new(vec![Some(0), None, Some(0)], &[5, 0, 3]);
        assert!(symmetry.is_canonical(1));
        assert!(symmetry.is_canonical(2));
        assert!(!symmetry.is_canonical(0));
        symmetry.linearize(2);
        assert!(symmetry.is_canonical(0));
        assert!(!symmetry.is_canonical(2));
        symmetry.linearize(0);
        symmetry.undo(0);
        symmetry.undo(2);
        assert!(symmetry.is_canonical(2));
        assert!(!symmetry.is_canonical(0));
    }

    #[test]
    #[should_panic(expected = "out of its class order")]
    fn linearizing_out_of_order_panics() {
        Symmetry::new(vec![Some(0), Some(0)], &[0, 1]).linearize(1);
    }
}
