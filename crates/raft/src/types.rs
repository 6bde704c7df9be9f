//! The vocabulary of Raft: ids, terms, indexes, log entries, membership and hard state.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// Identifies one node of the cluster. Ids are chosen by the operator (or the registry) and never reused
/// for a different node. `NodeId(0)` is never a valid node: it is used nowhere, so a zeroed field is a bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub u64);

/// A Raft term: a logical clock that increases with every election. At most one leader exists per term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Term(pub u64);

/// The position of an entry in the log. Index 0 is the empty prefix; the first real entry has index 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogIndex(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl LogIndex {
    /// The highest log index a node accepts in a message from another node: 2^56. The peer transport refuses
    /// any message naming a higher one, so no peer can make arithmetic on indexes overflow.
    ///
    /// It is never reached legitimately: every index is an entry a quorum appended and fsynced, and at a
    /// sustained hundred million entries a second (far beyond what one Raft group commits) the log would take
    /// over 22 years to reach it.
    pub const ACCEPTED_MAX: LogIndex = LogIndex(1 << 56);

    /// The index after this one.
    ///
    /// # Panics
    /// At `u64::MAX`: the transport refuses indexes above [`LogIndex::ACCEPTED_MAX`], so only a programmer
    /// error gets here.
    pub fn next(self) -> LogIndex {
        let next = self.0.checked_add(1);
        LogIndex(
            next.unwrap_or_else(|| {
                panic!("log index {self} has no next: indexes past {} are refused", Self::ACCEPTED_MAX)
            }),
        )
    }

    /// The index before this one, saturating at 0.
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
}

impl Term {
    /// The highest term a node accepts in a message from another node: 2^48. The peer transport refuses any
    /// message carrying a higher term (or naming an entry of a higher term), so no peer can drive a node to a
    /// term whose successor would overflow.
    ///
    /// It is never reached legitimately: a term only grows by one per election, an election takes at least a
    /// round trip to a quorum and an fsync of the vote (with pre-vote, only after an election timeout of
    /// silence), and even at one election per millisecond, without pause, a cluster would take over 8,900
    /// years to reach it. The margin above it (to `u64::MAX`) leaves room for every `+ 1` the core does.
    pub const ACCEPTED_MAX: Term = Term(1 << 48);

    /// The term after this one.
    ///
    /// # Panics
    /// At `u64::MAX`: the transport refuses terms above [`Term::ACCEPTED_MAX`], so only a programmer error
    /// gets here.
    pub fn next(self) -> Term {
        let next = self.0.checked_add(1);
        Term(next.unwrap_or_else(|| panic!("term {self} has no next: terms past {} are refused", Self::ACCEPTED_MAX)))
    }
}

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryPayload {
    /// Appended by every new leader: committing it commits all earlier entries (Raft §5.4.2) and lets the
    /// leader serve ReadIndex reads and accept membership changes.
    Noop,
    /// Opaque application data (for Tally: an encoded kv command).
    Command(Vec<u8>),
    /// A single-server membership change. It takes effect on a node as soon as the node appends it, committed
    /// or not (dissertation §4.1), and is undone if the entry is truncated.
    Membership(MembershipChange),
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The term of the leader that created the entry.
    pub term: Term,
    /// The entry's position in the log.
    pub index: LogIndex,
    /// What the entry carries.
    pub payload: EntryPayload,
}

impl Entry {
    /// Approximate size in bytes, for batching limits.
    pub fn size_bytes(&self) -> usize {
        let payload = match &self.payload {
            EntryPayload::Noop => 0,
            EntryPayload::Command(data) => data.len(),
            EntryPayload::Membership(_) => 16,
        };
        payload + 24
    }
}

/// A single-server membership change (dissertation §4.1): the voters of the old and new configuration always
/// overlap in a majority, so no joint consensus is needed. Only one may be uncommitted at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// Adds a non-voting member that receives the log but does not count in any quorum.
    AddLearner(NodeId),
    /// Turns a learner (or a new node) into a voter.
    AddVoter(NodeId),
    /// Turns a voter into a learner.
    DemoteVoter(NodeId),
    /// Removes a voter or learner from the cluster.
    Remove(NodeId),
}

/// The members of the cluster at some point of the log.
///
/// Invariant: `voters` and `learners` are disjoint.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Membership {
    /// Members that vote in elections and count towards the commit quorum.
    pub voters: BTreeSet<NodeId>,
    /// Members that receive the log but never vote and never count in a quorum.
    pub learners: BTreeSet<NodeId>,
}

impl Membership {
    /// A membership of the given voters and no learners.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership { voters: voters.into_iter().collect(), learners: BTreeSet::new() }
    }

    /// Whether `id` is a voter or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Whether `id` is a voter.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    /// Every member, voters and learners, in id order.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        let mut all: Vec<NodeId> = self.voters.iter().chain(self.learners.iter()).copied().collect();
        all.sort();
        all.into_iter()
    }

    /// The number of voters that form a majority.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Applies a change, returning the new membership. The change must be valid (see [`Self::validate`]).
    ///
    /// # Panics
    /// If the change is invalid for this membership: callers validate first.
    pub fn apply(&self, change: MembershipChange) -> Membership {
        assert!(self.validate(change).is_ok(), "invalid membership change {change:?} for {self:?}");
        let mut next = self.clone();
        match change {
            MembershipChange::AddLearner(id) => {
                next.learners.insert(id);
            }
            MembershipChange::AddVoter(id) => {
                next.learners.remove(&id);
                next.voters.insert(id);
            }
            MembershipChange::DemoteVoter(id) => {
                next.voters.remove(&id);
                next.learners.insert(id);
            }
            MembershipChange::Remove(id) => {
                next.voters.remove(&id);
                next.learners.remove(&id);
            }
        }
        next.assert_valid();
        next
    }

    /// Checks that a change makes sense for this membership.
    ///
    /// # Errors
    /// A sentence saying why the change is refused.
    pub fn validate(&self, change: MembershipChange) -> Result<(), String> {
        match change {
            MembershipChange::AddLearner(id) if self.contains(id) => Err(format!("{id} is already a member")),
            MembershipChange::AddVoter(id) if self.is_voter(id) => Err(format!("{id} is already a voter")),
            MembershipChange::DemoteVoter(id) | MembershipChange::Remove(id)
                if self.is_voter(id) && self.voters.len() == 1 =>
            {
                Err(format!("{id} is the last voter"))
            }
            MembershipChange::DemoteVoter(id) if !self.is_voter(id) => Err(format!("{id} is not a voter")),
            MembershipChange::Remove(id) if !self.contains(id) => Err(format!("{id} is not a member")),
            _ if change_target(change) == NodeId(0) => Err("node id 0 is reserved".to_string()),
            _ => Ok(()),
        }
    }

    /// Asserts the invariant that voters and learners are disjoint.
    pub fn assert_valid(&self) {
        let overlap = self.voters.intersection(&self.learners).next();
        assert!(overlap.is_none(), "node {overlap:?} is both voter and learner in {self:?}");
    }
}

/// The node a membership change is about.
pub fn change_target(change: MembershipChange) -> NodeId {
    match change {
        MembershipChange::AddLearner(id)
        | MembershipChange::AddVoter(id)
        | MembershipChange::DemoteVoter(id)
        | MembershipChange::Remove(id) => id,
    }
}

/// The state every node must persist before it answers a message that depends on it (Raft Figure 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HardState {
    /// The latest term this node has seen. Never decreases.
    pub term: Term,
    /// The candidate this node voted for in `term`, if any. At most one vote per term.
    pub vote: Option<NodeId>,
    /// The highest index known committed. Persisting it is an optimisation (it lets a restarted node apply
    /// without waiting for the leader); safety does not depend on it.
    pub commit: LogIndex,
}

/// Where a snapshot stands in the log, and the membership at that point.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SnapshotMeta {
    /// The last entry the snapshot covers.
    pub index: LogIndex,
    /// The term of the entry at `index`.
    pub term: Term,
    /// The membership in force at `index`.
    pub membership: Membership,
}

/// A state machine snapshot: everything up to and including `meta.index`, as opaque bytes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Position and membership.
    pub meta: SnapshotMeta,
    /// The state machine's encoding of its state; shared, because the leader may send it to several
    /// followers at once.
    pub data: Arc<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_steps_past_the_accepted_maximum_without_overflow() {
        assert_eq!(Term::ACCEPTED_MAX.next(), Term((1 << 48) + 1));
        assert_eq!(LogIndex::ACCEPTED_MAX.next(), LogIndex((1 << 56) + 1));
        assert_eq!(Term(u64::MAX - 1).next(), Term(u64::MAX));
        const { assert!(Term::ACCEPTED_MAX.0 < u64::MAX / 2 && LogIndex::ACCEPTED_MAX.0 < u64::MAX / 2) };
    }

    #[test]
    #[should_panic(expected = "term 18446744073709551615 has no next")]
    fn the_next_of_the_largest_term_is_a_programmer_error() {
        let _ = Term(u64::MAX).next();
    }

    #[test]
    #[should_panic(expected = "log index 18446744073709551615 has no next")]
    fn the_next_of_the_largest_index_is_a_programmer_error() {
        let _ = LogIndex(u64::MAX).next();
    }
}
