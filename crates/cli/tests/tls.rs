//! TLS end to end with real processes: `tally certs init`, a static 3-node cluster whose client ports require
//! client certificates (and whose peer TLS flags are given), and an HTTPS registry that a node registers
//! through.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{NodeProcess, TALLY, reserve_ports, tail};

/// How long a node may take to answer `/livez` after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A process of the test with its log.
struct Spawned {
    /// The process, stopped by pid on drop.
    process: NodeProcess,
    /// Its output.
    log: PathBuf,
}

/// Starts `tally ARGS`, its output in `log`.
fn spawn(args: &[String], log: PathBuf) -> Spawned {
    let file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(TALLY)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone"))
        .stderr(file)
        .spawn()
        .expect("start tally");
    Spawned { process: NodeProcess::new(child), log }
}

/// Runs `tally ARGS` to completion.
fn run(args: &[&str]) -> Output {
    Command::new(TALLY).args(args).env("NO_COLOR", "1").stdin(Stdio::null()).output().expect("run tally")
}

/// `tally certs init DIR` with the nodes, `registry` and user `alice`.
fn certs_init(dir: &Path) {
    let output =
        run(&["certs", "init", &dir.display().to_string(), "--nodes", "n1,n2,n3,registry", "--users", "alice"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "certs init failed: {stdout} {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("ca.pem") && stdout.contains("--tls-cert"), "{stdout}");
    for file in ["ca.pem", "ca-key.pem", "n1.pem", "n3-key.pem", "registry.pem", "alice.pem", "alice-key.pem"] {
        assert!(dir.join(file).exists(), "{file} missing");
    }
    // Run again: the CA is kept, not overwritten.
    let again = run(&["certs", "init", &dir.display().to_string()]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("kept"), "{again:?}");
}

/// An HTTPS client trusting `certs/ca.pem` and presenting `certs/NAME.pem` when `name` is given.
fn https_client(certs: &Path, name: Option<&str>) -> reqwest::Client {
    let identity = name.map(|n| tally_net::tls::CertifiedKeyFiles {
        certificate: certs.join(format!("{n}.pem")),
        key: certs.join(format!("{n}-key.pem")),
    });
    let files = tally_net::tls::ClientTlsFiles { ca: Some(certs.join("ca.pem")), identity };
    let tls = tally_net::tls::client_config(&files).expect("client TLS");
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// Waits until `url` answers 200 through `http`, or the process exits, or [`START_TIMEOUT`].
async fn wait_ok(http: &reqwest::Client, url: &str, spawned: &mut Spawned) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(answer) = http.get(url).send().await {
            if answer.status().is_success() {
                return;
            }
        }
        let exited = spawned.process.exited();
        assert!(exited.is_none(), "{url}: process exited ({exited:?}):\n{}", tail(&spawned.log, 40));
        assert!(Instant::now() < deadline, "{url} not ready:\n{}", tail(&spawned.log, 40));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `tally ARGS --endpoints ENDPOINTS` with `extra` flags; retried while the cluster elects (exit 2 with
/// no_leader), at most [`START_TIMEOUT`].
fn client_command(args: &[&str], endpoints: &str, extra: &[&str]) -> Output {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--endpoints", endpoints]);
        all.extend(extra);
        let output = run(&all);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() || !stderr.contains("no_leader") || Instant::now() > deadline {
            return output;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_client_certificates_serves_only_trusted_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    certs_init(&certs);
    let file = |name: &str| certs.join(name).display().to_string();

    // Three nodes: HTTPS client ports that require client certificates (--tls-ca), peer TLS flags given.
    let ports = reserve_ports(6);
    let cluster: Vec<String> = (0..3).map(|i| format!("n{}=https://127.0.0.1:{}", i + 1, ports[2 * i + 1])).collect();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let id = format!("n{}", i + 1);
        let args: Vec<String> = [
            "node",
            "--id",
            &id,
            "--listen-client",
            &format!("127.0.0.1:{}", ports[2 * i]),
            "--listen-peer",
            &format!("127.0.0.1:{}", ports[2 * i + 1]),
            "--data-dir",
            &dir.path().join(&id).display().to_string(),
            "--initial-cluster",
            &cluster.join(","),
            "--tick-ms",
            "20",
            "--tls-cert",
            &file(&format!("{id}.pem")),
            "--tls-key",
            &file(&format!("{id}-key.pem")),
            "--tls-ca",
            &file("ca.pem"),
            "--peer-tls-cert",
            &file(&format!("{id}.pem")),
            "--peer-tls-key",
            &file(&format!("{id}-key.pem")),
            "--peer-tls-ca",
            &file("ca.pem"),
        ]
        .map(String::from)
        .to_vec();
        nodes.push(spawn(&args, dir.path().join(format!("{id}.log"))));
    }
    let alice = https_client(&certs, Some("alice"));
    for (i, node) in nodes.iter_mut().enumerate() {
        wait_ok(&alice, &format!("https://127.0.0.1:{}/livez", ports[2 * i]), node).await;
    }
    let endpoints = (0..3).map(|i| format!("https://127.0.0.1:{}", ports[2 * i])).collect::<Vec<_>>();

    // With the CA and alice's certificate: a write through one node (forwarded over TLS, the node presenting
    // its own certificate, if it is a follower) and reads through every node.
    let (ca, alice_cert, alice_key) = (file("ca.pem"), file("alice.pem"), file("alice-key.pem"));
    let trusted = ["--cacert", ca.as_str(), "--cert", alice_cert.as_str(), "--key", alice_key.as_str()];
    for (i, endpoint) in endpoints.iter().enumerate() {
        let key = format!("k{i}");
        let put = client_command(&["put", &key, "over tls"], endpoint, &trusted);
        assert!(put.status.success(), "put via {endpoint}: {put:?}");
    }
    for endpoint in &endpoints {
        let get = client_command(&["get", "k0"], endpoint, &trusted);
        assert!(get.status.success(), "get via {endpoint}: {get:?}");
        assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "over tls");
    }
    let status = client_command(&["status"], &endpoints[0], &trusted);
    assert!(status.status.success(), "status: {status:?}");

    // Without a client certificate: refused by the TLS handshake.
    let no_cert = client_command(&["get", "k0"], &endpoints[0], &["--cacert", &ca]);
    assert_eq!(no_cert.status.code(), Some(2), "{no_cert:?}");

    // Without the CA: the node's certificate is not trusted; the hint names --cacert.
    let no_ca = client_command(&["get", "k0"], &endpoints[0], &["--cert", &alice_cert, "--key", &alice_key]);
    assert_eq!(no_ca.status.code(), Some(2), "{no_ca:?}");
    assert!(String::from_utf8_lossy(&no_ca.stderr).contains("--cacert"), "{no_ca:?}");

    // Plain HTTP to an HTTPS port: refused.
    let plain = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().expect("client");
    let answer = plain.get(format!("http://127.0.0.1:{}/livez", ports[0])).send().await;
    assert!(answer.is_err() || !answer.as_ref().is_ok_and(|a| a.status().is_success()), "{answer:?}");
    drop(nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_registers_through_an_https_registry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    certs_init(&certs);
    let file = |name: &str| certs.join(name).display().to_string();
    let ports = reserve_ports(3);

    // The registry over HTTPS, requiring the callers' certificates.
    let registry_args: Vec<String> = [
        "registry",
        "--listen",
        &format!("127.0.0.1:{}", ports[0]),
        "--ttl-ms",
        "1000",
        "--tls-cert",
        &file("registry.pem"),
        "--tls-key",
        &file("registry-key.pem"),
        "--tls-ca",
        &file("ca.pem"),
    ]
    .map(String::from)
    .to_vec();
    let mut registry = spawn(&registry_args, dir.path().join("registry.log"));
    let registry_url = format!("https://127.0.0.1:{}", ports[0]);
    let as_n1 = https_client(&certs, Some("n1"));
    wait_ok(&as_n1, &format!("{registry_url}/livez"), &mut registry).await;

    // A node with no --id (its certificate names it n1) registers, wins the claim and forms a cluster; its
    // client port speaks HTTPS without asking for client certificates.
    let node_args: Vec<String> = [
        "node",
        "--listen-client",
        &format!("127.0.0.1:{}", ports[1]),
        "--listen-peer",
        &format!("127.0.0.1:{}", ports[2]),
        "--data-dir",
        &dir.path().join("n1").display().to_string(),
        "--registry-address",
        &registry_url,
        "--tls-cert",
        &file("n1.pem"),
        "--tls-key",
        &file("n1-key.pem"),
        "--peer-tls-ca",
        &file("ca.pem"),
    ]
    .map(String::from)
    .to_vec();
    let mut node = spawn(&node_args, dir.path().join("n1.log"));
    let endpoint = format!("https://127.0.0.1:{}", ports[1]);
    wait_ok(&https_client(&certs, None), &format!("{endpoint}/livez"), &mut node).await;

    // The registry lists it under its certificate's name, with its https:// client URL.
    let listed: serde_json::Value =
        as_n1.get(format!("{registry_url}/v1/nodes")).send().await.expect("list").json().await.expect("json");
    assert_eq!(listed["nodes"][0]["id"], "n1", "{listed}");
    assert_eq!(listed["nodes"][0]["client_url"], endpoint.as_str(), "{listed}");

    // A caller without a certificate is refused by the registry.
    let anonymous = https_client(&certs, None).get(format!("{registry_url}/v1/nodes")).send().await;
    assert!(anonymous.is_err(), "{anonymous:?}");

    // put/get over HTTPS with only --cacert.
    let ca = file("ca.pem");
    let put = client_command(&["put", "greeting", "hello"], &endpoint, &["--cacert", &ca]);
    assert!(put.status.success(), "put: {put:?}\n{}", tail(&node.log, 30));
    let get = client_command(&["get", "greeting"], &endpoint, &["--cacert", &ca]);
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "hello", "{get:?}");
    drop(node);
    drop(registry);
}
