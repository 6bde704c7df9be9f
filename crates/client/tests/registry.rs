//! [`RegistryClient`] against a real in-process registry (`tally_registry::serve` on 127.0.0.1:0): every call,
//! the warm-up, the token, and how refusals and failures come out as [`RegistryError`]s.

use std::future::Future;
use std::time::Duration;

use tally_client::{ClaimAnswer, ClusterClaim, RegisteredNode, Registration, RegistryClient, RegistryError};
use tally_registry::{RegistryConfig, ServiceConfig, serve};
use tokio::sync::oneshot;

/// Every test must finish within this.
const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The client's timeout per call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A running registry; dropping it shuts the server down.
struct Registry {
    /// `http://127.0.0.1:PORT`.
    url: String,
    /// Stops the server when dropped.
    _shutdown: oneshot::Sender<()>,
}

impl Registry {
    /// A fresh registry with `ttl_ms` (also its warm-up) and an optional cluster token.
    async fn start(ttl_ms: u64, cluster_token: Option<&str>) -> Registry {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let config = ServiceConfig {
            registry: RegistryConfig { ttl_ms, max_nodes: 64, cluster_id_seed: 1 },
            cluster_token: cluster_token.map(str::to_string),
            ..ServiceConfig::default()
        };
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            serve(listener, config, async move {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
        });
        Registry { url, _shutdown: shutdown }
    }

    /// A client of this registry.
    fn client(&self, token: Option<&str>) -> RegistryClient {
        RegistryClient::new(&self.url, token.map(str::to_string), CALL_TIMEOUT).expect("a valid client")
    }
}

/// Runs `test` bounded by [`TEST_TIMEOUT`].
async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, test).await.expect("the test timed out");
}

/// The node ids and cluster ids of a listing.
fn ids(nodes: &[RegisteredNode]) -> Vec<(&str, Option<&str>)> {
    nodes.iter().map(|node| (node.id.as_str(), node.cluster_id.as_deref())).collect()
}

#[tokio::test]
async fn register_list_and_leave() {
    bounded(async {
        let registry = Registry::start(60_000, None).await;
        let client = registry.client(None);

        // A first registration is new and says the TTL; a heartbeat is not new.
        let first = client.register("n1", "http://127.0.0.1:7001", "http://127.0.0.1:8001", None).await;
        assert_eq!(first.expect("registered"), Registration { ttl_ms: 60_000, new: true });
        let again = client.register("n1", "http://127.0.0.1:7001", "http://127.0.0.1:8001", None).await;
        assert_eq!(again.expect("heartbeat"), Registration { ttl_ms: 60_000, new: false });

        // A member of a cluster says so; the listing shows it, with the addresses.
        client.register("n2", "http://127.0.0.1:7002", "http://127.0.0.1:8002", Some("c1")).await.expect("n2");
        let nodes = client.nodes().await.expect("listing");
        assert_eq!(ids(&nodes), [("n1", None), ("n2", Some("c1"))]);
        assert_eq!(
            (nodes[1].client_url.as_str(), nodes[1].peer_url.as_str()),
            ("http://127.0.0.1:7002", "http://127.0.0.1:8002")
        );
        assert!(nodes[1].last_seen_ms_ago < 60_000);

        // Leaving answers whether the node was there.
        assert!(client.leave("n1").await.expect("leave"));
        assert!(!client.leave("n1").await.expect("second leave"), "already gone");
        assert_eq!(ids(&client.nodes().await.expect("listing")), [("n2", Some("c1"))]);
    })
    .await;
}

#[tokio::test]
async fn claims_wait_out_the_warm_up_then_the_first_claimant_wins() {
    bounded(async {
        let registry = Registry::start(2_000, None).await;
        let client = registry.client(None);

        // A fresh registry knows no cluster and does not answer claims yet.
        assert_eq!(client.cluster().await.expect("cluster"), None);
        let refused = client.claim("n1").await;
        let Err(RegistryError::WarmingUp { retry_after }) = refused else {
            panic!("expected WarmingUp right after start, got {refused:?}");
        };
        assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(2), "{retry_after:?}");

        // Why: a node waits as told and claims again; then the first claimant wins.
        tokio::time::sleep(retry_after).await;
        let won = client.claim("n1").await.expect("claim after the warm-up");
        assert!(won.you_won);
        assert_eq!(won.winner, "n1");
        client.register("n1", "http://h:1", "http://h:2", Some(&won.cluster_id)).await.expect("winner heartbeat");

        // Others learn the winner and its cluster; the registry reports it.
        let lost = client.claim("n2").await.expect("second claim");
        assert_eq!(lost, ClaimAnswer { winner: "n1".into(), cluster_id: won.cluster_id.clone(), you_won: false });
        let cluster = client.cluster().await.expect("cluster");
        assert_eq!(cluster, Some(ClusterClaim { winner: "n1".into(), cluster_id: won.cluster_id }));
    })
    .await;
}

#[tokio::test]
async fn a_member_registering_with_its_cluster_id_ends_the_warm_up() {
    bounded(async {
        // A restarted registry (fresh, long warm-up) while cluster "c-old" runs.
        let registry = Registry::start(60_000, None).await;
        let client = registry.client(None);
        assert!(matches!(client.claim("n9").await, Err(RegistryError::WarmingUp { .. })));

        // A member heartbeats with its cluster id: a new node is sent to that cluster at once.
        client.register("n2", "http://h:1", "http://h:2", Some("c-old")).await.expect("member");
        let answer = client.claim("n9").await.expect("claim");
        assert_eq!(answer, ClaimAnswer { winner: "n2".into(), cluster_id: "c-old".into(), you_won: false });
    })
    .await;
}

#[tokio::test]
async fn the_cluster_token_is_sent_and_a_wrong_one_is_unauthorized() {
    bounded(async {
        let registry = Registry::start(60_000, Some("s3cret")).await;

        // With the right token, calls work.
        let right = registry.client(Some("s3cret"));
        right.register("n1", "http://h:1", "http://h:2", None).await.expect("registered with the token");

        // A wrong or missing token is refused with the registry's message, and changes nothing.
        let wrong = registry.client(Some("s3cre"));
        let refused = wrong.register("n2", "http://h:1", "http://h:2", None).await;
        assert!(matches!(&refused, Err(RegistryError::Unauthorized(message)) if message.contains("wrong")), "{refused:?}");
        let missing = registry.client(None).nodes().await;
        assert!(
            matches!(&missing, Err(RegistryError::Unauthorized(message)) if message.contains("requires the cluster token")),
            "{missing:?}"
        );
        assert_eq!(ids(&right.nodes().await.expect("listing")), [("n1", None)]);
    })
    .await;
}

#[tokio::test]
async fn refusals_carry_the_registry_status_code_and_message() {
    bounded(async {
        let registry = Registry::start(60_000, None).await;
        let client = registry.client(None);

        let bad_cluster = client.register("n1", "http://h:1", "http://h:2", Some("no spaces")).await;
        let Err(RegistryError::Rejected { status, code, message }) = bad_cluster else {
            panic!("expected Rejected, got {bad_cluster:?}");
        };
        assert_eq!((status, code.as_str()), (400, "bad_request"));
        assert!(message.contains("invalid cluster id"), "{message}");

        // The id is sent as given (percent-encoded), so the registry, not the URL parser, refuses it.
        let bad_id = client.register("n/1", "http://h:1", "http://h:2", None).await;
        assert!(
            matches!(&bad_id, Err(RegistryError::Rejected { status: 400, message, .. }) if message.contains("invalid node id")),
            "{bad_id:?}"
        );
        let bad_url = client.register("n1", "http://h:1/x", "http://h:2", None).await;
        assert!(matches!(&bad_url, Err(RegistryError::Rejected { status: 400, .. })), "{bad_url:?}");
        assert!(client.nodes().await.expect("listing").is_empty(), "nothing was registered");
    })
    .await;
}

#[tokio::test]
async fn an_absent_registry_is_unreachable() {
    bounded(async {
        // A port that was just free: nothing listens there.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        drop(listener);
        let client = RegistryClient::new(&url, None, CALL_TIMEOUT).expect("valid");
        let error = client.nodes().await.expect_err("nobody listens");
        assert!(matches!(&error, RegistryError::Unreachable { url: at, .. } if *at == url), "{error:?}");
        assert!(error.to_string().starts_with(&format!("cannot reach the registry at {url}: ")), "{error}");
    })
    .await;
}

#[tokio::test]
async fn an_answer_that_is_not_the_registry_is_a_bad_response() {
    bounded(async {
        // A server that answers 200 with a body that is not the registry's JSON.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = [0_u8; 4096];
            let _ = stream.read(&mut request).await;
            let answer =
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";
            stream.write_all(answer.as_bytes()).await.expect("answer");
        });
        let client = RegistryClient::new(&url, None, CALL_TIMEOUT).expect("valid");
        let error = client.nodes().await.expect_err("not JSON");
        assert!(
            matches!(&error, RegistryError::BadResponse { detail, .. } if detail.contains("bad JSON")),
            "{error:?}"
        );
    })
    .await;
}

#[test]
fn new_validates_the_url_token_and_timeout() {
    let second = Duration::from_secs(1);
    let client = RegistryClient::new("127.0.0.1:8080", None, second).expect("a bare host:port is accepted");
    assert_eq!(client.base_url(), "http://127.0.0.1:8080");
    for bad in ["", "ftp://h:1", "http://h:1/v1", "http://h:1?x=1", "http://u@h:1"] {
        let refused = RegistryClient::new(bad, None, second);
        assert!(matches!(refused, Err(RegistryError::InvalidConfig { .. })), "{bad:?} accepted");
    }
    let empty_token = RegistryClient::new("http://h:1", Some(String::new()), second);
    assert!(matches!(&empty_token, Err(RegistryError::InvalidConfig { reason }) if reason.contains("empty")));
    let newline_token = RegistryClient::new("http://h:1", Some("a\nb".into()), second);
    assert!(matches!(newline_token, Err(RegistryError::InvalidConfig { .. })));
    let zero = RegistryClient::new("http://h:1", None, Duration::ZERO);
    assert!(matches!(&zero, Err(RegistryError::InvalidConfig { reason }) if reason.contains("timeout")));
}
