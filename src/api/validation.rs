//! Validation without a cluster: the same OpenAPI schema and CEL rules the apiserver enforces, read from the
//! generated CRD, so `rktnetes render` refuses exactly what admission would refuse and names the same field.

use std::fmt;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::cel::{CompiledSchema, Validator as CelValidator, compile_schema};
use serde_json::Value;

/// One reason an object is invalid, with the field it concerns, as the apiserver would name it
/// (`spec.network.contained.bridge.mtu`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The offending field's path.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every reason an object is invalid.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct FieldErrors(pub Vec<FieldError>);

/// The CRD could not be turned into a validator (a bug in the generated schema).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("CRD {0} has no openAPIV3Schema")]
    MissingSchema(String),
    #[error("CRD {crd} has a schema that is not valid JSON Schema: {message}")]
    InvalidJsonSchema { crd: String, message: String },
    #[error("CRD {crd} has CEL rules that do not compile: {message}")]
    InvalidCel { crd: String, message: String },
}

/// The top-level fields every object has whatever its CRD's schema says.
const IMPLICIT_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Validates objects of one CRD as its apiserver would, without a cluster.
pub struct OfflineValidator {
    schema: Value,
    openapi: jsonschema::Validator,
    cel_schema: CompiledSchema,
    cel: CelValidator,
}

impl OfflineValidator {
    /// A validator for the storage version of `crd`.
    pub fn for_crd(crd: &CustomResourceDefinition) -> Result<Self, SchemaError> {
        let crd_name = crd.metadata.name.clone().unwrap_or_default();
        let schema = crd
            .spec
            .versions
            .iter()
            .find(|version| version.storage)
            .and_then(|version| version.schema.as_ref())
            .and_then(|validation| validation.open_api_v3_schema.as_ref())
            .ok_or_else(|| SchemaError::MissingSchema(crd_name.clone()))?;
        let schema =
            serde_json::to_value(schema).map_err(|error| SchemaError::InvalidJsonSchema {
                crd: crd_name.clone(),
                message: error.to_string(),
            })?;
        let openapi =
            jsonschema::validator_for(&schema).map_err(|error| SchemaError::InvalidJsonSchema {
                crd: crd_name.clone(),
                message: error.to_string(),
            })?;
        let cel_schema = compile_schema(&schema);
        if cel_schema.has_errors() {
            let message = cel_schema
                .compilation_errors()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return Err(SchemaError::InvalidCel {
                crd: crd_name,
                message,
            });
        }
        Ok(Self {
            schema,
            openapi,
            cel_schema,
            cel: CelValidator::new(),
        })
    }

    /// Checks `object` (a whole resource: apiVersion, kind, metadata, spec) for fields the schema does not
    /// declare (the apiserver's strict field validation, which `kubectl apply` uses), against the OpenAPI schema,
    /// then, when those hold, against the CEL rules, as the apiserver does.
    pub fn validate(&self, object: &Value) -> Result<(), FieldErrors> {
        let mut schema_errors = Vec::new();
        if let Value::Object(fields) = object {
            // apiVersion, kind and metadata are the apiserver's own, and are not in a CRD's schema.
            for (name, field) in fields
                .iter()
                .filter(|(name, _)| !IMPLICIT_FIELDS.contains(&name.as_str()))
            {
                unknown_fields(
                    &self.schema,
                    &serde_json::json!({ name: field }),
                    "",
                    &mut schema_errors,
                );
            }
        }
        schema_errors.extend(self.openapi.iter_errors(object).map(|error| {
            let mut field = field_path(error.instance_path().as_str());
            // A missing property is reported on its parent; the apiserver names the property itself.
            if let jsonschema::error::ValidationErrorKind::Required { property } = error.kind()
                && let Some(property) = property.as_str()
            {
                field = if field.is_empty() {
                    property.to_owned()
                } else {
                    format!("{field}.{property}")
                };
            }
            FieldError {
                field,
                message: error.to_string(),
            }
        }));
        if !schema_errors.is_empty() {
            return Err(FieldErrors(schema_errors));
        }
        self.cel
            .validate_compiled(&self.cel_schema, object, None)
            .map_err(|errors| {
                FieldErrors(
                    errors
                        .iter()
                        .map(|error| FieldError {
                            // A rule's own fieldPath on the root comes back as `.metadata.name`.
                            field: error.field_path.trim_start_matches('.').to_owned(),
                            message: error.message.clone(),
                        })
                        .collect(),
                )
            })
    }
}

/// Collects the fields of `value` that `schema` does not declare. Objects that keep unknown fields
/// (`x-kubernetes-preserve-unknown-fields`) and free-form ones (no `properties`) have none.
fn unknown_fields(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let child = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    match value {
        Value::Object(fields) => {
            let preserves =
                schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (name, field) in fields {
                    match properties.get(name) {
                        Some(field_schema) => {
                            unknown_fields(field_schema, field, &child(name), errors)
                        }
                        None if !preserves => errors.push(FieldError {
                            field: child(name),
                            message: "unknown field: the schema does not declare it".to_owned(),
                        }),
                        None => {}
                    }
                }
            } else if let Some(values_schema) =
                schema.get("additionalProperties").filter(|s| s.is_object())
            {
                for (name, field) in fields {
                    unknown_fields(values_schema, field, &child(name), errors);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    unknown_fields(item_schema, item, &format!("{path}[{index}]"), errors);
                }
            }
        }
        _ => {}
    }
}

/// `/spec/network/routes/0/dst` as Kubernetes writes it: `spec.network.routes[0].dst`.
fn field_path(pointer: &str) -> String {
    let mut path = String::new();
    for segment in pointer.split('/').filter(|segment| !segment.is_empty()) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.bytes().all(|byte| byte.is_ascii_digit()) {
            path.push_str(&format!("[{segment}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&segment);
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::field_path;

    #[test]
    fn json_pointers_become_kubernetes_field_paths() {
        assert_eq!(
            field_path("/spec/network/routes/0/dst"),
            "spec.network.routes[0].dst"
        );
        assert_eq!(field_path(""), "");
        assert_eq!(
            field_path("/spec/nodeSelector/matchLabels/example.com~1pool"),
            "spec.nodeSelector.matchLabels.example.com/pool"
        );
    }
}
