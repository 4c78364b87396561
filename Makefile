# evkit — small, fast, composable programs for real-time events.
# `make` builds bin/; `make test` installs missing packages, builds and runs
# every test; `make demo` runs the main job on a private bus.

VERSION   := 0.1.0
PREFIX    ?= /usr/local
DESTDIR   ?=
BINDIR     = $(PREFIX)/bin
MANDIR     = $(PREFIX)/share/man
BASHCOMPDIR = $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  = $(PREFIX)/share/zsh/vendor-completions
EVKDATADIR  = $(PREFIX)/share/evkit
FISHCOMPDIR = $(PREFIX)/share/fish/vendor_completions.d
LIBDIR      = $(PREFIX)/lib
INCLUDEDIR  = $(PREFIX)/include
PCDIR       = $(LIBDIR)/pkgconfig
SYSTEMDUSERDIR = $(PREFIX)/lib/systemd/user

CC        ?= cc
CFLAGS    ?= -O2 -g
EVK_CFLAGS = -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -Iinclude -MMD -MP \
             -DEVK_VERSION='"$(VERSION)"'
# pkg-config is evaluated lazily (=), after `make deps` has installed it.
PKG_CFLAGS = $(shell pkg-config --cflags libcjson sqlite3 libnats libpq 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs libcjson sqlite3 libpq 2>/dev/null || echo -lcjson -lsqlite3 -lpq)
LDLIBS    += -lnng -lnats $(PKG_LIBS) -lpthread -lm
# widgetd view draws with ncurses (wide-character build where there is one).
CURSES_CFLAGS = $(shell pkg-config --cflags ncursesw 2>/dev/null || pkg-config --cflags ncurses 2>/dev/null)
CURSES_LIBS   = $(shell pkg-config --libs ncursesw 2>/dev/null || pkg-config --libs ncurses 2>/dev/null || echo -lncurses)

# SANITIZE=1 builds everything with ASan+UBSan into build/san/ (bin too).
ifeq ($(SANITIZE),1)
BUILD     ?= build/san
OUTBIN    ?= build/san/bin
EVK_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS   += -fsanitize=address,undefined
else
BUILD     ?= build/obj
OUTBIN    ?= bin
endif

ifneq ($(V),1)
Q := @
endif

# A program is cmd/NAME.c, or a folder cmd/NAME/ of .c files (one main.c).
DIR_PROGRAMS := $(patsubst cmd/%/main.c,%,$(wildcard cmd/*/main.c))
PROGRAMS  := $(patsubst cmd/%.c,%,$(wildcard cmd/*.c)) $(DIR_PROGRAMS)
LIB_SRC   := $(wildcard lib/*.c)
# lib/ is built -fPIC (for libevkit.so too), into pic/ so that objects
# built without it are never reused.
LIB_OBJ   := $(patsubst lib/%.c,$(BUILD)/pic/%.o,$(LIB_SRC))
LIBEVKIT  := $(BUILD)/libevkit.a
# The same objects as a shared library for other programs (evkit.pc).
SOVERSION := 0
LIBEVKIT_SO := $(BUILD)/libevkit.so.$(VERSION)
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
# Benchmark tools, built by `make bench` only.
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
# Test-only tools (hostile clients and the like), never installed.
TOOL_SRC  := $(wildcard tests/tools/*.c)
TOOL_BIN  := $(patsubst tests/tools/%.c,$(BUILD)/tests/tools/%,$(TOOL_SRC))
BIN_FILES := $(addprefix $(OUTBIN)/,$(PROGRAMS))

# Debian packages: to build, to test, and (for `make bench`) the peers.
DEPS_BUILD := gcc make pkg-config libnng-dev libcjson-dev libsqlite3-dev libnats-dev libncurses-dev
DEPS_TEST  := bats bats-support bats-assert jq sqlite3 tmux procps groff-base mandoc bash-completion nats-server zsh fish
DEPS_TEST  += openssl util-linux
# PostgreSQL, the second store (issue 21): libpq to build, a server for the tests.
DEPS_BUILD += libpq-dev
DEPS_TEST  += postgresql-15
# widgetd --http: the browser test (tests/widgetd_web.bats) and its curl checks.
DEPS_TEST  += chromium chromium-driver curl
DEPS_BENCH := redis-server redis-tools mosquitto mosquitto-clients time libmimalloc2.0 libjemalloc2
# `make fuzz` / `make fuzz-regress`: clang and its libFuzzer/ASan runtime.
DEPS_FUZZ  := clang libclang-rt-14-dev

.PHONY: all test test-nats test-pg unit bats bench demo deps deps-bench install uninstall clean check-san
.PHONY: fuzz fuzz-regress fuzz-build deps-fuzz
all: $(BIN_FILES) $(UNIT_BIN) $(TOOL_BIN) $(LIBEVKIT_SO)

$(BUILD)/pic/%.o: lib/%.c
	@mkdir -p $(@D)
	$(if $(Q),@echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) $(EVK_CFLAGS) -fPIC $(PKG_CFLAGS) -c -o $@ $<

# lib/web.c embeds widgetd's page (.incbin), built again when it changes.
$(BUILD)/lib/web.o: share/web/index.html

$(BUILD)/cmd/%.o: cmd/%.c
	@mkdir -p $(@D)
	$(if $(Q),@echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) $(EVK_CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(BUILD)/tests/%.o: tests/unit/%.c
	@mkdir -p $(@D)
	$(if $(Q),@echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) $(EVK_CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(BUILD)/bench/%: bench/%.c $(LIBEVKIT)
	@mkdir -p $(@D)
	$(if $(Q),@echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) $(EVK_CFLAGS) $(PKG_CFLAGS) $(LDFLAGS) -o $@ $< $(LIBEVKIT) $(LDLIBS)

$(BUILD)/tests/tools/%: tests/tools/%.c
	@mkdir -p $(@D)
	$(if $(Q),@echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) $(EVK_CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

$(LIBEVKIT): $(LIB_OBJ)
	$(if $(Q),@echo "  AR      $@")
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(LIBEVKIT_SO): $(LIB_OBJ)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) -shared -Wl,-soname,libevkit.so.$(SOVERSION) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(OUTBIN)/%: $(BUILD)/cmd/%.o $(LIBEVKIT)
	@mkdir -p $(@D)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# A folder program links every object of its folder.
define dir_program
$$(OUTBIN)/$(1): $$(patsubst cmd/%.c,$$(BUILD)/cmd/%.o,$$(wildcard cmd/$(1)/*.c)) $$(LIBEVKIT)
	@mkdir -p $$(@D)
	$$(if $$(Q),@echo "  LD      $$@")
	$$(Q)$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach p,$(DIR_PROGRAMS),$(eval $(call dir_program,$(p))))
# widgetd's dashboard (cmd/widgetd/view.c) draws with ncurses.
$(BUILD)/cmd/widgetd/view.o: PKG_CFLAGS += $(CURSES_CFLAGS)
$(OUTBIN)/widgetd: LDLIBS += $(CURSES_LIBS)

$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(LIBEVKIT)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Installs the Debian packages the project needs when they are missing:
# with apt-get when root, with `sudo -n` when that works, else prints the
# exact command and fails.
deps:
	@sh tools/deps.sh $(DEPS_BUILD) $(DEPS_TEST)

deps-bench:
	@sh tools/deps.sh $(DEPS_BUILD) $(DEPS_BENCH)

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do $$t; done

# A test that hangs (nng 1.5.2 can deadlock in nng_close, upstream
# nanomsg/nng#1543; seen twice in about ten full runs) fails after this
# many seconds instead of holding CI. The longest test takes about 5 s.
BATS_TEST_TIMEOUT ?= 60
BATS_TESTS ?= tests/
bats: $(BIN_FILES) $(TOOL_BIN)
	EVKIT_BIN=$(CURDIR)/$(OUTBIN) EVKIT_TOOLS=$(CURDIR)/$(BUILD)/tests/tools \
		BATS_TEST_TIMEOUT=$(BATS_TEST_TIMEOUT) \
		bats --print-output-on-failure $(BATS_FLAGS) $(BATS_TESTS)

test: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory unit
	$(Q)$(MAKE) --no-print-directory bats

# The bats suites again with the bus on a real `nats-server -js` (see
# tests/helpers.bash), and the three-node cluster tests (nats_cluster.bats);
# a test that cannot hold there says so as a skip. The cluster tests take
# a minute or two, hence the longer limit.
test-nats: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)EVKIT_TEST_BACKEND=nats $(MAKE) --no-print-directory BATS_TEST_TIMEOUT=240 bats

# The suites whose programs keep a store, again with it on a real
# PostgreSQL 15 that each suite starts itself (tests/helpers.bash:
# EVKIT_STORE=pg); a test that cannot hold there says so as a skip.
PG_SUITES ?= tests/pg_harness.bats tests/evworker.bats tests/evworker_scale.bats tests/casectl.bats
test-pg: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)EVKIT_STORE=pg $(MAKE) --no-print-directory BATS_TESTS="$(PG_SUITES)" bats

# The same unit and bats tests, built with AddressSanitizer and UBSan.
check-san:
	$(Q)$(MAKE) --no-print-directory SANITIZE=1 all unit bats

# libFuzzer harnesses (tests/fuzz/README.md), built by clang with ASan+UBSan
# into build/fuzz/. `make fuzz` runs each for FUZZ_TIME seconds (FUZZ=NAME
# for one); `make fuzz-regress` runs the seeds and every kept crash once.
FUZZ_CC      ?= clang
FUZZ_TIME    ?= 60
FUZZ_BUILD   := build/fuzz
FUZZ_CFLAGS  := -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
                -fno-sanitize-recover=undefined
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ          ?= $(FUZZ_NAMES)
FUZZ_LIB_OBJ := $(patsubst lib/%.c,$(FUZZ_BUILD)/lib/%.o,$(LIB_SRC))
FUZZ_BIN     := $(addprefix $(FUZZ_BUILD)/fuzz_,$(FUZZ_NAMES))

$(FUZZ_BUILD)/lib/%.o: lib/%.c
	@mkdir -p $(@D)
	$(if $(Q),@echo "  CC      $< (fuzz)")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(EVK_CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(FUZZ_BUILD)/lib/web.o: share/web/index.html

$(FUZZ_BUILD)/libevkit.a: $(FUZZ_LIB_OBJ)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_BUILD)/libevkit.a
	@mkdir -p $(@D)
	$(if $(Q),@echo "  FUZZ    $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(EVK_CFLAGS) $(PKG_CFLAGS) -o $@ $< \
		$(filter %.o,$^) $(FUZZ_BUILD)/libevkit.a $(LDLIBS)

# fuzz_hub links the hub itself: every object of cmd/evbusd/ but main.o.
FUZZ_HUB_OBJ := $(patsubst cmd/%.c,$(FUZZ_BUILD)/cmd/%.o,\
                $(filter-out cmd/evbusd/main.c,$(wildcard cmd/evbusd/*.c)))
$(FUZZ_BUILD)/fuzz_hub: $(FUZZ_HUB_OBJ)

$(FUZZ_BUILD)/cmd/%.o: cmd/%.c
	@mkdir -p $(@D)
	$(if $(Q),@echo "  CC      $< (fuzz)")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(EVK_CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

deps-fuzz:
	@sh tools/deps.sh $(DEPS_BUILD) $(DEPS_FUZZ)

fuzz-build: deps-fuzz
	$(Q)$(MAKE) --no-print-directory $(FUZZ_BIN)

fuzz: fuzz-build
	sh tests/fuzz/run.sh fuzz $(FUZZ_TIME) $(FUZZ)

fuzz-regress: fuzz-build
	sh tests/fuzz/run.sh regress 0 $(FUZZ)

bench: deps deps-bench
	$(Q)$(MAKE) --no-print-directory all $(BENCH_BIN)
	EVKIT_BIN=$(CURDIR)/$(OUTBIN) EVKIT_BENCH_TOOLS=$(CURDIR)/$(BUILD)/bench sh bench/run.sh

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	bash examples/demo.sh

# evkit.pc: what linking libevkit statically also needs (libnats when the
# NATS backend's package is among the build dependencies).
PC_REQUIRES = libcjson sqlite3 libpq $(if $(filter libnats-dev,$(DEPS_BUILD)),libnats)
PC_LIBS_PRIVATE = -lnng -lpthread -lm
install: $(BIN_FILES) $(LIBEVKIT_SO) $(LIBEVKIT)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man7 \
	    $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR)
	install -m 0755 $(BIN_FILES) $(DESTDIR)$(BINDIR)/
	install -m 0644 $(wildcard man/*.1) $(DESTDIR)$(MANDIR)/man1/
	$(if $(wildcard man/*.7),install -m 0644 $(wildcard man/*.7) $(DESTDIR)$(MANDIR)/man7/)
	for f in completions/*.bash; do \
	    install -m 0644 $$f $(DESTDIR)$(BASHCOMPDIR)/$$(basename $$f .bash); done
	$(if $(wildcard completions/_*),install -m 0644 $(wildcard completions/_*) $(DESTDIR)$(ZSHCOMPDIR)/)
	install -d $(DESTDIR)$(FISHCOMPDIR) $(DESTDIR)$(EVKDATADIR)/bats
	install -m 0644 $(wildcard completions/fish/*.fish) $(DESTDIR)$(FISHCOMPDIR)/
	install -m 0644 share/bats/load.bash $(DESTDIR)$(EVKDATADIR)/bats/load.bash
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PCDIR) $(DESTDIR)$(INCLUDEDIR)/evkit
	install -m 0755 $(LIBEVKIT_SO) $(DESTDIR)$(LIBDIR)/
	ln -sf libevkit.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libevkit.so.$(SOVERSION)
	ln -sf libevkit.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libevkit.so
	install -m 0644 $(LIBEVKIT) $(DESTDIR)$(LIBDIR)/
	install -m 0644 $(wildcard include/evkit/*.h) $(DESTDIR)$(INCLUDEDIR)/evkit/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))|' \
	    -e 's|@INCLUDEDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))|' \
	    -e 's|@VERSION@|$(VERSION)|' -e 's|@REQUIRES@|$(strip $(PC_REQUIRES))|' \
	    -e 's|@LIBS_PRIVATE@|$(PC_LIBS_PRIVATE)|' share/pkgconfig/evkit.pc.in \
	    >$(DESTDIR)$(PCDIR)/evkit.pc
	chmod 0644 $(DESTDIR)$(PCDIR)/evkit.pc
	install -d $(DESTDIR)$(SYSTEMDUSERDIR)
	for f in examples/systemd/*.service; do \
	    sed 's|/usr/local/bin/|$(BINDIR)/|' $$f >$(DESTDIR)$(SYSTEMDUSERDIR)/$$(basename $$f) && \
	    chmod 0644 $(DESTDIR)$(SYSTEMDUSERDIR)/$$(basename $$f) || exit 1; done

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(PROGRAMS))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(wildcard man/*.1)))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man7/,$(notdir $(wildcard man/*.7)))
	rm -f $(addprefix $(DESTDIR)$(BASHCOMPDIR)/,$(basename $(notdir $(wildcard completions/*.bash))))
	rm -f $(addprefix $(DESTDIR)$(ZSHCOMPDIR)/,$(notdir $(wildcard completions/_*)))
	rm -f $(addprefix $(DESTDIR)$(FISHCOMPDIR)/,$(notdir $(wildcard completions/fish/*.fish)))
	rm -f $(DESTDIR)$(EVKDATADIR)/bats/load.bash
	rm -f $(addprefix $(DESTDIR)$(LIBDIR)/,libevkit.so libevkit.so.$(SOVERSION) \
	    libevkit.so.$(VERSION) libevkit.a) $(DESTDIR)$(PCDIR)/evkit.pc
	rm -f $(addprefix $(DESTDIR)$(INCLUDEDIR)/evkit/,$(notdir $(wildcard include/evkit/*.h)))
	rm -f $(addprefix $(DESTDIR)$(SYSTEMDUSERDIR)/,$(notdir $(wildcard examples/systemd/*.service)))

clean:
	rm -rf build bin

.SECONDARY:
-include $(shell find build -name '*.d' 2>/dev/null)
