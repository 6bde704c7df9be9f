//! Wing & Gong's search with Lowe's memoization, generic over a sequential [`Model`].
//!
//! The search walks the [`EntryList`] from its head. At a call entry it tries to linearize
//! that operation next: if the model accepts it and the resulting configuration is not
//! dominated by one reached before (see [`Memo`]), the entry is lifted, the previous state
//! pushed on an explicit stack, and the walk restarts from the head. At a return entry the
//! operation it belongs to should already have been linearized, so once the window before it
//! has been scanned (operations with known outputs first, then indeterminate ones, see
//! [`Phase`]) the search backtracks: it pops the last choice, unlifts it and resumes the scan
//! after it. It succeeds when no return entry is left (indeterminate operations have none and
//! may stay unlinearized), and fails when it must backtrack with an empty stack. Every loop
//! iteration is one step of the budget.

use std::fmt::Debug;
use std::hash::Hash;

use super::entry_list::{EntryKind, EntryList, Span};
use super::explain::{StuckPoint, explain_violation};
use super::memo::{Linearized, Memo};
use super::symmetry::Symmetry;

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
    check_counting_steps(model, history, Symmetry::none(history.len()), budget_steps).0
}

/// Like [`check`], with interchangeable indeterminate operations given by `symmetry`, and also
/// returning the number of steps spent.
///
/// # Panics
/// As [`check`], and if an operation with a symmetry class is determinate.
pub(super) fn check_counting_steps<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    symmetry: Symmetry,
    budget_steps: u64,
) -> (CheckResult, u64) {
    let spans: Vec<Span> = history.iter().enumerate().map(span_of).collect();
    for (position, op) in history.iter().enumerate() {
        assert!(
            !(op.is_determinate() && symmetry.has_class(position)),
            "op {position} has a symmetry class but a known output"
        );
    }
    let linearized = Linearized::new(history.iter().map(Operation::is_determinate));
    let state = model.init();
    let mut memo = Memo::new();
    let fresh = memo.insert(&linearized, &state);
    assert!(fresh, "a new memo already held the initial configuration");
    let mut search = Search {
        model,
        history,
        list: EntryList::new(&spans),
        linearized,
        memo,
        symmetry,
        stack: Vec::new(),
        state,
        stuck: None,
        steps: 0,
        tries: vec![0; history.len()],
    };
    let result = search.run(budget_steps);
    if std::env::var_os("PROBE2").is_some() && result == CheckResult::Unknown {
        let mut counts: Vec<(u64, usize)> = search.tries.iter().enumerate().map(|(i, c)| (*c, i)).collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        for (c, i) in counts.iter().take(15) {
            let op = &history[*i];
            eprintln!("{c} tries: op {i} client {} [{}, {:?}] {:?} -> {:?}", op.client, op.call, op.ret, op.input, op.output);
        }
        eprintln!("stack {} memo {}", search.stack.len(), search.memo.len());
    }
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

/// Which candidates a scan of the pending window tries. Each window (the call entries before
/// the first linked return entry) is scanned twice: operations with known outputs first,
/// then indeterminate ones, so that configurations with fewer indeterminate operations are
/// visited first and dominate the others in the [`Memo`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Determinate,
    Indeterminate,
}

/// A choice the search can undo.
struct Frame<S> {
    /// The call entry that was linearized.
    call_entry: usize,
    /// The scan phase it was chosen in, to resume that scan after undoing it.
    phase: Phase,
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
    linearized: Linearized,
    /// Configurations reached so far: one dominated by them cannot succeed where they did
    /// not (Lowe's memoization).
    memo: Memo<M::State>,
    /// Interchangeable indeterminate operations, tried only in call order.
    symmetry: Symmetry,
    /// The current path, oldest choice first; explicit so deep histories cannot overflow the
    /// call stack.
    stack: Vec<Frame<M::State>>,
    /// The model state after the current path.
    state: M::State,
    /// The deepest point where the search had to backtrack, for the explanation.
    stuck: Option<StuckPoint>,
    /// Steps spent.
    steps: u64,
    tries: Vec<u64>,
}

impl<M: Model> Search<'_, M> {
    /// Runs the search to a verdict or until `budget_steps` are spent.
    fn run(&mut self, budget_steps: u64) -> CheckResult {
        let mut position = self.list.first();
        let mut phase = Phase::Determinate;
        while self.list.returns_linked() > 0 {
            if self.steps >= budget_steps {
                return CheckResult::Unknown;
            }
            self.steps += 1;
            // A return entry is linked, and a scan never passes one, so it is ahead.
            assert!(!self.list.is_tail(position), "scan passed every return entry");
            let entry = self.list.entry(position);
            (position, phase) = match entry.kind {
                EntryKind::Call { .. }
                    if self.phase_of(entry.op) != phase
                        || !self.symmetry.is_canonical(entry.op) =>
                {
                    (self.list.next(position), phase)
                }
                EntryKind::Call { .. } if self.try_linearize(position, phase) => {
                    (self.list.first(), Phase::Determinate)
                }
                EntryKind::Call { .. } => (self.list.next(position), phase),
                EntryKind::Return if phase == Phase::Determinate => {
                    (self.list.first(), Phase::Indeterminate)
                }
                EntryKind::Return => {
                    self.note_stuck(position);
                    match self.backtrack() {
                        Some((call_entry, phase)) => (self.list.next(call_entry), phase),
                        None => return self.violation(),
                    }
                }
            };
        }
        CheckResult::Ok
    }

    /// The scan phase in which operation `op` is tried.
    fn phase_of(&self, op: usize) -> Phase {
        if self.linearized.is_determinate(op) || std::env::var_os("ONEPHASE").is_some() {
            Phase::Determinate
        } else {
            Phase::Indeterminate
        }
    }

    /// Linearizes the operation of `call_entry` next if the model allows it and the resulting
    /// configuration is not dominated. Returns whether it did.
    fn try_linearize(&mut self, call_entry: usize, phase: Phase) -> bool {
        let op_position = self.list.entry(call_entry).op;
        let op = &self.history[op_position];
        let Some(next_state) = self.model.step(&self.state, &op.input, op.output.as_ref()) else {
            return false;
        };
        self.linearized.insert(op_position);
        if !self.memo.insert(&self.linearized, &next_state) {
            self.linearized.remove(op_position);
            return false;
        }
        self.symmetry.linearize(op_position);
        self.tries[op_position] += 1;
        let state_before = std::mem::replace(&mut self.state, next_state);
        self.stack.push(Frame {
            call_entry,
            phase,
            state_before,
        });
        self.list.lift(call_entry);
        true
    }

    /// Undoes the last choice and returns its call entry and phase, or `None` if there is none.
    fn backtrack(&mut self) -> Option<(usize, Phase)> {
        let frame = self.stack.pop()?;
        self.state = frame.state_before;
        let op = self.list.entry(frame.call_entry).op;
        self.linearized.remove(op);
        self.symmetry.undo(op);
        self.list.unlift(frame.call_entry);
        Some((frame.call_entry, frame.phase))
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
