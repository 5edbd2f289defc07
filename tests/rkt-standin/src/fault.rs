//! Injected faults: a switch of the stand-in's own (rkt has none), with which the rollback campaign makes the rkt
//! API service fail while a chosen configuration is in place, the way a real rkt fails on a configuration it
//! cannot use. The fault file ([`FAULT_FILE`]) holds three lines: the mode (`exit`: the API service exits at
//! start; `getinfo`: it starts but answers GetInfo with UNAVAILABLE), a file path, and a text. The fault holds
//! when the API service starts while that file contains that text; a service started before, or with the file
//! otherwise, is healthy. Without the fault file nothing changes.
//!
//! A release stamp (see the `version` module) can break a release for good: a binary stamped with the fault word
//! `exit` is a broken rkt release, whose API service exits at start, before it opens its socket ([`released`]).

use std::{fs, io, path::PathBuf};

use crate::version::ReleaseStamp;

/// Where the fault is described: on tmpfs, so a reboot clears it.
pub const FAULT_FILE: &str = "/run/rkt-standin/fault";

/// What the API service does wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultMode {
    /// Exit with an error at start.
    Exit,
    /// Answer GetInfo with UNAVAILABLE.
    GetInfo,
}

/// A fault that holds for this start of the API service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub mode: FaultMode,
    /// Why, for the messages: the file and the text found in it.
    pub cause: String,
}

/// Why the fault file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the fault file {FAULT_FILE} is not `exit|getinfo`, a path and a text on three lines: {0}")]
pub struct FaultFileError(String);

/// The fault that holds now, if any.
pub fn injected() -> Result<Option<Fault>, FaultFileError> {
    match fs::read_to_string(FAULT_FILE) {
        Ok(text) => holds(&text, |path| fs::read_to_string(path)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(FaultFileError(error.to_string())),
    }
}

/// The fault of a stamped release, if it is a broken one: its API service exits at start. A fault word other than
/// `exit` (only a binary edited by hand has one) breaks the release the same way, and the cause says so.
pub fn released(stamp: &ReleaseStamp) -> Option<Fault> {
    let fault = stamp.fault.as_deref()?;
    let text = stamp.to_string();
    let cause = match fault {
        "exit" => format!("release fault: this rkt is the broken release stamped {text:?}"),
        unknown => {
            format!(
                "release fault: this rkt is stamped {text:?}, with the unknown fault {unknown:?}"
            )
        }
    };
    Some(Fault {
        mode: FaultMode::Exit,
        cause,
    })
}

/// Whether the fault `description` holds, reading files with `read`.
fn holds(
    description: &str,
    read: impl Fn(&PathBuf) -> io::Result<String>,
) -> Result<Option<Fault>, FaultFileError> {
    let mut lines = description.lines();
    let (Some(mode), Some(path), Some(text)) = (lines.next(), lines.next(), lines.next()) else {
        return Err(FaultFileError(format!("{description:?}")));
    };
    let mode = match mode.trim() {
        "exit" => FaultMode::Exit,
        "getinfo" => FaultMode::GetInfo,
        other => return Err(FaultFileError(format!("unknown mode {other:?}"))),
    };
    let path = PathBuf::from(path.trim());
    let found = read(&path).is_ok_and(|content| content.contains(text));
    Ok(found.then(|| Fault {
        mode,
        cause: format!("injected fault: {} contains {text:?}", path.display()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(content: &'static str) -> impl Fn(&PathBuf) -> io::Result<String> {
        move |_| Ok(content.to_owned())
    }

    #[test]
    fn a_fault_holds_only_while_the_file_holds_the_text() {
        let description = "getinfo\n/etc/rkt/net.d/00-rktnetes.conf\n\"mtu\": 1007,\n";
        let fault = holds(description, reading("{\"mtu\": 1007,}"))
            .unwrap()
            .unwrap();
        assert_eq!(fault.mode, FaultMode::GetInfo);
        assert!(fault.cause.contains("1007"), "{}", fault.cause);
        assert_eq!(
            holds(description, reading("{\"mtu\": 1460,}")).unwrap(),
            None
        );
        let missing = |_: &PathBuf| Err(io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(holds(description, missing).unwrap(), None);
    }

    #[test]
    fn a_release_stamped_exit_exits_and_says_which_release_it_is() {
        let stamp = |fault: Option<&str>| ReleaseStamp {
            version: "1.29.0".to_owned(),
            fault: fault.map(str::to_owned),
        };
        assert_eq!(released(&stamp(None)), None);
        let fault = released(&stamp(Some("exit"))).unwrap();
        assert_eq!(fault.mode, FaultMode::Exit);
        assert!(fault.cause.contains("\"1.29.0 exit\""), "{}", fault.cause);
        let fault = released(&stamp(Some("crash"))).unwrap();
        assert_eq!(fault.mode, FaultMode::Exit);
        assert!(
            fault.cause.contains("unknown fault \"crash\""),
            "{}",
            fault.cause
        );
    }

    #[test]
    fn a_malformed_fault_file_is_refused() {
        assert!(holds("exit\n/etc/x\n", reading("")).is_err());
        assert!(holds("crash\n/etc/x\ntext\n", reading("text")).is_err());
    }
}
