# TracSeq Events: the two commands of the README, and a few more.
#
#   make run     local Redis (AOF, data in ./var) unless REDIS_URL is set, the
#                event service (gRPC :50051) and the REST bridge (:8087), in
#                the foreground; Ctrl-C stops them all
#   make test    install what is missing, build, run every test (ctest)
#
#   make test-fresh every install path from nothing: the README's make test,
#                   make run and the package installed, each in a minimal
#                   Debian 12 root (mmdebstrap; needs root, ~15 min)
#
#   make package    the Debian packages: $(BUILD)/tracseq-events_<version>_<arch>.deb
#                   and tracseq-events-dev (the C SDK), with cpack -G DEB
#
#   make torture [SECONDS=N] [SEED=S] [CLIENTS=C]
#                the torture test (tests/torture/) for as long as wanted;
#                no SEED: a random one, printed (docs/testing.md)
#
#   make build | test-sanitize | test-tsan | test-valgrind | fuzz | bench | soak | generate
#        | format | clean
BUILD ?= build
SAN_BUILD ?= build-sanitize
TSAN_BUILD ?= build-tsan
VALGRIND_BUILD ?= build-valgrind
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 30
# make soak: how long the soak benchmark runs (bench/soak.sh).
SOAK_SECONDS ?= 600
JOBS ?= 2
# Package groups of scripts/install-deps.sh that `make deps` installs.
DEPS ?= build test package

.PHONY: all deps build run test torture test-sanitize test-tsan test-valgrind fuzz bench soak generate format format-check clean \
        package test-fresh

all: build

deps:
	@./scripts/install-deps.sh $(DEPS)

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

run: build
	@./scripts/run.sh $(BUILD)

test: build
	@ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)

# Not the ctest one (fixed seeds, 15 s each): as long and as wide as asked.
torture: build
	@TRACSEQ_EVENTS_CONFIG= TRACSEQ_BRIDGE_CONFIG= TSE_SERVICE_BIN=$(CURDIR)/$(BUILD)/tracseq-events TORTURE_SHRINK=1 \
	  $(BUILD)/tests/torture/torture --seconds=$(or $(SECONDS),60) $(if $(SEED),--seed=$(SEED)) \
	  $(if $(CLIENTS),--clients=$(CLIENTS))

package: DEPS = build package
package: build
	@cd $(BUILD) && cpack -G DEB

test-fresh: DEPS = fresh
test-fresh: deps
	@./scripts/test-fresh.sh

test-sanitize: deps
	@cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTSE_SANITIZE=ON >/dev/null
	@cmake --build $(SAN_BUILD) -j$(JOBS)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	  ctest --test-dir $(SAN_BUILD) --output-on-failure -j$(JOBS) -LE slow

# ThreadSanitizer over the integration suite: the service, the bridge, the
# SDK and the tests all built with -fsanitize=thread. Every process writes its
# reports to $(TSAN_BUILD)/tsan-reports (a race in a child process must fail
# the run even when its test passes); any report fails the target.
# tests/tsan.supp holds the only suppressions (third-party code, justified).
test-tsan: deps
	@cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTSE_TSAN=ON >/dev/null
	@cmake --build $(TSAN_BUILD) -j$(JOBS)
	@rm -rf $(TSAN_BUILD)/tsan-reports && mkdir -p $(TSAN_BUILD)/tsan-reports
	@TSAN_OPTIONS="log_path=$(CURDIR)/$(TSAN_BUILD)/tsan-reports/tsan second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" \
	  ctest --test-dir $(TSAN_BUILD) --output-on-failure -j$(JOBS) -L integration
	@./scripts/check-reports.sh ThreadSanitizer $(TSAN_BUILD)/tsan-reports

# valgrind memcheck over the unit suite (and the fuzz corpora replays):
# any error or leak fails the test it happened in.
test-valgrind: deps
	@cmake -S . -B $(VALGRIND_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTSE_VALGRIND=ON >/dev/null
	@cmake --build $(VALGRIND_BUILD) --target unit_tests -j$(JOBS)
	@ctest --test-dir $(VALGRIND_BUILD) --output-on-failure -j$(JOBS) -L unit

# libFuzzer: every tests/fuzz/fuzz_*.c target, FUZZ_SECONDS each (clang).
fuzz: deps
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DTSE_FUZZ=ON -DTSE_FUZZ_SECONDS=$(FUZZ_SECONDS) >/dev/null
	@cmake --build $(FUZZ_BUILD) --target fuzz -j$(JOBS)

bench: build
	@./bench/run.sh $(BUILD)
	@./bench/run_subscribe.sh $(BUILD)
	@./bench/slowloris.sh $(BUILD)

# Mixed publish and subscribe at 5,000 events/s for SOAK_SECONDS, the
# service's RSS sampled every 10 s, every event checked delivered.
soak: build
	@SOAK_SECONDS=$(SOAK_SECONDS) ./bench/soak.sh $(BUILD)

generate: deps
	@./scripts/generate.sh

format:
	@git ls-files '*.c' '*.h' | grep -v '^generated/' | xargs clang-format -i

format-check:
	@git ls-files '*.c' '*.h' | grep -v '^generated/' | xargs clang-format --dry-run --Werror

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(TSAN_BUILD) $(VALGRIND_BUILD) $(FUZZ_BUILD)
