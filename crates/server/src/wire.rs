//! The binary encoding of what peers send each other (the payload of a [`crate::frame`]): Raft messages, and
//! the hello that opens every connection: who the sender is, where it serves clients and peers, and the cluster
//! token that proves it belongs to the cluster.
//!
//! ```text
//! frame    := message | hello                 (decode_frame gives a PeerFrame)
//! message  := from u64, to u64, term u64, kind u8 (1..=11, 13..=15), body
//! hello    := from u64, to u64, term u64, kind u8 (12), client_url bytes, peer_url bytes, token
//!             (to and term are written 0 and ignored; the URLs are UTF-8, at most CLIENT_URL_MAX_BYTES and
//!             PEER_URL_MAX_BYTES bytes)
//! token    := 0 u8 (none) | 1 u8, bytes   (UTF-8, at most TOKEN_MAX_BYTES bytes)
//! bytes    := length u32, bytes            (entry payloads use tally_node::codec)
//! entry    := index u64, term u64, bytes
//! membership := voters (count u32, ids u64...), learners (count u32, ids u64...)
//! ```
//! All integers little-endian. Counts and string lengths are checked against their limits and the bytes left
//! before anything is allocated. The hello shares the message header so that its kind sits where every decoder
//! already looks for one.
//!
//! Every term (the header's, and any inside a message) must be at most [`Term::ACCEPTED_MAX`] (2^48) and every
//! log index at most [`LogIndex::ACCEPTED_MAX`] (2^56), or the message is refused with
//! [`WireError::OutOfRange`]: no real cluster gets near them (their docs say why), and no peer may move a node to
//! a term whose successor overflows, where the cluster could never elect a leader again. The bound is no
//! substitute for knowing who sends: a stranger who may send messages at all can still disturb elections with
//! terms below it, which is why the peer transport binds every connection to a node id proven by the cluster
//! token or a certificate (see `crate::peer`).
//!
//! Without TLS the token travels in clear text: it keeps out strangers who can reach the peer port, not
//! eavesdroppers on the network between peers; mutual TLS between peers (see `crate::peer`) protects both.

use tally_node::codec::{decode_payload, encode_payload};
use tally_raft::{
    AppendRejection, CampaignKind, Entry, InquiryAnswer, LogIndex, Membership, Message, MessageBody, NodeId,
    SnapshotChunk, SnapshotMeta, Term,
};

/// Why a payload is not a valid message. The connection that sent it should be closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The payload ended early.
    #[error("message truncated at byte {offset}: {needed} more bytes needed")]
    Truncated {
        /// Where the missing bytes start.
        offset: usize,
        /// How many more were needed.
        needed: usize,
    },
    /// A tag byte has no meaning.
    #[error("unknown {what} tag {tag} at byte {offset}")]
    BadTag {
        /// What was being decoded.
        what: &'static str,
        /// The tag found.
        tag: u8,
        /// Where.
        offset: usize,
    },
    /// The message decoded but bytes are left over.
    #[error("{count} unexpected bytes after the message")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// The content is invalid (e.g. an entry payload that does not decode).
    #[error("invalid message: {0}")]
    Invalid(String),
    /// A term or log index is above what any node accepts ([`Term::ACCEPTED_MAX`], [`LogIndex::ACCEPTED_MAX`]):
    /// no real cluster ever gets there, and a node moved there could never elect a leader again.
    #[error("{what} {value} exceeds the maximum of {max} any node accepts")]
    OutOfRange {
        /// Which field.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The bound.
        max: u64,
    },
    /// A bounded field is longer than allowed.
    #[error("{what} of {length} bytes at byte {offset} exceeds the maximum of {max} bytes")]
    TooLong {
        /// What was being decoded.
        what: &'static str,
        /// The announced length.
        length: usize,
        /// The limit.
        max: usize,
        /// Where the field's length starts.
        offset: usize,
    },
}

/// The longest client URL a hello may carry, in bytes: bounds what one peer can make this node remember.
pub const CLIENT_URL_MAX_BYTES: usize = 1024;

/// The longest peer URL a hello may carry, in bytes: bounds what one peer can make this node remember.
pub const PEER_URL_MAX_BYTES: usize = 1024;

/// The longest cluster token a hello may carry, in bytes.
pub const TOKEN_MAX_BYTES: usize = 256;

/// The largest hello payload: [`decode_frame`] refuses any longer one, so a connection that has not yet
/// introduced itself can be held to frames of this size.
pub const HELLO_MAX_BYTES: usize =
    KIND_OFFSET + 1 + (4 + CLIENT_URL_MAX_BYTES) + (4 + PEER_URL_MAX_BYTES) + 1 + (4 + TOKEN_MAX_BYTES);

/// What a node tells each peer it connects to, first thing on every connection.
///
/// Its `Debug` output hides the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Hello {
    /// The sending node.
    pub from: NodeId,
    /// Where the sending node serves clients (e.g. `http://10.0.0.1:7001`), so that followers can forward
    /// client writes to the leader. At most [`CLIENT_URL_MAX_BYTES`] bytes.
    pub client_url: String,
    /// Where the sending node accepts peer connections (e.g. `http://10.0.0.1:7101`), as it advertises it, so
    /// that a node can learn how to reach a peer that reached it. At most [`PEER_URL_MAX_BYTES`] bytes.
    pub peer_url: String,
    /// The cluster token the sender was configured with, if any: a node configured with a token serves only
    /// connections whose hellos carry the same one. At most [`TOKEN_MAX_BYTES`] bytes.
    pub token: Option<String>,
}

impl std::fmt::Debug for Hello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Hello { from, client_url, peer_url, token } = self;
        f.debug_struct("Hello")
            .field("from", from)
            .field("client_url", client_url)
            .field("peer_url", peer_url)
            .field("token", &token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One decoded payload: a Raft message for the node loop, or a hello for the peer transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerFrame {
    /// A Raft message.
    Raft(Message),
    /// A peer introducing itself.
    Hello(Hello),
}

// Message kinds on the wire. Never renumber: peers of other builds read them.
const VOTE_REQUEST: u8 = 1;
const VOTE_RESPONSE: u8 = 2;
const APPEND: u8 = 3;
const APPEND_RESPONSE: u8 = 4;
const HEARTBEAT: u8 = 5;
const HEARTBEAT_RESPONSE: u8 = 6;
const INSTALL_SNAPSHOT: u8 = 7;
const SNAPSHOT_RESPONSE: u8 = 8;
const READ_INDEX_REQUEST: u8 = 9;
const READ_INDEX_RESPONSE: u8 = 10;
const TIMEOUT_NOW: u8 = 11;
const HELLO: u8 = 12;
const INQUIRY_RESPONSE: u8 = 13;
const RECOVERY_QUERY: u8 = 14;
const RECOVERY_ANSWER: u8 = 15;

/// Where the kind byte sits: after `from`, `to` and `term`.
const KIND_OFFSET: usize = 3 * 8;

/// Encodes a hello.
///
/// # Panics
/// If a field is longer than its limit ([`CLIENT_URL_MAX_BYTES`], [`PEER_URL_MAX_BYTES`], [`TOKEN_MAX_BYTES`]):
/// peers would refuse the hello.
pub fn encode_hello(hello: &Hello) -> Vec<u8> {
    let Hello { from, client_url, peer_url, token } = hello;
    assert_fits("client URL", client_url, CLIENT_URL_MAX_BYTES);
    assert_fits("peer URL", peer_url, PEER_URL_MAX_BYTES);
    let mut w = Writer(Vec::with_capacity(HELLO_MAX_BYTES));
    w.u64(from.0);
    w.u64(0);
    w.u64(0);
    w.u8(HELLO);
    w.bytes(client_url.as_bytes());
    w.bytes(peer_url.as_bytes());
    match token {
        None => w.u8(0),
        Some(token) => {
            assert_fits("cluster token", token, TOKEN_MAX_BYTES);
            w.u8(1);
            w.bytes(token.as_bytes());
        }
    }
    assert!(w.0.len() <= HELLO_MAX_BYTES, "hello of {} bytes > HELLO_MAX_BYTES {HELLO_MAX_BYTES}", w.0.len());
    w.0
}

/// Asserts that a hello field is within its limit.
fn assert_fits(what: &str, text: &str, max: usize) {
    assert!(text.len() <= max, "{what} of {} bytes exceeds the maximum of {max}", text.len());
}

/// Encodes a message.
pub fn encode(message: &Message) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64));
    w.u64(message.from.0);
    w.u64(message.to.0);
    w.u64(message.term.0);
    match &message.body {
        MessageBody::VoteRequest { kind, last_log_term, last_log_index } => {
            w.u8(VOTE_REQUEST);
            w.u8(match kind {
                CampaignKind::PreVote => 0,
                CampaignKind::Election => 1,
                CampaignKind::Transfer => 2,
                CampaignKind::Inquiry => 3,
            });
            w.u64(last_log_term.0);
            w.u64(last_log_index.0);
        }
        MessageBody::VoteResponse { pre_vote, granted } => {
            w.u8(VOTE_RESPONSE);
            w.bool(*pre_vote);
            w.bool(*granted);
        }
        MessageBody::InquiryResponse { answer } => {
            w.u8(INQUIRY_RESPONSE);
            w.u8(match answer {
                InquiryAnswer::Proceed => 0,
                InquiryAnswer::Refused => 1,
                InquiryAnswer::Alive => 2,
            });
        }
        MessageBody::Append { prev_log_index, prev_log_term, entries, leader_commit } => {
            w.u8(APPEND);
            w.u64(prev_log_index.0);
            w.u64(prev_log_term.0);
            w.u64(leader_commit.0);
            w.u32(entries.len() as u32);
            for entry in entries {
                w.u64(entry.index.0);
                w.u64(entry.term.0);
                w.bytes(&encode_payload(&entry.payload));
            }
        }
        MessageBody::AppendResponse { result } => {
            w.u8(APPEND_RESPONSE);
            match result {
                Ok(index) => {
                    w.u8(0);
                    w.u64(index.0);
                }
                Err(r) => {
                    w.u8(1);
                    w.u64(r.rejected_index.0);
                    w.u64(r.hint_index.0);
                    w.u64(r.hint_term.0);
                    w.bool(r.needs_snapshot);
                }
            }
        }
        MessageBody::Heartbeat { commit, read_seq } => {
            w.u8(HEARTBEAT);
            w.u64(commit.0);
            w.u64(*read_seq);
        }
        MessageBody::HeartbeatResponse { read_seq } => {
            w.u8(HEARTBEAT_RESPONSE);
            w.u64(*read_seq);
        }
        MessageBody::InstallSnapshot(chunk) => {
            w.u8(INSTALL_SNAPSHOT);
            w.u64(chunk.meta.index.0);
            w.u64(chunk.meta.term.0);
            w.membership(&chunk.meta.membership);
            w.u64(chunk.offset);
            w.u64(chunk.total_len);
            w.u32(chunk.checksum);
            w.bool(chunk.done);
            w.bytes(&chunk.data);
        }
        MessageBody::SnapshotResponse { index, next_offset } => {
            w.u8(SNAPSHOT_RESPONSE);
            w.u64(index.0);
            w.u64(*next_offset);
        }
        MessageBody::ReadIndexRequest { context } => {
            w.u8(READ_INDEX_REQUEST);
            w.u64(*context);
        }
        MessageBody::ReadIndexResponse { context, index } => {
            w.u8(READ_INDEX_RESPONSE);
            w.u64(*context);
            w.u64(index.0);
        }
        MessageBody::TimeoutNow => w.u8(TIMEOUT_NOW),
        MessageBody::RecoveryQuery { nonce } => {
            w.u8(RECOVERY_QUERY);
            w.u64(*nonce);
        }
        MessageBody::RecoveryAnswer { nonce, term, last_log_index, last_log_term } => {
            w.u8(RECOVERY_ANSWER);
            w.u64(*nonce);
            w.u64(term.0);
            w.u64(last_log_index.0);
            w.u64(last_log_term.0);
        }
    }
    w.0
}

/// Decodes a Raft message; never panics. A hello is refused as an unknown message kind: use
/// [`decode_frame`] where one may come.
///
/// # Errors
/// Any malformation, named with its byte offset.
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    match decode_frame(bytes)? {
        PeerFrame::Raft(message) => Ok(message),
        PeerFrame::Hello(_) => Err(WireError::BadTag { what: "message kind", tag: HELLO, offset: KIND_OFFSET }),
    }
}

/// Decodes a Raft message or a hello; never panics.
///
/// # Errors
/// Any malformation, named with its byte offset.
pub fn decode_frame(bytes: &[u8]) -> Result<PeerFrame, WireError> {
    let mut r = Reader { bytes, offset: 0 };
    let (from, to, term) = (NodeId(r.u64()?), NodeId(r.u64()?), Term(r.u64()?));
    let frame = match r.u8()? {
        HELLO => PeerFrame::Hello(decode_hello(&mut r, from)?),
        kind => {
            let term = check_term("term", term)?;
            PeerFrame::Raft(Message { from, to, term, body: decode_body(&mut r, kind)? })
        }
    };
    let count = bytes.len() - r.offset;
    if count > 0 {
        return Err(WireError::TrailingBytes { count });
    }
    Ok(frame)
}

/// `term` if it is at most [`Term::ACCEPTED_MAX`].
///
/// # Errors
/// [`WireError::OutOfRange`] naming the field `what`.
fn check_term(what: &'static str, term: Term) -> Result<Term, WireError> {
    if term > Term::ACCEPTED_MAX {
        return Err(WireError::OutOfRange { what, value: term.0, max: Term::ACCEPTED_MAX.0 });
    }
    Ok(term)
}

/// The fields of a hello from `from`, after its kind byte.
fn decode_hello(r: &mut Reader<'_>, from: NodeId) -> Result<Hello, WireError> {
    let client_url = r.string("client URL", CLIENT_URL_MAX_BYTES)?;
    let peer_url = r.string("peer URL", PEER_URL_MAX_BYTES)?;
    let token = match r.u8()? {
        0 => None,
        1 => Some(r.string("cluster token", TOKEN_MAX_BYTES)?),
        tag => return Err(WireError::BadTag { what: "token presence", tag, offset: r.offset - 1 }),
    };
    Ok(Hello { from, client_url, peer_url, token })
}

/// The body of a Raft message of `kind` (just read, at [`KIND_OFFSET`]).
fn decode_body(r: &mut Reader<'_>, kind: u8) -> Result<MessageBody, WireError> {
    let body = match kind {
        VOTE_REQUEST => {
            let kind = match r.u8()? {
                0 => CampaignKind::PreVote,
                1 => CampaignKind::Election,
                2 => CampaignKind::Transfer,
                3 => CampaignKind::Inquiry,
                tag => return Err(WireError::BadTag { what: "campaign kind", tag, offset: r.offset - 1 }),
            };
            let (last_log_term, last_log_index) = (r.term("last log term")?, r.index("last log index")?);
            MessageBody::VoteRequest { kind, last_log_term, last_log_index }
        }
        VOTE_RESPONSE => MessageBody::VoteResponse { pre_vote: r.bool()?, granted: r.bool()? },
        INQUIRY_RESPONSE => {
            let answer = match r.u8()? {
                0 => InquiryAnswer::Proceed,
                1 => InquiryAnswer::Refused,
                2 => InquiryAnswer::Alive,
                tag => return Err(WireError::BadTag { what: "inquiry answer", tag, offset: r.offset - 1 }),
            };
            MessageBody::InquiryResponse { answer }
        }
        APPEND => decode_append(r)?,
        APPEND_RESPONSE => {
            let result = match r.u8()? {
                0 => Ok(r.index("match index")?),
                1 => Err(AppendRejection {
                    rejected_index: r.index("rejected index")?,
                    hint_index: r.index("hint index")?,
                    hint_term: r.term("hint term")?,
                    needs_snapshot: r.bool()?,
                }),
                tag => return Err(WireError::BadTag { what: "append result", tag, offset: r.offset - 1 }),
            };
            MessageBody::AppendResponse { result }
        }
        HEARTBEAT => MessageBody::Heartbeat { commit: r.index("commit index")?, read_seq: r.u64()? },
        HEARTBEAT_RESPONSE => MessageBody::HeartbeatResponse { read_seq: r.u64()? },
        INSTALL_SNAPSHOT => {
            let (index, term) = (r.index("snapshot index")?, r.term("snapshot term")?);
            let meta = SnapshotMeta { index, term, membership: r.membership()? };
            let (offset, total_len, checksum, done) = (r.u64()?, r.u64()?, r.u32()?, r.bool()?);
            let data = r.bytes()?.to_vec();
            MessageBody::InstallSnapshot(SnapshotChunk { meta, offset, data, total_len, checksum, done })
        }
        SNAPSHOT_RESPONSE => MessageBody::SnapshotResponse { index: r.index("snapshot index")?, next_offset: r.u64()? },
        READ_INDEX_REQUEST => MessageBody::ReadIndexRequest { context: r.u64()? },
        READ_INDEX_RESPONSE => MessageBody::ReadIndexResponse { context: r.u64()?, index: r.index("read index")? },
        TIMEOUT_NOW => MessageBody::TimeoutNow,
        RECOVERY_QUERY => MessageBody::RecoveryQuery { nonce: r.u64()? },
        RECOVERY_ANSWER => MessageBody::RecoveryAnswer {
            nonce: r.u64()?,
            term: r.term("answered term")?,
            last_log_index: r.index("answered last log index")?,
            last_log_term: r.term("answered last log term")?,
        },
        tag => return Err(WireError::BadTag { what: "message kind", tag, offset: KIND_OFFSET }),
    };
    Ok(body)
}

/// The body of an Append.
fn decode_append(r: &mut Reader<'_>) -> Result<MessageBody, WireError> {
    let (prev_log_index, prev_log_term) = (r.index("previous log index")?, r.term("previous log term")?);
    let leader_commit = r.index("commit index")?;
    let count = r.count(8 + 8 + 4)?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let (index, term) = (r.index("entry index")?, r.term("entry term")?);
        let payload = decode_payload(r.bytes()?).map_err(|e| WireError::Invalid(e.to_string()))?;
        entries.push(Entry { index, term, payload });
    }
    check_consecutive(prev_log_index, prev_log_term, &entries)?;
    Ok(MessageBody::Append { prev_log_index, prev_log_term, entries, leader_commit })
}

/// The core asserts that an Append's entries follow `prev` consecutively with terms that never decrease;
/// a peer must not be able to trip that assertion, so the boundary checks it.
fn check_consecutive(prev_index: LogIndex, prev_term: Term, entries: &[Entry]) -> Result<(), WireError> {
    let (mut index, mut term) = (prev_index, prev_term);
    for entry in entries {
        // Checked: `prev_log_index` is the peer's to choose, u64::MAX included.
        if index.0.checked_add(1) != Some(entry.index.0) || entry.term < term {
            let reason = format!("entry {}@{} does not follow {index}@{term}", entry.index, entry.term);
            return Err(WireError::Invalid(reason));
        }
        (index, term) = (entry.index, entry.term);
    }
    Ok(())
}

/// Appends little-endian fields.
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(u32::try_from(v.len()).expect("a message field fits in u32"));
        self.0.extend_from_slice(v);
    }
    fn membership(&mut self, m: &Membership) {
        for set in [&m.voters, &m.learners] {
            self.u32(set.len() as u32);
            for id in set {
                self.u64(id.0);
            }
        }
    }
}

/// Reads little-endian fields, failing (never panicking) past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let left = self.bytes.len() - self.offset;
        if n > left {
            return Err(WireError::Truncated { offset: self.offset, needed: n - left });
        }
        let out = &self.bytes[self.offset..self.offset + n];
        self.offset += n;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn bool(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(WireError::BadTag { what: "bool", tag, offset: self.offset - 1 }),
        }
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    /// A term, at most [`Term::ACCEPTED_MAX`].
    fn term(&mut self, what: &'static str) -> Result<Term, WireError> {
        check_term(what, Term(self.u64()?))
    }
    /// A log index, at most [`LogIndex::ACCEPTED_MAX`].
    fn index(&mut self, what: &'static str) -> Result<LogIndex, WireError> {
        let value = self.u64()?;
        let max = LogIndex::ACCEPTED_MAX.0;
        if value > max {
            return Err(WireError::OutOfRange { what, value, max });
        }
        Ok(LogIndex(value))
    }
    /// A UTF-8 string of at most `max` bytes; the length is checked before the bytes are looked at.
    fn string(&mut self, what: &'static str, max: usize) -> Result<String, WireError> {
        let offset = self.offset;
        let length = self.u32()? as usize;
        if length > max {
            return Err(WireError::TooLong { what, length, max, offset });
        }
        let bytes = self.take(length)?;
        let text = std::str::from_utf8(bytes)
            .map_err(|e| WireError::Invalid(format!("{what} at byte {} is not UTF-8: {e}", offset + 4)))?;
        Ok(text.to_owned())
    }
    /// A count of items of at least `min_item_bytes` each, checked against the bytes left so a forged count
    /// cannot make the decoder allocate more than the message itself.
    fn count(&mut self, min_item_bytes: usize) -> Result<usize, WireError> {
        let count = self.u32()? as usize;
        let left = self.bytes.len() - self.offset;
        if count.saturating_mul(min_item_bytes) > left {
            return Err(WireError::Truncated { offset: self.offset, needed: count * min_item_bytes - left });
        }
        Ok(count)
    }
    fn membership(&mut self) -> Result<Membership, WireError> {
        let mut sets = [std::collections::BTreeSet::new(), std::collections::BTreeSet::new()];
        for set in &mut sets {
            for _ in 0..self.count(8)? {
                set.insert(NodeId(self.u64()?));
            }
        }
        let [voters, learners] = sets;
        if let Some(id) = voters.intersection(&learners).next() {
            return Err(WireError::Invalid(format!("{id} is both voter and learner")));
        }
        Ok(Membership { voters, learners })
    }
}

#[cfg(test)]
mod tests;
