//! The harness of the end-to-end tests: real `tally node` processes (the built binary) on loopback ports,
//! their data and logs in a temp dir, and HTTP helpers over the client API (docs/http-api.md).
//!
//! ```text
//!  Cluster::start ──reserve 6 ports──▶ spawn 3 × `tally node` (log: DIR/nI.log) ──▶ wait for /livez on each
//!  Cluster::stop(i, Kill | Term) ──▶ by PID: SIGKILL, or SIGTERM and a bounded wait for a clean exit
//!  Cluster::restart(i) ──▶ the same command line (same ports, same data dir) ──▶ wait for /livez
//!  drop (also on panic) ──▶ print each node's log tail if panicking ──▶ SIGKILL + reap every child ──▶ rm DIR
//! ```
//!
//! Every wait has a deadline and panics with what it waited for. Helpers return what they saw instead of
//! asserting, so each test states its own expectations.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// The binary under test.
pub const TALLY: &str = env!("CARGO_BIN_EXE_tally");

/// Nodes in every test cluster.
pub const NODES: usize = 3;

/// Milliseconds per Raft tick: the election timeout is 10 ticks, so 20 ms elects within about a second.
pub const TICK_MS: &str = "20";

/// How long a node may take to answer `/livez` after its process starts.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a node may take to exit after SIGTERM (the server drains HTTP for at most 5 s).
const TERM_TIMEOUT: Duration = Duration::from_secs(15);

/// How long an election may take.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(20);

/// How long any single HTTP request may take before the helper gives up.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Log lines printed per node when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// How a node is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL: a crash; nothing is flushed beyond what was fsynced.
    Kill,
    /// SIGTERM: a graceful shutdown, which must exit with status 0 in time.
    Term,
}

/// One child process, killed and reaped when dropped (so a panicking test leaves no process behind).
pub struct NodeProcess {
    /// The child; reaped at most once, so its PID is never reused under us.
    child: Child,
}

impl NodeProcess {
    /// Takes charge of a started child.
    pub fn new(child: Child) -> NodeProcess {
        NodeProcess { child }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (and its exit status).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait on a child")
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL a child");
        self.child.wait().expect("reap a killed child");
    }

    /// SIGTERM, then wait (bounded) for the exit.
    ///
    /// # Panics
    /// If the process does not exit within `TERM_TIMEOUT` (it is then killed).
    pub fn terminate(mut self) -> ExitStatus {
        if let Some(status) = self.exited() {
            return status;
        }
        // Not reaped yet, so the PID is still this child's (at worst a zombie).
        let pid = self.pid().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM {pid} failed: {sent}");
        let deadline = Instant::now() + TERM_TIMEOUT;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(Instant::now() < deadline, "pid {pid} did not exit within {TERM_TIMEOUT:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        // `kill` does nothing for a child already reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One node of a test cluster: where it listens and keeps its data, and its process while it runs.
pub struct Node {
    /// `n1`, `n2`, ...
    pub id: String,
    /// Its client API address.
    pub client: SocketAddr,
    /// Its peer transport address.
    pub peer: SocketAddr,
    /// Its data directory, kept across restarts.
    pub data_dir: PathBuf,
    /// Its log (stdout and stderr), appended to across restarts.
    pub log: PathBuf,
    /// The running process, if any.
    pub process: Option<NodeProcess>,
}

/// A member in `/v1/cluster`.
#[derive(Clone, Debug, Deserialize)]
pub struct MemberView {
    /// Its id.
    pub id: String,
    /// `voter` or `learner`.
    pub role: String,
}

/// A node's answer to `/v1/cluster` (the fields the tests use).
#[derive(Clone, Debug, Deserialize)]
pub struct ClusterView {
    /// The node's id.
    pub id: String,
    /// `leader`, `candidate` or `follower`.
    pub role: String,
    /// Its term.
    pub term: u64,
    /// The leader it knows.
    pub leader: Option<String>,
    /// Its commit index.
    pub commit_index: u64,
    /// Its applied index.
    pub applied_index: u64,
    /// Its last log index.
    pub last_index: u64,
    /// Its latest snapshot's index.
    pub snapshot_index: u64,
    /// Fingerprint of the applied state.
    pub state_checksum: String,
    /// The members.
    pub members: Vec<MemberView>,
}

/// One HTTP answer, read whole.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Panics
    /// If it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().expect("ASCII header").to_string())
    }

    /// Asserts this is the documented error shape `{"error": {"code", "message"}}` with this status and code,
    /// and returns the message.
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "expected {status} {code}, got {} {:?}", self.status, self.text());
        let json = self.json();
        assert_eq!(json["error"]["code"], code, "wrong code in {json}");
        let message = json["error"]["message"].as_str().unwrap_or_else(|| panic!("no message in {json}"));
        assert!(!message.trim().is_empty(), "empty message in {json}");
        message.to_string()
    }
}

/// Reserves `count` distinct free ports on 127.0.0.1.
///
/// The listeners are dropped before the nodes bind the ports, so another process may take a port in between.
/// The window is small; `Cluster::start` notices a node that fails to start and retries once on new ports.
pub fn reserve_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..count).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local addr").port()).collect()
}

/// The last `lines` lines of a file (or why it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else { return format!("(no log at {})", path.display()) };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(64 * 1024)));
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A 3-node cluster of `tally node` processes.
pub struct Cluster {
    /// The nodes, `nodes[i].id == format!("n{}", i + 1)`. Declared before `dir`: processes die before their
    /// data directory is removed.
    pub nodes: Vec<Node>,
    /// `--tick-ms` of every node.
    tick_ms: String,
    /// Flags added to every node's command line.
    extra_args: Vec<String>,
    /// The HTTP client of the tests.
    pub http: reqwest::Client,
    /// Holds data dirs and logs; removed on drop.
    dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
    }
}

impl Cluster {
    /// Starts a cluster with `--tick-ms 20` and `extra_args` on every node, and waits until every node answers
    /// `/livez`. Retries once on new ports if a node fails to start (a reserved port was taken meanwhile).
    ///
    /// # Panics
    /// If the second attempt fails too.
    pub async fn start(extra_args: &[&str]) -> Cluster {
        Cluster::start_with_tick(TICK_MS, extra_args).await
    }

    /// Like [`Cluster::start`], with `--tick-ms tick_ms` instead of 20 (e.g. the production default of 100).
    ///
    /// # Panics
    /// If the second attempt fails too.
    pub async fn start_with_tick(tick_ms: &str, extra_args: &[&str]) -> Cluster {
        Cluster::start_attempts(tick_ms, extra_args, None).await
    }

    /// Like [`Cluster::start`], with node `i`'s data directory at `data_dir` instead of in the temp dir (e.g. on
    /// a file system the test mounted). `data_dir` must be the test's own: it is removed before each attempt,
    /// so a retry starts empty too, and it is left in place afterwards.
    ///
    /// # Panics
    /// If the second attempt fails too.
    pub async fn start_with_data_dir(extra_args: &[&str], i: usize, data_dir: &Path) -> Cluster {
        Cluster::start_attempts(TICK_MS, extra_args, Some((i, data_dir))).await
    }

    /// [`Cluster::try_start`], and once more on new ports if it fails.
    async fn start_attempts(tick_ms: &str, extra_args: &[&str], data_dir: Option<(usize, &Path)>) -> Cluster {
        match Cluster::try_start(tick_ms, extra_args, data_dir).await {
            Ok(cluster) => cluster,
            Err(first) => {
                eprintln!("cluster did not start ({first}); retrying once on new ports");
                Cluster::try_start(tick_ms, extra_args, data_dir)
                    .await
                    .unwrap_or_else(|second| panic!("cluster did not start: {second}"))
            }
        }
    }

    /// One attempt of [`Cluster::start_with_tick`] (node `data_dir.0`'s data directory at `data_dir.1`).
    async fn try_start(
        tick_ms: &str,
        extra_args: &[&str],
        data_dir: Option<(usize, &Path)>,
    ) -> Result<Cluster, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some((_, path)) = data_dir {
            match std::fs::remove_dir_all(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("cannot empty {}: {e}", path.display()),
            }
        }
        let ports = reserve_ports(2 * NODES);
        let nodes = (0..NODES)
            .map(|i| {
                let id = format!("n{}", i + 1);
                Node {
                    client: SocketAddr::from(([127, 0, 0, 1], ports[2 * i])),
                    peer: SocketAddr::from(([127, 0, 0, 1], ports[2 * i + 1])),
                    data_dir: match data_dir {
                        Some((j, path)) if j == i => path.to_path_buf(),
                        _ => dir.path().join(&id),
                    },
                    log: dir.path().join(format!("{id}.log")),
                    id,
                    process: None,
                }
            })
            .collect();
        let http = reqwest::Client::builder().no_proxy().timeout(HTTP_TIMEOUT).build().expect("HTTP client");
        let extra_args = extra_args.iter().map(ToString::to_string).collect();
        let mut cluster = Cluster { nodes, tick_ms: tick_ms.to_string(), extra_args, http, dir };
        for i in 0..NODES {
            cluster.spawn(i);
        }
        for i in 0..NODES {
            cluster.wait_live(i).await?;
        }
        Ok(cluster)
    }

    /// The temp dir holding data dirs and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `--initial-cluster` of this cluster.
    fn initial_cluster(&self) -> String {
        self.nodes.iter().map(|n| format!("{}=http://{}", n.id, n.peer)).collect::<Vec<_>>().join(",")
    }

    /// Starts node `i`'s process (it must not be running).
    fn spawn(&mut self, i: usize) {
        assert!(self.nodes[i].process.is_none(), "{} is already running", self.nodes[i].id);
        let initial_cluster = self.initial_cluster();
        let node = &self.nodes[i];
        let log = File::options().create(true).append(true).open(&node.log).expect("open node log");
        let mut command = Command::new(TALLY);
        command
            .arg("node")
            .args(["--id", &node.id])
            .args(["--listen-client", &node.client.to_string()])
            .args(["--listen-peer", &node.peer.to_string()])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--initial-cluster", &initial_cluster])
            .args(["--tick-ms", &self.tick_ms])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        command.env("NO_COLOR", "1");
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {TALLY}: {e}"));
        self.nodes[i].process = Some(NodeProcess { child });
    }

    /// Waits until node `i` answers `/livez` with 200.
    ///
    /// # Errors
    /// If its process exits or it does not answer in time, with its log tail.
    async fn wait_live(&mut self, i: usize) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.nodes[i].process.as_mut().and_then(NodeProcess::exited) {
                let node = &self.nodes[i];
                return Err(format!("{} exited at start ({status}); log:\n{}", node.id, tail(&node.log, 20)));
            }
            if matches!(self.get(i, "/livez").await, Ok(a) if a.status == 200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let node = &self.nodes[i];
                return Err(format!(
                    "{} did not answer /livez in {START_TIMEOUT:?}; log:\n{}",
                    node.id,
                    tail(&node.log, 20)
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops node `i`. For `Stop::Term`, asserts a clean exit (status 0).
    pub fn stop(&mut self, i: usize, how: Stop) {
        let node = &mut self.nodes[i];
        let process = node.process.take().unwrap_or_else(|| panic!("{} is not running", node.id));
        let start = Instant::now();
        match how {
            Stop::Kill => process.kill(),
            Stop::Term => {
                let status = process.terminate();
                assert!(status.success(), "{} exited with {status} after SIGTERM", node.id);
            }
        }
        eprintln!("{} stopped ({how:?}) in {}", node.id, elapsed(start));
    }

    /// Restarts node `i` with its command line, ports and data dir, and waits until it answers `/livez`.
    ///
    /// # Panics
    /// If it does not come up (e.g. another process took its port meanwhile: the same small race as at start).
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        if let Err(why) = self.wait_live(i).await {
            panic!("restart failed: {why}");
        }
    }

    /// Whether node `i` runs.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].process.is_some()
    }

    /// Positions of the running nodes.
    pub fn running(&self) -> Vec<usize> {
        (0..NODES).filter(|&i| self.is_running(i)).collect()
    }

    /// Position of the node with this id.
    pub fn position(&self, id: &str) -> usize {
        self.nodes.iter().position(|n| n.id == id).unwrap_or_else(|| panic!("no node {id}"))
    }

    /// `http://CLIENT_ADDR{path}` of node `i`.
    pub fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.nodes[i].client)
    }

    /// Prints the log tail of every node.
    pub fn print_logs(&self) {
        for node in &self.nodes {
            eprintln!("===== {} log ({}) =====\n{}", node.id, node.log.display(), tail(&node.log, LOG_TAIL_LINES));
        }
    }

    /// Sends a request and reads the whole answer.
    ///
    /// # Errors
    /// A transport error (connection refused, reset, timeout), as text.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, String> {
        let answer = request.send().await.map_err(|e| format!("{e:?}"))?;
        let status = answer.status().as_u16();
        let headers = answer.headers().clone();
        let body = answer.bytes().await.map_err(|e| format!("{e:?}"))?.to_vec();
        Ok(Answer { status, headers, body })
    }

    /// `GET path` on node `i`.
    ///
    /// # Errors
    /// See [`Cluster::send`].
    pub async fn get(&self, i: usize, path: &str) -> Result<Answer, String> {
        self.send(self.http.get(self.url(i, path))).await
    }

    /// `PUT /v1/kv/{key}` with `value` on node `i`: the index of the write on 200, else what happened.
    ///
    /// # Errors
    /// A non-200 answer or a transport error, as text.
    pub async fn put(&self, i: usize, key: &str, value: &str) -> Result<u64, String> {
        put_on(&self.http, &self.url(i, ""), key, value).await
    }

    /// Writes every `(key, value)` through node `i` with `parallel` concurrent writers, each write retried
    /// while it fails for up to 10 s (rewriting a key with the same value is harmless here); returns the
    /// indexes, in the order of `writes`.
    ///
    /// # Panics
    /// If a write keeps failing.
    pub async fn put_all(&self, i: usize, writes: &[(String, String)], parallel: usize) -> Vec<u64> {
        let mut tasks = tokio::task::JoinSet::new();
        for (w, chunk) in writes.chunks(writes.len().div_ceil(parallel).max(1)).enumerate() {
            let (http, base, chunk) = (self.http.clone(), self.url(i, ""), chunk.to_vec());
            tasks.spawn(async move {
                let mut indexes = Vec::new();
                for (key, value) in chunk {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    loop {
                        match put_on(&http, &base, &key, &value).await {
                            Ok(index) => break indexes.push(index),
                            Err(why) => assert!(Instant::now() < deadline, "PUT {key} on {base} keeps failing: {why}"),
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                (w, indexes)
            });
        }
        let mut chunks = tasks.join_all().await;
        chunks.sort_by_key(|(w, _)| *w);
        chunks.into_iter().flat_map(|(_, indexes)| indexes).collect()
    }

    /// Like [`Cluster::put`], retrying transient failures (no leader yet, forwarding failed) until `timeout`.
    /// Only for keys whose rewrite is harmless: a timed-out write may have been applied and is sent again.
    ///
    /// # Panics
    /// If no attempt succeeds in time.
    pub async fn put_retrying(&self, i: usize, key: &str, value: &str, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            match self.put(i, key, value).await {
                Ok(index) => return index,
                Err(why) => assert!(
                    Instant::now() < deadline,
                    "PUT {key} on {} failed for {timeout:?}: {why}",
                    self.nodes[i].id
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /v1/kv/{key}` on node `i` (`stale`: `?consistency=stale`).
    ///
    /// # Panics
    /// On a transport error.
    pub async fn read(&self, i: usize, key: &str, stale: bool) -> Answer {
        let query = if stale { "?consistency=stale" } else { "" };
        self.get(i, &format!("/v1/kv/{key}{query}"))
            .await
            .unwrap_or_else(|e| panic!("GET {key} on {}: {e}", self.nodes[i].id))
    }

    /// Every key under `prefix` on node `i` from its applied state (stale pages): key → (value, modify index).
    ///
    /// # Panics
    /// On any failed page.
    pub async fn stale_scan(&self, i: usize, prefix: &str) -> BTreeMap<String, (String, u64)> {
        let mut items = BTreeMap::new();
        let mut after: Option<String> = None;
        loop {
            let mut query = vec![
                ("prefix", prefix.to_string()),
                ("consistency", "stale".to_string()),
                ("limit", "1000".to_string()),
            ];
            if let Some(after) = &after {
                query.push(("after", after.clone()));
            }
            let request = self.http.get(self.url(i, "/v1/kv")).query(&query);
            let answer = self.send(request).await.unwrap_or_else(|e| panic!("scan on {}: {e}", self.nodes[i].id));
            assert_eq!(answer.status, 200, "scan on {}: {}", self.nodes[i].id, answer.text());
            let page = answer.json();
            for item in page["items"].as_array().expect("items") {
                let key = item["key"].as_str().expect("UTF-8 key").to_string();
                let value = item["value"].as_str().expect("UTF-8 value").to_string();
                let modify_index = item["modify_index"].as_u64().expect("modify_index");
                after = Some(key.clone());
                items.insert(key, (value, modify_index));
            }
            if page["more"] != true {
                return items;
            }
        }
    }

    /// Node `i`'s `/v1/cluster`, `None` if it does not answer 200.
    pub async fn view(&self, i: usize) -> Option<ClusterView> {
        let answer = self.get(i, "/v1/cluster").await.ok()?;
        if answer.status != 200 {
            return None;
        }
        Some(
            serde_json::from_slice(&answer.body).unwrap_or_else(|e| panic!("bad /v1/cluster ({e}): {}", answer.text())),
        )
    }

    /// Node `i`'s `/v1/cluster`.
    ///
    /// # Panics
    /// If it does not answer.
    pub async fn view_of(&self, i: usize) -> ClusterView {
        self.view(i).await.unwrap_or_else(|| panic!("{} does not answer /v1/cluster", self.nodes[i].id))
    }

    /// Waits until one running node leads and every running node names it: its position.
    ///
    /// # Panics
    /// If that does not happen within `LEADER_TIMEOUT`.
    pub async fn wait_for_leader(&self) -> usize {
        let deadline = Instant::now() + LEADER_TIMEOUT;
        let mut views = Vec::new();
        loop {
            views.clear();
            for i in self.running() {
                views.push((i, self.view(i).await));
            }
            let leaders: Vec<usize> =
                views.iter().filter(|(_, v)| v.as_ref().is_some_and(|v| v.role == "leader")).map(|(i, _)| *i).collect();
            if let [leader] = leaders[..] {
                let id = &self.nodes[leader].id;
                if views.iter().all(|(_, v)| v.as_ref().is_some_and(|v| v.leader.as_deref() == Some(id))) {
                    return leader;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader within {LEADER_TIMEOUT:?}; views: {views:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until node `i` has applied at least `index`.
    ///
    /// # Panics
    /// If it does not within `timeout`.
    pub async fn wait_applied(&self, i: usize, index: u64, timeout: Duration) -> ClusterView {
        let deadline = Instant::now() + timeout;
        loop {
            let view = self.view(i).await;
            if let Some(view) = view.as_ref().filter(|v| v.applied_index >= index) {
                return view.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{} did not apply index {index} within {timeout:?}; view: {view:#?}",
                self.nodes[i].id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every running node reports the same applied index (equal to its commit index) and state
    /// checksum in two polls in a row; returns the views.
    ///
    /// # Panics
    /// If they do not converge within `timeout`.
    pub async fn wait_converged(&self, timeout: Duration) -> Vec<ClusterView> {
        let deadline = Instant::now() + timeout;
        let mut previous: Option<(u64, String)> = None;
        loop {
            let mut views = Vec::new();
            for i in self.running() {
                views.push(self.view(i).await);
            }
            let views: Option<Vec<ClusterView>> = views.into_iter().collect();
            let agreed = views.as_ref().and_then(|views| {
                let first = &views[0];
                let same = views.iter().all(|v| {
                    v.applied_index == first.applied_index
                        && v.commit_index == first.applied_index
                        && v.state_checksum == first.state_checksum
                });
                same.then(|| (first.applied_index, first.state_checksum.clone()))
            });
            if agreed.is_some() && agreed == previous {
                return views.expect("all answered");
            }
            assert!(Instant::now() < deadline, "nodes did not converge within {timeout:?}; views: {views:#?}");
            previous = agreed;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `PUT {base}/v1/kv/{key}` with `value`: the index of the write on 200, else what happened.
///
/// # Errors
/// A non-200 answer or a transport error, as text.
pub async fn put_on(http: &reqwest::Client, base: &str, key: &str, value: &str) -> Result<u64, String> {
    let request = http.put(format!("{base}/v1/kv/{key}")).body(value.to_string());
    let answer = request.send().await.map_err(|e| format!("{e:?}"))?;
    let status = answer.status();
    let header = answer.headers().get("x-tally-index").map(|v| v.to_str().expect("ASCII header").to_string());
    let text = answer.text().await.map_err(|e| format!("{e:?}"))?;
    if status != 200 {
        return Err(format!("{status} {text}"));
    }
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("200 not JSON ({e}): {text}"));
    let index = body["index"].as_u64().unwrap_or_else(|| panic!("200 without an index: {text}"));
    assert_eq!(header, Some(index.to_string()), "X-Tally-Index of a write is not its index");
    Ok(index)
}

/// Seconds since `start`, for the tests' timing lines.
pub fn elapsed(start: Instant) -> String {
    format!("{:.1}s", start.elapsed().as_secs_f64())
}

/// The value of the sample `name` (without labels) in Prometheus text, if present.
pub fn metric_value(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

impl Cluster {
    /// The value of the metric `name` in node `i`'s `/metrics`.
    ///
    /// # Panics
    /// If the node does not answer or the metric is missing.
    pub async fn metric(&self, i: usize, name: &str) -> u64 {
        let answer = self.get(i, "/metrics").await.unwrap_or_else(|e| panic!("/metrics of {}: {e}", self.nodes[i].id));
        metric_value(&answer.text(), name).unwrap_or_else(|| panic!("no {name} in /metrics of {}", self.nodes[i].id))
    }
}
