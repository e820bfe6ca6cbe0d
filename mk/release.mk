# Release builds, included by the top-level Makefile (which defines GO,
# VERSION, COMMIT and LDFLAGS).
#
#   make release            cross-compile hag and hcpe for every RELEASE_PLATFORMS
#                           entry into dist/<daemon>-<os>-<arch>, plus SHA256SUMS
#   make release-clean      remove dist/
#
# Binaries are static (CGO_ENABLED=0), reproducible (-trimpath, no build ID
# path leaks) and stamped with VERSION and COMMIT. mipsle is built with
# GOMIPS=softfloat: the MIPS routers OpenWrt runs on (MT7621, ath79 is
# big-endian mips) have no FPU, and a hardfloat binary would trap on every
# float instruction. Add linux/mips for big-endian ath79 targets.

RELEASE_PLATFORMS ?= linux/amd64 linux/arm64 linux/mipsle
RELEASE_DAEMONS   ?= hag hcpe
DIST              ?= dist

# GOMIPS applies to mips and mipsle only; the go tool ignores it elsewhere.
RELEASE_ENV = CGO_ENABLED=0 GOOS=$(1) GOARCH=$(2) GOMIPS=softfloat

RELEASE_TARGETS := $(foreach p,$(RELEASE_PLATFORMS),$(foreach d,$(RELEASE_DAEMONS),$(DIST)/$(d)-$(subst /,-,$(p))))

.PHONY: release release-clean FORCE
FORCE:
release: $(RELEASE_TARGETS)
	cd $(DIST) && sha256sum $(notdir $(RELEASE_TARGETS)) > SHA256SUMS
	@echo "release $(VERSION) ($(COMMIT)) in $(DIST)/:"; ls -l $(DIST)

# dist/<daemon>-<os>-<arch>: always rebuilt (go build is incremental), so a
# new VERSION or COMMIT is never skipped.
$(RELEASE_TARGETS): FORCE
	@mkdir -p $(DIST)
	$(call RELEASE_ENV,$(word 2,$(subst -, ,$(notdir $@))),$(word 3,$(subst -, ,$(notdir $@)))) \
	  $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' -o $@ ./cmd/$(word 1,$(subst -, ,$(notdir $@)))

release-clean:
	rm -rf $(DIST)
