//! Client auth on a 3-node cluster of `tally node` processes: bootstrapped with the `tally` CLI, then every route
//! of the client API answered for no token, a bad token, a read-only token, a prefix-limited token and an admin
//! token, on the leader and through a follower (which checks, then forwards writes to the leader, which checks
//! again); rotation, disabling (everything open again), and no token in any node's log.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Answer, Cluster, NODES, TALLY};
use reqwest::Method;

/// The cluster token the nodes share: joins carrying it pass without a user token.
const CLUSTER_TOKEN: &str = "cluster-secret-for-the-auth-test";

/// How long every node may take to apply an auth change.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The tokens of the test, by who holds them.
struct Tokens {
    /// Admin on the whole keyspace.
    admin: String,
    /// Read on the whole keyspace.
    reader: String,
    /// Write on `app/` only.
    app: String,
}

/// What one route answers for each caller.
struct Case {
    /// The method.
    method: Method,
    /// Path and query.
    path: &'static str,
    /// The body.
    body: &'static str,
    /// Status for the read-only token.
    reader: u16,
    /// Status for the `app/` token.
    app: u16,
    /// Status for the admin token.
    admin: u16,
}

/// Shorthand for a [`Case`].
fn case(method: Method, path: &'static str, body: &'static str, [reader, app, admin]: [u16; 3]) -> Case {
    Case { method, path, body, reader, app, admin }
}

/// Every route of the API, in an order where each admin call makes sense after the previous ones (the
/// non-admin attempts before it are refused and change nothing). Keys `app/x`, `app/y` and `other` exist.
fn cases() -> Vec<Case> {
    use Method as M;
    let denied = [403, 403, 200];
    vec![
        // Keys: get, put, delete, list, and the original project's routes.
        case(M::GET, "/v1/kv/app/x", "", [200, 200, 200]),
        case(M::GET, "/v1/kv/other", "", [200, 403, 200]),
        case(M::GET, "/v1/kv/other?consistency=stale", "", [200, 403, 200]),
        case(M::PUT, "/v1/kv/app/x", "v2", [403, 200, 200]),
        case(M::PUT, "/v1/kv/other", "v2", denied),
        case(M::PUT, "/v1/kv/app/x?cas=1", "v2", [403, 412, 412]),
        case(M::DELETE, "/v1/kv/app/y", "", [403, 200, 200]),
        case(M::DELETE, "/v1/kv/other2", "", denied),
        case(M::GET, "/v1/kv?prefix=app/", "", [200, 200, 200]),
        case(M::GET, "/v1/kv?prefix=app/sub", "", [200, 200, 200]),
        case(M::GET, "/v1/kv?prefix=ap", "", [200, 403, 200]),
        case(M::GET, "/v1/kv", "", [200, 403, 200]),
        case(M::GET, "/db/app/x", "", [200, 200, 200]),
        case(M::POST, "/db/app/x", "v3", [403, 200, 200]),
        case(M::GET, "/db/other", "", [200, 403, 200]),
        case(M::POST, "/db/other", "v3", denied),
        // Cluster calls: the view needs any user; transfer (to the leader: a no-op) and join need admin (a
        // malformed join body is a 400 only once the caller is admitted).
        case(M::GET, "/v1/cluster", "", [200, 200, 200]),
        case(M::POST, "/v1/cluster/transfer-leader?to=LEADER", "", denied),
        case(M::POST, "/v1/cluster/join", "not json", [403, 403, 400]),
        // Auth calls: status needs any user, the rest admin.
        case(M::GET, "/v1/auth/status", "", [200, 200, 200]),
        case(M::POST, "/v1/auth/enable", "", denied),
        case(M::GET, "/v1/auth/users", "", denied),
        case(M::GET, "/v1/auth/users/admin", "", denied),
        case(M::PUT, "/v1/auth/users/tmp", r#"{"roles": ["reader"]}"#, denied),
        case(M::POST, "/v1/auth/users/tmp/token", "", denied),
        case(M::POST, "/v1/auth/users/tmp/roles/app", "", denied),
        case(M::DELETE, "/v1/auth/users/tmp/roles/app", "", denied),
        case(M::DELETE, "/v1/auth/users/tmp", "", denied),
        case(M::GET, "/v1/auth/roles", "", denied),
        case(M::GET, "/v1/auth/roles/app", "", denied),
        case(M::PUT, "/v1/auth/roles/tmp", "", denied),
        case(M::POST, "/v1/auth/roles/tmp/grant", r#"{"prefix": "tmp/", "access": "write"}"#, denied),
        case(M::POST, "/v1/auth/roles/tmp/revoke", r#"{"prefix": "tmp/"}"#, denied),
        case(M::DELETE, "/v1/auth/roles/tmp", "", denied),
        // The admin cannot lock everyone out, and the routes that stay open.
        case(M::DELETE, "/v1/auth/users/admin", "", [403, 403, 409]),
        case(M::GET, "/livez", "", [200, 200, 200]),
        case(M::GET, "/readyz", "", [200, 200, 200]),
        case(M::GET, "/metrics", "", [200, 200, 200]),
    ]
}

/// Sends `method path` with `body` to node `i`, with `Authorization: Bearer token` if given.
async fn call(cluster: &Cluster, i: usize, method: &Method, path: &str, body: &str, token: Option<&str>) -> Answer {
    let mut request = cluster.http.request(method.clone(), cluster.url(i, path)).body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    cluster.send(request).await.unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", cluster.nodes[i].id))
}

/// Runs `tally ARGS --endpoints ...` with `TALLY_TOKEN` set to `token` (or unset): `(success, stdout, stderr)`.
async fn tally(cluster: &Cluster, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let endpoints: Vec<String> = (0..NODES).map(|i| cluster.url(i, "")).collect();
    let mut command = tokio::process::Command::new(TALLY);
    command.args(args).args(["--endpoints", &endpoints.join(",")]).stdin(Stdio::null()).env_remove("TALLY_TOKEN");
    if let Some(token) = token {
        command.env("TALLY_TOKEN", token);
    }
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .unwrap_or_else(|_| panic!("tally {args:?} did not finish in 30 s"))
        .unwrap_or_else(|e| panic!("cannot run tally {args:?}: {e}"));
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_string();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

/// Like [`tally`], asserting success; its stdout.
async fn tally_ok(cluster: &Cluster, token: Option<&str>, args: &[&str]) -> String {
    let (ok, stdout, stderr) = tally(cluster, token, args).await;
    assert!(ok, "tally {args:?} failed: {stderr}");
    stdout
}

/// Node `i`'s applied index, from `/metrics` (open whatever the auth state).
async fn applied_index(cluster: &Cluster, i: usize) -> u64 {
    let metrics = call(cluster, i, &Method::GET, "/metrics", "", None).await.text();
    let line = metrics.lines().find(|l| l.starts_with("tally_raft_applied_index ")).expect("applied index metric");
    line.rsplit(' ').next().and_then(|n| n.parse().ok()).expect("a number")
}

/// Waits until every node has applied what the leader has applied (so each enforces the same auth state).
async fn wait_all_applied(cluster: &Cluster, leader: usize) {
    let target = applied_index(cluster, leader).await;
    for i in 0..NODES {
        let deadline = Instant::now() + APPLY_TIMEOUT;
        while applied_index(cluster, i).await < target {
            assert!(Instant::now() < deadline, "{} did not apply {target} in {APPLY_TIMEOUT:?}", cluster.nodes[i].id);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Checks every case on node `i` for every caller; `leader` names the leader for transfer-leader. Returns how
/// many checks passed, and the tokens the admin's calls created (for the log check).
async fn check_every_route(cluster: &Cluster, i: usize, leader: &str, tokens: &Tokens) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut created = Vec::new();
    let secrets = [tokens.admin.as_str(), tokens.reader.as_str(), tokens.app.as_str()];
    for case in cases() {
        let path = case.path.replace("LEADER", leader);
        let open = matches!(case.path, "/livez" | "/readyz" | "/metrics");
        let anonymous = [(None, "no token"), (Some("tly_0000000000000000000000000000000000000000"), "a bad token")];
        for (token, who) in anonymous {
            let answer = call(cluster, i, &case.method, &path, case.body, token).await;
            let on = format!("{} {path} with {who} on {}", case.method, cluster.nodes[i].id);
            if open {
                assert_eq!(answer.status, 200, "{on}: {}", answer.text());
            } else {
                let message = answer.assert_error(401, "unauthenticated");
                assert!(!message.contains("tly_0000"), "{on}: the message echoes the token: {message}");
                assert_eq!(answer.header("www-authenticate").as_deref(), Some("Bearer realm=\"tally\""), "{on}");
            }
            checked += 1;
        }
        let callers = [
            (&tokens.reader, case.reader, "reader"),
            (&tokens.app, case.app, "app"),
            (&tokens.admin, case.admin, "admin"),
        ];
        for (token, expected, who) in callers {
            let answer = call(cluster, i, &case.method, &path, case.body, Some(token)).await;
            let on = format!("{} {path} as {who} on {}", case.method, cluster.nodes[i].id);
            assert_eq!(answer.status, expected, "{on}: {}", answer.text());
            if expected == 403 {
                let message = answer.assert_error(403, "permission_denied");
                let names_access =
                    ["read", "write", "admin"].iter().any(|access| message.contains(&format!("lacks {access}")));
                assert!(
                    names_access && message.contains(who),
                    "{on}: the message does not say what is missing: {message}"
                );
            }
            let text = answer.text();
            assert!(secrets.iter().all(|secret| !text.contains(secret)), "{on}: the answer carries a token: {text}");
            let json = serde_json::from_slice::<serde_json::Value>(&answer.body).ok();
            if let Some(token) = json.as_ref().and_then(|json| json["token"].as_str()) {
                created.push(token.to_string());
            }
            checked += 1;
        }
    }
    (checked, created)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_401_403_or_200_by_token_and_no_token_is_logged() {
    let start = Instant::now();
    let cluster = Cluster::start(&["--cluster-token", CLUSTER_TOKEN]).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % NODES;
    let leader_id = cluster.nodes[leader].id.clone();

    // Phase 1: with auth off (the default), everything is open: write the keys the matrix reads.
    for key in ["app/x", "app/y", "other", "other2"] {
        cluster.put_retrying(follower, key, "v1", Duration::from_secs(10)).await;
    }
    assert_eq!(call(&cluster, follower, &Method::GET, "/v1/auth/users", "", None).await.status, 200);

    // Phase 2: bootstrap with the CLI: an admin role and user, then auth on. Enabling without an admin is
    // refused (no lockout).
    let (ok, _, stderr) = tally(&cluster, None, &["auth", "enable"]).await;
    assert!(!ok && stderr.contains("would_lock_out"), "enabling without an admin: {stderr}");
    tally_ok(&cluster, None, &["role", "add", "root"]).await;
    tally_ok(&cluster, None, &["role", "grant", "root", "", "admin"]).await;
    let admin = tally_ok(&cluster, None, &["user", "add", "admin", "--role", "root"]).await;
    assert!(admin.starts_with("tly_") && admin.len() == 68, "the token is printed alone: {admin:?}");
    tally_ok(&cluster, None, &["auth", "enable"]).await;

    // Phase 3: the other users, made with the admin token (the CLI sends TALLY_TOKEN); without it, 401.
    let (ok, _, stderr) = tally(&cluster, None, &["user", "add", "intruder"]).await;
    assert!(!ok && stderr.contains("unauthenticated") && stderr.contains("TALLY_TOKEN"), "{stderr}");
    for (role, prefix, access) in [("reader", "", "read"), ("app", "app/", "write")] {
        tally_ok(&cluster, Some(&admin), &["role", "add", role]).await;
        tally_ok(&cluster, Some(&admin), &["role", "grant", role, prefix, access]).await;
    }
    let reader = tally_ok(&cluster, Some(&admin), &["user", "add", "reader", "--role", "reader"]).await;
    let app = tally_ok(&cluster, Some(&admin), &["user", "add", "app", "--role", "app"]).await;
    let roles = tally_ok(&cluster, Some(&admin), &["role", "list"]).await;
    assert_eq!(roles, "app\twrite\t\"app/\"\nreader\tread\t\"\"\nroot\tadmin\t\"\"", "{roles}");
    wait_all_applied(&cluster, leader).await;
    let status = tally_ok(&cluster, Some(&reader), &["auth", "status"]).await;
    assert_eq!(status, "auth enabled; token of user reader (roles: reader)");
    let mut tokens = Tokens { admin, reader, app };

    // Phase 4: every route, on the leader and through a follower (checked there, forwarded, checked again).
    let (mut checked, mut created) = check_every_route(&cluster, leader, &leader_id, &tokens).await;
    let (on_follower, more) = check_every_route(&cluster, follower, &leader_id, &tokens).await;
    checked += on_follower;
    created.extend(more);
    assert_eq!(created.len(), 4, "the admin created and rotated the tmp user's token once per pass");

    // Phase 5: the cluster token still admits a join (the malformed body is then refused), a user's does not.
    for i in [leader, follower] {
        let answer = call(&cluster, i, &Method::POST, "/v1/cluster/join", "{}", Some(CLUSTER_TOKEN)).await;
        answer.assert_error(400, "bad_request");
    }

    // Phase 6: a rotated token stops working at once on the leader, and on every node once applied.
    let rotated = tally_ok(&cluster, Some(&tokens.admin), &["user", "rotate", "app"]).await;
    let old = call(&cluster, leader, &Method::GET, "/v1/kv/app/x", "", Some(&tokens.app)).await;
    old.assert_error(401, "unauthenticated");
    wait_all_applied(&cluster, leader).await;
    for i in 0..NODES {
        assert_eq!(call(&cluster, i, &Method::GET, "/v1/kv/app/x", "", Some(&rotated)).await.status, 200);
        call(&cluster, i, &Method::GET, "/v1/kv/app/x", "", Some(&tokens.app))
            .await
            .assert_error(401, "unauthenticated");
    }
    let old_app = std::mem::replace(&mut tokens.app, rotated);

    // Phase 7: disabled, everything is open again, on every node.
    tally_ok(&cluster, Some(&tokens.admin), &["auth", "disable"]).await;
    wait_all_applied(&cluster, leader).await;
    for i in 0..NODES {
        for (method, path) in
            [(Method::GET, "/v1/kv/other"), (Method::PUT, "/v1/kv/other"), (Method::GET, "/v1/auth/users")]
        {
            let answer = call(&cluster, i, &method, path, "open", None).await;
            assert_eq!(
                answer.status,
                200,
                "{method} {path} on {} after disable: {}",
                cluster.nodes[i].id,
                answer.text()
            );
        }
    }
    let path = format!("/v1/cluster/transfer-leader?to={leader_id}");
    assert_eq!(call(&cluster, follower, &Method::POST, &path, "", None).await.status, 200);

    // Phase 8: no token appears in any node's log.
    let secrets: Vec<&String> =
        [&tokens.admin, &tokens.reader, &tokens.app, &old_app].into_iter().chain(&created).collect();
    for node in &cluster.nodes {
        let log = std::fs::read_to_string(&node.log).unwrap_or_else(|e| panic!("read {}: {e}", node.log.display()));
        assert!(log.contains("auth state changed"), "{}'s log shows no auth change: is it the right file?", node.id);
        for secret in &secrets {
            assert!(!log.contains(secret.as_str()), "{}'s log contains a token", node.id);
        }
    }
    eprintln!("auth: {checked} route checks in {}", common::elapsed(start));
}
