# meshdns: a CoreDNS distribution that answers service-mesh names.
GO       ?= go
BIN      := bin/coredns
FUZZTIME ?= 30s
PKGS     ?= ./...

# Static, as the image's binary is: one compilation of the module graph then serves the build, the
# tests' binary and the benchmarks (cgo in one and not the others compiles it all twice, which on a
# fresh 2-core machine is minutes). Nothing of ours uses cgo.
export CGO_ENABLED ?= 0

.PHONY: e2e-node all build image run test generate fuzz soak chaos bench bench-push bench-kube clean

all: build

build:
	$(GO) build $(BUILDFLAGS) -o $(BIN) ./cmd/coredns

# The node-local image (deploy/docker/Dockerfile's node stage) as an archive, without Docker:
# ctr -n k8s.io images import bin/meshdns-node.tar. The binary is built as the Dockerfile builds it;
# the Debian packages are cached in /var/cache/meshdns/debs ($MESHDNS_DEB_CACHE).
IMAGE ?= ghcr.io/meshdns/meshdns:dev
image: export CGO_ENABLED = 0
image: BUILDFLAGS = -trimpath -ldflags "-s -w"
image: build
	$(GO) run ./deploy/image -bin $(BIN) -ref $(IMAGE) -o bin/meshdns-node.tar

# Serves example/nametable.yaml on 127.0.0.1:1053 and forwards other names to this machine's resolvers.
run: build
	./$(BIN) -conf Corefile.example

# Unit, integration and README tests. The integration tests build and start the real binary; the
# packages run one at a time (-p 1) so that their servers do not race for the same free ports. Tests
# whose prerequisites are missing skip (test/need); the last lines say how many and how to run them.
# The timeout is go test's 10 minutes a package raised for ./test on a cold machine, where its image
# test fetches Debian's packages first; a test that hangs is still stopped.
test:
	$(GO) vet $(PKGS)
	@skips=$$(mktemp); rc=0; \
	MESHDNS_SKIP_LOG=$$skips $(GO) test -count=1 -p 1 -timeout 30m $(PKGS) || rc=$$?; \
	awk -F'\t' '{ n[$$1]++; how[$$1] = $$2 } END { for (w in n) printf "skipped %d tests that need %s: %s\n", n[w], w, how[w] }' $$skips; \
	rm -f $$skips; exit $$rc

generate:
	$(GO) generate ./cmd/coredns

# Every fuzz target for FUZZTIME each.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./plugin/meshdns/source/file
	$(GO) test -run '^$$' -fuzz '^FuzzServeDNS$$' -fuzztime $(FUZZTIME) ./plugin/meshdns
	$(GO) test -run '^$$' -fuzz '^FuzzBatchedPath$$' -fuzztime $(FUZZTIME) ./plugin/meshdns
	$(GO) test -run '^$$' -fuzz '^FuzzControlMessages$$' -fuzztime $(FUZZTIME) ./plugin/meshdns/ingress
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeNameTable$$' -fuzztime $(FUZZTIME) ./plugin/meshdns/source/nds
	$(GO) test -run '^$$' -fuzz '^FuzzDiffer$$' -fuzztime $(FUZZTIME) ./plugin/meshdns/source/nds
	$(GO) test -run '^$$' -fuzz '^FuzzResponseCodec$$' -fuzztime $(FUZZTIME) ./plugin/meshdns/source/xds
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeAddress$$' -fuzztime $(FUZZTIME) ./plugin/meshdns/source/ambient
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./plugin/meshdns/source/kubernetes
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./plugin/meshdns/source/multicluster
	$(GO) test -run '^$$' -fuzz '^FuzzServiceEntry$$' -fuzztime $(FUZZTIME) ./plugin/meshdns/source/kubernetes
	$(GO) test -run '^$$' -fuzz '^FuzzServiceImport$$' -fuzztime $(FUZZTIME) ./plugin/meshdns/source/kubernetes
	$(GO) test -run '^$$' -fuzz '^FuzzVisibility$$' -fuzztime $(FUZZTIME) ./plugin/meshdns/source/kubernetes
	$(GO) test -run '^$$' -fuzz '^FuzzParseTable$$' -fuzztime $(FUZZTIME) ./plugin/pkg/handover
	$(GO) test -run '^$$' -fuzz '^FuzzParseStanzas$$' -fuzztime $(FUZZTIME) ./deploy/image
	$(GO) test -run '^$$' -fuzz '^FuzzDependsNames$$' -fuzztime $(FUZZTIME) ./deploy/image
	$(GO) test -run '^$$' -fuzz '^FuzzParseAlternatives$$' -fuzztime $(FUZZTIME) ./deploy/image
	$(GO) test -run '^$$' -fuzz '^FuzzAddPackage$$' -fuzztime $(FUZZTIME) ./deploy/image

# dnsperf at a fixed rate for SOAK while both sources change the table every second and the upstream
# flaps: mesh names must get every answer. Results go to bench/results.
SOAK ?= 2m
soak:
	MESHDNS_SOAK=$(SOAK) MESHDNS_RESULTS=$(CURDIR)/bench/results \
		$(GO) test -count=1 -run '^TestSoak$$' -v -timeout 30m ./test/

# Control planes killed, restarted, slowed, cut off and partitioned under load, and 100 reloads
# (needs the real stack: bash test/realstack/build.sh). make test runs a short version.
chaos:
	MESHDNS_CHAOS=full MESHDNS_REQUIRE_STACK=1 $(GO) test -count=1 -run '^TestChaos$$' -v -timeout 30m ./test/

# Side-by-side dnsperf run on the same names: meshdns, CoreDNS's hosts plugin, Istio's DNS proxy,
# unbound and a bare miekg/dns server (needs dnsperf, dig, unbound; gnuplot-nox for the chart).
bench: build
	bench/compare.sh

# Latency percentiles (bench/loadgen, open loop) while a 10k-name NDS push lands every second, against no pushes.
bench-push: build
	bench/push-latency.sh

# The kubernetes source against CoreDNS's kubernetes plugin on a real kube-apiserver loaded with 10k
# Services, 50k endpoints and 20k pods (SCALE=0.1 for a tenth); results go to bench/results.
SCALE ?= 1
bench-kube:
	MESHDNS_SCALE=$(SCALE) MESHDNS_REQUIRE_STACK=1 MESHDNS_RESULTS=$(CURDIR)/bench/results \
		$(GO) test -run '^$$' -bench '^BenchmarkKubernetesScale$$' -benchtime 1x -timeout 30m ./test/

# The node-local role on a real node (kubelet, containerd, kube-proxy, the image, the manifests as
# they are), with real clients in pods: a PASS or FAIL line per check and a count at the end. Builds
# what is missing first (cached: bash test/realstack/build.sh).
e2e-node:
	bash test/realstack/build.sh
	MESHDNS_E2E_NODE=1 MESHDNS_REQUIRE_STACK=1 MESHDNS_REQUIRE_TOOLS=1 MESHDNS_RESULTS=$(CURDIR)/bench/results \
		$(GO) test -count=1 -run '^TestNodeLocalE2E$$' -v -timeout 30m ./test/

clean:
	rm -rf bin
