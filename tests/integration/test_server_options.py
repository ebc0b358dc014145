"""Server commands refuse what they do not understand: a mistyped option must never start
a server on a default the operator did not choose (`serve --listen 127.0.0.1:9999` used
to start on port 8000)."""
import pytest

from harness import run_cli


@pytest.mark.parametrize("args, named, usage", [
    (["serve", "--data-dir", "{dir}", "--listen", "127.0.0.1:9999"], '"--listen"', "usage: mecapy serve [OPTIONS]"),
    (["serve", "--data-dir", "{dir}", "--port=8001", "extra"], '"extra"', "usage: mecapy serve [OPTIONS]"),
    (["serve", "--data-dir", "{dir}", "--port"], "--port needs a value", "usage: mecapy serve [OPTIONS]"),
    (["worker", "--data-dir", "{dir}", "--queue", "redis://127.0.0.1:1", "--shards", "2"], '"--shards"',
     "usage: mecapy worker"),
    (["migrate", "--data-dir", "{dir}", "--data", "/nonexistent"], '"--data"', "usage: mecapy migrate [OPTIONS]"),
    (["admin", "create-user", "--data-dir", "{dir}", "--email", "a@b.test", "--password", "long-enough-1",
      "--comapny", "acme"], '"--comapny"', "usage: mecapy admin create-user"),
    (["admin", "set-role", "--data-dir", "{dir}", "--email", "a@b.test", "--role", "admin", "--dry-run"],
     '"--dry-run"', "usage: mecapy admin set-role"),
])
def test_unknown_option_is_refused_with_its_name_and_the_usage(args, named, usage, tmp_path):
    r = run_cli([str(tmp_path) if a == "{dir}" else a for a in args], timeout=20)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert named in r.stderr, r.stderr
    assert usage in r.stderr, r.stderr
    # Refused before anything was created or started.
    assert not (tmp_path / "mecapy.db").exists()


def test_admin_options_still_work_with_server_options(tmp_path):
    r = run_cli(["admin", "create-user", "--data-dir", str(tmp_path), "--email", "eve@x.test",
                 "--password", "eve-pass-1234", "--company", "x", "--role", "member"], timeout=30)
    assert r.returncode == 0, r.stderr
    assert "created user eve@x.test" in r.stdout
    r = run_cli(["admin", "set-role", "--email", "eve@x.test", "--role", "viewer",
                 "--data-dir", str(tmp_path)], timeout=30)
    assert r.returncode == 0, r.stderr
    assert "is now viewer" in r.stdout
