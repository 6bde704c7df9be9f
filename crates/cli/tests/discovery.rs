//! Discovery with real processes: nodes given nothing but the registry's address form one cluster, grow it,
//! replace a dead voter, outlive the registry, and refuse strangers without the cluster token.
//!
//! ```text
//!  tally registry --listen 127.0.0.1:R --ttl-ms 1000
//!  tally node --registry-address http://127.0.0.1:R --listen-client .. --listen-peer .. --data-dir ..
//!     ──▶ /v1/cluster of every node: one leader, one cluster id, voters and learners as expected
//! ```

mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{NodeProcess, TALLY, reserve_ports, tail};
use serde::Deserialize;

/// The registry's TTL: short, so warm-up and expiry are quick.
const TTL_MS: &str = "1000";
/// How long any wait for the cluster to reach a shape may take.
const SHAPE_TIMEOUT: Duration = Duration::from_secs(30);

/// A member in `/v1/cluster`.
#[derive(Clone, Debug, Deserialize)]
struct Member {
    id: String,
    role: String,
    peer_url: Option<String>,
}

/// `/v1/cluster` (the fields used here).
#[derive(Clone, Debug, Deserialize)]
struct View {
    id: String,
    role: String,
    leader: Option<String>,
    cluster_id: Option<String>,
    commit_index: u64,
    applied_index: u64,
    snapshot_index: u64,
    members: Vec<Member>,
}

impl View {
    /// The ids of the members with `role`.
    fn with_role(&self, role: &str) -> Vec<String> {
        self.members.iter().filter(|m| m.role == role).map(|m| m.id.clone()).collect()
    }
}

/// One process (registry or node), its log, and where it listens.
struct Proc {
    /// Its client (or registry) address.
    addr: SocketAddr,
    /// Its peer address (nodes only).
    peer: SocketAddr,
    /// Its data directory (nodes only).
    data_dir: PathBuf,
    /// Its log.
    log: PathBuf,
    /// How it finds the cluster (nodes only): `--registry-address URL` unless a test says otherwise.
    discovery: Vec<String>,
    /// The running process.
    process: Option<NodeProcess>,
}

/// A registry and nodes in one temp dir; everything is killed (by PID) on drop.
struct World {
    /// Index 0 is the registry.
    procs: Vec<Proc>,
    /// The cluster token given to every process, if any.
    token: Option<String>,
    /// Extra flags for every node.
    node_args: Vec<String>,
    http: reqwest::Client,
    /// Declared last: removed after the processes are gone.
    dir: tempfile::TempDir,
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for p in &self.procs {
                eprintln!("---- {} ----\n{}", p.log.display(), tail(&p.log, 40));
            }
        }
    }
}

impl World {
    /// A registry (started) and room for nodes.
    fn new(token: Option<&str>, node_args: &[&str]) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("client");
        let node_args = node_args.iter().map(ToString::to_string).collect();
        let mut world = World { procs: Vec::new(), token: token.map(str::to_string), node_args, http, dir };
        let log = world.dir.path().join("registry.log");
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        world.procs.push(Proc {
            addr,
            peer: addr,
            data_dir: PathBuf::new(),
            log,
            discovery: Vec::new(),
            process: None,
        });
        // A reserved port may be taken by another test before the registry binds it: then try another.
        for _ in 0..5 {
            world.procs[0].addr.set_port(reserve_ports(1)[0]);
            world.start(0);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && world.procs[0].process.as_mut().and_then(NodeProcess::exited).is_none() {
                if std::net::TcpStream::connect(world.procs[0].addr).is_ok() {
                    return world;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            world.procs[0].process = None;
        }
        panic!("the registry did not start: {}", tail(&world.procs[0].log, 20));
    }

    /// Restarts, on new ports, every node that exited because a reserved port was taken meanwhile; panics on
    /// any other exit.
    fn restart_port_clashes(&mut self) {
        for i in 1..self.procs.len() {
            let Some(status) = self.procs[i].process.as_mut().and_then(NodeProcess::exited) else { continue };
            let log = tail(&self.procs[i].log, 5);
            assert!(log.contains("Address already in use"), "node {i} exited ({status}):\n{log}");
            let ports = reserve_ports(2);
            self.procs[i].addr.set_port(ports[0]);
            self.procs[i].peer.set_port(ports[1]);
            self.procs[i].process = None;
            self.start(i);
        }
    }

    fn registry_url(&self) -> String {
        format!("http://{}", self.procs[0].addr)
    }

    /// Adds `count` nodes (not started); returns their indexes.
    fn add_nodes(&mut self, count: usize) -> Vec<usize> {
        let ports = reserve_ports(2 * count);
        (0..count)
            .map(|k| {
                let i = self.procs.len();
                self.procs.push(Proc {
                    addr: SocketAddr::from(([127, 0, 0, 1], ports[2 * k])),
                    peer: SocketAddr::from(([127, 0, 0, 1], ports[2 * k + 1])),
                    data_dir: self.dir.path().join(format!("node{i}")),
                    log: self.dir.path().join(format!("node{i}.log")),
                    discovery: vec!["--registry-address".to_string(), self.registry_url()],
                    process: None,
                });
                i
            })
            .collect()
    }

    /// The command line of process `i`.
    fn command(&self, i: usize, token: Option<&str>) -> Command {
        let p = &self.procs[i];
        let mut command = Command::new(TALLY);
        if i == 0 {
            command.arg("registry").args(["--listen", &p.addr.to_string(), "--ttl-ms", TTL_MS]);
        } else {
            command
                .arg("node")
                .args(&p.discovery)
                .args(["--listen-client", &p.addr.to_string(), "--listen-peer", &p.peer.to_string()])
                .arg("--data-dir")
                .arg(&p.data_dir)
                .args(["--tick-ms", "20", "--promote-after", "200ms"])
                .args(&self.node_args);
        }
        match token {
            Some(token) => command.env("TALLY_CLUSTER_TOKEN", token),
            None => command.env_remove("TALLY_CLUSTER_TOKEN"),
        };
        let log = File::options().create(true).append(true).open(&p.log).expect("open log");
        command.stdin(Stdio::null()).stdout(log.try_clone().expect("log")).stderr(log);
        command.env("NO_COLOR", "1").env("RUST_LOG", "info");
        command
    }

    /// Starts process `i` with the world's token.
    fn start(&mut self, i: usize) {
        let token = self.token.clone();
        self.start_with_token(i, token.as_deref());
    }

    /// Starts process `i` with `token`.
    fn start_with_token(&mut self, i: usize, token: Option<&str>) {
        assert!(self.procs[i].process.is_none(), "process {i} already runs");
        let child = self.command(i, token).spawn().unwrap_or_else(|e| panic!("cannot start {TALLY}: {e}"));
        self.procs[i].process = Some(NodeProcess::new(child));
    }

    /// SIGKILLs process `i`.
    fn kill(&mut self, i: usize) {
        self.procs[i].process.take().expect("running").kill();
    }

    /// `/v1/cluster` of node `i`, if it answers.
    async fn view(&self, i: usize) -> Option<View> {
        let url = format!("http://{}/v1/cluster", self.procs[i].addr);
        let answer = self.http.get(url).send().await.ok()?;
        answer.json::<View>().await.ok()
    }

    /// The views of every running node.
    async fn views(&self) -> Vec<View> {
        let mut views = Vec::new();
        for i in 1..self.procs.len() {
            if self.procs[i].process.is_some() {
                views.extend(self.view(i).await);
            }
        }
        views
    }

    /// Waits until `check` holds for the views of the running nodes.
    async fn wait_for(&mut self, what: &str, check: impl Fn(&[View]) -> bool) -> Vec<View> {
        let deadline = Instant::now() + SHAPE_TIMEOUT;
        loop {
            self.restart_port_clashes();
            let views = self.views().await;
            if check(&views) {
                return views;
            }
            assert!(Instant::now() < deadline, "not reached within {SHAPE_TIMEOUT:?}: {what}; views: {views:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Writes `key` through node `i`, retrying for up to [`SHAPE_TIMEOUT`] while the cluster cannot take it
    /// (an election under way on a loaded machine answers 503 or 504; every write here is idempotent, so a
    /// retry after an unknown outcome does no harm); the index, or the last reason it failed.
    async fn put(&self, i: usize, key: &str, value: &str) -> Result<u64, String> {
        let deadline = Instant::now() + SHAPE_TIMEOUT;
        loop {
            match self.put_once(i, key, value).await {
                Ok(index) => return Ok(index),
                Err(error) if Instant::now() >= deadline => return Err(error),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// One attempt of [`World::put`].
    async fn put_once(&self, i: usize, key: &str, value: &str) -> Result<u64, String> {
        let url = format!("http://{}/v1/kv/{key}", self.procs[i].addr);
        let answer = self.http.put(url).body(value.to_string()).send().await.map_err(|e| e.to_string())?;
        let status = answer.status();
        let body: serde_json::Value = answer.json().await.map_err(|e| e.to_string())?;
        match body["index"].as_u64() {
            Some(index) if status.is_success() => Ok(index),
            _ => Err(format!("{status} {body}")),
        }
    }

    /// A stale read of `key` on node `i`.
    async fn read(&self, i: usize, key: &str) -> Option<String> {
        let url = format!("http://{}/v1/kv/{key}?consistency=stale", self.procs[i].addr);
        let answer = self.http.get(url).send().await.ok()?;
        if answer.status() != 200 {
            return None;
        }
        answer.text().await.ok()
    }
}

/// Every running node answers, knows the same leader and cluster id, and the leader's membership has
/// `voters` voters and `learners` learners, all of them running nodes.
fn one_cluster(views: &[View], nodes: usize, voters: usize, learners: usize) -> bool {
    let Some(leader) = views.iter().find(|v| v.role == "leader") else { return false };
    views.len() == nodes
        && views
            .iter()
            .all(|v| v.leader == leader.leader && v.cluster_id.is_some() && v.cluster_id == leader.cluster_id)
        && leader.with_role("voter").len() == voters
        && leader.with_role("learner").len() == learners
        && views.iter().all(|v| leader.members.iter().any(|m| m.id == v.id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_started_at_once_form_exactly_one_cluster_twenty_times() {
    let start = Instant::now();
    for round in 0..20 {
        let mut world = World::new(None, &[]);
        let nodes = world.add_nodes(5);
        for &i in &nodes {
            world.start(i); // all five at once: they race for the bootstrap claim
        }
        let views = world.wait_for("one cluster of 3 voters and 2 learners", |v| one_cluster(v, 5, 3, 2)).await;
        let leaders = views.iter().filter(|v| v.role == "leader").count();
        assert_eq!(leaders, 1, "round {round}: more than one leader: {views:#?}");
        // It serves: a write through a learner is forwarded and readable on every node.
        let index = world.put(nodes[4], "round", &round.to_string()).await.expect("write");
        world.wait_for("the write applied everywhere", |v| v.iter().all(|v| v.applied_index >= index)).await;
        for &i in &nodes {
            assert_eq!(world.read(i, "round").await, Some(round.to_string()));
        }
    }
    eprintln!("20 rounds in {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sixth_node_catches_up_by_snapshot_and_replaces_a_dead_voter() {
    let mut world = World::new(
        None,
        &["--snapshot-interval-entries", "50", "--snapshot-keep-entries", "10", "--dead-node-timeout", "3s"],
    );
    let first = world.add_nodes(5);
    for &i in &first {
        world.start(i);
    }
    world.wait_for("3 voters and 2 learners", |v| one_cluster(v, 5, 3, 2)).await;
    for n in 0..200 {
        world.put(first[n % 5], &format!("k{n:03}"), &format!("v{n}")).await.expect("write");
    }

    // A sixth node joins late: the log it needs is compacted, so it catches up from a snapshot.
    let late = world.add_nodes(1)[0];
    world.start(late);
    let views = world.wait_for("the sixth node is a learner", |v| one_cluster(v, 6, 3, 3)).await;
    let leader_commit = views.iter().find(|v| v.role == "leader").expect("leader").commit_index;
    world.wait_for("the sixth node applied everything", |v| v.iter().all(|v| v.applied_index >= leader_commit)).await;
    let late_view = world.view(late).await.expect("the sixth node answers");
    assert!(late_view.snapshot_index > 0, "the sixth node did not install a snapshot: {late_view:?}");
    assert_eq!(world.read(late, "k000").await.as_deref(), Some("v0"));

    // A voter that is not the leader dies for good. Writes go on throughout (a majority remains); after the
    // dead-node timeout it is removed and a learner promoted, so there are three voters again.
    let leader = world.views().await.into_iter().find(|v| v.role == "leader").expect("leader");
    let mut victim = None;
    for &i in &first {
        let id = world.view(i).await.expect("a node answers").id;
        if id != leader.id && leader.with_role("voter").contains(&id) {
            victim = Some((i, id));
            break;
        }
    }
    let (victim, victim_id) = victim.expect("a voter that is not the leader");
    world.kill(victim);
    let killed_at = Instant::now();
    let survivors: Vec<usize> = first.iter().copied().filter(|&i| i != victim).chain([late]).collect();
    let mut n = 0;
    loop {
        let target = survivors[n % survivors.len()];
        world.put(target, &format!("during{n}"), "x").await.unwrap_or_else(|e| panic!("write {n} failed: {e}"));
        n += 1;
        let views = world.views().await;
        if one_cluster(&views, 5, 3, 2) {
            assert!(views.iter().all(|v| v.members.iter().all(|m| m.id != victim_id)), "{victim_id} still a member");
            break;
        }
        assert!(killed_at.elapsed() < SHAPE_TIMEOUT, "the dead voter was not replaced: {views:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(killed_at.elapsed() >= Duration::from_secs(3), "removed before the dead-node timeout");
    eprintln!("dead voter replaced after {:?}, {n} writes acknowledged meanwhile", killed_at.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_registry_nodes_join_a_bootstrapped_node_and_a_moved_node_updates_its_address() {
    let mut world = World::new(None, &[]);
    let nodes = world.add_nodes(3);
    let first_url = format!("http://{}", world.procs[nodes[0]].addr);
    world.procs[nodes[0]].discovery = vec!["--bootstrap".to_string()];
    for &i in &nodes[1..] {
        world.procs[i].discovery = vec!["--join".to_string(), first_url.clone()];
    }
    world.kill(0); // no registry at all
    for &i in &nodes {
        world.start(i);
    }
    world.wait_for("three voters", |v| one_cluster(v, 3, 3, 0)).await;

    // A node stops and comes back on other ports with its data: the join call updates its addresses and
    // it catches up as itself.
    let moved = nodes[2];
    let id = world.view(moved).await.expect("answers").id;
    world.procs[moved].process.take().expect("running").terminate();
    world.put(nodes[0], "while-away", "yes").await.expect("a majority remains");
    let ports = reserve_ports(2);
    world.procs[moved].addr.set_port(ports[0]);
    world.procs[moved].peer.set_port(ports[1]);
    world.start(moved);
    let new_peer_url = format!("http://{}", world.procs[moved].peer);
    world
        .wait_for("the moved node is back as itself at its new address", |views| {
            one_cluster(views, 3, 3, 0)
                && views.iter().any(|v| v.id == id)
                && views.iter().all(|v| {
                    v.role != "leader"
                        || v.members.iter().any(|m| m.id == id && m.peer_url.as_deref() == Some(&new_peer_url))
                })
        })
        .await;
    let mut caught_up = false;
    for _ in 0..200 {
        if world.read(moved, "while-away").await.as_deref() == Some("yes") {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(caught_up, "the moved node did not catch up");

    // A member loses its data and comes back under its old id: the cluster refuses it (another incarnation),
    // and with no membership known it votes for nobody, so it cannot help elect a leader that lacks writes.
    let wiped = nodes[1];
    let wiped_id = world.view(wiped).await.expect("answers").id;
    world.procs[wiped].process.take().expect("running").terminate();
    std::fs::remove_dir_all(&world.procs[wiped].data_dir).expect("wipe the data dir");
    world.procs[wiped].discovery.extend(["--id".to_string(), wiped_id.clone()]);
    world.start(wiped);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !tail(&world.procs[wiped].log, 200).contains("incarnation_mismatch") {
        assert!(Instant::now() < deadline, "the wiped node was not refused:\n{}", tail(&world.procs[wiped].log, 30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let view = world.view(wiped).await.expect("the wiped node answers");
    assert!(view.members.is_empty() && view.commit_index == 0, "the wiped node must know nothing: {view:?}");
    world.put(nodes[0], "after-wipe", "ok").await.expect("the others still serve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_registrations_get_clear_errors_and_the_registry_stays_healthy() {
    let world = World::new(None, &[]);
    let base = world.registry_url();
    // A connection per request: the registry answers an oversized body before reading it all and closes that
    // connection, which a pooled client could otherwise pick for the next request.
    let http = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().expect("client");
    let put = |id: &str, body: Vec<u8>| http.put(format!("{base}/v1/nodes/{id}")).body(body).send();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("n1", b"{not json".to_vec(), 400),
        ("n1", br#"{"client_url": "http://a:1"}"#.to_vec(), 400),
        ("n1", br#"{"client_url": "ftp://a:1", "peer_url": "http://a:2"}"#.to_vec(), 400),
        ("n1", br#"{"client_url": "http://a", "peer_url": "http://a:2"}"#.to_vec(), 400),
        ("bad id!", br#"{"client_url": "http://a:1", "peer_url": "http://a:2"}"#.to_vec(), 400),
        ("n1", vec![b' '; 200 * 1024], 413),
    ];
    for (id, body, status) in cases {
        let answer = put(id, body).await.expect("the registry answers");
        assert_eq!(answer.status().as_u16(), status, "registration of {id:?}");
        let error: serde_json::Value = answer.json().await.expect("a JSON error");
        assert!(error["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "no message: {error}");
    }
    let answer = http.delete(format!("{base}/v1/nodes/n404")).send().await.expect("answers");
    assert_eq!(answer.status(), 404, "leaving with an unknown id");
    // Still healthy: a good registration works and is listed.
    let good = br#"{"client_url": "http://127.0.0.1:1", "peer_url": "http://127.0.0.1:2"}"#.to_vec();
    assert_eq!(put("n1", good).await.expect("answers").status(), 200);
    let listed: serde_json::Value =
        http.get(format!("{base}/v1/nodes")).send().await.expect("answers").json().await.expect("json");
    assert_eq!(listed["nodes"][0]["id"], "n1", "{listed}");
    assert_eq!(http.get(format!("{base}/livez")).send().await.expect("answers").status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_serves_without_the_registry_which_refills_within_a_ttl() {
    let mut world = World::new(None, &[]);
    let nodes = world.add_nodes(3);
    for &i in &nodes {
        world.start(i);
    }
    let views = world.wait_for("three voters", |v| one_cluster(v, 3, 3, 0)).await;
    let cluster_id = views[0].cluster_id.clone();

    world.kill(0);
    for n in 0..20 {
        let index = world.put(nodes[n % 3], &format!("r{n}"), "v").await.expect("write without the registry");
        assert!(index > 0);
    }
    assert_eq!(world.read(nodes[1], "r0").await.as_deref(), Some("v"));

    // Back on the same port, empty: the nodes' heartbeats fill it within one TTL, and the cluster id they
    // carry restores the bootstrap claim, so a new node would join this cluster rather than form another.
    world.start(0);
    let restarted = Instant::now();
    let deadline = restarted + Duration::from_secs(10);
    loop {
        let nodes_url = format!("{}/v1/nodes", world.registry_url());
        let listed = match world.http.get(nodes_url).send().await {
            Ok(answer) => answer.json::<serde_json::Value>().await.ok(),
            Err(_) => None,
        };
        let count = listed.as_ref().and_then(|l| l["nodes"].as_array()).map_or(0, Vec::len);
        if count == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "registry not refilled: {listed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refilled = restarted.elapsed();
    eprintln!("registry refilled {refilled:?} after its restart (TTL {TTL_MS} ms)");
    assert!(refilled < Duration::from_millis(2_000), "refilled after {refilled:?}, TTL is {TTL_MS} ms");
    let claim: serde_json::Value = world
        .http
        .get(format!("{}/v1/bootstrap", world.registry_url()))
        .send()
        .await
        .expect("bootstrap")
        .json()
        .await
        .expect("json");
    assert_eq!(claim["cluster_id"].as_str(), cluster_id.as_deref(), "the registry must know the existing cluster");

    // A new node now joins the existing cluster.
    let late = world.add_nodes(1)[0];
    world.start(late);
    world.wait_for("the new node joined the same cluster", |v| one_cluster(v, 4, 3, 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_without_the_cluster_token_are_refused() {
    let mut world = World::new(Some("s3cret-token"), &[]);
    let nodes = world.add_nodes(3);
    for &i in &nodes[..2] {
        world.start(i);
    }
    // A lone voter waits for two caught-up learners before promoting (a two-voter cluster stops at any failure).
    world.wait_for("a voter and a learner with the token", |v| one_cluster(v, 2, 1, 1)).await;

    // The registry refuses a node with the wrong token, which says so and exits.
    world.start_with_token(nodes[2], Some("wrong"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = world.procs[nodes[2]].process.as_mut().and_then(NodeProcess::exited) {
            break status;
        }
        assert!(Instant::now() < deadline, "a node with the wrong token kept running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    let log = tail(&world.procs[nodes[2]].log, 20);
    assert!(log.contains("registry refused"), "no clear message: {log}");
    world.procs[nodes[2]].process = None;

    // The join call refuses a request without the token (401 with a clear message).
    let member = world.procs[nodes[0]].addr;
    let body = serde_json::json!({ "id": "n77", "peer_url": "http://127.0.0.1:1", "client_url": "http://127.0.0.1:2" });
    let answer = world.http.post(format!("http://{member}/v1/cluster/join")).json(&body).send().await.expect("join");
    assert_eq!(answer.status(), 401);
    let error: serde_json::Value = answer.json().await.expect("json");
    assert_eq!(error["error"]["code"], "unauthorized", "{error}");
    let answer = world
        .http
        .post(format!("http://{member}/v1/cluster/join"))
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .expect("join");
    assert_eq!(answer.status(), 401);

    // With the right token, the same node joins.
    world.start(nodes[2]);
    world.wait_for("three voters", |v| one_cluster(v, 3, 3, 0)).await;
}
