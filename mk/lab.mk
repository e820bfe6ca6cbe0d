# Lab targets (docs/lab.md), included by the top-level Makefile.
#
#   make lab-up     build bin/hglab, start the lab topology in the background
#                   (namespaces, veths, emulated dsl/lte links with the default
#                   profiles; no daemons) and wait until it answers
#   make lab-down   stop it and remove whatever of it remains
#
# Override LAB_PREFIX to run a second lab beside the first.

GO          ?= go
BIN         ?= bin
LAB_PREFIX  ?= hg-
LAB_RUN_DIR ?= /run/hybridgw-lab
LAB_PROFILES ?= test/lab/profiles
LAB_LOG     ?= $(LAB_RUN_DIR)/$(LAB_PREFIX)lab.log
HGLAB       := $(BIN)/hglab
HGLAB_FLAGS := --prefix $(LAB_PREFIX) --run-dir $(LAB_RUN_DIR)

.PHONY: lab-up lab-down lab-hglab

# Always rebuilt (go build is incremental); not a file rule, so that the
# Makefile may have its own rule for $(BIN)/hglab.
lab-hglab:
	@mkdir -p $(BIN)
	$(GO) build -o $(HGLAB) ./cmd/hglab

lab-up: lab-hglab
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
