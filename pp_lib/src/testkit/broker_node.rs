//! A RabbitMQ node of the test's own, for the tests that must restart, stop or reconfigure a
//! broker: the shared one on 5672 is never touched.
//!
//! [`TestBrokerNode::start`] runs the installed `rabbitmq-server` as a node named
//! `pp_test_…@localhost`, its AMQP listener on a reserved port of 127.0.0.1 and its distribution
//! (clustering and CLI) port on another one (never the default AMQP port + 20000, which the
//! shared node holds), its data, logs, configuration and crash dump in a directory of its own.
//! Should another program take a port before the node binds it, the node starts again on
//! others. Dropping the value stops the node and removes the directory. A node starts in a few
//! seconds.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::config::SecretUrl;
use crate::testkit::ports::{PORT_ATTEMPTS, PortReservation, reserve_port};
use crate::testkit::wait::within_blocking;

/// Where Debian installs them (`make setup` does).
const RABBITMQ_SERVER: &str = "/usr/sbin/rabbitmq-server";
const RABBITMQCTL: &str = "/usr/sbin/rabbitmqctl";
const RABBITMQ_QUEUES: &str = "/usr/sbin/rabbitmq-queues";

/// Seconds after which a silent peer of a cluster is declared down (Erlang's `net_ticktime`).
pub const NET_TICKTIME_SECONDS: u64 = 10;

/// Seconds any `rabbitmqctl` call may take (a boot, a restart, a stop), at most.
const CTL_TIMEOUT_SECONDS: &str = "120";

/// How long a node has to write its pid file once started.
const PID_FILE_PATIENCE: Duration = Duration::from_secs(120);

/// How long the `rabbitmq-server` wrappers have to end once the node's process is gone.
const REAP_PATIENCE: Duration = Duration::from_secs(30);

/// What a node that would not start printed, when it says its port was taken.
const PORT_TAKEN_SIGNS: [&str; 2] = ["eaddrinuse", "dist_port_already_used"];

/// What a node sees of its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// The nodes it sees running, by name, sorted.
    pub running: Vec<String>,
    /// Whether it lists a network partition it saw (nodes that lost sight of each other); kept
    /// until the node restarts.
    pub partitioned: bool,
}

/// A running RabbitMQ node of the test's own.
#[derive(Debug)]
pub struct TestBrokerNode {
    name: String,
    dir: PathBuf,
    amqp_port: PortReservation,
    dist_port: PortReservation,
    /// The `rabbitmq-server` run last, in the foreground: a node that cannot start ends it at
    /// once, and what it printed is kept (`-detached` loses both, and a taken distribution
    /// port left a wait of minutes for a pid file that never came).
    server: Mutex<Option<Child>>,
    /// The feature flags a new node turns on (`RABBITMQ_FEATURE_FLAGS`), when not all.
    feature_flags: Option<&'static str>,
}

/// Every feature flag of RabbitMQ 3.10 but `stream_queue`: a cluster upgraded from an older
/// version, where nobody turned the new flags on.
const ALL_BUT_STREAMS: &str = "classic_mirrored_queue_version,implicit_default_bindings,\
                               maintenance_mode_status,quorum_queue,user_limits,\
                               virtual_host_metadata";

/// Why a node did not start.
#[derive(Debug)]
enum BootFailure {
    /// One of its ports was taken by another program between its reservation and the boot.
    PortTaken(String),
    Failed(String),
}

impl std::fmt::Display for BootFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootFailure::PortTaken(report) | BootFailure::Failed(report) => f.write_str(report),
        }
    }
}

impl TestBrokerNode {
    /// Starts a node and waits until it takes connections. Blocks: call it from a blocking
    /// thread in async tests ([`TestBrokerNode::start_async`]).
    pub fn start() -> TestBrokerNode {
        TestBrokerNode::start_reserving(reserve_port)
    }

    /// [`TestBrokerNode::start`] on the ports `reserve` gives, the AMQP port first: on other
    /// ones when a port was taken before the node bound it, [`PORT_ATTEMPTS`] times at most.
    pub fn start_reserving(reserve: impl FnMut() -> PortReservation) -> TestBrokerNode {
        TestBrokerNode::start_with(reserve, None)
    }

    /// A node with the `stream_queue` feature flag off, as on a cluster upgraded from before
    /// RabbitMQ 3.9 where nobody turned it on.
    pub fn start_without_streams() -> TestBrokerNode {
        TestBrokerNode::start_with(reserve_port, Some(ALL_BUT_STREAMS))
    }

    fn start_with(
        mut reserve: impl FnMut() -> PortReservation,
        feature_flags: Option<&'static str>,
    ) -> TestBrokerNode {
        for program in [RABBITMQ_SERVER, RABBITMQCTL] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: this test starts a RabbitMQ node of its own from the \
                 installed rabbitmq-server (Debian: apt-get install rabbitmq-server; `make setup` \
                 installs it where no RabbitMQ runs)."
            );
        }
        let mut taken = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let mut node = TestBrokerNode::prepare(reserve(), reserve());
            node.feature_flags = feature_flags;
            match node.try_boot() {
                Ok(()) => return node,
                Err(BootFailure::PortTaken(report)) => taken.push(report),
                Err(failure) => panic!("{failure}"),
            }
        }
        panic!(
            "a RabbitMQ node could not start: another program took its port {PORT_ATTEMPTS} \
             times, on other ports each time:\n{}",
            taken.join("\n")
        );
    }

    /// A node's name, directory and configuration, not yet booted.
    fn prepare(amqp_port: PortReservation, dist_port: PortReservation) -> TestBrokerNode {
        let name = format!("{}@localhost", super::unique_name());
        let dir = std::env::temp_dir().join(name.replace('@', "-"));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
        let config = dir.join("rabbitmq.conf");
        // As `make cluster-up`'s nodes: partitions healed by restarting the losing side
        // (autoheal: a node frozen past the tick time rejoins by itself, which pause_minority
        // never did), and a silent peer declared down within 10 s rather than the default 60 s.
        std::fs::write(
            &config,
            format!(
                "listeners.tcp.local = 127.0.0.1:{}\n\
                 cluster_partition_handling = autoheal\n",
                amqp_port.port()
            ),
        )
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", config.display()));
        let advanced = dir.join("advanced.config");
        std::fs::write(
            &advanced,
            format!("[{{kernel, [{{net_ticktime, {NET_TICKTIME_SECONDS}}}]}}].\n"),
        )
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", advanced.display()));
        hand_to_rabbitmq(&dir);
        TestBrokerNode {
            name,
            dir,
            amqp_port,
            dist_port,
            server: Mutex::new(None),
            feature_flags: None,
        }
    }

    /// Runs the node (again, after [`TestBrokerNode::kill`]: its data, and so its cluster, are
    /// kept) and waits until it takes connections.
    pub fn boot(&self) {
        if let Err(failure) = self.try_boot() {
            panic!("{failure}");
        }
    }

    fn try_boot(&self) -> Result<(), BootFailure> {
        self.reap();
        let console = File::options()
            .create(true)
            .append(true)
            .open(self.console())
            .unwrap_or_else(|error| panic!("cannot open {}: {error}", self.console().display()));
        let output = console
            .try_clone()
            .expect("a second handle on an open file");
        let mut command = Command::new(RABBITMQ_SERVER);
        command
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.amqp_port.port().to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.port().to_string())
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq.conf"))
            .env(
                "RABBITMQ_ADVANCED_CONFIG_FILE",
                self.dir.join("advanced.config"),
            )
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("data"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", self.dir.join("plugins"))
            .env("RABBITMQ_PID_FILE", self.pid_file())
            .env("ERL_CRASH_DUMP", self.dir.join("erl_crash.dump"))
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(console);
        if let Some(flags) = self.feature_flags {
            command.env("RABBITMQ_FEATURE_FLAGS", flags);
        }
        // Not in the test's process group: a ^C to the tests does not take the node down
        // before its drop stops it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut server = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {RABBITMQ_SERVER}: {error}"));
        // Until the pid file is there, or the server has ended.
        let pid_written = within_blocking(PID_FILE_PATIENCE, || {
            if self.pid_file().exists() {
                Ok(Ok(()))
            } else {
                match server.try_wait() {
                    Ok(Some(status)) => Ok(Err(format!("rabbitmq-server exited ({status})"))),
                    _ => Err(format!("no pid file within {PID_FILE_PATIENCE:?}")),
                }
            }
        })
        .and_then(|written| written);
        *self
            .server
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(server);
        if let Err(what) = pid_written {
            return Err(self.failure(&what));
        }
        let pid_file = self.pid_file().display().to_string();
        let waited = self.ctl_command(&["wait", &pid_file]).output();
        match waited {
            Ok(output) if output.status.success() => Ok(()),
            Ok(output) => Err(self.failure(&format!(
                "`rabbitmqctl wait` failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stdout).trim()
            ))),
            Err(error) => panic!("cannot run {RABBITMQCTL}: {error}"),
        }
    }

    /// A boot that failed with `what`: whatever is left of the node is ended, and what it
    /// printed says whether a port was taken.
    fn failure(&self, what: &str) -> BootFailure {
        if let Ok(pid) = std::fs::read_to_string(self.pid_file()) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
            let _ = std::fs::remove_file(self.pid_file());
        }
        self.reap();
        let printed = self.logs();
        let report = format!(
            "RabbitMQ node {} (AMQP port {}, distribution port {}) did not start: {what}; its \
             output is in {}",
            self.name,
            self.amqp_port.port(),
            self.dist_port.port(),
            self.dir.display()
        );
        if PORT_TAKEN_SIGNS.iter().any(|sign| printed.contains(sign)) {
            BootFailure::PortTaken(report)
        } else {
            BootFailure::Failed(report)
        }
    }

    /// Waits for the `rabbitmq-server` started last to end, once the node's process is gone
    /// (its wrappers follow it); kills its process group if it does not.
    fn reap(&self) {
        let mut server = self
            .server
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(mut child) = server.take() else {
            return;
        };
        let ended = within_blocking(REAP_PATIENCE, || match child.try_wait() {
            Ok(None) => Err(()),
            _ => Ok(()),
        });
        if ended.is_err() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
        }
    }

    /// Where `rabbitmq-server` writes what it prints.
    fn console(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// Kills the node's process with SIGKILL, as a crash does, and waits until it is gone.
    pub fn kill(&self) {
        let pid = std::fs::read_to_string(self.pid_file())
            .unwrap_or_else(|error| panic!("no pid file for {}: {error}", self.name));
        let pid = pid.trim();
        let killed = Command::new("kill")
            .args(["-KILL", pid])
            .status()
            .unwrap_or_else(|error| panic!("cannot run kill: {error}"));
        assert!(killed.success(), "kill -KILL {pid} ({}) failed", self.name);
        crate::testkit::wait::eventually_blocking(&format!("{} to be gone", self.name), || {
            if Path::new(&format!("/proc/{pid}")).exists() {
                Err("still running")
            } else {
                Ok(())
            }
        });
        let _ = std::fs::remove_file(self.pid_file());
        self.reap();
    }

    /// Stops the node's process (SIGSTOP): it holds its connections and answers nothing, as a
    /// machine that froze does, until [`TestBrokerNode::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused node run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = std::fs::read_to_string(self.pid_file())
            .unwrap_or_else(|error| panic!("no pid file for {}: {error}", self.name));
        let sent = Command::new("kill")
            .args([signal, pid.trim()])
            .status()
            .unwrap_or_else(|error| panic!("cannot run kill: {error}"));
        assert!(sent.success(), "kill {signal} {} failed", self.name);
    }

    /// Stops the node the way an operator's restart does (`rabbitmqctl stop`: connections
    /// closed, queues' state written), and waits until its process is gone; [`TestBrokerNode::boot`]
    /// runs it again.
    pub fn stop(&self) {
        let pid_file = self.pid_file().display().to_string();
        self.ctl(&["stop", &pid_file]);
        let _ = std::fs::remove_file(self.pid_file());
        self.reap();
    }

    /// Client connections this node holds now (the cluster lists every node's; a connection's
    /// process id names the node it is on).
    pub fn connections(&self) -> usize {
        let listed = self.ctl(&["list_connections", "-q", "--no-table-headers", "pid"]);
        self.own_processes(&String::from_utf8_lossy(&listed.stdout))
    }

    /// Consumers of `queue` whose channel is on this node.
    pub fn consumers_of(&self, queue: &str) -> usize {
        let listed = self.ctl(&[
            "list_consumers",
            "-q",
            "--no-table-headers",
            "queue_name",
            "channel_pid",
        ]);
        let text = String::from_utf8_lossy(&listed.stdout);
        let pids: String = text
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .filter(|(name, _)| name.trim() == queue)
            .map(|(_, pid)| format!("{}\n", pid.trim()))
            .collect();
        self.own_processes(&pids)
    }

    /// How many of the Erlang process ids listed one per line (`<node.N.N.N>`) are this node's.
    fn own_processes(&self, pids: &str) -> usize {
        let mine = format!("<{}.", self.name);
        pids.lines()
            .filter(|line| line.trim().starts_with(&mine))
            .count()
    }

    /// Whether stopping this node now would leave a quorum queue without a majority of its
    /// members running (`rabbitmq-queues check_if_node_is_quorum_critical` fails then, as it
    /// does while the node is still joining its queues' members back).
    pub fn is_quorum_critical(&self) -> bool {
        let mut command = Command::new("timeout");
        command
            .arg(CTL_TIMEOUT_SECONDS)
            .arg(RABBITMQ_QUEUES)
            .args(["-n", &self.name, "--timeout", CTL_TIMEOUT_SECONDS])
            .arg("check_if_node_is_quorum_critical");
        !command.output().is_ok_and(|output| output.status.success())
    }

    /// Joins this node to `other`'s cluster (it must hold no data of its own yet).
    pub fn join(&self, other: &TestBrokerNode) {
        self.ctl(&["stop_app"]);
        self.ctl(&["reset"]);
        self.ctl(&["join_cluster", other.name()]);
        self.ctl(&["start_app"]);
    }

    /// [`TestBrokerNode::start`] on a blocking thread.
    pub async fn start_async() -> TestBrokerNode {
        tokio::task::spawn_blocking(TestBrokerNode::start)
            .await
            .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
    }

    /// [`TestBrokerNode::start_without_streams`] on a blocking thread.
    pub async fn start_async_without_streams() -> TestBrokerNode {
        tokio::task::spawn_blocking(TestBrokerNode::start_without_streams)
            .await
            .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub fn url(&self) -> SecretUrl {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port.port())
            .parse()
            .expect("a well-formed AMQP URL")
    }

    /// The node's name, `pp_test_…@localhost`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops the broker application (every connection closed, none taken) and starts it again,
    /// as `rabbitmqctl stop_app && rabbitmqctl start_app` does. Blocks until it takes
    /// connections again.
    pub fn restart(&self) {
        self.ctl(&["stop_app"]);
        self.ctl(&["start_app"]);
    }

    /// Runs `rabbitmqctl -n <node> args` within its time bound; panics with its output when it
    /// fails.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let output = self
            .ctl_command(args)
            .output()
            .unwrap_or_else(|error| panic!("cannot run {RABBITMQCTL}: {error}"));
        self.check(&format!("rabbitmqctl {}", args.join(" ")), &output);
        output
    }

    /// Runs `rabbitmqctl -n <node> args` within its time bound; its output, or `None` when it
    /// failed (a node that is stopped, paused or still booting).
    pub fn try_ctl(&self, args: &[&str]) -> Option<Output> {
        self.ctl_command(args)
            .output()
            .ok()
            .filter(|output| output.status.success())
    }

    /// The names of the nodes this node sees running in its cluster, and whether it sees a
    /// partition; `None` while it does not answer.
    pub fn cluster_view(&self) -> Option<ClusterView> {
        let output = self.try_ctl(&["cluster_status", "--formatter", "json"])?;
        let status: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        let mut running: Vec<String> = status["running_nodes"]
            .as_array()?
            .iter()
            .filter_map(|name| name.as_str().map(str::to_owned))
            .collect();
        running.sort();
        let partitioned = status["partitions"]
            .as_object()
            .is_some_and(|partitions| !partitions.is_empty());
        Some(ClusterView {
            running,
            partitioned,
        })
    }

    /// `rabbitmqctl -n <node> args`, bounded: its own `--timeout`, and timeout(1) around it.
    fn ctl_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("timeout");
        command
            .arg(CTL_TIMEOUT_SECONDS)
            .arg(RABBITMQCTL)
            .args(["-n", &self.name, "--timeout", CTL_TIMEOUT_SECONDS])
            .args(args);
        command
    }

    fn check(&self, what: &str, output: &Output) {
        assert!(
            output.status.success(),
            "`{what}` failed for node {} ({}):\n{}\n{}\nlogs in {}",
            self.name,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.dir.join("log").display()
        );
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("node.pid")
    }
}

impl Drop for TestBrokerNode {
    fn drop(&mut self) {
        // A failing test removes the node's directory with everything that says what the node
        // did: its log's last lines go to the test's output first.
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(LOG_TAIL_LINES));
        }
        // Given the pid file, `stop` returns once the node's process is gone, so the directory
        // is no longer written to.
        // A node killed and not booted again has nothing left to stop; one left frozen by a
        // failing test runs again first, or `stop` would wait on it for nothing.
        if let Ok(pid) = std::fs::read_to_string(self.pid_file()) {
            let _ = Command::new("kill").args(["-CONT", pid.trim()]).status();
        }
        if self.pid_file().exists() {
            let pid_file = self.pid_file().display().to_string();
            let stopped = self.ctl_command(&["stop", &pid_file]).output();
            if !stopped.is_ok_and(|output| output.status.success()) {
                eprintln!("warning: could not stop RabbitMQ node {}", self.name);
            }
        }
        self.reap();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How many of a node's last log lines a failing test prints.
const LOG_TAIL_LINES: usize = 60;

impl TestBrokerNode {
    /// Everything the node printed: its console output, then its log files.
    fn logs(&self) -> String {
        let mut printed = std::fs::read_to_string(self.console()).unwrap_or_default();
        if let Ok(logs) = std::fs::read_dir(self.dir.join("log")) {
            for log in logs.flatten() {
                printed.push_str(&std::fs::read_to_string(log.path()).unwrap_or_default());
            }
        }
        printed
    }

    /// The last `lines` lines of the node's logs (console output and log files), headed by its
    /// name.
    fn log_tail(&self, lines: usize) -> String {
        let printed = self.logs();
        let all: Vec<&str> = printed.lines().collect();
        let last = &all[all.len().saturating_sub(lines)..];
        format!(
            "--- the last {} lines of RabbitMQ node {}'s logs ---\n{}",
            last.len(),
            self.name,
            last.join("\n")
        )
    }
}

/// Run as root, `rabbitmq-server` drops to the `rabbitmq` user: the node's directory must be
/// theirs. (Run as anyone else, it stays that user, who owns the directory already.)
fn hand_to_rabbitmq(dir: &Path) {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0");
    if root {
        let status = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(dir)
            .status()
            .unwrap_or_else(|error| panic!("cannot run chown: {error}"));
        assert!(status.success(), "chown rabbitmq {} failed", dir.display());
    }
}
