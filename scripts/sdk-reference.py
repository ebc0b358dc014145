#!/usr/bin/env python3
"""Write the Python SDK's reference (docs/sdk-reference.md) from its docstrings.

    scripts/sdk-reference.py            # print the reference
    scripts/sdk-reference.py --write    # rewrite docs/sdk-reference.md
    scripts/sdk-reference.py --check    # exit 1 when docs/sdk-reference.md is stale

Standard library only: it imports sdk/python/mecapy and reads it with `inspect`.
"""
from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path
from typing import Any, Callable, List

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "sdk-reference.md"
sys.dont_write_bytecode = True
sys.path.insert(0, str(REPO / "sdk" / "python"))

import mecapy  # noqa: E402

SECTIONS = [
    ("The client", ["Client"]),
    ("Functions and tasks", ["Function", "Task", "Artifact", "Progress", "Event"]),
    ("Workflows", ["Workflow", "WorkflowRun"]),
    ("Studies", ["Study", "Results"]),
    ("Collections (`client.functions`, `client.tasks`, ...)",
     ["FunctionsAPI", "TasksAPI", "WorkflowsAPI", "WorkflowRunsAPI", "StudiesAPI",
      "TokensAPI"]),
    ("Inside a function", ["progress", "check"]),
    ("Errors", ["MecapyError", "APIError", "FieldError", "BadRequest", "Unauthorized",
                "Forbidden", "NotFound", "Conflict", "ValidationError", "RateLimited",
                "QuotaExceeded", "ServerError", "TransportError", "WaitTimeout",
                "TaskFailed", "RunFailed"]),
]


def annotation(a: Any) -> str:
    if a is inspect.Parameter.empty:
        return ""
    text = a if isinstance(a, str) else getattr(a, "__name__", repr(a))
    return text.replace("'", "").replace('"', "")


def signature(fn: Callable[..., Any], drop_self: bool) -> str:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return "(...)"
    parts: List[str] = []
    seen_kwonly = False
    params = list(sig.parameters.values())
    if drop_self and params and params[0].name in ("self", "cls"):
        params = params[1:]
    for i, p in enumerate(params):
        if p.kind == p.KEYWORD_ONLY and not seen_kwonly:
            parts.append("*")
            seen_kwonly = True
        if p.kind == p.VAR_POSITIONAL:
            seen_kwonly = True
        text = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
        ann = annotation(p.annotation)
        if ann:
            text += f": {ann}"
        if p.default is not inspect.Parameter.empty:
            text += (" = " if ann else "=") + repr(p.default)
        parts.append(text)
        if p.kind == p.POSITIONAL_ONLY and (i + 1 == len(params)
                                            or params[i + 1].kind != p.POSITIONAL_ONLY):
            parts.append("/")
    ret = annotation(sig.return_annotation)
    return f"({', '.join(parts)})" + (f" -> {ret}" if ret and ret != "None" else "")


SECTION = re.compile(r"^(Args|Attributes|Returns|Raises):$")
ITEM = re.compile(r"^    (\*{0,2}\w+): (.*)$")


def inline(text: str) -> str:
    """reST inline markup to Markdown: ``x`` and :class:`mecapy.X` to `x`, `X`."""
    text = re.sub(r":(?:class|meth|attr|func|exc):`~?(?:\w+\.)*(\w+)`",
                  r"`\1`", text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def doc(obj: Any) -> str:
    """A docstring as Markdown: Google-style sections become lists, a paragraph
    ending in ``::`` introduces a code block."""
    if not obj.__doc__:
        return ""
    out: List[str] = []
    lines = inspect.cleandoc(obj.__doc__).splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if SECTION.match(line):
            out.append(f"**{line[:-1]}**")
            out.append("")
            i += 1
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                m = ITEM.match(lines[i])
                if m:
                    out.append(f"- `{m.group(1)}`: {inline(m.group(2))}")
                elif lines[i].strip():
                    out[-1] += " " + inline(lines[i].strip())
                i += 1
            out.append("")
            continue
        if line.endswith("::"):
            out.append(inline(line[:-1]))
            out += ["", "```python"]
            i += 1
            while i < len(lines) and not lines[i].strip():
                i += 1
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                out.append(lines[i][4:])
                i += 1
            while out[-1] == "":
                out.pop()
            out += ["```", ""]
            continue
        out.append(inline(line))
        i += 1
    return "\n".join(out).strip()


def members(cls: type) -> List[str]:
    out: List[str] = []
    # Inherited members too, from the package's own (non-exception) base classes.
    chain = [cls] if issubclass(cls, BaseException) else \
        [k for k in cls.__mro__ if k.__module__.startswith("mecapy")]
    found: dict = {}
    for klass in chain:
        for k, v in klass.__dict__.items():
            if (not k.startswith("_") or k == "__call__") and k not in found:
                found[k] = v
    for name, v in found.items():
        if isinstance(v, property):
            out.append(f"#### `{cls.__name__}.{name}` (property)\n\n{doc(v)}".rstrip())
        elif isinstance(v, (classmethod, staticmethod)):
            f = v.__func__
            out.append(f"#### `{cls.__name__}.{name}{signature(f, True)}`\n\n{doc(f)}".rstrip())
        elif inspect.isfunction(v):
            label = f"{cls.__name__}{signature(v, True)}" if name == "__call__" \
                else f"{cls.__name__}.{name}{signature(v, True)}"
            label = re.sub(r"-> F$", f"-> {cls.__name__}", label)  # TypeVar bound to self
            out.append(f"#### `{label}`\n\n{doc(v)}".rstrip())
    return out


def render() -> str:
    lines = [
        "# Python SDK reference",
        "",
        "Generated from the docstrings of `sdk/python/mecapy` by `scripts/sdk-reference.py`",
        "(`--write` rewrites this file; a test fails when it is stale). The guide is",
        "[sdk.md](sdk.md).",
        "",
        f"Package `mecapy` {mecapy.__version__}: `from mecapy import "
        + ", ".join(n for n in mecapy.__all__ if not n.startswith("_")) + "`.",
    ]
    listed = {n for _, names in SECTIONS for n in names}
    missing = [n for n in mecapy.__all__ if not n.startswith("_") and n not in listed]
    if missing:
        raise SystemExit(f"sdk-reference.py: exported but in no section: {missing}")
    for title, names in SECTIONS:
        lines += ["", f"## {title}"]
        for n in names:
            obj = getattr(mecapy, n)
            if inspect.isclass(obj):
                init = obj.__dict__.get("__init__")
                sig = signature(init, True) if inspect.isfunction(init) and not \
                    issubclass(obj, BaseException) else ""
                if "transport" in sig:
                    sig = ""  # made by the client, not by the caller
                bases = [b.__name__ for b in obj.__bases__ if b is not object]
                base = f" ({', '.join(bases)})" if bases and issubclass(obj, BaseException) else ""
                lines += ["", f"### `{n}{sig}`{base}", ""]
                if doc(obj):
                    lines += [doc(obj)]
                for m in members(obj):
                    lines += ["", m]
            else:
                lines += ["", f"### `{n}{signature(obj, False)}`", "", doc(obj)]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: List[str]) -> int:
    text = render()
    if "--write" in argv:
        OUT.write_text(text, encoding="utf-8")
    elif "--check" in argv:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT.relative_to(REPO)} is stale: run scripts/sdk-reference.py --write",
                  file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
