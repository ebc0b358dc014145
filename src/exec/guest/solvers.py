# mecapy.solvers: the solver environment's helpers, for user code in the sandbox.
#
#   from mecapy.solvers import calculix
#   r = calculix(inp_text, files={"mesh.inp": text})
#   r["dat"] (text), r["results"] (parsed .dat), r["frd"] (an artifact name)
#
# Embedded in the binary and registered by each zygote as module "mecapy.solvers"
# (exec-zygote.c). The binaries run in the call's own sandbox: only a function that
# declares them ("solvers": ["calculix", "gmsh"]) may start them; for any other function
# the kernel refuses the fork and the exec (seccomp, Landlock) and these helpers raise
# SolverUnavailable. Nothing here is trusted by the server: it is a convenience.
import os
import re

__all__ = ["calculix", "gmsh_mesh", "parse_dat", "SolverError", "SolverUnavailable"]

CCX = "/usr/bin/ccx"
GMSH = "/usr/bin/gmsh"
OUTPUTS = "outputs"          # the call's artifacts, relative to its working directory
LOG_TAIL = 64 * 1024         # bytes of a solver's output kept in r["log"]
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_NUM = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_INT = re.compile(r"^[-+]?\d+$")
_HEAD = re.compile(r"^(.*?)\s*(?:\((.*)\))?\s+for set\s+(\S+)\s+and time\s+(\S+)\s*$")


class SolverError(RuntimeError):
    """The solver ran and failed (its own error messages are in the text)."""


class SolverUnavailable(SolverError):
    """The solver could not be started: the function does not declare it in "solvers"."""


def _check_name(name, what):
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith((".", "-")):
        raise ValueError("%s %r must be a plain file name (letters, digits, '_', '.', '-')" % (what, name))


def _write(path, data):
    mode = "wb" if isinstance(data, (bytes, bytearray)) else "w"
    with open(path, mode) as f:
        f.write(data)


def _tail(path):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _run(argv, rundir, threads, timeout):
    """Run a solver binary in rundir, its output to a file there. (returncode, log)."""
    import subprocess
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "TMPDIR": "/tmp",
           "OMP_NUM_THREADS": str(threads), "CCX_NPROC_EQUATION_SOLVER": str(threads),
           "CCX_NPROC_RESULTS": str(threads), "OPENBLAS_NUM_THREADS": "1"}
    log = os.path.join(rundir, ".solver.log")
    with open(log, "wb") as out:
        try:
            p = subprocess.run(argv, cwd=rundir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT, timeout=timeout, close_fds=True)
        except PermissionError as e:
            raise SolverUnavailable(
                "%s cannot be started here (%s): declare it in the function's \"solvers\"" %
                (os.path.basename(argv[0]), e.strerror)) from None
        except OSError as e:
            raise SolverUnavailable("%s cannot be started: %s" % (os.path.basename(argv[0]), e)) from None
    return p.returncode, _tail(log)


def _keep(rundir, names):
    """Copy solver files into outputs/ (artifacts of the call); the names kept."""
    import shutil
    os.makedirs(OUTPUTS, exist_ok=True)
    kept = []
    for n in names:
        src = os.path.join(rundir, n)
        if os.path.isfile(src) and not os.path.islink(src):
            shutil.copyfile(src, os.path.join(OUTPUTS, n))
            kept.append(n)
    return kept


def _number(t):
    return int(t) if _INT.match(t) else float(t)


def parse_dat(text):
    """The blocks of a CalculiX .dat file, in order: each {"name", "columns", "set",
    "time", "rows"}, rows being lists of numbers (entity ids as int), e.g. name
    "displacements", columns ["vx", "vy", "vz"], rows [[node, vx, vy, vz], ...]."""
    blocks, cur = [], None
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        toks = s.split()
        if all(_NUM.match(t) for t in toks):
            if cur is not None:
                cur["rows"].append([_number(t) for t in toks])
            continue
        m = _HEAD.match(s)
        if m:
            cols = [c.strip() for c in (m.group(2) or "").split(",") if c.strip()]
            try:
                time = float(m.group(4))
            except ValueError:
                time = None
            cur = {"name": m.group(1).strip(), "columns": cols, "set": m.group(3), "time": time, "rows": []}
            blocks.append(cur)
        else:
            cur = None
    return blocks


def _rundir(prefix):
    import tempfile
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def _inputs(rundir, files):
    for n, data in (files or {}).items():
        _check_name(n, "file name")
        _write(os.path.join(rundir, n), data)


def calculix(inp_text, files=None, *, name="job", keep=("frd", "dat"), threads=1, timeout=None):
    """Run CalculiX (ccx) on an input deck, in this call's sandbox.

    inp_text: the .inp deck (str). files: other files the deck reads (*INCLUDE,
    INPUT=mesh.inp), {name: str or bytes}. name: the job name (files name.inp,
    name.dat, name.frd...). keep: the extensions of the solver's files kept as
    artifacts of the call (in outputs/). threads: solver threads (within the
    function's cpus). timeout: seconds (the call's own limit holds anyway).

    Returns {"dat": the .dat text, "results": {block name: rows of its last block},
    "blocks": every .dat block (parse_dat), "frd": the .frd artifact's name or None,
    "artifacts": [names kept], "log": the end of ccx's output}. Raises SolverError
    when ccx reports an error, SolverUnavailable when it cannot be started (the
    function does not declare "calculix")."""
    import shutil
    _check_name(name, "job name")
    if not isinstance(inp_text, str):
        raise TypeError("inp_text must be the input deck as a str")
    exts = [str(ext).lstrip(".") for ext in keep]
    for ext in exts:
        if not re.match(r"^[A-Za-z0-9]{1,8}$", ext):
            raise ValueError("keep: %r is not a file extension such as frd or dat" % ext)
    rundir = _rundir("ccx-")
    try:
        _write(os.path.join(rundir, name + ".inp"), inp_text)
        _inputs(rundir, files)
        code, log = _run([CCX, "-i", name], rundir, max(1, int(threads)), timeout)
        errors = [l.strip() for l in log.splitlines() if "*ERROR" in l]
        dat_path = os.path.join(rundir, name + ".dat")
        if code != 0 or errors or not os.path.isfile(dat_path):
            detail = "\n".join(errors[:20]) or log[-2000:]
            raise SolverError("ccx failed (exit status %s):\n%s" % (code, detail))
        with open(dat_path, encoding="utf-8", errors="replace") as f:
            dat = f.read()
        blocks = parse_dat(dat)
        results = {}
        for b in blocks:
            results[b["name"]] = b["rows"]
        kept = _keep(rundir, [name + "." + ext for ext in exts])
        frd = name + ".frd"
        return {"dat": dat, "results": results, "blocks": blocks, "frd": frd if frd in kept else None,
                "artifacts": kept, "log": log}
    finally:
        shutil.rmtree(rundir, ignore_errors=True)


def gmsh_mesh(geo_text, *, dim=3, format="inp", files=None, options=(), timeout=None):
    """Mesh a Gmsh .geo script with the gmsh binary (the function declares "gmsh").
    Returns the mesh file's text (format: "inp" for CalculiX/Abaqus, "msh", "vtk"...).
    The Python API (python3-gmsh) needs no declaration: `from mecapy.solvers import
    gmsh` gives the gmsh module, run in-process."""
    import shutil
    if dim not in (1, 2, 3):
        raise ValueError("dim must be 1, 2 or 3")
    if not re.match(r"^[a-z0-9]{1,8}$", str(format)):
        raise ValueError("format must be a Gmsh format name such as inp or msh")
    rundir = _rundir("gmsh-")
    try:
        _write(os.path.join(rundir, "model.geo"), geo_text)
        _inputs(rundir, files)
        out = "mesh." + format
        argv = [GMSH, "model.geo", "-%d" % dim, "-format", format, "-o", out, "-nopopup"] + [str(o) for o in options]
        code, log = _run(argv, rundir, 1, timeout)
        path = os.path.join(rundir, out)
        if code != 0 or not os.path.isfile(path):
            raise SolverError("gmsh failed (exit status %s):\n%s" % (code, log[-2000:]))
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    finally:
        shutil.rmtree(rundir, ignore_errors=True)


def _load_gmsh():
    """python3-gmsh, which looks for libgmsh.so through ldconfig (a process the
    sandbox does not start): pointed at the versioned library directly."""
    import ctypes.util
    import glob
    import importlib
    libs = sorted(glob.glob("/usr/lib/*/libgmsh.so*"))
    orig = ctypes.util.find_library
    ctypes.util.find_library = lambda n: libs[-1] if n == "gmsh" and libs else orig(n)
    try:
        return importlib.import_module("gmsh")
    finally:
        ctypes.util.find_library = orig


def __getattr__(attr):
    # `from mecapy.solvers import gmsh`: imported on first use only (libgmsh is large).
    if attr == "gmsh":
        return _load_gmsh()
    raise AttributeError("module 'mecapy.solvers' has no attribute %r" % attr)
