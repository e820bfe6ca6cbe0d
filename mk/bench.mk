# Benchmarks, included by the top-level Makefile (which defines GO, VERSION,
# COMMIT and LDFLAGS).
#
#   make bench      build hcpe, hag and the harness (bench/), build a lab under
#                   BENCH_PREFIX, and compare hybridgw, the OpenMPTCProuter
#                   approach (shadowsocks-libev with upstream MPTCP; installed
#                   with apt-get if missing) and plain single-link TCP over the
#                   same emulated links, then ramp hag's connection rate.
#                   Writes $(BENCH_OUT)/report.md and report.json (logs in
#                   $(BENCH_OUT)/logs, CPU and heap profiles of hcpe and hag
#                   in $(BENCH_OUT)/profiles). The noisy figures are
#                   repeated (figures 1 and 4 three times per case, the
#                   handover of figure 3 five times per system) and the
#                   report gives their median and spread. At most 30 minutes
#                   (-budget; the harness skips what no longer fits and
#                   says so).
#   make bench-smoke
#                   CI's check that the harness and all three systems still
#                   work: a short figures 1 and 2 (default profile pair, 4 s
#                   downloads run once, 20 TTFB runs) into $(BENCH_SMOKE_OUT), failing
#                   unless report.json holds both figures for every system.
#                   Its numbers are too short to quote. About 1.5 minutes.
#
# Needs root. BENCH_FLAGS passes options to the harness, e.g. shorter runs
# while iterating:
#   make bench BENCH_FLAGS='-bulk 5s -parallel 3s -eff-runs 1 -ttfb-runs 20 -idle-flows 100'
#   make bench BENCH_FLAGS='-systems direct,peer -figures 1,2'
# (go run ./bench -h lists them). The committed bench/report.md is a copy of
# one real run's report.

BIN                ?= bin
BENCH_OUT          ?= bench/out
BENCH_PREFIX       ?= bnch-
BENCH_FLAGS        ?=
BENCH_SMOKE_OUT    ?= bench/out-smoke
BENCH_SMOKE_PREFIX ?= bsmk-

.PHONY: bench bench-smoke bench-harness
bench: deps build bench-harness
	@mkdir -p $(BENCH_OUT)
	$(BIN)/bench -out $(BENCH_OUT) -prefix $(BENCH_PREFIX) -bin $(BIN) \
	  -configs configs -profiles test/lab/profiles \
	  -version '$(VERSION)' -commit '$(COMMIT)' $(BENCH_FLAGS)

bench-smoke: deps build bench-harness
	@mkdir -p $(BENCH_SMOKE_OUT)
	$(BIN)/bench -out $(BENCH_SMOKE_OUT) -prefix $(BENCH_SMOKE_PREFIX) -bin $(BIN) \
	  -configs configs -profiles test/lab/profiles \
	  -version '$(VERSION)' -commit '$(COMMIT)' \
	  -smoke -systems direct,hybridgw,peer -figures 1,2 -pairs default \
	  -bulk 4s -parallel 3s -eff-runs 1 -ttfb-runs 20 -budget 3m $(BENCH_FLAGS)

bench-harness:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/bench ./bench
