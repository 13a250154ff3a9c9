# Shared by the scripts in scripts/docker/ (sourced, not run).
# shellcheck shell=bash

DOCKER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
COMPOSE="$DOCKER_ROOT/scripts/docker/compose.sh"

say() { printf '%s\n' "$*"; }
ok() { printf '  \342\234\223 %s\n' "$*"; }        # ✓
fail() { printf '  \342\234\227 %s\n' "$*" >&2; }   # ✗

# Which base images the build uses. DOCKER_BASE:
#   public  node:20-bookworm-slim / debian:bookworm-slim from the registry (the Dockerfiles' defaults)
#   offline the images of scripts/docker/build-base-image.sh (built here when missing)
#   auto    (default) public when both public images are already local, or when
#           the offline ones are absent and no debootstrap is around; else offline.
# NODE_IMAGE / COORDINATOR_BASE_IMAGE / WORKER_BASE_IMAGE set by the caller win.
resolve_base_images() {
  local mode="${DOCKER_BASE:-auto}"
  if [ -n "${NODE_IMAGE:-}" ] || [ -n "${COORDINATOR_BASE_IMAGE:-}" ] || [ -n "${WORKER_BASE_IMAGE:-}" ]; then
    say "base images: as set (NODE_IMAGE=${NODE_IMAGE:-default} COORDINATOR_BASE_IMAGE=${COORDINATOR_BASE_IMAGE:-default} WORKER_BASE_IMAGE=${WORKER_BASE_IMAGE:-default})"
    return 0
  fi
  if [ "$mode" = auto ]; then
    if docker image inspect node:20-bookworm-slim debian:bookworm-slim >/dev/null 2>&1; then
      mode=public
    elif docker image inspect codegen-mcp-base:bookworm >/dev/null 2>&1 || command -v debootstrap >/dev/null 2>&1; then
      mode=offline
    else
      mode=public
    fi
  fi
  case "$mode" in
    public)
      say "base images: public registry (node:20-bookworm-slim, debian:bookworm-slim)" ;;
    offline)
      "$DOCKER_ROOT/scripts/docker/build-base-image.sh"
      local line
      while IFS= read -r line; do export "${line?}"; done < <("$DOCKER_ROOT/scripts/docker/build-base-image.sh" --print-env)
      say "base images: offline ($NODE_IMAGE, $COORDINATOR_BASE_IMAGE, $WORKER_BASE_IMAGE)" ;;
    *)
      say "DOCKER_BASE must be auto, public or offline (got '$mode')" >&2; return 2 ;;
  esac
}

# Image tags of docker-compose.yml.
coordinator_image() { echo "${CODEGEN_IMAGE_PREFIX:-codegen-mcp}-coordinator:${CODEGEN_IMAGE_TAG:-latest}"; }
worker_image() { echo "${CODEGEN_IMAGE_PREFIX:-codegen-mcp}-worker:${CODEGEN_IMAGE_TAG:-latest}"; }

image_size_mb() { docker image inspect --format '{{.Size}}' "$1" | awk '{ printf "%.0f", $1 / 1e6 }'; }
