//! `rktnetes render`: what a node would get, offline. Reads RktNodeConfigs from a YAML file, refuses them as the
//! apiserver would, picks the one that wins a node with the given labels and prints its rendering.

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
};

use clap::{Args, ValueEnum};
use kube::{CustomResourceExt, ResourceExt};
use serde_json::Value;

use crate::{
    api::{
        RktNodeConfig,
        validation::{FieldErrors, OfflineValidator, SchemaError},
    },
    controller::selection::{Assignment, Selection},
    render::{self, RenderError, Rendering},
};

/// The label the kubelet puts on every node with the node's name.
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// A YAML file with one or more RktNodeConfigs (separated by `---`).
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// The node's labels, as `key=value,key2=value2`.
    #[arg(long, value_parser = parse_labels, default_value = "")]
    pub node_labels: Labels,
    /// The node's name; selectors see it as the `kubernetes.io/hostname` label, as on a real node.
    #[arg(long)]
    pub node_name: Option<String>,
    /// `text`: each file under a `# <path>` header, then the hash and the rkt settings; `yaml`: the
    /// RktNodeState spec the controller would write for the node.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// A node's labels.
pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Output {
    Text,
    Yaml,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderCommandError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not YAML: {source}")]
    Yaml {
        path: PathBuf,
        source: Box<serde_saphyr::Error>,
    },
    #[error("{path}: no RktNodeConfig in the file")]
    Empty { path: PathBuf },
    #[error("{path}: document {document} is {found}, not a rktnetes.io/v1alpha1 RktNodeConfig")]
    NotAConfig {
        path: PathBuf,
        document: usize,
        found: String,
    },
    #[error("{path}: RktNodeConfig {name:?}: {errors}")]
    Invalid {
        path: PathBuf,
        name: String,
        errors: FieldErrors,
    },
    #[error("{path}: RktNodeConfig {name:?}: {source}")]
    Deserialize {
        path: PathBuf,
        name: String,
        source: serde_json::Error,
    },
    #[error("{path}: RktNodeConfig {name:?} cannot be rendered: {source}")]
    Render {
        path: PathBuf,
        name: String,
        source: RenderError,
    },
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("no RktNodeConfig selects a node with labels {}", describe(.labels))]
    NoneSelected { labels: Labels },
    #[error(
        "RktNodeConfigs {} all select a node with labels {} at priority {priority}: a tie is a conflict, \
         and the controller leaves such a node as it is",
        .names.join(", "), describe(.labels)
    )]
    Conflict {
        names: Vec<String>,
        priority: i32,
        labels: Labels,
    },
    #[error("cannot serialise the node state as YAML: {0}")]
    Output(#[from] serde_saphyr::SerializeError),
    #[error("cannot write to stdout: {0}")]
    Stdout(#[from] std::io::Error),
}

/// Prints the rendering for the node. Anything that keeps it from being printed (an invalid config, no config or a
/// tie selecting the node) is an error, so scripts see a failing exit status.
pub fn run(args: &RenderArgs) -> Result<(), RenderCommandError> {
    let configs = read_configs(&args.file)?;
    let mut labels = args.node_labels.clone();
    if let Some(name) = &args.node_name {
        labels
            .entry(HOSTNAME_LABEL.to_owned())
            .or_insert_with(|| name.clone());
    }
    let config = winner(&configs, &labels)?;
    let name = config.name_any();
    let rendering = match render::render(&config.spec) {
        Ok(rendering) => rendering,
        Err(source) => {
            return Err(RenderCommandError::Render {
                path: args.file.clone(),
                name,
                source,
            });
        }
    };
    let output = match args.output {
        Output::Text => text(&name, &rendering),
        Output::Yaml => serde_saphyr::to_string(&rendering.node_state_spec(&name))?,
    };
    std::io::stdout().lock().write_all(output.as_bytes())?;
    Ok(())
}

/// Every RktNodeConfig of the file, each refused as admission would refuse it.
fn read_configs(path: &Path) -> Result<Vec<RktNodeConfig>, RenderCommandError> {
    let text = std::fs::read_to_string(path).map_err(|source| RenderCommandError::Read {
        path: path.to_owned(),
        source,
    })?;
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(&text).map_err(|source| RenderCommandError::Yaml {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
    if documents.is_empty() {
        return Err(RenderCommandError::Empty {
            path: path.to_owned(),
        });
    }
    let validator = OfflineValidator::for_crd(&RktNodeConfig::crd())?;
    documents
        .into_iter()
        .enumerate()
        .map(|(index, document)| {
            let api_version = document.get("apiVersion").and_then(Value::as_str);
            let kind = document.get("kind").and_then(Value::as_str);
            if api_version != Some("rktnetes.io/v1alpha1") || kind != Some("RktNodeConfig") {
                return Err(RenderCommandError::NotAConfig {
                    path: path.to_owned(),
                    document: index + 1,
                    found: format!(
                        "{} {}",
                        api_version.unwrap_or("<no apiVersion>"),
                        kind.unwrap_or("<no kind>")
                    ),
                });
            }
            let name = document
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("<document {}>", index + 1), str::to_owned);
            validator
                .validate(&document)
                .map_err(|errors| RenderCommandError::Invalid {
                    path: path.to_owned(),
                    name: name.clone(),
                    errors,
                })?;
            serde_json::from_value(document).map_err(|source| RenderCommandError::Deserialize {
                path: path.to_owned(),
                name,
                source,
            })
        })
        .collect()
}

/// The config that wins a node with `labels`, by the controller's own selection.
fn winner<'a>(
    configs: &'a [RktNodeConfig],
    labels: &Labels,
) -> Result<&'a RktNodeConfig, RenderCommandError> {
    match Selection::new(configs).assign(labels) {
        Assignment::Won(name) => configs
            .iter()
            .find(|config| config.name_any() == name)
            .ok_or_else(|| RenderCommandError::NoneSelected {
                labels: labels.clone(),
            }),
        Assignment::Tied(names) => Err(RenderCommandError::Conflict {
            priority: configs
                .iter()
                .find(|config| names.contains(&config.name_any()))
                .map_or(0, |config| config.spec.priority),
            names,
            labels: labels.clone(),
        }),
        Assignment::Unselected => Err(RenderCommandError::NoneSelected {
            labels: labels.clone(),
        }),
    }
}

/// The rendering for a person: each file under a header with its path and mode, then the rest of the state.
fn text(config_name: &str, rendering: &Rendering) -> String {
    let mut text = format!("# RktNodeConfig {config_name:?} wins this node\n");
    for file in &rendering.files {
        text.push_str(&format!(
            "\n# {} (mode {:04o})\n{}",
            file.path, file.mode, file.content
        ));
    }
    let rkt = &rendering.rkt;
    text.push_str(&format!(
        "\n# hash: {}\n# rkt: version {}, API service {} on {}{}\n# restart the rkt API service: {}\n",
        rendering.hash,
        rkt.version,
        rkt.api_service_unit,
        rkt.api_endpoint,
        rkt.path
            .as_deref()
            .map(|path| format!(", binary {path}"))
            .unwrap_or_default(),
        if rendering.restart_api_service {
            "yes"
        } else {
            "no"
        },
    ));
    text
}

/// `key=value,key2=value2` as labels; empty is no labels.
fn parse_labels(text: &str) -> Result<Labels, String> {
    text.split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
                .filter(|(key, _)| !key.is_empty())
                .ok_or_else(|| format!("{pair:?} is not key=value"))
        })
        .collect()
}

/// Labels as the command line takes them, or `(none)`.
fn describe(labels: &Labels) -> String {
    if labels.is_empty() {
        "(none)".to_owned()
    } else {
        labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}
