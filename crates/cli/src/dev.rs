//! `tally dev`: a local cluster for trying Tally out, as child processes of this executable.
//!
//! ```text
//!  tally dev ──spawn──▶ tally registry --listen 127.0.0.1:7000 ──▶ DIR/registry.log
//!            ──spawn──▶ tally node --id n1 --registry-address http://127.0.0.1:7000 ... ──▶ DIR/n1.log
//!            ──spawn──▶ tally node --id n2 ... (client 127.0.0.1:7002, peer 127.0.0.1:7102) ──▶ DIR/n2.log
//!            ──spawn──▶ tally node --id n3 ... (client 127.0.0.1:7003, peer 127.0.0.1:7103) ──▶ DIR/n3.log
//!            ──poll /v1/cluster until a leader with every node a member──▶ print URLs, PIDs, commands to try
//!            ──watch children (report deaths) until Ctrl-C/SIGTERM──▶ SIGTERM each by PID, wait, SIGKILL
//! ```
//!
//! The nodes find each other through the registry, exactly as on separate hosts: one wins the bootstrap
//! claim and forms the cluster, the others join it and are promoted to voters (up to 3).
//!
//! With `--tls`, it first runs `tally certs init DIR/certs` (once: an existing CA and certificates are
//! reused) for the nodes and the registry, then starts everything encrypted: HTTPS client ports, an HTTPS
//! registry that requires the nodes' certificates, and mutual TLS between peers (`--peer-tls-ca`).
//!
//! The children run in their own process group, so a Ctrl-C in the terminal reaches only `tally dev`,
//! which then stops them in order.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tally_client::{Client, MemberRole, NodeRole};
use tokio::process::{Child, Command};

use crate::node::Election;
use crate::signal::shutdown_signal;

/// The first client port: node `nK` serves clients on `CLIENT_PORT_BASE + K`.
const CLIENT_PORT_BASE: u16 = 7000;
/// The first peer port: node `nK` talks to peers on `PEER_PORT_BASE + K`.
const PEER_PORT_BASE: u16 = 7100;
/// The most nodes `tally dev` starts (the port ranges must not overlap).
const NODES_MAX: u16 = 9;
/// How long to wait for the cluster to form (registry warm-up, election, joins).
const LEADER_WAIT: Duration = Duration::from_secs(30);
/// The id `tally dev` gives its registry in messages.
const REGISTRY: &str = "registry";
/// The registry's TTL: a fresh registry refuses bootstrap claims for one TTL, so keep it short here.
const REGISTRY_TTL_MS: &str = "2000";
/// How often to look for a leader, and for children that died.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long the children get to stop after SIGTERM before SIGKILL.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// `tally dev [--data-dir DIR] [--nodes N]`.
#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Where the nodes keep their data (DIR/n1, ...) and logs (DIR/n1.log, ...).
    #[arg(long, default_value = "./tally-data", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// How many nodes to start (1 to 9).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=NODES_MAX as i64))]
    pub nodes: u16,
    /// The nodes' client ports, comma-separated, one per node (default 7001, 7002, ...).
    #[arg(long, value_delimiter = ',', value_name = "PORT,...")]
    pub client_ports: Vec<u16>,
    /// The nodes' peer ports, comma-separated, one per node (default 7101, 7102, ...).
    #[arg(long, value_delimiter = ',', value_name = "PORT,...")]
    pub peer_ports: Vec<u16>,
    /// The registry's port.
    #[arg(long, default_value_t = 7000, value_name = "PORT")]
    pub registry_port: u16,
    /// The nodes' election mode (`tally node --election`).
    #[arg(long, value_enum, default_value_t = Election::Raft)]
    pub election: Election,
    /// Encrypt every port: make certificates in DIR/certs (once) and start the registry and the nodes with
    /// TLS (clients then need https:// endpoints and --cacert DIR/certs/ca.pem; the banner says how).
    #[arg(long)]
    pub tls: bool,
    /// The nodes' storage quota in bytes (`tally node --quota-bytes`; default 8 GiB, 0: none).
    #[arg(long, value_name = "N")]
    pub quota_bytes: Option<u64>,
}

/// The certificate directory of a dev cluster with `--tls`.
fn certs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("certs")
}

impl DevArgs {
    /// The client and peer port of each node: the ones given, or the fixed defaults.
    ///
    /// # Errors
    /// A port list whose length is not the number of nodes.
    fn ports(&self) -> anyhow::Result<Vec<(u16, u16)>> {
        let count = usize::from(self.nodes);
        let pick = |given: &[u16], base: u16, flag: &str| -> anyhow::Result<Vec<u16>> {
            match given.len() {
                0 => Ok((1..=self.nodes).map(|k| base + k).collect()),
                n if n == count => Ok(given.to_vec()),
                n => anyhow::bail!("--{flag} names {n} ports for {count} nodes: give one per node"),
            }
        };
        let client = pick(&self.client_ports, CLIENT_PORT_BASE, "client-ports")?;
        let peer = pick(&self.peer_ports, PEER_PORT_BASE, "peer-ports")?;
        Ok(client.into_iter().zip(peer).collect())
    }
}

/// One node of the dev cluster: where it listens and keeps its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevNode {
    /// Its id, `nK`.
    pub id: String,
    /// Its client address, `127.0.0.1:700K`.
    pub client_addr: String,
    /// Its peer address, `127.0.0.1:710K`.
    pub peer_addr: String,
    /// Its data directory, `DIR/nK`.
    pub data_dir: PathBuf,
    /// Its log file, `DIR/nK.log`.
    pub log_path: PathBuf,
    /// Its election mode.
    pub election: Election,
    /// With `--tls`: the certificate directory (`DIR/certs`), holding `ID.pem`, `ID-key.pem` and `ca.pem`.
    pub certs: Option<PathBuf>,
    /// `--quota-bytes` for the node, when given.
    pub quota_bytes: Option<u64>,
}

impl DevNode {
    /// Its client URL (`https://` with `--tls`).
    pub fn client_url(&self) -> String {
        let scheme = if self.certs.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.client_addr)
    }

    /// Its TLS flags: its certificate on its port; for a node, mutual TLS with its peers; for the registry,
    /// client certificates required (only nodes of the cluster may register).
    fn tls_args(&self) -> Vec<String> {
        let Some(certs) = &self.certs else { return Vec::new() };
        let file = |name: String| certs.join(name).display().to_string();
        let mut args = vec![
            "--tls-cert".to_string(),
            file(format!("{}.pem", self.id)),
            "--tls-key".to_string(),
            file(format!("{}-key.pem", self.id)),
        ];
        let ca_flag = if self.id == REGISTRY { "--tls-ca" } else { "--peer-tls-ca" };
        args.extend([ca_flag.to_string(), file("ca.pem".to_string())]);
        args
    }

    /// The arguments of `tally registry` or `tally node` for this process of the cluster `nodes` (whose
    /// first entry is the registry).
    pub fn node_args(&self, nodes: &[DevNode]) -> Vec<String> {
        if self.id == REGISTRY {
            let mut args: Vec<String> =
                ["registry", "--listen", &self.client_addr, "--ttl-ms", REGISTRY_TTL_MS].map(String::from).to_vec();
            args.extend(self.tls_args());
            return args;
        }
        let registry = nodes.iter().find(|n| n.id == REGISTRY).map_or_else(String::new, DevNode::client_url);
        let mut args: Vec<String> = vec![
            "node".into(),
            "--id".into(),
            self.id.clone(),
            "--listen-client".into(),
            self.client_addr.clone(),
            "--listen-peer".into(),
            self.peer_addr.clone(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--registry-address".into(),
            registry,
            "--promote-after".into(),
            "1s".into(),
        ];
        if self.election == Election::Bully {
            args.extend(["--election".into(), "bully".into()]);
        }
        if let Some(bytes) = self.quota_bytes {
            args.extend(["--quota-bytes".into(), bytes.to_string()]);
        }
        args.extend(self.tls_args());
        args
    }
}

/// The layout of a dev cluster: the registry on `registry_port`, then one node per (client port, peer port)
/// pair, with data under `data_dir`, electing their leader by `election`, with TLS if `tls`.
pub fn layout(
    data_dir: &Path,
    registry_port: u16,
    ports: &[(u16, u16)],
    election: Election,
    tls: bool,
) -> Vec<DevNode> {
    let certs = tls.then(|| certs_dir(data_dir));
    let registry_addr = format!("127.0.0.1:{registry_port}");
    let registry = DevNode {
        id: REGISTRY.to_string(),
        client_addr: registry_addr.clone(),
        peer_addr: registry_addr,
        data_dir: data_dir.to_path_buf(),
        log_path: data_dir.join("registry.log"),
        election,
        certs: certs.clone(),
        quota_bytes: None,
    };
    let nodes = ports.iter().zip(1..).map(|(&(client, peer), k)| DevNode {
        id: format!("n{k}"),
        client_addr: format!("127.0.0.1:{client}"),
        peer_addr: format!("127.0.0.1:{peer}"),
        data_dir: data_dir.join(format!("n{k}")),
        log_path: data_dir.join(format!("n{k}.log")),
        election,
        certs: certs.clone(),
        quota_bytes: None,
    });
    std::iter::once(registry).chain(nodes).collect()
}

/// A running child node.
struct Running {
    /// Which node.
    node: DevNode,
    /// The child process.
    child: Child,
    /// Its process id.
    pid: u32,
    /// Set once its exit was seen, so it is reported once and not signalled after.
    exited: bool,
}

/// `tally dev`: starts the cluster, waits for a leader, then runs until Ctrl-C or SIGTERM.
///
/// # Errors
/// A port in use, a data directory that cannot be created, a node that cannot be started or dies during
/// startup, or no leader within 15 s; any nodes started are stopped first.
pub async fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    let ports = args.ports()?;
    check_ports_free(&layout(&args.data_dir, args.registry_port, &ports, args.election, args.tls))?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    // Absolute paths, so the restart command printed for a dead node works from any directory.
    let data_dir =
        std::path::absolute(&args.data_dir).with_context(|| format!("cannot resolve {}", args.data_dir.display()))?;
    let mut nodes = layout(&data_dir, args.registry_port, &ports, args.election, args.tls);
    nodes.iter_mut().filter(|node| node.id != REGISTRY).for_each(|node| node.quota_bytes = args.quota_bytes);
    let ca = if args.tls { Some(make_certificates(&data_dir, &nodes)?) } else { None };
    let exe = std::env::current_exe().context("cannot find the tally executable to start the nodes")?;
    let mut running = Vec::new();
    for node in &nodes {
        match spawn(&exe, node, &nodes) {
            Ok(child) => running.push(child),
            Err(error) => {
                stop_all(&mut running).await;
                return Err(error);
            }
        }
    }
    let endpoints: Vec<String> = nodes.iter().filter(|n| n.id != REGISTRY).map(DevNode::client_url).collect();
    let leader = tokio::select! {
        leader = wait_for_leader(&endpoints, ca.as_deref(), &mut running) => leader,
        () = shutdown_signal() => Err(anyhow::anyhow!("interrupted before the cluster elected a leader")),
    };
    let leader = match leader {
        Ok(leader) => leader,
        Err(error) => {
            stop_all(&mut running).await;
            return Err(error);
        }
    };
    println!("{}", banner(&data_dir, &running, &leader, ca.as_deref()));
    supervise(&mut running).await;
    stop_all(&mut running).await;
    println!("tally dev: all nodes stopped; their data stays in {}", data_dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Fails with a clear message if any client or peer port of the cluster is taken.
fn check_ports_free(nodes: &[DevNode]) -> anyhow::Result<()> {
    for node in nodes {
        for (addr, what) in [(&node.client_addr, "client"), (&node.peer_addr, "peer")] {
            if let Err(error) = std::net::TcpListener::bind(addr.as_str()) {
                anyhow::bail!(
                    "cannot use {addr} ({what} port of {}): {error}. Is another `tally dev` or `tally node` running? \
                     Stop it first (find it with `ss -ltnp | grep {}`)",
                    node.id,
                    addr.rsplit(':').next().unwrap_or(addr)
                );
            }
        }
    }
    Ok(())
}

/// Starts `tally node` for `node`, its output appended to its log file.
fn spawn(exe: &Path, node: &DevNode, nodes: &[DevNode]) -> anyhow::Result<Running> {
    let mut log = open_log(&node.log_path)?;
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    writeln!(log, "--- tally dev: starting {} (unix time {started}) ---", node.id)
        .with_context(|| format!("cannot write {}", node.log_path.display()))?;
    let stderr = log.try_clone().with_context(|| format!("cannot open {}", node.log_path.display()))?;
    let child = Command::new(exe)
        .args(node.node_args(nodes))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(stderr))
        .process_group(0)
        // If `tally dev` fails or panics before stopping its nodes, dropping a child still kills it.
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start node {} ({})", node.id, exe.display()))?;
    let pid = child.id().context("a child that was just started has no pid")?;
    Ok(Running { node: node.clone(), child, pid, exited: false })
}

/// Opens (appends to) a node's log file.
fn open_log(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("cannot open {}", path.display()))
}

/// `tally certs init DIR/certs` for every process of the cluster (once: what exists is kept); returns the
/// CA's path.
fn make_certificates(data_dir: &Path, nodes: &[DevNode]) -> anyhow::Result<PathBuf> {
    let dir = certs_dir(data_dir);
    let plan = tally_net::certs::InitPlan { nodes: nodes.iter().map(|n| n.id.clone()).collect(), ..Default::default() };
    tally_net::certs::init(&dir, &plan).with_context(|| format!("cannot make certificates in {}", dir.display()))?;
    Ok(dir.join(tally_net::certs::CA_FILE))
}

/// Polls the nodes until one of them leads; fails if a child exits or after [`LEADER_WAIT`].
async fn wait_for_leader(endpoints: &[String], ca: Option<&Path>, running: &mut [Running]) -> anyhow::Result<String> {
    let mut builder = Client::builder(endpoints.to_vec());
    if let Some(ca) = ca {
        builder = builder.ca_file(ca);
    }
    let client = builder.build()?;
    let started = Instant::now();
    loop {
        for node in running.iter_mut() {
            if let Ok(Some(status)) = node.child.try_wait() {
                node.exited = true;
                anyhow::bail!(
                    "node {} exited during startup ({status}); its log {} ends with:\n{}",
                    node.node.id,
                    node.node.log_path.display(),
                    log_tail(&node.node.log_path, 15)
                );
            }
        }
        for endpoint in endpoints {
            if let Ok(view) = client.cluster_of(endpoint).await {
                // Every node a member, and promoted as far as the leader will: a lone voter waits for two
                // learners, so two nodes stay one voter and one learner; three or more make three voters.
                let voters = view.members.iter().filter(|m| m.role == MemberRole::Voter).count();
                let expected_voters = match endpoints.len() {
                    2 => 1,
                    n => n.min(3),
                };
                if view.role == NodeRole::Leader && view.members.len() == endpoints.len() && voters == expected_voters {
                    return Ok(view.id);
                }
            }
        }
        if started.elapsed() > LEADER_WAIT {
            let logs: Vec<String> = running.iter().map(|r| r.node.log_path.display().to_string()).collect();
            anyhow::bail!("no leader after {LEADER_WAIT:?}: see the node logs ({})", logs.join(", "));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The last `lines` lines of a log file (empty if it cannot be read).
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What to print once the cluster is up: the nodes, where they log, and commands to try.
fn banner(data_dir: &Path, running: &[Running], leader: &str, ca: Option<&Path>) -> String {
    let mut out = format!(
        "tally dev: a registry and {} nodes on loopback, data in {}; each one's output goes to {}/NAME.log\n\n",
        running.len() - 1,
        data_dir.display(),
        data_dir.display()
    );
    for r in running.iter().filter(|r| r.node.id == REGISTRY) {
        out.push_str(&format!(
            "  registry  pid {:<7}  {}  log {}\n",
            r.pid,
            r.node.client_url(),
            r.node.log_path.display()
        ));
    }
    for r in running.iter().filter(|r| r.node.id != REGISTRY) {
        let mark = if r.node.id == leader { "  (leader)" } else { "" };
        out.push_str(&format!(
            "  {}  pid {:<7}  client {}  peer {}  log {}{mark}\n",
            r.node.id,
            r.pid,
            r.node.client_url(),
            r.node.peer_addr,
            r.node.log_path.display()
        ));
    }
    let leader_pid = running.iter().find(|r| r.node.id == leader).map_or(0, |r| r.pid);
    let endpoints: Vec<String> =
        running.iter().filter(|r| r.node.id != REGISTRY).map(|r| r.node.client_url()).collect();
    if let Some(ca) = ca {
        // Encrypted: client commands need the https:// URLs and the CA.
        out.push_str(&format!(
            "\nEvery port speaks TLS (certificates in {}); first, in the other terminal:\n  export \
             TALLY_ENDPOINTS={}\n  export TALLY_CACERT={}\n",
            certs_dir(data_dir).display(),
            endpoints.join(","),
            ca.display()
        ));
    } else if endpoints.join(",") != crate::kv::DEV_ENDPOINTS {
        // Not the default ports: client commands must be told where the cluster is.
        out.push_str(&format!(
            "\nThese are not the default ports; first:\n  export TALLY_ENDPOINTS={}\n",
            endpoints.join(",")
        ));
    }
    out.push_str(&format!(
        "\nTry, in another terminal:\n\
         \x20 tally put greeting hello\n\
         \x20 tally get greeting\n\
         \x20 tally list\n\
         \x20 tally status\n\
         \x20 tally bench --workload mixed --duration 5\n\
         \nWatch it heal: crash the leader, and the others elect a new one within a couple of seconds:\n\
         \x20 kill -9 {leader_pid}\n\
         \x20 tally status              # {leader} unreachable, a new leader\n\
         \x20 tally put greeting again  # still served by the majority\n\
         `tally dev` reports the dead node with the command that restarts it; run that, and\n\
         `tally status` shows it rejoin and catch up.\n\
         \nCtrl-C stops every node.",
    ));
    out
}

/// Watches the children until Ctrl-C or SIGTERM, reporting any that exit (the others keep running).
async fn supervise(running: &mut [Running]) {
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    loop {
        tokio::select! {
            () = &mut signal => return,
            _ = ticker.tick() => report_exits(running),
        }
    }
}

/// Reports children that exited since the last look, with the command that restarts them.
fn report_exits(running: &mut [Running]) {
    let restart_args: Vec<Vec<String>> = {
        let nodes: Vec<DevNode> = running.iter().map(|r| r.node.clone()).collect();
        nodes.iter().map(|n| n.node_args(&nodes)).collect()
    };
    for (r, args) in running.iter_mut().zip(restart_args) {
        if r.exited {
            continue;
        }
        if let Ok(Some(status)) = r.child.try_wait() {
            r.exited = true;
            eprintln!(
                "tally dev: node {} (pid {}) exited ({status}); the others keep running. Its log: {}\n\
                 tally dev: restart it in another terminal with: {} {}",
                r.node.id,
                r.pid,
                r.node.log_path.display(),
                std::env::current_exe().map_or("tally".into(), |exe| exe.display().to_string()),
                args.join(" ")
            );
        }
    }
}

/// Stops every child still running: SIGTERM (and SIGCONT, in case it was frozen) by pid, a bounded wait,
/// then SIGKILL.
async fn stop_all(running: &mut [Running]) {
    for r in running.iter_mut().filter(|r| !r.exited) {
        let pid = Pid::from_raw(i32::try_from(r.pid).unwrap_or(i32::MAX));
        if let Err(error) = kill(pid, Signal::SIGTERM) {
            tracing::warn!(id = %r.node.id, pid = r.pid, %error, "cannot send SIGTERM");
        }
        let _ = kill(pid, Signal::SIGCONT);
    }
    let deadline = tokio::time::Instant::now() + STOP_WAIT;
    for r in running.iter_mut().filter(|r| !r.exited) {
        match tokio::time::timeout_at(deadline, r.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => eprintln!("tally dev: node {} exited with {status}", r.node.id),
            Ok(Err(error)) => eprintln!("tally dev: cannot wait for node {}: {error}", r.node.id),
            Err(_) => {
                eprintln!(
                    "tally dev: node {} (pid {}) did not stop within {STOP_WAIT:?}: killing it",
                    r.node.id, r.pid
                );
                if let Err(error) = r.child.kill().await {
                    eprintln!("tally dev: cannot kill node {}: {error}", r.node.id);
                }
            }
        }
        r.exited = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_fixed_loopback_ports() {
        let all =
            layout(Path::new("./tally-data"), 7000, &[(7001, 7101), (7002, 7102), (7003, 7103)], Election::Raft, false);
        assert_eq!(all[0].node_args(&all).join(" "), "registry --listen 127.0.0.1:7000 --ttl-ms 2000");
        let nodes = &all[1..];
        assert_eq!(nodes[0].client_url(), "http://127.0.0.1:7001");
        assert_eq!(nodes[2].peer_addr, "127.0.0.1:7103");
        assert_eq!(nodes[1].data_dir, Path::new("./tally-data/n2"));
        assert_eq!(nodes[1].log_path, Path::new("./tally-data/n2.log"));
        assert_eq!(
            nodes[1].node_args(&all).join(" "),
            "node --id n2 --listen-client 127.0.0.1:7002 --listen-peer 127.0.0.1:7102 --data-dir ./tally-data/n2 \
             --registry-address http://127.0.0.1:7000 --promote-after 1s"
        );
    }

    #[test]
    fn with_tls_every_process_gets_its_certificate() {
        let all = layout(Path::new("d"), 7000, &[(7001, 7101)], Election::Raft, true);
        assert_eq!(
            all[0].node_args(&all).join(" "),
            "registry --listen 127.0.0.1:7000 --ttl-ms 2000 --tls-cert d/certs/registry.pem --tls-key \
             d/certs/registry-key.pem --tls-ca d/certs/ca.pem"
        );
        let node = all[1].node_args(&all).join(" ");
        assert!(node.contains("--registry-address https://127.0.0.1:7000"), "{node}");
        assert!(
            node.ends_with("--tls-cert d/certs/n1.pem --tls-key d/certs/n1-key.pem --peer-tls-ca d/certs/ca.pem"),
            "{node}"
        );
        assert_eq!(all[1].client_url(), "https://127.0.0.1:7001");
    }

    #[test]
    fn a_taken_port_is_named() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = taken.local_addr().expect("bound").to_string();
        let mut nodes = layout(Path::new("d"), 0, &[(7001, 7101)], Election::Raft, false);
        nodes.remove(0);
        nodes[0].client_addr = "127.0.0.1:0".into();
        nodes[0].peer_addr = addr.clone();
        let error = check_ports_free(&nodes).expect_err("the port is taken").to_string();
        assert!(error.contains(&addr) && error.contains("peer port of n1"), "{error}");
    }
}
