//! Transactions, key versions and prefix deletes over HTTP, on a three-node cluster in one process
//! (docs/http-api.md, "Transactions").

mod common;

use common::{shutdown, start_cluster, wait_for_leader};
use serde_json::Value;

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
