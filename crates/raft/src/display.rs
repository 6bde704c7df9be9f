//! Compact, stable text forms of messages and entries, for traces and data-driven tests.

use std::fmt;

use crate::message::{Message, MessageBody};
use crate::types::{Entry, EntryPayload};

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.index, self.term)?;
        match &self.payload {
            EntryPayload::Noop => write!(f, " noop"),
            EntryPayload::Command(data) => write!(f, " {}", String::from_utf8_lossy(data).escape_debug()),
            EntryPayload::Membership(change) => write!(f, " {change:?}"),
        }
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{} {} t{}", self.from, self.to, self.kind(), self.term)?;
        match &self.body {
            MessageBody::VoteRequest { last_log_term, last_log_index, .. } => {
                write!(f, " last={last_log_index}@{last_log_term}")
            }
            MessageBody::VoteResponse { granted, .. } => {
                write!(f, " {}", if *granted { "granted" } else { "rejected" })
            }
            MessageBody::InquiryResponse { answer } => write!(f, " {}", format!("{answer:?}").to_lowercase()),
            MessageBody::Append { prev_log_index, prev_log_term, entries, leader_commit } => {
                write!(f, " prev={prev_log_index}@{prev_log_term} commit={leader_commit} [")?;
                for (i, entry) in entries.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{entry}")?;
                }
                write!(f, "]")
            }
            MessageBody::AppendResponse { result: Ok(index) } => write!(f, " match={index}"),
            MessageBody::AppendResponse { result: Err(r) } => {
                write!(f, " reject={} hint={}@{}", r.rejected_index, r.hint_index, r.hint_term)
            }
            MessageBody::Heartbeat { commit, read_seq } => write!(f, " commit={commit} read_seq={read_seq}"),
            MessageBody::HeartbeatResponse { read_seq } => write!(f, " read_seq={read_seq}"),
            MessageBody::InstallSnapshot(chunk) => {
                let meta = &chunk.meta;
                let (offset, end, total) = (chunk.offset, chunk.end(), chunk.total_len);
                write!(f, " {}@{} [{offset}..{end}/{total}] crc={:08x}", meta.index, meta.term, chunk.checksum)
            }
            MessageBody::SnapshotResponse { index, next_offset } => write!(f, " index={index} next={next_offset}"),
            MessageBody::ReadIndexRequest { context } => write!(f, " ctx={context}"),
            MessageBody::ReadIndexResponse { context, index } => write!(f, " ctx={context} index={index}"),
            MessageBody::TimeoutNow => Ok(()),
            MessageBody::RecoveryQuery { nonce } => write!(f, " nonce={nonce:x}"),
            MessageBody::RecoveryAnswer { nonce, term, last_log_index, last_log_term } => {
                write!(f, " nonce={nonce:x} term={term} last={last_log_index}@{last_log_term}")
            }
        }
    }
}
