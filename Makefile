# SPDX-License-Identifier: MIT
#
# The two commands of the README, and a few more for developers:
#   make run     install what is missing, build, start a private Redis, run the daemon
#   make install build as make run does, then install it: PREFIX (default /usr/local), DESTDIR
#   make test    install what is missing, build with ASan+UBSan (clang, with the libFuzzer
#                targets) and run every test suite through CTest
#   make bench   install what is missing, build optimised, run the benchmarks
#   make fuzz    every libFuzzer target for FUZZ_SECONDS each (default 600; make test runs 20)
#   make soak    the fault campaign (tests/soak/soak.py): two daemons, one Redis with AOF, web and
#                Matrix users, kill -9/SIGTERM/Synapse restarts/429/5xx for SOAK_SECONDS (default
#                600); fails on any lost or duplicated reply. Not part of make test
#   make format  clang-format every C file;  make clean  remove the build directories
#   make exemples  regenerate docs/exemples.md from the golden transcripts
#
# Build directories: build/ (make run, make bench; `make run BUILD=DIR` builds elsewhere),
# build-test/ (make test), build-gcc/ (make test also compiles everything with gcc and -Werror,
# for gcc's warnings), build-fuzz/ (make fuzz), build-soak/ (make soak).

JOBS  ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE ?= cmake

FUZZ_SECONDS ?= 600
SOAK_SECONDS ?= 600
BUILD        ?= build
PREFIX       ?= /usr/local

.PHONY: all run install test bench fuzz soak build build-test format clean help exemples

all: build

help:
	@sed -n '3,14p' Makefile | sed 's/^# \{0,1\}//'

build:
	deploy/install-deps.sh run
	$(CMAKE) -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFB_BUILD_TESTS=OFF \
	  -DFB_ASAN=OFF -DFB_UBSAN=OFF -DFB_FUZZ=OFF -DFB_WERROR=OFF
	$(CMAKE) --build $(BUILD) -j $(JOBS)

run: build
	deploy/run.sh $(BUILD)/frichebot

# The binary, its data, the sample configuration, the systemd unit and user (README.md, Install).
# DESTDIR stages the files elsewhere; the installed paths still name PREFIX.
install: build
	DESTDIR="$(DESTDIR)" $(CMAKE) --install $(BUILD) --prefix $(PREFIX)

build-test:
	deploy/install-deps.sh test
	CC=gcc $(CMAKE) -S . -B build-gcc -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFB_WERROR=ON \
	  -DFB_BUILD_TESTS=ON
	$(CMAKE) --build build-gcc -j $(JOBS)
	CC=clang $(CMAKE) -S . -B build-test -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFB_WERROR=ON \
	  -DFB_ASAN=ON -DFB_UBSAN=ON -DFB_FUZZ=ON -DFB_BUILD_TESTS=ON
	$(CMAKE) --build build-test -j $(JOBS)

test: build-test
	cd build-test && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 FB_TEST_TIMEOUT_MULTIPLIER=3 \
	  ctest --output-on-failure -j $(JOBS)

bench:
	deploy/install-deps.sh bench
	$(CMAKE) -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFB_BUILD_TESTS=OFF \
	  -DFB_ASAN=OFF -DFB_UBSAN=OFF -DFB_FUZZ=OFF -DFB_WERROR=OFF
	$(CMAKE) --build build -j $(JOBS)
	bench/run.sh build
	bench/engine.sh build
	bench/kb.sh build
	bench/memory.sh build

fuzz:
	deploy/install-deps.sh test
	CC=clang $(CMAKE) -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFB_FUZZ=ON \
	  -DFB_ASAN=ON -DFB_UBSAN=ON -DFB_BUILD_TESTS=OFF -DFB_FUZZ_SECONDS=$(FUZZ_SECONDS)
	$(CMAKE) --build build-fuzz -j $(JOBS)
	cd build-fuzz && ctest -L fuzz --output-on-failure -j $(JOBS)

# Optimised with ASan and UBSan: an error path taken under a fault reports itself (the RSS it
# prints includes the sanitizers' own memory). SOAK_SECONDS, and SOAK_FAULT_GAP, SOAK_WEB_USERS,
# SOAK_MATRIX_USERS (tests/soak/soak.py --help).
soak:
	deploy/install-deps.sh test
	CC=clang $(CMAKE) -S . -B build-soak -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFB_ASAN=ON \
	  -DFB_UBSAN=ON -DFB_FUZZ=OFF -DFB_BUILD_TESTS=OFF -DFB_WERROR=OFF
	$(CMAKE) --build build-soak -j $(JOBS) --target frichebot
	SOAK_SECONDS=$(SOAK_SECONDS) .venv/bin/python tests/soak/soak.py --binary build-soak/frichebot

# docs/exemples.md from three golden transcripts (tests/transcripts/friche-*.yaml)
exemples: build
	tools/exemples.sh $(BUILD)/frichebot

format:
	$(CMAKE) --build build-test --target format

clean:
	rm -rf build build-test build-gcc build-fuzz build-soak
