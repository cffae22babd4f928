package ambient

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestDebugExplains(t *testing.T) {
	s := &Source{cfg: &Config{Namespace: "default"}}
	rec := httptest.NewRecorder()
	s.explain(rec, httptest.NewRequest(http.MethodGet, "/ambient?name=reviews.default.svc.cluster.local", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("before any push: %d %s", rec.Code, rec.Body)
	}

	h := &handler{src: s, sink: &discardSink{}, idx: newIndex("cluster.local", "east")}
	s.current.Store(h)
	tt := newTouched()
	h.idx.put("default/reviews.default.svc.cluster.local", nil, reviewsSvc, tt)
	h.idx.put("default/db.default.svc.cluster.local", nil, dbSvc, tt)
	h.idx.put(db0.UID, db0, nil, tt)
	h.idx.put(db2.UID, db2, nil, tt)
	private := &Service{Name: "vault", Namespace: "secret", Hostname: "vault.example", NamespaceOnly: true, Addresses: vips("", "240.0.0.71")}
	h.idx.put("secret/vault.example", nil, private, tt)
	h.idx.put("insider", &Workload{UID: "insider", Namespace: "secret", Addrs: addrs("10.244.9.9")}, nil, tt)
	h.idx.all()

	ask := func(query string) (Explanation, int) {
		rec := httptest.NewRecorder()
		s.explain(rec, httptest.NewRequest(http.MethodGet, "/ambient?"+query, nil))
		var ex Explanation
		if rec.Code == http.StatusOK {
			if err := json.Unmarshal(rec.Body.Bytes(), &ex); err != nil {
				t.Fatalf("%s: %v: %s", query, err, rec.Body)
			}
		}
		return ex, rec.Code
	}
	ex, _ := ask("name=reviews.default.svc.cluster.local&client=10.244.0.10")
	if want := []string{"/10.96.0.12", "/fd00::12", "west/10.200.0.12 (other network)"}; len(ex.Services) != 1 || !reflect.DeepEqual(ex.Services[0].VIPs, want) ||
		!reflect.DeepEqual(ex.Answer, []string{"10.96.0.12", "fd00::12"}) {
		t.Errorf("a ClusterIP Service: %+v", ex)
	}
	if ex.Client == nil || ex.Client.Namespace != "default" || !ex.Client.Sees || len(ex.Client.Workloads) != 1 {
		t.Errorf("a known client: %+v", ex.Client)
	}
	ex, _ = ask("name=db-0.db.default.svc.cluster.local")
	if len(ex.Services) != 1 || len(ex.Services[0].Workloads) != 2 || ex.Services[0].Workloads[1].Healthy || !reflect.DeepEqual(ex.Answer, []string{"10.244.0.10"}) ||
		!strings.Contains(ex.Note, "headless Service db.default.svc.cluster.local") {
		t.Errorf("a pod's name: %+v", ex)
	}
	ex, _ = ask("name=vault.example&client=10.1.1.1")
	if !slices.Equal(ex.VisibleTo, []string{"secret"}) || ex.Client.Sees || ex.Client.Namespace != "" {
		t.Errorf("a private name to a stranger: %+v %+v", ex, ex.Client)
	}
	ex, _ = ask("name=vault.example&client=10.244.9.9")
	if !ex.Client.Sees || ex.Client.Namespace != "secret" {
		t.Errorf("a private name to its namespace: %+v", ex.Client)
	}
	ex, _ = ask("name=nothing.example")
	if len(ex.Services) != 0 || len(ex.Answer) != 0 || ex.Note == "" {
		t.Errorf("an unknown name: %+v", ex)
	}
	for _, q := range []string{"name=a..b", "name=reviews.default.svc.cluster.local&client=nope", "name="} {
		if _, code := ask(q); code != http.StatusBadRequest {
			t.Errorf("%s: %d", q, code)
		}
	}
}
