//! Operations with unknown outcomes, kept beside the entry list in interchangeable groups.
//!
//! An indeterminate operation never has to be linearized, so it has no return entry and
//! would sit at the front of the entry list forever, walked past on every scan. Instead the
//! search tries them separately, once the determinate candidates of a window are exhausted,
//! and only those called by the window's end (the first pending return).
//!
//! Operations that behave identically in the model in every state (say, every delete whose
//! outcome is unknown) are interchangeable: a linearization that uses a later-called one while
//! an earlier-called one is still available can swap their roles. Such a class forms one
//! group whose members are only ever linearized in call order, so `k` identical pending
//! operations add one candidate per window instead of `k`. Every other indeterminate
//! operation is a group of its own.

/// The indeterminate operations of a history, in groups.
///
/// Invariant: for each group, the members linearized on the current path are exactly its
/// first `used[group]` members.
#[derive(Debug)]
pub(super) struct IndeterminateOps {
    /// Members of each group, by call time then position; groups by their first member.
    groups: Vec<Vec<usize>>,
    /// Number of members of each group linearized on the current path.
    used: Vec<usize>,
    /// The group of each operation of the history; `None` for determinate ones.
    group_of: Vec<Option<usize>>,
    /// The call time of each operation of the history.
    call_times: Vec<u64>,
}

impl IndeterminateOps {
    /// Groups the operations whose `is_determinate` is false. `classes[op]`, if `Some`, puts
    /// `op` in one group with the other operations of that class; `None` makes a group of it
    /// alone.
    ///
    /// # Panics
    /// If the slices differ in length, or a determinate operation has a class.
    pub(super) fn new(is_determinate: &[bool], call_times: &[u64], classes: &[Option<usize>]) -> Self {
        let op_count = is_determinate.len();
        assert!(call_times.len() == op_count, "{} call times for {op_count} ops", call_times.len());
        assert!(classes.len() == op_count, "{} classes for {op_count} ops", classes.len());
        let mut by_class: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        let mut groups = Vec::new();
        for op in 0..op_count {
            match (is_determinate[op], classes[op]) {
                (true, None) => {}
                (true, Some(class)) => panic!("determinate op {op} has class {class}"),
                (false, None) => groups.push(vec![op]),
                (false, Some(class)) => by_class.entry(class).or_default().push(op),
            }
        }
        groups.extend(by_class.into_values());
        for members in &mut groups {
            members.sort_by_key(|&op| (call_times[op], op));
        }
        groups.sort_by_key(|members| (call_times[members[0]], members[0]));
        let mut group_of = vec![None; op_count];
        for (group, members) in groups.iter().enumerate() {
            for &op in members {
                group_of[op] = Some(group);
            }
        }
        Self { used: vec![0; groups.len()], groups, group_of, call_times: call_times.to_vec() }
    }

    /// Number of groups whose first member was called by `deadline`: the groups after them
    /// have no candidate yet, as groups are ordered by first call.
    pub(super) fn called_group_count(&self, deadline: u64) -> usize {
        self.groups.partition_point(|members| self.call_times[members[0]] <= deadline)
    }

    /// The member of `group` to try next, if any is left and it was called by `deadline`.
    pub(super) fn candidate(&self, group: usize, deadline: u64) -> Option<usize> {
        let op = *self.groups[group].get(self.used[group])?;
        (self.call_times[op] <= deadline).then_some(op)
    }

    /// Records that `op`, its group's next member, was linearized.
    ///
    /// # Panics
    /// If `op` is not the next member of a group.
    pub(super) fn linearize(&mut self, op: usize) {
        let group = self.group(op);
        let used = self.used[group];
        assert!(self.groups[group].get(used) == Some(&op), "op {op} linearized out of the order of group {group}");
        self.used[group] = used + 1;
    }

    /// Records that `op`, its group's last linearized member, was undone.
    ///
    /// # Panics
    /// If `op` is not the last linearized member of a group.
    pub(super) fn undo(&mut self, op: usize) {
        let group = self.group(op);
        let used = self.used[group];
        assert!(
            used > 0 && self.groups[group][used - 1] == op,
            "op {op} undone but is not the last linearized member of group {group}"
        );
        self.used[group] = used - 1;
    }

    fn group(&self, op: usize) -> usize {
        let Some(group) = self.group_of[op] else { unreachable!("op {op} is determinate") };
        group
    }
}

#[cfg(test)]
mod tests {
    use super::IndeterminateOps;

    #[test]
    fn class_members_are_tried_in_call_order() {
        // Op 0 is determinate; ops 1 and 3 share a class (op 3 called first); op 2 is alone.
        let mut ops =
            IndeterminateOps::new(&[true, false, false, false], &[0, 5, 4, 3], &[None, Some(7), None, Some(7)]);
        assert_eq!(ops.called_group_count(u64::MAX), 2);
        // Groups are ordered by first call: the class (op 3 at 3) before op 2 (at 4).
        assert_eq!(ops.candidate(0, 10), Some(3));
        assert_eq!(ops.candidate(1, 10), Some(2));
        assert_eq!(ops.candidate(0, 2), None, "not called yet");
        assert_eq!(ops.called_group_count(2), 0);
        assert_eq!(ops.called_group_count(3), 1);
        assert_eq!(ops.called_group_count(4), 2);
        ops.linearize(3);
        assert_eq!(ops.candidate(0, 10), Some(1));
        ops.linearize(1);
        assert_eq!(ops.candidate(0, 10), None, "class used up");
        ops.undo(1);
        ops.undo(3);
        assert_eq!(ops.candidate(0, 10), Some(3));
    }

    #[test]
    #[should_panic(expected = "out of the order")]
    fn linearizing_out_of_order_panics() {
        IndeterminateOps::new(&[false, false], &[0, 1], &[Some(0), Some(0)]).linearize(1);
    }
}
