"""The operators' figures (docs/operations.md#the-operators-figures): GET
/api/v1/admin/stats for accounts made with `mecapy admin create-user --operator` only (403
for everyone else, company admins included), `mecapy admin stats`, and figures that match
the calls this server ran: calls a day, errors, active users, latency percentiles, cache
hits, and the cost per call from --worker-hour-cost. Runs on SQLite here and on PostgreSQL
with MECAPY_TEST_BACKENDS=scaleout (tests/run.sh)."""
from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harness  # noqa: E402
from harness import User, assert_problem, expect_status  # noqa: E402

OK = "def main(x: float = 1.0) -> float:\n    return 2 * x\n"
BAD = "def main(x: float = 1.0) -> float:\n    raise ValueError('no')\n"
COST = 0.36  # a worker-hour: 0.0001 a second

USERS = [
    User("boss", "boss@stats-a.test", "boss-pass-1234", "stats-a", "admin"),
    User("eng", "eng@stats-a.test", "eng-pass-1234", "stats-a", "member"),
    User("ext", "ext@stats-b.test", "ext-pass-1234", "stats-b", "member"),
]
OPERATOR = User("op", "op@platform.test", "op-pass-1234", "platform", "member")


def admin(stack, *args):
    extra = stack.backends.args if stack.backends else []
    return stack.cli("admin", *args, "--data-dir", str(stack.data_dir), *extra)


@pytest.fixture(scope="module")
def st():
    stack = harness.start_stack("stats", users=USERS, extra_args=["--worker-hour-cost", str(COST)])
    api = stack.api
    r = admin(stack, "create-user", "--email", OPERATOR.email, "--password", OPERATOR.password,
              "--company", OPERATOR.company, "--operator")
    assert r.returncode == 0 and "operator" in r.stdout, r.stderr
    api.users["op"] = OPERATOR
    api.login("op")
    ok = api.create_function("eng", "ok", OK, cache=True)
    bad = api.create_function("ext", "bad", BAD)
    tasks = [api.execute("eng", ok["id"], {"x": 1}), api.execute("eng", ok["id"], {"x": 2}),
             api.execute("ext", bad["id"], {})]
    hit = api.execute("eng", ok["id"], {"x": 1})
    assert hit["cached_from"] == tasks[0]["id"], hit
    yield stack, tasks
    stack.close()


def test_only_operators(st):
    stack, _ = st
    for who in ("eng", "boss", "ext"):
        assert_problem(stack.api.get(who, "/admin/stats"), 403)


def test_me_says_operator(st):
    stack, _ = st
    assert expect_status(stack.api.get("op", "/me"), 200).json()["operator"] is True
    for who in ("eng", "boss", "ext"):
        assert expect_status(stack.api.get(who, "/me"), 200).json()["operator"] is False
    assert_problem(stack.api.get(None, "/admin/stats"), 401)
    expect_status(stack.api.get("op", "/admin/stats"), 200)


def check(s, tasks):
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert s["calls"] == 3 and s["failed"] == 1 and s["error_rate"] == pytest.approx(1 / 3), s
    assert s["calls_per_day"] == [{"day": today, "calls": 3, "failed": 1, "active_users": 2}], s
    assert s["active_users"] == 2 and s["functions_created"] == 2 and s["functions_live"] == 2, s
    assert s["cache_hits"] == 1 and s["cache_hit_rate"] == pytest.approx(1 / 4), s
    lat = s["latency_ms"]
    assert 0 <= lat["p50"] <= lat["p95"] <= lat["p99"], lat
    wall = sum(t["execution_ms"] for t in tasks)
    assert s["worker_hours"] == pytest.approx(wall / 3.6e6), s
    assert s["worker_hour_cost"] == COST and s["cost_per_call"] == pytest.approx(COST * wall / 3.6e6 / 3), s


def test_figures_match_the_calls_that_ran(st):
    stack, tasks = st
    check(expect_status(stack.api.get("op", "/admin/stats", params={"days": 1}), 200).json(), tasks)
    s = expect_status(stack.api.get("op", "/admin/stats"), 200).json()
    assert s["days"] == 7 and s["calls"] == 3, s
    assert_problem(stack.api.get("op", "/admin/stats", params={"days": 0}), 400)


def test_operator_command(st):
    stack, tasks = st
    r = admin(stack, "stats", "--days", "1", "--worker-hour-cost", str(COST))
    assert r.returncode == 0, r.stderr
    check(json.loads(r.stdout), tasks)
    r = admin(stack, "stats")  # without a cost: no cost per call
    assert r.returncode == 0 and json.loads(r.stdout)["cost_per_call"] is None, r.stdout
    r = admin(stack, "stats", "--days", "x")
    assert r.returncode == 2 and "--days" in r.stderr, r.stderr
