#!/usr/bin/env bash
# Headless Chromium for the browser tests (serve page, report.html): Debian's `chromium` package.
# Prints the browser's path; exits non-zero (with the reason) where it cannot be installed, and the
# browser tests then skip with that reason printed.
set -euo pipefail
for name in chromium chromium-browser google-chrome; do
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; exit 0; fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "no chromium and no apt-get to install it" >&2; exit 1
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-noto-cjk >/dev/null
command -v chromium
