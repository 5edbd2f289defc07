//! What the agent checks on the node besides its files, and what the results mean: the pure part of reporting.

use crate::{
    api::{
        MIN_RKT_VERSION, NodePhase, RKT_KUBERNETES_NETWORK, RktNodeStateSpec,
        host_paths::RKT_NET_DIR,
    },
    conditions::ConditionUpdate,
    rkt::net_d::NetD,
};

use super::{
    api_service_unit::UnitFinding,
    network_probe::ProbeError,
    systemd::{MIN_SYSTEMD_VERSION, major_version},
};

/// Condition types the agent owns, on the RktNodeState and on the Node.
pub mod condition {
    pub const NETWORK_READY: &str = "RktNetworkReady";
    pub const API_SERVICE_READY: &str = "RktAPIServiceReady";
    pub const VERSION_MATCHES: &str = "RktVersionMatches";
    pub const SYSTEMD_SUPPORTED: &str = "RktSystemdSupported";
    pub const API_SERVICE_UNIT_MANAGED: &str = "RktAPIServiceUnitManaged";
}

/// What the agent saw on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub systemd_version: Option<String>,
    /// The version GetInfo reported, or else `rkt version`; otherwise why neither told it.
    pub rkt_version: Result<String, String>,
    /// `Ok` when the rkt API service answered GetInfo; otherwise why not.
    pub api_service: Result<(), String>,
    /// A foreign file in net.d that defines `rkt.kubernetes.io` before ours.
    pub shadowed_by: Option<String>,
    /// A file in net.d that rkt cannot decode, which fails every pod's network: why.
    pub net_d_broken: Option<String>,
    /// The proof of the contained network (what it showed), or why there is none; `None` without one.
    pub network: Option<Result<String, ProbeError>>,
    /// Why rkt would refuse the configuration on the node now (a foreign file added since the change, say): the
    /// API service would not start again.
    pub config_refused: Option<String>,
    /// Who provides the rkt API service's unit.
    pub unit: UnitFinding,
    /// When the agent last started the service, found stopped, and how that went.
    pub started: Option<String>,
}

/// How applying the spec went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The files are in place.
    Applied,
    /// The files broke the rkt API service and were restored: why.
    RolledBack(String),
    /// The files could not be put in place, or restoring them failed too: why.
    Failed(String),
    /// rkt would refuse the configuration the change makes, so nothing was written: rkt's reason.
    Refused(String),
}

impl Outcome {
    /// Why it is not applied.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Applied => None,
            Self::RolledBack(reason) | Self::Failed(reason) | Self::Refused(reason) => Some(reason),
        }
    }
}

/// The phase and error to report for an outcome and what was observed.
pub fn phase(
    spec: &RktNodeStateSpec,
    outcome: &Outcome,
    observation: &Observation,
) -> (NodePhase, Option<String>) {
    match outcome {
        Outcome::RolledBack(reason) => (NodePhase::RolledBack, Some(reason.clone())),
        Outcome::Failed(reason) | Outcome::Refused(reason) => {
            (NodePhase::Degraded, Some(reason.clone()))
        }
        Outcome::Applied => {
            let problems: Vec<String> = [
                observation
                    .api_service
                    .as_ref()
                    .err()
                    .map(|error| format!("the rkt API service is not healthy: {error}")),
                systemd_problem(observation),
                rkt_version_problem(spec, observation),
                observation
                    .shadowed_by
                    .as_ref()
                    .map(|file| shadow_message(file)),
                observation.net_d_broken.clone(),
                match &observation.network {
                    Some(Err(error)) => Some(format!("the network is not proven: {error}")),
                    _ => None,
                },
                observation.config_refused.clone(),
            ]
            .into_iter()
            .flatten()
            .collect();
            if problems.is_empty() {
                (NodePhase::Applied, None)
            } else {
                (NodePhase::Degraded, Some(problems.join("; ")))
            }
        }
    }
}

/// The agent's four conditions.
pub fn conditions(
    spec: &RktNodeStateSpec,
    outcome: &Outcome,
    observation: &Observation,
) -> Vec<ConditionUpdate> {
    let network = match (outcome, &observation.shadowed_by) {
        (Outcome::Applied, _) if observation.net_d_broken.is_some() => ConditionUpdate::new(
            condition::NETWORK_READY,
            false,
            "NetDBroken",
            observation.net_d_broken.clone().unwrap_or_default(),
        ),
        (Outcome::Applied, Some(file)) => ConditionUpdate::new(
            condition::NETWORK_READY,
            false,
            "ShadowedByForeignConfig",
            shadow_message(file),
        ),
        (Outcome::Applied, None) => match &observation.network {
            None => ConditionUpdate::new(
                condition::NETWORK_READY,
                true,
                "Applied",
                format!(
                    "The node has the network configuration of RktNodeConfig {}.",
                    spec.config_name
                ),
            ),
            Some(Ok(proof)) => ConditionUpdate::new(
                condition::NETWORK_READY,
                true,
                "Proven",
                format!(
                    "The network of RktNodeConfig {} works on the node: {proof}.",
                    spec.config_name
                ),
            ),
            Some(Err(ProbeError::NotReady { reason, message })) => {
                ConditionUpdate::new(condition::NETWORK_READY, false, reason, message.clone())
            }
            Some(Err(ProbeError::Failed(error))) => ConditionUpdate::new(
                condition::NETWORK_READY,
                false,
                "ProbeFailed",
                error.clone(),
            ),
        },
        (Outcome::RolledBack(reason), _) => ConditionUpdate::new(
            condition::NETWORK_READY,
            false,
            "RolledBack",
            format!("The new configuration was rolled back: {reason}"),
        ),
        (Outcome::Failed(reason), _) => ConditionUpdate::new(
            condition::NETWORK_READY,
            false,
            "ApplyFailed",
            reason.clone(),
        ),
        (Outcome::Refused(reason), _) => ConditionUpdate::new(
            condition::NETWORK_READY,
            false,
            "RefusedByRkt",
            format!(
                "The configuration of RktNodeConfig {} was not written: {reason}; the node keeps its previous \
                 configuration.",
                spec.config_name
            ),
        ),
    };
    let started = observation
        .started
        .as_ref()
        .map(|note| format!(" Last start by the agent: {note}"))
        .unwrap_or_default();
    let api_service = match &observation.api_service {
        Ok(()) => ConditionUpdate::new(
            condition::API_SERVICE_READY,
            true,
            "GetInfoAnswered",
            format!(
                "{} answers GetInfo on {}.{started}",
                spec.rkt.api_service_unit, spec.rkt.api_endpoint
            ),
        ),
        Err(error) => ConditionUpdate::new(
            condition::API_SERVICE_READY,
            false,
            "GetInfoFailed",
            format!("{error}{started}"),
        ),
    };
    let version = match rkt_version_problem(spec, observation) {
        None => ConditionUpdate::new(
            condition::VERSION_MATCHES,
            true,
            "VersionMatches",
            format!("The node runs rkt {}, as desired.", spec.rkt.version),
        ),
        Some(problem) => ConditionUpdate::new(
            condition::VERSION_MATCHES,
            false,
            if observation.rkt_version.is_ok() {
                "VersionMismatch"
            } else {
                "VersionUnknown"
            },
            problem,
        ),
    };
    let systemd = match systemd_problem(observation) {
        None => ConditionUpdate::new(
            condition::SYSTEMD_SUPPORTED,
            true,
            "VersionSupported",
            format!(
                "The node runs systemd {}, at least {MIN_SYSTEMD_VERSION}.",
                observation.systemd_version.as_deref().unwrap_or_default()
            ),
        ),
        Some(problem) => ConditionUpdate::new(
            condition::SYSTEMD_SUPPORTED,
            false,
            "VersionTooOld",
            problem,
        ),
    };
    vec![
        network,
        api_service,
        version,
        systemd,
        unit_condition(spec, &observation.unit),
    ]
}

fn unit_condition(spec: &RktNodeStateSpec, unit: &UnitFinding) -> ConditionUpdate {
    let name = &spec.rkt.api_service_unit;
    match unit {
        UnitFinding::Agent(file) => ConditionUpdate::new(
            condition::API_SERVICE_UNIT_MANAGED,
            true,
            "WrittenByAgent",
            format!(
                "The agent writes {} (spec.rkt.apiServiceUnitPolicy {:?}).",
                file.path, spec.rkt.api_service_unit_policy
            ),
        ),
        UnitFinding::LeftAlone { file, difference } => ConditionUpdate::new(
            condition::API_SERVICE_UNIT_MANAGED,
            false,
            "NotWrittenByAgent",
            format!(
                "{name} comes from {file}, which the agent did not write and leaves as it is (spec.rkt.\
                 apiServiceUnitPolicy Replace would replace it). It differs from the agent's: {}",
                if difference.is_empty() {
                    "in comments only".to_owned()
                } else {
                    difference.join(" | ")
                }
            ),
        ),
        UnitFinding::NotManaged => ConditionUpdate::new(
            condition::API_SERVICE_UNIT_MANAGED,
            false,
            "NotManaged",
            format!(
                "spec.rkt.apiServiceUnitPolicy is Leave: {name} is the administrator's to provide."
            ),
        ),
    }
}

fn shadow_message(file: &str) -> String {
    format!(
        "{file} defines the network {RKT_KUBERNETES_NETWORK} and sorts before the operator's file, so rkt uses it \
         instead; remove or rename it"
    )
}

fn systemd_problem(observation: &Observation) -> Option<String> {
    match observation.systemd_version.as_deref() {
        None => Some("the systemd version could not be read over D-Bus".to_owned()),
        Some(version) => match major_version(version) {
            Some(major) if major >= MIN_SYSTEMD_VERSION => None,
            _ => Some(format!(
                "the node runs systemd {version}; Kubernetes' rkt runtime needs at least {MIN_SYSTEMD_VERSION}"
            )),
        },
    }
}

fn rkt_version_problem(spec: &RktNodeStateSpec, observation: &Observation) -> Option<String> {
    let observed = match &observation.rkt_version {
        Ok(version) => version.as_str(),
        Err(why) => {
            return Some(format!(
                "the rkt version could not be read (rkt API GetInfo, then `rkt version`): {why}"
            ));
        }
    };
    let parsed = semver::Version::parse(observed).ok();
    let minimum = semver::Version::parse(MIN_RKT_VERSION).ok();
    if parsed.is_none() || parsed < minimum {
        return Some(format!(
            "the node runs rkt {observed}; Kubernetes needs at least {MIN_RKT_VERSION}"
        ));
    }
    (observed != spec.rkt.version).then(|| {
        let waiting = if spec.rkt.install.is_none() {
            "; spec.rkt.install is not set, so the node waits for a manual upgrade"
        } else {
            ""
        };
        format!(
            "the node runs rkt {observed}, but {} is desired{waiting}",
            spec.rkt.version
        )
    })
}

/// What net.d, as rkt loads it, means for the operator's network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetDFindings {
    /// A foreign file that defines the Kubernetes network before ours, so rkt uses it instead.
    pub shadowed_by: Option<String>,
    /// A file rkt cannot decode, failing every pod's network setup: why.
    pub broken: Option<String>,
}

/// Judges `net_d` for the operator's file named `ours`.
pub fn net_d_findings(net_d: &NetD, ours: &str) -> NetDFindings {
    NetDFindings {
        shadowed_by: net_d
            .defining(RKT_KUBERNETES_NETWORK)
            .filter(|file| file.file != ours)
            .map(|file| format!("{RKT_NET_DIR}/{}", file.file)),
        broken: net_d.undecodable.as_ref().map(|(file, reason)| {
            format!(
                "{RKT_NET_DIR}/{file} cannot be decoded as rkt decodes net.d ({reason}), so rkt fails the network \
                 setup of every pod on this node; fix or remove it"
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RktServiceSpec, UnitPolicy};

    fn spec() -> RktNodeStateSpec {
        RktNodeStateSpec {
            config_name: "bridge".into(),
            files: vec![],
            hash: "h".into(),
            rkt: RktServiceSpec {
                version: "1.30.0".into(),
                api_endpoint: "localhost:15441".into(),
                api_service_unit: "rkt-api.service".into(),
                api_service_unit_policy: UnitPolicy::Create,
                path: None,
                install: None,
            },
            restart_api_service: true,
        }
    }

    fn healthy() -> Observation {
        Observation {
            systemd_version: Some("252.38-1~deb12u1".into()),
            rkt_version: Ok("1.30.0".into()),
            api_service: Ok(()),
            shadowed_by: None,
            net_d_broken: None,
            network: None,
            config_refused: None,
            unit: UnitFinding::Agent(crate::render::api_service_unit::render(&spec().rkt)),
            started: None,
        }
    }

    #[test]
    fn a_healthy_node_is_applied_with_every_condition_true() {
        assert_eq!(
            phase(&spec(), &Outcome::Applied, &healthy()),
            (NodePhase::Applied, None)
        );
        assert!(
            conditions(&spec(), &Outcome::Applied, &healthy())
                .iter()
                .all(|c| c.status)
        );
    }

    #[test]
    fn an_older_rkt_is_degraded_and_named() {
        let observation = Observation {
            rkt_version: Ok("1.29.0".into()),
            ..healthy()
        };
        let (phase, error) = phase(&spec(), &Outcome::Applied, &observation);
        assert_eq!(phase, NodePhase::Degraded);
        let error = error.unwrap();
        assert!(error.contains("rkt 1.29.0, but 1.30.0"), "{error}");
        assert!(error.contains("waits for a manual upgrade"), "{error}");
        let version = &conditions(&spec(), &Outcome::Applied, &observation)[2];
        assert_eq!((version.status, version.reason), (false, "VersionMismatch"));
        assert!(version.message.contains("1.29.0"));
    }

    #[test]
    fn old_systemd_and_rkt_are_refused() {
        let observation = Observation {
            systemd_version: Some("218".into()),
            rkt_version: Ok("1.8.0".into()),
            ..healthy()
        };
        let (_, error) = phase(&spec(), &Outcome::Applied, &observation);
        let error = error.unwrap();
        assert!(
            error.contains("systemd 218") && error.contains("rkt 1.8.0"),
            "{error}"
        );
    }

    #[test]
    fn a_rollback_is_reported_with_its_reason() {
        let outcome = Outcome::RolledBack("GetInfo failed".into());
        assert_eq!(
            phase(&spec(), &outcome, &healthy()),
            (NodePhase::RolledBack, Some("GetInfo failed".into()))
        );
    }

    #[test]
    fn a_refused_change_and_a_configuration_rkt_would_refuse_now_are_degraded() {
        let outcome = Outcome::Refused("rkt would refuse its configuration: both".into());
        let (phase_now, error) = phase(&spec(), &outcome, &healthy());
        assert_eq!(phase_now, NodePhase::Degraded);
        assert!(error.unwrap().contains("both"));
        let network = &conditions(&spec(), &outcome, &healthy())[0];
        assert_eq!((network.status, network.reason), (false, "RefusedByRkt"));
        assert!(network.message.contains("keeps its previous configuration"));

        let observation = Observation {
            config_refused: Some("rkt would refuse its configuration: no rktVersion".into()),
            ..healthy()
        };
        let (phase_now, error) = phase(&spec(), &Outcome::Applied, &observation);
        assert_eq!(phase_now, NodePhase::Degraded);
        assert!(error.unwrap().contains("no rktVersion"));
    }

    #[test]
    fn a_unit_left_alone_is_reported_with_its_difference_but_degrades_nothing() {
        let observation = Observation {
            unit: UnitFinding::LeftAlone {
                file: "/etc/systemd/system/rkt-api.service".into(),
                difference: vec!["-ExecStart=/usr/bin/rkt api-service".into()],
            },
            ..healthy()
        };
        assert_eq!(
            phase(&spec(), &Outcome::Applied, &observation),
            (NodePhase::Applied, None)
        );
        let unit = &conditions(&spec(), &Outcome::Applied, &observation)[4];
        assert_eq!((unit.status, unit.reason), (false, "NotWrittenByAgent"));
        assert!(
            unit.message.contains("-ExecStart=/usr/bin/rkt api-service")
                && unit.message.contains("Replace"),
            "{}",
            unit.message
        );
    }

    #[test]
    fn the_charts_admission_policy_lets_the_agent_write_every_condition_it_reports() {
        let policy = include_str!("../../charts/rktnetes-operator/templates/agent-policy.yaml");
        let listed = policy
            .lines()
            .skip_while(|line| !line.contains("name: ourConditionTypes"))
            .nth(1)
            .expect("the policy's ourConditionTypes");
        for condition in conditions(&spec(), &Outcome::Applied, &healthy()) {
            assert!(
                listed.contains(&format!("'{}'", condition.type_)),
                "{} is not in the chart's agent policy: {listed}",
                condition.type_
            );
        }
    }

    #[test]
    fn only_an_earlier_file_defining_our_network_shadows_ours_and_an_undecodable_one_breaks_all() {
        let file = |name: &str, network: &str| {
            (
                name.to_owned(),
                format!("{{\"name\": \"{network}\", \"type\": \"ptp\"}}").into_bytes(),
            )
        };
        let ours = "00-rktnetes.conf";
        let findings = |entries: &[(String, Vec<u8>)]| net_d_findings(&NetD::load(entries), ours);
        assert_eq!(
            findings(&[
                file(ours, RKT_KUBERNETES_NETWORK),
                file("00-admin.conf", RKT_KUBERNETES_NETWORK)
            ])
            .shadowed_by
            .as_deref(),
            Some("/etc/rkt/net.d/00-admin.conf")
        );
        assert_eq!(
            findings(&[
                file(ours, RKT_KUBERNETES_NETWORK),
                file("00-admin.conf", "other")
            ]),
            NetDFindings::default()
        );
        assert_eq!(
            findings(&[
                file(ours, RKT_KUBERNETES_NETWORK),
                file("50-admin.conf", RKT_KUBERNETES_NETWORK)
            ]),
            NetDFindings::default(),
            "later files are ignored by rkt"
        );
        assert_eq!(
            findings(&[
                file(ours, RKT_KUBERNETES_NETWORK),
                file("00-admin.json", RKT_KUBERNETES_NETWORK)
            ]),
            NetDFindings::default(),
            "rkt reads only *.conf"
        );
        let broken = findings(&[
            file(ours, RKT_KUBERNETES_NETWORK),
            (
                "90-admin.conf".to_owned(),
                br#"{"name": "admin", "mtu": "1500"}"#.to_vec(),
            ),
        ])
        .broken
        .unwrap();
        assert!(
            broken.contains("/etc/rkt/net.d/90-admin.conf") && broken.contains("NetConf.mtu"),
            "{broken}"
        );
    }
}
