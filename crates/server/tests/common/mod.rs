//! The in-process cluster the HTTP tests share: `n` servers on loopback (port 0), each with its own data
//! directory, formed as a static cluster, and the helpers that find its leader.

#![allow(dead_code)] // each test file uses a different part

use std::time::{Duration, Instant};

use tally_raft::NodeId;
use tally_server::{InitialMember, Server, ServerConfig};
use tokio::net::TcpListener;

/// The cluster token every test cluster is started with.
pub const CLUSTER_TOKEN: &str = "cluster test token";

/// Starts `n` servers forming one cluster, each with its own data dir under `dir`; `adjust` may change each
/// node's configuration before it starts.
pub async fn start_cluster_with(dir: &std::path::Path, n: u64, adjust: impl Fn(&mut ServerConfig)) -> Vec<Server> {
    let mut listeners = Vec::new();
    for _ in 0..n {
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
        let mut config = ServerConfig::new(id, dir.join(id.to_string()));
        config.initial_cluster = members.clone();
        config.tick_interval = Duration::from_millis(20);
        config.seed = Some(i as u64 + 7);
        // Every peer connection must then open with the token: the cluster works only if each node sends it.
        config.cluster_token = Some(CLUSTER_TOKEN.to_owned());
        adjust(&mut config);
        servers.push(Server::start_on(config, client, peer).await.expect("server starts"));
    }
    servers
}

/// Starts `n` servers forming one cluster with the default configuration.
pub async fn start_cluster(dir: &std::path::Path, n: u64) -> Vec<Server> {
    start_cluster_with(dir, n, |_| {}).await
}

/// The cluster view of one node.
pub async fn cluster(http: &reqwest::Client, server: &Server) -> serde_json::Value {
    let url = format!("http://{}/v1/cluster", server.client_addr());
    http.get(url).send().await.expect("cluster answers").json().await.expect("json")
}

/// Waits (bounded) until some node reports itself leader; returns its position.
pub async fn wait_for_leader(http: &reqwest::Client, servers: &[Server]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for (i, server) in servers.iter().enumerate() {
            if cluster(http, server).await["role"] == "leader" {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no leader within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) until every node knows the leader `leader` and its client URL is in its view: then a
/// follower can forward to it at once.
pub async fn wait_for_followers(http: &reqwest::Client, servers: &[Server], leader: usize) {
    let leader_id = format!("n{}", leader + 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    for server in servers {
        loop {
            let view = cluster(http, server).await;
            let url_known = view["members"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["id"] == leader_id && m["client_url"].is_string());
            if view["leader"] == leader_id.as_str() && url_known {
                break;
            }
            assert!(Instant::now() < deadline, "a node never learned the leader's client URL: {view}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Shuts every server down.
pub async fn shutdown(servers: Vec<Server>) {
    for server in servers {
        server.shutdown().await;
    }
}
