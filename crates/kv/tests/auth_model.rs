//! Model-based test of the auth store: random auth commands, applied through `KvStore` (encoded and not, with
//! snapshot round trips in between), against a naive model built from vectors, whose permission check scans
//! every grant and whose no-lockout rule is "make the change on a copy and look for an admin".

use proptest::prelude::*;
use tally_kv::{Access, AuthCommand, Command, KvStore, Response, Scope, TokenHash};

/// A naive user: name, token hash byte, roles (no duplicates).
type ModelUser = (String, u8, Vec<String>);
/// A naive role: name, (prefix, access) grants (one per prefix).
type ModelRole = (String, Vec<(Vec<u8>, Access)>);

/// The naive model.
#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    enabled: bool,
    users: Vec<ModelUser>,
    roles: Vec<ModelRole>,
}

const USERS: [&str; 3] = ["ann", "bo", "cy"];
const ROLES: [&str; 3] = ["root", "rw", "ro"];
const PREFIXES: [&[u8]; 5] = [b"", b"k", b"k/", b"k/1", &[0xff]];
const KEYS: [&[u8]; 6] = [b"k", b"k/1", b"k/10", b"k/2", b"x", &[0xff, 0x01]];

impl Model {
    fn user(&self, name: &str) -> Option<&ModelUser> {
        self.users.iter().find(|u| u.0 == name)
    }

    fn role(&self, name: &str) -> Option<&ModelRole> {
        self.roles.iter().find(|r| r.0 == name)
    }

    /// The highest access of any grant of any of the user's roles whose prefix starts `bytes`.
    fn access(&self, user: &str, bytes: &[u8]) -> Option<Access> {
        let mut best = None;
        for role in &self.user(user)?.2 {
            for (prefix, access) in &self.role(role).expect("roles exist").1 {
                if bytes.starts_with(prefix) && best.is_none_or(|b| *access > b) {
                    best = Some(*access);
                }
            }
        }
        best
    }

    fn has_admin(&self) -> bool {
        self.users.iter().any(|u| self.access(&u.0, b"") == Some(Access::Admin))
    }

    /// Applies `command`; `false` (and no change) if it is refused.
    fn apply(&mut self, command: &AuthCommand) -> bool {
        let before = self.clone();
        let accepted = self.change(command) && (!self.enabled || self.has_admin());
        if !accepted {
            *self = before;
        }
        accepted
    }

    /// Makes the change; `false` if its preconditions fail (the lockout rule is checked by the caller).
    fn change(&mut self, command: &AuthCommand) -> bool {
        let good = |name: &str| !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric());
        match command {
            AuthCommand::Enable => {
                self.enabled = true;
                true
            }
            AuthCommand::Disable => {
                self.enabled = false;
                true
            }
            AuthCommand::AddUser { name, token_hash, roles } => {
                if !good(name) || self.user(name).is_some() || roles.iter().any(|r| self.role(r).is_none()) {
                    return false;
                }
                let mut distinct: Vec<String> = Vec::new();
                for role in roles {
                    if !distinct.contains(role) {
                        distinct.push(role.clone());
                    }
                }
                self.users.push((name.clone(), token_hash.0[0], distinct));
                true
            }
            AuthCommand::SetToken { name, token_hash } => match self.users.iter_mut().find(|u| &u.0 == name) {
                Some(user) => {
                    user.1 = token_hash.0[0];
                    true
                }
                None => false,
            },
            AuthCommand::DeleteUser { name } => {
                let count = self.users.len();
                self.users.retain(|u| &u.0 != name);
                self.users.len() < count
            }
            AuthCommand::AddRole { name } => {
                if !good(name) || self.role(name).is_some() {
                    return false;
                }
                self.roles.push((name.clone(), Vec::new()));
                true
            }
            AuthCommand::DeleteRole { name } => {
                let count = self.roles.len();
                self.roles.retain(|r| &r.0 != name);
                for user in &mut self.users {
                    user.2.retain(|r| r != name);
                }
                self.roles.len() < count
            }
            AuthCommand::GrantPermission { role, prefix, access } => {
                let Some(role) = self.roles.iter_mut().find(|r| &r.0 == role) else { return false };
                role.1.retain(|(p, _)| p != prefix);
                role.1.push((prefix.clone(), *access));
                true
            }
            AuthCommand::RevokePermission { role, prefix } => {
                let Some(role) = self.roles.iter_mut().find(|r| &r.0 == role) else { return false };
                let count = role.1.len();
                role.1.retain(|(p, _)| p != prefix);
                role.1.len() < count
            }
            AuthCommand::GrantRole { user, role } => {
                if self.role(role).is_none() {
                    return false;
                }
                let Some(user) = self.users.iter_mut().find(|u| &u.0 == user) else { return false };
                if !user.2.contains(role) {
                    user.2.push(role.clone());
                }
                true
            }
            AuthCommand::RevokeRole { user, role } => {
                let Some(user) = self.users.iter_mut().find(|u| &u.0 == user) else { return false };
                let count = user.2.len();
                user.2.retain(|r| r != role);
                user.2.len() < count
            }
        }
    }
}

/// One step of the workload.
#[derive(Clone, Debug)]
enum Step {
    Apply(AuthCommand),
    SnapshotRestore,
}

fn arb_step() -> impl Strategy<Value = Step> {
    let user = || prop_oneof![8 => proptest::sample::select(&USERS[..]).prop_map(String::from), 1 => Just("bad name".to_string())];
    let role = || prop_oneof![8 => proptest::sample::select(&ROLES[..]).prop_map(String::from), 1 => Just("no/such".to_string())];
    let prefix = || proptest::sample::select(&PREFIXES[..]).prop_map(<[u8]>::to_vec);
    let access = || proptest::sample::select(&Access::ALL[..]);
    let command = prop_oneof![
        2 => Just(AuthCommand::Enable),
        1 => Just(AuthCommand::Disable),
        3 => (user(), any::<u8>(), proptest::collection::vec(role(), 0..3))
            .prop_map(|(name, byte, roles)| AuthCommand::AddUser { name, token_hash: TokenHash([byte; 32]), roles }),
        1 => (user(), any::<u8>()).prop_map(|(name, byte)| AuthCommand::SetToken { name, token_hash: TokenHash([byte; 32]) }),
        1 => user().prop_map(|name| AuthCommand::DeleteUser { name }),
        3 => role().prop_map(|name| AuthCommand::AddRole { name }),
        1 => role().prop_map(|name| AuthCommand::DeleteRole { name }),
        4 => (role(), prefix(), access()).prop_map(|(role, prefix, access)| AuthCommand::GrantPermission { role, prefix, access }),
        1 => (role(), prefix()).prop_map(|(role, prefix)| AuthCommand::RevokePermission { role, prefix }),
        3 => (user(), role()).prop_map(|(user, role)| AuthCommand::GrantRole { user, role }),
        1 => (user(), role()).prop_map(|(user, role)| AuthCommand::RevokeRole { user, role }),
    ];
    prop_oneof![12 => command.prop_map(Step::Apply), 1 => Just(Step::SnapshotRestore)]
}

/// Asserts the store's auth state equals the model, and both agree on every permission check.
fn assert_same(store: &KvStore, model: &Model) -> Result<(), TestCaseError> {
    store.check_invariants();
    let auth = store.auth();
    prop_assert_eq!(auth.is_enabled(), model.enabled);
    let mut users: Vec<(String, u8, Vec<String>)> =
        auth.users().iter().map(|(n, u)| (n.clone(), u.token_hash.0[0], u.roles.iter().cloned().collect())).collect();
    let mut expected = model.users.clone();
    for user in &mut expected {
        user.2.sort();
    }
    expected.sort();
    users.sort();
    prop_assert_eq!(users, expected);
    let mut roles: Vec<String> = model.roles.iter().map(|r| r.0.clone()).collect();
    roles.sort();
    prop_assert_eq!(auth.roles().keys().cloned().collect::<Vec<_>>(), roles);
    prop_assert_eq!(auth.has_root_admin(), model.has_admin());
    for user in USERS {
        for key in KEYS {
            let expected = model.access(user, key);
            prop_assert_eq!(auth.access(user, key), expected, "user {} key {:?}", user, key);
            for needed in Access::ALL {
                let allowed = expected.is_some_and(|held| held >= needed);
                prop_assert_eq!(auth.authorize(user, Scope::Key(key), needed).is_ok(), allowed);
                prop_assert_eq!(auth.authorize(user, Scope::Prefix(key), needed).is_ok(), allowed);
            }
        }
        let root = model.access(user, b"") == Some(Access::Admin);
        prop_assert_eq!(auth.authorize(user, Scope::Keyspace, Access::Admin).is_ok(), root);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn auth_store_matches_naive_model(steps in proptest::collection::vec((arb_step(), any::<bool>()), 1..80)) {
        let mut store = KvStore::new();
        let mut model = Model::default();
        let mut index = 0;
        for (step, encoded) in steps {
            match step {
                Step::Apply(command) => {
                    index += 1;
                    let accepted = model.apply(&command);
                    let command = Command::Auth(command);
                    let response =
                        if encoded { store.apply(index, &command.encode()) } else { store.apply_command(index, &command) };
                    match response {
                        Response::Auth { index: i } => prop_assert!(accepted && i == index, "{:?} accepted", command),
                        Response::AuthRefused { index: i, error } => {
                            prop_assert!(!accepted && i == index, "{:?} refused: {}", command, error);
                        }
                        other => prop_assert!(false, "{:?} answered {:?}", command, other),
                    }
                }
                Step::SnapshotRestore => {
                    let restored = KvStore::restore(&store.snapshot());
                    prop_assert_eq!(restored.as_ref(), Ok(&store));
                    store = restored.map_err(|error| TestCaseError::fail(error.to_string()))?;
                }
            }
            assert_same(&store, &model)?;
        }
    }
}
