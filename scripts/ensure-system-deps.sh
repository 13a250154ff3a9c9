#!/usr/bin/env bash
# What the worker needs from the system besides Node: python3 with venv, and bubblewrap for the
# sandbox (the worker falls back to plain processes without it, and says so), and libseccomp's
# Python binding for the sandbox's seccomp filter (Debian's python3-seccomp, for /usr/bin/python3;
# without it the worker runs with no filter and says so). Installs the missing ones with apt-get
# when running as root on Debian; otherwise only reports them.
set -euo pipefail
missing=()
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v prlimit >/dev/null || missing+=(util-linux)
{ [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import seccomp' 2>/dev/null; } || missing+=(python3-seccomp)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing: ${missing[*]}" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "warning: missing ${missing[*]} (install them for the full sandbox)" >&2
fi
