//! A three-node cluster in one process on loopback (port 0): the HTTP API end to end, without the CLI.

mod common;

use std::time::{Duration, Instant};

use common::{cluster, start_cluster, wait_for_leader};
use tally_raft::NodeId;
use tally_server::{InitialMember, Server, ServerConfig};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_a_follower_are_forwarded_and_reads_follow_the_documented_levels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster(dir.path(), 3).await;
    let http = reqwest::Client::new();
    let leader = wait_for_leader(&http, &servers).await;
    let follower = (leader + 1) % servers.len();
    let base = |i: usize| format!("http://{}", servers[i].client_addr());

    // A write through a follower is forwarded and answered with its index.
    let answer = http.put(format!("{}/v1/kv/greeting", base(follower))).body("hello").send().await.expect("put");
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    let body: serde_json::Value = answer.json().await.expect("json");
    let index = body["index"].as_u64().expect("index");

    // A linearizable read anywhere sees it at once.
    for i in 0..servers.len() {
        let answer = http.get(format!("{}/v1/kv/greeting", base(i))).send().await.expect("get");
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.headers()["x-tally-modify-index"].to_str().expect("ascii"), index.to_string());
        assert_eq!(answer.text().await.expect("body"), "hello");
    }
    // A stale read eventually sees it everywhere.
    for i in 0..servers.len() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = format!("{}/v1/kv/greeting?consistency=stale", base(i));
            let answer = http.get(url).send().await.expect("get");
            if answer.status() == 200 {
                assert_eq!(answer.text().await.expect("body"), "hello");
                break;
            }
            assert_eq!(answer.status(), 404);
            assert!(Instant::now() < deadline, "node {i} never applied the write");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // cas, delete, and a page.
    let url = format!("{}/v1/kv/greeting?cas=1", base(follower));
    let answer = http.put(url).body("x").send().await.expect("cas");
    assert_eq!(answer.status(), 412);
    let error: serde_json::Value = answer.json().await.expect("json");
    assert_eq!(error["error"]["current_modify_index"], index);
    let answer = http.get(format!("{}/v1/kv?prefix=gree", base(leader))).send().await.expect("list");
    let page: serde_json::Value = answer.json().await.expect("json");
    assert_eq!(page["items"][0]["key"], "greeting");
    assert_eq!(page["more"], false);
    let answer = http.delete(format!("{}/v1/kv/greeting", base(follower))).send().await.expect("delete");
    let body: serde_json::Value = answer.json().await.expect("json");
    assert_eq!(body["deleted"], true);
    let answer = http.get(format!("{}/v1/kv/greeting", base(follower))).send().await.expect("get");
    assert_eq!(answer.status(), 404);

    // Metrics reflect what happened.
    let text = http.get(format!("{}/metrics", base(leader))).send().await.expect("metrics").text().await.expect("text");
    assert!(text.contains("tally_raft_is_leader 1"), "{text}");
    assert!(text.contains("# TYPE tally_http_responses_total counter"), "{text}");
    let writes_seen = text.lines().find(|l| l.starts_with("tally_node_batches_total ")).expect("batches");
    assert_ne!(writes_seen, "tally_node_batches_total 0", "{text}");

    for server in servers {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_cluster_refuses_joins_that_would_add_a_node_or_move_a_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster(dir.path(), 3).await;
    let http = reqwest::Client::new();
    let leader = wait_for_leader(&http, &servers).await;
    let follower = (leader + 1) % servers.len();

    // The hijack: rewrite member n2's peer URL, and add a stranger; each sent to the leader and to a follower,
    // with the cluster token (a token holder is still not allowed to change a static membership).
    let hijacks = [
        serde_json::json!({"id": "n2", "peer_url": "http://evil:7101", "client_url": "http://evil:7001", "incarnation": 1}),
        serde_json::json!({"id": "n9", "peer_url": "http://evil:7101", "client_url": "http://evil:7001", "incarnation": 1}),
    ];
    for target in [leader, follower] {
        for body in &hijacks {
            let answer = http
                .post(format!("http://{}/v1/cluster/join", servers[target].client_addr()))
                .bearer_auth("cluster test token")
                .json(body)
                .send()
                .await
                .expect("join answers");
            assert_eq!(answer.status(), 403, "{body}");
            let error: serde_json::Value = answer.json().await.expect("json");
            assert_eq!(error["error"]["code"], "static_membership", "{error}");
        }
    }

    // Nothing changed: three voters, no learner, and n2 still takes writes from the leader.
    let view = cluster(&http, &servers[leader]).await;
    let members = view["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{view}");
    assert!(members.iter().all(|m| m["peer_url"].as_str().is_none_or(|url| !url.contains("evil"))), "{view}");
    let answer = http.put(format!("http://{}/v1/kv/after", servers[leader].client_addr())).body("x").send().await;
    assert_eq!(answer.expect("put").status(), 200);
    for server in servers {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_by_header_is_trusted_only_with_the_members_proof() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster(dir.path(), 3).await;
    let http = reqwest::Client::new();
    let leader = wait_for_leader(&http, &servers).await;
    let follower = format!("http://{}", servers[(leader + 1) % servers.len()].client_addr());

    // A client that claims to be a forwarding member, without the proof: the header is ignored, and the follower
    // forwards the write as any other.
    let answer = http
        .put(format!("{follower}/v1/kv/claimed"))
        .header("x-tally-forwarded-by", "n9")
        .body("x")
        .send()
        .await
        .expect("put");
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);

    // With the cluster token as proof (what a member's forwarder sends), the follower takes it as forwarded
    // already, and does not forward it again.
    let answer = http
        .put(format!("{follower}/v1/kv/proven"))
        .header("x-tally-forwarded-by", "n9")
        .header("x-tally-forward-token", "cluster test token")
        .body("x")
        .send()
        .await
        .expect("put");
    assert_ne!(answer.status(), 200, "a proven forwarded write is not forwarded twice");
    for server in servers {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_port_facing_a_network_needs_mutual_tls_or_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let start = |token: Option<&str>, insecure_peer: bool, name: &str| {
        let data = dir.path().join(name);
        let token = token.map(str::to_owned);
        async move {
            let client = TcpListener::bind("127.0.0.1:0").await.expect("bind client");
            let peer = TcpListener::bind("0.0.0.0:0").await.expect("bind peer");
            let peer_url = format!("http://127.0.0.1:{}", peer.local_addr().expect("addr").port());
            let mut config = ServerConfig::new(NodeId(1), data);
            config.initial_cluster = vec![InitialMember { id: NodeId(1), peer_url }];
            config.cluster_token = token;
            config.insecure_peer = insecure_peer;
            Server::start_on(config, client, peer).await
        }
    };

    // Neither a token nor mutual TLS on 0.0.0.0: refused, with a message naming both ways and the opt-out.
    let refused = start(None, false, "open").await.err().expect("refused");
    let message = refused.to_string();
    for named in ["--peer-tls-cert", "--cluster-token", "--insecure-peer"] {
        assert!(message.contains(named), "{named} is not named in: {message}");
    }

    // A token, or the explicit opt-out, lets it start.
    start(Some("a token"), false, "token").await.expect("a token is enough").shutdown().await;
    start(None, true, "insecure").await.expect("--insecure-peer opts out").shutdown().await;
}
