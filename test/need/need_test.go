package need

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSkipRecords checks that a skip lands in $MESHDNS_SKIP_LOG with what is missing and how to get
// it, skips only the test that asked: the parent goes on.
func TestSkipRecords(t *testing.T) {
	log := filepath.Join(t.TempDir(), "skips")
	t.Setenv("MESHDNS_SKIP_LOG", log)
	t.Setenv(Stack.Require, "") // CI sets both: this test is about skipping
	t.Setenv(Tools.Require, "")
	if !t.Run("needs-stack", func(t *testing.T) {
		Skip(t, Stack, "no binaries")
		t.Error("Skip returned")
	}) {
		t.Fatal("a skipped subtest failed")
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	want := Stack.What + "\t" + Stack.How + "\tTestSkipRecords/needs-stack\n"
	if string(data) != want {
		t.Errorf("skip log %q, want %q", data, want)
	}
	t.Run("missing-tool", func(t *testing.T) {
		Tool(t, "meshdns-no-such-tool")
		t.Error("Tool returned for a missing tool")
	})
	data, _ = os.ReadFile(log)
	if n := strings.Count(string(data), "\n"); n != 2 || !strings.Contains(string(data), Tools.What) {
		t.Errorf("skip log after a missing tool: %q", data)
	}
}
