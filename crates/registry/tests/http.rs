//! The registry over real HTTP: a listener on 127.0.0.1:0, reqwest as the client, every test time-bounded.

use std::future::Future;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tally_registry::{BODY_BYTES_MAX, RegistryConfig, ServiceConfig, serve};
use tokio::sync::oneshot;

/// Every test must finish within this.
const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A running registry; dropping it shuts the server down.
struct Harness {
    /// `http://127.0.0.1:PORT`.
    base: String,
    /// The client, with a per-request timeout.
    client: Client,
    /// The token sent with each call, if any.
    token: Option<String>,
    /// Stops the server when dropped.
    _shutdown: oneshot::Sender<()>,
}

impl Harness {
    async fn start(ttl_ms: u64, cluster_token: Option<&str>) -> Harness {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
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
        let client = Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
        Harness { base, client, token: cluster_token.map(str::to_string), _shutdown: shutdown }
    }

    /// Sends a call with the harness's token and returns status and JSON (or `Value::Null` for non-JSON).
    async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> (StatusCode, Value) {
        let (status, _, body) = self.call_with_headers(method, path, body).await;
        (status, body)
    }

    /// [`Harness::call`] that also returns the answer's headers.
    async fn call_with_headers(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.expect("request sent");
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = response.bytes().await.expect("response body");
        (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn put_node(&self, id: &str, client_url: &str, peer_url: &str) -> (StatusCode, Value) {
        let body = json!({ "client_url": client_url, "peer_url": peer_url }).to_string().into_bytes();
        self.call(Method::PUT, &format!("/v1/nodes/{id}"), Some(body)).await
    }

    /// Registers `id` as a member of `cluster_id`.
    async fn put_member(&self, id: &str, port: u16, cluster_id: &str) -> (StatusCode, Value) {
        let (client_url, peer_url) = (format!("http://127.0.0.1:{port}"), format!("http://127.0.0.1:{}", port + 1000));
        let body = json!({ "client_url": client_url, "peer_url": peer_url, "cluster_id": cluster_id });
        self.call(Method::PUT, &format!("/v1/nodes/{id}"), Some(body.to_string().into_bytes())).await
    }

    async fn claim(&self, id: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.claim_with_headers(id).await;
        (status, body)
    }

    async fn claim_with_headers(&self, id: &str) -> (StatusCode, HeaderMap, Value) {
        let body = json!({ "id": id }).to_string().into_bytes();
        self.call_with_headers(Method::POST, "/v1/bootstrap", Some(body)).await
    }

    /// Claims for `id` as a node would: while the registry is warming up, waits as long as it says and retries.
    async fn claim_after_warm_up(&self, id: &str) -> (StatusCode, Value) {
        loop {
            let (status, body) = self.claim(id).await;
            if body["error"]["code"] != "warming_up" {
                return (status, body);
            }
            let retry_after_ms = body["error"]["retry_after_ms"].as_u64().expect("retry_after_ms");
            tokio::time::sleep(Duration::from_millis(retry_after_ms)).await;
        }
    }

    async fn node_ids(&self) -> Vec<String> {
        let (status, body) = self.call(Method::GET, "/v1/nodes", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let nodes = body["nodes"].as_array().expect("nodes array");
        nodes.iter().map(|node| node["id"].as_str().expect("id").to_string()).collect()
    }

    async fn assert_healthy(&self) {
        let response = self.client.get(format!("{}/livez", self.base)).send().await.expect("livez sent");
        assert_eq!(response.status(), StatusCode::OK);
    }
}

/// Runs `test` bounded by [`TEST_TIMEOUT`].
async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, test).await.expect("the test timed out");
}

/// Asserts a JSON error with `status`, `code`, and a message containing `needle`.
fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str, needle: &str) {
    let (got_status, body) = got;
    assert_eq!(*got_status, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().expect("an error message");
    assert!(message.contains(needle), "{message:?} should mention {needle:?}");
}

#[tokio::test]
async fn register_heartbeat_list_and_leave() {
    bounded(async {
        let registry = Harness::start(60_000, None).await;

        // A first registration is new and tells the node the TTL.
        let (status, body) = registry.put_node("n1", "http://127.0.0.1:7001", "http://127.0.0.1:8001").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body,
            json!({"id":"n1","client_url":"http://127.0.0.1:7001","peer_url":"http://127.0.0.1:8001","cluster_id":null,"new":true,"ttl_ms":60000})
        );

        // A heartbeat is not new; an address change is recorded.
        let (_, body) = registry.put_node("n1", "http://127.0.0.1:7009", "http://127.0.0.1:8009").await;
        assert_eq!(body["new"], false);
        registry.put_node("n2", "http://127.0.0.1:7002", "http://127.0.0.1:8002").await;

        // The list shows both, in id order, with the new address.
        let (status, body) = registry.call(Method::GET, "/v1/nodes", None).await;
        assert_eq!(status, StatusCode::OK);
        let nodes = body["nodes"].as_array().expect("nodes");
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0]["id"], "n1");
        assert_eq!(nodes[0]["client_url"], "http://127.0.0.1:7009");
        assert_eq!(nodes[0]["peer_url"], "http://127.0.0.1:8009");
        assert_eq!(nodes[0]["cluster_id"], Value::Null, "n1 is in no cluster");
        assert!(nodes[0]["last_seen_ms_ago"].is_u64());

        // Leaving removes the node; leaving twice is 404.
        let (status, _) = registry.call(Method::DELETE, "/v1/nodes/n1", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(registry.node_ids().await, ["n2"]);
        let again = registry.call(Method::DELETE, "/v1/nodes/n1", None).await;
        assert_error(&again, StatusCode::NOT_FOUND, "not_found", "n1 is not registered");
    })
    .await;
}

#[tokio::test]
async fn entries_expire_without_heartbeats() {
    bounded(async {
        let registry = Harness::start(1_000, None).await;
        registry.put_node("n1", "http://h:1", "http://h:2").await;
        assert_eq!(registry.node_ids().await, ["n1"]);
        // Why: a dead node must drop out after a TTL of silence.
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        assert!(registry.node_ids().await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn bootstrap_claim_over_http() {
    bounded(async {
        // A short TTL, so the warm-up (one TTL from start) ends soon.
        let registry = Harness::start(3_000, None).await;

        // No claim yet.
        let none = registry.call(Method::GET, "/v1/bootstrap", None).await;
        assert_error(&none, StatusCode::NOT_FOUND, "not_found", "no node has claimed");

        // Why: right after start, members of an existing cluster may not have re-registered; refuse to pick a
        // winner, and say when to retry.
        let (status, headers, body) = registry.claim_with_headers("n2").await;
        assert_error(&(status, body.clone()), StatusCode::SERVICE_UNAVAILABLE, "warming_up", "less than one TTL ago");
        let retry_after_ms = body["error"]["retry_after_ms"].as_u64().expect("retry_after_ms");
        assert!((1..=3_000).contains(&retry_after_ms), "{body}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains(&format!("retry in {retry_after_ms} ms")), "{message}");
        let retry_after = headers.get(RETRY_AFTER).expect("Retry-After").to_str().expect("ASCII");
        assert_eq!(retry_after, retry_after_ms.div_ceil(1_000).to_string(), "seconds, rounded up");
        assert_eq!(registry.call(Method::GET, "/v1/bootstrap", None).await.0, StatusCode::NOT_FOUND);

        // After the warm-up, the first claimant wins; it heartbeats, so its claim is confirmed.
        let (status, first) = registry.claim_after_warm_up("n2").await;
        assert_eq!(status, StatusCode::OK, "{first}");
        assert_eq!(first["winner"], "n2");
        assert_eq!(first["you_won"], true);
        registry.put_node("n2", "http://h:1", "http://h:2").await;

        // Later claimants learn who won.
        let (_, later) = registry.claim("n1").await;
        assert_eq!(later["winner"], "n2");
        assert_eq!(later["you_won"], false);
        assert_eq!(later["cluster_id"], first["cluster_id"]);

        // The claim is reported.
        let (status, current) = registry.call(Method::GET, "/v1/bootstrap", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(current, json!({ "winner": "n2", "cluster_id": first["cluster_id"] }));
    })
    .await;
}

#[tokio::test]
async fn members_registering_after_a_restart_restore_the_cluster() {
    bounded(async {
        // A fresh registry, as after a restart, with a long warm-up: cluster "c-old" still runs.
        let registry = Harness::start(60_000, None).await;
        let (status, _) = registry.claim("n9").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a new node may not win yet");

        // A member re-registers with its cluster id: the registry adopts the claim.
        let (status, body) = registry.put_member("n2", 7002, "c-old").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["cluster_id"], "c-old");
        let (status, current) = registry.call(Method::GET, "/v1/bootstrap", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(current, json!({ "winner": "n2", "cluster_id": "c-old" }));

        // Why: the new node must join the existing cluster, not form a second one; no wait is needed now.
        let (status, answer) = registry.claim("n9").await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer, json!({ "winner": "n2", "cluster_id": "c-old", "you_won": false }));

        // A member of another cluster is listed but changes nothing.
        registry.put_member("x1", 7101, "c-other").await;
        assert_eq!(registry.claim("n9").await.1["cluster_id"], "c-old");
        let (_, listing) = registry.call(Method::GET, "/v1/nodes", None).await;
        let cluster_ids: Vec<_> = listing["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|node| (node["id"].clone(), node["cluster_id"].clone()))
            .collect();
        assert_eq!(cluster_ids, [(json!("n2"), json!("c-old")), (json!("x1"), json!("c-other"))]);
    })
    .await;
}

#[tokio::test]
async fn twenty_simultaneous_claims_have_exactly_one_winner() {
    bounded(async {
        // The claimants race across the end of the warm-up, retrying as it tells them to, as nodes do.
        let registry = std::sync::Arc::new(Harness::start(2_000, None).await);
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(20));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20 {
            let (registry, barrier) = (registry.clone(), barrier.clone());
            tasks.spawn(async move {
                let id = format!("n{i}");
                barrier.wait().await;
                let (status, body) = registry.claim_after_warm_up(&id).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                (id, body)
            });
        }
        let answers = tasks.join_all().await;
        let winners: Vec<_> = answers.iter().filter(|(_, body)| body["you_won"] == true).collect();
        assert_eq!(winners.len(), 1, "{answers:?}");
        let winner = &winners[0].0;
        for (_, body) in &answers {
            assert_eq!(body["winner"], winner.as_str());
            assert_eq!(body["cluster_id"], winners[0].1["cluster_id"]);
        }
    })
    .await;
}

#[tokio::test]
async fn malformed_input_is_refused_and_the_registry_stays_healthy() {
    bounded(async {
        let registry = Harness::start(60_000, None).await;
        let put = |body: &str| registry.call(Method::PUT, "/v1/nodes/n1", Some(body.as_bytes().to_vec()));

        assert_error(&put("{not json").await, StatusCode::BAD_REQUEST, "bad_request", "not valid JSON");
        assert_error(&put("").await, StatusCode::BAD_REQUEST, "bad_request", "not a JSON object");
        let array = put(r#"["http://h:1","http://h:2"]"#).await;
        assert_error(&array, StatusCode::BAD_REQUEST, "bad_request", "not a JSON object");
        let missing = put(r#"{"client_url":"http://h:1"}"#).await;
        assert_error(&missing, StatusCode::BAD_REQUEST, "bad_request", "missing field `peer_url`");
        let wrong_type = put(r#"{"client_url":1,"peer_url":"http://h:2"}"#).await;
        assert_error(&wrong_type, StatusCode::BAD_REQUEST, "bad_request", "wrong shape");

        let bad_cluster_ids = [
            (json!(""), "it is empty"),
            (json!("a b"), "' ' is not allowed"),
            (json!("c/1"), "'/' is not allowed"),
            (json!("a".repeat(65)), "the limit is 64"),
        ];
        for (cluster_id, why) in bad_cluster_ids {
            let body = json!({ "client_url": "http://h:1", "peer_url": "http://h:2", "cluster_id": cluster_id });
            let got = put(&body.to_string()).await;
            assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", "invalid cluster id");
            assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", why);
        }
        let number = put(r#"{"client_url":"http://h:1","peer_url":"http://h:2","cluster_id":7}"#).await;
        assert_error(&number, StatusCode::BAD_REQUEST, "bad_request", "wrong shape");

        let bad_urls = [
            ("h:1", "must start with http://"),
            ("ftp://h:1", "must start with http://"),
            ("http://h", "port is missing"),
            ("http://h:70000", "out of range"),
            ("http://h:1/path", "nothing may follow"),
        ];
        for (url, why) in bad_urls {
            let got = registry.put_node("n1", url, "http://h:2").await;
            assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", why);
            assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", "client_url");
        }

        let oversized = vec![b' '; BODY_BYTES_MAX + 1];
        let got = registry.call(Method::PUT, "/v1/nodes/n1", Some(oversized)).await;
        assert_error(&got, StatusCode::PAYLOAD_TOO_LARGE, "too_large", "over the limit");

        for bad_id in ["n%201", "n.1", &"a".repeat(65)] {
            let got = registry.put_node(bad_id, "http://h:1", "http://h:2").await;
            assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", "invalid node id");
        }
        let bad_claim = registry.claim("no spaces").await;
        assert_error(&bad_claim, StatusCode::BAD_REQUEST, "bad_request", "invalid node id");
        let empty_claim = registry.call(Method::POST, "/v1/bootstrap", Some(b"{}".to_vec())).await;
        assert_error(&empty_claim, StatusCode::BAD_REQUEST, "bad_request", "missing field `id`");

        let unknown = registry.call(Method::DELETE, "/v1/nodes/n7", None).await;
        assert_error(&unknown, StatusCode::NOT_FOUND, "not_found", "n7");
        let no_route = registry.call(Method::GET, "/v2/elsewhere", None).await;
        assert_error(&no_route, StatusCode::NOT_FOUND, "not_found", "no such route");
        let wrong_method = registry.call(Method::POST, "/v1/nodes", None).await;
        assert_error(&wrong_method, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "POST");

        // Why: nothing above may have changed the table or hurt the service.
        assert!(registry.node_ids().await.is_empty());
        let claim = registry.call(Method::GET, "/v1/bootstrap", None).await;
        assert_eq!(claim.0, StatusCode::NOT_FOUND, "no claim was adopted");
        registry.assert_healthy().await;
        let (status, _) = registry.put_node("n1", "http://h:1", "http://h:2").await;
        assert_eq!(status, StatusCode::OK);
        let null = r#"{"client_url":"http://h:1","peer_url":"http://h:2","cluster_id":null}"#;
        assert_eq!(put(null).await.0, StatusCode::OK, "a null cluster id is no cluster id");
    })
    .await;
}

#[tokio::test]
async fn cluster_token_is_required_when_configured() {
    bounded(async {
        let mut registry = Harness::start(60_000, Some("s3cret")).await;

        // With the token, calls work.
        let (status, _) = registry.put_node("n1", "http://h:1", "http://h:2").await;
        assert_eq!(status, StatusCode::OK);

        // Without it, or with a wrong one, every API call is refused with a hint.
        registry.token = None;
        let missing = registry.put_node("n2", "http://h:1", "http://h:2").await;
        assert_error(&missing, StatusCode::UNAUTHORIZED, "unauthorized", "--cluster-token or set TALLY_CLUSTER_TOKEN");
        assert_error(&registry.claim("n2").await, StatusCode::UNAUTHORIZED, "unauthorized", "Bearer");
        let listing = registry.call(Method::GET, "/v1/nodes", None).await;
        assert_error(&listing, StatusCode::UNAUTHORIZED, "unauthorized", "requires the cluster token");
        registry.token = Some("s3cre".to_string());
        let wrong = registry.call(Method::DELETE, "/v1/nodes/n1", None).await;
        assert_error(&wrong, StatusCode::UNAUTHORIZED, "unauthorized", "wrong");

        // The refused calls changed nothing, and health probes need no token.
        registry.token = Some("s3cret".to_string());
        assert_eq!(registry.node_ids().await, ["n1"]);
        registry.token = None;
        registry.assert_healthy().await;
    })
    .await;
}

#[tokio::test]
async fn invalid_config_is_refused_by_serve() {
    bounded(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let config = ServiceConfig { cluster_token: Some(String::new()), ..ServiceConfig::default() };
        let result = serve(listener, config, std::future::pending()).await;
        assert!(matches!(result, Err(tally_registry::Error::InvalidConfig(_))), "{result:?}");
    })
    .await;
}
