//! Hand-written schema fragments for the places where a derived schema cannot say enough: raw CNI configs, whose
//! unknown fields must be kept while the fields rkt and the plugins act on (`type` at every level a plugin is run
//! from, `name`) are still checked.

use schemars::{Schema, SchemaGenerator, json_schema};

/// The most properties a raw CNI config may have: real plugin configs have a dozen or so.
const MAX_CNI_CONFIG_PROPERTIES: u32 = 64;

/// rkt joins the CNI config's `type` to its plugin directories without sanitising it, so anything but a plain
/// file name runs an arbitrary binary (the class of CVE-2021-20206). Plugin names are ASCII file names (`bridge`,
/// `host-local`); spaces and look-alike letters from other scripts are refused too, as no plugin has them and they
/// hide a name from a reader.
const PLAIN_PLUGIN_TYPE_RULE: &str =
    "self.matches('^[A-Za-z0-9][A-Za-z0-9_.-]*$') && !self.contains('..')";
const PLAIN_PLUGIN_TYPE_MESSAGE: &str = "type must be a plain CNI plugin name (ASCII letters, digits, '_', '.' and \
     '-', no '..'): rkt and the plugins run the binary it names from their plugin directories without sanitising it";

/// The most CNI plugins a config may chain in `plugins` (the conflist form).
const MAX_CHAINED_PLUGINS: u32 = 16;

/// A plugin's `type`: the file name of the binary that rkt (for the top level) and the plugins themselves (for a
/// nested `ipam` or `delegate`, through CNI's `FindInPath`) join to their plugin directories unsanitised.
fn plugin_type() -> serde_json::Value {
    serde_json::json!({
        "type": "string",
        "description": "The CNI plugin to run, by its binary's file name (for example `bridge`, `ptp`, `host-local`).",
        "minLength": 1,
        "maxLength": 64,
        "x-kubernetes-validations": [
            { "rule": PLAIN_PLUGIN_TYPE_RULE, "message": PLAIN_PLUGIN_TYPE_MESSAGE }
        ]
    })
}

/// A plugin config nested in another (`ipam`, `delegate`): unknown fields kept, its `type` a plain name.
/// `depth` more levels of nesting are checked the same way.
fn nested_plugin(depth: u32) -> serde_json::Value {
    let mut properties = serde_json::json!({ "type": plugin_type() });
    if depth > 0 {
        properties["ipam"] = nested_plugin(depth - 1);
        properties["delegate"] = nested_plugin(depth - 1);
    }
    serde_json::json!({
        "type": "object",
        "description": "A plugin config that this plugin runs in turn (by its `type`, a plain plugin name).",
        "x-kubernetes-preserve-unknown-fields": true,
        "maxProperties": MAX_CNI_CONFIG_PROPERTIES,
        "properties": properties
    })
}

fn cni_config(name_rules: serde_json::Value, description: &str) -> Schema {
    json_schema!({
        "type": "object",
        "description": description,
        "x-kubernetes-preserve-unknown-fields": true,
        "maxProperties": MAX_CNI_CONFIG_PROPERTIES,
        "required": ["type"],
        "properties": {
            "type": plugin_type(),
            // Plugins run the plugin configs nested in theirs: bridge, ptp, macvlan ... their `ipam`; flannel its
            // `delegate` (and that one its `ipam`). A conflist's `plugins` would be run the same way.
            "ipam": nested_plugin(0),
            "delegate": nested_plugin(1),
            "plugins": {
                "type": "array",
                "description": "Chained plugins (the conflist form), each run by its `type`.",
                "maxItems": MAX_CHAINED_PLUGINS,
                "items": nested_plugin(2)
            },
            "name": name_rules,
            "cniVersion": {
                "type": "string",
                "description": "The CNI specification version of this config (for example `0.3.1`).",
                "maxLength": 16
            }
        }
    })
}

/// A raw CNI config used as rkt's contained network: its name is ours to set.
pub fn contained_cni_config(_: &mut SchemaGenerator) -> Schema {
    cni_config(
        json_schema!({
            "type": "string",
            "description": "The network name. rkt's contained network must be named `rkt.kubernetes.io`; the operator sets it, so leave it out.",
            "maxLength": 253,
            "x-kubernetes-validations": [{
                "rule": "self == 'rkt.kubernetes.io'",
                "message": "the contained network's name is always rkt.kubernetes.io (the kubelet asks rkt for that network); leave name out and the operator sets it"
            }]
        })
        .into(),
        "A raw CNI network config (one plugin, as JSON), written to /etc/rkt/net.d with the name rkt.kubernetes.io. \
         `type` must be a plain plugin name.",
    )
}

/// A raw CNI config for the kubelet's own CNI networking.
pub fn kubernetes_cni_config(_: &mut SchemaGenerator) -> Schema {
    cni_config(
        json_schema!({
            "type": "string",
            "description": "The network name. Defaults to `rktnetes`.",
            "maxLength": 253,
            "x-kubernetes-validations": [{
                "rule": "self.matches('^[A-Za-z0-9][A-Za-z0-9_.-]*$')",
                "message": "name must start with a letter or digit and contain only letters, digits, '_', '.' and '-'"
            }]
        })
        .into(),
        "A raw CNI network config (one plugin, as JSON) for the kubelet's CNI networking, written to its CNI config \
         directory. `type` must be a plain plugin name.",
    )
}
