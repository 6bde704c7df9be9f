//! The resumable watch against fake nodes that speak raw HTTP: each serves one canned answer per connection
//! and records the request lines it got.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::ClientConfig;

/// A fake node: answers its `n`-th connection with `answers[n]` (the last one repeated), then closes.
async fn fake_node(answers: Vec<String>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&requests);
    tokio::spawn(async move {
        for n in 0.. {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let mut head = vec![0u8; 4096];
            let read = stream.read(&mut head).await.unwrap_or(0);
            let line = String::from_utf8_lossy(&head[..read]).lines().next().unwrap_or_default().to_string();
            seen.lock().expect("lock").push(line);
            let answer = &answers[n.min(answers.len() - 1)];
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    (url, requests)
}

/// A `200` event stream with `body`, ended by closing the connection.
fn stream(body: &str) -> String {
    format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{body}")
}

/// A put event of `key` at `index`, with `id: index` if it closes its group.
fn put(index: u64, key: &str, closes: bool) -> String {
    let id = if closes { format!("id: {index}\n") } else { String::new() };
    format!(
        "event: put\ndata: {{\"index\":{index},\"key\":\"{key}\",\"value\":\"v\",\"create_index\":{index},\
         \"modify_index\":{index},\"version\":1}}\n{id}\n"
    )
}

/// A client of `endpoints` that gives up quickly.
fn client(endpoints: Vec<String>) -> Client {
    let config = ClientConfig {
        request_timeout: Duration::from_secs(3),
        retry_deadline: Duration::from_secs(5),
        backoff_min: Duration::from_millis(10),
        ..ClientConfig::default()
    };
    Client::with_config(endpoints, config).expect("client")
}

#[tokio::test]
async fn resumes_on_other_endpoint_from_last_complete_group() {
    // Node A sends group 5 whole and only the first event of group 6, then its connection drops; node B has
    // all of group 6 (and group 7) from index 6 on.
    let a_body = format!("{}{}", put(5, "a", true), put(6, "b", false));
    let (a, a_requests) = fake_node(vec![stream(&a_body), "HTTP/1.1 503 Service Unavailable\r\n\r\n".into()]).await;
    let b_body = format!("{}{}{}", put(6, "b", false), put(6, "c", true), put(7, "d", true));
    let (b, b_requests) = fake_node(vec![stream(&b_body)]).await;
    let mut watch = client(vec![a, b]).watch(WatchOptions { from_index: Some(5), ..WatchOptions::prefix(b"") });

    // Group 5 once, then group 6 whole (from B, not half from A and again from B), then 7.
    let keys = |event: WatchEvent| match event {
        WatchEvent::Changes { index, changes } => (index, changes.into_iter().map(|c| c.key).collect::<Vec<_>>()),
        other => panic!("a progress event {other:?}"),
    };
    assert_eq!(keys(watch.next().await.expect("group 5")), (5, vec![b"a".to_vec()]));
    assert_eq!(watch.resume_from(), Some(6), "the resume point follows what was reported, not what was read");
    assert_eq!(keys(watch.next().await.expect("group 6")), (6, vec![b"b".to_vec(), b"c".to_vec()]));
    assert_eq!(keys(watch.next().await.expect("group 7")), (7, vec![b"d".to_vec()]));
    assert_eq!(watch.resume_from(), Some(8));
    assert!(a_requests.lock().expect("lock")[0].contains("from_index=5"), "{a_requests:?}");
    let b_first = b_requests.lock().expect("lock")[0].clone();
    assert!(b_first.contains("from_index=6"), "B is asked from the incomplete group: {b_first}");
}

#[tokio::test]
async fn compacted_is_a_typed_error() {
    let gone = "HTTP/1.1 410 Gone\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n\
        {\"error\":{\"code\":\"compacted\",\"message\":\"too old\",\"oldest_index\":40}}";
    let (node, _) = fake_node(vec![gone.to_string()]).await;
    let mut watch =
        client(vec![node.clone()]).watch(WatchOptions { from_index: Some(3), ..WatchOptions::prefix(b"p") });
    let error = watch.next().await.expect_err("compacted");
    assert!(matches!(error, WatchError::Compacted { oldest_index: 40 }), "{error:?}");

    // The error event in a running stream is the same typed error, after the events before it.
    let body = format!("{}event: error\ndata: {{\"code\":\"compacted\",\"oldest_index\":90}}\n\n", put(8, "k", true));
    let (node, _) = fake_node(vec![stream(&body)]).await;
    let mut watch = client(vec![node]).watch(WatchOptions::prefix(b""));
    assert!(matches!(watch.next().await, Ok(WatchEvent::Changes { index: 8, .. })));
    let error = watch.next().await.expect_err("compacted");
    assert!(matches!(error, WatchError::Compacted { oldest_index: 90 }), "{error:?}");
}

#[tokio::test]
async fn slow_watcher_resumes_where_the_node_says() {
    let body = format!("{}event: error\ndata: {{\"code\":\"slow_watcher\",\"resume_from\":4}}\n\n", put(3, "k", true));
    let (node, requests) = fake_node(vec![stream(&body), stream(&put(4, "m", true))]).await;
    let mut watch = client(vec![node]).watch(WatchOptions::prefix(b""));
    assert!(matches!(watch.next().await, Ok(WatchEvent::Changes { index: 3, .. })));
    assert!(matches!(watch.next().await, Ok(WatchEvent::Changes { index: 4, .. })));
    assert!(requests.lock().expect("lock")[1].contains("from_index=4"), "{requests:?}");
}

#[tokio::test]
async fn a_fresh_watch_cut_before_its_first_group_resumes_after_the_read_index() {
    // Node A answers a fresh watch with its read index 41 and drops the connection before any event; node B
    // then serves the change at 42. The second connection must ask from 42, not start at B's own "now".
    let cut = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-tally-index: 41\r\nconnection: close\r\n\r\n";
    let (a, _) = fake_node(vec![cut.to_string(), "HTTP/1.1 503 Service Unavailable\r\n\r\n".into()]).await;
    let (b, b_requests) = fake_node(vec![stream(&put(42, "k", true))]).await;
    let mut watch = client(vec![a, b]).watch(WatchOptions::prefix(b""));
    assert!(matches!(watch.next().await, Ok(WatchEvent::Changes { index: 42, .. })));
    let b_first = b_requests.lock().expect("lock")[0].clone();
    assert!(b_first.contains("from_index=42"), "B is asked from after A's read index: {b_first}");
}

#[tokio::test]
async fn a_stream_outlives_the_clients_request_timeout() {
    // One group, then silence (with progress events) for longer than the 3 s request timeout, then another group:
    // both arrive over the one connection.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let connections = Arc::new(Mutex::new(0u32));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            *counted.lock().expect("lock") += 1;
            let mut head = vec![0u8; 4096];
            let _ = socket.read(&mut head).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-tally-index: 0\r\n\r\n";
            let _ = socket.write_all(format!("{head}{}", put(1, "a", true)).as_bytes()).await;
            for index in 1..=4u64 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let progress = format!("event: progress\ndata: {{\"index\":{index}}}\nid: {index}\n\n");
                let _ = socket.write_all(progress.as_bytes()).await;
            }
            let _ = socket.write_all(put(5, "b", true).as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    });
    let mut watch = client(vec![url]).watch(WatchOptions::prefix(b""));
    let mut changes = Vec::new();
    while changes.len() < 2 {
        if let WatchEvent::Changes { index, .. } = watch.next().await.expect("an event") {
            changes.push(index);
        }
    }
    assert_eq!(changes, [1, 5]);
    assert_eq!(*connections.lock().expect("lock"), 1, "the stream was cut and reopened");
}
