//! Connection limits on the peer port: floods of idle or fake connections never lock a member out, because
//! the connections that must go to make room are evicted rather than the newcomer refused. Every test is
//! bounded in time.

mod peer_common;

use std::net::SocketAddr;
use std::time::Duration;

use peer_common::*;
use tally_raft::{Message, NodeId};
use tally_server::frame;
use tally_server::peer::{PeerConfig, PeerTransport};
use tally_server::wire;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// The bound on these tests, which open hundreds of connections.
const LIMITS_TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How many idle connections the floods open: far more than the unadmitted slots.
const FLOOD: usize = 250;

/// B with `config` on a fresh loopback port.
async fn start_b(config: PeerConfig) -> (PeerTransport, mpsc::Receiver<Message>, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (transport, inbox) = PeerTransport::start(B, identity(B, None), listener, config, None);
    (transport, inbox, addr)
}

/// Opens `count` connections to `addr` that never send anything.
async fn idle_connections(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        streams.push(TcpStream::connect(addr).await.expect("connect"));
    }
    streams
}

/// Sends heartbeats from `sender` (A) to B until one arrives.
async fn heartbeat_gets_through(sender: &PeerTransport, inbox: &mut mpsc::Receiver<Message>) {
    let delivered = async {
        for seq in 0.. {
            sender.send(heartbeat(A, B, seq));
            if let Ok(Some(message)) = timeout(Duration::from_millis(100), inbox.recv()).await {
                return message;
            }
        }
        unreachable!("the loop only ends by returning")
    };
    let message = timeout(RECEIVE_TIMEOUT, delivered).await.expect("a heartbeat gets through");
    assert_eq!(message.from, A);
}

#[tokio::test]
async fn a_flood_of_idle_connections_does_not_lock_a_member_out() {
    timeout(LIMITS_TEST_TIMEOUT, async {
        // The admission deadline is far beyond the test: only eviction can free a slot.
        let config = PeerConfig { admission_timeout: Duration::from_secs(600), ..test_config() };
        let unadmitted_max = config.unadmitted_connections_max;
        let (b, mut b_inbox, b_addr) = start_b(config).await;
        let flood = idle_connections(b_addr, FLOOD).await;

        // A member connects after the flood: it evicts the oldest idle connection and is served.
        let (a, _a_inbox, _) = start(A).await;
        set_peer(&a, B, b_addr);
        heartbeat_gets_through(&a, &mut b_inbox).await;
        let (unadmitted, admitted) = b.inbound_connections();
        assert!(unadmitted <= unadmitted_max, "{unadmitted} unadmitted > {unadmitted_max}");
        assert_eq!(admitted, 1);
        assert!(b.evicted_connections() >= (FLOOD - unadmitted_max) as u64, "evicted {}", b.evicted_connections());

        // A second flood cannot touch the member's admitted connection: once every flooding connection has
        // been accepted (all but the last unadmitted_max evicted), the member is still served on it.
        let second = idle_connections(b_addr, FLOOD).await;
        let all_evicted = async {
            while b.evicted_connections() < (2 * FLOOD - unadmitted_max) as u64 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        timeout(RECEIVE_TIMEOUT, all_evicted).await.expect("the second flood is accepted and evicted");
        a.send(heartbeat(A, B, 1_000_000));
        let message = timeout(RECEIVE_TIMEOUT, b_inbox.recv()).await.expect("in time").expect("open inbox");
        assert_eq!(message, heartbeat(A, B, 1_000_000));
        assert_eq!(b.inbound_connections(), (unadmitted_max, 1), "the member's connection kept its slot");
        assert_eq!(b.evicted_connections(), (2 * FLOOD - unadmitted_max) as u64);
        assert_eq!(b.rejected_connections(), 0, "evictions are not refusals");
        drop((flood, second));
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}

#[tokio::test]
async fn fake_members_filling_the_admitted_slots_do_not_lock_a_member_out() {
    timeout(LIMITS_TEST_TIMEOUT, async {
        // Without a token anyone can claim an id: 20 silent fakes fill B's 8 admitted slots.
        let config = PeerConfig { admitted_connections_max: 8, ..test_config() };
        let (b, mut b_inbox, b_addr) = start_b(config).await;
        let mut fakes = Vec::new();
        for id in 10..30 {
            let mut fake = TcpStream::connect(b_addr).await.expect("connect");
            let hello = frame::encode(&wire::encode_hello(&hello(NodeId(id), None)));
            fake.write_all(&hello).await.expect("write hello");
            fakes.push(fake);
        }
        let settled = async {
            while b.inbound_connections() != (0, 8) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        timeout(RECEIVE_TIMEOUT, settled).await.expect("the fakes are admitted");

        // The member takes the slot of the fake silent longest, and keeps being served.
        let (a, _a_inbox, _) = start(A).await;
        set_peer(&a, B, b_addr);
        heartbeat_gets_through(&a, &mut b_inbox).await;
        assert_eq!(b.inbound_connections(), (0, 8));
        assert_eq!(b.evicted_connections(), 12 + 1);
        drop(fakes);
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}

#[tokio::test]
async fn a_member_reconnecting_replaces_its_stale_connections() {
    timeout(LIMITS_TEST_TIMEOUT, async {
        let config = test_config();
        let per_peer = config.connections_per_peer_max;
        let (b, mut b_inbox, b_addr) = start_b(config).await;
        // Connections of A's that were never closed (a crashed host's): more than A's share.
        let mut stale = Vec::new();
        for _ in 0..per_peer + 2 {
            let mut old = TcpStream::connect(b_addr).await.expect("connect");
            old.write_all(&frame::encode(&wire::encode_hello(&hello(A, None)))).await.expect("write hello");
            stale.push(old);
        }
        let (a, _a_inbox, _) = start(A).await;
        set_peer(&a, B, b_addr);
        heartbeat_gets_through(&a, &mut b_inbox).await;
        assert_eq!(b.inbound_connections(), (0, per_peer));
        assert_eq!(b.evicted_connections(), 3, "the three oldest of A's connections made room");
        drop(stale);
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}
