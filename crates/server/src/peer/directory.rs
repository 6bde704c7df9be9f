//! The client and peer URLs of peers, learned from the hellos that open their connections.
//!
//! Followers forward client writes to the leader's client URL, which they learn here; a peer URL tells how a
//! node that reached this one can be reached back. The directory keeps the last URLs heard from each node, and
//! is bounded so that forged hellos cannot make this node remember much. It never holds a hello's token.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::{Mutex, PoisonError};

use tally_raft::NodeId;

use crate::wire::Hello;

/// The most nodes remembered (a cluster has a handful): with URLs of at most
/// [`crate::wire::CLIENT_URL_MAX_BYTES`] and [`crate::wire::PEER_URL_MAX_BYTES`], the directory holds about two
/// megabytes at most.
const PEERS_MAX: usize = 1024;

/// What a peer last announced about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PeerUrls {
    /// Where it serves clients.
    client_url: String,
    /// Where it accepts peer connections.
    peer_url: String,
}

/// `NodeId -> URLs` of the peers, shared by the inbound connections that fill it and the transport that answers
/// from it.
///
/// Invariant: `peers.len() <= PEERS_MAX`, and `peers` never holds `local_id`.
#[derive(Debug)]
pub(crate) struct Directory {
    /// This node: it knows its own URLs, and a hello claiming its id is ignored.
    local_id: NodeId,
    /// The last URLs heard from each peer.
    peers: Mutex<BTreeMap<NodeId, PeerUrls>>,
    /// Bumped whenever a peer announces new URLs, so a reader can tell cheaply that something changed.
    generation: std::sync::atomic::AtomicU64,
}

impl Directory {
    /// An empty directory for the node `local_id`.
    pub(crate) fn new(local_id: NodeId) -> Directory {
        Directory { local_id, peers: Mutex::new(BTreeMap::new()), generation: std::sync::atomic::AtomicU64::new(0) }
    }

    /// Records the URLs that `hello` announces, unless it claims to come from this node, or comes from a node
    /// not yet known while the directory is full. The hello's token is dropped, not kept.
    pub(crate) fn record(&self, hello: Hello) {
        let Hello { from, client_url, peer_url, token: _ } = hello;
        if from == self.local_id {
            return tracing::debug!(%from, %client_url, %peer_url, "ignoring a hello carrying this node's id");
        }
        let urls = PeerUrls { client_url, peer_url };
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        let full = peers.len() >= PEERS_MAX;
        match peers.entry(from) {
            Entry::Occupied(entry) if *entry.get() == urls => {}
            Entry::Occupied(mut entry) => {
                let previous = entry.get();
                tracing::debug!(
                    peer = %from,
                    client_url = %urls.client_url,
                    peer_url = %urls.peer_url,
                    previous_client_url = %previous.client_url,
                    previous_peer_url = %previous.peer_url,
                    "peer URLs changed"
                );
                entry.insert(urls);
                self.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
            }
            Entry::Vacant(_) if full => {
                tracing::warn!(peer = %from, max = PEERS_MAX, "too many peers, ignoring a hello");
            }
            Entry::Vacant(entry) => {
                tracing::debug!(peer = %from, client_url = %urls.client_url, peer_url = %urls.peer_url, "learned peer URLs");
                entry.insert(urls);
                self.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
            }
        }
        assert!(peers.len() <= PEERS_MAX, "directory of {} peers > {PEERS_MAX}", peers.len());
        debug_assert!(!peers.contains_key(&self.local_id), "directory holds this node {}", self.local_id);
    }

    /// How many times a peer announced new URLs so far.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The last client URL heard from `id`.
    pub(crate) fn client_url(&self, id: NodeId) -> Option<String> {
        self.lock().get(&id).map(|urls| urls.client_url.clone())
    }

    /// The last peer URL heard from `id`.
    pub(crate) fn peer_url(&self, id: NodeId) -> Option<String> {
        self.lock().get(&id).map(|urls| urls.peer_url.clone())
    }

    /// Every peer's last client URL, in id order.
    pub(crate) fn client_urls(&self) -> BTreeMap<NodeId, String> {
        self.lock().iter().map(|(id, urls)| (*id, urls.client_url.clone())).collect()
    }

    /// Every peer's last peer URL, in id order.
    pub(crate) fn peer_urls(&self) -> BTreeMap<NodeId, String> {
        self.lock().iter().map(|(id, urls)| (*id, urls.peer_url.clone())).collect()
    }

    /// The map, even if a thread panicked holding it (every update leaves it consistent).
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, PeerUrls>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(from: u64, client_url: &str, peer_url: &str) -> Hello {
        Hello {
            from: NodeId(from),
            client_url: client_url.to_owned(),
            peer_url: peer_url.to_owned(),
            token: Some("secret".to_owned()),
        }
    }

    #[test]
    fn the_last_urls_heard_win_and_this_node_is_never_recorded() {
        let directory = Directory::new(NodeId(1));
        directory.record(hello(1, "http://self:7001", "http://self:7101"));
        directory.record(hello(2, "http://old:7001", "http://old:7101"));
        directory.record(hello(2, "http://new:7001", "http://new:7101"));
        directory.record(hello(3, "http://three:7001", "http://three:7101"));
        assert_eq!(directory.client_url(NodeId(1)), None);
        assert_eq!(directory.peer_url(NodeId(1)), None);
        assert_eq!(directory.client_url(NodeId(2)).as_deref(), Some("http://new:7001"));
        assert_eq!(directory.peer_url(NodeId(2)).as_deref(), Some("http://new:7101"));
        let client_urls = [(NodeId(2), "http://new:7001".to_owned()), (NodeId(3), "http://three:7001".to_owned())];
        assert_eq!(directory.client_urls(), BTreeMap::from(client_urls));
        let peer_urls = [(NodeId(2), "http://new:7101".to_owned()), (NodeId(3), "http://three:7101".to_owned())];
        assert_eq!(directory.peer_urls(), BTreeMap::from(peer_urls));
    }

    #[test]
    fn a_change_of_either_url_replaces_both() {
        let directory = Directory::new(NodeId(1));
        directory.record(hello(2, "http://a:7001", "http://a:7101"));
        directory.record(hello(2, "http://a:7001", "http://b:7101"));
        assert_eq!(directory.peer_url(NodeId(2)).as_deref(), Some("http://b:7101"));
        directory.record(hello(2, "http://c:7001", "http://b:7101"));
        assert_eq!(directory.client_url(NodeId(2)).as_deref(), Some("http://c:7001"));
    }

    #[test]
    fn a_full_directory_ignores_new_nodes_but_updates_known_ones() {
        let directory = Directory::new(NodeId(0));
        for id in 1..=PEERS_MAX as u64 + 10 {
            directory.record(hello(id, "http://a:1", "http://a:2"));
        }
        assert_eq!(directory.client_urls().len(), PEERS_MAX);
        assert_eq!(directory.peer_urls().len(), PEERS_MAX);
        assert_eq!(directory.client_url(NodeId(PEERS_MAX as u64 + 1)), None);
        directory.record(hello(1, "http://b:2", "http://b:3"));
        assert_eq!(directory.client_url(NodeId(1)).as_deref(), Some("http://b:2"));
        assert_eq!(directory.peer_url(NodeId(1)).as_deref(), Some("http://b:3"));
    }
}
