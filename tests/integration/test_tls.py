"""HTTPS served by mecapy itself (`serve --tls-cert FILE --tls-key FILE`,
docs/deployment.md#tls), with certificates made here by the openssl command: HTTPS
works and says Strict-Transport-Security, plain HTTP on the same port gets no answer, a
key that is not the certificate's (or a file that is not PEM) stops the start with a
message naming the file, SIGHUP serves a new certificate without closing the listener,
and /metrics gives the certificate's expiry."""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

import harness

pytestmark = pytest.mark.skipif(not shutil.which("openssl"), reason="the openssl command is needed")


def make_cert(d: Path, name: str, serial: int, days: int = 30) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 with the given serial, and its key."""
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", str(days),
                    "-set_serial", str(serial), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def served_serial(port: int) -> int:
    """The serial of the certificate a fresh TLS handshake gets (not verified: the
    point is which one is served)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            der = t.getpeercert(binary_form=True)
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"], input=der,
                         capture_output=True, check=True, timeout=30).stdout.decode()
    return int(out.strip().split("=", 1)[1], 16)


class TlsServer(harness.Server):
    @property
    def base(self) -> str:
        return f"https://{self.host}:{self.port}"


@pytest.fixture(scope="module")
def certs():
    d = Path(tempfile.mkdtemp(prefix="tls-certs-"))
    first = make_cert(d, "first", 1001)
    second = make_cert(d, "second", 2002, days=90)
    other = make_cert(d, "other", 3003)
    yield d, first, second, other
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def server(certs):
    d, (cert, key), _, _ = certs
    # The files the server is told of, which the reload test overwrites.
    live_cert, live_key = d / "live.pem", d / "live.key"
    shutil.copy(cert, live_cert)
    shutil.copy(key, live_key)
    root = Path(tempfile.mkdtemp(prefix="tls-", dir=harness.tmp_root()))
    (root / "data").mkdir()
    s = TlsServer(root / "data", workers=1,
                  extra_args=["--tls-cert", str(live_cert), "--tls-key", str(live_key)])
    old = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = str(cert)  # the harness's readiness probe trusts it
    try:
        s.start()
    finally:
        if old is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = old
    yield s, live_cert, live_key
    s.stop()
    if not os.environ.get("MECAPY_KEEP_TEST_DATA"):
        shutil.rmtree(root, ignore_errors=True)


def test_https_answers_with_hsts(server, certs):
    s, _, _ = server
    _, (cert, _), _, _ = certs
    r = requests.get(s.base + "/healthz", verify=str(cert), timeout=harness.HTTP_TIMEOUT_S)
    assert r.status_code == 200
    assert r.headers["Strict-Transport-Security"].startswith("max-age="), r.headers
    # An API answer too, a problem one.
    r = requests.get(s.base + "/api/v1/functions", verify=str(cert), timeout=harness.HTTP_TIMEOUT_S)
    assert r.status_code == 401 and "Strict-Transport-Security" in r.headers, r.headers


def test_a_client_that_does_not_trust_it_is_refused(server, certs):
    s, _, _ = server
    _, _, _, (other, _) = certs
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(s.base + "/healthz", verify=str(other), timeout=harness.HTTP_TIMEOUT_S)


def test_plain_http_gets_no_answer(server):
    s, _, _ = server
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{s.port}/healthz", timeout=10)


def test_metrics_give_the_certificate_expiry(server, certs):
    s, live_cert, _ = server
    _, (cert, _), _, _ = certs
    r = requests.get(s.base + "/metrics", verify=str(cert), timeout=harness.HTTP_TIMEOUT_S)
    assert r.status_code == 200
    values = {line.split()[0]: float(line.split()[1]) for line in r.text.splitlines()
              if line and not line.startswith("#")}
    end = subprocess.run(["openssl", "x509", "-in", str(live_cert), "-noout", "-enddate"],
                         capture_output=True, text=True, check=True).stdout.strip().split("=", 1)[1]
    expected = ssl.cert_time_to_seconds(end)
    assert values["mecapy_tls_certificate_expiry_seconds"] == expected
    assert values["mecapy_data_dir_free_bytes"] > 0
    assert values["mecapy_data_dir_size_bytes"] >= values["mecapy_data_dir_free_bytes"]


def test_sighup_serves_the_new_certificate_and_keeps_the_listener(server, certs):
    s, live_cert, live_key = server
    _, _, (cert2, key2), (other, other_key) = certs
    assert served_serial(s.port) == 1001
    # A connection opened before the reload stays usable after it.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    held = ctx.wrap_socket(socket.create_connection(("127.0.0.1", s.port), timeout=10),
                           server_hostname="127.0.0.1")
    shutil.copy(cert2, live_cert)
    shutil.copy(key2, live_key)
    os.kill(s.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while served_serial(s.port) != 2002 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert served_serial(s.port) == 2002
    held.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert held.recv(100).startswith(b"HTTP/1.1 200")
    held.close()
    r = requests.get(s.base + "/healthz", verify=str(cert2), timeout=harness.HTTP_TIMEOUT_S)
    assert r.status_code == 200

    # A mismatched pair on reload: refused, logged, the current certificate stays.
    shutil.copy(other, live_cert)
    shutil.copy(key2, live_key)
    mark = s.log_path.stat().st_size
    os.kill(s.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while "still serving the previous certificate" not in s.log_path.read_text()[mark:] \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "still serving the previous certificate" in s.log_path.read_text()[mark:]
    assert served_serial(s.port) == 2002
    assert s.proc.poll() is None


@pytest.mark.parametrize("case", ["mismatch", "not-pem", "missing", "cert-only"])
def test_a_bad_pair_stops_the_start_with_a_clear_message(certs, tmp_path, case):
    d, (cert, key), _, (other, _) = certs
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not a certificate\n")
    args = {
        "mismatch": ["--tls-cert", str(other), "--tls-key", str(key)],
        "not-pem": ["--tls-cert", str(garbage), "--tls-key", str(key)],
        "missing": ["--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(key)],
        "cert-only": ["--tls-cert", str(cert)],
    }[case]
    (tmp_path / "data").mkdir()
    r = harness.run_cli(["serve", "--data-dir", str(tmp_path / "data"), "--port", str(harness.free_port()),
                         "--workers", "0", *args], timeout=60)
    assert r.returncode != 0
    want = {"mismatch": "is not the key of the certificate", "not-pem": str(garbage),
            "missing": "cannot be read", "cert-only": "--tls-key"}[case]
    assert want in r.stderr, r.stderr


# --- the backends' URLs: passwords, and TLS where the client library has it ---

FN = """\
def main(x: int) -> int:
    return x + 1
"""


def one_call(stack) -> None:
    fid = stack.api.create_function("alice", stack.api.unique("inc"), FN)["id"]
    t = stack.api.execute("alice", fid, {"x": 41})
    assert t["status"] == "completed" and t["result"] == 42, t


def server_lines(stack) -> str:
    """What the server logged (the harness's own "=====" lines hold its command line)."""
    return "\n".join(l for l in stack.server.log_path.read_text().splitlines() if not l.startswith("===== "))


@pytest.fixture()
def redis_with_password(tmp_path):
    """A Redis of this test's own that wants a password (tests/services/redis.sh starts
    one without)."""
    server = shutil.which("redis-server")
    if not server:
        pytest.skip("redis-server is not installed")
    port = harness.free_port()
    password = "p@ss:w/rd%"
    subprocess.run([server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                    "--daemonize", "yes", "--pidfile", str(tmp_path / "redis.pid"), "--logfile",
                    str(tmp_path / "redis.log"), "--requirepass", password], check=True, timeout=30)
    deadline = time.monotonic() + 10
    while not harness.port_open(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port, password
    subprocess.run(["redis-cli", "-p", str(port), "--no-auth-warning", "-a", password, "shutdown", "nosave"],
                   capture_output=True, timeout=30)


def test_redis_url_with_a_password(redis_with_password, tmp_path):
    port, password = redis_with_password
    escaped = requests.utils.quote(password, safe="")
    s = harness.start_stack("redis-auth", extra_args=["--queue", f"redis://:{escaped}@127.0.0.1:{port}"])
    try:
        one_call(s)
        assert password not in server_lines(s)
    finally:
        s.close()
    # A wrong password: the server says so, and does not start.
    (tmp_path / "d").mkdir()
    r = harness.run_cli(["serve", "--data-dir", str(tmp_path / "d"), "--port", "0", "--workers", "1",
                         "--queue", f"redis://:wrong-secret@127.0.0.1:{port}"], timeout=60)
    assert r.returncode != 0
    assert "authentication refused" in r.stderr and "wrong-secret" not in r.stderr, r.stderr


def test_rediss_is_refused_with_the_reason(tmp_path):
    (tmp_path / "d").mkdir()
    r = harness.run_cli(["serve", "--data-dir", str(tmp_path / "d"), "--port", "0",
                         "--queue", "rediss://:x@127.0.0.1:6380"], timeout=60)
    assert r.returncode != 0 and "rediss:// (TLS) is not supported" in r.stderr, r.stderr


@pytest.fixture()
def postgres_with_password_and_tls(tmp_path):
    """The PostgreSQL of tests/services/postgres.sh, then: a role with a password that
    loopback TCP must give (scram-sha-256 in pg_hba.conf, first line), and TLS on with a
    certificate made here."""
    svc = Path(tempfile.mkdtemp(prefix="tls-pg-"))
    svc.chmod(0o755)
    (svc / "pg").mkdir()
    url = harness.service("postgres", "start", svc / "pg", skip_if_unavailable=True)
    try:
        data = svc / "pg" / "pgdata"
        cert, key = make_cert(tmp_path, "pg", 4004)
        shutil.copy(cert, data / "server.crt")
        shutil.copy(key, data / "server.key")
        hba = data / "pg_hba.conf"
        hba.write_text("host all app 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        if os.geteuid() == 0:
            for f in ("server.crt", "server.key", "pg_hba.conf"):
                shutil.chown(data / f, "postgres", "postgres")
        (data / "server.key").chmod(0o600)
        sql = ["SET password_encryption = 'scram-sha-256'; CREATE ROLE app LOGIN PASSWORD 'S3cret-pw'",
               "ALTER DATABASE mecapy OWNER TO app", "ALTER SCHEMA public OWNER TO app",
               "ALTER SYSTEM SET ssl = on", "SELECT pg_reload_conf()"]
        r = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", *[a for q in sql for a in ("-c", q)]],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        time.sleep(0.5)  # the reload is asynchronous
        host_port = url.split("@", 1)[1].split("/", 1)[0]
        yield host_port, cert
    finally:
        harness.service("postgres", "stop", svc / "pg")
        if not os.environ.get("MECAPY_KEEP_TEST_DATA"):
            shutil.rmtree(svc, ignore_errors=True)


def test_postgres_url_with_a_password_and_tls(postgres_with_password_and_tls, tmp_path):
    host_port, cert = postgres_with_password_and_tls
    (tmp_path / "d").mkdir()
    good = (f"postgres://app:S3cret-pw@{host_port}/mecapy?sslmode=verify-full&sslrootcert={cert}")
    r = harness.run_cli(["migrate", "--data-dir", str(tmp_path / "d"), "--db", good], timeout=120)
    assert r.returncode == 0, r.stderr
    assert "S3cret-pw" not in r.stdout + r.stderr and "app:***@" in r.stdout, r.stdout
    # The server really checks the password, and libpq really checks the certificate.
    for bad, why in ((f"postgres://app:wrong-pw@{host_port}/mecapy?sslmode=require", "password"),
                     (f"postgres://app:S3cret-pw@{host_port}/mecapy?sslmode=verify-full", "root certificate")):
        r = harness.run_cli(["migrate", "--data-dir", str(tmp_path / "d"), "--db", bad], timeout=120)
        assert r.returncode != 0 and why in r.stderr, r.stderr
        assert "wrong-pw" not in r.stderr and "S3cret-pw" not in r.stderr, r.stderr
    # And a whole server on it: a call runs.
    s = harness.start_stack("pg-tls", extra_args=["--db", good], admin_args=["--db", good])
    try:
        one_call(s)
        assert "S3cret-pw" not in server_lines(s)
    finally:
        s.close()
