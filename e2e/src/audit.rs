//! A real API server's audit log, read as the sandbox's: each `ResponseComplete` event of
//! `audit.k8s.io/v1` becomes a `netfence_sandbox::AuditEntry`.
//!
//! ```text
//! kube-apiserver --audit-log-path--> audit.log (JSON lines) --from the offset of the last clear-->
//!     (user, AuditEntry { verb, group, resource, subresource, namespace, name, code, ... })
//! ```
//!
//! The one difference in naming: the audit log calls a server-side apply `patch`, as RBAC does.
//! A `patch` that names a `fieldManager` is read as `apply`: the API server refuses an apply
//! without one, and netfence's merge patches (status, Events) never name one.

use std::{
    io::{Read as _, Seek as _, SeekFrom},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant, SystemTime},
};

use netfence_sandbox::AuditEntry;
use serde_json::Value;

/// One audited request and who made it.
#[derive(Clone, Debug)]
pub struct Audited {
    /// `user.username`: `system:serviceaccount:NS:NAME` for a ServiceAccount.
    pub user: String,
    /// The request, as the sandbox's audit log names it.
    pub entry: AuditEntry,
    /// Whether the authorizer (RBAC) refused it: a 403 of admission (a namespace being
    /// terminated) is not a missing grant.
    pub unauthorized: bool,
}

/// The audit log of a real API server, read from an offset on.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    offset: AtomicU64,
}

impl AuditLog {
    /// The log at `path`, read from its current end on.
    #[must_use]
    pub fn open(path: &Path) -> AuditLog {
        let log = AuditLog {
            path: path.to_owned(),
            offset: AtomicU64::new(0),
        };
        log.clear();
        log
    }

    /// The log's file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Forget what was logged so far: later reads start at the current end.
    pub fn clear(&self) {
        let length = std::fs::metadata(&self.path).map_or(0, |metadata| metadata.len());
        self.offset.store(length, Ordering::SeqCst);
    }

    /// Every complete event logged since the last clear.
    #[must_use]
    pub fn read(&self) -> Vec<Audited> {
        self.events(false)
    }

    /// Whether the file is now shorter than what was already read: rotated or truncated, so
    /// that what was logged meanwhile cannot be read (counts from it would be short).
    #[must_use]
    pub fn shrank(&self) -> bool {
        std::fs::metadata(&self.path).map_or(true, |metadata| {
            metadata.len() < self.offset.load(Ordering::SeqCst)
        })
    }

    /// Every complete event logged since the last clear or take, consumed: the next take
    /// starts after them (a line still being written waits for the next take). What a poll in a
    /// loop reads, each line once.
    #[must_use]
    pub fn take(&self) -> Vec<Audited> {
        self.events(true)
    }

    /// The complete lines from the offset on, as events; with `consume`, the offset moves past
    /// them.
    fn events(&self, consume: bool) -> Vec<Audited> {
        let offset = self.offset.load(Ordering::SeqCst);
        let mut bytes = Vec::new();
        if let Ok(mut file) = std::fs::File::open(&self.path)
            && file.seek(SeekFrom::Start(offset)).is_ok()
        {
            let _ = file.read_to_end(&mut bytes);
        }
        let complete = bytes
            .iter()
            .rposition(|byte| *byte == b'\n')
            .map_or(0, |last| last + 1);
        if consume {
            self.offset
                .store(offset + complete as u64, Ordering::SeqCst);
        }
        String::from_utf8_lossy(&bytes[..complete])
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter_map(|event| audited(&event))
            .collect()
    }

    /// Whether a request whose URI ends with `marker` has been logged since the last clear.
    #[must_use]
    pub fn has_uri_ending(&self, marker: &str) -> bool {
        self.read()
            .iter()
            .any(|audited| audited.entry.uri.ends_with(marker))
    }
}

fn text(value: &Value, pointer: &str) -> Option<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The instant of an RFC 3339 timestamp, on this process's monotonic clock.
fn instant_of(timestamp: &str) -> Instant {
    let now = Instant::now();
    let Ok(at) = timestamp.parse::<jiff::Timestamp>() else {
        return now;
    };
    let at = SystemTime::from(at);
    match SystemTime::now().duration_since(at) {
        Ok(ago) => now.checked_sub(ago).unwrap_or(now),
        Err(ahead) => now + ahead.duration().min(Duration::from_secs(60)),
    }
}

/// One event as an [`Audited`], or `None` for a stage other than `ResponseComplete`.
fn audited(event: &Value) -> Option<Audited> {
    if event.get("stage").and_then(Value::as_str) != Some("ResponseComplete") {
        return None;
    }
    let uri = text(event, "/requestURI").unwrap_or_default();
    let field_manager = uri.split_once('?').and_then(|(_, query)| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "fieldManager")
            .map(|(_, value)| value.into_owned())
    });
    let verb = match (event.get("objectRef"), text(event, "/verb").as_deref()) {
        (None, _) => "discovery".to_owned(),
        (Some(_), Some("patch")) if field_manager.is_some() => "apply".to_owned(),
        (Some(_), verb) => verb.unwrap_or_default().to_owned(),
    };
    Some(Audited {
        user: text(event, "/user/username").unwrap_or_default(),
        unauthorized: text(event, "/annotations/authorization.k8s.io~1decision").as_deref()
            == Some("forbid"),
        entry: AuditEntry {
            verb,
            group: text(event, "/objectRef/apiGroup").unwrap_or_default(),
            version: text(event, "/objectRef/apiVersion").unwrap_or_default(),
            resource: text(event, "/objectRef/resource").unwrap_or_default(),
            subresource: text(event, "/objectRef/subresource"),
            namespace: text(event, "/objectRef/namespace"),
            name: text(event, "/objectRef/name"),
            field_manager,
            code: event
                .pointer("/responseStatus/code")
                .and_then(Value::as_u64)
                .and_then(|code| u16::try_from(code).ok())
                .unwrap_or_default(),
            user_agent: text(event, "/userAgent").unwrap_or_default(),
            uri,
            received: instant_of(&text(event, "/requestReceivedTimestamp").unwrap_or_default()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_apply_is_a_patch_with_a_field_manager() {
        let event = serde_json::json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "stage": "ResponseComplete",
            "requestURI": "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies/shop-default-deny?fieldManager=netfence&force=true",
            "verb": "patch",
            "user": {"username": "system:serviceaccount:netfence-system:e2e"},
            "userAgent": "netfence/0.1.0",
            "objectRef": {"resource": "networkpolicies", "namespace": "shop", "name": "shop-default-deny", "apiGroup": "networking.k8s.io", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 200},
            "requestReceivedTimestamp": "2026-12-01T09:00:00.000000Z",
        });
        let audited = audited(&event).expect("a complete event");
        assert_eq!(audited.user, "system:serviceaccount:netfence-system:e2e");
        assert_eq!(audited.entry.verb, "apply");
        assert_eq!(audited.entry.field_manager.as_deref(), Some("netfence"));
        assert_eq!(audited.entry.resource, "networkpolicies");
        assert_eq!(audited.entry.code, 200);

        let mut merge = event.clone();
        merge["requestURI"] =
            "/apis/netfence.io/v1alpha1/namespaces/shop/namespaceisolations/shop/status".into();
        merge["objectRef"]["subresource"] = "status".into();
        let audited = super::audited(&merge).expect("a complete event");
        assert_eq!(audited.entry.verb, "patch");
        assert_eq!(audited.entry.subresource.as_deref(), Some("status"));

        assert!(!audited.unauthorized);
        let mut forbidden = event.clone();
        forbidden["annotations"] = serde_json::json!({"authorization.k8s.io/decision": "forbid"});
        forbidden["responseStatus"]["code"] = 403.into();
        assert!(super::audited(&forbidden).expect("complete").unauthorized);

        let mut started = event;
        started["stage"] = "ResponseStarted".into();
        assert!(super::audited(&started).is_none());
    }
}
