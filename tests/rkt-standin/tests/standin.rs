//! The rkt stand-in binary, run as a test node runs it: `rkt version`, `rkt api-service` answering the agent's
//! client and rkt's generated gRPC client, refusing an invalid configuration, and stopping on SIGTERM; and the
//! binary stamped as a release, as the harness's release archives hold it.

use std::{
    fs,
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use rkt_standin::{BUILD_VERSION, rkt_version, stamp};
use rktnetes_operator::rkt::{
    RktApiError, get_info,
    v1alpha::{
        GetInfoRequest, ImageFilter, ListImagesRequest, ListPodsRequest,
        public_api_client::PublicApiClient,
    },
    version_from_cli,
};

const RKT: &str = env!("CARGO_BIN_EXE_rkt");

/// How long a process may take to start or stop on a busy two-core machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// The stand-in with none of the caller's settings that change what it reports.
fn rkt() -> Command {
    rkt_at(Path::new(RKT))
}

/// The stand-in at `binary` (a stamped copy), as [`rkt`].
fn rkt_at(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    command
        .env_remove("RKT_STANDIN_VERSION")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

/// The built stand-in stamped as release `version` (broken by `fault`), an executable file in `dir`.
fn stamped_release(dir: &Path, version: &str, fault: Option<&str>) -> PathBuf {
    let stamped = stamp(&fs::read(RKT).unwrap(), version, fault).unwrap();
    let path = dir.join(format!("rkt-{version}"));
    fs::write(&path, stamped).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Runs `command` to its end (see [`unless_busy`]).
fn output_of(command: &mut Command) -> std::process::Output {
    unless_busy(|| command.output())
}

/// What `run` (a start of a freshly written binary) gives, retried while the file is busy: another test's child,
/// forked while the file was still open for writing, holds it until that child execs.
fn unless_busy<T>(mut run: impl FnMut() -> std::io::Result<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match run() {
            Err(error)
                if error.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            result => return result.unwrap(),
        }
    }
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rkt-standin-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

fn write(dir: &Path, relative: &str, content: &str) -> PathBuf {
    let path = dir.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, content).unwrap();
    path
}

/// A port nothing listens on (the kernel's pick, released again), for a client to be refused on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `rkt api-service`, its stderr in a file; killed if a test fails before stopping it.
struct ApiService {
    child: Child,
    stderr: PathBuf,
    /// Where it listens, once it has said so ([`ApiService::wait_ready`]).
    endpoint: String,
}

impl ApiService {
    /// Starts it on a loopback port of the kernel's choosing, which it reports in its log.
    fn start(dir: &Path, args: &[&str]) -> Self {
        Self::start_binary(Path::new(RKT), dir, args)
    }

    /// Starts the stand-in at `binary` (a stamped copy) as [`ApiService::start`] does.
    fn start_binary(binary: &Path, dir: &Path, args: &[&str]) -> Self {
        let stderr = dir.join("api-service.stderr");
        let child = unless_busy(|| {
            rkt_at(binary)
                .args(args)
                .args(["--listen", "127.0.0.1:0"])
                .stdout(Stdio::null())
                .stderr(fs::File::create(&stderr)?)
                .spawn()
        });
        Self {
            child,
            stderr,
            endpoint: String::new(),
        }
    }

    /// The address in its `Bound to 127.0.0.1:PORT` line, which follows rkt's `Listening on 127.0.0.1:0`.
    fn reported_endpoint(&self) -> Option<String> {
        let stderr = self.stderr();
        let line = stderr.lines().find(|line| line.contains("Bound to "))?;
        let (_, bound) = line.rsplit_once("Bound to ")?;
        Some(bound.trim().to_owned())
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until GetInfo answers, failing if the service exits first.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("api-service exited with {status}:\n{}", self.stderr());
            }
            if self.endpoint.is_empty() {
                self.endpoint = self.reported_endpoint().unwrap_or_default();
            }
            if !self.endpoint.is_empty()
                && get_info(&self.endpoint, Duration::from_millis(500))
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "api-service not ready:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the service to exit, keeping this test's runtime free to run its client connections meanwhile
    /// (a graceful shutdown waits for them to close).
    async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "api-service still running:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ApiService {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn version_prints_rkt_1_lines() {
    let output = rkt().arg("version").output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert_eq!(lines[0], format!("rkt Version: {BUILD_VERSION}"));
    assert_eq!(lines[1], "appc Version: 0.8.11");
    assert!(lines[2].starts_with("Go Version: ") && lines[2].len() > "Go Version: ".len());
    assert_eq!(
        lines[3],
        format!(
            "Go OS/Arch: linux/{}",
            if cfg!(target_arch = "x86_64") {
                "amd64"
            } else {
                std::env::consts::ARCH
            }
        )
    );
    assert_eq!(lines[4], "Features: -TPM +SDJOURNAL");
}

#[test]
fn the_version_can_be_chosen_at_start() {
    let output = rkt()
        .env("RKT_STANDIN_VERSION", "1.9.1")
        .arg("version")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(
        String::from_utf8(output.stdout)
            .unwrap()
            .starts_with("rkt Version: 1.9.1\n")
    );
}

#[test]
fn a_stamped_release_reports_its_own_version_whatever_the_environment() {
    let dir = scratch();
    let release = stamped_release(dir.path(), "1.29.0", None);
    let output = output_of(
        rkt_at(&release)
            .env("RKT_STANDIN_VERSION", "9.9.9")
            .arg("version"),
    );
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("rkt Version: 1.29.0\n"), "{stdout}");
    // The unstamped build still takes the variable.
    let output = output_of(rkt().env("RKT_STANDIN_VERSION", "9.9.9").arg("version"));
    assert!(
        String::from_utf8(output.stdout)
            .unwrap()
            .starts_with("rkt Version: 9.9.9\n")
    );
}

#[tokio::test]
async fn a_release_stamped_exit_fails_its_api_service_before_listening() {
    let dir = scratch();
    let release = stamped_release(dir.path(), "1.29.0", Some("exit"));
    // `rkt version` still answers, with the release's version.
    let output = output_of(rkt_at(&release).arg("version"));
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8(output.stdout)
            .unwrap()
            .starts_with("rkt Version: 1.29.0\n")
    );

    let system = format!(
        "--system-config={}",
        dir.path().join("usr/lib/rkt").display()
    );
    let local = format!("--local-config={}", dir.path().join("etc/rkt").display());
    let mut service =
        ApiService::start_binary(&release, dir.path(), &["api-service", &system, &local]);
    let status = service.wait_exit().await;
    assert_eq!(status.code(), Some(254), "{status}");
    let stderr = service.stderr();
    assert!(
        stderr.contains("api-service: release fault") && stderr.contains("\"1.29.0 exit\""),
        "{stderr}"
    );
    assert!(!stderr.contains("Listening on"), "{stderr}");
}

#[test]
fn help_says_it_is_a_stand_in() {
    let output = rkt().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(
        help.contains("stand-in") && help.contains("archived"),
        "{help}"
    );
}

#[tokio::test]
async fn api_service_answers_get_info_list_pods_and_list_images_and_stops_on_sigterm() {
    let dir = scratch();
    let local = dir.path().join("etc/rkt");
    let data = dir.path().join("var/lib/rkt");
    fs::create_dir_all(&data).unwrap();
    write(
        &local,
        "stage1.d/rktnetes.json",
        r#"{"rktKind": "stage1", "rktVersion": "v1", "name": "coreos.com/rkt/stage1-coreos", "version": "1.30.0"}"#,
    );
    write(
        &local,
        "paths.d/paths.json",
        &format!(
            r#"{{"rktKind": "paths", "rktVersion": "v1", "data": "{}"}}"#,
            data.display()
        ),
    );
    let system = dir.path().join("usr/lib/rkt");
    let system_flag = format!("--system-config={}", system.display());
    let local_flag = local.display().to_string();
    // Global flags before and after the subcommand, as rkt takes them.
    let mut service = ApiService::start(
        dir.path(),
        &[
            &system_flag,
            "--insecure-options=image",
            "api-service",
            "--local-config",
            &local_flag,
        ],
    );
    service.wait_ready().await;

    let info = get_info(&service.endpoint, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(info.rkt_version, BUILD_VERSION);
    assert_eq!(info.appc_version, "0.8.11");
    assert_eq!(info.api_version, "1.0.0-alpha");

    let mut client = PublicApiClient::connect(format!("http://{}", service.endpoint))
        .await
        .unwrap();
    let flags = client
        .get_info(GetInfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap()
        .global_flags
        .unwrap();
    assert_eq!(
        flags.dir,
        fs::canonicalize(&data).unwrap().display().to_string()
    );
    assert_eq!(flags.system_config_dir, system.display().to_string());
    assert_eq!(flags.local_config_dir, local_flag);
    assert_eq!(flags.user_config_dir, "");
    assert_eq!(flags.insecure_flags, "image");
    assert!(!flags.trust_keys_from_https);
    let pods = client
        .list_pods(ListPodsRequest {
            filters: Vec::new(),
            detail: true,
        })
        .await
        .unwrap()
        .into_inner()
        .pods;
    assert!(pods.is_empty());
    // As rkt with an empty image store: an empty list, with filters or without.
    for filters in [
        Vec::new(),
        vec![ImageFilter {
            prefixes: vec!["coreos.com/rkt/stage1".to_owned()],
            ..ImageFilter::default()
        }],
    ] {
        let images = client
            .list_images(ListImagesRequest {
                filters,
                detail: false,
            })
            .await
            .unwrap()
            .into_inner()
            .images;
        assert!(images.is_empty());
    }

    let killed = Command::new("kill")
        .args(["-TERM", &service.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let stopping = Instant::now();
    let status = service.wait_exit().await;
    assert!(status.success(), "{status}:\n{}", service.stderr());
    assert!(
        service.stderr().contains("API service exiting"),
        "{}",
        service.stderr()
    );
    // The open client connection closed on the server's GOAWAY: the service did not sit out its grace period.
    assert!(
        !service.stderr().contains("still open"),
        "{}",
        service.stderr()
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "took {:?}",
        stopping.elapsed()
    );
    drop(client);
}

#[tokio::test]
async fn api_service_defaults_match_rkt() {
    let dir = scratch();
    let system = format!(
        "--system-config={}",
        dir.path().join("usr/lib/rkt").display()
    );
    let local = format!("--local-config={}", dir.path().join("etc/rkt").display());
    let mut service = ApiService::start(dir.path(), &["api-service", &system, &local]);
    service.wait_ready().await;
    let mut client = PublicApiClient::connect(format!("http://{}", service.endpoint))
        .await
        .unwrap();
    let info = client
        .get_info(GetInfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    let flags = info.global_flags.unwrap();
    assert_eq!(flags.insecure_flags, "none");
    assert!(!flags.trust_keys_from_https);
    // With neither --dir nor paths.d, rkt's data directory (resolved if it exists on this machine).
    let default_dir =
        fs::canonicalize("/var/lib/rkt").unwrap_or_else(|_| PathBuf::from("/var/lib/rkt"));
    assert_eq!(flags.dir, default_dir.display().to_string());
}

#[tokio::test]
async fn api_service_refuses_to_start_on_a_stage1_conflict() {
    let dir = scratch();
    let local = dir.path().join("etc/rkt");
    let first = write(
        &local,
        "stage1.d/00-vendor.json",
        r#"{"rktKind": "stage1", "rktVersion": "v1", "name": "coreos.com/rkt/stage1-coreos", "version": "1.30.0"}"#,
    );
    let second = write(
        &local,
        "stage1.d/rktnetes.json",
        r#"{"rktKind": "stage1", "rktVersion": "v1", "name": "coreos.com/rkt/stage1-kvm", "version": "1.30.0"}"#,
    );
    let system = format!(
        "--system-config={}",
        dir.path().join("usr/lib/rkt").display()
    );
    let local = format!("--local-config={}", local.display());
    let mut service = ApiService::start(dir.path(), &["api-service", &system, &local]);
    let status = service.wait_exit().await;
    assert_eq!(status.code(), Some(254), "{status}");
    let stderr = service.stderr();
    assert!(stderr.contains("cannot get configuration"), "{stderr}");
    // As rkt, the socket is opened before the configuration is read.
    assert!(
        stderr
            .find("Listening on")
            .is_some_and(|listening| Some(listening) < stderr.find("cannot get configuration")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&first.display().to_string())
            && stderr.contains(&second.display().to_string()),
        "{stderr}"
    );
}

#[tokio::test]
async fn get_info_against_a_closed_port_fails_fast_and_says_why() {
    let endpoint = format!("127.0.0.1:{}", closed_port());
    let timeout = Duration::from_secs(10);
    let started = Instant::now();
    let error = get_info(&endpoint, timeout).await.unwrap_err();
    assert!(
        started.elapsed() < timeout / 2,
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(error, RktApiError::Connect { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains(&endpoint), "{message}");
    assert!(
        message.to_lowercase().contains("connection refused"),
        "{message}"
    );
}

#[tokio::test]
async fn get_info_refuses_an_endpoint_that_is_not_host_and_port() {
    for endpoint in [
        "localhost",
        "localhost:15441/v1",
        "http://localhost:15441",
        "",
    ] {
        let error = get_info(endpoint, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            matches!(error, RktApiError::InvalidEndpoint { .. }),
            "{endpoint}: {error}"
        );
    }
}

#[tokio::test]
async fn get_info_against_a_silent_server_times_out() {
    // Accepts connections (the kernel does, from the backlog) but never speaks HTTP/2.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = silent.local_addr().unwrap().to_string();
    let timeout = Duration::from_millis(500);
    let started = Instant::now();
    let error = get_info(&endpoint, timeout).await.unwrap_err();
    assert!(started.elapsed() < PATIENCE, "took {:?}", started.elapsed());
    assert!(matches!(error, RktApiError::Timeout { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains(&endpoint) && message.contains("500ms"),
        "{message}"
    );
}

#[tokio::test]
async fn version_from_cli_reads_the_stand_in() {
    let version = version_from_cli(tokio::process::Command::new(RKT), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(version, rkt_version());
}

#[tokio::test]
async fn version_from_cli_names_a_missing_binary() {
    let missing = "/nonexistent/rkt";
    let error = version_from_cli(
        tokio::process::Command::new(missing),
        Duration::from_secs(10),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, RktApiError::Spawn { .. }), "{error}");
    assert!(error.to_string().contains(missing), "{error}");
}

#[test]
fn a_bad_command_line_exits_as_rkts_does() {
    // Flags and commands rkt cannot parse: 254, as every rkt failure.
    for args in [
        &["--no-such-flag", "version"][..],
        &["--insecure-options=bogus", "version"],
        &["--insecure-options=image,image", "version"],
        &["no-such-command"],
        &["api-service", "--listen"],
    ] {
        let output = rkt().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(254), "{args:?}: {output:?}");
        assert!(!output.stderr.is_empty(), "{args:?}");
    }
    // No command: rkt says so and shows its help, with 2.
    let output = rkt().output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing command"));
}
