"""GET /readyz under a scale-out server (PostgreSQL store, Redis queue): 200 while both
answer; 503 problem+json naming the backend when Redis or PostgreSQL is stopped; 200
again once it is back. /healthz (liveness) stays 200 throughout: a load balancer takes the
server out of rotation, an orchestrator does not kill it.

Skipped (with the reason) when PostgreSQL or Redis cannot be started here.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import requests

import harness

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    harness.require_binary()
    svc = Path(tempfile.mkdtemp(prefix="readyz-svc-"))
    svc.chmod(0o755)  # the postgres user must enter it
    (svc / "pg").mkdir()
    (svc / "redis").mkdir()
    pg = redis = stack = None
    try:
        pg = harness.service("postgres", "start", svc / "pg", skip_if_unavailable=True)
        redis = harness.service("redis", "start", svc / "redis", skip_if_unavailable=True)
        stack = harness.start_stack("readyz", workers=0, extra_args=["--db", pg, "--queue", redis],
                                    admin_args=["--db", pg])
        yield stack, svc
    finally:
        if stack:
            stack.close()
        if redis:
            harness.service("redis", "stop", svc / "redis")
        if pg:
            harness.service("postgres", "stop", svc / "pg")
        if not os.environ.get("MECAPY_KEEP_TEST_DATA"):
            shutil.rmtree(svc, ignore_errors=True)


def ready(stack) -> requests.Response:
    return requests.get(stack.server.base + "/readyz", timeout=60)


def until_ready(stack, timeout: float = 40) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        r = ready(stack)
        if r.status_code == 200 or time.monotonic() > deadline:
            return r
        time.sleep(0.5)


@pytest.mark.parametrize("backend,what", [("redis", "queue"), ("postgres", "store")])
def test_readyz_names_the_backend_that_is_down(cluster, backend, what):
    stack, svc = cluster
    d = svc / ("pg" if backend == "postgres" else "redis")
    harness.expect_status(until_ready(stack), 200)
    harness.service(backend, "stop", d)
    try:
        r = ready(stack)
        p = harness.assert_problem(r, 503)
        assert f"the {what} is down" in p["detail"], p
        assert int(r.headers.get("Retry-After", "0")) >= 1, dict(r.headers)
        # Alive all the same.
        harness.expect_status(requests.get(stack.server.base + "/healthz", timeout=10), 200)
    finally:
        harness.service(backend, "start", d)
    r = until_ready(stack)
    harness.expect_status(r, 200)
    assert r.json()["checks"] == {"store": "ok", "queue": "ok", "blobs": "ok"}, r.text
