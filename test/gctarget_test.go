package test

import (
	"fmt"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// TestSteadyGCTarget: once its first table is served the resolver collects garbage at half the live
// heap (Go's own gauge, go_gc_gogc_percent, says so), and an operator's GOGC wins.
func TestSteadyGCTarget(t *testing.T) {
	table, err := filepath.Abs("../example/nametable.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		env  []string
		want string
	}{
		{nil, "50"},
		{[]string{"GOGC=100"}, "100"},
		{[]string{"GOGC=75"}, "75"},
	} {
		port, metrics := freePort(t), freePort(t)
		corefile := fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    prometheus 127.0.0.1:%s
    meshdns {
        file %s 0
    }
}
`, port, metrics, table)
		startCoreDNSEnv(t, t.TempDir(), corefile, "127.0.0.1:"+port, c.env)
		re := regexp.MustCompile(`(?m)^go_gc_gogc_percent (\S+)$`)
		var got string
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if m := re.FindSubmatch(metricsBody(t, "127.0.0.1:"+metrics)); m != nil {
				if got = string(m[1]); got == c.want {
					break
				}
			}
		}
		if got != c.want {
			t.Errorf("env %q: go_gc_gogc_percent %q, want %s", c.env, got, c.want)
		}
	}
}
