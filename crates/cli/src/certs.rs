//! `tally certs init DIR`: a CA and a certificate per node and per user, for running Tally over TLS (see
//! `tally_net::certs` for what each certificate says).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use tally_net::certs::{InitPlan, Outcome};

/// `tally certs ...`.
#[derive(clap::Args, Debug)]
pub struct CertsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CertsCommand,
}

/// The `certs` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum CertsCommand {
    /// Make a CA (ca.pem, ca-key.pem) and a certificate per node (nN.pem, nN-key.pem) and per user
    /// (NAME.pem, NAME-key.pem) in DIR. An existing CA is reused (never overwritten without --force), and
    /// existing certificates are kept, so it can be run again to add nodes or users.
    Init(InitArgs),
}

/// `tally certs init DIR [--nodes n1,n2,n3] [--hosts h1,h2] [--users NAME,...] [--force]`.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// The directory to write to (created if missing).
    pub dir: PathBuf,
    /// The node ids to make certificates for: each certificate's Common Name is the id, and it is valid for
    /// localhost, 127.0.0.1, ::1, the id as a host name, and --hosts.
    #[arg(long, value_delimiter = ',', value_name = "ID,...", default_value = "n1,n2,n3")]
    pub nodes: Vec<String>,
    /// Extra host names or IP addresses every node certificate is valid for (where clients and peers dial the
    /// nodes, e.g. db1.example.com,10.0.0.5).
    #[arg(long, value_delimiter = ',', value_name = "HOST,...")]
    pub hosts: Vec<String>,
    /// User names to make client certificates for (Common Name = the name; for nodes started with --tls-ca).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub users: Vec<String>,
    /// Make a new CA even if DIR has one, and remake every named certificate (certificates signed by the
    /// old CA stop being trusted).
    #[arg(long)]
    pub force: bool,
}

/// Runs a `certs` subcommand.
///
/// # Errors
/// A bad name, an unusable existing CA, or a file that cannot be written.
pub fn run(args: CertsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        CertsCommand::Init(init) => run_init(&init),
    }
}

/// `tally certs init`: writes the files and prints what it wrote and the flags to use them with.
fn run_init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let plan =
        InitPlan { nodes: args.nodes.clone(), hosts: args.hosts.clone(), users: args.users.clone(), force: args.force };
    let outcomes =
        tally_net::certs::init(&args.dir, &plan).with_context(|| format!("certs init {}", args.dir.display()))?;
    for outcome in &outcomes {
        match outcome {
            Outcome::Written(path) => println!("wrote {}", path.display()),
            Outcome::Kept(path) => println!("kept  {} (already there)", path.display()),
        }
    }
    let dir = std::path::absolute(&args.dir).unwrap_or_else(|_| args.dir.clone());
    println!("\n{}", usage(&dir, &args.nodes, &args.users));
    Ok(ExitCode::SUCCESS)
}

/// The flags that use the files in `dir`.
fn usage(dir: &Path, nodes: &[String], users: &[String]) -> String {
    let d = dir.display();
    let mut out = format!(
        "Keep {d}/ca-key.pem secret and off the nodes: it signs certificates. Give each node its own files.\n\n\
         Start each node with TLS on its client port and mutual TLS with its peers, e.g.\n"
    );
    if let Some(node) = nodes.first() {
        out.push_str(&format!(
            "  tally node --id {node} --tls-cert {d}/{node}.pem --tls-key {d}/{node}-key.pem --peer-tls-ca {d}/ca.pem ...\n\
             (add --tls-ca {d}/ca.pem to require client certificates on the client port too)\n"
        ));
    }
    out.push_str(&format!(
        "\nThen use https:// endpoints and trust the CA:\n  export TALLY_CACERT={d}/ca.pem\n  tally put greeting hello \
         --endpoints https://127.0.0.1:7001\n"
    ));
    if let Some(user) = users.first() {
        out.push_str(&format!(
            "  With client certificates required: --cert {d}/{user}.pem --key {d}/{user}-key.pem (or TALLY_CERT, \
             TALLY_KEY)\n"
        ));
    }
    out
}
