//! The page's files, compiled into the binary from `pp_backend_api/assets/dashboard/`: one HTML
//! document, one stylesheet, one script without dependencies. Nothing is fetched from elsewhere,
//! and the Content-Security-Policy says so to the browser: scripts, styles and requests go to
//! this API only, and no other site may frame the page.
//!
//! Browsers revalidate them on each load (`no-cache`) and get 304 while they are unchanged: an
//! upgraded API serves its new page at once, and an unchanged one costs a header.

use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};

pub const SCRIPT_PATH: &str = "/dashboard/app.js";
pub const STYLE_PATH: &str = "/dashboard/app.css";

const INDEX: &str = include_str!("../../assets/dashboard/index.html");
const SCRIPT: &str = include_str!("../../assets/dashboard/app.js");
const STYLE: &str = include_str!("../../assets/dashboard/app.css");

/// What the page may load and do: only from this API, never framed, no inline script.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// One embedded file and its entity tag.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: String,
}

impl Asset {
    fn new(body: &'static str, content_type: &'static str) -> Self {
        // FNV-1a of the content: it changes when the file does, which is all an ETag must do.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in body.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Asset {
            body,
            content_type,
            etag: format!("\"{hash:016x}\""),
        }
    }

    fn respond(&self, request: &HttpRequest) -> HttpResponse {
        let unchanged = request
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == self.etag));
        let mut response = if unchanged {
            HttpResponse::NotModified()
        } else {
            HttpResponse::Ok()
        };
        response
            .insert_header((header::ETAG, self.etag.as_str()))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
        if unchanged {
            return response.finish();
        }
        response.content_type(self.content_type).body(self.body)
    }
}

static INDEX_ASSET: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(INDEX, "text/html; charset=utf-8"));
static SCRIPT_ASSET: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(SCRIPT, "text/javascript; charset=utf-8"));
static STYLE_ASSET: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(STYLE, "text/css; charset=utf-8"));

/// `GET /`: the dashboard.
pub async fn index(request: HttpRequest) -> HttpResponse {
    let mut response = INDEX_ASSET.respond(&request);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

pub async fn script(request: HttpRequest) -> HttpResponse {
    SCRIPT_ASSET.respond(&request)
}

pub async fn style(request: HttpRequest) -> HttpResponse {
    STYLE_ASSET.respond(&request)
}
