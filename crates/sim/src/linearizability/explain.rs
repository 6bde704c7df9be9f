//! Turning a failed search into a message a person can debug from.

use std::fmt::Write;

use super::wgl::{Model, Operation};

/// At most this many prefix operations are shown (the most recent ones).
const PREFIX_SHOWN_MAX: usize = 20;
/// At most this many pending operations are shown.
const PENDING_SHOWN_MAX: usize = 20;

/// The deepest point at which the search had to backtrack.
#[derive(Clone, Debug)]
pub(super) struct StuckPoint {
    /// Positions of the linearized operations, in linearization order.
    pub(super) prefix: Vec<usize>,
    /// How many operations of `prefix` have known outputs.
    pub(super) determinate_count: usize,
    /// The operation whose return was reached before it could be linearized.
    pub(super) overdue: usize,
    /// Operations called (and not linearized) before `overdue` returned, in call order; none
    /// of them could be linearized next. Includes `overdue`.
    pub(super) pending: Vec<usize>,
}

/// Explains why `history` is not linearizable, from its deepest stuck point.
///
/// # Panics
/// If replaying `stuck.prefix` through `model` fails: the search only records prefixes the
/// model accepted, and models are deterministic.
pub(super) fn explain_violation<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    stuck: &StuckPoint,
) -> String {
    let determinate = history.iter().filter(|op| op.is_determinate()).count();
    let mut text = format!(
        "not linearizable: the longest linearizable prefix found places {} of the {} ops with known outputs (and {} with unknown outcomes):\n",
        stuck.determinate_count,
        determinate,
        stuck.prefix.len() - stuck.determinate_count,
    );
    write_prefix(&mut text, model, history, &stuck.prefix);
    let overdue = &history[stuck.overdue];
    let _ = writeln!(
        text,
        "then {} returned but cannot take effect next; nor can any op pending at that point ({} shown of {}):",
        describe(overdue),
        stuck.pending.len().min(PENDING_SHOWN_MAX),
        stuck.pending.len(),
    );
    for &position in stuck.pending.iter().take(PENDING_SHOWN_MAX) {
        let _ = writeln!(text, "  {}", describe(&history[position]));
    }
    text
}

/// Appends the tail of the prefix, each operation followed by the model state after it.
fn write_prefix<M: Model>(text: &mut String, model: &M, history: &[Operation<M::Input, M::Output>], prefix: &[usize]) {
    let omitted = prefix.len().saturating_sub(PREFIX_SHOWN_MAX);
    let mut state = model.init();
    if omitted == 0 {
        let _ = writeln!(text, "  initial state: {state:?}");
    } else {
        let _ = writeln!(text, "  ... {omitted} earlier ops omitted");
    }
    for (shown, &position) in prefix.iter().enumerate() {
        let op = &history[position];
        let Some(next) = model.step(&state, &op.input, op.output.as_ref()) else {
            unreachable!("replaying the linearized prefix failed at op {position}")
        };
        state = next;
        if shown >= omitted {
            let _ = writeln!(text, "  {}\n      => {state:?}", describe(op));
        }
    }
}

/// One line describing `op`.
fn describe<I: std::fmt::Debug, O: std::fmt::Debug>(op: &Operation<I, O>) -> String {
    let ret = op.ret.map_or_else(|| "-".to_string(), |ret| ret.to_string());
    let output = op.output.as_ref().map_or_else(|| "unknown outcome".to_string(), |output| format!("{output:?}"));
    format!("client {} [call {}, ret {}] {:?} -> {}", op.client, op.call, ret, op.input, output)
}
