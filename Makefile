# Verolux top-level Makefile: thin wrapper around scripts/setup, CMake and ctest.
#
#   make run     build (Release, -Werror) and start `verolux serve` on http://127.0.0.1:8000
#                (default source: $CACHE/samples/vtest.avi, or VIDEO_SOURCE); Ctrl-C stops it
#   make test    unit tests, then the same under ASan+UBSan, then the fuzzers
#                (3 targets x FUZZ_SECONDS)
#   make bench   build and run bench/run-all
#
# Variables (override on the command line, e.g. `make test FUZZ_SECONDS=10`):
#   CACHE         models and samples (exported to every command as VEROLUX_CACHE)
#   JOBS          parallel build jobs (default: nproc)
#   FUZZ_SECONDS  time per fuzz target (default 60: three targets, 3 minutes in all)
#   RUN_CMD       the command `make run` executes
#   CTEST_ARGS    extra ctest arguments (e.g. -R nms)

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# Steps run one after another; parallelism happens inside ninja.
.NOTPARALLEL:

CACHE ?= $(or $(VEROLUX_CACHE),$(HOME)/.cache/verolux)
export VEROLUX_CACHE := $(CACHE)

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD_DIR ?= build
ASAN_DIR ?= build-asan
FUZZ_DIR ?= build-fuzz
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
CTEST_ARGS ?=
RUN_CMD ?= $(BUILD_DIR)/verolux serve

CTEST = ctest --output-on-failure --no-tests=error $(CTEST_ARGS)
SAN_ENV = ASAN_OPTIONS=detect_leaks=1 \
          UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
          $(if $(wildcard tests/lsan.supp),LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp)

# configure DIR, then extra cmake args; -G Ninja only for a fresh dir so an
# existing build dir keeps its generator.
define configure
cmake -S . -B $(1) $(if $(wildcard $(1)/CMakeCache.txt),,-G Ninja) $(2)
endef

.PHONY: build setup run test test-unit test-asan test-fuzz bench clean

build: setup
	$(call configure,$(BUILD_DIR),-DCMAKE_BUILD_TYPE=Release -DVX_WERROR=ON)
	cmake --build $(BUILD_DIR) -j $(JOBS)

setup:
	scripts/setup

run: build
	$(RUN_CMD)

test: test-unit test-asan test-fuzz

test-unit: build
	$(CTEST) --test-dir $(BUILD_DIR)

test-asan: setup
	# The generated ONNX fixtures and gate scenarios are shared with the
	# Release tree (deterministic, cached by their stamps): made once, not twice.
	$(call configure,$(ASAN_DIR),-DCMAKE_BUILD_TYPE=Debug -DVX_SANITIZE=ON -DVX_WERROR=ON \
	    -DVX_ONNX_FIXTURES=$(abspath $(BUILD_DIR))/onnx-fixtures -DVX_SCENARIOS=$(abspath $(BUILD_DIR))/scenarios)
	cmake --build $(ASAN_DIR) -j $(JOBS)
	# The ONNX Runtime oracle compares numbers (the Release run covers it);
	# under ASan it only runs the same binary slower.
	$(SAN_ENV) $(CTEST) --test-dir $(ASAN_DIR) -E '^onnx_oracle$$'

test-fuzz: setup
	@if [ ! -f fuzz/CMakeLists.txt ]; then \
	    echo "test-fuzz: NOTE: fuzz/CMakeLists.txt does not exist yet; no fuzz targets to build or run"; \
	    exit 0; \
	fi; \
	set -x; \
	$(call configure,$(FUZZ_DIR),-DCMAKE_C_COMPILER=$(FUZZ_CC) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVX_FUZZ=ON -DVX_SANITIZE=ON -DVX_TESTS=OFF); \
	cmake --build $(FUZZ_DIR) -j $(JOBS); \
	set +x; \
	if [ -x fuzz/run-fuzzers ]; then \
	    set -x; \
	    $(SAN_ENV) FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run-fuzzers $(FUZZ_DIR) $(FUZZ_SECONDS); \
	elif [ -e fuzz/run-fuzzers ]; then \
	    echo "test-fuzz: error: fuzz/run-fuzzers is not executable" >&2; exit 1; \
	else \
	    echo "test-fuzz: NOTE: fuzz/run-fuzzers does not exist yet; fuzz targets built in $(FUZZ_DIR) but not run"; \
	fi

bench: build
	@if [ -x bench/run-all ]; then \
	    set -x; bench/run-all; \
	elif [ -e bench/run-all ]; then \
	    echo "bench: error: bench/run-all is not executable" >&2; exit 1; \
	else \
	    echo "bench: NOTE: bench/run-all does not exist yet; nothing to run"; \
	fi

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(FUZZ_DIR)
