//! The client against scripted HTTP servers on loopback (port 0): which failures it retries, where it
//! sends requests, and how it reads answers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tally_client::{Client, ClientConfig, ClientError, Consistency, code};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A request as the scripted server saw it.
#[derive(Clone, Debug)]
struct Seen {
    /// `PUT`, `GET`, ...
    method: String,
    /// Path and query, as sent.
    path: String,
    /// The body.
    body: Vec<u8>,
}

/// What the scripted server answers.
struct Reply {
    /// The HTTP status.
    status: u16,
    /// Extra headers.
    headers: Vec<(&'static str, String)>,
    /// The body.
    body: Vec<u8>,
    /// A pause before answering (to provoke client timeouts).
    delay: Duration,
}

impl Reply {
    fn json(status: u16, body: &str) -> Reply {
        Reply { status, headers: vec![], body: body.as_bytes().to_vec(), delay: Duration::ZERO }
    }

    fn error(status: u16, code: &str) -> Reply {
        Reply::json(status, &format!(r#"{{"error": {{"code": "{code}", "message": "scripted {code}"}}}}"#))
    }

    fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }
}

type Script = dyn Fn(usize, &Seen) -> Reply + Send + Sync;

/// A scripted HTTP/1.1 server: answers the n-th request (from 0) with `script(n, request)`.
struct Server {
    /// `http://127.0.0.1:PORT`.
    url: String,
    /// Every request seen, in order.
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start(script: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let count = Arc::new(AtomicUsize::new(0));
        let seen_by_server = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (script, seen, count) = (script.clone(), seen_by_server.clone(), count.clone());
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    while let Some(request) = read_request(&mut stream).await {
                        seen.lock().expect("not poisoned").push(request.clone());
                        let reply = script(count.fetch_add(1, Ordering::SeqCst), &request);
                        tokio::time::sleep(reply.delay).await;
                        let mut head =
                            format!("HTTP/1.1 {} Scripted\r\ncontent-length: {}\r\n", reply.status, reply.body.len());
                        for (name, value) in &reply.headers {
                            head.push_str(&format!("{name}: {value}\r\n"));
                        }
                        head.push_str("\r\n");
                        let stream = stream.get_mut();
                        if stream.write_all(head.as_bytes()).await.is_err()
                            || stream.write_all(&reply.body).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Server { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

/// Reads one request; `None` at the end of the connection.
async fn read_request(stream: &mut BufReader<tokio::net::TcpStream>) -> Option<Seen> {
    let mut line = String::new();
    stream.read_line(&mut line).await.ok().filter(|&n| n > 0)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut length = 0;
    loop {
        let mut header = String::new();
        stream.read_line(&mut header).await.ok().filter(|&n| n > 0)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.ok()?;
    Some(Seen { method, path, body })
}

/// An address where nothing listens.
async fn dead_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    drop(listener);
    url
}

fn fast_config() -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        retry_deadline: Duration::from_secs(2),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
    }
}

#[tokio::test]
async fn a_refused_connection_moves_to_the_next_endpoint() {
    let live = Server::start(|_, _| {
        Reply::json(200, "hello")
            .header("x-tally-index", "9")
            .header("x-tally-create-index", "3")
            .header("x-tally-modify-index", "7")
    })
    .await;
    let client = Client::with_config(vec![dead_endpoint().await, live.url.clone()], fast_config()).expect("valid");

    let read = client.get(b"greeting", Consistency::Linearizable).await.expect("the live node answers");
    let read = read.expect("the key exists");
    assert_eq!((read.value.as_slice(), read.create_index, read.modify_index, read.index), (&b"hello"[..], 3, 7, 9));
    assert_eq!(live.seen().len(), 1);

    // The dead endpoint is no longer preferred: the next call goes straight to the live one.
    client.get(b"greeting", Consistency::Stale).await.expect("the live node answers");
    assert_eq!(live.seen()[1].path, "/v1/kv/greeting?consistency=stale");
}

#[tokio::test]
async fn every_endpoint_down_is_a_connect_error_naming_them() {
    let (a, b) = (dead_endpoint().await, dead_endpoint().await);
    let client = Client::with_config(vec![a.clone(), b.clone()], fast_config()).expect("valid");
    let started = Instant::now();
    let error = client.put(b"k", b"v").await.expect_err("nothing listens");
    assert!(
        matches!(&error, ClientError::Connect { endpoints, .. } if endpoints.contains(&a) && endpoints.contains(&b)),
        "{error:?}"
    );
    assert!(!error.outcome_unknown(), "nothing was sent");
    assert!(started.elapsed() < Duration::from_secs(4), "the retry deadline bounds the call");
}

#[tokio::test]
async fn no_leader_is_retried_until_a_leader_answers() {
    let server =
        Server::start(
            |n, _| if n < 2 { Reply::error(503, code::NO_LEADER) } else { Reply::json(200, r#"{"index": 5}"#) },
        )
        .await;
    let client = Client::with_config(vec![server.url.clone()], fast_config()).expect("valid");

    let written = client.put(b"a/b c", b"value").await.expect("the third attempt succeeds");
    assert_eq!(written.index, 5);
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.method == "PUT" && s.path == "/v1/kv/a%2Fb%20c" && s.body == b"value"), "{seen:?}");
}

#[tokio::test]
async fn retries_stop_at_the_deadline_with_the_last_error() {
    let server = Server::start(|_, _| Reply::error(502, code::FORWARD_FAILED)).await;
    let config = ClientConfig { retry_deadline: Duration::from_millis(300), ..fast_config() };
    let client = Client::with_config(vec![server.url.clone()], config).expect("valid");
    let started = Instant::now();
    let error = client.delete(b"k").await.expect_err("never succeeds");
    assert!(error.api().is_some_and(|e| e.is(code::FORWARD_FAILED)), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(server.seen().len() >= 2, "it was retried");
}

#[tokio::test]
async fn a_write_that_timed_out_is_not_retried() {
    // The server's own timeout.
    let server = Server::start(|_, _| Reply::error(504, code::TIMEOUT)).await;
    let client = Client::with_config(vec![server.url.clone()], fast_config()).expect("valid");
    let error = client.put_cas(b"k", b"v", 3).await.expect_err("504");
    assert!(error.outcome_unknown(), "{error:?}");
    assert!(error.to_string().contains("may or may not have been applied"), "{error}");
    assert_eq!(server.seen().len(), 1);
    assert_eq!(server.seen()[0].path, "/v1/kv/k?cas=3");

    // The client's timeout.
    let slow =
        Server::start(|_, _| Reply { delay: Duration::from_secs(3), ..Reply::json(200, r#"{"index": 1}"#) }).await;
    let config = ClientConfig { request_timeout: Duration::from_millis(200), ..fast_config() };
    let client = Client::with_config(vec![slow.url.clone()], config).expect("valid");
    let error = client.put(b"k", b"v").await.expect_err("times out");
    assert!(matches!(error, ClientError::Timeout { write: true, .. }), "{error:?}");
    assert_eq!(slow.seen().len(), 1);
}

#[tokio::test]
async fn a_read_that_timed_out_is_retried() {
    let server = Server::start(|n, _| {
        if n == 0 {
            Reply::error(504, code::TIMEOUT)
        } else {
            Reply::json(200, r#"{"index": 4, "items": [{"key": "p/1", "value_b64": "AP8=", "create_index": 1, "modify_index": 2}], "more": false}"#)
        }
    })
    .await;
    let client = Client::with_config(vec![server.url.clone()], fast_config()).expect("valid");
    let page = client.list(b"p/", Some(b"p/0"), 10, Consistency::Linearizable).await.expect("the retry answers");
    assert_eq!(
        (page.index, page.items[0].key.as_slice(), page.items[0].value.as_slice()),
        (4, &b"p/1"[..], &[0, 255][..])
    );
    assert_eq!(server.seen()[1].path, "/v1/kv?prefix=p%2F&limit=10&after=p%2F0");
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = Server::start(|_, _| Reply::error(400, code::BAD_REQUEST)).await;
    let client = Client::with_config(vec![server.url.clone()], fast_config()).expect("valid");
    let error = client.get(b"k", Consistency::Linearizable).await.expect_err("400");
    assert_eq!(error.status(), Some(400));
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn a_missing_key_reads_as_none_and_a_failed_cas_names_the_index() {
    let server = Server::start(|_, seen| {
        if seen.method == "GET" {
            Reply::error(404, code::NOT_FOUND)
        } else {
            Reply::json(
                412,
                r#"{"error": {"code": "cas_failed", "message": "cas failed", "current_modify_index": 12}}"#,
            )
        }
    })
    .await;
    let client = Client::with_config(vec![server.url.clone()], fast_config()).expect("valid");
    assert_eq!(client.get(b"k", Consistency::Linearizable).await.expect("404 is not an error"), None);
    let error = client.put_cas(b"k", b"v", 0).await.expect_err("412");
    assert_eq!(error.cas_current_modify_index(), Some(12));
}

#[tokio::test]
async fn writes_follow_the_leader_once_its_url_is_known() {
    let leader = Server::start(|_, _| Reply::json(200, r#"{"index": 8}"#).header("x-tally-leader", "n2")).await;
    let leader_url = leader.url.clone();
    let follower = Server::start(move |_, seen| {
        if seen.path == "/v1/cluster" {
            let view = format!(
                r#"{{"id": "n1", "role": "follower", "term": 2, "leader": "n2", "commit_index": 7, "applied_index": 7,
                   "last_index": 7, "snapshot_index": 0, "state_checksum": "0",
                   "members": [{{"id": "n1", "role": "voter", "peer_url": "p1", "client_url": null, "match_index": null}},
                               {{"id": "n2", "role": "voter", "peer_url": "p2", "client_url": "{leader_url}", "match_index": null}}]}}"#
            );
            Reply::json(200, &view).header("x-tally-leader", "n2")
        } else {
            Reply::json(200, r#"{"index": 7}"#).header("x-tally-leader", "n2")
        }
    })
    .await;
    let client = Client::with_config(vec![follower.url.clone()], fast_config()).expect("valid");

    // The first write goes to the only endpoint known, which forwards it and names the leader.
    assert_eq!(client.put(b"k", b"1").await.expect("forwarded").index, 7);
    assert_eq!(client.leader().as_deref(), Some("n2"));
    // The next write first learns the leader's URL from a cluster view, then goes straight there.
    assert_eq!(client.put(b"k", b"2").await.expect("sent to the leader").index, 8);
    let paths: Vec<String> = follower.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/v1/kv/k", "/v1/cluster"]);
    assert_eq!(leader.seen().len(), 1);
    assert!(client.endpoints().contains(&leader.url));
}
