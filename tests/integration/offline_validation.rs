//! `rktnetes render`'s validator refuses what admission refuses, naming the same field, without a cluster.

use kube::CustomResourceExt;
use rktnetes_operator::api::{RktNodeConfig, validation::OfflineValidator};

use crate::support::corpus::{examples, invalid_cases};

fn validator() -> OfflineValidator {
    OfflineValidator::for_crd(&RktNodeConfig::crd()).expect("the generated CRD makes a validator")
}

#[test]
fn examples_are_valid() {
    let validator = validator();
    for example in examples() {
        if let Err(errors) = validator.validate(&example.object) {
            panic!("{} is refused: {errors}", example.file);
        }
        let _: RktNodeConfig = serde_json::from_value(example.object.clone())
            .unwrap_or_else(|error| panic!("{} does not deserialise: {error}", example.file));
    }
}

#[test]
fn values_at_the_edge_of_each_rule_are_valid() {
    let validator = validator();
    for (why, object) in crate::admission::edge_cases() {
        if let Err(errors) = validator.validate(&object) {
            panic!("{why} is refused: {errors}");
        }
    }
}

#[test]
fn every_invalid_case_is_refused_naming_its_field() {
    let validator = validator();
    let cases = invalid_cases();
    assert!(
        cases.len() >= 200,
        "the corpus has only {} cases",
        cases.len()
    );
    let mut misses = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        match validator.validate(&case.object(index)) {
            Ok(()) => misses.push(format!("#{index} ({}): accepted", case.why)),
            // A rule on the whole object (metadata.name) has no field path of its own; its message names it,
            // as the apiserver's does.
            Err(errors)
                if !errors.0.iter().any(|error| {
                    error.field == case.field
                        || (error.field.is_empty() && error.message.contains(&case.field))
                }) =>
            {
                misses.push(format!(
                    "#{index} ({}): refused, but not naming {}: {errors}",
                    case.why, case.field
                ))
            }
            Err(_) => {}
        }
    }
    assert!(
        misses.is_empty(),
        "{} of {} invalid cases were not refused as expected:\n{}",
        misses.len(),
        cases.len(),
        misses.join("\n")
    );
}

/// The agent checks `spec.rkt.path` again on the node (`host_paths::is_rkt_binary`, on the resolved path); it must
/// agree with the CRD's rule, path for path.
#[test]
fn the_agents_rkt_path_check_agrees_with_admission() {
    use rktnetes_operator::api::host_paths::is_rkt_binary;

    use crate::support::scenario::bridge_example;

    let validator = validator();
    for path in [
        "/usr/bin/rkt",
        "/usr/local/bin/rkt",
        "/opt/bin/rkt",
        "/opt/rkt/rkt",
        "/opt/rkt/v1.30.0/rkt",
        "/bin/sh",
        "/tmp/rkt",
        "/usr/bin/rktx",
        "/usr/bin/sub/rkt",
        "/opt/rkt/v1.30.0/bash",
        "/opt/rkt/../../tmp/rkt",
        "/usr/bin/./rkt",
        "/opt/rkt",
    ] {
        let config = bridge_example().set("/spec/rkt/path", path);
        assert_eq!(
            validator.validate(config.json()).is_ok(),
            is_rkt_binary(path),
            "{path}: admission and the agent disagree"
        );
    }
}
