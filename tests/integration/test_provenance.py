"""Provenance and comparison (docs/api.md#provenance): every task says what produced its
result (code hash, environment, canonical inputs' hash, server version); a re-run computes
the same version with the same inputs again, never from the result cache, and says whether
the result is identical; two tasks compare field by field. Tasks of others stay 404."""
import hashlib
import json

from harness import assert_problem, expect_status

BEAM = '''\
def main(L: float, F: float = 1000.0, E: float = 210e9, I: float = 8.0e-6) -> dict:
    """Cantilever tip deflection."""
    return {"deflection": F * L ** 3 / (3 * E * I), "L": L}
'''

RANDOM = '''\
import random
def main(n: int = 1) -> float:
    return random.random()
'''


def canonical(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_task_carries_its_provenance(api, fname):
    f = api.create_function("alice", fname, BEAM)
    t = api.execute("alice", f["id"], {"L": 2, "F": 1500.0})
    assert t["status"] == "completed", t
    p = t["provenance"]
    assert set(p) == {"code_sha256", "environment", "inputs_sha256", "platform_version"}, p
    assert p["code_sha256"] == hashlib.sha256(BEAM.encode()).hexdigest(), p
    assert p["environment"] == "base", p
    assert p["inputs_sha256"] == hashlib.sha256(canonical({"F": 1500, "L": 2}).encode()).hexdigest(), p
    assert p["platform_version"], p
    # The same inputs spelled otherwise (key order, 2.0 for 2) hash the same.
    t2 = api.execute("alice", f["id"], {"F": 1.5e3, "L": 2.0})
    assert t2["provenance"]["inputs_sha256"] == p["inputs_sha256"], (t2["provenance"], p)
    # A new version has another code hash; the old task keeps its own.
    r = api.put("alice", f"/functions/{f['id']}", json={"code": BEAM.replace("Cantilever", "A cantilever")})
    expect_status(r, 200)
    t3 = api.execute("alice", f["id"], {"L": 2, "F": 1500.0})
    assert t3["provenance"]["code_sha256"] != p["code_sha256"]
    assert api.task("alice", t["id"])["provenance"]["code_sha256"] == p["code_sha256"]


def test_rerun_is_the_same_version_and_identical(api, fname):
    f = api.create_function("alice", fname, BEAM, cache=True)
    t = api.execute("alice", f["id"], {"L": 3})
    expect_status(api.put("alice", f"/functions/{f['id']}", json={"code": BEAM + "\n# v2\n"}), 200)
    r = api.post("alice", f"/tasks/{t['id']}/rerun", params={"wait": "30"})
    expect_status(r, 200)
    out = r.json()
    assert out["identical"] is True, out
    nt = out["task"]
    assert nt["id"] != t["id"] and nt["version"] == t["version"] == 1, (nt, t)
    assert nt["cached_from"] is None, "a re-run computes again, never from the cache"
    assert nt["status"] == "completed" and nt["result"] == t["result"], nt
    assert nt["provenance"] == t["provenance"], (nt["provenance"], t["provenance"])
    # Without wait: 202 and identical null while it runs (or 200 when it already ended).
    r = api.post("alice", f"/tasks/{t['id']}/rerun")
    expect_status(r, 200, 202)
    if r.status_code == 202:
        assert r.json()["identical"] is None, r.json()


def test_rerun_of_a_random_result_is_not_identical(api, fname):
    f = api.create_function("alice", fname, RANDOM)
    t = api.execute("alice", f["id"], {})
    r = api.post("alice", f"/tasks/{t['id']}/rerun", params={"wait": "30"})
    expect_status(r, 200)
    assert r.json()["identical"] is False, r.json()


def test_diff_field_by_field(api, fname):
    f = api.create_function("alice", fname, BEAM)
    a = api.execute("alice", f["id"], {"L": 2, "F": 1000.0})
    b = api.execute("alice", f["id"], {"L": 2, "F": 2000.0})
    r = api.get("alice", f"/tasks/{a['id']}/diff/{b['id']}")
    expect_status(r, 200)
    d = r.json()
    fields = {x["path"]: x for x in d["fields"]}
    assert fields["inputs.F"]["a"] == 1000 and fields["inputs.F"]["b"] == 2000, fields
    assert fields["inputs.F"]["equal"] is False
    assert fields["inputs.F"]["abs_diff"] == 1000 and fields["inputs.F"]["rel_diff"] == 0.5, fields["inputs.F"]
    assert fields["inputs.L"]["equal"] is True and fields["inputs.L"]["abs_diff"] == 0
    da, db = a["result"]["deflection"], b["result"]["deflection"]
    fd = fields["result.deflection"]
    assert fd["a"] == da and fd["b"] == db and not fd["equal"], fd
    assert abs(fd["rel_diff"] - abs(db - da) / max(abs(da), abs(db))) < 1e-12, fd
    assert fields["result.L"]["equal"] is True
    assert d["differences"] == 2 and d["identical_results"] is False and d["truncated"] is False, d
    assert d["a"]["id"] == a["id"] and d["b"]["id"] == b["id"]
    # A task compared with itself: no difference.
    d = api.get("alice", f"/tasks/{a['id']}/diff/{a['id']}").json()
    assert d["differences"] == 0 and d["identical_results"] is True, d


def test_tenancy(api, fname):
    f = api.create_function("alice", fname, BEAM)
    a = api.execute("alice", f["id"], {"L": 1})
    g = api.create_function("carol", fname, BEAM)
    c = api.execute("carol", g["id"], {"L": 1})
    assert_problem(api.post("carol", f"/tasks/{a['id']}/rerun"), 404)
    assert_problem(api.get("carol", f"/tasks/{a['id']}/diff/{c['id']}"), 404)
    assert_problem(api.get("carol", f"/tasks/{c['id']}/diff/{a['id']}"), 404)
    assert_problem(api.get("alice", f"/tasks/{a['id']}/diff/not-a-task"), 404)
