//! What the client sends and gets back: consistency levels, write results, key/value entries, pages of
//! keys, and the cluster view of `GET /v1/cluster`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How fresh a read must be (`?consistency=` of `GET /v1/kv`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Consistency {
    /// The answer reflects every write acknowledged before the request began (the default). Served by the
    /// leader after a ReadIndex round, or by a follower after asking the leader for a read index.
    #[default]
    Linearizable,
    /// Whatever the answering node has applied; it may be behind, but it needs no leader.
    Stale,
}

impl Consistency {
    /// The query parameter value: `linearizable` or `stale`.
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Linearizable => "linearizable",
            Consistency::Stale => "stale",
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Consistency {
    type Err = String;

    /// Parses `linearizable` or `stale`.
    fn from_str(text: &str) -> Result<Consistency, String> {
        match text {
            "linearizable" => Ok(Consistency::Linearizable),
            "stale" => Ok(Consistency::Stale),
            other => Err(format!("unknown consistency {other:?}: expected linearizable or stale")),
        }
    }
}

/// The outcome of an acknowledged put.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteResult {
    /// The Raft log index of the write: the key's new modify index, and what a later cas expects.
    pub index: u64,
}

/// The outcome of an acknowledged delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeleteResult {
    /// The Raft log index of the delete.
    pub index: u64,
    /// Whether the key existed (deleting an absent key succeeds and changes nothing).
    pub deleted: bool,
}

/// The outcome of an acknowledged prefix delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeletePrefixResult {
    /// The Raft log index of the delete (one entry for every key it removed).
    pub index: u64,
    /// How many keys it removed (0 is still a success).
    pub deleted: u64,
}

/// One key with its value and indexes, as read by `get` or `list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The key's bytes.
    pub key: Vec<u8>,
    /// The value's bytes.
    pub value: Vec<u8>,
    /// The log index of the write that created the key (since it was last absent).
    pub create_index: u64,
    /// The log index of the key's last write: what a cas must name to replace it.
    pub modify_index: u64,
    /// The key's writes since it was created: 1 on creation, one more per overwrite (a delete ends its
    /// count; a key created again starts at 1). 0 only from a server too old to report it.
    pub version: u64,
    /// The applied index the answer reflects (`X-Tally-Index`); for a page, the page's index.
    pub index: u64,
}

/// One page of keys from `list`, in byte order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The entries, in key byte order.
    pub items: Vec<KeyValue>,
    /// Whether more keys match: pass the last item's key as `after` to get them.
    pub more: bool,
    /// The applied index the page reflects.
    pub index: u64,
}

/// A node's Raft role (`role` of `/v1/cluster`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// It leads the current term.
    Leader,
    /// It is running for election.
    Candidate,
    /// It follows a leader (or waits for one).
    Follower,
    /// A role this client does not know (a newer server).
    #[serde(other)]
    Unknown,
}

impl NodeRole {
    /// The role as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Leader => "leader",
            NodeRole::Candidate => "candidate",
            NodeRole::Follower => "follower",
            NodeRole::Unknown => "unknown",
        }
    }
}

/// A member's place in the configuration (`members[].role` of `/v1/cluster`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    /// It votes and counts towards the quorum.
    Voter,
    /// It receives the log but does not vote (a joining node catching up).
    Learner,
    /// A role this client does not know (a newer server).
    #[serde(other)]
    Unknown,
}

impl MemberRole {
    /// The role as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
            MemberRole::Unknown => "unknown",
        }
    }
}

/// One node's view of the cluster: the body of `GET /v1/cluster`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The answering node's id (`n1`).
    pub id: String,
    /// Its Raft role.
    pub role: NodeRole,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of, if any.
    pub leader: Option<String>,
    /// Its commit index.
    pub commit_index: u64,
    /// Its applied index.
    pub applied_index: u64,
    /// The index of the last entry in its log.
    pub last_index: u64,
    /// The index its latest snapshot covers.
    #[serde(default)]
    pub snapshot_index: u64,
    /// A fingerprint of its applied key/value state: equal at equal applied indexes.
    #[serde(default)]
    pub state_checksum: String,
    /// The members of the configuration, as this node knows them.
    pub members: Vec<Member>,
}

impl ClusterStatus {
    /// The member entry of `id`, if it is one.
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }
}

/// One member of the configuration, as a node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its id.
    pub id: String,
    /// Voter or learner.
    pub role: MemberRole,
    /// Its peer address, if the answering node knows it.
    #[serde(default)]
    pub peer_url: Option<String>,
    /// Its client API URL; `None` until that peer has connected to the answering node once.
    #[serde(default)]
    pub client_url: Option<String>,
    /// The highest log index known to be replicated on it; known only on the leader.
    #[serde(default)]
    pub match_index: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_documented_cluster_view() {
        let body = r#"{
          "id": "n1", "role": "leader", "term": 3, "leader": "n1",
          "commit_index": 120, "applied_index": 120, "last_index": 120, "snapshot_index": 0,
          "state_checksum": "9c1f0e3a5b7d2e41",
          "members": [
            {"id": "n1", "role": "voter", "peer_url": "http://127.0.0.1:7101", "client_url": "http://127.0.0.1:7001", "match_index": 120},
            {"id": "n3", "role": "learner", "peer_url": "http://127.0.0.1:7103", "client_url": null, "match_index": null}
          ]
        }"#;
        let status: ClusterStatus = serde_json::from_str(body).expect("the documented example decodes");
        assert_eq!(status.role, NodeRole::Leader);
        assert_eq!(status.leader.as_deref(), Some("n1"));
        assert_eq!(status.member("n1").and_then(|m| m.match_index), Some(120));
        let learner = status.member("n3").expect("n3 is a member");
        assert_eq!(
            (learner.role, learner.client_url.as_deref(), learner.match_index),
            (MemberRole::Learner, None, None)
        );
    }

    #[test]
    fn unknown_roles_decode_as_unknown() {
        let role: NodeRole = serde_json::from_str(r#""observer""#).expect("falls back to Unknown");
        assert_eq!(role, NodeRole::Unknown);
        let role: MemberRole = serde_json::from_str(r#""witness""#).expect("falls back to Unknown");
        assert_eq!(role, MemberRole::Unknown);
    }

    #[test]
    fn consistency_round_trips_through_text() {
        for consistency in [Consistency::Linearizable, Consistency::Stale] {
            assert_eq!(consistency.as_str().parse::<Consistency>(), Ok(consistency));
        }
        assert!("strong".parse::<Consistency>().is_err());
    }
}
