//! Transactions, key versions and prefix deletes over HTTP, on a three-node cluster in one process
//! (docs/http-api.md, "Transactions").

mod common;

use common::{shutdown, start_cluster, start_cluster_with, wait_for_followers, wait_for_leader};
use serde_json::{Value, json};

/// `http://ADDR` of server `i`.
fn base(servers: &[tally_server::Server], i: usize) -> String {
    format!("http://{}", servers[i].client_addr())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_shows_version_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster(dir.path(), 3).await;
    let http = reqwest::Client::new();
    let leader = wait_for_leader(&http, &servers).await;
    let url = format!("{}/v1/kv/counted", base(&servers, leader));

    // Phase: two writes make version 2, in the header and in a page.
    for value in ["one", "two"] {
        assert_eq!(http.put(&url).body(value).send().await.expect("put").status(), 200);
    }
    let answer = http.get(&url).send().await.expect("get");
    assert_eq!(answer.headers()["x-tally-version"], "2");
    let page: Value = http
        .get(format!("{}/v1/kv?prefix=counted", base(&servers, leader)))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(page["items"][0]["version"], 2, "{page}");

    // Phase: a delete ends the count; the key created again starts at 1.
    assert_eq!(http.delete(&url).send().await.expect("delete").status(), 200);
    assert_eq!(http.put(&url).body("three").send().await.expect("put").status(), 200);
    let answer = http.get(&url).send().await.expect("get");
    assert_eq!(answer.headers()["x-tally-version"], "1");
    shutdown(servers).await;
}

/// `POST {base}/v1/txn{query}` with `body`: the status, the `X-Tally-Index` header and the JSON answer.
async fn txn(http: &reqwest::Client, base: &str, query: &str, body: &Value) -> (u16, u64, Value) {
    let answer = http.post(format!("{base}/v1/txn{query}")).json(body).send().await.expect("txn answers");
    let status = answer.status().as_u16();
    let index = answer.headers()["x-tally-index"].to_str().expect("ascii").parse().expect("a number");
    (status, index, answer.json().await.expect("a JSON answer"))
}

/// The example: create two accounts if the first does not exist, else read it.
fn create_if_absent() -> Value {
    json!({"compare": [{"key": "acct/a", "target": "exists", "op": "==", "value": false}],
        "success": [{"put": {"key": "acct/a", "value": "100"}}, {"put": {"key": "acct/b", "value": "0"}}],
        "failure": [{"get": {"key": "acct/a"}}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_if_absent_of_two_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster(dir.path(), 3).await;
    let http = reqwest::Client::new();
    let leader = base(&servers, wait_for_leader(&http, &servers).await);

    // Phase: the first run finds no account, takes the success branch and writes both at one index.
    let (status, index, first) = txn(&http, &leader, "", &create_if_absent()).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["index"], index, "X-Tally-Index is the transaction's index");
    let put = |key: &str| json!({"put": {"key": key, "version": 1, "create_index": index, "modify_index": index}});
    assert_eq!(first, json!({"succeeded": true, "index": index, "results": [put("acct/a"), put("acct/b")]}));

    // Phase: the second run finds acct/a, takes the failure branch, and returns the get; nothing is written.
    let (status, second_index, second) = txn(&http, &leader, "", &create_if_absent()).await;
    assert_eq!(status, 200, "{second}");
    assert!(second_index > index, "a transaction with writes takes an entry even when its compare fails");
    let found = json!({"get": {"key": "acct/a", "found": true, "value": "100", "create_index": index,
        "modify_index": index, "version": 1}});
    assert_eq!(second, json!({"succeeded": false, "index": second_index, "results": [found]}));
    let answer = http.get(format!("{leader}/v1/kv/acct/b")).send().await.expect("get");
    assert_eq!(answer.headers()["x-tally-modify-index"].to_str().expect("ascii"), index.to_string());
    shutdown(servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_compare_runs_failure_branch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster(dir.path(), 3).await;
    let http = reqwest::Client::new();
    let leader = base(&servers, wait_for_leader(&http, &servers).await);
    assert_eq!(http.put(format!("{leader}/v1/kv/k")).body("v1").send().await.expect("put").status(), 200);

    // Phase: one compare of two fails, so the failure ops run, in order, each seeing the one before.
    let body = json!({"compare": [{"key": "k", "target": "value", "op": "==", "value": "v1"},
            {"key": "k", "target": "version", "op": ">", "value": 1}],
        "success": [{"put": {"key": "won", "value": "yes"}}],
        "failure": [{"put": {"key": "k", "value": "v2"}}, {"get": {"key": "k"}}, {"delete": {"key": "nothing"}}]});
    let (status, index, answer) = txn(&http, &leader, "", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["succeeded"], false, "{answer}");
    let results = answer["results"].as_array().expect("results");
    assert_eq!(results.len(), 3, "one result per failure op: {answer}");
    assert_eq!(results[1]["get"]["value"], "v2", "the get sees the put before it: {answer}");
    assert_eq!(
        (results[1]["get"]["version"].clone(), results[1]["get"]["modify_index"].clone()),
        (json!(2), json!(index))
    );
    assert_eq!(results[2], json!({"delete": {"key": "nothing", "deleted": false}}));
    let won = http.get(format!("{leader}/v1/kv/won")).send().await.expect("get");
    assert_eq!(won.status(), 404, "the success branch did not run");
    shutdown(servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compare_target_and_op() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster(dir.path(), 3).await;
    let http = reqwest::Client::new();
    let leader = base(&servers, wait_for_leader(&http, &servers).await);
    // The key "k" is written twice (value "m", version 2, create index c, modify index m); "absent" is not.
    let created = http.put(format!("{leader}/v1/kv/k")).body("a").send().await.expect("put");
    let created: Value = created.json().await.expect("json");
    let modified = http.put(format!("{leader}/v1/kv/k")).body("m").send().await.expect("put");
    let modified: Value = modified.json().await.expect("json");
    let (c, m) = (created["index"].as_u64().expect("index"), modified["index"].as_u64().expect("index"));

    // Each compare alone, as a read-only transaction: (key, target, op, operand, holds).
    let cases = [
        ("k", "value", "==", json!("m"), true),
        ("k", "value", "!=", json!("m"), false),
        ("k", "value", "<", json!("n"), true),
        ("k", "value", ">", json!("l"), true),
        ("k", "value", ">", json!("m"), false),
        ("absent", "value", "!=", json!("x"), false),
        ("absent", "value", "<", json!("zzz"), false),
        ("k", "version", "==", json!(2), true),
        ("k", "version", "<", json!(2), false),
        ("absent", "version", "==", json!(0), true),
        ("k", "create_index", "==", json!(c), true),
        ("k", "create_index", "<", json!(m), true),
        ("absent", "create_index", "==", json!(0), true),
        ("k", "modify_index", "==", json!(m), true),
        ("k", "modify_index", ">", json!(c), true),
        ("k", "modify_index", "!=", json!(m), false),
        ("absent", "modify_index", ">", json!(0), false),
        ("k", "exists", "==", json!(true), true),
        ("k", "exists", "!=", json!(true), false),
        ("absent", "exists", "==", json!(false), true),
    ];
    for (key, target, op, operand, holds) in cases {
        let body = json!({"compare": [{"key": key, "target": target, "op": op, "value": operand}]});
        let (status, _, answer) = txn(&http, &leader, "", &body).await;
        assert_eq!(status, 200, "{body}: {answer}");
        assert_eq!(answer["succeeded"], holds, "{key} {target} {op} {operand}: {answer}");
    }
    // A value compare in base64.
    let body = json!({"compare": [{"key": "k", "target": "value", "op": "==", "value_b64": "bQ=="}]});
    assert_eq!(txn(&http, &leader, "", &body).await.2["succeeded"], true);
    shutdown(servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_on_follower_is_forwarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster(dir.path(), 3).await;
    let http = reqwest::Client::new();
    let leader = wait_for_leader(&http, &servers).await;
    wait_for_followers(&http, &servers, leader).await;
    let follower = base(&servers, (leader + 1) % servers.len());

    // Phase: the follower forwards the body to the leader and relays its answer, index header included.
    let (status, index, answer) = txn(&http, &follower, "", &create_if_absent()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["succeeded"].clone(), answer["index"].clone()), (json!(true), json!(index)), "{answer}");
    let read = http.get(format!("{}/v1/kv/acct/a", base(&servers, leader))).send().await.expect("get");
    assert_eq!(read.text().await.expect("body"), "100");

    // Phase: an explicit consistency=linearizable is relayed too, and the second run fails its compare.
    let (status, _, answer) = txn(&http, &follower, "?consistency=linearizable", &create_if_absent()).await;
    assert_eq!((status, answer["succeeded"].clone()), (200, json!(false)), "{answer}");
    shutdown(servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_txn_on_follower_is_linearizable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster(dir.path(), 3).await;
    let http = reqwest::Client::new();
    let leader = wait_for_leader(&http, &servers).await;
    let (leader_url, follower) = (base(&servers, leader), base(&servers, (leader + 1) % servers.len()));
    let read_both = json!({"compare": [{"key": "x", "target": "exists", "op": "==", "value": true}],
        "success": [{"get": {"key": "x"}}, {"list": {"prefix": "x"}}]});

    // Phase: each write on the leader is seen at once by a read-only transaction on a follower.
    for round in 0..20 {
        let put = http.put(format!("{leader_url}/v1/kv/x")).body(format!("{round}")).send().await.expect("put");
        let written: Value = put.json().await.expect("json");
        let (status, index, answer) = txn(&http, &follower, "", &read_both).await;
        assert_eq!(status, 200, "{answer}");
        assert!(index >= written["index"].as_u64().expect("index"), "round {round}: {answer} behind {written}");
        assert_eq!(answer["results"][0]["get"]["value"], format!("{round}"), "round {round}: {answer}");
        assert_eq!(answer["results"][1]["list"]["items"][0]["value"], format!("{round}"), "{answer}");
    }

    // Phase: reads take no log entry; stale ones are answered from the follower's state.
    let last_index = |view: Value| view["last_index"].as_u64().expect("last_index");
    let before = last_index(common::cluster(&http, &servers[leader]).await);
    for query in ["", "?consistency=stale", "?consistency=linearizable"] {
        let (status, _, answer) = txn(&http, &follower, query, &read_both).await;
        assert_eq!((status, answer["succeeded"].clone()), (200, json!(true)), "{query}: {answer}");
    }
    assert_eq!(last_index(common::cluster(&http, &servers[leader]).await), before, "a read-only txn wrote");
    shutdown(servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_errors_name_the_op() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster_with(dir.path(), 3, |config| config.limits.max_txn_ops = 4).await;
    let http = reqwest::Client::new();
    let leader = wait_for_leader(&http, &servers).await;
    wait_for_followers(&http, &servers, leader).await;
    let put = |key: &str| json!({"put": {"key": key, "value": "v"}});

    // Each refused with the status and a message naming what to fix, on the leader and on a follower.
    let cases = [
        (
            json!({"success": [put("a"), put("a")]}),
            "",
            400,
            "success[1]: key \"a\" is written twice (first in success[0])",
        ),
        (
            json!({"failure": [put("a"), put("b"), put("c"), put("d"), put("e")]}),
            "",
            400,
            "failure[4]: failure has 5 entries, over the limit of 4 (--max-txn-ops)",
        ),
        (
            json!({"compare": [{"key": "a", "target": "vers", "op": "==", "value": 1}]}),
            "",
            400,
            "compare[0]: unknown target \"vers\"",
        ),
        (
            json!({"compare": [{"key": "a", "target": "exists", "op": "<", "value": true}]}),
            "",
            400,
            "compare[0]: an exists compare takes only == or !=, not <",
        ),
        (
            json!({"success": [{"get": {"key": "a"}}, put("b")]}),
            "?consistency=stale",
            400,
            "success[1] is a put, so the transaction writes",
        ),
        (
            json!({"success": [{"put": {"key": "a", "value": "x", "value_b64": "eA=="}}]}),
            "",
            400,
            "success[0]: give value or value_b64, not both",
        ),
        (
            json!({"success": [{"put": {"key": "k".repeat(5000), "value": "x"}}]}),
            "",
            413,
            "success[0]: the key is 5000 bytes; the limit is 4096",
        ),
        (json!({"success": []}), "?consistency=strong", 400, "consistency must be"),
        (json!({"success": []}), "?cas=1", 400, "unknown query parameter \"cas\""),
    ];
    for target in [leader, (leader + 1) % servers.len()] {
        for (body, query, status, expected) in &cases {
            let (got, _, answer) = txn(&http, &base(&servers, target), query, body).await;
            assert_eq!(got, *status, "{body}{query}: {answer}");
            let message = answer["error"]["message"].as_str().expect("a message");
            assert!(message.contains(expected), "{body}{query}: {message:?} should contain {expected:?}");
        }
        // Bodies that are not JSON, or not UTF-8.
        for body in [&b"{\"compare\": [}"[..], b"{\"success\": [{\"get\": {\"key\": \"\xff\"}}]}"] {
            let url = format!("{}/v1/txn", base(&servers, target));
            let answer = http.post(url).body(body.to_vec()).send().await.expect("answers");
            assert_eq!(answer.status(), 400);
            let error: Value = answer.json().await.expect("json");
            assert!(error["error"]["message"].as_str().is_some_and(|m| m.starts_with("bad transaction")), "{error}");
        }
    }

    // Nothing was written by any of them, and the cluster still takes transactions.
    let (status, _, answer) = txn(&http, &base(&servers, leader), "", &json!({"success": [{"list": {}}]})).await;
    assert_eq!((status, answer["results"][0]["list"]["items"].clone()), (200, json!([])), "{answer}");
    shutdown(servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_prefix_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster(dir.path(), 3).await;
    let http = reqwest::Client::new();
    let leader = wait_for_leader(&http, &servers).await;
    wait_for_followers(&http, &servers, leader).await;
    let (leader_url, follower) = (base(&servers, leader), base(&servers, (leader + 1) % servers.len()));
    for key in ["tmp/a", "tmp/b", "tmp/c/d", "tmpx", "keep"] {
        assert_eq!(http.put(format!("{leader_url}/v1/kv/{key}")).body("v").send().await.expect("put").status(), 200);
    }

    // Phase: through a follower, the prefix goes in one entry; the count comes back, and only its keys went.
    let answer = http.delete(format!("{follower}/v1/kv?prefix=tmp/")).send().await.expect("delete");
    assert_eq!(answer.status(), 200);
    let index: u64 = answer.headers()["x-tally-index"].to_str().expect("ascii").parse().expect("number");
    let body: Value = answer.json().await.expect("json");
    assert_eq!(body, json!({"index": index, "deleted": 3}));
    let page: Value = http.get(format!("{leader_url}/v1/kv")).send().await.expect("list").json().await.expect("json");
    let keys: Vec<&str> = page["items"].as_array().expect("items").iter().filter_map(|i| i["key"].as_str()).collect();
    assert_eq!(keys, ["keep", "tmpx"]);

    // Phase: nothing left under it is still a success; an empty or missing prefix is refused, as is a long one.
    let again: Value = http
        .delete(format!("{leader_url}/v1/kv?prefix=tmp/"))
        .send()
        .await
        .expect("delete")
        .json()
        .await
        .expect("json");
    assert_eq!(again["deleted"], 0);
    for query in ["", "?prefix=", "?prefix=a&limit=1"] {
        let answer = http.delete(format!("{leader_url}/v1/kv{query}")).send().await.expect("delete");
        assert_eq!(answer.status(), 400, "{query}");
    }
    let long = "p".repeat(5000);
    let answer = http.delete(format!("{leader_url}/v1/kv?prefix={long}")).send().await.expect("delete");
    assert_eq!(answer.status(), 413);
    shutdown(servers).await;
}

/// `METHOD {base}{path}` with the token and `body`: the JSON answer, which must be `200`.
async fn admin(http: &reqwest::Client, method: reqwest::Method, url: String, token: &str, body: Value) -> Value {
    let answer = http.request(method, &url).bearer_auth(token).json(&body).send().await.expect("answers");
    assert_eq!(answer.status(), 200, "{url}");
    answer.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_needs_permission_per_op() {
    use reqwest::Method;
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = start_cluster(dir.path(), 3).await;
    let http = reqwest::Client::new();
    let url = base(&servers, wait_for_leader(&http, &servers).await);

    // Phase: an admin, and a user "app" with write on app/ and read on shared/; auth on.
    let auth = |path: &str| format!("{url}/v1/auth/{path}");
    admin(&http, Method::PUT, auth("roles/root"), "", json!({})).await;
    admin(&http, Method::POST, auth("roles/root/grant"), "", json!({"prefix": "", "access": "admin"})).await;
    let root = admin(&http, Method::PUT, auth("users/root"), "", json!({"roles": ["root"]})).await;
    let root = root["token"].as_str().expect("token").to_string();
    admin(&http, Method::PUT, auth("roles/app"), &root, json!({})).await;
    admin(&http, Method::POST, auth("roles/app/grant"), &root, json!({"prefix": "app/", "access": "write"})).await;
    admin(&http, Method::POST, auth("roles/app/grant"), &root, json!({"prefix": "shared/", "access": "read"})).await;
    let app = admin(&http, Method::PUT, auth("users/app"), &root, json!({"roles": ["app"]})).await;
    let app = app["token"].as_str().expect("token").to_string();
    admin(&http, Method::POST, auth("enable"), &root, json!({})).await;

    // Phase: what the user holds passes; each op beyond it is refused, named, and nothing is written.
    let send = |token: String, body: Value| {
        let request = http.post(format!("{url}/v1/txn")).bearer_auth(token).json(&body);
        async move {
            let answer = request.send().await.expect("answers");
            (answer.status().as_u16(), answer.json::<Value>().await.expect("json"))
        }
    };
    let allowed = json!({"compare": [{"key": "shared/x", "target": "exists", "op": "==", "value": false}],
        "success": [{"put": {"key": "app/a", "value": "1"}}, {"delete_prefix": {"prefix": "app/tmp/"}},
            {"list": {"prefix": "shared/"}}],
        "failure": [{"get": {"key": "shared/x"}}]});
    let (status, answer) = send(app.clone(), allowed).await;
    assert_eq!((status, answer["succeeded"].clone()), (200, json!(true)), "{answer}");
    let refused = [
        (
            json!({"compare": [{"key": "other", "target": "exists", "op": "==", "value": false}]}),
            "compare[0]: user \"app\" lacks read on key \"other\"",
        ),
        (
            json!({"success": [{"put": {"key": "app/b", "value": "1"}}, {"put": {"key": "shared/y", "value": "1"}}]}),
            "success[1]: user \"app\" lacks write on key \"shared/y\"",
        ),
        (
            json!({"failure": [{"list": {"prefix": "sha"}}]}),
            "failure[0]: user \"app\" lacks read on every key under prefix \"sha\"",
        ),
        (
            json!({"success": [{"delete_prefix": {"prefix": "shared/"}}]}),
            "success[0]: user \"app\" lacks write on every key under prefix \"shared/\"",
        ),
        (json!({"success": [{"get": {"key": "top"}}]}), "success[0]: user \"app\" lacks read on key \"top\""),
    ];
    for (body, expected) in refused {
        let (status, answer) = send(app.clone(), body.clone()).await;
        assert_eq!(status, 403, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().expect("message");
        assert!(message.starts_with(expected), "{body}: {message:?} should start with {expected:?}");
    }
    let (status, _) = send(String::new(), json!({})).await;
    assert_eq!(status, 401, "no token");
    let read = http.get(format!("{url}/v1/kv/app/b")).bearer_auth(&root).send().await.expect("get");
    assert_eq!(read.status(), 404, "the refused transaction wrote nothing");
    shutdown(servers).await;
}
