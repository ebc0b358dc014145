"""Review of function versions (docs/identity.md#review): submitted by the author,
approved or rejected by another member of the same company (never the author, never a
viewer), a company setting that requires approval before publishing, and the audit log
of every step. Runs on both stores as the other integration suites (tests/run.sh)."""
from __future__ import annotations

import pytest

import harness
from harness import User, assert_problem, error_paths, expect_status

USERS = [
    User("alice", "alice@review.test", "alice-pass-1234", "review-acme"),
    User("bob", "bob@review.test", "bob-pass-1234", "review-acme"),
    User("boss", "boss@review.test", "boss-pass-1234", "review-acme", "admin"),
    User("vic", "vic@review.test", "vic-pass-1234", "review-acme", "viewer"),
    User("carol", "carol@review.test", "carol-pass-1234", "review-globex"),
]

CODE = "def main(x: float) -> float:\n    return 2 * x\n"


@pytest.fixture(scope="module")
def stack():
    s = harness.start_stack("review", users=USERS)
    yield s
    s.close()


@pytest.fixture(scope="module")
def api(stack):
    return stack.api


def uid(api, user):
    return api.get(user, "/me").json()["id"]


def step(api, user, fid, version, action, comment=None):
    body = {"comment": comment} if comment is not None else {}
    return api.post(user, f"/functions/{fid}/versions/{version}/{action}", json=body)


def test_submit_and_approve_by_another_member(api):
    fn = api.create_function("alice", harness.Api.unique("rev"), CODE, visibility="company")
    fid = fn["id"]
    assert fn["review"] == {"status": "draft", "reviewer_id": None, "at": None, "comments": []}
    # Nothing to approve before it is submitted; the author may never approve.
    assert_problem(step(api, "bob", fid, 1, "approve"), 409)
    assert_problem(step(api, "alice", fid, 1, "approve"), 403)
    r = step(api, "alice", fid, 1, "review", "please check the load case")
    expect_status(r, 200)
    assert r.json()["review"]["status"] == "submitted"
    assert_problem(step(api, "alice", fid, 1, "review"), 409)  # already submitted
    assert_problem(step(api, "alice", fid, 1, "approve", "fine by me"), 403)
    assert_problem(step(api, "vic", fid, 1, "approve"), 403)
    assert_problem(step(api, "carol", fid, 1, "approve"), 404)
    r = step(api, "bob", fid, 1, "approve", "checked against Roark")
    expect_status(r, 200)
    rev = r.json()["review"]
    assert rev["status"] == "approved"
    assert rev["reviewer_id"] == uid(api, "bob")
    assert rev["at"].endswith("Z")
    assert [(c["action"], c["by"], c["comment"]) for c in rev["comments"]] == [
        ("submit", uid(api, "alice"), "please check the load case"),
        ("approve", uid(api, "bob"), "checked against Roark")]
    # The version shows it on a later read too, to the company's members.
    assert api.get("vic", f"/functions/{fid}").json()["review"]["status"] == "approved"
    # A new version starts as a draft again.
    r = api.put("alice", f"/functions/{fid}", json={"code": CODE.replace("2 *", "3 *")})
    expect_status(r, 200)
    assert r.json()["review"]["status"] == "draft"
    assert api.get("alice", f"/functions/{fid}", params={"version": "1"}).json()["review"]["status"] == "approved"


def test_reject_needs_a_comment_and_the_author_submits_again(api):
    fid = api.create_function("alice", harness.Api.unique("rev"), CODE)["id"]
    expect_status(step(api, "alice", fid, 1, "review"), 200)
    p = assert_problem(step(api, "boss", fid, 1, "reject"), 422)
    assert "comment" in error_paths(p)
    r = step(api, "boss", fid, 1, "reject", "the units of x are missing")
    expect_status(r, 200)
    assert r.json()["review"]["status"] == "rejected"
    assert r.json()["review"]["reviewer_id"] == uid(api, "boss")
    expect_status(step(api, "alice", fid, 1, "review", "units added"), 200)
    r = step(api, "bob", fid, 1, "approve")
    expect_status(r, 200)
    assert [c["action"] for c in r.json()["review"]["comments"]] == ["submit", "reject", "submit", "approve"]


def test_unknown_versions_and_functions_are_404(api):
    fid = api.create_function("alice", harness.Api.unique("rev"), CODE)["id"]
    assert_problem(step(api, "alice", fid, 7, "review"), 404)
    assert_problem(step(api, "alice", fid, "x", "review"), 404)
    assert_problem(step(api, "alice", "0" * 26, 1, "review"), 404)
    # Another member's private draft is not theirs to see; a viewer may not submit a
    # version the company sees either.
    assert_problem(step(api, "bob", fid, 1, "review"), 404)
    shared = api.create_function("alice", harness.Api.unique("rev"), CODE, visibility="company")["id"]
    assert_problem(step(api, "vic", shared, 1, "review"), 403)


def test_the_company_can_require_approval_before_publishing(api):
    assert api.get("alice", "/company/settings").json() == {"require_review_to_publish": False}
    assert_problem(api.put("alice", "/company/settings", json={"require_review_to_publish": True}), 403)
    p = assert_problem(api.put("boss", "/company/settings", json={"require_review_to_publish": "yes"}), 422)
    assert "require_review_to_publish" in error_paths(p)
    p = assert_problem(api.put("boss", "/company/settings", json={"colour": 1}), 422)
    assert "colour" in error_paths(p)
    r = api.put("boss", "/company/settings", json={"require_review_to_publish": True})
    expect_status(r, 200)
    try:
        assert api.get("alice", "/company/settings").json() == {"require_review_to_publish": True}
        fid = api.create_function("alice", harness.Api.unique("rev"), CODE)["id"]
        p = assert_problem(api.put("alice", f"/functions/{fid}", json={"visibility": "public"}), 409)
        assert p["type"].endswith("NotApproved"), p
        p = assert_problem(api.post("alice", "/functions", json={
            "name": harness.Api.unique("rev"), "code": CODE, "visibility": "public"}), 409)
        assert p["type"].endswith("NotApproved")
        # Another company's setting is its own: carol publishes freely.
        api.create_function("carol", harness.Api.unique("rev"), CODE, visibility="public")
        expect_status(step(api, "alice", fid, 1, "review"), 200)
        assert_problem(api.put("alice", f"/functions/{fid}", json={"visibility": "public"}), 409)
        expect_status(step(api, "bob", fid, 1, "approve"), 200)
        r = api.put("alice", f"/functions/{fid}", json={"visibility": "public"})
        expect_status(r, 200)
        assert r.json()["visibility"] == "public"
    finally:
        expect_status(api.put("boss", "/company/settings", json={"require_review_to_publish": False}), 200)


def test_every_step_is_in_the_audit_log(api):
    fid = api.create_function("alice", harness.Api.unique("rev"), CODE)["id"]
    expect_status(step(api, "alice", fid, 1, "review", "ready"), 200)
    expect_status(step(api, "bob", fid, 1, "reject", "not yet"), 200)
    expect_status(step(api, "alice", fid, 1, "review"), 200)
    expect_status(step(api, "boss", fid, 1, "approve", "ok"), 200)
    items = api.get("boss", "/audit", params={"limit": "100"}).json()["items"]
    mine = [(e["kind"], e["actor_id"], e["detail"].get("comment")) for e in items if e.get("target_id") == fid]
    assert mine[::-1] == [
        ("version_review_submitted", uid(api, "alice"), "ready"),
        ("version_rejected", uid(api, "bob"), "not yet"),
        ("version_review_submitted", uid(api, "alice"), None),
        ("version_approved", uid(api, "boss"), "ok")]
    assert all(e["detail"]["version"] == 1 for e in items if e.get("target_id") == fid)
    kinds = {e["kind"] for e in api.get("boss", "/audit", params={"kind": "company_settings_changed"}).json()["items"]}
    assert kinds <= {"company_settings_changed"}
