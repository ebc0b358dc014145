"""What the study suites share (test_studies.py, test_study_workflows.py): creating a
study, waiting for its end, reading its results as JSON pages or as CSV."""
import csv
import io
import time

import pytest

from harness import expect_status

# A function whose result changes each time it really runs: a cache hit is seen by an
# unchanged "run".
COUNTED = '''\
import uuid

def main(x: float) -> dict:
    return {"y": 2 * x, "run": uuid.uuid4().hex}
'''


def create_study(api, user, body, expect=201, **kw):
    r = api.post(user, "/studies", json=body, timeout=120, **kw)
    expect_status(r, expect)
    return r.json()


def wait_study(api, user, sid, timeout=120):
    """The study once it is no longer running (long polls of GET /studies/{id}?wait=)."""
    deadline = time.monotonic() + timeout
    while True:
        r = api.get(user, f"/studies/{sid}", params={"wait": "5"}, timeout=40)
        expect_status(r, 200)
        s = r.json()
        if s["status"] != "running":
            return s
        if time.monotonic() > deadline:
            pytest.fail(f"study {sid} still running after {timeout} s: {s}")


def all_results(api, user, sid):
    """Every row of the study's results, page after page."""
    items, cursor = [], None
    while True:
        params = {"limit": "200"}
        if cursor:
            params["cursor"] = cursor
        r = api.get(user, f"/studies/{sid}/results", params=params)
        expect_status(r, 200)
        page = r.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


def results_csv(api, user, sid):
    r = api.get(user, f"/studies/{sid}/results", headers={"Accept": "text/csv"})
    expect_status(r, 200)
    assert r.headers["Content-Type"].startswith("text/csv"), r.headers
    return list(csv.reader(io.StringIO(r.text)))


def kill9_once_completed(stack, user, sid, completed):
    """Once the study has `completed` points, kill -9 the stack's server (and what it
    started) mid-study and start it again on the same data."""
    deadline = time.monotonic() + 60
    while stack.api.get(user, f"/studies/{sid}").json()["progress"]["completed"] < completed:
        assert time.monotonic() < deadline, "the study did not progress"
        time.sleep(0.1)
    srv = stack.server
    srv.kill9()
    srv._sweep_group()
    srv.start()


def wait_none_running(api, user, sid, timeout=60):
    """The study once none of its points runs any more (after a cancel)."""
    deadline = time.monotonic() + timeout
    while True:
        s = api.get(user, f"/studies/{sid}").json()
        if s["progress"]["running"] == 0 or time.monotonic() > deadline:
            return s
        time.sleep(0.2)
