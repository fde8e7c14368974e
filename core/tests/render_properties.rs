//! Property tests: for random valid NamespaceIsolation specs, render never panics, is
//! deterministic, writes only isolated directions, and every object it makes is a NetworkPolicy
//! that survives the round trip through k8s-openapi's type (what the API server will store).

use std::collections::BTreeSet;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use netfence_core::{
    ValidatedIsolation, render,
    testing::{resource, spec},
};
use netfence_crd::isolation::Direction;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any valid spec renders, twice identically, and every object round-trips through
    /// k8s-openapi's NetworkPolicy unchanged.
    #[test]
    fn renders_deterministically_and_round_trips(spec in spec()) {
        let resource = resource("prop", "prop", spec);
        let isolation = ValidatedIsolation::try_from(&resource)
            .map_err(|errors| TestCaseError::fail(format!("generator made an invalid spec: {errors}")))?;
        let first = render::network_policies(&isolation);
        let second = render::network_policies(&isolation);
        prop_assert_eq!(
            serde_saphyr::to_string(&first).expect("serializes"),
            serde_saphyr::to_string(&second).expect("serializes")
        );

        let mut names = BTreeSet::new();
        for policy in &first {
            let json = serde_json::to_value(policy).expect("serializes");
            let back: NetworkPolicy = serde_json::from_value(json.clone()).expect("a NetworkPolicy");
            prop_assert_eq!(serde_json::to_value(&back).expect("serializes"), json);
            prop_assert!(names.insert(policy.metadata.name.clone()), "duplicate name");

            let spec = policy.spec.as_ref().expect("spec");
            let types = spec.policy_types.as_ref().expect("policyTypes always written");
            prop_assert!(!types.is_empty());
            for kind in types {
                let direction = if kind == "Ingress" { Direction::Ingress } else { Direction::Egress };
                prop_assert!(isolation.isolates(direction), "{} not isolated", kind);
            }
            prop_assert!(spec.ingress.is_none() || types.iter().any(|t| t == "Ingress"));
            prop_assert!(spec.egress.is_none() || types.iter().any(|t| t == "Egress"));
            for rule in spec.ingress.iter().flatten() {
                let ports: Vec<_> = rule.ports.iter().flatten().collect();
                let unique: BTreeSet<_> = ports.iter().map(|p| serde_json::to_string(p).unwrap_or_default()).collect();
                prop_assert_eq!(unique.len(), ports.len(), "duplicate ports in one rule");
            }
        }
        prop_assert_eq!(
            first.iter().filter(|p| p.metadata.name.as_deref() == Some("prop-default-deny")).count(),
            1
        );
    }
}
