# udpweave — thin top-level Makefile: everything is built into $(B)/.
#
#   make            build/libudpweave.so and the test/bench tools
#   make test       install missing Debian packages (as root), unit + integration tests
#   make unit       CMocka unit tests only
#   make integration pytest integration tests only
#   make asan|tsan  build with a sanitizer into build-asan/ or build-tsan/ and run the suites
#   make bench      side-by-side benchmarks (root: network namespaces)
#   make bench-uring the uring backend's figures
#   make bench-soak  the soak (SOAK_SECONDS=600): fd churn, signals, faults, forks
#   make demo       the README's demo
#   make deb        build/udpweave_VERSION_ARCH.deb (Debian layout; needs dpkg-dev)

B        ?= build
V        ?= 0
Q        := $(if $(filter 1,$(V)),,@)
CC       ?= gcc
OPT      ?= -O2
SAN      ?=
CFLAGS   ?=
WARN     := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
BASE     := -std=gnu11 -g $(OPT) $(WARN) $(SAN) -D_GNU_SOURCE -Iinclude -Icore -Ibackend -Ipreload
DEPFLAGS := -MMD -MP
LIBFLAGS := $(BASE) -fPIC -fvisibility=hidden -pthread
PYTEST   ?= pytest-3

# The build's Debian packages, before anything asks pkg-config about them:
# installed as root (scripts/deps.sh build), else the apt-get line and stop.
# Once per make, not in its sub-makes, never for clean.
ifeq ($(filter-out clean,$(or $(MAKECMDGOALS),all)),)
else ifndef UW_DEPS_CHECKED
export UW_DEPS_CHECKED := 1
UW_DEPS_OUT := $(shell LTTNG=$(LTTNG) bash scripts/deps.sh build 2>&1 || echo UW_DEPS_FAILED)
ifneq ($(findstring UW_DEPS_FAILED,$(UW_DEPS_OUT)),)
$(error $(subst UW_DEPS_FAILED,,$(UW_DEPS_OUT)))
endif
endif

CORE_SRC    := core/config.c core/ucopy.c core/rules.c core/fdtable.c core/queue.c core/held.c core/batch.c core/sched.c core/socklist.c \
               core/pace.c core/egress.c core/stats.c core/log.c
BACKEND_SRC := backend/registry.c backend/common.c backend/mmsg.c backend/passthrough.c backend/route.c \
	       backend/packet.c backend/resolve.c backend/ring.c backend/uring.c
PRELOAD_SRC := preload/symbols.c preload/fd.c preload/send.c preload/process.c preload/live.c preload/trace.c preload/signal.c preload/fdnew.c preload/recv.c
LIB_SRC     := $(CORE_SRC) $(BACKEND_SRC) $(PRELOAD_SRC)
LIB_OBJ     := $(LIB_SRC:%.c=$(B)/obj/%.o)

# LTTng-UST tracepoints when liblttng-ust-dev is there (LTTNG=0 to leave
# them out), by dynamic linkage: the library links nothing of lttng-ust,
# the probes are their own shared object beside it, loaded only when
# tracing can happen (preload/trace.c).
LTTNG    ?= $(shell pkg-config --exists lttng-ust 2>/dev/null && echo 1 || echo 0)
ifeq ($(LTTNG),1)
LIBFLAGS += -DUW_HAVE_LTTNG $(shell pkg-config --cflags lttng-ust)
TP_OBJ   := $(B)/obj/core/tp.o
TP_SO    := $(B)/libudpweave-lttng.so
TP_LIBS  := $(shell pkg-config --libs lttng-ust)
endif
# liburing (Debian: liburing-dev) for the uring backend.
URING_CFLAGS := $(shell pkg-config --cflags liburing 2>/dev/null)
URING_LIBS   := $(or $(shell pkg-config --libs liburing 2>/dev/null),-luring)
LIBFLAGS     += $(URING_CFLAGS)

# The configuration the objects were built with: when any of it changes
# (LTTNG, a sanitizer, OPT, CFLAGS, the compiler, a library's version),
# the stamp changes and everything built from it is rebuilt.
CONFIG   := $(B)/config.stamp
UW_CONFIG = cc=$(CC) $(shell $(CC) -dumpfullversion 2>/dev/null) opt=$(OPT) san=$(SAN) cflags=$(CFLAGS) \
	    lttng=$(LTTNG) $(foreach l,lttng-ust liburing libmnl libcap,$(l)=$(shell pkg-config --modversion $(l) 2>/dev/null))
.DEFAULT_GOAL := all

$(CONFIG): FORCE
	@mkdir -p $(B)
	@echo '$(UW_CONFIG)' | cmp -s - $@ || echo '$(UW_CONFIG)' > $@

UNIT_SRC    := $(wildcard tests/unit/test_*.c)
UNIT_BIN    := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/unit/%)
TOOL_SRC    := $(wildcard tests/tools/*.c)
TOOL_BIN    := $(TOOL_SRC:tests/tools/%.c=$(B)/tests/%)
TOOL_SO_SRC := $(wildcard tests/tools/lib*.c)
BENCH_SRC   := $(wildcard bench/*.c)
BENCH_BIN   := $(BENCH_SRC:bench/%.c=$(B)/bench/%)
BENCH_SO    := $(patsubst bench/so/%.c,$(B)/bench/lib%.so,$(wildcard bench/so/*.c))

.PHONY: all lib tools unit integration test deps asan tsan bench bench-quick bench-full bench-pacing \
	bench-uring bench-soak demo clean \
	cli install uninstall deb FORCE

all: lib tools cli

lib: $(B)/libudpweave.so $(TP_SO)
tools: $(filter-out $(B)/tests/lib%,$(TOOL_BIN)) $(TOOL_SO_SRC:tests/tools/%.c=$(B)/tests/%.so) \
	$(BENCH_BIN) $(BENCH_SO)

$(B)/obj/%.o: %.c $(CONFIG)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(LIBFLAGS) $(DEPFLAGS) $(CFLAGS) -c $< -o $@

# The export map comes from the same X-macro list as the real.* table.
$(B)/libudpweave.map: preload/exports.map.in preload/syscalls.def
	@mkdir -p $(B)
	$(Q)$(CC) -E -P -x c -Ipreload $< -o $@

$(B)/libudpweave.so: $(LIB_OBJ) $(B)/libudpweave.map
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared $(SAN) -pthread -Wl,--version-script=$(B)/libudpweave.map -Wl,-z,defs \
		-o $@ $(LIB_OBJ) $(URING_LIBS) -lmnl -lcap -ldl

# The tracepoint provider: the probes alone, with liblttng-ust.
$(B)/libudpweave-lttng.so: $(TP_OBJ)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared $(SAN) -Wl,--no-as-needed -Wl,-z,defs -o $@ $(TP_OBJ) $(TP_LIBS)

# Test tools: one C file each (a shared object when the name starts with lib).
TOOL_HDR    := $(wildcard tests/tools/*.h)
$(B)/tests/lib%.so: tests/tools/lib%.c $(CONFIG)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(BASE) $(DEPFLAGS) -fPIC -shared -pthread $(CFLAGS) $< -o $@

$(B)/tests/%: tests/tools/%.c $(CONFIG)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(BASE) $(DEPFLAGS) -pthread $(CFLAGS) $< -o $@

# Small preloads of the benchmark (send-time stamps, trafgen's socket).
$(B)/bench/lib%.so: bench/so/%.c $(CONFIG)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(BASE) $(DEPFLAGS) -fPIC -shared -pthread $(CFLAGS) $< -o $@ -ldl

$(B)/bench/%: bench/%.c $(CONFIG)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(BASE) $(DEPFLAGS) -pthread $(URING_CFLAGS) $(CFLAGS) $< -o $@ -lm $(URING_LIBS)

# Unit tests link the core and backends directly (no preload, no tracepoints:
# objects of their own, compiled once), fake clock and backend; mmsg tests
# wrap sendmmsg at link time.
UNIT_OBJ := $(CORE_SRC:%.c=$(B)/obj-unit/%.o) $(BACKEND_SRC:%.c=$(B)/obj-unit/%.o)
.SECONDARY: $(UNIT_OBJ)
$(B)/obj-unit/%.o: %.c $(CONFIG)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(BASE) $(DEPFLAGS) -pthread $(URING_CFLAGS) $(CFLAGS) -c $< -o $@

$(B)/tests/unit/test_%: tests/unit/test_%.c $(UNIT_OBJ) $(CONFIG)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(BASE) $(DEPFLAGS) -pthread $(CFLAGS) $(shell sed -n 's|^/\* ldflags: \(.*\) \*/$$|\1|p' $<) \
		$(URING_CFLAGS) $< $(UNIT_OBJ) -o $@ -lcmocka $(URING_LIBS) -lmnl -lcap -ldl

# ---- the udpweave tool, install ------------------------------------------
PREFIX   ?= /usr/local
LIBDIR   ?= $(PREFIX)/lib
MANDIR   ?= $(PREFIX)/share/man
DESTDIR  ?=
VERSION  ?= 0.1.0
CLI_SRC  := $(wildcard cli/*.c) core/egress.c
CLI_HDR  := $(wildcard cli/*.h) include/udpweave_stats.h core/egress.h
CLI_LIBS := -lcap -lmnl

cli: $(B)/udpweave

# Rebuilt when PREFIX, LIBDIR or VERSION change: they are compiled in.
UW_CLI_FLAGS = $(PREFIX) $(LIBDIR) $(VERSION)
$(B)/cli.flags: FORCE
	@mkdir -p $(B)
	@echo '$(UW_CLI_FLAGS)' | cmp -s - $@ || echo '$(UW_CLI_FLAGS)' > $@

$(B)/udpweave: $(CLI_SRC) $(CLI_HDR) $(B)/cli.flags $(CONFIG)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) -std=gnu11 -g $(OPT) $(WARN) $(SAN) -D_GNU_SOURCE -Iinclude -Icore \
		-DUW_VERSION='"$(VERSION)"' -DUW_LIBDIR='"$(LIBDIR)/udpweave"' \
		$(CFLAGS) $(CLI_SRC) -o $@ $(CLI_LIBS)

$(B)/udpweave.pc: udpweave.pc.in $(B)/cli.flags
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@

# The library and, with LTTNG=1, its tracepoint provider ($(TP_SO)) side by
# side in $(LIBDIR)/udpweave: the library dlopens the provider from there.
install: lib cli $(B)/udpweave.pc
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(LIBDIR)/udpweave \
		$(DESTDIR)$(PREFIX)/include $(DESTDIR)$(LIBDIR)/pkgconfig \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man7
	install -m 755 $(B)/udpweave $(DESTDIR)$(PREFIX)/bin/udpweave
	install -m 644 $(B)/libudpweave.so $(DESTDIR)$(LIBDIR)/udpweave/libudpweave.so
	$(if $(TP_SO),install -m 644 $(TP_SO) $(DESTDIR)$(LIBDIR)/udpweave/$(notdir $(TP_SO)))
	install -m 644 include/udpweave.h include/udpweave_stats.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(B)/udpweave.pc $(DESTDIR)$(LIBDIR)/pkgconfig/udpweave.pc
	install -m 644 docs/udpweave.1 $(DESTDIR)$(MANDIR)/man1/udpweave.1
	install -m 644 docs/udpweave.7 $(DESTDIR)$(MANDIR)/man7/udpweave.7

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/udpweave \
		$(DESTDIR)$(LIBDIR)/udpweave/libudpweave.so \
		$(if $(TP_SO),$(DESTDIR)$(LIBDIR)/udpweave/$(notdir $(TP_SO))) \
		$(DESTDIR)$(PREFIX)/include/udpweave.h $(DESTDIR)$(PREFIX)/include/udpweave_stats.h \
		$(DESTDIR)$(LIBDIR)/pkgconfig/udpweave.pc \
		$(DESTDIR)$(MANDIR)/man1/udpweave.1 \
		$(DESTDIR)$(MANDIR)/man7/udpweave.7
	-rmdir $(DESTDIR)$(LIBDIR)/udpweave

# ---- Debian package: build/udpweave_VERSION_ARCH.deb ---------------------
# `make install` into a staging tree in the Debian layout (the library and
# its provider in /usr/lib/<multiarch>/udpweave), binaries stripped, man
# pages and the changelog gzip -9n, then Debian's tools: dpkg-shlibdeps for
# Depends (liblttng-ust only Recommends: the provider is loaded when
# tracing can happen, and not at all without it), dpkg-gencontrol (debian/control, debian/changelog) for
# DEBIAN/control, DEBIAN/md5sums, dpkg-deb to build. Needs dpkg-dev, not
# root (--root-owner-group).
DEB_ARCH      ?= $(shell dpkg-architecture -qDEB_HOST_ARCH 2>/dev/null || dpkg --print-architecture)
DEB_MULTIARCH ?= $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || $(CC) -print-multiarch)
DEB_WORK       = $(B)/deb
DEB_ROOT       = $(DEB_WORK)/udpweave
DEB_LIBDIR     = /usr/lib/$(DEB_MULTIARCH)
DEB            = $(B)/udpweave_$(VERSION)_$(DEB_ARCH).deb

deb:
	@command -v dpkg-shlibdeps >/dev/null || { echo "make deb needs dpkg-dev: apt-get install dpkg-dev" >&2; exit 1; }
	@test -n "$(DEB_MULTIARCH)" || { echo "make deb: no multiarch triplet (dpkg-architecture, $(CC) -print-multiarch)" >&2; exit 1; }
	@v=$$(dpkg-parsechangelog -l debian/changelog -S Version); test "$$v" = "$(VERSION)" || \
		{ echo "make deb: debian/changelog is at $$v, VERSION is $(VERSION): add an entry (dch -v $(VERSION))" >&2; exit 1; }
	rm -rf $(DEB_WORK)
	$(MAKE) install DESTDIR=$(abspath $(DEB_ROOT)) PREFIX=/usr LIBDIR=$(DEB_LIBDIR) MANDIR=/usr/share/man
	strip --remove-section=.comment --remove-section=.note $(DEB_ROOT)/usr/bin/udpweave
	strip --remove-section=.comment --remove-section=.note --strip-unneeded $(DEB_ROOT)$(DEB_LIBDIR)/udpweave/*.so
	gzip -9n $(DEB_ROOT)/usr/share/man/man1/udpweave.1 $(DEB_ROOT)/usr/share/man/man7/udpweave.7
	install -d $(DEB_ROOT)/DEBIAN $(DEB_ROOT)/usr/share/doc/udpweave
	install -m 644 debian/copyright $(DEB_ROOT)/usr/share/doc/udpweave/copyright
	gzip -9n < debian/changelog > $(DEB_ROOT)/usr/share/doc/udpweave/changelog.gz
	chmod 644 $(DEB_ROOT)/usr/share/doc/udpweave/changelog.gz
	dpkg-shlibdeps -T$(DEB_WORK)/substvars -dDepends $(DEB_ROOT)/usr/bin/udpweave \
		$(DEB_ROOT)$(DEB_LIBDIR)/udpweave/libudpweave.so \
		$(if $(TP_SO),-dRecommends $(DEB_ROOT)$(DEB_LIBDIR)/udpweave/$(notdir $(TP_SO)))
	dpkg-gencontrol -pudpweave -v$(VERSION) -cdebian/control -ldebian/changelog \
		-T$(DEB_WORK)/substvars -f$(DEB_WORK)/files -P$(DEB_ROOT)
	cd $(DEB_ROOT) && find usr -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum > DEBIAN/md5sums
	dpkg-deb --root-owner-group -Zxz --build $(DEB_ROOT) $(DEB)
	@echo "  DEB     $(DEB)"

deps:
	@bash scripts/deps.sh

unit: $(UNIT_BIN)
	@bash scripts/run-unit.sh $(UNIT_BIN)

# Under a sanitizer the runtime must come first in LD_PRELOAD; the host
# programs' own leaks are not ours to report.
SAN_RT   := $(if $(findstring address,$(SAN)),$(shell $(CC) -print-file-name=libasan.so) ,)$(if $(findstring thread,$(SAN)),$(shell $(CC) -print-file-name=libtsan.so) ,)
integration: all
	cd tests/integration && UW_TEST_BUILD=$(abspath $(B)) \
		UW_TEST_PRELOAD="$(SAN_RT)$(abspath $(B))/libudpweave.so" \
		ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 TSAN_OPTIONS=halt_on_error=1:report_signal_unsafe=0:die_after_fork=0 \
		$(PYTEST) -q -ra $(PYTEST_ARGS)

test: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) integration

asan:
	$(MAKE) B=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" unit integration

# Without LTTng: lttng-ust's listener threads and fork() in the tests trip
# ThreadSanitizer's thread registry ("dup thread with used id").
tsan:
	$(MAKE) B=build-tsan OPT=-O1 SAN="-fsanitize=thread" LTTNG=0 unit integration

bench: deps all
	/usr/bin/python3 bench/run_bench.py --build $(abspath $(B)) $(BENCH_ARGS)

bench-quick: deps all
	/usr/bin/python3 bench/run_bench.py --build $(abspath $(B)) --quick $(BENCH_ARGS)

# The uring backend's figures (issue 7): bench/results/uring.{md,json,png}.
bench-uring: deps all
	/usr/bin/python3 bench/run_bench.py --build $(abspath $(B)) --sections uring --name uring \
		--paths veth $(BENCH_ARGS)

bench-full: deps all
	/usr/bin/python3 bench/run_bench.py --build $(abspath $(B)) --full --perf $(BENCH_ARGS)

# Paced streams (issue 6): bench/results/pacing.{json,md}; e.g.
# make bench-pacing BENCH_ARGS="--backends mmsg,uring --rt"
bench-pacing: deps all
	/usr/bin/python3 bench/pacing_bench.py --build $(abspath $(B)) $(BENCH_ARGS)

# The soak (not in make test): bench/results/soak.md.
SOAK_SECONDS ?= 600
bench-soak: deps all
	/usr/bin/python3 bench/soak.py --build $(abspath $(B)) --seconds $(SOAK_SECONDS) \
		--out bench/results/soak.md --command "make bench-soak SOAK_SECONDS=$(SOAK_SECONDS)" $(SOAK_ARGS)

demo: deps all
	bash scripts/demo.sh $(abspath $(B))

clean:
	rm -rf build build-asan build-tsan

# Header dependencies recorded by the compiler (-MMD -MP).
-include $(shell find $(B) -name '*.d' 2>/dev/null)
