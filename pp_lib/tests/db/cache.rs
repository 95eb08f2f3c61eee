//! The work cache and the rate limiter against a real Redis (a key prefix per test) and
//! PostgreSQL (a database per test).

use std::time::Duration;

use chrono::Utc;
use pp_lib::cache::{
    Quota, RateLimiter, Redis, RedisMetrics, Verdict, WorkCache, WorkCacheSettings, writes,
};
use pp_lib::config::RedisConfig;
use pp_lib::db::build_pool;
use pp_lib::db::works::find_work;
use pp_lib::testkit::TestRedis;
use pp_lib::work::Work;
use pp_storage::testkit::TestDatabase;

use crate::insert_api_work;

const SETTINGS: WorkCacheSettings = WorkCacheSettings {
    ttl: Duration::from_secs(60),
    pending_ttl: Duration::from_secs(60),
    local_capacity: 0,
};

/// A connected client of `config`'s Redis, as one process would have.
async fn connect(config: &RedisConfig) -> Redis {
    let redis = Redis::start(config, RedisMetrics::unregistered())
        .expect("a valid Redis URL")
        .expect("Redis is configured");
    assert!(
        redis.wait_connected(Duration::from_secs(5)).await,
        "Redis does not answer: start it with `make setup`"
    );
    redis
}

fn parse(json: &str) -> Work {
    serde_json::from_str(json).expect("a cached work is a work's JSON")
}

#[tokio::test]
async fn a_reader_that_read_pending_before_the_sweeper_cannot_cache_it_after() {
    let db = TestDatabase::create();
    let redis = TestRedis::create();
    let reader = WorkCache::new(Some(connect(&redis.config()).await), SETTINGS);
    let sweeper = WorkCache::new(Some(connect(&redis.config()).await), SETTINGS);
    let pool = build_pool(&db.config()).expect("a pool");
    let mut conn = db.connect();
    let work = insert_api_work(&mut conn, "api-race", 4);

    // The reader misses and reads the row: pending.
    assert!(reader.get(work.id).await.is_none());
    let read = find_work(&mut conn, work.id)
        .expect("read")
        .expect("the work");
    assert!(!read.done);
    // The sweeper commits "done" and publishes it.
    let since = Utc::now() - chrono::Duration::hours(1);
    let swept = writes::sweep_pending_works(&pool, &sweeper, since, 10)
        .await
        .expect("sweep");
    assert_eq!(swept.len(), 1);
    // Only now does the reader store what it read.
    let answered = reader.put(&read).await;
    assert!(!parse(&answered).done, "the reader answers what it read");

    let cached = reader.get(work.id).await.expect("cached");
    let cached = parse(&cached);
    assert!(cached.done, "the stale pending value was refused");
    assert_eq!(cached.result, Some(10));
}

#[tokio::test]
async fn a_done_work_read_after_the_change_replaces_a_pending_one() {
    let db = TestDatabase::create();
    let redis = TestRedis::create();
    let cache = WorkCache::new(Some(connect(&redis.config()).await), SETTINGS);
    let pool = build_pool(&db.config()).expect("a pool");
    let mut conn = db.connect();
    let work = insert_api_work(&mut conn, "api-later", 3);
    cache.put(&work).await;
    assert!(!parse(&cache.get(work.id).await.expect("cached")).done);

    // The change is committed while Redis does not hear of it (a cache without Redis)...
    let since = Utc::now() - chrono::Duration::hours(1);
    writes::sweep_pending_works(&pool, &WorkCache::disabled(), since, 10)
        .await
        .expect("sweep");
    // ...so the next reader to read PostgreSQL stores the newer version over the old one.
    let done = find_work(&mut conn, work.id)
        .expect("read")
        .expect("the work");
    cache.put(&done).await;
    let cached = parse(&cache.get(work.id).await.expect("cached"));
    assert!(cached.done);
    assert_eq!(cached.result, Some(6));
}

#[tokio::test]
async fn a_pending_work_is_cached_no_longer_than_its_time_to_live() {
    let db = TestDatabase::create();
    let redis = TestRedis::create();
    let cache = WorkCache::new(
        Some(connect(&redis.config()).await),
        WorkCacheSettings {
            pending_ttl: Duration::from_millis(300),
            ..SETTINGS
        },
    );
    let mut conn = db.connect();
    let work = insert_api_work(&mut conn, "api-brief", 3);
    cache.put(&work).await;
    let mut redis_conn = redis.connection();
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(format!("{}:work:{}", redis.prefix(), work.id))
        .query(&mut redis_conn)
        .expect("PTTL");
    assert!((1..=300).contains(&ttl_ms), "pending for {ttl_ms} ms");
}

#[tokio::test]
async fn without_redis_every_lookup_misses_and_nothing_fails() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let work = insert_api_work(&mut conn, "api-none", 3);
    let cache = WorkCache::disabled();
    let json = cache.put(&work).await;
    assert_eq!(*json, serde_json::to_string(&work).expect("JSON"));
    assert!(cache.get(work.id).await.is_none());
    cache.works_changed(std::slice::from_ref(&work)).await;
}

fn quota(rate: &str, burst: u32) -> Quota {
    Quota {
        rate: rate.parse().expect("a rate"),
        burst,
    }
}

#[tokio::test]
async fn a_burst_is_allowed_then_the_rate_applies() {
    let redis = TestRedis::create();
    let limiter = RateLimiter::new(connect(&redis.config()).await, quota("1/m", 3));
    let mut remaining = Vec::new();
    for _ in 0..3 {
        match limiter.check("ip:192.0.2.1").await {
            Verdict::Decided(decision) if decision.allowed => remaining.push(decision.remaining),
            other => panic!("within the burst: {other:?}"),
        }
    }
    assert_eq!(remaining, [2, 1, 0]);
    let Verdict::Decided(refused) = limiter.check("ip:192.0.2.1").await else {
        panic!("Redis answers");
    };
    assert!(!refused.allowed);
    assert!(
        refused.retry_after > Duration::from_secs(50)
            && refused.retry_after <= Duration::from_secs(60),
        "one request a minute: {:?}",
        refused.retry_after
    );
    let Verdict::Decided(other_client) = limiter.check("ip:192.0.2.2").await else {
        panic!("Redis answers");
    };
    assert!(other_client.allowed, "each client has its own quota");
}

#[tokio::test]
async fn requests_decided_together_are_each_decided_as_if_alone() {
    let redis = TestRedis::create();
    let limiter = RateLimiter::new(connect(&redis.config()).await, quota("1/h", 5));
    // Forty at once, two clients: they wait for one run of the script, or a few.
    let clients = ["ip:192.0.2.10", "ip:192.0.2.11"];
    let verdicts =
        futures_util::future::join_all((0..40).map(|n| limiter.check(clients[n % 2]))).await;
    for client in 0..2 {
        let decisions: Vec<_> = verdicts
            .iter()
            .skip(client)
            .step_by(2)
            .map(|verdict| match verdict {
                Verdict::Decided(decision) => *decision,
                Verdict::FailedOpen => panic!("Redis answers"),
            })
            .collect();
        let allowed: Vec<u64> = decisions
            .iter()
            .filter(|decision| decision.allowed)
            .map(|decision| decision.remaining)
            .collect();
        assert_eq!(
            allowed,
            [4, 3, 2, 1, 0],
            "client {client}: the burst, in order"
        );
        assert!(
            decisions
                .iter()
                .filter(|decision| !decision.allowed)
                .all(|decision| decision.retry_after > Duration::from_secs(3_500)),
            "client {client}: the rest wait for the rate"
        );
    }
}

/// Requests until the first refusal (or `most`), one at a time; how many were allowed.
async fn allowed_until_refused(limiter: &RateLimiter, client: &str, most: usize) -> usize {
    for allowed in 0..most {
        match limiter.check(client).await {
            Verdict::Decided(decision) if decision.allowed => {}
            Verdict::Decided(_) => return allowed,
            Verdict::FailedOpen => panic!("Redis answers"),
        }
    }
    most
}

#[tokio::test]
async fn busy_clients_take_tokens_a_lease_at_a_time_and_never_beyond_the_quota() {
    let redis = TestRedis::create();
    let first = RateLimiter::new(connect(&redis.config()).await, quota("1/h", 1_000));
    let second = RateLimiter::new(connect(&redis.config()).await, quota("1/h", 1_000));
    let mut allowed = 0;
    for _ in 0..40 {
        allowed += allowed_until_refused(&first, "key:busy", 30).await;
        allowed += allowed_until_refused(&second, "key:busy", 30).await;
    }
    // Leases of up to a tenth of the burst: each replica may hold one unspent.
    assert!(
        (800..=1_000).contains(&allowed),
        "{allowed} allowed of a burst of 1000"
    );
    assert!(
        allowed_until_refused(&first, "key:busy", 10).await
            + allowed_until_refused(&second, "key:busy", 10).await
            <= 1_000 - allowed,
        "never beyond the quota"
    );
}

#[tokio::test]
async fn requests_that_find_the_lease_empty_together_ask_for_no_more_than_they_need() {
    let redis = TestRedis::create();
    let limiter = RateLimiter::new(connect(&redis.config()).await, quota("1/h", 1_000));
    let mut allowed = 0;
    for round in 0..10 {
        let verdicts =
            futures_util::future::join_all((0..50).map(|_| limiter.check("key:crowd"))).await;
        for verdict in verdicts {
            match verdict {
                Verdict::Decided(decision) if decision.allowed => allowed += 1,
                other => panic!("round {round}: within the burst, yet {other:?}"),
            }
        }
    }
    assert_eq!(allowed, 500, "half the burst, all allowed");
}

#[tokio::test]
async fn the_unspent_tokens_of_an_expired_lease_go_back_to_the_bucket() {
    let redis = TestRedis::create();
    let first = RateLimiter::new(connect(&redis.config()).await, quota("1/h", 100));
    let second = RateLimiter::new(connect(&redis.config()).await, quota("1/h", 100));
    // A busy start: the first replica's leases grow to ten tokens.
    let spent = allowed_until_refused(&first, "key:pause", 30).await;
    assert_eq!(spent, 30);
    // It pauses past its lease; its next request gives the unspent tokens back.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let spent = spent + allowed_until_refused(&first, "key:pause", 1).await;
    let rest = allowed_until_refused(&second, "key:pause", 200).await;
    // Leases of 1, 2, 4, 8, 10 and 10 tokens made the 30: 5 unspent went back; the first
    // replica's newest lease (half as large after the pause) holds back at most 4.
    assert!(
        spent + rest >= 100 - 4,
        "{spent} + {rest}: only the first replica's newest lease is held back"
    );
    assert!(
        spent + rest <= 100,
        "{spent} + {rest}: never beyond the burst"
    );
}

#[tokio::test]
async fn limiters_in_two_processes_enforce_one_limit_together() {
    let redis = TestRedis::create();
    let first = RateLimiter::new(connect(&redis.config()).await, quota("1/h", 4));
    let second = RateLimiter::new(connect(&redis.config()).await, quota("1/h", 4));
    let mut allowed = 0;
    for round in 0..5 {
        for limiter in [&first, &second] {
            match limiter.check("key:shared").await {
                Verdict::Decided(decision) if decision.allowed => allowed += 1,
                Verdict::Decided(_) => {}
                Verdict::FailedOpen => panic!("Redis answers (round {round})"),
            }
        }
    }
    assert_eq!(
        allowed, 4,
        "ten requests through two limiters, one burst of four"
    );
}

#[tokio::test]
async fn a_limiter_whose_redis_is_gone_lets_requests_through() {
    let address = pp_lib::testkit::ports::closed_port();
    let config = RedisConfig {
        url: Some(format!("redis://{address}").parse().expect("a URL")),
        ..RedisConfig::default()
    };
    let redis = Redis::start(&config, RedisMetrics::unregistered())
        .expect("a valid URL")
        .expect("configured");
    let limiter = RateLimiter::new(redis.clone(), quota("1/h", 1));
    for _ in 0..3 {
        assert_eq!(limiter.check("ip:192.0.2.1").await, Verdict::FailedOpen);
    }
    assert!(redis.is_degraded());
}
