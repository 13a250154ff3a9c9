# Docker Compose targets (the deployment guide's "Make Targets Reference").
# Included by the top-level Makefile. Every target goes through
# scripts/docker/compose.sh, which runs `docker compose` (v2) or
# `docker-compose` (v1), whichever exists.
#
# Variables:
#   DOCKER_BASE=auto|public|offline  base images for docker-build (scripts/docker/lib.sh)
#   COMPOSE_PROJECT_NAME             compose's own (default: this folder's name)
#   LOG_LEVEL, WORKER_TOKEN, MCP_TOKEN, ...  passed into the containers

DOCKER_COMPOSE      ?= scripts/docker/compose.sh
DOCKER_COMPOSE_MAIN := $(DOCKER_COMPOSE) -f docker-compose.yml --profile multi-worker
DOCKER_COMPOSE_DEV  := $(DOCKER_COMPOSE) -f docker-compose.dev.yml
DOCKER_DEV_DIRS     := tmp/dev/worker-1/workspaces tmp/dev/worker-1/checkpoints \
                       tmp/dev/worker-2/workspaces tmp/dev/worker-2/checkpoints

.PHONY: docker-base docker-build docker-up docker-up-dev docker-up-multi docker-down \
        docker-logs docker-ps docker-restart docker-restart-worker docker-shell-worker \
        docker-shell-coordinator docker-test docker-test-multi docker-clean docker-clean-all

## docker-base: offline base images from Debian's mirror (debootstrap; root)
docker-base:
	scripts/docker/build-base-image.sh

## docker-build: build coordinator and worker images
docker-build:
	scripts/docker/build-images.sh

## docker-up: start coordinator + 1 worker
docker-up:
	$(DOCKER_COMPOSE) -f docker-compose.yml up -d
	$(DOCKER_COMPOSE) -f docker-compose.yml ps

## docker-up-dev: start with this checkout's build mounted (dev mode)
docker-up-dev:
	@test -f dist/src/cli/main.js || { echo "dist/ not built: run 'make build' first"; exit 1; }
	mkdir -p $(DOCKER_DEV_DIRS)
	$(DOCKER_COMPOSE_DEV) up -d
	$(DOCKER_COMPOSE_DEV) ps

## docker-up-multi: start coordinator + 2 workers
docker-up-multi:
	$(DOCKER_COMPOSE_MAIN) up -d
	$(DOCKER_COMPOSE_MAIN) ps

## docker-down: stop and remove containers (of the normal and the dev stack)
docker-down:
	$(DOCKER_COMPOSE_MAIN) down --remove-orphans

## docker-logs: tail logs from all services
docker-logs:
	$(DOCKER_COMPOSE_MAIN) logs -f --tail=200

## docker-ps: show container status
docker-ps:
	$(DOCKER_COMPOSE_MAIN) ps

## docker-restart: restart all services
docker-restart:
	$(DOCKER_COMPOSE_MAIN) restart

## docker-restart-worker: restart worker services only
docker-restart-worker:
	$(DOCKER_COMPOSE_MAIN) restart worker-1 worker-2

## docker-shell-worker: bash in the (first) worker-1 container
docker-shell-worker:
	$(DOCKER_COMPOSE_MAIN) exec worker-1 bash

## docker-shell-coordinator: bash in the coordinator container
docker-shell-coordinator:
	$(DOCKER_COMPOSE_MAIN) exec coordinator bash

## docker-test: single-worker integration test (own stack: host network, 127.0.0.1:55051/58080)
docker-test:
	scripts/docker/test-docker-integration.sh

## docker-test-multi: two-worker test: placement, concurrency, isolation over gRPC and MCP
docker-test-multi:
	scripts/docker/test-docker-multi.sh

## docker-clean: remove containers, volumes (all session data!) and tmp/dev, tmp/docker-test
docker-clean:
	$(DOCKER_COMPOSE_MAIN) down -v --remove-orphans
	@scripts/docker/compose.sh -p codegen-test -f docker-compose.test.yml --profile multi-worker down -v --remove-orphans >/dev/null 2>&1 || true
	rm -rf tmp/dev tmp/docker-test

## docker-clean-all: docker-clean + the images (product and offline base) and their build cache folder
docker-clean-all: docker-clean
	$(DOCKER_COMPOSE_MAIN) down --rmi all -v --remove-orphans
	-docker image rm codegen-mcp-base:bookworm-python codegen-mcp-base:bookworm-node20 codegen-mcp-base:bookworm 2>/dev/null
	rm -rf tmp/docker/base
