//! Child processes in tests: stopped the way process managers stop them, waited for, and what
//! they printed read and judged.

use std::process::{Child, ExitStatus, Output};
use std::time::Duration;

use crate::testkit::wait::eventually_within;

/// A child process that is killed, and reaped, when dropped while it still runs: a test that
/// fails never leaves a binary of pp running. It reads as the `Child` it holds.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Sends SIGTERM to a child process (what `kill` and process managers send).
pub fn terminate(child: &Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -TERM {} failed", child.id());
}

/// Waits for `child` to exit and returns its status; after `patience` it kills the child and
/// panics.
pub async fn wait_exit(child: &mut Child, patience: Duration) -> ExitStatus {
    let _kill_if_it_hangs = KillIfPanicking(child.id());
    eventually_within(
        patience,
        &format!("process {} to exit", child.id()),
        async || child.try_wait().expect("try_wait").ok_or("still running"),
    )
    .await
}

/// Waits for `child`, whose stderr is piped, to exit (as [`wait_exit`]) and returns its status
/// with what it wrote on stderr.
pub async fn wait_exit_with_stderr(child: &mut Child, patience: Duration) -> (ExitStatus, String) {
    let status = wait_exit(child, patience).await;
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("the child's stderr");
    }
    (status, stderr)
}

/// The lines of `stderr` that are `program`'s own errors (`program: error: …`).
pub fn error_lines<'a>(stderr: &'a str, program: &str) -> Vec<&'a str> {
    let start = format!("{program}: error:");
    stderr
        .lines()
        .filter(|line| line.starts_with(&start))
        .collect()
}

/// Kills a process when dropped during a panic: a test that gave up on it leaves nothing running.
struct KillIfPanicking(u32);

impl Drop for KillIfPanicking {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

/// What a finished program wrote to its standard output.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What a finished program wrote to its standard error.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code, showing the output when it is wrong, and that nothing panicked.
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
    assert!(!stderr(output).contains("panicked"), "{}", stderr(output));
}

/// Asserts the error is one line in `program`'s format (`program: error: …`), containing
/// `text`, with nothing on stdout and no panic.
pub fn assert_one_line_error(output: &Output, program: &str, text: &str) {
    let stderr = stderr(output);
    assert!(
        stderr.starts_with(&format!("{program}: error: ")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(text), "expected {text:?} in {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stdout(output), "", "nothing on stdout");
}

/// The build directory of the running example (`target/<profile>` above its `examples/`), once
/// it is seen to hold every one of `binaries`; else what to run (`make_target`) to build them.
pub fn binaries_beside_this_example(
    binaries: &[&str],
    make_target: &str,
) -> Result<std::path::PathBuf, String> {
    let directory = std::env::current_exe()
        .map_err(|error| format!("where am I: {error}"))?
        .parent()
        .and_then(|examples| examples.parent())
        .map(std::path::PathBuf::from)
        .ok_or("the build directory is not above this example")?;
    match binaries
        .iter()
        .find(|binary| !directory.join(binary).exists())
    {
        Some(missing) => Err(format!(
            "{missing} is not built in {}: run `make {make_target}`",
            directory.display()
        )),
        None => Ok(directory),
    }
}
