//! `pp_storage keys`, `users` and `audit` run as an operator runs them: what they print, what
//! they keep (hashes, never a secret), what they refuse, and the audit trail they leave.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use pp_lib::auth::{is_api_token, token_hash, verify_password};
use pp_lib::config::SecretUrl;
use pp_lib::testkit::process::{assert_exit, assert_one_line_error, stderr, stdout};
use pp_storage::testkit::TestDatabase;

/// Runs `pp_storage args` over `url`, `input` on its stdin.
fn pp_storage(url: &SecretUrl, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pp_storage"))
        .args(args)
        .env("DATABASE_URL", url.expose())
        .env("RUST_LOG", "warn")
        .env("USER", "tester")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pp_storage runs");
    let mut stdin = child.stdin.take().expect("a stdin");
    stdin
        .write_all(input.as_bytes())
        .expect("the input is written");
    drop(stdin);
    child.wait_with_output().expect("pp_storage ends")
}

/// A migrated database of the test's own.
fn migrated() -> TestDatabase {
    // TestDatabase is migrated when made.
    TestDatabase::create()
}

#[test]
fn a_key_is_shown_once_stored_as_its_hash_and_listed_without_a_secret() {
    let db = migrated();

    let created = pp_storage(
        db.url(),
        &[
            "keys",
            "create",
            "--name",
            "ci",
            "--scopes",
            "read,write",
            "--expires",
            "90d",
        ],
        "",
    );
    assert_exit(&created, 0);
    let output = stdout(&created);
    let token = output.lines().last().expect("a last line").to_owned();
    assert!(is_api_token(&token), "{output}");
    assert!(output.contains("read,write"), "{output}");

    let mut conn = db.connect();
    let stored = db.count(&format!(
        "select count(*) as n from api_keys where name = 'ci' and token_hash = '\\x{}' \
         and expires_on between now() + interval '89 days' and now() + interval '91 days'",
        hex(&token_hash(&token))
    ));
    assert_eq!(stored, 1, "the hash is kept, with the expiry");
    let anywhere = pp_storage_testkit_text(&mut conn);
    assert!(!anywhere.contains(&token), "the token is stored nowhere");

    let listed = pp_storage(db.url(), &["keys", "list"], "");
    assert_exit(&listed, 0);
    let listing = stdout(&listed);
    assert!(
        listing.contains("ci") && listing.contains("live"),
        "{listing}"
    );
    assert!(!listing.contains(&token[4..12]), "{listing}");

    let revoked = pp_storage(db.url(), &["keys", "revoke", "ci"], "");
    assert_exit(&revoked, 0);
    assert!(stdout(&pp_storage(db.url(), &["keys", "list"], "")).contains("revoked"));
    let audit = stdout(&pp_storage(db.url(), &["audit"], ""));
    assert!(audit.contains("pp_storage (tester)"), "{audit}");
    assert!(
        audit.contains("key.create") && audit.contains("key.revoke"),
        "{audit}"
    );
    assert!(audit.contains("command line"), "{audit}");
}

/// Every text column of the identity tables, as one string.
fn pp_storage_testkit_text(conn: &mut diesel::PgConnection) -> String {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Text {
        #[diesel(sql_type = diesel::sql_types::Text)]
        text: String,
    }
    let rows: Vec<Text> = diesel::sql_query(
        "select coalesce(string_agg(t::text, ' '), '') as text from \
         (select * from api_keys) t union all \
         select coalesce(string_agg(a::text, ' '), '') from audit_events a",
    )
    .load(conn)
    .expect("the tables read");
    rows.into_iter().map(|row| row.text).collect()
}

/// Clap's refusal of a value: exit 2, the flag named on the first line, nothing run.
fn assert_refused_by_clap(output: &Output, flag: &str) {
    assert_exit(output, 2);
    let error = stderr(output);
    let first = error.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: invalid value"), "{error}");
    assert!(first.contains(flag), "{flag} in {error}");
    assert_eq!(stdout(output), "");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn keys_refuse_what_makes_no_key_in_one_line() {
    let db = migrated();
    let first = pp_storage(
        db.url(),
        &["keys", "create", "--name", "ci", "--scopes", "read"],
        "",
    );
    assert_exit(&first, 0);

    let refused = pp_storage(
        db.url(),
        &["keys", "create", "--name", "ci", "--scopes", "read"],
        "",
    );
    assert_exit(&refused, 1);
    assert_one_line_error(&refused, "pp_storage", "named ci already");
    let refused = pp_storage(db.url(), &["keys", "revoke", "nobody"], "");
    assert_exit(&refused, 1);
    assert_one_line_error(&refused, "pp_storage", "no key is named nobody");

    let cases: [(&[&str], &str); 5] = [
        (
            &["keys", "create", "--name", "a b", "--scopes", "read"],
            "--name",
        ),
        (
            &["keys", "create", "--name", "x", "--scopes", "admin"],
            "--scopes",
        ),
        (
            &["keys", "create", "--name", "x", "--scopes", ""],
            "--scopes",
        ),
        (
            &[
                "keys",
                "create",
                "--name",
                "x",
                "--scopes",
                "read",
                "--expires",
                "0s",
            ],
            "--expires",
        ),
        (
            &[
                "keys",
                "create",
                "--name",
                "x",
                "--scopes",
                "read",
                "--expires",
                "99999999999d",
            ],
            "--expires",
        ),
    ];
    for (args, flag) in cases {
        assert_refused_by_clap(&pp_storage(db.url(), args, ""), flag);
    }
    assert_eq!(
        db.count("select count(*) as n from api_keys"),
        1,
        "nothing else made"
    );
}

#[test]
fn accounts_keep_an_argon2id_hash_and_every_change_is_audited() {
    let db = migrated();
    let password = "a long passphrase for ada";

    let added = pp_storage(
        db.url(),
        &["users", "add", "ada", "--role", "viewer"],
        &format!("{password}\n"),
    );
    assert_exit(&added, 0);
    let mut conn = db.connect();
    let hash = account_hash(&mut conn, "ada");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(verify_password(&hash, password));
    assert!(!hash.contains(password));

    let short = pp_storage(
        db.url(),
        &["users", "add", "bob", "--role", "operator"],
        "short\n",
    );
    assert_one_line_error(&short, "pp_storage", "12 to 1024 characters");
    let again = pp_storage(
        db.url(),
        &["users", "add", "ada", "--role", "operator"],
        &format!("{password}\n"),
    );
    assert_one_line_error(&again, "pp_storage", "named ada already");
    let bad_role = pp_storage(db.url(), &["users", "add", "eve", "--role", "root"], "");
    assert_refused_by_clap(&bad_role, "--role");

    let listing = stdout(&pp_storage(db.url(), &["users", "list"], ""));
    assert!(
        listing.contains("ada") && listing.contains("viewer"),
        "{listing}"
    );
    assert!(!listing.contains("argon2"), "{listing}");

    let changed = pp_storage(
        db.url(),
        &["users", "passwd", "ada"],
        "another long passphrase\n",
    );
    assert_exit(&changed, 0);
    assert!(verify_password(
        &account_hash(&mut conn, "ada"),
        "another long passphrase"
    ));
    let removed = pp_storage(db.url(), &["users", "remove", "ada"], "");
    assert_exit(&removed, 0);
    assert_one_line_error(
        &pp_storage(db.url(), &["users", "remove", "ada"], ""),
        "pp_storage",
        "no account is named ada",
    );

    let audit = stdout(&pp_storage(db.url(), &["audit", "--limit", "10"], ""));
    for action in ["account.add", "account.password", "account.remove"] {
        assert!(audit.contains(action), "{action} in {audit}");
    }
    assert!(audit.contains("3 event(s)"), "{audit}");
    assert_refused_by_clap(
        &pp_storage(db.url(), &["audit", "--limit", "0"], ""),
        "--limit",
    );
}

fn account_hash(conn: &mut diesel::PgConnection, name: &str) -> String {
    use diesel::prelude::*;
    use pp_lib::schema::accounts;
    accounts::table
        .filter(accounts::name.eq(name))
        .select(accounts::password_hash)
        .first(conn)
        .expect("the account")
}

/// A change to a key made with `pp_storage` is announced to whoever listens (every API, which
/// reads its keys again at once), noting a key's last use is not, and a listener wakes its
/// waiter and ends once nobody waits on it any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_or_revoked_is_announced_and_a_last_use_is_not() {
    use std::sync::Arc;

    use diesel::RunQueryDsl;
    use pp_lib::db::listen::listen;
    use pp_lib::shutdown::Shutdown;
    use pp_lib::testkit::wait::PATIENCE;
    use tokio::sync::Notify;

    let db = migrated();
    let mut raw = db.connect();
    diesel::sql_query("listen pp_api_keys")
        .execute(&mut raw)
        .expect("LISTEN");
    let woken = Arc::new(Notify::new());
    let (_stop, shutdown) = Shutdown::new();
    let listener = tokio::spawn(listen(
        db.url().clone(),
        "pp_api_keys",
        woken.clone(),
        shutdown,
    ));
    tokio::time::timeout(PATIENCE, woken.notified())
        .await
        .expect("a new connection wakes the waiter");

    for name in ["idle", "ci"] {
        let made = pp_storage(
            db.url(),
            &["keys", "create", "--name", name, "--scopes", "read"],
            "",
        );
        assert_exit(&made, 0);
    }
    tokio::time::timeout(PATIENCE, woken.notified())
        .await
        .expect("a key made wakes the waiter");
    let mut noted = db.connect();
    diesel::sql_query("update api_keys set last_used_at = now() where name = 'idle'")
        .execute(&mut noted)
        .expect("a last use noted");
    assert_exit(&pp_storage(db.url(), &["keys", "revoke", "ci"], ""), 0);
    tokio::time::timeout(PATIENCE, woken.notified())
        .await
        .expect("a key revoked wakes the waiter");

    // Announcements arrive in the order their transactions committed: a last use of "idle"
    // would come before the revocation of "ci".
    let mut heard = Vec::new();
    pp_lib::testkit::eventually("the revocation's announcement", async || {
        heard.extend(
            raw.notifications_iter()
                .map(|notification| notification.expect("a notification").payload),
        );
        if heard.iter().any(|payload| payload == "UPDATE ci") {
            Ok(())
        } else {
            Err(heard.clone())
        }
    })
    .await;
    assert_eq!(heard, ["INSERT idle", "INSERT ci", "UPDATE ci"]);

    drop(woken);
    tokio::time::timeout(PATIENCE, listener)
        .await
        .expect("the listener ends once nobody waits on it")
        .expect("it does not panic");
}
