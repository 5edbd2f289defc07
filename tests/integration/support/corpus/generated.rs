//! Invalid configs made from the CRD's own schema, so that every field is tried and a new field is tried without
//! anyone writing its cases: the wrong JSON type at every field, every string one byte over its `maxLength`, every
//! list and map one entry over its bound, every integer one past its range, every enum's near neighbours.
//!
//! Each case puts one bad value at one field of the smallest valid config (as the hand-written cases do), and the
//! refusal must name that field.

use kube::CustomResourceExt;
use rktnetes_operator::api::RktNodeConfig;
use serde_json::{Map, Value, json};

use super::InvalidCase;

/// Every generated case, in schema order.
pub fn cases() -> Vec<InvalidCase> {
    let crd = serde_json::to_value(RktNodeConfig::crd()).expect("the CRD serialises");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut cases = Vec::new();
    walk(spec, &["spec".to_owned()], &mut cases);
    cases
}

/// One step of a field's path: a property, or the first item of a list.
fn walk(schema: &Value, path: &[String], cases: &mut Vec<InvalidCase>) {
    cases.extend(
        wrong_values(schema)
            .into_iter()
            .map(|(why, value)| InvalidCase {
                why: format!("{} ({why})", field_name(path)),
                field: field_name(path),
                patch: patch_at(path, value),
            }),
    );
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            let mut inner = path.to_vec();
            inner.push(name.clone());
            walk(property, &inner, cases);
        }
    }
    if schema["items"]["properties"].is_object() {
        let mut inner = path.to_vec();
        inner.push("[0]".to_owned());
        walk(&schema["items"], &inner, cases);
    }
}

/// The bad values for a field of this schema, each with what is wrong with it.
fn wrong_values(schema: &Value) -> Vec<(String, Value)> {
    let mut values = Vec::new();
    let int_or_string = schema["x-kubernetes-int-or-string"] == json!(true);
    match schema["type"].as_str() {
        Some("string") => {
            values.push(("a number where a string belongs".to_owned(), json!(12345)));
            values.push((
                "an object where a string belongs".to_owned(),
                json!({"a": "b"}),
            ));
            if let Some(max) = schema["maxLength"].as_u64() {
                values.push((
                    format!("{} characters, over maxLength {max}", max + 1),
                    json!("a".repeat(as_len(max) + 1)),
                ));
            }
            if let Some(allowed) = schema["enum"].as_array() {
                for value in allowed.iter().filter_map(Value::as_str) {
                    for neighbour in [
                        value.to_lowercase(),
                        format!("{value}x"),
                        format!(" {value}"),
                    ] {
                        if !allowed
                            .iter()
                            .any(|other| other.as_str() == Some(neighbour.as_str()))
                        {
                            values.push((
                                format!("{neighbour:?}, a neighbour of the enum's {value:?}"),
                                json!(neighbour),
                            ));
                        }
                    }
                }
            }
        }
        Some("integer") => {
            values.push(("a string where an integer belongs".to_owned(), json!("ten")));
            values.push(("a fraction where an integer belongs".to_owned(), json!(1.5)));
            if let Some(min) = schema["minimum"].as_i64() {
                values.push((
                    format!("{}, under the minimum {min}", min - 1),
                    json!(min - 1),
                ));
            }
            if let Some(max) = schema["maximum"].as_i64() {
                values.push((
                    format!("{}, over the maximum {max}", max + 1),
                    json!(max + 1),
                ));
            }
        }
        Some("boolean") => {
            values.push(("a string where a boolean belongs".to_owned(), json!("yes")));
            values.push(("a number where a boolean belongs".to_owned(), json!(1)));
        }
        Some("array") => {
            values.push(("a string where a list belongs".to_owned(), json!("a, b")));
            if let Some(max) = schema["maxItems"].as_u64() {
                let item = example_of(&schema["items"]);
                values.push((
                    format!("{} items, over maxItems {max}", max + 1),
                    Value::Array(vec![item; as_len(max) + 1]),
                ));
            }
        }
        Some("object") => {
            values.push((
                "a string where an object belongs".to_owned(),
                json!("key=value"),
            ));
            values.push(("a list where an object belongs".to_owned(), json!([])));
            if let Some(max) = schema["maxProperties"].as_u64() {
                let value = example_of(&schema["additionalProperties"]);
                let entries: Map<String, Value> = (0..=max)
                    .map(|index| (format!("k{index}"), value.clone()))
                    .collect();
                values.push((
                    format!("{} entries, over maxProperties {max}", max + 1),
                    Value::Object(entries),
                ));
            }
        }
        _ if int_or_string => {
            values.push((
                "an object where an integer or a string belongs".to_owned(),
                json!({"a": 1}),
            ));
            values.push((
                "a boolean where an integer or a string belongs".to_owned(),
                json!(true),
            ));
        }
        _ => {}
    }
    values
}

/// A value of the schema's type that breaks nothing else, to fill a list or a map past its bound.
fn example_of(schema: &Value) -> Value {
    match schema["type"].as_str() {
        Some("integer") => json!(1),
        Some("boolean") => json!(true),
        Some("object") => json!({}),
        Some("array") => json!([]),
        _ => json!("a"),
    }
}

fn as_len(bound: u64) -> usize {
    usize::try_from(bound).expect("a schema bound fits in memory")
}

/// The field as the API server names it: `spec.network.contained.bridge.routes[0].dst`.
fn field_name(path: &[String]) -> String {
    path.iter().fold(String::new(), |name, step| {
        if step.starts_with('[') || name.is_empty() {
            name + step
        } else {
            name + "." + step
        }
    })
}

/// A merge patch over the smallest valid config that puts `value` at `path` (a list step becomes a one-item list).
fn patch_at(path: &[String], value: Value) -> Value {
    path.iter().rev().fold(value, |inner, step| {
        if step.starts_with('[') {
            json!([inner])
        } else {
            json!({ step: inner })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_field_names_and_patches() {
        let path: Vec<String> = ["spec", "routes", "[0]", "dst"].map(str::to_owned).to_vec();
        assert_eq!(field_name(&path), "spec.routes[0].dst");
        assert_eq!(
            patch_at(&path, json!(1)),
            json!({"spec": {"routes": [{"dst": 1}]}})
        );
    }
}
