# sessctl — make targets. `make run` starts the proxy on embedded defaults;
# `make test` is what CI runs.
GO      ?= go
BIN     ?= bin/sessctl
PKGS    ?= ./...
FUZZTIME ?= 30s

SOAK_DURATION ?= 30m

.PHONY: build run test lint bench bench-go bench-proxy fuzz soak clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) .

run: build
	./$(BIN) serve

test: lint
	$(GO) test -count=1 -timeout 10m $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Benchmarks report figures; they never fail the build on a number.
bench: bench-go bench-proxy

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 $(PKGS)

bench-proxy: build
	@if [ -x scripts/bench-proxy.sh ]; then scripts/bench-proxy.sh; else echo "bench-proxy: scripts/bench-proxy.sh not built yet"; fi

# Soak: bin/sessctl under mixed traffic (JSON, streamed, slow readers,
# WebSocket, refusals, SIGHUP reloads) for SOAK_DURATION, printing RSS,
# descriptors and goroutines over time; fails if they grow. Not part of test.
soak: build
	$(GO) run ./scripts/soak -sessctl $(BIN) -duration $(SOAK_DURATION)

# Long fuzz campaigns, one target at a time (go test -fuzz takes one).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
