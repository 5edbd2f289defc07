//! `stage1.d` (rkt kind `stage1`, version `v1`): the node's default stage1 image (rkt `rkt/config/stage1.go`).

use std::path::Path;

use super::{ConfigError, FromFile, Problem, go_json::string_fields, go_url};

/// The kind of the files in `stage1.d`.
pub(super) const KIND: &str = "stage1";

/// The default stage1 image as one configuration directory, or the merge of several, defines it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stage1Config {
    /// The image's name and version, looked up in rkt's image store first; always set together.
    pub image: Option<FromFile<Stage1Image>>,
    /// Where to fetch the image from when the store lacks it: an absolute path or a file://, docker://,
    /// http:// or https:// URL.
    pub location: Option<FromFile<String>>,
}

/// A stage1 image's name and version, such as `coreos.com/rkt/stage1-coreos` and `1.30.0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage1Image {
    pub name: String,
    pub version: String,
}

impl Stage1Config {
    /// Adds the file at `path`, refusing it when it is invalid or defines what another file of the same directory
    /// already does.
    pub(super) fn add_file(&mut self, path: &Path, raw: &[u8]) -> Result<(), ConfigError> {
        let [name, version, location] = string_fields(path, raw, ["name", "version", "location"])?;
        // Go reads an absent field as "", and rkt tests fields against "", so an empty string is no value.
        let [name, version, location] =
            [name, version, location].map(|value| value.filter(|v| !v.is_empty()));
        let invalid = |problem| ConfigError::Invalid {
            path: path.to_owned(),
            kind: KIND,
            problem,
        };
        let image = match (name, version) {
            (Some(name), Some(version)) => Some(Stage1Image { name, version }),
            (None, None) => None,
            (None, Some(_)) => return Err(invalid(Problem::VersionWithoutName)),
            (Some(_), None) => return Err(invalid(Problem::NameWithoutVersion)),
        };
        if let Some(location) = &location {
            check_location(location).map_err(invalid)?;
        }
        if let Some(image) = image {
            FromFile::define(
                &mut self.image,
                "the default stage1 image's name and version",
                image,
                path,
            )?;
        }
        if let Some(location) = location {
            FromFile::define(
                &mut self.location,
                "the default stage1 image's location",
                location,
                path,
            )?;
        }
        Ok(())
    }

    /// `other`, a later directory's configuration, overriding this one field by field.
    pub(super) fn override_with(&mut self, other: Self) {
        if other.image.is_some() {
            self.image = other.image;
        }
        if other.location.is_some() {
            self.location = other.location;
        }
    }
}

/// A location is an absolute path or a URL with one of the schemes rkt fetches stage1 images from, as rkt decides:
/// a path is not parsed; anything else must be a URL that Go's `net/url` parses, with a scheme, which Go stores in
/// lower case.
fn check_location(location: &str) -> Result<(), Problem> {
    if location.starts_with('/') {
        return Ok(());
    }
    let scheme = go_url::scheme(location).map_err(|reason| Problem::LocationNotAUrl {
        location: location.to_owned(),
        reason,
    })?;
    if scheme.is_empty() {
        return Err(Problem::LocationWithoutScheme {
            location: location.to_owned(),
        });
    }
    if matches!(scheme.as_str(), "docker" | "file" | "http" | "https") {
        Ok(())
    } else {
        Err(Problem::LocationScheme {
            location: location.to_owned(),
            scheme,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Problem, check_location};

    #[test]
    fn absolute_paths_and_urls_of_the_allowed_schemes_are_locations() {
        for location in [
            "/usr/lib/rkt/stage1-images/stage1-fly.aci",
            "file:///usr/lib/rkt/stage1-images/stage1-coreos.aci",
            "https://github.com/rkt/rkt/releases/download/v1.30.0/stage1-kvm.aci",
            "http://mirror.example/stage1.aci",
            "docker://example/stage1",
            "HTTPS://mirror.example/stage1.aci",
        ] {
            assert_eq!(check_location(location), Ok(()), "{location}");
        }
    }

    #[test]
    fn relative_paths_and_other_schemes_are_refused() {
        assert!(matches!(
            check_location("stage1-coreos.aci"),
            Err(Problem::LocationWithoutScheme { .. })
        ));
        assert!(matches!(
            check_location("./images/stage1.aci"),
            Err(Problem::LocationWithoutScheme { .. })
        ));
        assert!(matches!(
            check_location("ftp://mirror.example/stage1.aci"),
            Err(Problem::LocationScheme { scheme, .. }) if scheme == "ftp"
        ));
        assert!(matches!(
            check_location("://nothing"),
            Err(Problem::LocationNotAUrl { .. })
        ));
        // rkt parses a URL before it looks at its scheme: what Go's net/url refuses is refused with Go's reason.
        assert_eq!(
            check_location("http://[::1"),
            Err(Problem::LocationNotAUrl {
                location: "http://[::1".to_owned(),
                reason: "missing ']' in host".to_owned(),
            })
        );
    }
}
