//! rkt's `net.d` as rkt v1.30.0 loads it when a pod starts (`networking/podenv.go`, `loadNets`): every entry of the
//! directory that is not a directory and whose name ends in `.conf`, in byte order of the names, is read and decoded
//! with Go's `encoding/json` into rkt's `NetConf` *before* its name is compared with the networks the pod asked for;
//! a file that does not decode fails network setup for every pod on the node. The first file that defines a
//! network name wins; later ones of that name are ignored.
//!
//! rkt's `NetConf` is CNI's (`name`, `type`, `ipam.type`, `dns`) plus `ipMasq`, `mtu` and `isDefaultGateway`. Go
//! matches keys case-insensitively, lets the last of two keys win, leaves a field at `null` unset, ignores unknown
//! keys, and refuses a value of another type, a number with a fraction where an `int` is expected, a document that
//! is not an object, and anything after the document.

use serde_json::Value;

use super::config::go_json::{Members, json_type, same_name};

/// One `*.conf` file in net.d, as rkt decodes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetFile {
    /// The file's name in net.d.
    pub file: String,
    /// The network it defines (`name`); empty when it has none.
    pub network: String,
    /// The CNI plugin rkt runs for it (`type`).
    pub plugin: String,
}

/// net.d as rkt loads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetD {
    /// The files rkt reads, in its order.
    pub files: Vec<NetFile>,
    /// The first file rkt cannot decode, and why: with it, every pod's network setup fails.
    pub undecodable: Option<(String, String)>,
}

impl NetD {
    /// net.d from its entries that are not directories: (file name, content). Other names are skipped, as in rkt.
    pub fn load(entries: &[(String, Vec<u8>)]) -> Self {
        let mut conf: Vec<&(String, Vec<u8>)> = entries
            .iter()
            .filter(|(name, _)| name.ends_with(".conf"))
            .collect();
        conf.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut net_d = Self::default();
        for (file, raw) in conf {
            match decode(raw) {
                Ok((network, plugin)) => net_d.files.push(NetFile {
                    file: file.clone(),
                    network,
                    plugin,
                }),
                Err(reason) => {
                    // rkt stops at the first file it cannot load.
                    net_d.undecodable = Some((file.clone(), reason));
                    break;
                }
            }
        }
        net_d
    }

    /// The file whose definition of `network` rkt uses: the first in its order.
    pub fn defining(&self, network: &str) -> Option<&NetFile> {
        self.files.iter().find(|file| file.network == network)
    }
}

/// The `name` and `type` of a net.d file, decoded as Go decodes it into rkt's `NetConf`; otherwise Go's reason.
pub fn decode(raw: &[u8]) -> Result<(String, String), String> {
    let members: Members = serde_json::from_slice(raw).map_err(|error| {
        if error.is_data() {
            format!("json: cannot unmarshal a value that is not an object into Go value of type NetConf ({error})")
        } else {
            format!("invalid JSON: {error}")
        }
    })?;
    let (mut name, mut plugin) = (String::new(), String::new());
    for (key, value) in members.0 {
        let Some((field, kind)) = FIELDS.iter().find(|(field, _)| same_name(field, &key)) else {
            continue;
        };
        check(&format!("NetConf.{field}"), kind, &value)?;
        match (*field, value) {
            ("name", Value::String(text)) => name = text,
            ("type", Value::String(text)) => plugin = text,
            _ => {}
        }
    }
    Ok((name, plugin))
}

/// The Go type of a field of rkt's `NetConf` (or of a struct in it).
enum Kind {
    String,
    Bool,
    Int,
    Strings,
    Struct(&'static [(&'static str, Kind)]),
}

const FIELDS: &[(&str, Kind)] = &[
    ("name", Kind::String),
    ("type", Kind::String),
    ("ipam", Kind::Struct(&[("type", Kind::String)])),
    (
        "dns",
        Kind::Struct(&[
            ("nameservers", Kind::Strings),
            ("domain", Kind::String),
            ("search", Kind::Strings),
            ("options", Kind::Strings),
        ]),
    ),
    ("ipMasq", Kind::Bool),
    ("mtu", Kind::Int),
    ("isDefaultGateway", Kind::Bool),
];

/// Whether Go would decode `value` into a field of `kind`; `null` always decodes (the field stays as it was).
fn check(field: &str, kind: &Kind, value: &Value) -> Result<(), String> {
    let refused = |go_type: &str| {
        Err(format!(
            "json: cannot unmarshal {} into Go struct field {field} of type {go_type}",
            json_type(value)
        ))
    };
    match (kind, value) {
        (_, Value::Null) | (Kind::String, Value::String(_)) | (Kind::Bool, Value::Bool(_)) => {
            Ok(())
        }
        (Kind::Int, Value::Number(number)) if number.as_i64().is_some() => Ok(()),
        (Kind::Int, _) => refused("int"),
        (Kind::String, _) => refused("string"),
        (Kind::Bool, _) => refused("bool"),
        (Kind::Strings, Value::Array(items)) => items
            .iter()
            .try_for_each(|item| check(field, &Kind::String, item)),
        (Kind::Strings, _) => refused("[]string"),
        (Kind::Struct(fields), Value::Object(members)) => {
            for (key, member) in members {
                if let Some((name, kind)) = fields.iter().find(|(name, _)| same_name(name, key)) {
                    check(&format!("{field}.{name}"), kind, member)?;
                }
            }
            Ok(())
        }
        (Kind::Struct(_), _) => refused("struct"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(files: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        files
            .iter()
            .map(|(name, content)| ((*name).to_owned(), content.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn files_are_read_in_name_order_and_the_first_definition_wins() {
        let net_d = NetD::load(&entries(&[
            (
                "50-admin.conf",
                r#"{"name": "rkt.kubernetes.io", "type": "ptp"}"#,
            ),
            (
                "00-rktnetes.conf",
                r#"{"name": "rkt.kubernetes.io", "type": "bridge"}"#,
            ),
            ("10-other.json", "not read"),
        ]));
        assert_eq!(net_d.undecodable, None);
        let ours = net_d.defining("rkt.kubernetes.io").unwrap();
        assert_eq!(
            (ours.file.as_str(), ours.plugin.as_str()),
            ("00-rktnetes.conf", "bridge")
        );
        assert_eq!(net_d.files.len(), 2);
    }

    #[test]
    fn go_decodes_leniently() {
        for lenient in [
            r#"{"NAME": "x", "Type": "bridge", "unknown": [1, {}]}"#,
            r#"{"name": null, "mtu": null, "ipam": null}"#,
            "null",
            r#"{"mtu": -1460, "ipMasq": false, "dns": {"nameservers": ["10.0.0.1"], "Domain": "x"}}"#,
            r#"{"name": "a", "name": "b"}"#,
        ] {
            assert!(decode(lenient.as_bytes()).is_ok(), "{lenient}");
        }
        assert_eq!(
            decode(br#"{"name": "a", "NAME": "b"}"#).unwrap().0,
            "b",
            "the last key wins"
        );
    }

    #[test]
    fn what_go_refuses_fails_every_pod() {
        for (refused, why) in [
            (r#"{"mtu": "1460"}"#, "NetConf.mtu of type int"),
            (r#"{"mtu": 1460.5}"#, "NetConf.mtu of type int"),
            (r#"{"name": 5}"#, "NetConf.name of type string"),
            (r#"{"ipMasq": "true"}"#, "NetConf.ipMasq of type bool"),
            (
                r#"{"ipam": {"type": 1}}"#,
                "NetConf.ipam.type of type string",
            ),
            (
                r#"{"dns": {"nameservers": "10.0.0.1"}}"#,
                "of type []string",
            ),
            (r#"{"ipam": []}"#, "NetConf.ipam of type struct"),
            ("[]", "not an object"),
            ("", "invalid JSON"),
            (r#"{"name": "a"} {}"#, "invalid JSON"),
        ] {
            let error = decode(refused.as_bytes()).unwrap_err();
            assert!(error.contains(why), "{refused}: {error}");
        }
        let net_d = NetD::load(&entries(&[
            (
                "00-rktnetes.conf",
                r#"{"name": "rkt.kubernetes.io", "type": "bridge"}"#,
            ),
            ("90-broken.conf", r#"{"mtu": "big"}"#),
        ]));
        let (file, reason) = net_d.undecodable.unwrap();
        assert_eq!(file, "90-broken.conf");
        assert!(reason.contains("NetConf.mtu"), "{reason}");
    }
}
