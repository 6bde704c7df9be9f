//! The `tally` command: runs a node (`node`), a local three-node cluster (`dev`), a load generator
//! (`bench`), the client commands (`put`, `get`, `del`, `list`, `cas`, `txn`, `status`, `transfer-leader`), and makes
//! certificates (`certs init`).
//!
//! It has no logic of its own: `node` builds a `tally_server::ServerConfig` and calls `tally_server::run`;
//! the client commands call `tally_client::Client` and format what it returns. One module per subcommand.

mod auth;
mod bench;
mod certs;
mod dev;
mod kv;
mod node;
mod output;
mod registry;
mod signal;
mod status;
mod txn;
mod watch;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Tally: a replicated, strongly consistent key/value database.
#[derive(Parser, Debug)]
#[command(name = "tally", version, about)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
enum Command {
    /// Run one node of a cluster.
    Node(Box<node::NodeArgs>),
    /// Run the registry service through which nodes find each other.
    Registry(registry::RegistryArgs),
    /// Start a local cluster (3 nodes on 127.0.0.1:7001..7003) as child processes, for trying Tally out.
    Dev(dev::DevArgs),
    /// Write a value.
    Put(kv::PutArgs),
    /// Read a value: printed raw to stdout; exit code 1 if the key does not exist.
    Get(kv::GetArgs),
    /// Delete a key, or with --prefix every key starting with it.
    Del(kv::DelArgs),
    /// List keys by prefix, in byte order.
    List(kv::ListArgs),
    /// Write a value only if the key's modify index is EXPECTED_INDEX (0: only if absent).
    Cas(kv::CasArgs),
    /// Run a transaction: compares, then the success or the failure ops, atomically; exit 1 if the compares
    /// failed. Reads JSON or etcdctl-like lines from FILE or stdin (see --help).
    #[command(after_long_help = txn::FORMAT_HELP)]
    Txn(txn::TxnArgs),
    /// Show every node's Raft state: role, term, commit and applied index, replication lag.
    Status(status::StatusArgs),
    /// Hand leadership to another voter.
    TransferLeader(kv::TransferLeaderArgs),
    /// Print changes to a prefix (or a key) as they happen, until interrupted.
    Watch(watch::WatchArgs),
    /// Drive the running cluster with concurrent requests and report throughput and latency.
    Bench(bench::BenchArgs),
    /// Make TLS certificates: a CA and one certificate per node and per user.
    Certs(certs::CertsArgs),
    /// Turn client authentication on or off, or show whether it is on.
    Auth(auth::AuthArgs),
    /// Manage users and their API tokens.
    User(auth::UserArgs),
    /// Manage roles: read, write or admin on key prefixes.
    Role(auth::RoleArgs),
}

impl Command {
    /// The default log level: `info` for the long-running processes, `warn` for client commands, whose
    /// output is their answer.
    fn default_log_level(&self) -> &'static str {
        match self {
            Command::Node(_) | Command::Dev(_) | Command::Registry(_) => "info",
            _ => "warn",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(cli.command.default_log_level()));
    // Colours only on a terminal: `tally dev` sends each node's stderr to a log file.
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            if let Some(hint) = output::hint_for(&error) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(2)
        }
    }
}

/// Runs one subcommand. `Ok` carries the exit code of an expected negative answer (1: not found, cas
/// mismatch); errors exit with 2.
async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Node(args) => node::run(*args).await,
        Command::Dev(args) => dev::run(args).await,
        Command::Registry(args) => registry::run(args).await,
        Command::Put(args) => kv::put(args).await,
        Command::Get(args) => kv::get(args).await,
        Command::Del(args) => kv::del(args).await,
        Command::List(args) => kv::list(args).await,
        Command::Cas(args) => kv::cas(args).await,
        Command::Txn(args) => txn::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::TransferLeader(args) => kv::transfer_leader(args).await,
        Command::Watch(args) => watch::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Certs(args) => certs::run(args),
        Command::Auth(args) => auth::auth(args).await,
        Command::User(args) => auth::user(args).await,
        Command::Role(args) => auth::role(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn client_commands_default_to_the_dev_cluster() {
        let cli = Cli::try_parse_from(["tally", "get", "greeting", "--stale"]).expect("valid");
        let Command::Get(args) = cli.command else { panic!("parsed as {:?}", cli.command) };
        assert_eq!(args.client.endpoints, ["http://127.0.0.1:7001", "http://127.0.0.1:7002", "http://127.0.0.1:7003"]);
        assert!(args.stale);
    }

    #[test]
    fn endpoints_are_comma_separated() {
        let cli = Cli::try_parse_from(["tally", "put", "--endpoints", "http://a:1,http://b:2", "k", "v", "--json"])
            .expect("valid");
        let Command::Put(args) = cli.command else { panic!("parsed as {:?}", cli.command) };
        assert_eq!(args.client.endpoints, ["http://a:1", "http://b:2"]);
        assert!(args.client.json);
        assert_eq!((args.key.as_str(), args.value.as_deref()), ("k", Some("v")));
    }

    #[test]
    fn client_commands_take_tls_and_a_token() {
        let argv = ["tally", "put", "k", "v", "--cacert", "ca.pem", "--cert", "u.pem", "--key", "u-key.pem"];
        let cli = Cli::try_parse_from(argv.into_iter().chain(["--token", "t0k"])).expect("valid");
        let Command::Put(args) = cli.command else { panic!("parsed as {:?}", cli.command) };
        let credentials = &args.client.credentials;
        assert_eq!(credentials.cacert.as_deref(), Some(std::path::Path::new("ca.pem")));
        assert_eq!(credentials.key.as_deref(), Some(std::path::Path::new("u-key.pem")));
        assert_eq!(credentials.token.as_deref(), Some("t0k"));
        assert_eq!(args.key, "k", "the positional key is not the --key flag");
        assert!(Cli::try_parse_from(["tally", "get", "k", "--cert", "u.pem"]).is_err(), "--cert needs --key");
    }

    #[test]
    fn log_levels_fit_the_command() {
        let node = Cli::try_parse_from([
            "tally",
            "node",
            "--id",
            "n1",
            "--listen-client",
            "127.0.0.1:7001",
            "--listen-peer",
            "127.0.0.1:7101",
            "--data-dir",
            "d",
            "--initial-cluster",
            "n1=http://127.0.0.1:7101",
        ])
        .expect("valid");
        assert_eq!(node.command.default_log_level(), "info");
        let status = Cli::try_parse_from(["tally", "status"]).expect("valid");
        assert_eq!(status.command.default_log_level(), "warn");
    }
}
