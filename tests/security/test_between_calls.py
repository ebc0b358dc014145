"""No user code runs between calls.

A warm instance outlives its call, and so can what the call started: threads that keep
spinning, or a timer whose signal handler runs user code in the main thread once the call
has returned. Before the fix, such an instance burnt a whole core for as long as it lived
(idle retirement is 600 s, renewed by each call), charged to no call. Now an instance is
stopped (SIGSTOP, the whole thread group) from the end of one call to the start of the next.

What is observed: the CPU time the kernel counts for the server's instances (utime + stime of
/proc/PID/stat, all threads included) over one second after the call; an instance that is
gone counts as zero."""
import time
from pathlib import Path

import pytest
import requests

from harness import descendants

SPIN_THREADS = """\
import threading

def spin():
    while True:
        pass

def main(n: int = 2) -> int:
    for _ in range(n):
        threading.Thread(target=spin, daemon=True).start()
    return n
"""

# No extra thread: a one-shot timer whose handler spins in the main thread, where the
# guest waits for the next request.
SPIN_TIMER = """\
import signal

def spin(*_):
    while True:
        pass

def main(n: int = 2) -> int:
    signal.signal(signal.SIGALRM, spin)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    return n
"""

ECHO = "def main(x: float = 1.0) -> float:\n    return x * 2\n"

TICK = 100  # USER_HZ: /proc/PID/stat counts CPU in 1/100 s on Linux


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def ppid(pid: int) -> int:
    try:
        st = Path(f"/proc/{pid}/stat").read_text()
        return int(st[st.rindex(")") + 2:].split()[1])
    except (OSError, ValueError):
        return 0


def instances(server_pid: int) -> list[int]:
    """The warm instances: clones of a zygote (both named mecapy-zygote)."""
    return [p for p in descendants(server_pid)
            if comm(p) == "mecapy-zygote" and comm(ppid(p)) == "mecapy-zygote"]


def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (every thread), 0 once it is gone."""
    try:
        st = Path(f"/proc/{pid}/stat").read_text()
        f = st[st.rindex(")") + 2:].split()
        return int(f[11]) + int(f[12])
    except (OSError, ValueError, IndexError):
        return 0


def create(api, code, **kw):
    r = api.post("alice", "/functions", json={"name": api.unique("between"), "code": code, **kw})
    assert r.status_code == 201, r.text
    return r.json()


def idle_cpu_seconds(server_pid: int, settle: float = 0.4) -> tuple[float, list[int]]:
    """CPU used by all instances over one second, after `settle` seconds (the timer's 0.2 s)."""
    time.sleep(settle)
    pids = instances(server_pid)
    before = {p: cpu_ticks(p) for p in pids}
    time.sleep(1.0)
    used = sum(max(cpu_ticks(p) - t0, 0) for p, t0 in before.items())
    return used / TICK, pids


@pytest.mark.parametrize("code", [SPIN_THREADS, SPIN_TIMER], ids=["threads", "timer"])
def test_instance_uses_no_cpu_after_its_call(sec_stack, api, code):
    server_pid = sec_stack.server.pid
    f = create(api, code, limits={"timeout_s": 3, "cpus": 1})
    t = api.execute("alice", f["id"], {"n": 2}, wait=30, timeout=60)
    assert t["status"] == "completed" and t["result"] == 2, t
    # Spinning, this is 1.0 s (the instance's 1-CPU quota) per second.
    used, pids = idle_cpu_seconds(server_pid)
    assert pids, "no warm instance found among the server's processes"
    assert used <= 0.1, \
        f"between calls, the instances {pids} used {used:.2f} s of CPU in 1 s: user code runs outside calls"


def test_next_call_still_answers(sec_stack, api):
    """The stopped instance is woken for its next call, and its threads (which run again
    inside that call, charged to it) do not stop it from answering."""
    f = create(api, SPIN_THREADS, limits={"timeout_s": 3, "cpus": 1})
    for n in (1, 2, 1):
        t = api.execute("alice", f["id"], {"n": n}, wait=30, timeout=60)
        assert t["status"] == "completed" and t["result"] == n, t
    used, _ = idle_cpu_seconds(sec_stack.server.pid, settle=0.1)
    assert used <= 0.1, f"after three calls, {used:.2f} s of CPU in 1 s between calls"
    # The server and other functions are untouched.
    echo = create(api, ECHO)
    t = api.execute("alice", echo["id"], {"x": 21.0}, wait=30, timeout=60)
    assert t["status"] == "completed" and t["result"] == 42.0, t
    assert requests.get(api.base + "/healthz", timeout=10).status_code == 200
