//! The detached OpenPGP signature over a release archive, as rkt published one beside each release
//! (`rkt-vX.Y.Z.tar.gz.asc`), checked before the archive is unpacked against the release keys the agent is given
//! (`--release-keys-file`, the chart's `agent.releaseKeysConfigMap`): the signature must be made by one of those
//! keys, or by a signing subkey that key has bound to itself, over exactly the archive's bytes.

use std::{
    fs::File,
    io::{BufReader, Cursor},
    path::Path,
};

use pgp::{
    composed::{Deserializable, DetachedSignature, SignedPublicKey},
    types::{KeyDetails, VerifyingKey},
};

#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "spec.rkt.install.signatureUrl is set, but the agent was given no release keys (the chart's \
         agent.releaseKeysConfigMap, the agent's --release-keys-file)"
    )]
    NoKeys,
    #[error("cannot use the release keys {path}: {reason}")]
    Keys { path: String, reason: String },
    #[error("{url} is not an OpenPGP signature: {reason}")]
    NotASignature { url: String, reason: String },
    #[error("the signature {url} is by key {issuer}, which is not among the release keys ({keys})")]
    UnknownSigner {
        url: String,
        issuer: String,
        keys: String,
    },
    #[error("the signature {url} does not match the archive: {reason}")]
    Bad { url: String, reason: String },
}

/// Checks `signature` (the bytes found at `url`, armored or binary) over the file `archive` against the release
/// keys in `keys_file` (armored); the fingerprint of the key that made it.
pub fn verify(
    archive: &Path,
    signature: &[u8],
    url: &str,
    keys_file: Option<&Path>,
) -> Result<String, SignatureError> {
    let keys_file = keys_file.ok_or(SignatureError::NoKeys)?;
    let keys = release_keys(keys_file)?;
    let signature = parse(signature).map_err(|reason| SignatureError::NotASignature {
        url: url.to_owned(),
        reason,
    })?;
    let issuers: Vec<String> = signature
        .signature
        .issuer_fingerprint()
        .iter()
        .map(|fingerprint| format!("{fingerprint:X}"))
        .chain(
            signature
                .signature
                .issuer_key_id()
                .iter()
                .map(|key_id| upper_hex(key_id.as_ref())),
        )
        .collect();
    let mut last_failure = None;
    for key in &keys {
        let mut outcome = try_key(&signature, &key.primary_key, &issuers, archive);
        for subkey in &key.public_subkeys {
            if outcome.as_ref().is_some_and(Result::is_ok) {
                break;
            }
            // Only a subkey the primary key has bound to itself speaks for it.
            if subkey.verify_bindings(&key.primary_key).is_ok()
                && let Some(result) = try_key(&signature, &subkey.key, &issuers, archive)
            {
                outcome = Some(result);
            }
        }
        match outcome {
            Some(Ok(())) => return Ok(format!("{:X}", key.primary_key.fingerprint())),
            Some(Err(reason)) => last_failure = Some(reason),
            None => {}
        }
    }
    match last_failure {
        Some(reason) => Err(SignatureError::Bad {
            url: url.to_owned(),
            reason,
        }),
        None => Err(SignatureError::UnknownSigner {
            url: url.to_owned(),
            issuer: issuers.join(" / "),
            keys: keys
                .iter()
                .map(|key| format!("{:X}", key.primary_key.fingerprint()))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Checks the signature over the archive with `candidate` when the signature names it as its issuer (or names
/// none); `None` when it names another key.
fn try_key<K: VerifyingKey>(
    signature: &DetachedSignature,
    candidate: &K,
    issuers: &[String],
    archive: &Path,
) -> Option<Result<(), String>> {
    let fingerprint = format!("{:X}", candidate.fingerprint());
    let key_id = upper_hex(candidate.legacy_key_id().as_ref());
    let named = issuers.is_empty()
        || issuers
            .iter()
            .any(|issuer| *issuer == fingerprint || *issuer == key_id);
    if !named {
        return None;
    }
    Some(match File::open(archive) {
        Ok(file) => signature
            .signature
            .verify(candidate, BufReader::new(file))
            .map_err(|error| error.to_string()),
        Err(error) => Err(format!("cannot read the archive: {error}")),
    })
}

fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02X}")).collect()
}

/// The armored public keys in `path`, each with its self-signatures checked.
fn release_keys(path: &Path) -> Result<Vec<SignedPublicKey>, SignatureError> {
    let unusable = |reason: String| SignatureError::Keys {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read(path).map_err(|error| unusable(error.to_string()))?;
    let (keys, _) = SignedPublicKey::from_armor_many(Cursor::new(text))
        .map_err(|error| unusable(error.to_string()))?;
    let keys: Vec<SignedPublicKey> = keys
        .collect::<Result<_, _>>()
        .map_err(|error| unusable(error.to_string()))?;
    if keys.is_empty() {
        return Err(unusable("it holds no public key".to_owned()));
    }
    for key in &keys {
        key.verify_bindings().map_err(|error| {
            unusable(format!("key {:X}: {error}", key.primary_key.fingerprint()))
        })?;
    }
    Ok(keys)
}

/// A detached signature, armored (`-----BEGIN PGP SIGNATURE-----`) or binary.
fn parse(bytes: &[u8]) -> Result<DetachedSignature, String> {
    if bytes.starts_with(b"-----BEGIN") {
        DetachedSignature::from_armor_single(Cursor::new(bytes))
            .map(|(signature, _)| signature)
            .map_err(|error| error.to_string())
    } else {
        DetachedSignature::from_bytes(Cursor::new(bytes)).map_err(|error| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use rktnetes_e2e::releases::SigningKey;

    use super::*;

    #[test]
    fn a_signature_by_a_release_key_verifies_armored_or_binary_rsa_or_ed25519() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("rkt-v1.30.0.tar.gz");
        std::fs::write(&archive, b"the archive").unwrap();
        // rkt's own release key was RSA.
        for algorithm in ["rsa2048", "ed25519"] {
            let key = SigningKey::new(dir.path(), algorithm, algorithm).unwrap();
            let keys = dir.path().join(format!("{algorithm}.asc"));
            std::fs::write(&keys, &key.public_key).unwrap();
            for armor in [true, false] {
                let signature = key.sign(&archive, armor).unwrap();
                let signer = verify(&archive, &signature, "sig", Some(&keys)).unwrap();
                assert_eq!(signer.len(), 40, "{algorithm}: {signer}");
            }
        }
    }

    #[test]
    fn another_archive_another_key_or_no_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::new(dir.path(), "release", "ed25519").unwrap();
        let stranger = SigningKey::new(dir.path(), "stranger", "ed25519").unwrap();
        let keys = dir.path().join("keys.asc");
        std::fs::write(&keys, &key.public_key).unwrap();
        let archive = dir.path().join("rkt-v1.30.0.tar.gz");
        std::fs::write(&archive, b"the archive").unwrap();
        let signature = key.sign(&archive, true).unwrap();

        let other = dir.path().join("other.tar.gz");
        std::fs::write(&other, b"another archive").unwrap();
        let error = verify(&other, &signature, "sig", Some(&keys)).unwrap_err();
        assert!(matches!(error, SignatureError::Bad { .. }), "{error}");

        let by_stranger = stranger.sign(&archive, true).unwrap();
        let error = verify(&archive, &by_stranger, "sig", Some(&keys)).unwrap_err();
        assert!(
            matches!(error, SignatureError::UnknownSigner { .. }),
            "{error}"
        );
        assert!(
            error.to_string().contains("not among the release keys"),
            "{error}"
        );

        let error = verify(&archive, &signature, "sig", None).unwrap_err();
        assert!(matches!(error, SignatureError::NoKeys), "{error}");

        let error = verify(&archive, b"<html>404</html>", "sig", Some(&keys)).unwrap_err();
        assert!(
            matches!(error, SignatureError::NotASignature { .. }),
            "{error}"
        );
    }
}
