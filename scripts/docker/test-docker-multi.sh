#!/usr/bin/env bash
# make docker-test-multi: coordinator + two workers; six sessions spread three
# and three, concurrent file operations, package isolation between sessions,
# over gRPC and over MCP (Streamable HTTP) (test/e2e/docker-multi.test.ts).
exec "$(dirname "${BASH_SOURCE[0]}")/run-compose-test.sh" multi
