# The two commands: `make run` and `make test` (and `make bench`).
# Each installs what is missing (Debian packages when run as root), builds, then runs.

BUILD      ?= build
ASAN_BUILD ?= build-asan
DATA_DIR   ?= ./mecapy-data
PORT       ?= 8000

# The dashboard (web/): vite build writes web/dist (git-ignored), which the server
# serves; rebuilt when a source of it or the lockfile changed.
WEB_DIST   := web/dist
WEB_SRC    := $(shell find web/src -type f 2>/dev/null) web/index.html web/vite.config.ts \
              web/svelte.config.mjs web/tsconfig.json package-lock.json

.PHONY: all deps test-deps build build-asan web run test bench clean

all: build

deps:
	@scripts/install-deps.sh run

test-deps:
	@scripts/install-deps.sh test

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

build: deps $(BUILD)/build.ninja $(WEB_DIST)/index.html
	ninja -C $(BUILD)

web: $(WEB_DIST)/index.html

$(WEB_DIST)/index.html: $(WEB_SRC)
	npx --no-install vite build web --logLevel warn

build-asan: $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

run: build
	./$(BUILD)/mecapy serve --data-dir $(DATA_DIR) --port $(PORT)

test: test-deps $(BUILD)/build.ninja $(ASAN_BUILD)/build.ninja
	$(MAKE) --no-print-directory web
	ninja -C $(BUILD)
	ninja -C $(ASAN_BUILD)
	tests/run.sh $(BUILD) $(ASAN_BUILD)

bench: build
	@if [ -x bench/run.sh ]; then bench/run.sh $(BUILD); else echo "no benchmarks yet"; fi

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(WEB_DIST)
