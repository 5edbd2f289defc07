//! The operator's controller as the bench runs it: the release binary as a process, with the chart's default
//! settings, its own ServiceAccount's token, and its probes on a loopback port; how long it takes to answer
//! `/readyz` (every cache listed) is measured from the moment it is started.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::processes::Pid;

/// A running controller; killed when dropped.
pub struct Controller {
    child: Child,
    port: u16,
    pub started: Instant,
}

impl Controller {
    /// Starts `binary controller` with the chart's defaults, the agent DaemonSet in `namespace`.
    pub fn start(
        binary: &Path,
        kubeconfig: &Path,
        namespace: &str,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let started = Instant::now();
        let child = Command::new(binary)
            .args([
                "controller",
                "--identity=scale-bench",
                &format!("--namespace={namespace}"),
                &format!("--agent-namespace={namespace}"),
                &format!("--http-address=127.0.0.1:{port}"),
                "--lease-duration=15",
                "--resync-seconds=60",
                "--write-concurrency=8",
            ])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self {
            child,
            port,
            started,
        })
    }

    pub fn pid(&self) -> Pid {
        Pid(i32::try_from(self.child.id()).unwrap_or(i32::MAX))
    }

    /// Waits until `/readyz` answers 200; returns the time since the start.
    pub fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<Duration> {
        loop {
            if self.ready() {
                return Ok(self.started.elapsed());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("the controller exited ({status}) before it was ready");
            }
            if self.started.elapsed() > limit {
                bail!("the controller was not ready within {} s", limit.as_secs());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether `/readyz` answers 200 now.
    pub fn ready(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = "GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.starts_with("HTTP/1.1 200")
    }

    /// The log's path, for a person.
    pub fn log(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!("controller-{name}.log"))
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
