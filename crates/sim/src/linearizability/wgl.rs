//! Wing & Gong's search with Lowe's memoization, generic over a sequential [`Model`].
//!
//! The search walks the [`EntryList`] of operations with known outputs from its head. At a
//! call entry it tries to linearize that operation next: if the model accepts it and the
//! resulting configuration is not dominated by one reached before (see [`Memo`]), the entry
//! is lifted, the previous state pushed on an explicit stack, and the walk restarts from the
//! head. At a return entry, the end of the window, it tries the indeterminate operations
//! called by then ([`IndeterminateOps`]) the same way. When those are exhausted too, the
//! operation of the return entry can no longer be linearized in time, so the search
//! backtracks: it pops the last choice, undoes it and resumes the scan after it. It succeeds
//! when no return entry is left (indeterminate operations may stay unlinearized), and fails
//! when it must backtrack with an empty stack. Every loop iteration is one step of the budget.

use std::fmt::Debug;
use std::hash::Hash;

use super::entry_list::{EntryKind, EntryList, Span};
use super::explain::{StuckPoint, explain_violation};
use super::indeterminate::IndeterminateOps;
use super::memo::{Linearized, Memo};

/// A sequential specification that histories are checked against.
///
/// Implementations must be deterministic: `step` on equal inputs returns equal results, since
/// the search memoizes on the state.
pub trait Model {
    /// The state of the sequential object. It is the memo key together with the set of
    /// linearized operations, so keep it small and cheap to hash.
    type State: Clone + Eq + Hash + Debug;
    /// What a client asked for.
    type Input: Debug;
    /// What a client was told.
    type Output: Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Applies `input` to `state` and returns the state after it, or `None` if `output`
    /// could not have been observed from `state`.
    ///
    /// `output` is `None` for an operation whose outcome is unknown (timed out, client
    /// crashed): then `step` returns the state after the operation took effect. The checker
    /// separately considers that it never took effect, so an implementation may return `None`
    /// where taking effect leaves the state unchanged, to prune the search.
    fn step(&self, state: &Self::State, input: &Self::Input, output: Option<&Self::Output>) -> Option<Self::State>;
}

/// One client operation of a history.
///
/// `call` and `ret` are logical times (the simulator's step counter). Operation `a` precedes
/// `b` in real time iff `a.ret < b.call`; equal times are concurrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// The client that issued it; shown in explanations only.
    pub client: u64,
    /// When the client invoked it.
    pub call: u64,
    /// When it returned to the client; `None` if it never did.
    pub ret: Option<u64>,
    /// What the client asked for.
    pub input: I,
    /// What the client was told, or `None` if the outcome is unknown: then the operation may
    /// take effect at any time after `call` (even after `ret`, as a timed-out request may
    /// still be applied) or never.
    ///
    /// Invariant: `output.is_some()` implies `ret.is_some()`.
    pub output: Option<O>,
}

impl<I, O> Operation<I, O> {
    /// Whether the outcome is known, so the operation must take effect between call and return.
    pub fn is_determinate(&self) -> bool {
        self.output.is_some()
    }
}

/// The verdict of [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// The history is linearizable.
    Ok,
    /// The history is not linearizable.
    Violation {
        /// Human-readable: the longest linearizable prefix found and the operations that
        /// could not be placed after it.
        explanation: String,
    },
    /// The search budget ran out before a verdict.
    Unknown,
}

impl CheckResult {
    /// Whether the verdict is [`CheckResult::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckResult::Ok)
    }

    /// Whether the verdict is a [`CheckResult::Violation`].
    pub fn is_violation(&self) -> bool {
        matches!(self, CheckResult::Violation { .. })
    }
}

/// Checks whether `history` is linearizable with respect to `model`, spending at most
/// `budget_steps` search steps.
///
/// Memory is bounded by the steps taken: each step adds at most one configuration (two sets
/// of `history.len() / 8` bytes in all, plus a state) to the memo.
///
/// # Panics
/// If an operation returns before it is called, or has an output but no return time.
pub fn check<M: Model>(model: &M, history: &[Operation<M::Input, M::Output>], budget_steps: u64) -> CheckResult {
    check_counting_steps(model, history, &vec![None; history.len()], budget_steps).0
}

/// Like [`check`], with interchangeable indeterminate operations given by `classes` (see
/// [`IndeterminateOps::new`]), and also returning the number of steps spent.
///
/// Operations of one class must behave identically in `model` in every state.
///
/// # Panics
/// As [`check`], and if `classes` is not one per operation or gives a determinate one a class.
pub(super) fn check_counting_steps<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    classes: &[Option<usize>],
    budget_steps: u64,
) -> (CheckResult, u64) {
    let spans: Vec<Span> = history.iter().enumerate().filter_map(determinate_span).collect();
    let is_determinate: Vec<bool> = history.iter().map(Operation::is_determinate).collect();
    let call_times: Vec<u64> = history.iter().map(|op| op.call).collect();
    let linearized = Linearized::new(is_determinate.iter().copied());
    let state = model.init();
    let mut memo = Memo::new();
    let fresh = memo.insert(&linearized, &state);
    assert!(fresh, "a new memo already held the initial configuration");
    let mut search = Search {
        model,
        history,
        list: EntryList::new(&spans),
        indeterminate: IndeterminateOps::new(&is_determinate, &call_times, classes),
        linearized,
        memo,
        stack: Vec::new(),
        state,
        stuck: None,
        steps: 0,
    };
    let result = search.run(budget_steps);
    (result, search.steps)
}

/// The span of operation `position` if its output is known, asserting the [`Operation`]
/// invariant.
fn determinate_span<I, O>((position, op): (usize, &Operation<I, O>)) -> Option<Span> {
    assert!(
        op.output.is_none() || op.ret.is_some(),
        "op {position} of client {} has an output but no return time",
        op.client
    );
    match (op.ret, op.is_determinate()) {
        (Some(ret), true) => Some(Span { op: position, call: op.call, ret }),
        _ => None,
    }
}

/// Where the search is in scanning the candidates of the current window: the call entries
/// before the first linked return entry, then the indeterminate operations called by then.
/// Operations with known outputs come first so that configurations with fewer indeterminate
/// operations are visited first and dominate the others in the [`Memo`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cursor {
    /// At this position of the entry list.
    Entry(usize),
    /// At this group of indeterminate operations.
    Group {
        /// Index of the group to try.
        group: usize,
        /// Groups from this index on have no member called within the window.
        limit: usize,
        /// The first linked return entry, which ends the window.
        overdue: usize,
    },
}

/// A choice the search can undo.
struct Frame<S> {
    /// Where the choice was made, to undo it and resume the scan after it.
    cursor: Cursor,
    /// The operation linearized.
    op: usize,
    /// The model state before it.
    state_before: S,
}

/// The state of one search.
///
/// Invariant: `linearized` holds exactly the operations of the frames in `stack`; their
/// call entries are exactly the entries lifted from `list`, and their indeterminate
/// operations exactly those `indeterminate` counts as used.
struct Search<'a, M: Model> {
    /// The sequential specification.
    model: &'a M,
    /// The operations being checked.
    history: &'a [Operation<M::Input, M::Output>],
    /// Entries of determinate operations not yet linearized.
    list: EntryList,
    /// Indeterminate operations, grouped.
    indeterminate: IndeterminateOps,
    /// Operations linearized on the current path.
    linearized: Linearized,
    /// Configurations reached so far: one dominated by them cannot succeed where they did
    /// not (Lowe's memoization).
    memo: Memo<M::State>,
    /// The current path, oldest choice first; explicit so deep histories cannot overflow the
    /// call stack.
    stack: Vec<Frame<M::State>>,
    /// The model state after the current path.
    state: M::State,
    /// The deepest point where the search had to backtrack, for the explanation.
    stuck: Option<StuckPoint>,
    /// Steps spent.
    steps: u64,
}

impl<M: Model> Search<'_, M> {
    /// Runs the search to a verdict or until `budget_steps` are spent.
    fn run(&mut self, budget_steps: u64) -> CheckResult {
        let mut cursor = Cursor::Entry(self.list.first());
        while self.list.returns_linked() > 0 {
            if self.steps >= budget_steps {
                return CheckResult::Unknown;
            }
            self.steps += 1;
            cursor = match cursor {
                Cursor::Entry(position) => self.scan_entry(position),
                Cursor::Group { group, limit, overdue } if group < limit => self.scan_group(group, limit, overdue),
                Cursor::Group { overdue, .. } => {
                    self.note_stuck(overdue);
                    match self.backtrack() {
                        Some(cursor) => cursor,
                        None => return self.violation(),
                    }
                }
            };
        }
        CheckResult::Ok
    }

    /// Tries the entry at `position` and returns where to continue.
    fn scan_entry(&mut self, position: usize) -> Cursor {
        // A return entry is linked, and a scan never passes one, so it is ahead.
        assert!(!self.list.is_tail(position), "scan passed every return entry");
        let entry = self.list.entry(position);
        match entry.kind {
            EntryKind::Call { .. } if self.try_linearize(entry.op, Cursor::Entry(position)) => {
                Cursor::Entry(self.list.first())
            }
            EntryKind::Call { .. } => Cursor::Entry(self.list.next(position)),
            EntryKind::Return => {
                Cursor::Group { group: 0, limit: self.indeterminate.called_group_count(entry.time), overdue: position }
            }
        }
    }

    /// Tries the next member of `group`, if called before `overdue`'s return, and returns
    /// where to continue.
    fn scan_group(&mut self, group: usize, limit: usize, overdue: usize) -> Cursor {
        let cursor = Cursor::Group { group, limit, overdue };
        let deadline = self.list.entry(overdue).time;
        match self.indeterminate.candidate(group, deadline) {
            Some(op) if self.try_linearize(op, cursor) => Cursor::Entry(self.list.first()),
            _ => Cursor::Group { group: group + 1, limit, overdue },
        }
    }

    /// Linearizes `op`, the candidate at `cursor`, next if the model allows it and the
    /// resulting configuration is not dominated. Returns whether it did.
    fn try_linearize(&mut self, op: usize, cursor: Cursor) -> bool {
        let operation = &self.history[op];
        let Some(next_state) = self.model.step(&self.state, &operation.input, operation.output.as_ref()) else {
            return false;
        };
        self.linearized.insert(op);
        if !self.memo.insert(&self.linearized, &next_state) {
            self.linearized.remove(op);
            return false;
        }
        match cursor {
            Cursor::Entry(position) => self.list.lift(position),
            Cursor::Group { .. } => self.indeterminate.linearize(op),
        }
        let state_before = std::mem::replace(&mut self.state, next_state);
        self.stack.push(Frame { cursor, op, state_before });
        true
    }

    /// Undoes the last choice and returns where to resume scanning, or `None` if there is
    /// no choice left to undo.
    fn backtrack(&mut self) -> Option<Cursor> {
        let frame = self.stack.pop()?;
        self.state = frame.state_before;
        self.linearized.remove(frame.op);
        Some(match frame.cursor {
            Cursor::Entry(position) => {
                self.list.unlift(position);
                Cursor::Entry(self.list.next(position))
            }
            Cursor::Group { group, limit, overdue } => {
                self.indeterminate.undo(frame.op);
                Cursor::Group { group: group + 1, limit, overdue }
            }
        })
    }

    /// Records the current path if it is the deepest one that got stuck so far, `return_entry` being
    /// the return entry that forced the backtrack.
    fn note_stuck(&mut self, return_entry: usize) {
        // Deepest: the most determinate ops linearized, then the fewest indeterminate ones
        // (those applied just before getting stuck only obscure the explanation).
        let determinate_count = self.list.lifted_count();
        let rank = |determinate_count: usize, total: usize| (determinate_count, std::cmp::Reverse(total));
        if self.stuck.as_ref().is_some_and(|stuck| {
            rank(stuck.determinate_count, stuck.prefix.len()) >= rank(determinate_count, self.stack.len())
        }) {
            return;
        }
        let prefix = self.stack.iter().map(|frame| frame.op).collect();
        let mut pending = Vec::new();
        let mut position = self.list.first();
        while position != return_entry {
            pending.push(self.list.entry(position).op);
            position = self.list.next(position);
        }
        let deadline = self.list.entry(return_entry).time;
        pending.extend(
            (0..self.indeterminate.called_group_count(deadline))
                .filter_map(|group| self.indeterminate.candidate(group, deadline)),
        );
        self.stuck = Some(StuckPoint { prefix, determinate_count, overdue: self.list.entry(return_entry).op, pending });
    }

    /// The violation verdict, explained from the deepest stuck point.
    fn violation(&self) -> CheckResult {
        let Some(stuck) = &self.stuck else { unreachable!("the search failed without ever backtracking") };
        CheckResult::Violation { explanation: explain_violation(self.model, self.history, stuck) }
    }
}

#[cfg(test)]
mod tests;
