// Command goresolve is Go's own resolver as a pod's program meets it (built with CGO_ENABLED=0, so
// net uses its pure-Go stub with the pod's /etc/resolv.conf). For each name it prints
// "NAME ADDRESS..." or "NAME error: REASON", and exits 0 only if every name resolved.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	failed := false
	for _, name := range os.Args[1:] {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		addrs, err := net.DefaultResolver.LookupHost(ctx, name)
		cancel()
		if err != nil {
			fmt.Printf("%s error: %v\n", name, err)
			failed = true
			continue
		}
		fmt.Println(name, strings.Join(addrs, " "))
	}
	if failed {
		os.Exit(1)
	}
}
