# rlvr: the two set-up commands of README.md (`make demo`, `make test`) and friends.
# Every target installs missing Debian packages first (tools/bootstrap.sh, quiet when all is there).

JOBS ?= 2
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_SECONDS ?= 60
CMAKE_FLAGS ?=

.PHONY: all bootstrap configure build test test-slow test-asan fuzz demo ci clean

all: build

bootstrap:
	@tools/bootstrap.sh

configure: bootstrap
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null

# build/bin/rlvr and every library, test and benchmark.
build: configure
	@cmake --build $(BUILD) -j$(JOBS)

# The whole CTest suite (tests labelled `slow` are left to `make test-slow`).
test: build
	@cd $(BUILD) && ctest -j$(JOBS) -LE slow --output-on-failure --timeout 900

test-slow: build
	@cd $(BUILD) && ctest -j$(JOBS) -L slow --output-on-failure

# The CPU tests under AddressSanitizer + UndefinedBehaviorSanitizer (clang), which also builds
# the libFuzzer targets.
# The emulated CUDA tests (label emu) compare with the CPU at tolerances set for the optimized GCC
# build; they run there (make test), not in this Debug clang build.
test-asan: bootstrap
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang-14 \
	  -DCMAKE_CXX_COMPILER=clang++-14 -DRLVR_FUZZ=ON -DRLVR_CUDA=OFF -DRLVR_BENCH=OFF \
	  -DRLVR_WERROR=OFF >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest -j$(JOBS) -LE "slow|cuda|nosan|emu" --output-on-failure --timeout 1800

# Runs every libFuzzer target for FUZZ_SECONDS from its committed seed corpus.
fuzz: test-asan
	@tools/run_fuzzers.sh $(ASAN_BUILD) $(FUZZ_SECONDS)

# The main job: the built-in demo run. One OpenMP thread: the demo's model is small enough that
# a second thread costs more in synchronisation than it brings, and the numbers stay identical
# across machines.
demo: build
	@OMP_NUM_THREADS=1 $(BUILD)/bin/rlvr demo

ci: test test-asan fuzz

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
