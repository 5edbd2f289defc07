//! Which nodes a config applies to: a label selector with the bounds an admission check needs.
//!
//! This mirrors `metav1.LabelSelector`, but with every string and list bounded and the operator/values rules
//! checked at admission, so a bad selector is refused instead of silently selecting nothing.

use std::collections::BTreeMap;

use kube::{
    KubeSchema,
    core::{Expression, Selector},
};
use serde::{Deserialize, Serialize};

/// A label key (Kubernetes' qualified name): an optional lowercase DNS subdomain and `/`, then a name of 1 to 63
/// characters. The prefix's length (at most 253) is a separate rule.
const LABEL_KEY: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";
/// A label value: empty, or 1 to 63 characters starting and ending with a letter or digit.
const LABEL_VALUE: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$";
const LABEL_KEY_MESSAGE: &str = "matchLabels keys must be label keys: [prefix/]name, the prefix a lowercase DNS \
    subdomain, the name at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit";

/// A label selector over Nodes. Empty selects every node.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelector {
    /// Labels a node must have, with these values. Consumer: the API server's label selector, whose syntax the
    /// keys and values must have (see `matchExpressions`), or nothing would ever match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 32,
        "additionalProperties" = {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE}
    ))]
    #[x_kube(validation = Rule::new(format!("self.all(k, k.matches('{LABEL_KEY}'))")).message(LABEL_KEY_MESSAGE))]
    #[x_kube(validation = Rule::new("self.all(k, k.size() <= 317 && k.split('/')[0].size() <= 253)")
        .message("matchLabels keys must be at most 317 characters, their prefix at most 253"))]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements on a node's labels; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub match_expressions: Vec<NodeSelectorRequirement>,
}

/// How a requirement relates a label to its values.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub enum NodeSelectorOperator {
    /// The label's value is one of `values`.
    In,
    /// The label is missing, or its value is none of `values`.
    NotIn,
    /// The label is present, whatever its value.
    Exists,
    /// The label is missing.
    DoesNotExist,
}

/// One requirement on a node's labels.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)"
).message("values must be non-empty for operators In and NotIn, and empty for Exists and DoesNotExist")
 .field_path(".values"))]
pub struct NodeSelectorRequirement {
    /// The label key: an optional DNS subdomain prefix (at most 253 characters) and `/`, then a name of at most 63
    /// letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit. Consumer: the API server's
    /// label selector syntax.
    #[schemars(length(min = 1, max = 317), regex(pattern = LABEL_KEY))]
    #[x_kube(validation = Rule::new("self.split('/')[0].size() <= 253")
        .message("a label key's prefix must be at most 253 characters"))]
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: NodeSelectorOperator,
    /// The values for `In` and `NotIn`: each empty, or at most 63 letters, digits, `-`, `_` and `.`, starting
    /// and ending with a letter or digit (the label value syntax).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 63), regex(pattern = LABEL_VALUE)))]
    pub values: Vec<String>,
}

impl NodeSelector {
    /// The same requirements as kube's own [`Selector`], which matches labels as the API server does.
    pub fn selector(&self) -> Selector {
        let labels = self
            .match_labels
            .iter()
            .map(|(key, value)| Expression::Equal(key.clone(), value.clone()));
        let expressions = self.match_expressions.iter().map(|requirement| {
            let key = requirement.key.clone();
            let values = || requirement.values.iter().cloned().collect();
            match requirement.operator {
                NodeSelectorOperator::In => Expression::In(key, values()),
                NodeSelectorOperator::NotIn => Expression::NotIn(key, values()),
                NodeSelectorOperator::Exists => Expression::Exists(key),
                NodeSelectorOperator::DoesNotExist => Expression::DoesNotExist(key),
            }
        });
        labels.chain(expressions).collect()
    }
}

impl NodeSelectorOperator {
    /// The operator as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::In => "In",
            Self::NotIn => "NotIn",
            Self::Exists => "Exists",
            Self::DoesNotExist => "DoesNotExist",
        }
    }
}
