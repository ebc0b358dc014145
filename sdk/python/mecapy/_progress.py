"""``progress()`` and ``check()`` outside the sandbox."""
from __future__ import annotations

from typing import Optional

__all__ = ["progress", "check"]


def progress(fraction: float, message: str = "") -> None:
    """Report how far a long calculation is, from inside a function:
    ``progress(0.4, "iteration 40")``.

    Inside a MecaPy sandbox the platform's own ``mecapy`` module provides this and the
    task shows it (its ``progress`` field and event stream). Here, outside a sandbox,
    it does nothing, so the same code runs on a laptop and in a test unchanged.

    Args:
        fraction: how much is done, from 0 to 1.
        message: a short note (``"iteration 40"``).
    """
    return None


def check(name: str, value: float, limit: float, unit: Optional[str] = None) -> float:
    """Declare a pass/fail check of a calculation, from inside a function:
    ``check("bending stress", 182e6, 235e6, "Pa")`` returns the utilisation,
    ``value / limit`` (0.77 here; a check passes when it is at most 1).

    Inside a MecaPy sandbox the platform's own ``mecapy`` module records it and the task
    shows it in its ``checks`` (with ``utilisation`` and ``passed``). Here, outside a
    sandbox, it only checks its arguments and returns the utilisation.

    Args:
        name: what is checked (``"bending stress"``).
        value: the value found.
        limit: the value allowed, in the same unit.
        unit: the unit of both, for the reader (``"Pa"``), or None.

    Raises:
        TypeError: a name that is not a non-empty str, a value or limit that is not a
            number, a unit that is not a str.
    """
    if type(name) is not str or not name:
        raise TypeError("check(): name must be a non-empty str")
    try:
        v, lim = float(value), float(limit)
    except (TypeError, ValueError):
        raise TypeError("check(): value and limit must be numbers") from None
    if unit is not None and type(unit) is not str:
        raise TypeError("check(): unit must be a str or None")
    return v / lim if lim else float("inf")
