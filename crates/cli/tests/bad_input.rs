//! Malformed input on either port is refused with a clear answer (client port) or a closed connection (peer
//! port), and hurts nothing: afterwards the cluster still has a leader and serves.

mod common;

use std::time::{Duration, Instant};

use common::{Answer, Cluster, NODES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the node may take to close a connection it must close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The default limits (docs/http-api.md).
const MAX_KEY_BYTES: usize = 4 * 1024;
const MAX_VALUE_BYTES: usize = 1024 * 1024;
const MAX_BODY_BYTES: usize = 1536 * 1024;

/// Sends `request` and returns the answer.
async fn answer(cluster: &Cluster, request: reqwest::RequestBuilder) -> Answer {
    cluster.send(request).await.unwrap_or_else(|e| panic!("no answer: {e}"))
}

/// Writes `bytes` to a fresh connection to `addr`, then reads until the other side closes; returns what it
/// read.
///
/// # Panics
/// If the node does not close the connection within `CLOSE_TIMEOUT`.
async fn send_and_expect_close(addr: std::net::SocketAddr, bytes: &[u8], what: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect to {addr} for {what}: {e}"));
    // The node may close before taking every byte; a failed write is fine, the read below decides.
    let _ = stream.write_all(bytes).await;
    let mut received = Vec::new();
    let read = tokio::time::timeout(CLOSE_TIMEOUT, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "{addr} kept the connection open {CLOSE_TIMEOUT:?} after {what}");
    received
}

/// A peer frame header (crates/server/src/frame.rs): magic, version, payload length, CRC32 of the payload.
fn frame_header(version: u8, length: u32, crc: u32) -> Vec<u8> {
    let mut header = b"TLYP".to_vec();
    header.push(version);
    header.extend_from_slice(&length.to_le_bytes());
    header.extend_from_slice(&crc.to_le_bytes());
    header
}

/// Oversized keys, values and bodies answer 413 naming the limit; sizes at the limit are accepted.
async fn check_limits(cluster: &Cluster, leader: usize, follower: usize) {
    let key = "k".repeat(MAX_KEY_BYTES);
    cluster.put(follower, &key, "at the key limit").await.expect("a key at the limit is accepted");
    let long_key = "k".repeat(MAX_KEY_BYTES + 1);
    let message = answer(cluster, cluster.http.put(cluster.url(follower, &format!("/v1/kv/{long_key}"))).body("v"))
        .await
        .assert_error(413, "too_large");
    assert!(message.contains(&MAX_KEY_BYTES.to_string()), "the message names the key limit: {message}");

    let value = vec![b'v'; MAX_VALUE_BYTES];
    let at_limit = answer(cluster, cluster.http.put(cluster.url(leader, "/v1/kv/big")).body(value)).await;
    assert_eq!(at_limit.status, 200, "a value at the limit is accepted: {}", at_limit.text());
    let value = vec![b'v'; MAX_VALUE_BYTES + 1];
    let message = answer(cluster, cluster.http.put(cluster.url(follower, "/v1/kv/too-big")).body(value))
        .await
        .assert_error(413, "too_large");
    assert!(message.contains(&MAX_VALUE_BYTES.to_string()), "the message names the value limit: {message}");

    let body = vec![b'b'; MAX_BODY_BYTES + 1];
    let message = answer(cluster, cluster.http.put(cluster.url(leader, "/v1/kv/too-big")).body(body))
        .await
        .assert_error(413, "too_large");
    assert!(message.contains(&MAX_BODY_BYTES.to_string()), "the message names the body limit: {message}");
    cluster.read(leader, "too-big", false).await.assert_error(404, "not_found");
}

/// Malformed paths and queries answer 400; unknown routes 404; wrong methods 405; all as JSON errors.
async fn check_malformed_requests(cluster: &Cluster, i: usize) {
    let http = &cluster.http;
    let url = |path: &str| cluster.url(i, path);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        ("GET empty key", http.get(url("/v1/kv/")), 400, "bad_request"),
        ("PUT empty key", http.put(url("/v1/kv/")).body("v"), 400, "bad_request"),
        ("DELETE empty key", http.delete(url("/v1/kv/")), 400, "bad_request"),
        ("GET bad percent-encoding", http.get(url("/v1/kv/%zz")), 400, "bad_request"),
        ("PUT bad percent-encoding", http.put(url("/v1/kv/a%4")).body("v"), 400, "bad_request"),
        ("PUT cas=abc", http.put(url("/v1/kv/k?cas=abc")).body("v"), 400, "bad_request"),
        ("DELETE cas=-1", http.delete(url("/v1/kv/k?cas=-1")), 400, "bad_request"),
        ("GET consistency=maybe", http.get(url("/v1/kv/k?consistency=maybe")), 400, "bad_request"),
        ("GET unknown parameter", http.get(url("/v1/kv/k?colour=blue")), 400, "bad_request"),
        ("PUT unknown parameter", http.put(url("/v1/kv/k?ttl=5")).body("v"), 400, "bad_request"),
        ("list unknown parameter", http.get(url("/v1/kv?colour=blue")), 400, "bad_request"),
        ("list limit=0", http.get(url("/v1/kv?limit=0")), 400, "bad_request"),
        ("cluster with a parameter", http.get(url("/v1/cluster?verbose=1")), 400, "bad_request"),
        ("unknown route", http.get(url("/v2/kv/k")), 404, "not_found"),
        ("unknown route at the root", http.get(url("/")), 404, "not_found"),
        ("POST on a key", http.post(url("/v1/kv/k")).body("v"), 405, "method_not_allowed"),
        ("DELETE on the cluster view", http.delete(url("/v1/cluster")), 405, "method_not_allowed"),
        ("GET on transfer-leader", http.get(url("/v1/cluster/transfer-leader?to=n1")), 405, "method_not_allowed"),
    ];
    for (what, request, status, code) in cases {
        let answer = answer(cluster, request).await;
        assert_eq!(answer.status, status, "{what}: {}", answer.text());
        let message = answer.assert_error(status, code);
        assert!(message.len() > 10, "{what}: a message a person can act on, got {message:?}");
        assert!(answer.json()["error"]["leader"].is_string(), "{what}: the leader hint is missing: {}", answer.text());
    }
    // Nothing above wrote anything.
    cluster.read(i, "k", false).await.assert_error(404, "not_found");
}

/// A request whose body is cut short, and bytes that are not HTTP, on the client port.
async fn check_raw_client_port(cluster: &Cluster, i: usize) {
    let addr = cluster.nodes[i].client;
    let mut truncated = b"PUT /v1/kv/truncated HTTP/1.1\r\nHost: tally\r\nContent-Length: 100\r\n\r\n".to_vec();
    truncated.extend_from_slice(&[b'x'; 10]);
    let mut stream = TcpStream::connect(addr).await.expect("connect to the client port");
    stream.write_all(&truncated).await.expect("send a truncated request");
    drop(stream);
    let garbage: Vec<u8> = (0..4096u32).map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    send_and_expect_close(
        addr,
        &[b"\x00\xff\x13 not http\r\n\r\n", &garbage[..]].concat(),
        "garbage on the client port",
    )
    .await;
    // The truncated write must not have been applied.
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.read(i, "truncated", false).await.assert_error(404, "not_found");
}

/// Garbage, an oversized frame, an unknown version and a bad checksum on the peer port each close their
/// connection.
async fn check_raw_peer_port(cluster: &Cluster, i: usize) {
    let addr = cluster.nodes[i].peer;
    let hello = b"hello".to_vec();
    // Any value but crc32("hello") (0x3610a686) is a mismatch.
    let bad_crc = [frame_header(1, hello.len() as u32, 0xdead_beef), hello.clone()].concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"GET / HTTP/1.1\r\nHost: tally\r\n\r\n".to_vec()),
        ("an oversized frame", frame_header(1, u32::MAX, 0)),
        ("a frame of another protocol version", [frame_header(9, 5, 0x3610_a686), hello].concat()),
        ("a frame with a bad checksum", bad_crc),
    ];
    for (what, bytes) in cases {
        send_and_expect_close(addr, &bytes, &format!("{what} on the peer port of {}", cluster.nodes[i].id)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_either_port_is_refused_and_hurts_nothing() {
    let start = Instant::now();
    let cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % NODES;

    // Client port: limits, malformed requests, raw bytes; on the leader and on a follower.
    check_limits(&cluster, leader, follower).await;
    for i in [leader, follower] {
        check_malformed_requests(&cluster, i).await;
        check_raw_client_port(&cluster, i).await;
    }

    // Peer port: every malformed stream closes its connection, on every node.
    for i in 0..NODES {
        check_raw_peer_port(&cluster, i).await;
    }

    // Nothing was hurt: every node is live, a leader is agreed, and the cluster writes and reads.
    for i in 0..NODES {
        let livez = cluster.get(i, "/livez").await.expect("livez answers");
        assert_eq!(livez.status, 200, "{} /livez: {}", cluster.nodes[i].id, livez.text());
    }
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 2) % NODES;
    let index = cluster.put(follower, "after-bad-input", "fine").await.expect("a write after bad input");
    for i in 0..NODES {
        let answer = cluster.read(i, "after-bad-input", false).await;
        assert_eq!((answer.status, answer.text()), (200, "fine".to_string()), "{}", cluster.nodes[i].id);
        assert_eq!(answer.header("x-tally-modify-index"), Some(index.to_string()));
    }
    eprintln!("bad_input: {}", common::elapsed(start));
}
