package test

import (
	"testing"
	"time"
)

// TestAmbientMatchesKubernetes gives the same objects to a real istiod in ambient mode, followed by
// the ambient source, and to the kubernetes source, and asks both for every name form of every
// object: the answers must be the same, but for the differences listed in intended.
func TestAmbientMatchesKubernetes(t *testing.T) {
	stack := ambientStack(t)
	createEquivalenceObjects(t, stack)

	ambAddr, kubeAddr := startEquivalencePair(t, stack, "ambient "+stack.IstiodGRPC)

	// Intended differences, each with the reason, by the first label of the name in every form.
	intended := map[string]string{
		// istiod's ambient index keys a ServiceEntry host by namespace/hostname: two ServiceEntries of
		// one namespace naming the same host become one Address Service, with one of them's addresses;
		// the kubernetes source (and NDS) merge both.
		"api": "two ServiceEntries of a namespace with one host are one Service in workload discovery",
		"7":   "the PTR of an address of the ServiceEntry left out (above)",
		// Workload discovery leaves ExternalName Services out, as NDS does; the kubernetes source
		// answers them with a CNAME. (A headless Service without endpoints is NODATA from both:
		// workload discovery sends it, unlike NDS.)
		"ext": "an ExternalName Service is a CNAME from the kubernetes source, unknown to workload discovery",
	}
	sameAnswers(t, 20*time.Second, "ambient", ambAddr, kubeAddr, intended, "api.payments.example.com.", "ext.default.svc.cluster.local.")
}
