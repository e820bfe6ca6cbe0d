# hybridgw — the commands a newcomer and CI run. See README.md.
SHELL := /bin/bash
GO ?= go
export PATH := /usr/local/go/bin:$(PATH)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X hybridgw/internal/version.Version=$(VERSION) -X hybridgw/internal/version.Commit=$(COMMIT)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Packages run one at a time: the root tests measure rates and RTTs on a
# 2-core machine, and parallel packages would measure each other.
TEST_FLAGS ?= -count=1 -p 1 -timeout 25m
FUZZTIME ?= 10s

.PHONY: all build test test-short lint fuzz clean
all: build

# One go build for all three: it compiles shared packages (gVisor above
# all) once and in parallel.
build:
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/hcpe ./cmd/hag ./cmd/hglab

## test: every tier — pure, root-in-a-namespace and end-to-end. Root tests
## fail (not skip) when they cannot run under CI=true.
test: deps build
	$(GO) vet ./...
	$(GO) test $(TEST_FLAGS) ./...

## test-short: only what runs without root.
test-short:
	$(GO) test -count=1 -short ./...

lint:
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## fuzz: each fuzz target for FUZZTIME (go test runs one target per call);
## a count (300000x) avoids Go 1.26's deadline flake at a duration's end.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

clean:
	rm -rf bin bench/out bench/out-smoke

-include mk/*.mk
