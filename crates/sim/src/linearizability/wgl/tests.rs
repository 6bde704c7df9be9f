//! Tests of the generic search against a single integer register.

use super::{CheckResult, Model, Operation, check};

/// A register holding a `u64`, initially 0.
struct Register;

#[derive(Debug)]
enum Input {
    Read,
    Write(u64),
}

#[derive(Debug)]
enum Output {
    Read(u64),
    Write,
}

impl Model for Register {
    type State = u64;
    type Input = Input;
    type Output = Output;

    fn init(&self) -> u64 {
        0
    }

    fn step(&self, state: &u64, input: &Input, output: Option<&Output>) -> Option<u64> {
        match (input, output) {
            (Input::Read, Some(Output::Read(seen))) => (seen == state).then_some(*state),
            (Input::Read, None) => None,
            (Input::Write(value), None | Some(Output::Write)) => Some(*value),
            (input, output) => panic!("{output:?} does not answer {input:?}"),
        }
    }
}

type Op = Operation<Input, Output>;

fn read(client: u64, call: u64, ret: u64, seen: u64) -> Op {
    Operation { client, call, ret: Some(ret), input: Input::Read, output: Some(Output::Read(seen)) }
}

fn write(client: u64, call: u64, ret: u64, value: u64) -> Op {
    Operation { client, call, ret: Some(ret), input: Input::Write(value), output: Some(Output::Write) }
}

fn write_unknown(client: u64, call: u64, ret: Option<u64>, value: u64) -> Op {
    Operation { client, call, ret, input: Input::Write(value), output: None }
}

const BUDGET: u64 = 100_000;

fn assert_violation(history: &[Op]) -> String {
    match check(&Register, history, BUDGET) {
        CheckResult::Violation { explanation } => explanation,
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn empty_and_sequential_histories_are_linearizable() {
    assert_eq!(check(&Register, &[], BUDGET), CheckResult::Ok);
    let history = [read(1, 0, 1, 0), write(1, 2, 3, 7), read(2, 4, 5, 7), write(2, 6, 7, 8), read(1, 8, 9, 8)];
    assert_eq!(check(&Register, &history, BUDGET), CheckResult::Ok);
}

#[test]
fn concurrent_read_may_see_either_value() {
    // The read overlaps the write, so both the old and the new value are fine.
    for seen in [0, 1] {
        let history = [write(1, 0, 10, 1), read(2, 2, 5, seen)];
        assert_eq!(check(&Register, &history, BUDGET), CheckResult::Ok);
    }
}

#[test]
fn stale_read_is_a_violation_and_explained() {
    // The write returned before the read was called; the read still saw 0.
    let history = [write(1, 0, 1, 1), read(2, 2, 3, 0)];
    let explanation = assert_violation(&history);
    assert!(explanation.contains("longest linearizable prefix"), "{explanation}");
    assert!(explanation.contains("client 2 [call 2, ret 3] Read -> Read(0)"), "{explanation}");
}

#[test]
fn equal_return_and_call_times_are_concurrent() {
    // ret == call: concurrent, so the read may be ordered first.
    assert!(check(&Register, &[write(1, 0, 5, 1), read(2, 5, 6, 0)], BUDGET).is_ok());
    // ret < call: ordered.
    assert!(check(&Register, &[write(1, 0, 5, 1), read(2, 6, 7, 0)], BUDGET).is_violation());
}

#[test]
fn indeterminate_write_may_take_effect_late_or_never() {
    // Never seen: fine.
    let never = [write_unknown(1, 0, None, 1), read(2, 5, 6, 0)];
    assert!(check(&Register, &never, BUDGET).is_ok());
    // Seen long after it timed out: fine, a timed-out request may still be applied.
    let late = [write_unknown(1, 0, Some(1), 1), read(2, 2, 3, 0), read(2, 4, 5, 1)];
    assert!(check(&Register, &late, BUDGET).is_ok());
    // Seen, then not seen by a later non-overlapping read: it cannot be undone.
    let flicker = [write_unknown(1, 0, Some(1), 1), read(2, 2, 3, 1), read(2, 4, 5, 0)];
    assert!(check(&Register, &flicker, BUDGET).is_violation());
}

#[test]
fn exhausted_budget_is_unknown() {
    let history = [write(1, 0, 1, 1), read(2, 2, 3, 1)];
    assert_eq!(check(&Register, &history, 0), CheckResult::Unknown);
    assert_eq!(check(&Register, &history, 1), CheckResult::Unknown);
    assert_eq!(check(&Register, &history, 10), CheckResult::Ok);
}

#[test]
fn long_histories_do_not_overflow_the_stack() {
    // 20k sequential ops: the search path is 20k deep, held on the heap.
    let history: Vec<Op> = (0..10_000u64)
        .flat_map(|i| [write(1, 4 * i, 4 * i + 1, i + 1), read(2, 4 * i + 2, 4 * i + 3, i + 1)])
        .collect();
    assert!(check(&Register, &history, 1_000_000).is_ok());
}

#[test]
fn long_explanations_show_only_the_tail_of_the_prefix() {
    let mut history: Vec<Op> = (0..50u64).map(|i| write(1, 2 * i, 2 * i + 1, i + 1)).collect();
    history.push(read(2, 1000, 1001, 3));
    let explanation = assert_violation(&history);
    assert!(
        explanation.contains("prefix found places 50 of the 51 ops with known outputs (and 0 with unknown outcomes)"),
        "{explanation}"
    );
    assert!(explanation.contains("30 earlier ops omitted"), "{explanation}");
}

#[test]
#[should_panic(expected = "has an output but no return time")]
fn output_without_return_time_panics() {
    let mut op = write(1, 0, 1, 1);
    op.ret = None;
    check(&Register, &[op], BUDGET);
}
