//! JSON as the rendered files hold it: pretty-printed with two-space indentation and a trailing newline, so the
//! same config always gives the same bytes.

use serde::{Serialize, Serializer, ser::SerializeMap};
use serde_json::Value;

/// `value` as the content of a rendered JSON file.
pub(super) fn file_content(value: &impl Serialize) -> Result<String, serde_json::Error> {
    let mut content = serde_json::to_string_pretty(value)?;
    content.push('\n');
    Ok(content)
}

/// A user's JSON, written with the keys of every object sorted. serde_json's map keeps insertion order when its
/// `preserve_order` feature is on anywhere in the build; sorting here keeps the bytes (and the hash) the same
/// whether the config came from the user's YAML or back from the apiserver.
pub(super) struct SortedKeys<'a>(pub &'a Value);

impl Serialize for SortedKeys<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(fields) => {
                let mut fields: Vec<_> = fields.iter().collect();
                fields.sort_by_key(|(name, _)| *name);
                let mut map = serializer.serialize_map(Some(fields.len()))?;
                for (name, value) in fields {
                    map.serialize_entry(name, &SortedKeys(value))?;
                }
                map.end()
            }
            Value::Array(items) => serializer.collect_seq(items.iter().map(SortedKeys)),
            scalar => scalar.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{SortedKeys, file_content};

    #[test]
    fn objects_are_written_with_sorted_keys_at_every_level() {
        let value = json!({"type": "ptp", "ipam": {"subnet": "10.0.0.0/8", "routes": [{"gw": "10.0.0.1", "dst": "0.0.0.0/0"}]}});
        assert_eq!(
            file_content(&SortedKeys(&value)).unwrap(),
            "{\n  \"ipam\": {\n    \"routes\": [\n      {\n        \"dst\": \"0.0.0.0/0\",\n        \"gw\": \"10.0.0.1\"\n      }\n    ],\n    \"subnet\": \"10.0.0.0/8\"\n  },\n  \"type\": \"ptp\"\n}\n"
        );
    }
}
