//! The compact text form of a transaction, after etcdctl's `txn`: compares, a blank line, the success ops, a
//! blank line, the failure ops. See [`FORMAT_HELP`] for the grammar.

use tally_client::{Compare, CompareOp, Op, Target, Txn};

/// The format, as `tally txn --help` shows it (and the README repeats).
pub const FORMAT_HELP: &str = r#"INPUT FORMAT:
  JSON (docs/http-api.md, "Transactions") when the input starts with '{', else lines like etcdctl's txn:
  compares, a blank line, the ops run if every compare holds, a blank line, the ops run otherwise.

    exists("acct/a") == false
    mod("acct/b") > 0
    value("acct/c") != "x"

    put acct/a 100
    del acct/b
    delprefix tmp/
    get acct/a
    list acct/ 10

    get acct/a

  A compare is TARGET("KEY") OP OPERAND. TARGET: value, version (ver), create_index (create),
  modify_index (mod), exists. OP: == (or =), !=, <, >. OPERAND: a string for value (quoted, or one word),
  a number for version and the indexes, true or false for exists.
  Ops: put KEY VALUE | del KEY | delprefix PREFIX (or del --prefix PREFIX) | get KEY | list PREFIX [LIMIT].
  Words with spaces go in double quotes, with \" \\ \n \t \r \0 and \xHH escapes (\xHH is any byte); "" is
  the empty prefix. Lines starting with # are comments. A section may be empty: start with a blank line for
  no compares."#;

/// Parses the compact form.
///
/// # Errors
/// The first problem, as `line N: what is wrong`.
pub fn parse(text: &str) -> Result<Txn, String> {
    let mut txn = Txn::new();
    let mut section = 0;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            section += 1;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let at = |error: String| format!("line {}: {error}", number + 1);
        match section {
            0 => txn.compare.push(parse_compare(line).map_err(at)?),
            1 => txn.success.push(parse_op(line).map_err(at)?),
            2 => txn.failure.push(parse_op(line).map_err(at)?),
            _ => {
                return Err(at(format!(
                    "{line:?} is in a fourth section; there are three (compares, success ops, failure ops), each \
                     ended by one blank line"
                )));
            }
        }
    }
    Ok(txn)
}

/// One compare line: `TARGET("KEY") OP OPERAND`.
fn parse_compare(line: &str) -> Result<Compare, String> {
    let (name, rest) =
        line.split_once('(').ok_or_else(|| format!("{line:?} is not a compare: TARGET(\"KEY\") OP OPERAND"))?;
    let mut cursor = Cursor { rest: rest.trim_start() };
    let key = cursor.word_until(')')?;
    cursor.expect(')')?;
    let op = match cursor.symbol() {
        "==" | "=" => CompareOp::Eq,
        "!=" => CompareOp::Ne,
        "<" => CompareOp::Lt,
        ">" => CompareOp::Gt,
        other => return Err(format!("unknown operator {other:?}: use ==, !=, < or >")),
    };
    let operand = cursor.word_until('\0')?;
    if !cursor.rest.trim().is_empty() {
        return Err(format!("unexpected {:?} after the operand", cursor.rest.trim()));
    }
    let number = |operand: &[u8]| {
        std::str::from_utf8(operand).ok().and_then(|text| text.parse::<u64>().ok()).ok_or_else(|| {
            format!("{} compares take a non-negative integer, not {:?}", name.trim(), String::from_utf8_lossy(operand))
        })
    };
    let target = match name.trim() {
        "value" => Target::Value(operand),
        "version" | "ver" => Target::Version(number(&operand)?),
        "create_index" | "create" => Target::CreateIndex(number(&operand)?),
        "modify_index" | "mod" => Target::ModifyIndex(number(&operand)?),
        "exists" => match operand.as_slice() {
            b"true" => Target::Exists(true),
            b"false" => Target::Exists(false),
            _ => {
                return Err(format!("exists compares take true or false, not {:?}", String::from_utf8_lossy(&operand)));
            }
        },
        other => {
            return Err(format!(
                "unknown target {other:?}: use value, version (ver), create_index (create), modify_index (mod) or exists"
            ));
        }
    };
    Ok(Compare::new(key, target, op))
}

/// One op line.
fn parse_op(line: &str) -> Result<Op, String> {
    let words = words(line)?;
    let text: Vec<&[u8]> = words.iter().map(Vec::as_slice).collect();
    let op = match text.as_slice() {
        [b"put", key, value] => Op::put(key, value),
        [b"del" | b"delete", b"--prefix", prefix] | [b"delprefix" | b"delete_prefix", prefix] => {
            Op::delete_prefix(prefix)
        }
        [b"del" | b"delete", key] => Op::delete(key),
        [b"get", key] => Op::get(key),
        [b"list", prefix] => Op::List { prefix: prefix.to_vec(), limit: None },
        [b"list", prefix, limit] => {
            let limit = std::str::from_utf8(limit).ok().and_then(|limit| limit.parse().ok());
            Op::list(prefix, limit.ok_or_else(|| format!("the limit of {line:?} is not a number"))?)
        }
        _ => {
            return Err(format!(
                "{line:?} is not an op: put KEY VALUE | del KEY | delprefix PREFIX | get KEY | list PREFIX [LIMIT]"
            ));
        }
    };
    Ok(op)
}

/// The words of a line: runs of non-space characters, or double-quoted strings with escapes.
fn words(line: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut cursor = Cursor { rest: line };
    let mut words = Vec::new();
    while !cursor.rest.trim_start().is_empty() {
        cursor.rest = cursor.rest.trim_start();
        words.push(cursor.word_until('\0')?);
    }
    Ok(words)
}

/// What is left of a line to parse.
struct Cursor<'a> {
    /// The unparsed rest.
    rest: &'a str,
}

impl Cursor<'_> {
    /// A quoted string, or the characters up to white space or `end`; leading white space is skipped.
    fn word_until(&mut self, end: char) -> Result<Vec<u8>, String> {
        self.rest = self.rest.trim_start();
        if let Some(quoted) = self.rest.strip_prefix('"') {
            let (word, after) = unquote(quoted)?;
            self.rest = after;
            return Ok(word);
        }
        let stop = self.rest.find(|c: char| c.is_whitespace() || c == end).unwrap_or(self.rest.len());
        let (word, after) = self.rest.split_at(stop);
        if word.is_empty() {
            return Err("a word is missing".to_string());
        }
        self.rest = after;
        Ok(word.as_bytes().to_vec())
    }

    /// Consumes `expected` (after white space).
    fn expect(&mut self, expected: char) -> Result<(), String> {
        self.rest = self.rest.trim_start();
        self.rest =
            self.rest.strip_prefix(expected).ok_or_else(|| format!("expected {expected:?} at {:?}", self.rest))?;
        Ok(())
    }

    /// An operator: the run of `=!<>` characters (after white space).
    fn symbol(&mut self) -> &str {
        self.rest = self.rest.trim_start();
        let stop = self.rest.find(|c| !"=!<>".contains(c)).unwrap_or(self.rest.len());
        let (symbol, after) = self.rest.split_at(stop);
        self.rest = after;
        symbol
    }
}

/// The bytes of a quoted string whose opening quote is gone, and what follows its closing quote.
fn unquote(text: &str) -> Result<(Vec<u8>, &str), String> {
    let mut bytes = Vec::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((bytes, &text[at + 1..])),
            '\\' => {
                let escaped = match chars.next().map(|(_, c)| c) {
                    Some('"') => b'"',
                    Some('\\') => b'\\',
                    Some('n') => b'\n',
                    Some('t') => b'\t',
                    Some('r') => b'\r',
                    Some('0') => 0,
                    Some('x') => {
                        let hex: String = chars.by_ref().take(2).map(|(_, c)| c).collect();
                        u8::from_str_radix(&hex, 16)
                            .ok()
                            .filter(|_| hex.len() == 2)
                            .ok_or_else(|| format!("\\x{hex} is not two hex digits"))?
                    }
                    other => return Err(format!("unknown escape \\{}", other.map(String::from).unwrap_or_default())),
                };
                bytes.push(escaped);
            }
            c => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    Err(format!("a quoted string is not closed: \"{text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_format_parses_etcdctl_style() {
        let text = "exists(\"acct/a\") == false\nmod(\"acct/b\") > 0\nvalue(\"acct/c\") != \"x\"\n\n\
                    put acct/a 100\ndel acct/b\ndelprefix tmp/\nget acct/a\nlist acct/ 10\n\nget acct/a\n";
        let txn = parse(text).expect("the brief's example parses");
        let expected = Txn::new()
            .when(Compare::exists("acct/a", false))
            .when(Compare::modify_index("acct/b", CompareOp::Gt, 0))
            .when(Compare::value("acct/c", CompareOp::Ne, "x"))
            .and_then(Op::put("acct/a", "100"))
            .and_then(Op::delete("acct/b"))
            .and_then(Op::delete_prefix("tmp/"))
            .and_then(Op::get("acct/a"))
            .and_then(Op::list("acct/", 10))
            .or_else(Op::get("acct/a"));
        assert_eq!(txn, expected);
    }

    #[test]
    fn every_target_alias_and_quoting_parses() {
        let text = "# guards\nver(k) = \"2\"\ncreate(\"a b\") < 9\ncreate_index(k) != 1\nmodify_index(k)>3\n\
                    version(\"\\xff\") == 0\nvalue(k) < \"two words\"\nexists(k) != true\n\n\
                    put \"a key\" \"a \\\"value\\\"\\n\"\ndelete k\ndel --prefix p/\ndelete_prefix q/\n\
                    list \"\"\n\n";
        let txn = parse(text).expect("valid");
        assert_eq!(
            txn.compare,
            [
                Compare::version("k", CompareOp::Eq, 2),
                Compare::create_index("a b", CompareOp::Lt, 9),
                Compare::create_index("k", CompareOp::Ne, 1),
                Compare::modify_index("k", CompareOp::Gt, 3),
                Compare::version([0xff], CompareOp::Eq, 0),
                Compare::value("k", CompareOp::Lt, "two words"),
                Compare::new("k", Target::Exists(true), CompareOp::Ne),
            ]
        );
        assert_eq!(
            txn.success,
            [
                Op::put("a key", "a \"value\"\n"),
                Op::delete("k"),
                Op::delete_prefix("p/"),
                Op::delete_prefix("q/"),
                Op::List { prefix: vec![], limit: None },
            ]
        );
        assert!(txn.failure.is_empty());
        // No compares: the input starts with a blank line.
        let txn = parse("\nget a\n").expect("valid");
        assert_eq!((txn.compare.len(), txn.success.len()), (0, 1));
    }

    #[test]
    fn mistakes_name_the_line() {
        let cases = [
            ("vers(k) == 1", "line 1: unknown target \"vers\""),
            ("exists(k) == yes", "line 1: exists compares take true or false"),
            ("mod(k) == x", "line 1: mod compares take a non-negative integer"),
            ("value(k) =< x", "line 1: unknown operator \"=<\""),
            ("value(k) == x y", "line 1: unexpected \"y\""),
            ("value(\"k) == x", "line 1: a quoted string is not closed"),
            ("value(k == x", "line 1: expected ')'"),
            ("exists k", "line 1: \"exists k\" is not a compare"),
            ("\nput a", "line 2: \"put a\" is not an op"),
            ("\nput a \"\\q\"", "line 2: unknown escape \\q"),
            ("\nput a \"\\xf\"", "line 2: \\xf\" is not two hex digits"),
            ("\n\nlist a many", "line 3: the limit of \"list a many\" is not a number"),
            ("\n\n\nget a", "line 4: \"get a\" is in a fourth section"),
        ];
        for (text, expected) in cases {
            let error = parse(text).expect_err(text);
            assert!(error.starts_with(expected), "{text:?}: {error:?} should start with {expected:?}");
        }
    }
}
