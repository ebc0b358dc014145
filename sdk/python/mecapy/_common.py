"""Helpers shared by the resource modules: paging, deadlines, names."""
from __future__ import annotations

import math
import re
import threading
import time
import urllib.parse
from typing import Any, Dict, Iterator, Optional

from ._http import Params, Transport

TERMINAL_TASK = frozenset({"completed", "failed", "timed_out", "cancelled"})
LONG_POLL_S = 60  # one held request per minute per object, as docs/api.md asks
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def is_uuid(s: str) -> bool:
    return bool(_UUID.match(s))


def quote(s: str) -> str:
    """One path segment, percent-encoded."""
    return urllib.parse.quote(s, safe="")


def pages(transport: Transport, path: str, params: Optional[Params] = None,
          limit: Optional[int] = None, page_size: int = 100) -> Iterator[Dict[str, Any]]:
    """Every item of a list route, following ``next_cursor`` page by page (fetched as
    the iteration reaches them); at most ``limit`` items when given."""
    if limit is not None and limit <= 0:
        return
    q: Dict[str, Any] = dict(params or {})
    size = max(1, min(200, page_size if limit is None else min(page_size, limit)))
    seen = 0
    cursor: Optional[str] = None
    while True:
        q["limit"] = size
        q["cursor"] = cursor
        page = transport.request("GET", path, params=q).json()
        for item in page.get("items") or []:
            yield item
            seen += 1
            if limit is not None and seen >= limit:
                return
        cursor = page.get("next_cursor")
        if not cursor:
            return


class Deadline:
    """A time budget: ``None`` waits for ever."""

    def __init__(self, timeout: Optional[float]) -> None:
        self.end = None if timeout is None else time.monotonic() + max(0.0, timeout)

    def left(self) -> Optional[float]:
        return None if self.end is None else max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        left = self.left()
        return left is not None and left <= 0

    def poll_wait(self) -> int:
        """Seconds for the next ``?wait=`` (whole, at most a minute, at least 0)."""
        left = self.left()
        # Rounded up: a wait of 0 with time left would turn the long poll into a busy loop.
        return LONG_POLL_S if left is None else int(min(LONG_POLL_S, math.ceil(left)))


def short(id: Any) -> str:
    s = str(id)
    return s[:8] if is_uuid(s) else s


class Me:
    """The caller's user id, fetched once (to prefer one's own function of a name)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport
        self._id: Optional[str] = None
        self._lock = threading.Lock()

    def id(self) -> str:
        with self._lock:
            if self._id is None:
                self._id = str(self._t.request("GET", "me").json().get("id"))
            return self._id
