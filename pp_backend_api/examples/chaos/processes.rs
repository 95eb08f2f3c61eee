//! The real processes of a chaos run — the API, two consumers, the producer — and the shared
//! services it restarts: each started, SIGKILLed, stopped and started again for real.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// One of pp's binaries, run with its environment and arguments, its output appended to a log.
pub struct Process {
    pub name: &'static str,
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    pub fn new(
        name: &'static str,
        binary: PathBuf,
        args: &[&str],
        env: &[(String, String)],
        logs: &Path,
    ) -> Self {
        Process {
            name,
            binary,
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            env: env.to_vec(),
            log: logs.join(format!("{name}.log")),
            child: None,
        }
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = open_log(&self.log)?;
        let child = Command::new(&self.binary)
            .args(&self.args)
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("the log file")?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!("cannot start the {} ({})", self.name, self.binary.display())
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no chance to finish anything.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGTERM, then waits (SIGKILL after `patience`); the exit code, if it exited by itself.
    pub async fn stop(&mut self, patience: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        match tokio::time::timeout(patience, child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => {
                let _ = child.kill().await;
                None
            }
        }
    }

    /// Waits for the process to end by itself, at most `patience`; its exit code.
    pub async fn wait(&mut self, patience: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        match tokio::time::timeout(patience, child.wait()).await {
            Ok(Ok(status)) => {
                self.child = None;
                status.code()
            }
            _ => None,
        }
    }
}

fn open_log(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// The commands that take each shared service down and bring it back, for machines whose
/// services are managed otherwise than by this one's defaults.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceCommands {
    /// Crash-stops PostgreSQL [default: pg_ctlcluster … main stop -m immediate].
    #[arg(long, env = "PP_CHAOS_PG_DOWN", value_name = "COMMAND")]
    pub pg_down: Option<String>,
    /// Starts PostgreSQL again [default: pg_ctlcluster … main start].
    #[arg(long, env = "PP_CHAOS_PG_UP", value_name = "COMMAND")]
    pub pg_up: Option<String>,
    /// Stops RabbitMQ's application (connections closed, queues kept).
    #[arg(
        long,
        env = "PP_CHAOS_RABBITMQ_DOWN",
        value_name = "COMMAND",
        default_value = "timeout 120 rabbitmqctl stop_app"
    )]
    pub rabbitmq_down: String,
    /// Starts RabbitMQ's application again.
    #[arg(
        long,
        env = "PP_CHAOS_RABBITMQ_UP",
        value_name = "COMMAND",
        default_value = "timeout 120 rabbitmqctl start_app"
    )]
    pub rabbitmq_up: String,
    /// Shuts Redis down (it keeps nothing on disk here).
    #[arg(
        long,
        env = "PP_CHAOS_REDIS_DOWN",
        value_name = "COMMAND",
        default_value = "timeout 30 redis-cli -h 127.0.0.1 -p 6379 shutdown nosave"
    )]
    pub redis_down: String,
    /// Starts Redis again, empty.
    #[arg(
        long,
        env = "PP_CHAOS_REDIS_UP",
        value_name = "COMMAND",
        default_value = "timeout 30 redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''"
    )]
    pub redis_up: String,
}

/// The shared services a run restarts.
pub struct Services {
    pub postgres: Service,
    pub rabbitmq: Service,
    pub redis: Service,
}

impl Services {
    pub fn new(commands: &ServiceCommands) -> Self {
        let cluster = format!(
            "pg_ctlcluster --skip-systemctl-redirect {} main",
            postgres_version()
        );
        Services {
            postgres: Service {
                name: "PostgreSQL",
                down: commands
                    .pg_down
                    .clone()
                    .unwrap_or_else(|| format!("timeout 60 {cluster} stop -m immediate")),
                up: commands
                    .pg_up
                    .clone()
                    .unwrap_or_else(|| format!("timeout 120 {cluster} start")),
            },
            rabbitmq: Service {
                name: "RabbitMQ",
                down: commands.rabbitmq_down.clone(),
                up: commands.rabbitmq_up.clone(),
            },
            redis: Service {
                name: "Redis",
                down: commands.redis_down.clone(),
                up: commands.redis_up.clone(),
            },
        }
    }
}

/// The newest PostgreSQL cluster version under /etc/postgresql (Debian's layout).
fn postgres_version() -> String {
    std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .max()
        })
        .unwrap_or_default()
}

/// A shared service and the commands that take it down and bring it back.
pub struct Service {
    pub name: &'static str,
    down: String,
    up: String,
}

impl Service {
    pub async fn down(&self) -> anyhow::Result<()> {
        shell(&self.down)
            .await
            .with_context(|| format!("cannot take {} down", self.name))
    }

    pub async fn up(&self) -> anyhow::Result<()> {
        shell(&self.up)
            .await
            .with_context(|| format!("cannot bring {} back", self.name))
    }
}

async fn shell(command: &str) -> anyhow::Result<()> {
    let output = Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run `{command}`"))?;
    if !output.status.success() {
        bail!(
            "`{command}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
