//! `tally dev`, the README's first command: it starts a cluster that the client commands can use, and on
//! SIGTERM it stops every node it started and exits cleanly.

mod common;

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::reserve_ports;

/// The `tally` binary under test.
const TALLY: &str = env!("CARGO_BIN_EXE_tally");

/// Kills `tally dev` (and, through its own cleanup or the PIDs it printed, its nodes) if a test fails.
struct DevGuard {
    /// The `tally dev` process.
    child: Child,
    /// The node PIDs it printed, once known.
    node_pids: Vec<u32>,
}

impl Drop for DevGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in &self.node_pids {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}

/// Whether a process with `pid` exists.
fn alive(pid: u32) -> bool {
    Command::new("kill").args(["-0", &pid.to_string()]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Runs a client command against `endpoints`; its stdout.
fn tally(endpoints: &str, args: &[&str]) -> String {
    let output = Command::new(TALLY).args(args).env("TALLY_ENDPOINTS", endpoints).output().expect("run tally");
    assert!(output.status.success(), "tally {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The node PIDs in `tally dev`'s banner (`  n1  pid 1234 ...`).
fn node_pids(banner: &str) -> Vec<u32> {
    banner
        .lines()
        .filter_map(|line| line.split_once(" pid ").and_then(|(_, rest)| rest.split_whitespace().next()))
        .filter_map(|pid| pid.parse().ok())
        .collect()
}

#[test]
fn tally_dev_serves_the_client_commands_and_stops_every_node_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = reserve_ports(7);
    let client_ports: Vec<String> = ports[..3].iter().map(u16::to_string).collect();
    let peer_ports: Vec<String> = ports[3..6].iter().map(u16::to_string).collect();
    let out_path = dir.path().join("dev.out");
    let out = File::create(&out_path).expect("create dev.out");
    let data_dir = dir.path().join("data");
    let child = Command::new(TALLY)
        .args(["dev", "--data-dir", data_dir.to_str().expect("utf-8 path")])
        .args(["--client-ports", &client_ports.join(","), "--peer-ports", &peer_ports.join(",")])
        .args(["--registry-port", &ports[6].to_string()])
        .stdout(Stdio::from(out.try_clone().expect("clone")))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("start tally dev");
    let mut dev = DevGuard { child, node_pids: Vec::new() };

    // It prints the banner once a leader is elected.
    let banner = wait_for(&out_path, "(leader)", Duration::from_secs(30), &mut dev);
    dev.node_pids = node_pids(&banner);
    assert_eq!(dev.node_pids.len(), 4, "the registry's and three nodes' PIDs in the banner:\n{banner}");
    assert!(banner.contains("export TALLY_ENDPOINTS="), "non-default ports need the endpoints hint:\n{banner}");

    // The client commands work against it.
    let endpoints: Vec<String> = client_ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    let endpoints = endpoints.join(",");
    let index: u64 = tally(&endpoints, &["put", "greeting", "hello"]).trim().parse().expect("put prints the index");
    assert!(index > 0);
    assert_eq!(tally(&endpoints, &["get", "greeting"]), "hello");
    // The nodes found each other through the registry; the leader promotes joiners to voters.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = tally(&endpoints, &["status"]);
        if status.matches("voter").count() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "not three voters in:\n{status}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // SIGTERM: every node stops, then tally dev exits 0.
    let pid = dev.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = dev.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "tally dev did not exit within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "tally dev exited with {status}:\n{}", read(&out_path));
    for &node in &dev.node_pids {
        assert!(!alive(node), "node pid {node} still runs after tally dev stopped");
    }
}

/// The whole file, or an explanation.
fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
}

/// Waits until the file contains `needle`; returns its text. Fails (showing the output) on timeout or exit.
fn wait_for(path: &Path, needle: &str, limit: Duration, dev: &mut DevGuard) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = read(path);
        if text.contains(needle) {
            return text;
        }
        if let Some(status) = dev.child.try_wait().expect("wait") {
            panic!("tally dev exited early with {status}:\n{text}");
        }
        assert!(Instant::now() < deadline, "no {needle:?} within {limit:?}:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
