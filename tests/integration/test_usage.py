"""GET /api/v1/usage (docs/api.md#usage): the figures are those of the tasks that ran,
a member sees their own, a company admin their company's (never another company's),
CSV on Accept: text/csv, and bad dates, ranges and groupings are 422 at their parameter.
Runs on SQLite here and on PostgreSQL with MECAPY_TEST_BACKENDS=scaleout (tests/run.sh)."""
from __future__ import annotations

import csv
import datetime as dt
import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harness  # noqa: E402
from harness import User, assert_problem, error_paths, expect_status  # noqa: E402

OK = "def main(x: float = 1.0) -> float:\n    return 2 * x\n"
BAD = "def main(x: float = 1.0) -> float:\n    raise ValueError('no')\n"

USERS = [
    User("boss", "boss@use-a.test", "boss-pass-1234", "use-a", "admin"),
    User("eng", "eng@use-a.test", "eng-pass-1234", "use-a", "member"),
    User("ext", "ext@use-b.test", "ext-pass-1234", "use-b", "admin"),
]


def today() -> str:
    return dt.datetime.now(dt.timezone.utc).date().isoformat()


def uid(api, name):
    return expect_status(api.get(name, "/me"), 200).json()["id"]


@pytest.fixture(scope="module")
def ran():
    """Calls made once for the module: eng 3 (one failing) over two functions, boss 2,
    ext 1; returns the stack and the ended tasks by user."""
    stack = harness.start_stack("usage", users=USERS)
    api = stack.api
    ok = api.create_function("eng", "ok", OK)
    bad = api.create_function("eng", "bad", BAD, visibility="company")
    boss_fn = api.create_function("boss", "ok", OK)
    ext_fn = api.create_function("ext", "ok", OK)
    tasks = {
        "eng": [api.execute("eng", ok["id"], {"x": 1}), api.execute("eng", ok["id"], {"x": 2}),
                api.execute("eng", bad["id"], {})],
        "boss": [api.execute("boss", boss_fn["id"], {"x": 3}), api.execute("boss", bad["id"], {})],
        "ext": [api.execute("ext", ext_fn["id"], {"x": 4})],
    }
    assert [t["status"] for t in tasks["eng"]] == ["completed", "completed", "failed"]
    yield stack, tasks, {"ok": ok, "bad": bad, "boss": boss_fn, "ext": ext_fn}
    stack.close()


def totals(tasks):
    return {"calls": len(tasks), "failed": sum(t["status"] in ("failed", "timed_out") for t in tasks),
            "wall_ms": sum(t["execution_ms"] for t in tasks), "cpu_ms": sum(t["cpu_ms"] for t in tasks),
            "max_peak_memory_kb": max(t["peak_memory_kb"] for t in tasks)}


def figures(item):
    return {k: item[k] for k in ("calls", "failed", "wall_ms", "cpu_ms", "max_peak_memory_kb")}


def test_member_sees_their_own_by_day(ran):
    stack, tasks, _ = ran
    u = expect_status(stack.api.get("eng", "/usage"), 200).json()
    assert u["scope"] == "user" and u["group_by"] == "day" and u["to"] == today(), u
    assert [it["day"] for it in u["items"]] == [today()], u
    assert figures(u["items"][0]) == totals(tasks["eng"]), (u, tasks["eng"])


def test_by_function(ran):
    stack, tasks, fns = ran
    u = expect_status(stack.api.get("eng", "/usage", params={"group_by": "function"}), 200).json()
    by = {it["function_id"]: figures(it) for it in u["items"]}
    assert by == {fns["ok"]["id"]: totals(tasks["eng"][:2]), fns["bad"]["id"]: totals(tasks["eng"][2:])}, u


def test_company_admin_sees_the_company_by_user(ran):
    stack, tasks, _ = ran
    api = stack.api
    u = expect_status(api.get("boss", "/usage", params={"group_by": "user", "from": today(),
                                                        "to": today()}), 200).json()
    assert u["scope"] == "company", u
    by = {it["user_id"]: it for it in u["items"]}
    assert set(by) == {uid(api, "eng"), uid(api, "boss")}, u  # never ext's
    assert figures(by[uid(api, "eng")]) == totals(tasks["eng"])
    assert figures(by[uid(api, "boss")]) == totals(tasks["boss"])
    assert by[uid(api, "eng")]["email"] == "eng@use-a.test"
    day = expect_status(api.get("boss", "/usage"), 200).json()["items"]
    assert figures(day[0]) == totals(tasks["eng"] + tasks["boss"]), day


def test_no_usage_of_another_company(ran):
    stack, tasks, _ = ran
    u = expect_status(stack.api.get("ext", "/usage", params={"group_by": "user"}), 200).json()
    assert [it["user_id"] for it in u["items"]] == [uid(stack.api, "ext")], u
    assert figures(u["items"][0]) == totals(tasks["ext"])
    # a member of use-a who is no admin sees only their own, even grouped by user
    u = expect_status(stack.api.get("eng", "/usage", params={"group_by": "user"}), 200).json()
    assert [it["user_id"] for it in u["items"]] == [uid(stack.api, "eng")], u


def test_csv(ran):
    stack, tasks, _ = ran
    r = expect_status(stack.api.get("eng", "/usage", headers={"Accept": "text/csv"}), 200)
    assert r.headers["Content-Type"].startswith("text/csv"), r.headers
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["day", "calls", "failed", "wall_ms", "cpu_ms", "max_peak_memory_kb"], rows
    t = totals(tasks["eng"])
    assert rows[1] == [today()] + [str(t[k]) for k in rows[0][1:]], rows
    r = expect_status(stack.api.get("boss", "/usage", params={"group_by": "user", "format": "csv"}), 200)
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0][:2] == ["user_id", "email"] and len(rows) == 3, rows


def test_an_empty_range(ran):
    stack, _, _ = ran
    u = expect_status(stack.api.get("eng", "/usage", params={"from": "2020-01-01", "to": "2020-01-31"}),
                      200).json()
    assert u["items"] == [] and u["from"] == "2020-01-01", u


@pytest.mark.parametrize("params,field", [
    ({"from": "yesterday"}, "from"),
    ({"to": "2026-02-30"}, "to"),
    ({"from": "2026-13-01"}, "from"),
    ({"from": "2026-03-02", "to": "2026-03-01"}, "to"),
    ({"from": "2020-01-01", "to": "2026-01-01"}, "from"),
    ({"group_by": "month"}, "group_by"),
])
def test_bad_parameters_are_422_at_their_field(ran, params, field):
    stack, _, _ = ran
    p = assert_problem(stack.api.get("eng", "/usage", params=params), 422)
    assert error_paths(p) == [field], p


def test_cancelled_before_running_is_no_call(ran):
    """A call cancelled while queued never ran: it adds nothing."""
    stack, tasks, fns = ran
    api = stack.api
    before = expect_status(api.get("ext", "/usage"), 200).json()["items"]
    slow = api.create_function("ext", "slow", "import time\n\ndef main() -> int:\n"
                               "    time.sleep(2)\n    return 1\n")
    busy = [expect_status(api.execute_raw("ext", slow["id"], {}), 202).json() for _ in range(6)]
    # the server runs 4 at once by default: the last ones wait; cancel what still waits
    cancelled = []
    for t in busy:
        r = api.post("ext", f"/tasks/{t['id']}/cancel")
        if r.status_code == 200 and r.json().get("started_at") is None:
            cancelled.append(t["id"])
    ended = [api.wait_task("ext", t["id"]) for t in busy]
    ran_tasks = [t for t in ended if t["started_at"] is not None]
    after = expect_status(api.get("ext", "/usage"), 200).json()["items"]
    assert after[0]["calls"] == before[0]["calls"] + len(ran_tasks), (before, after, ended)
