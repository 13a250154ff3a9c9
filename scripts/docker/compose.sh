#!/usr/bin/env bash
# Docker Compose, whichever this machine has: the v2 plugin (`docker compose`)
# or v1 (`docker-compose`, Debian bookworm's package is 1.29). Every docker-*
# make target goes through this.
set -euo pipefail
# Without the buildx plugin BuildKit cannot run from the CLI: use the classic
# builder (Compose v1 builds through the docker CLI).
if [ -z "${DOCKER_BUILDKIT:-}" ] && ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi
if docker compose version >/dev/null 2>&1; then
  exec docker compose "$@"
elif command -v docker-compose >/dev/null 2>&1; then
  exec docker-compose "$@"
fi
echo "compose.sh: neither 'docker compose' (v2 plugin) nor 'docker-compose' is installed" >&2
echo "compose.sh: Debian: apt-get install docker-compose; Docker's repository: docker-compose-plugin" >&2
exit 127
