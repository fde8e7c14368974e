//! What a NamespaceIsolation declares, read straight from its validated spec, without the
//! renderer and without NetworkPolicy semantics: the other half of the proof.
//!
//! ```text
//! (ValidatedIsolation, World, from, to, Probe) --declared--> true when the spec allows it
//! ```
//!
//! A connection is declared when the source's side and the destination's side both allow it. A
//! side outside the isolation's namespace, or in a direction `spec.isolate` leaves open, allows
//! everything. Inside, egress allows the flows out of the source's tiers, DNS, Egress shared
//! services and (with `sameNamespace: Allow`) the namespace; ingress allows the flows into the
//! destination's tiers, Ingress shared services and the namespace. Ports are the destination's:
//! names are looked up on the destination pod.

use netfence_core::{
    ValidatedIsolation,
    validate::{Peer, PortValue, Ports, ValidPort},
};
use netfence_crd::isolation::{Direction, SameNamespace};

use super::{
    super::{
        cidr::Cidr,
        model::{NamespaceInfo, PodInfo, Probe},
        selector::Selector,
    },
    world::World,
};

/// The spec, with its selectors parsed once.
pub struct Declared<'a> {
    isolation: &'a ValidatedIsolation,
    namespace: &'a str,
    namespaces: &'a [NamespaceInfo],
    tiers: Vec<Selector>,
    dns: Vec<PeerMatcher>,
    shared: Vec<PeerMatcher>,
}

/// A DNS or shared-service peer, parsed.
enum PeerMatcher {
    Pods {
        namespaces: Selector,
        pods: Selector,
    },
    Block {
        cidr: Cidr,
        except: Vec<Cidr>,
    },
}

impl PeerMatcher {
    fn new(peer: &Peer) -> Self {
        match peer {
            Peer::Pods {
                namespace_selector,
                pod_selector,
            } => PeerMatcher::Pods {
                namespaces: namespace_selector.selector.clone(),
                pods: pod_selector
                    .as_ref()
                    .map_or_else(Selector::everything, |selector| selector.selector.clone()),
            },
            Peer::IpBlock(block) => PeerMatcher::Block {
                cidr: block.cidr,
                except: block.except.clone(),
            },
        }
    }

    fn matches(&self, namespaces: &[NamespaceInfo], pod: &PodInfo) -> bool {
        match self {
            PeerMatcher::Pods { .. } if pod.external => false,
            PeerMatcher::Pods {
                namespaces: selector,
                pods,
            } => {
                namespaces
                    .iter()
                    .find(|namespace| namespace.name == pod.namespace)
                    .is_some_and(|namespace| selector.matches(&namespace.labels))
                    && pods.matches(&pod.labels)
            }
            PeerMatcher::Block { cidr, except } => pod.ips.iter().any(|address| {
                cidr.contains(address) && !except.iter().any(|block| block.contains(address))
            }),
        }
    }
}

fn port_admits(port: &ValidPort, probe: Probe, destination: &PodInfo) -> bool {
    if port.protocol != probe.protocol {
        return false;
    }
    match &port.port {
        PortValue::Number(start) => {
            (*start..=port.end_port.unwrap_or(*start)).contains(&probe.port)
        }
        PortValue::Name(name) => destination.ports.iter().any(|declared| {
            declared.name.as_deref() == Some(name.as_str())
                && declared.protocol == port.protocol
                && declared.number == probe.port
        }),
    }
}

fn ports_admit(ports: &Ports, probe: Probe, destination: &PodInfo) -> bool {
    match ports {
        Ports::All => true,
        Ports::Only(ports) => ports
            .iter()
            .any(|port| port_admits(port, probe, destination)),
    }
}

impl<'a> Declared<'a> {
    /// The spec's selectors, against `world`.
    #[must_use]
    pub fn new(isolation: &'a ValidatedIsolation, world: &'a World) -> Self {
        let tiers = isolation
            .tiers()
            .iter()
            .map(|tier| tier.pod_selector.selector.clone())
            .collect();
        let dns = isolation
            .dns()
            .map(|dns| dns.peers.iter().map(PeerMatcher::new).collect())
            .unwrap_or_default();
        let shared = isolation
            .shared_services()
            .iter()
            .map(|service| PeerMatcher::new(&service.peer))
            .collect();
        Declared {
            isolation,
            namespace: &world.namespace,
            namespaces: &world.namespaces,
            tiers,
            dns,
            shared,
        }
    }

    fn inside(&self, pod: &PodInfo) -> bool {
        !pod.external && pod.namespace == self.namespace
    }

    /// Whether `pod` is in the tier with this index.
    #[must_use]
    pub fn in_tier(&self, pod: &PodInfo, tier: usize) -> bool {
        self.inside(pod) && self.tiers[tier].matches(&pod.labels)
    }

    fn in_any(&self, pod: &PodInfo, tiers: Option<&Vec<usize>>) -> bool {
        match tiers {
            None => self.inside(pod),
            Some(tiers) => tiers.iter().any(|&tier| self.in_tier(pod, tier)),
        }
    }

    fn flow(&self, from: &PodInfo, to: &PodInfo, probe: Probe) -> bool {
        self.isolation.flows().iter().any(|flow| {
            self.in_tier(from, flow.from)
                && self.in_tier(to, flow.to)
                && ports_admit(&flow.ports, probe, to)
        })
    }

    fn same_namespace(&self, other: &PodInfo) -> bool {
        self.isolation.same_namespace() == SameNamespace::Allow && self.inside(other)
    }

    fn egress(&self, from: &PodInfo, to: &PodInfo, probe: Probe) -> bool {
        if !self.inside(from) || !self.isolation.isolates(Direction::Egress) {
            return true;
        }
        let dns = self.isolation.dns().is_some_and(|dns| {
            self.dns
                .iter()
                .any(|peer| peer.matches(self.namespaces, to))
                && dns.ports.iter().any(|port| port_admits(port, probe, to))
        });
        let shared = self
            .isolation
            .shared_services()
            .iter()
            .zip(&self.shared)
            .any(|(service, peer)| {
                service.direction == Direction::Egress
                    && self.in_any(from, service.tiers.as_ref())
                    && peer.matches(self.namespaces, to)
                    && ports_admit(&service.ports, probe, to)
            });
        self.same_namespace(to) || self.flow(from, to, probe) || dns || shared
    }

    fn ingress(&self, from: &PodInfo, to: &PodInfo, probe: Probe) -> bool {
        if !self.inside(to) || !self.isolation.isolates(Direction::Ingress) {
            return true;
        }
        let shared = self
            .isolation
            .shared_services()
            .iter()
            .zip(&self.shared)
            .any(|(service, peer)| {
                service.direction == Direction::Ingress
                    && self.in_any(to, service.tiers.as_ref())
                    && peer.matches(self.namespaces, from)
                    && ports_admit(&service.ports, probe, to)
            });
        self.same_namespace(from) || self.flow(from, to, probe) || shared
    }

    /// Whether the spec allows `from` -> `to` on `probe`.
    #[must_use]
    pub fn allows(&self, from: &PodInfo, to: &PodInfo, probe: Probe) -> bool {
        self.egress(from, to, probe) && self.ingress(from, to, probe)
    }
}
