# lskv build. Flavours live in their own build directories so objects never mix:
#   make            debug build (build/debug)
#   make SANITIZE=1 ASan+UBSan build (build/asan)
#   make release    optimised build (build/release)
#   make run        install deps, build, start one lskvd on 127.0.0.1:2379
#   make test       install deps, build, run every test (unit, sanitizers, fuzz corpus, e2e)
#   make fuzz       libFuzzer harnesses (clang)
#   make bench      lskv vs etcd 3.4 side by side

SHELL := /bin/bash
CC ?= cc
ifeq ($(origin CC),default)
CC := gcc
endif

ifeq ($(SANITIZE),1)
FLAVOUR := asan
OPT := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LDOPT := -fsanitize=address,undefined
else ifeq ($(RELEASE),1)
FLAVOUR := release
OPT := -O2 -g -DNDEBUG
LDOPT :=
else
FLAVOUR := debug
OPT := -O1 -g
LDOPT :=
endif

B := build/$(FLAVOUR)
GEN := build/gen
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wformat=2 -Wimplicit-fallthrough -Wcast-align -Wvla
HARDEN := -fstack-protector-strong -D_FORTIFY_SOURCE=2
CFLAGS_ALL := -std=c11 -D_GNU_SOURCE $(WARN) $(OPT) $(HARDEN) -Isrc -I$(GEN) -Itests/lib -MMD -MP $(EXTRA_CFLAGS)
LIBS := -luv -lraft -lnghttp2 -lprotobuf-c -lleveldb -lssl -lcrypto -lcrypt -ljansson -lhttp_parser -lpthread
ifeq ($(FLAVOUR),debug)
HARDEN := -fstack-protector-strong
endif

PROTOS := rpc kv auth lskvauth lskvserver lskvcommand v3lock v3election lskvpeer
PROTO_C := $(PROTOS:%=$(GEN)/proto/%.pb-c.c)
PROTO_H := $(PROTOS:%=$(GEN)/proto/%.pb-c.h)

LIB_SRC := $(filter-out src/lskvd.c,$(shell find src -name '*.c' | sort))
LIB_OBJ := $(LIB_SRC:%.c=$(B)/%.o) $(PROTO_C:$(GEN)/%.c=$(B)/gen/%.o)
TEST_LIB_SRC := $(shell find tests/lib -name '*.c' | sort)
UNIT_SRC := $(shell find tests/unit -name 'test_*.c' | sort)
UNIT_OBJ := $(UNIT_SRC:%.c=$(B)/%.o) $(TEST_LIB_SRC:%.c=$(B)/%.o)
FUZZ_SRC := $(shell find tests/fuzz -name 'fuzz_*.c' | sort)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(B)/fuzz/%)
TOOLS := $(patsubst tools/%/,%,$(sort $(dir $(wildcard tools/*/*.c))))
TOOL_BIN := $(TOOLS:%=$(B)/%)

Q := @
quiet = @printf '  %-6s %s\n' $(1) $(2);

.SECONDARY:
.PHONY: all release run test test-unit test-e2e test-fuzz deps fuzz bench clean check-layers etcd-e2e soak
all: $(B)/lskvd $(B)/unit_tests $(FUZZ_BIN) $(TOOL_BIN)

release:
	$(MAKE) RELEASE=1 all

$(GEN)/proto/%.pb-c.c $(GEN)/proto/%.pb-c.h: proto/%.proto
	$(call quiet,PROTOC,$<)mkdir -p $(GEN)/proto && protoc-c --proto_path=proto --c_out=$(GEN)/proto $(notdir $<)

$(B)/gen/%.o: $(GEN)/%.c $(PROTO_H)
	$(Q)mkdir -p $(dir $@)
	$(call quiet,CC,$<)$(CC) $(CFLAGS_ALL) -Wno-missing-prototypes -c $< -o $@

$(B)/%.o: %.c $(PROTO_H)
	$(Q)mkdir -p $(dir $@)
	$(call quiet,CC,$<)$(CC) $(CFLAGS_ALL) -c $< -o $@

$(B)/liblskv.a: $(LIB_OBJ)
	$(call quiet,AR,$@)rm -f $@ && ar rcs $@ $^

$(B)/lskvd: $(B)/src/lskvd.o $(B)/liblskv.a
	$(call quiet,LINK,$@)$(CC) $(LDOPT) -o $@ $^ $(LIBS)

$(B)/unit_tests: $(UNIT_OBJ) $(B)/liblskv.a
	$(call quiet,LINK,$@)$(CC) $(LDOPT) -o $@ $^ $(LIBS)

# Fuzz harnesses double as corpus replayers (tests/fuzz/replay_main.c) in
# every flavour; `make fuzz` builds them as libFuzzer binaries with clang.
FUZZ_LIB_OBJ := $(filter-out %/runner.o,$(TEST_LIB_SRC:%.c=$(B)/%.o))
$(B)/fuzz/fuzz_%: $(B)/tests/fuzz/fuzz_%.o $(B)/tests/fuzz/replay_main.o $(FUZZ_LIB_OBJ) $(B)/liblskv.a
	$(Q)mkdir -p $(dir $@)
	$(call quiet,LINK,$@)$(CC) $(LDOPT) -o $@ $^ $(LIBS)

define tool_rule
$(B)/$(1): $(patsubst %.c,$(B)/%.o,$(wildcard tools/$(1)/*.c)) $(B)/liblskv.a
	$$(call quiet,LINK,$$@)$$(CC) $$(LDOPT) -o $$@ $$^ $$(LIBS)
endef
$(foreach t,$(TOOLS),$(eval $(call tool_rule,$(t))))

deps:
	$(Q)bash scripts/install-deps.sh

run: deps
	$(Q)$(MAKE) --no-print-directory all
	./build/debug/lskvd --name default --data-dir ./default.lskv

test: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory SANITIZE=1 all
	$(Q)$(MAKE) --no-print-directory check-layers
	$(Q)bash tests/run-all.sh

# etcd 3.4's own e2e suite against lskvd (long; not part of `make test`).
# ARGS: --control (also run against Debian's etcd) and/or test names.
etcd-e2e:
	$(Q)$(MAKE) --no-print-directory RELEASE=1 all
	$(Q)bash scripts/etcd-e2e.sh $(ARGS)

# Fault rounds on 3-member clusters in network namespaces (root), many more
# than the 50 of `make test`; not part of `make test`.
SOAK_ROUNDS ?= 500
soak:
	$(Q)$(MAKE) --no-print-directory all
	LSKV_FAULT_ROUNDS=$(SOAK_ROUNDS) LSKV_FAULT_SNAPSHOT_ROUNDS=$(SOAK_ROUNDS) \
		LSKV_FAULT_ROUNDS_ETCD=50 /usr/bin/python3 -m pytest \
		-p no:cacheprovider -q -s tests/e2e/test_cluster_faults.py

check-layers:
	$(Q)bash scripts/check-layers.sh

fuzz:
	$(Q)bash scripts/build-fuzzers.sh

bench: deps
	$(Q)$(MAKE) --no-print-directory RELEASE=1 all
	$(Q)bash bench/run.sh

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
