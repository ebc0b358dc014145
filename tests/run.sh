#!/usr/bin/env bash
# Run every test suite and end with one line: "N passed, N failed[, N skipped]".
#   tests/run.sh BUILD_DIR ASAN_BUILD_DIR
# Unit and C security tests run from the sanitizer build; the HTTP suites drive the
# normal build's binary against servers they start themselves.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
asan=${2:-build-asan}
passed=0 failed=0 skipped=0
failures=()
add() { passed=$((passed + $1)); failed=$((failed + $2)); skipped=$((skipped + ${3:-0})); }
tmp=$(mktemp -d)
svc=$(mktemp -d)  # services' folders: outside $tmp, which is 0700 (postgres cannot enter it)
chmod 755 "$svc"
stop_services() {
  for s in tests/services/*.sh; do
    [ -d "$svc/$(basename "$s" .sh)" ] && "$s" stop "$svc/$(basename "$s" .sh)" >/dev/null 2>&1
  done
  rm -rf "$tmp" "$svc"
}
trap stop_services EXIT

# Real servers for the suites that need them, on loopback, stopped at exit. A service
# that cannot start here leaves its variable unset; the suites that need it say so.
start_service() {  # name VAR
  local name=$1 var=$2 dir="$svc/$1" url
  [ -x "tests/services/$name.sh" ] || return 0
  mkdir -p "$dir"
  if url=$("tests/services/$name.sh" start "$dir" 2>"$dir.err"); then
    export "$var=$url"
    echo "== $name: $url"
  else
    # The suites would skip their cases for it: count that as a failure, so a run
    # that could not test a backend never reads as green.
    echo "== $name could not start:"; tail -n 5 "$dir.err"
    add 0 1; failures+=("$name did not start")
  fi
}
start_service postgres MECAPY_TEST_POSTGRES_URL
# s3rver accepts any signature; these are the credentials it is set up with.
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
start_service s3 MECAPY_TEST_S3_URL
start_service oidc MECAPY_TEST_OIDC_ISSUER
start_service redis MECAPY_TEST_REDIS_URL

# C test programs print "N passed, N failed" as their last line.
run_c() {
  local exe=$1 name out line p f
  name=$(basename "$exe")
  echo "== $name"
  out="$tmp/$name.log"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    timeout 600 "$exe" >"$out" 2>&1
  local rc=$?
  grep -E '^(FAIL|ok  )' "$out" | grep '^FAIL' || true
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
  if [ -n "$line" ]; then
    p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
    add "$p" "$f"
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
      echo "   $name exited $rc after its cases passed (sanitizer report?):"; tail -n 30 "$out"
      add 0 1; failures+=("$name (exit $rc)")
    fi
    [ "$f" -gt 0 ] && { failures+=("$name"); sed -n '1,200p' "$out" | grep -vE '^ok  ' | tail -n 60; }
  else
    echo "   $name printed no summary (exit $rc):"; tail -n 40 "$out"
    add 0 1; failures+=("$name (crashed)")
  fi
  echo "   $line"
}

for exe in "$asan"/tests/unit/test-* "$asan"/tests/security/test-* "$asan"/tests/fuzz/fuzz-*; do
  [ -x "$exe" ] && [ -f "$exe" ] && run_c "$exe"
done

# The HTTP suites (pytest), against the normal build.
run_pytest() {  # label, then pytest arguments
  local label=$1 xml="$tmp/pytest-$1.xml" p f sk
  shift
  echo "== pytest ($label) $*"
  MECAPY_BIN="$PWD/$build/mecapy" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
    --junitxml="$xml" "$@" 2>&1 | tail -n 40
  if [ ! -f "$xml" ]; then
    add 0 1; failures+=("pytest $label (no report)"); return
  fi
  read -r p f sk < <(/usr/bin/python3 - "$xml" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == 'testsuite' else root.findall('testsuite')
t = sum(int(s.get('tests', 0)) for s in suites)
f = sum(int(s.get('failures', 0)) + int(s.get('errors', 0)) for s in suites)
sk = sum(int(s.get('skipped', 0)) for s in suites)
print(t - f - sk, f, sk)
PY
)
  add "$p" "$f" "$sk"
  [ "$f" -gt 0 ] && failures+=("pytest $label ($f)")
}

# On the embedded defaults: every suite.
run_pytest embedded tests/integration tests/security
# The same end-to-end suites, unchanged, on PostgreSQL + Redis + S3: each stack gets a
# database, a Redis and a bucket of its own. (The suites that choose their own backends
# or test no server — scale-out, several hosts, faults, OpenID, README, deploy — ran
# above.)
if [ -n "${MECAPY_TEST_POSTGRES_URL:-}" ] && [ -n "${MECAPY_TEST_S3_URL:-}" ]; then
  MECAPY_TEST_BACKENDS=scaleout run_pytest scaleout tests/integration \
    --ignore tests/integration/test_scaleout.py --ignore tests/integration/test_oidc.py \
    --ignore tests/integration/test_readme.py --ignore tests/integration/test_netns.py \
    --ignore tests/integration/test_faults.py --ignore tests/integration/test_deploy.py
fi

# The OpenAPI document must pass an independent validator.
echo "== redocly lint src/api/openapi.json"
if [ -x node_modules/.bin/redocly ]; then
  if node_modules/.bin/redocly lint src/api/openapi.json >"$tmp/lint.log" 2>&1; then
    add 1 0; tail -n 3 "$tmp/lint.log"
  else
    add 0 1; failures+=("openapi lint"); tail -n 40 "$tmp/lint.log"
  fi
else
  echo "   redocly is not installed (npm ci did not run)"; add 0 1; failures+=("openapi lint (not installed)")
fi

# The dashboard: its type-check (svelte-check over web/: TypeScript and the Svelte
# components), then the browser tests (tests/browser: chromium through playwright-core,
# against a real server serving web/dist), each flow one case.
echo "== svelte-check (web/)"
if [ -x node_modules/.bin/svelte-check ]; then
  if node_modules/.bin/svelte-check --workspace web --tsconfig ./tsconfig.json --fail-on-warnings \
      --output machine >"$tmp/svelte-check.log" 2>&1; then
    add 1 0; grep -E 'COMPLETED' "$tmp/svelte-check.log" | tail -n 1
  else
    add 0 1; failures+=("svelte-check"); grep -E 'ERROR|WARNING|COMPLETED' "$tmp/svelte-check.log" | tail -n 40
  fi
else
  echo "   svelte-check is not installed (npm ci did not run)"; add 0 1; failures+=("svelte-check (not installed)")
fi
echo "== browser tests (tests/browser)"
MECAPY_BIN="$PWD/$build/mecapy" timeout 900 node --test --test-concurrency=1 --test-reporter=tap \
  tests/browser/ >"$tmp/browser.log" 2>&1
grep -E 'screenshots: |^ *not ok' "$tmp/browser.log" | sed 's/^# *//' | head -n 20
bp=$(grep -E '^# pass [0-9]+' "$tmp/browser.log" | tail -n 1 | awk '{print $3}')
bf=$(grep -E '^# fail [0-9]+' "$tmp/browser.log" | tail -n 1 | awk '{print $3}')
if [ -z "$bp" ] || [ -z "$bf" ]; then
  echo "   the browser tests printed no summary:"; tail -n 40 "$tmp/browser.log"
  add 0 1; failures+=("browser tests (no summary)")
else
  add "$bp" "$bf"
  echo "   $bp passed, $bf failed"
  [ "$bf" -gt 0 ] && { failures+=("browser tests ($bf)"); grep -E -A 30 '^ *not ok' "$tmp/browser.log" | head -n 120; }
fi

# The Python SDK's annotations: mypy --strict over sdk/python (one case).
echo "== mypy --strict sdk/python"
if command -v mypy >/dev/null 2>&1; then
  if (cd sdk/python && mypy --strict --cache-dir=/dev/null mecapy) >"$tmp/mypy.log" 2>&1; then
    add 1 0; tail -n 1 "$tmp/mypy.log"
  else
    add 0 1; failures+=("mypy sdk/python"); tail -n 40 "$tmp/mypy.log"
  fi
else
  echo "   mypy is not installed (scripts/install-deps.sh test)"; add 0 1; failures+=("mypy (not installed)")
fi

echo
[ ${#failures[@]} -gt 0 ] && printf 'failed: %s\n' "${failures[@]}"
if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
