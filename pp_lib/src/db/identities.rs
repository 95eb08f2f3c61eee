//! The tables of who may do what: `api_keys`, `accounts` and their `sessions` (see
//! [`crate::auth`] for the tokens and passwords they hold the hashes of).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::auth::{Role, Scope, Scopes, Secret, new_api_token};
use crate::schema::{accounts, api_keys, sessions};

/// An API key as it is listed: never its token, nor the token's hash.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_on: DateTime<Utc>,
    pub expires_on: Option<DateTime<Utc>>,
    pub revoked_on: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Its scopes (unknown names, which the table refuses, are left out).
    pub fn scopes(&self) -> Scopes {
        let scopes: Vec<Scope> = self
            .scopes
            .iter()
            .filter_map(|name| name.parse().ok())
            .collect();
        Scopes::of(&scopes)
    }

    /// Whether it authenticates at `now`: neither revoked nor expired.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_on.is_none() && self.expires_on.is_none_or(|expires| expires > now)
    }
}

/// A key to insert: its token's hash, never the token.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = api_keys)]
pub struct NewApiKey<'a> {
    pub name: &'a str,
    pub token_hash: &'a [u8],
    pub scopes: Vec<String>,
    pub expires_on: Option<DateTime<Utc>>,
}

/// Makes a key named `name` with `scopes`, live until `expires_on` (or revoked): a new token,
/// returned once, here, and stored as its hash only.
pub fn create_key(
    conn: &mut PgConnection,
    name: &str,
    scopes: Scopes,
    expires_on: Option<DateTime<Utc>>,
) -> QueryResult<(ApiKey, Secret)> {
    let token = new_api_token();
    let hash = token.hash();
    let key = insert_key(
        conn,
        &NewApiKey {
            name,
            token_hash: &hash,
            scopes: scopes.names(),
            expires_on,
        },
    )?;
    Ok((key, token))
}

pub fn insert_key(conn: &mut PgConnection, key: &NewApiKey<'_>) -> QueryResult<ApiKey> {
    diesel::insert_into(api_keys::table)
        .values(key)
        .returning(ApiKey::as_returning())
        .get_result(conn)
}

/// Every key, oldest first.
pub fn list_keys(conn: &mut PgConnection) -> QueryResult<Vec<ApiKey>> {
    api_keys::table
        .select(ApiKey::as_select())
        .order(api_keys::id)
        .load(conn)
}

/// Revokes the key named `name` (it keeps its first revocation time); the key, or `None` when
/// no key has that name.
pub fn revoke_key(conn: &mut PgConnection, name: &str) -> QueryResult<Option<ApiKey>> {
    diesel::update(api_keys::table.filter(api_keys::name.eq(name)))
        .set(api_keys::revoked_on.eq(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
        >("coalesce(revoked_on, now())")))
        .returning(ApiKey::as_returning())
        .get_result(conn)
        .optional()
}

/// The key whose token hashes to `token_hash`, live or not.
pub fn find_key_by_hash(conn: &mut PgConnection, token_hash: &[u8]) -> QueryResult<Option<ApiKey>> {
    api_keys::table
        .filter(api_keys::token_hash.eq(token_hash))
        .select(ApiKey::as_select())
        .first(conn)
        .optional()
}

/// Every key with its token's hash: what the API keeps in memory to authenticate without a
/// query per request.
pub fn keys_with_hashes(conn: &mut PgConnection) -> QueryResult<Vec<(Vec<u8>, ApiKey)>> {
    api_keys::table
        .select((api_keys::token_hash, ApiKey::as_select()))
        .load(conn)
}

/// Records that each key of `used` (its id) was used at the time given, keeping the latest:
/// one statement for every key the API saw since it last wrote.
pub fn record_keys_used(
    conn: &mut PgConnection,
    used: &[(i64, DateTime<Utc>)],
) -> QueryResult<usize> {
    if used.is_empty() {
        return Ok(0);
    }
    let (ids, times): (Vec<i64>, Vec<DateTime<Utc>>) = used.iter().copied().unzip();
    diesel::sql_query(
        "update api_keys set last_used_at = greatest(last_used_at, used.at) \
         from unnest($1::bigint[], $2::timestamptz[]) as used(id, at) \
         where api_keys.id = used.id",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(ids)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Timestamptz>, _>(times)
    .execute(conn)
}

/// A dashboard account as it is listed: never its password's hash.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize)]
#[diesel(table_name = accounts, check_for_backend(diesel::pg::Pg))]
pub struct Account {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub created_on: DateTime<Utc>,
    pub password_changed_on: DateTime<Utc>,
}

impl Account {
    /// Its role; one the table refuses reads as a viewer, the least.
    pub fn role(&self) -> Role {
        self.role.parse().unwrap_or(Role::Viewer)
    }
}

/// Adds an account; a taken name is a unique violation.
pub fn add_account(
    conn: &mut PgConnection,
    name: &str,
    role: Role,
    password_hash: &str,
) -> QueryResult<Account> {
    diesel::insert_into(accounts::table)
        .values((
            accounts::name.eq(name),
            accounts::role.eq(role.as_str()),
            accounts::password_hash.eq(password_hash),
        ))
        .returning(Account::as_returning())
        .get_result(conn)
}

/// Every account, oldest first.
pub fn list_accounts(conn: &mut PgConnection) -> QueryResult<Vec<Account>> {
    accounts::table
        .select(Account::as_select())
        .order(accounts::id)
        .load(conn)
}

/// Removes the account named `name`, and so its sessions; whether there was one.
pub fn remove_account(conn: &mut PgConnection, name: &str) -> QueryResult<bool> {
    diesel::delete(accounts::table.filter(accounts::name.eq(name)))
        .execute(conn)
        .map(|removed| removed > 0)
}

/// Sets the account's password hash and ends its sessions (whoever knew the old password is
/// logged out); whether there was such an account.
pub fn set_password(conn: &mut PgConnection, name: &str, password_hash: &str) -> QueryResult<bool> {
    conn.transaction(|conn| {
        let account: Option<i64> = diesel::update(accounts::table.filter(accounts::name.eq(name)))
            .set((
                accounts::password_hash.eq(password_hash),
                accounts::password_changed_on.eq(diesel::dsl::now),
            ))
            .returning(accounts::id)
            .get_result(conn)
            .optional()?;
        let Some(id) = account else {
            return Ok(false);
        };
        diesel::delete(sessions::table.filter(sessions::account_id.eq(id))).execute(conn)?;
        Ok(true)
    })
}

/// The account named `name` and its password's hash, for a login.
pub fn find_account_for_login(
    conn: &mut PgConnection,
    name: &str,
) -> QueryResult<Option<(Account, String)>> {
    accounts::table
        .filter(accounts::name.eq(name))
        .select((Account::as_select(), accounts::password_hash))
        .first(conn)
        .optional()
}

/// Opens a session for `account_id` until `expires_on`, under its token's hash.
pub fn create_session(
    conn: &mut PgConnection,
    token_hash: &[u8],
    account_id: i64,
    expires_on: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::insert_into(sessions::table)
        .values((
            sessions::token_hash.eq(token_hash),
            sessions::account_id.eq(account_id),
            sessions::expires_on.eq(expires_on),
        ))
        .execute(conn)
        .map(drop)
}

/// The account of the live session whose token hashes to `token_hash`.
pub fn find_session(conn: &mut PgConnection, token_hash: &[u8]) -> QueryResult<Option<Account>> {
    sessions::table
        .inner_join(accounts::table)
        .filter(sessions::token_hash.eq(token_hash))
        .filter(sessions::expires_on.gt(diesel::dsl::now))
        .select(Account::as_select())
        .first(conn)
        .optional()
}

/// Ends the session (logout); whether there was one.
pub fn delete_session(conn: &mut PgConnection, token_hash: &[u8]) -> QueryResult<bool> {
    diesel::delete(sessions::table.filter(sessions::token_hash.eq(token_hash)))
        .execute(conn)
        .map(|deleted| deleted > 0)
}

/// Deletes up to `batch` sessions that expired; how many.
pub fn purge_expired_sessions(conn: &mut PgConnection, batch: i64) -> QueryResult<usize> {
    diesel::sql_query(
        "delete from sessions where token_hash in \
         (select token_hash from sessions where expires_on <= now() limit $1)",
    )
    .bind::<diesel::sql_types::BigInt, _>(batch)
    .execute(conn)
}
