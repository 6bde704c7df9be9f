//! Differential test: the optimized checker against a brute-force one on tiny histories.
//!
//! The reference restates the KV rules of the module doc directly on `KvOp`s and tries every
//! order of every subset of indeterminate ops, with no memo, no symmetry, no passes and no
//! conversion of seen writes, so it checks that those optimizations change no verdict.

use std::collections::HashMap;

use super::super::{KvInput, KvOp, KvOutput, check_kv_history};
use super::randomized::{SplitMix64, generate};

/// The reference's facts: value -> index, and every known index.
struct Facts {
    index_of: HashMap<Vec<u8>, u64>,
    known: Vec<u64>,
}

/// Collects observations; `None` if they contradict (one value with two indexes, one index
/// for two writes, index 0).
fn facts(ops: &[KvOp]) -> Option<Facts> {
    let mut index_of: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut owner: HashMap<u64, String> = HashMap::new();
    for (position, op) in ops.iter().enumerate() {
        let (claim, index) = match (&op.input, &op.output) {
            (
                KvInput::Put { value } | KvInput::Cas { value, .. },
                Some(KvOutput::Put { index } | KvOutput::Cas(Ok(index))),
            ) => (Some(value.clone()), *index),
            (_, Some(KvOutput::Get(Some((value, index))))) => (Some(value.clone()), *index),
            (_, Some(KvOutput::Delete { index, .. })) => (None, *index),
            _ => continue,
        };
        if index == 0 {
            return None;
        }
        let name = match &claim {
            Some(value) => format!("value {value:?}"),
            None => format!("delete {position}"),
        };
        if owner.entry(index).or_insert_with(|| name.clone()) != &name {
            return None;
        }
        if let Some(value) = claim {
            if *index_of.entry(value).or_insert(index) != index {
                return None;
            }
        }
    }
    let known = owner.into_keys().collect();
    Some(Facts { index_of, known })
}

#[derive(Clone, Debug)]
struct State {
    value: Option<Vec<u8>>,
    last: u64,
}

/// Whether a cas on `expected` can succeed, and the last index it implies.
fn cas_holds(facts: &Facts, state: &State, expected: u64) -> Option<u64> {
    match &state.value {
        None => (expected == 0).then_some(state.last),
        Some(_) if expected == 0 => None,
        Some(value) => match facts.index_of.get(value) {
            Some(&index) => (index == expected).then_some(state.last),
            None => (expected > state.last && !facts.known.contains(&expected)).then_some(expected),
        },
    }
}

fn write(value: Option<Vec<u8>>, last: u64, index: Option<u64>) -> Option<State> {
    match index {
        Some(index) if index <= last => None,
        Some(index) => Some(State { value, last: index }),
        None => Some(State { value, last }),
    }
}

/// The state after `op` takes effect, or `None` if its output is impossible.
fn step(facts: &Facts, state: &State, op: &KvOp) -> Option<State> {
    match (&op.input, &op.output) {
        (KvInput::Get, Some(KvOutput::Get(seen))) => {
            (state.value.as_ref() == seen.as_ref().map(|(value, _)| value)).then(|| state.clone())
        }
        (KvInput::Get, None) => Some(state.clone()),
        (KvInput::Put { value }, Some(KvOutput::Put { index })) => write(Some(value.clone()), state.last, Some(*index)),
        (KvInput::Put { value }, None) => write(Some(value.clone()), state.last, facts.index_of.get(value).copied()),
        (KvInput::Delete, Some(KvOutput::Delete { index, deleted })) => {
            (*deleted == state.value.is_some()).then_some(())?;
            write(None, state.last, Some(*index))
        }
        (KvInput::Delete, None) => Some(State { value: None, last: state.last }),
        (KvInput::Cas { expected, value }, Some(KvOutput::Cas(Ok(index)))) => {
            let last = cas_holds(facts, state, *expected)?;
            write(Some(value.clone()), last, Some(*index))
        }
        (KvInput::Cas { expected, .. }, Some(KvOutput::Cas(Err(())))) => {
            let definitely_holds = match &state.value {
                None => *expected == 0,
                Some(value) => *expected != 0 && facts.index_of.get(value) == Some(expected),
            };
            (!definitely_holds).then(|| state.clone())
        }
        (KvInput::Cas { expected, value }, None) => match cas_holds(facts, state, *expected) {
            Some(last) => write(Some(value.clone()), last, facts.index_of.get(value).copied()),
            None => Some(state.clone()),
        },
        (input, output) => panic!("{output:?} does not answer {input:?}"),
    }
}

/// Whether some order of all determinate ops and some indeterminate ones respects real time
/// and the rules.
fn brute_force(ops: &[KvOp]) -> bool {
    let Some(facts) = facts(ops) else {
        return false;
    };
    let mut used = vec![false; ops.len()];
    search(&facts, ops, &mut used, &State { value: None, last: 0 })
}

fn search(facts: &Facts, ops: &[KvOp], used: &mut [bool], state: &State) -> bool {
    let done = |used: &[bool]| ops.iter().zip(used).all(|(op, used)| *used || op.output.is_none());
    if done(used) {
        return true;
    }
    for next in 0..ops.len() {
        // Every unused determinate op that returned before `next` was called must come first.
        let blocked = ops
            .iter()
            .zip(used.iter())
            .any(|(op, used)| !used && op.output.is_some() && op.ret.is_some_and(|ret| ret < ops[next].call));
        if used[next] || blocked {
            continue;
        }
        if let Some(after) = step(facts, state, &ops[next]) {
            used[next] = true;
            let found = search(facts, ops, used, &after);
            used[next] = false;
            if found {
                return true;
            }
        }
    }
    false
}

/// Changes one random field of one random op.
fn mutate(rng: &mut SplitMix64, ops: &mut [KvOp]) {
    let values: Vec<Vec<u8>> = ops
        .iter()
        .filter_map(|op| match &op.input {
            KvInput::Put { value } | KvInput::Cas { value, .. } => Some(value.clone()),
            _ => None,
        })
        .collect();
    let position = usize::try_from(rng.below(ops.len() as u64)).expect("small");
    let op = &mut ops[position];
    let index = 1 + rng.below(8);
    match (&mut op.input, &mut op.output) {
        (_, Some(KvOutput::Get(seen))) => {
            let pick = usize::try_from(rng.below(values.len() as u64 + 1)).expect("small");
            *seen = values.get(pick).map(|value| (value.clone(), index));
        }
        (_, Some(KvOutput::Put { index: old })) => *old = index,
        (_, Some(KvOutput::Delete { index: old, deleted })) => {
            if rng.chance(50) {
                *old = index;
            } else {
                *deleted = !*deleted;
            }
        }
        (_, Some(KvOutput::Cas(result))) => *result = if result.is_ok() { Err(()) } else { Ok(index) },
        (KvInput::Cas { expected, .. }, None) => *expected = rng.below(4),
        (_, None) => op.call = op.call.saturating_sub(5),
    }
}

#[test]
fn optimized_checker_agrees_with_brute_force() {
    // Tiny histories, linearizable by construction then mutated once: a mix of both verdicts.
    let mut verdicts = [0usize; 2];
    let (seeds, op_count) = match std::env::var("REFERENCE_SEEDS") {
        Ok(seeds) => (seeds.parse().expect("a number"), 8),
        Err(_) => (3000, 6),
    };
    for seed in 0..seeds {
        let mut ops = generate(seed, op_count, 4, 1, 40);
        let mut rng = SplitMix64::new(seed ^ 0xdead_beef);
        for _ in 0..seed % 4 {
            mutate(&mut rng, &mut ops);
        }
        let expected = brute_force(&ops);
        let report = check_kv_history(&ops, 1_000_000);
        assert!(report.unknown_keys.is_empty(), "seed {seed}: {report}");
        assert_eq!(report.is_linearizable(), expected, "seed {seed}: {ops:#?}\n{report}");
        verdicts[usize::from(expected)] += 1;
    }
    // Both verdicts must be well represented for the comparison to mean anything.
    assert!(verdicts[0] > 300 && verdicts[1] > 300, "verdicts {verdicts:?}");
}
