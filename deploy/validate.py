#!/usr/bin/python3
"""Checks of the deployment files that need no container engine and no cluster.

Run through deploy/validate.sh from anywhere. Each check prints "ok", "FAIL" or
"skip (reason)"; the last line is "N passed, N failed, N skipped" and the exit status
is 1 when a check failed. A check whose tool is missing is skipped, never passed.
MECAPY_BIN names the mecapy binary (default: build/mecapy of the repository).
"""
import configparser
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
RESULTS = {"passed": 0, "failed": 0, "skipped": 0}

try:
    import yaml
except ImportError:  # python3-yaml on Debian
    yaml = None


class Skip(Exception):
    pass


def check(name):
    def wrap(fn):
        try:
            problems = fn() or []
        except Skip as e:
            RESULTS["skipped"] += 1
            print(f"skip {name}: {e}")
            return fn
        except Exception as e:  # a crash of a check is a failure of it
            problems = [f"{type(e).__name__}: {e}"]
        if problems:
            RESULTS["failed"] += 1
            print(f"FAIL {name}")
            for p in problems:
                print(f"     - {p}")
        else:
            RESULTS["passed"] += 1
            print(f"ok   {name}")
        return fn
    return wrap


def rel(p):
    return str(Path(p).relative_to(ROOT))


def mecapy_bin():
    b = Path(os.environ.get("MECAPY_BIN", ROOT / "build" / "mecapy"))
    return b if b.is_file() and os.access(b, os.X_OK) else None


def need_yaml():
    if yaml is None:
        raise Skip("python3-yaml is not installed (apt-get install python3-yaml)")


def load_yaml_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def env_file(path):
    """KEY=value lines as systemd's EnvironmentFile= reads them (quotes stripped)."""
    out = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        k, _, v = line.partition("=")
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            v = v[1:-1]
        out[k] = v
    return out


# The options that exist: the MECAPY_* table of src/base/config.c, and the client's
# variables read through mp_config_client_env().
CONFIG_C = (ROOT / "src/base/config.c").read_text()
KNOWN_VARS = set(re.findall(r'\{\s*OPT_\w+,\s*"[\w-]+",\s*"(MECAPY_\w+)"\s*\}', CONFIG_C))
for src in (ROOT / "src").rglob("*.c"):
    KNOWN_VARS |= set(re.findall(r'mp_config_client_env\("(MECAPY_\w+)"\)', src.read_text()))
KNOWN_VARS.add("MECAPY_BIN")  # the binary the tests and this script check, not a server option

ENV_EXAMPLE = DEPLOY / "systemd/mecapy.env.example"
UNITS = ["mecapy-api.service", "mecapy-worker@.service", "mecapy-workers.target"]
COMPOSE = DEPLOY / "compose/compose.yaml"
K8S = DEPLOY / "kubernetes"
SUPERVISOR = DEPLOY / "supervisor/mecapy.conf"
CONTAINERFILE = DEPLOY / "container/Containerfile"


def seconds(v):
    m = re.fullmatch(r"\s*(\d+)\s*(s|sec)?\s*", str(v))
    if not m:
        m = re.fullmatch(r"\s*(\d+)m\s*", str(v))
        return int(m.group(1)) * 60 if m else None
    return int(m.group(1))


GRACE = int(env_file(ENV_EXAMPLE).get("MECAPY_GRACE", "30"))


# ---------------------------------------------------------------- variables


@check("every MECAPY_* variable named in deploy/ and docs/deployment.md is an option of src/base/config.c")
def _vars():
    problems = []
    if len(KNOWN_VARS) < 30:
        problems.append(f"read only {len(KNOWN_VARS)} variables from config.c: its table changed shape")
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and not p.is_symlink()
             and p.suffix not in (".pyc",) and p.name != "validate.py"]
    files.append(ROOT / "docs/deployment.md")
    for p in files:
        if not p.exists():
            continue
        for v in sorted(set(re.findall(r"\bMECAPY_[A-Z0-9_]*[A-Z0-9]\b", p.read_text(errors="replace")))):
            if v not in KNOWN_VARS:
                problems.append(f"{rel(p)}: {v} is not a MecaPy variable")
    return problems


@check("the environment example, compose and Kubernetes settings are accepted by `mecapy migrate`")
def _config_parse():
    b = mecapy_bin()
    if not b:
        raise Skip("no mecapy binary (build it: meson setup build && ninja -C build, or set MECAPY_BIN)")
    need_yaml()
    sets = {rel(ENV_EXAMPLE): env_file(ENV_EXAMPLE)}
    compose = yaml.safe_load(COMPOSE.read_text())
    for name, svc in compose["services"].items():
        env = svc.get("environment")
        if isinstance(env, dict) and any(k.startswith("MECAPY_") for k in env):
            sets[f"compose service {name}"] = {k: str(v) for k, v in env.items()}
    k8s = {}
    for p in sorted(K8S.glob("*.yaml")):
        for d in load_yaml_all(p):
            if d.get("kind") == "ConfigMap":
                k8s.update(d.get("data", {}))
            if d.get("kind") == "Secret":
                k8s.update(d.get("stringData", {}))
    sets["kubernetes ConfigMap + Secret"] = {k: str(v) for k, v in k8s.items()}
    problems = []
    for label, env in sets.items():
        with tempfile.TemporaryDirectory() as tmp:
            run_env = {"PATH": "/usr/bin:/bin", **{k: v for k, v in env.items() if v}}
            # The options are parsed as given; the backends are swapped for embedded
            # ones in a scratch folder (no PostgreSQL, Redis or S3 is reached).
            run_env.update(MECAPY_DATA_DIR=tmp, MECAPY_DB=f"sqlite:{tmp}/mecapy.db",
                           MECAPY_BLOBS=f"file:{tmp}/objects", MECAPY_QUEUE="local:")
            r = subprocess.run([str(b), "migrate"], env=run_env, capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                problems.append(f"{label}: mecapy migrate exited {r.returncode}: {(r.stderr or r.stdout).strip()[:300]}")
    return problems


# ---------------------------------------------------------------- systemd


@check("systemd units pass `systemd-analyze verify` (ExecStart pointed at the built binary)")
def _systemd_verify():
    sa = shutil.which("systemd-analyze")
    if not sa:
        raise Skip("systemd-analyze is not installed (apt-get install systemd)")
    b = mecapy_bin()
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        if not b:
            # Without a build, a stub stands in so that the rest of each unit is checked.
            b = t / "mecapy"
            b.write_text("#!/bin/sh\nexit 0\n")
            b.chmod(0o755)
            print("     (no mecapy binary: ExecStart points at a stub)")
        for u in UNITS:
            text = (DEPLOY / "systemd" / u).read_text()
            if "/usr/local/bin/mecapy" not in text and u.endswith(".service"):
                problems.append(f"{u}: ExecStart does not run /usr/local/bin/mecapy")
            text = text.replace("/usr/local/bin/mecapy", str(b))
            text = text.replace("/etc/mecapy/mecapy.env", str(ENV_EXAMPLE))
            (t / u).write_text(text)
            if u == "mecapy-worker@.service":
                for i in (1, 2):  # the instances mecapy-workers.target wants
                    (t / f"mecapy-worker@{i}.service").write_text(text)
        names = ["mecapy-api.service", "mecapy-worker@1.service", "mecapy-workers.target"]
        r = subprocess.run([sa, "verify", *[f"./{n}" for n in names]], cwd=t,
                           capture_output=True, text=True, timeout=120)
        out = (r.stdout + r.stderr).strip()
        # Warnings about the host (no systemd running here, missing stock units) are not
        # about our files; anything naming one of our units is.
        ours = [l for l in out.splitlines() if "mecapy" in l]
        if r.returncode != 0 or ours:
            problems.append(f"systemd-analyze verify exited {r.returncode}:")
            problems += [f"  {l}" for l in (ours or out.splitlines())[:30]]
    return problems


def unit_settings(name):
    cp = configparser.RawConfigParser(strict=False, interpolation=None, delimiters=("=",),
                                      comment_prefixes=("#", ";"))
    cp.optionxform = str
    cp.read_string((DEPLOY / "systemd" / name).read_text())
    return cp


@check("systemd units: Restart=on-failure, KillMode=mixed, Delegate=yes, TimeoutStopSec above MECAPY_GRACE, no setting that breaks the sandbox")
def _systemd_policy():
    problems = []
    breaking = ["PrivateUsers", "RestrictNamespaces", "ProtectKernelTunables", "ProtectKernelLogs",
                "ProtectProc", "ProcSubset", "ProtectControlGroups", "SystemCallFilter",
                "MemoryDenyWriteExecute", "CapabilityBoundingSet", "DynamicUser"]
    for u in ("mecapy-api.service", "mecapy-worker@.service"):
        s = unit_settings(u)["Service"]
        for k, want in (("Restart", "on-failure"), ("KillMode", "mixed"), ("Delegate", "yes"),
                        ("User", "root"), ("EnvironmentFile", "/etc/mecapy/mecapy.env")):
            if s.get(k) != want:
                problems.append(f"{u}: {k}={s.get(k)} (want {want})")
        t = seconds(s.get("TimeoutStopSec", "90"))
        if t is None or t < GRACE + 10:
            problems.append(f"{u}: TimeoutStopSec={s.get('TimeoutStopSec')} is not above MECAPY_GRACE={GRACE} + 10 s")
        for k in breaking:
            if k in s:
                problems.append(f"{u}: {k}= is set; it breaks the sandbox (see the unit's comments)")
        if "Environment" in s and "MECAPY_" in s["Environment"]:
            problems.append(f"{u}: Environment=MECAPY_... is overridden by EnvironmentFile=; use the command line")
    api = unit_settings("mecapy-api.service")["Service"]
    if "--workers 0" not in api.get("ExecStart", ""):
        problems.append("mecapy-api.service: ExecStart is not `serve --workers 0`")
    if not unit_settings("mecapy-worker@.service")["Service"].get("ExecStart", "").endswith("mecapy worker"):
        problems.append("mecapy-worker@.service: ExecStart is not `mecapy worker`")
    return problems


@check("mecapy.env.example reads the same through systemd's rules and a POSIX shell (supervisor)")
def _env_shell():
    sh = shutil.which("sh")
    if not sh:
        raise Skip("no sh")
    want = env_file(ENV_EXAMPLE)
    script = f"set -a; . {shlex.quote(str(ENV_EXAMPLE))}; env -0"
    r = subprocess.run([sh, "-c", script], capture_output=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    if r.returncode != 0:
        return [f"sh could not read it: {r.stderr.decode(errors='replace')[:300]}"]
    got = dict(x.split("=", 1) for x in r.stdout.decode().split("\0") if "=" in x)
    return [f"{k}: systemd reads {v!r}, sh reads {got.get(k)!r}" for k, v in want.items() if got.get(k) != v]


# ---------------------------------------------------------------- supervisor


@check("supervisor/mecapy.conf parses; programs run mecapy under sh with the env file, stopwaitsecs above MECAPY_GRACE")
def _supervisor():
    problems = []
    # supervisor's own reader: RawConfigParser with ';' and '#' comments, %(...)s expansions.
    cp = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"))
    cp.read_string(SUPERVISOR.read_text())
    progs = [s for s in cp.sections() if s.startswith("program:")]
    if sorted(progs) != ["program:mecapy-api", "program:mecapy-worker"]:
        problems.append(f"program sections: {progs}")
    for s in progs:
        sec = cp[s]
        cmd = shlex.split(sec.get("command", ""))
        if cmd[:2] != ["/bin/sh", "-c"] or ". /etc/mecapy/mecapy.env" not in cmd[2] or "exec /usr/local/bin/mecapy" not in cmd[2]:
            problems.append(f"{s}: command does not exec mecapy after reading /etc/mecapy/mecapy.env")
        if int(sec.get("stopwaitsecs", "10")) < GRACE + 10:
            problems.append(f"{s}: stopwaitsecs {sec.get('stopwaitsecs')} is not above MECAPY_GRACE + 10")
        if sec.get("stopsignal") != "TERM":
            problems.append(f"{s}: stopsignal is not TERM")
    w = cp["program:mecapy-worker"]
    if int(w.get("numprocs", "1")) > 1 and "%(process_num)" not in w.get("process_name", ""):
        problems.append("program:mecapy-worker: numprocs > 1 needs %(process_num)d in process_name")
    if "group:mecapy" in cp:
        for p in cp["group:mecapy"]["programs"].split(","):
            if f"program:{p.strip()}" not in cp:
                problems.append(f"group:mecapy names an unknown program {p}")
    # supervisor's own parser, when installed.
    try:
        from supervisor.options import ServerOptions
    except ImportError:
        print("     (supervisor is not installed: its own option parser was not run)")
        return problems
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "supervisord.conf"
        body = SUPERVISOR.read_text().replace("/var/log/mecapy", tmp)
        conf.write_text(f"[supervisord]\nlogfile={tmp}/s.log\npidfile={tmp}/s.pid\n\n{body}")
        o = ServerOptions()
        o.configfile = str(conf)
        o.process_config(do_usage=False)
        names = sorted(p.name for g in o.process_group_configs for p in g.process_configs)
        if names != ["mecapy-api", "mecapy-worker-1", "mecapy-worker-2"]:
            problems.append(f"supervisor reads the processes {names}")
    return problems


# ---------------------------------------------------------------- container


def apt_packages(text, after):
    """The package names of the first `apt-get install` after the marker line."""
    tail = text[text.index(after):]
    m = re.search(r"apt-get install[^\n]*\\\n((?:.*\\\n)*?.*?)(?:&&|\n\S)", tail)
    words = re.sub(r"\\\n", " ", m.group(1)).split()
    return [w for w in words if not w.startswith("-")]


def _containerfile_dashboard(cf, ign):
    """The dashboard stage builds web/ as the Makefile's `web` target does, on a Node that
    package.json's engines accepts, from the files that target depends on; the runtime
    stage serves what it wrote."""
    problems = []
    m = re.search(r"^FROM docker\.io/library/node:(\d+)(?:\.(\d+))?\S* AS (\w+)$", cf, re.M)
    if not m:
        return ["Containerfile has no `FROM docker.io/library/node:<version> AS <stage>` dashboard stage"]
    major, minor, stage = int(m.group(1)), int(m.group(2) or 99), m.group(3)
    pkg = json.loads((ROOT / "package.json").read_text())
    want = re.match(r">=\s*(\d+)\.(\d+)", pkg.get("engines", {}).get("node", ">=0.0"))
    if want and (major, minor) < (int(want.group(1)), int(want.group(2))):
        problems.append(f"the dashboard stage's node:{m.group(1)} is older than package.json's engines {want.group(0)}")
    body = cf[m.end():cf.index("\nFROM ", m.end())] if "\nFROM " in cf[m.end():] else cf[m.end():]
    make = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^\$\(WEB_DIST\)/index\.html:.*\n\t(.+)$", make, re.M)
    if not recipe or recipe.group(1).strip() not in body:
        problems.append(f"the dashboard stage does not run the Makefile's web recipe "
                        f"({recipe.group(1).strip() if recipe else 'not found'})")
    if "npm ci" not in body:
        problems.append("the dashboard stage does not install from the lockfile (npm ci)")
    copied = [w for line in re.findall(r"^COPY (?!--)(.+)$", body, re.M) for w in line.split()[:-1]]
    src = re.search(r"^WEB_SRC\s*:=((?:.*\\\n)*.*)$", make, re.M).group(1)
    for f in re.sub(r"\$\(shell find (\S+) .*?\)", r"\1", src.replace("\\\n", " ")).split() + ["package.json"]:
        if not any(f == c or f.startswith(c.rstrip("/") + "/") for c in copied):
            problems.append(f"the dashboard stage does not copy {f} (a source of the Makefile's web target)")
    if not re.search(rf"^COPY --from={stage} /src/web/dist/ (\S+)$", cf, re.M):
        problems.append(f"the runtime stage does not copy web/dist from the {stage} stage")
    else:
        dest = re.search(rf"^COPY --from={stage} /src/web/dist/ (\S+)$", cf, re.M).group(1).rstrip("/")
        if not re.search(rf"MECAPY_WEB_DIR={re.escape(dest)}\b", cf):
            problems.append(f"MECAPY_WEB_DIR is not {dest}, where the dashboard is copied")
    for p in ("web/dist", "web/node_modules"):
        if p not in ign:
            problems.append(f".containerignore does not exclude {p}")
    return problems


@check("Containerfile: build packages = the run list of scripts/install-deps.sh; runtime has the linked libraries, python3-numpy/scipy and the base environment")
def _containerfile():
    problems = []
    deps = (ROOT / "scripts/install-deps.sh").read_text()
    m = re.search(r"^pkgs=\(([^)]*)\)", deps, re.M)
    run_list = m.group(1).split()
    cf = CONTAINERFILE.read_text()
    build = apt_packages(cf, "# build-packages")
    runtime = apt_packages(cf, "# runtime-packages")
    if sorted(build) != sorted(run_list):
        problems.append(f"build stage differs from install-deps.sh run: missing {sorted(set(run_list) - set(build))}, "
                        f"extra {sorted(set(build) - set(run_list))}")
    # the base environment and the solvers: the run list's pkgs+= lines, before the test set
    base_env = [p for line in re.findall(r"^pkgs\+=\(([^)]*)\)", deps.split('if [ "$what" = test ]')[0], re.M)
                for p in line.split()]
    for p in ("python3", "python3-numpy", "python3-scipy", "ca-certificates", *base_env):
        if p not in runtime:
            problems.append(f"runtime stage lacks {p}")
    for kw in ("FROM docker.io/library/debian:12 AS build", "FROM docker.io/library/debian:12-slim",
               "meson setup build", "ENTRYPOINT", "EXPOSE 8000"):
        if kw not in cf:
            problems.append(f"Containerfile lacks `{kw}`")
    # Each library the built binary links (DT_NEEDED) must come from a runtime package.
    b = mecapy_bin()
    if b and shutil.which("objdump") and shutil.which("dpkg"):
        needed = re.findall(r"NEEDED\s+(\S+)", subprocess.run(["objdump", "-p", str(b)], capture_output=True,
                                                               text=True).stdout)
        ldd = subprocess.run(["ldd", str(b)], capture_output=True, text=True).stdout
        for so in needed:
            m = re.search(rf"^\s*{re.escape(so)} => (\S+)", ldd, re.M)
            if not m:
                continue
            real = os.path.realpath(m.group(1))
            owner = subprocess.run(["dpkg", "-S", real], capture_output=True, text=True).stdout.split(":")[0]
            if not owner:
                owner = subprocess.run(["dpkg", "-S", m.group(1)], capture_output=True, text=True).stdout.split(":")[0]
            if owner and owner not in runtime and owner not in ("libc6",):
                problems.append(f"the binary needs {so} from {owner}, not in the runtime stage")
    else:
        print("     (no binary, objdump or dpkg: the runtime libraries were not matched to the binary)")
    # Every package name exists in Debian (when the apt lists are there).
    if shutil.which("apt-cache"):
        r = subprocess.run(["apt-cache", "policy", *sorted(set(build + runtime))], capture_output=True, text=True)
        listed = set(re.findall(r"^(\S+):\n\s+Installed: .*\n\s+Candidate: (?!\(none\))", r.stdout, re.M))
        if len(listed) == 0:
            print("     (apt lists are empty: package names not looked up; run apt-get update)")
        else:
            for p in sorted(set(build + runtime) - listed):
                problems.append(f"{p}: no Debian candidate (apt-cache policy)")
    ign = (DEPLOY / "container/.containerignore").read_text().split()
    for p in (".git", "build", "build-*", "node_modules", "mecapy-data"):
        if p not in ign:
            problems.append(f".containerignore does not exclude {p}")
    di = DEPLOY / "container/Containerfile.dockerignore"
    if not di.exists() or di.read_text() != (DEPLOY / "container/.containerignore").read_text():
        problems.append("Containerfile.dockerignore is not the same as .containerignore")
    problems += _containerfile_dashboard(cf, ign)
    # What the build copies must be enough for meson: the tracked files outside the ignore list.
    for p in ("meson.build", "src", "scripts/embed.py", "tests/unit"):
        if not (ROOT / p).exists() or p.split("/")[0] in ign:
            problems.append(f"the build context lacks {p}")
    return problems


# ---------------------------------------------------------------- compose


@check("compose.yaml parses; depends_on, health checks, volumes and grace periods are consistent")
def _compose():
    need_yaml()
    problems = []
    c = yaml.safe_load(COMPOSE.read_text())
    svcs = c.get("services", {})
    for want in ("api", "worker", "postgres", "redis", "minio", "keycloak"):
        if want not in svcs:
            problems.append(f"no service {want}")
    vols = set((c.get("volumes") or {}).keys())
    for name, s in svcs.items():
        if not s.get("image") and not s.get("build"):
            problems.append(f"{name}: neither image nor build")
        dep = s.get("depends_on", {})
        for d, cond in (dep.items() if isinstance(dep, dict) else ((x, {}) for x in dep)):
            if d not in svcs:
                problems.append(f"{name}: depends on unknown service {d}")
                continue
            cnd = (cond or {}).get("condition", "service_started")
            if cnd not in ("service_started", "service_healthy", "service_completed_successfully"):
                problems.append(f"{name}: unknown condition {cnd}")
            hc = svcs[d].get("healthcheck", {})
            if cnd == "service_healthy" and (not hc or hc.get("disable")):
                problems.append(f"{name}: waits for {d} healthy, but {d} has no health check")
        for v in s.get("volumes", []):
            src = v.split(":")[0] if isinstance(v, str) else v.get("source")
            if src.startswith((".", "/")):
                if not (COMPOSE.parent / src).exists():
                    problems.append(f"{name}: bind source {src} does not exist")
            elif src not in vols:
                problems.append(f"{name}: volume {src} is not declared")
        nm = s.get("network_mode", "")
        if nm.startswith("service:") and nm[8:] not in svcs:
            problems.append(f"{name}: network_mode names unknown service {nm[8:]}")
    for role in ("api", "worker"):
        s = svcs.get(role, {})
        if not s.get("privileged"):
            problems.append(f"{role}: not privileged: the sandbox cannot start")
        g = seconds(str(s.get("stop_grace_period", "10s")))
        if g is None or g < GRACE + 10:
            problems.append(f"{role}: stop_grace_period {s.get('stop_grace_period')} is not above MECAPY_GRACE + 10 s")
    if svcs.get("worker", {}).get("deploy", {}).get("replicas") != 2:
        problems.append("worker: not 2 replicas")
    env = svcs.get("api", {}).get("environment", {})
    shared = ("MECAPY_DB", "MECAPY_QUEUE", "MECAPY_BLOBS")
    for k in shared:
        if env.get(k) != svcs.get("worker", {}).get("environment", {}).get(k):
            problems.append(f"api and worker disagree on {k}")
    iss = env.get("MECAPY_AUTH", "").split("oidc:")[-1]
    if iss.startswith("http://") and not re.match(r"http://(127\.0\.0\.1|localhost|\[::1\])[:/]", iss):
        problems.append(f"issuer {iss}: MecaPy accepts http:// only on the loopback")
    return problems


@check("`docker compose config` accepts compose.yaml")
def _compose_config():
    for cmd in (["docker", "compose"], ["podman", "compose"], ["docker-compose"], ["podman-compose"]):
        if not shutil.which(cmd[0]):
            continue
        r = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            break
    else:
        raise Skip("no compose client here (docker compose plugin, docker-compose, podman compose)")
    r = subprocess.run([*cmd, "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, timeout=60)
    return [] if r.returncode == 0 else [f"{' '.join(cmd)} config: {(r.stderr or r.stdout).strip()[:600]}"]


@check("keycloak/mecapy-realm.json: realm mecapy, public PKCE client mecapy-web, client-credentials mecapy-cli, roles, audience and company mappers")
def _realm():
    problems = []
    r = json.loads((DEPLOY / "compose/keycloak/mecapy-realm.json").read_text())
    if r.get("realm") != "mecapy":
        problems.append("realm is not mecapy")
    clients = {c["clientId"]: c for c in r.get("clients", [])}
    web, cli = clients.get("mecapy-web", {}), clients.get("mecapy-cli", {})
    if not web.get("publicClient") or web.get("attributes", {}).get("pkce.code.challenge.method") != "S256" \
            or not web.get("standardFlowEnabled"):
        problems.append("mecapy-web is not a public standard-flow client with PKCE S256")
    if cli.get("publicClient", True) or not cli.get("serviceAccountsEnabled"):
        problems.append("mecapy-cli is not a confidential client with service accounts")
    compose = yaml.safe_load(COMPOSE.read_text()) if yaml else None
    aud = compose["services"]["api"]["environment"]["MECAPY_OIDC_AUDIENCE"] if compose else "mecapy-api"
    redirect = compose["services"]["api"]["environment"]["MECAPY_OIDC_REDIRECT_URI"] if compose else None
    for cid, c in (("mecapy-web", web), ("mecapy-cli", cli)):
        kinds = {(m["protocolMapper"], m["config"].get("included.custom.audience") or m["config"].get("claim.name"))
                 for m in c.get("protocolMappers", [])}
        if ("oidc-audience-mapper", aud) not in kinds:
            problems.append(f"{cid}: no audience mapper for {aud}")
        if ("oidc-usermodel-attribute-mapper", "company") not in kinds:
            problems.append(f"{cid}: no company attribute mapper")
    if redirect and redirect not in web.get("redirectUris", []):
        problems.append(f"mecapy-web does not allow the redirect URI {redirect}")
    roles = {x["name"] for x in r.get("roles", {}).get("realm", [])}
    for want in ("mecapy-admin", "mecapy-member", "mecapy-viewer"):
        if want not in roles:
            problems.append(f"no realm role {want}")
    for u in r.get("users", []):
        for role in u.get("realmRoles", []):
            if role not in roles:
                problems.append(f"user {u['username']}: unknown role {role}")
    return problems


# ---------------------------------------------------------------- kubernetes


@check("Kubernetes manifests: well formed; selectors, labels, ports, probes, references and grace periods agree")
def _kubernetes():
    need_yaml()
    problems = []
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for res in kust.get("resources", []):
        p = K8S / res
        if not p.exists():
            problems.append(f"kustomization names a missing file {res}")
            continue
        docs += [(res, d) for d in load_yaml_all(p)]
    listed = set(kust.get("resources", []))
    for p in K8S.glob("*.yaml"):
        if p.name != "kustomization.yaml" and p.name not in listed:
            problems.append(f"{p.name} is not in kustomization.yaml")
    api_versions = {"Namespace": "v1", "ConfigMap": "v1", "Secret": "v1", "Service": "v1",
                    "Deployment": "apps/v1", "StatefulSet": "apps/v1", "PodDisruptionBudget": "policy/v1"}
    by_kind = {}
    for f, d in docs:
        k = d.get("kind")
        if api_versions.get(k) != d.get("apiVersion"):
            problems.append(f"{f}: {k} with apiVersion {d.get('apiVersion')}")
        name = (d.get("metadata") or {}).get("name", "")
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name or "-"):
            problems.append(f"{f}: {k} has no valid metadata.name")
        by_kind.setdefault(k, {})[name] = d
    cms, secrets = set(by_kind.get("ConfigMap", {})), set(by_kind.get("Secret", {}))
    images = {i["name"] for i in kust.get("images", [])}
    workloads = {**by_kind.get("Deployment", {}), **by_kind.get("StatefulSet", {})}
    pod_labels = {}
    for name, d in workloads.items():
        spec = d["spec"]
        sel = spec.get("selector", {}).get("matchLabels", {})
        tmpl = spec["template"]["metadata"].get("labels", {})
        pod_labels[name] = tmpl
        if not sel or any(tmpl.get(k) != v for k, v in sel.items()):
            problems.append(f"{name}: selector {sel} does not match the template labels {tmpl}")
        pod = spec["template"]["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            if c.get("image") not in images:
                problems.append(f"{name}/{c['name']}: image {c.get('image')} is not rewritten by kustomization images")
            for e in c.get("envFrom", []):
                if "configMapRef" in e and e["configMapRef"]["name"] not in cms:
                    problems.append(f"{name}/{c['name']}: unknown ConfigMap {e['configMapRef']['name']}")
                if "secretRef" in e and e["secretRef"]["name"] not in secrets:
                    problems.append(f"{name}/{c['name']}: unknown Secret {e['secretRef']['name']}")
            for e in c.get("env", []):
                if e["name"].startswith("MECAPY_") and e["name"] not in KNOWN_VARS:
                    problems.append(f"{name}/{c['name']}: unknown variable {e['name']}")
            vm = {v["name"] for v in pod.get("volumes", [])}
            for m in c.get("volumeMounts", []):
                if m["name"] not in vm:
                    problems.append(f"{name}/{c['name']}: mounts unknown volume {m['name']}")
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe"):
                g = (c.get(probe) or {}).get("httpGet")
                if g:
                    if g["path"] not in ("/healthz", "/readyz"):
                        problems.append(f"{name}: {probe} on {g['path']}, which the server does not answer")
                    if g["port"] not in ports and g["port"] not in ports.values():
                        problems.append(f"{name}: {probe} port {g['port']} is not a container port")
            if c["name"] in ("api", "worker") and not (c.get("securityContext") or {}).get("privileged"):
                problems.append(f"{name}/{c['name']}: not privileged: the sandbox cannot start (see the comments)")
        if pod.get("hostUsers") is False:
            problems.append(f"{name}: hostUsers: false leaves too few uids for the sandbox")
        if int(pod.get("terminationGracePeriodSeconds", 30)) < GRACE + 10:
            problems.append(f"{name}: terminationGracePeriodSeconds is not above MECAPY_GRACE + 10")
    api = workloads.get("mecapy-api")
    if not api or not any(c.get("readinessProbe") and c.get("livenessProbe") and c.get("resources")
                          for c in api["spec"]["template"]["spec"]["containers"]):
        problems.append("mecapy-api: needs readiness and liveness probes and resources")
    wk = workloads.get("mecapy-worker")
    if not wk or not all(c.get("resources") for c in wk["spec"]["template"]["spec"]["containers"]):
        problems.append("mecapy-worker: missing, or without resources")

    def matching(sel):
        return [n for n, l in pod_labels.items() if all(l.get(k) == v for k, v in sel.items())]

    for name, s in by_kind.get("Service", {}).items():
        targets = matching(s["spec"].get("selector", {}))
        if len(targets) != 1:
            problems.append(f"Service {name}: its selector matches {targets}")
            continue
        cports = {p.get("name"): p["containerPort"] for c in workloads[targets[0]]["spec"]["template"]["spec"]["containers"]
                  for p in c.get("ports", [])}
        for p in s["spec"]["ports"]:
            t = p.get("targetPort", p["port"])
            if t not in cports and t not in cports.values():
                problems.append(f"Service {name}: targetPort {t} is no port of {targets[0]}")
    for name, p in by_kind.get("PodDisruptionBudget", {}).items():
        sel = p["spec"].get("selector", {}).get("matchLabels", {})
        if len(matching(sel)) != 1:
            problems.append(f"PodDisruptionBudget {name}: its selector matches {matching(sel)}")
        if ("minAvailable" in p["spec"]) == ("maxUnavailable" in p["spec"]):
            problems.append(f"PodDisruptionBudget {name}: needs exactly one of minAvailable, maxUnavailable")
    for want in ("ConfigMap", "Secret", "Service", "PodDisruptionBudget"):
        if want not in by_kind:
            problems.append(f"no {want}")
    return problems


@check("Kubernetes manifests against the API schemas (kubeconform or kubeval)")
def _kube_schema():
    for tool in ("kubeconform", "kubeval"):
        if shutil.which(tool):
            files = [str(p) for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"]
            args = [tool, "-strict", "-summary", *files] if tool == "kubeconform" else [tool, "--strict", *files]
            r = subprocess.run(args, capture_output=True, text=True, timeout=300)
            return [] if r.returncode == 0 else [(r.stdout + r.stderr).strip()[:1500]]
    raise Skip("neither kubeconform nor kubeval is installed (not packaged in Debian 12; "
               "they fetch the schemas from the network); the structural checks above stand in")


PROM = DEPLOY / "prometheus" / "prometheus.yml"
GRAFANA = DEPLOY / "grafana" / "mecapy-dashboard.json"


def served_metrics():
    """The metric names the server renders: the string literals of src/api/api-metrics.c
    (a histogram's name stands for its _bucket, _sum and _count)."""
    src = (ROOT / "src/api/api-metrics.c").read_text()
    return set(re.findall(r'"((?:mecapy|process)_[a-z0-9_]+)', src))


@check("Prometheus and Grafana files exist exactly when the server answers /metrics")
def _metrics():
    routes = (ROOT / "src/api/api-routes.c").read_text()
    serves = '"/metrics"' in routes
    present = PROM.exists() and GRAFANA.exists()
    if serves and not present:
        return [f"the server serves /metrics: add {rel(PROM)} and {rel(GRAFANA)}"]
    if not serves and ((DEPLOY / "prometheus").exists() or (DEPLOY / "grafana").exists()):
        return ["deploy/prometheus or deploy/grafana exists, but the server serves no /metrics"]
    return []


@check("prometheus.yml: scrape jobs with targets and /metrics paths")
def _prometheus_structure():
    need_yaml()
    problems = []
    conf = yaml.safe_load(PROM.read_text())
    jobs = conf.get("scrape_configs") if isinstance(conf, dict) else None
    if not isinstance(jobs, list) or not jobs:
        return [f"{rel(PROM)}: no scrape_configs"]
    names = [j.get("job_name") for j in jobs]
    if len(set(names)) != len(names) or not all(names):
        problems.append(f"{rel(PROM)}: job names missing or repeated: {names}")
    for j in jobs:
        if j.get("metrics_path", "/metrics") != "/metrics":
            problems.append(f"{rel(PROM)}: job {j.get('job_name')} scrapes {j.get('metrics_path')}, not /metrics")
        targets = [t for sc in j.get("static_configs") or [] for t in sc.get("targets") or []]
        if not targets:
            problems.append(f"{rel(PROM)}: job {j.get('job_name')} has no targets")
        for t in targets:
            if not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+:\d+", str(t)):
                problems.append(f"{rel(PROM)}: target {t!r} is not host:port")
    return problems


@check("prometheus.yml: promtool check config")
def _promtool_config():
    tool = shutil.which("promtool")
    if not tool:
        raise Skip("promtool is not installed (Debian package prometheus)")
    r = subprocess.run([tool, "check", "config", str(PROM)], capture_output=True, text=True, timeout=60)
    return [] if r.returncode == 0 else [(r.stdout + r.stderr).strip()[:1500]]


@check("Grafana dashboard: panels with queries, every metric it queries is served")
def _grafana():
    problems = []
    d = json.loads(GRAFANA.read_text())
    for k in ("title", "uid", "panels", "schemaVersion"):
        if k not in d:
            problems.append(f"{rel(GRAFANA)}: no {k}")
    panels = d.get("panels") or []
    ids = [p.get("id") for p in panels]
    if not panels or len(set(ids)) != len(ids) or None in ids:
        problems.append(f"{rel(GRAFANA)}: panels missing, or ids missing or repeated: {ids}")
    served = served_metrics()
    if not served:
        problems.append("no metric names found in src/api/api-metrics.c")
    for p in panels:
        pos = p.get("gridPos") or {}
        if not all(isinstance(pos.get(k), int) for k in ("h", "w", "x", "y")):
            problems.append(f"{rel(GRAFANA)}: panel {p.get('title')!r} has no gridPos h/w/x/y")
        targets = p.get("targets") or []
        if not targets or not all(t.get("expr") and t.get("refId") for t in targets):
            problems.append(f"{rel(GRAFANA)}: panel {p.get('title')!r} has a target without expr or refId")
        for t in targets:
            if t.get("expr", "").count("(") != t.get("expr", "").count(")"):
                problems.append(f"{rel(GRAFANA)}: unbalanced parentheses in {t['expr']!r}")
            for name in re.findall(r"\b((?:mecapy|process)_[a-z0-9_]+)", t.get("expr", "")):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                if name not in served and base not in served:
                    problems.append(f"{rel(GRAFANA)}: panel {p.get('title')!r} queries {name}, "
                                    "which the server does not serve")
    return problems


@check("shell scripts parse (bash -n)")
def _sh():
    bash = shutil.which("bash")
    if not bash:
        raise Skip("no bash")
    problems = []
    for p in DEPLOY.rglob("*.sh"):
        r = subprocess.run([bash, "-n", str(p)], capture_output=True, text=True)
        if r.returncode:
            problems.append(f"{rel(p)}: {r.stderr.strip()}")
        if not os.stat(p).st_mode & stat.S_IXUSR:
            problems.append(f"{rel(p)} is not executable")
    return problems


print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed, {RESULTS['skipped']} skipped")
sys.exit(1 if RESULTS["failed"] else 0)
