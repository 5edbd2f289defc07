//! `rktnetes crdgen`: the CRDs as YAML, on stdout or into `crds/`.

use std::{io::Write, path::PathBuf};

use clap::Args;

use crate::api::crd;

#[derive(Debug, Args)]
pub struct CrdgenArgs {
    /// Write one file per CRD into this directory (as committed in `crds/`) instead of printing them.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum CrdgenError {
    #[error("cannot serialise a CRD as YAML: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub fn run(args: &CrdgenArgs) -> Result<(), CrdgenError> {
    let files = crd::rendered_files(args.dir.as_deref().unwrap_or(".".as_ref()))?;
    match &args.dir {
        Some(_) => {
            for (path, yaml) in files {
                std::fs::write(&path, yaml)
                    .map_err(|source| CrdgenError::Write { path, source })?;
            }
        }
        None => {
            let documents: Vec<String> = files.into_iter().map(|(_, yaml)| yaml).collect();
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(documents.join("---\n").as_bytes())
                .map_err(|source| CrdgenError::Write {
                    path: "<stdout>".into(),
                    source,
                })?;
        }
    }
    Ok(())
}
