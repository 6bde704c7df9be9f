//! Peer identity on plain TCP: every inbound connection must open with a hello, token or not, and is bound to
//! the hello's node id; a frame from another id closes it and is counted. Every test is bounded in time.

mod peer_common;

use std::collections::BTreeMap;

use peer_common::*;
use tally_raft::{LogIndex, MessageBody, NodeId, Term};
use tally_server::frame;
use tally_server::peer::PeerTransport;
use tally_server::wire::{self, Hello};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::time::timeout;

/// `frames` framed back to back, as one write.
fn framed(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.iter().flat_map(|payload| frame::encode(payload)).collect()
}

/// Waits until `transport` has counted at least `count` identity mismatches.
async fn wait_for_mismatches(transport: &PeerTransport, count: u64) {
    let counted = async {
        while transport.identity_mismatches() < count {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    timeout(RECEIVE_TIMEOUT, counted).await.expect("mismatches counted in time");
}

#[tokio::test]
async fn without_a_token_a_connection_without_a_hello_is_refused() {
    timeout(TEST_TIMEOUT, async {
        let (b, mut b_inbox, b_addr) = start(B).await;

        // The frame of issue 13, without a hello: refused before it reaches the node loop (it would also be
        // refused for its term).
        let mut silent = TcpStream::connect(b_addr).await.expect("connect");
        silent.write_all(&framed(&[wire::encode(&heartbeat(A, B, 1))])).await.expect("write message");
        assert!(closed_by_transport(&mut silent).await, "a message without a hello was served");
        wait_for_rejections(&b, 1).await;

        // A connection that says nothing is closed at the admission deadline, token or not.
        let mut idle = TcpStream::connect(b_addr).await.expect("connect");
        assert!(closed_by_transport(&mut idle).await, "an idle connection stays open");
        wait_for_rejections(&b, 2).await;

        // A hello claiming B's own id, or id 0, is refused.
        for claimed in [B, NodeId(0)] {
            let mut impostor = TcpStream::connect(b_addr).await.expect("connect");
            let own = Hello { client_url: "http://impostor.tally.test:1".to_owned(), ..hello(claimed, None) };
            impostor.write_all(&framed(&[wire::encode_hello(&own)])).await.expect("write hello");
            assert!(closed_by_transport(&mut impostor).await, "a hello claiming {claimed} was served");
        }
        wait_for_rejections(&b, 4).await;
        assert!(matches!(b_inbox.try_recv(), Err(TryRecvError::Empty)), "a refused message was delivered");
        assert_eq!(b.client_urls(), BTreeMap::new(), "a refused hello was recorded");
        assert_eq!(b.identity_mismatches(), 0);

        // A hello first: served, and its URLs recorded.
        let mut member = TcpStream::connect(b_addr).await.expect("connect");
        let bytes = framed(&[wire::encode_hello(&hello(A, None)), wire::encode(&heartbeat(A, B, 2))]);
        member.write_all(&bytes).await.expect("write hello and message");
        assert_eq!(receive(&mut b_inbox).await, heartbeat(A, B, 2));
        assert_eq!(b.client_urls(), BTreeMap::from([(A, client_url(A))]));
        b.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}

#[tokio::test]
async fn a_message_from_another_id_than_the_hellos_closes_the_connection_and_is_counted() {
    timeout(TEST_TIMEOUT, async {
        for token in [None, Some(TOKEN)] {
            let (b, mut b_inbox, b_addr) = start_with_token(B, token).await;
            let third = NodeId(3);

            // A hello as A, then a message as A (served), then one as n3: the connection closes at the forgery,
            // and what follows it is not served either.
            let mut raw = TcpStream::connect(b_addr).await.expect("connect");
            let forged_ack = tally_raft::Message {
                from: third,
                to: B,
                term: Term(3),
                body: MessageBody::AppendResponse { result: Ok(LogIndex(7)) },
            };
            let bytes = framed(&[
                wire::encode_hello(&hello(A, token)),
                wire::encode(&heartbeat(A, B, 1)),
                wire::encode(&forged_ack),
                wire::encode(&heartbeat(A, B, 2)),
            ]);
            raw.write_all(&bytes).await.expect("write frames");
            assert_eq!(receive(&mut b_inbox).await, heartbeat(A, B, 1));
            assert!(closed_by_transport(&mut raw).await, "the connection outlived a forged from");
            wait_for_mismatches(&b, 1).await;
            assert!(matches!(b_inbox.try_recv(), Err(TryRecvError::Empty)), "a frame after the forgery was served");

            // A later hello with another id is a mismatch too, and its URLs are not recorded.
            let mut raw = TcpStream::connect(b_addr).await.expect("connect");
            let bytes = framed(&[wire::encode_hello(&hello(A, token)), wire::encode_hello(&hello(third, token))]);
            raw.write_all(&bytes).await.expect("write hellos");
            assert!(closed_by_transport(&mut raw).await, "the connection outlived a second identity");
            wait_for_mismatches(&b, 2).await;
            assert_eq!(b.client_url(third), None, "{token:?}");
            assert_eq!(b.client_url(A), Some(client_url(A)), "{token:?}");
            assert_eq!(b.rejected_connections(), 0, "mismatches are not counted as refusals ({token:?})");
            b.shutdown().await;
        }
    })
    .await
    .expect("test within its time bound");
}

#[tokio::test]
async fn a_malformed_hello_closes_the_connection() {
    timeout(TEST_TIMEOUT, async {
        let (b, _b_inbox, b_addr) = start(B).await;
        let mut raw = TcpStream::connect(b_addr).await.expect("connect");
        raw.write_all(&framed(&[wire::encode_hello(&hello(A, None))])).await.expect("write hello");
        // A later hello whose token is not UTF-8 is malformed: that connection is closed.
        let mut bad = wire::encode_hello(&Hello { token: Some("x".to_owned()), ..hello(A, None) });
        let last = bad.len() - 1;
        bad[last] = 0xff;
        raw.write_all(&frame::encode(&bad)).await.expect("write bad hello");
        assert!(closed_by_transport(&mut raw).await, "connection with a bad hello stays open");
        b.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}

#[tokio::test]
async fn two_transports_bind_each_others_connections_and_count_nothing() {
    timeout(TEST_TIMEOUT, async {
        let (a, mut a_inbox, a_addr) = start(A).await;
        let (b, mut b_inbox, b_addr) = start(B).await;
        set_peer(&a, B, b_addr);
        set_peer(&b, A, a_addr);
        exchange(&a, A, B, &mut b_inbox).await;
        exchange(&b, B, A, &mut a_inbox).await;
        for transport in [&a, &b] {
            assert_eq!(transport.rejected_connections(), 0);
            assert_eq!(transport.identity_mismatches(), 0);
            assert_eq!(transport.evicted_connections(), 0);
            assert_eq!(transport.inbound_connections(), (0, 1), "one admitted control lane");
        }
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}
