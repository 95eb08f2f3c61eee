//! cli_01 against an API that asks for identities: the key of `--api-key` or `PP_API_KEY` is
//! sent, and a missing, wrong or unusable one is explained in one line that never repeats it.

use pp_backend_api::auth::AuthSetting;
use pp_backend_api::testkit::{TestApp, TestSettings};
use pp_lib::auth::new_api_token;
use pp_lib::testkit::process::{assert_exit, stderr, stdout};

use crate::helpers::{RunCli, assert_one_line_error, run_cli_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_of_the_flag_or_the_environment_is_sent_and_refusals_say_why() {
    let api = TestApp::spawn(TestSettings::new().auth(AuthSetting::All)).await;
    let writer = api.create_key("cli", "read,write");
    let reader = api.create_key("reader", "read");

    let without = api.cli("http", &["stats"]).await;
    assert_exit(&without, 1);
    assert_one_line_error(&without, "the API answered 401");
    assert!(
        stderr(&without).contains("--api-key"),
        "{}",
        stderr(&without)
    );

    let created = api
        .cli(
            "http",
            &["--api-key", &writer, "create", "--add-up-to", "3"],
        )
        .await;
    assert_exit(&created, 0);
    assert!(
        stdout(&created).contains("\"add_up_to\":3"),
        "{}",
        stdout(&created)
    );

    let address = api.address.clone();
    let key = reader.clone();
    let from_env = tokio::task::spawn_blocking(move || {
        run_cli_with(
            &["--api-url", &address, "--output", "json", "stats"],
            &[("PP_API_KEY", &key)],
        )
    })
    .await
    .expect("cli_01 runs");
    assert_exit(&from_env, 0);

    let reader_creates = api.cli("http", &["--api-key", &reader, "create"]).await;
    assert_exit(&reader_creates, 1);
    assert_one_line_error(&reader_creates, "the API answered 403");
    assert!(stderr(&reader_creates).contains("write scope"));

    let unknown = new_api_token().expose().to_owned();
    let wrong = api.cli("http", &["--api-key", &unknown, "stats"]).await;
    assert_exit(&wrong, 1);
    assert_one_line_error(&wrong, "no API key has this token");
    assert!(!stderr(&wrong).contains(&unknown), "the key is never shown");

    let spaced = "ppk_has a space in it";
    let unusable = api.cli("http", &["--api-key", spaced, "stats"]).await;
    assert_exit(&unusable, 2);
    assert_one_line_error(&unusable, "printable ASCII without spaces");
    assert!(!stderr(&unusable).contains(spaced));
}
