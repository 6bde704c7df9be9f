//! `tally txn [FILE|-]`: reads a transaction (JSON, or the compact etcdctl-like lines of [`compact`]), runs it,
//! and prints what it did: for a person by default, the API's JSON answer with `--json`.

mod compact;

pub use compact::FORMAT_HELP;

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Map, Value, json};
use tally_client::{Consistency, OpResult, TxnResult, insert_bytes};

use crate::kv::ClientArgs;
use crate::output::{display_bytes, key_value_json};

/// Exit code when the compares did not hold (the failure ops ran), as for a failed `tally cas`.
const EXIT_FAILED_COMPARE: u8 = 1;

/// `tally txn [FILE|-] [--stale]`.
#[derive(clap::Args, Debug)]
pub struct TxnArgs {
    /// The file holding the transaction; `-` or nothing reads stdin.
    pub file: Option<PathBuf>,
    /// Answer a read-only transaction (only get and list ops) from the node's state, without asking the leader.
    #[arg(long)]
    pub stale: bool,
    /// Cluster and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `tally txn`: exit 0 if the compares held, 1 if the failure ops ran.
pub async fn run(args: TxnArgs) -> anyhow::Result<ExitCode> {
    let text = read_input(args.file.as_deref())?;
    let body = to_json(&text)?;
    let client = args.client.client()?;
    let consistency = if args.stale { Consistency::Stale } else { Consistency::Linearizable };
    let result = client.txn_json(&body, consistency).await?;
    if args.client.json {
        println!("{}", result_json(&result));
    } else {
        print!("{}", result_lines(&result));
    }
    Ok(if result.succeeded { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED_COMPARE) })
}

/// The transaction's text, from `file` or stdin.
fn read_input(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    match file {
        Some(path) if path != std::path::Path::new("-") => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the transaction from {}", path.display())),
        _ => {
            let mut stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("reading the transaction from stdin (end with Ctrl-D; `tally txn --help` shows the format)");
            }
            let mut text = String::new();
            stdin.read_to_string(&mut text).context("cannot read the transaction from stdin (UTF-8 text)")?;
            Ok(text)
        }
    }
}

/// The request body: the input itself if it is JSON (the server checks it), else the compact form translated.
fn to_json(text: &str) -> anyhow::Result<Value> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).context("the transaction starts with '{' but is not valid JSON");
    }
    let txn = compact::parse(text).map_err(|error| anyhow::anyhow!("{error} (`tally txn --help` shows the format)"))?;
    Ok(txn.to_json())
}

/// The answer for a person: whether the compares held and the index, then one line per result.
fn result_lines(result: &TxnResult) -> String {
    let mut out = if result.succeeded {
        format!("succeeded at index {}\n", result.index)
    } else {
        format!("compare failed at index {}: the failure ops ran\n", result.index)
    };
    for op in &result.results {
        out.push_str(&op_line(op));
        out.push('\n');
    }
    out
}

/// One result for a person (a list adds one `KEY<TAB>VALUE` line per key).
fn op_line(result: &OpResult) -> String {
    match result {
        OpResult::Put { key, version, create_index, modify_index } => format!(
            "put {}: version {version}, create index {create_index}, modify index {modify_index}",
            display_bytes(key)
        ),
        OpResult::Delete { key, deleted } => {
            format!("delete {}: {}", display_bytes(key), if *deleted { "deleted" } else { "did not exist" })
        }
        OpResult::DeletePrefix { prefix, deleted } => {
            format!("delete_prefix {}: {deleted} deleted", display_bytes(prefix))
        }
        OpResult::Get { key, entry: Some(entry) } => format!(
            "get {}: {} (version {}, create index {}, modify index {})",
            display_bytes(key),
            display_bytes(&entry.value),
            entry.version,
            entry.create_index,
            entry.modify_index
        ),
        OpResult::Get { key, entry: None } => format!("get {}: not found", display_bytes(key)),
        OpResult::List { prefix, items, more } => {
            let more = if *more { ", more follow" } else { "" };
            let mut text = format!("list {:?}: {} keys{more}", display_bytes(prefix), items.len());
            for item in items {
                text.push_str(&format!("\n  {}\t{}", display_bytes(&item.key), display_bytes(&item.value)));
            }
            text
        }
    }
}

/// The answer as the API writes it: `{"succeeded", "index", "results"}`.
fn result_json(result: &TxnResult) -> Value {
    let results: Vec<Value> = result.results.iter().map(op_json).collect();
    json!({ "succeeded": result.succeeded, "index": result.index, "results": results })
}

/// One result as the API writes it: `{"put": {...}}` and so on.
fn op_json(result: &OpResult) -> Value {
    let (name, fields) = match result {
        OpResult::Put { key, version, create_index, modify_index } => {
            let mut fields = Map::new();
            insert_bytes(&mut fields, "key", key);
            fields.insert("version".into(), Value::from(*version));
            fields.insert("create_index".into(), Value::from(*create_index));
            fields.insert("modify_index".into(), Value::from(*modify_index));
            ("put", Value::Object(fields))
        }
        OpResult::Delete { key, deleted } => {
            let mut fields = Map::new();
            insert_bytes(&mut fields, "key", key);
            fields.insert("deleted".into(), Value::from(*deleted));
            ("delete", Value::Object(fields))
        }
        OpResult::DeletePrefix { prefix, deleted } => {
            let mut fields = Map::new();
            insert_bytes(&mut fields, "prefix", prefix);
            fields.insert("deleted".into(), Value::from(*deleted));
            ("delete_prefix", Value::Object(fields))
        }
        OpResult::Get { key, entry } => {
            let mut fields = match entry.as_ref().map(|entry| key_value_json(entry, false)) {
                Some(Value::Object(fields)) => fields,
                _ => {
                    let mut fields = Map::new();
                    insert_bytes(&mut fields, "key", key);
                    fields
                }
            };
            fields.insert("found".into(), Value::from(entry.is_some()));
            ("get", Value::Object(fields))
        }
        OpResult::List { prefix, items, more } => {
            let mut fields = Map::new();
            insert_bytes(&mut fields, "prefix", prefix);
            fields.insert("items".into(), items.iter().map(|item| key_value_json(item, false)).collect());
            fields.insert("more".into(), Value::from(*more));
            ("list", Value::Object(fields))
        }
    };
    json!({ name: fields })
}

#[cfg(test)]
mod tests {
    use tally_client::KeyValue;

    use super::*;

    fn entry(key: &[u8], value: &[u8]) -> KeyValue {
        KeyValue { key: key.to_vec(), value: value.to_vec(), create_index: 3, modify_index: 9, version: 2, index: 9 }
    }

    fn example() -> TxnResult {
        TxnResult {
            succeeded: false,
            index: 9,
            results: vec![
                OpResult::Put { key: b"a".to_vec(), version: 2, create_index: 3, modify_index: 9 },
                OpResult::Delete { key: vec![0xff], deleted: false },
                OpResult::DeletePrefix { prefix: b"tmp/".to_vec(), deleted: 4 },
                OpResult::Get { key: b"a".to_vec(), entry: Some(entry(b"a", b"1")) },
                OpResult::Get { key: b"gone".to_vec(), entry: None },
                OpResult::List { prefix: b"a".to_vec(), items: vec![entry(b"a", b"1")], more: true },
            ],
        }
    }

    #[test]
    fn answers_print_for_people() {
        assert_eq!(
            result_lines(&example()),
            "compare failed at index 9: the failure ops ran\n\
             put a: version 2, create index 3, modify index 9\n\
             delete \\xff: did not exist\n\
             delete_prefix tmp/: 4 deleted\n\
             get a: 1 (version 2, create index 3, modify index 9)\n\
             get gone: not found\n\
             list \"a\": 1 keys, more follow\n  a\t1\n"
        );
    }

    #[test]
    fn answers_print_as_the_api_writes_them() {
        let item = json!({"key": "a", "value": "1", "create_index": 3, "modify_index": 9, "version": 2});
        assert_eq!(
            result_json(&example()),
            json!({"succeeded": false, "index": 9, "results": [
                {"put": {"key": "a", "version": 2, "create_index": 3, "modify_index": 9}},
                {"delete": {"key_b64": "/w==", "deleted": false}},
                {"delete_prefix": {"prefix": "tmp/", "deleted": 4}},
                {"get": {"key": "a", "value": "1", "create_index": 3, "modify_index": 9, "version": 2, "found": true}},
                {"get": {"key": "gone", "found": false}},
                {"list": {"prefix": "a", "items": [item], "more": true}},
            ]})
        );
    }

    #[test]
    fn json_input_is_passed_as_it_is_and_lines_are_translated() {
        let json = r#" {"success": [{"get": {"key": "a"}}]}"#;
        assert_eq!(to_json(json).expect("JSON"), json!({"success": [{"get": {"key": "a"}}]}));
        assert!(to_json("{ not json").is_err());
        let lines = to_json("\nget a\n").expect("lines");
        assert_eq!(lines, json!({"compare": [], "success": [{"get": {"key": "a"}}], "failure": []}));
        let error = to_json("nonsense").expect_err("not a compare").to_string();
        assert!(error.starts_with("line 1:") && error.contains("tally txn --help"), "{error}");
    }
}
