// Command gen writes zdirectives.go from plugin.cfg; run it through "go generate ./cmd/coredns".
package main

import (
	"flag"
	"log"
	"os"

	"github.com/meshdns/meshdns/cmd/coredns/internal/plugincfg"
)

func main() {
	in := flag.String("in", "../../plugin.cfg", "plugin.cfg to read")
	out := flag.String("out", "zdirectives.go", "Go file to write")
	flag.Parse()
	f, err := os.Open(*in)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	plugins, err := plugincfg.Parse(f)
	if err != nil {
		log.Fatal(err)
	}
	src, err := plugincfg.Generate(plugins)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, src, 0o644); err != nil {
		log.Fatal(err)
	}
}
