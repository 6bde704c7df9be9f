//! The doubly linked list of call and return entries that the WGL search walks.
//!
//! Only operations with known outputs have entries: indeterminate ones never have to be
//! linearized, so they are kept aside (see `indeterminate.rs`) instead of being walked past
//! on every scan. Entries are sorted by time; at equal times calls come before returns, so an operation
//! returning at `t` is concurrent with one called at `t` (the lenient choice: it never
//! invents a real-time order the recorder did not see). Lifting a call entry unlinks it and
//! its return entry; unlifting relinks them in place ("dancing links"), which is only valid
//! in last-lifted, first-unlifted order, and that order is asserted.

/// What an entry marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EntryKind {
    /// The operation was invoked.
    Call {
        /// List position of the matching return entry.
        ret: usize,
    },
    /// The operation returned: it must be linearized before this point.
    Return,
}

/// One event of the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    /// Position of the operation in the checked history.
    pub(super) op: usize,
    /// Logical time of the event.
    pub(super) time: u64,
    /// Call or return.
    pub(super) kind: EntryKind,
}

/// When an operation with a known output was called and returned.
#[derive(Clone, Copy, Debug)]
pub(super) struct Span {
    /// Position of the operation in the checked history.
    pub(super) op: usize,
    /// Logical call time.
    pub(super) call: u64,
    /// Logical return time.
    pub(super) ret: u64,
}

/// The entries not yet lifted, in time order, between a head and a tail sentinel.
///
/// Invariant: the entries reachable from the head are exactly those not lifted, in position
/// order, and `returns_linked` counts the return entries among them.
pub(super) struct EntryList {
    /// All entries in time order; positions `0..len`. The head sentinel is `len`, the tail `len + 1`.
    entries: Vec<Entry>,
    /// Successor of each position (sentinels included).
    next: Vec<usize>,
    /// Predecessor of each position (sentinels included).
    prev: Vec<usize>,
    /// Whether each entry is linked; lets `lift` assert it is not lifted twice.
    linked: Vec<bool>,
    /// Call entries lifted and not yet unlifted, most recent last; enforces LIFO unlifting.
    lifted: Vec<usize>,
    /// Number of linked return entries: the search succeeds when it reaches zero.
    returns_linked: usize,
}

impl EntryList {
    /// Builds the list of the operations with spans `spans`.
    ///
    /// # Panics
    /// If a return time is before its call time.
    pub(super) fn new(spans: &[Span]) -> Self {
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(spans.len() * 2);
        for span in spans {
            assert!(span.ret >= span.call, "op {} returns at {} before its call at {}", span.op, span.ret, span.call);
            events.push((span.call, false, span.op));
            events.push((span.ret, true, span.op));
        }
        // `false < true`: at equal times calls sort before returns, making them concurrent.
        events.sort_unstable();
        let op_bound = spans.iter().map(|span| span.op + 1).max().unwrap_or_default();
        let mut ret_position = vec![usize::MAX; op_bound];
        for (position, &(_, is_return, op)) in events.iter().enumerate() {
            if is_return {
                assert!(ret_position[op] == usize::MAX, "op {op} has two spans");
                ret_position[op] = position;
            }
        }
        let entries: Vec<Entry> = events
            .iter()
            .map(|&(time, is_return, op)| Entry {
                op,
                time,
                kind: if is_return { EntryKind::Return } else { EntryKind::Call { ret: ret_position[op] } },
            })
            .collect();
        Self::link(entries)
    }

    /// Links `entries` in order between the sentinels.
    fn link(entries: Vec<Entry>) -> Self {
        let len = entries.len();
        let (head, tail) = (len, len + 1);
        // Positions 0..=len+1 in a row: head, 0, 1, .., len-1, tail.
        let order: Vec<usize> = std::iter::once(head).chain(0..len).chain([tail]).collect();
        let mut next = vec![tail; len + 2];
        let mut prev = vec![head; len + 2];
        for pair in order.windows(2) {
            next[pair[0]] = pair[1];
            prev[pair[1]] = pair[0];
        }
        let returns_linked = entries.iter().filter(|e| e.kind == EntryKind::Return).count();
        Self { linked: vec![true; len], entries, next, prev, lifted: Vec::new(), returns_linked }
    }

    /// The first linked entry, or the tail sentinel if none is left.
    pub(super) fn first(&self) -> usize {
        self.next[self.head()]
    }

    /// The linked entry after `position` (an entry or the head), or the tail sentinel.
    pub(super) fn next(&self, position: usize) -> usize {
        assert!(position != self.tail(), "next of the tail sentinel");
        self.next[position]
    }

    /// Whether `position` is the tail sentinel, i.e. the walk ran past the last entry.
    pub(super) fn is_tail(&self, position: usize) -> bool {
        position == self.tail()
    }

    /// The entry at `position`.
    ///
    /// # Panics
    /// If `position` is a sentinel.
    pub(super) fn entry(&self, position: usize) -> Entry {
        self.entries[position]
    }

    /// Number of return entries still linked.
    pub(super) fn returns_linked(&self) -> usize {
        self.returns_linked
    }

    /// Number of call entries lifted: the determinate operations linearized.
    pub(super) fn lifted_count(&self) -> usize {
        self.lifted.len()
    }

    /// Unlinks the call entry at `position` and its return entry, if any.
    ///
    /// # Panics
    /// If `position` is not a linked call entry.
    pub(super) fn lift(&mut self, position: usize) {
        let EntryKind::Call { ret } = self.entries[position].kind else {
            unreachable!("lift of return entry {position}")
        };
        self.unlink(position);
        self.unlink(ret);
        assert!(self.returns_linked > 0, "return entry {ret} was not counted");
        self.returns_linked -= 1;
        self.lifted.push(position);
    }

    /// Relinks the call entry at `position`, which must be the most recently lifted one.
    ///
    /// # Panics
    /// If `position` is not the most recently lifted entry.
    pub(super) fn unlift(&mut self, position: usize) {
        let last = self.lifted.pop();
        assert!(last == Some(position), "unlift of {position} but last lifted is {last:?}");
        let EntryKind::Call { ret } = self.entries[position].kind else {
            unreachable!("entry {position} was lifted but is a return entry")
        };
        // Reverse order of `lift`, as dancing links require.
        self.relink(ret);
        self.returns_linked += 1;
        self.relink(position);
    }

    /// Checks the list invariant by walking it; O(entries), for tests.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        let mut position = self.first();
        let mut previous = self.head();
        let mut returns = 0;
        while !self.is_tail(position) {
            assert!(self.linked[position], "unlinked entry {position} is reachable");
            assert!(position > previous || previous == self.head(), "entries out of order");
            assert_eq!(self.prev[position], previous, "prev of {position} is stale");
            returns += usize::from(self.entries[position].kind == EntryKind::Return);
            previous = position;
            position = self.next[position];
        }
        assert_eq!(returns, self.returns_linked, "return count drifted");
    }

    fn head(&self) -> usize {
        self.entries.len()
    }

    fn tail(&self) -> usize {
        self.entries.len() + 1
    }

    fn unlink(&mut self, position: usize) {
        assert!(self.linked[position], "entry {position} unlinked twice");
        self.linked[position] = false;
        let (prev, next) = (self.prev[position], self.next[position]);
        self.next[prev] = next;
        self.prev[next] = prev;
    }

    fn relink(&mut self, position: usize) {
        assert!(!self.linked[position], "entry {position} relinked twice");
        self.linked[position] = true;
        let (prev, next) = (self.prev[position], self.next[position]);
        self.next[prev] = position;
        self.prev[next] = position;
    }
}

#[cfg(test)]
mod tests {
    use super::{EntryKind, EntryList, Span};

    fn walk(list: &EntryList) -> Vec<(usize, bool)> {
        let mut out = Vec::new();
        let mut position = list.first();
        while !list.is_tail(position) {
            let entry = list.entry(position);
            out.push((entry.op, entry.kind == EntryKind::Return));
            position = list.next(position);
        }
        out
    }

    fn span(op: usize, call: u64, ret: u64) -> Span {
        Span { op, call, ret }
    }

    #[test]
    fn equal_times_put_calls_before_returns() {
        // Op 0 returns at 5 and op 1 is called at 5: they must be concurrent.
        let list = EntryList::new(&[span(0, 1, 5), span(1, 5, 6), span(2, 2, 3)]);
        list.check_invariants();
        assert_eq!(walk(&list), vec![(0, false), (2, false), (2, true), (1, false), (0, true), (1, true)]);
        assert_eq!(list.returns_linked(), 3);
    }

    #[test]
    fn lift_and_unlift_restore_the_list() {
        // Lifting unlinks both entries of an op; unlifting in LIFO order restores them.
        let mut list = EntryList::new(&[span(0, 1, 2), span(1, 3, 4)]);
        let before = walk(&list);
        let first = list.first();
        list.lift(first);
        assert_eq!(walk(&list), vec![(1, false), (1, true)]);
        let second = list.first();
        list.lift(second);
        list.check_invariants();
        assert!(list.is_tail(list.first()));
        assert_eq!(list.returns_linked(), 0);
        list.unlift(second);
        list.unlift(first);
        list.check_invariants();
        assert_eq!(walk(&list), before);
    }

    #[test]
    #[should_panic(expected = "but last lifted is")]
    fn unlift_out_of_order_panics() {
        let mut list = EntryList::new(&[span(0, 1, 2), span(1, 1, 2)]);
        let first = list.first();
        list.lift(first);
        let second = list.first();
        list.lift(second);
        list.unlift(first);
    }
}
