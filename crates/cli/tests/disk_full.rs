//! Disk full with real processes: three `tally node` processes on loopback (the harness in `common`), node 1's
//! data directory on a small tmpfs this test mounts (it needs root or CAP_SYS_ADMIN, as in CI; without them it
//! fails and says so). A filler file takes the tmpfs's free space under load: node 1 raises the `no_space`
//! alarm, writes through it get `507 no_space` or succeed via the leader, stale reads on it keep working and
//! linearizable ones go to the leader, and the other nodes keep taking writes. Then the filler is removed:
//! node 1 (the same process, never restarted) clears the alarm and catches up, and every acknowledged write is
//! readable on every node.
//!
//! Every wait is bounded (the whole test well under 60 s); nothing asserts how long anything took.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Cluster, NODES};

/// The tmpfs node 1 lives on: room for a few of its 64 KiB segments.
const TMPFS_BYTES: u64 = 2 << 20;
/// `--segment-bytes` of every node: small segments, so the disk fills (and a roll comes) after a few hundred
/// writes.
const SEGMENT_BYTES: &str = "65536";
/// The bound of every wait below.
const BOUND: Duration = Duration::from_secs(20);
/// Concurrent writers through node 1 while the tmpfs fills.
const WRITERS: usize = 8;

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
        // Lazy: a process still holding a file open must not leave the mount behind.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The value written to `key`: 1000 bytes that name it.
fn value_of(key: &str) -> String {
    format!("{key}={}", "v".repeat(999 - key.len()))
}

/// `PUT key` (its [`value_of`]) at `base`: the status and the JSON body (null if none).
///
/// # Panics
/// On a transport error.
async fn put_answer(http: &reqwest::Client, base: &str, key: &str) -> (u16, serde_json::Value) {
    let answer = http.put(format!("{base}/v1/kv/{key}")).body(value_of(key)).send().await;
    let answer = answer.unwrap_or_else(|e| panic!("PUT {key} on {base}: {e:?}"));
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or_default())
}

/// Node `i`'s `/v1/cluster` as JSON (the harness's view has no alarms nor failure).
async fn cluster_json(cluster: &Cluster, i: usize) -> serde_json::Value {
    let answer = cluster.get(i, "/v1/cluster").await.unwrap_or_else(|e| panic!("/v1/cluster of n{}: {e}", i + 1));
    assert_eq!(answer.status, 200, "/v1/cluster of n{}: {}", i + 1, answer.text());
    answer.json()
}

/// Node `i`'s storage alarms.
async fn alarms(cluster: &Cluster, i: usize) -> Vec<String> {
    let view = cluster_json(cluster, i).await;
    view["alarms"].as_array().expect("alarms").iter().map(|a| a.as_str().expect("str").to_owned()).collect()
}

/// Node `i`'s `/metrics`.
async fn metrics(cluster: &Cluster, i: usize) -> String {
    cluster.get(i, "/metrics").await.unwrap_or_else(|e| panic!("/metrics of n{}: {e}", i + 1)).text()
}

/// Hands leadership to node `i` (through the current leader) and waits until it leads.
async fn make_leader(cluster: &Cluster, i: usize) {
    let deadline = Instant::now() + BOUND;
    loop {
        let view = cluster.view_of(i).await;
        if view.role == "leader" {
            return;
        }
        if let Some(leader) = view.leader {
            let path = format!("/v1/cluster/transfer-leader?to={}", cluster.nodes[i].id);
            let _ = cluster.send(cluster.http.post(cluster.url(cluster.position(&leader), &path))).await;
        }
        assert!(Instant::now() < deadline, "{} never became leader", cluster.nodes[i].id);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that node `i` answers a read of the acknowledged `key` with its value (`stale` or linearizable).
async fn assert_reads(cluster: &Cluster, i: usize, key: &str, stale: bool) {
    let answer = cluster.read(i, key, stale).await;
    assert_eq!(
        (answer.status, answer.text()),
        (200, value_of(key)),
        "{} read of {key} on {}",
        if stale { "stale" } else { "linearizable" },
        cluster.nodes[i].id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_a_full_tmpfs_refuses_writes_serves_reads_and_catches_up_when_space_returns() {
    let start = Instant::now();
    // Declared before the cluster, so dropped after it: the processes die before the tmpfs goes.
    let dir = tempfile::tempdir().expect("tempdir");
    let tmpfs = Tmpfs::mount(&dir.path().join("full"), TMPFS_BYTES);
    let mut cluster =
        Cluster::start_with_data_dir(&["--segment-bytes", SEGMENT_BYTES], 0, &tmpfs.path.join("n1")).await;
    let pid = cluster.nodes[0].process.as_ref().expect("n1 runs").pid();
    // Every acknowledged key (its value is `value_of(key)`) → the index it was acknowledged at.
    let mut acknowledged = BTreeMap::new();

    // Phase: a healthy cluster takes writes through node 1.
    let deadline = Instant::now() + BOUND;
    while acknowledged.len() < 20 {
        let key = format!("before{}", acknowledged.len());
        if let (200, body) = put_answer(&cluster.http, &cluster.url(0, ""), &key).await {
            acknowledged.insert(key, body["index"].as_u64().expect("index"));
            continue;
        }
        assert!(Instant::now() < deadline, "the cluster never took writes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Phase: node 1 leads (so a full disk meets the leader's path too), then the tmpfs fills up under load:
    // node 1 raises the alarm, its writes get 507 while it still leads and go through the new leader once
    // it handed leadership over, and nothing half-done is acknowledged.
    make_leader(&cluster, 0).await;
    let filler = tmpfs.fill();
    let deadline = Instant::now() + BOUND;
    let (mut refused, mut forwarded, mut unavailable, mut n) = (0, 0, 0, 0);
    while !alarms(&cluster, 0).await.contains(&"no_space".to_owned()) || n % 200 != 0 {
        let mut tasks = tokio::task::JoinSet::new();
        for k in n..n + WRITERS {
            let (http, base, key) = (cluster.http.clone(), cluster.url(0, ""), format!("load{k}"));
            tasks.spawn(async move {
                let answer = put_answer(&http, &base, &key).await;
                (key, answer)
            });
        }
        n += WRITERS;
        while let Some(joined) = tasks.join_next().await {
            let (key, (status, body)) = joined.expect("put task");
            match status {
                200 => {
                    acknowledged.insert(key, body["index"].as_u64().expect("index"));
                    forwarded += 1;
                }
                507 => {
                    assert_eq!(body["error"]["code"], "no_space", "{body}");
                    let message = body["error"]["message"].as_str().expect("message");
                    assert!(message.contains("nothing was written"), "{message}");
                    refused += 1;
                }
                // An election in progress (leadership moving off node 1): nothing was written.
                503 => {
                    assert_eq!(body["error"]["code"], "no_leader", "{body}");
                    unavailable += 1;
                }
                _ => panic!("unexpected {status}: {body}"),
            }
        }
        assert!(Instant::now() < deadline, "node 1 never raised the no_space alarm ({n} writes)");
    }
    eprintln!(
        "disk_full: while filling, of {n} writes through n1 {refused} refused with 507, {unavailable} with 503, \
         {forwarded} acknowledged ({})",
        common::elapsed(start)
    );
    let text = metrics(&cluster, 0).await;
    assert!(text.contains("tally_storage_alarm{kind=\"no_space\"} 1"), "{text}");
    assert_eq!(common::metric_value(&text, "tally_storage_quota_bytes"), Some(8 << 30), "{text}");

    // The rest of the cluster keeps going: a leader other than node 1 takes writes.
    let deadline = Instant::now() + BOUND;
    let mut during = 0;
    while during < 50 {
        let key = format!("during{during}");
        if let (200, body) = put_answer(&cluster.http, &cluster.url(1 + during % 2, ""), &key).await {
            acknowledged.insert(key, body["index"].as_u64().expect("index"));
            during += 1;
        }
        assert!(Instant::now() < deadline, "the healthy nodes stopped taking writes");
    }
    let view = cluster_json(&cluster, 0).await;
    assert_ne!(view["role"], "leader", "node 1 still leads on a full disk: {view}");
    assert!(view.get("failure").is_none(), "node 1 stopped: {view}");

    // Reads on node 1 keep working, and a write through it goes to the new leader. Stale reads answer from
    // what node 1 applied. A linearizable read goes to the leader while node 1's disk is full (node 1 dropped
    // entries the leader committed, so it could not reach the read index until space returns): it sees even a
    // write node 1 could not store.
    assert_reads(&cluster, 0, "before0", true).await;
    assert_reads(&cluster, 0, "before0", false).await;
    assert_reads(&cluster, 0, "during49", false).await;
    let deadline = Instant::now() + BOUND;
    loop {
        if let (200, body) = put_answer(&cluster.http, &cluster.url(0, ""), "via-full").await {
            acknowledged.insert("via-full".to_owned(), body["index"].as_u64().expect("index"));
            break;
        }
        assert!(Instant::now() < deadline, "writes through node 1 never reached the new leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(alarms(&cluster, 0).await.contains(&"no_space".to_owned()), "space came back by itself?");

    // Phase: space returns: node 1 clears the alarm and catches up by itself, with no restart.
    std::fs::remove_file(&filler).expect("remove filler");
    let deadline = Instant::now() + BOUND;
    while !alarms(&cluster, 0).await.is_empty() {
        assert!(Instant::now() < deadline, "the alarm never cleared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = metrics(&cluster, 0).await;
    assert!(text.contains("tally_storage_alarm{kind=\"no_space\"} 0"), "{text}");
    let (status, body) = put_answer(&cluster.http, &cluster.url(1, ""), "after").await;
    assert_eq!(status, 200, "{body}");
    acknowledged.insert("after".to_owned(), body["index"].as_u64().expect("index"));

    // Every acknowledged write is on every node, with its value and index; node 1 is the process it was.
    cluster.wait_converged(BOUND).await;
    for i in 0..NODES {
        let items = cluster.stale_scan(i, "").await;
        for (key, index) in &acknowledged {
            let found = items.get(key);
            assert_eq!(
                found,
                Some(&(value_of(key), *index)),
                "{} lost or changed acknowledged {key}",
                cluster.nodes[i].id
            );
        }
    }
    assert_reads(&cluster, 0, "after", false).await;
    let process = cluster.nodes[0].process.as_mut().expect("n1 runs");
    assert_eq!(process.pid(), pid, "n1 was restarted");
    assert!(process.exited().is_none(), "n1 exited: {:?}", process.exited());
    eprintln!("disk_full: {} acknowledged writes on every node ({})", acknowledged.len(), common::elapsed(start));
}
