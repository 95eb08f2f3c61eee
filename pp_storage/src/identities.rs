//! `pp_storage keys`, `users` and `audit`: who may use pp, managed from the command line, every
//! change recorded in the audit trail as done by `pp_storage (<the OS user>)`.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{Connection, PgConnection};
use pp_lib::auth::{Scopes, check_password, hash_password};
use pp_lib::db::audit_trail::{self, NewAuditEvent, Outcome};
use pp_lib::db::identities;

use crate::cli::{KeysCommand, UsersCommand};

/// Where the command line's changes come from, in the audit trail.
const SOURCE: &str = "command line";

/// `pp_storage keys …`.
pub fn keys(conn: &mut PgConnection, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            name,
            scopes,
            expires,
        } => create_key(conn, &name, scopes, expires),
        KeysCommand::List => list_keys(conn),
        KeysCommand::Revoke { name } => {
            let key = audited(conn, "key.revoke", &name, |conn| {
                let revoked = identities::revoke_key(conn, &name).context("failed to revoke")?;
                revoked.ok_or_else(|| anyhow::anyhow!("no key is named {name}"))
            })?;
            println!(
                "revoked key {name} (since {})",
                when(key.revoked_on.unwrap_or_else(Utc::now))
            );
            Ok(())
        }
    }
}

fn create_key(
    conn: &mut PgConnection,
    name: &str,
    scopes: Scopes,
    expires: Option<Duration>,
) -> anyhow::Result<()> {
    let expires_on = match expires {
        None => None,
        Some(lasts) => Some(
            chrono::Duration::from_std(lasts)
                .ok()
                .and_then(|lasts| Utc::now().checked_add_signed(lasts))
                .ok_or_else(|| anyhow::anyhow!("--expires is too far in the future"))?,
        ),
    };
    let object = format!("{name} ({scopes})");
    let (_, token) = audited(
        conn,
        "key.create",
        &object,
        |conn| match identities::create_key(conn, name, scopes, expires_on) {
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                bail!("a key is named {name} already (a revoked key keeps its name)")
            }
            created => created.context("failed to create the key"),
        },
    )?;
    let until = expires_on.map_or_else(
        || "until revoked".to_owned(),
        |at| format!("until {}", when(at)),
    );
    println!("created key {name}: {scopes}, {until}");
    println!("its token is shown once, now; keep it secret (Authorization: Bearer <token>):");
    println!("{}", token.expose());
    Ok(())
}

fn list_keys(conn: &mut PgConnection) -> anyhow::Result<()> {
    let keys = identities::list_keys(conn).context("failed to read the keys")?;
    let now = Utc::now();
    println!(
        "{:<24} {:<20} {:<17} {:<17} {:<17} STATE",
        "NAME", "SCOPES", "CREATED", "EXPIRES", "LAST USED"
    );
    for key in &keys {
        let state = if key.revoked_on.is_some() {
            "revoked"
        } else if key.is_live(now) {
            "live"
        } else {
            "expired"
        };
        println!(
            "{:<24} {:<20} {:<17} {:<17} {:<17} {state}",
            key.name,
            key.scopes(),
            when(key.created_on),
            key.expires_on.map_or_else(|| "never".to_owned(), when),
            key.last_used_at.map_or_else(|| "never".to_owned(), when),
        );
    }
    println!("{} key(s)", keys.len());
    Ok(())
}

/// `pp_storage users …`.
pub fn users(conn: &mut PgConnection, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Add { name, role } => {
            let hash = hash_password(&read_password(&name)?)?;
            audited(conn, "account.add", &format!("{name} ({role})"), |conn| {
                match identities::add_account(conn, &name, role, &hash) {
                    Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                        bail!("an account is named {name} already")
                    }
                    added => added.context("failed to add the account"),
                }
            })?;
            println!("added {role} {name}");
        }
        UsersCommand::List => {
            let accounts =
                identities::list_accounts(conn).context("failed to read the accounts")?;
            println!(
                "{:<24} {:<9} {:<17} PASSWORD CHANGED",
                "NAME", "ROLE", "ADDED"
            );
            for account in &accounts {
                println!(
                    "{:<24} {:<9} {:<17} {}",
                    account.name,
                    account.role(),
                    when(account.created_on),
                    when(account.password_changed_on)
                );
            }
            println!("{} account(s)", accounts.len());
        }
        UsersCommand::Remove { name } => {
            audited(conn, "account.remove", &name, |conn| {
                if !identities::remove_account(conn, &name).context("failed to remove")? {
                    bail!("no account is named {name}");
                }
                Ok(())
            })?;
            println!("removed {name}; its sessions are over");
        }
        UsersCommand::Passwd { name } => {
            let hash = hash_password(&read_password(&name)?)?;
            audited(conn, "account.password", &name, |conn| {
                if !identities::set_password(conn, &name, &hash).context("failed to set it")? {
                    bail!("no account is named {name}");
                }
                Ok(())
            })?;
            println!("changed the password of {name}; its sessions are over");
        }
    }
    Ok(())
}

/// `pp_storage audit`: the latest events, newest first.
pub fn show_audit(conn: &mut PgConnection, since: Duration, limit: i64) -> anyhow::Result<()> {
    // A window longer than the clock goes back is the whole trail.
    let since = chrono::Duration::from_std(since)
        .ok()
        .and_then(|since| Utc::now().checked_sub_signed(since));
    let events =
        audit_trail::latest(conn, since, limit, None).context("failed to read the trail")?;
    println!(
        "{:<17} {:<28} {:<20} {:<24} {:<16} OUTCOME",
        "WHEN", "WHO", "WHAT", "ON", "FROM"
    );
    for event in &events {
        println!(
            "{:<17} {:<28} {:<20} {:<24} {:<16} {}",
            when(event.at),
            event.actor,
            event.action,
            event.object,
            event.source,
            event.outcome
        );
    }
    println!("{} event(s)", events.len());
    Ok(())
}

/// Makes `change` and records it, by the OS user running the command, in one transaction:
/// a change is in the audit trail or not made at all.
fn audited<T>(
    conn: &mut PgConnection,
    action: &str,
    object: &str,
    change: impl FnOnce(&mut PgConnection) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let actor = format!("pp_storage ({})", os_user());
    conn.transaction(|conn| {
        let changed = change(conn)?;
        audit_trail::record(
            conn,
            &NewAuditEvent {
                actor: &actor,
                action,
                object,
                source: SOURCE,
                outcome: Outcome::Done.as_str(),
            },
        )
        .context("failed to record the change in the audit trail")?;
        Ok(changed)
    })
}

/// Who runs the command: `$USER`, `$LOGNAME`, else what `id -un` says.
fn os_user() -> String {
    ["USER", "LOGNAME"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|user| !user.is_empty()))
        .or_else(|| {
            let output = std::process::Command::new("id").arg("-un").output().ok()?;
            let user = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            (output.status.success() && !user.is_empty()).then_some(user)
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The new password for `name`: asked twice at a terminal (never shown), else one line of stdin.
fn read_password(name: &str) -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("password for {name}: "))
            .context("failed to read the password")?;
        let again = rpassword::prompt_password("the same again: ")
            .context("failed to read the password")?;
        if first != again {
            bail!("the two passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("failed to read the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    check_password(&password).map_err(|reason| anyhow::anyhow!(reason))?;
    std::io::stdout().flush().ok();
    Ok(password)
}

/// A time as the tables print it: `2026-12-02 05:40`, UTC.
fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M").to_string()
}
