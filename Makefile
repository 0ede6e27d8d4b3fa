# rendermesh — one binary, one Makefile. `make help` lists the targets.
SHELL   := /bin/bash
GO      ?= go
BIN     := bin/rendermesh
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/rendermesh/rendermesh/node.Version=$(VERSION)
# go-nvml's cgo headers use NVML calls deprecated in NVML 13; the warnings are noise.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations

PROTOC_GEN_GO := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
DEVNET_NODES  ?= 30
SIMNET_PEERS  ?= 1000
SIMNET_SCENARIO ?= steady
SIMNET_LINKS  ?= streams
SIMNET_OUT    ?= out/simnet-$(SIMNET_SCENARIO)-$(SIMNET_PEERS)

.PHONY: help build test test-short test-sim demo simnet bench fuzz lint verify proto deps deps-vpx deps-proto clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

build: deps-vpx ## build bin/rendermesh
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/rendermesh

# The packages that run whole devnets (real networking on the wall clock, video included) run one
# at a time after the rest: on two cores, beside other packages' tests, their epochs and streams
# starve.
DEVNET_PKGS := ./node ./cmd/rendermesh

test: deps ## every test with the race detector, then the simulations and a 100-peer simnet without it
	$(GO) mod download
	RENDERMESH_E2E=1 $(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v -e '/node$$' -e '/cmd/rendermesh$$')
	RENDERMESH_E2E=1 $(GO) test -race -count=1 -timeout 20m -p 1 $(DEVNET_PKGS)
	$(MAKE) test-sim

# The same-seed test runs alone in its process: a simnet run before it in the same process
# (TestMatchSmall) leaves global state behind that changes its timings.
test-sim: build ## the simnet tests (too slow under the race detector) and a 100-peer steady simnet
	$(GO) test -count=1 -timeout 20m -run 'Small' ./simnet
	$(GO) test -count=1 -timeout 10m -run '^TestSameSeedSameSummary$$' ./simnet
	$(GO) test -count=1 -timeout 10m -run '^TestCheckersSameSeed$$' ./simnet
	@mkdir -p out
	./$(BIN) simnet run --peers 100 --seed 1 --scenario steady --duration 1m --out out/test-simnet-100 --json > out/test-simnet-100.json
	@cat out/test-simnet-100.json
	@for want in '"start_failures":0,' '"query_success_ratio":1,' '"gossip_delivery_ratio":1,'; do \
	  grep -qF "$$want" out/test-simnet-100.json || { echo "simnet 100 peers: want $$want"; exit 1; }; done

test-short: ## the quick tests only
	$(GO) test -race -short -count=1 ./...

demo: build ## run a devnet of $(DEVNET_NODES) nodes for a minute and print its summary
	./$(BIN) devnet --nodes $(DEVNET_NODES) --duration 60s --web 127.0.0.1:8080

simnet: build ## a large simnet: SIMNET_PEERS (1000) peers of SIMNET_SCENARIO (steady) on SIMNET_LINKS (streams), report in SIMNET_OUT
	./$(BIN) simnet run --peers $(SIMNET_PEERS) --seed 1 --scenario $(SIMNET_SCENARIO) --links $(SIMNET_LINKS) --procs 2 --out $(SIMNET_OUT) --json

bench: ## run the Go benchmarks (see docs/BENCHMARKS.md for the devnet figures)
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...

fuzz: ## run every fuzz test for FUZZTIME each (default 10s)
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-10s} $$pkg || exit 1; \
	  done; \
	done

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

verify: lint deps-proto ## lint, go.mod tidy, generated code up to date
	$(GO) mod tidy -diff
	$(MAKE) proto
	git diff --exit-code -- p2p/pb || (echo "generated code is stale: run make proto and commit"; exit 1)

proto: deps-proto ## regenerate protobuf code (committed)
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc --go_out=. --go_opt=paths=source_relative p2p/pb/*.proto

# Debian packages, installed only when missing: libvpx (VP8, cgo) for every build; coturn (the
# reference TURN server), Chromium and Node.js for the tests; playwright-core (npm) drives Chromium.
APT_INSTALL := apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends

deps-vpx: ## install libvpx-dev (needed to build), if missing
	@command -v pkg-config >/dev/null && pkg-config --exists vpx || { $(APT_INSTALL) pkg-config libvpx-dev; }

deps: deps-vpx ## install everything the tests need, if missing
	@command -v turnserver >/dev/null || { $(APT_INSTALL) coturn; }
	@command -v chromium >/dev/null || { $(APT_INSTALL) chromium; }
	@command -v ip >/dev/null || { $(APT_INSTALL) iproute2; }
	@command -v npm >/dev/null || { $(APT_INSTALL) nodejs npm; }
	@test -d render/web/e2e/node_modules/playwright-core || (cd render/web/e2e && npm ci --no-audit --no-fund --loglevel=error)

deps-proto: ## install protoc (Debian) and protoc-gen-go, if missing
	@command -v protoc >/dev/null || { apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
	@test -x "$$($(GO) env GOPATH)/bin/protoc-gen-go" || $(GO) install $(PROTOC_GEN_GO)

clean: ## remove build outputs
	rm -rf bin out
