package multicluster

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestExplain(t *testing.T) {
	m := &Mesh{cfg: &Config{Suffixes: []string{"global"}},
		decided:   map[string][]Candidate{"shop/web": {{Cluster: "west", Tier: "same region", Chosen: true, Why: "2 ready endpoints behind its gateway"}}},
		answers:   map[string][]netip.Addr{"shop/web": {netip.MustParseAddr("192.0.2.1")}},
		qualified: map[string][]netip.Addr{"shop/web|east": {netip.MustParseAddr("10.96.0.10")}},
	}
	get := func(q string) (int, Explanation) {
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, httptest.NewRequest("GET", "/multicluster?"+q, nil))
		var ex Explanation
		if rec.Code == http.StatusOK {
			if err := json.Unmarshal(rec.Body.Bytes(), &ex); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		return rec.Code, ex
	}
	if code, ex := get("name=web.shop.global"); code != 200 || strings.Join(ex.Answer, ",") != "192.0.2.1" || len(ex.Candidates) != 1 || ex.Service != "shop/web" {
		t.Errorf("web.shop.global: %d %+v", code, ex)
	}
	if code, ex := get("name=web.shop.east.global"); code != 200 || strings.Join(ex.Answer, ",") != "10.96.0.10" || ex.Cluster != "east" {
		t.Errorf("web.shop.east.global: %d %+v", code, ex)
	}
	if code, ex := get("name=db.shop.global&client=10.0.0.5"); code != 200 || ex.Client != "10.0.0.5" || ex.Note == "" || len(ex.Answer) != 0 {
		t.Errorf("db.shop.global: %d %+v", code, ex)
	}
	for _, q := range []string{"name=web.shop.svc.cluster.local", "name=web.shop.global&client=nope"} {
		if code, _ := get(q); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, code)
		}
	}
}
