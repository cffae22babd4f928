package test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestNoAmplification asks the real binary, over UDP, every name of a table built to answer big, with
// each question type and buffer size a client may use: no reply is larger than the client's buffer
// (512 bytes without EDNS0), a cut reply has TC set, and the worst ratio of reply bytes to query
// bytes is reported. Mesh names never reach the upstream.
func TestNoAmplification(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("table:\n")
	var v4, v6 []string
	for i := range 200 {
		v4 = append(v4, fmt.Sprintf("10.1.%d.%d", i/256, i%256))
	}
	for i := range 100 {
		v6 = append(v6, fmt.Sprintf("\"fd00::%x\"", i+1))
	}
	fmt.Fprintf(&b, "  big.db.svc.cluster.local: {ips: [%s], registry: Kubernetes}\n", strings.Join(v4, ", "))
	fmt.Fprintf(&b, "  big6.db.svc.cluster.local: {ips: [%s], registry: Kubernetes}\n", strings.Join(v6, ", "))
	fmt.Fprintf(&b, "  %s.example.com: {ips: [10.0.0.1, 10.0.0.2, 10.0.0.3, \"fd00::1\"], registry: External}\n", strings.Repeat("a", 63))
	b.WriteString("  \"*.wild.example.com\": {ips: [10.0.0.4, 10.0.0.5], registry: External}\n")
	b.WriteString("  shared.example.com: {ips: [10.1.0.1], registry: External}\n") // a second owner of 10.1.0.1, for PTR
	if err := os.WriteFile(filepath.Join(dir, "table.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t)
	port := freePort(t)
	addr := "127.0.0.1:" + port
	startCoreDNS(t, dir, fmt.Sprintf(".:%s {\n    bind 127.0.0.1\n    meshdns {\n        file table.yaml\n        namespace db\n        fallthrough\n    }\n    forward . %s\n}\n", port, up.addr), addr)

	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	names := []string{"big.db.svc.cluster.local.", "BIG6.db.svc.cluster.local.", "big.", "big6.db.", "big.db.svc.cluster.local.db.svc.cluster.local.",
		strings.Repeat("a", 63) + ".example.com.", "x.y.z.wild.example.com.", "1.0.1.10.in-addr.arpa."}
	worst, worstCase := 0.0, ""
	buf := make([]byte, 65535)
	for _, name := range names {
		for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypePTR, dns.TypeANY, dns.TypeTXT} {
			for _, size := range []uint16{0, 512, 1232, 4096} {
				req := new(dns.Msg)
				req.SetQuestion(name, qtype)
				if size > 0 {
					req.SetEdns0(size, false)
				}
				query, err := req.Pack()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := conn.Write(query); err != nil {
					t.Fatal(err)
				}
				_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, err := conn.Read(buf)
				if err != nil {
					t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
				}
				resp := new(dns.Msg)
				if err := resp.Unpack(buf[:n]); err != nil {
					t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
				}
				what := fmt.Sprintf("%s %s, buffer %d", name, dns.TypeToString[qtype], size)
				if limit := max(int(size), 512); n > limit {
					t.Errorf("%s: a %d-byte reply", what, n)
				}
				if strings.HasPrefix(strings.ToLower(name), "big.") && qtype == dns.TypeA && size < 2048 && !resp.Truncated {
					t.Errorf("%s: 200 addresses in %d bytes, without TC", what, n)
				}
				if ratio := float64(n) / float64(len(query)); ratio > worst {
					worst, worstCase = ratio, fmt.Sprintf("%s (%d -> %d bytes)", what, len(query), n)
				}
			}
		}
	}
	t.Logf("worst amplification over UDP: %.1fx, %s", worst, worstCase)
	if n := up.total() - up.count("startup.probe.invalid. A"); n > 0 {
		t.Errorf("%d mesh questions went upstream", n)
	}
}
