//! `paths.d` (rkt kind `paths`, version `v1`): where rkt keeps its data and its stage1 images
//! (rkt `rkt/config/paths.go`).

use std::path::{Path, PathBuf};

use super::{ConfigError, FromFile, Problem, go_json::string_fields};

/// The kind of the files in `paths.d`.
pub(super) const KIND: &str = "paths";

/// The directories one configuration directory, or the merge of several, sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathsConfig {
    /// Where images and pods are stored (`data`); rkt's `--dir` flag, when given, wins over it.
    pub data: Option<FromFile<PathBuf>>,
    /// Where rkt looks for stage1 images by file name (`stage1-images`).
    pub stage1_images: Option<FromFile<PathBuf>>,
}

impl PathsConfig {
    /// Adds the file at `path`, refusing it when it is invalid or sets what another file of the same directory
    /// already does.
    pub(super) fn add_file(&mut self, path: &Path, raw: &[u8]) -> Result<(), ConfigError> {
        let [data, stage1_images] = string_fields(path, raw, ["data", "stage1-images"])?;
        // rkt reports a second definition before a relative path, and so do we, for the same message.
        for (slot, field, label, value) in [
            (&mut self.data, "data", "the data directory", data),
            (
                &mut self.stage1_images,
                "stage1-images",
                "the stage1 images directory",
                stage1_images,
            ),
        ] {
            let Some(value) = value.filter(|value| !value.is_empty()) else {
                continue;
            };
            if slot.is_none() && !value.starts_with('/') {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    kind: KIND,
                    problem: Problem::RelativePath { field, path: value },
                });
            }
            FromFile::define(slot, label, PathBuf::from(value), path)?;
        }
        Ok(())
    }

    /// `other`, a later directory's configuration, overriding this one field by field.
    pub(super) fn override_with(&mut self, other: Self) {
        if other.data.is_some() {
            self.data = other.data;
        }
        if other.stage1_images.is_some() {
            self.stage1_images = other.stage1_images;
        }
    }
}
