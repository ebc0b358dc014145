"""A burst: 1000 calls submitted at once across 50 functions and 5 users.

Every call completes with its own right result, nothing is left behind when the server
stops, and once the warm instances have retired the process tree is back to its size
before the burst. Behaviour, not speed: the only time bounds are generous deadlines.
"""
import concurrent.futures as cf
import time
from pathlib import Path

import pytest

import harness

USERS = [harness.User(f"u{i}", f"u{i}@load.test", f"load-pass-{i}-1234", "loadco") for i in range(5)]
FUNCTIONS = 50
CALLS = 1000
IDLE_S = 3  # warm instances retire after this much idle time in this test


def tree(server: harness.Server) -> list[int]:
    return [server.pid] + harness.descendants(server.pid)


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


@pytest.fixture(scope="module")
def load_stack():
    s = harness.start_stack("load", users=USERS, workers=4,
                            extra_args=["--instance-idle", str(IDLE_S)])
    yield s
    s.close()


def test_burst_of_1000_calls_all_right_and_nothing_left(load_stack):
    api, server = load_stack.api, load_stack.server
    # The baseline: the server with its executor and zygote up, before any function.
    time.sleep(1.0)
    base_procs = len(tree(server))
    base_rss = rss_kib(tree(server))

    # 50 functions, 10 per user, each with its own constant so a wrong routing shows.
    fns = []
    for i in range(FUNCTIONS):
        user = USERS[i % len(USERS)].name
        code = f"K = {i}\n\ndef main(x: int) -> dict:\n    return {{'k': K, 'y': x * 3 + K}}\n"
        f = api.create_function(user, harness.Api.unique(f"load{i}"), code)
        fns.append((user, f["id"], i))

    def submit(n):
        user, fid, k = fns[n % FUNCTIONS]
        r = api.execute_raw(user, fid, {"x": n})
        harness.expect_status(r, 202, 200)
        return user, r.json()["id"], n, k

    with cf.ThreadPoolExecutor(max_workers=32) as pool:
        submitted = list(pool.map(submit, range(CALLS)))
    assert len({tid for _, tid, _, _ in submitted}) == CALLS

    deadline = time.monotonic() + 240
    wrong = []
    for user, tid, n, k in submitted:
        t = api.wait_task(user, tid, timeout=max(1.0, deadline - time.monotonic()))
        if t["status"] != "completed" or t["result"] != {"k": k, "y": n * 3 + k}:
            wrong.append((n, t["status"], t.get("result"), t.get("error")))
    assert not wrong, f"{len(wrong)} calls ended wrong, e.g. {wrong[:3]}"

    # Idle instances retire; the tree comes back to its size before the burst.
    deadline = time.monotonic() + IDLE_S + 30
    while time.monotonic() < deadline and len(tree(server)) > base_procs:
        time.sleep(0.5)
    assert len(tree(server)) <= base_procs, \
        f"{len(tree(server))} processes after the burst vs {base_procs} before"
    after_rss = rss_kib(tree(server))
    assert after_rss < base_rss + 64 * 1024, \
        f"the server tree holds {after_rss} KiB after the burst vs {base_rss} KiB before"

    # Shutdown leaves nothing behind.
    pids = tree(server)
    server.stop()
    alive = [p for p in pids if Path(f"/proc/{p}").exists()
             and "Z" not in Path(f"/proc/{p}/stat").read_text().split(")")[-1][:3]]
    assert not alive, f"processes left after shutdown: {alive}"
