use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::certs::{InitPlan, init};
use crate::tls::{CertifiedKeyFiles, ClientTlsFiles, ServerTlsFiles, client_config, server_config};

/// A router that answers who the connection's client certificate names.
fn whoami() -> axum::Router {
    axum::Router::new().route(
        "/whoami",
        get(|Extension(info): Extension<ConnectionInfo>| async move {
            info.client_common_name.unwrap_or_else(|| "nobody".to_string())
        }),
    )
}

/// Serves `router` on a loopback port with `options`; the sender stops it.
async fn start(router: axum::Router, options: Options) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, router, options, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// One `GET path` over `stream` with `Connection: close`; the whole answer as text.
async fn get_over<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut stream: S, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// A TLS connection to `addr` as `localhost` with `files`.
async fn tls_connect(
    addr: SocketAddr,
    files: &ClientTlsFiles,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(files).expect("client config")));
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    connector.connect(name, tcp).await
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_and_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d: &Path = dir.path();
    let plan = InitPlan { nodes: vec!["n1".into()], users: vec!["alice".into()], ..InitPlan::default() };
    init(d, &plan).expect("certs");
    let identity = CertifiedKeyFiles { certificate: d.join("n1.pem"), key: d.join("n1-key.pem") };
    let tls = server_config(&ServerTlsFiles { identity, client_ca: Some(d.join("ca.pem")) }).expect("server");
    let metrics = Arc::new(ServeMetrics::default());
    let options = Options { tls: Some(tls), limits: Limits::default(), metrics: Arc::clone(&metrics) };
    let (addr, _stop) = start(whoami(), options).await;

    // With alice's certificate: served, and the handler sees her name.
    let alice = CertifiedKeyFiles { certificate: d.join("alice.pem"), key: d.join("alice-key.pem") };
    let files = ClientTlsFiles { ca: Some(d.join("ca.pem")), identity: Some(alice) };
    let answer = get_over(tls_connect(addr, &files).await.expect("handshake"), "/whoami").await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("alice"), "{answer}");

    // Without a certificate: the handshake (or the first read, in TLS 1.3) fails; nothing is served.
    let files = ClientTlsFiles { ca: Some(d.join("ca.pem")), identity: None };
    if let Ok(stream) = tls_connect(addr, &files).await {
        let answer = get_over(stream, "/whoami").await;
        assert!(answer.is_empty(), "served without a client certificate: {answer}");
    }

    // Plain HTTP to a TLS port: refused.
    let answer = get_over(TcpStream::connect(addr).await.expect("connect"), "/whoami").await;
    assert!(!answer.contains("200"), "{answer}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(metrics.tls_failures() >= 2, "failures counted: {}", metrics.tls_failures());
}

#[tokio::test]
async fn past_the_cap_new_connections_are_closed_at_once() {
    let limits = Limits { max_connections: Some(2), ..Limits::default() };
    let metrics = Arc::new(ServeMetrics::default());
    let options = Options { tls: None, limits, metrics: Arc::clone(&metrics) };
    let (addr, _stop) = start(whoami(), options).await;

    // Two connections fill the cap (each sends a partial request, so it stays open).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(b"GET /whoami HTTP/1.1\r\n").await.expect("write");
        held.push(stream);
    }
    while metrics.open() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A third is closed without an answer.
    let answer = get_over(TcpStream::connect(addr).await.expect("connect"), "/whoami").await;
    assert!(answer.is_empty(), "{answer}");
    assert_eq!(metrics.refused(), (1, 0));

    // A held connection still gets its answer; once it closes, there is room again.
    let mut first = held.remove(0);
    first.write_all(b"host: x\r\nconnection: close\r\n\r\n").await.expect("write");
    let mut answer = String::new();
    first.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(first);
    while metrics.open() > 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answer = get_over(TcpStream::connect(addr).await.expect("connect"), "/whoami").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn the_per_ip_cap_counts_one_address() {
    let limits = Limits { max_connections_per_ip: Some(1), ..Limits::default() };
    let metrics = Arc::new(ServeMetrics::default());
    let (addr, _stop) = start(whoami(), Options { tls: None, limits, metrics: Arc::clone(&metrics) }).await;
    let mut held = TcpStream::connect(addr).await.expect("connect");
    held.write_all(b"GET /whoami HTTP/1.1\r\n").await.expect("write");
    while metrics.open() < 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answer = get_over(TcpStream::connect(addr).await.expect("connect"), "/whoami").await;
    assert!(answer.is_empty(), "{answer}");
    assert_eq!(metrics.refused(), (0, 1));
}

#[test]
fn the_derived_cap_keeps_descriptors_in_reserve() {
    let soft = crate::fd::soft_limit().expect("a finite limit in tests");
    let limits = Limits { max_connections: Some(usize::MAX), ..Limits::default() };
    let cap = limits.effective_max_connections() as u64;
    assert!(cap <= soft.saturating_sub(FD_RESERVE).max(16), "cap {cap} with soft limit {soft}");
    assert_eq!(Limits { max_connections: Some(3), ..Limits::default() }.effective_max_connections(), 3);
    assert!(Limits { idle_timeout: Duration::ZERO, ..Limits::default() }.validate().is_err());
}

#[tokio::test]
async fn a_client_that_never_reads_its_answer_is_cut_off() {
    // An answer far larger than the socket buffers, so that writing it stalls on a client that does not read.
    let big = axum::Router::new().route("/big", get(|| async { vec![b'x'; 64 * 1024 * 1024] }));
    let limits = Limits {
        body_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let metrics = Arc::new(ServeMetrics::default());
    let options = Options { tls: None, limits, metrics: Arc::clone(&metrics) };
    let (addr, _stop) = start(big, options).await;

    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    while metrics.open() < 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Never read: the server must give up on the connection within a bounded time (here 500 ms of silence).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while metrics.open() > 0 {
        assert!(std::time::Instant::now() < deadline, "a stalled reader still holds its connection");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metrics.timed_out()[3], 1, "counted as an idle timeout: {:?}", metrics.timed_out());
    drop(stream);
}

#[tokio::test]
async fn a_tls_client_that_never_reads_its_answer_is_cut_off() {
    // Over TLS a blocked write may show as a pending flush of the TLS layer's buffer: still a stall.
    let dir = tempfile::tempdir().expect("tempdir");
    let d: &Path = dir.path();
    init(d, &InitPlan { nodes: vec!["n1".into()], ..InitPlan::default() }).expect("certs");
    let identity = CertifiedKeyFiles { certificate: d.join("n1.pem"), key: d.join("n1-key.pem") };
    let tls = server_config(&ServerTlsFiles { identity, client_ca: None }).expect("server");
    let big = axum::Router::new().route("/big", get(|| async { vec![b'x'; 64 * 1024 * 1024] }));
    let metrics = Arc::new(ServeMetrics::default());
    let (addr, _stop) =
        start(big, Options { tls: Some(tls), limits: short_limits(), metrics: Arc::clone(&metrics) }).await;

    let files = ClientTlsFiles { ca: Some(d.join("ca.pem")), identity: None };
    let mut stream = tls_connect(addr, &files).await.expect("handshake");
    stream.write_all(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    stream.flush().await.expect("flush");
    // Never read: the server gives up on the connection within a bounded time.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while metrics.open() > 0 {
        assert!(std::time::Instant::now() < deadline, "a stalled TLS reader still holds its connection");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metrics.timed_out()[3], 1, "counted as an idle timeout: {:?}", metrics.timed_out());
    drop(stream);
}

/// A streaming answer's body: the chunks sent on its channel, ending when the sender is dropped.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|chunk| Ok(http_body::Frame::data(chunk))))
    }
}

/// A route at `path` whose answer streams what `feed` sends (the body ends when `feed` returns).
fn streaming<F, Fut>(path: &str, feed: F) -> axum::Router
where
    F: Fn(tokio::sync::mpsc::Sender<Bytes>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handler = move || {
        let feed = feed.clone();
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tokio::spawn(feed(tx));
            axum::body::Body::new(ChannelBody(rx))
        }
    };
    axum::Router::new().route(path, get(handler))
}

/// Timeouts far shorter than the waits below: before a request in flight could stay silent, each of these
/// waits cut its connection.
fn short_limits() -> Limits {
    Limits { body_timeout: Duration::from_millis(300), idle_timeout: Duration::from_millis(200), ..Limits::default() }
}

/// A wait longer than [`short_limits`]' timeouts together.
const QUIET: Duration = Duration::from_millis(1500);

/// Reads from `stream` until what arrived contains `marker` (or 10 s pass); what arrived as text.
async fn read_until(stream: &mut TcpStream, marker: &str) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&received).contains(marker) && std::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn long_handler_without_response_is_not_cut() {
    // A handler that waits (as a blocking read does) far longer than the body and idle timeouts, with no
    // byte moving meanwhile: it is not a stalled client, and its answer arrives.
    let slow = axum::Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(QUIET).await;
            "done"
        }),
    );
    let metrics = Arc::new(ServeMetrics::default());
    let (addr, _stop) = start(slow, Options { tls: None, limits: short_limits(), metrics: Arc::clone(&metrics) }).await;
    let answer = get_over(TcpStream::connect(addr).await.expect("connect"), "/slow").await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("done"), "{answer}");
    assert_eq!(metrics.timed_out(), [0; 4], "no timeout counted");
}

#[tokio::test]
async fn quiet_streaming_body_is_not_cut() {
    // A stream (as a watch is) that sends a chunk, goes quiet longer than every timeout, then sends more.
    let router = streaming("/stream", |tx| async move {
        let _ = tx.send(Bytes::from_static(b"first\n")).await;
        tokio::time::sleep(QUIET).await;
        let _ = tx.send(Bytes::from_static(b"second\n")).await;
    });
    let metrics = Arc::new(ServeMetrics::default());
    let options = Options { tls: None, limits: short_limits(), metrics: Arc::clone(&metrics) };
    let (addr, _stop) = start(router, options).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(b"GET /stream HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.expect("write");

    // The first chunk arrives, then the quiet spell, then the rest and the end of the chunked body.
    let head = read_until(&mut stream, "first").await;
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("first"), "{head}");
    let rest = read_until(&mut stream, "0\r\n\r\n").await;
    assert!(rest.contains("second\n") && rest.ends_with("0\r\n\r\n"), "the stream was cut: {rest:?}");
    assert_eq!(metrics.timed_out(), [0; 4], "no timeout counted");
}

#[tokio::test]
async fn a_stream_to_a_client_that_never_reads_is_cut_off() {
    // A stream that always has more to send, to a client that reads nothing: its writes block, and the
    // connection is closed after the stall timeout (the body timeout here).
    let router =
        streaming("/flood", |tx| async move { while tx.send(Bytes::from(vec![b'x'; 64 * 1024])).await.is_ok() {} });
    let metrics = Arc::new(ServeMetrics::default());
    let options = Options { tls: None, limits: short_limits(), metrics: Arc::clone(&metrics) };
    let (addr, _stop) = start(router, options).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(b"GET /flood HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    while metrics.open() < 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while metrics.open() > 0 {
        assert!(std::time::Instant::now() < deadline, "a stalled stream reader still holds its connection");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metrics.timed_out()[3], 1, "counted as an idle timeout: {:?}", metrics.timed_out());
    drop(stream);
}

#[tokio::test]
async fn shutdown_drops_an_open_stream_after_the_drain_timeout() {
    // A stream that never ends on its own (it ends when its body is dropped).
    let router = streaming("/forever", |tx| async move {
        let _ = tx.send(Bytes::from_static(b"first\n")).await;
        tx.closed().await;
    });
    let limits = Limits { drain_timeout: Duration::from_millis(300), ..short_limits() };
    let metrics = Arc::new(ServeMetrics::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = Options { tls: None, limits, metrics: Arc::clone(&metrics) };
    let served = tokio::spawn(serve(listener, router, options, async move {
        let _ = stopped.await;
    }));
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(b"GET /forever HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    let head = read_until(&mut stream, "first").await;
    assert!(head.contains("first"), "{head}");

    // Quiet for longer than every timeout: still open.
    tokio::time::sleep(QUIET).await;
    assert_eq!(metrics.open(), 1, "the quiet stream was closed: {:?}", metrics.timed_out());

    // Shutdown: the stream does not finish within the drain timeout, so it is dropped and serving ends.
    let _ = stop.send(());
    let result = tokio::time::timeout(Duration::from_secs(10), served).await;
    result.expect("serve returns after the drain timeout").expect("no panic").expect("serve ends cleanly");
    let rest = read_until(&mut stream, "0\r\n\r\n").await;
    assert!(!rest.contains("0\r\n\r\n"), "the endless stream ended normally: {rest:?}");
    assert_eq!(metrics.open(), 0, "the stream's connection was dropped");
}
