//! What a request presents to say who it is, read from its headers: a pure step, tested on
//! headers alone.
//!
//! In order: `Authorization: Bearer <token>` (RFC 6750), `X-Api-Key: <token>` (the same token,
//! for clients that cannot set `Authorization`), `X-PP-Admin-Token` (the break-glass operator),
//! the dashboard's session cookie. An `Authorization` of another scheme (a proxy's own basic
//! authentication in front of the API) is not ours and is left alone.

use actix_web::http::header::{self, HeaderMap, HeaderName};

use crate::auth::admin::ADMIN_TOKEN_HEADER;

/// The header that carries an API key's token for clients that cannot set `Authorization`.
pub const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

/// The dashboard's session cookie.
pub const SESSION_COOKIE: &str = "pp_session";

/// Longest credential read: a token is 37 bytes, a session 64; anything far longer is garbage.
const MAX_CREDENTIAL_LEN: usize = 512;

/// What a request presents.
#[derive(Clone, PartialEq, Eq)]
pub enum Presented {
    Nothing,
    /// An API key's token (as sent: it may be malformed).
    ApiKey(String),
    /// `X-PP-Admin-Token`'s value.
    AdminToken(Vec<u8>),
    /// The session cookie's value.
    Session(String),
    /// Something that cannot be a credential (not text, too long, an empty bearer).
    Unreadable(&'static str),
}

/// Names the kind, never the secret.
impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presented::Nothing => f.write_str("Nothing"),
            Presented::ApiKey(_) => f.write_str("ApiKey(***)"),
            Presented::AdminToken(_) => f.write_str("AdminToken(***)"),
            Presented::Session(_) => f.write_str("Session(***)"),
            Presented::Unreadable(reason) => write!(f, "Unreadable({reason:?})"),
        }
    }
}

/// Whether the request shows nothing that could be a credential (no `Authorization`,
/// `X-Api-Key`, admin token, or cookie at all): [`presented`] would find [`Presented::Nothing`].
/// One pass over the names (a request carries a few headers; four hashed lookups cost more).
pub fn presents_nothing(headers: &HeaderMap) -> bool {
    !headers.keys().any(|name| {
        name == header::AUTHORIZATION
            || name == header::COOKIE
            || name == API_KEY_HEADER
            || name == ADMIN_TOKEN_HEADER
    })
}

/// What `headers` (and the session cookie's value, `session`) present, by the order above.
pub fn presented(headers: &HeaderMap, session: Option<&str>) -> Presented {
    if let Some(authorization) = headers.get(header::AUTHORIZATION) {
        let Ok(text) = authorization.to_str() else {
            return Presented::Unreadable("the Authorization header is not text");
        };
        if let Some((scheme, token)) = text.split_once(' ')
            && scheme.eq_ignore_ascii_case("bearer")
        {
            return token_of(token.trim());
        }
    }
    if let Some(key) = headers.get(API_KEY_HEADER) {
        return match key.to_str() {
            Ok(text) => token_of(text.trim()),
            Err(_) => Presented::Unreadable("the X-Api-Key header is not text"),
        };
    }
    if let Some(token) = headers.get(ADMIN_TOKEN_HEADER) {
        return Presented::AdminToken(token.as_bytes().to_vec());
    }
    match session {
        Some(value) if !value.is_empty() && value.len() <= MAX_CREDENTIAL_LEN => {
            Presented::Session(value.to_owned())
        }
        Some(_) => Presented::Unreadable("the session cookie is malformed"),
        None => Presented::Nothing,
    }
}

fn token_of(text: &str) -> Presented {
    if text.is_empty() {
        Presented::Unreadable("the token is empty")
    } else if text.len() > MAX_CREDENTIAL_LEN {
        Presented::Unreadable("the token is too long")
    } else {
        Presented::ApiKey(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("a name"),
                HeaderValue::from_bytes(value).expect("a value"),
            );
        }
        map
    }

    #[test]
    fn bearer_then_api_key_then_admin_token_then_the_session() {
        let all = headers(&[
            ("authorization", b"Bearer ppk_a"),
            ("x-api-key", b"ppk_b"),
            ("x-pp-admin-token", b"admin"),
        ]);
        assert_eq!(
            presented(&all, Some("s")),
            Presented::ApiKey("ppk_a".into())
        );
        let key = headers(&[("x-api-key", b" ppk_b "), ("x-pp-admin-token", b"admin")]);
        assert_eq!(
            presented(&key, Some("s")),
            Presented::ApiKey("ppk_b".into())
        );
        let admin = headers(&[("x-pp-admin-token", b"admin")]);
        assert_eq!(
            presented(&admin, Some("s")),
            Presented::AdminToken(b"admin".to_vec())
        );
        assert_eq!(
            presented(&HeaderMap::new(), Some("s")),
            Presented::Session("s".into())
        );
        assert_eq!(presented(&HeaderMap::new(), None), Presented::Nothing);
        assert!(presents_nothing(&HeaderMap::new()));
        for shown in [&all, &key, &admin, &headers(&[("cookie", b"other=1")])] {
            assert!(!presents_nothing(shown), "{shown:?}");
        }
    }

    #[test]
    fn another_scheme_is_not_ours_and_garbage_is_unreadable() {
        let basic = headers(&[("authorization", b"Basic dXNlcjpwdw==")]);
        assert_eq!(presented(&basic, None), Presented::Nothing);
        let lowercase = headers(&[("authorization", b"bearer ppk_x")]);
        assert_eq!(
            presented(&lowercase, None),
            Presented::ApiKey("ppk_x".into())
        );
        for bad in [&b"Bearer "[..], b"Bearer \xff\xfe", b"Bearer"] {
            let found = presented(&headers(&[("authorization", bad)]), None);
            assert!(
                matches!(found, Presented::Unreadable(_) | Presented::Nothing),
                "{bad:?}: {found:?}"
            );
        }
        let long = "x".repeat(600);
        assert!(matches!(
            presented(&headers(&[("x-api-key", long.as_bytes())]), None),
            Presented::Unreadable(_)
        ));
        assert!(matches!(
            presented(&HeaderMap::new(), Some("")),
            Presented::Unreadable(_)
        ));
    }
}
