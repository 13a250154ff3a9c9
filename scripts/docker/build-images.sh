#!/usr/bin/env bash
# make docker-build: build the coordinator and worker images with Compose
# (docker-compose.yml), on the base images that resolve_base_images picks
# (DOCKER_BASE=auto|public|offline, see lib.sh), and print their sizes.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$DOCKER_ROOT"
resolve_base_images
start=$(date +%s)
"$COMPOSE" -f docker-compose.yml build "$@" coordinator worker-1
say "built in $(( $(date +%s) - start ))s:"
say "  $(coordinator_image)  $(image_size_mb "$(coordinator_image)") MB"
say "  $(worker_image)  $(image_size_mb "$(worker_image)") MB"
