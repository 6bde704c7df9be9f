//! The client URLs of peers, learned from the hellos that open their connections.
//!
//! Followers forward client writes to the leader's client URL, which they learn here. The directory keeps the
//! last URL heard from each node, and is bounded so that forged hellos cannot make this node remember much.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::{Mutex, PoisonError};

use tally_raft::NodeId;

use crate::wire::Hello;

/// The most nodes remembered (a cluster has a handful): with URLs of at most
/// [`crate::wire::CLIENT_URL_MAX_BYTES`], the directory holds about a megabyte at most.
const CLIENT_URLS_MAX: usize = 1024;

/// `NodeId -> client URL` of the peers, shared by the inbound connections that fill it and the transport that
/// answers from it.
///
/// Invariant: `urls.len() <= CLIENT_URLS_MAX`, and `urls` never holds `local_id`.
#[derive(Debug)]
pub(crate) struct ClientUrls {
    /// This node: it knows its own URL, and a hello claiming its id is ignored.
    local_id: NodeId,
    /// The last client URL heard from each peer.
    urls: Mutex<BTreeMap<NodeId, String>>,
}

impl ClientUrls {
    /// An empty directory for the node `local_id`.
    pub(crate) fn new(local_id: NodeId) -> ClientUrls {
        ClientUrls { local_id, urls: Mutex::new(BTreeMap::new()) }
    }

    /// Records the client URL that `hello` announces, unless it claims to come from this node, or comes from
    /// a node not yet known while the directory is full.
    pub(crate) fn record(&self, hello: Hello) {
        let Hello { from, client_url } = hello;
        if from == self.local_id {
            return tracing::debug!(%from, %client_url, "ignoring a hello carrying this node's id");
        }
        let mut urls = self.urls.lock().unwrap_or_else(PoisonError::into_inner);
        let full = urls.len() >= CLIENT_URLS_MAX;
        match urls.entry(from) {
            Entry::Occupied(entry) if *entry.get() == client_url => {}
            Entry::Occupied(mut entry) => {
                tracing::debug!(peer = %from, %client_url, previous = %entry.get(), "peer client URL changed");
                entry.insert(client_url);
            }
            Entry::Vacant(_) if full => {
                tracing::warn!(peer = %from, max = CLIENT_URLS_MAX, "too many peers, ignoring a hello");
            }
            Entry::Vacant(entry) => {
                tracing::debug!(peer = %from, %client_url, "learned peer client URL");
                entry.insert(client_url);
            }
        }
        debug_assert!(urls.len() <= CLIENT_URLS_MAX && !urls.contains_key(&self.local_id));
    }

    /// The last client URL heard from `id`.
    pub(crate) fn get(&self, id: NodeId) -> Option<String> {
        self.urls.lock().unwrap_or_else(PoisonError::into_inner).get(&id).cloned()
    }

    /// Every peer's last client URL, in id order.
    pub(crate) fn all(&self) -> BTreeMap<NodeId, String> {
        self.urls.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(from: u64, client_url: &str) -> Hello {
        Hello { from: NodeId(from), client_url: client_url.to_owned() }
    }

    #[test]
    fn the_last_url_heard_wins_and_this_node_is_never_recorded() {
        let urls = ClientUrls::new(NodeId(1));
        urls.record(hello(1, "http://self:7001"));
        urls.record(hello(2, "http://old:7001"));
        urls.record(hello(2, "http://new:7001"));
        urls.record(hello(3, "http://three:7001"));
        assert_eq!(urls.get(NodeId(1)), None);
        assert_eq!(urls.get(NodeId(2)).as_deref(), Some("http://new:7001"));
        let expected = [(NodeId(2), "http://new:7001".to_owned()), (NodeId(3), "http://three:7001".to_owned())];
        assert_eq!(urls.all(), BTreeMap::from(expected));
    }

    #[test]
    fn a_full_directory_ignores_new_nodes_but_updates_known_ones() {
        let urls = ClientUrls::new(NodeId(0));
        for id in 1..=CLIENT_URLS_MAX as u64 + 10 {
            urls.record(hello(id, "http://a:1"));
        }
        assert_eq!(urls.all().len(), CLIENT_URLS_MAX);
        assert_eq!(urls.get(NodeId(CLIENT_URLS_MAX as u64 + 1)), None);
        urls.record(hello(1, "http://b:2"));
        assert_eq!(urls.get(NodeId(1)).as_deref(), Some("http://b:2"));
    }
}
