#!/usr/bin/env bash
# What only the tests need from the system: Debian's chromium, which the live view's browser test
# drives with playwright-core (never a browser download). Installed with apt-get when missing and
# running as root on Debian; otherwise reported (the browser test then fails and says why).
set -euo pipefail
command -v chromium >/dev/null && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing: chromium (for the live view's browser test)" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "warning: chromium is missing (apt-get install chromium); the live view's browser test needs it" >&2
fi
