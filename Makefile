# sessctl — make targets. `make run` starts the proxy on embedded defaults;
# `make test` is what CI runs.
GO      ?= go
BIN     ?= bin/sessctl
PKGS    ?= ./...
FUZZTIME ?= 30s

SOAK_DURATION ?= 30m

.PHONY: build run test lint bench bench-go bench-proxy bench-proxy-quick fuzz soak clean

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

# The proxy comparison (issue 14's table): direct, bare goproxy, mitmproxy,
# sessctl (log prefilled with BENCH_LOG_RECORDS records, generated once and
# cached in bench/out) and sessctl on tmpfs; BENCH_ARGS go to the harness.
BENCH_LOG_RECORDS ?= 1000000
BENCH_ARGS ?=

bench-proxy: build
	scripts/bench-proxy.sh -log-records $(BENCH_LOG_RECORDS) $(BENCH_ARGS)

# A short run for iteration: 2 s phases, no prefilled log, no memory cases.
bench-proxy-quick: build
	scripts/bench-proxy.sh -quick $(BENCH_ARGS)

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
