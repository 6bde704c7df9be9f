//! Linearizability checker for the client histories the simulator records.
//!
//! A history is linearizable if every operation can be given a point between its call and its
//! return at which it takes effect, such that the operations, run in that order against a
//! sequential model, produce exactly the outputs the clients saw.
//!
//! # Layout
//!
//! ```text
//! check_kv_history(ops)            kv.rs: group by key (a KV history is linearizable iff each
//!   │                                     key's sub-history is: P-compositionality)
//!   ├─ ValueTable::build            value_table.rs: value -> log index, contradictions
//!   └─ check(KvModel, key ops)      wgl.rs: generic search over any `Model`
//!        ├─ EntryList               entry_list.rs: call/return entries, lift/unlift
//!        ├─ IndeterminateOps        indeterminate.rs: unknown outcomes, interchangeable groups
//!        ├─ Linearized, Memo        memo.rs: visited configurations, with dominance
//!        │   └─ Bitset              bitset.rs: sets of linearized ops
//!        └─ explain_violation       explain.rs: longest prefix + stuck ops
//! ```
//!
//! The generic core ([`check`]) is Wing & Gong's search with Lowe's memoization (the "WGL"
//! of Porcupine and Knossos), iterative with an explicit stack and bounded by a step budget.
//! Three extensions keep operations with unknown outcomes affordable. They have no return
//! entries and are kept out of the list, tried only once a window's determinate candidates
//! are exhausted. A configuration that only adds indeterminate operations to one already
//! visited with the same state is pruned, since those could equally never have taken effect.
//! And indeterminate operations the model cannot tell apart are tried in one canonical order.
//!
//! # Time
//!
//! Call and return times are logical (the simulator's step counter). `a` precedes `b` iff
//! `a.ret < b.call`; equal times are concurrent. An operation with an unknown output
//! (timed out, client crashed) is indeterminate: it may take effect at any time after its
//! call, even after its return time (the request may still be applied), or never. The search
//! succeeds once every determinate operation is linearized.
//!
//! # The KV model, per key
//!
//! The state is the current value (or absent) and the largest known log index among the
//! writes linearized so far. Values are unique in a history, so a value names its write;
//! before searching, every observation `(value, index)` (a put or cas acknowledgement, a read's
//! modify index) is collected in a table, and these are violations on their own: one value
//! seen with two indexes, one index reported for two writes, index 0.
//!
//! - **Get** must return exactly the current value (or absent). Its modify index is the
//!   table's index for that value, which the table check already guarantees.
//! - **Put, successful Cas, Delete** with a known index take effect in increasing index order
//!   (the index must exceed the last known write index), as Raft orders writes by log index.
//!   An indeterminate put or cas uses its value's index from the table if a read revealed it,
//!   and otherwise has an unknown index, which is compared with nothing.
//! - **Delete** leaves the key absent; `deleted` must equal whether the key was present. An
//!   indeterminate delete may remove the key or never take effect.
//! - **Cas** condition: `expected == 0` and the key is absent, or the key is present and the
//!   table index of the current value equals `expected`. A successful cas behaves like a put;
//!   a mismatch must not happen while the condition holds, and changes nothing. When the
//!   current value's index is unknown (an unobserved indeterminate write), the condition may
//!   hold only if `expected` exceeds the last known write index and is no other write's known
//!   index; if a success relies on that, `expected` becomes the last known write index. The
//!   checker errs toward accepting there: it does not remember that assumption for the mismatches.
//!
//! Two reductions per key keep the search small without changing the verdict. An
//! indeterminate put or cas whose value a get returned must have succeeded, at the index the
//! get revealed, before that get returned: it is checked as if it had returned then. The other
//! indeterminate writes wrote a value nobody saw, so the model gives them one shared value and
//! they become interchangeable. A first pass leaves those unseen writes out (if the rest is
//! linearizable, they simply never took effect); only if it fails is every operation searched,
//! with what is left of the budget.
//!
//! # Cost
//!
//! A step is one candidate considered, tens of nanoseconds. Accepting a linearizable history
//! is nearly linear: about 10^5 steps for 3000 ops on one key. Proving a violation means
//! exhausting every alternative before the bad operation, which costs more with concurrency
//! and unknown outcomes: 10^6 to 10^7 steps for 3000 ops on one key with 5 to 10 clients and
//! 2 to 5% unknown outcomes (`stress_large_single_key_histories` measures this). The memo
//! grows with the steps taken: at most one configuration (`ops / 8` bytes and a state) per step.

mod bitset;
mod entry_list;
mod explain;
mod indeterminate;
mod kv;
mod kv_model;
mod memo;
mod value_table;
mod wgl;

pub use kv::{KvCheckReport, KvInput, KvOp, KvOutput, KvViolation, check_kv_history};
pub use wgl::{CheckResult, Model, Operation, check};
