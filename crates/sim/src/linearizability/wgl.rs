//! Wing & Gong's search with Lowe's memoization, generic over a sequential [`Model`].
//!
//! The search walks the [`EntryList`] from its head. At a call entry it tries to linearize
//! that operation next: if the model accepts it and the pair (linearized set, resulting
//! state) was never reached before, the entry is lifted, the previous state pushed on an
//! explicit stack, and the walk restarts from the head. At a return entry the operation it
//! belongs to should already have been linearized, so the search backtracks: it pops the last
//! choice, unlifts it and tries the next entry after it. It succeeds when no return entry is
//! left (indeterminate operations have none and may stay unlinearized), and fails when it
//! must backtrack with an empty stack. Every loop iteration is one step of the budget.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;

use super::bitset::Bitset;
use super::entry_list::{EntryKind, EntryList, Span};
use super::explain::{StuckPoint, explain_violation};

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
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
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
/// Memory is bounded by the steps taken: each step adds at most one (set, state) pair of
/// `history.len() / 8` bytes plus a state to the memo cache.
///
/// # Panics
/// If an operation returns before it is called, or has an output but no return time.
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    budget_steps: u64,
) -> CheckResult {
    check_counting_steps(model, history, budget_steps).0
}

/// Like [`check`], also returning the number of steps spent.
pub(super) fn check_counting_steps<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    budget_steps: u64,
) -> (CheckResult, u64) {
    let spans: Vec<Span> = history.iter().enumerate().map(span_of).collect();
    let mut search = Search {
        model,
        history,
        list: EntryList::new(&spans),
        linearized: Bitset::new(history.len()),
        memo: HashSet::new(),
        stack: Vec::new(),
        state: model.init(),
        stuck: None,
        steps: 0,
    };
    let result = search.run(budget_steps);
    (result, search.steps)
}

/// The span of operation `position`, asserting the [`Operation`] invariant.
fn span_of<I, O>((position, op): (usize, &Operation<I, O>)) -> Span {
    assert!(
        op.output.is_none() || op.ret.is_some(),
        "op {position} of client {} has an output but no return time",
        op.client
    );
    Span {
        call: op.call,
        ret: if op.is_determinate() { op.ret } else { None },
    }
}

/// A choice the search can undo.
struct Frame<S> {
    /// The call entry that was linearized.
    call_entry: usize,
    /// The model state before it.
    state_before: S,
}

/// The state of one search.
///
/// Invariant: `linearized` holds exactly the operations of the call entries in `stack`, and
/// those are exactly the entries lifted from `list`.
struct Search<'a, M: Model> {
    /// The sequential specification.
    model: &'a M,
    /// The operations being checked.
    history: &'a [Operation<M::Input, M::Output>],
    /// Entries of operations not yet linearized.
    list: EntryList,
    /// Operations linearized on the current path.
    linearized: Bitset,
    /// Every (linearized set, state) reached so far: reaching one again cannot succeed
    /// where the first visit did not (Lowe's memoization).
    memo: HashSet<(Bitset, M::State)>,
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
        let mut position = self.list.first();
        while self.list.returns_linked() > 0 {
            if self.steps >= budget_steps {
                return CheckResult::Unknown;
            }
            self.steps += 1;
            // A return entry is linked, and the walk never passes one, so it is ahead.
            assert!(!self.list.is_tail(position), "walk passed every return entry");
            position = match self.list.entry(position).kind {
                EntryKind::Call { .. } if self.try_linearize(position) => self.list.first(),
                EntryKind::Call { .. } => self.list.next(position),
                EntryKind::Return => {
                    self.note_stuck(position);
                    match self.backtrack() {
                        Some(call_entry) => self.list.next(call_entry),
                        None => return self.violation(),
                    }
                }
            };
        }
        CheckResult::Ok
    }

    /// Linearizes the operation of `call_entry` next if the model allows it and the resulting
    /// (set, state) pair is new. Returns whether it did.
    fn try_linearize(&mut self, call_entry: usize) -> bool {
        let op_position = self.list.entry(call_entry).op;
        let op = &self.history[op_position];
        let Some(next_state) = self.model.step(&self.state, &op.input, op.output.as_ref()) else {
            return false;
        };
        self.linearized.insert(op_position);
        if !self.memo.insert((self.linearized.clone(), next_state.clone())) {
            self.linearized.remove(op_position);
            return false;
        }
        let state_before = std::mem::replace(&mut self.state, next_state);
        self.stack.push(Frame {
            call_entry,
            state_before,
        });
        self.list.lift(call_entry);
        true
    }

    /// Undoes the last choice and returns its call entry, or `None` if there is none.
    fn backtrack(&mut self) -> Option<usize> {
        let frame = self.stack.pop()?;
        self.state = frame.state_before;
        self.linearized.remove(self.list.entry(frame.call_entry).op);
        self.list.unlift(frame.call_entry);
        Some(frame.call_entry)
    }

    /// Records the current path if it is the deepest one that got stuck, `return_entry` being
    /// the return entry that forced the backtrack.
    fn note_stuck(&mut self, return_entry: usize) {
        if self
            .stuck
            .as_ref()
            .is_some_and(|stuck| stuck.prefix.len() >= self.stack.len())
        {
            return;
        }
        let prefix = self
            .stack
            .iter()
            .map(|frame| self.list.entry(frame.call_entry).op)
            .collect();
        let mut pending = Vec::new();
        let mut position = self.list.first();
        while position != return_entry {
            pending.push(self.list.entry(position).op);
            position = self.list.next(position);
        }
        self.stuck = Some(StuckPoint {
            prefix,
            overdue: self.list.entry(return_entry).op,
            pending,
        });
    }

    /// The violation verdict, explained from the deepest stuck point.
    fn violation(&self) -> CheckResult {
        let Some(stuck) = &self.stuck else {
            unreachable!("the search failed without ever backtracking")
        };
        CheckResult::Violation {
            explanation: explain_violation(self.model, self.history, stuck),
        }
    }
}

#[cfg(test)]
mod tests;
