package kubernetes

import (
	"testing"

	"github.com/coredns/caddy"

	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// FuzzParse feeds the kubernetes block any text: it parses or says why, never panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"kubernetes",
		"kubernetes {\n kubeconfig /nonexistent ctx\n namespaces a b\n serviceentries\n clients node-1\n cluster c1\n startup_timeout 2s\n}",
		"kubernetes {\n clients\n}",
		"kubernetes {\n namespaces\n}",
		"kubernetes {",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		c := caddy.NewTestController("dns", input)
		if !c.Next() {
			return
		}
		cfg, err := Parse(c)
		if err == nil && cfg == nil {
			t.Fatal("no config and no error")
		}
	})
}

// FuzzServiceEntry reads a ServiceEntry of any shape (as JSON) into names: bad hosts and addresses are
// reported or skipped, never a panic, and every name it gives is valid.
func FuzzServiceEntry(f *testing.F) {
	f.Add(`{"metadata":{"name":"a","namespace":"b"},"spec":{"hosts":["a.example.com","*.w.example.com"],"addresses":["240.0.0.1","10.0.0.0/8"]},"status":{"addresses":[{"host":"a.example.com","value":"240.240.0.1"}]}}`)
	f.Add(`{"spec":{"hosts":[1,null,{"x":1}],"addresses":"240.0.0.1"},"status":{"addresses":["x",{"value":7}]}}`)
	f.Fuzz(func(t *testing.T, data string) {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON([]byte(data)); err != nil {
			return
		}
		entries, _ := serviceEntryEntries(newServiceEntry(u), "c")
		for _, e := range entries {
			if err := table.ValidateHost(e.Host); err != nil || len(e.Addrs) == 0 {
				t.Fatalf("entry %+v: %v", e, err)
			}
		}
	})
}
