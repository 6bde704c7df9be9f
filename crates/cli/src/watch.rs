//! `tally watch PREFIX [--exact] [--from N] [--json] [--prev]`: prints changes as they happen, resuming on
//! another node when a connection breaks, until interrupted (docs/http-api.md, "Watches").

use std::process::ExitCode;

use tally_client::{ChangeKind, WatchChange, WatchError, WatchEvent, WatchOptions};

use crate::kv::ClientArgs;
use crate::output::display_bytes;

/// `tally watch`.
#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// The prefix to watch (empty: every key), or the key with --exact.
    #[arg(default_value = "")]
    pub prefix: String,
    /// Watch exactly the key PREFIX, not every key starting with it (`--key` is the TLS client key).
    #[arg(long)]
    pub exact: bool,
    /// Start at this log index (inclusive) instead of now: replays the kept history from there.
    #[arg(long, value_name = "N")]
    pub from: Option<u64>,
    /// Show each key's previous value.
    #[arg(long)]
    pub prev: bool,
    /// Cluster and output (--json: one JSON object per change).
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Runs the watch until interrupted or it ends with an error (exit 1; `compacted` says where to restart).
pub async fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let options =
        WatchOptions { is_key: args.exact, target: args.prefix.into_bytes(), from_index: args.from, prev: args.prev };
    let mut watch = client.watch(options);
    loop {
        match watch.next().await {
            Ok(WatchEvent::Changes { index, changes }) => {
                for change in &changes {
                    println!(
                        "{}",
                        if args.client.json { change_json(index, change) } else { change_line(index, change) }
                    );
                }
            }
            Ok(WatchEvent::Progress { .. }) => {}
            Err(WatchError::Compacted { oldest_index }) => {
                anyhow::bail!(
                    "the history no longer reaches back to where this watch was (it starts at {oldest_index}): \
                     read the current values (tally list) and watch again with --from (their index + 1)"
                )
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// `INDEX put KEY VALUE [(was PREV)]` or `INDEX delete KEY [(was PREV)]`.
fn change_line(index: u64, change: &WatchChange) -> String {
    let mut line = match change.kind {
        ChangeKind::Put => {
            format!("{index} put {} {}", display_bytes(&change.key), display_bytes(&change.value))
        }
        ChangeKind::Delete => format!("{index} delete {}", display_bytes(&change.key)),
    };
    match &change.prev {
        Some(Some((value, _))) => line.push_str(&format!(" (was {})", display_bytes(value))),
        Some(None) => line.push_str(" (was absent)"),
        None => {}
    }
    line
}

/// One change as a JSON object.
fn change_json(index: u64, change: &WatchChange) -> String {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let mut object = serde_json::json!({
        "index": index,
        "type": if change.kind == ChangeKind::Put { "put" } else { "delete" },
        "key": text(&change.key),
        "value": text(&change.value),
        "create_index": change.create_index,
        "modify_index": change.modify_index,
        "version": change.version,
    });
    if let Some(prev) = &change.prev {
        object["prev"] = match prev {
            Some((value, state)) => serde_json::json!({"value": text(value), "create_index": state.create_index,
                "modify_index": state.modify_index, "version": state.version}),
            None => serde_json::Value::Null,
        };
    }
    object.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_print_as_lines_and_json() {
        let change = WatchChange {
            kind: ChangeKind::Put,
            key: b"app/a".to_vec(),
            value: b"1".to_vec(),
            create_index: 3,
            modify_index: 9,
            version: 2,
            prev: Some(None),
        };
        assert_eq!(change_line(9, &change), "9 put app/a 1 (was absent)");
        let json: serde_json::Value = serde_json::from_str(&change_json(9, &change)).expect("json");
        assert_eq!(json["type"], "put");
        assert_eq!(json["prev"], serde_json::Value::Null);
        let delete = WatchChange { kind: ChangeKind::Delete, value: Vec::new(), prev: None, ..change };
        assert_eq!(change_line(9, &delete), "9 delete app/a");
    }
}
