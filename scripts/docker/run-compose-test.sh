#!/usr/bin/env bash
# The compose integration tests behind `make docker-test` (single) and
# `make docker-test-multi` (multi). Everything goes through the product:
# Compose starts the stack of docker-compose.test.yml (the real images, host
# networking, 127.0.0.1 only), this script checks what an operator would
# (containers up, coordinator healthy by its own healthcheck, the workers'
# registration lines in `compose logs`), and the vitest suite
# test/e2e/docker-*.test.ts drives the coordinator over gRPC and MCP/HTTP.
#
# Env: CODEGEN_TEST_GRPC_PORT (55051), CODEGEN_TEST_HTTP_PORT (58080),
#      CODEGEN_TEST_SKIP_BUILD=1 (use the images as they are),
#      CODEGEN_TEST_KEEP=1 (leave the stack running afterwards),
#      DOCKER_BASE (see lib.sh), CODEGEN_TEST_PROJECT (codegen-test).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$DOCKER_ROOT"

MODE="${1:-single}"
case "$MODE" in single|multi) ;; *) echo "usage: $0 single|multi" >&2; exit 2 ;; esac

PROJECT="${CODEGEN_TEST_PROJECT:-codegen-test}"
export CODEGEN_TEST_GRPC_PORT="${CODEGEN_TEST_GRPC_PORT:-55051}"
export CODEGEN_TEST_HTTP_PORT="${CODEGEN_TEST_HTTP_PORT:-58080}"
OUT="$DOCKER_ROOT/tmp/docker-test/$MODE"
export CODEGEN_TEST_WHEELS="$OUT/wheels"
# The coordinator's client token for this run (docker-compose.test.yml passes it through); the suite sends it.
CLIENT_TOKEN="${CLIENT_TOKEN:-test-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}"
export CLIENT_TOKEN
TC=("$COMPOSE" -p "$PROJECT" -f docker-compose.test.yml)
WORKERS=(worker-1)
if [ "$MODE" = multi ]; then TC+=(--profile multi-worker); WORKERS=(worker-1 worker-2); fi
COORDINATOR_CONTAINER=codegen-test-coordinator
WAIT_SECONDS="${CODEGEN_TEST_WAIT_SECONDS:-90}"

say "== docker-test ($MODE): gRPC 127.0.0.1:$CODEGEN_TEST_GRPC_PORT, MCP http://127.0.0.1:$CODEGEN_TEST_HTTP_PORT/mcp"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- images ------------------------------------------------------------------------------
if [ "${CODEGEN_TEST_SKIP_BUILD:-0}" != 1 ]; then
  scripts/docker/build-images.sh
fi
for img in "$(coordinator_image)" "$(worker_image)"; do
  docker image inspect "$img" >/dev/null 2>&1 || { fail "image $img missing (make docker-build)"; exit 1; }
done

# ---- a clean stack -------------------------------------------------------------------------
"${TC[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
for p in "$CODEGEN_TEST_GRPC_PORT" "$CODEGEN_TEST_HTTP_PORT"; do
  if port_busy "$p"; then fail "127.0.0.1:$p is in use; set CODEGEN_TEST_GRPC_PORT / CODEGEN_TEST_HTTP_PORT"; exit 1; fi
done
rm -rf "$OUT"; mkdir -p "$CODEGEN_TEST_WHEELS" "$OUT/logs"

finish() {
  local rc=$?
  "${TC[@]}" logs --no-color > "$OUT/logs/compose.log" 2>&1 || true
  if [ "$rc" != 0 ]; then
    say "--- last lines of each service's log (all in $OUT/logs/compose.log) ---"
    for s in coordinator "${WORKERS[@]}"; do "${TC[@]}" logs --no-color --tail=25 "$s" 2>&1 || true; done
  fi
  if [ "${CODEGEN_TEST_KEEP:-0}" = 1 ]; then
    say "stack left running (CODEGEN_TEST_KEEP=1): ${TC[*]} down -v"
  else
    "${TC[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap finish EXIT

start=$(date +%s)
"${TC[@]}" up -d

# ---- what an operator checks ---------------------------------------------------------------
expected=$(( 1 + ${#WORKERS[@]} ))
running=0
for id in $("${TC[@]}" ps -q); do
  [ "$(docker inspect -f '{{.State.Running}}' "$id")" = true ] && running=$((running + 1))
done
if [ "$running" -ne "$expected" ]; then fail "services running: $running of $expected"; "${TC[@]}" ps; exit 1; fi
ok "Services running ($running: coordinator, ${WORKERS[*]})"

health=""
for _ in $(seq 1 "$WAIT_SECONDS"); do
  health="$(docker inspect -f '{{.State.Health.Status}}' "$COORDINATOR_CONTAINER" 2>/dev/null || true)"
  [ "$health" = healthy ] && break
  sleep 1
done
if [ "$health" != healthy ]; then fail "coordinator not healthy (status: ${health:-none})"; exit 1; fi
ok "Coordinator healthy (codegen-mcp health: grpc.health.v1 SERVING)"

for w in "${WORKERS[@]}"; do
  line=""
  for _ in $(seq 1 "$WAIT_SECONDS"); do
    wlog="$("${TC[@]}" logs --no-color "$w" 2>/dev/null || true)"
    line="$(printf '%s\n' "$wlog" | grep -m1 'Successfully registered with coordinator' || true)"
    [ -n "$line" ] && break
    # A worker that cannot start says so on stderr ("codegen-mcp: ...") and restarts: no use waiting.
    fatal="$(printf '%s\n' "$wlog" | grep -m1 -E '\| codegen-mcp: ' || true)"
    if [ -n "$fatal" ]; then fail "$w cannot start: ${fatal#*| codegen-mcp: }"; exit 1; fi
    sleep 1
  done
  if [ -z "$line" ]; then fail "$w: no 'Successfully registered with coordinator' in its log"; exit 1; fi
  ok "$w registered as $(printf '%s' "$line" | sed -n 's/.*"workerId":"\([^"]*\)".*/\1/p'): Successfully registered with coordinator"
  isolation="$("${TC[@]}" logs --no-color "$w" 2>/dev/null | grep -m1 -iE 'isolation|sandbox' || true)"
  if [ -n "$isolation" ]; then say "    $w isolation: $(printf '%s' "$isolation" | sed -n 's/.*"isolation":"\([^"]*\)".*/\1/p')"; fi
done
say "stack up in $(( $(date +%s) - start ))s"

# ---- through the product's APIs (vitest) ---------------------------------------------------
if [ ! -x node_modules/.bin/vitest ]; then npm ci --no-audit --no-fund; fi
export CODEGEN_DOCKER_E2E=1
export CODEGEN_DOCKER_MODE="$MODE"
export CODEGEN_DOCKER_GRPC_ADDR="127.0.0.1:$CODEGEN_TEST_GRPC_PORT"
export CODEGEN_DOCKER_MCP_URL="http://127.0.0.1:$CODEGEN_TEST_HTTP_PORT/mcp"
export CODEGEN_DOCKER_WHEELS="$CODEGEN_TEST_WHEELS"
export CODEGEN_DOCKER_CLIENT_TOKEN="$CLIENT_TOKEN"
# The suite restarts services itself (docker compose restart worker-1, coordinator), with this command.
CODEGEN_DOCKER_COMPOSE_JSON="$(node -e 'process.stdout.write(JSON.stringify(process.argv.slice(1)))' "${TC[@]}")"
export CODEGEN_DOCKER_COMPOSE_JSON
if [ "$MODE" = single ]; then suite=test/e2e/docker-integration.test.ts; else suite=test/e2e/docker-multi.test.ts; fi
node_modules/.bin/vitest run --reporter=default --reporter=json --outputFile.json="$OUT/vitest.json" "$suite"
say "== docker-test ($MODE) passed in $(( $(date +%s) - start ))s"
