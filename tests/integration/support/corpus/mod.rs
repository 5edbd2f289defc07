//! The example RktNodeConfigs users copy (`e2e/examples`) and the corpus of invalid ones: hand-written
//! (`tests/admission/invalid-configs.yaml`) and generated from the CRD's schema (`generated`).

use serde::Deserialize;
use serde_json::{Value, json};

use super::repo_path;

mod generated;

/// An example shipped to users, by file name.
pub struct Example {
    pub file: String,
    pub object: Value,
}

/// Every `e2e/examples/*.yaml`, sorted by file name.
pub fn examples() -> Vec<Example> {
    let mut names: Vec<String> = std::fs::read_dir(repo_path("e2e/examples"))
        .expect("e2e/examples is readable")
        .filter_map(|entry| {
            let path = entry.expect("directory entry").path();
            let name = path.file_name()?.to_str()?.strip_suffix(".yaml")?;
            Some(name.to_owned())
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| Example {
            object: example(&name),
            file: format!("{name}.yaml"),
        })
        .collect()
}

/// The example `e2e/examples/<name>.yaml`.
pub fn example(name: &str) -> Value {
    let path = repo_path(&format!("e2e/examples/{name}.yaml"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{} is not readable: {error}", path.display()));
    serde_saphyr::from_str(&text)
        .unwrap_or_else(|error| panic!("{} is not YAML: {error}", path.display()))
}

/// One config admission must refuse.
#[derive(Debug, Deserialize)]
pub struct InvalidCase {
    /// The rule it breaks.
    pub why: String,
    /// The field the refusal must name.
    pub field: String,
    /// A JSON merge patch over the smallest valid config.
    pub patch: Value,
}

impl InvalidCase {
    /// The whole object, named `invalid-<index>` unless the case sets the name itself.
    pub fn object(&self, index: usize) -> Value {
        let mut object = json!({
            "apiVersion": "rktnetes.io/v1alpha1",
            "kind": "RktNodeConfig",
            "metadata": {"name": format!("invalid-{index:02}")},
            "spec": {"rkt": {"version": "1.30.0"}},
        });
        merge_patch(&mut object, &self.patch);
        object
    }
}

/// Every case of `tests/admission/invalid-configs.yaml`, then those generated from the CRD's schema.
pub fn invalid_cases() -> Vec<InvalidCase> {
    let text = std::fs::read_to_string(repo_path("tests/admission/invalid-configs.yaml"))
        .expect("the invalid corpus is readable");
    let mut cases: Vec<InvalidCase> =
        serde_saphyr::from_str(&text).expect("the invalid corpus is YAML");
    cases.extend(generated::cases());
    cases
}

/// RFC 7386: objects merge, `null` removes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            let target = target.as_object_mut().expect("made an object above");
            for (name, value) in fields {
                if value.is_null() {
                    target.remove(name);
                } else {
                    merge_patch(target.entry(name.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}
