"""`mecapy study create | show | results` against the shared server (docs/studies.md)."""
import csv
import io
import json

import pytest

import harness

BEAM = '''\
def main(F: float, L: float, E: float = 210e9, I: float = 8.33e-6) -> dict:
    return {"deflection_mm": F * L ** 3 / (3 * E * I) * 1000}
'''


@pytest.fixture(scope="module")
def cli(stack, tmp_path_factory):
    cfg = tmp_path_factory.mktemp("cli-study-config")
    work = tmp_path_factory.mktemp("cli-study-work")
    u = stack.api.users["bob"]
    r = stack.cli("login", "--url", stack.api.base, "--email", u.email, "--password-stdin",
                  config_dir=cfg, input=u.password + "\n")
    assert r.returncode == 0, r.stderr

    def run(*args, timeout=120):
        return stack.cli(*[str(a) for a in args], config_dir=cfg, timeout=timeout)
    run.work = work
    return run


def ok(r, code=0):
    assert r.returncode == code, \
        f"`mecapy {' '.join(r.args[1:])}` exited {r.returncode}, expected {code}\n" \
        f"stdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-2000:]}"
    return r


def test_study_create_show_results_csv(cli, api):
    fn = api.create_function("bob", harness.Api.unique("clibeam"), BEAM)
    spec = cli.work / "sweep.json"
    spec.write_text(json.dumps({
        "name": "cli-sweep", "target": {"function": fn["name"]},
        "design": {"type": "grid", "params": {"L": [1, 2], "F": [100, 200, 300]}},
        "outputs": ["result.deflection_mm"]}))
    r = ok(cli("study", "create", spec, "--json"))
    sid = json.loads(r.stdout)["id"]

    r = ok(cli("study", "show", sid, "--wait"))
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith(f"{sid} completed: 6/6 completed, 0 failed"), r.stdout

    r = ok(cli("study", "results", sid, "--csv"))
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0] == ["index", "L", "F", "result.deflection_mm", "status", "error"], rows[0]
    assert len(rows) == 7
    for row in rows[1:]:
        L, F, d = float(row[1]), float(row[2]), float(row[3])
        assert d == pytest.approx(F * L ** 3 / (3 * 210e9 * 8.33e-6) * 1000)

    r = ok(cli("study", "results", sid))
    assert len(r.stdout.strip().splitlines()) == 6 and "completed" in r.stdout


def test_study_cli_errors(cli):
    bad = cli.work / "bad.json"
    bad.write_text('{"target": {"function": "no-such-function"}, '
                   '"design": {"type": "list", "points": [{"x": 1}]}}')
    r = cli("study", "create", bad)
    assert r.returncode == 3 and "no-such-function" in r.stderr, r.stderr
    ok(cli("study", "show", "00000000-0000-4000-8000-000000000000"), 3)
    ok(cli("study", "frobnicate", "x"), 2)
    ok(cli("study", "show", "x", "--csv"), 2)
