package file

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/meshdns/meshdns/plugin/meshdns/table"
)

// FuzzParse feeds arbitrary bytes to the parser, as JSON and as YAML: it must return entries that the
// table accepts, or an error, and never panic.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*")
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data, true)
			f.Add(data, false)
		}
	}
	f.Add([]byte(`{"table": {"a.b": {"ips": ["10.0.0.1"], "registry": "Kubernetes", "shortname": "a", "namespace": "b"}}}`), true)
	f.Add([]byte("table:\n  '*.x.y':\n    ips: ['::1']\n"), false)
	f.Fuzz(func(t *testing.T, data []byte, asJSON bool) {
		name := "t.yaml"
		if asJSON {
			name = "t.json"
		}
		entries, err := Parse(name, data)
		if err != nil {
			return
		}
		for _, e := range entries {
			if err := table.ValidateHost(e.Host); err != nil {
				t.Fatalf("parser accepted host %q: %v", e.Host, err)
			}
		}
		tbl := table.Build(entries, table.Options{ClusterDomain: "cluster.local", TTL: 30})
		v := table.NewView("ns", nil, "cluster.local")
		for _, e := range entries {
			tbl.Lookup(e.Host, v)
		}
	})
}
