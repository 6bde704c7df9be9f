use serde_json::json;

use super::*;
use crate::KeyValue;

/// The JSON example of the "Transactions" section of docs/http-api.md, the contract the builder must match.
fn documented_example() -> Value {
    let doc = include_str!("../../../../docs/http-api.md");
    let section = doc.split("## Transactions").nth(1).expect("docs/http-api.md has a Transactions section");
    let block = section.split("```json").nth(1).and_then(|rest| rest.split("```").next());
    serde_json::from_str(block.expect("the section opens with a JSON example")).expect("the example is JSON")
}

#[test]
fn builder_serializes_issue_example() {
    let txn = Txn::new()
        .when(Compare::exists("acct/a", false))
        .and_then(Op::put("acct/a", "100"))
        .and_then(Op::put("acct/b", "0"))
        .or_else(Op::get("acct/a"));
    assert_eq!(txn.to_json(), documented_example());
    assert!(!txn.is_read_only());
}

#[test]
fn every_compare_and_op_serializes_as_documented() {
    let txn = Txn::new()
        .when(Compare::value("k", CompareOp::Lt, "v"))
        .when(Compare::value([0xff], CompareOp::Ne, [0, 0xff]))
        .when(Compare::version("k", CompareOp::Gt, 2))
        .when(Compare::create_index("k", CompareOp::Eq, 3))
        .when(Compare::modify_index("k", CompareOp::Ne, 4))
        .when(Compare::new("k", Target::Exists(true), CompareOp::Ne))
        .and_then(Op::delete("d"))
        .and_then(Op::delete_prefix("tmp/"))
        .or_else(Op::list("p", 10))
        .or_else(Op::List { prefix: vec![0xfe], limit: None });
    assert_eq!(
        txn.to_json(),
        json!({
            "compare": [
                {"key": "k", "target": "value", "op": "<", "value": "v"},
                {"key_b64": "/w==", "target": "value", "op": "!=", "value_b64": "AP8="},
                {"key": "k", "target": "version", "op": ">", "value": 2},
                {"key": "k", "target": "create_index", "op": "==", "value": 3},
                {"key": "k", "target": "modify_index", "op": "!=", "value": 4},
                {"key": "k", "target": "exists", "op": "!=", "value": true},
            ],
            "success": [{"delete": {"key": "d"}}, {"delete_prefix": {"prefix": "tmp/"}}],
            "failure": [{"list": {"prefix": "p", "limit": 10}}, {"list": {"prefix_b64": "/g=="}}],
        })
    );
    assert!(!txn.is_read_only());
    assert!(Txn::new().when(Compare::exists("a", true)).and_then(Op::get("a")).or_else(Op::list("", 1)).is_read_only());
    assert_eq!(Txn::new().to_json(), json!({"compare": [], "success": [], "failure": []}));
}

#[test]
fn answers_decode_into_results() {
    let body = json!({"succeeded": false, "index": 9, "results": [
        {"put": {"key": "a", "version": 2, "create_index": 3, "modify_index": 9}},
        {"delete": {"key_b64": "/w==", "deleted": true}},
        {"delete_prefix": {"prefix": "tmp/", "deleted": 4}},
        {"get": {"key": "a", "found": true, "value": "1", "create_index": 3, "modify_index": 9, "version": 2}},
        {"get": {"key": "gone", "found": false}},
        {"list": {"prefix": "a", "items": [{"key": "a", "value_b64": "AP8=", "create_index": 3, "modify_index": 9,
            "version": 2}], "more": true}},
    ]});
    let result = decode_txn_result(body.to_string().as_bytes()).expect("valid answer");
    let entry = |value: &[u8]| KeyValue {
        key: b"a".to_vec(),
        value: value.to_vec(),
        create_index: 3,
        modify_index: 9,
        version: 2,
        index: 9,
    };
    assert_eq!((result.succeeded, result.index), (false, 9));
    assert_eq!(
        result.results,
        [
            OpResult::Put { key: b"a".to_vec(), version: 2, create_index: 3, modify_index: 9 },
            OpResult::Delete { key: vec![0xff], deleted: true },
            OpResult::DeletePrefix { prefix: b"tmp/".to_vec(), deleted: 4 },
            OpResult::Get { key: b"a".to_vec(), entry: Some(entry(b"1")) },
            OpResult::Get { key: b"gone".to_vec(), entry: None },
            OpResult::List { prefix: b"a".to_vec(), items: vec![entry(&[0, 0xff])], more: true },
        ]
    );
}

#[test]
fn bad_answers_name_the_result() {
    let body = json!({"succeeded": true, "index": 1, "results": [{"get": {"key": "a", "found": false}},
        {"delete": {"key_b64": "!!", "deleted": true}}]});
    let error = decode_txn_result(body.to_string().as_bytes()).expect_err("bad base64");
    assert!(error.starts_with("results[1]: key_b64 is not valid base64"), "{error}");
    let error = decode_txn_result(br#"{"succeeded": true, "index": 1, "results": [{"watch": {}}]}"#).expect_err("");
    assert!(error.contains("unknown variant `watch`"), "{error}");
}

#[test]
fn json_is_read_only_only_when_every_op_reads() {
    let txn = Txn::new().when(Compare::exists("a", true)).and_then(Op::get("a")).or_else(Op::list("", 1));
    assert!(json_is_read_only(&txn.to_json()));
    assert!(json_is_read_only(&json!({"compare": []})));
    for writes in [
        json!({"success": [{"get": {"key": "a"}}, {"put": {"key": "a", "value": "v"}}]}),
        json!({"failure": [{"delete_prefix": {"prefix": "a"}}]}),
        json!({"success": [{"get": {"key": "a"}, "put": {"key": "a", "value": "v"}}]}),
        json!({"success": {"get": {"key": "a"}}}),
        json!({"success": ["get"]}),
    ] {
        assert!(!json_is_read_only(&writes), "{writes}");
    }
}
