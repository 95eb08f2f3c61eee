//! Identities in a test: keys and accounts made straight in the app's database (as
//! `pp_storage keys create` and `users add` make them), logins, and requests that carry them.

use chrono::{DateTime, Utc};
use pp_lib::auth::{Role, Scopes, hash_password};
use pp_lib::db::identities;
use reqwest::{RequestBuilder, Response, StatusCode};

use super::TestApp;
use crate::auth::credentials::SESSION_COOKIE;

/// A password long enough for `check_password`.
pub const TEST_PASSWORD: &str = "correct horse battery staple";

/// What a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `X-Api-Key: <token>`.
    ApiKey(String),
    /// The `pp_session` cookie.
    Session(String),
    /// `X-PP-Admin-Token`.
    AdminToken(String),
}

impl Credential {
    /// `request`, carrying this.
    pub fn on(&self, request: RequestBuilder) -> RequestBuilder {
        match self {
            Credential::None => request,
            Credential::Bearer(token) => request.bearer_auth(token),
            Credential::ApiKey(token) => request.header("x-api-key", token),
            Credential::Session(token) => {
                request.header("cookie", format!("{SESSION_COOKIE}={token}"))
            }
            Credential::AdminToken(token) => request.header("x-pp-admin-token", token),
        }
    }
}

impl TestApp {
    /// Makes a key named `name` with `scopes` (`"read,write"`), live until `expires_on`;
    /// returns its token.
    pub fn create_key_until(
        &self,
        name: &str,
        scopes: &str,
        expires_on: Option<DateTime<Utc>>,
    ) -> String {
        let scopes: Scopes = scopes.parse().expect("scopes the test means");
        let mut conn = self.db.connect();
        let (_, token) =
            identities::create_key(&mut conn, name, scopes, expires_on).expect("the key is made");
        token.expose().to_owned()
    }

    /// Makes a key named `name` with `scopes` (`"read,write"`); returns its token.
    pub fn create_key(&self, name: &str, scopes: &str) -> String {
        self.create_key_until(name, scopes, None)
    }

    /// Makes a key and revokes it in one transaction: no reading of the keys saw it live.
    pub fn revoked_key(&self, name: &str, scopes: &str) -> String {
        self.key_made_then(name, scopes, |conn| {
            identities::revoke_key(conn, name).map(drop)
        })
    }

    /// Makes a key that expired yesterday (made the day before), in one transaction.
    pub fn expired_key(&self, name: &str, scopes: &str) -> String {
        self.key_made_then(name, scopes, |conn| {
            use diesel::RunQueryDsl;
            diesel::sql_query(
                "update api_keys set created_on = now() - interval '2 days', \
                 expires_on = now() - interval '1 day' where name = $1",
            )
            .bind::<diesel::sql_types::Text, _>(name)
            .execute(conn)
            .map(drop)
        })
    }

    fn key_made_then(
        &self,
        name: &str,
        scopes: &str,
        then: impl FnOnce(&mut diesel::PgConnection) -> diesel::QueryResult<()>,
    ) -> String {
        use diesel::Connection;
        let scopes: Scopes = scopes.parse().expect("scopes the test means");
        let mut conn = self.db.connect();
        let token = conn
            .transaction(|conn| {
                let (_, token) = identities::create_key(conn, name, scopes, None)?;
                then(conn)?;
                diesel::QueryResult::Ok(token)
            })
            .expect("the key is made");
        token.expose().to_owned()
    }

    /// Revokes the key named `name`.
    pub fn revoke_key(&self, name: &str) {
        let mut conn = self.db.connect();
        let revoked = identities::revoke_key(&mut conn, name).expect("the key is revoked");
        assert!(revoked.is_some(), "no key {name}");
    }

    /// Adds an account named `name` with `role` and [`TEST_PASSWORD`].
    pub async fn add_account(&self, name: &str, role: Role) {
        let hash = tokio::task::spawn_blocking(|| hash_password(TEST_PASSWORD))
            .await
            .expect("hashing does not panic")
            .expect("a password hash");
        let mut conn = self.db.connect();
        identities::add_account(&mut conn, name, role, &hash).expect("the account is added");
    }

    /// Posts a JSON login.
    pub async fn log_in(&self, name: &str, password: &str, session: &Credential) -> Response {
        let request = self
            .client
            .post(self.url("/dashboard/api/login"))
            .json(&serde_json::json!({"name": name, "password": password}));
        session
            .on(request)
            .send()
            .await
            .expect("POST /dashboard/api/login")
    }

    /// Logs `name` in with [`TEST_PASSWORD`]; returns its session.
    pub async fn session(&self, name: &str) -> Credential {
        let response = self.log_in(name, TEST_PASSWORD, &Credential::None).await;
        assert_eq!(response.status(), StatusCode::OK, "{name} logs in");
        session_cookie(&response).expect("a session cookie")
    }

    /// `GET path` carrying `credential`.
    pub async fn get_as(&self, path: &str, credential: &Credential) -> Response {
        credential
            .on(self.client.get(self.url(path)))
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"))
    }

    /// `POST path` (an empty JSON body, or `body`) carrying `credential`.
    pub async fn post_as(
        &self,
        path: &str,
        body: Option<&str>,
        credential: &Credential,
    ) -> Response {
        let mut request = self.client.post(self.url(path));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        credential
            .on(request)
            .send()
            .await
            .unwrap_or_else(|error| panic!("POST {path}: {error}"))
    }
}

/// The session a login answer sets, if it sets one with a value.
pub fn session_cookie(response: &Response) -> Option<Credential> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|cookie| {
            let value = cookie.strip_prefix(&format!("{SESSION_COOKIE}="))?;
            let value = value.split(';').next().unwrap_or_default();
            (!value.is_empty()).then(|| Credential::Session(value.to_owned()))
        })
}
