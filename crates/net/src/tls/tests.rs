use std::path::PathBuf;

use super::*;
use crate::certs::{InitPlan, init};

/// A certificate directory with a CA, node `n1` and user `alice`.
fn generated() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = InitPlan { nodes: vec!["n1".into()], users: vec!["alice".into()], ..InitPlan::default() };
    init(dir.path(), &plan).expect("certs");
    dir
}

fn node(dir: &Path) -> CertifiedKeyFiles {
    CertifiedKeyFiles { certificate: dir.join("n1.pem"), key: dir.join("n1-key.pem") }
}

#[test]
fn configs_build_from_generated_files() {
    let dir = generated();
    let d = dir.path();
    server_config(&ServerTlsFiles { identity: node(d), client_ca: None }).expect("server");
    server_config(&ServerTlsFiles { identity: node(d), client_ca: Some(d.join("ca.pem")) }).expect("mTLS server");
    client_config(&ClientTlsFiles { ca: Some(d.join("ca.pem")), identity: None }).expect("client");
    let alice = CertifiedKeyFiles { certificate: d.join("alice.pem"), key: d.join("alice-key.pem") };
    client_config(&ClientTlsFiles { ca: Some(d.join("ca.pem")), identity: Some(alice) }).expect("user client");
    mutual_pair(&node(d), &d.join("ca.pem")).expect("peer pair");
    assert_eq!(certificate_common_name(&d.join("n1.pem")).expect("CN"), "n1");
    assert_eq!(certificate_common_name(&d.join("alice.pem")).expect("CN"), "alice");
}

/// The error of a server config built from `certificate` and `key`, as text.
fn server_error(certificate: PathBuf, key: PathBuf, ca: Option<PathBuf>) -> String {
    let files = ServerTlsFiles { identity: CertifiedKeyFiles { certificate, key }, client_ca: ca };
    server_config(&files).expect_err("a bad file").to_string()
}

#[test]
fn each_bad_file_gives_its_clear_error() {
    let dir = generated();
    let d = dir.path();
    let garbage = d.join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file at all\n").expect("write");

    // A missing file is named, with what it should have held.
    let error = server_error(d.join("missing.pem"), d.join("n1-key.pem"), None);
    assert!(error.contains("cannot read certificate") && error.contains("missing.pem"), "{error}");
    let error = server_error(d.join("n1.pem"), d.join("missing-key.pem"), None);
    assert!(error.contains("cannot read private key") && error.contains("missing-key.pem"), "{error}");

    // A file with the wrong contents: no certificate, no key (a certificate given as the key).
    let error = server_error(garbage.clone(), d.join("n1-key.pem"), None);
    assert!(error.contains("holds no certificate") && error.contains("garbage.pem"), "{error}");
    let error = server_error(d.join("n1.pem"), d.join("n1.pem"), None);
    assert!(error.contains("holds no private key") && error.contains("n1.pem"), "{error}");

    // A key of another certificate.
    let error = server_error(d.join("n1.pem"), d.join("alice-key.pem"), None);
    assert!(error.contains("does not belong to the certificate"), "{error}");
    assert!(error.contains("alice-key.pem") && error.contains("n1.pem"), "{error}");

    // A bad CA file, on the server (client certificates) and on the client.
    let error = server_error(d.join("n1.pem"), d.join("n1-key.pem"), Some(garbage.clone()));
    assert!(error.contains("holds no certificate") && error.contains("garbage.pem"), "{error}");
    let error = client_config(&ClientTlsFiles { ca: Some(d.join("nope.pem")), identity: None }).expect_err("missing");
    assert!(error.to_string().contains("nope.pem"), "{error}");
    let error = certificate_common_name(&garbage).expect_err("no certificate");
    assert!(error.to_string().contains("garbage.pem"), "{error}");
}
