//! Counting writes from the API server's own audit log (the control plane records every write at the Metadata
//! level): who wrote what, with which verb, and whether it succeeded, between two marks.

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead, BufReader, Seek, SeekFrom},
    path::{Path, PathBuf},
};

use anyhow::Context;
use serde_json::Value;

/// A place in the audit log: what was written after it is counted.
#[derive(Clone, Debug)]
pub struct Mark {
    path: PathBuf,
    offset: u64,
}

/// One kind of write: who made it, to which resource (`resource/subresource`), with which verb, and whether the
/// API server answered with success.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WriteKind {
    pub user: String,
    pub resource: String,
    pub verb: String,
    pub succeeded: bool,
}

/// Writes counted by kind.
#[derive(Clone, Debug, Default)]
pub struct Writes(pub BTreeMap<WriteKind, u64>);

impl Mark {
    /// The end of the log now.
    pub fn now(path: &Path) -> anyhow::Result<Self> {
        let offset = fs::metadata(path)
            .with_context(|| {
                format!(
                    "reading {} (is the control plane's audit log on?)",
                    path.display()
                )
            })?
            .len();
        Ok(Self {
            path: path.to_owned(),
            offset,
        })
    }

    /// The writes logged since the mark. The API server logs in batches (about a second behind).
    pub fn writes_since(&self) -> anyhow::Result<Writes> {
        let mut file = fs::File::open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut writes = Writes::default();
        for line in BufReader::new(file).lines() {
            let line = line.with_context(|| format!("reading {}", self.path.display()))?;
            if let Ok(event) = serde_json::from_str::<Value>(&line)
                && let Some(kind) = write_kind(&event)
            {
                *writes.0.entry(kind).or_default() += 1;
            }
        }
        Ok(writes)
    }
}

/// The kind of write an audit event records, for events of the ResponseComplete stage.
fn write_kind(event: &Value) -> Option<WriteKind> {
    if event["stage"] != "ResponseComplete" {
        return None;
    }
    let object = &event["objectRef"];
    let mut resource = object["resource"].as_str()?.to_owned();
    if let Some(subresource) = object["subresource"].as_str() {
        resource = format!("{resource}/{subresource}");
    }
    let code = event["responseStatus"]["code"].as_u64().unwrap_or(0);
    Some(WriteKind {
        user: event["user"]["username"].as_str()?.to_owned(),
        resource,
        verb: event["verb"].as_str()?.to_owned(),
        succeeded: (200..300).contains(&code),
    })
}

impl Writes {
    /// All writes by `user`.
    pub fn by(&self, user: &str) -> u64 {
        self.matching(|kind| kind.user == user)
    }

    /// All writes for which `wanted` holds.
    pub fn matching(&self, wanted: impl Fn(&WriteKind) -> bool) -> u64 {
        self.0
            .iter()
            .filter(|(kind, _)| wanted(kind))
            .map(|(_, count)| count)
            .sum()
    }

    /// One line per kind of write by `user`: `verb resource: count`, failures marked.
    pub fn breakdown(&self, user: &str) -> String {
        let lines: Vec<String> = self
            .0
            .iter()
            .filter(|(kind, _)| kind.user == user)
            .map(|(kind, count)| {
                let failed = if kind.succeeded { "" } else { " (failed)" };
                format!("{} {}{failed}: {count}", kind.verb, kind.resource)
            })
            .collect();
        if lines.is_empty() {
            "none".to_owned()
        } else {
            lines.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_completed_write_is_counted_by_user_resource_and_verb() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = dir.path().join("audit.log");
        let event = |stage: &str, subresource: Option<&str>, code: u64| {
            json!({
                "stage": stage, "verb": "patch",
                "user": {"username": "system:serviceaccount:rktnetes-system:rktnetes-agent"},
                "objectRef": {"resource": "rktnodestates", "subresource": subresource, "name": "n1"},
                "responseStatus": {"code": code},
            })
            .to_string()
        };
        fs::write(&log, format!("{}\n", event("ResponseComplete", None, 200))).expect("written");
        let mark = Mark::now(&log).expect("marked");
        let lines = [
            event("ResponseComplete", Some("status"), 200),
            event("ResponseComplete", Some("status"), 409),
            event("Panic", Some("status"), 500),
            "not json".to_owned(),
        ];
        let mut text = fs::read_to_string(&log).expect("read");
        text.push_str(&(lines.join("\n") + "\n"));
        fs::write(&log, text).expect("written");
        let writes = mark.writes_since().expect("counted");
        let agent = "system:serviceaccount:rktnetes-system:rktnetes-agent";
        assert_eq!(writes.by(agent), 2);
        assert_eq!(writes.matching(|kind| kind.succeeded), 1);
        assert_eq!(
            writes.breakdown(agent),
            "patch rktnodestates/status (failed): 1, patch rktnodestates/status: 1"
        );
    }
}
