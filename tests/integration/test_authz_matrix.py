"""The authorization matrix: every route × role × object, each cell an expected status.

Roles (docs/identity.md): `admin`, `member` and `viewer` of company A, `other` (a member
of company B) and `anon` (no token). Objects are named from the caller's side: `own`
(the caller's), `co-company` / `co-private` / `co-public` (a function of another member of
the caller's company with that visibility), `co` (that member's task, token or account),
`other-private` / `other-public` / `other` (the same in the other company).

The table is the contract: one row per route and object, one expected status per role.
The test runs every cell and reports every failing cell at once.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harness  # noqa: E402
from harness import User, expect_status  # noqa: E402

ROLES = ["admin", "member", "viewer", "other", "anon"]

# The actor behind each role, and the "second member" of each company who owns the co-*
# objects. The viewer starts as a member (to own a function and a token), then the
# company admin demotes it.
USERS = [
    User("admin", "adm@a.test", "adm-pass-1234", "authz-a", "admin"),
    User("member", "mem@a.test", "mem-pass-1234", "authz-a", "member"),
    User("viewer", "view@a.test", "view-pass-1234", "authz-a", "member"),
    User("a2", "a2@a.test", "a2-pass-1234", "authz-a", "member"),
    User("other", "mem@b.test", "memb-pass-1234", "authz-b", "member"),
    User("b2", "b2@b.test", "b2-pass-1234", "authz-b", "member"),
]
COMPANY = {"admin": "a", "member": "a", "viewer": "a", "other": "b", "anon": "a"}
SECOND = {"a": "a2", "b": "b2"}
OTHER = {"a": "b", "b": "a"}

ARTIFACT = """\
from pathlib import Path

def main(x: float = 1.0) -> dict:
    Path('outputs').mkdir(exist_ok=True)
    Path('outputs/out.txt').write_text('hi')
    return {"y": x}
"""
SLOW = """\
import time

def main(seconds: float = 20.0) -> str:
    time.sleep(seconds)
    return "slept"
"""

A, M, V, O, N = "admin", "member", "viewer", "other", "anon"


def same(status: int) -> dict:
    """Every signed-in role gets status; anonymous 401."""
    return {A: status, M: status, V: status, O: status, N: 401}


def admin_only(ok: int, others: int = 403) -> dict:
    return {A: ok, M: others, V: others, O: others, N: 401}


def writers(ok: int) -> dict:
    """Members and admins may; a viewer is refused by its role (403)."""
    return {A: ok, M: ok, V: 403, O: ok, N: 401}


# (method, path, object, body, {role: status}). Bodies are JSON; "fresh" objects are
# made anew for each cell of a row that changes them.
MATRIX = [
    # --- me, catalogue ---
    ("GET", "/me", None, None, same(200)),
    ("GET", "/catalogue?q=authz", None, None, same(200)),
    # --- functions ---
    ("GET", "/functions", None, None, same(200)),
    ("POST", "/functions", None, "new-function", writers(201)),
    ("GET", "/functions/{fn}", "own", None, same(200)),
    ("GET", "/functions/{fn}", "co-company", None, same(200)),
    ("GET", "/functions/{fn}", "co-private", None, same(404)),
    ("GET", "/functions/{fn}", "co-public", None, same(200)),
    ("GET", "/functions/{fn}", "other-company", None, same(404)),
    ("GET", "/functions/{fn}", "other-private", None, same(404)),
    ("GET", "/functions/{fn}", "other-public", None, same(200)),
    ("GET", "/functions/{fn}/versions", "own", None, same(200)),
    ("GET", "/functions/{fn}/versions", "co-company", None, same(200)),
    ("GET", "/functions/{fn}/versions", "co-private", None, same(404)),
    ("GET", "/functions/{fn}/versions", "other-private", None, same(404)),
    ("GET", "/functions/{fn}/versions", "other-public", None, same(200)),
    ("PUT", "/functions/{fn}", "own", {"description": "changed"}, writers(200)),
    ("PUT", "/functions/{fn}", "co-company", {"description": "x"}, same(403)),
    ("PUT", "/functions/{fn}", "co-private", {"description": "x"}, same(404)),
    ("PUT", "/functions/{fn}", "co-public", {"description": "x"}, same(403)),
    ("PUT", "/functions/{fn}", "other-company", {"description": "x"}, same(404)),
    ("PUT", "/functions/{fn}", "other-private", {"description": "x"}, same(404)),
    ("PUT", "/functions/{fn}", "other-public", {"description": "x"}, same(403)),
    ("DELETE", "/functions/{fn}", "own-fresh", None, writers(204)),
    ("DELETE", "/functions/{fn}", "co-company", None, same(403)),
    ("DELETE", "/functions/{fn}", "co-private", None, same(404)),
    ("DELETE", "/functions/{fn}", "other-private", None, same(404)),
    ("DELETE", "/functions/{fn}", "other-public", None, same(403)),
    ("POST", "/functions/{fn}/execute", "own", {"inputs": {"x": 1}}, same(202)),
    ("POST", "/functions/{fn}/execute", "co-company", {"inputs": {"x": 1}}, same(202)),
    ("POST", "/functions/{fn}/execute", "co-private", {"inputs": {"x": 1}}, same(404)),
    ("POST", "/functions/{fn}/execute", "co-public", {"inputs": {"x": 1}}, same(202)),
    ("POST", "/functions/{fn}/execute", "other-company", {"inputs": {"x": 1}}, same(404)),
    ("POST", "/functions/{fn}/execute", "other-private", {"inputs": {"x": 1}}, same(404)),
    ("POST", "/functions/{fn}/execute", "other-public", {"inputs": {"x": 1}}, same(202)),
    # --- tasks: the owner's; a company admin sees and cancels its members' ---
    ("GET", "/tasks", None, None, same(200)),
    ("GET", "/tasks/{task}", "own", None, same(200)),
    ("GET", "/tasks/{task}", "co", None, admin_only(200, 404)),
    ("GET", "/tasks/{task}", "other", None, same(404)),
    ("GET", "/tasks/{task}/logs", "own", None, same(200)),
    ("GET", "/tasks/{task}/logs", "co", None, admin_only(200, 404)),
    ("GET", "/tasks/{task}/logs", "other", None, same(404)),
    ("GET", "/tasks/{task}/artifacts/out.txt", "own", None, same(200)),
    ("GET", "/tasks/{task}/artifacts/out.txt", "co", None, admin_only(200, 404)),
    ("GET", "/tasks/{task}/artifacts/out.txt", "other", None, same(404)),
    ("POST", "/tasks/{task}/cancel", "own-running", None, same(200)),
    ("POST", "/tasks/{task}/cancel", "co-running", None, admin_only(200, 404)),
    ("POST", "/tasks/{task}/cancel", "other-running", None, same(404)),
    ("POST", "/tasks/{task}/cancel", "own", None, same(409)),
    # --- tokens ---
    ("GET", "/tokens", None, None, same(200)),
    ("POST", "/tokens", None, {"name": "t"}, writers(201)),
    ("DELETE", "/tokens/{token}", "own-fresh", None, same(204)),
    ("DELETE", "/tokens/{token}", "co", None, same(404)),
    ("DELETE", "/tokens/{token}", "other", None, same(404)),
    # --- company ---
    ("GET", "/company", None, None, same(200)),
    ("GET", "/company/members", None, None, admin_only(200)),
    ("POST", "/company/members", None, "new-member", admin_only(201)),
    ("PATCH", "/company/members/{user}", "co", {"role": "member"}, admin_only(200)),
    ("PATCH", "/company/members/{user}", "other", {"role": "member"}, admin_only(404)),
    ("DELETE", "/company/members/{user}", "co-fresh", None, admin_only(204)),
    ("DELETE", "/company/members/{user}", "other", None, admin_only(404)),
    ("GET", "/company/members/{user}/tokens", "co", None, admin_only(200)),
    ("GET", "/company/members/{user}/tokens", "other", None, admin_only(404)),
    ("DELETE", "/company/members/{user}/tokens/{token}", "co-newtoken", None, admin_only(204)),
    ("DELETE", "/company/members/{user}/tokens/{token}", "other", None, admin_only(404)),
    ("GET", "/company/members/{user}/tasks", "co", None, admin_only(200)),
    ("GET", "/company/members/{user}/tasks", "other", None, admin_only(404)),
]


class World:
    """The objects of the matrix, made through the API as their owners."""

    def __init__(self, api: harness.Api):
        self.api = api
        self.fns: dict[tuple[str, str], str] = {}  # (owner, visibility) -> id
        self.tasks: dict[str, str] = {}             # owner -> ended task with an artifact
        self.tokens: dict[str, str] = {}            # owner -> API token id
        self.ids = {}
        self.n = 0

    def uid(self, name: str) -> str:
        if name not in self.ids:
            self.ids[name] = expect_status(self.api.get(name, "/me"), 200).json()["id"]
        return self.ids[name]

    def fn(self, owner: str, visibility: str = "private", code: str = ARTIFACT) -> str:
        self.n += 1
        f = self.api.create_function(owner, f"authz-{owner}-{visibility}-{self.n}", code,
                                     visibility=visibility, tags=["authz"])
        return f["id"]

    def token(self, owner: str) -> str:
        self.n += 1
        r = expect_status(self.api.post(owner, "/tokens", json={"name": f"t{self.n}"}), 201)
        return r.json()["id"]

    def running(self, owner: str) -> str:
        r = self.api.execute_raw(owner, self.fns[("slow", owner)], {"seconds": 20})
        return expect_status(r, 202).json()["id"]

    def setup(self) -> None:
        for owner in ["admin", "member", "viewer", "a2", "other", "b2"]:
            for vis in ["private", "company", "public"]:
                self.fns[(owner, vis)] = self.fn(owner, vis)
            t = self.api.execute(owner, self.fns[(owner, "private")], {"x": 2})
            assert t["status"] == "completed", t
            self.tasks[owner] = t["id"]
            self.tokens[owner] = self.token(owner)
            self.fns[("slow", owner)] = self.fn(owner, "private", SLOW)
        # The viewer made its objects as a member; now the admin makes it a viewer.
        r = self.api.request("admin", "PATCH", f"/company/members/{self.uid('viewer')}",
                             json={"role": "viewer"})
        expect_status(r, 200)

    def params(self, role: str, obj: str | None) -> tuple[dict, list]:
        """The placeholders for a cell, and what to clean up after it."""
        actor = "a2" if role == "anon" else role
        co = SECOND[COMPANY[role]]
        oth = SECOND[OTHER[COMPANY[role]]]
        if obj is None:
            return {}, []
        kind, _, rest = obj.partition("-")
        who = {"own": actor, "co": co, "other": oth}[kind]
        p = {"user": self.uid(who) if who != "anon" else ""}
        cleanup = []
        if rest in ("company", "private", "public"):
            p["fn"] = self.fns[(who, rest)]
        elif rest == "fresh" and kind == "co":
            # A new member of the caller's company A (company B has no admin to make
            # one: its cells are refusals that change nothing).
            if COMPANY[role] == "a":
                p["user"] = self.fresh_member()
        elif rest == "newtoken":
            p["token"] = self.token(who)
        elif rest == "fresh":
            if role == "viewer":
                # A viewer cannot create: the objects it made before its demotion.
                p["fn"], p["token"] = self.fns[("viewer", "private")], self.tokens["viewer"]
            else:
                p["fn"], p["token"] = self.fn(who), self.token(who)
        elif rest == "running":
            p["task"] = self.running(who)
            cleanup.append((who, p["task"]))
        else:
            p["fn"] = self.fns[(who, "private")]
            p["task"] = self.tasks[who]
            p["token"] = self.tokens[who]
        return p, cleanup

    def fresh_member(self) -> str:
        """A new member of company A, made by its admin; its id. (Not logged in: logins
        are rate-limited.)"""
        self.n += 1
        r = self.api.post("admin", "/company/members",
                          json={"email": f"fresh{self.n}@a.test", "role": "member"})
        return expect_status(r, 201).json()["id"]


@pytest.fixture(scope="module")
def world():
    stack = harness.start_stack("authz", users=USERS)
    w = World(stack.api)
    w.setup()
    yield w
    stack.close()


def body_for(spec, w: World):
    if spec == "new-function":
        w.n += 1
        return {"name": f"authz-new-{w.n}", "code": ARTIFACT}
    if spec == "new-member":
        w.n += 1
        return {"email": f"new{w.n}@authz.test", "role": "viewer"}
    return spec


def test_authz_matrix(world):
    api = world.api
    failures, cells = [], 0
    for method, path, obj, body, expected in MATRIX:
        assert set(expected) == set(ROLES), f"row {method} {path} {obj} must name every role"
        for role in ROLES:
            params, cleanup = world.params(role, obj)
            url = path.format(**params)
            payload = body_for(body, world)
            r = api.request(None if role == "anon" else role, method, url,
                            json=payload if payload is not None else None)
            cells += 1
            if r.status_code != expected[role]:
                failures.append(f"{method} {path} [{obj or '-'}] as {role}: expected "
                                f"{expected[role]}, got {r.status_code} {r.text[:160]!r}")
            elif r.status_code >= 400:
                if not harness.is_problem(r):
                    failures.append(f"{method} {path} [{obj or '-'}] as {role}: "
                                    f"{r.status_code} is not problem+json")
            for owner, tid in cleanup:
                api.post(owner, f"/tasks/{tid}/cancel")
    assert not failures, (f"{len(failures)} of {cells} cells differ from the matrix:\n  "
                          + "\n  ".join(failures))
    assert cells == len(MATRIX) * len(ROLES)
