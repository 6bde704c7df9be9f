use super::*;

fn hash(byte: u8) -> TokenHash {
    TokenHash([byte; 32])
}

fn add_user(name: &str, roles: &[&str]) -> AuthCommand {
    AuthCommand::AddUser {
        name: name.to_string(),
        token_hash: hash(name.len() as u8),
        roles: roles.iter().map(ToString::to_string).collect(),
    }
}

fn add_role(name: &str) -> AuthCommand {
    AuthCommand::AddRole { name: name.to_string() }
}

fn grant(role: &str, prefix: &[u8], access: Access) -> AuthCommand {
    AuthCommand::GrantPermission { role: role.to_string(), prefix: prefix.to_vec(), access }
}

/// Applies every command, panicking on a refusal.
fn build(commands: &[AuthCommand]) -> AuthState {
    let mut state = AuthState::default();
    for command in commands {
        if let Err(error) = state.apply(command) {
            panic!("{command:?} refused: {error}");
        }
    }
    state
}

/// root (admin on everything) held by `admin`; `app` (write on `app/`, read on `app/public/`... and more) held
/// by `alice`; `reader` (read on everything) held by `bob`.
fn sample() -> AuthState {
    build(&[
        add_role("root"),
        grant("root", b"", Access::Admin),
        add_role("app"),
        grant("app", b"app/", Access::Write),
        grant("app", b"shared/", Access::Read),
        add_role("reader"),
        grant("reader", b"", Access::Read),
        add_user("admin", &["root"]),
        add_user("alice", &["app"]),
        add_user("bob", &["reader"]),
    ])
}

#[test]
fn access_is_ordered_read_write_admin() {
    assert!(Access::Read < Access::Write && Access::Write < Access::Admin);
    for access in Access::ALL {
        assert_eq!(Access::from_name(access.name()), Some(access));
        assert_eq!(Access::from_code(access.code()), Some(access));
    }
    assert_eq!(Access::from_name("root"), None);
    assert_eq!(Access::from_code(0), None);
}

#[test]
fn access_is_the_highest_permission_on_a_byte_prefix() {
    // Phase 1: prefixes match on bytes; a key outside every prefix has no access.
    let state = sample();
    assert_eq!(state.access("alice", b"app/x"), Some(Access::Write));
    assert_eq!(state.access("alice", b"app/"), Some(Access::Write));
    assert_eq!(state.access("alice", b"app"), None, "a shorter key is not under the prefix");
    assert_eq!(state.access("alice", b"apq/x"), None);
    assert_eq!(state.access("alice", b"shared/doc"), Some(Access::Read));
    assert_eq!(state.access("nobody", b"app/x"), None);

    // Phase 2: the empty prefix is the whole keyspace, and the highest of several roles wins.
    assert_eq!(state.access("bob", b"anything"), Some(Access::Read));
    assert_eq!(state.access("admin", b""), Some(Access::Admin));
    let mut both = state.clone();
    both.apply(&AuthCommand::GrantRole { user: "bob".into(), role: "app".into() }).expect("grant");
    assert_eq!(both.access("bob", b"app/x"), Some(Access::Write));
    assert_eq!(both.access("bob", b"other"), Some(Access::Read));

    // Phase 3: binary prefixes are bytes, not characters.
    let binary = build(&[
        add_role("bin"),
        grant("bin", &[0xff, 0x00], Access::Write),
        add_user("carol", &["bin"]),
        add_role("utf8"),
        grant("utf8", "é".as_bytes(), Access::Read),
        AuthCommand::GrantRole { user: "carol".into(), role: "utf8".into() },
    ]);
    assert_eq!(binary.access("carol", &[0xff, 0x00, 0x01]), Some(Access::Write));
    assert_eq!(binary.access("carol", &[0xff, 0x01]), None);
    assert_eq!(binary.access("carol", &"é".as_bytes()[..1]), None, "half a character is not the prefix");
    assert_eq!(binary.access("carol", "éa".as_bytes()), Some(Access::Read));
}

#[test]
fn authorize_says_what_is_missing() {
    let state = sample();
    assert_eq!(state.authorize("alice", Scope::Key(b"app/x"), Access::Read), Ok(()));
    assert_eq!(state.authorize("alice", Scope::Key(b"app/x"), Access::Write), Ok(()));
    let denied = state.authorize("alice", Scope::Key(b"app/x"), Access::Admin).expect_err("write < admin");
    assert_eq!(denied.held, Some(Access::Write));
    assert_eq!(denied.to_string(), "user \"alice\" lacks admin on key \"app/x\" (it holds write there)");

    let denied = state.authorize("alice", Scope::Key(b"other"), Access::Read).expect_err("outside");
    assert_eq!(denied.to_string(), "user \"alice\" lacks read on key \"other\" (it holds no access there)");

    // A list needs the permission on the whole prefix: `app/` does not cover a list of `ap`.
    assert_eq!(state.authorize("alice", Scope::Prefix(b"app/sub/"), Access::Read), Ok(()));
    let denied = state.authorize("alice", Scope::Prefix(b"ap"), Access::Read).expect_err("wider than app/");
    assert!(denied.to_string().contains("every key under prefix \"ap\""), "{denied}");
    assert!(state.authorize("alice", Scope::Prefix(b""), Access::Read).is_err());
    assert_eq!(state.authorize("bob", Scope::Prefix(b""), Access::Read), Ok(()));

    // Cluster and auth calls need admin on the whole keyspace.
    assert_eq!(state.authorize("admin", Scope::Keyspace, Access::Admin), Ok(()));
    let denied = state.authorize("bob", Scope::Keyspace, Access::Admin).expect_err("bob reads only");
    assert_eq!(
        denied.to_string(),
        "user \"bob\" lacks admin on the whole keyspace, which this call needs (it holds read there)"
    );
    let denied = state.authorize("ghost", Scope::Key(b"k"), Access::Read).expect_err("unknown user");
    assert_eq!(denied.held, None);

    // A non-UTF-8 key is shown escaped.
    let denied = state.authorize("alice", Scope::Key(&[0xff, b'a']), Access::Read).expect_err("outside");
    assert!(denied.to_string().contains("key \"\\xffa\""), "{denied}");
}

#[test]
fn commands_refused_for_unknown_or_existing_names_change_nothing() {
    let state = sample();
    let refusals = [
        (add_user("alice", &[]), AuthError::UserExists { name: "alice".into() }),
        (add_user("dave", &["nope"]), AuthError::UnknownRole { name: "nope".into() }),
        (add_user("bad name", &[]), AuthError::BadName { name: "bad name".into() }),
        (add_user("", &[]), AuthError::BadName { name: String::new() }),
        (add_role("app"), AuthError::RoleExists { name: "app".into() }),
        (add_role("a/b"), AuthError::BadName { name: "a/b".into() }),
        (AuthCommand::SetToken { name: "x".into(), token_hash: hash(1) }, AuthError::UnknownUser { name: "x".into() }),
        (AuthCommand::DeleteUser { name: "x".into() }, AuthError::UnknownUser { name: "x".into() }),
        (AuthCommand::DeleteRole { name: "x".into() }, AuthError::UnknownRole { name: "x".into() }),
        (grant("x", b"p", Access::Read), AuthError::UnknownRole { name: "x".into() }),
        (
            AuthCommand::RevokePermission { role: "app".into(), prefix: b"nope/".to_vec() },
            AuthError::PermissionNotGranted { role: "app".into(), prefix: b"nope/".to_vec() },
        ),
        (
            AuthCommand::GrantRole { user: "alice".into(), role: "x".into() },
            AuthError::UnknownRole { name: "x".into() },
        ),
        (AuthCommand::GrantRole { user: "x".into(), role: "app".into() }, AuthError::UnknownUser { name: "x".into() }),
        (
            AuthCommand::RevokeRole { user: "alice".into(), role: "reader".into() },
            AuthError::RoleNotGranted { user: "alice".into(), role: "reader".into() },
        ),
        (
            grant("app", &vec![b'p'; AUTH_PREFIX_MAX_BYTES + 1], Access::Read),
            AuthError::PrefixTooLong { len: AUTH_PREFIX_MAX_BYTES + 1 },
        ),
    ];
    for (command, expected) in refusals {
        let mut changed = state.clone();
        assert_eq!(changed.validate(&command), Err(expected.clone()), "{command:?}");
        assert_eq!(changed.apply(&command), Err(expected), "{command:?}");
        assert_eq!(changed, state, "{command:?} changed the state although refused");
    }
}

#[test]
fn each_command_does_what_it_says() {
    let mut state = sample();
    // Rotation replaces the hash and keeps the roles.
    state.apply(&AuthCommand::SetToken { name: "alice".into(), token_hash: hash(9) }).expect("rotate");
    assert_eq!(state.users()["alice"].token_hash, hash(9));
    assert_eq!(state.access("alice", b"app/x"), Some(Access::Write));
    // Granting again replaces the access on that exact prefix (here: lowers it).
    state.apply(&grant("app", b"app/", Access::Read)).expect("regrant");
    assert_eq!(state.access("alice", b"app/x"), Some(Access::Read));
    state.apply(&AuthCommand::RevokePermission { role: "app".into(), prefix: b"app/".to_vec() }).expect("revoke");
    assert_eq!(state.access("alice", b"app/x"), None);
    // Granting a role twice is one grant; revoking it takes it.
    let grant_role = AuthCommand::GrantRole { user: "alice".into(), role: "reader".into() };
    state.apply(&grant_role).expect("grant role");
    state.apply(&grant_role).expect("grant role again");
    assert_eq!(state.users()["alice"].roles.len(), 2);
    state.apply(&AuthCommand::RevokeRole { user: "alice".into(), role: "reader".into() }).expect("revoke role");
    assert_eq!(state.access("alice", b"anything"), None);
    // Deleting a role takes it from every user; deleting a user forgets it.
    state.apply(&AuthCommand::DeleteRole { name: "reader".into() }).expect("delete role");
    assert!(state.users()["bob"].roles.is_empty());
    state.apply(&AuthCommand::DeleteUser { name: "bob".into() }).expect("delete user");
    assert!(!state.users().contains_key("bob"));
    assert_eq!(state.check_invariants(), Ok(()));
}

#[test]
fn auth_cannot_be_enabled_without_an_admin() {
    // Phase 1: no user at all, then a user with a role that is not admin on everything.
    let mut state = AuthState::default();
    assert_eq!(state.apply(&AuthCommand::Enable), Err(AuthError::NoAdmin));
    let mut state = build(&[add_role("ops"), grant("ops", b"a", Access::Admin), add_user("ops", &["ops"])]);
    assert_eq!(state.apply(&AuthCommand::Enable), Err(AuthError::NoAdmin), "admin on a prefix is not enough");
    assert!(!state.is_enabled());

    // Phase 2: with an admin on the whole keyspace it can.
    let mut state = sample();
    assert_eq!(state.apply(&AuthCommand::Enable), Ok(()));
    assert!(state.is_enabled());
    assert_eq!(state.apply(&AuthCommand::Enable), Ok(()), "enabling twice is harmless");
    assert_eq!(state.apply(&AuthCommand::Disable), Ok(()));
    assert!(!state.is_enabled());
}

#[test]
fn the_last_admin_cannot_be_taken_away_while_auth_is_enabled() {
    let mut enabled = sample();
    enabled.apply(&AuthCommand::Enable).expect("enable");
    let lockouts = [
        AuthCommand::DeleteUser { name: "admin".into() },
        AuthCommand::DeleteRole { name: "root".into() },
        AuthCommand::RevokeRole { user: "admin".into(), role: "root".into() },
        AuthCommand::RevokePermission { role: "root".into(), prefix: Vec::new() },
        grant("root", b"", Access::Write),
    ];
    for command in &lockouts {
        let mut state = enabled.clone();
        assert_eq!(state.apply(command), Err(AuthError::WouldLockOut), "{command:?}");
        assert_eq!(state, enabled);
        // Disabled, the same change is allowed (auth can only be enabled again with a new admin).
        let mut disabled = enabled.clone();
        disabled.apply(&AuthCommand::Disable).expect("disable");
        assert_eq!(disabled.apply(command), Ok(()), "{command:?} while disabled");
        assert_eq!(disabled.apply(&AuthCommand::Enable), Err(AuthError::NoAdmin));
    }
    // With a second admin, the first may go.
    let mut state = enabled.clone();
    state.apply(&AuthCommand::GrantRole { user: "bob".into(), role: "root".into() }).expect("second admin");
    for command in &lockouts[..1] {
        assert_eq!(state.clone().apply(command), Ok(()), "{command:?} with a second admin");
    }
    // Changes that leave the admin alone are fine.
    assert_eq!(state.apply(&grant("root", b"", Access::Admin)), Ok(()));
    assert_eq!(state.apply(&AuthCommand::RevokeRole { user: "bob".into(), role: "root".into() }), Ok(()));
}

#[test]
fn limits_are_enforced() {
    let mut state = build(&[add_role("r")]);
    for i in 0..PERMISSIONS_PER_ROLE_MAX {
        state.apply(&grant("r", format!("p{i}").as_bytes(), Access::Read)).expect("under the limit");
    }
    let full = AuthError::LimitReached { what: "permissions per role", max: PERMISSIONS_PER_ROLE_MAX };
    assert_eq!(state.apply(&grant("r", b"one-more", Access::Read)), Err(full));
    assert_eq!(state.apply(&grant("r", b"p0", Access::Write)), Ok(()), "replacing a permission needs no room");

    let mut state = build(&[add_user("u", &[])]);
    let names: Vec<String> = (0..=ROLES_PER_USER_MAX).map(|i| format!("r{i}")).collect();
    for name in &names {
        state.apply(&add_role(name)).expect("add role");
    }
    let too_many = AuthCommand::AddUser { name: "v".into(), token_hash: hash(1), roles: names.clone() };
    let full = AuthError::LimitReached { what: "roles per user", max: ROLES_PER_USER_MAX };
    assert_eq!(state.apply(&too_many), Err(full.clone()));
    for name in &names[..ROLES_PER_USER_MAX] {
        state.apply(&AuthCommand::GrantRole { user: "u".into(), role: name.clone() }).expect("under the limit");
    }
    let one_more = AuthCommand::GrantRole { user: "u".into(), role: names[ROLES_PER_USER_MAX].clone() };
    assert_eq!(state.apply(&one_more), Err(full));
}

#[test]
fn names_are_url_and_shell_safe() {
    for good in ["a", "alice", "app-writer_2.0", &"x".repeat(AUTH_NAME_MAX_BYTES)] {
        assert_eq!(check_name(good), Ok(()), "{good:?}");
    }
    for bad in ["", "a b", "a/b", "é", "a%20", "a\n", &"x".repeat(AUTH_NAME_MAX_BYTES + 1)] {
        assert!(check_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn token_hashes_never_show_in_debug_output() {
    let state = build(&[add_user("alice", &[])]);
    let text = format!("{state:?} {:?}", add_user("alice", &[]));
    assert!(text.contains("TokenHash(<redacted>)"), "{text}");
    let hex_byte = format!("{}", 5u8);
    assert!(!text.contains(&format!("[{hex_byte}, {hex_byte}")), "hash bytes in {text}");
}
