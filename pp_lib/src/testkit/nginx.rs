//! An nginx of the test's own: Debian's program (`scripts/install.sh nginx`), run from a
//! directory of its own on ports reserved for it, in front of an API under test. Never the
//! system's service. Dropping it stops it and removes its directory.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::ports::{PortReservation, reserve_port};
use super::process::KillOnDrop;

/// Where Debian puts the program.
pub const NGINX: &str = "/usr/sbin/nginx";

/// How long nginx is given to stop before its processes are killed.
const STOP_PATIENCE: Duration = Duration::from_secs(10);

/// A running nginx.
#[derive(Debug)]
pub struct TestNginx {
    dir: PathBuf,
    ports: Vec<PortReservation>,
    process: Option<KillOnDrop>,
}

impl TestNginx {
    /// Runs nginx with `site(ports)` inside its `http` block, `ports` being `count` ports reserved
    /// for the site's `listen` directives (on 127.0.0.1), and waits until every one takes
    /// connections. Panics, with nginx's error log, when it does not start; and naming the way
    /// to install it when it is missing.
    pub fn start(count: usize, site: impl FnOnce(&[u16]) -> String) -> TestNginx {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: the tests behind a reverse proxy need Debian's nginx. Run \
             `scripts/install.sh nginx` (`make test` does), or `apt-get install nginx`."
        );
        let ports: Vec<PortReservation> = (0..count).map(|_| reserve_port()).collect();
        let numbers: Vec<u16> = ports.iter().map(PortReservation::port).collect();
        let dir = std::env::temp_dir().join(format!("{}-nginx", super::unique_name()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
        std::fs::write(dir.join("site.conf"), site(&numbers))
            .unwrap_or_else(|error| panic!("cannot write nginx's site: {error}"));
        std::fs::write(dir.join("nginx.conf"), main_config(&dir))
            .unwrap_or_else(|error| panic!("cannot write nginx's configuration: {error}"));
        let mut nginx = TestNginx {
            dir,
            ports,
            process: None,
        };
        nginx.run();
        nginx
    }

    /// The ports the site listens on, in the order the site was given them.
    pub fn ports(&self) -> Vec<u16> {
        self.ports.iter().map(PortReservation::port).collect()
    }

    /// `http://127.0.0.1:<port>` for the `index`th port.
    pub fn url(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[index].port())
    }

    /// What nginx logged so far (its error log, where it says why it refused or failed).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// The directory nginx runs in, for a test to put files in (certificates).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn run(&mut self) {
        let mut command = Command::new(NGINX);
        command
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .arg("-e")
            .arg(self.dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group: the master and its workers end together (see Drop).
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {NGINX}: {error}"));
        self.process = Some(KillOnDrop(child));
        for port in self.ports() {
            let address = SocketAddr::from(([127, 0, 0, 1], port));
            let started = super::wait::within_blocking(super::wait::PATIENCE, || {
                if let Some(process) = self.process.as_mut()
                    && let Ok(Some(status)) = process.try_wait()
                {
                    return Ok(Err(status));
                }
                TcpStream::connect_timeout(&address, Duration::from_secs(1))
                    .map(|_| Ok(()))
                    .map_err(|_| ())
            });
            match started {
                Ok(Ok(())) => {}
                Ok(Err(status)) => panic!(
                    "nginx exited ({status}) instead of listening on {address}:\n{}",
                    self.error_log()
                ),
                Err(()) => panic!(
                    "nginx did not listen on {address} within {:?}:\n{}",
                    super::wait::PATIENCE,
                    self.error_log()
                ),
            }
        }
    }
}

impl Drop for TestNginx {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            // SIGTERM: nginx's fast shutdown, the master ending its workers; then whatever is
            // left of the group is killed.
            let group = format!("-{}", process.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            let _ = super::wait::within_blocking(STOP_PATIENCE, || match process.try_wait() {
                Ok(None) => Err(()),
                _ => Ok(()),
            });
            let _ = Command::new("kill")
                .args(["-KILL", "--", &group])
                .stderr(Stdio::null())
                .status();
            drop(process);
        }
        if std::thread::panicking() {
            eprintln!("--- nginx's error log ---\n{}", self.error_log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// nginx's main configuration: everything it writes in `dir`, its workers as the user running
/// the test, one worker, the site inside `http`.
fn main_config(dir: &Path) -> String {
    let dir = dir.display();
    // As root, nginx hands its workers to `nobody`, who cannot write in the test's directory.
    let user = if is_root() { "user root;\n" } else { "" };
    format!(
        "{user}daemon off;\n\
         worker_processes 1;\n\
         pid {dir}/nginx.pid;\n\
         error_log {dir}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         \x20   access_log {dir}/access.log;\n\
         \x20   client_body_temp_path {dir}/client_body;\n\
         \x20   proxy_temp_path {dir}/proxy;\n\
         \x20   fastcgi_temp_path {dir}/fastcgi;\n\
         \x20   uwsgi_temp_path {dir}/uwsgi;\n\
         \x20   scgi_temp_path {dir}/scgi;\n\
         \x20   include {dir}/site.conf;\n\
         }}\n"
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}
