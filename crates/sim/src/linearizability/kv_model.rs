//! The sequential model of one key, as seen through Tally's KV API.
//!
//! See the rules in the [module root](super). Operations are translated once, with values
//! replaced by [`ValueId`]s, so that the state is two words and cheap to memoize.

use std::fmt;

use super::kv::{KvInput, KvOp, KvOutput};
use super::value_table::{ValueId, ValueTable};
use super::wgl::{Model, Operation};

/// What a client asked for, with values interned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    Get,
    Put { value: ValueId },
    Delete,
    Cas { expected: u64, value: ValueId },
}

/// What a client was told, with values interned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Get(Option<ValueId>),
    Put { index: u64 },
    Delete { index: u64, deleted: bool },
    Cas(Result<u64, ()>),
}

/// The input of a KV operation as the model sees it.
pub(super) struct KvCall {
    /// The interned command.
    command: Command,
    /// How explanations show it: the client's bytes and the value id used in states.
    label: String,
}

impl fmt::Debug for KvCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// The output of a KV operation as the model sees it.
pub(super) struct KvResult {
    /// The interned outcome.
    outcome: Outcome,
    /// How explanations show it.
    label: String,
}

impl fmt::Debug for KvResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// The state of one key.
///
/// Invariant: `last_write_index` never decreases along a linearization.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct KvState {
    /// The current value; `None` when the key is absent.
    value: Option<ValueId>,
    /// The largest known log index among the writes linearized so far (0 before any): Raft
    /// orders writes by index, so the next write with a known index must exceed it.
    last_write_index: u64,
}

impl fmt::Debug for KvState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            Some(value) => write!(f, "{value}")?,
            None => f.write_str("absent")?,
        }
        write!(f, ", last write index {}", self.last_write_index)
    }
}

/// Whether a cas condition holds in a state.
enum CasMatch {
    Yes,
    No,
    /// The current value's index is unknown and could be `expected`.
    Unknown,
}

/// The model of one key, over the facts of its [`ValueTable`].
pub(super) struct KvModel<'t> {
    /// Value identities and known log indexes of the key's history.
    table: &'t ValueTable,
}

impl<'t> KvModel<'t> {
    /// The model of the key whose history produced `table`.
    pub(super) fn new(table: &'t ValueTable) -> Self {
        Self { table }
    }

    /// Translates `op` (on this model's key) for the checker.
    ///
    /// # Panics
    /// If the output does not answer the input (a recorder bug), or a value is missing from
    /// the table (it is built from the same operations).
    pub(super) fn operation(&self, op: &KvOp) -> Operation<KvCall, KvResult> {
        let (command, call_label) = self.command(&op.input, op.output.is_none());
        let (ret, output) = match &op.output {
            Some(output) => (op.ret, Some(self.result(command, output))),
            None => match self.seen_write(command, op.call) {
                Some((ret, result)) => (Some(ret), Some(result)),
                None => (op.ret, None),
            },
        };
        Operation { client: op.client, call: op.call, ret, input: KvCall { command, label: call_label }, output }
    }

    /// The return time and outcome of an indeterminate put or cas whose value a get returned.
    /// It must have taken effect, successfully and at the index the get revealed, before that
    /// get returned, so it is checked as if it had returned then with that outcome: the same
    /// linearizations, but no longer an open choice at every later point of the search.
    fn seen_write(&self, command: Command, call: u64) -> Option<(u64, KvResult)> {
        let (Command::Put { value } | Command::Cas { value, .. }) = command else {
            return None;
        };
        let read_ret = self.table.first_read_ret(value)?;
        let Some(index) = self.table.index(value) else {
            unreachable!("a get that returned {value} revealed its index")
        };
        let outcome = match command {
            Command::Cas { .. } => Outcome::Cas(Ok(index)),
            _ => Outcome::Put { index },
        };
        let label = format!("unknown outcome, but a get returning at {read_ret} saw it: ok @{index}");
        // A get that returned before the call saw a value not yet written: the span
        // [call, call] keeps that a violation without a return before the call.
        Some((read_ret.max(call), KvResult { outcome, label }))
    }

    /// The command of `input`; `is_indeterminate` tells whether its outcome is unknown.
    fn command(&self, input: &KvInput, is_indeterminate: bool) -> (Command, String) {
        match input {
            KvInput::Get => (Command::Get, input.to_string()),
            KvInput::Delete => (Command::Delete, input.to_string()),
            KvInput::Put { value } => {
                let value = self.written_value_id(value, is_indeterminate);
                (Command::Put { value }, format!("{input} ({value})"))
            }
            KvInput::Cas { expected, value } => {
                let value = self.written_value_id(value, is_indeterminate);
                let command = Command::Cas { expected: *expected, value };
                (command, format!("{input} ({value})"))
            }
        }
    }

    /// The id of a written value: [`ValueId::UNREAD`] for an indeterminate write no read saw.
    fn written_value_id(&self, bytes: &[u8], is_indeterminate: bool) -> ValueId {
        let value = self.value_id(bytes);
        if is_indeterminate && !self.table.is_read(value) { ValueId::UNREAD } else { value }
    }

    fn result(&self, command: Command, output: &KvOutput) -> KvResult {
        let (outcome, label) = match (command, output) {
            (Command::Get, KvOutput::Get(None)) => (Outcome::Get(None), output.to_string()),
            (Command::Get, KvOutput::Get(Some((bytes, _)))) => {
                let value = self.value_id(bytes);
                (Outcome::Get(Some(value)), format!("{output} ({value})"))
            }
            (Command::Put { .. }, KvOutput::Put { index }) => (Outcome::Put { index: *index }, output.to_string()),
            (Command::Delete, KvOutput::Delete { index, deleted }) => {
                let outcome = Outcome::Delete { index: *index, deleted: *deleted };
                (outcome, output.to_string())
            }
            (Command::Cas { .. }, KvOutput::Cas(result)) => (Outcome::Cas(*result), output.to_string()),
            (command, output) => panic!("output {output} does not answer {command:?}"),
        };
        KvResult { outcome, label }
    }

    fn value_id(&self, bytes: &[u8]) -> ValueId {
        let Some(value) = self.table.id(bytes) else {
            unreachable!("value missing from the table built from the same ops")
        };
        value
    }

    /// The state after an operation whose outcome is unknown took effect. Returns `None`
    /// when taking effect would change nothing, as "never took effect" covers that case.
    fn step_indeterminate(&self, state: &KvState, command: Command) -> Option<KvState> {
        match command {
            Command::Get => None,
            Command::Put { value } => write(state, Some(value), self.table.index(value)),
            Command::Delete => {
                state.value?;
                write(state, None, None)
            }
            Command::Cas { expected, value } => {
                let base = self.cas_success_base(state, expected)?;
                write(&base, Some(value), self.table.index(value))
            }
        }
    }

    /// The state after an operation with a known outcome, or `None` if the outcome is
    /// impossible from `state`.
    fn step_determinate(&self, state: &KvState, command: Command, outcome: Outcome) -> Option<KvState> {
        match (command, outcome) {
            (Command::Get, Outcome::Get(seen)) => (state.value == seen).then_some(*state),
            (Command::Put { value }, Outcome::Put { index }) => write(state, Some(value), Some(index)),
            (Command::Delete, Outcome::Delete { index, deleted }) => {
                let was_present = state.value.is_some();
                (deleted == was_present).then_some(())?;
                write(state, None, Some(index))
            }
            (Command::Cas { expected, value }, Outcome::Cas(Ok(index))) => {
                let base = self.cas_success_base(state, expected)?;
                write(&base, Some(value), Some(index))
            }
            (Command::Cas { expected, .. }, Outcome::Cas(Err(()))) => match self.cas_match(state, expected) {
                CasMatch::Yes => None,
                CasMatch::No | CasMatch::Unknown => Some(*state),
            },
            (command, outcome) => {
                unreachable!("outcome {outcome:?} does not answer {command:?}; checked when translated")
            }
        }
    }

    /// The state a successful cas starts from, or `None` if its condition cannot hold. When
    /// it holds only by assuming the current value's unknown index is `expected`, that index
    /// becomes the last known write index.
    fn cas_success_base(&self, state: &KvState, expected: u64) -> Option<KvState> {
        match self.cas_match(state, expected) {
            CasMatch::Yes => Some(*state),
            CasMatch::Unknown => Some(KvState { last_write_index: expected, ..*state }),
            CasMatch::No => None,
        }
    }

    /// Whether `expected` is the modify index of the current value (0: the key is absent).
    fn cas_match(&self, state: &KvState, expected: u64) -> CasMatch {
        let Some(value) = state.value else {
            return if expected == 0 { CasMatch::Yes } else { CasMatch::No };
        };
        match self.table.index(value) {
            _ if expected == 0 => CasMatch::No,
            Some(index) if index == expected => CasMatch::Yes,
            Some(_) => CasMatch::No,
            // The unknown index of the current write exceeds every earlier known index and
            // differs from every other known one.
            None if expected > state.last_write_index && !self.table.is_known_index(expected) => CasMatch::Unknown,
            None => CasMatch::No,
        }
    }
}

impl Model for KvModel<'_> {
    type State = KvState;
    type Input = KvCall;
    type Output = KvResult;

    fn init(&self) -> KvState {
        KvState { value: None, last_write_index: 0 }
    }

    fn step(&self, state: &KvState, input: &KvCall, output: Option<&KvResult>) -> Option<KvState> {
        match output {
            None => self.step_indeterminate(state, input.command),
            Some(result) => self.step_determinate(state, input.command, result.outcome),
        }
    }
}

/// The state after a write that leaves `value` with log index `index` (`None`: unknown), or
/// `None` if a known index does not exceed the last known write index.
fn write(state: &KvState, value: Option<ValueId>, index: Option<u64>) -> Option<KvState> {
    let last_write_index = match index {
        None => state.last_write_index,
        Some(index) if index > state.last_write_index => index,
        Some(_) => return None,
    };
    assert!(
        last_write_index >= state.last_write_index,
        "last write index went back from {} to {last_write_index}",
        state.last_write_index
    );
    Some(KvState { value, last_write_index })
}
