# MecaPy guest: runs inside the sandbox, the only Python in the server. Cold: as
# `python3 -I -B -c <this>`, one request frame in, one reply frame out, then exit. Warm:
# imported by a zygote as module "mecapy_guest"; each function instance calls serve(),
# which answers frames one at a time until the executor hangs up. A frame is a u32
# little-endian length and that many bytes of JSON, on fd 3.
#
#   warm only: {"op": "load", "code", "handler"} -> {"status": "ok", "loaded": true} or an error;
#              a "run" may carry "code" (not loaded yet) or not (the module of this instance)
#
#   request  {"op": "run"|"analyze", "code", "handler", "inputs", "policy", "workdir",
#             "max_result_bytes", "max_artifacts", "max_artifact_bytes", "memory_mb"}
#   reply    {"status": "ok", "result": ..., "artifacts": [{"name", "data"(base64)}]}
#            {"status": "error"|"limit", "error": {"type", "message", "traceback"?, "limit"?}}
#
# While a call runs, before its reply, the guest may send progress frames: the length's
# top bit set (u32 0x80000000 | n, n <= MAX_PROGRESS_FRAME), then {"fraction", "message"}.
# They come from mecapy.progress() in user code, at most one per PROGRESS_INTERVAL_S, and
# the last one held back by that throttle is sent before the reply. What the function
# prints goes to fds 1 and 2 (the log pipe), flushed every PROGRESS_INTERVAL_S while the
# call runs, so the executor sees it live.
#
# User code runs in this process and could rewrite anything here: the executor treats
# the reply as untrusted and re-checks it. This file only has to be right for honest code.
import ast
import base64
import json
import math
import os
import _thread
import struct
import sys
import time
import types

FD = 3
USER_FILE = "<function>"
# The same numbers as src/base/limits.h (the executor checks them again: user code can
# change anything in this process). test-exec checks that they agree.
MAX_RESULT_DEPTH = 64                # MP_MAX_RESULT_DEPTH: lists and objects in one another
MAX_ERROR_MESSAGE_BYTES = 16 * 1024  # MP_MAX_ERROR_MESSAGE_BYTES
MAX_TRACEBACK_BYTES = 64 * 1024      # MP_MAX_TRACEBACK_BYTES
MAX_ERROR_TYPE_BYTES = 128           # MP_MAX_NAME_LEN
MAX_PROGRESS_MESSAGE = 256           # MP_MAX_PROGRESS_MESSAGE: characters of a progress message
MAX_PROGRESS_FRAME = 2048            # MP_MAX_PROGRESS_FRAME: bytes of one progress frame
PROGRESS_INTERVAL_S = 0.2            # at most one progress frame this often
PROGRESS_FLAG = 0x80000000
MAX_ARTIFACT_DEPTH = 8               # MP_MAX_ARTIFACT_DEPTH: folders an artifact may be in
MAX_ARTIFACT_NAME = 1024             # MP_MAX_ARTIFACT_NAME_LEN: bytes of its path under outputs/
MAX_ARTIFACT_ENTRIES = 4096          # MP_MAX_ARTIFACT_ENTRIES: files and folders looked at

_write = os.write
_dumps = json.dumps


def read_frame():
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = os.read(FD, n - len(buf))
            if not chunk:
                raise EOFError("executor closed the channel")
            buf += chunk
        return buf
    (n,) = struct.unpack("<I", exact(4))
    return json.loads(exact(n))


def write_frame(obj):
    data = _dumps(obj, allow_nan=False, separators=(",", ":")).encode()
    data = struct.pack("<I", len(data)) + data
    view = memoryview(data)
    while view:
        n = _write(FD, view)
        view = view[n:]


def note(line):
    try:
        _write(2, ("mecapy: " + line + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def flush_std():
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            pass


# ---------------------------------------------------------------- progress and the mecapy module

# The progress of the call in flight: the value the throttle holds back (None: none),
# when the last frame went, and whether a call is in flight (no frame may follow its
# reply). While a call runs, a thread of the instance (started at its first call, never
# in the zygote, which forks) ticks every PROGRESS_INTERVAL_S: it flushes what the call
# printed (stdout stays block-buffered, so print() costs what it costs anywhere, and the
# logs reach the executor within a tick) and sends the value held back, so a call that
# reported progress and then computes for minutes still has its last value sent.
# (_thread, not threading: nothing more to import on the cold path.)
_progress = {"pending": None, "sent_at": -1.0, "open": False}
_io = _thread.allocate_lock()    # a frame on fd 3 is written whole, by one thread
_wake = _thread.allocate_lock()  # released when a call opens
_wake.acquire()
_ticker = []
_monotonic = time.monotonic


def _tick_loop():
    while True:
        if not _progress["open"]:
            _wake.acquire()  # idle between calls
            continue
        time.sleep(PROGRESS_INTERVAL_S)
        if not _progress["open"]:
            continue
        flush_std()
        with _io:
            value = _progress["pending"]
            now = _monotonic()
            if value is not None and _progress["open"] and now - _progress["sent_at"] >= PROGRESS_INTERVAL_S:
                _progress["pending"] = None
                _progress["sent_at"] = now
                try:
                    _send_progress(value)
                except OSError:
                    pass


def _send_progress(value):
    data = _dumps({"fraction": value[0], "message": value[1]}, ensure_ascii=False,
                  separators=(",", ":")).encode("utf-8", "replace")
    data = struct.pack("<I", PROGRESS_FLAG | len(data)) + data
    view = memoryview(data)
    while view:
        n = _write(FD, view)
        view = view[n:]


def progress(fraction, message=""):
    """Report how far the call is: fraction between 0 and 1, and a short message (cut to
    256 characters). Cheap enough for a tight loop: at most one update leaves the sandbox
    every 0.2 s, and the last one is always delivered before the result."""
    if type(fraction) is not float:
        given, fraction = fraction, None
        if not isinstance(given, (bool, str, bytes, bytearray, complex)):
            try:
                fraction = float(given)  # int, numpy numbers, Fraction, Decimal
            except (TypeError, ValueError, OverflowError):
                pass
        if fraction is None:
            raise TypeError("progress(): fraction must be a number between 0 and 1, not %s"
                            % type(given).__name__)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("progress(): fraction must be between 0 and 1, got %r" % fraction)
    if type(message) is not str:
        raise TypeError("progress(): message must be a str, not %s" % type(message).__name__)
    if len(message) > MAX_PROGRESS_MESSAGE:
        message = message[:MAX_PROGRESS_MESSAGE - 1] + "\u2026"
    now = _monotonic()
    if now - _progress["sent_at"] >= PROGRESS_INTERVAL_S:
        flush_std()  # what it printed before comes before this update
        with _io:
            if _progress["open"]:
                _progress["sent_at"] = now
                _progress["pending"] = None
                _send_progress((fraction, message))
    else:
        _progress["pending"] = (fraction, message)


def progress_open():
    """A call starts: nothing held from the previous one; the ticker runs."""
    with _io:
        _progress["pending"] = None
        _progress["sent_at"] = -1.0
        _progress["open"] = True
    if not _ticker:
        _ticker.append(_thread.start_new_thread(_tick_loop, ()))
    try:
        _wake.release()
    except RuntimeError:  # released already (the ticker has not taken it yet)
        pass


def progress_close():
    """The call's reply is next: the update the throttle held back goes first, and
    nothing after it."""
    with _io:
        value = _progress["pending"]
        _progress["pending"] = None
        _progress["open"] = False
        if value is not None:
            try:
                _send_progress(value)
            except OSError:
                pass


# The checks the call in flight declared with mecapy.check(); added to its result's
# "checks" (the platform computes each one's utilisation and verdict).
_checks = []


def check(name, value, limit, unit=None):
    """Declare a check of this call: `value` against `limit` (same unit), e.g.
    check("bending stress", 182e6, 235e6, "Pa"). The task shows it with its utilisation
    (value / limit) and whether it passed (utilisation <= 1). Returns the utilisation."""
    if type(name) is not str or not name:
        raise TypeError("check(): name must be a non-empty str")
    try:
        value, limit = float(value), float(limit)
    except (TypeError, ValueError):
        raise TypeError("check(): value and limit must be numbers") from None
    if unit is not None and type(unit) is not str:
        raise TypeError("check(): unit must be a str or None")
    _checks.append({"name": name, "value": value, "limit": limit, "unit": unit})
    return value / limit if limit else float("inf")


def _with_checks(value):
    """The result with the checks declared by check() added to its "checks"."""
    if not _checks:
        return value
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ResultError("mecapy.check() was called, so the function must return a dict "
                          "(the checks go under its \"checks\" key), not %s" % type(value).__name__)
    listed = value.get("checks")
    value = dict(value)
    value["checks"] = (list(listed) if isinstance(listed, (list, tuple)) else []) + _checks
    return value


def make_mecapy_module():
    """`import mecapy` in user code: the helpers of the platform. A package (empty
    __path__), so that other parts add submodules (mecapy.solvers) with add_submodule."""
    mod = types.ModuleType("mecapy", "Helpers for functions that run on MecaPy.")
    mod.__path__ = []
    mod.progress = progress
    mod.check = check
    mod.__all__ = ["progress", "check"]
    sys.modules["mecapy"] = mod
    return mod


def add_submodule(name, module):
    """Make `module` importable as mecapy.<name> (and an attribute of mecapy)."""
    parent = sys.modules.get("mecapy") or make_mecapy_module()
    module.__name__ = "mecapy." + name
    sys.modules[module.__name__] = module
    setattr(parent, name, module)
    if name not in parent.__all__:
        parent.__all__.append(name)


make_mecapy_module()


def live_output():
    """stdout and stderr in UTF-8 whatever the locale (the zygote's interpreter starts
    with the C locale, where print("é") would raise). The ticker flushes them while a
    call runs (see _tick_loop)."""
    for f in (sys.stdout, sys.stderr):
        try:
            f.reconfigure(encoding="utf-8", errors="backslashreplace")
        except (AttributeError, ValueError, OSError):
            pass


# ---------------------------------------------------------------- run


class ResultError(TypeError):
    pass


class ResultTooComplex(ValueError):
    pass


def capped(text, limit):
    """User text (an error message, a traceback) cut to at most limit bytes of UTF-8,
    ending with a marker that says so (room kept for it as the executor does)."""
    if len(text) * 4 <= limit:
        return text
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    kept = data[:max(limit - 96, 0)].decode("utf-8", "ignore")
    return kept + "\n[truncated: %d bytes in all, the first %d kept]" % (len(data), len(kept.encode("utf-8")))


def to_json(value, path, depth=0):
    """The return value as plain JSON: numpy scalars and arrays, tuples become numbers
    and lists; non-finite floats become null with a note in the logs. depth: the lists
    and objects value is in."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        note("%s was %s, returned as null" % (path, "NaN" if math.isnan(value) else
                                               ("inf" if value > 0 else "-inf")))
        return None
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biufUS?":
                raise ResultError("%s is a numpy array of %s, not JSON-serialisable" % (path, value.dtype))
            return to_json(value.tolist(), path, depth)
        if isinstance(value, np.generic):
            item = value.item()
            if isinstance(item, np.generic) or isinstance(item, complex):
                raise ResultError("%s of type %s is not JSON-serialisable" % (path, type(value).__name__))
            return to_json(item, path, depth)
    if isinstance(value, (dict, list, tuple)) and depth >= MAX_RESULT_DEPTH:
        raise ResultTooComplex("the result nests lists and objects more than %d levels deep" % MAX_RESULT_DEPTH)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ResultError("%s has a key of type %s; keys must be str" % (path, type(k).__name__))
            out[k] = to_json(v, "%s.%s" % (path, k), depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [to_json(v, "%s[%d]" % (path, i), depth + 1) for i, v in enumerate(value)]
    raise ResultError("%s of type %s is not JSON-serialisable" % (path, type(value).__name__))


def user_traceback(exc):
    """The exception with only the user's frames: the guest's own are dropped."""
    import traceback
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != "<string>"]
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def error_reply(exc, status="error", limit=None):
    try:
        message = str(exc)
    except Exception as e:  # a __str__ of the user's that raises
        message = "(the exception's message could not be read: %s)" % type(e).__name__
    err = {"type": capped(type(exc).__name__, MAX_ERROR_TYPE_BYTES),
           "message": capped(message, MAX_ERROR_MESSAGE_BYTES),
           "traceback": capped(user_traceback(exc), MAX_TRACEBACK_BYTES)}
    if limit:
        err["limit"] = limit
    return {"status": status, "error": err}


def collect_artifacts(req):
    """The regular files of outputs/ and of its folders (MAX_ARTIFACT_DEPTH deep), named by
    their path under outputs/ ("sub/x.csv"), in name order. Opened relative to their
    folder's descriptor, never through a symlink (a symlinked file or folder is not
    listed); folders deeper than the bound and names longer than MAX_ARTIFACT_NAME bytes
    are left out."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    arts, state = [], {"total": 0, "seen": 0}
    try:
        top = os.open(os.path.join(req.get("workdir", "."), "outputs"), flags | os.O_DIRECTORY)
    except OSError:
        return []

    def read_file(dfd, name):
        fd = os.open(name, flags, dir_fd=dfd)
        try:
            data = b""
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    return data
                data += chunk
                if state["total"] + len(data) > req["max_artifact_bytes"]:
                    raise OverflowError("outputs/ holds more than %d bytes" % req["max_artifact_bytes"])
        finally:
            os.close(fd)

    def walk(dfd, prefix, depth):
        with os.scandir(dfd) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            state["seen"] += 1
            if state["seen"] > MAX_ARTIFACT_ENTRIES:
                raise OverflowError("outputs/ holds more than %d files and folders" % MAX_ARTIFACT_ENTRIES)
            name = prefix + e.name
            if "/" in e.name or len(name.encode("utf-8", "surrogateescape")) > MAX_ARTIFACT_NAME:
                continue
            if e.is_dir(follow_symlinks=False):
                if depth >= MAX_ARTIFACT_DEPTH:
                    continue
                try:
                    sub = os.open(e.name, flags | os.O_DIRECTORY, dir_fd=dfd)
                except OSError:
                    continue  # replaced meanwhile (by a symlink, say): not followed
                try:
                    walk(sub, name + "/", depth + 1)
                finally:
                    os.close(sub)
                continue
            # Regular files only, never through a symlink.
            if not e.is_file(follow_symlinks=False):
                continue
            if len(arts) >= req["max_artifacts"]:
                raise OverflowError("more than %d files in outputs/" % req["max_artifacts"])
            data = read_file(dfd, e.name)
            state["total"] += len(data)
            arts.append({"name": name, "data": base64.b64encode(data).decode()})

    try:
        walk(top, "", 0)
    finally:
        os.close(top)
    return arts


# The user module of this instance (warm): imported once, kept across calls.
LOADED = {"mod": None}


def load_module(req):
    import linecache
    code = req["code"]
    # Tracebacks show the user's source lines under a neutral name.
    linecache.cache[USER_FILE] = (len(code), None, code.splitlines(True), USER_FILE)
    mod = types.ModuleType("function")
    mod.__file__ = USER_FILE
    sys.modules["function"] = mod
    exec(compile(code, USER_FILE, "exec"), mod.__dict__)
    fn = getattr(mod, req["handler"], None)
    if not callable(fn):
        raise AttributeError("the module defines no function %r" % req["handler"])
    LOADED["mod"] = mod
    LOADED["handler"] = req["handler"]
    return mod


def reset_outputs(workdir):
    """outputs/ holds only this call's files: empty it (warm instances serve many calls)."""
    out = os.path.join(workdir, "outputs")
    try:
        if os.path.islink(out) or (os.path.exists(out) and not os.path.isdir(out)):
            os.unlink(out)
        if not os.path.isdir(out):
            os.mkdir(out)
            return
        import shutil
        for e in os.scandir(out):
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                os.unlink(e.path)
    except OSError as e:
        note("could not empty outputs/: %s" % e)


def op_run(req):
    os.chdir(req.get("workdir", "."))
    progress_open()
    try:
        mod = LOADED["mod"] if req.get("code") is None else load_module(req)
        if mod is None:
            raise RuntimeError("the function is not loaded in this instance")
        name = req.get("handler") or LOADED["handler"]
        fn = getattr(mod, name, None)
        if not callable(fn):
            raise AttributeError("the module defines no function %r" % name)
        np = sys.modules.get("numpy")
        if np is not None:
            # A fresh seed per call: with forked instances every call would otherwise
            # draw the same "random" numbers (pitfall 7).
            np.random.seed(int.from_bytes(os.urandom(4), "little"))
        del _checks[:]
        value = _with_checks(fn(**(req.get("inputs") or {})))
        result = to_json(value, "result")
    except MemoryError as e:
        flush_std()
        reply = error_reply(e, "limit", "memory")
        reply["error"]["message"] = "the call ran out of memory (limit %d MB)" % req.get("memory_mb", 0)
        return reply
    except ResultTooComplex as e:
        flush_std()
        return {"status": "limit", "error": {"type": "ResultTooComplex", "limit": "result_depth", "message": str(e)}}
    except ResultError as e:
        flush_std()
        return {"status": "error", "error": {"type": "TypeError", "message": capped(str(e), MAX_ERROR_MESSAGE_BYTES)}}
    except RecursionError as e:
        flush_std()
        return error_reply(e)
    except BaseException as e:  # SystemExit and KeyboardInterrupt too: the call failed
        flush_std()
        return error_reply(e)
    flush_std()
    try:
        text = _dumps(result, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        return {"status": "error", "error": {"type": "TypeError", "message": "result: %s" % e}}
    if len(text) > req["max_result_bytes"]:
        return {"status": "limit", "error": {"type": "ResultTooLarge", "limit": "result_size",
                "message": "the result is %d bytes, over the %d bytes limit" % (len(text), req["max_result_bytes"])}}
    try:
        arts = collect_artifacts(req)
    except OverflowError as e:
        return {"status": "limit", "error": {"type": "ArtifactsTooLarge", "limit": "artifacts", "message": str(e)}}
    return {"status": "ok", "result": result, "artifacts": arts}


def op_load(req):
    try:
        load_module(req)
    except BaseException as e:
        flush_std()
        return error_reply(e)
    flush_std()
    return {"status": "ok", "result": None, "loaded": True}


# ---------------------------------------------------------------- analyze

SCALARS = {"float": "number", "int": "integer", "bool": "boolean", "str": "string",
           "bytes": "string", "complex": None}
ARRAYS = {"list", "List", "Sequence", "tuple", "Tuple", "set", "Set", "Iterable", "ndarray", "MutableSequence"}
OBJECTS = {"dict", "Dict", "Mapping", "MutableMapping"}


def _name(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _nullable(schema):
    return {"anyOf": [schema, {"type": "null"}]}


def _is_none(node):
    return (isinstance(node, ast.Constant) and node.value is None) or _name(node) == "None"


def schema_of(node, depth=0):
    """A JSON Schema for a type annotation (an ast node)."""
    if node is None or depth > 32:
        return {}
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            return schema_of(ast.parse(node.value, mode="eval").body, depth + 1)
        except SyntaxError:
            return {}
    if _is_none(node):
        return {"type": "null"}
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        parts = []

        def flatten(n):
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr):
                flatten(n.left)
                flatten(n.right)
            else:
                parts.append(n)
        flatten(node)
        return _union(parts, depth)
    if isinstance(node, (ast.Name, ast.Attribute)):
        n = _name(node)
        if n in SCALARS and SCALARS[n]:
            return {"type": SCALARS[n]}
        if n in ARRAYS:
            return {"type": "array"}
        if n in OBJECTS:
            return {"type": "object"}
        return {}
    if isinstance(node, ast.Subscript):
        base = _name(node.value)
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if base == "Optional":
            return _nullable(schema_of(args[0], depth + 1))
        if base == "Union":
            return _union(args, depth)
        if base == "Literal":
            values = []
            for a in args:
                if isinstance(a, ast.Constant) and isinstance(a.value, (str, int, float, bool, type(None))):
                    values.append(a.value)
            return {"enum": values}
        if base == "Annotated":
            return schema_of(args[0], depth + 1)
        if base in ARRAYS:
            if base in ("tuple", "Tuple") and len(args) > 1 and not (isinstance(args[-1], ast.Constant) and args[-1].value is Ellipsis):
                return {"type": "array", "prefixItems": [schema_of(a, depth + 1) for a in args],
                        "minItems": len(args), "maxItems": len(args)}
            return {"type": "array", "items": schema_of(args[0], depth + 1)}
        if base in OBJECTS:
            s = {"type": "object"}
            if len(args) == 2:
                s["additionalProperties"] = schema_of(args[1], depth + 1)
            return s
    return {}


def _union(parts, depth):
    has_none = any(_is_none(p) for p in parts)
    rest = [schema_of(p, depth + 1) for p in parts if not _is_none(p)]
    if len(rest) == 1:
        return _nullable(rest[0]) if has_none else rest[0]
    if has_none:
        rest.append({"type": "null"})
    return {"anyOf": rest}


def unit_of(node, depth=0):
    """The unit of an annotation: the str in Annotated[float, "m"] (also inside
    Optional[...] or X | None); None when it declares none."""
    if node is None or depth > 8:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            return unit_of(ast.parse(node.value, mode="eval").body, depth + 1)
        except SyntaxError:
            return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return unit_of(node.left, depth + 1) or unit_of(node.right, depth + 1)
    if isinstance(node, ast.Subscript):
        base = _name(node.value)
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if base == "Annotated":
            for a in args[1:]:
                if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.strip():
                    return a.value.strip()
            return None
        if base in ("Optional", "Union"):
            for a in args:
                u = unit_of(a, depth + 1)
                if u:
                    return u
    return None


def _doc_unit(desc):
    """The unit of a docstring's parameter line: "L: length [m]" -> "m"."""
    import re
    m = re.search(r"\[([^\[\]]+)\]\s*\.?\s*$", desc) or re.match(r"\s*\[([^\[\]]+)\]", desc)
    return m.group(1).strip() if m and m.group(1).strip() else None


def output_schema(tree, returns, units):
    """The result's schema when the return annotation names a TypedDict defined in the
    module: its fields, with "x-unit" from Annotated[float, "mm"]. None otherwise."""
    name = _name(returns) if returns is not None else None
    if isinstance(returns, ast.Constant) and isinstance(returns.value, str):
        name = returns.value.strip()
    if not name:
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name and \
                any(_name(b) == "TypedDict" for b in node.bases):
            props = {}
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    s = dict(schema_of(item.annotation))
                    unit = unit_of(item.annotation)
                    if unit is not None:
                        s["x-unit"] = unit
                        units.append({"field": "result." + item.target.id, "unit": unit, "line": item.lineno})
                    props[item.target.id] = s
            return {"type": "object", "properties": props}
    return None


def param_docs(doc):
    """Parameter descriptions from a Google ("Args:") or NumPy ("Parameters") docstring."""
    import inspect
    out = {}
    lines = inspect.cleandoc(doc).splitlines()
    i = 0
    while i < len(lines):
        head = lines[i].strip()
        if head in ("Args:", "Arguments:", "Parameters:", "Params:"):  # Google
            i += 1
            cur = None
            while i < len(lines) and (not lines[i].strip() or lines[i][:1].isspace()):
                line = lines[i]
                stripped = line.strip()
                indent = len(line) - len(line.lstrip())
                if stripped and ":" in stripped and (cur is None or indent <= cur[1]):
                    name, _, desc = stripped.partition(":")
                    name = name.split("(")[0].strip().lstrip("*")
                    cur = (name, indent)
                    out[name] = desc.strip()
                elif stripped and cur:
                    out[cur[0]] = (out[cur[0]] + " " + stripped).strip()
                i += 1
            continue
        if head == "Parameters" and i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:  # NumPy
            i += 2
            cur = None
            while i < len(lines):
                line = lines[i]
                stripped = line.strip()
                if stripped and i + 1 < len(lines) and lines[i + 1].strip() and set(lines[i + 1].strip()) == {"-"}:
                    break  # next section
                if stripped and not line[:1].isspace():
                    for name in stripped.split(":")[0].split(","):
                        out[name.strip().lstrip("*")] = ""
                    cur = [n.strip().lstrip("*") for n in stripped.split(":")[0].split(",")]
                elif stripped and cur:
                    for name in cur:
                        out[name] = (out[name] + " " + stripped).strip()
                i += 1
            continue
        i += 1
    return {k: v for k, v in out.items() if k}


def _literal(node):
    try:
        value = ast.literal_eval(node)
        _dumps(value, allow_nan=False)
        return True, value
    except Exception:
        return False, None


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def op_analyze(req):
    code, handler = req["code"], req["handler"]
    policy = req.get("policy") or {}
    forbidden_imports = set(policy.get("forbidden_imports") or [])
    forbidden_calls = set(policy.get("forbidden_calls") or [])
    problems = []
    out = {"input_schema": {"type": "object", "properties": {}, "additionalProperties": False},
           "description": "", "problems": problems}
    try:
        tree = ast.parse(code, USER_FILE)
    except SyntaxError as e:
        problems.append({"line": e.lineno or 1, "message": "SyntaxError: %s" % e.msg})
        return {"status": "ok", "result": out}
    except (RecursionError, MemoryError, ValueError, OverflowError) as e:
        problems.append({"line": 1, "message": "the code is too deeply nested or too large to analyse (%s)" %
                         type(e).__name__})
        return {"status": "ok", "result": out}

    for node in ast.walk(tree):  # iterative: no recursion limit here
        if isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.split(".")[0]
                if top in forbidden_imports:
                    problems.append({"line": node.lineno, "message": "import of %r is not allowed" % top})
        elif isinstance(node, ast.ImportFrom):
            top = (node.module or "").split(".")[0]
            if node.level == 0 and top in forbidden_imports:
                problems.append({"line": node.lineno, "message": "import of %r is not allowed" % top})
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name and (name in forbidden_calls or
                         (isinstance(node.func, ast.Name) and node.func.id in forbidden_calls)):
                problems.append({"line": node.lineno, "message": "call to %s() is not allowed" % name})

    fn = None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == handler:
            fn = node
    if fn is None:
        problems.append({"line": 1, "message": "no function named %r at module level" % handler})
        problems.sort(key=lambda p: p["line"])
        return {"status": "ok", "result": out}
    if isinstance(fn, ast.AsyncFunctionDef):
        problems.append({"line": fn.lineno, "message": "%r is async; define it with def" % handler})

    doc = ast.get_docstring(fn) or ""
    docs = param_docs(doc) if doc else {}
    doc_line = fn.body[0].lineno if doc and fn.body else fn.lineno
    units = []
    first = doc.strip().splitlines()[0].strip() if doc.strip() else ""

    a = fn.args
    positional = a.posonlyargs + a.args
    pos_defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    params = list(zip(positional, pos_defaults)) + list(zip(a.kwonlyargs, a.kw_defaults))
    props, required = {}, []
    for arg, default in params:
        s = dict(schema_of(arg.annotation))
        if docs.get(arg.arg):
            s["description"] = docs[arg.arg]
        unit = unit_of(arg.annotation)
        if unit is not None:
            units.append({"field": arg.arg, "unit": unit, "line": arg.lineno})
        else:
            unit = _doc_unit(docs.get(arg.arg, ""))
            if unit is not None:
                # from the docstring: a bracket that names no unit is only text
                units.append({"field": arg.arg, "unit": unit, "line": doc_line, "docstring": True})
        if unit is not None:
            s["x-unit"] = unit
        if default is None:
            required.append(arg.arg)
        else:
            ok, value = _literal(default)
            if ok:
                s["default"] = value
        props[arg.arg] = s
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
              "properties": props, "required": required,
              "additionalProperties": bool(a.vararg or a.kwarg)}
    if first:
        schema["description"] = first
    out["input_schema"] = schema
    out["description"] = first
    out["output_schema"] = output_schema(tree, fn.returns, units)
    out["units"] = units
    problems.sort(key=lambda p: p["line"])
    return {"status": "ok", "result": out}


# ---------------------------------------------------------------- main


def handle(req):
    try:
        if req.get("op") == "analyze":
            reply = op_analyze(req)
        else:
            reply = op_run(req)
    except (RecursionError, MemoryError) as e:
        reply = {"status": "ok", "result": {"input_schema": {}, "description": "", "problems": [
            {"line": 1, "message": "the code is too deeply nested to analyse (%s)" % type(e).__name__}]}} \
            if req.get("op") == "analyze" else error_reply(e, "limit" if isinstance(e, MemoryError) else "error",
                                                           "memory" if isinstance(e, MemoryError) else None)
    if LOADED["mod"] is not None:
        reply["loaded"] = True
    flush_std()
    progress_close()
    try:
        write_frame(reply)
    except (TypeError, ValueError) as e:
        write_frame({"status": "error", "error": {"type": "TypeError", "message": "result: %s" % e}})
    flush_std()


def main():
    live_output()
    handle(read_frame())


def serve():
    """A warm instance: one call at a time, until the executor hangs up."""
    live_output()
    while True:
        try:
            req = read_frame()
        except EOFError:
            return
        if req.get("op") == "load":
            reply = op_load(req)
            try:
                write_frame(reply)
            except (TypeError, ValueError):
                write_frame({"status": "error", "error": {"type": "TypeError", "message": "load"}})
            continue
        reset_outputs(req.get("workdir", "."))
        handle(req)


if __name__ == "__main__":
    main()
