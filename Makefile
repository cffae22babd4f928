# meshdns: a CoreDNS distribution that answers service-mesh names.
GO       ?= go
BIN      := bin/coredns
FUZZTIME ?= 30s

.PHONY: all build run test generate fuzz bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/coredns

# Serves example/nametable.yaml on 127.0.0.1:1053 and forwards other names to this machine's resolvers.
run: build
	./$(BIN) -conf Corefile.example

# Unit, integration and README tests. The integration tests build and start the real binary.
test:
	$(GO) vet ./...
	$(GO) test -count=1 ./...

generate:
	$(GO) generate ./cmd/coredns

# Every fuzz target for FUZZTIME each.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./plugin/meshdns/source/file
	$(GO) test -run '^$$' -fuzz '^FuzzServeDNS$$' -fuzztime $(FUZZTIME) ./plugin/meshdns

# Side-by-side dnsperf run: meshdns against CoreDNS's hosts plugin on the same names.
bench: build
	bench/compare.sh

clean:
	rm -rf bin
