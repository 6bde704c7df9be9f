//! `peer_frame`: what a peer connection reads. Bytes go through [`FrameDecoder`] in arbitrary pieces, and every
//! payload it returns through [`wire::decode_frame`] (a Raft message or a hello).
//!
//! # Input
//!
//! ```text
//! byte 0     flags: bits 0-4 seed the piece sizes the stream is pushed in (1 to 64 bytes each);
//!            0x20 holds the first frame to HELLO_MAX_BYTES, as a connection that has not introduced itself is;
//!            0x40 recomputes the CRC32 of every frame, so mutated payloads reach the message decoder
//! bytes 1-2  the decoder's maximum frame size, u16 LE
//! rest       the byte stream
//! ```
//!
//! # Oracles
//!
//! - Pushing the stream in pieces gives exactly the frames and the error that pushing it at once gives.
//! - The frames re-encode ([`frame::encode`]) to the very bytes they were cut from; each respects its limit;
//!   without an error, what is left is an incomplete frame.
//! - A decoded message re-encodes to the same payload (snapshot memberships, which are sets, to an equal or
//!   shorter one) that decodes to the same message; a hello re-encodes to the same bytes except the `to` and
//!   `term` words it ignores. [`wire::decode`] agrees with [`wire::decode_frame`].

use tally_raft::{
    AppendRejection, CampaignKind, Entry, EntryPayload, InquiryAnswer, LogIndex, Membership, MembershipChange, Message,
    MessageBody, NodeId, SnapshotChunk, SnapshotMeta, Term,
};
use tally_server::frame::{self, FrameDecoder, FrameError, HEADER_BYTES, MAGIC, PROTOCOL_VERSION};
use tally_server::wire::{self, HELLO_MAX_BYTES, Hello, PeerFrame};

use crate::Seed;

/// Flag: the first frame is held to [`HELLO_MAX_BYTES`], later ones to the maximum.
const HELLO_FIRST: u8 = 0x20;

/// Flag: recompute every frame's checksum before decoding.
const FIX_CHECKSUMS: u8 = 0x40;

/// Bytes before the stream.
const PREFIX_BYTES: usize = 3;

/// Runs one input (see the module documentation); panics on a finding.
pub fn run(data: &[u8]) {
    let Some((&[flags, low, high], stream)) = data.split_first_chunk::<PREFIX_BYTES>() else { return };
    let mut stream = stream.to_vec();
    if flags & FIX_CHECKSUMS != 0 {
        fix_checksums(&mut stream);
    }
    let max = usize::from(u16::from_le_bytes([low, high]));
    let first = if flags & HELLO_FIRST != 0 { max.min(HELLO_MAX_BYTES) } else { max };

    let whole = cut(&stream, first, max, std::iter::once(stream.len().max(1)));
    let pieces = cut(&stream, first, max, piece_sizes(flags));
    assert_eq!(whole, pieces, "pushing the stream in pieces changed the frames or the error");

    let (frames, error) = whole;
    let reframed: Vec<u8> = frames.iter().flat_map(|payload| frame::encode(payload)).collect();
    assert!(stream.starts_with(&reframed), "frames do not re-encode to the bytes they were cut from");
    for (i, payload) in frames.iter().enumerate() {
        let limit = if i == 0 { first } else { max };
        assert!(payload.len() <= limit, "frame {i} of {} bytes passed the limit {limit}", payload.len());
    }
    if error.is_none() {
        assert_incomplete(&stream[reframed.len()..], if frames.is_empty() { first } else { max });
    }
    for payload in &frames {
        check_payload(payload);
    }
    check_payload(&stream);
}

/// Frames and the first error from pushing `stream` into a decoder in pieces of `sizes`.
fn cut(
    stream: &[u8],
    first: usize,
    max: usize,
    sizes: impl Iterator<Item = usize>,
) -> (Vec<Vec<u8>>, Option<FrameError>) {
    let mut decoder = FrameDecoder::new(first);
    let mut frames = Vec::new();
    let mut rest = stream;
    for size in sizes {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(payload)) => {
                    frames.push(payload);
                    decoder.set_max_frame_bytes(max);
                }
                Ok(None) => break,
                Err(error) => return (frames, Some(error)),
            }
        }
    }
    (frames, None)
}

/// Piece sizes from 1 to 64 bytes, drawn from the flags' low bits (xorshift32).
fn piece_sizes(flags: u8) -> impl Iterator<Item = usize> {
    let mut state = u32::from(flags & 0x1f) + 1;
    std::iter::from_fn(move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        Some(1 + (state % 64) as usize)
    })
}

/// Asserts that `rest` is the start of a frame that is not complete yet, and valid so far.
fn assert_incomplete(rest: &[u8], limit: usize) {
    if rest.len() < HEADER_BYTES {
        return;
    }
    assert_eq!(rest[..4], MAGIC, "a bad magic was not reported");
    assert_eq!(rest[4], PROTOCOL_VERSION, "a bad version was not reported");
    let length = u32::from_le_bytes([rest[5], rest[6], rest[7], rest[8]]) as usize;
    assert!(length <= limit, "an oversized frame ({length} > {limit}) was not reported");
    assert!(rest.len() < HEADER_BYTES + length, "a complete frame of {length} bytes was left in the buffer");
}

/// Rewrites the checksum of every whole frame in `stream` to match its payload.
pub fn fix_checksums(stream: &mut [u8]) {
    let mut at = 0;
    while at + HEADER_BYTES <= stream.len() {
        let length = u32::from_le_bytes([stream[at + 5], stream[at + 6], stream[at + 7], stream[at + 8]]) as usize;
        let end = at + HEADER_BYTES + length;
        if end > stream.len() {
            break;
        }
        let checksum = crc32fast::hash(&stream[at + HEADER_BYTES..end]);
        stream[at + 9..at + 13].copy_from_slice(&checksum.to_le_bytes());
        at = end;
    }
}

/// Decodes one payload and checks what it decodes to.
fn check_payload(payload: &[u8]) {
    let framed = wire::decode_frame(payload);
    let message = wire::decode(payload);
    match &framed {
        Ok(PeerFrame::Raft(decoded)) => {
            assert_eq!(message.as_ref(), Ok(decoded), "decode and decode_frame disagree");
            let again = wire::encode(decoded);
            assert_eq!(wire::decode(&again).as_ref(), Ok(decoded), "{decoded} does not decode from its encoding");
            if matches!(decoded.body, MessageBody::InstallSnapshot(_)) {
                assert!(again.len() <= payload.len(), "{decoded} re-encodes longer than its payload");
            } else {
                assert!(again == payload, "{decoded} re-encodes to other bytes");
            }
            let _shown = decoded.to_string();
        }
        Ok(PeerFrame::Hello(hello)) => {
            assert!(message.is_err(), "decode accepted a hello as a message");
            let again = wire::encode_hello(hello);
            assert_eq!(wire::decode_frame(&again), Ok(PeerFrame::Hello(hello.clone())), "hello round trip");
            assert_eq!(again[..8], payload[..8], "hello re-encodes another sender");
            assert_eq!(again[24..], payload[24..], "hello re-encodes to other bytes");
            let _shown = format!("{hello:?}");
        }
        Err(error) => {
            assert_eq!(message.as_ref().err(), Some(error), "decode and decode_frame disagree on the error");
            let _shown = error.to_string();
        }
    }
}

/// One message of every kind, with awkward values.
pub fn sample_messages() -> Vec<Message> {
    let membership = Membership { voters: [1, 2, 3].map(NodeId).into(), learners: [9].map(NodeId).into() };
    let entries = vec![
        Entry { index: LogIndex(5), term: Term(2), payload: EntryPayload::Noop },
        Entry { index: LogIndex(6), term: Term(2), payload: EntryPayload::Command(b"\x01\x01put".to_vec()) },
        Entry {
            index: LogIndex(7),
            term: Term(3),
            payload: EntryPayload::Membership(MembershipChange::AddLearner(NodeId(9))),
        },
        Entry {
            index: LogIndex(8),
            term: Term(3),
            payload: EntryPayload::Membership(MembershipChange::Remove(NodeId(2))),
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
        MessageBody::VoteRequest { kind: CampaignKind::Election, last_log_term: Term(3), last_log_index: LogIndex(7) },
        MessageBody::VoteRequest { kind: CampaignKind::Transfer, last_log_term: Term(0), last_log_index: LogIndex(0) },
        MessageBody::VoteRequest { kind: CampaignKind::Inquiry, last_log_term: Term(2), last_log_index: LogIndex(9) },
        MessageBody::VoteResponse { pre_vote: true, granted: false },
        MessageBody::InquiryResponse { answer: InquiryAnswer::Proceed },
        MessageBody::InquiryResponse { answer: InquiryAnswer::Refused },
        MessageBody::InquiryResponse { answer: InquiryAnswer::Alive },
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
        MessageBody::AppendResponse { result: Ok(LogIndex(17)) },
        MessageBody::AppendResponse { result: Err(rejection) },
        MessageBody::Heartbeat { commit: LogIndex(3), read_seq: 77 },
        MessageBody::HeartbeatResponse { read_seq: 77 },
        MessageBody::InstallSnapshot(chunk),
        MessageBody::SnapshotResponse { index: LogIndex(40), next_offset: 1024 },
        MessageBody::ReadIndexRequest { context: 1 << 40 },
        MessageBody::ReadIndexResponse { context: 5, index: LogIndex(8) },
        MessageBody::TimeoutNow,
        MessageBody::RecoveryQuery { nonce: 0x0123_4567_89ab_cdef },
        MessageBody::RecoveryAnswer { nonce: 7, term: Term(42), last_log_index: LogIndex(17), last_log_term: Term(41) },
    ];
    bodies.into_iter().map(|body| Message { from: NodeId(1), to: NodeId(2), term: Term(42), body }).collect()
}

/// Hellos with and without a token.
fn sample_hellos() -> Vec<Hello> {
    vec![
        Hello {
            from: NodeId(1),
            client_url: "http://127.0.0.1:7001".to_owned(),
            peer_url: "http://127.0.0.1:7101".to_owned(),
            token: None,
        },
        Hello {
            from: NodeId(3),
            client_url: "https://n3.example:7001".to_owned(),
            peer_url: "https://n3.example:7101".to_owned(),
            token: Some("s3cret-token".to_owned()),
        },
    ]
}

/// An input: the flags, the maximum frame size, and these payloads framed one after another.
fn input(flags: u8, max: u16, payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = vec![flags];
    bytes.extend_from_slice(&max.to_le_bytes());
    for payload in payloads {
        bytes.extend_from_slice(&frame::encode(payload));
    }
    bytes
}

/// A connection's opening (a hello) then one message per frame, and each message alone.
pub fn seeds() -> Vec<Seed> {
    let hellos: Vec<Vec<u8>> = sample_hellos().iter().map(wire::encode_hello).collect();
    let messages: Vec<Vec<u8>> = sample_messages().iter().map(wire::encode).collect();
    let mut seeds = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        seeds
            .push(Seed::new(&format!("message-{i:02}"), input(FIX_CHECKSUMS, u16::MAX, std::slice::from_ref(message))));
    }
    let mut connection = vec![hellos[0].clone()];
    connection.extend(messages.iter().cloned());
    seeds.push(Seed::new("connection", input(HELLO_FIRST | 7, u16::MAX, &connection)));
    seeds.push(Seed::new("hello-token", input(HELLO_FIRST | FIX_CHECKSUMS | 3, 4096, &hellos[1..])));
    seeds.push(Seed::new("small-limit", input(1, 64, &messages[..4])));
    let mut corrupted = input(0x1f, 1024, &messages[8..10]);
    let last = corrupted.len() - 1;
    corrupted[last] ^= 0x80;
    seeds.push(Seed::new("bad-checksum", corrupted));
    // The frame of the issue: a heartbeat at term 2^64-1.
    let forged = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(u64::MAX),
        body: MessageBody::Heartbeat { commit: LogIndex(0), read_seq: 0 },
    };
    seeds.push(Seed::new("max-term-heartbeat", input(0, u16::MAX, &[wire::encode(&forged)])));
    seeds
}
