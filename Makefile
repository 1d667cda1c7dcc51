# edgerelay — see README.md. `make run` and `make test` are the two commands that matter.
SHELL   := /bin/bash
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# nethttpomithttp2 drops net/http's bundled HTTP/2 (~0.4 MB on mipsle): DERP is HTTP/1.1.
TAGS    := nethttpomithttp2
BIN     := bin/edgerelay
CONFIG  ?=

export GOFLAGS := -buildvcs=false

.PHONY: all build run test test-deps bench soak cross package size lint clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -tags $(TAGS) -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/edgerelay

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
bench: build
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./relay/...
	$(GO) run ./relay/internal/loadtest -bin $(BIN)

cross:
	$(GO) run ./packaging/cmd/pkgbuild -version $(VERSION) cross

package:
	$(GO) run ./packaging/cmd/pkgbuild -version $(VERSION) package

size:
	$(GO) run ./packaging/cmd/pkgbuild -version $(VERSION) size

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) tool staticcheck ./...

clean:
	rm -rf bin dist
