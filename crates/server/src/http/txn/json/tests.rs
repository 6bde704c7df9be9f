use serde_json::json;

use super::*;

/// The limits of the tests: small, so that they are easy to cross.
fn limits() -> Limits {
    Limits { max_key_bytes: 8, max_value_bytes: 16, max_body_bytes: 4096, max_txn_ops: 3 }
}

fn parse(body: &serde_json::Value) -> Result<Txn, ApiError> {
    parse_txn(body.to_string().as_bytes(), &limits())
}

#[test]
fn parses_the_issue_example() {
    let body = json!({"compare": [{"key": "acct/a", "target": "exists", "op": "==", "value": false}],
        "success": [{"put": {"key": "acct/a", "value": "100"}}, {"put": {"key": "acct/b", "value": "0"}}],
        "failure": [{"get": {"key": "acct/a"}}]});
    let txn = parse(&body).expect("the documented example parses");
    let expected = Txn {
        compare: vec![Compare { key: b"acct/a".to_vec(), target: CompareTarget::Exists(false), op: CompareOp::Eq }],
        success: vec![
            TxnOp::Put { key: b"acct/a".to_vec(), value: b"100".to_vec() },
            TxnOp::Put { key: b"acct/b".to_vec(), value: b"0".to_vec() },
        ],
        failure: vec![TxnOp::Get { key: b"acct/a".to_vec() }],
    };
    assert_eq!(txn, expected);
}

#[test]
fn every_target_op_and_operation_parses() {
    // Phase: each target with its operand type, each op, and base64 for keys, values and prefixes.
    let body = json!({"compare": [
            {"key": "a", "target": "value", "op": "<", "value": "x"},
            {"key_b64": "/w==", "target": "version", "op": ">", "value": 2},
            {"key": "c", "target": "create_index", "op": "!=", "value": 0}],
        "success": [
            {"put": {"key": "a", "value_b64": "AP8="}},
            {"delete_prefix": {"prefix_b64": "/w=="}},
            {"list": {"prefix": "p", "limit": 0}}],
        "failure": [{"delete": {"key": "d"}}, {"list": {}}]});
    let txn = parse(&body).expect("valid");
    let targets: Vec<_> = txn.compare.iter().map(|c| (c.key.clone(), c.target.clone(), c.op)).collect();
    assert_eq!(
        targets,
        [
            (b"a".to_vec(), CompareTarget::Value(b"x".to_vec()), CompareOp::Lt),
            (vec![0xff], CompareTarget::Version(2), CompareOp::Gt),
            (b"c".to_vec(), CompareTarget::CreateIndex(0), CompareOp::Ne),
        ]
    );
    assert_eq!(
        txn.success,
        [
            TxnOp::Put { key: b"a".to_vec(), value: vec![0, 0xff] },
            TxnOp::DeletePrefix { prefix: vec![0xff] },
            TxnOp::List { prefix: b"p".to_vec(), limit: 0 },
        ]
    );
    assert_eq!(txn.failure, [TxnOp::Delete { key: b"d".to_vec() }, TxnOp::List { prefix: vec![], limit: 100 }]);
    // Phase: modify_index and exists with !=; the lists may be left out.
    let txn = parse(&json!({"compare": [{"key": "m", "target": "modify_index", "op": "==", "value": 7},
        {"key": "e", "target": "exists", "op": "!=", "value": true}]}))
    .expect("valid");
    assert_eq!(txn.compare[0].target, CompareTarget::ModifyIndex(7));
    assert_eq!((txn.compare[1].target.clone(), txn.compare[1].op), (CompareTarget::Exists(true), CompareOp::Ne));
    assert!(txn.success.is_empty() && txn.failure.is_empty());
}

#[test]
fn errors_name_the_compare_or_op() {
    let put = |key: &str| json!({"put": {"key": key, "value": "v"}});
    let cases = [
        (
            json!({"success": [put("a"), put("b"), put("a")]}),
            400,
            "success[2]: key \"a\" is written twice (first in success[0])",
        ),
        (
            json!({"success": [put("a"), put("b"), put("c"), put("d")]}),
            400,
            "success[3]: success has 4 entries, over the limit of 3 (--max-txn-ops)",
        ),
        (
            json!({"compare": [{"key": "a", "target": "vers", "op": "==", "value": 1}]}),
            400,
            "compare[0]: unknown target \"vers\"",
        ),
        (
            json!({"compare": [{"key": "a", "target": "exists", "op": "<", "value": true}]}),
            400,
            "compare[0]: an exists compare takes only == or !=, not <",
        ),
        (
            json!({"compare": [{"key": "a", "target": "value", "op": "=<", "value": "x"}]}),
            400,
            "compare[0]: unknown op \"=<\"",
        ),
        (
            json!({"compare": [{"key": "a", "target": "value", "op": "==", "value": "x", "value_b64": "eA=="}]}),
            400,
            "compare[0]: give value or value_b64, not both",
        ),
        (
            json!({"compare": [{"key": "a", "target": "version", "op": "==", "value": "1"}]}),
            400,
            "compare[0]: a version compare takes a non-negative integer as value, got \"1\"",
        ),
        (json!({"compare": [{"key": "a", "target": "version", "op": "==", "value": -1}]}), 400, "non-negative integer"),
        (
            json!({"compare": [{"key": "a", "target": "exists", "op": "==", "value": 1}]}),
            400,
            "compare[0]: an exists compare takes true or false",
        ),
        (
            json!({"compare": [{"key": "a", "target": "value", "op": "==", "value": 5}]}),
            400,
            "compare[0]: a value compare takes a string",
        ),
        (
            json!({"compare": [{"key": "a", "target": "value", "op": "==", "valu": "x"}]}),
            400,
            "compare[0]: unknown field `valu`",
        ),
        (
            json!({"compare": [{"target": "exists", "op": "==", "value": true}]}),
            400,
            "compare[0]: key (or key_b64) is missing",
        ),
        (json!({"success": [{"pt": {"key": "a"}}]}), 400, "success[0]: unknown variant `pt`"),
        (json!({"failure": [put("a"), {"put": {"key": "b"}}]}), 400, "failure[1]: a put needs value"),
        (
            json!({"failure": [{"put": {"key": "b", "value": "v", "value_b64": "dg=="}}]}),
            400,
            "failure[0]: give value or value_b64, not both",
        ),
        (json!({"failure": [{"get": {"key": ""}}]}), 400, "failure[0]: the key is empty"),
        (json!({"failure": [{"get": {"key_b64": "!!"}}]}), 400, "failure[0]: key_b64 is not valid base64"),
        (
            json!({"success": [{"delete_prefix": {"prefix": ""}}]}),
            400,
            "success[0]: delete_prefix needs a non-empty prefix",
        ),
        (
            json!({"success": [{"delete_prefix": {"prefix": "a/"}}, put("a/b")]}),
            400,
            "success[1]: key \"a/b\" is inside prefix \"a/\", which success[0] deletes",
        ),
        (json!({"success": [{"list": {"limit": 10001}}]}), 400, "success[0]: limit must be at most 10000"),
        (
            json!({"success": [put("123456789")]}),
            413,
            "success[0]: the key is 9 bytes; the limit is 8 (--max-key-bytes)",
        ),
        (
            json!({"success": [{"put": {"key": "a", "value": "x".repeat(17)}}]}),
            413,
            "success[0]: the value is 17 bytes; the limit is 16 (--max-value-bytes)",
        ),
        (
            json!({"compare": [{"key": "a", "target": "value", "op": "==", "value": "x".repeat(17)}]}),
            413,
            "compare[0]: the value is 17 bytes",
        ),
        (json!({"success": [{"list": {"prefix": "123456789"}}]}), 413, "success[0]: the prefix is 9 bytes"),
        (json!({"sucess": []}), 400, "unknown field `sucess`"),
    ];
    for (body, status, expected) in cases {
        let error = parse(&body).expect_err(&body.to_string());
        assert_eq!(error.status.as_u16(), status, "{body}: {}", error.message);
        assert!(error.message.contains(expected), "{body}: {:?} should contain {expected:?}", error.message);
    }
}

#[test]
fn bodies_that_are_not_json_or_not_utf8_are_refused() {
    for body in [&b"{\"compare\": ["[..], b"[]", b"{\"success\": [{\"get\": {\"key\": \"a\xff\"}}]}"] {
        let error = parse_txn(body, &limits()).expect_err("refused");
        assert_eq!(error.code, "bad_request", "{}", error.message);
        assert!(error.message.starts_with("bad transaction"), "{}", error.message);
    }
}

#[test]
fn compares_and_ops_must_be_objects_too() {
    // serde alone would fill each of these structs from an array of its fields, in order.
    let cases: [(&str, &str); 4] = [
        (
            r#"{"compare": [["k", null, "value", "==", "w", null]]}"#,
            "compare[0]: a compare must be a JSON object, not an array",
        ),
        (
            r#"{"success": [{"put": ["k", null, "v", null]}]}"#,
            "success[0]: an op's fields must be a JSON object, not an array",
        ),
        (r#"{"failure": [["get"]]}"#, "failure[0]: an op must be a JSON object, not an array"),
        (r#"{"success": [{"get": "k"}]}"#, "success[0]: an op's fields must be a JSON object, not a string"),
    ];
    for (body, expected) in cases {
        let error = parse_txn(body.as_bytes(), &limits()).expect_err(body);
        assert_eq!(error.code, "bad_request", "{body}");
        assert!(error.message.starts_with(expected), "{body}: {:?} should start with {expected:?}", error.message);
    }
}
