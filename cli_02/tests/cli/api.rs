//! cli_02 against the real API: what it prints and how it exits are the API's answers.

use std::process::{Command, Output};

use pp_backend_api::testkit::{TestApp, TestSettings};

async fn cli_02(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_cli_02"))
            .args(args)
            .output()
            .expect("cli_02 runs")
    })
    .await
    .expect("the cli_02 task")
}

fn args(address: &str, rest: &[&str]) -> Vec<String> {
    ["--addr", address]
        .iter()
        .chain(rest)
        .map(|arg| (*arg).to_owned())
        .collect()
}

#[tokio::test]
async fn a_work_posted_by_cli_02_comes_back_from_get_and_search() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let address = app.host_and_port();

    let created = cli_02(args(address, &["-d", r#"{"add_up_to": 4}"#, "/work"])).await;
    assert_eq!(created.status.code(), Some(0), "{created:?}");
    let stdout = String::from_utf8_lossy(&created.stdout).into_owned();
    let (status, body) = stdout
        .split_once('\n')
        .expect("a status line, then the body");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let work: serde_json::Value = serde_json::from_str(body).expect("pretty JSON");
    assert_eq!(work["add_up_to"], 4);

    let id = work["id"].as_i64().expect("an id");
    let got = cli_02(args(address, &[&format!("/work/{id}")])).await;
    assert_eq!(got.status.code(), Some(0));
    let got_body = String::from_utf8_lossy(&got.stdout).into_owned();
    let got_work: serde_json::Value =
        serde_json::from_str(got_body.split_once('\n').expect("status line").1).expect("JSON");
    assert_eq!(got_work, work);

    let code = work["work_code"].as_str().expect("a code");
    let found = cli_02(args(address, &[&format!("/work/search?work_code={code}")])).await;
    assert_eq!(found.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&found.stdout).contains(code));
}

#[tokio::test]
async fn the_apis_errors_become_exit_codes() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let address = app.host_and_port();

    let bad = cli_02(args(address, &["/work/abc"])).await;
    assert_eq!(bad.status.code(), Some(4), "{bad:?}");
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert!(stdout.starts_with("HTTP/1.1 400 Bad Request"), "{stdout}");
    assert!(stdout.contains(r#""http_code": 400"#), "{stdout}");

    let missing = cli_02(args(address, &["/work/424242"])).await;
    assert_eq!(missing.status.code(), Some(4));

    let wrong_method = cli_02(args(address, &["-X", "DELETE", "/work/1"])).await;
    assert_eq!(wrong_method.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&wrong_method.stdout).contains("405"));
}
