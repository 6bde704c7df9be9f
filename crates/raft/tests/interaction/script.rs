//! The script format and its runner.
//!
//! A script is a sequence of blocks separated by blank lines; lines starting with `#` are comments:
//!
//! ```text
//! # why this step matters
//! command arg key=value
//! ----
//! expected output, one or more lines, never blank ("ok" when the command prints nothing)
//! ```
//!
//! Run with `REWRITE=1` to replace every expected output with what the commands print now, then review the
//! diff like code. Otherwise the first mismatching block fails the test with its file, line and a diff.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::Path;

use super::env::Env;
use super::handler;

/// One parsed command line: `name positional... key=value...`.
#[derive(Debug)]
pub struct Command {
    /// The command's name, the first word.
    pub name: String,
    /// Words without `=`, in order.
    pub positional: Vec<String>,
    /// `key=value` words, in order.
    pub keyed: Vec<(String, String)>,
}

impl Command {
    /// Parses one command line.
    fn parse(line: &str) -> Command {
        let mut words = line.split_whitespace();
        let name = words.next().expect("a command line is not blank").to_string();
        let (mut positional, mut keyed) = (Vec::new(), Vec::new());
        for word in words {
            match word.split_once('=') {
                Some((key, value)) => keyed.push((key.to_string(), value.to_string())),
                None => positional.push(word.to_string()),
            }
        }
        Command { name, positional, keyed }
    }

    /// The value of `key=...`, if given.
    pub fn key(&self, key: &str) -> Option<&str> {
        self.keyed.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Asserts every `key=value` argument is one of `allowed`: a typo in a script must not be silently
    /// ignored.
    pub fn expect_keys(&self, allowed: &[&str]) {
        for (key, _) in &self.keyed {
            assert!(allowed.contains(&key.as_str()), "{}: unknown argument {key}= (allowed: {allowed:?})", self.name);
        }
    }

    /// The positional argument at `i`.
    pub fn arg(&self, i: usize) -> &str {
        self.positional.get(i).unwrap_or_else(|| panic!("{}: missing argument {}", self.name, i + 1))
    }
}

/// A piece of a script file.
enum Item {
    /// A comment or blank line, kept as is.
    Verbatim(String),
    /// A command and its expected output.
    Block {
        /// 1-based line number of the command.
        line: usize,
        /// The command line as written.
        command: String,
        /// The expected output lines.
        expected: Vec<String>,
    },
}

/// Splits a script into comments, blank lines and blocks.
fn parse(text: &str, path: &Path) -> Vec<Item> {
    let lines: Vec<&str> = text.lines().collect();
    let mut items = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim().is_empty() || line.starts_with('#') {
            items.push(Item::Verbatim(line.to_string()));
            i += 1;
            continue;
        }
        let command_line = i + 1;
        assert_eq!(
            lines.get(i + 1).copied(),
            Some("----"),
            "{}:{}: expected ---- after the command",
            path.display(),
            i + 2
        );
        i += 2;
        let mut expected = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() {
            expected.push(lines[i].to_string());
            i += 1;
        }
        items.push(Item::Block { line: command_line, command: line.to_string(), expected });
    }
    items
}

/// Runs `testdata/<name>.txt`, rewriting it under `REWRITE=1`.
///
/// # Panics
/// On the first block whose output differs from the expected one, or on a command that panics, naming the
/// file and line.
pub fn run_file(name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(format!("{name}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rewrite = std::env::var_os("REWRITE").is_some();
    let mut env = Env::default();
    let mut rewritten = Vec::new();
    for item in parse(&text, &path) {
        let (line, command, expected) = match item {
            Item::Verbatim(text) => {
                rewritten.push(text);
                continue;
            }
            Item::Block { line, command, expected } => (line, command, expected),
        };
        let actual = run_command(&mut env, &command, &path, line);
        if !rewrite && actual != expected {
            panic!(
                "{}:{line}: output of `{command}` differs (- expected, + actual; REWRITE=1 to accept):\n{}",
                path.display(),
                diff(&expected, &actual)
            );
        }
        rewritten.push(command);
        rewritten.push("----".to_string());
        rewritten.extend(actual);
    }
    let rewritten = rewritten.join("\n") + "\n";
    if rewrite && rewritten != text {
        std::fs::write(&path, rewritten).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// Runs one command, turning a panic into one that names the script line.
fn run_command(env: &mut Env, command: &str, path: &Path, line: usize) -> Vec<String> {
    let parsed = Command::parse(command);
    let result = catch_unwind(AssertUnwindSafe(|| handler::run(env, &parsed)));
    match result {
        Ok(output) if output.is_empty() => vec!["ok".to_string()],
        Ok(output) => output,
        Err(panic) => {
            eprintln!("{}:{line}: `{command}` panicked", path.display());
            resume_unwind(panic)
        }
    }
}

/// A line diff of `expected` and `actual` (longest common subsequence), with `-`, `+` and ` ` markers.
fn diff(expected: &[String], actual: &[String]) -> String {
    let (n, m) = (expected.len(), actual.len());
    // lcs[i][j]: length of the longest common subsequence of expected[i..] and actual[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            out += &format!("  {}\n", expected[i]);
            (i, j) = (i + 1, j + 1);
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out += &format!("- {}\n", expected[i]);
            i += 1;
        } else {
            out += &format!("+ {}\n", actual[j]);
            j += 1;
        }
    }
    out
}
