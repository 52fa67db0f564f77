#!/usr/bin/env bash
# Makes sure Debian's chromium is installed for the browser tests (playwright
# drives it; no browser is downloaded). Idempotent. METRIFLOW_CHROMIUM names
# another binary to use instead.
set -euo pipefail

log() { printf '[browser] %s\n' "$*"; }

if [ -n "${METRIFLOW_CHROMIUM:-}" ] && [ -x "$METRIFLOW_CHROMIUM" ]; then
  log "using $METRIFLOW_CHROMIUM"
  exit 0
fi
if command -v chromium >/dev/null; then
  log "chromium is installed: $(command -v chromium)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    log "chromium is missing and this user cannot install it: apt-get install chromium" >&2
    exit 1
  fi
fi
log "installing Debian's chromium"
$SUDO apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium >/dev/null
log "chromium installed: $(command -v chromium)"
