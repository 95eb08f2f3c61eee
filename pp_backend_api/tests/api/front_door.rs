//! What actix's HTTP/1 decoder refuses before any handler, answered by pp: an HTTP/1.0 POST
//! without a length is served, a malformed or oversized head gets pp's JSON error with a request
//! id, and each is counted. Sent over raw TCP: no client library sends such requests.

use std::time::Duration;

use pp_backend_api::auth::AuthSetting;
use pp_backend_api::front_door::{Framing, MAX_HEAD_BYTES, MAX_HEADERS, REFUSED_PATH};
use pp_backend_api::testkit::raw::RawAnswer;
use pp_backend_api::testkit::{TestApp, TestSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the API answered to `sent` (written whole, then the write side closed).
async fn exchange(app: &TestApp, sent: &[u8]) -> RawAnswer {
    let mut stream = tokio::net::TcpStream::connect(app.host_and_port())
        .await
        .expect("the API takes connections");
    stream.write_all(sent).await.expect("the request is sent");
    stream.shutdown().await.expect("the write side is closed");
    let mut read = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut read))
        .await
        .expect("the API answers and closes within 30 s")
        .expect("the answer is read");
    RawAnswer::parse(&String::from_utf8_lossy(&read))
}

async fn framing_count(app: &TestApp, framing: Framing) -> f64 {
    app.metric(&format!(
        "pp_api_http_framing_total{{reason=\"{}\"}}",
        framing.label()
    ))
    .await
}

#[tokio::test]
async fn a_bodyless_http10_post_is_answered_as_the_same_over_http11() {
    // HTTP/1.0 is taken for a proxy's, never this machine's: `off` says who may write here.
    let app = TestApp::spawn(TestSettings::new().auth(AuthSetting::Off)).await;
    let created = exchange(&app, b"POST /work HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert_eq!(created.status, 200, "{created:?}");
    assert!(created.json()["add_up_to"].is_i64(), "{created:?}");
    assert!(created.has_header("x-request-id"), "{created:?}");
    let demand = exchange(&app, b"POST /work/demand HTTP/1.0\r\n\r\n").await;
    assert_eq!(demand.status, 202, "{demand:?}");
    // With a body and its length, as before.
    let given = exchange(
        &app,
        b"POST /work HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"add_up_to\": 4}",
    )
    .await;
    assert_eq!(given.json()["add_up_to"], 4, "{given:?}");
    assert_eq!(framing_count(&app, Framing::LengthAdded).await, 2.0);
}

#[tokio::test]
async fn what_the_decoder_would_refuse_gets_pps_json_error_and_is_counted() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let mut oversized = b"GET /work/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_vec();
    while oversized.len() <= MAX_HEAD_BYTES {
        oversized.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
    }
    oversized.extend_from_slice(b"\r\n");
    let mut crowded = b"GET /work/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_vec();
    for n in 0..MAX_HEADERS {
        crowded.extend_from_slice(format!("X-{n}: 1\r\n").as_bytes());
    }
    crowded.extend_from_slice(b"\r\n");
    let cases: Vec<(Vec<u8>, u16, Framing)> = vec![
        (b"GET /work/1 HTTP/9.9\r\n\r\n".to_vec(), 400, Framing::Malformed),
        (b"GET /work/1 HTTP/1.1\r\nBad Header\r\n\r\n".to_vec(), 400, Framing::Malformed),
        (b"GET /work/1 HTTP/1.1\r\n\r\n".to_vec(), 400, Framing::MissingHost),
        (
            b"POST /work HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            400,
            Framing::BadLength,
        ),
        (
            b"POST /work HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            400,
            Framing::BadLength,
        ),
        (oversized, 431, Framing::HeadersTooLarge),
        (crowded, 431, Framing::HeadersTooLarge),
    ];
    for (sent, status, framing) in &cases {
        let answer = exchange(&app, sent).await;
        let line = String::from_utf8_lossy(&sent[..sent.len().min(40)]).into_owned();
        assert_eq!(answer.status, *status, "{line:?}: {answer:?}");
        assert!(answer.json()["message"].is_string(), "{line:?}: {answer:?}");
        assert!(answer.has_header("x-request-id"), "{line:?}: {answer:?}");
        assert!(
            answer.headers.contains("content-type: application/json"),
            "{line:?}: {answer:?}"
        );
        assert!(
            framing_count(&app, *framing).await >= 1.0,
            "{framing:?} counted"
        );
    }
    // Each counted once: two malformed, one missing Host, two unclear lengths, two too large.
    for (framing, times) in [
        (Framing::Malformed, 2.0),
        (Framing::MissingHost, 1.0),
        (Framing::BadLength, 2.0),
        (Framing::HeadersTooLarge, 2.0),
    ] {
        assert_eq!(framing_count(&app, framing).await, times, "{framing:?}");
    }
    // The API still serves the next client.
    assert_eq!(app.get("/healthz").await.status(), reqwest::StatusCode::OK);
}

#[tokio::test]
async fn the_refusal_route_answers_only_the_front_door() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let forged = exchange(
        &app,
        format!(
            "GET {REFUSED_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             x-pp-front-door: 00000000000000000000000000000000\r\nx-pp-refusal: malformed\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(forged.status, 404, "{forged:?}");
    assert_eq!(framing_count(&app, Framing::Malformed).await, 0.0);
}
