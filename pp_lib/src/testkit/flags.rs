//! Extreme flag values, for the tests that show no setting can make a binary panic.
//!
//! Every binary's tests do the same two steps with these helpers:
//!
//! 1. [`probes`] lists every long flag that takes a value, each with every value of
//!    [`EXTREME_VALUES`], as command lines; [`accepted`] parses each with the binary's clap
//!    command (a panic fails the test) and keeps the ones clap takes: those are the values the
//!    program will go on to use.
//! 2. [`run_accepted`] runs the real binary with each accepted one, a few at a time, lets it
//!    start and work for a moment, stops it with SIGTERM, and fails if any run panicked or did
//!    not stop.
//!
//! Values clap refuses need no run: clap has already answered them with a one-line error and
//! exit code 2.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Values at the edges of what a flag can be given: zero and negatives, numbers beyond every
/// integer type, durations beyond any clock (and at the largest setting), the largest duration
/// PostgreSQL takes and one just past it, tiny and huge floats, not-numbers, empty text.
pub const EXTREME_VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "65535",
    "65536",
    "4294967296",
    "18446744073709551616",
    "999999999999999999999999999999",
    "0ms",
    "1ms",
    "24d",
    "25d",
    "36500d",
    "36501d",
    "999999999d",
    "18446744073709551615ms",
    "1e-30",
    "1e30",
    "1e-30/s",
    "1/d",
    "NaN",
    "inf",
    "-0",
    "0.5",
    "",
    " ",
];

/// One command line: the words before the flag (program name, subcommands, required
/// arguments), then `--flag value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub base: Vec<String>,
    pub flag: String,
    pub value: String,
}

impl Probe {
    /// The whole command line, program name first.
    pub fn args(&self) -> Vec<String> {
        let mut args = self.base.clone();
        args.push(format!("--{}", self.flag));
        args.push(self.value.clone());
        args
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} --{} {:?}",
            self.base.join(" "),
            self.flag,
            self.value
        )
    }
}

/// Every long flag that takes a number or a duration in the (sub)command `base` names, with
/// every extreme value. `base` is a command line without the flag: the program name, then the
/// subcommands (and whatever they require), e.g. `["task_producer", "burst", "--count", "1"]`.
/// A flag counts as a number or a duration when clap refuses a word for it (a name or a URL
/// takes any word, and no extreme value means more to it than another word).
pub fn probes(command: &clap::Command, base: &[&str]) -> Vec<Probe> {
    let mut command = command.clone();
    command.build();
    let mut target = &command;
    for word in base.iter().skip(1) {
        if let Some(sub) = target.find_subcommand(word) {
            target = sub;
        }
    }
    let flags: Vec<String> = target
        .get_arguments()
        .filter(|arg| arg.get_action().takes_values())
        .filter_map(|arg| arg.get_long().map(str::to_owned))
        .collect();
    let takes_any_word = |flag: &String| {
        let mut args: Vec<String> = base.iter().map(|word| (*word).to_owned()).collect();
        args.extend([format!("--{flag}"), "word".to_owned()]);
        parses(&command, &args).unwrap_or(false)
    };
    flags
        .iter()
        .filter(|flag| !takes_any_word(flag))
        .flat_map(|flag| {
            EXTREME_VALUES.iter().map(move |value| Probe {
                base: base.iter().map(|word| (*word).to_owned()).collect(),
                flag: flag.clone(),
                value: (*value).to_owned(),
            })
        })
        .collect()
}

/// The probes clap accepts. Parsing each must not panic (the test fails with the probe if it
/// does); a refusal must be a clap error that names the problem.
pub fn accepted(command: &clap::Command, probes: &[Probe]) -> Vec<Probe> {
    probes
        .iter()
        .filter(|probe| {
            parses(command, &probe.args()).unwrap_or_else(|reason| panic!("{probe}: {reason}"))
        })
        .cloned()
        .collect()
}

/// Whether `command` takes `args`; `Err` when parsing panicked.
pub fn parses(command: &clap::Command, args: &[String]) -> Result<bool, String> {
    let command = command.clone();
    let args = args.to_vec();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        command.try_get_matches_from(args).is_ok()
    }))
    .map_err(|_| "parsing panicked".to_owned())
}

/// How a run of the binary went.
#[derive(Debug)]
struct Run {
    probe: Probe,
    exit: Option<i32>,
    stderr: String,
    stopped_in: Duration,
}

/// Runs `binary` with each probe (its program name replaced by the binary), `parallel` at a
/// time, with `env` set. Each run may work for `observe`; one still running is sent SIGTERM and
/// must stop within `stop_within`. Fails, listing every bad run, if any panicked (exit code 101
/// or "panicked" on stderr) or did not stop.
pub fn run_accepted(
    binary: &Path,
    env: &[(&str, &str)],
    probes: &[Probe],
    parallel: usize,
    observe: Duration,
    stop_within: Duration,
) {
    let mut bad = Vec::new();
    for chunk in probes.chunks(parallel.max(1)) {
        let runs: Vec<Run> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|probe| scope.spawn(move || run_one(binary, env, probe, observe, stop_within)))
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("a probe thread does not panic"))
                .collect()
        });
        for run in runs {
            let panicked = run.exit == Some(101) || run.stderr.contains("panicked");
            let hung = run.exit.is_none();
            if panicked || hung {
                let tail: String = run
                    .stderr
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join(" | ");
                bad.push(format!(
                    "{}: exit {:?} after stop {:?}: {tail}",
                    run.probe, run.exit, run.stopped_in
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} bad runs:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

fn run_one(
    binary: &Path,
    env: &[(&str, &str)],
    probe: &Probe,
    observe: Duration,
    stop_within: Duration,
) -> Run {
    let args = probe.args();
    let mut child = Command::new(binary)
        .args(&args[1..])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("{probe}: cannot start {}: {error}", binary.display()));
    // Read stderr as it comes, so a chatty run never blocks on a full pipe.
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut exit = wait_for(&mut child, observe);
    let mut stopped_in = Duration::ZERO;
    if exit.is_none() {
        let stop = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        exit = wait_for(&mut child, stop_within);
        stopped_in = stop.elapsed();
        if exit.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    Run {
        probe: probe.clone(),
        exit: exit.map(|code| code.unwrap_or(-1)),
        stderr: reader.join().unwrap_or_default(),
        stopped_in,
    }
}

/// The exit code (`Some(None)` for a death by signal) once the child exits within `within`.
fn wait_for(child: &mut std::process::Child, within: Duration) -> Option<Option<i32>> {
    crate::testkit::wait::within_blocking(within, || match child.try_wait() {
        Ok(Some(status)) => Ok(Some(status.code())),
        Ok(None) => Err(()),
        Err(_) => Ok(None),
    })
    .ok()
    .flatten()
}
