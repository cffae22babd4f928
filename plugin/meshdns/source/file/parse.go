// Package file is the name table source that reads Istio's NameTable from a file, JSON or YAML, and
// follows changes to it.
package file

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"sigs.k8s.io/yaml"
)

// nameInfo is Istio's NameTable.NameInfo in its JSON form; alt_hosts is the proto field name, which
// protojson also accepts.
type nameInfo struct {
	IPs           []string `json:"ips"`
	Registry      string   `json:"registry"`
	Shortname     string   `json:"shortname"`
	Namespace     string   `json:"namespace"`
	AltHosts      []string `json:"altHosts"`
	AltHostsProto []string `json:"alt_hosts"`
}

// Parse reads a NameTable ({"table": {HOST: NameInfo}}) from data. Content that starts with '{' is
// read as JSON, whose errors have exact positions; the rest, and JSON-looking YAML that is not valid
// JSON in a file not named .json, as YAML. Errors give the line (and for JSON the column), and the
// host and field at fault.
func Parse(name string, data []byte) ([]table.Entry, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("the file is empty")
	}
	isJSON := strings.EqualFold(filepath.Ext(name), ".json")
	if trimmed[0] != '{' && !isJSON {
		return parseYAML(data)
	}
	entries, err := parseJSON(data, offsetPosition(data))
	var se *syntaxError
	if errors.As(err, &se) && !isJSON {
		return parseYAML(data) // a YAML flow mapping, such as {table: {a.b: {ips: [10.0.0.1]}}}
	}
	return entries, err
}

// syntaxError marks a document that is not JSON at all, as opposed to JSON of the wrong shape.
type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return e.msg }

// position turns a failure at a JSON offset (and optionally about one host) into "line L, column C".
type position func(offset int64, host string) string

func offsetPosition(data []byte) position {
	return func(off int64, _ string) string {
		off = min(max(off, 0), int64(len(data)))
		line := 1 + bytes.Count(data[:off], []byte("\n"))
		col := off - int64(bytes.LastIndexByte(data[:off], '\n'))
		return fmt.Sprintf("line %d, column %d", line, col)
	}
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// parseYAML converts YAML to JSON and reads that; positions are found again in the YAML by host.
func parseYAML(data []byte) ([]table.Entry, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			msg = "line " + m[1] + ": " + strings.TrimPrefix(yamlLine.ReplaceAllString(msg, ""), "yaml: : ")
		}
		return nil, fmt.Errorf("YAML: %s", msg)
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return nil, errors.New("the file holds no YAML document")
	}
	return parseJSON(js, func(_ int64, host string) string {
		if host == "" {
			return "YAML"
		}
		if i := bytes.Index(data, []byte(host)); i >= 0 {
			return "line " + strconv.Itoa(1+bytes.Count(data[:i], []byte("\n")))
		}
		return "host " + host
	})
}

// parseJSON walks the document with a token decoder so that every error has an offset and duplicate
// hosts are caught rather than silently overwritten.
func parseJSON(data []byte, at position) ([]table.Entry, error) {
	// Syntax first, over the whole document: the decoder's own syntax errors carry offsets relative
	// to the value being decoded, which would give wrong positions.
	var raw json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			if se.Error() == "unexpected end of JSON input" {
				return nil, &syntaxError{at(se.Offset, "") + ": unexpected end of input"}
			}
			return nil, &syntaxError{at(se.Offset-1, "") + ": " + se.Error()} // Offset counts the bad byte
		}
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	fail := func(off int64, host, format string, args ...any) error {
		where := at(off, host)
		if host != "" {
			return fmt.Errorf("%s: host %q: %s", where, host, fmt.Sprintf(format, args...))
		}
		return fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...))
	}
	// The document is valid JSON by now, so the decoder's errors are about its shape.
	shape := func(err error) error { return fail(dec.InputOffset(), "", "%v", err) }
	if err := expectDelim(dec, '{'); err != nil {
		return nil, shape(err)
	}
	var entries []table.Entry
	seenTable := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, shape(err)
		}
		if key := tok.(string); key != "table" {
			return nil, fail(dec.InputOffset(), "", "unknown field %q: a NameTable has only \"table\"", key)
		}
		if seenTable {
			return nil, fail(dec.InputOffset(), "", "\"table\" given twice")
		}
		seenTable = true
		if entries, err = parseTable(dec, fail, shape); err != nil {
			return nil, err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, shape(err)
	}
	if !seenTable {
		return nil, fail(dec.InputOffset(), "", "no \"table\" field: expected {\"table\": {HOST: {\"ips\": [...]}}}")
	}
	return entries, nil
}

func parseTable(dec *json.Decoder, fail func(int64, string, string, ...any) error, shape func(error) error) ([]table.Entry, error) {
	if tok, err := dec.Token(); err != nil {
		return nil, shape(err)
	} else if tok == nil {
		return nil, nil // "table": null is an empty table, as protojson may write it
	} else if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fail(dec.InputOffset(), "", "\"table\" must be an object of hosts, not %v", tok)
	}
	var entries []table.Entry
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, shape(err)
		}
		host := tok.(string)
		at := dec.InputOffset() // just after the host's key: errors about the host point here
		var ni nameInfo
		if err := dec.Decode(&ni); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return nil, fail(at, host, "field %q: expected %s, got JSON %s", te.Field, te.Type, te.Value)
			}
			return nil, fail(at, host, "%s", strings.TrimPrefix(err.Error(), "json: "))
		}
		e, err := entryOf(host, &ni)
		if err != nil {
			return nil, fail(at, host, "%v", err)
		}
		key := strings.ToLower(strings.TrimSuffix(host, "."))
		if seen[key] {
			return nil, fail(at, host, "host given twice")
		}
		seen[key] = true
		entries = append(entries, e)
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, shape(err)
	}
	return entries, nil
}

func entryOf(host string, ni *nameInfo) (table.Entry, error) {
	if err := table.ValidateHost(host); err != nil {
		return table.Entry{}, err
	}
	e := table.Entry{
		Host:      host,
		Registry:  ni.Registry,
		ShortName: ni.Shortname,
		Namespace: ni.Namespace,
	}
	for i, s := range ni.IPs {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil || a.Zone() != "" {
			return e, fmt.Errorf("ips[%d]: %q is not an IP address", i, s)
		}
		e.Addrs = append(e.Addrs, a.Unmap())
	}
	for i, alt := range append(ni.AltHosts, ni.AltHostsProto...) {
		if err := table.ValidateHost(alt); err != nil {
			return e, fmt.Errorf("altHosts[%d]: %v", i, err)
		}
		e.AltHosts = append(e.AltHosts, alt)
	}
	return e, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("expected '%c', got %v", want, tok)
	}
	return nil
}
