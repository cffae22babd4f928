package main

import (
	"fmt"
	"regexp"
	"strings"
)

// A stanza is one deb822 paragraph, a package's record as apt-cache show prints it: field names in
// lower case (deb822 names are case-insensitive), continuation lines joined with newlines.
type stanza map[string]string

// parseStanzas splits deb822 text into its paragraphs. Whitespace-only lines separate paragraphs, as
// in Debian policy 5.1, so a continuation line is never empty.
func parseStanzas(text string) ([]stanza, error) {
	var out []stanza
	var cur stanza
	last := ""
	for i, line := range strings.Split(text, "\n") {
		switch {
		case strings.TrimSpace(line) == "":
			if cur != nil {
				out = append(out, cur)
			}
			cur, last = nil, ""
		case strings.HasPrefix(line, "#"):
			// deb822 comments: apt's own files have them, records do not.
		case line[0] == ' ' || line[0] == '\t':
			if last == "" {
				return nil, fmt.Errorf("line %d: continuation %q before any field", i+1, line)
			}
			cur[last] += "\n" + strings.TrimSpace(line)
		default:
			name, value, ok := strings.Cut(line, ":")
			name = strings.ToLower(name)
			if !ok || !fieldName.MatchString(name) {
				return nil, fmt.Errorf("line %d: %q is not a Field: value line", i+1, line)
			}
			if cur == nil {
				cur = stanza{}
			}
			if _, seen := cur[name]; seen {
				return nil, fmt.Errorf("line %d: field %s twice in one paragraph", i+1, name)
			}
			cur[name] = strings.TrimSpace(value)
			last = name
		}
	}
	if cur != nil {
		out = append(out, cur)
	}
	return out, nil
}

// fieldName is what deb822 allows in a field name (US-ASCII, no control characters, spaces or colons,
// not starting with '#' or '-'), lower-cased.
var fieldName = regexp.MustCompile(`^[!"$-,.-9;-~][!-9;-~]*$`)

// packageName is Debian policy 5.6.1's package name, with an optional :arch qualifier.
var packageName = regexp.MustCompile(`^([a-z0-9][a-z0-9+.-]+)(:[a-z0-9-]+)?$`)

// dependsNames returns the packages a Depends or Pre-Depends field asks for: of each "a | b" the first,
// which is the one apt installs when none is there yet, without version or architecture qualifiers.
func dependsNames(field string) ([]string, error) {
	var names []string
	for clause := range strings.SplitSeq(field, ",") {
		clause = strings.TrimSpace(clause)
		if clause == "" {
			continue
		}
		first, _, _ := strings.Cut(clause, "|")
		first = strings.TrimSpace(first)
		if i := strings.IndexAny(first, " \t\n(["); i >= 0 {
			first = first[:i]
		}
		m := packageName.FindStringSubmatch(first)
		if m == nil {
			return nil, fmt.Errorf("%q in %q is not a package name", first, field)
		}
		names = append(names, m[1])
	}
	return names, nil
}
