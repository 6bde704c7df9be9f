//! Disk full on a real file system: three in-process nodes on loopback (port 0), node 1's data directory
//! on a small tmpfs this test mounts (it needs root or CAP_SYS_ADMIN, as in CI; without them it fails and
//! says so). A filler file takes the tmpfs's free space under load: node 1 raises the `no_space` alarm,
//! writes through it get `507 no_space` or succeed via the leader, reads keep working, and the other nodes
//! keep taking writes. Then the filler is removed: node 1 clears the alarm and catches up with no restart,
//! and every acknowledged write is readable on every node.
//!
//! Every wait is bounded (the whole test well under 60 s); nothing asserts how long anything took.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tally_raft::NodeId;
use tally_server::{InitialMember, Server, ServerConfig};
use tokio::net::TcpListener;

/// The tmpfs node 1 lives on: room for a few of its 64 KiB segments.
const TMPFS_BYTES: u64 = 2 << 20;
/// Small segments, so the disk fills (and a roll comes) after a few hundred writes.
const SEGMENT_BYTES: u64 = 64 << 10;
/// The bound of every wait below.
const BOUND: Duration = Duration::from_secs(20);

/// Mounts a tmpfs of `bytes` at `path` and unmounts it when dropped (also when the test panics).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, bytes: u64) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount(8)");
        assert!(
            output.status.success(),
            "this test mounts a tmpfs and needs root or CAP_SYS_ADMIN (run it as root, as CI does): mount said {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Tmpfs { path: path.to_path_buf() }
    }

    /// Fills the free space with `filler`: writes until the file system says it is full.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).expect("create filler");
        let chunk = vec![0xAB_u8; 4096];
        loop {
            match file.write_all(&chunk) {
                Ok(()) => {}
                Err(error) if error.raw_os_error() == Some(28) => break, // ENOSPC
                Err(error) => panic!("filling the tmpfs: {error}"),
            }
        }
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a server still holding a file open must not leave the mount behind.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

async fn start_cluster(dir: &Path, full_dir: &Path) -> Vec<Server> {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        let client = TcpListener::bind("127.0.0.1:0").await.expect("bind client");
        let peer = TcpListener::bind("127.0.0.1:0").await.expect("bind peer");
        listeners.push((client, peer));
    }
    let members: Vec<InitialMember> = listeners
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| InitialMember {
            id: NodeId(i as u64 + 1),
            peer_url: format!("http://{}", peer.local_addr().expect("addr")),
        })
        .collect();
    let mut servers = Vec::new();
    for (i, (client, peer)) in listeners.into_iter().enumerate() {
        let id = NodeId(i as u64 + 1);
        let data_dir = if i == 0 { full_dir.join("data") } else { dir.join(id.to_string()) };
        let mut config = ServerConfig::new(id, data_dir);
        config.initial_cluster = members.clone();
        config.tick_interval = Duration::from_millis(20);
        config.seed = Some(i as u64 + 41);
        config.segment_bytes = SEGMENT_BYTES;
        servers.push(Server::start_on(config, client, peer).await.expect("server starts"));
    }
    servers
}

/// `PUT key` (a 1000-byte value) at `base`: the status and the JSON body (null if none).
async fn put_on(http: &reqwest::Client, base: &str, key: &str) -> (u16, serde_json::Value) {
    let answer = http.put(format!("{base}/v1/kv/{key}")).body(vec![b'v'; 1000]).send().await.expect("put answers");
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or_default())
}

struct Client {
    http: reqwest::Client,
    bases: Vec<String>,
}

impl Client {
    async fn cluster(&self, i: usize) -> serde_json::Value {
        let answer = self.http.get(format!("{}/v1/cluster", self.bases[i])).send().await.expect("cluster answers");
        answer.json().await.expect("json")
    }

    /// `PUT key` on node `i`: the status and the body.
    async fn put(&self, i: usize, key: &str) -> (u16, serde_json::Value) {
        put_on(&self.http, &self.bases[i], key).await
    }

    async fn stale_status(&self, i: usize, key: &str) -> u16 {
        let url = format!("{}/v1/kv/{key}?consistency=stale", self.bases[i]);
        self.http.get(url).send().await.expect("get answers").status().as_u16()
    }

    async fn alarms(&self, i: usize) -> Vec<String> {
        let view = self.cluster(i).await;
        view["alarms"].as_array().expect("alarms").iter().map(|a| a.as_str().expect("str").to_owned()).collect()
    }

    /// Hands leadership to node `i` (through the current leader) and waits until it leads.
    async fn make_leader(&self, i: usize) {
        let deadline = Instant::now() + BOUND;
        loop {
            let view = self.cluster(i).await;
            if view["role"] == "leader" {
                return;
            }
            if let Some(leader) = view["leader"].as_str().and_then(|id| id.strip_prefix('n')) {
                let leader: usize = leader.parse().expect("node id");
                let url = format!("{}/v1/cluster/transfer-leader?to=n{}", self.bases[leader - 1], i + 1);
                let _ = self.http.post(url).send().await;
            }
            assert!(Instant::now() < deadline, "node {} never became leader", i + 1);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn metrics(&self, i: usize) -> String {
        self.http.get(format!("{}/metrics", self.bases[i])).send().await.expect("metrics").text().await.expect("text")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_a_full_tmpfs_refuses_writes_serves_reads_and_catches_up_when_space_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tmpfs = Tmpfs::mount(&dir.path().join("full"), TMPFS_BYTES);
    let servers = start_cluster(dir.path(), &tmpfs.path).await;
    let client = Client {
        http: reqwest::Client::new(),
        bases: servers.iter().map(|s| format!("http://{}", s.client_addr())).collect(),
    };
    let mut acknowledged = BTreeSet::new();

    // Phase: a healthy cluster takes writes through node 1.
    let deadline = Instant::now() + BOUND;
    while acknowledged.len() < 20 {
        let key = format!("before{}", acknowledged.len());
        if client.put(0, &key).await.0 == 200 {
            acknowledged.insert(key);
        }
        assert!(Instant::now() < deadline, "the cluster never took writes");
    }

    // Phase: node 1 leads (so a full disk meets the leader's path too), then the tmpfs fills up under load:
    // node 1 raises the alarm, its writes get 507 while it still leads and go through the new leader once
    // it handed leadership over, and nothing half-done is acknowledged.
    client.make_leader(0).await;
    let filler = tmpfs.fill();
    let deadline = Instant::now() + BOUND;
    let (mut refused, mut forwarded, mut n) = (0, 0, 0);
    while !client.alarms(0).await.contains(&"no_space".to_owned()) || n % 200 != 0 {
        let mut tasks = tokio::task::JoinSet::new();
        for k in n..n + 8 {
            let (http, base, key) = (client.http.clone(), client.bases[0].clone(), format!("load{k}"));
            tasks.spawn(async move {
                let answer = put_on(&http, &base, &key).await;
                (key, answer)
            });
        }
        n += 8;
        while let Some(joined) = tasks.join_next().await {
            let (key, (status, body)) = joined.expect("put task");
            match status {
                200 => {
                    acknowledged.insert(key);
                    forwarded += 1;
                }
                507 => {
                    assert_eq!(body["error"]["code"], "no_space", "{body}");
                    let message = body["error"]["message"].as_str().expect("message");
                    assert!(message.contains("nothing was written"), "{message}");
                    refused += 1;
                }
                // An election in progress (leadership moving off node 1): nothing was written.
                503 => {}
                _ => panic!("unexpected {status}: {body}"),
            }
        }
        assert!(Instant::now() < deadline, "node 1 never raised the no_space alarm ({n} writes)");
    }
    eprintln!("while filling: {refused} writes refused with 507, {forwarded} acknowledged, of {n}");
    let metrics = client.metrics(0).await;
    assert!(metrics.contains("tally_storage_alarm{kind=\"no_space\"} 1"), "{metrics}");
    assert!(metrics.contains("tally_storage_quota_bytes 8589934592"), "{metrics}");
    // The rest of the cluster keeps going: a leader other than node 1 takes writes.
    let deadline = Instant::now() + BOUND;
    let mut during = 0;
    while during < 50 {
        let key = format!("during{during}");
        if client.put(1 + during % 2, &key).await.0 == 200 {
            acknowledged.insert(key);
            during += 1;
        }
        assert!(Instant::now() < deadline, "the healthy nodes stopped taking writes");
    }
    let view = client.cluster(0).await;
    assert_ne!(view["role"], "leader", "node 1 still leads on a full disk: {view}");
    assert!(view.get("failure").is_none(), "node 1 stopped: {view}");
    // Reads on node 1 keep working, and a write through it goes to the new leader.
    assert_eq!(client.stale_status(0, "before0").await, 200);
    let deadline = Instant::now() + BOUND;
    while client.put(0, "via-full").await.0 != 200 {
        assert!(Instant::now() < deadline, "writes through node 1 never reached the new leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    acknowledged.insert("via-full".to_owned());
    assert!(client.alarms(0).await.contains(&"no_space".to_owned()), "space came back by itself?");

    // Phase: space returns: node 1 clears the alarm and catches up by itself, with no restart.
    std::fs::remove_file(&filler).expect("remove filler");
    let deadline = Instant::now() + BOUND;
    while !client.alarms(0).await.is_empty() {
        assert!(Instant::now() < deadline, "the alarm never cleared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = client.put(1, "after").await;
    assert_eq!(status, 200);
    acknowledged.insert("after".to_owned());
    for key in &acknowledged {
        let deadline = Instant::now() + BOUND;
        for i in 0..3 {
            while client.stale_status(i, key).await != 200 {
                assert!(Instant::now() < deadline, "node {} lacks acknowledged {key}", i + 1);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    for server in servers {
        server.shutdown().await;
    }
    drop(tmpfs);
}
