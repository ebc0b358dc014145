#!/usr/bin/env bash
# Validate the deployment files without a container engine or a cluster:
#   deploy/validate.sh            (MECAPY_BIN=path/to/mecapy to check another binary)
# Every check prints ok, FAIL or skip (with the reason: a missing tool); the last line is
# "N passed, N failed, N skipped"; the exit status is non-zero when a check failed.
# Uses Debian's /usr/bin/python3 with python3-yaml, and systemd-analyze when present.
set -euo pipefail
cd "$(dirname "$0")/.."
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)
exec "$py" deploy/validate.py "$@"
