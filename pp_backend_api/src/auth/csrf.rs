//! Cross-site writes refused: a page of another site can make a browser send a request, with the
//! browser's cookies, to any address. The session cookie is `SameSite=Strict`, so a browser
//! sends it only from pp's own pages; on top of that, every request that changes something is
//! refused when the browser says it comes from another site (`Sec-Fetch-Site`), or, from a
//! browser too old to say, when its `Origin` is not this API. Clients that are no browser send
//! neither header and are let through: they carry no one's cookies.

use actix_web::http::Method;
use actix_web::http::header::{self, HeaderMap, HeaderName};

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Whether `method` only reads (RFC 9110's safe methods): such a request changes nothing.
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether a request with `method` and `headers` may change something: a safe method always; an
/// unsafe one unless a browser says it comes from another site. `host` is where the request was
/// sent (its `Host`), to compare an `Origin` with.
pub fn same_origin(method: &Method, headers: &HeaderMap, host: &str) -> Result<(), String> {
    if is_safe(method) {
        return Ok(());
    }
    if let Some(site) = headers.get(SEC_FETCH_SITE) {
        // `none`: the person did it (typed, bookmarked), no page made the browser do it.
        return match site.to_str() {
            Ok("same-origin" | "none") => Ok(()),
            Ok(other) => Err(format!(
                "a {other} request may not change anything here (Sec-Fetch-Site)"
            )),
            Err(_) => Err("Sec-Fetch-Site is not text".to_owned()),
        };
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("null");
    let origin_host = origin
        .split_once("://")
        .map_or("", |(_, rest)| rest.trim_end_matches('/'));
    if !origin_host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(format!(
            "a request from {origin} may not change anything on {host} (Origin)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn check(method: Method, pairs: &[(&'static str, &'static str)]) -> Result<(), String> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        same_origin(&method, &headers, "pp.example:3000")
    }

    #[test]
    fn a_browser_from_another_site_may_not_post_and_anything_else_may() {
        assert!(check(Method::POST, &[("sec-fetch-site", "cross-site")]).is_err());
        assert!(check(Method::POST, &[("sec-fetch-site", "same-site")]).is_err());
        assert!(check(Method::POST, &[("sec-fetch-site", "same-origin")]).is_ok());
        assert!(check(Method::POST, &[("sec-fetch-site", "none")]).is_ok());
        assert!(check(Method::GET, &[("sec-fetch-site", "cross-site")]).is_ok());
        assert!(check(Method::POST, &[]).is_ok(), "no browser, no cookies");
    }

    #[test]
    fn without_fetch_metadata_the_origin_must_be_this_api() {
        assert!(check(Method::POST, &[("origin", "http://pp.example:3000")]).is_ok());
        assert!(check(Method::POST, &[("origin", "https://PP.example:3000")]).is_ok());
        assert!(check(Method::POST, &[("origin", "https://evil.example")]).is_err());
        assert!(check(Method::POST, &[("origin", "null")]).is_err());
        assert!(check(Method::POST, &[("origin", "http://pp.example:3000.evil")]).is_err());
    }
}
