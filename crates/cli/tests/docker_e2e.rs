//! End to end across containers: a registry and five nodes of the `tally` image on a network of their own,
//! with clients writing and reading all along, through the faults only separate hosts show.
//!
//! ```text
//!  phases: kill the leader, restart it | disconnect the leader, reconnect it | partition 2 | 3, heal |
//!          rolling restart of every node | registry stopped for a while
//!  after each: every acknowledged write is readable, one leader, every node at the same applied index and
//!              state checksum; the longest gap between acknowledged writes (the failover time) is printed
//! ```
//!
//! Ignored by `cargo test`: `.ci/run` runs it whenever a Docker engine answers, after building the image with
//! `docker/build-image.sh` (`TALLY_E2E_IMAGE` names another image), once per election mode
//! (`TALLY_E2E_ELECTION=raft|bully`, default raft). Everything it creates is named with its run id and removed
//! at the end, even when it fails.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// The nodes' election mode, `raft` or `bully`, from `TALLY_E2E_ELECTION`.
fn election_mode() -> String {
    let mode = std::env::var("TALLY_E2E_ELECTION").unwrap_or_else(|_| "raft".to_string());
    assert!(mode == "raft" || mode == "bully", "TALLY_E2E_ELECTION={mode}: expected raft or bully");
    mode
}

/// Nodes in the cluster: five voters, so a 2 | 3 partition leaves a majority.
const NODES: usize = 5;
/// How long the cluster may take to reach any expected state.
const WAIT: Duration = Duration::from_secs(60);
/// The cluster token of the registry and every node: containers listen on their network's address, and a node
/// whose peer port faces a network refuses to start without a token or mutual TLS.
const CLUSTER_TOKEN: &str = "docker end-to-end token";

/// The registry's TTL.
const TTL_MS: u64 = 2_000;

/// `/v1/cluster` (the fields used here).
#[derive(Clone, Debug, Deserialize)]
struct View {
    id: String,
    role: String,
    term: u64,
    leader: Option<String>,
    applied_index: u64,
    state_checksum: String,
    members: Vec<Member>,
}

/// A member in `/v1/cluster`.
#[derive(Clone, Debug, Deserialize)]
struct Member {
    role: String,
}

/// Runs `docker ARGS`; its trimmed stdout, or stderr as the error.
fn docker(args: &[&str]) -> Result<String, String> {
    let output = Command::new("docker").args(args).output().map_err(|e| format!("cannot run docker: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(format!("docker {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// Like [`docker`], panicking on failure.
fn must(args: &[&str]) -> String {
    docker(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Everything the run creates, removed on drop (also when the test panics).
struct Resources {
    run: String,
    containers: Mutex<Vec<String>>,
    networks: Mutex<Vec<String>>,
    volumes: Mutex<Vec<String>>,
}

impl Drop for Resources {
    fn drop(&mut self) {
        let containers = self.containers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if std::thread::panicking() {
            for c in &containers {
                let logs = Command::new("docker").args(["logs", "--tail", "30", c]).output();
                if let Ok(out) = logs {
                    eprintln!(
                        "---- {c} ----\n{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
        for c in &containers {
            let _ = docker(&["rm", "-f", "-v", c]);
        }
        for n in self.networks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            let _ = docker(&["network", "rm", n]);
        }
        for v in self.volumes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            let _ = docker(&["volume", "rm", "-f", v]);
        }
        eprintln!("removed every container, network and volume of run {}", self.run);
    }
}

/// The cluster under test.
struct Cluster {
    res: Resources,
    image: String,
    /// The main network.
    net: String,
    /// Container names: the registry, then the nodes.
    registry: String,
    nodes: Vec<String>,
    /// Client base URLs by node index (container addresses, refreshed after every change).
    urls: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

impl Cluster {
    fn start() -> Cluster {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let run = format!("tally-e2e-{}-{}", std::process::id(), nanos % 100_000);
        let image = std::env::var("TALLY_E2E_IMAGE").unwrap_or_else(|_| "tally".to_string());
        docker(&["image", "inspect", &image])
            .unwrap_or_else(|_| panic!("no image {image}: build it first with `bash docker/build-image.sh {image}`"));
        let res = Resources {
            run: run.clone(),
            containers: Mutex::new(Vec::new()),
            networks: Mutex::new(Vec::new()),
            volumes: Mutex::new(Vec::new()),
        };
        let net = format!("{run}-net");
        must(&["network", "create", &net]);
        res.networks.lock().expect("lock").push(net.clone());
        let registry = format!("{run}-registry");
        let nodes = (1..=NODES).map(|i| format!("{run}-n{i}")).collect();
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(8)).build().expect("client");
        let cluster = Cluster { res, image, net, registry, nodes, urls: Arc::new(Mutex::new(Vec::new())), http };
        cluster.run_registry();
        for i in 0..NODES {
            cluster.run_node(i);
        }
        cluster
    }

    fn track(&self, container: &str) {
        self.res.containers.lock().expect("lock").push(container.to_string());
    }

    fn run_registry(&self) {
        let ttl = TTL_MS.to_string();
        let token = format!("TALLY_CLUSTER_TOKEN={CLUSTER_TOKEN}");
        let args = [
            "run",
            "-d",
            "--name",
            &self.registry,
            "--network",
            &self.net,
            "--network-alias",
            "registry",
            "-e",
            &token,
        ];
        let tail = [self.image.as_str(), "registry", "--listen", "0.0.0.0:8080", "--ttl-ms", &ttl];
        must(&[&args[..], &tail[..]].concat());
        self.track(&self.registry);
    }

    fn run_node(&self, i: usize) {
        let name = &self.nodes[i];
        let alias = format!("n{}", i + 1);
        let volume = format!("{name}-data");
        self.res.volumes.lock().expect("lock").push(volume.clone());
        let mount = format!("{volume}:/data");
        let client = format!("TALLY_ADVERTISE_CLIENT=http://{alias}:7001");
        let peer = format!("TALLY_ADVERTISE_PEER=http://{alias}:7101");
        let election = format!("TALLY_ELECTION={}", election_mode());
        let voters = NODES.to_string();
        let token = format!("TALLY_CLUSTER_TOKEN={CLUSTER_TOKEN}");
        must(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            &self.net,
            "--network-alias",
            &alias,
            "-v",
            &mount,
            "-e",
            &client,
            "-e",
            &peer,
            "-e",
            &election,
            "-e",
            &token,
            &self.image,
            "node",
            "--registry-address",
            "http://registry:8080",
            "--voters",
            &voters,
            "--promote-after",
            "1s",
        ]);
        self.track(name);
    }

    /// The address of `container` on any network it is on.
    fn ip(&self, container: &str) -> Option<String> {
        let format = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}";
        let out = docker(&["inspect", "-f", format, container]).ok()?;
        out.split_whitespace().next().map(str::to_string)
    }

    /// Refreshes the client URLs of the nodes (addresses change when containers restart or move).
    fn refresh_urls(&self) {
        let urls = self.nodes.iter().map(|n| self.ip(n).map_or_else(String::new, |ip| format!("http://{ip}:7001")));
        *self.urls.lock().expect("lock") = urls.collect();
    }

    fn url(&self, i: usize) -> String {
        self.urls.lock().expect("lock")[i].clone()
    }

    async fn view(&self, i: usize) -> Option<View> {
        let url = self.url(i);
        if url.is_empty() {
            return None;
        }
        self.http.get(format!("{url}/v1/cluster")).send().await.ok()?.json().await.ok()
    }

    /// Waits until the nodes in `among` agree on one leader (among them), all members of the cluster,
    /// and at the same applied index and state checksum; returns the leader's index in `nodes`.
    async fn wait_converged(&self, among: &[usize], what: &str) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            self.refresh_urls();
            let mut views = Vec::new();
            for &i in among {
                views.push(self.view(i).await);
            }
            if let Some(leader) = converged(&views) {
                return among[leader];
            }
            assert!(Instant::now() < deadline, "{what}: not converged within {WAIT:?}: {views:#?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every acknowledged write, read back from the leader (paged, linearizable).
    async fn check_writes(&self, leader: usize, acked: &BTreeMap<String, String>) {
        let mut found = BTreeMap::new();
        let mut after: Option<String> = None;
        loop {
            let mut url = format!("{}/v1/kv?prefix=w&limit=1000", self.url(leader));
            if let Some(after) = &after {
                url.push_str(&format!("&after={after}"));
            }
            let page: serde_json::Value =
                self.http.get(&url).send().await.expect("list").json().await.expect("a JSON page");
            let entries = page["items"].as_array().cloned().unwrap_or_default();
            for entry in &entries {
                let key = entry["key"].as_str().expect("key").to_string();
                found.insert(key, entry["value"].as_str().unwrap_or_default().to_string());
            }
            after = entries.last().map(|e| e["key"].as_str().expect("key").to_string());
            if page["more"] != true {
                break;
            }
        }
        for (key, value) in acked {
            assert_eq!(found.get(key), Some(value), "acknowledged write {key} lost or changed");
        }
    }
}

/// Index (in `views`) of the leader if every view answered and they agree: one leader, in the highest term,
/// known to all; every node a voter; the same applied index and checksum everywhere.
fn converged(views: &[Option<View>]) -> Option<usize> {
    let views: Vec<&View> = views.iter().map(Option::as_ref).collect::<Option<_>>()?;
    let leaders: Vec<usize> = (0..views.len()).filter(|&i| views[i].role == "leader").collect();
    let &[leader] = leaders.as_slice() else { return None };
    let l = views[leader];
    let agree = views.iter().all(|v| {
        v.leader.as_deref() == Some(&l.id)
            && v.term == l.term
            && v.applied_index == l.applied_index
            && v.state_checksum == l.state_checksum
    });
    let voters = l.members.iter().filter(|m| m.role == "voter").count();
    (agree && voters == NODES).then_some(leader)
}

/// The clients: writers of unique keys and readers of acknowledged ones, against any node, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    /// Writers hold off while set (so the convergence checks see a still cluster).
    paused: Arc<AtomicBool>,
    /// Writes sent and not answered yet.
    in_flight: Arc<AtomicU64>,
    acked: Arc<Mutex<BTreeMap<String, String>>>,
    /// Milliseconds since `start` of each acknowledged write.
    ack_times: Arc<Mutex<Vec<u64>>>,
    failures: Arc<AtomicU64>,
    bad_reads: Arc<Mutex<Vec<String>>>,
    start: Instant,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(urls: Arc<Mutex<Vec<String>>>, http: reqwest::Client) -> Load {
        let mut load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            paused: Arc::default(),
            in_flight: Arc::default(),
            acked: Arc::default(),
            ack_times: Arc::default(),
            failures: Arc::default(),
            bad_reads: Arc::default(),
            start: Instant::now(),
            tasks: Vec::new(),
        };
        for writer in 0..3 {
            let (stop, acked, times, failures) =
                (load.stop.clone(), load.acked.clone(), load.ack_times.clone(), load.failures.clone());
            let (paused, in_flight) = (load.paused.clone(), load.in_flight.clone());
            let (urls, http, start) = (urls.clone(), http.clone(), load.start);
            load.tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    in_flight.fetch_add(1, Ordering::SeqCst);
                    if paused.load(Ordering::SeqCst) {
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    let targets = urls.lock().expect("lock").clone();
                    let target = &targets[(n as usize + writer) % targets.len()];
                    let (key, value) = (format!("w{writer}-{n:06}"), format!("v{writer}-{n}"));
                    n += 1;
                    let sent = http.put(format!("{target}/v1/kv/{key}")).body(value.clone()).send().await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    match sent {
                        Ok(answer) if answer.status() == 200 => {
                            acked.lock().expect("lock").insert(key, value);
                            times.lock().expect("lock").push(start.elapsed().as_millis() as u64);
                        }
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }));
        }
        let (stop, acked, bad) = (load.stop.clone(), load.acked.clone(), load.bad_reads.clone());
        load.tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let sample = {
                    let acked = acked.lock().expect("lock");
                    let len = acked.len().max(1);
                    acked.iter().nth(n * 7919 % len).map(|(k, v)| (k.clone(), v.clone()))
                };
                let targets = urls.lock().expect("lock").clone();
                let target = &targets[n % targets.len()];
                if let Some((key, value)) = sample {
                    // A linearizable read that succeeds must see the acknowledged value.
                    if let Ok(answer) = http.get(format!("{target}/v1/kv/{key}")).send().await {
                        let status = answer.status();
                        let text = answer.text().await.unwrap_or_default();
                        if (status == 200 && text != value) || status == 404 {
                            bad.lock().expect("lock").push(format!("{target} {key}: {status} {text}"));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
        load
    }

    /// Holds the writers off and waits for the writes in flight to be answered.
    async fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + WAIT;
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            assert!(Instant::now() < deadline, "writes still in flight after {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Lets the writers go on.
    fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    fn acked(&self) -> BTreeMap<String, String> {
        self.acked.lock().expect("lock").clone()
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// The longest time without an acknowledged write between `from_ms` and now: the failover time.
    fn longest_gap(&self, from_ms: u64) -> Duration {
        let times = self.ack_times.lock().expect("lock").clone();
        let now = self.now_ms();
        let mut previous = from_ms;
        let mut longest = 0;
        for &t in times.iter().filter(|&&t| t >= from_ms) {
            longest = longest.max(t - previous);
            previous = t;
        }
        Duration::from_millis(longest.max(now - previous))
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Waits until writes are acknowledged again after a fault (at least `count` new ones).
async fn wait_for_writes(load: &Load, count: usize, what: &str) {
    let before = load.ack_times.lock().expect("lock").len();
    let deadline = Instant::now() + WAIT;
    while load.ack_times.lock().expect("lock").len() < before + count {
        assert!(Instant::now() < deadline, "{what}: no writes acknowledged within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The checks after every phase; prints the phase's failover time.
async fn after_phase(cluster: &Cluster, load: &Load, phase: &str, started_ms: u64) {
    let gap = load.longest_gap(started_ms);
    load.pause().await;
    let leader = cluster.wait_converged(&(0..NODES).collect::<Vec<_>>(), phase).await;
    cluster.check_writes(leader, &load.acked()).await;
    let bad = load.bad_reads.lock().expect("lock").clone();
    assert!(bad.is_empty(), "{phase}: reads that missed acknowledged writes: {bad:?}");
    load.resume();
    println!(
        "phase {phase:<28} failover (longest gap between acknowledged writes) {:>6} ms; {} writes acknowledged so far",
        gap.as_millis(),
        load.acked().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine and the tally image; .ci/run runs it"]
async fn faults_across_containers() {
    let started = Instant::now();
    let cluster = Cluster::start();
    let leader = cluster.wait_converged(&(0..NODES).collect::<Vec<_>>(), "formation").await;
    println!(
        "formed: {NODES} voters (election {}), leader {}, after {:?}",
        election_mode(),
        cluster.nodes[leader],
        started.elapsed()
    );
    // The clients give up on a request after 2 s and go on with the next node, as a client with a list of
    // endpoints would; a write that timed out is not acknowledged (it may or may not have been applied).
    let client_http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().expect("client");
    let load = Load::start(cluster.urls.clone(), client_http);
    wait_for_writes(&load, 50, "initial load").await;

    // 1. Kill the leader's container, then start it again.
    let t = load.now_ms();
    let leader = cluster.wait_leader(&(0..NODES).collect::<Vec<_>>(), None).await;
    must(&["kill", &cluster.nodes[leader]]);
    let killed = Instant::now();
    let others: Vec<usize> = (0..NODES).filter(|&i| i != leader).collect();
    cluster.wait_leader(&others, Some(leader)).await;
    println!("kill leader: a new leader is known to the other four {:?} after the kill", killed.elapsed());
    wait_for_writes(&load, 50, "after killing the leader").await;
    must(&["start", &cluster.nodes[leader]]);
    after_phase(&cluster, &load, "kill leader, restart", t).await;

    // 2. Disconnect the leader from the network: the majority elects another and serves; the isolated node
    //    cannot commit a write. Then reconnect it. It is moved to a network of its own, where no peer is but
    //    the host still reaches it, so a write can be sent to it.
    let t = load.now_ms();
    let leader = cluster.wait_leader(&(0..NODES).collect::<Vec<_>>(), None).await;
    let isolated = cluster.nodes[leader].clone();
    let alone = format!("{}-alone", cluster.res.run);
    must(&["network", "create", &alone]);
    cluster.res.networks.lock().expect("lock").push(alone.clone());
    must(&["network", "disconnect", &cluster.net, &isolated]);
    must(&["network", "connect", &alone, &isolated]);
    let disconnected = Instant::now();
    let others: Vec<usize> = (0..NODES).filter(|&i| i != leader).collect();
    let new_leader = cluster.wait_leader(&others, Some(leader)).await;
    println!("disconnect leader: a new leader is known to the other four {:?} after", disconnected.elapsed());
    wait_for_writes(&load, 50, "after disconnecting the leader").await;
    assert_ne!(new_leader, leader);
    let isolated_write = cluster.http.put(format!("{}/v1/kv/isolated", cluster.url(leader))).body("x").send().await;
    let answer = isolated_write.map(|a| a.status().as_u16());
    assert!(!matches!(answer, Ok(200)), "the isolated node acknowledged a write");
    println!("a write sent to the isolated node: {answer:?} (not acknowledged)");
    let alias = format!("n{}", leader + 1);
    must(&["network", "disconnect", &alone, &isolated]);
    must(&["network", "connect", "--alias", &alias, &cluster.net, &isolated]);
    after_phase(&cluster, &load, "disconnect leader, reconnect", t).await;

    // 3. Partition 2 | 3: the leader and one other node move to a network of their own.
    let t = load.now_ms();
    let leader = cluster.wait_leader(&(0..NODES).collect::<Vec<_>>(), None).await;
    let minority = [leader, (leader + 1) % NODES];
    let side = format!("{}-side", cluster.res.run);
    must(&["network", "create", &side]);
    cluster.res.networks.lock().expect("lock").push(side.clone());
    for &i in &minority {
        let alias = format!("n{}", i + 1);
        must(&["network", "disconnect", &cluster.net, &cluster.nodes[i]]);
        must(&["network", "connect", "--alias", &alias, &side, &cluster.nodes[i]]);
    }
    let partitioned = Instant::now();
    let majority: Vec<usize> = (0..NODES).filter(|i| !minority.contains(i)).collect();
    let majority_leader = cluster.wait_leader(&majority, Some(leader)).await;
    println!("partition: a new leader is known to the majority {:?} after", partitioned.elapsed());
    wait_for_writes(&load, 50, "during the partition").await;
    let minority_write =
        cluster.http.put(format!("{}/v1/kv/minority", cluster.url(minority[1]))).body("x").send().await;
    let answer = minority_write.map(|a| a.status().as_u16());
    assert!(!matches!(answer, Ok(200)), "the minority acknowledged a write");
    println!("a write sent to the minority: {answer:?} (not acknowledged)");
    assert!(majority.contains(&majority_leader));
    for &i in &minority {
        let alias = format!("n{}", i + 1);
        must(&["network", "disconnect", &side, &cluster.nodes[i]]);
        must(&["network", "connect", "--alias", &alias, &cluster.net, &cluster.nodes[i]]);
    }
    after_phase(&cluster, &load, "partition 2 | 3, heal", t).await;

    // 4. Rolling restart: every node in turn (SIGTERM, start), the cluster converging in between.
    let t = load.now_ms();
    for i in 0..NODES {
        must(&["restart", "-t", "20", &cluster.nodes[i]]);
        let all: Vec<usize> = (0..NODES).collect();
        let leader = cluster.wait_leader(&all, None).await;
        println!("rolling restart: {} back, leader {}", cluster.nodes[i], cluster.nodes[leader]);
    }
    after_phase(&cluster, &load, "rolling restart", t).await;

    // 5. The registry stops for a while: the cluster keeps serving; back, it is full again within a TTL.
    let t = load.now_ms();
    must(&["stop", &cluster.registry]);
    tokio::time::sleep(Duration::from_millis(3 * TTL_MS)).await;
    wait_for_writes(&load, 50, "without the registry").await;
    must(&["start", &cluster.registry]);
    let registry = format!("http://{}:8080/v1/nodes", cluster.ip(&cluster.registry).expect("registry address"));
    let back = Instant::now();
    loop {
        let listed: Option<serde_json::Value> =
            match cluster.http.get(&registry).bearer_auth(CLUSTER_TOKEN).send().await {
                Ok(answer) => answer.json().await.ok(),
                Err(_) => None,
            };
        if listed.as_ref().and_then(|l| l["nodes"].as_array()).is_some_and(|n| n.len() == NODES) {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(10), "registry not refilled: {listed:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("registry refilled {:?} after its restart (TTL {TTL_MS} ms)", back.elapsed());
    after_phase(&cluster, &load, "registry stopped, started", t).await;

    let failures = load.failures.load(Ordering::Relaxed);
    let acked = load.acked().len();
    load.stop().await;
    println!("done in {:?}: {acked} writes acknowledged, {failures} refused or unanswered", started.elapsed());
}

impl Cluster {
    /// Waits until one node of `among` (not `old`, if given) leads, as every node of `among` sees it.
    async fn wait_leader(&self, among: &[usize], old: Option<usize>) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            self.refresh_urls();
            let mut views = Vec::new();
            for &i in among {
                views.push(self.view(i).await);
            }
            let leader = views.iter().flatten().find(|v| v.role == "leader").map(|v| v.id.clone());
            if let Some(leader) = leader
                && views.iter().all(|v| v.as_ref().is_some_and(|v| v.leader.as_deref() == Some(&leader)))
            {
                let position = views.iter().position(|v| v.as_ref().is_some_and(|v| v.id == leader)).expect("leader");
                if Some(among[position]) != old {
                    return among[position];
                }
            }
            assert!(Instant::now() < deadline, "no new leader among {among:?} within {WAIT:?}: {views:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
