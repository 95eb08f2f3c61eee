//! The API with Redis beside PostgreSQL: cached reads that the sweeper's changes reach at once,
//! rate limits that two servers enforce together, and every request still answered correctly
//! when Redis goes away mid-run. Each test has its own key prefix in the shared Redis.

use std::time::Duration;

use chrono::Utc;
use pp_backend_api::rate_limit::RateLimitConfig;
use pp_backend_api::testkit::{TestApp, TestSettings, error_message};
use pp_lib::cache::{Redis, RedisMetrics, WorkCache, writes};
use pp_lib::testkit::{TcpProxy, eventually, exactly, redis_url, socket_addr_of, via};
use pp_lib::work::Work;
use reqwest::StatusCode;
use serde_json::Value;

/// An app with the cache on, and a rate limit (bursts of 3) when `rate` is given.
fn with_redis(rate: Option<&'static str>) -> TestSettings {
    TestSettings::new().redis().with(move |settings| {
        settings.rate_limit = RateLimitConfig {
            rate: rate.map(|rate| rate.parse().expect("a rate")),
            burst: Some(3),
            ..RateLimitConfig::off()
        };
    })
}

async fn get_work(app: &TestApp, id: i64) -> Work {
    let response = app.get_work(id).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "cached answers are JSON too"
    );
    response.json().await.expect("a work")
}

async fn get_events(app: &TestApp, id: i64) -> Vec<Value> {
    let response = app.get(&format!("/work/{id}/events")).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("events")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_come_from_the_cache_and_the_sweepers_change_reaches_it_at_once() {
    let app = TestApp::spawn(with_redis(None)).await;
    let redis = app.redis();
    app.eventually_cache("ok").await;
    let created = app.create_work(4).await;

    let first = get_work(&app, created.id).await;
    let second = get_work(&app, created.id).await;
    assert_eq!(first, second);
    assert!(!second.done);
    assert!(app.metric("pp_api_cache_hits_total").await >= 1.0);

    // The sweeper, in another process, finishes the work and publishes it.
    let sweeper_redis = Redis::start(&redis.config(), RedisMetrics::unregistered())
        .expect("a valid URL")
        .expect("configured");
    assert!(sweeper_redis.wait_connected(Duration::from_secs(5)).await);
    let sweeper = WorkCache::new(
        Some(sweeper_redis),
        pp_lib::config::CacheConfig::default().work_cache_settings(),
    );
    let pool = pp_lib::db::build_pool(&app.db.config()).expect("a pool");
    let since = Utc::now() - chrono::Duration::hours(1);
    let swept = writes::sweep_pending_works(&pool, &sweeper, since, 10)
        .await
        .expect("sweep");
    assert_eq!(swept.len(), 1);

    // No waiting for the pending value to expire: the next read is done.
    let after = get_work(&app, created.id).await;
    assert!(after.done);
    assert_eq!(after.result, Some(10));
    let events = get_events(&app, created.id).await;
    let again = get_events(&app, created.id).await;
    assert_eq!(events.len(), 3);
    assert_eq!(events, again, "a done work's events, cached, are the same");
    assert!(
        !redis.keys().is_empty(),
        "the values live under the test's prefix"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_sharing_redis_enforce_one_limit_with_the_drafts_headers() {
    let first = TestApp::spawn(with_redis(Some("1/h"))).await;
    let second = first.replica(|_| {}).await;
    first.eventually_cache("ok").await;
    second.eventually_cache("ok").await;

    // Each key is a client of its own, on either server; a made-up X-Api-Key is no client.
    let client_a = first.create_key("client-a", "write");
    let client_b = first.create_key("client-b", "write");
    let post = |app: &TestApp, key: &str| app.client.post(app.url("/work")).bearer_auth(key).send();
    let mut remaining = Vec::new();
    for app in [&first, &second, &first] {
        let response = post(app, &client_a).await.expect("POST /work");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["ratelimit-policy"], "\"pp\";q=3;w=10800");
        remaining.push(
            response.headers()["ratelimit"]
                .to_str()
                .expect("text")
                .to_owned(),
        );
    }
    assert_eq!(
        remaining,
        [
            "\"pp\";r=2;t=3600",
            "\"pp\";r=1;t=7200",
            "\"pp\";r=0;t=10800"
        ]
    );
    let refused = post(&second, &client_a).await.expect("POST /work");
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds");
    assert!((3000..=3600).contains(&retry_after), "{retry_after}");
    assert!(refused.headers().contains_key("ratelimit"));
    let message = error_message(refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(message.contains("rate limit"), "{message}");

    // Another client has its own quota; reads are not limited unless asked.
    let other = post(&first, &client_b).await.expect("POST /work");
    assert_eq!(other.status(), StatusCode::OK);
    let read = first.get("/stats").await;
    assert_eq!(read.status(), StatusCode::OK);
    assert!(!read.headers().contains_key("ratelimit-policy"));
    assert_eq!(second.metric("pp_api_rate_limited_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_answered_correctly_while_redis_is_cut() {
    let proxy = TcpProxy::start(socket_addr_of(&redis_url(), 6379));
    let proxy_addr = proxy.addr();
    let app = TestApp::spawn(with_redis(Some("1000/s")).with(move |settings| {
        let url = settings.redis.url.as_ref().expect("the app's Redis");
        settings.redis.url = Some(via(url, proxy_addr));
    }))
    .await;
    app.eventually_cache("ok").await;
    let created = app.create_work(5).await;
    assert_eq!(get_work(&app, created.id).await.id, created.id);

    proxy.cut();
    for round in 0..20 {
        let work = get_work(&app, created.id).await;
        assert_eq!(work.id, created.id, "round {round}");
        assert_eq!(work.add_up_to, 5);
        let response = app.post_work(None).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "round {round}: fails open"
        );
    }
    app.eventually_cache("degraded").await;
    let ready = app.get("/readyz").await;
    assert_eq!(
        ready.status(),
        StatusCode::OK,
        "a cache outage is no reason to stop serving"
    );
    assert!(app.metric("pp_api_redis_errors_total").await >= 1.0);
    assert!(app.metric("pp_api_rate_limit_failed_open_total").await >= 1.0);
    assert_eq!(app.metric("pp_api_redis_breaker_open").await, 1.0);

    proxy.restore();
    // After the breaker's pause, a probe (a request that uses the cache) finds Redis again.
    eventually("the breaker to close", async || {
        let _ = get_work(&app, created.id).await;
        exactly(app.metric("pp_api_redis_breaker_open").await, 0.0)
    })
    .await;
    app.eventually_cache("ok").await;
}
