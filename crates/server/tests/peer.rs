//! The tokio peer transport over real loopback sockets: delivery and order, malformed input, reconnection,
//! peer URLs given by host name, the bulk lane not delaying the control lane, the hellos that tell peers each
//! other's client and peer URLs, and the cluster token that keeps strangers off a protected peer port.
//! Every test is bounded in time.

mod peer_common;

use std::collections::BTreeMap;
use std::time::Duration;

use peer_common::*;
use tally_raft::{Message, NodeId};
use tally_server::frame;
use tally_server::peer::{PeerIdentity, PeerTransport};
use tally_server::wire::{self, PeerFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::time::timeout;
#[tokio::test]
async fn two_transports_exchange_messages_in_order_both_ways() {
    timeout(TEST_TIMEOUT, async {
        let (a, mut a_inbox, a_addr) = start(A).await;
        let (b, mut b_inbox, b_addr) = start(B).await;
        set_peer(&a, B, b_addr);
        set_peer(&b, A, a_addr);
        exchange(&a, A, B, &mut b_inbox).await;
        exchange(&b, B, A, &mut a_inbox).await;
        // The bulk lane keeps its own order too.
        let chunks: Vec<Message> = (0..5).map(|len| snapshot_chunk(A, B, len)).collect();
        for chunk in &chunks {
            a.send(chunk.clone());
        }
        for expected in &chunks {
            assert_eq!(&receive(&mut b_inbox).await, expected);
        }
        assert_eq!(a.dropped_messages(), 0);
        assert_eq!(b.dropped_messages(), 0);
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}

#[tokio::test]
async fn malformed_input_closes_only_that_connection() {
    timeout(TEST_TIMEOUT, async {
        let (a, _a_inbox, _) = start(A).await;
        let (b, mut b_inbox, b_addr) = start(B).await;
        set_peer(&a, B, b_addr);

        let mut garbage = TcpStream::connect(b_addr).await.expect("connect");
        garbage.write_all(b"GET / HTTP/1.1\r\nHost: tally\r\n\r\n").await.expect("write garbage");
        assert!(closed_by_transport(&mut garbage).await, "garbage connection stays open");

        let mut oversized = TcpStream::connect(b_addr).await.expect("connect");
        let mut header = frame::encode(b"x");
        header.truncate(frame::HEADER_BYTES);
        header[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        oversized.write_all(&header).await.expect("write header");
        assert!(closed_by_transport(&mut oversized).await, "oversized frame connection stays open");

        // A well-framed payload that is not a message is refused too.
        let mut bad_message = TcpStream::connect(b_addr).await.expect("connect");
        bad_message.write_all(&frame::encode(&[0xff; 8])).await.expect("write frame");
        assert!(closed_by_transport(&mut bad_message).await, "bad message connection stays open");

        a.send(heartbeat(A, B, 1));
        assert_eq!(receive(&mut b_inbox).await, heartbeat(A, B, 1));
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}

#[tokio::test]
async fn messages_to_a_peer_that_comes_up_late_are_delivered() {
    timeout(TEST_TIMEOUT, async {
        let (a, _a_inbox, _) = start(A).await;
        let reserved = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let b_addr = reserved.local_addr().expect("local addr");
        drop(reserved);

        // By host name, as in a real cluster: it is looked up at every attempt, and does not listen yet.
        a.set_peer(B, format!("localhost:{}", b_addr.port())).expect("a valid peer URL");
        for seq in 0..10 {
            a.send(heartbeat(A, B, seq));
        }
        // Let A fail to connect a few times and back off.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let listener = TcpListener::bind(b_addr).await.expect("rebind the reserved port");
        let (b, mut b_inbox) = PeerTransport::start(B, identity(B, None), listener, test_config(), None);
        for seq in 0..10 {
            assert_eq!(receive(&mut b_inbox).await, heartbeat(A, B, seq));
        }

        // B restarts on the same port: A reconnects and gets through again.
        b.shutdown().await;
        drop(b_inbox);
        let listener = TcpListener::bind(b_addr).await.expect("rebind after restart");
        let (b, mut b_inbox) = PeerTransport::start(B, identity(B, None), listener, test_config(), None);
        let delivered = async {
            for seq in 100.. {
                a.send(heartbeat(A, B, seq));
                if let Ok(Some(message)) = timeout(Duration::from_millis(100), b_inbox.recv()).await {
                    return message;
                }
            }
            unreachable!("the loop only ends by returning")
        };
        let message = timeout(RECEIVE_TIMEOUT, delivered).await.expect("delivered after restart");
        assert_eq!(message.from, A);
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}

#[tokio::test]
async fn a_large_snapshot_chunk_does_not_delay_heartbeats() {
    timeout(TEST_TIMEOUT, async {
        let (a, _a_inbox, _) = start(A).await;
        let (b, mut b_inbox, b_addr) = start(B).await;
        set_peer(&a, B, b_addr);
        let chunk = snapshot_chunk(A, B, 8 * 1024 * 1024);
        a.send(chunk.clone());
        a.send(heartbeat(A, B, 42));

        let mut received = vec![receive(&mut b_inbox).await, receive(&mut b_inbox).await];
        assert!(received.contains(&heartbeat(A, B, 42)), "heartbeat not delivered");
        received.retain(|message| message != &heartbeat(A, B, 42));
        assert_eq!(received, vec![chunk]);
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}

#[tokio::test]
async fn messages_to_unknown_peers_and_other_nodes_are_dropped() {
    timeout(TEST_TIMEOUT, async {
        let (a, _a_inbox, _) = start(A).await;
        let (b, mut b_inbox, b_addr) = start(B).await;
        a.send(heartbeat(A, B, 0));
        assert_eq!(a.dropped_messages(), 1);

        // B's address registered under another id: B drops what is not addressed to it.
        set_peer(&a, NodeId(9), b_addr);
        a.send(heartbeat(A, NodeId(9), 1));
        set_peer(&a, B, b_addr);
        a.send(heartbeat(A, B, 2));
        assert_eq!(receive(&mut b_inbox).await, heartbeat(A, B, 2));

        a.remove_peer(B);
        a.send(heartbeat(A, B, 3));
        assert_eq!(a.dropped_messages(), 2);
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}

#[tokio::test]
async fn a_stalled_snapshot_transfer_does_not_block_heartbeats() {
    timeout(TEST_TIMEOUT, async {
        let (a, _a_inbox, _) = start(A).await;
        // A fake B that starts reading the chunk's connection and then stops: the chunk stays in flight.
        let fake_b = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        set_peer(&a, B, fake_b.local_addr().expect("local addr"));
        a.send(snapshot_chunk(A, B, 8 * 1024 * 1024));
        let (mut bulk, _) = fake_b.accept().await.expect("bulk connection");
        let opening = PeerFrame::Hello(hello(A, None));
        assert_eq!(read_frame(&mut bulk).await, opening, "the bulk connection opens with a hello");
        let mut header = [0u8; frame::HEADER_BYTES];
        bulk.read_exact(&mut header).await.expect("chunk header");
        let length = u32::from_le_bytes(header[5..9].try_into().expect("4 bytes"));
        assert!(length > 8 * 1024 * 1024, "first connection carries the chunk, length {length}");

        a.send(heartbeat(A, B, 7));
        let (mut control, _) = fake_b.accept().await.expect("control connection");
        assert_eq!(read_frame(&mut control).await, opening, "the control connection opens with a hello");
        assert_eq!(read_frame(&mut control).await, PeerFrame::Raft(heartbeat(A, B, 7)));
        a.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}

#[tokio::test]
async fn peers_learn_each_others_urls_from_the_hello_before_the_first_message() {
    timeout(TEST_TIMEOUT, async {
        let (a, mut a_inbox, a_addr) = start(A).await;
        let (b, mut b_inbox, b_addr) = start(B).await;
        set_peer(&a, B, b_addr);
        set_peer(&b, A, a_addr);
        assert_eq!(b.client_url(A), None);

        // The hello precedes the message on its connection and is handled first, so no polling is needed.
        a.send(heartbeat(A, B, 1));
        assert_eq!(receive(&mut b_inbox).await, heartbeat(A, B, 1));
        assert_eq!(b.client_url(A), Some(client_url(A)));
        assert_eq!(b.client_urls(), BTreeMap::from([(A, client_url(A))]));
        assert_eq!(b.peer_url(A), Some(peer_url(A)));
        assert_eq!(b.peer_urls(), BTreeMap::from([(A, peer_url(A))]));
        assert_eq!(a.client_urls(), BTreeMap::new(), "B has not connected to A yet");
        assert_eq!(a.peer_urls(), BTreeMap::new(), "B has not connected to A yet");

        // The bulk lane's connection says hello too; the directory is unchanged by the repeat.
        b.send(snapshot_chunk(B, A, 16));
        assert_eq!(receive(&mut a_inbox).await, snapshot_chunk(B, A, 16));
        assert_eq!(a.client_url(B), Some(client_url(B)));
        assert_eq!(a.peer_url(B), Some(peer_url(B)));
        assert_eq!(a.client_url(A), None, "a node does not list itself");
        assert_eq!(a.peer_url(A), None, "a node does not list itself");
        assert_eq!(b.client_urls(), BTreeMap::from([(A, client_url(A))]));
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}

#[tokio::test]
async fn a_restarted_peer_with_new_urls_replaces_the_old_ones() {
    timeout(TEST_TIMEOUT, async {
        let (a, _a_inbox, _) = start(A).await;
        let (b, mut b_inbox, b_addr) = start(B).await;
        set_peer(&a, B, b_addr);
        a.send(heartbeat(A, B, 1));
        receive(&mut b_inbox).await;
        assert_eq!(b.client_url(A), Some(client_url(A)));

        a.shutdown().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let moved = PeerIdentity {
            client_url: "https://moved.tally.test:8443".to_owned(),
            peer_url: "tcp://moved.tally.test:8444".to_owned(),
            token: None,
        };
        let (a, _a_inbox) = PeerTransport::start(A, moved.clone(), listener, test_config(), None);
        set_peer(&a, B, b_addr);
        a.send(heartbeat(A, B, 2));
        assert_eq!(receive(&mut b_inbox).await, heartbeat(A, B, 2));
        assert_eq!(b.client_url(A), Some(moved.client_url));
        assert_eq!(b.peer_url(A), Some(moved.peer_url));
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}

#[tokio::test]
async fn set_peer_takes_host_names_and_refuses_bad_urls() {
    timeout(TEST_TIMEOUT, async {
        let (a, _a_inbox, _) = start(A).await;
        let (b, mut b_inbox, b_addr) = start(B).await;
        a.set_peer(B, format!("tcp://localhost:{}/", b_addr.port())).expect("a host name URL");
        a.send(heartbeat(A, B, 1));
        assert_eq!(receive(&mut b_inbox).await, heartbeat(A, B, 1));

        // A bad URL is refused with a message saying what is expected, and leaves the peer as it was.
        for bad in ["http://localhost", "http://localhost:99999", "http://localhost:1/path", ":7101", ""] {
            let error = a.set_peer(B, bad.to_owned()).expect_err(bad);
            assert!(error.to_string().contains("expected http://HOST:PORT"), "{bad:?}: {error}");
        }
        assert!(a.set_peer(NodeId(9), "nonsense".to_owned()).is_err());
        a.send(heartbeat(A, NodeId(9), 2));
        assert_eq!(a.dropped_messages(), 1, "a peer refused by set_peer stays unknown");
        a.send(heartbeat(A, B, 3));
        assert_eq!(receive(&mut b_inbox).await, heartbeat(A, B, 3));
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}

#[tokio::test]
async fn changing_a_peers_url_reconnects_even_from_a_name_that_does_not_resolve() {
    timeout(TEST_TIMEOUT, async {
        let (a, _a_inbox, _) = start(A).await;
        let (b, mut b_inbox, b_addr) = start(B).await;
        // `.invalid` never resolves (RFC 6761): A keeps the messages and retries, without delivering anything.
        a.set_peer(B, "http://node-2.tally.invalid:7101".to_owned()).expect("a valid peer URL");
        for seq in 0..3 {
            a.send(heartbeat(A, B, seq));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(matches!(b_inbox.try_recv(), Err(TryRecvError::Empty)));

        // The new URL is tried at once, even if a lookup of the old name is still hanging.
        set_peer(&a, B, b_addr);
        for seq in 0..3 {
            assert_eq!(receive(&mut b_inbox).await, heartbeat(A, B, seq));
        }
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}

#[tokio::test]
async fn transports_sharing_a_token_exchange_messages_and_send_it_in_their_hello() {
    timeout(TEST_TIMEOUT, async {
        let (a, mut a_inbox, a_addr) = start_with_token(A, Some(TOKEN)).await;
        let (b, mut b_inbox, b_addr) = start_with_token(B, Some(TOKEN)).await;
        set_peer(&a, B, b_addr);
        set_peer(&b, A, a_addr);
        exchange(&a, A, B, &mut b_inbox).await;
        exchange(&b, B, A, &mut a_inbox).await;
        assert_eq!(b.peer_url(A), Some(peer_url(A)));
        assert_eq!(a.client_url(B), Some(client_url(B)));
        assert_eq!((a.rejected_connections(), b.rejected_connections()), (0, 0));

        // What A sends a peer: its hello carries the token.
        let fake = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        set_peer(&a, NodeId(3), fake.local_addr().expect("local addr"));
        a.send(heartbeat(A, NodeId(3), 1));
        let (mut raw, _) = fake.accept().await.expect("connection from A");
        assert_eq!(read_frame(&mut raw).await, PeerFrame::Hello(hello(A, Some(TOKEN))));
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}

#[tokio::test]
async fn a_protected_transport_refuses_peers_with_a_wrong_or_no_token_and_stays_healthy() {
    timeout(TEST_TIMEOUT, async {
        let (b, mut b_inbox, b_addr) = start_with_token(B, Some(TOKEN)).await;

        // A peer with another token: every connection it makes is refused, nothing it sent is delivered.
        let (wrong, _wrong_inbox, _) = start_with_token(A, Some("a guess")).await;
        set_peer(&wrong, B, b_addr);
        wrong.send(heartbeat(A, B, 1));
        wait_for_rejections(&b, 1).await;
        wrong.shutdown().await;

        // A peer without a token: refused too.
        let none_id = NodeId(3);
        let (none, _none_inbox, _) = start(none_id).await;
        let before = b.rejected_connections();
        set_peer(&none, B, b_addr);
        none.send(heartbeat(none_id, B, 2));
        wait_for_rejections(&b, before + 1).await;
        none.shutdown().await;
        assert!(matches!(b_inbox.try_recv(), Err(TryRecvError::Empty)), "a refused peer's message was delivered");
        assert_eq!(b.client_urls(), BTreeMap::new(), "a refused peer's hello was recorded");

        // A peer with the token still gets through, and is the only one heard.
        let good_id = NodeId(4);
        let (good, _good_inbox, _) = start_with_token(good_id, Some(TOKEN)).await;
        set_peer(&good, B, b_addr);
        good.send(heartbeat(good_id, B, 3));
        assert_eq!(receive(&mut b_inbox).await, heartbeat(good_id, B, 3));
        assert!(matches!(b_inbox.try_recv(), Err(TryRecvError::Empty)));
        assert_eq!(b.client_urls(), BTreeMap::from([(good_id, client_url(good_id))]));
        assert_eq!(b.peer_urls(), BTreeMap::from([(good_id, peer_url(good_id))]));
        good.shutdown().await;
        b.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}

#[tokio::test]
async fn a_protected_port_refuses_raw_clients_that_do_not_open_with_the_token() {
    timeout(TEST_TIMEOUT, async {
        let (b, mut b_inbox, b_addr) = start_with_token(B, Some(TOKEN)).await;
        let framed_hello = |token: Option<&str>| frame::encode(&wire::encode_hello(&hello(A, token)));
        let framed_heartbeat = |seq| frame::encode(&wire::encode(&heartbeat(A, B, seq)));

        // A Raft message without a hello.
        let mut silent = TcpStream::connect(b_addr).await.expect("connect");
        silent.write_all(&framed_heartbeat(1)).await.expect("write message");
        assert!(closed_by_transport(&mut silent).await, "a message without a hello was served");
        wait_for_rejections(&b, 1).await;

        // A hello with another token, and a message in the same write.
        let mut guessing = TcpStream::connect(b_addr).await.expect("connect");
        let mut bytes = framed_hello(Some("a guess"));
        bytes.extend(framed_heartbeat(2));
        guessing.write_all(&bytes).await.expect("write hello and message");
        assert!(closed_by_transport(&mut guessing).await, "a wrong token was served");
        wait_for_rejections(&b, 2).await;

        // A frame far larger than any hello is refused from its header, before it is buffered.
        let mut oversized = TcpStream::connect(b_addr).await.expect("connect");
        let mut header = frame::encode(b"x");
        header.truncate(frame::HEADER_BYTES);
        header[5..9].copy_from_slice(&(1u32 << 20).to_le_bytes());
        oversized.write_all(&header).await.expect("write header");
        assert!(closed_by_transport(&mut oversized).await, "a large first frame was accepted");
        wait_for_rejections(&b, 3).await;

        // A connection that says nothing is closed after the hello timeout.
        let mut idle = TcpStream::connect(b_addr).await.expect("connect");
        assert!(closed_by_transport(&mut idle).await, "an idle connection stays open");
        wait_for_rejections(&b, 4).await;
        assert!(matches!(b_inbox.try_recv(), Err(TryRecvError::Empty)), "a refused message was delivered");

        // The right token opens the connection for messages, large ones too.
        let mut admitted = TcpStream::connect(b_addr).await.expect("connect");
        let mut bytes = framed_hello(Some(TOKEN));
        bytes.extend(framed_heartbeat(3));
        bytes.extend(frame::encode(&wire::encode(&snapshot_chunk(A, B, 64 * 1024))));
        admitted.write_all(&bytes).await.expect("write hello and messages");
        assert_eq!(receive(&mut b_inbox).await, heartbeat(A, B, 3));
        assert_eq!(receive(&mut b_inbox).await, snapshot_chunk(A, B, 64 * 1024));
        assert_eq!(b.rejected_connections(), 4);
        b.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}
