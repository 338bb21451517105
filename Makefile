# wskit build.  `make` builds lib/libwskit.{a,so} and bin/ws*; `make check` runs every test.
# Variables: CC, CFLAGS, PREFIX (/usr/local), DESTDIR, O (object/output tree for variant builds).

VERSION   := 0.1.0
SOVERSION := 0

CC       ?= cc
CFLAGS   ?= -O2 -g
WARN     := -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CPPFLAGS += -D_DEFAULT_SOURCE -D_GNU_SOURCE -Ilib
DEPLIBS  := -lev -lmbedtls -lmbedx509 -lmbedcrypto -lz -ldeflate -lcjson -lhiredis -lnats -pthread
PREFIX   ?= /usr/local

# O is where a build variant lives: the default build puts the libraries in lib/ and the commands
# in bin/; `make asan` uses O=build/asan for everything.
O        ?=
OBJDIR   := $(if $(O),$(O)/obj,build/obj)
LIBOUT   := $(if $(O),$(O)/lib,lib)
BINOUT   := $(if $(O),$(O)/bin,bin)
TESTOUT  := $(if $(O),$(O)/tests,build/tests)

LIB_SRC  := $(wildcard lib/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(OBJDIR)/%.o)
CMD_MAIN := $(wildcard cmd/ws*.c)
CMD_LIB  := $(filter-out $(CMD_MAIN),$(wildcard cmd/*.c))
CMD_OBJ  := $(CMD_LIB:%.c=$(OBJDIR)/%.o)
CMD_ARCH := $(OBJDIR)/cmd/libcmd.a
CMDS     := $(CMD_MAIN:cmd/%.c=$(BINOUT)/%)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNITS    := $(UNIT_SRC:tests/unit/%.c=$(TESTOUT)/%)
MANS     := $(wildcard man/*.1 man/*.3)

STATIC   := $(LIBOUT)/libwskit.a
SHARED   := $(LIBOUT)/libwskit.so.$(VERSION)

.PHONY: all deps units check asan lint fuzz run install uninstall clean bench
all: $(STATIC) $(SHARED) $(CMDS)

$(OBJDIR)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(WARN) $(CFLAGS) -fPIC -fvisibility=hidden -MMD -MP -c $< -o $@

$(STATIC): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# Only wsk_* symbols are exported (WSK_API in wskit.h); everything else is hidden.
$(SHARED): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -shared -Wl,-soname,libwskit.so.$(SOVERSION) -o $@ $^ $(DEPLIBS) $(LDFLAGS)
	ln -sf libwskit.so.$(VERSION) $(LIBOUT)/libwskit.so.$(SOVERSION)
	ln -sf libwskit.so.$(SOVERSION) $(LIBOUT)/libwskit.so

# The helpers shared by the commands (cli.c, jsonproto.c, serve_pubsub.c, bench_*.c) go into an
# archive, so each command links only the ones it uses.
$(CMD_ARCH): $(CMD_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BINOUT)/%: $(OBJDIR)/cmd/%.o $(CMD_ARCH) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(CMD_ARCH) $(STATIC) $(DEPLIBS) -ledit -lm $(LDFLAGS)

# Unit tests may also test the commands' helpers (cmd/serve.h, ...), taken from the archive.
$(TESTOUT)/%: tests/unit/%.c tests/unit/test.h tests/unit/pair.h $(STATIC) $(CMD_ARCH)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(WARN) $(CFLAGS) -Itests/unit -Icmd -o $@ $< $(CMD_ARCH) $(STATIC) $(DEPLIBS) -lm $(LDFLAGS)

deps:
	@scripts/install-deps

check: deps
	@$(MAKE) --no-print-directory all units
	@WSK_BIN=$(abspath $(BINOUT)) WSK_UNIT=$(abspath $(TESTOUT)) tests/run

units: $(UNITS)

asan:
	$(MAKE) O=build/asan CC=clang CFLAGS="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" check

run: deps
	@$(MAKE) --no-print-directory all
	$(BINOUT)/wsserve --echo

lint:
	clang-format --dry-run -Werror $(wildcard lib/*.[ch] cmd/*.[ch] tests/unit/*.[ch] tests/fuzz/*.c)
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	    --suppress=missingIncludeSystem --inline-suppr -Ilib lib cmd

fuzz:
	scripts/fuzz $(FUZZ_SECONDS)

bench: all
	scripts/bench-compare

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	    $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man3
	install -m 755 $(CMDS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(STATIC) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(SHARED) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libwskit.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libwskit.so.$(SOVERSION)
	ln -sf libwskit.so.$(SOVERSION) $(DESTDIR)$(PREFIX)/lib/libwskit.so
	install -m 644 lib/wskit.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' wskit.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/wskit.pc
	install -m 644 $(filter %.1,$(MANS)) $(DESTDIR)$(PREFIX)/share/man/man1/
	$(if $(filter %.3,$(MANS)),install -m 644 $(filter %.3,$(MANS)) $(DESTDIR)$(PREFIX)/share/man/man3/)

uninstall:
	rm -f $(CMDS:$(BINOUT)/%=$(DESTDIR)$(PREFIX)/bin/%) $(DESTDIR)$(PREFIX)/lib/libwskit.* \
	    $(DESTDIR)$(PREFIX)/include/wskit.h $(DESTDIR)$(PREFIX)/lib/pkgconfig/wskit.pc

clean:
	rm -rf build bin lib/libwskit.a lib/libwskit.so*

-include $(LIB_OBJ:.o=.d) $(CMD_OBJ:.o=.d) $(CMD_MAIN:%.c=$(OBJDIR)/%.d)
