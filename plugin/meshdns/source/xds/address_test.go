package xds

import (
	"strings"
	"testing"
)

func TestCheckAddress(t *testing.T) {
	for _, ok := range []string{"istiod.istio-system.svc:15012", "10.0.0.1:15010", "[fd00::1]:15012",
		"dns:///istiod.istio-system.svc:15012", "dns://10.96.0.11:53/istiod.istio-system.svc.cluster.local:15012"} {
		if err := CheckAddress(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"istiod":                         "is not host:port",
		":15012":                         "is not host:port",
		"dns://10.96.0.11:53":            "is not dns://[SERVER]/host:port",
		"dns://10.96.0.11/istiod:15012":  `the resolver "10.96.0.11" is not host:port`,
		"dns:///istiod":                  "is not host:port",
		"dns://10.96.0.11:53/istiod.svc": "is not host:port",
	} {
		if err := CheckAddress(bad); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", bad, err, want)
		}
	}
}
