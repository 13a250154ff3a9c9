#!/usr/bin/env bash
# make docker-test: coordinator + one worker (docker-compose.test.yml), checked
# through the product: services running, coordinator healthy, the worker's
# registration line, a gRPC session with its venv, a package installed from a
# local wheel folder and imported (test/e2e/docker-integration.test.ts).
exec "$(dirname "${BASH_SOURCE[0]}")/run-compose-test.sh" single
