//! Installing the rkt release of `spec.rkt.install` beside the one the node runs: download (with the digest taken
//! as the bytes arrive), verify, unpack, and check that the unpacked `rkt` is the version asked for, all under a
//! partial name in `/opt/rkt/releases`; only a release that passed every check gets its own name there. Nothing the
//! node runs changes here: switching to the release is the change that follows ([`releases::switch`]), which the
//! agent restarts the rkt API service for, checks, and rolls back like any other.

mod download;
pub mod releases;
mod signature;
mod unpack;

use std::time::{Duration, Instant};

pub use self::download::Trust;
use self::{
    download::{DownloadError, Downloaded},
    releases::PARTIAL_PREFIX,
    signature::SignatureError,
    unpack::UnpackError,
};
use super::{
    atomic_file::FileError,
    host_files::Host,
    host_namespace::HostPrograms,
    rkt_binary::{self, RktBinaryError},
};
use crate::api::{RktInstall, host_paths::RKT_RELEASES_DIR};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error(
        "{url} has SHA-512 {actual}, not {expected} as spec.rkt.install.sha512 says; nothing of it was kept"
    )]
    Digest {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{url}: {source}; nothing of it was kept")]
    Signature {
        url: String,
        #[source]
        source: SignatureError,
    },
    #[error("{url}: {source}")]
    Unpack {
        url: String,
        #[source]
        source: UnpackError,
    },
    #[error("the rkt in {url} reports version {reported}, not {expected}; nothing of it was kept")]
    WrongVersion {
        url: String,
        expected: String,
        reported: String,
    },
    #[error("cannot run the rkt in {url}: {source}")]
    Unrunnable {
        url: String,
        #[source]
        source: RktBinaryError,
    },
    #[error(transparent)]
    File(#[from] FileError),
}

impl InstallError {
    /// Whether the same archive would fail the same way again: not tried again until the spec changes.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Download(error) => matches!(error, DownloadError::TooLarge { .. }),
            Self::Digest { .. }
            | Self::Signature { .. }
            | Self::Unpack { .. }
            | Self::WrongVersion { .. }
            | Self::Unrunnable { .. } => true,
            Self::File(_) => false,
        }
    }
}

/// A release ready on the node, and how long each part of getting it took.
#[derive(Debug)]
pub struct Prepared {
    /// Its directory's name in `/opt/rkt/releases`.
    pub name: String,
    /// `None` when the release was already there.
    pub timings: Option<Timings>,
}

/// How long each part of an install took.
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    pub download: Duration,
    pub size: u64,
    /// Comparing the digest, checking the signature, and checking `rkt version` of the unpacked release.
    pub verify: Duration,
    pub unpack: Duration,
}

/// Makes rkt `version`'s release from `install` ready in `/opt/rkt/releases`, unless it already is.
pub async fn prepare(
    host: &Host,
    programs: &HostPrograms,
    version: &str,
    install: &RktInstall,
    trust: &Trust,
) -> Result<Prepared, InstallError> {
    let name = releases::release_name(version, &install.sha512);
    let release = releases::release_dir(host, &name);
    if release.join("rkt").is_file() {
        return Ok(Prepared {
            name,
            timings: None,
        });
    }
    releases::remove_partial(host);
    let dir = host.path(RKT_RELEASES_DIR);
    std::fs::create_dir_all(&dir).map_err(|source| FileError {
        action: "create directory",
        path: dir.clone(),
        source,
    })?;
    let url = &install.url;
    let archive = dir.join(format!("{PARTIAL_PREFIX}{name}.tar.gz"));
    let started = Instant::now();
    let Downloaded { size, sha512 } = download::download(
        url,
        install.size_limit(),
        (programs, &host.root),
        &archive,
        trust,
    )
    .await?;
    let download = started.elapsed();

    let started = Instant::now();
    if !sha512.eq_ignore_ascii_case(&install.sha512) {
        let _ = std::fs::remove_file(&archive);
        return Err(InstallError::Digest {
            url: url.clone(),
            expected: install.sha512.to_ascii_lowercase(),
            actual: sha512,
        });
    }
    if let Some(signature_url) = &install.signature_url {
        let checked = check_signature(programs, host, &archive, signature_url, trust).await;
        if let Err(source) = checked {
            let _ = std::fs::remove_file(&archive);
            return Err(InstallError::Signature {
                url: url.clone(),
                source,
            });
        }
    }
    let mut verify = started.elapsed();

    let started = Instant::now();
    let partial = dir.join(format!("{PARTIAL_PREFIX}{name}"));
    let unpacked = {
        let (archive, partial, version) = (archive.clone(), partial.clone(), version.to_owned());
        let limit = install.size_limit();
        tokio::task::spawn_blocking(move || unpack::unpack(&archive, &version, &partial, limit))
            .await
            .unwrap_or_else(|panicked| {
                Err(UnpackError::NotAnArchive(format!(
                    "unpacking stopped: {panicked}"
                )))
            })
    };
    let _ = std::fs::remove_file(&archive);
    unpacked.map_err(|source| InstallError::Unpack {
        url: url.clone(),
        source,
    })?;
    let unpack = started.elapsed();

    let started = Instant::now();
    let binary = format!("{RKT_RELEASES_DIR}/{PARTIAL_PREFIX}{name}/rkt");
    let reported = rkt_binary::version(programs, Some(&binary)).await;
    let checked = match reported {
        Ok(reported) if reported == version => Ok(()),
        Ok(reported) => Err(InstallError::WrongVersion {
            url: url.clone(),
            expected: version.to_owned(),
            reported,
        }),
        Err(source) => Err(InstallError::Unrunnable {
            url: url.clone(),
            source,
        }),
    };
    if let Err(error) = checked {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(error);
    }
    std::fs::rename(&partial, &release).map_err(|source| FileError {
        action: "rename into place",
        path: release.clone(),
        source,
    })?;
    verify += started.elapsed();
    Ok(Prepared {
        name,
        timings: Some(Timings {
            download,
            size,
            verify,
            unpack,
        }),
    })
}

/// The largest detached signature the agent downloads (an armored one is well under 2 KiB).
const SIGNATURE_SIZE_LIMIT: u64 = 64 << 10;

/// Downloads the signature at `url` beside the archive and checks it over the archive; nothing of it stays.
async fn check_signature(
    programs: &HostPrograms,
    host: &Host,
    archive: &std::path::Path,
    url: &str,
    trust: &Trust,
) -> Result<(), SignatureError> {
    let file = archive.with_extension("gz.sig");
    let downloaded = download::download(
        url,
        SIGNATURE_SIZE_LIMIT,
        (programs, &host.root),
        &file,
        trust,
    )
    .await;
    let bytes = downloaded
        .map_err(|error| SignatureError::NotASignature {
            url: url.to_owned(),
            reason: error.to_string(),
        })
        .and_then(|_| {
            std::fs::read(&file).map_err(|error| SignatureError::NotASignature {
                url: url.to_owned(),
                reason: error.to_string(),
            })
        });
    let _ = std::fs::remove_file(&file);
    let signer = signature::verify(archive, &bytes?, url, trust.release_keys_file.as_deref())?;
    tracing::info!(signer, url, "the release's signature verifies");
    Ok(())
}
