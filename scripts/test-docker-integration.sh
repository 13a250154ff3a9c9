#!/usr/bin/env bash
# The deployment guide's name for the single-worker integration test (`make docker-test`).
exec "$(dirname "$0")/docker/test-docker-integration.sh" "$@"
