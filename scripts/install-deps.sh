#!/usr/bin/env bash
# Install what building (and, with "test", testing) MecaPy needs on Debian 12.
# As root it installs the missing Debian packages with apt; otherwise it names them.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-run}
pkgs=(gcc pkg-config meson ninja-build python3 python3-numpy python3-scipy
      libmicrohttpd-dev libjansson-dev libsqlite3-dev libsodium-dev libseccomp-dev libcap-dev
      libcurl4-gnutls-dev ca-certificates)
if [ "$what" = test ]; then
  pkgs+=(python3-pytest python3-requests curl procps iproute2)
  command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
  command -v npm >/dev/null 2>&1 || pkgs+=(npm)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "MecaPy needs these Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# The OpenAPI linter for the tests, from the committed lockfile.
if [ "$what" = test ] && [ -f package-lock.json ] && [ ! -d node_modules/@redocly ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
exit 0
