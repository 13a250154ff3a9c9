#!/usr/bin/env bash
# Start a Docker engine when none answers, and wait until it does.
# Used by scripts/docker/ci.sh on machines without systemd (CI, dev sandboxes).
# Prints the PID of a dockerd it started into $DOCKERD_PIDFILE (default
# tmp/docker/dockerd.pid) so the caller can stop exactly that process.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PIDFILE="${DOCKERD_PIDFILE:-$ROOT/tmp/docker/dockerd.pid}"
LOGFILE="${DOCKERD_LOG:-$ROOT/tmp/docker/dockerd.log}"
TIMEOUT="${DOCKERD_START_TIMEOUT:-60}"

if docker info >/dev/null 2>&1; then
  echo "start-dockerd: a Docker engine already answers"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  echo "start-dockerd: dockerd not installed (apt-get install docker.io)" >&2
  exit 1
fi

mkdir -p "$(dirname "$PIDFILE")" "$(dirname "$LOGFILE")"
# A stale socket from a dockerd that died keeps clients hanging: remove it.
if [ -S /var/run/docker.sock ] && ! docker info >/dev/null 2>&1; then
  rm -f /var/run/docker.sock /var/run/docker.pid
fi

echo "start-dockerd: starting dockerd (log: $LOGFILE)"
# setsid: the engine outlives the calling shell's job control; it is stopped by
# its PID (scripts/docker/ci.sh) and never by name.
setsid dockerd >"$LOGFILE" 2>&1 < /dev/null &
echo $! > "$PIDFILE"

for _ in $(seq 1 "$TIMEOUT"); do
  if docker info >/dev/null 2>&1; then
    echo "start-dockerd: engine up ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
    exit 0
  fi
  if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "start-dockerd: dockerd exited; last log lines:" >&2
    tail -n 30 "$LOGFILE" >&2
    exit 1
  fi
  sleep 1
done
echo "start-dockerd: engine did not answer within ${TIMEOUT}s; last log lines:" >&2
tail -n 30 "$LOGFILE" >&2
exit 1
