//! The Argo CD health check of RktNodeConfig (`charts/rktnetes-operator/argocd/health.lua`), run by a real Lua 5.1
//! interpreter (`lua5.1`; Argo CD runs it in gopher-lua, a Lua 5.1) on RktNodeConfigs whose status comes from the
//! controller's own status function, so the conditions, reasons and messages are the ones a cluster shows.
//!
//! Lua 5.1 has no JSON parser, so the object is handed over as a Lua table literal generated from its JSON, with
//! `null`s left out as Argo CD leaves them out (it converts the object to a table with nil for null).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{ErrorKind, Write as _},
    process::{Command, Stdio},
};

use rktnetes_operator::{
    api::{NodePhase, RktNodeConfigStatus},
    controller::{
        config_status::{ConfigObservation, config_status},
        rollout::{Halt, NodeProgress, Wave},
    },
};
use serde_json::Value;

use crate::support::{
    fixtures::{TestConfig, now, progress},
    repo_path,
};

const SCRIPT: &str = "charts/rktnetes-operator/argocd/health.lua";
const CONFIGMAP_PATCH: &str = "charts/rktnetes-operator/argocd/argocd-cm-patch.yaml";
const CONFIGMAP_KEY: &str = "resource.customizations.health.rktnetes.io_RktNodeConfig";
/// The health statuses Argo CD accepts from a script; anything else it shows as Unknown.
const ARGO_STATUSES: [&str; 6] = [
    "Healthy",
    "Progressing",
    "Degraded",
    "Suspended",
    "Missing",
    "Unknown",
];

// --- running the script ------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
struct Health {
    status: String,
    message: String,
}

/// A Lua string literal holding `text` exactly: quotes, backslashes and control characters escaped (control
/// characters as three-digit decimal escapes, so a digit after one cannot join it), other bytes as they are.
fn lua_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => write!(out, "\\{:03}", u32::from(c)).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A Lua expression building the table Argo CD builds from the object's JSON.
fn lua_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("nil"),
        Value::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
        Value::Number(number) => write!(out, "{number}").unwrap(),
        Value::String(text) => lua_string(text, out),
        Value::Array(items) => {
            out.push('{');
            for item in items {
                lua_value(item, out);
                out.push_str(", ");
            }
            out.push('}');
        }
        Value::Object(fields) => {
            out.push('{');
            for (key, field) in fields.iter().filter(|(_, field)| !field.is_null()) {
                out.push('[');
                lua_string(key, out);
                out.push_str("] = ");
                lua_value(field, out);
                out.push_str(", ");
            }
            out.push('}');
        }
    }
}

/// Runs the health script on `object` as Argo CD does: `obj` a global, the script a chunk whose result is the
/// health table, with the base and table libraries only (Argo CD opens no string, math or io library for custom
/// health checks).
fn health(object: &Value) -> Health {
    let mut driver = String::from("obj = ");
    lua_value(object, &mut driver);
    driver.push_str("\nlocal script = ");
    lua_string(&repo_path(SCRIPT).display().to_string(), &mut driver);
    driver.push_str(
        r#"
local chunk = assert(loadfile(script))
local env = { obj = obj, table = table, _VERSION = _VERSION }
for _, name in ipairs({ "assert", "error", "ipairs", "next", "pairs", "pcall", "print", "rawequal", "rawget",
    "rawset", "select", "getmetatable", "setmetatable", "tonumber", "tostring", "type", "unpack", "xpcall" }) do
  env[name] = _G[name]
end
env._G = env
setfenv(chunk, env)
local ok, hs = pcall(chunk)
if not ok then
  io.stderr:write("the script failed: ", tostring(hs), "\n")
  os.exit(2)
end
if type(hs) ~= "table" or type(hs.status) ~= "string" or type(hs.message) ~= "string" then
  io.stderr:write("the script must return a table with a string status and message, not ", type(hs), "\n")
  os.exit(3)
end
io.write(hs.status, "\n", hs.message)
"#,
    );
    let mut child = Command::new(lua())
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run lua5.1: {error}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(driver.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "lua5.1 failed ({}) on\n{object:#}\n{}{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let (status, message) = stdout.split_once('\n').unwrap_or((&stdout, ""));
    let health = Health {
        status: status.to_owned(),
        message: message.to_owned(),
    };
    assert!(
        ARGO_STATUSES.contains(&health.status.as_str()) && !health.message.is_empty(),
        "not a health Argo CD can show: {health:?}"
    );
    health
}

/// The Lua 5.1 interpreter; the test fails, saying how to get it, when it is missing.
fn lua() -> &'static str {
    const LUA: &str = "lua5.1";
    match Command::new(LUA).arg("-v").output() {
        Ok(output) => {
            // Lua 5.1 prints its version on stderr, later ones on stdout.
            let version = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(
                version.contains("Lua 5.1"),
                "{LUA} -v says {version:?}; Argo CD runs health checks in a Lua 5.1 (gopher-lua), so these tests need \
                 Lua 5.1"
            );
            LUA
        }
        Err(error) if error.kind() == ErrorKind::NotFound => panic!(
            "{LUA} is not installed, and these tests run the Argo CD health check with it: install it with \
             `apt-get install -y lua5.1` (e2e/install-deps.sh, which CI runs, does)"
        ),
        Err(error) => panic!("cannot run {LUA}: {error}"),
    }
}

// --- RktNodeConfigs as the cluster shows them --------------------------------------------------------------------

const HASH: &str = "5f2c9a1e";
const OLD_HASH: &str = "77b0d3c4";

/// The object Argo CD reads: the seed's bridge config at `generation`, with `status` as the controller wrote it.
fn argo_object(generation: i64, paused: bool, status: Option<RktNodeConfigStatus>) -> Value {
    TestConfig::example("bridge")
        .paused(paused)
        .stored(generation, status)
        .json()
        .clone()
}

fn applied(name: &str) -> NodeProgress {
    progress(name, HASH, HASH, NodePhase::Applied)
}

/// What the controller observed of a config; `status()` turns it into the status it writes.
struct Observation {
    generation: i64,
    rendering: Result<&'static str, &'static str>,
    nodes: Vec<NodeProgress>,
    errors: BTreeMap<String, String>,
    conflicts: Vec<(String, Vec<String>)>,
    wave: Wave,
}

impl Observation {
    fn of(nodes: Vec<NodeProgress>) -> Self {
        Self {
            generation: 1,
            rendering: Ok(HASH),
            nodes,
            errors: BTreeMap::new(),
            conflicts: Vec::new(),
            wave: Wave::default(),
        }
    }

    fn status(&self) -> RktNodeConfigStatus {
        let observation = ConfigObservation {
            generation: Some(self.generation),
            rendering: self.rendering,
            nodes: &self.nodes,
            errors: &self.errors,
            conflicts: &self.conflicts,
            wave: &self.wave,
        };
        config_status(&observation, None, &now())
    }
}

/// The message of a condition of `status`, as the controller wrote it.
fn message(status: &RktNodeConfigStatus, type_: &str) -> String {
    let condition = status
        .conditions
        .iter()
        .find(|condition| condition.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:#?}"));
    condition.message.clone()
}

fn expect(status: &str, message: impl Into<String>) -> Health {
    Health {
        status: status.into(),
        message: message.into(),
    }
}

/// A rollout of three nodes with one left to do: `a` and `b` have the new rendering (`b` still applying it), `c`
/// runs the previous one.
fn rolling_out() -> Observation {
    let mut observation = Observation::of(vec![
        applied("a"),
        progress("b", HASH, OLD_HASH, NodePhase::Applying),
        progress("c", OLD_HASH, OLD_HASH, NodePhase::Applied),
    ]);
    observation.wave = Wave {
        start: vec![],
        halt: None,
        waiting: 1,
    };
    observation
}

/// Node `b` broke its rkt API service with the new rendering and was rolled back, which halts the rollout.
fn rolled_back() -> Observation {
    let mut observation = Observation::of(vec![
        applied("a"),
        progress("b", HASH, OLD_HASH, NodePhase::RolledBack),
        progress("c", OLD_HASH, OLD_HASH, NodePhase::Applied),
    ]);
    observation.errors = BTreeMap::from([(
        "b".to_string(),
        "rkt API service failed its health check: GetInfo: connection refused".to_string(),
    )]);
    observation.wave = Wave {
        start: vec![],
        halt: Some(Halt::Degraded(vec!["b".into()])),
        waiting: 1,
    };
    observation
}

/// `a` has the new rendering; `b` and `c` wait because the rollout is paused.
fn paused() -> Observation {
    let mut observation = Observation::of(vec![
        applied("a"),
        progress("b", OLD_HASH, OLD_HASH, NodePhase::Applied),
        progress("c", OLD_HASH, OLD_HASH, NodePhase::Applied),
    ]);
    observation.wave = Wave {
        start: vec![],
        halt: Some(Halt::Paused),
        waiting: 2,
    };
    observation
}

// --- the rules, in the order the script applies them -------------------------------------------------------------

#[test]
fn a_config_without_a_status_waits_for_the_controller() {
    assert_eq!(
        health(&argo_object(1, false, None)),
        expect(
            "Progressing",
            "waiting for the controller to observe generation 1"
        )
    );
}

#[test]
fn a_status_of_an_older_generation_is_not_trusted() {
    // Converged on generation 2; the user has just applied generation 3.
    let mut observation = Observation::of(vec![applied("a"), applied("b")]);
    observation.generation = 2;
    let status = observation.status();
    assert_eq!(
        health(&argo_object(3, false, Some(status))),
        expect(
            "Progressing",
            "waiting for the controller to observe generation 3"
        )
    );
}

#[test]
fn a_status_without_an_observed_generation_is_not_trusted() {
    let status = RktNodeConfigStatus {
        observed_generation: None,
        ..Observation::of(vec![applied("a")]).status()
    };
    assert_eq!(
        health(&argo_object(1, false, Some(status))).status,
        "Progressing"
    );
}

#[test]
fn a_tie_with_another_config_is_degraded_with_the_conflict_message() {
    let mut observation = Observation::of(vec![applied("a")]);
    observation.conflicts = vec![(
        "b".to_string(),
        vec!["bridge".to_string(), "flannel".to_string()],
    )];
    let status = observation.status();
    let expected = message(&status, "Conflict");
    assert!(expected.contains("flannel"), "{expected}");
    assert_eq!(
        health(&argo_object(1, false, Some(status))),
        expect("Degraded", expected)
    );
}

#[test]
fn a_conflict_outranks_a_degraded_node() {
    let mut observation = rolled_back();
    observation.conflicts = vec![(
        "d".to_string(),
        vec!["bridge".to_string(), "kvm".to_string()],
    )];
    let status = observation.status();
    let expected = message(&status, "Conflict");
    assert_eq!(
        health(&argo_object(1, false, Some(status))),
        expect("Degraded", expected)
    );
}

#[test]
fn a_rolled_back_node_is_degraded_with_its_error() {
    let status = rolled_back().status();
    let expected = message(&status, "Degraded");
    assert!(
        expected.contains("b: rkt API service failed its health check"),
        "{expected}"
    );
    assert_eq!(
        health(&argo_object(1, false, Some(status))),
        expect("Degraded", expected)
    );
}

#[test]
fn a_config_that_cannot_be_rendered_is_degraded() {
    let mut observation =
        Observation::of(vec![progress("a", OLD_HASH, OLD_HASH, NodePhase::Applied)]);
    observation.rendering = Err("network.contained.custom: the CNI config is not a JSON object");
    let status = observation.status();
    let expected = message(&status, "Degraded");
    assert!(expected.contains("cannot be rendered"), "{expected}");
    assert_eq!(
        health(&argo_object(1, false, Some(status))),
        expect("Degraded", expected)
    );
}

#[test]
fn a_paused_rollout_with_nodes_left_is_suspended() {
    let status = paused().status();
    assert_eq!((status.updated_nodes, status.matched_nodes), (1, 3));
    let expected = message(&status, "Progressing");
    assert!(expected.contains("spec.rollout.paused"), "{expected}");
    assert_eq!(
        health(&argo_object(1, true, Some(status))),
        expect("Suspended", expected)
    );
}

#[test]
fn a_paused_rollout_says_how_far_it_got_before_the_controller_reports_the_pause() {
    // The user has just set paused; the status still says the rollout is going on.
    let status = rolling_out().status();
    assert_eq!(
        health(&argo_object(1, true, Some(status))),
        expect(
            "Suspended",
            "spec.rollout.paused is set: 2 of 3 nodes updated"
        )
    );
}

#[test]
fn a_degraded_node_outranks_a_pause() {
    let mut observation = rolled_back();
    observation.wave.halt = Some(Halt::Paused);
    let status = observation.status();
    assert_eq!(
        health(&argo_object(1, true, Some(status))).status,
        "Degraded"
    );
}

#[test]
fn a_paused_config_whose_nodes_all_run_it_is_healthy() {
    let status = Observation::of(vec![applied("a"), applied("b")]).status();
    let expected = message(&status, "Ready");
    assert_eq!(
        health(&argo_object(1, true, Some(status))),
        expect("Healthy", expected)
    );
}

#[test]
fn a_rollout_under_way_is_progressing() {
    let status = rolling_out().status();
    let expected = message(&status, "Progressing");
    assert_eq!(expected, "2 of 3 nodes updated, 1 ready.");
    assert_eq!(
        health(&argo_object(1, false, Some(status))),
        expect("Progressing", expected)
    );
}

#[test]
fn a_converged_config_is_healthy() {
    let status = Observation::of(vec![applied("a"), applied("b"), applied("c")]).status();
    let expected = message(&status, "Ready");
    assert!(expected.starts_with("All 3 selected nodes"), "{expected}");
    assert_eq!(
        health(&argo_object(1, false, Some(status))),
        expect("Healthy", expected)
    );
}

#[test]
fn a_config_that_selects_no_node_is_healthy() {
    let status = Observation::of(vec![]).status();
    let expected = message(&status, "Ready");
    assert_eq!(
        health(&argo_object(1, false, Some(status))),
        expect("Healthy", expected)
    );
}

#[test]
fn a_paused_rollout_whose_last_nodes_are_still_applying_is_progressing_with_the_ready_message() {
    // Nothing is left to start, so the pause holds nothing back; Progressing is False (Paused), Ready is False.
    let mut observation = Observation::of(vec![
        applied("a"),
        progress("b", HASH, OLD_HASH, NodePhase::Applying),
    ]);
    observation.wave = Wave {
        start: vec![],
        halt: Some(Halt::Paused),
        waiting: 0,
    };
    let status = observation.status();
    let expected = message(&status, "Ready");
    assert_eq!(
        expected,
        "1 of 2 selected nodes applied this config and report a healthy rkt API service."
    );
    assert_eq!(
        health(&argo_object(1, true, Some(status))),
        expect("Progressing", expected)
    );
}

#[test]
fn a_status_without_conditions_is_progressing() {
    let status = RktNodeConfigStatus {
        observed_generation: Some(1),
        matched_nodes: 2,
        ..RktNodeConfigStatus::default()
    };
    assert_eq!(
        health(&argo_object(1, false, Some(status))),
        expect("Progressing", "waiting for the nodes to apply this config")
    );
}

#[test]
fn messages_reach_argo_cd_byte_for_byte() {
    // Quotes, backslashes, line breaks, control and non-ASCII characters in a node's error survive the trip.
    let mut observation = rolled_back();
    observation.errors.insert(
        "b".to_string(),
        "writing \"/etc/rkt/net.d/10-rkt.kubernetes.io.conf\": C:\\tmp\tdenied\r\nnext line \u{1} 1\u{7f} – ü"
            .to_string(),
    );
    let status = observation.status();
    let expected = message(&status, "Degraded");
    assert_eq!(
        health(&argo_object(1, false, Some(status))),
        expect("Degraded", expected)
    );
}

// --- the ConfigMap that installs it ------------------------------------------------------------------------------

#[test]
fn the_argocd_cm_patch_embeds_health_lua_unchanged() {
    let script = std::fs::read_to_string(repo_path(SCRIPT)).unwrap();
    let patch: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(repo_path(CONFIGMAP_PATCH)).unwrap())
            .unwrap_or_else(|error| panic!("{CONFIGMAP_PATCH} is not valid YAML: {error}"));
    assert_eq!(patch["apiVersion"], "v1");
    assert_eq!(patch["kind"], "ConfigMap");
    assert_eq!(patch["metadata"]["name"], "argocd-cm");
    let embedded = patch["data"][CONFIGMAP_KEY]
        .as_str()
        .unwrap_or_else(|| panic!("{CONFIGMAP_PATCH} has no data.{CONFIGMAP_KEY}"));
    assert!(
        embedded == script,
        "the script embedded in {CONFIGMAP_PATCH} differs from {SCRIPT}: copy {SCRIPT} under data.{CONFIGMAP_KEY}, \
         indented by four spaces"
    );
}
