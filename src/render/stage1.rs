//! The node's default stage1 image, as an rkt `stage1.d` configuration file.

use serde::Serialize;

use super::{RenderError, host_file, json};
use crate::api::{HostFile, Stage1, host_paths::RKT_STAGE1_DIR};

/// rkt reads every `*.json` in `stage1.d` and refuses a field that two files define, so all of ours goes in one file.
fn path() -> String {
    format!("{RKT_STAGE1_DIR}/rktnetes.json")
}

/// rkt's stage1 configuration (rkt `Documentation/configuration.md`, kind `stage1`, version `v1`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stage1Config<'a> {
    rkt_kind: &'static str,
    rkt_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<&'a str>,
}

/// The `stage1.d` file for `stage1`, with only the fields it sets.
pub(super) fn render(stage1: &Stage1) -> Result<HostFile, RenderError> {
    let config = Stage1Config {
        rkt_kind: "stage1",
        rkt_version: "v1",
        name: stage1.name.as_deref(),
        version: stage1.version.as_deref(),
        location: stage1.location.as_deref(),
    };
    Ok(host_file(path(), json::file_content(&config)?))
}

#[cfg(test)]
mod tests {
    use super::{path, render};
    use crate::api::Stage1;

    #[test]
    fn writes_only_the_fields_that_are_set() {
        let stage1 = Stage1 {
            name: Some("coreos.com/rkt/stage1-kvm".to_owned()),
            version: Some("1.30.0".to_owned()),
            location: None,
        };
        let file = render(&stage1).unwrap();
        assert_eq!(file.path, path());
        assert_eq!(file.mode, 0o644);
        assert_eq!(
            file.content,
            "{\n  \"rktKind\": \"stage1\",\n  \"rktVersion\": \"v1\",\n  \"name\": \"coreos.com/rkt/stage1-kvm\",\n  \"version\": \"1.30.0\"\n}\n"
        );
    }

    #[test]
    fn a_location_alone_is_written_alone() {
        let stage1 = Stage1 {
            location: Some("/usr/lib/rkt/stage1-images/stage1-fly.aci".to_owned()),
            ..Stage1::default()
        };
        let config: serde_json::Value =
            serde_json::from_str(&render(&stage1).unwrap().content).unwrap();
        assert_eq!(
            config,
            serde_json::json!({
                "rktKind": "stage1",
                "rktVersion": "v1",
                "location": "/usr/lib/rkt/stage1-images/stage1-fly.aci",
            })
        );
    }
}
