//! Leader election: only the holder of a coordination.k8s.io Lease reconciles. Built on
//! kube-lease-manager (server-side-applied Lease, clock-skew grace).
//!
//! ```text
//! Lease --watch()--> leading: true  --> run the controller
//!                    leading: false --> drop it at once (standby: ready, not reconciling)
//! ```

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};

use super::{Prepared, Settings, prepare};
use crate::metrics::Metrics;

/// Where the Lease lives, and who this instance is.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This instance's identity (the pod name in a cluster).
    pub identity: String,
}

/// Seconds a lease stays valid after its last renewal.
const LEASE_DURATION: u64 = 15;
/// Seconds before expiry when the holder renews.
const LEASE_GRACE: u64 = 5;

/// Run the controller only while this instance holds the Lease, until `shutdown` resolves.
/// Losing the Lease stops reconciling at once; winning it again starts a fresh controller (its
/// caches start anew, so it acts only on what it observes).
pub async fn run_as_leader(
    client: Client,
    settings: &Settings,
    lease: &LeaseSettings,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client.clone(), &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(&lease.identity)
        .with_duration(LEASE_DURATION)
        .with_grace(LEASE_GRACE)
        .build()
        .await?;
    let (mut leading, task) = manager.watch().await;
    // Standing by counts as ready: the Deployment's second replica must not be restarted.
    ready.store(true, Ordering::Relaxed);
    tokio::pin!(shutdown);
    loop {
        if *leading.borrow_and_update() {
            tracing::info!(lease = %lease.name, identity = %lease.identity, "leading: reconciling");
            let prepared: Prepared = prepare(client.clone(), settings, metrics.clone());
            let controller = prepared.run(Arc::new(AtomicBool::new(false)), std::future::pending());
            tokio::select! {
                () = controller => {}
                () = &mut shutdown => break,
                changed = leading.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    tracing::warn!(lease = %lease.name, "lost the lease: stopped reconciling");
                }
            }
        } else {
            tracing::info!(lease = %lease.name, identity = %lease.identity, "standing by");
            tokio::select! {
                () = &mut shutdown => break,
                changed = leading.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
    }
    // Closing the channel releases the Lease, so a standby takes over without waiting for expiry.
    drop(leading);
    match task.await {
        Ok(result) => result.map(|_| ()),
        Err(_) => Ok(()),
    }
}
