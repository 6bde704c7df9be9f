//! The client port's limits against slow and idle clients, on one in-process node (port 0) with short
//! timeouts: a trickled header is cut off, an unfinished body gets `408`, an idle connection is closed, and
//! past the connection cap new connections are closed while the open ones are still served.
//!
//! Timeouts here are 1 s; every wait is bounded well above that, and no test asserts how long anything took.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tally_raft::NodeId;
use tally_server::{ConnectionLimits, InitialMember, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The most any wait below may take: far above the 1 s timeouts, so only a broken limit hits it.
const BOUND: Duration = Duration::from_secs(20);

/// A one-node cluster with `limits` on its client port.
async fn start(dir: &std::path::Path, limits: ConnectionLimits) -> Server {
    let client = TcpListener::bind("127.0.0.1:0").await.expect("bind client");
    let peer = TcpListener::bind("127.0.0.1:0").await.expect("bind peer");
    let mut config = ServerConfig::new(NodeId(1), dir.join("n1"));
    let peer_url = format!("http://{}", peer.local_addr().expect("addr"));
    config.initial_cluster = vec![InitialMember { id: NodeId(1), peer_url }];
    config.tick_interval = Duration::from_millis(20);
    config.connection_limits = limits;
    Server::start_on(config, client, peer).await.expect("server starts")
}

/// Short timeouts: `header`, `body` and `idle` seconds.
fn limits(header: u64, body: u64, idle: u64) -> ConnectionLimits {
    ConnectionLimits {
        header_timeout: Duration::from_secs(header),
        body_timeout: Duration::from_secs(body),
        idle_timeout: Duration::from_secs(idle),
        ..ConnectionLimits::default()
    }
}

/// Reads until the server closes the connection (or `BOUND` passes): what it sent, and whether it closed.
async fn read_until_closed(stream: &mut TcpStream) -> (String, bool) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + BOUND;
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&received).into_owned(), true),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => {}
        }
    }
    (String::from_utf8_lossy(&received).into_owned(), false)
}

/// `GET /metrics` on a fresh connection.
async fn metrics(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.expect("write");
    let (text, _) = read_until_closed(&mut stream).await;
    text
}

/// The value of one sample line of `/metrics`.
fn sample(metrics: &str, line_start: &str) -> u64 {
    let line = metrics.lines().find(|l| l.starts_with(line_start)).unwrap_or_else(|| panic!("no {line_start}"));
    line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("bad line {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_header_is_cut_off_at_the_header_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), limits(1, 30, 30)).await;
    let addr = server.client_addr();

    // A client sends a header byte every 100 ms, for longer than BOUND if it were allowed to: the bytes keep
    // coming, but the deadline of the head is fixed.
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(b"GET /livez HTTP/1.1\r\nx-slow: ").await.expect("write");
    let started = Instant::now();
    let mut cut_off = false;
    while started.elapsed() < BOUND {
        if stream.write_all(b"a").await.is_err() {
            cut_off = true;
            break;
        }
        let mut byte = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut byte)).await {
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "a trickled header kept its connection open for {BOUND:?}");

    // Counted, and the port still serves everyone else.
    let text = metrics(addr).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(sample(&text, "tally_http_connections_timed_out_total{phase=\"header\"}"), 1, "{text}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_never_finished_gets_408_and_the_connection_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), limits(30, 1, 30)).await;
    let addr = server.client_addr();

    // The head promises 100 bytes; 10 come, then nothing.
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = "PUT /v1/kv/slow HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789";
    stream.write_all(head.as_bytes()).await.expect("write");
    let (answer, closed) = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"body_timeout\"") && answer.contains("body timeout"), "{answer}");
    assert!(closed, "the connection stays open after the 408");

    // Nothing was written, and the timeout is counted.
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /v1/kv/slow?consistency=stale HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("w");
    let (answer, _) = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 404"), "the unfinished write was applied: {answer}");
    let text = metrics(addr).await;
    assert_eq!(sample(&text, "tally_http_connections_timed_out_total{phase=\"body\"}"), 1, "{text}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), limits(30, 30, 1)).await;
    let addr = server.client_addr();

    // One request on a kept-alive connection, answered; then the client says nothing.
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    let (answer, closed) = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "an idle connection stayed open for {BOUND:?}");
    let text = metrics(addr).await;
    assert!(sample(&text, "tally_http_connections_timed_out_total{phase=\"idle\"}") >= 1, "{text}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_new_connections_are_closed_and_open_ones_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), ConnectionLimits { max_connections: Some(3), ..limits(30, 30, 30) }).await;
    let addr = server.client_addr();

    // Three connections, each with half a request, fill the cap.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(b"GET /livez HTTP/1.1\r\n").await.expect("write");
        held.push(stream);
    }

    // A fourth is closed at once, without an answer (retried until the three are surely counted open).
    let deadline = Instant::now() + BOUND;
    loop {
        let mut extra = TcpStream::connect(addr).await.expect("connect");
        let _ = extra.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let (answer, closed) = read_until_closed(&mut extra).await;
        if answer.is_empty() && closed {
            break;
        }
        assert!(Instant::now() < deadline, "a connection past the cap was served: {answer}");
    }

    // The held connections are still served.
    for stream in &mut held {
        stream.write_all(b"host: x\r\nconnection: close\r\n\r\n").await.expect("write");
        let (answer, _) = read_until_closed(stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    drop(held);
    let deadline = Instant::now() + BOUND;
    let text = loop {
        let text = metrics(addr).await;
        if text.starts_with("HTTP/1.1 200") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(sample(&text, "tally_http_connections_refused_total{reason=\"cap\"}") >= 1, "{text}");
    server.shutdown().await;
}
