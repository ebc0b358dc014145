# The two commands: `make run` and `make test` (and `make bench`).
# Each installs what is missing (Debian packages when run as root), builds, then runs.

BUILD      ?= build
ASAN_BUILD ?= build-asan
DATA_DIR   ?= ./mecapy-data
PORT       ?= 8000

.PHONY: all deps test-deps build build-asan run test bench clean

all: build

deps:
	@scripts/install-deps.sh run

test-deps:
	@scripts/install-deps.sh test

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

build-asan: $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

run: build
	./$(BUILD)/mecapy serve --data-dir $(DATA_DIR) --port $(PORT)

test: test-deps $(BUILD)/build.ninja $(ASAN_BUILD)/build.ninja
	ninja -C $(BUILD)
	ninja -C $(ASAN_BUILD)
	tests/run.sh $(BUILD) $(ASAN_BUILD)

bench: build
	@if [ -x bench/run.sh ]; then bench/run.sh $(BUILD); else echo "no benchmarks yet"; fi

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
