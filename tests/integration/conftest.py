"""Fixtures for the integration tests: one real `mecapy serve` per session (shared by the
API, bad-input, engineering and CLI modules), with alice and bob in company "acme" and carol
in company "globex", each logged in. Modules that need their own server (crash tests) call
harness.start_stack() themselves.

Run: python3 -m pytest tests/integration -q   (MECAPY_BIN overrides build/mecapy)
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harness  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "crash: kills and restarts the server")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    harness.add_server_log_on_failure(item, call, outcome.get_result())


@pytest.fixture(scope="session")
def stack():
    """The shared server and its logged-in client (see harness.Stack)."""
    s = harness.start_stack("integration")
    yield s
    s.close()


@pytest.fixture(scope="session")
def api(stack):
    """harness.Api: api.get("alice", "/functions"), api.create_function("bob", ...),
    api.execute("alice", fid, {"F": 1}) -> ended task, ..."""
    return stack.api


@pytest.fixture
def fname(request):
    """A function name unique to this test."""
    return harness.Api.unique(request.node.name.replace("[", "-").replace("]", "")[:40])
