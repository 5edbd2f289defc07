//! Leader election on the controller's Lease (kube-lease-manager), driven by a task of ours rather than the
//! library's own, so that every line it logs, the library's included, names the Lease (`lease{lease=...}`).

use kube_lease_manager::LeaseManager;
use tokio::sync::watch;
use tracing::Instrument;

/// How long to wait after a failed renewal or acquisition before trying again, at first and at most.
const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(500);
const MOST_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts taking part in the election on `lease` (the Lease `lease_name` in `namespace`); the receiver says whether
/// this replica leads. The task releases the Lease and ends once every receiver is gone.
pub fn take_part(lease: LeaseManager, lease_name: &str, namespace: &str) -> watch::Receiver<bool> {
    let (leads, receiver) = watch::channel(false);
    let span = tracing::info_span!("lease", lease = lease_name, namespace);
    tokio::spawn(
        async move {
            let mut backoff = FIRST_BACKOFF;
            loop {
                tokio::select! {
                    biased;
                    () = leads.closed() => break,
                    changed = lease.changed() => match changed {
                        Ok(state) => {
                            backoff = FIRST_BACKOFF;
                            if leads.send(state).is_err() {
                                break;
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "leader election failed; retrying in {backoff:?}");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(MOST_BACKOFF);
                        }
                    },
                }
            }
            if let Err(error) = lease.release().await {
                tracing::warn!(%error, "could not release the Lease");
            }
        }
        .instrument(span),
    );
    receiver
}
