//! Watches over HTTP (`GET /v1/watch`, Server-Sent Events) on clusters in one process (docs/http-api.md,
//! "Watches"). Raw bytes where the wire format is the point.

mod common;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use common::{shutdown, start_cluster, start_cluster_with, wait_for_followers, wait_for_leader};
use serde_json::{Value, json};
use tally_client::sse::{SseEvent, SseParser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long any one wait in these tests may take.
const WAIT: Duration = Duration::from_secs(10);

/// `http://ADDR` of server `i`.
fn base(servers: &[tally_server::Server], i: usize) -> String {
    format!("http://{}", servers[i].client_addr())
}

/// An open watch: the response, its raw text so far, and its parsed events not yet looked at.
struct Watch {
    /// The streaming response.
    response: reqwest::Response,
    /// Everything received, as text.
    raw: String,
    /// The parser.
    parser: SseParser,
    /// Parsed events not yet returned.
    events: VecDeque<SseEvent>,
    /// The `X-Tally-Index` of the answer.
    index: u64,
}

impl Watch {
    /// Opens `GET {base}/v1/watch?{query}` with `headers`, expecting `200`.
    async fn open(http: &reqwest::Client, base: &str, query: &str, headers: &[(&str, &str)]) -> Watch {
        let mut request = http.get(format!("{base}/v1/watch?{query}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("watch answers");
        assert_eq!(response.status(), 200, "watch ?{query} refused");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let index = response.headers()["x-tally-index"].to_str().expect("ascii").parse().expect("a number");
        Watch { response, raw: String::new(), parser: SseParser::new(), events: VecDeque::new(), index }
    }

    /// The next event, or `None` if the stream ended; panics after [`WAIT`].
    async fn next(&mut self) -> Option<SseEvent> {
        let deadline = Instant::now() + WAIT;
        while self.events.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.response.chunk()).await.expect("an event within 10 s");
            let chunk = chunk.expect("the stream reads")?;
            self.raw.push_str(std::str::from_utf8(&chunk).expect("utf-8 events"));
            for event in self.parser.push(&chunk) {
                self.events.push_back(event.expect("a well-formed stream"));
            }
        }
        self.events.pop_front()
    }

    /// The next event that is not a progress notice.
    async fn next_change(&mut self) -> SseEvent {
        loop {
            let event = self.next().await.expect("the stream goes on");
            if event.event != "progress" {
                return event;
            }
        }
    }
}

/// The `data:` of an event as JSON.
fn data(event: &SseEvent) -> Value {
    serde_json::from_str(&event.data).expect("JSON data")
}

/// `PUT {base}/v1/kv/{key}` = `value`; the write's index.
async fn put(http: &reqwest::Client, base: &str, key: &str, value: &str) -> u64 {
    let answer = http.put(format!("{base}/v1/kv/{key}")).body(value.to_owned()).send().await.expect("put answers");
    assert_eq!(answer.status(), 200, "put {key}");
    answer.json::<Value>().await.expect("json")["index"].as_u64().expect("an index")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_one_txn_share_an_index_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster(dir.path(), 1).await;
    let http = reqwest::Client::new();
    wait_for_leader(&http, &servers).await;
    let base = base(&servers, 0);
    put(&http, &base, "g/old", "x").await;
    let mut watch = Watch::open(&http, &base, "prefix=g/", &[]).await;

    // Phase: one txn puts two keys and deletes a third: three events, one index, the id only on the last.
    let txn = json!({"compare": [], "success": [{"put": {"key": "g/a", "value": "1"}},
        {"put": {"key": "g/b", "value": "2"}}, {"delete": {"key": "g/old"}}]});
    let answer: Value =
        http.post(format!("{base}/v1/txn")).json(&txn).send().await.expect("txn").json().await.expect("json");
    let index = answer["index"].as_u64().expect("the txn's index");
    let events = [watch.next_change().await, watch.next_change().await, watch.next_change().await];
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["put", "put", "delete"]);
    assert!(events.iter().all(|e| data(e)["index"] == index), "one index for the group: {events:?}");
    assert_eq!(data(&events[2])["key"], "g/old");
    let group_start = watch.raw.find("event: put").expect("the group is in the raw text");
    let group = &watch.raw[group_start..];
    assert_eq!(group.matches("\nid: ").count(), 1, "exactly one id line in the group: {group}");
    assert!(group.ends_with(&format!("\nid: {index}\n\n")), "the id closes the group: {group}");
    shutdown(servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_resumes_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster(dir.path(), 1).await;
    let http = reqwest::Client::new();
    wait_for_leader(&http, &servers).await;
    let base = base(&servers, 0);
    let mut indexes = Vec::new();
    for i in 0..5 {
        indexes.push(put(&http, &base, &format!("r/{i}"), "v").await);
    }

    // Phase: a watch from the first write sees r/0 and r/1, then its connection is dropped.
    let mut watch = Watch::open(&http, &base, &format!("prefix=r/&from_index={}", indexes[0]), &[]).await;
    let mut last_id = String::new();
    for i in 0..2 {
        let event = watch.next_change().await;
        assert_eq!(data(&event)["key"], format!("r/{i}"));
        last_id = event.id.expect("each single-change group carries its id");
    }
    assert_eq!(last_id, indexes[1].to_string());
    drop(watch);

    // Phase: resuming with Last-Event-ID gives r/2 next: nothing repeated, nothing skipped.
    let mut watch = Watch::open(&http, &base, "prefix=r/", &[("last-event-id", &last_id)]).await;
    for i in 2..5 {
        assert_eq!(data(&watch.next_change().await)["key"], format!("r/{i}"));
    }

    // Phase: from_index wins over Last-Event-ID when both are given.
    let query = format!("prefix=r/&from_index={}", indexes[4]);
    let mut watch = Watch::open(&http, &base, &query, &[("last-event-id", &last_id)]).await;
    assert_eq!(data(&watch.next_change().await)["key"], "r/4");
    shutdown(servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_index_below_window_is_410_with_oldest_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster_with(dir.path(), 1, |config| config.watch.history_entries_max = 2).await;
    let http = reqwest::Client::new();
    wait_for_leader(&http, &servers).await;
    let base = base(&servers, 0);
    let mut last = 0;
    for i in 0..5 {
        last = put(&http, &base, &format!("c/{i}"), "v").await;
    }

    // Phase: the history keeps the last two writes only; an older start is 410 with the oldest index kept.
    let oldest = common::cluster(&http, &servers[0]).await["oldest_index"].as_u64().expect("oldest_index");
    assert_eq!(oldest, last - 1, "two batches kept: the last write's and the one before");
    let answer = http.get(format!("{base}/v1/watch?prefix=c/&from_index=1")).send().await.expect("answers");
    assert_eq!(answer.status(), 410);
    let body: Value = answer.json().await.expect("json");
    assert_eq!(body["error"]["code"], "compacted", "{body}");
    assert_eq!(body["error"]["oldest_index"], oldest, "{body}");

    // Phase: from the oldest index on, the watch works.
    let mut watch = Watch::open(&http, &base, &format!("prefix=c/&from_index={oldest}"), &[]).await;
    assert_eq!(data(&watch.next_change().await)["index"], oldest);
    shutdown(servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_watch_starts_after_read_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster(dir.path(), 3).await;
    let http = reqwest::Client::new();
    let leader = wait_for_leader(&http, &servers).await;
    wait_for_followers(&http, &servers, leader).await;
    let follower = (leader + 1) % 3;

    // Phase: a write acknowledged by the leader, then at once a watch on a follower: it starts after the write
    // (the follower read the leader's commit index first), so the write is not delivered as new.
    let written = put(&http, &base(&servers, leader), "f/k", "before").await;
    let mut watch = Watch::open(&http, &base(&servers, follower), "key=f/k", &[]).await;
    assert!(watch.index >= written, "the watch starts at read index {} before the write {written}", watch.index);
    let next = put(&http, &base(&servers, leader), "f/k", "after").await;
    let event = data(&watch.next_change().await);
    assert_eq!((event["index"].as_u64(), event["value"].as_str()), (Some(next), Some("after")));
    shutdown(servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_stream_sends_progress() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster_with(dir.path(), 1, |config| {
        config.watch.progress_interval = Duration::from_millis(200);
    })
    .await;
    let http = reqwest::Client::new();
    wait_for_leader(&http, &servers).await;
    let mut watch = Watch::open(&http, &base(&servers, 0), "prefix=idle/", &[]).await;

    // Phase: nothing changes under the prefix: progress events arrive, each with the index as data and id.
    for _ in 0..2 {
        let event = watch.next().await.expect("the stream goes on");
        assert_eq!(event.event, "progress");
        let index = data(&event)["index"].as_u64().expect("an index");
        assert!(index >= watch.index, "progress {index} before the watch's start {}", watch.index);
        assert_eq!(event.id, Some(index.to_string()));
    }
    shutdown(servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_gets_error_then_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster_with(dir.path(), 1, |config| config.watch.buffer_bytes = 64 * 1024).await;
    let http = reqwest::Client::new();
    wait_for_leader(&http, &servers).await;
    let base = base(&servers, 0);

    // Phase: a raw connection with a tiny receive buffer opens a watch and reads nothing.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small receive buffer");
    let mut stream = socket.connect(servers[0].client_addr()).await.expect("connect");
    let request = "GET /v1/watch?prefix=s/ HTTP/1.1\r\nHost: tally\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.expect("send the request");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Phase: far more changes than the buffer, the channel and the sockets hold.
    let value = "x".repeat(64 * 1024);
    for i in 0..300 {
        put(&http, &base, &format!("s/{i}"), &value).await;
    }

    // Phase: reading now, the stream ends with slow_watcher (and where to resume), and the connection closes.
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await.expect("the server closes").expect("reads");
    let text = String::from_utf8_lossy(&raw);
    let error = text.find("event: error\ndata: {\"code\":\"slow_watcher\",\"resume_from\":").expect("slow_watcher");
    assert!(text[error..].contains("\n\n\r\n0\r\n\r\n"), "the error is the last event: {}", &text[error..]);
    let metrics = http.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("tally_watch_slow_total 1\n"), "{metrics}");
    shutdown(servers).await;
}

/// `{method} {base}{path}` with `body` and `token`; the JSON answer, after checking for `200`.
async fn call(http: &reqwest::Client, method: reqwest::Method, url: String, body: Value, token: &str) -> Value {
    let answer = http.request(method, &url).bearer_auth(token).json(&body).send().await.expect("answers");
    assert_eq!(answer.status(), 200, "{url}");
    answer.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_permission_closes_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster_with(dir.path(), 1, |config| {
        config.watch.progress_interval = Duration::from_millis(200);
    })
    .await;
    let http = reqwest::Client::new();
    wait_for_leader(&http, &servers).await;
    let base = base(&servers, 0);
    let post = reqwest::Method::POST;
    let put_method = reqwest::Method::PUT;

    // Phase: an admin, a reader of w/, auth on.
    call(&http, put_method.clone(), format!("{base}/v1/auth/roles/adm"), json!({}), "").await;
    let grant = json!({"prefix": "", "access": "admin"});
    call(&http, post.clone(), format!("{base}/v1/auth/roles/adm/grant"), grant, "").await;
    let root =
        call(&http, put_method.clone(), format!("{base}/v1/auth/users/root"), json!({"roles": ["adm"]}), "").await;
    let root = root["token"].as_str().expect("a token").to_owned();
    call(&http, put_method.clone(), format!("{base}/v1/auth/roles/reader"), json!({}), "").await;
    let grant = json!({"prefix": "w/", "access": "read"});
    call(&http, post.clone(), format!("{base}/v1/auth/roles/reader/grant"), grant, "").await;
    let bob = call(&http, put_method, format!("{base}/v1/auth/users/bob"), json!({"roles": ["reader"]}), "").await;
    let bob = bob["token"].as_str().expect("a token").to_owned();
    call(&http, post.clone(), format!("{base}/v1/auth/enable"), json!({}), &root).await;

    // Phase: bob watches w/ (and may not watch x/).
    let denied = http.get(format!("{base}/v1/watch?prefix=x/")).bearer_auth(&bob).send().await.expect("answers");
    assert_eq!(denied.status(), 403);
    let bearer = format!("Bearer {bob}");
    let mut watch = Watch::open(&http, &base, "prefix=w/", &[("authorization", &bearer)]).await;
    assert_eq!(watch.next().await.expect("progress").event, "progress");

    // Phase: the grant is revoked: the stream ends with permission_denied.
    call(&http, post, format!("{base}/v1/auth/roles/reader/revoke"), json!({"prefix": "w/"}), &root).await;
    loop {
        let event = watch.next().await.expect("an error before the end");
        if event.event == "error" {
            assert_eq!(data(&event)["code"], "permission_denied", "{event:?}");
            break;
        }
    }
    assert!(watch.next().await.is_none(), "the stream closes after the error");
    shutdown(servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_watch_requests_are_400() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster(dir.path(), 1).await;
    let http = reqwest::Client::new();
    wait_for_leader(&http, &servers).await;
    let base = base(&servers, 0);

    // Phase: from_index 0, not a number, in the future; key and prefix at once; a bad Last-Event-ID.
    for query in ["from_index=0", "from_index=abc", "from_index=99999999", "key=a&prefix=b", "prev=maybe"] {
        let answer = http.get(format!("{base}/v1/watch?{query}")).send().await.expect("answers");
        assert_eq!(answer.status(), 400, "{query}");
        let body: Value = answer.json().await.expect("json");
        assert_eq!(body["error"]["code"], "bad_request", "{query}: {body}");
    }
    let answer = http.get(format!("{base}/v1/watch")).header("last-event-id", "x").send().await.expect("answers");
    assert_eq!(answer.status(), 400);

    // Phase: the empty prefix is allowed: it watches every key.
    let mut watch = Watch::open(&http, &base, "prefix=", &[]).await;
    put(&http, &base, "anything", "v").await;
    assert_eq!(data(&watch.next_change().await)["key"], "anything");
    shutdown(servers).await;
}

/// `GET {url}`: the status, the `X-Tally-Index` and the body, and how long the call took.
async fn timed_get(http: &reqwest::Client, url: &str) -> (u16, u64, String, Duration) {
    let started = Instant::now();
    let answer = http.get(url).send().await.expect("answers");
    let status = answer.status().as_u16();
    let index = answer.headers()["x-tally-index"].to_str().expect("ascii").parse().expect("a number");
    (status, index, answer.text().await.expect("body"), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_index_returns_on_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster(dir.path(), 1).await;
    let http = reqwest::Client::new();
    wait_for_leader(&http, &servers).await;
    let base = base(&servers, 0);
    let first = put(&http, &base, "b/k", "one").await;

    // Phase: a blocking get at the current index waits; a write to another key does not wake it, a write to
    // the key does, and the answer is the new value at its index.
    let url = format!("{base}/v1/kv/b/k?wait_index={first}&wait=30s");
    let waiting = tokio::spawn({
        let http = http.clone();
        async move { timed_get(&http, &url).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    put(&http, &base, "b/other", "x").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a change to another key must not answer the blocking get");
    let second = put(&http, &base, "b/k", "two").await;
    let (status, index, body, took) = waiting.await.expect("joins");
    assert_eq!((status, body.as_str()), (200, "two"));
    assert!(index >= second, "the answer reflects the change: {index} < {second}");
    assert!(took < Duration::from_secs(10), "answered on the change, not at the deadline: {took:?}");

    // Phase: a wait_index below the change answers at once, on a key and on a prefix list.
    let (status, _, body, took) = timed_get(&http, &format!("{base}/v1/kv/b/k?wait_index={first}&wait=30s")).await;
    assert_eq!((status, body.as_str()), (200, "two"));
    assert!(took < Duration::from_secs(5), "{took:?}");
    let (status, _, body, took) =
        timed_get(&http, &format!("{base}/v1/kv?prefix=b/&wait_index={first}&wait=30s")).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"two\""), "{body}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    shutdown(servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_times_out_with_current_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster_with(dir.path(), 1, |config| config.watch.history_entries_max = 2).await;
    let http = reqwest::Client::new();
    wait_for_leader(&http, &servers).await;
    let base = base(&servers, 0);
    let index = put(&http, &base, "t/k", "now").await;

    // Phase: nothing changes: the answer is the current value, after the wait (and at most 1/16 more).
    let (status, _, body, took) = timed_get(&http, &format!("{base}/v1/kv/t/k?wait_index={index}&wait=800ms")).await;
    assert_eq!((status, body.as_str()), (200, "now"));
    assert!(took >= Duration::from_millis(800), "answered before the wait ran out: {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // Phase: a wait_index older than the history window answers at once.
    for i in 0..4 {
        put(&http, &base, &format!("t/{i}"), "v").await;
    }
    let (status, _, body, took) = timed_get(&http, &format!("{base}/v1/kv/t/k?wait_index=1&wait=30s")).await;
    assert_eq!((status, body.as_str()), (200, "now"));
    assert!(took < Duration::from_secs(5), "below the window must answer at once: {took:?}");

    // Phase: bad parameters are 400.
    for query in ["wait=1s", "wait_index=1&wait=11m", "wait_index=x"] {
        let (status, _, _, _) = timed_get(&http, &format!("{base}/v1/kv/t/k?{query}")).await;
        assert_eq!(status, 400, "{query}");
    }
    shutdown(servers).await;
}
