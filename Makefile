# cutover — make targets. `make test` is what CI runs (.ci/run).
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin

.PHONY: all build demo test check unit deps bench bench-smoke deb

all: build

## build: compile bin/cutover
build:
	$(GO) build -ldflags "-X main.buildCommit=$$(git rev-parse HEAD 2>/dev/null)" -o bin/cutover ./cmd/cutover

## deb: build dist/cutover_VERSION_ARCH.deb (packaging/deb: binary, conffiles, systemd units
##      cutover and cutover-agent, completions, user, state directories, admin and agent
##      tokens). DEB_VERSION overrides the version.
DEB_VERSION ?= $(shell git log -1 --format=0.0~git%cd.%h --date=format:%Y%m%d 2>/dev/null || echo 0.0~dev)
deb:
	$(GO) build -trimpath -ldflags "-s -w -X main.buildCommit=$$(git rev-parse HEAD 2>/dev/null)" -o bin/cutover ./cmd/cutover
	cd packaging && $(GO) run ./deb -binary ../bin/cutover -version $(DEB_VERSION) -out ../dist

## demo: run the demo (simulated blue/green pools, gateway, admin API)
demo:
	$(GO) run ./cmd/cutover demo

## test: install what the tests need, run every check and the whole suite with -race
test: deps check unit

## deps: tools the test suite needs, installed when missing
deps:
	@scripts/deps.sh

## check: gofmt, go vet, staticcheck
check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd packaging && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...

## unit: the whole Go test suite with the race detector
unit:
	$(GO) test -race -count=1 -timeout 20m ./...
	# packaging: one sequential test that builds and installs the .deb
	# (gzip of the binary); without -race it takes seconds, not minutes.
	cd packaging && $(GO) test -count=1 -timeout 5m ./...

## bench: compare cutover with nginx and HAProxy on the same load (docs/benchmarks.md);
##        about 12 minutes (bounded at 15), loopback only; tables in bench/out/results.md. BENCHFLAGS: see go run ./bench -help
bench: deps
	$(GO) run ./bench $(BENCHFLAGS)

## bench-smoke: the same harness with tiny sizes (seconds); the figures mean nothing
bench-smoke: deps
	$(GO) run ./bench -smoke $(BENCHFLAGS)
