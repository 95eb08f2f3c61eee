//! The same question gets the same answer over HTTP and from the database, and it is the API's.

use pp_lib::db::stats::Stats;
use pp_lib::event::Event;
use pp_lib::work::Work;
use pp_storage::testkit::finish_work;

use pp_backend_api::testkit::{TestApp, TestSettings};
use pp_lib::testkit::process::{assert_exit, stdout};

use crate::helpers::{RunCli, VIAS};

#[tokio::test]
async fn get_prints_exactly_the_apis_body_both_ways() {
    let api = TestApp::spawn(TestSettings::new()).await;
    let work = api.create_work(4).await;
    let id = work.id.to_string();

    let body = api.get_text(&format!("/work/{id}")).await;

    for via in VIAS {
        let output = api.cli(via, &["get", &id]).await;
        assert_exit(&output, 0);
        assert_eq!(stdout(&output), format!("{body}\n"), "--via {via}");
    }
    let printed: Work = serde_json::from_str(&body).expect("a work");
    assert_eq!(printed, work);
}

#[tokio::test]
async fn http_and_db_give_the_same_json_for_get_search_events_and_stats() {
    let api = TestApp::spawn(TestSettings::new()).await;
    let mut works = Vec::new();
    for add_up_to in [3, 4, 5] {
        works.push(api.create_work(add_up_to).await);
    }
    let mut conn = api.db.connect();
    finish_work(&mut conn, &works[1]);
    let done_id = works[1].id.to_string();
    let pending_id = works[0].id.to_string();

    let got: Work =
        serde_json::from_str(&api.same_both_ways(&["get", &done_id]).await).expect("a work");
    let events: Vec<Event> =
        serde_json::from_str(&api.same_both_ways(&["events", &done_id]).await).expect("events");
    let no_events = api.same_both_ways(&["events", &pending_id]).await;
    let stats: Stats = serde_json::from_str(&api.same_both_ways(&["stats"]).await).expect("stats");

    assert_eq!(got.result, Some(10));
    let variables: Vec<&str> = events.iter().map(|e| e.variable.as_str()).collect();
    assert_eq!(
        variables,
        ["compute/start", "compute/stop", "compute/result"]
    );
    assert_eq!(no_events, "[]\n");
    assert_eq!(
        stats,
        Stats {
            pending_works: 2,
            done_works: 1,
            events: 3,
            done_last_hour: 1,
            api_works_beyond_sweep_window: 0,
        }
    );
    assert_eq!(
        api.same_both_ways(&["stats"]).await,
        format!("{}\n", api.get_text("/stats").await)
    );
}

#[tokio::test]
async fn searches_agree_both_ways_whatever_the_filters() {
    let api = TestApp::spawn(TestSettings::new()).await;
    let mut works = Vec::new();
    for add_up_to in 1..=4 {
        works.push(api.create_work(add_up_to).await);
    }
    let mut conn = api.db.connect();
    finish_work(&mut conn, &works[0]);
    let code = works[2].work_code.clone();

    let cases: [(&[&str], usize); 8] = [
        (&["search", "api-"], 4),
        (&["search", "api-", "--done", "true"], 1),
        (&["search", "api-", "--done", "false"], 3),
        (&["search", "api-", "--limit", "2"], 2),
        (&["search", "api-", "--since", "30m"], 4),
        (&["search", &code], 1),
        (&["search", "api_"], 0),
        (&["search", "consumer-", "--since", "7d"], 0),
    ];
    for (args, expected) in cases {
        let found: Vec<Work> =
            serde_json::from_str(&api.same_both_ways(args).await).expect("works");

        assert_eq!(found.len(), expected, "{args:?}");
        assert!(found.is_sorted_by_key(|work| work.id), "{args:?}");
        let mut query = vec![("work_code", args[1].to_owned())];
        for pair in args[2..].chunks(2) {
            query.push((pair[0].trim_start_matches("--"), pair[1].to_owned()));
        }
        let body = api
            .client
            .get(format!("{}/work/search", api.address))
            .query(&query)
            .send()
            .await
            .expect("GET /work/search")
            .text()
            .await
            .expect("a body");
        let from_api: Vec<Work> = serde_json::from_str(&body).expect("works");
        assert_eq!(found, from_api, "{args:?}: the API's own answer");
    }
}

#[tokio::test]
async fn a_table_is_printed_when_asked() {
    let api = TestApp::spawn(TestSettings::new()).await;
    let work = api.create_work(4).await;

    for via in VIAS {
        let output = api
            .cli(via, &["get", &work.id.to_string(), "--output", "table"])
            .await;

        assert_exit(&output, 0);
        let table = stdout(&output);
        assert!(
            table.starts_with(&format!(
                "id          {}\nwork_code   {}\n",
                work.id, work.work_code
            )),
            "--via {via}: {table}"
        );
        assert!(table.contains("\nresult      -\n"), "--via {via}: {table}");
    }
}
