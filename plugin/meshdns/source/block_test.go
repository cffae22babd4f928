package source

import (
	"fmt"
	"strings"
	"testing"

	"github.com/coredns/caddy"
)

func TestParseBlock(t *testing.T) {
	tests := []struct{ input, want, err string }{
		{"src a:1", "", ""},
		{"src a:1 {\n}", "", ""},
		{"src a:1 {\n one x y\n tag a\n tag b\n}", "one[x y] tag[a] tag[b]", ""},
		{"src a:1 {\n one\n one\n}", "", "Testfile:3 - Error during parsing: src: property 'one' given twice"},
		{"src a:1 {\n colour red\n}", "", "Testfile:2 - Error during parsing: src: unknown property 'colour'"},
		{"src a:1 {\n one x", "", "src: block not closed with '}'"},
		{"src a:1 {\n one a b c\n}", "", "src: one: want A [B], got 3 arguments"},
	}
	for _, tc := range tests {
		c := caddy.NewTestController("dns", tc.input)
		c.Next()
		c.RemainingArgs()
		var got []string
		err := ParseBlock(c, "src", []string{"tag"}, func(prop string, args []string) error {
			switch prop {
			case "one":
				if err := WantArgs(c, "src", prop, args, 0, 2, "A [B]"); err != nil {
					return err
				}
			case "tag":
			default:
				return Unknown(c, "src", prop)
			}
			got = append(got, fmt.Sprint(prop, args))
			return nil
		})
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.input, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want %q", tc.input, err, tc.err)
		case tc.err == "" && strings.Join(got, " ") != tc.want:
			t.Errorf("%q: properties %q, want %q", tc.input, strings.Join(got, " "), tc.want)
		}
	}
}
