//! Whether rkt would start on its configuration: checked with the project's reader of rkt's configuration
//! directories ([`crate::rkt::config`]) over what the node would hold after a change, before anything is written
//! or restarted, and over what it holds now, when the agent observes the node.

use super::{host_files::Host, ledger::Ledger};
use crate::{
    api::HostFile,
    rkt::config::{
        ConfigError, DEFAULT_LOCAL_CONFIG_DIR, DEFAULT_SYSTEM_CONFIG_DIR, LayerFiles, RktConfig,
    },
};

/// The configuration rkt's API service would start with once the managed files are `desired`: the node's system
/// and local directories as they are, with `desired` written and every managed file that `desired` no longer
/// lists let go of (its original put back, or removed). The API service runs with rkt's default directories.
pub fn after_change(
    host: &Host,
    ledger: &Ledger,
    desired: &[HostFile],
) -> Result<RktConfig, ConfigError> {
    let local_dir = host.path(DEFAULT_LOCAL_CONFIG_DIR);
    let let_go = ledger
        .files
        .iter()
        .filter(|(path, _)| !desired.iter().any(|file| &file.path == *path))
        .map(|(path, managed)| (path.as_str(), managed.original.as_deref()));
    let written = desired
        .iter()
        .map(|file| (file.path.as_str(), Some(file.content.as_str())));
    let local =
        let_go
            .chain(written)
            .fold(LayerFiles::read(&local_dir)?, |layer, (path, content)| {
                layer.with_file(
                    &local_dir,
                    &host.path(path),
                    content.map(|text| text.as_bytes().to_vec()),
                )
            });
    RktConfig::merged(&[system_layer(host)?, local])
}

/// The configuration rkt's API service would start with now.
pub fn now(host: &Host) -> Result<RktConfig, ConfigError> {
    RktConfig::merged(&[
        system_layer(host)?,
        LayerFiles::read(&host.path(DEFAULT_LOCAL_CONFIG_DIR))?,
    ])
}

fn system_layer(host: &Host) -> Result<LayerFiles, ConfigError> {
    LayerFiles::read(&host.path(DEFAULT_SYSTEM_CONFIG_DIR))
}

/// What an admin reads when rkt would refuse its configuration.
pub fn refusal(error: &ConfigError) -> String {
    format!("rkt would refuse its configuration and not start: {error}")
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::agent::ledger::ManagedFile;

    const OURS: &str = "/etc/rkt/stage1.d/50-rktnetes.json";
    const STAGE1: &str = r#"{"rktKind": "stage1", "rktVersion": "v1", "name": "coreos.com/rkt/stage1-coreos", "version": "1.30.0"}"#;

    fn host() -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        let host = Host {
            root: dir.path().to_owned(),
        };
        (dir, host)
    }

    fn write(host: &Host, path: &str, content: &str) {
        let target = host.path(path);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::write(target, content).unwrap();
    }

    fn file(path: &str, content: &str) -> HostFile {
        HostFile {
            path: path.to_owned(),
            content: content.to_owned(),
            mode: 0o644,
        }
    }

    #[test]
    fn a_foreign_file_defining_the_same_field_makes_the_change_refused_naming_both() {
        let (_dir, host) = host();
        let foreign = "/etc/rkt/stage1.d/90-admin.json";
        write(&host, foreign, STAGE1);
        let error = after_change(&host, &Ledger::default(), &[file(OURS, STAGE1)]).unwrap_err();
        let message = refusal(&error);
        assert!(
            matches!(error, ConfigError::DefinedTwice { .. })
                && message.contains("50-rktnetes.json")
                && message.contains("90-admin.json"),
            "{message}"
        );
        assert!(now(&host).is_ok(), "the node as it is now is fine");
        assert!(!host.path(OURS).exists(), "nothing was written");
    }

    #[test]
    fn a_managed_file_no_longer_desired_is_judged_as_let_go() {
        let (_dir, host) = host();
        let foreign = "/etc/rkt/stage1.d/90-admin.json";
        write(&host, OURS, STAGE1);
        let mut ledger = Ledger::default();
        ledger.files.insert(
            OURS.to_owned(),
            ManagedFile {
                content: STAGE1.to_owned(),
                mode: 0o644,
                original: None,
            },
        );
        // The admin's file and ours conflict now; without ours (removed, having had no original), they do not.
        write(&host, foreign, STAGE1);
        assert!(now(&host).is_err());
        let config = after_change(&host, &ledger, &[]).unwrap();
        assert_eq!(
            config.stage1.image.map(|image| image.file),
            Some(host.path(foreign))
        );
        // With an original of its own that conflicts too, letting go is refused.
        ledger.files.get_mut(OURS).unwrap().original = Some(STAGE1.to_owned());
        assert!(after_change(&host, &ledger, &[]).is_err());
    }

    #[test]
    fn files_rkt_does_not_read_at_start_up_are_not_judged() {
        let (_dir, host) = host();
        let desired = [
            file("/etc/rkt/net.d/00-rktnetes.conf", "not JSON"),
            file("/etc/rkt/stage1.d/README", "not JSON"),
            file(
                "/etc/systemd/system/kubelet.service.d/20-rktnetes.conf",
                "[Service]",
            ),
        ];
        assert!(after_change(&host, &Ledger::default(), &desired).is_ok());
    }

    #[test]
    fn the_system_directory_counts_as_rkt_reads_it() {
        let (_dir, host) = host();
        write(
            &host,
            "/usr/lib/rkt/stage1.d/00-vendor.json",
            r#"{"rktKind": "stage1"}"#,
        );
        let error = after_change(&host, &Ledger::default(), &[file(OURS, STAGE1)]).unwrap_err();
        assert!(matches!(error, ConfigError::NoVersion { .. }), "{error}");
    }
}
