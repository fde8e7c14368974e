// The other engines' modules whose CustomResourceDefinitions the tests install on the real
// control plane (and the sandbox), to check that every object netfence renders for a
// ClusterBaseline is accepted by the engine's published schema. Never built: the pins (here and
// in go.sum) say which module versions `go mod download` fetches; the e2e harness checks each
// download's hash against go.sum.
module netfence.io/e2e/upstream/engines

go 1.26

require (
	github.com/cilium/cilium v1.20.2
	sigs.k8s.io/network-policy-api v0.3.0
)
