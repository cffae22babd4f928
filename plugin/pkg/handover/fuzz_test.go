package handover

import (
	"bytes"
	"testing"
)

// FuzzParseTable: any bytes give sockets or an error, never a panic, and every socket parsed has a
// valid address.
func FuzzParseTable(f *testing.F) {
	f.Add([]byte(sampleUDP))
	f.Add([]byte(sampleUDP6))
	f.Fuzz(func(t *testing.T, data []byte) {
		socks, err := ParseTable(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, s := range socks {
			if !s.Local.Addr().IsValid() || !s.Remote.Addr().IsValid() {
				t.Fatalf("invalid address in %+v", s)
			}
		}
	})
}
