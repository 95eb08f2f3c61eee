//! `Prefer: wait=N` (RFC 7240): a request answers as soon as its work is done, woken by the
//! finishing process's announcement, or after N seconds with what it has.

use pp_lib::db::announce::notify;
use pp_lib::db::works::{WORKS_DONE, done_item, find_work, record_demands};
use pp_lib::demand::WorkDemand;
use pp_lib::testkit::eventually;
use pp_lib::work::Work;
use pp_storage::testkit::finish_work;
use reqwest::StatusCode;
use serde_json::Value;

use pp_backend_api::testkit::{TestApp, TestSettings, applied_wait, error_message};

/// `GET path` preferring a wait of `seconds`: the request, to send or spawn.
fn get_waiting(
    app: &TestApp,
    path: &str,
    seconds: u64,
) -> impl Future<Output = reqwest::Result<reqwest::Response>> + use<> {
    app.client
        .get(app.url(path))
        .header("prefer", format!("wait={seconds}"))
        .send()
}

/// The requests waiting in `app`, as its metrics say.
async fn waiting(app: &TestApp) -> i64 {
    let text = app.get_text("/metrics").await;
    text.lines()
        .find_map(|line| line.strip_prefix("pp_api_waiting_requests "))
        .and_then(|value| value.trim().parse().ok())
        .expect("the waiting requests are in the metrics")
}

/// Waits until `app` has `count` waiting requests.
async fn eventually_waiting(app: &TestApp, count: i64) {
    eventually(&format!("{count} waiting request(s)"), async || {
        let now = waiting(app).await;
        if now == count { Ok(()) } else { Err(now) }
    })
    .await;
}

/// What a work's JSON tells of it that a wait changes (its times are whole seconds there).
fn outcome(work: &Work) -> (i64, bool, Option<i64>) {
    (work.id, work.done, work.result)
}

/// Finishes `work` as the sweeper does: committed, then announced.
fn finish_and_announce(app: &TestApp, work: &Work) -> Work {
    let mut conn = app.db.connect();
    let done = finish_work(&mut conn, work);
    notify(&mut conn, &[(WORKS_DONE, done_item(&done))]).expect("announced");
    done
}

#[tokio::test]
async fn a_waiting_read_answers_once_its_work_is_done_and_says_the_wait_was_applied() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let created: Work = app.post_work(None).await.json().await.expect("a work");
    let read = tokio::spawn(get_waiting(&app, &format!("/work/{}", created.id), 25));
    eventually_waiting(&app, 1).await;

    let done = finish_and_announce(&app, &created);

    let response = read.await.expect("task").expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(applied_wait(&response), Some("wait=25"));
    let answered: Work = response.json().await.expect("a work");
    assert_eq!(
        outcome(&answered),
        outcome(&done),
        "the work as done, not as it was"
    );
    assert!(done.done);
    assert_eq!(waiting(&app).await, 0, "nothing left waiting");
}

#[tokio::test]
async fn a_wait_that_runs_out_answers_the_work_as_it_is_and_a_done_work_answers_at_once() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let created: Work = app.post_work(None).await.json().await.expect("a work");
    let response = get_waiting(&app, &format!("/work/{}", created.id), 1)
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(applied_wait(&response), Some("wait=1"));
    let pending: Work = response.json().await.expect("a work");
    assert!(!pending.done);

    // Done before anyone waits: the wait ends at its first look, with no announcement.
    let mut conn = app.db.connect();
    let done = finish_work(&mut conn, &created);
    let response = get_waiting(&app, &format!("/work/{}", created.id), 25)
        .await
        .expect("an answer");
    let answered: Work = response.json().await.expect("a work");
    assert_eq!(outcome(&answered), outcome(&done));
    // An unknown work is 404 at once, waiting or not.
    let response = get_waiting(&app, "/work/424242", 25)
        .await
        .expect("an answer");
    error_message(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn a_wait_longer_than_the_setting_is_cut_to_it_and_unreadable_preferences_are_ignored() {
    let app = TestApp::spawn(
        TestSettings::new().with(|settings| settings.wait.max = std::time::Duration::from_secs(1)),
    )
    .await;
    let created: Work = app.post_work(None).await.json().await.expect("a work");
    let url = app.url(&format!("/work/{}", created.id));
    let response = app
        .client
        .get(&url)
        .header("prefer", "respond-async, wait=3600")
        .send()
        .await
        .expect("an answer");
    assert_eq!(applied_wait(&response), Some("wait=1"));
    for unreadable in ["wait=soon", "wait=-1", "wait", "handling=strict"] {
        let response = app
            .client
            .get(&url)
            .header("prefer", unreadable)
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::OK, "{unreadable}");
        assert!(
            applied_wait(&response).is_none(),
            "{unreadable}: not applied"
        );
    }
}

#[tokio::test]
async fn past_the_most_waiters_a_request_that_would_wait_is_refused_503() {
    let app = TestApp::spawn(TestSettings::new().with(|settings| settings.wait.waiters = 1)).await;
    let created: Work = app.post_work(None).await.json().await.expect("a work");
    let path = format!("/work/{}", created.id);
    let first = tokio::spawn(get_waiting(&app, &path, 25));
    eventually_waiting(&app, 1).await;
    let second = get_waiting(&app, &path, 25).await.expect("an answer");
    assert!(second.headers().get("retry-after").is_some());
    let message = error_message(second, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(message.contains("PP_WAITERS_MAX"), "{message}");
    // A request that does not wait is served as ever.
    assert_eq!(
        app.get(&format!("/work/{}", created.id)).await.status(),
        StatusCode::OK
    );
    finish_and_announce(&app, &created);
    let first = first.await.expect("task").expect("an answer");
    assert_eq!(first.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_created_work_and_a_followed_demand_can_be_waited_for() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let create = tokio::spawn(
        app.client
            .post(app.url("/work"))
            .header("prefer", "wait=25")
            .send(),
    );
    eventually_waiting(&app, 1).await;
    let mut conn = app.db.connect();
    let pending: Vec<Work> =
        pp_lib::db::works::claim_pending_works(&mut conn, pp_lib::db::works::since_any_age(), 10)
            .expect("the pending work");
    assert_eq!(pending.len(), 1);
    let done = finish_and_announce(&app, &pending[0]);
    let response = create.await.expect("task").expect("an answer");
    let created: Work = response.json().await.expect("a work");
    assert_eq!(
        outcome(&created),
        outcome(&done),
        "POST answered with the work done"
    );

    let accepted: Value = app
        .post("/work/demand", None)
        .await
        .json()
        .await
        .expect("JSON");
    let message_id: uuid::Uuid = accepted["message_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("a message id");
    let follow = tokio::spawn(get_waiting(&app, &format!("/work/demand/{message_id}"), 25));
    eventually_waiting(&app, 1).await;
    let recorded = record_demands(
        &mut conn,
        &[(message_id, WorkDemand::new(3).expect("valid"))],
    )
    .expect("recorded");
    let work = &recorded.created[0];
    notify(&mut conn, &[(WORKS_DONE, done_item(work))]).expect("announced");
    let response = follow.await.expect("task").expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    let followed: Work = response.json().await.expect("a work");
    let stored = find_work(&mut conn, work.id)
        .expect("query")
        .expect("the work");
    assert_eq!(outcome(&followed), outcome(&stored));
    assert_eq!(followed.demand_id, Some(message_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_answers_its_waiting_requests_with_what_it_has() {
    let mut app = TestApp::spawn(TestSettings::new()).await;
    let created: Work = app.post_work(None).await.json().await.expect("a work");
    let read = tokio::spawn(get_waiting(&app, &format!("/work/{}", created.id), 60));
    eventually_waiting(&app, 1).await;
    // The graceful stop gives requests in flight 10 s here: a request still waiting then would
    // be cut off without an answer.
    app.stop().await.expect("a clean stop");
    let response = read
        .await
        .expect("task")
        .expect("an answer before the stop ended");
    assert_eq!(response.status(), StatusCode::OK);
    let answered: Work = response.json().await.expect("a work");
    assert_eq!(outcome(&answered), outcome(&created), "still pending");
}
