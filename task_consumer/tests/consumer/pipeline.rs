//! The queue to the database, end to end through a running consumer: a burst lands as done works
//! with their events, a message published twice makes one work, poison is dead-lettered while
//! the consumer keeps going, each dead letter saying why.

use lapin::BasicProperties;
use pp_lib::amqp::dead_lettering::QUEUE_HEADER;
use pp_lib::amqp::{DemandId, Outgoing, demand_properties};
use pp_lib::demand::WorkDemand;
use pp_lib::testkit::{at_least, eventually};
use pp_storage::testkit::{DONE_DEMANDS, EVENTS};
use task_consumer::testkit::{TestConsumer, TestServices, demands};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_1000_demands_all_land_as_done_works_with_three_events() {
    let services = TestServices::create().await;
    let consumer = TestConsumer::start(services.settings()).await;
    let ids = services.queue.publish_demands(&demands(1_000)).await;
    services.db.eventually_count(DONE_DEMANDS, 1_000).await;
    services.db.assert_recorded_once(&ids);
    assert_eq!(services.db.count(EVENTS), 3_000);
    let metrics = consumer.metrics.clone();
    let metrics_addr = consumer.metrics_addr.expect("metrics are served");
    let scraped = scrape(metrics_addr).await;
    assert!(
        scraped.contains("pp_consumer_processed_total 1000"),
        "{scraped}"
    );
    consumer.stop().await;
    assert_eq!(metrics.processed.get(), 1_000);
    assert_eq!(metrics.dead_lettered.get(), 0);
    assert_eq!(services.queue.ready_count(services.queue.name()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_published_twice_makes_one_work() {
    let services = TestServices::create().await;
    let demand = WorkDemand::new(10).expect("valid");
    let id = Uuid::new_v4();
    let twice = vec![
        Outgoing::demand_with_id(id, &demand),
        Outgoing::demand_with_id(id, &demand),
    ];
    services.queue.publish(twice).await;
    let consumer = TestConsumer::start(services.settings()).await;
    services.db.eventually_count(DONE_DEMANDS, 1).await;
    // Once more after it was recorded: a redelivery long after the first.
    services
        .queue
        .publish(vec![Outgoing::demand_with_id(id, &demand)])
        .await;
    let metrics = consumer.metrics.clone();
    eventually("both copies skipped as duplicates", async || {
        at_least(metrics.duplicates.get(), 2)
    })
    .await;
    consumer.stop().await;
    services.db.assert_recorded_once(&[id]);
    assert_eq!(
        services
            .db
            .count("select count(*) as n from works where result = 55"),
        1
    );
    assert_eq!(metrics.processed.get(), 1);
    assert_eq!(services.queue.ready_count(services.queue.name()).await, 0);
}

/// Demands no consumer can take, each with the reason its dead letter must give.
const POISON: [(&[u8], &str); 6] = [
    (b"not json", "malformed work demand"),
    (b"", "malformed work demand"),
    (br#"{"done": false}"#, "missing field `add_up_to`"),
    (
        br#"{"add_up_to": -1, "done": false}"#,
        "add_up_to must be zero or more, got -1",
    ),
    (
        br#"{"add_up_to": 3000000000, "done": false}"#,
        "add_up_to must be at most",
    ),
    (br#"{"add_up_to": "7"}"#, "add_up_to must be a whole number"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_the_dead_letter_queue_with_its_reason_and_the_consumer_keeps_going() {
    let services = TestServices::create().await;
    let consumer = TestConsumer::start(services.settings()).await;
    for (body, _) in POISON {
        services
            .queue
            .publish_raw(body, demand_properties(Uuid::new_v4()))
            .await;
    }
    // Valid ones after the poison: one with our properties, one with a message_id that is not a
    // UUID (recorded under a stable derived id), one without message_id (accepted).
    let good = Uuid::new_v4();
    let valid = [
        (
            &br#"{"add_up_to": 4, "done": false}"#[..],
            demand_properties(good),
        ),
        (
            &br#"{"add_up_to": 5}"#[..],
            BasicProperties::default().with_message_id("order-42".into()),
        ),
        (
            &br#"{"add_up_to": 6, "done": false}"#[..],
            BasicProperties::default(),
        ),
    ];
    for (body, properties) in valid {
        services.queue.publish_raw(body, properties).await;
    }
    services.db.eventually_count(DONE_DEMANDS, 3).await;
    let metrics = consumer.metrics.clone();
    consumer.stop().await;
    assert_eq!(metrics.dead_lettered.get(), 6);
    let letters = services.queue.take_dead_letters().await;
    let mut bodies: Vec<&[u8]> = letters
        .iter()
        .map(|letter| letter.body.as_slice())
        .collect();
    bodies.sort();
    let mut expected: Vec<&[u8]> = POISON.iter().map(|(body, _)| *body).collect();
    expected.sort();
    assert_eq!(bodies, expected, "every poison message, untouched");
    for (body, reason) in POISON {
        let letter = letters
            .iter()
            .find(|letter| letter.body == body)
            .expect("every poison message is dead-lettered");
        assert!(
            letter
                .reason()
                .as_deref()
                .is_some_and(|given| given.contains(reason)),
            "{:?}: expected {reason:?} in the reason header, got {letter:?}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(
            letter.header(QUEUE_HEADER).as_deref(),
            Some(services.queue.name())
        );
        assert!(
            letter.message_id().is_some(),
            "the original message_id is kept"
        );
    }
    let derived = DemandId::of(Some("order-42")).id();
    assert_eq!(
        services.db.count(&format!(
            "select count(*) as n from works where demand_id in ('{good}', '{derived}') and done"
        )),
        2
    );
    assert_eq!(
        services
            .db
            .count("select count(*) as n from works where add_up_to = 6 and result = 21"),
        1
    );
    assert_eq!(services.queue.ready_count(services.queue.name()).await, 0);
}

/// Reads the consumer's metrics endpoint with a plain HTTP/1.1 request.
async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the metrics endpoint accepts");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_and_swept_works_are_announced_once_committed() {
    use std::collections::{HashMap, HashSet};

    use diesel::RunQueryDsl;
    use pp_lib::db::works::{WORKS_DONE, WORKS_PENDING, done_items};
    use pp_storage::testkit::DONE_API_WORKS;

    let services = TestServices::create().await;
    let mut listener = services.db.connect();
    diesel::sql_query(format!("listen {WORKS_DONE}"))
        .execute(&mut listener)
        .expect("listen");
    let consumer = TestConsumer::start(services.settings()).await;
    let ids = services.queue.publish_demands(&demands(300)).await;
    crate::sweeper::insert_api_works(&services.db, 5);
    pp_lib::db::announce::announce(&mut services.db.connect(), &[WORKS_PENDING])
        .expect("announced");
    services.db.eventually_count(DONE_DEMANDS, 300).await;
    services.db.eventually_count(DONE_API_WORKS, 5).await;

    let mut demands_heard: HashMap<Uuid, i64> = HashMap::new();
    let mut works_heard: HashSet<i64> = HashSet::new();
    eventually("every finished work announced", async || {
        for notification in listener.notifications_iter() {
            let notification = notification.expect("a notification");
            for (work, demand) in done_items(&notification.payload) {
                match demand {
                    Some(demand) => {
                        demands_heard.insert(demand, work);
                    }
                    None => {
                        works_heard.insert(work);
                    }
                }
            }
        }
        if demands_heard.len() == 300 && works_heard.len() == 5 {
            Ok(())
        } else {
            Err((demands_heard.len(), works_heard.len()))
        }
    })
    .await;
    let mut conn = services.db.connect();
    for id in &ids {
        let work = pp_lib::db::works::find_work_by_demand(&mut conn, *id)
            .expect("query")
            .expect("recorded");
        assert_eq!(demands_heard.get(id), Some(&work.id), "demand {id}");
    }
    consumer.stop().await;
}
