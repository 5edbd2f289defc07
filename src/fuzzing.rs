//! What the fuzz targets in `tests/fuzz` exercise, one function per target, each taking arbitrary bytes. A target
//! fails only by panicking: on a panic in the code under test, or on a broken property checked here. Compiled only
//! with the `fuzzing` feature, so the operator's binary does not carry it.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use kube::CustomResourceExt;
use serde_json::Value;

use crate::{
    agent::ledger,
    api::{RktNodeConfig, RktNodeConfigSpec, validation::OfflineValidator},
    render::render,
    rkt::config::read_files,
};

/// A spec from arbitrary JSON, rendered: never a panic, and the same spec always renders to the same hash.
pub fn render_spec(data: &[u8]) {
    let Ok(spec) = serde_json::from_slice::<RktNodeConfigSpec>(data) else {
        return;
    };
    if let Ok(first) = render(&spec) {
        let second = render(&spec).expect("a spec that rendered once renders again");
        assert_eq!(first.hash, second.hash, "rendering is not deterministic");
    }
}

/// Arbitrary JSON as a custom CNI config (contained and for the kubelet): rendered without a panic, and its
/// rendered file reads back as the same JSON object.
pub fn cni_config(data: &[u8]) {
    let Ok(config @ Value::Object(_)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for network in [
        serde_json::json!({"contained": {"plugin": "Custom", "custom": {"config": config.clone()}}}),
        serde_json::json!({"mode": "KubernetesCNI", "kubernetesCNI": {"config": config.clone()}}),
    ] {
        let spec = serde_json::json!({"rkt": {"version": "1.30.0"}, "network": network});
        let Ok(spec) = serde_json::from_value::<RktNodeConfigSpec>(spec) else {
            continue;
        };
        let Ok(rendering) = render(&spec) else {
            continue;
        };
        let file = rendering
            .files
            .iter()
            .find(|file| file.path.ends_with(".conf"))
            .expect("a CNI network renders a .conf file");
        let written: Value =
            serde_json::from_str(&file.content).expect("a rendered CNI config is JSON");
        assert!(
            written.is_object(),
            "a rendered CNI config is a JSON object"
        );
    }
}

/// Arbitrary bytes as rkt configuration files: the first byte says how many of the pieces (split at 0xff) are
/// `stage1.d` files, the rest are `paths.d` files. Read without a panic.
pub fn rkt_config(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let files: Vec<(PathBuf, Vec<u8>)> = rest
        .split(|byte| *byte == 0xff)
        .enumerate()
        .map(|(index, raw)| {
            (
                PathBuf::from(format!("/etc/rkt/x.d/{index:02}.json")),
                raw.to_vec(),
            )
        })
        .collect();
    let (stage1, paths) = files.split_at(usize::from(split).min(files.len()));
    let _ = read_files(stage1, paths);
}

/// Arbitrary bytes as the agent's ledger: read without a panic, and a ledger that reads writes back to one equal
/// to it.
pub fn ledger(data: &[u8]) {
    let path = Path::new("/var/lib/rktnetes/ledger.json");
    if let Ok(read) = ledger::parse(path, data) {
        let written = serde_json::to_vec_pretty(&read).expect("a ledger serialises");
        let again = ledger::parse(path, &written).expect("a written ledger reads back");
        assert_eq!(read, again, "a ledger does not survive a save and a load");
    }
}

/// Arbitrary JSON through `render`'s validator: never a panic, and an object it accepts is a RktNodeConfig the
/// operator can read (the schema and the Rust types agree).
pub fn offline_validation(data: &[u8]) {
    static VALIDATOR: OnceLock<OfflineValidator> = OnceLock::new();
    let Ok(object) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let validator = VALIDATOR.get_or_init(|| {
        OfflineValidator::for_crd(&RktNodeConfig::crd()).expect("the CRD makes a validator")
    });
    if validator.validate(&object).is_ok() {
        let config: RktNodeConfig = serde_json::from_value(object)
            .unwrap_or_else(|error| panic!("an admitted config does not deserialise: {error}"));
        let _ = render(&config.spec);
    }
}
