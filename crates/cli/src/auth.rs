//! The auth commands: `tally auth enable|disable|status`, `tally user add|delete|list|rotate|grant|revoke` and
//! `tally role add|delete|list|grant|revoke`. One client call each (docs/http-api.md, "Users, roles and
//! tokens"), its answer printed for a person or, with `--json`, as one JSON object.
//!
//! Once auth is on, every command needs a token with admin on the whole keyspace (`tally auth status`: any
//! valid token). It is read from `--token` or `TALLY_TOKEN`, and never printed except by `user add` and `user rotate`,
//! which print the new token alone on stdout (so `TOKEN=$(tally user add ...)` captures it).

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;
use tally_client::{Access, NewToken};

use crate::kv::ClientArgs;
use crate::output;

/// `tally auth ...`.
#[derive(clap::Args, Debug)]
pub struct AuthArgs {
    /// What to do.
    #[command(subcommand)]
    command: AuthCommand,
}

/// The subcommands of `tally auth`.
#[derive(Subcommand, Debug)]
enum AuthCommand {
    /// Require a token on every call. Refused unless some user holds admin on the whole keyspace: create one
    /// first (`tally role add root && tally role grant root "" admin && tally user add admin --role root`).
    Enable(Only),
    /// Open every call again.
    Disable(Only),
    /// Show whether auth is on, and whose token TALLY_TOKEN is.
    Status(Only),
}

/// `tally user ...`.
#[derive(clap::Args, Debug)]
pub struct UserArgs {
    /// What to do.
    #[command(subcommand)]
    command: UserCommand,
}

/// The subcommands of `tally user`.
#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user and print its token (shown only this once).
    Add {
        /// The user's name: 1 to 64 of A-Z a-z 0-9 . _ -
        name: String,
        /// A role the user holds from the start (repeat for several).
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// Cluster and output.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a user (its token stops working).
    Delete(Named),
    /// List the users and their roles.
    List(Only),
    /// Give a user a new token and print it (the old one stops working).
    Rotate(Named),
    /// Give a user a role.
    Grant(UserRole),
    /// Take a role from a user.
    Revoke(UserRole),
}

/// `tally role ...`.
#[derive(clap::Args, Debug)]
pub struct RoleArgs {
    /// What to do.
    #[command(subcommand)]
    command: RoleCommand,
}

/// The subcommands of `tally role`.
#[derive(Subcommand, Debug)]
enum RoleCommand {
    /// Create a role that grants nothing yet.
    Add(Named),
    /// Delete a role (and take it from every user).
    Delete(Named),
    /// List the roles and what they grant.
    List(Only),
    /// Grant read, write or admin on a key prefix ("" is the whole keyspace; admin there covers cluster and
    /// auth calls). Replaces what the role granted on that exact prefix.
    Grant {
        /// The role.
        role: String,
        /// The key prefix.
        prefix: String,
        /// What it allows: read, write (implies read) or admin (implies write).
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(["read", "write", "admin"]))]
        access: String,
        /// Cluster and output.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Take away what a role grants on exactly this prefix.
    Revoke {
        /// The role.
        role: String,
        /// The key prefix.
        prefix: String,
        /// Cluster and output.
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Only the connection and output flags.
#[derive(clap::Args, Debug)]
struct Only {
    /// Cluster and output.
    #[command(flatten)]
    client: ClientArgs,
}

/// A user or role name.
#[derive(clap::Args, Debug)]
struct Named {
    /// The name.
    name: String,
    /// Cluster and output.
    #[command(flatten)]
    client: ClientArgs,
}

/// A user and a role.
#[derive(clap::Args, Debug)]
struct UserRole {
    /// The user.
    user: String,
    /// The role.
    role: String,
    /// Cluster and output.
    #[command(flatten)]
    client: ClientArgs,
}

/// Prints a change's index: the number alone, or `{"index": N}`.
fn print_index(index: u64, as_json: bool) {
    if as_json {
        println!("{}", json!({ "index": index }));
    } else {
        println!("{index}");
    }
}

/// Prints a new token: alone on stdout (a note on stderr), or as JSON.
fn print_token(token: &NewToken, as_json: bool, what: &str) {
    if as_json {
        println!("{}", json!({ "user": token.user, "token": token.token, "index": token.index }));
    } else {
        println!("{}", token.token);
        eprintln!("{what} {:?}: its token is shown only this once; keep it secret", token.user);
    }
}

/// `tally auth`.
pub async fn auth(args: AuthArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AuthCommand::Enable(Only { client: args }) => {
            let index = args.client()?.auth_enable().await?;
            print_index(index, args.json);
        }
        AuthCommand::Disable(Only { client: args }) => {
            let index = args.client()?.auth_disable().await?;
            print_index(index, args.json);
        }
        AuthCommand::Status(Only { client: args }) => {
            let status = args.client()?.auth_status().await?;
            if args.json {
                println!("{}", json!({ "enabled": status.enabled, "user": status.user, "roles": status.roles }));
            } else {
                let state = if status.enabled { "enabled" } else { "disabled" };
                match (&status.user, &status.roles) {
                    (Some(user), Some(roles)) => {
                        println!("auth {state}; token of user {user} (roles: {})", roles.join(", "))
                    }
                    _ => println!("auth {state}; no valid token given (TALLY_TOKEN)"),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tally user`.
pub async fn user(args: UserArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        UserCommand::Add { name, roles, client: args } => {
            let token = args.client()?.user_add(&name, &roles).await?;
            print_token(&token, args.json, "created user");
        }
        UserCommand::Delete(Named { name, client: args }) => {
            print_index(args.client()?.user_delete(&name).await?, args.json);
        }
        UserCommand::List(Only { client: args }) => {
            let users = args.client()?.users().await?;
            if args.json {
                let users: Vec<_> = users.iter().map(|u| json!({ "name": u.name, "roles": u.roles })).collect();
                println!("{}", json!({ "users": users }));
            } else {
                for user in users {
                    println!("{}\t{}", user.name, user.roles.join(","));
                }
            }
        }
        UserCommand::Rotate(Named { name, client: args }) => {
            let token = args.client()?.user_rotate_token(&name).await?;
            print_token(&token, args.json, "new token for user");
        }
        UserCommand::Grant(UserRole { user, role, client: args }) => {
            print_index(args.client()?.user_grant_role(&user, &role).await?, args.json);
        }
        UserCommand::Revoke(UserRole { user, role, client: args }) => {
            print_index(args.client()?.user_revoke_role(&user, &role).await?, args.json);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tally role`.
pub async fn role(args: RoleArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RoleCommand::Add(Named { name, client: args }) => print_index(args.client()?.role_add(&name).await?, args.json),
        RoleCommand::Delete(Named { name, client: args }) => {
            print_index(args.client()?.role_delete(&name).await?, args.json);
        }
        RoleCommand::List(Only { client: args }) => {
            let roles = args.client()?.roles().await?;
            if args.json {
                let roles: Vec<_> = roles.iter().map(role_json).collect();
                println!("{}", json!({ "roles": roles }));
            } else {
                print!("{}", role_lines(&roles));
            }
        }
        RoleCommand::Grant { role, prefix, access, client: args } => {
            let access = Access::from_name(&access).unwrap_or_else(|| unreachable!("clap admitted access {access}"));
            print_index(args.client()?.role_grant(&role, prefix.as_bytes(), access).await?, args.json);
        }
        RoleCommand::Revoke { role, prefix, client: args } => {
            print_index(args.client()?.role_revoke(&role, prefix.as_bytes()).await?, args.json);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A role as JSON, shaped like the HTTP API's.
fn role_json(role: &tally_client::RoleInfo) -> serde_json::Value {
    let permissions: Vec<_> = role
        .permissions
        .iter()
        .map(|permission| {
            let mut object = serde_json::Map::new();
            tally_client::insert_bytes(&mut object, "prefix", &permission.prefix);
            object.insert("access".into(), json!(permission.access.name()));
            serde_json::Value::Object(object)
        })
        .collect();
    json!({ "name": role.name, "permissions": permissions })
}

/// One `ROLE<TAB>ACCESS<TAB>"PREFIX"` line per permission (a role granting nothing: its name alone).
fn role_lines(roles: &[tally_client::RoleInfo]) -> String {
    let mut lines = String::new();
    for role in roles {
        if role.permissions.is_empty() {
            lines.push_str(&format!("{}\n", role.name));
        }
        for permission in &role.permissions {
            let prefix = output::display_bytes(&permission.prefix);
            lines.push_str(&format!("{}\t{}\t\"{prefix}\"\n", role.name, permission.access));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use tally_client::{Permission, RoleInfo};

    use super::*;

    /// The three commands as `main.rs` registers them.
    #[derive(Parser, Debug)]
    enum Cli {
        /// `tally auth`.
        Auth(AuthArgs),
        /// `tally user`.
        User(UserArgs),
        /// `tally role`.
        Role(RoleArgs),
    }

    #[test]
    fn the_command_lines_parse() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let Ok(Cli::User(UserArgs { command: UserCommand::Add { name, roles, .. } })) =
            Cli::try_parse_from(["tally", "user", "add", "alice", "--role", "app", "--role", "ops"])
        else {
            panic!("user add did not parse");
        };
        assert_eq!((name.as_str(), roles), ("alice", vec!["app".to_string(), "ops".to_string()]));
        let parsed = Cli::try_parse_from(["tally", "role", "grant", "root", "", "admin", "--json"]).expect("parses");
        let Cli::Role(RoleArgs { command: RoleCommand::Grant { prefix, access, client, .. } }) = parsed else {
            panic!("role grant parsed as {parsed:?}");
        };
        assert_eq!((prefix.as_str(), access.as_str(), client.json), ("", "admin", true));
        assert!(Cli::try_parse_from(["tally", "role", "grant", "r", "p", "root"]).is_err(), "unknown access");
        assert!(Cli::try_parse_from(["tally", "auth", "status"]).is_ok());
    }

    #[test]
    fn roles_list_one_line_per_permission() {
        let roles = [
            RoleInfo {
                name: "app".into(),
                permissions: vec![
                    Permission { prefix: b"app/".to_vec(), access: Access::Write },
                    Permission { prefix: vec![0xff], access: Access::Read },
                ],
            },
            RoleInfo { name: "empty".into(), permissions: Vec::new() },
            RoleInfo {
                name: "root".into(),
                permissions: vec![Permission { prefix: Vec::new(), access: Access::Admin }],
            },
        ];
        assert_eq!(role_lines(&roles), "app\twrite\t\"app/\"\napp\tread\t\"\\xff\"\nempty\nroot\tadmin\t\"\"\n");
        assert_eq!(role_json(&roles[0])["permissions"][1], json!({ "prefix_b64": "/w==", "access": "read" }));
    }
}
