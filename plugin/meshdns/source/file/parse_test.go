package file

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/meshdns/meshdns/plugin/meshdns/table"
)

func TestParseIstioJSON(t *testing.T) {
	// As istiod's debug endpoint and protojson write a NameTable.
	data := `{
  "table": {
    "reviews.default.svc.cluster.local": {
      "ips": ["10.96.0.12", "fd00::12"],
      "registry": "Kubernetes",
      "shortname": "reviews",
      "namespace": "default"
    },
    "api.example.com": {"ips": ["240.240.0.1"], "registry": "External", "altHosts": ["api.example.com.global"]},
    "legacy.example.com": {"ips": ["240.240.0.2"], "alt_hosts": ["old.example.com"]},
    "*.wild.example.com": {"ips": ["::ffff:10.1.1.1"]}
  }
}`
	got, err := Parse("table.json", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	want := []table.Entry{
		{Host: "reviews.default.svc.cluster.local", Addrs: addrs("10.96.0.12", "fd00::12"), Registry: "Kubernetes", ShortName: "reviews", Namespace: "default"},
		{Host: "api.example.com", Addrs: addrs("240.240.0.1"), Registry: "External", AltHosts: []string{"api.example.com.global"}},
		{Host: "legacy.example.com", Addrs: addrs("240.240.0.2"), AltHosts: []string{"old.example.com"}},
		{Host: "*.wild.example.com", Addrs: addrs("10.1.1.1")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseYAMLMatchesJSON(t *testing.T) {
	js := `{"table": {"a.ns.svc.cluster.local": {"ips": ["10.0.0.1"], "registry": "Kubernetes", "shortname": "a", "namespace": "ns", "altHosts": ["a.global"]}}}`
	yml := "table:\n  a.ns.svc.cluster.local:\n    ips:\n      - 10.0.0.1\n    registry: Kubernetes\n    shortname: a\n    namespace: ns\n    altHosts: [a.global]\n"
	fromJSON, err := Parse("t.json", []byte(js))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"t.yaml", "t.yml", "table"} {
		fromYAML, err := Parse(name, []byte(yml))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(fromJSON, fromYAML) {
			t.Errorf("%s: YAML %+v\nJSON %+v", name, fromYAML, fromJSON)
		}
	}
	// JSON content in a file without an extension is JSON; JSON is YAML too.
	for _, name := range []string{"table", "t.yaml"} {
		got, err := Parse(name, []byte(js))
		if err != nil || !reflect.DeepEqual(got, fromJSON) {
			t.Errorf("%s holding JSON: %+v, %v", name, got, err)
		}
	}
}

func TestParseEmptyTables(t *testing.T) {
	for _, data := range []string{`{"table": {}}`, `{"table": null}`, "table: {}\n", "table:\n"} {
		got, err := Parse("t", []byte(data))
		if err != nil || len(got) != 0 {
			t.Errorf("%q: %v, %v", data, got, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, file, data, want string
	}{
		{"empty", "t.json", "  \n", "the file is empty"},
		{"not an object", "t.json", `[1, 2]`, `line 1, column 2: expected '{'`},
		{"truncated", "t.json", "{\"table\": {\n \"a.b\": {\"ips\": [\"10.0.0.1\"", "line 2, column 28: unexpected end of input"},
		{"syntax", "t.json", "{\"table\": {\n\n \"a.b\": {\"ips\": [10.0.0.1]}}}", "line 3, column 22: invalid character '.' after array element"},
		{"unknown top field", "t.json", `{"tables": {}}`, `line 1, column 10: unknown field "tables"`},
		{"no table", "t.json", `{}`, `no "table" field`},
		{"table twice", "t.json", `{"table": {}, "table": {}}`, `"table" given twice`},
		{"table not object", "t.json", `{"table": []}`, `"table" must be an object of hosts`},
		{"trailing data", "t.json", `{"table": {}} {}`, "line 1, column 15: invalid character '{' after top-level value"},
		{"unknown field", "t.json", "{\"table\": {\n  \"a.b\": {\"ips\": [], \"ipss\": []}}}", `line 2, column 8: host "a.b": unknown field "ipss"`},
		{"wrong type", "t.json", "{\"table\": {\n  \"a.b\": {\"ips\": \"10.0.0.1\"}}}", `line 2, column 8: host "a.b": field "ips": expected []string, got JSON string`},
		{"bad ip", "t.json", "{\"table\": {\n  \"a.b\": {\"ips\": [\"10.0.0.1\", \"bogus\"]}}}", `line 2, column 8: host "a.b": ips[1]: "bogus" is not an IP address`},
		{"cidr", "t.json", `{"table": {"a.b": {"ips": ["10.0.0.0/8"]}}}`, `ips[0]: "10.0.0.0/8" is not an IP address`},
		{"zoned ip", "t.json", `{"table": {"a.b": {"ips": ["fe80::1%eth0"]}}}`, `ips[0]: "fe80::1%eth0" is not an IP address`},
		{"bad host", "t.json", `{"table": {"a..b": {"ips": ["10.0.0.1"]}}}`, `host "a..b": "a..b" has an empty label`},
		{"empty host", "t.json", `{"table": {"": {"ips": ["10.0.0.1"]}}}`, `empty host name`},
		{"long label", "t.json", `{"table": {"` + strings.Repeat("x", 64) + `.b": {"ips": []}}}`, `has a label longer than 63 bytes`},
		{"wildcard inside", "t.json", `{"table": {"a.*.b": {"ips": []}}}`, `a wildcard must be the whole leftmost label`},
		{"wildcard partial", "t.json", `{"table": {"a*.b": {"ips": []}}}`, `a wildcard must be the whole leftmost label`},
		{"bare wildcard", "t.json", `{"table": {"*": {"ips": []}}}`, `a wildcard needs a domain under it`},
		{"bad alt host", "t.json", `{"table": {"a.b": {"ips": [], "altHosts": ["ok.b", "no..pe"]}}}`, `altHosts[1]: "no..pe" has an empty label`},
		{"duplicate host", "t.json", "{\"table\": {\n\"a.b\": {\"ips\": []},\n\"A.b.\": {\"ips\": []}}}", `line 3, column 7: host "A.b.": host given twice`},
		{"yaml syntax", "t.yaml", "table:\n  a.b:\n    ips: [10.0.0.1\n", "YAML: line 3"},
		{"yaml bad ip", "t.yaml", "table:\n  a.b:\n    ips: [10.0.0.1]\n  c.d:\n    ips: [nope]\n", `line 4: host "c.d": ips[0]: "nope" is not an IP address`},
		{"yaml not a table", "t.yaml", "- a\n- b\n", "expected '{'"},
		{"yaml comment only", "t.yaml", "# nothing\n", "the file holds no YAML document"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.file, []byte(tc.data))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}
