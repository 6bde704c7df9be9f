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
        MessageBody::AppendResponse { result: Ok(LogIndex::ACCEPTED_MAX) },
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
        MessageBody::RecoveryQuery { nonce: u64::MAX },
        MessageBody::RecoveryAnswer {
            nonce: 0x0123_4567_89ab_cdef,
            term: Term::ACCEPTED_MAX,
            last_log_index: LogIndex::ACCEPTED_MAX,
            last_log_term: Term(3),
        },
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

#[test]
fn terms_and_indexes_at_the_accepted_maximum_round_trip() {
    let (term, index) = (Term::ACCEPTED_MAX, LogIndex::ACCEPTED_MAX);
    let bodies = [
        MessageBody::VoteRequest { kind: CampaignKind::Election, last_log_term: term, last_log_index: index },
        MessageBody::AppendResponse { result: Ok(index) },
        MessageBody::Heartbeat { commit: index, read_seq: u64::MAX },
    ];
    for body in bodies {
        let message = Message { from: NodeId(1), to: NodeId(2), term, body };
        assert_eq!(decode(&encode(&message)), Ok(message.clone()), "{message}");
    }
}

/// Every place a term or index sits in a message, each set one above its bound in turn, with the field's name.
fn out_of_range_samples() -> Vec<(&'static str, Message)> {
    let (term, index) = (Term(Term::ACCEPTED_MAX.0 + 1), LogIndex(LogIndex::ACCEPTED_MAX.0 + 1));
    let message = |term: Term, body| Message { from: NodeId(1), to: NodeId(2), term, body };
    let heartbeat = MessageBody::Heartbeat { commit: LogIndex(0), read_seq: 0 };
    let append = |prev_log_index, prev_log_term, leader_commit, entries| MessageBody::Append {
        prev_log_index,
        prev_log_term,
        entries,
        leader_commit,
    };
    let entry = |index, term| Entry { index, term, payload: EntryPayload::Noop };
    let rejection = |rejected_index, hint_index, hint_term| {
        let rejection = AppendRejection { rejected_index, hint_index, hint_term, needs_snapshot: false };
        MessageBody::AppendResponse { result: Err(rejection) }
    };
    let chunk = |index, term| {
        let meta = SnapshotMeta { index, term, membership: Membership::with_voters([NodeId(1)]) };
        MessageBody::InstallSnapshot(SnapshotChunk {
            meta,
            offset: 0,
            data: vec![],
            total_len: 0,
            checksum: 0,
            done: true,
        })
    };
    let recovery_answer = |term, last_log_index, last_log_term| MessageBody::RecoveryAnswer {
        nonce: 7,
        term,
        last_log_index,
        last_log_term,
    };
    let (i0, t0) = (LogIndex(0), Term(0));
    vec![
        ("term", message(Term(u64::MAX), heartbeat.clone())),
        ("term", message(term, heartbeat)),
        (
            "last log term",
            message(
                Term(1),
                MessageBody::VoteRequest { kind: CampaignKind::PreVote, last_log_term: term, last_log_index: i0 },
            ),
        ),
        (
            "last log index",
            message(
                Term(1),
                MessageBody::VoteRequest { kind: CampaignKind::PreVote, last_log_term: t0, last_log_index: index },
            ),
        ),
        ("previous log index", message(Term(1), append(index, t0, i0, vec![]))),
        ("previous log term", message(Term(1), append(i0, term, i0, vec![]))),
        ("commit index", message(Term(1), append(i0, t0, index, vec![]))),
        ("entry term", message(Term(1), append(i0, t0, i0, vec![entry(LogIndex(1), term)]))),
        ("match index", message(Term(1), MessageBody::AppendResponse { result: Ok(index) })),
        ("rejected index", message(Term(1), rejection(index, i0, t0))),
        ("hint index", message(Term(1), rejection(i0, index, t0))),
        ("hint term", message(Term(1), rejection(i0, i0, term))),
        ("commit index", message(Term(1), MessageBody::Heartbeat { commit: index, read_seq: 0 })),
        ("snapshot index", message(Term(1), chunk(index, t0))),
        ("snapshot term", message(Term(1), chunk(i0, term))),
        ("snapshot index", message(Term(1), MessageBody::SnapshotResponse { index, next_offset: 0 })),
        ("read index", message(Term(1), MessageBody::ReadIndexResponse { context: 0, index })),
        ("answered term", message(Term(1), recovery_answer(term, i0, t0))),
        ("answered last log index", message(Term(1), recovery_answer(t0, index, t0))),
        ("answered last log term", message(Term(1), recovery_answer(t0, i0, term))),
    ]
}

#[test]
fn a_term_or_index_above_its_bound_is_refused_and_named() {
    for (what, message) in out_of_range_samples() {
        let refused = decode(&encode(&message));
        assert!(
            matches!(refused, Err(WireError::OutOfRange { what: named, .. }) if named == what),
            "{message}: {refused:?}"
        );
    }
    // The 54-byte frame of issue 13: a heartbeat in term 2^64 - 1, which moved a whole cluster to a term it
    // could never leave.
    let mut payload = Vec::new();
    for field in [2u64, 1, u64::MAX] {
        payload.extend_from_slice(&field.to_le_bytes());
    }
    payload.push(HEARTBEAT);
    payload.extend_from_slice(&[0; 16]);
    let error = WireError::OutOfRange { what: "term", value: u64::MAX, max: 1 << 48 };
    assert_eq!(decode_frame(&payload), Err(error.clone()));
    assert!(error.to_string().contains("exceeds the maximum of 281474976710656"), "{error}");
}

#[test]
fn an_entry_index_past_the_bound_is_refused_before_the_core_could_overflow() {
    // Entries must follow the previous index; the one after the largest accepted index is out of range.
    let entries =
        vec![Entry { index: LogIndex(LogIndex::ACCEPTED_MAX.0 + 1), term: Term(1), payload: EntryPayload::Noop }];
    let body = MessageBody::Append {
        prev_log_index: LogIndex::ACCEPTED_MAX,
        prev_log_term: Term(1),
        entries,
        leader_commit: LogIndex(0),
    };
    let message = Message { from: NodeId(1), to: NodeId(2), term: Term(1), body };
    assert!(matches!(decode(&encode(&message)), Err(WireError::OutOfRange { what: "entry index", .. })));
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
        // Refused either way: as out of range (indexes above LogIndex::ACCEPTED_MAX), or as not consecutive.
        let refused = decode(&encode(&append));
        assert!(
            matches!(refused, Err(WireError::OutOfRange { .. } | WireError::Invalid(_))),
            "entry {entry_index}: {refused:?}"
        );
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
    fn flipped_bytes_never_panic(index in 0usize..20, position in any::<prop::sample::Index>(), value in any::<u8>()) {
        let mut bytes = encode(&samples()[index]);
        let at = position.index(bytes.len());
        bytes[at] = value;
        let _ = decode(&bytes);
        let _ = decode_frame(&bytes);
    }
}

#[test]
fn an_unknown_message_kind_after_the_recovery_messages_is_refused() {
    // Kinds 14 and 15 are the recovery query and answer; the next one has no meaning yet.
    let mut bytes = encode(&Message { from: NodeId(1), to: NodeId(2), term: Term(1), body: MessageBody::TimeoutNow });
    bytes[KIND_OFFSET] = 16;
    assert_eq!(decode(&bytes), Err(WireError::BadTag { what: "message kind", tag: 16, offset: KIND_OFFSET }));
}
