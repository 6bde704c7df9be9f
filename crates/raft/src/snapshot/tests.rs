//! Chunked snapshot transfer, input by input: the exact messages each side sends back, for the cases the
//! data-driven scripts cannot stage (corruption, gaps, duplicates, limits, stale answers).

use std::sync::Arc;

use crate::config::Config;
use crate::message::{AppendRejection, Message, MessageBody, SnapshotChunk};
use crate::raft::{Raft, Restored, Role};
use crate::types::{HardState, LogIndex, Membership, NodeId, Snapshot, SnapshotMeta, Term};

/// Snapshot bytes of the tests: 19 bytes, 5 chunks of 4.
const DATA: &[u8] = b"2:a 3:b 4:c 5:d 6:e";

/// A config with 4-byte chunks, no pre-vote and no check-quorum, so a node can be driven alone.
fn config(id: u64) -> Config {
    let mut config = Config::new(NodeId(id), 7);
    config.pre_vote = false;
    config.check_quorum = false;
    config.max_bytes_per_message = 4;
    config
}

/// Node `id` of the cluster {1, 2, 3} at term 1, with an empty log.
fn node(config: Config) -> Raft {
    let meta = SnapshotMeta { membership: Membership::with_voters([1, 2, 3].map(NodeId)), ..SnapshotMeta::default() };
    let restored = Restored {
        hard_state: HardState { term: Term(1), vote: None, commit: LogIndex(0) },
        snapshot: Snapshot { meta, data: Arc::default() },
        entries: Vec::new(),
        ..Restored::default()
    };
    Raft::new(config, restored)
}

/// The metadata of a snapshot at `index` in term 1 of the cluster {1, 2, 3}.
fn meta(index: u64) -> SnapshotMeta {
    SnapshotMeta { index: LogIndex(index), term: Term(1), membership: Membership::with_voters([1, 2, 3].map(NodeId)) }
}

/// The chunk `offset..offset + len` of `data`, a snapshot at `index`.
fn chunk(index: u64, data: &[u8], offset: usize, len: usize) -> SnapshotChunk {
    let end = (offset + len).min(data.len());
    SnapshotChunk {
        meta: meta(index),
        offset: offset as u64,
        data: data[offset..end].to_vec(),
        total_len: data.len() as u64,
        checksum: crc32fast::hash(data),
        done: end == data.len(),
    }
}

/// A message from `from` to `to` in `term`.
fn message(from: u64, to: u64, term: Term, body: MessageBody) -> Message {
    Message { from: NodeId(from), to: NodeId(to), term, body }
}

/// Steps a chunk from the leader n1 (term 1) into follower `raft` and returns what it sent back.
fn step_chunk(raft: &mut Raft, chunk: SnapshotChunk) -> Vec<String> {
    raft.step(message(1, raft.id().0, Term(1), MessageBody::InstallSnapshot(chunk)));
    raft.check_invariants();
    sent(raft)
}

/// The messages `raft` has to send, as text.
fn sent(raft: &mut Raft) -> Vec<String> {
    std::mem::take(&mut raft.messages).iter().map(ToString::to_string).collect()
}

/// The text of a SnapshotResp from n2 to n1.
fn resp(index: u64, next: u64) -> String {
    format!("n2->n1 SnapshotResp t1 index={index} next={next}")
}

#[test]
fn follower_assembles_chunks_in_order_and_installs_the_verified_snapshot() {
    // Each chunk but the last is answered with the offset expected next.
    let mut raft = node(config(2));
    for offset in [0, 4, 8, 12] {
        assert_eq!(step_chunk(&mut raft, chunk(6, DATA, offset, 4)), [resp(6, offset as u64 + 4)]);
    }
    assert!(raft.snapshot_to_install.is_none());

    // The last one completes it: installed, handed out whole, acknowledged as a match at its index.
    assert_eq!(step_chunk(&mut raft, chunk(6, DATA, 16, 4)), ["n2->n1 AppendResp t1 match=6"]);
    let ready = raft.ready();
    let snapshot = ready.snapshot.expect("installed");
    assert_eq!((snapshot.meta, snapshot.data.as_slice()), (meta(6), DATA));
    assert_eq!((raft.commit_index(), raft.snapshot().meta.index), (LogIndex(6), LogIndex(6)));
    assert!(raft.incoming_snapshot.is_none());
}

#[test]
fn follower_ignores_gaps_and_duplicates_and_answers_what_it_expects() {
    let mut raft = node(config(2));
    // The start was lost: ask for it.
    assert_eq!(step_chunk(&mut raft, chunk(6, DATA, 4, 4)), [resp(6, 0)]);
    assert!(raft.incoming_snapshot.is_none());
    assert_eq!(step_chunk(&mut raft, chunk(6, DATA, 0, 4)), [resp(6, 4)]);

    // A gap (chunk 4..8 lost) and a duplicate both leave the held prefix as it is.
    assert_eq!(step_chunk(&mut raft, chunk(6, DATA, 8, 4)), [resp(6, 4)]);
    assert_eq!(step_chunk(&mut raft, chunk(6, DATA, 0, 4)), [resp(6, 4)]);
    for offset in [4, 8, 12] {
        assert_eq!(step_chunk(&mut raft, chunk(6, DATA, offset, 4)), [resp(6, offset as u64 + 4)]);
    }
    assert_eq!(step_chunk(&mut raft, chunk(6, DATA, 16, 4)), ["n2->n1 AppendResp t1 match=6"]);

    // A late duplicate after the install is answered from the log.
    assert_eq!(step_chunk(&mut raft, chunk(6, DATA, 8, 4)), ["n2->n1 AppendResp t1 match=6"]);
}

#[test]
fn follower_drops_a_corrupted_snapshot_and_asks_for_it_again() {
    // Every chunk carries a checksum that does not match the bytes: the assembled snapshot is refused.
    let mut raft = node(config(2));
    let corrupt = |offset| SnapshotChunk { checksum: crc32fast::hash(DATA) ^ 1, ..chunk(6, DATA, offset, 4) };
    for offset in [0, 4, 8, 12] {
        assert_eq!(step_chunk(&mut raft, corrupt(offset)), [resp(6, offset as u64 + 4)]);
    }
    assert_eq!(step_chunk(&mut raft, corrupt(16)), [resp(6, 0)]);
    assert!(raft.incoming_snapshot.is_none());
    assert!(raft.ready().snapshot.is_none());
    assert_eq!(raft.commit_index(), LogIndex(0));

    // The leader starts over; the good bytes install.
    for offset in [0, 4, 8, 12] {
        step_chunk(&mut raft, chunk(6, DATA, offset, 4));
    }
    assert_eq!(step_chunk(&mut raft, chunk(6, DATA, 16, 4)), ["n2->n1 AppendResp t1 match=6"]);
}

#[test]
fn follower_ignores_oversized_and_malformed_chunks_without_buffering() {
    let mut limited = config(2);
    limited.max_snapshot_bytes = 18;
    let mut raft = node(limited);
    assert!(step_chunk(&mut raft, chunk(6, DATA, 0, 4)).is_empty(), "19 bytes > limit 18");
    assert!(raft.incoming_snapshot.is_none());

    let mut raft = node(config(2));
    let past_end = SnapshotChunk { total_len: 2, ..chunk(6, DATA, 0, 4) };
    let done_early = SnapshotChunk { done: true, ..chunk(6, DATA, 0, 4) };
    let not_done = SnapshotChunk { done: false, ..chunk(6, DATA, 16, 4) };
    let overflow = SnapshotChunk { offset: u64::MAX, total_len: u64::MAX, ..chunk(6, DATA, 0, 4) };
    for bad in [past_end, done_early, not_done, overflow] {
        assert!(step_chunk(&mut raft, bad).is_empty());
        assert!(raft.incoming_snapshot.is_none());
    }
}

#[test]
fn newer_snapshot_restarts_assembly_but_an_older_start_does_not() {
    let mut raft = node(config(2));
    assert_eq!(step_chunk(&mut raft, chunk(6, DATA, 0, 4)), [resp(6, 4)]);

    // A delayed first chunk of an older snapshot (a transfer the leader gave up) is answered with the
    // current one's progress.
    assert_eq!(step_chunk(&mut raft, chunk(5, b"2:a 3:b 4:c 5:d", 0, 4)), [resp(6, 4)]);

    // The first chunk of a newer one replaces it; later chunks of the old one are then ignored.
    let newer: &[u8] = b"2:a 3:b 4:c 5:d 6:e 7:f";
    assert_eq!(step_chunk(&mut raft, chunk(7, newer, 0, 4)), [resp(7, 4)]);
    assert_eq!(step_chunk(&mut raft, chunk(6, DATA, 4, 4)), [resp(7, 4)]);
    assert_eq!(raft.incoming_snapshot.as_ref().map(|s| s.meta.index), Some(LogIndex(7)));
}

#[test]
fn a_new_term_drops_the_incoming_snapshot() {
    // The leader of term 1 sent the start of its snapshot.
    let mut raft = node(config(2));
    step_chunk(&mut raft, chunk(6, DATA, 0, 4));
    assert!(raft.incoming_snapshot.is_some());

    // A leader of term 2 takes over: its own snapshot, if any, starts from scratch.
    raft.step(message(3, 2, Term(2), MessageBody::Heartbeat { commit: LogIndex(0), read_seq: 0 }));
    assert!(raft.incoming_snapshot.is_none());

    // The rest of the old leader's transfer is stale: it only learns the newer term.
    sent(&mut raft);
    assert_eq!(step_chunk(&mut raft, chunk(6, DATA, 4, 4)), ["n2->n1 HeartbeatResp t2 read_seq=0"]);
    assert!(raft.incoming_snapshot.is_none());
}

#[test]
fn becoming_a_candidate_drops_the_incoming_snapshot() {
    let mut raft = node(config(2));
    step_chunk(&mut raft, chunk(6, DATA, 0, 4));
    while raft.role() != Role::Candidate {
        raft.tick();
    }
    raft.check_invariants();
    assert!(raft.incoming_snapshot.is_none());
}

#[test]
fn follower_that_holds_the_snapshot_answers_without_its_data() {
    // n2 holds entries 1..=2 of term 1, committed.
    let mut raft = node(config(2));
    let entries: Vec<_> = (1..=2)
        .map(|i| crate::types::Entry { term: Term(1), index: LogIndex(i), payload: crate::types::EntryPayload::Noop })
        .collect();
    let append = MessageBody::Append {
        prev_log_index: LogIndex(0),
        prev_log_term: Term(0),
        entries,
        leader_commit: LogIndex(2),
    };
    raft.step(message(1, 2, Term(1), append));
    sent(&mut raft);

    // A snapshot at 2 is covered by the commit index, at once, from its first chunk.
    assert_eq!(step_chunk(&mut raft, chunk(2, DATA, 0, 4)), ["n2->n1 AppendResp t1 match=2"]);
    assert!(raft.incoming_snapshot.is_none());
}

#[test]
fn joining_node_takes_an_empty_snapshot_in_one_chunk_for_its_membership_base() {
    let mut joining = config(4);
    joining.id = NodeId(4);
    let restored = Restored::default(); // no membership: it waits for the leader's snapshot
    let mut raft = Raft::new(joining, restored);
    let empty = SnapshotChunk { meta: meta(0), offset: 0, data: Vec::new(), total_len: 0, checksum: 0, done: true };
    raft.step(message(1, 4, Term(1), MessageBody::InstallSnapshot(empty)));
    assert_eq!(sent(&mut raft), ["n4->n1 AppendResp t1 match=0"]);
    assert_eq!(raft.membership(), &Membership::with_voters([1, 2, 3].map(NodeId)));
}

// ----- leader -----

/// n1 leading term 2 of {1, 2, 3} with `DATA` as its snapshot at index 2 and an empty log after it, and a
/// transfer of it to n3 under way (its first window sent and returned).
fn leader_sending_to_n3() -> (Raft, Vec<String>) {
    let mut raft = node(config(1));
    while raft.role() != Role::Candidate {
        raft.tick();
    }
    raft.step(message(2, 1, Term(2), MessageBody::VoteResponse { pre_vote: false, granted: true }));
    assert!(raft.is_leader());
    // n2 stores the no-op, then `a` (a leader counts only matches of what it sent).
    raft.step(message(2, 1, Term(2), MessageBody::AppendResponse { result: Ok(LogIndex(1)) }));
    raft.propose(b"a".to_vec()).expect("leader");
    raft.step(message(2, 1, Term(2), MessageBody::AppendResponse { result: Ok(LogIndex(2)) }));
    let ready = raft.ready();
    assert_eq!(ready.committed_entries.len(), 2);
    raft.compact(LogIndex(2), DATA.to_vec(), 0);

    // n3 needs a membership base (or compacted entries): the transfer starts.
    let rejection = AppendRejection {
        rejected_index: LogIndex(2),
        hint_index: LogIndex(0),
        hint_term: Term(0),
        needs_snapshot: true,
    };
    raft.step(message(3, 1, Term(2), MessageBody::AppendResponse { result: Err(rejection) }));
    raft.check_invariants();
    let first = chunks_sent(&mut raft);
    (raft, first)
}

/// The snapshot chunks `raft` has to send, as text without the checksum.
fn chunks_sent(raft: &mut Raft) -> Vec<String> {
    let chunks = std::mem::take(&mut raft.messages).into_iter().filter_map(|m| match m.body {
        MessageBody::InstallSnapshot(chunk) => Some(chunk),
        _ => None,
    });
    chunks.map(|c| format!("{}@{} [{}..{}/{}]", c.meta.index, c.meta.term, c.offset, c.end(), c.total_len)).collect()
}

/// Steps n3's SnapshotResponse into the leader.
fn step_response(raft: &mut Raft, index: u64, next_offset: u64) {
    let body = MessageBody::SnapshotResponse { index: LogIndex(index), next_offset };
    raft.step(message(3, 1, Term(2), body));
    raft.check_invariants();
}

#[test]
fn leader_keeps_a_window_of_chunks_in_flight() {
    let (mut raft, first) = leader_sending_to_n3();
    assert_eq!(first, ["2@2 [0..4/19]", "2@2 [4..8/19]", "2@2 [8..12/19]", "2@2 [12..16/19]"]);

    // Each acknowledgement opens room for one more.
    step_response(&mut raft, 2, 4);
    assert_eq!(chunks_sent(&mut raft), ["2@2 [16..19/19]"]);

    // An answer repeating the acknowledged offset while later chunks are in flight means one was lost (n3
    // drops what follows a gap): resend from there, once for that offset however often it is repeated.
    step_response(&mut raft, 2, 4);
    assert_eq!(chunks_sent(&mut raft), ["2@2 [4..8/19]", "2@2 [8..12/19]", "2@2 [12..16/19]", "2@2 [16..19/19]"]);
    step_response(&mut raft, 2, 4);
    assert!(chunks_sent(&mut raft).is_empty());

    // Progress with everything sent, and older (reordered) answers: nothing to send.
    for next in [8, 4, 12] {
        step_response(&mut raft, 2, next);
        assert!(chunks_sent(&mut raft).is_empty());
    }
    // About another snapshot: ignored.
    step_response(&mut raft, 1, 16);
    assert!(chunks_sent(&mut raft).is_empty());

    // The completing answer ends the transfer; replication goes on from the snapshot.
    raft.step(message(3, 1, Term(2), MessageBody::AppendResponse { result: Ok(LogIndex(2)) }));
    assert_eq!(raft.match_indexes()[&NodeId(3)], LogIndex(2));
}

#[test]
fn leader_resends_from_the_acknowledged_offset_and_never_times_out_while_progressing() {
    // The snapshot stall timeout is 4 election timeouts (40 ticks) since the last progress.
    let (mut raft, _) = leader_sending_to_n3();
    step_response(&mut raft, 2, 8);
    chunks_sent(&mut raft);
    for _ in 0..39 {
        raft.tick();
    }
    step_response(&mut raft, 2, 12);
    for _ in 0..39 {
        raft.tick();
    }
    assert!(chunks_sent(&mut raft).is_empty(), "progress reset the stall timer");

    // No progress for 40 ticks: the chunks after 12 are presumed lost and resent, not the whole snapshot.
    raft.tick();
    assert_eq!(chunks_sent(&mut raft), ["2@2 [12..16/19]", "2@2 [16..19/19]"]);
}

#[test]
fn leader_finishes_with_the_snapshot_it_started_and_starts_over_with_the_newest() {
    let (mut raft, _) = leader_sending_to_n3();
    step_response(&mut raft, 2, 4);
    chunks_sent(&mut raft);

    // The leader snapshots again mid-transfer: the transfer goes on with the snapshot it started with.
    raft.propose(b"b".to_vec()).expect("leader");
    raft.step(message(2, 1, Term(2), MessageBody::AppendResponse { result: Ok(LogIndex(3)) }));
    let _ = raft.ready();
    let newer = b"2:a 3:b 4:c 5:d 6:e 3:b".to_vec();
    raft.compact(LogIndex(3), newer, 0);
    step_response(&mut raft, 2, 8);
    assert!(chunks_sent(&mut raft).is_empty(), "window still full up to 19");

    // n3 lost what it held (a restart, or a corrupted assembly): start over, with the newest snapshot.
    step_response(&mut raft, 2, 0);
    assert_eq!(chunks_sent(&mut raft), ["3@2 [0..4/23]", "3@2 [4..8/23]", "3@2 [8..12/23]", "3@2 [12..16/23]"]);
    step_response(&mut raft, 2, 16);
    assert!(chunks_sent(&mut raft).is_empty(), "answers about the abandoned transfer are stale");
}

#[test]
fn leader_starts_over_on_stall_when_nothing_was_acknowledged() {
    let (mut raft, _) = leader_sending_to_n3();
    for _ in 0..40 {
        raft.tick();
    }
    assert_eq!(chunks_sent(&mut raft), ["2@2 [0..4/19]", "2@2 [4..8/19]", "2@2 [8..12/19]", "2@2 [12..16/19]"]);
}
