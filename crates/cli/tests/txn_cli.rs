//! `tally txn`, `tally del --prefix` and versions in `tally get --json`, as processes against a 3-node cluster of
//! `tally node` processes.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Cluster, NODES, TALLY};
use tokio::io::AsyncWriteExt;

/// Runs `tally ARGS --endpoints ...` with `stdin` as its input: (exit code, stdout, stderr).
async fn tally(cluster: &Cluster, args: &[&str], stdin: &str) -> (i32, String, String) {
    let endpoints: Vec<String> = (0..NODES).map(|i| cluster.url(i, "")).collect();
    let mut command = tokio::process::Command::new(TALLY);
    command.args(args).args(["--endpoints", &endpoints.join(",")]).env_remove("TALLY_TOKEN");
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run tally {args:?}: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    input.write_all(stdin.as_bytes()).await.expect("write stdin");
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("tally {args:?} did not finish in 30 s"))
        .expect("tally runs");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_string();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

/// The issue's create-if-absent, in the compact form.
const CREATE_IF_ABSENT: &str = "exists(\"acct/a\") == false\n\nput acct/a 100\nput acct/b 0\n\nget acct/a\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tally_txn_runs_compact_and_json_transactions() {
    let start = Instant::now();
    let cluster = Cluster::start(&[]).await;
    cluster.wait_for_leader().await;

    // Phase: the first run creates both accounts (exit 0), the second takes the failure branch (exit 1) and
    // shows the get.
    let (code, stdout, stderr) = tally(&cluster, &["txn"], CREATE_IF_ABSENT).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("succeeded at index "), "{stdout}");
    assert!(lines[1].starts_with("put acct/a: version 1") && lines[2].starts_with("put acct/b: version 1"), "{stdout}");
    let (code, stdout, stderr) = tally(&cluster, &["txn", "-"], CREATE_IF_ABSENT).await;
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.starts_with("compare failed at index "), "{stdout}");
    assert!(stdout.contains("get acct/a: 100 (version 1,"), "{stdout}");

    // Phase: JSON from a file, answered as JSON: a read-only transaction, stale too.
    let file = cluster.dir().join("read.json");
    let body = r#"{"compare": [{"key": "acct/a", "target": "value", "op": "==", "value": "100"}],
        "success": [{"list": {"prefix": "acct/"}}]}"#;
    std::fs::write(&file, body).expect("write the transaction");
    let path = file.to_str().expect("UTF-8 path");
    for extra in [&[][..], &["--stale"]] {
        let args: Vec<&str> = ["txn", path, "--json"].iter().chain(extra).copied().collect();
        let (code, stdout, stderr) = tally(&cluster, &args, "").await;
        assert_eq!(code, 0, "{args:?}: {stdout}\n{stderr}");
        let answer: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON answer");
        let items = &answer["results"][0]["list"]["items"];
        assert_eq!((items[0]["key"].clone(), items[1]["value"].clone()), ("acct/a".into(), "0".into()), "{answer}");
        assert_eq!(items[0]["version"], 1, "{answer}");
    }

    // Phase: a bad transaction is refused with the server's message naming the op, exit 2.
    let (code, _, stderr) = tally(&cluster, &["txn"], "\nput a 1\nput a 2\n").await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("success[1]: key \"a\" is written twice (first in success[0])"), "{stderr}");
    let (code, _, stderr) = tally(&cluster, &["txn"], "vers(a) == 1\n").await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("line 1: unknown target \"vers\""), "{stderr}");

    // Phase: versions in `tally get --json`, and a prefix delete with its count.
    let (code, stdout, _) = tally(&cluster, &["put", "acct/a", "101"], "").await;
    assert_eq!(code, 0, "{stdout}");
    let (_, stdout, _) = tally(&cluster, &["get", "acct/a", "--json"], "").await;
    let entry: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!((entry["value"].clone(), entry["version"].clone()), ("101".into(), 2.into()), "{entry}");
    let (code, stdout, stderr) = tally(&cluster, &["del", "--prefix", "acct/", "--json"], "").await;
    assert_eq!(code, 0, "{stderr}");
    let deleted: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(deleted["deleted"], 2, "{deleted}");
    let (code, _, _) = tally(&cluster, &["get", "acct/b"], "").await;
    assert_eq!(code, 1, "acct/b went with its prefix");
    eprintln!("txn_cli: {}", common::elapsed(start));
}
