#!/usr/bin/env bash
# Installs Debian's Chromium for the WebDemo browser test when it is missing (idempotent, quiet).
# Playwright drives it at /usr/bin/chromium (or $SPM_CHROMIUM); Playwright's own browser download is never used.
set -euo pipefail
chromium="${SPM_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$chromium" ]; then exit 0; fi
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
  echo "install-chromium: not root and no sudo; install the 'chromium' package by hand" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium; } >"$log" 2>&1; then
  tail -n 20 "$log" >&2; rm -f "$log"
  echo "install-chromium: apt-get install chromium failed" >&2; exit 1
fi
rm -f "$log"
echo "install-chromium: installed $("$chromium" --version 2>/dev/null | head -n 1)"
