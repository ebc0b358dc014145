"""Slow work never blocks the HTTP threads (docs/architecture.md#api).

Argon2 logins (64 MiB and ~0.1 s each, two at once), the analysis of uploaded code in the
sandbox and the OpenID provider's key fetches run on the server's slow-work threads, the
connection suspended meanwhile (as a ?wait long poll is). So while 40 logins and 8
uploads are in flight at once, /healthz and a call of a warm function keep answering.

"Answering" is asserted with a generous bound (BOUND_S, far above their usual
milliseconds): this is not a latency benchmark, it tells a served request from one that
waits behind the storm (before the change, every HTTP thread sat in argon2 or the
analysis, and /healthz waited seconds).
"""
from __future__ import annotations

import concurrent.futures
import sys
import threading
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harness  # noqa: E402
from harness import User, expect_status  # noqa: E402

BOUND_S = 2.0
LOGINS = 40
UPLOADS = 8
USERS = [User("slow", "slow@slow.test", "slow-pass-1234", "slow-co", "member")]

WARM = "def main(x: float = 1.0) -> float:\n    return x * 2\n"
# Something for the analysis to chew on: many functions, type hints, a docstring each.
UPLOAD = "\n".join(
    [f"def helper_{i}(a: float, b: int = {i}) -> float:\n    \"\"\"Helper {i}.\"\"\"\n    return a * b\n"
     for i in range(200)]
    + ["def main(x: float = 1.0, n: int = 3, label: str = 'a') -> dict:\n    return {'y': x}\n"])


@pytest.fixture(scope="module")
def stack():
    # Logins from one address, probes of one user: the rate limits must not be what answers.
    s = harness.start_stack("slow-work", users=USERS,
                            extra_args=["--auth-rate-limit", "100000", "--rate-limit", "100000"])
    yield s
    s.close()


def test_healthz_and_warm_execute_answer_during_logins_and_uploads(stack):
    api = stack.api
    u = USERS[0]
    fid = api.create_function("slow", harness.Api.unique("warm"), WARM)["id"]
    assert api.execute("slow", fid, {"x": 1})["status"] == "completed"  # now warm
    session = api.s("slow")

    def login(_):
        r = requests.post(api.url("/auth/login"), json={"email": u.email, "password": u.password},
                          timeout=120)
        return r.status_code

    def upload(i):
        r = session.post(api.url("/functions"), timeout=120,
                         json={"name": harness.Api.unique(f"upload{i}"), "code": UPLOAD})
        return r.status_code

    done = threading.Event()
    probes: list[tuple[str, str]] = []  # (what, outcome)

    def probe():
        while not done.is_set():
            try:
                r = requests.get(api.base + "/healthz", timeout=BOUND_S)
                probes.append(("healthz", str(r.status_code)))
            except requests.RequestException as e:
                probes.append(("healthz", f"no answer within {BOUND_S} s: {type(e).__name__}"))
            try:
                r = session.post(api.url(f"/functions/{fid}/execute"), params={"wait": "30"},
                                 json={"inputs": {"x": 2}}, timeout=BOUND_S)
                ok = r.status_code == 200 and r.json().get("result") == 4.0
                probes.append(("execute", "200" if ok else f"{r.status_code} {r.text[:120]}"))
            except requests.RequestException as e:
                probes.append(("execute", f"no answer within {BOUND_S} s: {type(e).__name__}"))
            done.wait(0.05)

    prober = threading.Thread(target=probe)
    with concurrent.futures.ThreadPoolExecutor(LOGINS + UPLOADS) as pool:
        storm = [pool.submit(login, i) for i in range(LOGINS)] + \
                [pool.submit(upload, i) for i in range(UPLOADS)]
        prober.start()
        statuses = [f.result() for f in storm]
    done.set()
    prober.join()

    assert statuses[:LOGINS] == [200] * LOGINS, statuses
    assert statuses[LOGINS:] == [201] * UPLOADS, statuses
    bad = [p for p in probes if p[1] != "200"]
    assert not bad, f"{len(bad)} of {len(probes)} probes were not answered in time: {bad[:10]}"
    assert sum(1 for p in probes if p[0] == "healthz") >= 2, probes
    assert sum(1 for p in probes if p[0] == "execute") >= 2, probes
