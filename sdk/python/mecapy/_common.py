"""Helpers shared by the resource modules: paging, deadlines, names."""
from __future__ import annotations

import math
import re
import threading
import time
import urllib.parse
from typing import Any, Dict, Iterator, Optional, TypeVar

from ._http import Params, Transport
from .errors import WaitTimeout

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


F = TypeVar("F", bound="Followed")


class Followed:
    """Something on the server that runs and ends (a task, a workflow run, a study):
    the state the server gave last, refreshed and waited for with long polls. Safe to
    share between threads."""

    _route = ""  # the collection's path: "tasks", "workflow-runs", "studies"
    _what = ""   # its name in messages

    def __init__(self, transport: Transport, data: Dict[str, Any]) -> None:
        self._t = transport
        self._lock = threading.Lock()
        self.data: Dict[str, Any] = data
        self.id: str = str(data["id"])

    def _set(self: F, data: Dict[str, Any]) -> F:
        with self._lock:
            self.data = data
            self._loaded()
        return self

    def _loaded(self) -> None:
        """Called (under the lock) when a whole object came from the server."""

    def _partial(self) -> bool:
        """Whether data is only a list's summary (wait() then fetches the whole)."""
        return False

    @property
    def status(self) -> str:
        """Its status, as last fetched."""
        return str(self.data.get("status"))

    @property
    def done(self) -> bool:
        """Whether it had ended when last fetched."""
        raise NotImplementedError

    def refresh(self: F) -> F:
        """Fetch it again; returns it."""
        return self._set(self._t.request("GET", f"{self._route}/{self.id}").json())

    def wait(self: F, timeout: Optional[float] = None) -> F:
        """Block until it ends and return it: long polls of a minute at most
        (``?wait=``), never a busy loop. Raises :class:`mecapy.WaitTimeout` after
        ``timeout`` seconds (None: no limit); the work goes on on the server."""
        d = Deadline(timeout)
        while not self.done or self._partial():
            w = d.poll_wait()
            self._set(self._t.request("GET", f"{self._route}/{self.id}", params={"wait": w},
                                      wait=w).json())
            if self.done:
                break
            if d.expired():
                raise WaitTimeout(f"{self._what} {self.id} still {self.status} after "
                                  f"{timeout} s", self.id)
        return self

    def _post(self: F, action: str, body: Any = None) -> F:
        """POST {route}/{id}/{action}; the answer is the new state."""
        return self._set(self._t.request("POST", f"{self._route}/{self.id}/{action}",
                                         json_body=body).json())
