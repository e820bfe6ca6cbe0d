# Lab targets (docs/lab.md), included by the top-level Makefile.
#
#   make lab-up     build bin/hglab, start the lab topology in the background
#                   (namespaces, veths, emulated dsl/lte links with the default
#                   profiles; no daemons) and wait until it answers
#   make lab-down   stop it and remove whatever of it remains
#   make lab        build hcpe, hag and hglab, then the demo of docs/lab.md
#                   (hglab demo): a fresh lab with the default profiles, hag
#                   and hcpe started from configs/, a LAB_SECONDS download
#                   from the server to the LAN client over IPv6 with each
#                   uplink's rate once a second, a short IPv4 connection, and a
#                   summary (goodput against dsl+lte, each uplink's share, the
#                   addresses the server saw, the subflows); then everything is
#                   torn down. Needs root; refuses if lab LAB_PREFIX is up
#                   (make lab-down first). Exits non-zero, saying why, if a
#                   step fails; the daemons' logs stay in a temporary directory.
#
# Override LAB_PREFIX to run a second lab beside the first.

GO          ?= go
BIN         ?= bin
LAB_PREFIX  ?= hg-
LAB_RUN_DIR ?= /run/hybridgw-lab
LAB_PROFILES ?= test/lab/profiles
LAB_LOG     ?= $(LAB_RUN_DIR)/$(LAB_PREFIX)lab.log
LAB_SECONDS ?= 20
LAB_CONFIGS ?= configs
HGLAB       := $(BIN)/hglab
HGLAB_FLAGS := --prefix $(LAB_PREFIX) --run-dir $(LAB_RUN_DIR)

.PHONY: lab lab-up lab-down lab-hglab

# Always rebuilt (go build is incremental); not a file rule, so that the
# Makefile may have its own rule for $(BIN)/hglab.
lab-hglab:
	@mkdir -p $(BIN)
	$(GO) build -o $(HGLAB) ./cmd/hglab

lab-up: deps lab-hglab
	@mkdir -p $(LAB_RUN_DIR)
	@if $(HGLAB) status $(HGLAB_FLAGS) >/dev/null 2>&1; then \
		echo "lab $(LAB_PREFIX) is already up (make lab-down first)"; exit 1; fi
	@setsid $(HGLAB) up $(HGLAB_FLAGS) --profiles $(LAB_PROFILES) </dev/null >$(LAB_LOG) 2>&1 & \
	for i in $$(seq 300); do \
		if $(HGLAB) status $(HGLAB_FLAGS) >/dev/null 2>&1; then break; fi; \
		if ! kill -0 $$! 2>/dev/null; then echo "hglab up failed:"; cat $(LAB_LOG); exit 1; fi; \
		sleep 0.1; \
	done; \
	if ! $(HGLAB) status $(HGLAB_FLAGS); then echo "lab did not come up in 30 s; log: $(LAB_LOG)"; exit 1; fi
	@echo
	@echo "Lab $(LAB_PREFIX) is up (log: $(LAB_LOG)). Try:"
	@echo "  ip netns exec $(LAB_PREFIX)lan ping -c3 203.0.113.10      # client -> server over dsl"
	@echo "  ip netns exec $(LAB_PREFIX)srv ping -c3 2001:db8:10::10   # server -> client (delegated prefix)"
	@echo "  $(HGLAB) set dsl down | up;  $(HGLAB) set lte delay 40ms loss 1%"
	@echo "  $(HGLAB) status;  make lab-down"

lab-down: lab-hglab
	$(HGLAB) down $(HGLAB_FLAGS)

# build (top-level Makefile) builds bin/hcpe, bin/hag and bin/hglab.
lab: deps build
	$(HGLAB) demo --prefix $(LAB_PREFIX) --bin $(BIN) --configs $(LAB_CONFIGS) --seconds $(LAB_SECONDS)
