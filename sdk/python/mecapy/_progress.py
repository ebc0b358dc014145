"""``progress()`` outside the sandbox."""
from __future__ import annotations

__all__ = ["progress"]


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
