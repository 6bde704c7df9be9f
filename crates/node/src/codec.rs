//! Byte encodings of what the node stores through the write-ahead log, which only knows opaque payloads:
//! an entry's payload, and a snapshot's membership followed by the state machine's bytes.
//!
//! ```text
//! entry payload:  tag u8 (0 noop | 1 command | 2 membership) ; command: the bytes ; membership: kind u8, node id u64 LE
//! snapshot data:  version u8 = 1 ; voters: count u32 LE, ids u64 LE ; learners: count u32 LE, ids u64 LE ; state bytes
//! ```

use std::collections::BTreeSet;

use tally_raft::{EntryPayload, Membership, MembershipChange, NodeId};

use crate::storage::StorageError;

/// Encodes an entry payload.
pub fn encode_payload(payload: &EntryPayload) -> Vec<u8> {
    match payload {
        EntryPayload::Noop => vec![0],
        EntryPayload::Command(data) => {
            let mut out = Vec::with_capacity(1 + data.len());
            out.push(1);
            out.extend_from_slice(data);
            out
        }
        EntryPayload::Membership(change) => {
            let (kind, id) = match change {
                MembershipChange::AddLearner(id) => (0u8, id),
                MembershipChange::AddVoter(id) => (1, id),
                MembershipChange::DemoteVoter(id) => (2, id),
                MembershipChange::Remove(id) => (3, id),
            };
            let mut out = vec![2, kind];
            out.extend_from_slice(&id.0.to_le_bytes());
            out
        }
    }
}

/// Decodes an entry payload.
///
/// # Errors
/// `Corrupt` if the bytes are not a payload encoding (the log's checksums passed, so this is a bug or a
/// format mismatch, never a torn write).
pub fn decode_payload(bytes: &[u8]) -> Result<EntryPayload, StorageError> {
    match bytes.split_first() {
        Some((0, [])) => Ok(EntryPayload::Noop),
        Some((1, data)) => Ok(EntryPayload::Command(data.to_vec())),
        Some((2, [kind, id @ ..])) if id.len() == 8 => {
            let id = NodeId(u64::from_le_bytes(id.try_into().expect("length checked")));
            let change = match kind {
                0 => MembershipChange::AddLearner(id),
                1 => MembershipChange::AddVoter(id),
                2 => MembershipChange::DemoteVoter(id),
                3 => MembershipChange::Remove(id),
                other => return Err(StorageError::Corrupt(format!("unknown membership change kind {other}"))),
            };
            Ok(EntryPayload::Membership(change))
        }
        _ => Err(StorageError::Corrupt(format!("undecodable entry payload of {} bytes", bytes.len()))),
    }
}

/// Encodes a snapshot's membership and state.
pub fn encode_snapshot(membership: &Membership, state: &[u8]) -> Vec<u8> {
    let mut out = vec![1u8];
    for set in [&membership.voters, &membership.learners] {
        out.extend_from_slice(&(set.len() as u32).to_le_bytes());
        for id in set {
            out.extend_from_slice(&id.0.to_le_bytes());
        }
    }
    out.extend_from_slice(state);
    out
}

/// Decodes a snapshot into its membership and state bytes.
///
/// # Errors
/// `Corrupt` on an unknown version or truncated data.
pub fn decode_snapshot(bytes: &[u8]) -> Result<(Membership, Vec<u8>), StorageError> {
    let corrupt = |what: &str| StorageError::Corrupt(format!("snapshot {what}"));
    let (version, mut rest) = bytes.split_first().ok_or_else(|| corrupt("is empty"))?;
    if *version != 1 {
        return Err(corrupt(&format!("has unknown version {version}")));
    }
    let mut sets = [BTreeSet::new(), BTreeSet::new()];
    for set in &mut sets {
        let (count, tail) = rest.split_first_chunk::<4>().ok_or_else(|| corrupt("membership is truncated"))?;
        rest = tail;
        for _ in 0..u32::from_le_bytes(*count) {
            let (id, tail) = rest.split_first_chunk::<8>().ok_or_else(|| corrupt("membership is truncated"))?;
            set.insert(NodeId(u64::from_le_bytes(*id)));
            rest = tail;
        }
    }
    let [voters, learners] = sets;
    let membership = Membership { voters, learners };
    if membership.voters.intersection(&membership.learners).next().is_some() {
        return Err(corrupt("membership has a node that is both voter and learner"));
    }
    Ok((membership, rest.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let payloads = [
            EntryPayload::Noop,
            EntryPayload::Command(b"put k v".to_vec()),
            EntryPayload::Command(Vec::new()),
            EntryPayload::Membership(MembershipChange::AddLearner(NodeId(4))),
            EntryPayload::Membership(MembershipChange::AddVoter(NodeId(u64::MAX))),
            EntryPayload::Membership(MembershipChange::DemoteVoter(NodeId(2))),
            EntryPayload::Membership(MembershipChange::Remove(NodeId(3))),
        ];
        for payload in payloads {
            assert_eq!(decode_payload(&encode_payload(&payload)), Ok(payload));
        }
    }

    #[test]
    fn bad_payloads_are_errors() {
        for bytes in [&[][..], &[0, 1], &[2, 0, 1], &[2, 9, 0, 0, 0, 0, 0, 0, 0, 0], &[7]] {
            assert!(decode_payload(bytes).is_err(), "{bytes:?} decoded");
        }
    }

    #[test]
    fn snapshots_round_trip_and_reject_truncation() {
        let membership = Membership { voters: [1, 2, 3].map(NodeId).into(), learners: [4].map(NodeId).into() };
        let encoded = encode_snapshot(&membership, b"state");
        assert_eq!(decode_snapshot(&encoded), Ok((membership, b"state".to_vec())));
        for cut in 0..(1 + 4 + 24 + 4 + 8) {
            assert!(decode_snapshot(&encoded[..cut]).is_err(), "truncated at {cut} decoded");
        }
    }
}
