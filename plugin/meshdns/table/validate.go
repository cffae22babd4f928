package table

import (
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// ValidateHost checks that h is a host a table can hold: a domain name of at most 253 characters and
// 63 per label, of letters, digits, '-' and '_', whose only wildcard is a whole leftmost "*" label.
func ValidateHost(h string) error {
	name := strings.TrimSuffix(h, ".")
	if name == "" {
		return fmt.Errorf("empty host name")
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '*') {
			return fmt.Errorf("%q: a host name holds only letters, digits, '-', '_' and '.', not %q", h, c)
		}
	}
	for i, label := range strings.Split(name, ".") {
		switch {
		case label == "":
			return fmt.Errorf("%q has an empty label", h)
		case len(label) > 63:
			return fmt.Errorf("%q has a label longer than 63 bytes", h)
		case strings.Contains(label, "*") && (label != "*" || i != 0):
			return fmt.Errorf("%q: a wildcard must be the whole leftmost label, as in *.example.com", h)
		case label == "*" && !strings.Contains(name, "."):
			return fmt.Errorf("%q: a wildcard needs a domain under it", h)
		}
	}
	if len(name) > 253 {
		return fmt.Errorf("%q is longer than 253 characters", h)
	}
	if _, ok := dns.IsDomainName(name); !ok {
		return fmt.Errorf("%q is not a valid domain name", h)
	}
	return nil
}
