use axum::http::{HeaderValue, StatusCode};
use tally_kv::{AuthCommand, Denied};

use super::*;

/// An auth state with `admin` (root admin) and `reader` (read on `app/`), enabled or not, and their tokens.
fn state(enabled: bool) -> (Arc<AuthState>, String, String) {
    let (admin_token, admin_hash) = new_token().expect("randomness");
    let (reader_token, reader_hash) = new_token().expect("randomness");
    let mut auth = AuthState::default();
    let commands = [
        AuthCommand::AddRole { name: "root".into() },
        AuthCommand::GrantPermission { role: "root".into(), prefix: Vec::new(), access: Access::Admin },
        AuthCommand::AddRole { name: "app-reader".into() },
        AuthCommand::GrantPermission { role: "app-reader".into(), prefix: b"app/".to_vec(), access: Access::Read },
        AuthCommand::AddUser { name: "admin".into(), token_hash: admin_hash, roles: vec!["root".into()] },
        AuthCommand::AddUser { name: "reader".into(), token_hash: reader_hash, roles: vec!["app-reader".into()] },
    ];
    for command in commands.iter().chain(enabled.then_some(&AuthCommand::Enable)) {
        auth.apply(command).expect("valid command");
    }
    (Arc::new(auth), admin_token, reader_token)
}

fn bearer(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).expect("header value"));
    headers
}

#[test]
fn tokens_are_long_random_and_hashed_with_sha256() {
    let (token, hash) = new_token().expect("randomness");
    assert!(token.starts_with(TOKEN_PREFIX), "{token}");
    assert_eq!(token.len(), TOKEN_PREFIX.len() + 64);
    assert!(token[TOKEN_PREFIX.len()..].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(hash, hash_token(&token));
    assert_ne!(new_token().expect("randomness").0, token, "two tokens alike");
    // SHA-256 of "abc" (FIPS 180-2 test vector).
    let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let hex: String = hash_token("abc").0.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, expected);
}

#[test]
fn with_auth_off_everyone_passes_and_a_valid_token_still_names_its_user() {
    let (auth, admin, _) = state(false);
    let anonymous = authenticate_with(Arc::clone(&auth), &HeaderMap::new()).expect("open");
    assert_eq!(anonymous.user(), None);
    assert!(anonymous.require(Scope::Keyspace, Access::Admin).is_ok());
    let wrong = authenticate_with(Arc::clone(&auth), &bearer("Bearer tly_nope")).expect("open");
    assert_eq!(wrong.user(), None);
    let named = authenticate_with(auth, &bearer(&format!("Bearer {admin}"))).expect("open");
    assert_eq!(named.user(), Some("admin"));
}

#[test]
fn with_auth_on_a_missing_or_unknown_token_is_401_without_echoing_it() {
    let (auth, _, _) = state(true);
    for headers in [HeaderMap::new(), bearer("Basic YWxhZGRpbjpvcGVuc2VzYW1l"), bearer("Bearer tly_0123456789abcdef")] {
        let Err(error) = authenticate_with(Arc::clone(&auth), &headers) else { panic!("{headers:?} was let in") };
        assert_eq!((error.status, error.code), (StatusCode::UNAUTHORIZED, "unauthenticated"));
        assert!(!error.message.contains("0123456789abcdef") && !error.message.contains("YWxh"), "{}", error.message);
    }
}

#[test]
fn with_auth_on_a_valid_token_is_checked_against_its_permissions() {
    let (auth, admin, reader) = state(true);
    let admin = authenticate_with(Arc::clone(&auth), &bearer(&format!("Bearer {admin}"))).expect("admin");
    assert_eq!(admin.user(), Some("admin"));
    assert!(admin.require(Scope::Keyspace, Access::Admin).is_ok());
    let reader = authenticate_with(auth, &bearer(&format!("bearer {reader}"))).expect("reader");
    assert!(reader.require(Scope::Key(b"app/x"), Access::Read).is_ok());
    assert!(reader.require(Scope::Prefix(b"app/"), Access::Read).is_ok());
    for (scope, access) in
        [(Scope::Key(b"app/x"), Access::Write), (Scope::Key(b"other"), Access::Read), (Scope::Keyspace, Access::Admin)]
    {
        let error = reader.require(scope, access).expect_err("beyond its permissions");
        assert_eq!((error.status, error.code), (StatusCode::FORBIDDEN, "permission_denied"));
        assert!(error.message.contains(access.name()), "{}", error.message);
    }
    let denied = Denied { user: "reader".into(), needed: "write on key \"app/x\"".into(), held: Some(Access::Read) };
    assert_eq!(reader.require(Scope::Key(b"app/x"), Access::Write).expect_err("read only").message, denied.to_string());
}

#[test]
fn the_user_is_found_among_many_by_hash() {
    let mut auth = AuthState::default();
    let mut tokens = Vec::new();
    for i in 0..50 {
        let (token, token_hash) = new_token().expect("randomness");
        auth.apply(&AuthCommand::AddUser { name: format!("u{i}"), token_hash, roles: Vec::new() }).expect("add");
        tokens.push(token);
    }
    for (i, token) in tokens.iter().enumerate() {
        assert_eq!(user_with_token(&auth, &hash_token(token)), Some(format!("u{i}").as_str()));
    }
    assert_eq!(user_with_token(&auth, &hash_token("tly_other")), None);
}
