//! A RabbitMQ node of the test's own, for the tests that must restart, stop or reconfigure a
//! broker: the shared one on 5672 is never touched.
//!
//! [`TestBrokerNode::start`] runs the installed `rabbitmq-server` as a node named
//! `pp_test_…@localhost`, its AMQP listener on a free port of 127.0.0.1 and its distribution
//! (clustering and CLI) port on another one (never the default AMQP port + 20000, which the
//! shared node holds), its data, logs and configuration in a directory of its own. Dropping the
//! value stops the node and removes the directory. A node starts in a few seconds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::config::SecretUrl;
use crate::testkit::process::free_port;

/// Where Debian installs them (`make setup` does).
const RABBITMQ_SERVER: &str = "/usr/sbin/rabbitmq-server";
const RABBITMQCTL: &str = "/usr/sbin/rabbitmqctl";

/// Seconds any `rabbitmqctl` call may take (a boot, a restart, a stop), at most.
const CTL_TIMEOUT_SECONDS: &str = "120";

/// A running RabbitMQ node of the test's own.
#[derive(Debug)]
pub struct TestBrokerNode {
    name: String,
    dir: PathBuf,
    amqp_port: u16,
    dist_port: u16,
}

impl TestBrokerNode {
    /// Starts a node and waits until it takes connections. Blocks: call it from a blocking
    /// thread in async tests ([`TestBrokerNode::start_async`]).
    pub fn start() -> TestBrokerNode {
        for program in [RABBITMQ_SERVER, RABBITMQCTL] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: this test starts a RabbitMQ node of its own from the \
                 installed rabbitmq-server (Debian: apt-get install rabbitmq-server; `make setup` \
                 installs it where no RabbitMQ runs)."
            );
        }
        let name = format!("{}@localhost", super::unique_name());
        let dir = std::env::temp_dir().join(name.replace('@', "-"));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
        let amqp_port = free_port();
        let config = dir.join("rabbitmq.conf");
        std::fs::write(
            &config,
            format!("listeners.tcp.local = 127.0.0.1:{amqp_port}\n"),
        )
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", config.display()));
        hand_to_rabbitmq(&dir);
        let node = TestBrokerNode {
            name,
            dir,
            amqp_port,
            dist_port: free_port(),
        };
        node.boot();
        node
    }

    /// Runs the node (again, after [`TestBrokerNode::kill`]: its data, and so its cluster, are
    /// kept) and waits until it takes connections.
    pub fn boot(&self) {
        let started = Command::new(RABBITMQ_SERVER)
            .arg("-detached")
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq.conf"))
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("data"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", self.dir.join("plugins"))
            .env("RABBITMQ_PID_FILE", self.pid_file())
            .output()
            .unwrap_or_else(|error| panic!("cannot run {RABBITMQ_SERVER}: {error}"));
        self.check("rabbitmq-server -detached", &started);
        self.ctl(&["wait", &self.pid_file().display().to_string()]);
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

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub fn url(&self) -> SecretUrl {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
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
        // Given the pid file, `stop` returns once the node's process is gone, so the directory
        // is no longer written to.
        // A node killed and not booted again has nothing left to stop.
        if self.pid_file().exists() {
            let pid_file = self.pid_file().display().to_string();
            let stopped = self.ctl_command(&["stop", &pid_file]).output();
            if !stopped.is_ok_and(|output| output.status.success()) {
                eprintln!("warning: could not stop RabbitMQ node {}", self.name);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
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
