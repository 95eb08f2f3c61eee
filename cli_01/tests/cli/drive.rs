//! Creating works and enqueueing demands, over HTTP and straight into the database.

use pp_lib::db::outbox::find_demand;
use pp_lib::db::works::find_work;
use pp_lib::demand::RANDOM_ADD_UP_TO;
use pp_lib::work::Work;
use serde_json::{Value, json};
use uuid::Uuid;

use pp_backend_api::testkit::{TestApp, TestSettings};
use pp_lib::testkit::process::{assert_exit, stdout};

use crate::helpers::{RunCli, VIAS};

#[tokio::test]
async fn demand_commits_an_outbox_row_both_ways_and_answers_like_the_api() {
    let api = TestApp::spawn(TestSettings::new()).await;

    for via in VIAS {
        let output = api.cli(via, &["demand", "--add-up-to", "2"]).await;

        assert_exit(&output, 0);
        let answer: Value = serde_json::from_str(&stdout(&output)).expect("JSON");
        let keys: Vec<&String> = answer.as_object().expect("an object").keys().collect();
        assert_eq!(keys, ["add_up_to", "done", "message_id"], "--via {via}");
        assert_eq!(answer["add_up_to"], 2, "--via {via}");
        assert_eq!(answer["done"], false, "--via {via}");
        let message_id: Uuid = answer["message_id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("a UUID message id");
        let mut conn = api.db.connect();
        let stored = find_demand(&mut conn, message_id)
            .expect("query")
            .unwrap_or_else(|| panic!("--via {via}: the demand is in the outbox"));
        assert_eq!(
            stored.body,
            json!({"add_up_to": 2, "done": false}),
            "--via {via}"
        );
    }
}

#[tokio::test]
async fn a_demand_without_add_up_to_is_random() {
    let api = TestApp::spawn(TestSettings::new()).await;

    for via in VIAS {
        let output = api.cli(via, &["demand"]).await;

        assert_exit(&output, 0);
        let answer: Value = serde_json::from_str(&stdout(&output)).expect("JSON");
        let add_up_to = answer["add_up_to"].as_i64().expect("a number");
        assert!(
            RANDOM_ADD_UP_TO.contains(&i32::try_from(add_up_to).expect("an i32")),
            "--via {via}: {answer}"
        );
    }
}

#[tokio::test]
async fn create_stores_a_work_both_ways_that_the_other_way_finds() {
    let api = TestApp::spawn(TestSettings::new()).await;

    for (via, other) in [("http", "db"), ("db", "http")] {
        let output = api.cli(via, &["create", "--add-up-to", "7"]).await;

        assert_exit(&output, 0);
        let created: Work = serde_json::from_str(&stdout(&output)).expect("a work");
        assert_eq!(created.add_up_to, 7);
        assert!(created.work_code.starts_with("api-"), "{created:?}");
        assert!(!created.done);
        let got = api.cli(other, &["get", &created.id.to_string()]).await;
        assert_eq!(
            stdout(&got),
            stdout(&output),
            "created --via {via}, read --via {other}"
        );
        let mut conn = api.db.connect();
        let stored = find_work(&mut conn, created.id)
            .expect("query")
            .expect("the work is stored");
        // The JSON carries whole seconds; the row, microseconds: compare what the API would send.
        assert_eq!(
            serde_json::to_string(&stored).expect("JSON"),
            stdout(&output).trim_end()
        );
    }
}

#[tokio::test]
async fn follow_shows_a_demand_where_it_is_then_its_work_the_same_both_ways() {
    use pp_lib::db::works::record_demands;
    use pp_lib::demand::WorkDemand;

    let api = TestApp::spawn(TestSettings::new()).await;
    let output = api.cli("http", &["demand", "--add-up-to", "5"]).await;
    assert_exit(&output, 0);
    let answer: Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    let message_id = answer["message_id"]
        .as_str()
        .expect("a message id")
        .to_owned();

    let mut waiting = Vec::new();
    for via in VIAS {
        let output = api.cli(via, &["follow", &message_id]).await;
        assert_exit(&output, 0);
        let status: Value = serde_json::from_str(&stdout(&output)).expect("JSON");
        assert_eq!(status["state"], "outbox", "--via {via}: {status}");
        assert_eq!(status["add_up_to"], 5, "--via {via}: {status}");
        waiting.push(stdout(&output));
        let table = api
            .cli(via, &["follow", &message_id, "--output", "table"])
            .await;
        assert!(
            stdout(&table).contains("state         outbox"),
            "{}",
            stdout(&table)
        );
    }
    assert_eq!(waiting[0], waiting[1], "both ways answer alike");

    let id: Uuid = message_id.parse().expect("a UUID");
    let mut conn = api.db.connect();
    record_demands(&mut conn, &[(id, WorkDemand::new(5).expect("valid"))]).expect("recorded");
    let mut recorded = Vec::new();
    for via in VIAS {
        let output = api.cli(via, &["follow", &message_id]).await;
        assert_exit(&output, 0);
        let work: Work = serde_json::from_str(&stdout(&output)).expect("a work");
        assert_eq!(
            (work.demand_id, work.result),
            (Some(id), Some(15)),
            "--via {via}"
        );
        recorded.push(stdout(&output));
    }
    assert_eq!(recorded[0], recorded[1], "both ways answer alike");

    let unknown = Uuid::new_v4().to_string();
    for via in VIAS {
        let output = api.cli(via, &["follow", &unknown]).await;
        assert_exit(&output, 4);
        let bad = api.cli(via, &["follow", "not-a-uuid"]).await;
        assert_exit(&bad, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_waits_for_the_work_to_be_recorded_both_ways() {
    use pp_lib::db::announce::notify;
    use pp_lib::db::works::{WORKS_DONE, done_item, record_demands};
    use pp_lib::demand::WorkDemand;
    use pp_lib::testkit::eventually;

    let api = TestApp::spawn(TestSettings::new()).await;
    for via in VIAS {
        let output = api.cli("http", &["demand", "--add-up-to", "6"]).await;
        let answer: Value = serde_json::from_str(&stdout(&output)).expect("JSON");
        let message_id = answer["message_id"].as_str().expect("an id").to_owned();
        let id: Uuid = message_id.parse().expect("a UUID");
        let args = ["follow", message_id.as_str(), "--wait", "25s"];
        let follow = api.cli(via, &args);
        let finish = async {
            if via == "http" {
                // The request waits in the API before the work is recorded.
                eventually("the follow waiting in the API", async || {
                    let metrics = api.get_text("/metrics").await;
                    if metrics.contains("pp_api_waiting_requests 1") {
                        Ok(())
                    } else {
                        Err("not yet")
                    }
                })
                .await;
            }
            let mut conn = api.db.connect();
            let recorded = record_demands(&mut conn, &[(id, WorkDemand::new(6).expect("valid"))])
                .expect("recorded");
            notify(&mut conn, &[(WORKS_DONE, done_item(&recorded.created[0]))]).expect("announced");
        };
        let (output, ()) = tokio::join!(follow, finish);
        assert_exit(&output, 0);
        let work: Work = serde_json::from_str(&stdout(&output)).unwrap_or_else(|error| {
            panic!("--via {via}: a work, not {}: {error}", stdout(&output))
        });
        assert_eq!(
            (work.demand_id, work.result),
            (Some(id), Some(21)),
            "--via {via}"
        );
    }
}
