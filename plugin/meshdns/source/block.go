package source

import (
	"os"

	"github.com/coredns/caddy"
)

// ParseBlock reads the optional "{ ... }" block of a source, the controller standing on the last
// argument of its line, handing each property and its arguments to prop. It reports what every
// source's block gets wrong the same way, naming the source (kind), the property and the line: a
// property given twice (unless repeatable) and a block not closed. prop reports an unknown property with Unknown.
func ParseBlock(c *caddy.Controller, kind string, repeatable []string, prop func(name string, args []string) error) error {
	if !c.NextArg() {
		return nil
	}
	if c.Val() != "{" {
		return c.Errf("%s: unexpected %q where its block { ... } may start", kind, c.Val())
	}
	seen := map[string]bool{}
	for c.Next() {
		name := c.Val()
		if name == "}" {
			return nil
		}
		once := true
		for _, r := range repeatable {
			once = once && r != name
		}
		if once && seen[name] {
			return c.Errf("%s: property '%s' given twice", kind, name)
		}
		seen[name] = true
		if err := prop(name, c.RemainingArgs()); err != nil {
			return err
		}
	}
	return c.Errf("%s: block not closed with '}'", kind)
}

// Unknown is the error of a property a source does not have.
func Unknown(c *caddy.Controller, kind, prop string) error {
	return c.Errf("%s: unknown property '%s'", kind, prop)
}

// WantArgs checks that a property has from min to max arguments; what says which, as in
// "CA_FILE [SERVER_NAME]".
func WantArgs(c *caddy.Controller, kind, prop string, args []string, min, max int, what string) error {
	if len(args) < min || len(args) > max {
		return c.Errf("%s: %s: want %s, got %d arguments", kind, prop, what, len(args))
	}
	return nil
}

// Readable checks that the file a property names can be opened, so a typo stops the start with
// the Corefile line rather than failing every stream.
func Readable(c *caddy.Controller, kind, prop, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return c.Errf("%s: %s: %v", kind, prop, err)
	}
	f.Close()
	return nil
}
