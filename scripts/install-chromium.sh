#!/usr/bin/env bash
# Installs Debian's Chromium for the WebDemo browser test when it is missing (idempotent, quiet). scripts/test.sh
# calls it; run as root (CI, this project's machines) it needs no sudo, otherwise it uses password-less sudo.
# Playwright drives it at /usr/bin/chromium (or $SPM_CHROMIUM); Playwright's own browser download is never used.
set -euo pipefail
chromium="${SPM_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$chromium" ]; then exit 0; fi
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
  echo "install-chromium: not root and no sudo; install the 'chromium' package by hand" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
# Wait for another apt/dpkg run (another user's install) instead of failing on its lock at once.
lock=(-o DPkg::Lock::Timeout=300)
if ! { $sudo apt-get "${lock[@]}" update -qq && $sudo apt-get "${lock[@]}" install -y -qq chromium; } >"$log" 2>&1; then
  tail -n 20 "$log" >&2; rm -f "$log"
  echo "install-chromium: apt-get install chromium failed" >&2; exit 1
fi
rm -f "$log"
if [ ! -x "$chromium" ]; then
  echo "install-chromium: the chromium package is installed but $chromium is not there (SPM_CHROMIUM points elsewhere?)" >&2; exit 1
fi
echo "install-chromium: installed $("$chromium" --version 2>/dev/null | head -n 1)"
