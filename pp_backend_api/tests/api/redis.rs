//! The API with Redis beside PostgreSQL: cached reads that the sweeper's changes reach at once,
//! rate limits that two servers enforce together, and every request still answered correctly
//! when Redis goes away mid-run. Each test has its own key prefix in the shared Redis.

use std::time::Duration;

use chrono::Utc;
use pp_backend_api::rate_limit::RateLimitConfig;
use pp_backend_api::settings::Settings;
use pp_lib::cache::{Redis, RedisMetrics, WorkCache, writes};
use pp_lib::config::RedisConfig;
use pp_lib::testkit::{TcpProxy, TestRedis, socket_addr_of, via};
use pp_lib::work::Work;
use pp_storage::testkit::TestDatabase;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, error_message, spawn_app_with, test_settings};

async fn spawn_with_redis(db: TestDatabase, redis: RedisConfig, rate: Option<&str>) -> TestApp {
    let settings = Settings {
        redis,
        rate_limit: RateLimitConfig {
            rate: rate.map(|rate| rate.parse().expect("a rate")),
            burst: Some(3),
            ..RateLimitConfig::off()
        },
        ..test_settings(db.config())
    };
    spawn_app_with(db, settings).await
}

async fn new_db() -> TestDatabase {
    tokio::task::spawn_blocking(TestDatabase::create)
        .await
        .expect("creating the test database")
}

/// The value of one sample of `/metrics`, 0 when absent.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.expect("metrics");
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits for the app's Redis connection (it connects in the background).
async fn until_cache_is(app: &TestApp, state: &str) {
    for _ in 0..200 {
        let health: Value = app.get("/readyz").await.json().await.expect("readiness");
        if health["cache"] == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the cache never became {state}");
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
    let redis = TestRedis::create();
    let app = spawn_with_redis(new_db().await, redis.config(), None).await;
    until_cache_is(&app, "ok").await;
    let created = app.create_work(4).await;

    let first = get_work(&app, created.id).await;
    let second = get_work(&app, created.id).await;
    assert_eq!(first, second);
    assert!(!second.done);
    assert!(metric(&app, "pp_api_cache_hits_total").await >= 1.0);

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
    let redis = TestRedis::create();
    let first = spawn_with_redis(new_db().await, redis.config(), Some("1/h")).await;
    let second = spawn_with_redis(new_db().await, redis.config(), Some("1/h")).await;
    until_cache_is(&first, "ok").await;
    until_cache_is(&second, "ok").await;

    let post = |app: &TestApp, key: &'static str| {
        app.client
            .post(app.url("/work"))
            .header("x-api-key", key)
            .send()
    };
    let mut remaining = Vec::new();
    for app in [&first, &second, &first] {
        let response = post(app, "client-a").await.expect("POST /work");
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
    let refused = post(&second, "client-a").await.expect("POST /work");
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
    let other = post(&first, "client-b").await.expect("POST /work");
    assert_eq!(other.status(), StatusCode::OK);
    let read = first.get("/stats").await;
    assert_eq!(read.status(), StatusCode::OK);
    assert!(!read.headers().contains_key("ratelimit-policy"));
    assert_eq!(metric(&second, "pp_api_rate_limited_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_answered_correctly_while_redis_is_cut() {
    let redis = TestRedis::create();
    let proxy = TcpProxy::start(socket_addr_of(redis.url(), 6379));
    let config = RedisConfig {
        url: Some(via(redis.url(), proxy.addr())),
        ..redis.config()
    };
    let app = spawn_with_redis(new_db().await, config, Some("1000/s")).await;
    until_cache_is(&app, "ok").await;
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
    until_cache_is(&app, "degraded").await;
    let ready = app.get("/readyz").await;
    assert_eq!(
        ready.status(),
        StatusCode::OK,
        "a cache outage is no reason to stop serving"
    );
    assert!(metric(&app, "pp_api_redis_errors_total").await >= 1.0);
    assert!(metric(&app, "pp_api_rate_limit_failed_open_total").await >= 1.0);
    assert_eq!(metric(&app, "pp_api_redis_breaker_open").await, 1.0);

    proxy.restore();
    // After the breaker's pause, a probe finds Redis again.
    for _ in 0..400 {
        let _ = get_work(&app, created.id).await;
        if metric(&app, "pp_api_redis_breaker_open").await == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    until_cache_is(&app, "ok").await;
}
