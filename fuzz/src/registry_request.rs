//! `registry_request`: what the registry accepts from nodes: node ids, cluster ids and URLs ([`NodeId::parse`],
//! [`ClusterId::parse`], [`validate_url`]), the table calls they guard ([`Registry`]), and the HTTP handlers that
//! decode JSON bodies and path ids (through the real router, in memory).
//!
//! # Input: a script, one call per line, fields separated by tabs
//!
//! ```text
//! R id client_url peer_url [cluster_id]   Registry::register
//! C id                                    Registry::bootstrap_claim
//! L id                                    Registry::leave
//! T milliseconds                          let time pass (at most 10 s per line)
//! P id body                               PUT /v1/nodes/{id} with this body (the id percent-encoded)
//! B body                                  POST /v1/bootstrap with this body
//! ```
//!
//! # Oracles
//!
//! - Ids and URLs are accepted exactly when a model of the rules accepts them, and an accepted URL is one an
//!   HTTP client reads as `scheme://host:port` with nothing else.
//! - The table refuses a registration only for a bad URL, or a new node when full; it keeps its invariants (it
//!   asserts them itself), and every live entry carries valid URLs.
//! - The HTTP API answers 200 or a 4xx JSON error (503 only for a warm-up), never another 5xx; a 200 to a
//!   registration means its id and URLs are valid.

use std::cell::RefCell;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, Uri};
use http_body_util::BodyExt;
use tally_registry::{
    CLUSTER_ID_LEN_MAX, ClusterId, NODE_ID_LEN_MAX, NodeId, Registry, RegistryConfig, RegistryState, ServiceConfig,
    URL_LEN_MAX, router, validate_url,
};
use tower::ServiceExt;

use crate::Seed;

/// The most lines run from one input.
const LINES_MAX: usize = 64;

/// The most time one `T` line lets pass.
const STEP_MS_MAX: u64 = 10_000;

/// The table's configuration: a short TTL and a small table, so expiry, takeover and `Full` are reachable.
fn config() -> RegistryConfig {
    RegistryConfig { ttl_ms: 1_000, max_nodes: 3, cluster_id_seed: 7 }
}

thread_local! {
    /// One runtime for the in-memory HTTP calls; building one per input would dominate the run time.
    static RUNTIME: RefCell<tokio::runtime::Runtime> = RefCell::new(
        tokio::runtime::Builder::new_current_thread().build().expect("a current-thread runtime"),
    );
}

/// Runs one input (see the module documentation); panics on a finding.
pub fn run(data: &[u8]) {
    let mut registry = Registry::new(config());
    let service = ServiceConfig { registry: config(), cluster_token: None, ..ServiceConfig::default() };
    let app = router(RegistryState::new(service).expect("a valid service configuration"));
    let mut now_ms = 0u64;
    for line in data.split(|byte| *byte == b'\n').take(LINES_MAX) {
        let fields: Vec<&[u8]> = line.split(|byte| *byte == b'\t').collect();
        let text = |i: usize| fields.get(i).map(|field| String::from_utf8_lossy(field).into_owned());
        match fields[0] {
            b"R" => {
                let (Some(id), Some(client_url), Some(peer_url)) = (text(1), text(2), text(3)) else { continue };
                register(&mut registry, now_ms, &id, &client_url, &peer_url, text(4).as_deref());
            }
            b"C" => {
                let Some(id) = text(1).and_then(|id| checked_node_id(&id)) else { continue };
                if let Ok(claim) = registry.bootstrap_claim(id, now_ms) {
                    assert!(registry.current_claim().is_some_and(|held| held.winner == claim.winner), "claim not held");
                }
            }
            b"L" => {
                let Some(id) = text(1).and_then(|id| checked_node_id(&id)) else { continue };
                registry.leave(&id);
            }
            b"T" => {
                let step = text(1).and_then(|ms| ms.parse::<u64>().ok()).unwrap_or(1).min(STEP_MS_MAX);
                now_ms += step;
            }
            b"P" => {
                let (Some(id), Some(body)) = (fields.get(1), fields.get(2)) else { continue };
                put_node(&app, id, body);
            }
            b"B" => {
                let Some(body) = fields.get(1) else { continue };
                post_bootstrap(&app, body);
            }
            _ => {}
        }
        for entry in registry.live_nodes(now_ms) {
            assert!(validate_url("client_url", &entry.client_url).is_ok(), "stored client URL {}", entry.client_url);
            assert!(validate_url("peer_url", &entry.peer_url).is_ok(), "stored peer URL {}", entry.peer_url);
        }
    }
}

/// A register call, with every field checked against the models first.
fn register(registry: &mut Registry, now_ms: u64, id: &str, client_url: &str, peer_url: &str, cluster: Option<&str>) {
    let client_ok = checked_url(client_url);
    let peer_ok = checked_url(peer_url);
    let Some(id) = checked_node_id(id) else { return };
    let cluster_id = match cluster {
        None => None,
        Some(cluster) => match checked_cluster_id(cluster) {
            Some(cluster_id) => Some(cluster_id),
            None => return,
        },
    };
    match registry.register(id.clone(), client_url, peer_url, cluster_id, now_ms) {
        Ok(_) => assert!(client_ok && peer_ok, "registered {id} with an invalid URL"),
        Err(tally_registry::Error::InvalidUrl { .. }) => assert!(!(client_ok && peer_ok), "valid URLs refused"),
        Err(tally_registry::Error::Full { .. }) => assert!(client_ok && peer_ok, "Full before the URLs were checked"),
        Err(other) => panic!("register {id}: unexpected {other}"),
    }
}

/// Whether `name` is 1 to `len_max` characters of `[A-Za-z0-9_-]` (the model of both id rules).
fn is_name(name: &str, len_max: usize) -> bool {
    !name.is_empty()
        && name.len() <= len_max
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

/// `NodeId::parse`, checked against the model.
fn checked_node_id(id: &str) -> Option<NodeId> {
    let parsed = NodeId::parse(id);
    assert_eq!(parsed.is_ok(), is_name(id, NODE_ID_LEN_MAX), "node id {id:?}: {parsed:?}");
    let parsed = parsed.ok()?;
    assert_eq!(parsed.as_str(), id, "a node id changed in parsing");
    Some(parsed)
}

/// `ClusterId::parse`, checked against the model.
fn checked_cluster_id(id: &str) -> Option<ClusterId> {
    let parsed = ClusterId::parse(id);
    assert_eq!(parsed.is_ok(), is_name(id, CLUSTER_ID_LEN_MAX), "cluster id {id:?}: {parsed:?}");
    let parsed = parsed.ok()?;
    assert_eq!(parsed.as_str(), id, "a cluster id changed in parsing");
    Some(parsed)
}

/// `validate_url`; an accepted URL must read, to an HTTP client, as `http(s)://host:port` and nothing more.
fn checked_url(url: &str) -> bool {
    let Err(error) = validate_url("client_url", url) else {
        assert!(url.len() <= URL_LEN_MAX, "accepted a URL of {} bytes", url.len());
        assert!(url.bytes().all(|byte| byte.is_ascii_graphic()), "accepted {url:?} with a space or control byte");
        assert!(!url.contains('@'), "accepted user info in {url:?}");
        let uri: Uri = url.parse().unwrap_or_else(|error| panic!("accepted {url:?}, which is no URI: {error}"));
        assert!(matches!(uri.scheme_str(), Some("http" | "https")), "accepted {url:?} with another scheme");
        assert!(uri.host().is_some_and(|host| !host.is_empty()), "accepted {url:?} without a host");
        assert!(uri.port_u16().is_some_and(|port| port > 0), "accepted {url:?} without a port in 1..=65535");
        assert!(uri.path() == "/" || uri.path().is_empty(), "accepted {url:?} with a path");
        assert!(uri.query().is_none(), "accepted {url:?} with a query");
        return true;
    };
    let message = error.to_string();
    assert!(message.contains("client_url"), "the error does not name the field: {message}");
    false
}

/// `PUT /v1/nodes/{id}` through the router.
fn put_node(app: &Router, id: &[u8], body: &[u8]) {
    let path = format!("/v1/nodes/{}", percent_encode(id));
    let (status, reply) = call(app, Method::PUT, &path, body);
    if status == StatusCode::OK {
        let id = std::str::from_utf8(id).expect("a registered id is UTF-8");
        assert!(is_name(id, NODE_ID_LEN_MAX), "registered the invalid id {id:?}");
        let request: serde_json::Value = serde_json::from_slice(body).expect("a registration that worked is JSON");
        for field in ["client_url", "peer_url"] {
            let url = request[field].as_str().unwrap_or_else(|| panic!("registered without a string {field}"));
            assert!(checked_url(url), "registered the invalid {field} {url:?}");
        }
        assert_eq!(reply["id"].as_str(), Some(id), "the reply names another id");
    }
}

/// `POST /v1/bootstrap` through the router.
fn post_bootstrap(app: &Router, body: &[u8]) {
    let (status, reply) = call(app, Method::POST, "/v1/bootstrap", body);
    if status == StatusCode::OK {
        let winner = reply["winner"].as_str().expect("a claim names its winner");
        assert!(is_name(winner, NODE_ID_LEN_MAX), "the winner {winner:?} is no valid id");
    }
}

/// One request through the router; checks the status and the JSON error shape, and returns the reply's JSON.
fn call(app: &Router, method: Method, path: &str, body: &[u8]) -> (StatusCode, serde_json::Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .expect("a valid request");
    let (status, bytes) = RUNTIME.with(|runtime| {
        runtime.borrow().block_on(async {
            let response = app.clone().oneshot(request).await.expect("the router is infallible");
            let status = response.status();
            let bytes = response.into_body().collect().await.expect("an in-memory body").to_bytes();
            (status, bytes)
        })
    });
    let reply: serde_json::Value =
        serde_json::from_slice(&bytes).unwrap_or_else(|error| panic!("{path}: {status} with a non-JSON body: {error}"));
    if status != StatusCode::OK {
        let code = reply["error"]["code"].as_str().unwrap_or_else(|| panic!("{path}: {status} without an error code"));
        assert!(reply["error"]["message"].is_string(), "{path}: {status} without a message");
        let warming_up = status == StatusCode::SERVICE_UNAVAILABLE && code == "warming_up";
        assert!(status.is_client_error() || warming_up, "{path}: answered {status} {code}: {reply}");
    }
    (status, reply)
}

/// Percent-encodes every byte but unreserved ones (RFC 3986).
fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// Scripts of real sessions (register, heartbeat, claim, expire, take over) and of refused inputs.
pub fn seeds() -> Vec<Seed> {
    let scripts = [
        (
            "bootstrap",
            "R\tn1\thttp://127.0.0.1:7001\thttp://127.0.0.1:7101\nT\t1000\nC\tn1\nR\tn1\thttp://127.0.0.1:7001\thttp://127.0.0.1:7101\nR\tn2\thttp://10.0.0.2:7001\thttp://10.0.0.2:7101\nL\tn2",
        ),
        (
            "adopt-and-takeover",
            "R\tn3\thttp://[::1]:7003\thttp://[::1]:7103\t0123456789abcdef\nT\t5000\nC\tn4\nT\t3000\nC\tn5",
        ),
        (
            "full-table",
            "R\ta\thttp://h:1\thttp://h:2\nR\tb\thttp://h:1\thttp://h:2\nR\tc\thttp://h:1\thttp://h:2\nR\td\thttp://h:1\thttp://h:2\nT\t2000\nR\td\thttp://h:1\thttp://h:2",
        ),
        (
            "bad-fields",
            "R\tn 1\thttp://h:1\thttp://h:2\nR\tn1\thttps://h:1\thttp://h:0\nR\tn1\thttp://u@h:1\thttp://h:1/x\nR\tn1\thttp://999.1.1.1:80\thttp://[zz]:1\nR\tn1\thttp://h:1\thttp://h:2\tbad/cluster",
        ),
        (
            "http-register",
            "P\tn1\t{\"client_url\":\"http://127.0.0.1:7001\",\"peer_url\":\"http://127.0.0.1:7101\"}\nP\tn2\t{\"client_url\":\"http://h:1\",\"peer_url\":\"http://h:2\",\"cluster_id\":\"c1\"}\nP\tn3\t{\"client_url\":\"http://h:1\",\"peer_url\":\"http://h:2\",\"cluster_id\":null}",
        ),
        (
            "http-refused",
            "P\tn/1\t{}\nP\tn1\tnot json\nP\tn1\t{\"client_url\":1}\nP\tn1\t{\"client_url\":\"http://h:1\",\"peer_url\":\"http://h:2\",\"cluster_id\":\"a b\"}\nP\t\t{}",
        ),
        ("http-bootstrap", "B\t{\"id\":\"n1\"}\nB\t{\"id\":\"bad id\"}\nB\t{\"id\":7}\nB\t[]"),
    ];
    scripts.iter().map(|(name, script)| Seed::new(name, script.as_bytes().to_vec())).collect()
}
