"""`mecapy flow push|run|show|retry`: the beam -> stress -> safety-factor chain of
docs/workflows.md pushed from a file, run with key=value inputs, shown, and a failed run
retried; exit codes as for `mecapy run` (0 completed, 1 not completed, 2 usage, 3 HTTP)."""
import json

import pytest

from test_workflows import BENDING, CANTILEVER, SAFETY, SQUARE


@pytest.fixture(scope="module")
def flow(stack, tmp_path_factory):
    """Runs `mecapy ...` as a logged-in bob, and the functions of the chain (bob's)."""
    cfg = tmp_path_factory.mktemp("flow-config")
    work = tmp_path_factory.mktemp("flow-work")
    u = stack.api.users["bob"]
    r = stack.cli("login", "--url", stack.api.base, "--email", u.email, "--password-stdin",
                  config_dir=cfg, input=u.password + "\n")
    assert r.returncode == 0, r.stderr
    api = stack.api
    names = {}
    for key, code in (("beam", CANTILEVER), ("stress", BENDING), ("safety", SAFETY), ("square", SQUARE)):
        names[key] = api.create_function("bob", api.unique(f"cli-{key}"), code)["name"]

    def run(*args, timeout=90):
        return stack.cli(*[str(a) for a in args], config_dir=cfg, timeout=timeout)
    run.work, run.names = work, names
    return run


def ok(r, code=0):
    assert r.returncode == code, \
        f"`mecapy {' '.join(r.args[1:])}` exited {r.returncode}, expected {code}\n" \
        f"stdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-2000:]}"
    return r


def chain(names, name):
    return {
        "name": name,
        "nodes": [
            {"id": "beam", "function": names["beam"], "inputs": {"F": {"param": "F"}, "L": {"param": "L"}}},
            {"id": "stress", "function": names["stress"],
             "inputs": {"M": {"from": "beam", "path": "moment_max"}, "W": 1.2e-4}},
            {"id": "safety", "function": names["safety"],
             "inputs": {"sigma": {"from": "stress", "path": "sigma"}, "yield_strength": {"param": "fy"}}},
        ],
        "outputs": {"safety_factor": {"from": "safety", "path": "safety_factor"}},
    }


def test_push_run_show(flow, stack):
    name = stack.api.unique("cli-beam-check")
    f = flow.work / "beam-check.json"
    f.write_text(json.dumps(chain(flow.names, name)))
    r = ok(flow("flow", "push", f))
    assert f"pushed {name} version 1" in r.stdout, r.stdout
    # pushing again is a new version
    r = ok(flow("flow", "push", f))
    assert f"pushed {name} version 2" in r.stdout, r.stdout

    r = ok(flow("flow", "run", name, "F=1000", "L=2", "fy=235e6", "--json"))
    run = json.loads(r.stdout)
    assert run["status"] == "completed" and run["version"] == 2, run
    assert run["outputs"]["safety_factor"] == pytest.approx(235e6 / (2000 / 1.2e-4), rel=1e-12)

    r = ok(flow("flow", "show", run["id"]))
    assert "status   completed" in r.stdout and "stress" in r.stdout, r.stdout
    assert "safety_factor" in r.stdout, r.stdout

    r = ok(flow("flow", "run", name, "F=10", "L=1", "fy=1e6", "--no-wait"))
    rid = r.stdout.strip()
    r = ok(flow("flow", "show", rid, "--json"))
    assert json.loads(r.stdout)["id"] == rid


def test_failed_run_exit_1_then_retry(flow, stack):
    name = stack.api.unique("cli-squares")
    f = flow.work / "squares.json"
    f.write_text(json.dumps({"name": name, "nodes": [
        {"id": "each", "function": flow.names["square"], "map": {"over": {"param": "xs"}, "as": "x"}}]}))
    ok(flow("flow", "push", f))
    r = ok(flow("flow", "run", name, "xs:=[1,-2,3]", "--json"), 1)
    run = json.loads(r.stdout)
    assert run["status"] == "failed", run
    # still failing (the element's input did not change), and only that element ran again
    before = run["nodes"][0]["task_ids"]
    r = ok(flow("flow", "retry", run["id"], "--json"), 1)
    after = json.loads(r.stdout)["nodes"][0]["task_ids"]
    assert after[0] == before[0] and after[2] == before[2] and after[1] != before[1], (before, after)


def test_usage_and_http_errors(flow, stack):
    ok(flow("flow"), 2)
    ok(flow("flow", "show", "not-a-run-id"), 2)
    ok(flow("flow", "push", flow.work / "missing.json"), 2)
    bad = flow.work / "bad.json"
    bad.write_text(json.dumps({"name": stack.api.unique("bad"), "nodes": [{"id": "n", "function": "nope"}]}))
    r = ok(flow("flow", "push", bad), 3)
    assert "nodes[0].function" in r.stderr, r.stderr
    ok(flow("flow", "run", "no-such-workflow", "x=1"), 3)


def yaml_chain(names, name):
    return f"""\
# docs/workflows.md's chain, in YAML
name: {name}
description: "cantilever -> bending stress -> safety factor"
cache: false
nodes:
  - id: beam
    function: {names["beam"]}
    inputs:
      F: {{param: F}}
      L: {{param: L}}
  - id: stress
    function: {names["stress"]}
    inputs:
      M: {{from: beam, path: moment_max}}
      W: 1.2e-4
  - id: safety
    function: {names["safety"]}
    inputs:
      sigma: {{from: stress, path: sigma}}
      yield_strength: {{param: fy}}
outputs:
  safety_factor: {{from: safety, path: safety_factor}}
"""


def test_push_yaml_is_the_same_definition(flow, stack):
    api = stack.api
    jname, yname = api.unique("cli-json"), api.unique("cli-yaml")
    fj, fy = flow.work / "j.json", flow.work / "y.yaml"
    fj.write_text(json.dumps(chain(flow.names, jname)))
    fy.write_text(yaml_chain(flow.names, yname))
    ok(flow("flow", "push", fj))
    r = ok(flow("flow", "push", fy))
    assert f"pushed {yname} version 1" in r.stdout, r.stdout
    wj = api.get("bob", f"/workflows/{jname}").json()
    wy = api.get("bob", f"/workflows/{yname}").json()
    for k in ("nodes", "outputs", "input_schema", "params", "cache"):
        assert wy[k] == wj[k], (k, wy[k], wj[k])
    assert wy["description"] == "cantilever -> bending stress -> safety factor"
    r = ok(flow("flow", "run", yname, "F=1000", "L=2", "fy=235e6", "--json"))
    run = json.loads(r.stdout)
    assert run["outputs"]["safety_factor"] == pytest.approx(235e6 / (2000 / 1.2e-4), rel=1e-12)


@pytest.mark.parametrize("text, says", [
    ("a: &x [1, 2]\nb: *x\nname: n\nnodes: []\n", "aliases"),
    ("name: n\nW: .inf\nnodes: []\n", "no JSON value"),
    ("name: n\nname: m\n", "twice"),
    ("name: n\n---\nname: m\n", "one document"),
    ("- 1\n- 2\n", "not a YAML mapping"),
    ("name: [unclosed\n", "line"),
    ("[" * 100 + "]" * 100 + "\n", "deeper"),
])
def test_push_yaml_refused_with_a_reason(flow, text, says):
    f = flow.work / "bad.yml"
    f.write_text(text)
    r = ok(flow("flow", "push", f), 2)
    assert says in r.stderr, r.stderr
