#!/usr/bin/env bash
# Install what building (and, with "test", testing; with "bench", benchmarking against
# the peers) MecaPy needs on Debian 12. As root it installs the missing Debian packages
# with apt; otherwise it names them and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-run}
pkgs=(gcc pkg-config meson ninja-build python3 python3-dev python3-numpy python3-scipy
      libmicrohttpd-dev libjansson-dev libsqlite3-dev libpq-dev libhiredis-dev libsodium-dev
      libseccomp-dev libcap-dev libcurl4-gnutls-dev librhonabwy-dev ca-certificates)
if [ "$what" = test ]; then
  # The real servers the suites start: PostgreSQL, Redis (S3 is s3rver from npm).
  pkgs+=(python3-pytest python3-requests python3-boto3 python3-cryptography python3-prometheus-client curl procps iproute2
         postgresql redis-server)
  command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
  command -v npm >/dev/null 2>&1 || pkgs+=(npm)
fi
if [ "$what" = bench ]; then
  # The peers measured in the same run, and the load client.
  pkgs+=(bubblewrap wrk python3-celery python3-redis redis-server python3-fastapi
         python3-uvicorn python3-requests)
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

# The test tools from npm (the OpenAPI linter, the S3 server), from the committed
# lockfile; installed again whenever the lockfile changes.
if [ "$what" = test ] && [ -f package-lock.json ]; then
  want=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ "$(cat node_modules/.lock-sha256 2>/dev/null)" != "$want" ]; then
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want" > node_modules/.lock-sha256
  fi
fi
exit 0
