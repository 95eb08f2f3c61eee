//! Faults that do not go away by themselves: a demand the database refuses (a trigger the test
//! installs on its own database raises for one `add_up_to`), a database that refuses every
//! demand, recording that fails for longer than the patience, and a broker that refuses
//! `basic.consume`.
//!
//! The decisions are driven first without a broker and without sleeping (the consumer's
//! [`record_batch`] and [`Parts`] on the test's database), then through a running consumer.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use pp_lib::amqp::Outgoing;
use pp_lib::amqp::dead_lettering::DEAD_LETTERED_AT_HEADER;
use pp_lib::demand::WorkDemand;
use pp_lib::testkit::{TcpProxy, at_least, eventually, socket_addr_of, via};
use pp_storage::testkit::{DONE_DEMANDS, TestDatabase};
use task_consumer::record::{BatchOutcome, Parts, Retrying, record_batch};
use task_consumer::testkit::{TestConsumer, TestServices, test_settings};
use uuid::Uuid;

/// The `add_up_to` the test's trigger refuses.
const REFUSED: i32 = 4242;

/// Installs a trigger that makes the database refuse to record any work with `add_up_to` =
/// [`REFUSED`], as a constraint would: an error that no retry can pass.
fn refuse_one_add_up_to(db: &TestDatabase) {
    let mut conn = db.connect();
    conn.batch_execute(&format!(
        "create function pp_test_refuse() returns trigger language plpgsql as $$ \
         begin \
             if new.add_up_to = {REFUSED} then \
                 raise exception 'add_up_to {REFUSED} is refused by the test'; \
             end if; \
             return new; \
         end $$; \
         create trigger pp_test_refuse before insert on works \
             for each row execute function pp_test_refuse();"
    ))
    .expect("install the refusing trigger");
}

fn demand(add_up_to: i32) -> (Uuid, WorkDemand) {
    (
        Uuid::new_v4(),
        WorkDemand::new(add_up_to).expect("a valid demand"),
    )
}

fn patient() -> Retrying {
    Retrying::new(Duration::from_secs(1), Duration::from_secs(300))
}

#[test]
fn a_batch_with_a_refused_demand_is_split_until_that_demand_is_alone() {
    let db = TestDatabase::create();
    refuse_one_add_up_to(&db);
    let mut conn = db.connect();
    let mut batch: Vec<(Uuid, WorkDemand)> = (1..=20).map(demand).collect();
    let refused = demand(REFUSED);
    batch.insert(7, refused);
    let mut retrying = patient();
    let mut parts = Parts::new(batch);
    let (mut recorded, mut poison, mut splits) = (0, Vec::new(), 0);

    while let Some(part) = parts.next_part() {
        match record_batch(&mut conn, &part, &mut retrying, Instant::now()) {
            BatchOutcome::Recorded(done) => recorded += done.created.len(),
            BatchOutcome::Split { .. } => {
                splits += 1;
                parts.split(part);
            }
            BatchOutcome::Poison { reason } => poison.push((part, reason)),
            other => panic!("a refusal is never retried nor given up: {other:?}"),
        }
    }

    assert_eq!(recorded, 20, "every other demand is recorded");
    assert_eq!(poison.len(), 1, "{poison:?}");
    let (part, reason) = &poison[0];
    assert_eq!(part.as_slice(), [refused]);
    assert!(
        reason.contains("add_up_to 4242 is refused by the test"),
        "{reason}"
    );
    assert!(splits <= 6, "{splits} splits for 21 demands");
}

#[test]
fn a_database_that_refuses_every_demand_is_a_failure_to_retry_not_poison() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    conn.batch_execute(
        "create function pp_test_refuse_all() returns trigger language plpgsql as $$ \
         begin raise exception 'the test refuses every work'; end $$; \
         create trigger pp_test_refuse_all before insert on works \
             for each row execute function pp_test_refuse_all();",
    )
    .expect("install the trigger");
    let mut retrying = patient();

    let alone = record_batch(&mut conn, &[demand(3)], &mut retrying, Instant::now());

    assert!(
        matches!(alone, BatchOutcome::RetryLater { .. }),
        "a known-good demand fails too, so it is the database: {alone:?}"
    );
}

#[test]
fn a_batch_that_records_is_recorded_once_and_a_replay_writes_nothing() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let batch: Vec<(Uuid, WorkDemand)> = (1..=5).map(demand).collect();
    let mut retrying = patient();

    let first = record_batch(&mut conn, &batch, &mut retrying, Instant::now());
    let replay = record_batch(&mut conn, &batch, &mut retrying, Instant::now());

    let BatchOutcome::Recorded(first) = first else {
        panic!("{first:?}");
    };
    let BatchOutcome::Recorded(replay) = replay else {
        panic!("{replay:?}");
    };
    assert_eq!(first.created.len(), 5);
    assert_eq!((replay.created.len(), replay.duplicates), (0, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demand_the_database_refuses_is_dead_lettered_with_the_reason_and_the_rest_recorded_once()
{
    let services = TestServices::create().await;
    refuse_one_add_up_to(&services.db);
    let good: Vec<Outgoing> = (1..=59)
        .map(|n| Outgoing::demand(&WorkDemand::new(n).expect("valid")))
        .collect();
    let refused = Outgoing::demand(&WorkDemand::new(REFUSED).expect("valid"));
    let good_ids: Vec<Uuid> = good.iter().map(|message| message.id).collect();
    let mut messages = good;
    messages.insert(30, refused.clone());
    // Waiting in the queue before the consumer starts: batches of several, the refused demand
    // inside one of them.
    services.queue.publish(messages).await;
    let consumer = TestConsumer::start(services.settings()).await;

    services.db.eventually_count(DONE_DEMANDS, 59).await;
    services
        .queue
        .eventually_holds(&services.queue.dlq(), 1)
        .await;
    let metrics = consumer.metrics.clone();
    consumer.stop().await;

    services.db.assert_recorded_once(&good_ids);
    let letters = services.queue.take_dead_letters().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.body, refused.body, "the message as it came");
    assert_eq!(
        letter.message_id().as_deref(),
        Some(refused.id.to_string().as_str())
    );
    assert!(
        letter
            .reason()
            .as_deref()
            .is_some_and(|reason| reason.contains("add_up_to 4242 is refused by the test")),
        "{letter:?}"
    );
    assert!(
        letter.header(DEAD_LETTERED_AT_HEADER).is_some(),
        "{letter:?}"
    );
    assert_eq!(metrics.dead_lettered.get(), 1);
    assert_eq!(metrics.retries.get(), 0, "a refusal is never retried");
    assert!(metrics.split_batches.get() >= 1);
    assert_eq!(services.queue.ready_count(services.queue.name()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demands_given_up_after_the_patience_are_handed_back_and_recorded_once_later() {
    let services = TestServices::create().await;
    let proxy = TcpProxy::start(socket_addr_of(services.db.url(), 5432));
    let mut database = services.db.config();
    database.url = via(services.db.url(), proxy.addr());
    database.connect_timeout = Duration::from_millis(500);
    let mut impatient = test_settings(database, services.queue.config());
    impatient.consumer.retry_max = Duration::from_millis(200);
    impatient.consumer.retry_for = Duration::from_secs(1);
    impatient.sweeper.every = Duration::ZERO;
    proxy.cut();
    let consumer = TestConsumer::start(impatient).await;
    let ids = services
        .queue
        .publish_demands(
            &(1..=20)
                .map(|n| WorkDemand::new(n).expect("valid"))
                .collect::<Vec<_>>(),
        )
        .await;
    let metrics = consumer.metrics.clone();

    // Given up at least twice over: each time handed back, and taken again.
    eventually("every demand handed back twice", async || {
        at_least(metrics.handed_back.get(), 40)
    })
    .await;
    assert_eq!(services.db.count(DONE_DEMANDS), 0);
    assert_eq!(
        metrics.dead_lettered.get(),
        0,
        "giving up never dead-letters"
    );

    proxy.restore();
    services.db.eventually_count(DONE_DEMANDS, 20).await;
    consumer.stop().await;
    services.db.assert_recorded_once(&ids);
    assert_eq!(services.queue.ready_count(services.queue.name()).await, 0);
    assert_eq!(services.queue.ready_count(&services.queue.dlq()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_basic_consume_is_asked_again_with_backoff_not_in_a_hot_loop() {
    let services = TestServices::create().await;
    // An exclusive consumer of the test's own: the broker refuses every other basic.consume on
    // the queue (ACCESS_REFUSED) while it holds it.
    let (holder, channel) = services.queue.open().await;
    // Kept: a consumer dropped is cancelled.
    let exclusive = channel
        .basic_consume(
            services.queue.name().into(),
            "exclusive-holder".into(),
            BasicConsumeOptions {
                exclusive: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the exclusive consumer");
    let started = Instant::now();
    let consumer = TestConsumer::start(services.settings()).await;
    let metrics = consumer.metrics.clone();
    let refused = async |count: u64| {
        eventually(&format!("{count} refused basic.consume"), async || {
            at_least(metrics.consume_setup_failures.get(), count)
        })
        .await;
        started.elapsed()
    };

    let second = refused(2).await;
    let fifth = refused(5).await;

    // Waits of 0.2, 0.4, 0.8 and 1.6 s (±20 %) come between the five: a hot loop would make them
    // at once, a fixed pause would make the last three come as quickly as the first two.
    assert!(
        fifth >= Duration::from_millis(2_400),
        "five refused attempts in {fifth:?}"
    );
    assert!(
        fifth - second >= Duration::from_millis(1_900),
        "the 3rd to 5th attempts came {:?} after the 2nd: the waits do not grow",
        fifth - second
    );
    drop(exclusive);
    let _ = holder.close(200, "released".into()).await;
    let ids = services
        .queue
        .publish_demands(&[WorkDemand::new(9).expect("valid")])
        .await;
    services.db.eventually_count(DONE_DEMANDS, 1).await;
    consumer.stop().await;
    services.db.assert_recorded_once(&ids);
}
