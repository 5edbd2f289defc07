//! The agent's part in installing rkt (`spec.rkt.install`), as steps of a change: where the spec's release is on the
//! node, making it ready (nothing the node runs changes), switching `/opt/rkt/current` to it as part of the change
//! (recorded first, so a rollback or a later agent can switch it back), the health check that the service runs the
//! new version, and keeping the last two releases.

use super::{
    FileError,
    host_files::Changes,
    install::{self, releases},
    ledger::LinkBefore,
    notices,
    reconciler::Reconciler,
    rkt_service::RestartError,
    step::ReleaseOnNode,
};
use crate::api::{RktNodeStateSpec, RktServiceSpec, host_paths::RKT_CURRENT_LINK};

impl Reconciler {
    /// Where the release that `rkt` installs is on the node; `None` without an install source.
    pub(super) fn release_on_node<'r>(
        &self,
        rkt: &RktServiceSpec,
        refused: Option<&'r str>,
    ) -> Option<ReleaseOnNode<'r>> {
        let install = rkt.install.as_ref()?;
        let name = releases::release_name(&rkt.version, &install.sha512);
        let current = releases::current(&self.host).unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot read which rkt release the node runs");
            None
        });
        Some(ReleaseOnNode {
            ready: releases::release_dir(&self.host, &name)
                .join("rkt")
                .is_file(),
            current: current.as_deref() == Some(releases::link_target(&name).as_str()),
            refused,
        })
    }

    /// Makes the release of the spec ready on the node; why not, as the report says it.
    pub(super) async fn install(&mut self, spec: &RktNodeStateSpec) -> Result<(), String> {
        let Some(install) = &spec.rkt.install else {
            return Ok(());
        };
        let version = &spec.rkt.version;
        match install::prepare(
            &self.host,
            &self.host_programs,
            version,
            install,
            &self.trust,
        )
        .await
        {
            Ok(prepared) => {
                if let Some(timings) = prepared.timings {
                    tracing::info!(
                        release = prepared.name,
                        bytes = timings.size,
                        download_ms = timings.download.as_millis(),
                        verify_ms = timings.verify.as_millis(),
                        unpack_ms = timings.unpack.as_millis(),
                        "installed the rkt release beside the one the node runs"
                    );
                    self.reports
                        .event(notices::release_installed(spec, &prepared.name))
                        .await;
                }
                Ok(())
            }
            Err(error) => {
                let reason = format!("installing rkt {version} failed: {error}");
                tracing::warn!(reason, permanent = error.is_permanent(), "not installed");
                self.reports
                    .event(notices::install_failed(spec, &reason))
                    .await;
                if error.is_permanent() {
                    self.install_refused = Some((spec.hash.clone(), reason.clone()));
                }
                Err(reason)
            }
        }
    }

    /// Records where `/opt/rkt/current` points before a change that installs a release switches it.
    pub(super) fn record_link_before(&mut self, rkt: &RktServiceSpec) -> Result<(), FileError> {
        if rkt.install.is_none() {
            return Ok(());
        }
        let current = releases::current(&self.host)?;
        if let Some(pending) = &mut self.ledger.pending
            && pending.link_before.is_none()
        {
            pending.link_before = Some(LinkBefore { target: current });
        }
        Ok(())
    }

    /// Switches `/opt/rkt/current` to the spec's release; `changes` then include the link when it points elsewhere
    /// than before the change (switched now, or by an agent before this one).
    pub(super) fn switch_release(
        &mut self,
        rkt: &RktServiceSpec,
        mut changes: Changes,
    ) -> Result<Changes, FileError> {
        let Some(install) = &rkt.install else {
            return Ok(changes);
        };
        let target = releases::link_target(&releases::release_name(&rkt.version, &install.sha512));
        if releases::current(&self.host)?.as_deref() != Some(target.as_str()) {
            let started = std::time::Instant::now();
            releases::switch(&self.host, Some(&target))?;
            tracing::info!(
                target,
                switch_ms = started.elapsed().as_millis(),
                "switched the node's rkt"
            );
            changes.written_now = true;
        }
        let before = self
            .ledger
            .pending
            .as_ref()
            .and_then(|pending| pending.link_before.as_ref());
        if before.is_none_or(|before| before.target.as_deref() != Some(target.as_str())) {
            changes.paths.push(RKT_CURRENT_LINK.to_owned());
        }
        Ok(changes)
    }

    /// Points `/opt/rkt/current` back where it was before the change under way; whether it had to move.
    pub(super) fn restore_link(&self) -> Result<bool, FileError> {
        let Some(before) = self
            .ledger
            .pending
            .as_ref()
            .and_then(|pending| pending.link_before.as_ref())
        else {
            return Ok(false);
        };
        if releases::current(&self.host)? == before.target {
            return Ok(false);
        }
        releases::switch(&self.host, before.target.as_deref())?;
        Ok(true)
    }

    /// Keeps the release the node now runs and the one before it; removes older ones.
    pub(super) fn keep_releases(&mut self, rkt: &RktServiceSpec) {
        let Some(install) = &rkt.install else {
            return;
        };
        let keep = self
            .ledger
            .switched_to(&releases::release_name(&rkt.version, &install.sha512));
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        match releases::prune(&self.host, &keep) {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(?removed, "removed older rkt releases");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not remove an older rkt release"),
        }
    }
}

/// A healthy rkt API service that must run the release the spec installs: it reports the spec's version.
pub(super) fn runs_the_version(
    rkt: &RktServiceSpec,
    health: Result<String, RestartError>,
) -> Result<(), RestartError> {
    match health {
        Ok(reported) if rkt.install.is_some() && reported != rkt.version => {
            Err(RestartError::WrongVersion {
                unit: rkt.api_service_unit.clone(),
                expected: rkt.version.clone(),
                reported,
            })
        }
        health => health.map(drop),
    }
}
