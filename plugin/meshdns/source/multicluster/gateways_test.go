package multicluster

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestGatewayAddressHealth: one failing address of two is withdrawn alone, and returns after the
// hold-down; all failing make the cluster's problem.
func TestGatewayAddressHealth(t *testing.T) {
	m := &Mesh{cfg: &Config{HoldDown: 30 * time.Second}}
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	both := []netip.Addr{a, b}
	c := &meshCluster{}
	t0 := time.Unix(1000, 0)
	check := func(at time.Duration, errs map[netip.Addr]string, wantUp string, wantProblem bool) {
		t.Helper()
		c.gwErrs = errs
		up, problem, _ := m.gateways(c, "west", both, t0.Add(at))
		if fmt.Sprint(up) != wantUp || (problem != "") != wantProblem {
			t.Errorf("at %v: up %v, problem %q; want %s, problem %v", at, up, problem, wantUp, wantProblem)
		}
	}
	check(0, nil, "[192.0.2.1 192.0.2.2]", false)
	check(time.Second, map[netip.Addr]string{b: "refused"}, "[192.0.2.1]", false)
	check(2*time.Second, nil, "[192.0.2.1]", false) // b in its hold-down
	check(32*time.Second, nil, "[192.0.2.1 192.0.2.2]", false)
	check(33*time.Second, map[netip.Addr]string{a: "refused", b: "timeout"}, "[]", true)
	// A gateway address that went away is forgotten; a stays in its hold-down until 30 s after 70 s.
	c.gwErrs = nil
	if up, _, _ := m.gateways(c, "west", []netip.Addr{a}, t0.Add(70*time.Second)); len(up) != 0 || len(c.gwHealth) != 1 {
		t.Errorf("after b left: up %v, health of %d addresses", up, len(c.gwHealth))
	}
	if up, _, _ := m.gateways(c, "west", []netip.Addr{a}, t0.Add(100*time.Second)); fmt.Sprint(up) != "[192.0.2.1]" {
		t.Errorf("after the hold-down: up %v", up)
	}
}
