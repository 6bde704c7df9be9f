//! The peer port against a hostile network (issue 13), with real `tally node` processes in a static 3-node
//! cluster, once without a token (what `tally dev` runs) and once with `--cluster-token`:
//!
//! 1. the 54-byte frame of the issue (a heartbeat in term 2^64 - 1) and a forged AppendResponse, without a
//!    hello and after a hello claiming a follower's id, sent to the leader's and a follower's peer ports: the
//!    cluster keeps its leader (or elects one again promptly, in a term far below the bound) and keeps
//!    acknowledging writes, and `/metrics` counts the refusals;
//! 2. 2,000 idle TCP connections to the leader's peer port, then a follower killed, written past, and started
//!    again: it reconnects and catches up.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Cluster, NODES, Stop, elapsed};
use tally_raft::{LogIndex, Message, MessageBody, NodeId, Term};
use tally_server::frame;
use tally_server::wire::{self, Hello};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The cluster token of the protected run.
const TOKEN: &str = "hostile-peer-test-token";

/// Idle connections opened to one peer port: far more than its unadmitted slots.
const IDLE_CONNECTIONS: usize = 2000;

/// How long the attacks are given to do harm before the cluster is looked at again.
const SETTLE: Duration = Duration::from_secs(2);

/// How far above its term before the attacks the cluster's term may be after them: a few elections at most.
const TERM_SLACK: u64 = 20;

/// Raises this process's soft limit of open files to its hard limit: the test holds thousands of sockets.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(
        soft >= IDLE_CONNECTIONS as u64 + 256,
        "open files limited to {soft}: raise the hard limit to run this test"
    );
}

/// The frame of issue 13, byte for byte what its Python one-liner sends: a heartbeat from n2 to n1 in term
/// 2^64 - 1, without a hello.
fn issue_13_frame() -> Vec<u8> {
    let mut payload = Vec::new();
    for field in [2u64, 1, u64::MAX] {
        payload.extend_from_slice(&field.to_le_bytes());
    }
    payload.push(5); // heartbeat
    payload.extend_from_slice(&[0; 16]); // commit 0, read_seq 0
    let frame = frame::encode(&payload);
    assert_eq!(frame.len(), 54, "the issue's frame is 54 bytes");
    frame
}

/// A framed AppendResponse that claims `from` matches the leader's log up to `index`.
fn forged_ack(from: NodeId, to: NodeId, term: u64, index: u64) -> Vec<u8> {
    let body = MessageBody::AppendResponse { result: Ok(LogIndex(index)) };
    frame::encode(&wire::encode(&Message { from, to, term: Term(term), body }))
}

/// A framed hello claiming to be `from`, with the attacker's URLs and no token.
fn forged_hello(from: NodeId) -> Vec<u8> {
    let hello = Hello {
        from,
        client_url: "http://attacker.invalid:7001".to_owned(),
        peer_url: "http://attacker.invalid:7101".to_owned(),
        token: None,
    };
    frame::encode(&wire::encode_hello(&hello))
}

/// Sends `bytes` to `addr` and waits (bounded) for the node to close the connection or for the bound.
async fn send_raw(addr: SocketAddr, bytes: &[u8]) {
    let mut stream = TcpStream::connect(addr).await.expect("connect to a peer port");
    stream.write_all(bytes).await.expect("write to a peer port");
    let mut buffer = [0u8; 16];
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buffer)).await;
}

/// The node id of node position `i`.
fn node_id(i: usize) -> NodeId {
    NodeId(i as u64 + 1)
}

/// Sends every forgery to the leader's and a follower's peer ports.
async fn attack(cluster: &Cluster, leader: usize, follower: usize, term: u64, last_index: u64) {
    let (leader_id, follower_id) = (node_id(leader), node_id(follower));
    for target in [leader, follower] {
        let addr = cluster.nodes[target].peer;
        // The issue's frame, as is (no hello), then after a hello claiming the follower's (or leader's) id.
        send_raw(addr, &issue_13_frame()).await;
        let claimed = if target == leader { follower_id } else { leader_id };
        let mut after_hello = forged_hello(claimed);
        after_hello.extend(forged_heartbeat_of(claimed, node_id(target)));
        send_raw(addr, &after_hello).await;
    }
    let leader_addr = cluster.nodes[leader].peer;
    // Forged acknowledgements of entries nobody was sent, in the leader's term: without a hello; after a hello
    // claiming the follower's id (beyond the leader's log: it used to trip an assertion and crash the leader);
    // and one above the index bound.
    send_raw(leader_addr, &forged_ack(follower_id, leader_id, term, last_index + 1000)).await;
    let mut after_hello = forged_hello(follower_id);
    after_hello.extend(forged_ack(follower_id, leader_id, term, last_index + 1000));
    after_hello.extend(forged_ack(follower_id, leader_id, term, u64::MAX));
    send_raw(leader_addr, &after_hello).await;
    // After a hello as the follower, a message as the other follower: an identity mismatch.
    let other = node_id((0..NODES).find(|&i| i != leader && i != follower).expect("three nodes"));
    let mut switched = forged_hello(follower_id);
    switched.extend(forged_ack(other, leader_id, term, last_index));
    send_raw(leader_addr, &switched).await;
}

/// Waits until, among the nodes other than `excluded`, one leads and the other follows it: its position.
///
/// # Panics
/// If that does not happen within [`common::LEADER_TIMEOUT`].
async fn leader_of_the_others(cluster: &Cluster, excluded: usize) -> usize {
    let others: Vec<usize> = (0..NODES).filter(|&i| i != excluded).collect();
    let deadline = Instant::now() + common::LEADER_TIMEOUT;
    loop {
        let mut views = Vec::new();
        for &i in &others {
            views.push(cluster.view(i).await);
        }
        let leader = views.iter().flatten().find(|v| v.role == "leader").map(|v| v.id.clone());
        if let Some(leader) =
            leader.filter(|id| views.iter().all(|v| v.as_ref().is_some_and(|v| v.leader.as_ref() == Some(id))))
        {
            return cluster.position(&leader);
        }
        assert!(Instant::now() < deadline, "no leader among {others:?}; views: {views:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A framed heartbeat from `from` to `to` in term 2^64 - 1.
fn forged_heartbeat_of(from: NodeId, to: NodeId) -> Vec<u8> {
    let body = MessageBody::Heartbeat { commit: LogIndex(0), read_seq: 0 };
    frame::encode(&wire::encode(&Message { from, to, term: Term(u64::MAX), body }))
}

/// One full run against a cluster started with `extra_args`.
async fn survive_a_hostile_network(extra_args: &[&str], with_token: bool) {
    let start = Instant::now();
    let mut cluster = Cluster::start(extra_args).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % NODES;
    let before = cluster.put_retrying(leader, "before", "attack", Duration::from_secs(10)).await;
    let view = cluster.view_of(leader).await;
    let term = view.term;
    eprintln!("token={with_token}: {} leads term {term} at {}", cluster.nodes[leader].id, elapsed(start));

    // Phase 1: the forgeries. The cluster keeps a leader, in about the same term, and keeps writing.
    attack(&cluster, leader, follower, term, view.last_index).await;
    tokio::time::sleep(SETTLE).await;
    let now_leader = if with_token {
        cluster.wait_for_leader().await
    } else {
        // Without a token, the forged hellos were admitted: they told the leader that the follower, and the
        // follower that the leader, now live at the attacker's address, so the two lost each other until the
        // follower restarts (phase 2). Nothing proves who sends a hello on an unauthenticated port: that is
        // what the token and mutual TLS are for. The other two keep the cluster going.
        leader_of_the_others(&cluster, follower).await
    };
    let after = cluster.put_retrying(now_leader, "after", "attack", Duration::from_secs(10)).await;
    assert!(after > before, "write after the attacks at {after}, before at {before}");
    for i in 0..NODES {
        let view = cluster.view_of(i).await;
        assert!(view.term < term + TERM_SLACK, "{} moved from term {term} to {}", view.id, view.term);
    }
    let now_term = cluster.view_of(now_leader).await.term;
    eprintln!(
        "token={with_token}: after the forgeries {} leads term {now_term} (was {} in {term}) at {}",
        cluster.nodes[now_leader].id,
        cluster.nodes[leader].id,
        elapsed(start)
    );
    for target in [leader, follower] {
        let refused = cluster.metric(target, "tally_peer_refused_connections_total").await;
        assert!(refused >= 1, "{} counted no refusal", cluster.nodes[target].id);
    }
    if !with_token {
        // Admitted as the follower, then speaking as the other: closed and counted.
        let mismatches = cluster.metric(leader, "tally_peer_identity_mismatches_total").await;
        assert!(mismatches >= 1, "the leader counted no identity mismatch");
    }

    // Phase 2: 2,000 idle connections to the leader's peer port; the follower whose id was claimed (and whose
    // address a forged hello may have changed, without a token) is killed, misses writes, and comes back.
    let leader = now_leader;
    let follower = if follower != leader { follower } else { (0..NODES).find(|&i| i != leader).expect("a follower") };
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        idle.push(TcpStream::connect(cluster.nodes[leader].peer).await.expect("an idle connection"));
    }
    eprintln!("token={with_token}: {IDLE_CONNECTIONS} idle connections open at {}", elapsed(start));
    cluster.stop(follower, Stop::Kill);
    let mut last = 0;
    for n in 0..20 {
        last = cluster.put_retrying(leader, &format!("missed-{n}"), "while down", Duration::from_secs(10)).await;
    }
    cluster.restart(follower).await;
    let view = cluster.wait_applied(follower, last, Duration::from_secs(30)).await;
    assert!(view.applied_index >= last);
    let evicted = cluster.metric(leader, "tally_peer_evicted_connections_total").await;
    assert!(evicted >= (IDLE_CONNECTIONS - 64) as u64, "only {evicted} of the idle connections were evicted");
    eprintln!(
        "token={with_token}: {} caught up to {last} past {IDLE_CONNECTIONS} idle connections ({evicted} evicted) at {}",
        cluster.nodes[follower].id,
        elapsed(start)
    );
    drop(idle);
    cluster.wait_converged(Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_a_token_survives_forged_frames_and_idle_floods() {
    raise_open_files_limit();
    survive_a_hostile_network(&[], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_a_token_survives_forged_frames_and_idle_floods() {
    raise_open_files_limit();
    survive_a_hostile_network(&["--cluster-token", TOKEN], true).await;
}
