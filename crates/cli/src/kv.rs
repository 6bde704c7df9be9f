//! The key/value commands (`put`, `get`, `del` (of a key or a prefix), `list`, `cas`) and `transfer-leader`: one client call each,
//! its answer printed for a person, or as one JSON object with `--json`.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;
use tally_client::{Client, Consistency};

use crate::output;

/// The client URLs of the cluster `tally dev` starts.
pub const DEV_ENDPOINTS: &str = "http://127.0.0.1:7001,http://127.0.0.1:7002,http://127.0.0.1:7003";

/// Exit code of an expected negative answer: the key does not exist, or a cas condition did not hold.
const EXIT_NEGATIVE: u8 = 1;

/// Where the cluster is and how to print answers; shared by the client commands.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// Client URLs of the cluster's nodes, comma-separated (any subset will do: the rest is learned).
    /// https:// URLs need --cacert.
    #[arg(long, env = "TALLY_ENDPOINTS", value_delimiter = ',', default_value = DEV_ENDPOINTS)]
    pub endpoints: Vec<String>,
    /// Print one JSON object instead of human output.
    #[arg(long)]
    pub json: bool,
    /// TLS and credentials.
    #[command(flatten)]
    pub credentials: Credentials,
}

impl ClientArgs {
    /// A client of these endpoints, with these credentials.
    pub fn client(&self) -> anyhow::Result<Client> {
        self.client_with(tally_client::ClientConfig::default())
    }

    /// A client of these endpoints with `config`'s timeouts.
    pub fn client_with(&self, config: tally_client::ClientConfig) -> anyhow::Result<Client> {
        Ok(self.credentials.builder(self.endpoints.clone()).config(config).build()?)
    }
}

/// How a client command proves who it is and whom it trusts: shared by every command that calls a node.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Credentials {
    /// The CA certificate (PEM) that signed the nodes' certificates: needed for https:// endpoints
    /// (`tally certs init` writes it as ca.pem).
    #[arg(long, value_name = "FILE", env = "TALLY_CACERT")]
    pub cacert: Option<PathBuf>,
    /// A client certificate (PEM) to present, for nodes started with --tls-ca; needs --key.
    #[arg(long = "cert", id = "client_cert", value_name = "FILE", env = "TALLY_CERT", requires = "client_key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long = "key", id = "client_key", value_name = "FILE", env = "TALLY_KEY", requires = "client_cert")]
    pub key: Option<PathBuf>,
    /// A token sent as `Authorization: Bearer TOKEN` with every call.
    #[arg(long, value_name = "TOKEN", env = "TALLY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Credentials {
    /// A client builder for `endpoints` with these credentials.
    pub fn builder(&self, endpoints: Vec<String>) -> tally_client::ClientBuilder {
        let mut builder = Client::builder(endpoints);
        if let Some(ca) = &self.cacert {
            builder = builder.ca_file(ca);
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            builder = builder.client_certificate(cert, key);
        }
        if let Some(token) = &self.token {
            builder = builder.token(token);
        }
        builder
    }

    /// The rustls client config these credentials describe (for callers that speak HTTP themselves).
    ///
    /// # Errors
    /// A file that cannot be used; the message names it.
    pub fn tls_config(&self) -> anyhow::Result<rustls::ClientConfig> {
        let identity = match (&self.cert, &self.key) {
            (Some(certificate), Some(key)) => {
                Some(tally_net::tls::CertifiedKeyFiles { certificate: certificate.clone(), key: key.clone() })
            }
            _ => None,
        };
        let files = tally_net::tls::ClientTlsFiles { ca: self.cacert.clone(), identity };
        Ok(tally_net::tls::client_config(&files)?)
    }
}

/// `tally put KEY [VALUE]`.
#[derive(clap::Args, Debug)]
pub struct PutArgs {
    /// The key.
    pub key: String,
    /// The value; read from stdin if omitted (so binary values can be piped in).
    pub value: Option<String>,
    /// Cluster and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `tally get KEY`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// The key.
    pub key: String,
    /// Read this node's applied state without asking the leader (may be behind; works without a quorum).
    #[arg(long)]
    pub stale: bool,
    /// Cluster and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `tally del KEY` and `tally del --prefix PREFIX`.
#[derive(clap::Args, Debug)]
pub struct DelArgs {
    /// The key (with --prefix: the prefix).
    pub key: String,
    /// Delete every key starting with KEY (not empty), in one log entry; prints the index and the count.
    #[arg(long)]
    pub prefix: bool,
    /// Cluster and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `tally list PREFIX`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// The prefix (empty: every key).
    #[arg(default_value = "")]
    pub prefix: String,
    /// At most this many keys (the server caps it at 10,000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Start after this key (the last key of the previous page).
    #[arg(long)]
    pub after: Option<String>,
    /// Read without asking the leader (may be behind).
    #[arg(long)]
    pub stale: bool,
    /// Cluster and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `tally cas KEY EXPECTED_INDEX [VALUE]`.
#[derive(clap::Args, Debug)]
pub struct CasArgs {
    /// The key.
    pub key: String,
    /// The key's modify index the write expects (`0`: only if the key is absent).
    pub expected_index: u64,
    /// The value; read from stdin if omitted.
    pub value: Option<String>,
    /// Cluster and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `tally transfer-leader ID`.
#[derive(clap::Args, Debug)]
pub struct TransferLeaderArgs {
    /// The voter to hand leadership to (`n2`).
    pub id: String,
    /// Cluster and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The value argument, or stdin when it is omitted.
fn value_bytes(value: Option<String>) -> anyhow::Result<Vec<u8>> {
    if let Some(value) = value {
        return Ok(value.into_bytes());
    }
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("reading the value from stdin (end with Ctrl-D)");
    }
    let mut bytes = Vec::new();
    stdin.read_to_end(&mut bytes).context("cannot read the value from stdin")?;
    Ok(bytes)
}

/// Prints the index of a write: the number alone, or `{"index": N}`.
fn print_index(index: u64, as_json: bool) {
    if as_json {
        println!("{}", json!({ "index": index }));
    } else {
        println!("{index}");
    }
}

/// `tally put`: prints the write's index.
pub async fn put(args: PutArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let value = value_bytes(args.value)?;
    let written = client.put(args.key.as_bytes(), &value).await?;
    print_index(written.index, args.client.json);
    Ok(ExitCode::SUCCESS)
}

/// `tally get`: prints the value raw (a newline is added only on a terminal); exit 1 if absent.
pub async fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let consistency = if args.stale { Consistency::Stale } else { Consistency::Linearizable };
    let Some(entry) = client.get(args.key.as_bytes(), consistency).await? else {
        if args.client.json {
            println!("{}", json!({ "key": args.key, "found": false }));
        }
        eprintln!("key {:?} not found", args.key);
        return Ok(ExitCode::from(EXIT_NEGATIVE));
    };
    if args.client.json {
        println!("{}", output::key_value_json(&entry, true));
        return Ok(ExitCode::SUCCESS);
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&entry.value).context("cannot write to stdout")?;
    if stdout.is_terminal() && !entry.value.ends_with(b"\n") {
        stdout.write_all(b"\n").context("cannot write to stdout")?;
    }
    stdout.flush().context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// `tally del`: prints the delete's index, and says so on stderr if the key did not exist; with `--prefix`,
/// prints the index and says on stderr how many keys went.
pub async fn del(args: DelArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    if args.prefix {
        let deleted = client.delete_prefix(args.key.as_bytes()).await?;
        if args.client.json {
            println!("{}", json!({ "index": deleted.index, "deleted": deleted.deleted }));
        } else {
            println!("{}", deleted.index);
            eprintln!("{} keys deleted under {:?}", deleted.deleted, args.key);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let deleted = client.delete(args.key.as_bytes()).await?;
    if args.client.json {
        println!("{}", json!({ "index": deleted.index, "deleted": deleted.deleted }));
    } else {
        println!("{}", deleted.index);
        if !deleted.deleted {
            eprintln!("key {:?} did not exist", args.key);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tally list`: one `KEY<TAB>VALUE` line per key; says on stderr how to get the next page.
pub async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let consistency = if args.stale { Consistency::Stale } else { Consistency::Linearizable };
    let after = args.after.as_deref().map(str::as_bytes);
    let page = client.list(args.prefix.as_bytes(), after, args.limit, consistency).await?;
    if args.client.json {
        println!("{}", output::page_json(&page));
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", output::page_lines(&page));
    if let (true, Some(last)) = (page.more, page.items.last()) {
        eprintln!("more keys: add --after {:?}", output::display_bytes(&last.key));
    }
    Ok(ExitCode::SUCCESS)
}

/// `tally cas`: prints the write's index; exit 1 with the key's current modify index if the condition
/// did not hold.
pub async fn cas(args: CasArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let value = value_bytes(args.value)?;
    match client.put_cas(args.key.as_bytes(), &value, args.expected_index).await {
        Ok(written) => {
            print_index(written.index, args.client.json);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            let Some(current) = error.cas_current_modify_index() else { return Err(error.into()) };
            if args.client.json {
                println!("{}", json!({ "cas_failed": true, "current_modify_index": current }));
            }
            let now = if current == 0 { "absent".to_string() } else { format!("at modify index {current}") };
            eprintln!("cas failed: expected modify index {}, but the key is {now}", args.expected_index);
            Ok(ExitCode::from(EXIT_NEGATIVE))
        }
    }
}

/// `tally transfer-leader`: prints the new leader once it leads.
pub async fn transfer_leader(args: TransferLeaderArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let leader = client.transfer_leader(&args.id).await?;
    if args.client.json {
        println!("{}", json!({ "leader": leader }));
    } else {
        println!("leader is now {leader}");
    }
    Ok(ExitCode::SUCCESS)
}
