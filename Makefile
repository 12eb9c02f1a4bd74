# berth: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PREFIX ?= /usr/local
CARGO ?= cargo
# Release binaries are static (glibc and libseccomp linked in): no dynamic
# loader work at start-up, which is a measurable part of a container's start.
TARGET := $(shell rustc -vV | sed -n 's/^host: //p')
MULTIARCH := $(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
RELEASE_BIN := target/$(TARGET)/release

.PHONY: run test deps deps-test build install fmt clippy unit fuzz leaks bench clean

## run: install packages, build release binaries, install them, start
## berthd on a demo data root, import a busybox image built from the host's
## static busybox, and run a container from it with `berth run`.
DEMO_ROOT ?= $(CURDIR)/target/demo
DEMO_RUN ?= /run/berth-demo
DEMO_SOCK := unix://$(DEMO_RUN)/berth.sock
run: deps build install
	@rm -rf $(DEMO_ROOT)/rootfs && mkdir -p $(DEMO_ROOT)/rootfs/bin $(DEMO_ROOT)/rootfs/etc $(DEMO_ROOT)/rootfs/tmp
	@cp /bin/busybox $(DEMO_ROOT)/rootfs/bin/busybox
	@for a in $$(/bin/busybox --list); do [ "$$a" = busybox ] || ln -sf busybox $(DEMO_ROOT)/rootfs/bin/$$a; done
	@echo 'root:x:0:0:root:/root:/bin/sh' >$(DEMO_ROOT)/rootfs/etc/passwd
	@tar -C $(DEMO_ROOT)/rootfs -cf $(DEMO_ROOT)/busybox.tar .
	@echo '{}' >$(DEMO_ROOT)/daemon.json
	@echo "+ berthd -H $(DEMO_SOCK) --data-root $(DEMO_ROOT)/data --exec-root $(DEMO_RUN) &"
	@$(PREFIX)/bin/berthd -H $(DEMO_SOCK) --data-root $(DEMO_ROOT)/data --exec-root $(DEMO_RUN) \
		--config-file $(DEMO_ROOT)/daemon.json --log-level warn 2>$(DEMO_ROOT)/berthd.log & \
	pid=$$!; trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null' EXIT; \
	for i in $$(seq 1 100); do $(PREFIX)/bin/berth -H $(DEMO_SOCK) version >/dev/null 2>&1 && break; sleep 0.1; done; \
	set -e; \
	echo "+ berth import $(DEMO_ROOT)/busybox.tar berth-demo/busybox"; \
	$(PREFIX)/bin/berth -H $(DEMO_SOCK) import $(DEMO_ROOT)/busybox.tar berth-demo/busybox >/dev/null; \
	echo "+ berth run --rm berth-demo/busybox sh -c '…'"; \
	$(PREFIX)/bin/berth -H $(DEMO_SOCK) run --rm berth-demo/busybox \
		sh -c 'echo "hello from a berth container: hostname $$(hostname), pid $$$$, user $$(id -un)"; uname -sr'

deps:
	scripts/install-deps.sh run

deps-test:
	scripts/install-deps.sh test

# berth-shim-monitor, the part of the shim that stays resident for a
# container's life, has no C library dependency: it is linked against musl
# where Rust's musl target is installed (scripts/install-deps.sh tries), a
# third of the resident memory of a static glibc program, and put beside
# berth-shim, which executes it.
MUSL := $(shell uname -m)-unknown-linux-musl
MONITOR_TARGET = $(shell [ -d "$$(rustc --print sysroot)/lib/rustlib/$(MUSL)/lib" ] && echo $(MUSL) || echo $(TARGET))
build:
	LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/$(MULTIARCH) \
	RUSTFLAGS="-C target-feature=+crt-static" \
	$(CARGO) build --release --locked --target $(TARGET) -p berth-runtime-cli \
		-p berth-daemon -p berth-shim -p berth-cli \
		--bin berth-runtime --bin berthd --bin berth-shim --bin berth
	RUSTFLAGS="-C target-feature=+crt-static" \
	$(CARGO) build --release --locked --target $(MONITOR_TARGET) -p berth-shim \
		--no-default-features --bin berth-shim-monitor
	@[ $(MONITOR_TARGET) = $(TARGET) ] || \
		install -m 0755 target/$(MONITOR_TARGET)/release/berth-shim-monitor $(RELEASE_BIN)/berth-shim-monitor

# The installed binary is made immutable: no process, root included, may
# open it for writing, so berth-runtime needs no re-exec to protect itself
# from CVE-2019-5736 (see crates/runtime/src/exe.rs).
install: build
	@chattr -i $(PREFIX)/bin/berth-runtime 2>/dev/null || true
	install -D -m 0755 $(RELEASE_BIN)/berth-runtime $(PREFIX)/bin/berth-runtime
	@chattr +i $(PREFIX)/bin/berth-runtime || echo "install: chattr +i failed; berth-runtime will re-execute from a read-only view of itself instead"
	install -D -m 0755 $(RELEASE_BIN)/berthd $(PREFIX)/bin/berthd
	install -D -m 0755 $(RELEASE_BIN)/berth-shim $(PREFIX)/bin/berth-shim
	install -D -m 0755 $(RELEASE_BIN)/berth-shim-monitor $(PREFIX)/bin/berth-shim-monitor
	install -D -m 0755 $(RELEASE_BIN)/berth $(PREFIX)/bin/berth

## test: the whole suite, as root: format, lints, unit and integration
## tests (the conformance suite runs against berth-runtime and runc), and a
## check that nothing was left behind.
test: deps-test fmt clippy unit fuzz leaks
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f }' target/test-output.log

fmt:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --locked --all-targets -- -D warnings

unit:
	@saved="$$(cat /sys/fs/cgroup/unified/cgroup.subtree_control 2>/dev/null)"; \
	set -o pipefail; mkdir -p target; \
	BERTH_TEST_ROOT=1 $(CARGO) test --locked --workspace 2>&1 | tee target/test-output.log; rc=$$?; \
	scripts/cgroup2-restore.sh "$$saved"; exit $$rc

## fuzz: the layer applier's cargo-fuzz target (crates/image/fuzz) for
## FUZZ_SECONDS, seeded from the malicious archives of the layer tests; any
## input that creates something outside the root fails it. Longer by hand:
## `FUZZ_SECONDS=3600 make fuzz`. Stable rustc with RUSTC_BOOTSTRAP=1 (no
## nightly needed); FUZZ_SANITIZER=none when there is no ASAN runtime.
FUZZ_SECONDS ?= 60
FUZZ_SANITIZER ?= address
FUZZ_WORK ?= $(CURDIR)/target/fuzz
fuzz:
	@rm -rf $(FUZZ_WORK)/seeds && mkdir -p $(FUZZ_WORK)/seeds $(FUZZ_WORK)/corpus
	BERTH_FUZZ_SEEDS=$(FUZZ_WORK)/seeds $(CARGO) test --locked -p berth-image --lib \
		layer::apply::tests::fuzz_seeds -- --exact --quiet
	cd crates/image && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --sanitizer $(FUZZ_SANITIZER) \
		--target-dir $(FUZZ_WORK)/build apply_layer $(FUZZ_WORK)/corpus $(FUZZ_WORK)/seeds -- \
		-max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=30 \
		-artifact_prefix=$(FUZZ_WORK)/

leaks:
	scripts/check-leaks.sh

bench: build
	BERTH_RUNTIME=$(RELEASE_BIN)/berth-runtime bench/runtime.sh

clean:
	$(CARGO) clean
