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

    pub fn log(&self) -> &Path {
        &self.log
    }
}

fn open_log(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// A shared service and the commands that take it down and bring it back. Each can be replaced
/// through the environment, for machines whose services are managed otherwise.
pub struct Service {
    pub name: &'static str,
    down: String,
    up: String,
}

impl Service {
    /// PostgreSQL, crash-stopped (`-m immediate`: no checkpoint, recovery at start).
    pub fn postgres() -> anyhow::Result<Self> {
        let version = std::fs::read_dir("/etc/postgresql")
            .ok()
            .and_then(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .max()
            })
            .unwrap_or_default();
        let cluster = format!("pg_ctlcluster --skip-systemctl-redirect {version} main");
        Ok(Service {
            name: "PostgreSQL",
            down: env_or(
                "PP_CHAOS_PG_DOWN",
                &format!("timeout 60 {cluster} stop -m immediate"),
            ),
            up: env_or("PP_CHAOS_PG_UP", &format!("timeout 120 {cluster} start")),
        })
    }

    /// RabbitMQ's application stopped and started: every connection closed, queues kept.
    pub fn rabbitmq() -> Self {
        Service {
            name: "RabbitMQ",
            down: env_or("PP_CHAOS_RABBITMQ_DOWN", "timeout 120 rabbitmqctl stop_app"),
            up: env_or("PP_CHAOS_RABBITMQ_UP", "timeout 120 rabbitmqctl start_app"),
        }
    }

    /// Redis shut down (it keeps nothing on disk here) and started again, empty.
    pub fn redis() -> Self {
        Service {
            name: "Redis",
            down: env_or(
                "PP_CHAOS_REDIS_DOWN",
                "timeout 30 redis-cli -h 127.0.0.1 -p 6379 shutdown nosave",
            ),
            up: env_or(
                "PP_CHAOS_REDIS_UP",
                "timeout 30 redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''",
            ),
        }
    }

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

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
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
