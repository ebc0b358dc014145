"""Fixtures for the security tests: their own `mecapy serve` (never shared with the
functional tests, so an attack that damages the server cannot hide behind a restart), started
with a secret in its environment that no function may ever see.

Run: python3 -m pytest tests/security -q
"""
import secrets
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harness  # noqa: E402

SECRET = "mecapy-test-secret-" + secrets.token_hex(16)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    harness.add_server_log_on_failure(item, call, outcome.get_result())


CANARY = """\
def main(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except Exception as e:
        return 'denied: ' + type(e).__name__
"""


def refuse_if_not_isolated(s):
    """The attacks below are bounded, but they are still attacks, run as whatever user runs
    the tests (root in CI). If a function can read a host file outside /tmp, the sandbox
    is not isolating the file system, and running them would attack this very machine:
    stop here with a clear error instead."""
    marker = s.root / "canary.txt"
    token = "canary-" + secrets.token_hex(8)
    marker.write_text(token)
    f = s.api.create_function("carol", s.api.unique("canary"), CANARY)
    t = s.api.execute("carol", f["id"], {"path": str(marker)}, wait=60, timeout=90)
    if t.get("result") == token:
        s.close()
        pytest.fail("a function read a host file outside /tmp: the server's sandbox is not "
                    "isolating (started with --no-sandbox?). Refusing to run the attack "
                    "tests against this host.", pytrace=False)


@pytest.fixture(scope="session")
def sec_stack():
    s = harness.start_stack("security", env={"MECAPY_TEST_SECRET": SECRET})
    refuse_if_not_isolated(s)
    yield s
    s.close()


@pytest.fixture(scope="session")
def api(sec_stack):
    return sec_stack.api


@pytest.fixture(scope="session")
def secret():
    return SECRET
