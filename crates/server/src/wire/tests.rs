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
        MessageBody::VoteRequest { kind: CampaignKind::Inquiry, last_log_term: Term(2), last_log_index: LogIndex(9) },
        MessageBody::InquiryResponse { answer: InquiryAnswer::Proceed },
        MessageBody::InquiryResponse { answer: InquiryAnswer::Refused },
        MessageBody::InquiryResponse { answer: InquiryAnswer::Alive },
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

/// Hellos with awkward values: empty, non-ASCII, with and without a token, and every field at its limit.
fn hello_samples() -> Vec<Hello> {
    let hello = |from, client_url: &str, peer_url: &str, token: Option<&str>| Hello {
        from: NodeId(from),
        client_url: client_url.to_owned(),
        peer_url: peer_url.to_owned(),
        token: token.map(str::to_owned),
    };
    vec![
        hello(3, "http://10.0.0.3:7001", "http://10.0.0.3:7101", None),
        hello(0, "", "", Some("")),
        hello(u64::MAX, "http://nœud-é.example:7001/☃", "tcp://nœud-é.example:7101", Some("sécret ☃")),
        Hello {
            from: NodeId(7),
            client_url: "x".repeat(CLIENT_URL_MAX_BYTES),
            peer_url: "y".repeat(PEER_URL_MAX_BYTES),
            token: Some("z".repeat(TOKEN_MAX_BYTES)),
        },
    ]
}

/// A hello's payload with these raw field bytes (`None`: no token), bypassing the encoder's checks.
fn raw_hello(client_url: &[u8], peer_url: &[u8], token: Option<&[u8]>) -> Vec<u8> {
    let push = |bytes: &mut Vec<u8>, field: &[u8]| {
        bytes.extend_from_slice(&u32::try_from(field.len()).expect("test field fits in u32").to_le_bytes());
        bytes.extend_from_slice(field);
    };
    let mut bytes = encode_hello(&hello_samples()[0]);
    bytes.truncate(KIND_OFFSET + 1);
    push(&mut bytes, client_url);
    push(&mut bytes, peer_url);
    bytes.push(u8::from(token.is_some()));
    if let Some(token) = token {
        push(&mut bytes, token);
    }
    bytes
}

/// Where each field's length sits in a hello whose URLs are `client_url_bytes` and `peer_url_bytes` long.
fn hello_offsets(client_url_bytes: usize, peer_url_bytes: usize) -> (usize, usize, usize) {
    let client_url = KIND_OFFSET + 1;
    let peer_url = client_url + 4 + client_url_bytes;
    let token = peer_url + 4 + peer_url_bytes + 1;
    (client_url, peer_url, token)
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
fn the_largest_hello_is_hello_max_bytes() {
    assert_eq!(encode_hello(&hello_samples()[3]).len(), HELLO_MAX_BYTES);
}

#[test]
fn a_hello_debug_output_hides_the_token() {
    let shown = format!("{:?}", hello_samples()[2]);
    assert!(!shown.contains("sécret"), "{shown}");
    assert!(shown.contains("<redacted>") && shown.contains("tcp://nœud-é.example:7101"), "{shown}");
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
fn a_hello_field_that_is_not_utf8_is_refused() {
    for bad in [&b"http://\xff:7001"[..], b"\xc3", b"\xed\xa0\x80"] {
        for hello in [raw_hello(bad, b"", None), raw_hello(b"", bad, None), raw_hello(b"", b"", Some(bad))] {
            assert!(matches!(decode_frame(&hello), Err(WireError::Invalid(_))), "{bad:?}");
        }
    }
    let valid = "http://é".as_bytes();
    assert!(decode_frame(&raw_hello(valid, valid, Some(valid))).is_ok(), "multi-byte UTF-8 is valid");
}

#[test]
fn a_token_presence_byte_other_than_0_or_1_is_refused() {
    let mut bytes = raw_hello(b"", b"", None);
    let (_, _, token_at) = hello_offsets(0, 0);
    let tag_at = token_at - 1;
    assert_eq!(bytes.len(), token_at);
    bytes[tag_at] = 2;
    assert_eq!(decode_frame(&bytes), Err(WireError::BadTag { what: "token presence", tag: 2, offset: tag_at }));
}

#[test]
fn oversized_hello_fields_are_refused_from_their_length() {
    let (client_url_at, peer_url_at, token_at) = hello_offsets(0, 0);
    let too_long = |max: usize| vec![b'x'; max + 1];
    let cases = [
        ("client URL", CLIENT_URL_MAX_BYTES, client_url_at, raw_hello(&too_long(CLIENT_URL_MAX_BYTES), b"", None)),
        ("peer URL", PEER_URL_MAX_BYTES, peer_url_at, raw_hello(b"", &too_long(PEER_URL_MAX_BYTES), None)),
        ("cluster token", TOKEN_MAX_BYTES, token_at, raw_hello(b"", b"", Some(&too_long(TOKEN_MAX_BYTES)))),
    ];
    for (what, max, offset, bytes) in cases {
        let error = WireError::TooLong { what, length: max + 1, max, offset };
        assert_eq!(decode_frame(&bytes), Err(error));

        // A forged length is refused before the missing bytes are looked for.
        let mut forged = bytes[..offset].to_vec();
        forged.extend_from_slice(&u32::MAX.to_le_bytes());
        let refused = decode_frame(&forged);
        assert!(matches!(refused, Err(WireError::TooLong { length, .. }) if length == u32::MAX as usize), "{what}");
    }
}

#[test]
#[should_panic(expected = "client URL of 1025 bytes exceeds the maximum")]
fn encoding_an_oversized_client_url_panics() {
    let mut hello = hello_samples().remove(0);
    hello.client_url = "x".repeat(CLIENT_URL_MAX_BYTES + 1);
    encode_hello(&hello);
}

#[test]
#[should_panic(expected = "peer URL of 1025 bytes exceeds the maximum")]
fn encoding_an_oversized_peer_url_panics() {
    let mut hello = hello_samples().remove(0);
    hello.peer_url = "x".repeat(PEER_URL_MAX_BYTES + 1);
    encode_hello(&hello);
}

#[test]
#[should_panic(expected = "cluster token of 257 bytes exceeds the maximum")]
fn encoding_an_oversized_token_panics() {
    let mut hello = hello_samples().remove(0);
    hello.token = Some("x".repeat(TOKEN_MAX_BYTES + 1));
    encode_hello(&hello);
}

#[test]
fn an_append_after_the_largest_index_is_refused_not_overflowed() {
    // Found by the `peer_frame` fuzz target: an Append whose prev_log_index is u64::MAX overflowed
    // `LogIndex::next` in the consecutiveness check (a panic with overflow checks, a wrap to 0 without).
    for entry_index in [0, u64::MAX] {
        let append = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(1),
            body: MessageBody::Append {
                prev_log_index: LogIndex(u64::MAX),
                prev_log_term: Term(1),
                entries: vec![Entry { index: LogIndex(entry_index), term: Term(1), payload: EntryPayload::Noop }],
                leader_commit: LogIndex(0),
            },
        };
        assert!(matches!(decode(&encode(&append)), Err(WireError::Invalid(_))), "entry {entry_index}");
    }
}

proptest! {
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode(&bytes);
        let _ = decode_frame(&bytes);
    }

    #[test]
    fn garbage_after_a_hello_header_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = raw_hello(b"", b"", None);
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
