"""Quotas (docs/api.md#quotas, docs/operations.md#usage-and-quotas): who sets them, each
refusal with its QuotaExceeded problem (quota, limit, resets_at) and Retry-After, what was
accepted is never dropped, a study under a concurrency quota waits instead of failing,
and `mecapy admin quota` for operators. Runs on SQLite here and on PostgreSQL with
MECAPY_TEST_BACKENDS=scaleout (tests/run.sh)."""
from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harness  # noqa: E402
from harness import User, assert_problem, error_paths, expect_status  # noqa: E402

OK = "def main(x: float = 1.0) -> float:\n    return 2 * x\n"
SLOW = "import time\n\ndef main(x: float = 1.0) -> float:\n    time.sleep(1.5)\n    return x\n"
STEP = "import time\n\ndef main(i: int) -> int:\n    time.sleep(0.2)\n    return i\n"

USERS = [
    User("boss", "boss@quota-a.test", "boss-pass-1234", "quota-a", "admin"),
    User("eng", "eng@quota-a.test", "eng-pass-1234", "quota-a", "member"),
    User("dev", "dev@quota-a.test", "dev-pass-1234", "quota-a", "member"),
    User("ext", "ext@quota-b.test", "ext-pass-1234", "quota-b", "admin"),
    User("solo", "solo@quota-c.test", "solo-pass-1234", "quota-c", "admin"),
]
LIMITS = ("concurrent_calls", "calls_per_day", "cpu_seconds_per_month", "storage_mb")


@pytest.fixture(scope="module")
def qs():
    stack = harness.start_stack("quotas", users=USERS)
    yield stack
    stack.close()


def uid(api, name):
    return expect_status(api.get(name, "/me"), 200).json()["id"]


def put(api, who, **body):
    return api.put(who, "/company/quotas", json=body)


def clear(api, who, user_id=None):
    expect_status(put(api, who, user_id=user_id), 200)


def quota_problem(r, status, quota, limit):
    p = assert_problem(r, status)
    assert p["type"].endswith("QuotaExceeded"), p
    assert p["quota"] == quota and p["limit"] == limit, p
    return p


def next_midnight() -> dt.datetime:
    now = dt.datetime.now(dt.timezone.utc)
    return dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.timezone.utc)


def parse_time(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def admin(stack, *args):
    extra = stack.backends.args if stack.backends else []
    return stack.cli("admin", *args, "--data-dir", str(stack.data_dir), *extra)


def test_set_and_read(qs):
    api = qs.api
    r = expect_status(put(api, "boss", concurrent_calls=5, calls_per_day=None, storage_mb=100), 200).json()
    assert {k: r[k] for k in LIMITS} == {"concurrent_calls": 5, "calls_per_day": None,
                                         "cpu_seconds_per_month": None, "storage_mb": 100}, r
    assert r["user_id"] is None and set(r["used"]) == {"concurrent_calls", "calls_today",
                                                        "cpu_ms_this_month", "stored_bytes"}, r
    eng = uid(api, "eng")
    expect_status(put(api, "boss", user_id=eng, calls_per_day=50), 200)
    g = expect_status(api.get("boss", "/company/quotas"), 200).json()
    assert g["concurrent_calls"] == 5 and [m["user_id"] for m in g["members"]] == [eng], g
    assert g["members"][0]["calls_per_day"] == 50 and g["members"][0]["concurrent_calls"] is None
    # a member reads the company's and their own, not another member's
    assert "members" not in expect_status(api.get("eng", "/company/quotas"), 200).json()
    own = expect_status(api.get("eng", "/company/quotas", params={"user_id": eng}), 200).json()
    assert own["calls_per_day"] == 50 and own["user_id"] == eng, own
    assert_problem(api.get("dev", "/company/quotas", params={"user_id": eng}), 403)
    # PUT replaces: what is not named is unlimited again; all null removes the quota
    r = expect_status(put(api, "boss", storage_mb=10), 200).json()
    assert r["concurrent_calls"] is None and r["storage_mb"] == 10, r
    clear(api, "boss")
    clear(api, "boss", eng)
    g = expect_status(api.get("boss", "/company/quotas"), 200).json()
    assert all(g[k] is None for k in LIMITS) and g["members"] == [], g
    # each change is in the company's audit log
    events = expect_status(api.get("boss", "/audit", params={"kind": "quota_set"}), 200).json()["items"]
    assert len(events) >= 5 and {e["target_id"] for e in events} >= {eng}, events


def test_who_may_set(qs):
    api = qs.api
    assert_problem(put(api, "eng", calls_per_day=1), 403)
    # another company's member is no member here: 404, the same as an unknown id
    assert_problem(put(api, "boss", user_id=uid(api, "ext"), calls_per_day=1), 404)
    assert_problem(put(api, "boss", user_id="not-an-id", calls_per_day=1), 404)


def test_bad_values_are_422_at_their_field(qs):
    api = qs.api
    p = assert_problem(put(api, "boss", concurrent_calls=0, calls_per_day="ten", storage_mb=-1,
                           cpu_seconds_per_month=1.5, monthly=3), 422)
    assert set(error_paths(p)) == {"concurrent_calls", "calls_per_day", "storage_mb",
                                   "cpu_seconds_per_month", "monthly"}, p


def test_calls_per_day(qs):
    api = qs.api
    fn = api.create_function("dev", harness.Api.unique("daily"), OK)
    used = expect_status(api.get("dev", "/company/quotas", params={"user_id": uid(api, "dev")}),
                         200).json()["used"]["calls_today"]
    expect_status(put(api, "boss", user_id=uid(api, "dev"), calls_per_day=used + 2), 200)
    try:
        assert api.execute("dev", fn["id"], {"x": 1})["status"] == "completed"
        assert api.execute("dev", fn["id"], {"x": 2})["status"] == "completed"
        r = api.execute_raw("dev", fn["id"], {"x": 3})
        p = quota_problem(r, 429, "calls_per_day", used + 2)
        assert p["scope"] == "user" and parse_time(p["resets_at"]) == next_midnight(), p
        retry = int(r.headers["Retry-After"])
        left = (next_midnight() - dt.datetime.now(dt.timezone.utc)).total_seconds()
        assert 0 < retry <= left + 2 and p["retry_after"] == retry, (retry, left)
        # another member is not held by dev's quota
        other = api.create_function("eng", harness.Api.unique("other"), OK)
        assert api.execute("eng", other["id"], {"x": 1})["status"] == "completed"
    finally:
        clear(api, "boss", uid(api, "dev"))
    assert api.execute("dev", fn["id"], {"x": 3})["status"] == "completed"


def test_concurrent_calls_and_nothing_accepted_is_dropped(qs):
    api = qs.api
    fn = api.create_function("eng", harness.Api.unique("slow"), SLOW)
    expect_status(put(api, "boss", concurrent_calls=1), 200)  # the company's
    try:
        first = expect_status(api.execute_raw("eng", fn["id"], {"x": 1}), 202).json()
        r = api.execute_raw("eng", fn["id"], {"x": 2})
        p = quota_problem(r, 429, "concurrent_calls", 1)
        assert p["scope"] == "company" and p["resets_at"] is None and r.headers["Retry-After"] == "1", p
        # another member of the company shares the company's quota
        dev_fn = api.create_function("dev", harness.Api.unique("ok"), OK)
        quota_problem(api.execute_raw("dev", dev_fn["id"], {"x": 1}), 429, "concurrent_calls", 1)
        # the call accepted first runs to its end
        done = api.wait_task("eng", first["id"])
        assert done["status"] == "completed" and done["result"] == 1, done
        assert api.execute("eng", fn["id"], {"x": 3})["status"] == "completed"
    finally:
        clear(api, "boss")


def test_cpu_and_storage_are_403(qs):
    api = qs.api
    fn = api.create_function("solo", harness.Api.unique("ok"), OK)
    expect_status(put(api, "solo", cpu_seconds_per_month=0), 200)
    try:
        p = quota_problem(api.execute_raw("solo", fn["id"], {"x": 1}), 403, "cpu_seconds_per_month", 0)
        now = dt.datetime.now(dt.timezone.utc)
        first = dt.datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=dt.timezone.utc)
        assert parse_time(p["resets_at"]) == first and p["retry_after"] is None, p
        expect_status(put(api, "solo", storage_mb=0), 200)
        r = api.execute_raw("solo", fn["id"], {"x": 1})
        p = quota_problem(r, 403, "storage_mb", 0)
        assert p["resets_at"] is None and "Retry-After" not in r.headers, p
    finally:
        clear(api, "solo")
    assert api.execute("solo", fn["id"], {"x": 1})["status"] == "completed"


def test_a_study_under_a_concurrency_quota_completes_every_point(qs):
    api = qs.api
    ext = uid(api, "ext")
    fn = api.create_function("ext", harness.Api.unique("step"), STEP)
    expect_status(put(api, "ext", user_id=ext, concurrent_calls=1), 200)
    try:
        r = api.post("ext", "/studies", json={"target": {"function": fn["id"]}, "concurrency": 4,
                                              "design": {"type": "grid", "params": {"i": list(range(6))}}})
        s = expect_status(r, 201).json()
        deadline = time.monotonic() + 120
        while True:
            s = expect_status(api.get("ext", f"/studies/{s['id']}"), 200).json()
            if s["status"] != "running" or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert s["status"] == "completed" and s["progress"]["completed"] == 6, s
        assert s["progress"]["failed"] == 0, s
        # one at a time: no two of its calls ran at once
        items = expect_status(api.get("ext", f"/studies/{s['id']}/results"), 200).json()["items"]
        spans = sorted((parse_time(t["started_at"]), parse_time(t["finished_at"]))
                       for t in (api.task("ext", it["task_id"]) for it in items))
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans
    finally:
        clear(api, "ext", ext)
    m = requests.get(qs.server.base + "/metrics", timeout=10).text
    held = [ln for ln in m.splitlines() if ln.startswith("mecapy_quota_held_starts_total ")]
    assert held and float(held[0].split()[1]) > 0, held


def wait_progress(api, who, sid, until, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        s = expect_status(api.get(who, f"/studies/{sid}"), 200).json()
        if until(s):
            return s
        assert time.monotonic() < deadline, s
        time.sleep(0.3)


@pytest.mark.parametrize("quota", ["calls_per_day", "storage_mb"])
def test_a_study_is_held_by_the_day_and_storage_quotas_until_they_allow(qs, quota):
    """A study's calls are never refused, but they do not pass the day's calls or the
    storage either: past the quota its points wait (queued), and go on once it is raised."""
    api = qs.api
    solo = uid(api, "solo")
    fn = api.create_function("solo", harness.Api.unique("held"), STEP)
    used = expect_status(api.get("solo", "/company/quotas", params={"user_id": solo}), 200).json()["used"]
    limit = used["calls_today"] + 3 if quota == "calls_per_day" else 0
    expect_status(put(api, "solo", user_id=solo, **{quota: limit}), 200)
    try:
        s = expect_status(api.post("solo", "/studies", json={
            "target": {"function": fn["id"]}, "concurrency": 2,
            "design": {"type": "grid", "params": {"i": list(range(6))}}}), 201).json()
        if quota == "calls_per_day":
            # At most three run; the others wait.
            s = wait_progress(api, "solo", s["id"], lambda s: s["progress"]["completed"] >= 1)
            time.sleep(3)
        else:
            time.sleep(3)  # storage used up from the start: nothing may start
        s = expect_status(api.get("solo", f"/studies/{s['id']}"), 200).json()
        assert s["status"] == "running", s
        assert s["progress"]["completed"] <= (3 if quota == "calls_per_day" else 0), s
        assert s["progress"]["queued"] >= 1 and s["progress"]["failed"] == 0, s
    finally:
        clear(api, "solo", solo)
    s = wait_progress(api, "solo", s["id"], lambda s: s["status"] != "running")
    assert s["status"] == "completed" and s["progress"]["completed"] == 6, s


def test_refusals_are_counted_by_quota(qs):
    m = requests.get(qs.server.base + "/metrics", timeout=10).text
    lines = {ln.split()[0]: float(ln.split()[1]) for ln in m.splitlines()
             if ln.startswith("mecapy_quota_refusals_total{")}
    assert lines['mecapy_quota_refusals_total{quota="calls_per_day"}'] >= 1, lines
    assert lines['mecapy_quota_refusals_total{quota="concurrent_calls"}'] >= 2, lines
    assert lines['mecapy_quota_refusals_total{quota="storage_mb"}'] >= 1, lines


def test_operator_command(qs):
    api = qs.api
    r = admin(qs, "quota", "--company", "quota-b", "--user", "EXT@quota-b.test", "--calls-per-day", "7",
              "--storage-mb", "3")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["calls_per_day"] == 7 and out["storage_mb"] == 3 and out["concurrent_calls"] is None, out
    # options not given keep their value; "unlimited" clears one
    r = admin(qs, "quota", "--company", "quota-b", "--user", "ext@quota-b.test", "--storage-mb", "unlimited")
    assert r.returncode == 0 and json.loads(r.stdout)["calls_per_day"] == 7, r.stdout + r.stderr
    g = expect_status(api.get("ext", "/company/quotas", params={"user_id": uid(api, "ext")}), 200).json()
    assert g["calls_per_day"] == 7 and g["storage_mb"] is None, g
    r = admin(qs, "quota", "--company", "quota-b", "--concurrent-calls", "9")
    assert r.returncode == 0 and json.loads(r.stdout)["concurrent_calls"] == 9, r.stderr
    assert expect_status(api.get("ext", "/company/quotas"), 200).json()["concurrent_calls"] == 9
    # mistakes are told, nothing changed
    r = admin(qs, "quota", "--company", "no-such-co", "--calls-per-day", "1")
    assert r.returncode == 1 and "no-such-co" in r.stderr, r.stderr
    r = admin(qs, "quota", "--company", "quota-b", "--user", "eng@quota-a.test", "--calls-per-day", "1")
    assert r.returncode == 1 and "not a member" in r.stderr, r.stderr
    r = admin(qs, "quota", "--company", "quota-b", "--calls-per-day", "many")
    assert r.returncode == 2 and "--calls-per-day" in r.stderr, r.stderr
    r = admin(qs, "quota", "--company", "quota-b", "--concurrent-calls", "0")
    assert r.returncode == 1 and "concurrent_calls" in r.stdout + r.stderr, r.stderr
    admin(qs, "quota", "--company", "quota-b", "--concurrent-calls", "unlimited")
    admin(qs, "quota", "--company", "quota-b", "--user", "ext@quota-b.test", "--calls-per-day", "unlimited")


def test_concurrency_is_one_count_across_api_nodes(qs):
    """Calls sent at once are admitted against one count in the store: on PostgreSQL
    (scaleout) through two API nodes sharing it, on SQLite through one node's threads.
    Exactly the quota's worth are accepted; every other is a QuotaExceeded 429."""
    api = qs.api
    solo = uid(api, "solo")
    fn = api.create_function("solo", harness.Api.unique("hold"),
                             "import time\n\ndef main(x: int) -> int:\n    time.sleep(6)\n    return x\n")
    bases = [qs.server.base]
    second = None
    if qs.backends:
        d = qs.root / "node2"
        d.mkdir()
        second = harness.Server(d, workers=0, extra_args=qs.backends.args)
        second.start()
        bases.append(second.base)
    expect_status(put(api, "solo", user_id=solo, concurrent_calls=3), 200)
    token = api.users["solo"].token
    try:
        from concurrent.futures import ThreadPoolExecutor

        n = 32
        sessions = [requests.Session() for _ in range(n)]
        for i, s in enumerate(sessions):  # connections opened before the burst
            s.headers["Authorization"] = f"Bearer {token}"
            expect_status(s.get(f"{bases[i % len(bases)]}/api/v1/me", timeout=30), 200)
        start = threading.Barrier(n)

        def call(i):
            start.wait()
            return sessions[i].post(f"{bases[i % len(bases)]}/api/v1/functions/{fn['id']}/execute",
                                    json={"inputs": {"x": i}}, timeout=30)

        with ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(call, range(n)))
        codes = sorted(r.status_code for r in answers)
        assert codes == [202] * 3 + [429] * (n - 3), [(r.status_code, r.text[:200]) for r in answers]
        for r in answers:
            if r.status_code == 429:
                quota_problem(r, 429, "concurrent_calls", 3)
        for r in answers:
            if r.status_code == 202:
                assert api.wait_task("solo", r.json()["id"])["status"] == "completed"
    finally:
        clear(api, "solo", solo)
        if second:
            second.stop()


def test_operator_limits_a_user_of_no_company(qs):
    """A user of no company (one who signed up, say) has no company admin: the operator
    sets their quota with --user alone."""
    api = qs.api
    r = admin(qs, "create-user", "--email", "lone@quota.test", "--password", "lone-pass-1234")
    assert r.returncode == 0, r.stderr
    api.users["lone"] = User("lone", "lone@quota.test", "lone-pass-1234", "")
    api.login("lone")
    r = admin(qs, "quota", "--user", "lone@quota.test", "--calls-per-day", "1")
    assert r.returncode == 0 and json.loads(r.stdout)["calls_per_day"] == 1, r.stdout + r.stderr
    fn = api.create_function("lone", "ok", OK)
    assert api.execute("lone", fn["id"], {"x": 1})["status"] == "completed"
    p = quota_problem(api.execute_raw("lone", fn["id"], {"x": 2}), 429, "calls_per_day", 1)
    assert p["scope"] == "user", p
    # the quotas of companies are not theirs to read
    assert_problem(api.get("lone", "/company/quotas"), 404)
    r = admin(qs, "quota")
    assert r.returncode == 2 and "--company or --user" in r.stderr, r.stderr


BIG = ("from pathlib import Path\n"
       "def main(n: int = 1) -> int:\n"
       "    Path('outputs').mkdir(exist_ok=True)\n"
       "    Path('outputs/blob.bin').write_bytes(b'x' * 1100000)\n"
       "    return n\n")


def test_deleting_a_task_gives_its_storage_back(qs):
    """A user at the storage quota calls again once they delete tasks: a deleted task's
    bytes leave what the quota counts."""
    api = qs.api
    fn = api.create_function("solo", harness.Api.unique("big"), BIG)
    t = api.execute("solo", fn["id"], {"n": 1})
    assert t["status"] == "completed", t
    expect_status(put(api, "solo", storage_mb=1), 200)
    try:
        quota_problem(api.execute_raw("solo", fn["id"], {"n": 2}), 403, "storage_mb", 1)
        used = expect_status(api.get("solo", "/company/quotas"), 200).json()["used"]["stored_bytes"]
        assert used >= 1100000, used
        expect_status(api.delete("solo", f"/tasks/{t['id']}"), 204)
        after = expect_status(api.get("solo", "/company/quotas"), 200).json()["used"]["stored_bytes"]
        assert after <= used - 1100000, (used, after)
        t2 = api.execute("solo", fn["id"], {"n": 3})
        assert t2["status"] == "completed", t2
    finally:
        clear(api, "solo")
