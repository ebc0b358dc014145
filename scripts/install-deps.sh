#!/usr/bin/env bash
# Install what building (and, with "test", testing; with "bench", benchmarking against
# the peers) MecaPy needs on Debian 12. As root it installs the missing Debian packages
# with apt; otherwise it names them and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-run}
pkgs=(gcc pkg-config meson ninja-build python3 python3-dev python3-numpy python3-scipy
      libmicrohttpd-dev libjansson-dev libsqlite3-dev libpq-dev libhiredis-dev libsodium-dev
      libseccomp-dev libcap-dev libcurl4-gnutls-dev librhonabwy-dev libyaml-dev ca-certificates
      libgnutls28-dev libarchive-dev libxlsxwriter-dev)
# The base environment every function imports from without requirements
# (docs/functions.md): the engineering stack beside numpy and scipy.
pkgs+=(python3-matplotlib python3-pandas python3-sympy python3-pint python3-openpyxl)
# The solver environment (functions declaring "solvers"): CalculiX, Gmsh, meshio.
pkgs+=(calculix-ccx gmsh python3-gmsh python3-meshio)
# PDF calculation sheets (docs/sheets.md): weasyprint renders the sheet's HTML.
pkgs+=(weasyprint)
# Per-function requirements (docs/operations.md#environments-functions-requirements):
# pip resolves and installs wheels from the operator's wheelhouse.
pkgs+=(python3-pip)
if [ "$what" = test ]; then
  # The real servers the suites start: PostgreSQL, Redis (S3 is s3rver from npm).
  pkgs+=(python3-pytest python3-requests python3-boto3 python3-cryptography python3-prometheus-client curl procps iproute2
         postgresql redis-server)
  # The browser the dashboard's tests drive (tests/browser, through playwright-core), and
  # promtool, which checks the /metrics text and the deploy/ alert rules, and amtool
  # (prometheus-alertmanager), which checks the Alertmanager example.
  pkgs+=(chromium prometheus prometheus-alertmanager)
  # The Python SDK's type check (mypy --strict over sdk/python) and its optional
  # pandas, which the SDK's tests and tutorials use; venv, setuptools and wheel for the
  # tests' offline `pip install ./sdk/python` into a virtual environment.
  pkgs+=(mypy python3-pandas python3-venv python3-setuptools python3-wheel)
  # CalculiX's own test decks with their reference results (tests/integration/test_solvers.py).
  pkgs+=(calculix-ccx-test)
  # pdftotext reads the PDF calculation sheets back (tests/integration/test_sheets.py).
  pkgs+=(poppler-utils)
fi
if [ "$what" = run ] || [ "$what" = test ]; then
  # The dashboard is built with Node (npm ci, vite build).
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

# From npm, the committed lockfile: the dashboard's build (Svelte, Vite, CodeMirror) for
# run and test, and the test tools (the OpenAPI linter, the S3 server, playwright-core,
# axe-core); installed again whenever the lockfile changes.
if { [ "$what" = run ] || [ "$what" = test ]; } && [ -f package-lock.json ]; then
  # Vite 7 needs Node 20.19 or later (Debian 12's nodejs is 18: use NodeSource's, or nvm).
  if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
    echo "the dashboard's build needs Node.js 20.19 or later; this is $(node --version)" >&2
    exit 1
  fi
  want=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ "$(cat node_modules/.lock-sha256 2>/dev/null)" != "$want" ]; then
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want" > node_modules/.lock-sha256
  fi
fi
exit 0
