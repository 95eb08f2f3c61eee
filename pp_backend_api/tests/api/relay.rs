//! The outbox relay inside the API: demands accepted over HTTP reach the queue, once each, with
//! their message id, whether the broker is up when they arrive or comes back later.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use lapin::options::BasicGetOptions;
use pp_backend_api::relay::RelayConfig;
use pp_backend_api::startup::Application;
use pp_lib::config::AmqpConfig;
use pp_lib::contract::DemandAccepted;
use pp_lib::db::outbox::insert_demand;
use pp_lib::demand::WorkDemand;
use pp_lib::schema::demand_outbox;
use pp_lib::testkit::{TcpProxy, TestQueue, socket_addr_of, via};
use pp_storage::testkit::TestDatabase;
use reqwest::StatusCode;
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app_with, test_settings};

async fn spawn_relaying_app(amqp: AmqpConfig) -> TestApp {
    let db = tokio::task::spawn_blocking(TestDatabase::create)
        .await
        .expect("creating the test database");
    let mut settings = test_settings(db.config());
    settings.relay = RelayConfig {
        interval: Duration::from_millis(100),
        ..RelayConfig::to(amqp)
    };
    spawn_app_with(db, settings).await
}

async fn post_demand(app: &TestApp, add_up_to: i32) -> Uuid {
    let response = app
        .client
        .post(app.url("/work/demand"))
        .body(format!(r#"{{"add_up_to": {add_up_to}}}"#))
        .send()
        .await
        .expect("POST /work/demand");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: DemandAccepted = response.json().await.expect("JSON");
    accepted.message_id
}

async fn wait_for_ready(queue: &TestQueue, expected: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = queue.ready_count(queue.name()).await;
        if ready == expected {
            return;
        }
        assert!(
            ready < expected,
            "{ready} messages, more than the {expected} expected"
        );
        assert!(
            Instant::now() < deadline,
            "{ready} of {expected} messages arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Takes every message from the queue: (message_id, body).
async fn take_all(queue: &TestQueue) -> Vec<(Uuid, Vec<u8>)> {
    let (connection, channel) = queue.open().await;
    let mut messages = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.name().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        let properties = &message.delivery.properties;
        assert_eq!(properties.delivery_mode(), &Some(2), "persistent");
        let id = properties
            .message_id()
            .as_ref()
            .map(|id| Uuid::parse_str(id.as_str()).expect("a UUID"))
            .expect("a message_id");
        messages.push((id, message.delivery.data.clone()));
    }
    let _ = connection.close(200, "done".into()).await;
    messages
}

fn unpublished(db: &TestDatabase) -> i64 {
    let mut conn = db.connect();
    demand_outbox::table
        .filter(demand_outbox::published_on.is_null())
        .count()
        .get_result(&mut conn)
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_demands_are_published_once_with_their_message_id() {
    let queue = TestQueue::create().await;
    let mut app = spawn_relaying_app(queue.config()).await;
    let mut expected = HashSet::new();
    for n in 0..20 {
        expected.insert((post_demand(&app, n).await, n));
    }
    wait_for_ready(&queue, 20).await;
    let messages = take_all(&queue).await;
    let got: HashSet<(Uuid, i32)> = messages
        .iter()
        .map(|(id, body)| {
            let demand = WorkDemand::from_json(body).expect("a valid demand");
            assert_eq!(body, &demand.to_json(), "the original body, byte for byte");
            (*id, demand.add_up_to())
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(unpublished(&app.db), 0);
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics.contains("pp_api_outbox_published_total 20"),
        "{metrics}"
    );
    app.stop().await.expect("the server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demands_accepted_while_the_broker_is_down_are_published_when_it_is_back() {
    let queue = TestQueue::create().await;
    let proxy = TcpProxy::start(socket_addr_of(queue.url(), 5672));
    proxy.cut();
    let amqp = AmqpConfig {
        url: via(queue.url(), proxy.addr()),
        ..queue.config()
    };
    let mut app = spawn_relaying_app(amqp).await;
    let mut expected = HashSet::new();
    for n in 0..10 {
        expected.insert(post_demand(&app, n).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        unpublished(&app.db),
        10,
        "accepted and kept while the broker is away"
    );
    proxy.restore();
    wait_for_ready(&queue, 10).await;
    let got: HashSet<Uuid> = take_all(&queue)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(got, expected);
    let deadline = Instant::now() + Duration::from_secs(10);
    while unpublished(&app.db) > 0 {
        assert!(Instant::now() < deadline, "rows not marked published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await.expect("the server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relaying_replicas_publish_each_row_exactly_once() {
    let queue = TestQueue::create().await;
    let mut first = spawn_relaying_app(queue.config()).await;
    // A backlog both replicas find at once.
    let ids: HashSet<Uuid> = {
        let mut conn = first.db.connect();
        (0..2_000)
            .map(|n| {
                let id = Uuid::new_v4();
                insert_demand(&mut conn, id, &WorkDemand::new(n).expect("valid")).expect("insert");
                id
            })
            .collect()
    };
    let mut settings = test_settings(first.db.config());
    settings.relay = RelayConfig {
        interval: Duration::from_millis(50),
        batch: 50,
        ..RelayConfig::to(queue.config())
    };
    let second = Application::build(settings)
        .await
        .expect("the second replica builds");
    let (stop_second, second_stopped) = tokio::sync::oneshot::channel::<()>();
    let second = tokio::spawn(second.run_until_stopped(async {
        let _ = second_stopped.await;
    }));
    wait_for_ready(&queue, 2_000).await;
    let _ = stop_second.send(());
    second
        .await
        .expect("task")
        .expect("the second replica stops");
    let messages = take_all(&queue).await;
    assert_eq!(messages.len(), 2_000, "no row published twice");
    let got: HashSet<Uuid> = messages.into_iter().map(|(id, _)| id).collect();
    assert_eq!(got, ids);
    assert_eq!(unpublished(&first.db), 0);
    first.stop().await.expect("the server stops");
}

/// Polls `/readyz` until its `broker` field is `expected`, checking it stays ready.
async fn until_broker_is(app: &TestApp, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = app.get("/readyz").await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "ready whatever the broker"
        );
        let health: serde_json::Value = response.json().await.expect("JSON");
        if health["broker"] == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the broker never became {expected}: {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_the_relays_broker_and_stays_ready_without_it() {
    let queue = TestQueue::create().await;
    let proxy = TcpProxy::start(socket_addr_of(queue.url(), 5672));
    let app = spawn_relaying_app(AmqpConfig {
        url: via(queue.url(), proxy.addr()),
        ..queue.config()
    })
    .await;
    until_broker_is(&app, "ok").await;

    proxy.cut();
    until_broker_is(&app, "down").await;
    let accepted = post_demand(&app, 3).await;

    proxy.restore();
    until_broker_is(&app, "ok").await;
    wait_for_ready(&queue, 1).await;
    let messages = take_all(&queue).await;
    assert_eq!(
        messages.into_iter().map(|(id, _)| id).collect::<Vec<_>>(),
        vec![accepted]
    );
}
