//! Majority arithmetic, kept pure so it can be tested against a naive model.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{LogIndex, NodeId};

/// The highest index stored on a majority of `voters`, given each voter's match index (a voter missing
/// from `matched` counts as 0).
///
/// # Panics
/// If there are no voters.
pub fn committed_index(voters: &BTreeSet<NodeId>, matched: impl Fn(NodeId) -> LogIndex) -> LogIndex {
    assert!(!voters.is_empty(), "no voters");
    let mut indexes: Vec<LogIndex> = voters.iter().map(|&id| matched(id)).collect();
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    indexes[voters.len() / 2]
}

/// The outcome of counting votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A majority granted.
    Won,
    /// A majority refused: the election cannot succeed.
    Lost,
    /// Neither yet.
    Pending,
}

/// Counts the votes of `voters` recorded in `votes` (true = granted); other nodes' votes are ignored.
pub fn tally(voters: &BTreeSet<NodeId>, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    let quorum = voters.len() / 2 + 1;
    let granted = voters.iter().filter(|id| votes.get(id) == Some(&true)).count();
    let refused = voters.iter().filter(|id| votes.get(id) == Some(&false)).count();
    if granted >= quorum {
        VoteResult::Won
    } else if refused > voters.len() - quorum {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

/// Whether `acks` (a predicate over node ids) holds for a majority of `voters`.
pub fn has_quorum(voters: &BTreeSet<NodeId>, acks: impl Fn(NodeId) -> bool) -> bool {
    voters.iter().filter(|&&id| acks(id)).count() > voters.len() / 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// The naive definition: the largest index `i` such that a majority has match >= i.
    fn naive_committed(matches: &[u64]) -> u64 {
        let quorum = matches.len() / 2 + 1;
        (0..=*matches.iter().max().unwrap_or(&0))
            .filter(|&i| matches.iter().filter(|&&m| m >= i).count() >= quorum)
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn committed_index_matches_naive_model() {
        let mut rng = SplitMix64::new(7);
        for _ in 0..2000 {
            let n = rng.range(1, 8) as usize;
            let matches: Vec<u64> = (0..n).map(|_| rng.range(0, 20)).collect();
            let voters: BTreeSet<NodeId> = (1..=n as u64).map(NodeId).collect();
            let got = committed_index(&voters, |id| LogIndex(matches[(id.0 - 1) as usize]));
            assert_eq!(got.0, naive_committed(&matches), "matches {matches:?}");
        }
    }

    #[test]
    fn tally_counts_only_voters() {
        let voters: BTreeSet<NodeId> = [1, 2, 3].map(NodeId).into();
        let mut votes = BTreeMap::new();
        votes.insert(NodeId(1), true);
        votes.insert(NodeId(9), true);
        assert_eq!(tally(&voters, &votes), VoteResult::Pending);
        votes.insert(NodeId(2), true);
        assert_eq!(tally(&voters, &votes), VoteResult::Won);
        let mut refusals = BTreeMap::new();
        refusals.insert(NodeId(2), false);
        refusals.insert(NodeId(3), false);
        assert_eq!(tally(&voters, &refusals), VoteResult::Lost);
    }
}
