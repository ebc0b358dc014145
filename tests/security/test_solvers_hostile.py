"""Hostile use of the solver environment (docs/security.md, "The solver environment").

A function that declares "solvers" may fork and execute the solver binaries; every other
function may do neither. Attacks, through the real server and sandbox:
  - a solver binary asked to read a host file (an *INCLUDE of /etc/shadow, of a file
    beside the server's data, of /proc/1/environ) finds nothing;
  - a fork bomb in the solver environment is held by the instance's pids limit, and the
    server goes on serving;
  - a function WITHOUT solvers cannot execute ccx or anything else (fork+exec, exec in
    place, posix_spawn);
  - a function WITH solvers cannot execute anything but its solver binaries (/bin/sh,
    python3, gmsh when only calculix is declared, a copy of ccx it wrote);
  - the network is still absent.

Run: MECAPY_BIN=build/mecapy python3 -m pytest -q tests/security/test_solvers_hostile.py
"""
import json
import secrets
import shutil

import pytest

pytestmark = pytest.mark.skipif(shutil.which("ccx") is None, reason="calculix-ccx is not installed")

INCLUDE = """\
from mecapy.solvers import calculix, SolverError

def main(path: str) -> dict:
    deck = "*INCLUDE, INPUT=%s\\n*NODE\\n1, 0, 0, 0\\n*STEP\\n*STATIC\\n*END STEP\\n" % path
    try:
        r = calculix(deck, name="inc", keep=())
        return {"ran": True, "dat": r["dat"], "log": r["log"]}
    except SolverError as e:
        return {"ran": False, "error": str(e)}
"""


def run(api, user, name, code, inputs=None, **fields):
    f = api.create_function(user, api.unique(name), code, **fields)
    return api.execute(user, f["id"], inputs or {}, wait=60, timeout=120)


def leak_free(t, *tokens):
    text = json.dumps(t)
    for tok in tokens:
        assert tok not in text, f"{tok!r} reached the task: {text[:2000]}"


def test_solver_cannot_read_host_files(api, sec_stack, secret):
    token = "solver-canary-" + secrets.token_hex(8)
    canary = sec_stack.root / "solver-canary.inp"
    canary.write_text("** %s\n*NODE\n2, 1, 0, 0\n" % token)
    f = api.create_function("carol", api.unique("ccx-include"), INCLUDE, solvers=["calculix"])
    for path in ("/etc/shadow", str(canary), str(sec_stack.data_dir / "mecapy.db"), "/proc/1/environ",
                 "/root/.bashrc", "/home"):
        t = api.execute("carol", f["id"], {"path": path}, wait=60, timeout=120)
        assert t["status"] == "completed", t
        r = t["result"]
        leak_free(t, token, secret)
        if path == "/proc/1/environ":
            # PID 1 of the instance's own pid namespace is the instance itself: its
            # clean environment, not the server's.
            continue
        assert not r["ran"], f"ccx read {path}: {r}"
        assert "cannot open file" in r["error"], r


FORK_COUNT = """\
def main(n: int) -> dict:
    os = __import__("os")
    kids, error = [], None
    for _ in range(n):
        try:
            pid = os.fork()
        except OSError as e:
            error = e.strerror
            break
        if pid == 0:
            __import__("time").sleep(60)
            os._exit(0)
        kids.append(pid)
    for pid in kids:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return {"forked": len(kids), "error": error}
"""

FORK_BOMB = """\
def main() -> str:
    os = __import__("os")
    while True:
        try:
            os.fork()
        except OSError:
            pass
"""


def test_fork_bomb_is_held_by_the_pids_limit(api):
    # Counted: the instance's pids cgroup stops it below the server's --max-procs (64
    # by default, threads included), with EAGAIN.
    t = run(api, "carol", "fork-count", FORK_COUNT, {"n": 5000}, solvers=["calculix"])
    assert t["status"] == "completed", t
    assert 0 < t["result"]["forked"] < 64 and t["result"]["error"], t["result"]
    # A real bomb (every child forks too): the call ends at its time limit, the
    # instance and everything it started is killed, and the server still answers.
    t = run(api, "carol", "fork-bomb", FORK_BOMB, solvers=["calculix"], limits={"timeout_s": 3})
    assert t["status"] in ("timed_out", "failed"), t
    t = run(api, "carol", "after-bomb", "def main() -> int:\n    return 42\n")
    assert t["status"] == "completed" and t["result"] == 42, t


EXEC_ATTEMPTS = """\
def main(targets: list) -> dict:
    os = __import__("os")
    sp = __import__("subprocess")
    out = {}
    for argv in targets:
        key = " ".join(argv)
        try:
            p = sp.run(argv, stdout=sp.PIPE, stderr=sp.STDOUT, timeout=20)
            out[key] = "ran: %d %s" % (p.returncode, p.stdout[:200])
        except OSError as e:
            out[key] = "refused: %s" % type(e).__name__
    try:
        pid = os.posix_spawn("/usr/bin/ccx", ["ccx", "-v"], {})
        out["posix_spawn"] = "ran: %d" % pid
    except OSError as e:
        out["posix_spawn"] = "refused: %s" % type(e).__name__
    return out
"""

EXEC_IN_PLACE = """\
def main(path: str) -> str:
    os = __import__("os")
    try:
        os.execv(path, [path, "-v"])
    except OSError as e:
        return "refused: %s" % type(e).__name__
"""


def test_function_without_solvers_cannot_execute_anything(api):
    targets = [["/usr/bin/ccx", "-v"], ["/bin/sh", "-c", "echo hi"], ["/usr/bin/python3", "-c", "1"],
               ["/usr/bin/gmsh", "-version"]]
    t = run(api, "carol", "no-solvers", EXEC_ATTEMPTS, {"targets": targets})
    assert t["status"] == "completed", t
    for key, what in t["result"].items():
        assert what.startswith("refused: PermissionError"), (key, what)
    # Nor in place (no fork needed): execve itself is refused.
    for path in ("/usr/bin/ccx", "/bin/sh"):
        t = run(api, "carol", "exec-in-place", EXEC_IN_PLACE, {"path": path})
        assert t["status"] == "completed" and t["result"] == "refused: PermissionError", t
    # per_call instances are the same.
    t = run(api, "carol", "no-solvers-pc", EXEC_ATTEMPTS, {"targets": targets[:1]}, isolation="per_call")
    assert t["status"] == "completed", t
    assert all(v.startswith("refused: PermissionError") for v in t["result"].values()), t["result"]


COPY_AND_RUN = """\
def main() -> dict:
    os = __import__("os")
    sp = __import__("subprocess")
    out = {}
    data = open("/usr/bin/ccx", "rb").read()
    for d in ("/tmp", "/work"):
        path = d + "/myccx"
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o755)
        for argv in ([path, "-v"], ["/lib64/ld-linux-x86-64.so.2", path, "-v"]):
            try:
                p = sp.run(argv, stdout=sp.PIPE, stderr=sp.STDOUT, timeout=20)
                out[" ".join(argv)] = "ran: %d %s" % (p.returncode, p.stdout[:200])
            except OSError as e:
                out[" ".join(argv)] = "refused: %s" % type(e).__name__
    return out
"""


def test_function_with_solvers_executes_only_its_solvers(api):
    targets = [["/usr/bin/ccx", "-v"], ["/bin/sh", "-c", "echo hi"], ["/usr/bin/python3", "-c", "1"],
               ["/usr/bin/gmsh", "-version"], ["/usr/bin/env"], ["/usr/sbin/ldconfig", "-p"]]
    t = run(api, "carol", "ccx-only", EXEC_ATTEMPTS, {"targets": targets}, solvers=["calculix"])
    assert t["status"] == "completed", t
    r = t["result"]
    assert r["/usr/bin/ccx -v"].startswith("ran: ") and "2." in r["/usr/bin/ccx -v"], r
    assert r["posix_spawn"].startswith("ran: "), r
    for key in ("/bin/sh -c echo hi", "/usr/bin/python3 -c 1", "/usr/bin/gmsh -version", "/usr/bin/env",
                "/usr/sbin/ldconfig -p"):
        assert r[key].startswith("refused: PermissionError"), (key, r[key])
    # The ELF loader must be executable (the kernel runs it for every dynamic binary,
    # ccx included), and it will load a program named on its command line: that program
    # is then in the function's own sandbox, no stronger than its Python code, and it
    # can execute nothing either (docs/security.md).
    t = run(api, "carol", "via-loader", EXEC_ATTEMPTS,
            {"targets": [["/lib64/ld-linux-x86-64.so.2", "/bin/sh", "-c", "cat /etc/shadow; ls /"]]},
            solvers=["calculix"])
    assert t["status"] == "completed", t
    out = t["result"]["/lib64/ld-linux-x86-64.so.2 /bin/sh -c cat /etc/shadow; ls /"]
    assert "cat: Permission denied" in out and "ls: Permission denied" in out and "root:" not in out, out
    # Declaring gmsh opens gmsh, and still not the shell.
    t = run(api, "carol", "gmsh-too", EXEC_ATTEMPTS, {"targets": [["/usr/bin/gmsh", "-version"],
                                                              ["/bin/sh", "-c", "echo hi"]]},
            solvers=["calculix", "gmsh"])
    assert t["status"] == "completed", t
    assert t["result"]["/usr/bin/gmsh -version"].startswith("ran: 0"), t["result"]
    assert t["result"]["/bin/sh -c echo hi"].startswith("refused: PermissionError"), t["result"]
    # A copy of the solver written by the function is not the solver: neither executed
    # directly nor through the ELF loader (the writable places are noexec there).
    t = run(api, "carol", "copy-ccx", COPY_AND_RUN, solvers=["calculix"])
    assert t["status"] == "completed", t
    for key, what in t["result"].items():
        if key.startswith("/lib64/"):
            # The loader itself may run (it is how ccx starts) but cannot map the copy.
            assert not what.startswith("ran: 0"), (key, what)
        else:
            assert what.startswith("refused: PermissionError"), (key, what)


NETWORK = """\
def main(port: int) -> dict:
    socket = __import__("socket")
    out = {}
    for fam, addr in ((socket.AF_INET, ("127.0.0.1", port)), (socket.AF_INET6, ("::1", port))):
        try:
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.settimeout(2)
            s.connect(addr)
            out[str(fam)] = "connected"
        except OSError as e:
            out[str(fam)] = "refused: %s" % type(e).__name__
    return out
"""


def test_network_still_absent_with_solvers(api, sec_stack):
    port = sec_stack.server.port
    t = run(api, "carol", "net", NETWORK, {"port": port}, solvers=["calculix", "gmsh"])
    assert t["status"] == "completed", t
    assert all(v.startswith("refused: PermissionError") for v in t["result"].values()), t["result"]


# Call 1 leaves two processes running: a fork of the instance spinning, and ccx blocked
# reading its input from a FIFO nobody writes. Call 2 (the same warm instance: its module
# state says so) reaps them and lists every process of its pid namespace.
LEFT_BEHIND = """\
os = __import__("os")
subprocess = __import__("subprocess")
time = __import__("time")
state = {"calls": 0, "fork": None, "ccx": None}


def others() -> list:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            text = open("/proc/%s/stat" % d).read()
        except OSError:
            continue
        name, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:]
        if rest.split()[0] != "Z":  # a zombie is dead: it only waits to be reaped
            out.append([int(d), name, rest.split()[0]])
    return out


def main(start: bool) -> dict:
    state["calls"] += 1
    out = {"calls": state["calls"]}
    if start:
        pid = os.fork()
        if pid == 0:
            while True:
                pass
        state["fork"] = pid
        fifo = "/work/loop.inp"
        os.mkfifo(fifo)
        state["ccx"] = subprocess.Popen(["/usr/bin/ccx", "-i", "loop"], cwd="/work",
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # ccx is blocked opening its input
        out["running"] = others()
        return out
    # Their end, as their parent (this instance) sees it: a wait status, or still running.
    ended = {}
    for _ in range(100):
        if state["fork"] is not None and "fork" not in ended:
            pid, status = os.waitpid(state["fork"], os.WNOHANG)
            if pid:
                ended["fork"] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else "exit %d" % status
        if "ccx" not in ended and state["ccx"].poll() is not None:
            ended["ccx"] = -state["ccx"].returncode
        if len(ended) == 2:
            break
        time.sleep(0.05)
    out["ended"] = ended
    out["running"] = others()
    return out
"""


def test_processes_a_call_leaves_do_not_outlive_it(api):
    # A solver process left in the background would run on while the instance is idle
    # (SIGSTOP stops the instance only) and into the next call: each call's end kills
    # every other process of the instance.
    f = api.create_function("carol", api.unique("left-behind"), LEFT_BEHIND, solvers=["calculix"])
    t = api.execute("carol", f["id"], {"start": True}, wait=60, timeout=120)
    assert t["status"] == "completed", t
    names = sorted(p[1] for p in t["result"]["running"])
    assert names == ["ccx", "python3"] or names == ["ccx", "mecapy-zygote"], t["result"]
    t = api.execute("carol", f["id"], {"start": False}, wait=60, timeout=120)
    assert t["status"] == "completed", t
    r = t["result"]
    assert r["calls"] == 2, f"not the same warm instance: {r}"
    assert r["ended"] == {"fork": 9, "ccx": 9}, r  # both killed (SIGKILL) when call 1 ended
    assert r["running"] == [], r


BURN_IN_CHILD = """\
os = __import__("os")
time = __import__("time")


def main(seconds: float) -> dict:
    pid = os.fork()
    if pid == 0:
        while time.process_time() < seconds:
            pass
        os._exit(0)
    _, status, ru = os.wait4(pid, 0)
    return {"child_cpu_ms": int((ru.ru_utime + ru.ru_stime) * 1000), "status": status}
"""


def test_a_calls_cpu_time_counts_its_child_processes(api):
    # The parent only waits: before, the call's cpu_ms was its own CPU clock (~0 here).
    f = api.create_function("carol", api.unique("burn-child"), BURN_IN_CHILD, solvers=["calculix"])
    for _ in range(2):  # the first call (a fresh instance) and a warm one
        t = api.execute("carol", f["id"], {"seconds": 1.0}, wait=60, timeout=120)
        assert t["status"] == "completed" and t["result"]["status"] == 0, t
        child = t["result"]["child_cpu_ms"]
        assert child >= 900, t["result"]
        assert t["cpu_ms"] >= 0.9 * child, (t["cpu_ms"], child)
