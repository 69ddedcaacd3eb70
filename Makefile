# TracSeq Events: the two commands of the README, and a few more.
#
#   make run     local Redis (AOF, data in ./var) unless REDIS_URL is set, the
#                event service (gRPC :50051) and the REST bridge (:8087), in
#                the foreground; Ctrl-C stops them all
#   make test    install what is missing, build, run every test (ctest)
#
#   make build | test-sanitize | fuzz | bench | generate | format | clean
BUILD ?= build
SAN_BUILD ?= build-sanitize
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 30
JOBS ?= 2

.PHONY: all deps build run test test-sanitize fuzz bench generate format format-check clean

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

run: build
	@./scripts/run.sh $(BUILD)

test: build
	@ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)

test-sanitize: deps
	@cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTSE_SANITIZE=ON >/dev/null
	@cmake --build $(SAN_BUILD) -j$(JOBS)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(SAN_BUILD) --output-on-failure -j$(JOBS) -LE slow

# libFuzzer over the JSON <-> protobuf transcoder, FUZZ_SECONDS long.
fuzz: deps
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DTSE_FUZZ=ON -DTSE_FUZZ_SECONDS=$(FUZZ_SECONDS) >/dev/null
	@cmake --build $(FUZZ_BUILD) --target fuzz -j$(JOBS)

bench: build
	@./bench/run.sh $(BUILD)
	@./bench/run_subscribe.sh $(BUILD)

generate: deps
	@./scripts/generate.sh

format:
	@git ls-files '*.c' '*.h' | grep -v '^generated/' | xargs clang-format -i

format-check:
	@git ls-files '*.c' '*.h' | grep -v '^generated/' | xargs clang-format --dry-run --Werror

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(FUZZ_BUILD)
