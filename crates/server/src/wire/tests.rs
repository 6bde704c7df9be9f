use proptest::prelude::*;
use tally_raft::{EntryPayload, MembershipChange};

use super::*;

/// One message of every kind, with awkward values.
fn samples() -> Vec<Message> {
    let membership = Membership { voters: [1, 2, 3].map(NodeId).into(), learners: [9].map(NodeId).into() };
    let entries = vec![
        Entry { index: LogIndex(5), term: Term(2), payload: EntryPayload::Noop },
        Entry { index: LogIndex(6), term: Term(2), payload: EntryPayload::Command(b"put".to_vec()) },
        Entry {
            index: LogIndex(7),
            term: Term(3),
            payload: EntryPayload::Membership(MembershipChange::AddLearner(NodeId(9))),
        },
    ];
    let rejection = AppendRejection {
        rejected_index: LogIndex(9),
        hint_index: LogIndex(4),
        hint_term: Term(1),
        needs_snapshot: true,
    };
    let chunk = SnapshotChunk {
        meta: SnapshotMeta { index: LogIndex(40), term: Term(3), membership },
        offset: 1024,
        data: vec![1, 2, 3],
        total_len: 1027,
        checksum: 0xdead_beef,
        done: true,
    };
    let bodies = vec![
        MessageBody::VoteRequest { kind: CampaignKind::PreVote, last_log_term: Term(3), last_log_index: LogIndex(7) },
        MessageBody::VoteRequest { kind: CampaignKind::Transfer, last_log_term: Term(0), last_log_index: LogIndex(0) },
        MessageBody::VoteResponse { pre_vote: true, granted: false },
        MessageBody::Append {
            prev_log_index: LogIndex(4),
            prev_log_term: Term(2),
            entries,
            leader_commit: LogIndex(3),
        },
        MessageBody::Append {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            entries: vec![],
            leader_commit: LogIndex(0),
        },
        MessageBody::AppendResponse { result: Ok(LogIndex(u64::MAX)) },
        MessageBody::AppendResponse { result: Err(rejection) },
        MessageBody::Heartbeat { commit: LogIndex(3), read_seq: 77 },
        MessageBody::HeartbeatResponse { read_seq: 77 },
        MessageBody::InstallSnapshot(chunk),
        MessageBody::SnapshotResponse { index: LogIndex(40), next_offset: 1024 },
        MessageBody::ReadIndexRequest { context: 1 << 40 },
        MessageBody::ReadIndexResponse { context: 5, index: LogIndex(8) },
        MessageBody::TimeoutNow,
    ];
    bodies.into_iter().map(|body| Message { from: NodeId(1), to: NodeId(u64::MAX), term: Term(42), body }).collect()
}

#[test]
fn every_message_kind_round_trips() {
    for message in samples() {
        assert_eq!(decode(&encode(&message)), Ok(message.clone()), "{message}");
    }
}

#[test]
fn every_truncation_and_extension_is_an_error() {
    for message in samples() {
        let bytes = encode(&message);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "{message} truncated to {cut} bytes decoded");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(WireError::TrailingBytes { count: 1 }));
    }
}

#[test]
fn forged_counts_do_not_allocate() {
    // An Append claiming four billion entries in a few bytes is refused before any allocation.
    let mut bytes = encode(&samples()[4]);
    let count_at = bytes.len() - 4;
    bytes[count_at..].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(decode(&bytes), Err(WireError::Truncated { .. })));
}

#[test]
fn structurally_invalid_messages_are_refused_at_the_boundary() {
    // Entries that do not follow the previous index would trip an assertion in the core.
    let gap = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body: MessageBody::Append {
            prev_log_index: LogIndex(4),
            prev_log_term: Term(1),
            entries: vec![Entry { index: LogIndex(6), term: Term(1), payload: EntryPayload::Noop }],
            leader_commit: LogIndex(0),
        },
    };
    assert!(matches!(decode(&encode(&gap)), Err(WireError::Invalid(_))));

    // A node both voter and learner would too.
    let mut chunk = match samples().remove(9).body {
        MessageBody::InstallSnapshot(chunk) => chunk,
        other => unreachable!("sample 9 is a snapshot chunk, not {other:?}"),
    };
    chunk.meta.membership.learners.insert(NodeId(1));
    let message = Message { from: NodeId(1), to: NodeId(2), term: Term(1), body: MessageBody::InstallSnapshot(chunk) };
    assert!(matches!(decode(&encode(&message)), Err(WireError::Invalid(_))));
}

/// Hellos with awkward values: empty, non-ASCII, and exactly at the length limit.
fn hello_samples() -> Vec<Hello> {
    vec![
        Hello { from: NodeId(3), client_url: "http://10.0.0.3:7001".to_owned() },
        Hello { from: NodeId(0), client_url: String::new() },
        Hello { from: NodeId(u64::MAX), client_url: "http://nœud-é.example:7001/☃".to_owned() },
        Hello { from: NodeId(7), client_url: "x".repeat(CLIENT_URL_MAX_BYTES) },
    ]
}

/// A hello's payload with `url` as its client URL bytes, bypassing the encoder's checks.
fn raw_hello(url: &[u8]) -> Vec<u8> {
    let mut bytes = encode_hello(&Hello { from: NodeId(3), client_url: String::new() });
    bytes.truncate(bytes.len() - 4);
    bytes.extend_from_slice(&u32::try_from(url.len()).expect("test URL fits in u32").to_le_bytes());
    bytes.extend_from_slice(url);
    bytes
}

#[test]
fn hellos_and_messages_round_trip_through_decode_frame() {
    for hello in hello_samples() {
        assert_eq!(decode_frame(&encode_hello(&hello)), Ok(PeerFrame::Hello(hello.clone())), "{hello:?}");
    }
    for message in samples() {
        assert_eq!(decode_frame(&encode(&message)), Ok(PeerFrame::Raft(message.clone())), "{message}");
    }
}

#[test]
fn decode_refuses_a_hello_as_an_unknown_message_kind() {
    let bytes = encode_hello(&hello_samples()[0]);
    assert_eq!(decode(&bytes), Err(WireError::BadTag { what: "message kind", tag: HELLO, offset: KIND_OFFSET }));
}

#[test]
fn every_hello_truncation_and_extension_is_an_error() {
    for hello in hello_samples() {
        let bytes = encode_hello(&hello);
        for cut in 0..bytes.len() {
            assert!(decode_frame(&bytes[..cut]).is_err(), "{hello:?} truncated to {cut} bytes decoded");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode_frame(&longer), Err(WireError::TrailingBytes { count: 1 }));
    }
}

#[test]
fn a_hello_with_a_client_url_that_is_not_utf8_is_refused() {
    for url in [&b"http://\xff:7001"[..], b"\xc3", b"\xed\xa0\x80"] {
        assert!(matches!(decode_frame(&raw_hello(url)), Err(WireError::Invalid(_))), "{url:?}");
    }
    assert!(decode_frame(&raw_hello("http://é".as_bytes())).is_ok(), "multi-byte UTF-8 is valid");
}

#[test]
fn an_oversized_client_url_is_refused_from_its_length() {
    let too_long = vec![b'x'; CLIENT_URL_MAX_BYTES + 1];
    let error = WireError::TooLong {
        what: "client URL",
        length: CLIENT_URL_MAX_BYTES + 1,
        max: CLIENT_URL_MAX_BYTES,
        offset: KIND_OFFSET + 1,
    };
    assert_eq!(decode_frame(&raw_hello(&too_long)), Err(error));
    // A forged length is refused before the missing bytes are looked for.
    let mut forged = raw_hello(b"");
    let length_at = forged.len() - 4;
    forged[length_at..].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(decode_frame(&forged), Err(WireError::TooLong { length, .. }) if length == u32::MAX as usize));
}

#[test]
#[should_panic(expected = "exceeds the maximum")]
fn encoding_an_oversized_client_url_panics() {
    encode_hello(&Hello { from: NodeId(1), client_url: "x".repeat(CLIENT_URL_MAX_BYTES + 1) });
}

proptest! {
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode(&bytes);
        let _ = decode_frame(&bytes);
    }

    #[test]
    fn garbage_after_a_hello_header_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = raw_hello(b"");
        bytes.truncate(KIND_OFFSET + 1);
        bytes.extend_from_slice(&tail);
        let _ = decode_frame(&bytes);
    }

    #[test]
    fn flipped_hello_never_panics(index in 0usize..4, position in any::<prop::sample::Index>(), value in any::<u8>()) {
        let mut bytes = encode_hello(&hello_samples()[index]);
        let at = position.index(bytes.len());
        bytes[at] = value;
        let _ = decode_frame(&bytes);
    }

    #[test]
    fn flipped_bytes_never_panic(index in 0usize..14, position in any::<prop::sample::Index>(), value in any::<u8>()) {
        let mut bytes = encode(&samples()[index]);
        let at = position.index(bytes.len());
        bytes[at] = value;
        let _ = decode(&bytes);
        let _ = decode_frame(&bytes);
    }
}
