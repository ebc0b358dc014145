"""The alerting kit in deploy/ (docs/operations.md#alerts): the rules pass `promtool
check rules` and their unit tests (`promtool test rules`: each alert fires when it
should and not otherwise), every metric they read is one a running server serves, the
Prometheus configuration loads them, and the Alertmanager example is valid and mails
every alert to a receiver chosen by its severity."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

import harness

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"
PROM = DEPLOY / "prometheus" / "prometheus.yml"
AM = DEPLOY / "alertmanager" / "alertmanager.yml"

# Served only by a server started with --tls-cert (tests/integration/test_tls.py reads it).
TLS_ONLY = {"mecapy_tls_certificate_expiry_seconds"}
# Prometheus's own series and functions.
NOT_OURS = {"up", "time", "sum", "rate", "increase", "histogram_quantile", "by", "le"}


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} is not installed (Debian package {package}, scripts/install-deps.sh test)")
    return path


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120, cwd=cwd)


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_promtool_check_rules():
    r = run(tool("promtool", "prometheus"), "check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(rules())} rules found" in r.stdout, r.stdout


def test_promtool_rule_unit_tests():
    r = run(tool("promtool", "prometheus"), "test", "rules", str(RULE_TESTS))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout, r.stdout


def test_every_alert_is_unit_tested_firing_and_not_firing():
    doc = yaml.safe_load(RULE_TESTS.read_text())
    fired, quiet = set(), set()
    for t in doc["tests"]:
        for c in t.get("alert_rule_test", []):
            (fired if c.get("exp_alerts") else quiet).add(c["alertname"])
    names = {r["alert"] for r in rules()}
    assert names - fired == set(), "alerts no test sees firing"
    assert names - quiet == set(), "alerts no test sees staying quiet"


def test_the_plan_s_alerts_are_there_with_a_severity_and_a_summary():
    by_name = {r["alert"]: r for r in rules()}
    for name in ("MecaPyWorkerDown", "MecaPyQueueGrowing", "MecaPyErrorRatio", "MecaPyLatencyP95High",
                 "MecaPyDiskAlmostFull", "MecaPyCertificateExpiring"):
        assert name in by_name, name
    for r in by_name.values():
        assert r["labels"]["severity"] in ("warning", "critical"), r
        assert r["annotations"]["summary"] and r["annotations"]["description"], r


def test_prometheus_config_loads_the_rules_and_an_alertmanager():
    cfg = yaml.safe_load(PROM.read_text())
    assert "alerts.yml" in cfg["rule_files"]
    assert cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    r = run(tool("promtool", "prometheus"), "check", "config", str(PROM))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 rule files found" in r.stdout, r.stdout


@pytest.fixture(scope="module")
def served() -> set[str]:
    """The metric names a running server's /metrics gives (histograms by family name)."""
    s = harness.start_stack("alerts")
    try:
        r = requests.get(s.server.base + "/metrics", timeout=harness.HTTP_TIMEOUT_S)
        assert r.status_code == 200
        return {line.split()[0].split("{")[0] for line in r.text.splitlines() if line and not line.startswith("#")}
    finally:
        s.close()


def test_every_metric_the_rules_read_is_served(served):
    names = set()
    for r in rules():
        names |= set(re.findall(r"\b(mecapy_[a-z0-9_]+)", r["expr"]))
    assert names, "the rules read no mecapy_ metric"
    missing = sorted(n for n in names - TLS_ONLY if n not in served)
    assert not missing, f"the rules read metrics no server serves: {missing}"


def test_alertmanager_example_is_valid_and_mails_every_alert(tmp_path):
    amtool = tool("amtool", "prometheus-alertmanager")
    r = run(amtool, "check-config", str(AM))
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = yaml.safe_load(AM.read_text())
    mail = {rc["name"] for rc in cfg["receivers"] if rc.get("email_configs")}
    assert mail == {rc["name"] for rc in cfg["receivers"]}, "every receiver mails"
    for rule in rules():
        r = run(amtool, "config", "routes", "test", f"--config.file={AM}",
                f"alertname={rule['alert']}", f"severity={rule['labels']['severity']}")
        receiver = r.stdout.strip()
        assert r.returncode == 0 and receiver in mail, (rule["alert"], r.stdout, r.stderr)
        if rule["labels"]["severity"] == "critical":
            assert receiver == "oncall-mail", rule["alert"]
