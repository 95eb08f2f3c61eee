//! The outbox relay inside the API: demands accepted over HTTP reach the queue, once each, with
//! their message id, whether the broker is up when they arrive or comes back later; and a broker
//! that stalls, nacks every confirm or blocks the connection never makes a round hold its rows
//! longer than the round limit (a broker of the test's own in front of the real one misbehaves,
//! pp_lib's `FaultyBroker`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use pp_backend_api::testkit::{TestApp, TestSettings};
use pp_lib::config::AmqpNodes;
use pp_lib::db::outbox::insert_demand;
use pp_lib::demand::WorkDemand;
use pp_lib::testkit::{
    FaultyBroker, TcpProxy, TestQueue, at_least, eventually, exactly, socket_addr_of, via,
};
use pp_storage::testkit::{TestDatabase, UNPUBLISHED_DEMANDS};
use reqwest::StatusCode;
use uuid::Uuid;

/// An app relaying to `queue` through a proxy in front of its broker.
async fn spawn_behind(proxy: &TcpProxy, queue: &Arc<TestQueue>) -> TestApp {
    let url = via(queue.url(), proxy.addr());
    TestApp::spawn(TestSettings::new().relaying_to(queue.clone(), url)).await
}

/// Takes every message from the queue: (message_id, body), each published persistent.
async fn take_all(queue: &TestQueue) -> Vec<(Uuid, Vec<u8>)> {
    queue
        .take_all(queue.name())
        .await
        .into_iter()
        .map(|message| {
            assert_eq!(message.properties.delivery_mode(), &Some(2), "persistent");
            (message.id(), message.body)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_demands_are_published_once_with_their_message_id() {
    let mut app = TestApp::spawn(TestSettings::new().relaying()).await;
    let queue = app.queue();
    let mut expected = HashSet::new();
    for n in 0..20 {
        expected.insert((app.post_demand(n).await, n));
    }
    queue.eventually_holds(queue.name(), 20).await;
    let messages = take_all(queue).await;
    let got: HashSet<(Uuid, i32)> = messages
        .iter()
        .map(|(id, body)| {
            let demand = WorkDemand::from_json(body).expect("a valid demand");
            assert_eq!(body, &demand.to_json(), "the original body, byte for byte");
            (*id, demand.add_up_to())
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(app.db.count(UNPUBLISHED_DEMANDS), 0);
    assert_eq!(app.metric("pp_api_outbox_published_total").await, 20.0);
    app.stop().await.expect("the server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demands_accepted_while_the_broker_is_down_are_published_when_it_is_back() {
    let queue = Arc::new(TestQueue::create().await);
    let proxy = TcpProxy::start(socket_addr_of(queue.url(), 5672));
    proxy.cut();
    let mut app = spawn_behind(&proxy, &queue).await;
    let mut expected = HashSet::new();
    for n in 0..10 {
        expected.insert(app.post_demand(n).await);
    }
    // The relay tried the broker again after the demands were committed, and could not reach
    // it: nothing may be marked published.
    let tried = proxy.attempts();
    eventually("the relay to try the broker again", async || {
        at_least(proxy.attempts(), tried + 1)
    })
    .await;
    assert_eq!(
        app.db.count(UNPUBLISHED_DEMANDS),
        10,
        "accepted and kept while the broker is away"
    );
    proxy.restore();
    queue.eventually_holds(queue.name(), 10).await;
    let got: HashSet<Uuid> = take_all(&queue)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(got, expected);
    app.db.eventually_count(UNPUBLISHED_DEMANDS, 0).await;
    app.stop().await.expect("the server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relaying_replicas_publish_each_row_exactly_once() {
    let mut first = TestApp::spawn(TestSettings::new().relaying()).await;
    let queue = first.queue();
    // A backlog both replicas find at once.
    let ids = insert_demands(&first.db, 2_000);
    let mut second = first
        .replica(|settings| {
            settings.relay.interval = Duration::from_millis(50);
            settings.relay.batch = 50;
        })
        .await;
    queue.eventually_holds(queue.name(), 2_000).await;
    second.stop().await.expect("the second replica stops");
    let messages = take_all(queue).await;
    assert_eq!(messages.len(), 2_000, "no row published twice");
    let got: HashSet<Uuid> = messages.into_iter().map(|(id, _)| id).collect();
    assert_eq!(got, ids);
    assert_eq!(first.db.count(UNPUBLISHED_DEMANDS), 0);
    first.stop().await.expect("the server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demand_another_replica_accepted_is_relayed_at_once() {
    // The relaying replica's next round by the clock is an hour away: only PostgreSQL's
    // announcement of the insert can start one.
    let mut relaying = TestApp::spawn(
        TestSettings::new()
            .relaying()
            .with(|settings| settings.relay.interval = Duration::from_secs(3_600)),
    )
    .await;
    let queue = relaying.queue();
    let mut accepting = relaying
        .replica(|settings| settings.relay.enabled = false)
        .await;
    let mut expected = HashSet::new();
    for n in 1..=3 {
        expected.insert(accepting.post_demand(n).await);
        queue
            .eventually_holds(queue.name(), u32::try_from(n).expect("small"))
            .await;
    }
    let got: HashSet<Uuid> = take_all(queue)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(got, expected);
    accepting.stop().await.expect("the accepting replica stops");
    relaying.stop().await.expect("the relaying replica stops");
}

/// Asks `/readyz` until its `broker` field is `expected`, checking it stays ready.
async fn until_broker_is(app: &TestApp, expected: &str) {
    eventually(&format!("the broker to be {expected}"), async || {
        let response = app.get("/readyz").await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "ready whatever the broker"
        );
        let health: serde_json::Value = response.json().await.expect("JSON");
        if health["broker"] == expected {
            Ok(())
        } else {
            Err(health)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_the_relays_broker_and_stays_ready_without_it() {
    let queue = Arc::new(TestQueue::create().await);
    let proxy = TcpProxy::start(socket_addr_of(queue.url(), 5672));
    let app = spawn_behind(&proxy, &queue).await;
    until_broker_is(&app, "ok").await;

    proxy.cut();
    until_broker_is(&app, "down").await;
    let accepted = app.post_demand(3).await;

    proxy.restore();
    until_broker_is(&app, "ok").await;
    queue.eventually_holds(queue.name(), 1).await;
    let messages = take_all(&queue).await;
    assert_eq!(
        messages.into_iter().map(|(id, _)| id).collect::<Vec<_>>(),
        vec![accepted]
    );
}

/// A relaying app publishing through `broker`, with a round limit of one second.
async fn spawn_app_behind(broker: &FaultyBroker, queue: &Arc<TestQueue>) -> TestApp {
    let url = via(queue.url(), broker.addr());
    TestApp::spawn(
        TestSettings::new()
            .relaying_to(queue.clone(), url)
            .with(|settings| settings.relay.round_limit = ROUND_LIMIT),
    )
    .await
}

const ROUND_LIMIT: Duration = Duration::from_secs(1);

/// Inserts `count` demands straight into the outbox; returns their ids.
fn insert_demands(db: &TestDatabase, count: i32) -> HashSet<Uuid> {
    let mut conn = db.connect();
    (0..count)
        .map(|n| {
            let id = Uuid::new_v4();
            insert_demand(&mut conn, id, &WorkDemand::new(n).expect("valid")).expect("insert");
            id
        })
        .collect()
}

/// Watches the outbox for `span` and returns the longest stretch during which a relay round held
/// some unpublished rows locked.
async fn longest_lock(db: &TestDatabase, span: Duration) -> Duration {
    #[derive(QueryableByName)]
    struct Rows {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        unpublished: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        free: i64,
    }
    let mut conn = db.connect();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut locked_since: Option<Instant> = None;
        let mut longest = Duration::ZERO;
        while started.elapsed() < span {
            // Rows a round holds are skipped by `skip locked`: the difference is what it holds.
            let rows: Rows = conn
                .transaction(|conn| {
                    diesel::sql_query(
                        "select (select count(*) from demand_outbox where published_on is null) \
                                as unpublished, \
                                (select count(*) from (select id from demand_outbox \
                                  where published_on is null for update skip locked) free) as free",
                    )
                    .get_result(conn)
                })
                .expect("sample the outbox");
            let now = Instant::now();
            if rows.unpublished > rows.free {
                let since = *locked_since.get_or_insert(now);
                longest = longest.max(now - since);
            } else {
                locked_since = None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        longest
    })
    .await
    .expect("the sampler")
}

/// Waits until every row is marked published and every id reached the queue (a row published
/// again after a round was cut short may be there twice: the consumer deduplicates).
async fn wait_until_relayed(app: &TestApp, queue: &TestQueue, ids: &HashSet<Uuid>) {
    let mut seen = HashSet::new();
    eventually("every demand relayed", async || {
        seen.extend(take_all(queue).await.into_iter().map(|(id, _)| id));
        let unpublished = app.db.count(UNPUBLISHED_DEMANDS);
        let arrived = ids.intersection(&seen).count();
        exactly((unpublished, arrived), (0, ids.len()))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_broker_never_holds_outbox_rows_past_the_round_limit() {
    rows_are_released_within_the_round_limit(
        FaultyBroker::stall,
        "nothing marked without a confirm",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacks_over_and_over_never_hold_outbox_rows_past_the_round_limit() {
    rows_are_released_within_the_round_limit(
        FaultyBroker::nack_every_confirm,
        "a nacked row is not published",
    )
    .await;
}

/// With `fault` on the broker, 20 new demands are never locked for longer than a round, none is
/// marked published, and all are relayed once the broker heals.
async fn rows_are_released_within_the_round_limit(fault: fn(&FaultyBroker), unpublished_why: &str) {
    let queue = Arc::new(TestQueue::create().await);
    let broker = FaultyBroker::start(socket_addr_of(queue.url(), 5672));
    let mut app = spawn_app_behind(&broker, &queue).await;
    until_broker_is(&app, "ok").await;

    fault(&broker);
    let ids = insert_demands(&app.db, 20);
    let longest = longest_lock(&app.db, Duration::from_secs(4)).await;

    assert!(
        longest < ROUND_LIMIT + Duration::from_secs(1),
        "rows held for {longest:?} with a round limit of {ROUND_LIMIT:?}"
    );
    assert_eq!(app.db.count(UNPUBLISHED_DEMANDS), 20, "{unpublished_why}");
    broker.heal();
    wait_until_relayed(&app, &queue, &ids).await;
    app.stop().await.expect("the server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_broker_blocks_the_connection_the_relay_waits_without_claiming_rows() {
    let queue = Arc::new(TestQueue::create().await);
    let broker = FaultyBroker::start(socket_addr_of(queue.url(), 5672));
    let mut app = spawn_app_behind(&broker, &queue).await;
    until_broker_is(&app, "ok").await;

    broker.block("low on memory");
    eventually("the relay to see its connection blocked", async || {
        exactly(app.metric("pp_api_outbox_broker_blocked").await, 1.0)
    })
    .await;
    let ids = insert_demands(&app.db, 10);
    let longest = longest_lock(&app.db, Duration::from_secs(2)).await;

    assert!(
        longest < Duration::from_millis(300),
        "rows claimed while the connection is blocked: held {longest:?}"
    );
    assert_eq!(app.metric("pp_api_outbox_broker_blocked").await, 1.0);
    assert_eq!(app.db.count(UNPUBLISHED_DEMANDS), 10);
    assert_eq!(queue.ready_count(queue.name()).await, 0);
    broker.unblock();
    wait_until_relayed(&app, &queue, &ids).await;
    assert_eq!(app.metric("pp_api_outbox_broker_blocked").await, 0.0);
    app.stop().await.expect("the server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_nacks_every_confirm_is_left_for_a_new_one_and_every_row_is_relayed() {
    let queue = Arc::new(TestQueue::create().await);
    let broker = FaultyBroker::start(socket_addr_of(queue.url(), 5672));
    let app = spawn_app_behind(&broker, &queue).await;
    until_broker_is(&app, "ok").await;

    // The relay's connection nacks every confirm from now on while the broker enqueues each
    // message (RabbitMQ 3.10 on a channel opened while a quorum queue elected its leader);
    // a new connection confirms faithfully.
    broker.nack_on_open_connections();
    let ids = insert_demands(&app.db, 20);

    wait_until_relayed(&app, &queue, &ids).await;
    assert!(broker.connections() >= 2, "it moved to a new connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_confirms_is_left_for_the_next_once_a_round_times_out() {
    let queue = Arc::new(TestQueue::create().await);
    let broker = FaultyBroker::start(socket_addr_of(queue.url(), 5672));
    broker.withhold_confirms();
    let stalled = via(queue.url(), broker.addr());
    let nodes: AmqpNodes = format!("{},{}", stalled.expose(), queue.url().expose())
        .parse()
        .expect("two nodes");
    let app = TestApp::spawn(
        TestSettings::new()
            .relaying_to(queue.clone(), stalled)
            .with(move |settings| {
                settings.relay.round_limit = ROUND_LIMIT;
                settings.relay.amqp.nodes = nodes;
            }),
    )
    .await;

    let ids = insert_demands(&app.db, 20);

    // The first node takes the connection and the publishes, and settles none.
    wait_until_relayed(&app, &queue, &ids).await;
    assert!(broker.connections() >= 1, "it tried the first node");
}

#[tokio::test]
async fn a_queue_of_another_type_stops_the_api_at_start_with_the_way_out() {
    // The test's queue is classic; the API's relay is told it is a quorum queue.
    let queue = TestQueue::create().await;
    let db = TestDatabase::create_async().await;
    let mut child = pp_lib::testkit::KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_pp_backend_api"))
            .env("DATABASE_URL", db.url().expose())
            .env("AMQP_URL", queue.url().expose())
            .env("PP_QUEUE", queue.name())
            .env("PP_QUEUE_TYPE", "quorum")
            .env("PP_HTTP_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the API binary starts"),
    );

    let (status, stderr) =
        pp_lib::testkit::process::wait_exit_with_stderr(&mut child, Duration::from_secs(30)).await;

    assert_eq!(status.code(), Some(1), "{stderr}");
    let errors = pp_lib::testkit::process::error_lines(&stderr, "pp_backend_api");
    assert_eq!(errors.len(), 1, "{stderr}");
    for named in [queue.name(), "another type", "PP_QUEUE"] {
        assert!(errors[0].contains(named), "{named} in {}", errors[0]);
    }
}
