#!/usr/bin/env bash
# CI's Docker part (called by .ci/run after the main tests), for a fresh
# machine with no image registry:
#   1. installs what is missing: docker.io (engine), docker-compose (Debian's
#      is Compose v1.29: bookworm has no Compose v2 package), debootstrap;
#   2. starts dockerd when no engine answers, and waits for it;
#   3. builds the offline base images (debootstrap + docker import), then the
#      product images on them (Dockerfile.coordinator / Dockerfile.worker);
#   4. runs `make docker-test` and `make docker-test-multi` (both always run;
#      the exit code says whether both passed);
#   5. removes, even on failure, the test stacks' containers and volumes, the
#      images it built (product, base, dangling build stages) and stops the
#      dockerd it started (by its PID).
# Env: CODEGEN_SKIP_DOCKER=1 skips everything (exit 0);
#      CODEGEN_DOCKER_KEEP_IMAGES=1 keeps the images (faster reruns);
#      CODEGEN_TEST_SANDBOX (default bwrap: the workers must get bubblewrap).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$DOCKER_ROOT"

if [ "${CODEGEN_SKIP_DOCKER:-0}" = 1 ]; then
  say "docker CI: skipped (CODEGEN_SKIP_DOCKER=1)"
  exit 0
fi

T0=$(date +%s)
stamp() { say "[docker-ci +$(( $(date +%s) - T0 ))s] $*"; }
export DEBIAN_FRONTEND=noninteractive
export DOCKER_BASE=offline
export DOCKERD_PIDFILE="$DOCKER_ROOT/tmp/docker/ci-dockerd.pid"

# ---- 1. packages ---------------------------------------------------------------------------
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker >/dev/null 2>&1 || need+=(docker.io)
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then need+=(docker-compose); fi
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ "${#need[@]}" -gt 0 ]; then
  stamp "installing: ${need[*]}"
  apt-get update -qq >/dev/null || { fail "apt-get update failed"; exit 1; }
  # shellcheck disable=SC2046
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null \
    || { fail "apt-get install ${need[*]} failed"; exit 1; }
fi

# ---- 2. engine -----------------------------------------------------------------------------
rm -f "$DOCKERD_PIDFILE"
scripts/docker/start-dockerd.sh || { fail "no Docker engine"; exit 1; }
stamp "engine $(docker version --format '{{.Server.Version}}' 2>/dev/null), compose: $("$COMPOSE" version --short 2>/dev/null || "$COMPOSE" version 2>/dev/null | head -1)"

cleanup() {
  local rc=$?
  stamp "cleaning up"
  "$COMPOSE" -p "${CODEGEN_TEST_PROJECT:-codegen-test}" -f docker-compose.test.yml --profile multi-worker \
    down -v --remove-orphans >/dev/null 2>&1 || true
  if [ "${CODEGEN_DOCKER_KEEP_IMAGES:-0}" != 1 ]; then
    docker image rm -f "$(coordinator_image)" "$(worker_image)" >/dev/null 2>&1 || true
    docker image rm -f codegen-mcp-base:bookworm-python codegen-mcp-base:bookworm-node20 codegen-mcp-base:bookworm >/dev/null 2>&1 || true
    docker image prune -f >/dev/null 2>&1 || true   # the untagged build stages
    rm -rf tmp/docker/base
  fi
  if [ -s "$DOCKERD_PIDFILE" ]; then
    local pid; pid="$(cat "$DOCKERD_PIDFILE")"
    stamp "stopping the dockerd this run started (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    rm -f "$DOCKERD_PIDFILE"
  fi
  stamp "done (exit $rc)"
  if [ -n "${PASSED:-}" ]; then say "docker: $PASSED passed, $FAILED failed"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 3. images -----------------------------------------------------------------------------
stamp "offline base images"
scripts/docker/build-base-image.sh || { fail "base image build failed"; exit 1; }
stamp "product images"
scripts/docker/build-images.sh || { fail "docker-build failed"; exit 1; }

# ---- 4. the two test targets ---------------------------------------------------------------
export CODEGEN_TEST_SKIP_BUILD=1
results=()
status=0
PASSED=0
FAILED=0
# Tests of one target: vitest's counts from its JSON report, plus the target
# itself as one failed test when it failed without a failing vitest test
# (stack did not come up, a worker did not register, ...).
count_target() {
  local report="tmp/docker-test/$1/vitest.json" ok="$2" p=0 f=0
  if [ -f "$report" ]; then
    read -r p f < <(node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(r.numPassedTests || 0, r.numFailedTests || 0)' "$report" 2>/dev/null || echo "0 0")
  fi
  if [ "$ok" != 1 ] && [ "$f" = 0 ]; then f=1; fi
  PASSED=$((PASSED + p)); FAILED=$((FAILED + f))
}
for target in docker-test docker-test-multi; do
  stamp "make $target"
  mode=single; [ "$target" = docker-test-multi ] && mode=multi
  rm -f "tmp/docker-test/$mode/vitest.json"
  if make --no-print-directory "$target"; then
    results+=("$target: passed"); count_target "$mode" 1
  else
    results+=("$target: FAILED (logs: tmp/docker-test/$mode/logs/compose.log)"); status=1; count_target "$mode" 0
  fi
done

say "== docker CI summary"
for r in "${results[@]}"; do say "  $r"; done
say "  images: $(coordinator_image) $(image_size_mb "$(coordinator_image)") MB, $(worker_image) $(image_size_mb "$(worker_image)") MB"
exit "$status"
