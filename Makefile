# edgerelay — see README.md. `make run` and `make test` are the two commands that matter.
SHELL   := /bin/bash
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN     := bin/edgerelay
CONFIG  ?=

export GOFLAGS := -buildvcs=false

.PHONY: all build run test test-deps bench soak cross package size image lint clean

all: build

# Build flags live in packaging.BuildFlags: the same for make build, make cross and the tests.
build:
	$(GO) run ./packaging/cmd/pkgbuild -version $(VERSION) -o $(BIN) build

# Start the daemon in the foreground: the embedded default (relay + STUN on loopback,
# self-signed) unless CONFIG=path names a YAML or UCI file.
run: build
	$(BIN) run $(if $(CONFIG),-c $(CONFIG))

# The one test command: installs what the tests need (Debian packages, Go tools), then runs
# unit tests, fuzz seeds and the integration tests. Under CI=true integration tests may not skip.
test: test-deps
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) test -count=1 -timeout 40m ./...

test-deps:
	@./.ci/install-test-deps

# Speed and memory figures (never asserted by tests).
# Go micro-benchmarks, then the load tool (cmd/edgerelay/bench*_test.go): our relay, the
# reference derper and a bare TLS forwarder (the floor), each pinned to one core with the load
# in a separate process on the other: delivered packets, loss and server CPU per packet from
# paced load to past saturation, RTT, RSS idle and with 1,000 clients; then the router's view:
# our binary and derper built for mipsle softfloat and arm v7, under qemu-user, side by side.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./relay/...
	EDGERELAY_BENCH=1 $(GO) test -count=1 -run '^TestLoad(Emulated)?$$' -v -timeout 60m ./cmd/edgerelay | grep -v '^=== RUN'
	-$(GO) run ./packaging/cmd/pkgbuild -version $(VERSION) -targets mipsle-softfloat size

# Long run of the built daemon under OpenWrt's GOMEMLIMIT (not in make test): idle, churning and
# steady clients plus issue 15's attacks at a low rate, sampled every minute. SOAK_MINUTES=150 make soak
SOAK_MINUTES ?= 30
soak:
	EDGERELAY_SOAK_MINUTES=$(SOAK_MINUTES) $(GO) test -count=1 -run '^TestSoak$$' -v -timeout $$(( $(SOAK_MINUTES) + 10 ))m ./cmd/edgerelay

cross:
	$(GO) run ./packaging/cmd/pkgbuild -version $(VERSION) cross

package:
	$(GO) run ./packaging/cmd/pkgbuild -version $(VERSION) package

size:
	$(GO) run ./packaging/cmd/pkgbuild -version $(VERSION) size

# The multi-platform container image as one archive (dist/image/edgerelay-VERSION.tar) for
# podman load, docker load or skopeo copy; built in Go, no container engine needed.
image:
	$(GO) run ./packaging/cmd/pkgbuild -version $(VERSION) image

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) tool staticcheck ./...

clean:
	rm -rf bin dist
