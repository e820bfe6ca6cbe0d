# Benchmarks, included by the top-level Makefile (which defines GO, VERSION,
# COMMIT and LDFLAGS).
#
#   make bench      build hcpe, hag and the harness (bench/), build a lab under
#                   BENCH_PREFIX, and compare hybridgw, the OpenMPTCProuter
#                   approach (shadowsocks-libev with upstream MPTCP; installed
#                   with apt-get if missing) and plain single-link TCP over the
#                   same emulated links. Writes $(BENCH_OUT)/report.md and
#                   report.json (logs in $(BENCH_OUT)/logs). About 9 minutes,
#                   at most 15 (the harness skips what no longer fits and says so).
#
# Needs root. BENCH_FLAGS passes options to the harness, e.g. shorter runs
# while iterating:
#   make bench BENCH_FLAGS='-bulk 5s -parallel 3s -ttfb-runs 20 -idle-flows 100'
#   make bench BENCH_FLAGS='-systems direct,peer -figures 1,2'
# (go run ./bench -h lists them). The committed bench/report.md is a copy of
# one real run's report.

BIN          ?= bin
BENCH_OUT    ?= bench/out
BENCH_PREFIX ?= bnch-
BENCH_FLAGS  ?=

.PHONY: bench
bench: build
	@mkdir -p $(BENCH_OUT) $(BIN)
	$(GO) build -trimpath -o $(BIN)/bench ./bench
	$(BIN)/bench -out $(BENCH_OUT) -prefix $(BENCH_PREFIX) -bin $(BIN) \
	  -configs configs -profiles test/lab/profiles \
	  -version '$(VERSION)' -commit '$(COMMIT)' $(BENCH_FLAGS)
