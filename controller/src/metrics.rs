//! Metrics and health: the Prometheus counters the controller updates, and the HTTP endpoints
//! `/metrics`, `/healthz` and `/readyz`.
//!
//! ```text
//! reconcile --> Metrics (counters, histogram) --\
//! NamespaceIsolation store (Ready by status) ----+--> GET /metrics (Prometheus text)
//! caches synced --> ready flag -----------------------> GET /readyz (200 or 503)
//! ```

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use kube::runtime::reflector::Store;

use crate::Compact;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// The label of the failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why the reconcile failed (see `controller::Error::metric_label`).
    pub reason: String,
}

/// The label of the resources gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadyLabel {
    /// `True`, `False` or `Unknown` (no status yet).
    pub ready: String,
}

/// The labels of the intent audit's gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViolationLabel {
    /// The resource's namespace.
    pub namespace: String,
    /// `Widened`, `Narrowed` or `DNS`.
    pub reason: String,
}

/// The label of the list counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabel {
    /// The watch: `NamespaceIsolation`, `NetworkPolicy`, ...
    pub watch: String,
}

/// Everything the controller counts.
pub struct Metrics {
    /// Reconciles started.
    pub reconciles: Counter,
    /// Reconciles failed, by reason.
    pub failures: Family<ReasonLabel, Counter>,
    /// Reconcile duration, in seconds.
    pub reconcile_duration: Histogram,
    /// NetworkPolicies server-side applied.
    pub policies_applied: Counter,
    /// NetworkPolicies deleted.
    pub policies_deleted: Counter,
    /// Owned policies found edited or deleted, and restored.
    pub drift_corrections: Counter,
    /// Events dropped because the publishing queue was full.
    pub events_dropped: Counter,
    /// Complete lists of each watch: its first, and each relist (a 410 Gone, a restarted API
    /// server), counted once what it found is in the cache.
    pub lists: Family<WatchLabel, Counter>,
    /// NamespaceIsolations by their Ready condition, computed at each scrape.
    pub resources: Family<ReadyLabel, Gauge>,
    /// The intent audit's findings per namespace and reason, computed at each scrape (only
    /// namespaces with findings have a series).
    pub violations: Family<ViolationLabel, Gauge>,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("netfence");
        let reconciles = Counter::default();
        let failures = Family::<ReasonLabel, Counter>::default();
        let reconcile_duration = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        let policies_applied = Counter::default();
        let policies_deleted = Counter::default();
        let drift_corrections = Counter::default();
        let events_dropped = Counter::default();
        let lists = Family::<WatchLabel, Counter>::default();
        let resources = Family::<ReadyLabel, Gauge>::default();
        let violations = Family::<ViolationLabel, Gauge>::default();
        registry.register(
            "reconciles",
            "NamespaceIsolation reconciles started",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "NamespaceIsolation reconciles that failed, by reason",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "policies_applied",
            "NetworkPolicies written by server-side apply",
            policies_applied.clone(),
        );
        registry.register(
            "policies_deleted",
            "NetworkPolicies deleted because they are no longer rendered",
            policies_deleted.clone(),
        );
        registry.register(
            "drift_corrections",
            "Generated NetworkPolicies found edited or deleted, and restored",
            drift_corrections.clone(),
        );
        registry.register(
            "events_dropped",
            "Events not published because the publishing queue was full",
            events_dropped.clone(),
        );
        registry.register(
            "watch_lists",
            "Complete lists of each watch, counted once what the list changed has been handed to the controllers: the first, and each relist (410 Gone, a restarted API server)",
            lists.clone(),
        );
        registry.register(
            "resources",
            "NamespaceIsolations by Ready condition",
            resources.clone(),
        );
        registry.register(
            "isolation_violations",
            "Findings of the intent audit (status.audit) by namespace and reason: Widened, Narrowed, DNS",
            violations.clone(),
        );
        Metrics {
            reconciles,
            failures,
            reconcile_duration,
            policies_applied,
            policies_deleted,
            drift_corrections,
            events_dropped,
            lists,
            resources,
            violations,
            registry,
        }
    }
}

impl Metrics {
    /// Count a complete list of the watch `watch`.
    pub fn listed(&self, watch: &str) {
        self.lists
            .get_or_create(&WatchLabel {
                watch: watch.to_owned(),
            })
            .inc();
    }

    /// Count a failed reconcile, by reason.
    pub fn failed(&self, reason: &str) {
        self.failures
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The Prometheus text exposition, with the resources gauge recomputed from `store`.
    #[must_use]
    pub fn encode(&self, store: Option<&Store<Compact>>) -> String {
        if let Some(store) = store {
            let mut counts =
                std::collections::BTreeMap::from([("True", 0_i64), ("False", 0), ("Unknown", 0)]);
            for resource in store.state() {
                *counts.entry(resource.summary().ready).or_default() += 1;
            }
            for (ready, count) in counts {
                self.resources
                    .get_or_create(&ReadyLabel {
                        ready: ready.to_owned(),
                    })
                    .set(count);
            }
            self.violations.clear();
            for resource in store.state() {
                let findings = resource.summary().findings;
                for (reason, count) in ["Widened", "Narrowed", "DNS"].into_iter().zip(findings) {
                    if count > 0 {
                        self.violations
                            .get_or_create(&ViolationLabel {
                                namespace: kube::Resource::meta(resource.as_ref())
                                    .namespace
                                    .clone()
                                    .unwrap_or_default(),
                                reason: reason.to_owned(),
                            })
                            .set(i64::try_from(count).unwrap_or(i64::MAX));
                    }
                }
            }
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// What the HTTP endpoints read.
#[derive(Clone)]
pub struct Health {
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// The controller's view of NamespaceIsolations, once it runs.
    pub store: Option<Store<Compact>>,
    /// Set once the caches are synced (and, with leader election, once leading or standing by).
    pub ready: Arc<AtomicBool>,
}

/// The `/metrics`, `/healthz` and `/readyz` routes.
pub fn router(health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn metrics(State(health): State<Health>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        health.metrics.encode(health.store.as_ref()),
    )
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    if health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exposition names every metric the README and dashboards rely on.
    #[test]
    fn exposition_names_every_metric() {
        let metrics = Metrics::default();
        metrics.reconciles.inc();
        metrics.failed("policy_write");
        metrics.drift_corrections.inc();
        let text = metrics.encode(None);
        for name in [
            "netfence_reconciles_total 1",
            "netfence_reconcile_failures_total{reason=\"policy_write\"} 1",
            "netfence_reconcile_duration_seconds_bucket",
            "netfence_policies_applied_total 0",
            "netfence_policies_deleted_total 0",
            "netfence_drift_corrections_total 1",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }

    /// The audit's gauge: one series per namespace and reason with findings, none for a
    /// namespace without any (and none left behind once its findings are gone).
    #[test]
    fn violations_are_counted_from_the_status() {
        let (store, mut writer) = kube::runtime::reflector::store::<Compact>();
        let mut resource: netfence_crd::NamespaceIsolation = serde_json::from_value(serde_json::json!({
            "apiVersion": "netfence.io/v1alpha1", "kind": "NamespaceIsolation",
            "metadata": {"name": "shop", "namespace": "shop"},
            "spec": {},
            "status": {"audit": {
                "widened": ["allow-all-ingress lets any pod outside shop reach backend on every port"],
                "dns": ["a", "b"],
            }},
        }))
        .expect("a resource");
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(Compact::of(
            &resource,
        )));
        let metrics = Metrics::default();
        let text = metrics.encode(Some(&store));
        assert!(
            text.contains("netfence_isolation_violations{namespace=\"shop\",reason=\"Widened\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("netfence_isolation_violations{namespace=\"shop\",reason=\"DNS\"} 2"),
            "{text}"
        );
        assert!(!text.contains("reason=\"Narrowed\""), "{text}");
        resource.status = None;
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(Compact::of(
            &resource,
        )));
        let text = metrics.encode(Some(&store));
        assert!(!text.contains("netfence_isolation_violations{"), "{text}");
    }
}
