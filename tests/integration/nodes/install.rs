//! rkt installed by the agent (`spec.rkt.install`): release archives of the stand-in in rkt's layout, signed with
//! GnuPG as rkt's were, served over HTTPS from this host to the nodes, downloaded, verified, unpacked and switched
//! to on each node, in waves; a release that does not verify or arrive whole changes nothing, and one whose API
//! service fails is switched back.

use std::{
    collections::BTreeMap,
    hash::{DefaultHasher, Hash, Hasher},
    net::IpAddr,
    path::Path,
    sync::{Arc, LazyLock},
    time::Duration,
};

use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::ConfigMap};
use kube::Client;
use rktnetes_e2e::releases::{Release, SigningKey, build_release};

use super::*;
use crate::support::{
    chart::{self, AGENT_NAMESPACE},
    controller::ChartController,
    kind_profile,
    nodes::host_address,
    release_server::{MirrorAuthority, ReleaseServer, Serve},
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

/// What the mirrors of this test binary publish, made once: the stand-in's releases, signed by a release key (GnuPG
/// takes seconds to make one), and the mirror's certificate authority (in the kind lane, new trust rolls the agents).
struct Published {
    releases: BTreeMap<&'static str, Release>,
    paths: BTreeMap<String, Serve>,
    /// The armored public release key, which the nodes trust.
    release_keys: String,
    authority: MirrorAuthority,
}

static PUBLISHED: LazyLock<Published> = LazyLock::new(Published::make);

impl Published {
    fn make() -> Self {
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
        Self {
            releases,
            paths,
            release_keys: release_key.public_key.clone(),
            authority: MirrorAuthority::new(),
        }
    }
}

/// The stand-in's releases, served to the nodes, which trust the mirror.
struct Mirror {
    server: ReleaseServer,
    releases: &'static BTreeMap<&'static str, Release>,
}

impl Mirror {
    /// Starts a mirror and makes `nodes` trust it and the release key: in the local lane through the files the
    /// harness's agents are pointed at, in the kind lane through the chart's values, as an admin would.
    async fn start(client: &Client, nodes: &[&str]) -> Self {
        let published = &*PUBLISHED;
        let host: IpAddr = host_address()
            .parse()
            .expect("the nodes reach this host at an IP address");
        let server = ReleaseServer::start(&published.authority, host, published.paths.clone());
        if kind_profile() {
            trust_through_the_chart(client, published).await;
        }
        // What an earlier scenario installed goes first (the agent put the hand-written unit back when its config
        // went), so that each scenario downloads what it tests.
        for node in nodes {
            let trust_files = if kind_profile() {
                String::new()
            } else {
                format!(
                    "mkdir -p /etc/rktnetes && printf '%s' '{}' > {RELEASE_CA} \
                     && printf '%s' '{}' > {RELEASE_KEYS} && ",
                    published.authority.certificate_pem, published.release_keys
                )
            };
            node_ok(node, &format!("{trust_files}rm -rf /opt/rkt"));
        }
        Self {
            server,
            releases: &published.releases,
        }
    }

    fn url(&self, path: &str) -> String {
        self.server.url(path)
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

/// The mirror's CA and the release key in ConfigMaps of the agents' namespace, named by their content, given to the
/// chart (`agent.releaseCAConfigMap`, `agent.releaseKeysConfigMap`); returns once the controller runs with them and
/// has rolled the agent DaemonSet, if there is one, so that every agent runs with them.
async fn trust_through_the_chart(client: &Client, published: &Published) {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), AGENT_NAMESPACE);
    let mut names = Vec::new();
    for (prefix, key, content) in [
        (
            "rkt-release-ca",
            "ca.crt",
            &published.authority.certificate_pem,
        ),
        ("rkt-release-keys", "keys.asc", &published.release_keys),
    ] {
        let mut hasher = DefaultHasher::new();
        content.hash(&mut hasher);
        let name = format!("{prefix}-{:016x}", hasher.finish());
        let config_map = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": AGENT_NAMESPACE},
            "data": {key: content},
        });
        config_maps
            .patch(
                &name,
                &PatchParams::apply("rktnetes-e2e").force(),
                &Patch::Apply(config_map),
            )
            .await
            .unwrap_or_else(|error| panic!("cannot apply ConfigMap {name}: {error}"));
        names.push(name);
    }
    // What an earlier run of the suite gave the chart, kept until the chart no longer names it.
    let earlier: Vec<String> = config_maps
        .list(&Default::default())
        .await
        .expect("the agents' ConfigMaps")
        .into_iter()
        .map(|config_map| config_map.name_any())
        .filter(|name| {
            ["rkt-release-ca-", "rkt-release-keys-"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
                && !names.contains(name)
        })
        .collect();
    let cluster = cluster();
    chart::install(
        cluster,
        &[
            "--reuse-values",
            "--set",
            &format!("agent.releaseCAConfigMap={}", names[0]),
            "--set",
            &format!("agent.releaseKeysConfigMap={}", names[1]),
        ],
    );
    chart::wait_for_controller(cluster);
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), AGENT_NAMESPACE);
    eventually(
        "the agents run with the mirror's CA and the release key",
        Duration::from_secs(300),
        async || {
            // No DaemonSet while no config selects a node: the first one the controller makes has them.
            let Some(daemonset) = daemonsets
                .get_opt("rktnetes-agent")
                .await
                .map_err(|error| error.to_string())?
            else {
                return Ok(());
            };
            let template = serde_json::to_string(&daemonset.spec.template)
                .map_err(|error| error.to_string())?;
            if !names
                .iter()
                .all(|name| template.contains(&format!("\"{name}\"")))
            {
                return Err("the DaemonSet does not mount the ConfigMaps yet".to_owned());
            }
            let status = daemonset.status.unwrap_or_default();
            let rolled = status.observed_generation >= daemonset.metadata.generation
                && status.updated_number_scheduled == Some(status.desired_number_scheduled)
                && status.number_available == Some(status.desired_number_scheduled);
            if rolled {
                Ok(())
            } else {
                Err(format!("rolling: {status:?}"))
            }
        },
    )
    .await;
    for name in earlier {
        let _ = config_maps.delete(&name, &Default::default()).await;
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
    let _serial = serial().lock().await;
    let (client, controller): (_, ChartController) = setup().await;
    let mirror = Mirror::start(&client, &*POOL).await;

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
    if !kind_profile() {
        // The README's figures come from the nspawn nodes, whose agents log to the journal.
        print_upgrade_steps(&*POOL);
    }
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
        states(&client)
            .await
            .into_iter()
            .find(|(_, state)| state.current_phase() == Some(NodePhase::RolledBack))
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
    assert_eq!(state.current_phase(), Some(NodePhase::RolledBack));
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
    let _serial = serial().lock().await;
    let (client, _controller) = setup().await;
    let node = *OLD_RKT_NODE;
    let mirror = Mirror::start(&client, &[node]).await;
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
