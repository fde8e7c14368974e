//! The controller: NamespaceIsolations in, their NetworkPolicies kept true. The only I/O module
//! besides the sandbox.
//!
//! ```text
//! watch NamespaceIsolation ----------------------------\
//! reflect NetworkPolicy (managed-by=netfence) ----------+--> reconcile(resource)
//!                                                        validate -> render -> plan -> apply/prune -> status
//! ```
//!
//! Each step is a named function; `validate`, `render` and `plan` are pure and live in their own
//! modules. A reconcile in steady state makes no write: the plan is empty and the status unchanged.

mod reconcile;
mod status;

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::{
    Api, Client,
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use netfence_crd::NamespaceIsolation;
use tokio::sync::Mutex;

pub use reconcile::{Error, reconcile};

use crate::render::{MANAGED_BY, MANAGED_BY_LABEL};

/// The field manager of every write netfence makes.
pub const FIELD_MANAGER: &str = "netfence";

/// The finalizer that holds a deletion until `Orphan` or `KeepDefaultDeny` is carried out.
pub const FINALIZER: &str = "netfence.io/deletion-policy";

/// The first retry delay after a failed reconcile; it doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// The longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The NetworkPolicies carrying the managed-by label, as last observed.
    pub policies: Store<NetworkPolicy>,
    /// Consecutive failures per resource, for exponential backoff.
    pub failures: Mutex<HashMap<ObjectRef<NamespaceIsolation>, u32>>,
}

/// The label selector of the policies netfence watches: only its own.
#[must_use]
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY}")
}

/// The retry delay after `failures` consecutive failures: 1 s doubling, at most 5 min.
#[must_use]
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    MIN_BACKOFF.saturating_mul(1 << exponent).min(MAX_BACKOFF)
}

/// Run the NamespaceIsolation controller until `shutdown` resolves. `namespace` limits it to one
/// namespace; `None` watches all.
pub async fn run(
    client: Client,
    namespace: Option<&str>,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (isolations, policies): (Api<NamespaceIsolation>, Api<NetworkPolicy>) = match namespace {
        Some(namespace) => (
            Api::namespaced(client.clone(), namespace),
            Api::namespaced(client.clone(), namespace),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let (reader, writer) = reflector::store();
    let policy_events = watcher(
        policies,
        watcher::Config::default().labels(&managed_selector()),
    )
    .default_backoff()
    .reflect(writer)
    .touched_objects();
    let context = Arc::new(Context {
        client,
        policies: reader.clone(),
        failures: Mutex::new(HashMap::new()),
    });
    Controller::new(isolations, watcher::Config::default())
        .owns_stream(policy_events)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile did not complete");
            }
        })
        .await;
}

/// After a failure: retry with this resource's own exponential backoff. (`error_policy` is
/// synchronous, so the failure count is raised in `reconcile` and only read here.)
#[allow(clippy::needless_pass_by_value)] // the signature is kube's `Controller::run` contract
fn error_policy(resource: Arc<NamespaceIsolation>, error: &Error, context: Arc<Context>) -> Action {
    let failures = context
        .failures
        .try_lock()
        .ok()
        .and_then(|failures| failures.get(&ObjectRef::from(resource.as_ref())).copied())
        .unwrap_or(1);
    let delay = backoff(failures);
    tracing::warn!(
        namespace = resource.metadata.namespace.as_deref().unwrap_or_default(),
        name = resource.metadata.name.as_deref().unwrap_or_default(),
        %error,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The backoff doubles from 1 s and stops at 5 minutes: a failing resource neither hammers the
    /// API server nor waits forever.
    #[test]
    fn backoff_doubles_to_five_minutes() {
        let delays: Vec<u64> = (1..=12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
