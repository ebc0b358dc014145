"""The CLI flow of "your first function in five minutes": login, fn push, fn ls, run with
key=value, --json, task get/logs/wait, --no-wait, and the exit codes (0 success, 1 task
failed, 2 usage, 3 HTTP/auth error)."""
import json
import re

import pytest


BEAM = '''\
def main(F: float, L: float, E: float = 210e9, I: float = 8.0e-6) -> dict:
    """Tip deflection of a cantilever."""
    delta = F * L ** 3 / (3 * E * I)
    print(f"delta = {delta:.6e} m")
    return {"delta_m": delta}
'''

SLOW = '''\
import time

def main(seconds: float = 2.0) -> str:
    time.sleep(seconds)
    print("woke up")
    return "done"
'''

FAILS = '''\
def main(x: float) -> float:
    raise RuntimeError("the beam broke")
'''


@pytest.fixture(scope="module")
def cli(stack, tmp_path_factory):
    """Runs `mecapy ...` as a logged-in bob, in a work dir with beam.py, slow.py, fails.py."""
    cfg = tmp_path_factory.mktemp("cli-config")
    work = tmp_path_factory.mktemp("cli-work")
    (work / "beam.py").write_text(BEAM)
    (work / "slow.py").write_text(SLOW)
    (work / "fails.py").write_text(FAILS)
    u = stack.api.users["bob"]
    r = stack.cli("login", "--url", stack.api.base, "--email", u.email, "--password-stdin",
                  config_dir=cfg, input=u.password + "\n")
    assert r.returncode == 0, f"login: rc={r.returncode} out={r.stdout!r} err={r.stderr!r}"

    def run(*args, input=None, timeout=60):
        return stack.cli(*[str(a) for a in args], config_dir=cfg, input=input, timeout=timeout)
    run.cfg, run.work = cfg, work
    return run


def ok(r, code=0):
    assert r.returncode == code, \
        f"`mecapy {' '.join(r.args[1:])}` exited {r.returncode}, expected {code}\n" \
        f"stdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-2000:]}"
    return r


def as_json(r):
    try:
        return json.loads(r.stdout)
    except ValueError:
        pytest.fail(f"`mecapy {' '.join(r.args[1:])}` --json printed no JSON: {r.stdout[:1000]!r}")


def test_login_stores_config_not_password(cli, stack):
    files = [p for p in cli.cfg.rglob("*") if p.is_file()]
    assert files, "login wrote no config file under MECAPY_CONFIG_DIR"
    for p in files:
        text = p.read_text(errors="replace")
        assert stack.api.users["bob"].password not in text, f"password stored in {p}"
        assert oct(p.stat().st_mode & 0o777) == oct(0o600), f"{p} must be 0600"


def test_login_wrong_password_exit_3(stack, tmp_path):
    r = stack.cli("login", "--url", stack.api.base, "--email", "bob@acme.test",
                  "--password-stdin", config_dir=tmp_path, input="not-the-password\n")
    ok(r, 3)
    assert "401" in r.stderr or "password" in r.stderr.lower(), r.stderr


def test_not_logged_in_exit_3(stack, tmp_path):
    ok(stack.cli("fn", "ls", config_dir=tmp_path, env={"MECAPY_URL": stack.api.base}), 3)


def test_unreachable_server_exit_3(stack, tmp_path):
    from harness import free_port
    r = stack.cli("login", "--url", f"http://127.0.0.1:{free_port()}", "--email", "bob@acme.test",
                  "--password-stdin", config_dir=tmp_path, input="x\n", timeout=30)
    ok(r, 3)


def test_first_function_in_five_minutes(cli, stack):
    api = stack.api
    name = api.unique("beam")
    r = ok(cli("fn", "push", cli.work / "beam.py", "--name", name))
    for p in ("F", "L"):
        assert re.search(rf"\b{p}\b", r.stdout), f"push prints the input parameters: {r.stdout!r}"

    r = ok(cli("fn", "ls"))
    assert name in r.stdout, f"fn ls lists the pushed function: {r.stdout!r}"
    r = ok(cli("fn", "ls", "--json"))
    items = as_json(r)["items"]
    mine = [i for i in items if i["name"] == name]
    assert len(mine) == 1 and mine[0]["version"] == 1, items

    # run with key=value: the result is printed, the logs go to stderr
    r = ok(cli("run", name, "F=1000", "L=2"))
    delta = 1000 * 2 ** 3 / (3 * 210e9 * 8.0e-6)
    out = json.loads(r.stdout)
    assert out["delta_m"] == pytest.approx(delta, rel=1e-12), r.stdout
    assert "delta = " in r.stderr, f"logs on stderr: {r.stderr!r}"

    # --json: the whole task
    r = ok(cli("run", name, "F=500", "L=2", "--json"))
    t = as_json(r)
    assert t["status"] == "completed" and t["result"]["delta_m"] == pytest.approx(delta / 2)
    tid = t["id"]

    r = ok(cli("task", "get", tid, "--json"))
    assert as_json(r)["id"] == tid and as_json(r)["status"] == "completed"
    r = ok(cli("task", "get", tid))
    assert "completed" in r.stdout, r.stdout
    r = ok(cli("task", "logs", tid))
    assert "delta = " in r.stdout, r.stdout
    r = ok(cli("task", "wait", tid, "--json"))
    assert as_json(r)["status"] == "completed"

    # the same task through the API
    assert api.task("bob", tid)["result"]["delta_m"] == pytest.approx(delta / 2)


def test_run_inputs_from_json_file(cli, stack):
    name = stack.api.unique("beamj")
    ok(cli("fn", "push", cli.work / "beam.py", "--name", name))
    f = cli.work / "inputs.json"
    f.write_text(json.dumps({"F": 100.0, "L": 1.0, "E": 1.0e9}))
    r = ok(cli("run", name, "--json", f, "L=2"))
    out = json.loads(r.stdout)
    assert out["delta_m"] == pytest.approx(100 * 8 / (3 * 1e9 * 8e-6), rel=1e-12), \
        f"key=value overrides the file's keys: {r.stdout!r}"


def test_push_again_makes_version_2(cli, stack):
    name = stack.api.unique("beamv")
    ok(cli("fn", "push", cli.work / "beam.py", "--name", name))
    (cli.work / "beam2.py").write_text(BEAM.replace("3 * E * I", "3.0 * E * I"))
    ok(cli("fn", "push", cli.work / "beam2.py", "--name", name))
    items = as_json(ok(cli("fn", "ls", "--json")))["items"]
    assert [i["version"] for i in items if i["name"] == name] == [2], items


def test_no_wait_then_wait(cli, stack):
    name = stack.api.unique("slow")
    ok(cli("fn", "push", cli.work / "slow.py", "--name", name))
    r = ok(cli("run", name, "seconds=1.5", "--no-wait"))
    m = re.search(r"[A-Za-z0-9_-]{6,}", r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "")
    assert m, f"--no-wait prints the task id: {r.stdout!r}"
    tid = r.stdout.strip().split()[-1]
    t = stack.api.task("bob", tid)
    assert t["status"] in ("queued", "running"), f"--no-wait returns before the end: {t}"
    r = ok(cli("task", "wait", tid))
    assert "done" in r.stdout, r.stdout
    assert stack.api.task("bob", tid)["status"] == "completed"


def test_failed_task_exit_1(cli, stack):
    name = stack.api.unique("fails")
    ok(cli("fn", "push", cli.work / "fails.py", "--name", name))
    r = ok(cli("run", name, "x=1"), 1)
    assert "RuntimeError" in r.stdout + r.stderr and "the beam broke" in r.stdout + r.stderr, r
    r = ok(cli("run", name, "x=1", "--json"), 1)
    t = as_json(r)
    assert t["status"] == "failed" and t["error"]["type"] == "RuntimeError", t
    # task ls: one summary line per task, with the error's type; no message, no result
    r = ok(cli("task", "ls", "--function", name))
    lines = [ln for ln in r.stdout.splitlines() if t["id"] in ln]
    assert len(lines) == 1 and lines[0].split()[1] == "failed" and lines[0].split()[-1] == "RuntimeError", r.stdout
    assert "the beam broke" not in r.stdout, r.stdout
    items = as_json(ok(cli("task", "ls", "--function", name, "--json")))["items"]
    assert items[0]["error_type"] == "RuntimeError" and "error" not in items[0], items


def test_invalid_inputs_exit_3(cli, stack):
    name = stack.api.unique("beamx")
    ok(cli("fn", "push", cli.work / "beam.py", "--name", name))
    r = ok(cli("run", name, "F=heavy", "L=2"), 3)
    assert "inputs.F" in r.stderr, f"the server's field path is shown: {r.stderr!r}"


def test_usage_errors_exit_2(cli):
    ok(cli("run"), 2)
    ok(cli("fn", "frobnicate"), 2)
    ok(cli("task", "get"), 2)
    ok(cli("run", "beam", "notakeyvalue"), 2)
    ok(cli("fn", "push"), 2)


def test_unknown_function_and_task_exit_3(cli):
    ok(cli("run", "no-such-function-xyz", "a=1"), 3)
    ok(cli("task", "get", "00000000-0000-4000-8000-000000000000"), 3)


def test_push_refused_code_exit_3(cli, stack):
    (cli.work / "evil.py").write_text("import os\n\ndef main():\n    return os.getcwd()\n")
    r = ok(cli("fn", "push", cli.work / "evil.py", "--name", stack.api.unique("evil")), 3)
    assert "line 1" in r.stderr or ":1" in r.stderr, f"the refused line is shown: {r.stderr!r}"
