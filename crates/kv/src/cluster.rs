//! The cluster's own metadata, replicated through the log beside the keys: the cluster id and every member's
//! addresses.
//!
//! Raft membership (who votes, who learns) lives in the consensus core and names nodes by id only. Where to
//! reach a node is kept here, in the replicated state, so that every node, including one restarting while the
//! registry is down, knows every member's peer and client URL from its own snapshot and log (etcd keeps its
//! member list in its store for the same reason). None of it is visible through the key space.

use std::collections::BTreeMap;

use crate::DecodeError;
use crate::codec::{Reader, Sink};

/// The longest URL or cluster id accepted in a metadata command; the server checks well before this.
pub const METADATA_TEXT_MAX_BYTES: usize = 1024;

/// Where one member is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAddress {
    /// The peer URL (Raft traffic), e.g. `http://10.0.0.1:7101`.
    pub peer_url: String,
    /// The client URL (HTTP API), e.g. `http://10.0.0.1:7001`.
    pub client_url: String,
    /// Drawn at random when the node's data directory was created: a node that lost its data (or another
    /// node using the same id) has a different one, so it cannot pass for the member.
    pub incarnation: u64,
}

/// The replicated cluster metadata.
///
/// Invariant: every text field is at most [`METADATA_TEXT_MAX_BYTES`] bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The cluster's id, set once by the node that formed the cluster; `None` for a cluster formed from a
    /// static `--initial-cluster` list.
    pub cluster_id: Option<String>,
    /// Each member's addresses, by Raft node id.
    pub members: BTreeMap<u64, MemberAddress>,
}

impl ClusterInfo {
    /// Writes the canonical encoding (part of the snapshot and of the state checksum).
    pub(crate) fn write(&self, sink: &mut impl Sink) {
        match &self.cluster_id {
            None => sink.put_u8(0),
            Some(id) => {
                sink.put_u8(1);
                sink.put_bytes(id.as_bytes());
            }
        }
        sink.put_u64(self.members.len() as u64);
        for (id, address) in &self.members {
            sink.put_u64(*id);
            sink.put_bytes(address.peer_url.as_bytes());
            sink.put_bytes(address.client_url.as_bytes());
            sink.put_u64(address.incarnation);
        }
    }

    /// Reads what [`ClusterInfo::write`] wrote; member ids must be strictly increasing (canonical order).
    pub(crate) fn read(reader: &mut Reader<'_>) -> Result<ClusterInfo, DecodeError> {
        let offset = reader.offset();
        let cluster_id = match reader.u8()? {
            0 => None,
            1 => Some(read_text(reader)?),
            tag => return Err(DecodeError::BadTag { what: "cluster id flag", tag, offset }),
        };
        let count = reader.u64()?;
        let mut members = BTreeMap::new();
        let mut previous = None;
        for _ in 0..count {
            let offset = reader.offset();
            let id = reader.u64()?;
            if previous.is_some_and(|p| p >= id) {
                return Err(DecodeError::KeysOutOfOrder { offset });
            }
            previous = Some(id);
            let peer_url = read_text(reader)?;
            let client_url = read_text(reader)?;
            let incarnation = reader.u64()?;
            members.insert(id, MemberAddress { peer_url, client_url, incarnation });
        }
        Ok(ClusterInfo { cluster_id, members })
    }
}

/// Reads a length-prefixed UTF-8 string of at most [`METADATA_TEXT_MAX_BYTES`].
pub(crate) fn read_text(reader: &mut Reader<'_>) -> Result<String, DecodeError> {
    let offset = reader.offset();
    let bytes = reader.bytes()?;
    if bytes.len() > METADATA_TEXT_MAX_BYTES {
        return Err(DecodeError::TextTooLong { offset, len: bytes.len(), max: METADATA_TEXT_MAX_BYTES });
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::BadUtf8 { offset })
}
