//! A config file's string fields, read the way rkt reads them: with Go's `encoding/json` into a struct. That is
//! laxer than serde: a key matches a field case-insensitively, a later key overwrites an earlier one, `null`
//! leaves a field unset, unknown keys are ignored, and a top-level `null` is an empty object. A stand-in that was
//! stricter than rkt would fail where rkt starts, so these rules are kept.

use std::{fmt, path::Path};

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::ConfigError;

/// The values of `fields` (Go struct field tags) found in the JSON document `raw`; `None` where absent or null.
pub(super) fn string_fields<const N: usize>(
    path: &Path,
    raw: &[u8],
    fields: [&'static str; N],
) -> Result<[Option<String>; N], ConfigError> {
    let object: Members = serde_json::from_slice(raw).map_err(|source| ConfigError::Json {
        path: path.to_owned(),
        source,
    })?;
    let mut values: [Option<String>; N] = std::array::from_fn(|_| None);
    for (key, value) in object.0 {
        let Some(index) = fields.iter().position(|field| same_name(field, &key)) else {
            continue;
        };
        match value {
            Value::Null => {}
            Value::String(text) => values[index] = Some(text),
            other => {
                return Err(ConfigError::NotAString {
                    path: path.to_owned(),
                    field: fields[index],
                    found: json_type(&other),
                });
            }
        }
    }
    Ok(values)
}

/// Go matches an exact key first, else one equal under Unicode case folding; no two fields we read differ only by
/// case, so both come down to a case-insensitive comparison.
pub(crate) fn same_name(field: &str, key: &str) -> bool {
    field == key
        || field
            .chars()
            .flat_map(char::to_lowercase)
            .eq(key.chars().flat_map(char::to_lowercase))
}

pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON object's members in document order, duplicates kept, so that the last one wins as in Go.
pub(crate) struct Members(pub(crate) Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_unit<E>(self) -> Result<Members, E> {
        Ok(Members(Vec::new()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, Value>()? {
            members.push(member);
        }
        Ok(Members(members))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::string_fields;
    use crate::rkt::config::ConfigError;

    fn read<const N: usize>(
        json: &str,
        fields: [&'static str; N],
    ) -> Result<[Option<String>; N], ConfigError> {
        string_fields(
            Path::new("/etc/rkt/stage1.d/x.json"),
            json.as_bytes(),
            fields,
        )
    }

    #[test]
    fn keys_match_fields_case_insensitively_and_the_last_one_wins() {
        let values = read(
            r#"{"RKTKIND": "stage1", "name": "a", "Name": "b", "other": 1}"#,
            ["rktKind", "name", "version"],
        )
        .unwrap();
        assert_eq!(
            values,
            [Some("stage1".to_owned()), Some("b".to_owned()), None]
        );
    }

    #[test]
    fn null_leaves_a_field_unset_and_a_null_document_is_empty() {
        assert_eq!(read(r#"{"name": null}"#, ["name"]).unwrap(), [None]);
        assert_eq!(read("null", ["name"]).unwrap(), [None]);
    }

    #[test]
    fn a_field_of_another_type_or_a_document_that_is_no_object_is_refused() {
        let error = read(r#"{"name": 5}"#, ["name"]).unwrap_err();
        assert!(
            matches!(
                error,
                ConfigError::NotAString {
                    field: "name",
                    found: "a number",
                    ..
                }
            ),
            "{error}"
        );
        for document in ["[]", "\"stage1\"", "{", "{} {}"] {
            let error = read(document, ["name"]).unwrap_err();
            assert!(
                matches!(error, ConfigError::Json { .. }),
                "{document}: {error}"
            );
        }
    }
}
