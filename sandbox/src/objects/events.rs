//! Events: a real API server keeps one store of Events and serves it as `events.k8s.io/v1`
//! and as core `v1`; the sandbox copies each `events.k8s.io` Event it stores into the core store,
//! converted.
//!
//! ```text
//! events.k8s.io/v1 Event --put/remove--> mirror_event --core_event--> v1 Event (core store)
//! ```

use serde_json::{Value, json};

use super::super::{resources::StoreKey, store::ObjectKey};
use super::State;

impl State {
    /// A real API server keeps one store of Events and serves it as `events.k8s.io/v1` and as
    /// core `v1`; here an `events.k8s.io` Event written (or removed) is copied to (or removed
    /// from) the core store, converted, so that `kubectl get events` shows what netfence
    /// published. (The copy has its own resourceVersion; writes to core Events are not copied
    /// back.)
    pub(super) fn mirror_event(
        &mut self,
        resource: &StoreKey,
        key: &ObjectKey,
        event: Option<&Value>,
    ) {
        if resource.group != "events.k8s.io" || resource.plural != "events" {
            return;
        }
        let core = StoreKey {
            group: String::new(),
            plural: "events".to_owned(),
        };
        match event {
            Some(event) => {
                self.store.put(&core, key.clone(), core_event(event));
            }
            None => {
                self.store.remove(&core, key);
            }
        }
    }
}

/// An `events.k8s.io/v1` Event as the core `v1` Event the real server serves for it.
fn core_event(event: &Value) -> Value {
    let field = |name: &str| event.get(name).cloned().unwrap_or(Value::Null);
    let mut metadata = event.get("metadata").cloned().unwrap_or_else(|| json!({}));
    if let Some(map) = metadata.as_object_mut() {
        map.remove("managedFields");
        map.remove("resourceVersion");
    }
    let source_component = event
        .pointer("/deprecatedSource/component")
        .or_else(|| event.get("reportingController"))
        .cloned()
        .unwrap_or(Value::Null);
    let count = event
        .pointer("/series/count")
        .or_else(|| event.get("deprecatedCount"))
        .cloned()
        .unwrap_or_else(|| json!(1));
    let mut core = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": metadata,
        "involvedObject": field("regarding"),
        "related": field("related"),
        "reason": field("reason"),
        "message": field("note"),
        "type": field("type"),
        "action": field("action"),
        "eventTime": field("eventTime"),
        "firstTimestamp": field("deprecatedFirstTimestamp"),
        "lastTimestamp": field("deprecatedLastTimestamp"),
        "count": count,
        "source": {"component": source_component, "host": event.pointer("/deprecatedSource/host").cloned().unwrap_or(Value::Null)},
        "reportingComponent": field("reportingController"),
        "reportingInstance": field("reportingInstance"),
        "series": event.get("series").map_or(Value::Null, |series| json!({
            "count": series.get("count").cloned().unwrap_or(Value::Null),
            "lastObservedTime": series.get("lastObservedTime").cloned().unwrap_or(Value::Null),
        })),
    });
    drop_nulls(&mut core);
    core
}

fn drop_nulls(value: &mut Value) {
    if let Some(map) = value.as_object_mut() {
        map.retain(|_, field| !field.is_null());
        for field in map.values_mut() {
            drop_nulls(field);
        }
    }
}
