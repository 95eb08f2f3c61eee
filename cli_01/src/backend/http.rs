//! Over the API, with reqwest: each question is one request, bounded by `--timeout`.
//!
//! reqwest is async; a current-thread tokio runtime, built once, drives each request to its end,
//! so the rest of the CLI stays plain synchronous code like the database backend. An answer's
//! status decides its fate: 2xx is parsed as the route documents it, 404 is [`Error::NotFound`]
//! with the API's own message, 503 (the API's database is down) counts as unreachable, anything
//! else is reported with the API's message. The base URL is shown redacted in every error.

use std::time::Duration;

use pp_lib::auth::Secret;
use pp_lib::contract::search::SearchQuery;
use pp_lib::contract::{CreateWork, DemandAccepted, DemandProgress, ErrorBody};
use pp_lib::db::stats::Stats;
use pp_lib::error::redact_secrets;
use pp_lib::event::Event;
use pp_lib::work::Work;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;

use crate::backend::Backend;
use crate::error::Error;

/// A client of the API at one base URL.
pub struct HttpBackend {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    /// `http://host:port[/path]`, without a trailing slash (the command line checked it).
    base_url: String,
    timeout: Duration,
}

impl HttpBackend {
    /// A client for the API at `base_url` whose every request ends within `timeout` and carries
    /// `api_key`, when given, as `Authorization: Bearer`.
    pub fn new(base_url: &str, api_key: Option<&Secret>, timeout: Duration) -> Result<Self, Error> {
        let mut headers = HeaderMap::new();
        if let Some(key) = api_key {
            let token = key.expose();
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .ok()
                .filter(|_| !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()))
                .ok_or(Error::BadApiKey)?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| Error::Http(format!("cannot start the HTTP runtime: {error}")))?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("cli_01/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|error| Error::Http(describe(&error)))?;
        Ok(HttpBackend {
            runtime,
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            timeout,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends `request` and reads the answer as `T` when its status is 2xx.
    fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, Error> {
        let (status, body) = self.exchange(request)?;
        parse(status, &body)
    }

    /// Sends `request`: the status and body of a 2xx answer, else the error it stands for.
    fn exchange(&self, request: RequestBuilder) -> Result<(StatusCode, Vec<u8>), Error> {
        self.runtime.block_on(async {
            let response = request.send().await.map_err(|error| self.failed(&error))?;
            let status = response.status();
            let body = response
                .bytes()
                .await
                .map_err(|error| self.failed(&error))?;
            if status.is_success() {
                return Ok((status, body.to_vec()));
            }
            Err(self.refused(status, &body))
        })
    }

    /// An exchange that produced no answer.
    fn failed(&self, error: &reqwest::Error) -> Error {
        let url = redact_secrets(&self.base_url);
        if error.is_timeout() {
            Error::ApiUnreachable {
                url,
                reason: format!("no answer within {:?}", self.timeout),
            }
        } else if error.is_connect() || error.is_request() || error.is_body() {
            Error::ApiUnreachable {
                url,
                reason: describe(error),
            }
        } else {
            Error::Http(describe(error))
        }
    }

    /// An answer with a status other than 2xx.
    fn refused(&self, status: StatusCode, body: &[u8]) -> Error {
        let message = serde_json::from_slice::<ErrorBody>(body).map_or_else(
            |_| {
                status
                    .canonical_reason()
                    .unwrap_or("no reason given")
                    .to_owned()
            },
            |body| body.message,
        );
        match status {
            StatusCode::NOT_FOUND => Error::NotFound(message),
            StatusCode::UNAUTHORIZED => Error::Api {
                status: status.as_u16(),
                message: format!("{message} (cli_01 sends the key of --api-key or PP_API_KEY)"),
            },
            StatusCode::SERVICE_UNAVAILABLE => Error::ApiUnavailable {
                url: redact_secrets(&self.base_url),
                message,
            },
            _ => Error::Api {
                status: status.as_u16(),
                message,
            },
        }
    }
}

/// What went wrong, in the words of the deepest cause (`Connection refused (os error 111)`,
/// `failed to lookup address information: …`): the layers above it (reqwest's "error sending
/// request", hyper's "client error (Connect)") add nothing a user can act on. The URL is left
/// out: the caller names it, redacted.
fn describe(error: &reqwest::Error) -> String {
    let mut deepest: &dyn std::error::Error = error;
    while let Some(source) = deepest.source() {
        deepest = source;
    }
    let text = deepest.to_string();
    let text = match text.split_once(" for url (") {
        Some((before, _)) => before,
        None => &text,
    };
    redact_secrets(text)
}

/// A 2xx answer's body, as the route documents it.
fn parse<T: DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|error| {
        Error::BadAnswer(format!("{status} with a body that does not parse: {error}"))
    })
}

/// `{"add_up_to": n}`, or no body for a random one.
fn with_add_up_to(request: RequestBuilder, add_up_to: Option<i32>) -> RequestBuilder {
    match CreateWork::body(add_up_to) {
        Some(body) => request.json(&body),
        None => request,
    }
}

impl Backend for HttpBackend {
    fn get_work(&mut self, id: i64) -> Result<Work, Error> {
        self.send(self.client.get(self.url(&format!("/work/{id}"))))
    }

    fn search_works(&mut self, query: &SearchQuery) -> Result<Vec<Work>, Error> {
        let request = self
            .client
            .get(self.url("/work/search"))
            .query(&query.to_params());
        self.send(request)
    }

    fn list_events(&mut self, id: i64) -> Result<Vec<Event>, Error> {
        self.send(self.client.get(self.url(&format!("/work/{id}/events"))))
    }

    fn read_stats(&mut self) -> Result<Stats, Error> {
        self.send(self.client.get(self.url("/stats")))
    }

    fn create_work(&mut self, add_up_to: Option<i32>) -> Result<Work, Error> {
        let request = with_add_up_to(self.client.post(self.url("/work")), add_up_to);
        self.send(request)
    }

    fn create_demand(&mut self, add_up_to: Option<i32>) -> Result<DemandAccepted, Error> {
        let request = with_add_up_to(self.client.post(self.url("/work/demand")), add_up_to);
        self.send(request)
    }

    fn follow_demand(
        &mut self,
        message_id: uuid::Uuid,
        wait: Option<Duration>,
    ) -> Result<DemandProgress, Error> {
        let mut request = self
            .client
            .get(self.url(&format!("/work/demand/{message_id}")));
        if let Some(wait) = wait {
            // The API answers within the wait: the timeout is for what comes after it.
            request = request
                .header("prefer", format!("wait={}", wait.as_secs()))
                .timeout(wait + self.timeout);
        }
        match self.exchange(request)? {
            // 200 is the work; 202 says where the demand is.
            (StatusCode::OK, body) => Ok(DemandProgress::Recorded(parse(StatusCode::OK, &body)?)),
            (status, body) => Ok(DemandProgress::Waiting(parse(status, &body)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> HttpBackend {
        HttpBackend::new("http://u:hunter2@127.0.0.1:9", None, Duration::from_secs(1))
            .expect("a client builds")
    }

    #[test]
    fn answers_map_to_errors_by_status() {
        let backend = backend();
        let body = br#"{"http_code":404,"message":"no work with id 7"}"#;

        let cases: [(StatusCode, &[u8], &str, u8); 5] = [
            (StatusCode::NOT_FOUND, body, "no work with id 7", 4),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                br#"{"http_code":503,"message":"database unavailable, retry later"}"#,
                "the API at http://u:***@127.0.0.1:9 cannot serve now: database unavailable, retry later",
                3,
            ),
            (
                StatusCode::BAD_REQUEST,
                br#"{"http_code":400,"message":"since: bad"}"#,
                "the API answered 400: since: bad",
                1,
            ),
            (
                StatusCode::BAD_GATEWAY,
                b"<html>proxy</html>",
                "the API answered 502: Bad Gateway",
                1,
            ),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                br#"{"http_code":500,"message":"internal error"}"#,
                "the API answered 500: internal error",
                1,
            ),
        ];
        for (status, body, message, code) in cases {
            let error = backend.refused(status, body);
            assert_eq!(error.to_string(), message, "{status}");
            assert_eq!(error.exit_code(), code, "{status}");
        }
    }
}
