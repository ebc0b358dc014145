"""Fail closed: a server that cannot put limits on user code does not run it.

Before, a host where no cgroup limit could be applied (every cgroup v2-only host) ran
sandboxes on rlimits alone without a word. Now `serve` and `worker` refuse to start, naming
the cause and the fix, unless the operator passes --allow-unlimited-sandbox.

The host that runs the suite has working cgroup v1 limits, so the failure is made by
pointing --cgroup-root (or MECAPY_CGROUP_ROOT) at a directory that is not a delegated
cgroup2 subtree."""
import os
import subprocess
import tempfile
from pathlib import Path

import requests

import harness


def run_until_exit(argv: list[str], env: dict | None = None, timeout: float = 30):
    e = {k: v for k, v in os.environ.items() if not k.startswith("MECAPY_")}
    e.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=e,
                          stdin=subprocess.DEVNULL)


def not_a_cgroup(tmp: Path) -> Path:
    d = tmp / "not-a-cgroup"
    d.mkdir()
    return d


def test_serve_refuses_without_limits():
    harness.require_binary()
    with tempfile.TemporaryDirectory(dir=harness.tmp_root()) as t:
        tmp = Path(t)
        r = run_until_exit([str(harness.mecapy_bin()), "serve", "--data-dir", str(tmp / "data"),
                            "--port", "0", "--cgroup-root", str(not_a_cgroup(tmp))])
        assert r.returncode != 0, f"serve started without cgroup limits:\n{r.stderr[-2000:]}"
        err = r.stderr
        assert "no cgroup limits can be applied" in err, err[-2000:]
        assert "cgroup.controllers" in err, err[-2000:]  # the cause, for the directory given
        assert "Delegate=yes" in err and "--allow-unlimited-sandbox" in err, err[-2000:]  # the fix
        assert "MecaPy serving" not in err


def test_worker_refuses_without_limits():
    """The variable works like the option, and the worker checks before anything else
    (the queue and store named here do not exist: they are never reached)."""
    harness.require_binary()
    with tempfile.TemporaryDirectory(dir=harness.tmp_root()) as t:
        tmp = Path(t)
        r = run_until_exit([str(harness.mecapy_bin()), "worker", "--queue", "redis://127.0.0.1:1",
                            "--db", "postgres://127.0.0.1:1/none"],
                           env={"MECAPY_CGROUP_ROOT": str(not_a_cgroup(tmp))})
        assert r.returncode != 0
        assert "no cgroup limits can be applied" in r.stderr, r.stderr[-2000:]


def test_allow_unlimited_sandbox_is_explicit_and_loud():
    harness.require_binary()
    with tempfile.TemporaryDirectory(dir=harness.tmp_root()) as t:
        tmp = Path(t)
        s = harness.start_stack("unlimited", extra_args=[
            "--cgroup-root", str(not_a_cgroup(tmp)), "--allow-unlimited-sandbox"])
        try:
            log = s.server.log_path.read_text()
            assert "NO CGROUP LIMITS" in log and "--allow-unlimited-sandbox" in log, log[-2000:]
            f = s.api.create_function("alice", s.api.unique("echo"),
                                      "def main(x: float = 1.0) -> float:\n    return x * 2\n")
            task = s.api.execute("alice", f["id"], {"x": 21.0}, wait=30, timeout=60)
            assert task["status"] == "completed" and task["result"] == 42.0, task
            assert requests.get(s.api.base + "/healthz", timeout=10).status_code == 200
        finally:
            s.close()
