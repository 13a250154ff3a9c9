#!/usr/bin/env bash
# Build the offline base images for Dockerfile.coordinator / Dockerfile.worker.
#
# For machines that reach Debian's package mirror but no image registry. Users
# with a registry never need this: the Dockerfiles default to
# node:20-bookworm-slim (build stage) and debian:bookworm-slim (runtime).
#
#   1. debootstrap a minimal Debian (variant minbase + ca-certificates) from the
#      mirror named in this machine's apt configuration, trim docs/locales/apt
#      lists, `docker import` it as $BASE_TAG (the coordinator's runtime);
#   2. $BASE_NODE_TAG: + this machine's Node.js ($(command -v node), v20+,
#      stripped) and npm in /usr/local (the build stage, and where the runtime
#      stages copy /usr/local/bin/node from);
#   3. $BASE_PYTHON_TAG: + python3, python3-venv, python3-pip, bubblewrap, netcat from the same
#      mirror (util-linux, for prlimit, is in minbase) (the worker's runtime).
#
# Each tag carries a label with a hash of the inputs (this script, the node
# binary, the mirror, this machine's extra CA certificates); a second run with
# the same inputs does nothing. --force rebuilds. --print-env prints the build
# arguments to hand to `make docker-build` / docker compose:
#   eval "$(scripts/docker/build-base-image.sh --print-env | sed 's/^/export /')"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BASE_TAG="${BASE_TAG:-codegen-mcp-base:bookworm}"
BASE_NODE_TAG="${BASE_NODE_TAG:-codegen-mcp-base:bookworm-node20}"
BASE_PYTHON_TAG="${BASE_PYTHON_TAG:-codegen-mcp-base:bookworm-python}"
SUITE="${DEBIAN_SUITE:-bookworm}"
WORKDIR="${BASE_IMAGE_WORKDIR:-$ROOT/tmp/docker/base}"
FORCE=0
PRINT_ENV=0

for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    --print-env) PRINT_ENV=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "build-base-image: unknown argument $arg" >&2; exit 2 ;;
  esac
done

print_env() {
  echo "NODE_IMAGE=$BASE_NODE_TAG"
  echo "COORDINATOR_BASE_IMAGE=$BASE_TAG"
  echo "WORKER_BASE_IMAGE=$BASE_PYTHON_TAG"
  echo "DOCKER_BUILD_NETWORK=host"
}
if [ "$PRINT_ENV" = 1 ]; then print_env; exit 0; fi

log() { echo "build-base-image: $*" >&2; }

# --- the mirror, from this machine's apt configuration ----------------------
# Reads deb822 *.sources and one-line *.list files (files with other endings,
# e.g. *.disabled, are ignored as apt ignores them). Prints "URI SUITE" lines.
apt_entries() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '
      function flush() { if (types ~ /(^| )deb( |$)/) { n = split(uris, u, " "); m = split(suites, s, " ");
                         for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) print u[i], s[j] } ; types = uris = suites = "" }
      /^[[:space:]]*#/ { next }
      /^[[:space:]]*$/ { flush(); next }
      /^Types:/  { sub(/^Types:[[:space:]]*/, "");  types = $0 }
      /^URIs:/   { sub(/^URIs:[[:space:]]*/, "");   uris = $0 }
      /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
      END { flush() }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [options] URI SUITE COMPONENTS...
    sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" && NF >= 3 { print $2, $3 }'
  done
}

MIRROR="${DEBIAN_MIRROR:-}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-}"
if [ -z "$MIRROR" ]; then
  MIRROR="$(apt_entries | awk -v s="$SUITE" '$2 == s { print $1; exit }')"
fi
if [ -z "$SECURITY_MIRROR" ]; then
  SECURITY_MIRROR="$(apt_entries | awk -v s="$SUITE-security" '$2 == s { print $1; exit }')"
fi
if [ -z "$MIRROR" ]; then
  log "no apt source for suite '$SUITE' in /etc/apt/sources.list(.d); set DEBIAN_MIRROR"
  exit 1
fi
MIRROR="${MIRROR%/}"
SECURITY_MIRROR="${SECURITY_MIRROR%/}"

# --- Node.js from this machine ------------------------------------------------
NODE_BIN="$(readlink -f "${NODE_BINARY:-$(command -v node)}")"
NODE_VERSION="$("$NODE_BIN" --version)"
case "$NODE_VERSION" in
  v2[0-9].*|v[3-9][0-9].*) ;;
  *) log "node $NODE_VERSION at $NODE_BIN is older than v20; set NODE_BINARY"; exit 1 ;;
esac
NPM_DIR="${NPM_DIR:-$(dirname "$NODE_BIN")/../lib/node_modules/npm}"
if [ ! -f "$NPM_DIR/bin/npm-cli.js" ]; then
  NPM_DIR="$(npm root -g 2>/dev/null)/npm"
fi
NPM_DIR="$(readlink -f "$NPM_DIR")"
[ -f "$NPM_DIR/bin/npm-cli.js" ] || { log "npm not found next to $NODE_BIN; set NPM_DIR"; exit 1; }
NPM_VERSION="$(node "$NPM_DIR/bin/npm-cli.js" --version 2>/dev/null || echo unknown)"

# Extra CA certificates this machine trusts (e.g. a TLS-inspecting egress proxy
# in front of the npm registry): the build stage's npm needs them too.
EXTRA_CA_DIR=/usr/local/share/ca-certificates
extra_ca_hash() { if [ -d "$EXTRA_CA_DIR" ]; then find "$EXTRA_CA_DIR" -type f -name '*.crt' -print0 | sort -z | xargs -0r cat | sha256sum | cut -c1-16; else echo none; fi; }

INPUTS_HASH="$( { cat "$0"; echo "$SUITE $MIRROR $SECURITY_MIRROR $NODE_VERSION $NPM_VERSION"; sha256sum "$NODE_BIN"; extra_ca_hash; } | sha256sum | cut -c1-16)"
LABEL=org.codegen-mcp.base-inputs

image_current() {
  local have
  have="$(docker image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true)"
  [ "$have" = "$INPUTS_HASH" ]
}

if [ "$FORCE" = 0 ] && image_current "$BASE_TAG" && image_current "$BASE_NODE_TAG" && image_current "$BASE_PYTHON_TAG"; then
  log "$BASE_TAG, $BASE_NODE_TAG, $BASE_PYTHON_TAG are current (inputs $INPUTS_HASH); nothing to do"
  exit 0
fi

command -v debootstrap >/dev/null || { log "debootstrap missing: apt-get install debootstrap"; exit 1; }
[ "$(id -u)" = 0 ] || { log "debootstrap needs root"; exit 1; }

START=$(date +%s)
mkdir -p "$WORKDIR"
ROOTFS="$WORKDIR/rootfs"
NODECTX="$WORKDIR/node-context"
CACHE="$WORKDIR/debs"
mkdir -p "$CACHE"
cleanup() { rm -rf "$ROOTFS" "$NODECTX"; }
trap cleanup EXIT
rm -rf "$ROOTFS" "$NODECTX"

# --- 1. minimal Debian --------------------------------------------------------
if [ "$FORCE" = 1 ] || ! image_current "$BASE_TAG"; then
  log "debootstrap $SUITE (minbase) from $MIRROR"
  debootstrap --variant=minbase --include=ca-certificates --cache-dir="$CACHE" \
    "$SUITE" "$ROOTFS" "$MIRROR" > "$WORKDIR/debootstrap.log" 2>&1 || {
      log "debootstrap failed; last lines of $WORKDIR/debootstrap.log:"; tail -n 30 "$WORKDIR/debootstrap.log" >&2; exit 1; }

  # apt sources inside the image: the same mirror(s) as this machine.
  {
    echo "deb $MIRROR $SUITE main"
    echo "deb $MIRROR $SUITE-updates main"
    if [ -n "$SECURITY_MIRROR" ]; then echo "deb $SECURITY_MIRROR $SUITE-security main"; fi
  } > "$ROOTFS/etc/apt/sources.list"

  # Keep later apt installs (the worker's python) as small as Docker's slim images.
  cat > "$ROOTFS/etc/dpkg/dpkg.cfg.d/01-codegen-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  cat > "$ROOTFS/etc/apt/apt.conf.d/01-codegen-slim" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
EOF

  # This machine's extra CA certificates (apt over https, npm in the build stage).
  if compgen -G "$EXTRA_CA_DIR/*.crt" >/dev/null; then
    mkdir -p "$ROOTFS$EXTRA_CA_DIR"
    cp "$EXTRA_CA_DIR"/*.crt "$ROOTFS$EXTRA_CA_DIR/"
    chroot "$ROOTFS" update-ca-certificates >/dev/null 2>&1 || log "update-ca-certificates in the image failed"
  fi

  rm -rf "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
         "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/cache/debconf/*-old \
         "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* "$ROOTFS"/tmp/*
  find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
  : > "$ROOTFS/etc/resolv.conf"; : > "$ROOTFS/etc/hostname"

  log "docker import -> $BASE_TAG"
  tar -C "$ROOTFS" --numeric-owner -c . | docker import \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "LABEL $LABEL=$INPUTS_HASH" \
    --change 'CMD ["bash"]' \
    --message "debootstrap $SUITE minbase from $MIRROR" \
    - "$BASE_TAG" >/dev/null
  rm -rf "$ROOTFS"
fi

# --- 2. + Node.js and npm -----------------------------------------------------
log "adding node $NODE_VERSION and npm $NPM_VERSION -> $BASE_NODE_TAG"
mkdir -p "$NODECTX"
cp "$NODE_BIN" "$NODECTX/node"
# The distribution's binary keeps its symbol table (~12 MB); the runtime images copy this one.
if command -v strip >/dev/null; then strip --strip-all "$NODECTX/node"; fi
cp -a "$NPM_DIR" "$NODECTX/npm"
printf 'cafile=/etc/ssl/certs/ca-certificates.crt\nfund=false\naudit=false\nupdate-notifier=false\n' > "$NODECTX/npmrc"
cat > "$NODECTX/Dockerfile" <<EOF
FROM $BASE_TAG
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
COPY npmrc /usr/local/etc/npmrc
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && node --version && npm --version
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
LABEL $LABEL=$INPUTS_HASH org.codegen-mcp.node-version=$NODE_VERSION
EOF
docker build -q -t "$BASE_NODE_TAG" "$NODECTX" > "$WORKDIR/node-base-build.log" 2>&1 || {
  log "node base build failed:"; tail -n 30 "$WORKDIR/node-base-build.log" >&2; exit 1; }

# --- 3. + python3, venv, bubblewrap -------------------------------------------
log "adding python3, python3-venv, python3-pip, python3-seccomp, bubblewrap, netcat-openbsd -> $BASE_PYTHON_TAG"
# Host networking: apt in the build reaches the same mirror as this machine.
docker build --network host -t "$BASE_PYTHON_TAG" - > "$WORKDIR/python-base-build.log" 2>&1 <<EOF || {
FROM $BASE_TAG
RUN apt-get update \\
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip python3-seccomp bubblewrap util-linux netcat-openbsd \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log \\
 && python3 --version && bwrap --version && prlimit --version
LABEL $LABEL=$INPUTS_HASH
EOF
  log "python base build failed; last lines of $WORKDIR/python-base-build.log:"; tail -n 30 "$WORKDIR/python-base-build.log" >&2; exit 1; }

log "done in $(( $(date +%s) - START ))s:"
for t in "$BASE_TAG" "$BASE_NODE_TAG" "$BASE_PYTHON_TAG"; do
  docker image inspect --format "  $t {{.Size}}" "$t" | awk '{ printf "  %s %.0f MB\n", $1, $2 / 1e6 }' >&2
done
