package table

import (
	"strings"
)

// View is what the table needs to know about the client asking: its namespace, for bare short names,
// and its search domains, so that names with a search domain appended are answered in one round trip.
type View struct {
	Namespace string
	// suffixes are the search domains as lower-case ".domain." suffixes, in the client's order.
	suffixes []string
}

// NewView returns the view of a client in namespace with the given search domains. With no search
// domains it takes the Kubernetes default for the namespace: NS.svc.DOMAIN svc.DOMAIN DOMAIN.
func NewView(namespace string, search []string, clusterDomain string) *View {
	clusterDomain = strings.Trim(strings.ToLower(clusterDomain), ".")
	if search == nil {
		if namespace != "" {
			search = append(search, namespace+".svc."+clusterDomain)
		}
		search = append(search, "svc."+clusterDomain, clusterDomain)
	}
	v := &View{Namespace: namespace}
	for _, s := range search {
		s = strings.Trim(strings.ToLower(s), ".")
		if s == "" {
			continue
		}
		v.suffixes = append(v.suffixes, "."+s+".")
	}
	return v
}

// Search returns the view's search domains without their dots, as configured.
func (v *View) Search() []string {
	out := make([]string, len(v.suffixes))
	for i, s := range v.suffixes {
		out[i] = strings.Trim(s, ".")
	}
	return out
}
