# codegen-mcp — the two commands of the README are `make up` and `make test`.
# Every target installs what it needs first (npm ci when node_modules is missing or stale).

NPM_STAMP := node_modules/.install-stamp
SHELL := /bin/bash

.PHONY: help install build up test test-unit test-integration bench typecheck clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort
	@grep -hE '^## docker-[a-z-]+: ' $(MAKEFILE_LIST) | sed -E 's/^## ([a-z-]+): /\1\t/'

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: $(NPM_STAMP) ## install the npm dependencies (npm ci)
	@scripts/ensure-system-deps.sh

# dist/ is rebuilt only when something it is made from changed (`make up` starts at once otherwise).
BUILD_STAMP := dist/.build-stamp
BUILD_INPUTS := $(shell find src machines bench -type f 2>/dev/null) tsconfig.json scripts/postbuild.mjs

$(BUILD_STAMP): $(NPM_STAMP) $(BUILD_INPUTS)
	npm run build
	@touch $@

build: $(BUILD_STAMP) ## compile TypeScript to dist/ (only when a source changed)

up: install build ## start a coordinator and one worker locally (workspaces under ./tmp); Ctrl-C drains and stops
	mkdir -p tmp/workspaces
	@# In a terminal, `up` runs as its own foreground job (set -m): Ctrl-C reaches it and its children, not make,
	@# so `up` drains everything once and make ends with up's exit status (0) instead of dying by SIGINT.
	@# (`; exit $$?` keeps bash from exec-ing node in its own place, which would skip the job control.)
	@if [ -t 0 ]; then set -m; fi; BASE_WORKSPACE=$${BASE_WORKSPACE:-./tmp/workspaces} node dist/src/cli/main.js up --workers $${WORKERS:-1}; exit $$?

test: install build ## run every test (unit, property, integration, MCP, the live view in chromium), with a summary line
	@scripts/ensure-test-deps.sh
	scripts/run-tests.sh

test-unit: install ## unit and property tests only (fast)
	npx vitest run test/unit test/property

bench: install build ## benchmark figures (see BENCHMARKS.md)
	node dist/bench/run.js

typecheck: $(NPM_STAMP) ## tsc --noEmit
	npx tsc -p tsconfig.json --noEmit

clean: ## remove build output and local workspaces (unmounting the sessions' filesystems first)
	@grep -o " $(CURDIR)/tmp/[^ ]*" /proc/self/mountinfo 2>/dev/null | sort -r | while read -r m; do umount -l "$$m" || true; done
	rm -rf dist tmp

include mk/docker.mk
