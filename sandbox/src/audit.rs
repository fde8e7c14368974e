//! The audit log of every request, and the faults tests inject.
//!
//! ```text
//! request --faults: latency? fail (500 | 429 | 409 | ...)?--> handler --> AuditEntry { verb, resource, ..., code }
//! ```
//!
//! A failure rule fails a share of the requests that match its verb and resource, spread
//! evenly and deterministically (a share of 0.5 fails every second match, 1.0 every one), or
//! the next N matches. `*` matches any verb or resource. Injected failures are audited with
//! their code like any other answer.

use std::time::Duration;

/// One request, as the audit log records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `apply` (server-side apply; RBAC
    /// calls it `patch`), `delete`, `deletecollection`; `discovery` for discovery and OpenAPI.
    pub verb: String,
    /// API group, empty for core.
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource name (`networkpolicies`); empty for discovery.
    pub resource: String,
    /// `status` for the status subresource.
    pub subresource: Option<String>,
    /// The namespace of the request.
    pub namespace: Option<String>,
    /// The object name.
    pub name: Option<String>,
    /// `fieldManager` of a write.
    pub field_manager: Option<String>,
    /// The HTTP status code answered.
    pub code: u16,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// The request path and query, for messages.
    pub uri: String,
    /// When the request was received (a watch: when it started).
    pub received: std::time::Instant,
}

/// Which requests a fault applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matcher {
    /// A verb as [`AuditEntry::verb`] names it, or `*`.
    pub verb: String,
    /// A plural resource name, `plural/status`, or `*`.
    pub resource: String,
    /// Only requests with exactly this `labelSelector` (a list's or a watch's); `None`: any.
    pub label_selector: Option<String>,
}

impl Matcher {
    fn matches(&self, request: &Request<'_>) -> bool {
        let Request {
            verb,
            resource,
            subresource,
            label_selector,
        } = *request;
        let resource_matches = self.resource == "*"
            || match subresource {
                Some(subresource) => self.resource == format!("{resource}/{subresource}"),
                None => self.resource == resource,
            };
        (self.verb == "*" || self.verb == verb)
            && resource_matches
            && (self.label_selector.is_none() || self.label_selector.as_deref() == label_selector)
    }
}

/// What faults see of one request.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// As [`AuditEntry::verb`] names it.
    pub verb: &'a str,
    /// The plural resource name.
    pub resource: &'a str,
    /// `status` for the status subresource.
    pub subresource: Option<&'a str>,
    /// The `labelSelector` of the query, decoded.
    pub label_selector: Option<&'a str>,
}

/// The id of an injected fault, to remove it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FaultId(u64);

#[derive(Clone, Debug)]
enum Budget {
    Share { share: f64, credit: f64 },
    Count(u64),
}

#[derive(Clone, Debug)]
struct Failure {
    id: FaultId,
    matcher: Matcher,
    budget: Budget,
    code: u16,
}

#[derive(Clone, Debug)]
struct Latency {
    id: FaultId,
    matcher: Matcher,
    delay: Duration,
}

/// The fault rules in force.
#[derive(Clone, Debug, Default)]
pub struct FaultRules {
    next_id: u64,
    failures: Vec<Failure>,
    latencies: Vec<Latency>,
}

/// What faults do to one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Answer this code instead of serving the request.
    pub fail: Option<u16>,
    /// Wait this long first.
    pub delay: Duration,
}

impl FaultRules {
    fn id(&mut self) -> FaultId {
        self.next_id += 1;
        FaultId(self.next_id)
    }

    /// Fail `share` (0 to 1) of the matching requests with `code`.
    pub fn fail(&mut self, matcher: Matcher, share: f64, code: u16) -> FaultId {
        let id = self.id();
        self.failures.push(Failure {
            id,
            matcher,
            budget: Budget::Share {
                share: share.clamp(0.0, 1.0),
                credit: 0.0,
            },
            code,
        });
        id
    }

    /// Fail the next `count` matching requests with `code`.
    pub fn fail_next(&mut self, matcher: Matcher, count: u64, code: u16) -> FaultId {
        let id = self.id();
        self.failures.push(Failure {
            id,
            matcher,
            budget: Budget::Count(count),
            code,
        });
        id
    }

    /// Delay matching requests.
    pub fn latency(&mut self, matcher: Matcher, delay: Duration) -> FaultId {
        let id = self.id();
        self.latencies.push(Latency { id, matcher, delay });
        id
    }

    /// Remove one rule.
    pub fn remove(&mut self, id: FaultId) {
        self.failures.retain(|failure| failure.id != id);
        self.latencies.retain(|latency| latency.id != id);
    }

    /// Remove every rule.
    pub fn clear(&mut self) {
        self.failures.clear();
        self.latencies.clear();
    }

    /// Decide the fate of one request (and spend the budgets it uses).
    pub fn decide(&mut self, request: &Request<'_>) -> Decision {
        let delay = self
            .latencies
            .iter()
            .filter(|latency| latency.matcher.matches(request))
            .map(|latency| latency.delay)
            .sum();
        let mut fail = None;
        for failure in &mut self.failures {
            if fail.is_some() || !failure.matcher.matches(request) {
                continue;
            }
            match &mut failure.budget {
                Budget::Share { share, credit } => {
                    *credit += *share;
                    if *credit >= 1.0 - f64::EPSILON {
                        *credit -= 1.0;
                        fail = Some(failure.code);
                    }
                }
                Budget::Count(remaining) => {
                    if *remaining > 0 {
                        *remaining -= 1;
                        fail = Some(failure.code);
                    }
                }
            }
        }
        self.failures
            .retain(|failure| !matches!(failure.budget, Budget::Count(0)));
        Decision { fail, delay }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any_get() -> Matcher {
        Matcher {
            verb: "get".to_owned(),
            resource: "*".to_owned(),
            label_selector: None,
        }
    }

    fn request<'a>(
        verb: &'a str,
        resource: &'a str,
        subresource: Option<&'a str>,
        label_selector: Option<&'a str>,
    ) -> Request<'a> {
        Request {
            verb,
            resource,
            subresource,
            label_selector,
        }
    }

    #[test]
    fn a_share_fails_evenly_and_a_count_runs_out() {
        let mut rules = FaultRules::default();
        let get = request("get", "pods", None, None);
        rules.fail(any_get(), 0.5, 500);
        let fates: Vec<Option<u16>> = (0..4).map(|_| rules.decide(&get).fail).collect();
        assert_eq!(fates, [None, Some(500), None, Some(500)]);
        rules.clear();
        rules.fail_next(any_get(), 2, 429);
        let fates: Vec<Option<u16>> = (0..3).map(|_| rules.decide(&get).fail).collect();
        assert_eq!(fates, [Some(429), Some(429), None]);
        assert_eq!(
            rules.decide(&request("list", "pods", None, None)),
            Decision::default()
        );
    }

    #[test]
    fn subresources_match_by_plural_slash_status() {
        let matcher = Matcher {
            verb: "*".to_owned(),
            resource: "pods/status".to_owned(),
            label_selector: None,
        };
        assert!(matcher.matches(&request("update", "pods", Some("status"), None)));
        assert!(!matcher.matches(&request("update", "pods", None, None)));
    }

    /// A rule with a label selector holds up one of two watches of the same resource (netfence
    /// watches its own NetworkPolicies and the others apart).
    #[test]
    fn a_label_selector_matches_only_that_selector() {
        let matcher = Matcher {
            verb: "watch".to_owned(),
            resource: "networkpolicies".to_owned(),
            label_selector: Some("managed-by!=netfence".to_owned()),
        };
        let watch = |selector| request("watch", "networkpolicies", None, selector);
        assert!(matcher.matches(&watch(Some("managed-by!=netfence"))));
        assert!(!matcher.matches(&watch(Some("managed-by=netfence"))));
        assert!(!matcher.matches(&watch(None)));
    }
}
