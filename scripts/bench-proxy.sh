#!/bin/sh
# bench-proxy.sh — the proxy load comparison of `make bench-proxy`.
#
# Builds the harness (scripts/benchproxy) and runs it: a TLS stand-in for
# api.openai.com in a network namespace of its own (as root with ip; else
# on loopback, with a message), driven directly, through a bare goproxy
# MITM that only swaps the key, through mitmproxy (mitmdump) and through
# bin/sessctl (log prefilled with -log-records records, 1,000,000 by
# default: generated once, about 3 minutes and 6.5 GiB, cached in
# bench/out/log-N and copied fresh for each run), each with the same
# workloads. Prints a table and writes bench/results.json and
# bench/out/results.md (with issue 14's goals judged and the top functions
# of sessctl's CPU profiles, kept in bench/out/profiles/); raw outputs (CAs,
# data dirs, proxy logs) go to bench/out/. Takes about ten minutes with the
# default 1M-record log (the copies take a few minutes). It installs nothing:
# without mitmdump the mitmproxy path is skipped, without bin/sessctl the
# sessctl path. Extra arguments go to the harness (see `bin/benchproxy -h`),
# e.g.
#
#   scripts/bench-proxy.sh -quick                   # 2 s phases, no prefilled log (make bench-proxy-quick)
#   scripts/bench-proxy.sh -duration 4s -stream-duration 4s -memory=false
#   scripts/bench-proxy.sh -log-records 0 -netns=false   # empty log, stand-in on loopback
#   scripts/bench-proxy.sh -paths sessctl -perf bench/out/perf   # perf(1) profiles of sessctl
set -eu
cd "$(dirname "$0")/.."

GO=${GO:-go}
SESSCTL=${SESSCTL:-bin/sessctl}

if MITMDUMP=$(command -v mitmdump 2>/dev/null); then
	:
else
	MITMDUMP=
	echo "bench-proxy: mitmdump not found: skipping the mitmproxy path." >&2
	echo "bench-proxy: to include it: apt-get install -y mitmproxy (Debian/Ubuntu) or pipx install mitmproxy" >&2
fi
if [ ! -x "$SESSCTL" ]; then
	echo "bench-proxy: $SESSCTL not found: skipping the sessctl path (run make build)." >&2
	SESSCTL=
fi

mkdir -p bin bench/out
"$GO" build -o bin/benchproxy ./scripts/benchproxy
exec bin/benchproxy -sessctl "$SESSCTL" -mitmdump "$MITMDUMP" -go "$GO" -out bench/results.json -work bench/out "$@"
