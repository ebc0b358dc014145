"""Typeset the formulas of a calculation sheet (docs/sheets.md#markdown-and-formulas).

Run by the server (core/formulas.c) as `python3 -I -c <this>`, never in a sandbox and
never with user code: its input is data. stdin: a JSON list of {"tex", "display"};
stdout: a JSON list, in the same order, of {"svg"} (the formula drawn by matplotlib's
mathtext as SVG paths: no font is needed to show it) or {"error"} (the message of a
formula mathtext cannot read). Bounded by the caller's time limit and by the limits
set here before anything is read."""
import io
import json
import resource
import sys

resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
resource.setrlimit(resource.RLIMIT_CPU, (30, 30))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
matplotlib.rcParams["svg.fonttype"] = "path"
matplotlib.rcParams["svg.hashsalt"] = "mecapy"  # the same ids on every run
matplotlib.rcParams["mathtext.fontset"] = "dejavusans"

from matplotlib import mathtext  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402


def typeset(tex, display):
    out = io.BytesIO()
    mathtext.math_to_image("$%s$" % tex, out, prop=FontProperties(size=12 if display else 10), format="svg")
    return out.getvalue().decode()


answers = []
for item in json.load(sys.stdin):
    try:
        answers.append({"svg": typeset(item["tex"], bool(item.get("display")))})
    except Exception as e:  # a formula mathtext cannot read: shown as its source
        lines = [line for line in str(e).splitlines() if line.strip()]
        answers.append({"error": (lines[-1] if lines else type(e).__name__)[:300]})
json.dump(answers, sys.stdout)
