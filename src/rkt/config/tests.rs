use std::{
    fs,
    path::{Path, PathBuf},
};

use super::{ConfigDirs, ConfigError, Problem, RktConfig, Stage1Image, read_config_dir};

/// A system and a local configuration directory in a fresh temporary directory.
struct Dirs {
    _root: tempfile::TempDir,
    system: PathBuf,
    local: PathBuf,
}

impl Dirs {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let system = root.path().join("usr/lib/rkt");
        let local = root.path().join("etc/rkt");
        Self {
            _root: root,
            system,
            local,
        }
    }

    fn config_dirs(&self) -> ConfigDirs {
        ConfigDirs {
            system: self.system.clone(),
            local: self.local.clone(),
            user: None,
        }
    }

    fn read(&self) -> Result<RktConfig, ConfigError> {
        self.config_dirs().read()
    }
}

fn write(dir: &Path, relative: &str, content: &str) -> PathBuf {
    let path = dir.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, content).unwrap();
    path
}

const COREOS: &str = r#"{"rktKind": "stage1", "rktVersion": "v1", "name": "coreos.com/rkt/stage1-coreos", "version": "1.30.0"}"#;

fn image(name: &str, version: &str) -> Stage1Image {
    Stage1Image {
        name: name.to_owned(),
        version: version.to_owned(),
    }
}

#[test]
fn missing_directories_are_an_empty_configuration() {
    let dirs = Dirs::new();
    assert_eq!(dirs.read().unwrap(), RktConfig::default());
}

#[test]
fn a_valid_configuration_is_read_with_the_files_that_set_it() {
    let dirs = Dirs::new();
    let stage1 = write(&dirs.local, "stage1.d/rktnetes.json", COREOS);
    let location = write(
        &dirs.local,
        "stage1.d/where.json",
        r#"{"rktKind": "stage1", "rktVersion": "v1", "location": "/usr/lib/rkt/stage1-images/stage1-coreos.aci"}"#,
    );
    let paths = write(
        &dirs.local,
        "paths.d/paths.json",
        r#"{"rktKind": "paths", "rktVersion": "v1", "data": "/srv/rkt", "stage1-images": "/srv/stage1"}"#,
    );
    let config = dirs.read().unwrap();
    let stage1_image = config.stage1.image.unwrap();
    assert_eq!(
        stage1_image.value,
        image("coreos.com/rkt/stage1-coreos", "1.30.0")
    );
    assert_eq!(stage1_image.file, stage1);
    let stage1_location = config.stage1.location.unwrap();
    assert_eq!(
        stage1_location.value,
        "/usr/lib/rkt/stage1-images/stage1-coreos.aci"
    );
    assert_eq!(stage1_location.file, location);
    let data = config.paths.data.unwrap();
    assert_eq!(data.value, Path::new("/srv/rkt"));
    assert_eq!(data.file, paths);
    assert_eq!(
        config.paths.stage1_images.unwrap().value,
        Path::new("/srv/stage1")
    );
}

#[test]
fn the_same_field_in_two_files_of_one_directory_is_an_error_naming_both() {
    let dirs = Dirs::new();
    let first = write(&dirs.local, "stage1.d/10-vendor.json", COREOS);
    let second = write(
        &dirs.local,
        "stage1.d/20-rktnetes.json",
        r#"{"rktKind": "stage1", "rktVersion": "v1", "name": "coreos.com/rkt/stage1-kvm", "version": "1.30.0"}"#,
    );
    let error = dirs.read().unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(&error, ConfigError::DefinedTwice { first: f, second: s, .. } if *f == first && *s == second),
        "{message}"
    );
    assert!(
        message.contains("10-vendor.json") && message.contains("20-rktnetes.json"),
        "{message}"
    );
}

#[test]
fn different_fields_in_two_files_of_one_directory_are_fine() {
    let dirs = Dirs::new();
    write(&dirs.local, "stage1.d/name.json", COREOS);
    write(
        &dirs.local,
        "stage1.d/location.json",
        r#"{"rktKind": "stage1", "rktVersion": "v1", "location": "docker://example/stage1"}"#,
    );
    let config = dirs.read().unwrap();
    assert!(config.stage1.image.is_some() && config.stage1.location.is_some());
}

#[test]
fn a_data_directory_in_two_files_of_one_directory_is_an_error() {
    let dirs = Dirs::new();
    write(
        &dirs.system,
        "paths.d/a.json",
        r#"{"rktKind": "paths", "rktVersion": "v1", "data": "/a"}"#,
    );
    write(
        &dirs.system,
        "paths.d/b.json",
        r#"{"rktKind": "paths", "rktVersion": "v1", "data": "/b"}"#,
    );
    let error = dirs.read().unwrap_err();
    assert!(
        matches!(
            error,
            ConfigError::DefinedTwice {
                field: "the data directory",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn local_values_override_system_values_field_by_field() {
    let dirs = Dirs::new();
    write(
        &dirs.system,
        "stage1.d/vendor.json",
        r#"{"rktKind": "stage1", "rktVersion": "v1", "name": "coreos.com/rkt/stage1-coreos", "version": "1.29.0",
            "location": "/usr/lib/rkt/stage1-images/stage1-coreos.aci"}"#,
    );
    // The same name in both directories is an override, not a conflict: file names do not matter across them.
    let local = write(
        &dirs.local,
        "stage1.d/vendor.json",
        r#"{"rktKind": "stage1", "rktVersion": "v1", "name": "coreos.com/rkt/stage1-kvm", "version": "1.30.0"}"#,
    );
    write(
        &dirs.system,
        "paths.d/paths.json",
        r#"{"rktKind": "paths", "rktVersion": "v1", "data": "/vendor"}"#,
    );
    let config = dirs.read().unwrap();
    let stage1_image = config.stage1.image.unwrap();
    assert_eq!(
        stage1_image.value,
        image("coreos.com/rkt/stage1-kvm", "1.30.0")
    );
    assert_eq!(stage1_image.file, local);
    assert_eq!(
        config.stage1.location.unwrap().value,
        "/usr/lib/rkt/stage1-images/stage1-coreos.aci"
    );
    assert_eq!(config.paths.data.unwrap().value, Path::new("/vendor"));
}

#[test]
fn the_user_directory_overrides_the_local_one() {
    let dirs = Dirs::new();
    write(&dirs.local, "stage1.d/a.json", COREOS);
    let user = dirs.local.parent().unwrap().join("home/rkt");
    write(
        &user,
        "stage1.d/a.json",
        r#"{"rktKind": "stage1", "rktVersion": "v1", "name": "coreos.com/rkt/stage1-fly", "version": "1.30.0"}"#,
    );
    let config = ConfigDirs {
        user: Some(user),
        ..dirs.config_dirs()
    }
    .read()
    .unwrap();
    assert_eq!(
        config.stage1.image.unwrap().value.name,
        "coreos.com/rkt/stage1-fly"
    );
}

#[test]
fn a_missing_or_wrong_kind_or_version_is_an_error() {
    let cases = [
        (
            r#"{"rktVersion": "v1", "name": "a", "version": "1"}"#,
            "no rktKind",
        ),
        (r#"{"rktKind": "", "rktVersion": "v1"}"#, "no rktKind"),
        (
            r#"{"rktKind": "stage1", "name": "a", "version": "1"}"#,
            "no rktVersion",
        ),
        (
            r#"{"rktKind": "paths", "rktVersion": "v1"}"#,
            "expects configuration files of kind \"stage1\"",
        ),
        (
            r#"{"rktKind": "stage1", "rktVersion": "v2"}"#,
            "kind \"stage1\" and version \"v2\"",
        ),
        (r#"{"rktKind": 1, "rktVersion": "v1"}"#, "must be a string"),
        ("not json", "not a JSON object"),
    ];
    for (content, expected) in cases {
        let dirs = Dirs::new();
        let path = write(&dirs.local, "stage1.d/x.json", content);
        let message = dirs.read().unwrap_err().to_string();
        assert!(message.contains(expected), "{content}: {message}");
        assert!(
            message.contains(&path.display().to_string()),
            "{content}: {message}"
        );
    }
}

#[test]
fn a_name_without_a_version_or_a_version_without_a_name_is_an_error() {
    for (content, expected) in [
        (
            r#"{"rktKind": "stage1", "rktVersion": "v1", "name": "coreos.com/rkt/stage1-coreos"}"#,
            Problem::NameWithoutVersion,
        ),
        (
            r#"{"rktKind": "stage1", "rktVersion": "v1", "version": "1.30.0"}"#,
            Problem::VersionWithoutName,
        ),
        (
            r#"{"rktKind": "stage1", "rktVersion": "v1", "name": "x", "version": ""}"#,
            Problem::NameWithoutVersion,
        ),
    ] {
        let dirs = Dirs::new();
        write(&dirs.system, "stage1.d/x.json", content);
        match dirs.read().unwrap_err() {
            ConfigError::Invalid {
                problem,
                kind: "stage1",
                ..
            } => assert_eq!(problem, expected, "{content}"),
            other => panic!("{content}: {other}"),
        }
    }
}

#[test]
fn a_bad_location_is_an_error() {
    for location in [
        "stage1-coreos.aci",
        "ftp://mirror.example/stage1.aci",
        ":nothing",
    ] {
        let dirs = Dirs::new();
        write(
            &dirs.local,
            "stage1.d/x.json",
            &format!(r#"{{"rktKind": "stage1", "rktVersion": "v1", "location": "{location}"}}"#),
        );
        let error = dirs.read().unwrap_err();
        assert!(
            matches!(error, ConfigError::Invalid { kind: "stage1", .. }),
            "{location}: {error}"
        );
        assert!(error.to_string().contains(location), "{error}");
    }
}

#[test]
fn a_relative_data_directory_is_an_error() {
    let dirs = Dirs::new();
    write(
        &dirs.local,
        "paths.d/p.json",
        r#"{"rktKind": "paths", "rktVersion": "v1", "data": "var/lib/rkt"}"#,
    );
    let error = dirs.read().unwrap_err();
    assert!(
        matches!(
            error,
            ConfigError::Invalid {
                problem: Problem::RelativePath { field: "data", .. },
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn only_regular_json_files_directly_in_the_kind_directory_are_read() {
    let dirs = Dirs::new();
    let broken = r#"{"rktKind": "stage1", "rktVersion": "v1", "name": "only-a-name"}"#;
    write(&dirs.local, "stage1.d/README", broken);
    write(&dirs.local, "stage1.d/x.json.bak", broken);
    write(&dirs.local, "stage1.d/nested/x.json", broken);
    let target = write(&dirs.local, "elsewhere/x.json", broken);
    std::os::unix::fs::symlink(&target, dirs.local.join("stage1.d/link.json")).unwrap();
    write(&dirs.local, "stage1.d/.json", COREOS);
    let config = dirs.read().unwrap();
    assert_eq!(
        config.stage1.image.unwrap().value,
        image("coreos.com/rkt/stage1-coreos", "1.30.0")
    );
}

#[test]
fn a_kind_directory_that_is_a_symbolic_link_is_ignored_as_rkt_ignores_it() {
    let dirs = Dirs::new();
    let real = dirs.local.parent().unwrap().join("stage1.d-real");
    write(
        &real,
        "x.json",
        r#"{"rktKind": "stage1", "rktVersion": "v1", "name": "only-a-name"}"#,
    );
    fs::create_dir_all(&dirs.local).unwrap();
    std::os::unix::fs::symlink(&real, dirs.local.join("stage1.d")).unwrap();
    assert_eq!(dirs.read().unwrap(), RktConfig::default());
}

#[test]
fn net_d_is_not_read_at_start() {
    let dirs = Dirs::new();
    write(&dirs.local, "net.d/00-broken.conf", "not json");
    write(&dirs.local, "net.d/10-broken.json", "not json");
    assert_eq!(dirs.read().unwrap(), RktConfig::default());
}

#[test]
fn a_configuration_directory_that_is_a_file_is_an_error() {
    let dirs = Dirs::new();
    write(&dirs.local, "stage1.d", "");
    let error = read_config_dir(&dirs.local).unwrap_err();
    assert!(
        matches!(error, ConfigError::NotADirectory { .. }),
        "{error}"
    );
}
