//! Real-time order (Raft §8, linearizable semantics; with [`super::TxnSerializability`] this makes multi-key
//! operations strictly serializable): the log's index order agrees with the order clients saw. If operation A
//! returned before operation B was called, then B's index is greater than A's when B is a write (B is appended
//! after everything committed before it was proposed), and at least A's when B is a linearizable read (its read
//! index covers every entry committed before it began). A can be a write or a linearizable read.
//!
//! Only acknowledged operations with an index take part: writes (key writes, transactions, prefix deletes,
//! auth commands) and linearizable reads. Stale reads promise no recency, so they are left out; operations
//! that timed out have no index.
//!
//! Operations are recorded as they return, so return times never decrease. Each recorded return keeps the
//! largest index returned so far; the operations returned before B's call are a prefix of that list, found by
//! binary search: O(log n) per operation. Returns older than the call of every operation still in flight can
//! never be looked up individually again, so they fold into one entry ([`RealTimeOrder::forget_before`]):
//! memory stays bounded by the operations in flight.

use std::collections::VecDeque;

use super::{Check, violation};

/// How an operation is ordered against the ones that returned before it was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderKind {
    /// A write: its index must exceed every index returned before its call.
    Write,
    /// A linearizable read: its index must be at least every index returned before its call.
    Read,
}

/// One acknowledged operation, as the checker sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedOp {
    /// The client request (for the report).
    pub request: u64,
    /// When it was called (simulated ms).
    pub call: u64,
    /// When it returned (simulated ms); `call <= ret`.
    pub ret: u64,
    /// The log index it was applied at (write) or answered at (read).
    pub index: u64,
    /// Write or linearizable read.
    pub kind: OrderKind,
}

/// The largest index among the operations returned up to some time.
#[derive(Clone, Copy, Debug)]
struct Returned {
    /// The return time of the newest operation folded into this entry.
    ret: u64,
    /// The largest index returned up to `ret`, and the operation that returned it.
    max: TimedOp,
}

/// Checks each acknowledged operation against every operation that returned before it was called.
#[derive(Default)]
pub struct RealTimeOrder {
    /// The returns so far, oldest first. Invariant: `ret` strictly increases along the list and `max.index` never
    /// decreases.
    returned: VecDeque<Returned>,
    /// Operations checked.
    checked: u64,
}

impl RealTimeOrder {
    /// Checks `op` against the operations that returned before its call, then records its return.
    ///
    /// # Errors
    /// An operation that returned before `op` was called has a larger index than `op` (or an equal one, when
    /// `op` is a write).
    ///
    /// # Panics
    /// If `op` returned before an operation recorded earlier, or before its own call (the simulator records
    /// returns as they happen).
    pub fn record(&mut self, op: TimedOp) -> Check {
        assert!(op.call <= op.ret, "request {} returned at {} before its call at {}", op.request, op.ret, op.call);
        let last = self.returned.back().map(|r| r.ret);
        assert!(last.is_none_or(|ret| ret <= op.ret), "request {} returned at {} after {last:?}", op.request, op.ret);
        self.checked += 1;
        let before = self.returned.partition_point(|r| r.ret < op.call);
        if before > 0 {
            let earlier = self.returned[before - 1].max;
            let ordered = match op.kind {
                OrderKind::Write => op.index > earlier.index,
                OrderKind::Read => op.index >= earlier.index,
            };
            if !ordered {
                return violation("real_time_order", describe(&op, &earlier));
            }
        }
        self.push(op);
        Ok(())
    }

    /// Folds the returns before `time` into one entry: no operation called at or after `time` needs them apart.
    /// The simulator passes the earliest call of the requests still in flight (or now).
    pub fn forget_before(&mut self, time: u64) {
        while self.returned.len() >= 2 && self.returned[1].ret < time {
            self.returned.pop_front();
        }
    }

    /// Operations checked so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// Appends `op`'s return, carrying the largest index so far.
    fn push(&mut self, op: TimedOp) {
        let max = match self.returned.back() {
            Some(last) if last.max.index >= op.index => last.max,
            _ => op,
        };
        match self.returned.back_mut() {
            Some(last) if last.ret == op.ret => *last = Returned { ret: op.ret, max },
            _ => self.returned.push_back(Returned { ret: op.ret, max }),
        }
    }
}

/// The report of `op` ordered before `earlier`, which returned before `op` was called.
fn describe(op: &TimedOp, earlier: &TimedOp) -> String {
    let what = match op.kind {
        OrderKind::Write => "a write",
        OrderKind::Read => "a linearizable read",
    };
    let bound = match op.kind {
        OrderKind::Write => "above",
        OrderKind::Read => "at least",
    };
    format!(
        "request {} ({what}, called at {} ms) got index {}, but request {} returned index {} at {} ms, before that \
         call: the index must be {bound} {}",
        op.request, op.call, op.index, earlier.request, earlier.index, earlier.ret, earlier.index
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An operation for the hand-made histories.
    fn op(request: u64, (call, ret): (u64, u64), index: u64, kind: OrderKind) -> TimedOp {
        TimedOp { request, call, ret, index, kind }
    }

    #[test]
    fn overlapping_and_ordered_operations_pass() {
        // Why: concurrent operations may take any order; sequential ones follow the log, and a read may share the
        // index of the write it follows.
        let mut order = RealTimeOrder::default();
        let history = [
            op(1, (0, 10), 5, OrderKind::Write),
            op(2, (5, 12), 4, OrderKind::Write), // concurrent with 1: a smaller index is fine
            op(3, (13, 15), 5, OrderKind::Read), // after 1 and 2: at least 5
            op(4, (16, 20), 6, OrderKind::Write),
            op(5, (18, 20), 5, OrderKind::Read), // called before 4 returned
        ];
        for timed in history {
            order.record(timed).expect("a legal history");
        }
        assert_eq!(order.checked(), 5);
    }

    #[test]
    fn write_after_a_returned_write_with_an_older_index_fails() {
        // Why: a write proposed after another was acknowledged cannot sit before it in the log.
        let mut order = RealTimeOrder::default();
        order.record(op(1, (0, 10), 7, OrderKind::Write)).expect("first op");
        let error = order.record(op(2, (11, 14), 7, OrderKind::Write)).expect_err("equal index for a later write");
        assert_eq!(error.checker, "real_time_order");
        assert!(error.detail.contains("request 2") && error.detail.contains("request 1"), "{}", error.detail);
    }

    #[test]
    fn read_older_than_an_earlier_read_fails_even_after_forgetting() {
        // Why: a linearizable read must not go back in time, and folding old returns must keep their maximum.
        let mut order = RealTimeOrder::default();
        order.record(op(1, (0, 3), 9, OrderKind::Read)).expect("first read");
        order.record(op(2, (1, 4), 2, OrderKind::Write)).expect("concurrent write");
        order.record(op(3, (2, 6), 3, OrderKind::Write)).expect("concurrent write");
        order.forget_before(8);
        assert_eq!(order.returned.len(), 1, "every return before 8 folds into one entry");
        let error = order.record(op(4, (8, 9), 8, OrderKind::Read)).expect_err("a read older than index 9");
        assert!(error.detail.contains("returned index 9"), "{}", error.detail);
    }
}
