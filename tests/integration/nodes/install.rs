//! rkt installed by the agent (`spec.rkt.install`): release archives of the stand-in in rkt's layout, signed with
//! GnuPG as rkt's were, served over HTTPS from this host to the nodes, downloaded, verified, unpacked and switched
//! to on each node, in waves; a release that does not verify or arrive whole changes nothing, and one whose API
//! service fails is switched back.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use base64::{Engine, prelude::BASE64_STANDARD};
use rktnetes_e2e::releases::{Release, SigningKey, build_release};

use super::*;
use crate::support::{
    chart,
    controller::ChartController,
    kind_profile,
    nodes::host_address,
    release_server::{ReleaseServer, Serve},
    scenario::{degraded_with, last_error, main_pid},
};

/// Where the test nodes' agents find the certificate authorities that release downloads trust
/// (`RKTNETES_RELEASE_CA_FILE` of the harness's `agent.env`).
const RELEASE_CA: &str = "/etc/rktnetes/release-ca.crt";
/// The rkt the node runs once the agent installed one.
const CURRENT_RKT: &str = "/opt/rkt/current/rkt";
/// A release whose API service exits at start.
const BROKEN_VERSION: &str = "1.31.0";
/// The path at which the mirror cuts the 1.30.0 archive off half-way.
const CUT_OFF_PATH: &str = "/cut/rkt-v1.30.0.tar.gz";
/// Where the test nodes' agents find the keys that may sign a release (`RKTNETES_RELEASE_KEYS_FILE`).
const RELEASE_KEYS: &str = "/etc/rktnetes/release-keys.asc";
/// A signature over the 1.30.0 archive by a key that is not a release key.
const STRANGERS_SIGNATURE: &str = "/stranger/rkt-v1.30.0.tar.gz.asc";

/// The stand-in's releases, served to the nodes, which trust the mirror.
struct Mirror {
    server: ReleaseServer,
    host: String,
    releases: BTreeMap<&'static str, Release>,
    /// The GnuPG homes of the release key and of a stranger's.
    _keys: tempfile::TempDir,
}

impl Mirror {
    fn start(nodes: &[&str]) -> Self {
        let binaries = Path::new(env!("CARGO_BIN_EXE_rktnetes"))
            .parent()
            .expect("the binaries' directory");
        let standin = binaries.join("rkt");
        let standin = std::fs::read(&standin)
            .unwrap_or_else(|error| panic!("reading {}: {error}", standin.display()));
        let releases: BTreeMap<&'static str, Release> = [
            ("1.29.0", None),
            ("1.30.0", None),
            (BROKEN_VERSION, Some("exit")),
        ]
        .into_iter()
        .map(|(version, fault)| {
            let rkt = rkt_standin::stamp(&standin, version, fault)
                .unwrap_or_else(|error| panic!("stamping rkt {version}: {error}"));
            let release = build_release(&rkt, version)
                .unwrap_or_else(|error| panic!("building rkt {version}: {error:#}"));
            (version, release)
        })
        .collect();
        let mut paths: BTreeMap<String, Serve> = releases
            .values()
            .map(|release| {
                (
                    format!("/{}", release.file_name),
                    Serve::Whole(Arc::new(release.bytes.clone())),
                )
            })
            .collect();
        paths.insert(
            CUT_OFF_PATH.to_owned(),
            Serve::CutOff(Arc::new(releases["1.30.0"].bytes.clone())),
        );
        // Each release signed by the release key, and the 1.30.0 archive by a stranger too.
        let keys = tempfile::tempdir().expect("a directory for the keys");
        let signing = |name| {
            SigningKey::new(keys.path(), name, "rsa2048")
                .unwrap_or_else(|error| panic!("a signing key: {error:#}"))
        };
        let (release_key, stranger) = (signing("release"), signing("stranger"));
        let public_key = &release_key.public_key;
        let sign = |key: &SigningKey, archive: &Path| {
            key.sign(archive, true)
                .unwrap_or_else(|error| panic!("signing {}: {error:#}", archive.display()))
        };
        for release in releases.values() {
            let archive = keys.path().join(&release.file_name);
            std::fs::write(&archive, &release.bytes).expect("the archive can be written");
            paths.insert(
                format!("/{}.asc", release.file_name),
                Serve::Whole(Arc::new(sign(&release_key, &archive))),
            );
            if release.file_name == "rkt-v1.30.0.tar.gz" {
                paths.insert(
                    STRANGERS_SIGNATURE.to_owned(),
                    Serve::Whole(Arc::new(sign(&stranger, &archive))),
                );
            }
        }
        let cluster = cluster();
        let plane = cluster.plane.as_ref().expect("the local control plane");
        let (certificate, key) = plane.api_serving_identity();
        let server = ReleaseServer::start((&certificate, &key), paths);
        let ca = BASE64_STANDARD
            .decode(chart::endpoint(cluster).ca_data)
            .expect("the cluster's CA is base64");
        let ca = String::from_utf8(ca).expect("the cluster's CA is PEM");
        // What an earlier scenario installed goes first (the agent put the hand-written unit back when its config
        // went), so that each scenario downloads what it tests.
        for node in nodes {
            node_ok(
                node,
                &format!(
                    "mkdir -p /etc/rktnetes && printf '%s' '{ca}' > {RELEASE_CA} \
                     && printf '%s' '{public_key}' > {RELEASE_KEYS} && rm -rf /opt/rkt"
                ),
            );
        }
        Self {
            server,
            host: host_address(),
            releases,
            _keys: keys,
        }
    }

    fn url(&self, path: &str) -> String {
        self.server.url(&self.host, path)
    }

    /// The bridge example on `pool`, installing `version` from the mirror, signed by the release key (and writing
    /// the API service's unit over the test nodes' hand-written one, which runs /usr/bin/rkt).
    fn config(&self, name: &str, pool: &str, version: &str) -> TestConfig {
        let release = &self.releases[version];
        bridge_example()
            .named(name)
            .in_pool(pool)
            .set("/spec/rkt/version", version)
            .set("/spec/rkt/apiServiceUnitPolicy", "Replace")
            .set(
                "/spec/rkt/install",
                json!({
                    "url": self.url(&format!("/{}", release.file_name)),
                    "sha512": release.sha512_hex,
                    "signatureUrl": self.url(&format!("/{}.asc", release.file_name)),
                }),
            )
    }
}

/// `rkt version` of the installed rkt on `node`.
fn installed_version(node: &str) -> String {
    node_ok(
        node,
        &format!("{CURRENT_RKT} version | sed -n 's/^rkt Version: //p'"),
    )
    .trim()
    .to_owned()
}

/// How many times the node's rkt API service has started since the node booted (the stand-in logs each start).
fn api_service_starts(node: &str) -> usize {
    node_ok(
        node,
        "journalctl -q -b -o cat -u rkt-api.service | grep -c 'API service starting' || true",
    )
    .trim()
    .parse()
    .unwrap_or(0)
}

/// The figures (`key=value`) of the agent's last log line on `node` that contains `message`.
fn logged_figures(node: &str, message: &str) -> BTreeMap<String, String> {
    let line = node_ok(
        node,
        &format!("journalctl -q -b -o cat -u rktnetes-agent | grep -F \"{message}\" | tail -n 1"),
    );
    line.split_whitespace()
        .filter_map(|word| word.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.trim_matches('"').to_owned()))
        .collect()
}

/// Prints how long each step of the upgrade took on each node, from the agents' own logs: the README's upgrade
/// figures (a benchmark's output, not an assertion).
fn print_upgrade_steps(nodes: &[&str]) {
    println!(
        "upgrade steps on the nspawn nodes, in ms: node, download (bytes), verify, unpack, switch, restart, health"
    );
    for node in nodes {
        let installed = logged_figures(node, "installed the rkt release");
        let switched = logged_figures(node, "switched the node's rkt");
        let restarted = logged_figures(node, "restarted the rkt API service");
        let figure = |figures: &BTreeMap<String, String>, key: &str| {
            figures.get(key).cloned().unwrap_or_else(|| "?".to_owned())
        };
        println!(
            "{node}\t{} ({})\t{}\t{}\t{}\t{}\t{}",
            figure(&installed, "download_ms"),
            figure(&installed, "bytes"),
            figure(&installed, "verify_ms"),
            figure(&installed, "unpack_ms"),
            figure(&switched, "switch_ms"),
            figure(&restarted, "restart_ms"),
            figure(&restarted, "health_ms"),
        );
    }
}

#[tokio::test]
async fn an_install_source_upgrades_rkt_in_waves_and_a_release_that_fails_is_switched_back() {
    if kind_profile() {
        return;
    }
    let _serial = serial().lock().await;
    let (client, controller): (_, ChartController) = setup().await;
    let mirror = Mirror::start(&*POOL);

    apply_config(&client, mirror.config("install", "e2e", "1.29.0")).await;
    converged(&client, "install", POOL.len()).await;
    for node in *POOL {
        assert_eq!(installed_version(node), "1.29.0", "{node}");
    }
    let starts: Vec<usize> = POOL.iter().map(|node| api_service_starts(node)).collect();

    let unavailable = UnavailableWatch::start(client.clone()).await;
    apply_config(&client, mirror.config("install", "e2e", "1.30.0")).await;
    converged(&client, "install", POOL.len()).await;
    let most = unavailable.most();
    assert!(
        most <= 1,
        "{most} nodes were upgraded at once with maxUnavailable 1"
    );
    print_upgrade_steps(&*POOL);
    let states_now = states(&client).await;
    for (node, before) in POOL.iter().zip(&starts) {
        assert_eq!(installed_version(node), "1.30.0", "{node}: rkt version");
        let status = states_now[*node].status.as_ref().expect("a status");
        assert_eq!(
            status.observed_rkt_version.as_deref(),
            Some("1.30.0"),
            "{node}: GetInfo"
        );
        assert_eq!(
            api_service_starts(node) - before,
            1,
            "{node}: rkt-api.service was not restarted exactly once"
        );
        let releases = node_ok(node, "ls /opt/rkt/releases");
        assert_eq!(
            releases.lines().map(|name| &name[..7]).collect::<Vec<_>>(),
            ["v1.29.0", "v1.30.0"],
            "{node}: the releases kept"
        );
    }

    // A release whose API service exits at start: the first node of the wave switches back, and the rollout halts.
    let upgraded = states(&client).await[POOL[0]].spec.hash.clone();
    let bytes: BTreeMap<&str, String> = POOL
        .iter()
        .map(|node| (*node, node_ok(node, &format!("sha512sum < {CURRENT_RKT}"))))
        .collect();
    apply_config(&client, mirror.config("install", "e2e", BROKEN_VERSION)).await;
    let (node, state) = eventually("a node reports RolledBack", REACTION, async || {
        states(&client).await.into_iter().find(|(_, state)| {
            state.status.as_ref().and_then(|status| status.phase) == Some(NodePhase::RolledBack)
        })
    })
    .await;
    let error = last_error(&state);
    assert!(
        error.contains("GetInfo") && error.contains("/opt/rkt/current"),
        "{node}: {error}"
    );
    assert_eq!(
        node_ok(&node, &format!("sha512sum < {CURRENT_RKT}")),
        bytes[node.as_str()],
        "{node}: the previous rkt is not back byte for byte"
    );
    assert_eq!(installed_version(&node), "1.30.0");
    assert_eq!(
        node_ok(&node, "systemctl is-active rkt-api.service").trim(),
        "active"
    );
    let state = eventually(
        "the node's GetInfo reports 1.30.0 again",
        REACTION,
        async || {
            let state = states(&client).await.remove(&node)?;
            (state.status.as_ref()?.observed_rkt_version.as_deref() == Some("1.30.0"))
                .then_some(state)
        },
    )
    .await;
    assert_eq!(
        state.status.and_then(|status| status.phase),
        Some(NodePhase::RolledBack)
    );
    controller.two_more_passes(&client).await;
    let states_now = states(&client).await;
    for other in POOL.iter().filter(|other| **other != node) {
        assert_eq!(
            states_now[*other].spec.hash, upgraded,
            "the rollout went past the node that rolled back"
        );
        assert_eq!(installed_version(other), "1.30.0", "{other}");
    }
}

#[tokio::test]
async fn a_release_that_does_not_verify_or_arrive_whole_changes_nothing_on_the_node() {
    if kind_profile() {
        return;
    }
    let _serial = serial().lock().await;
    let (client, _controller) = setup().await;
    let node = *OLD_RKT_NODE;
    let mirror = Mirror::start(&[node]);
    let pid = main_pid(node);
    let nothing_installed = || {
        assert_eq!(
            node_ok(
                node,
                "ls -A /opt/rkt/releases 2>/dev/null; test -e /opt/rkt/current && echo current; true"
            )
            .trim(),
            "",
            "{node}: something was left in /opt/rkt"
        );
        assert_eq!(main_pid(node), pid, "{node}: rkt-api.service was restarted");
    };

    // The 1.29.0 archive's digest for the 1.30.0 archive.
    let wrong = mirror.config("unverified", "old-rkt", "1.30.0").set(
        "/spec/rkt/install/sha512",
        mirror.releases["1.29.0"].sha512_hex.as_str(),
    );
    apply_config(&client, wrong).await;
    let error = last_error(&degraded_with(&client, node, "has SHA-512").await);
    assert!(
        error.contains(&mirror.releases["1.30.0"].sha512_hex)
            && error.contains(&mirror.releases["1.29.0"].sha512_hex),
        "both digests: {error}"
    );
    nothing_installed();

    // Signed by a key that is not a release key.
    let strangers = mirror.config("unverified", "old-rkt", "1.30.0").set(
        "/spec/rkt/install/signatureUrl",
        mirror.url(STRANGERS_SIGNATURE).as_str(),
    );
    apply_config(&client, strangers).await;
    degraded_with(&client, node, "not among the release keys").await;
    nothing_installed();

    // Cut off half-way, each of the three attempts.
    let cut = mirror
        .config("unverified", "old-rkt", "1.30.0")
        .set("/spec/rkt/install/url", mirror.url(CUT_OFF_PATH).as_str());
    apply_config(&client, cut).await;
    let state = degraded_with(&client, node, "cut off").await;
    assert!(
        last_error(&state).contains(CUT_OFF_PATH),
        "{}",
        last_error(&state)
    );
    assert!(
        mirror.server.requests(CUT_OFF_PATH) >= 3,
        "the agent tries three times"
    );
    // A cut-off download may be tried again at the next check, so what it left is looked for once the node has moved
    // on to a config it does not download again.

    // Larger than the limit, refused for good: nothing of it, or of the cut-off downloads, is left.
    let limited = mirror
        .config("unverified", "old-rkt", "1.30.0")
        .set("/spec/rkt/install/sizeLimit", 1000);
    apply_config(&client, limited).await;
    degraded_with(&client, node, "sizeLimit (1000 bytes)").await;
    nothing_installed();
}
