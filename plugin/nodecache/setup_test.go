package nodecache

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/google/nftables/expr"
)

func TestParse(t *testing.T) {
	tests := []struct {
		input   string
		wantErr string
		check   func(Config) bool
	}{
		{"nodecache", "", func(c Config) bool {
			return len(c.LocalIPs) == 1 && c.LocalIPs[0] == netip.MustParseAddr(DefaultLocalIP) && c.Interface == DefaultInterface &&
				c.SetupInterface && c.SetupIPTables && !c.SkipTeardown && c.Port == 53 && c.HealthPort == 8080 && c.CheckInterval == time.Minute &&
				c.Lameduck == DefaultLameduck && c.Rules == "auto"
		}},
		{"nodecache {\n rules nftables\n lameduck 0s\n}", "", func(c Config) bool {
			return c.Rules == "nftables" && c.Lameduck == 0
		}},
		{"nodecache 169.254.20.10 10.96.0.10 fd00::10 {\n interface nlcache\n port 5353\n health_port 9090\n setup_interface off\n setup_iptables off\n skip_teardown\n check_interval 0s\n}", "", func(c Config) bool {
			return len(c.LocalIPs) == 3 && c.LocalIPs[2].Is6() && c.Interface == "nlcache" && c.Port == 5353 && c.HealthPort == 9090 &&
				!c.SetupInterface && !c.SetupIPTables && c.SkipTeardown && c.CheckInterval == 0
		}},
		{"nodecache 169.254.20.300", `"169.254.20.300" is not an IP address`, nil},
		{"nodecache {\n interface a-name-longer-than-15\n}", "is not an interface name", nil},
		{"nodecache {\n port 0\n}", `port: "0" is not a port number`, nil},
		{"nodecache {\n health_port\n}", "health_port: want a port number, got 0 arguments", nil},
		{"nodecache {\n setup_iptables maybe\n}", `"maybe" is neither on nor off`, nil},
		{"nodecache {\n skip_teardown now\n}", "want no arguments", nil},
		{"nodecache {\n check_interval often\n}", `"often" is not a duration`, nil},
		{"nodecache {\n lameduck -1s\n}", `lameduck: "-1s" is not a duration`, nil},
		{"nodecache {\n rules ipvs\n}", `rules: "ipvs" is not iptables, nftables or auto`, nil},
		{"nodecache {\n port 8080\n}", "port and health_port are both 8080", nil},
		{"nodecache {\n interface a\n interface b\n}", "given twice", nil},
		{"nodecache {\n localip 1.2.3.4\n}", "unknown property 'localip'", nil},
		{"nodecache\nnodecache", "once", nil},
	}
	for _, tc := range tests {
		cfg, err := parse(caddy.NewTestController("dns", tc.input))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.input, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.input, err)
		} else if !tc.check(cfg) {
			t.Errorf("%q: parsed as %+v", tc.input, cfg)
		}
	}
}

// recordingFirewall stands in for iptables in the logic tests; the real one runs in test/.
// recordingFirewall counts copies of each rule, as iptables can hold the same rule twice.
type recordingFirewall struct{ rules map[string]int }

func key(table, chain string, spec []string) string {
	return table + " " + chain + " " + strings.Join(spec, " ")
}

func (f *recordingFirewall) Exists(table, chain string, spec ...string) (bool, error) {
	return f.rules[key(table, chain, spec)] > 0, nil
}

func (f *recordingFirewall) Insert(table, chain string, _ int, spec ...string) error {
	f.rules[key(table, chain, spec)]++
	return nil
}

func (f *recordingFirewall) DeleteIfExists(table, chain string, spec ...string) error {
	k := key(table, chain, spec)
	if f.rules[k]--; f.rules[k] <= 0 {
		delete(f.rules, k)
	}
	return nil
}

func TestRules(t *testing.T) {
	rules := rulesFor(netip.MustParseAddr("169.254.20.10"), 53, 8080)
	if len(rules) != 14 {
		t.Fatalf("%d rules, want 14", len(rules))
	}
	fw := &recordingFirewall{rules: map[string]int{key("raw", "PREROUTING", rules[0].spec): 1}} // one left from before
	did, err := ensureRules(fw, rules)
	if err != nil || len(did) != 13 || len(fw.rules) != 14 {
		t.Fatalf("ensure on a host with one rule: %d added, %d rules, %v", len(did), len(fw.rules), err)
	}
	if did, _ := ensureRules(fw, rules); len(did) != 0 {
		t.Errorf("ensure again added %v", did)
	}
	fw.rules[key(rules[3].table, rules[3].chain, rules[3].spec)]++ // a second copy, from an instance checking at the same moment
	if err := removeRules(fw, rules); err != nil || len(fw.rules) != 0 {
		t.Errorf("after removal: %v, %v", fw.rules, err)
	}
	if !strings.Contains(rules[0].String(), "-t raw -A PREROUTING -p tcp -d 169.254.20.10 --dport 53 -j NOTRACK") {
		t.Errorf("rule renders as %q", rules[0])
	}
}

// TestNftExprs checks the nftables form of every rule: the family, protocol, address and port
// matched at the offsets of the rule's direction, and the verdict.
func TestNftExprs(t *testing.T) {
	for _, ip := range []string{"169.254.20.10", "fd00::a9fe:140a"} {
		addr := netip.MustParseAddr(ip)
		for _, r := range rulesFor(addr, 53, 8080) {
			exprs, err := nftExprs(r)
			if err != nil {
				t.Fatalf("%s: %v", r, err)
			}
			if len(exprs) != 9 {
				t.Fatalf("%s: %d expressions", r, len(exprs))
			}
			src := strings.Contains(r.String(), " -s ")
			wantOffset := map[[2]bool]uint32{{false, false}: 16, {false, true}: 12, {true, false}: 24, {true, true}: 8}[[2]bool{addr.Is6(), src}]
			if p := exprs[4].(*expr.Payload); p.Offset != wantOffset || int(p.Len) != addr.BitLen()/8 {
				t.Errorf("%s: address at offset %d length %d, want %d", r, p.Offset, p.Len, wantOffset)
			}
			if got, _ := netip.AddrFromSlice(exprs[5].(*expr.Cmp).Data); got != addr {
				t.Errorf("%s: compares the address with %v", r, got)
			}
			sport := strings.Contains(r.String(), "--sport")
			if p := exprs[6].(*expr.Payload); (p.Offset == 0) != sport {
				t.Errorf("%s: port at offset %d", r, p.Offset)
			}
			_, notrack := exprs[8].(*expr.Notrack)
			if notrack != strings.HasSuffix(r.String(), "NOTRACK") {
				t.Errorf("%s: verdict %T", r, exprs[8])
			}
		}
	}
	if _, err := nftExprs(rule{"raw", "PREROUTING", []string{"-p", "sctp", "-d", "1.2.3.4", "--dport", "53", "-j", "NOTRACK"}}); err == nil {
		t.Error("sctp: no error")
	}
}
