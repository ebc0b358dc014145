"""Tasks: one call of a function, its result, logs, files and progress."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Union

from ._common import TERMINAL_TASK, Followed, pages, quote, short
from ._http import Transport
from .errors import TaskFailed

__all__ = ["Task", "Artifact", "Progress", "Event", "TasksAPI"]


@dataclass(frozen=True)
class Progress:
    """What a running function last reported with ``mecapy.progress()``."""

    fraction: float
    message: str
    at: Optional[str]


@dataclass(frozen=True)
class Event:
    """One event of a task's stream: ``status``, ``log``, ``progress``, ``end`` or
    ``error``; ``data`` is the decoded JSON (a ``str`` for ``log``)."""

    event: str
    data: Any


class Artifact:
    """A file the function wrote in ``outputs/``."""

    def __init__(self, transport: Transport, task_id: str, data: Dict[str, Any]) -> None:
        self._t = transport
        self.task_id = task_id
        self.name: str = str(data.get("name"))
        self.size: int = int(data.get("size") or 0)
        self.url: str = str(data.get("url") or "")

    def read(self) -> bytes:
        """The file's bytes."""
        return self._t.request("GET", f"tasks/{self.task_id}/artifacts/"
                               + "/".join(quote(p) for p in self.name.split("/"))).body

    def download(self, path: Union[str, "os.PathLike[str]", None] = None) -> str:
        """Write the file to ``path`` (default: its base name in the current folder; a
        folder: the base name inside it) and return the path written."""
        dest = os.fspath(path) if path is not None else os.path.basename(self.name)
        if os.path.isdir(dest):
            dest = os.path.join(dest, os.path.basename(self.name))
        data = self.read()
        with open(dest, "wb") as f:
            f.write(data)
        return dest

    def __repr__(self) -> str:
        return f"<Artifact {self.name} ({self.size} bytes)>"


class Task(Followed):
    """A call of a function. Its state is what the server said last (:meth:`refresh`,
    :meth:`wait`); :attr:`data` is that task object, as ``GET /tasks/{id}`` returns it;
    :attr:`status` is ``queued``, ``running``, ``completed``, ``failed``, ``timed_out``
    or ``cancelled``.

    Safe to share between threads.
    """

    _route, _what = "tasks", "task"

    def __init__(self, transport: Transport, data: Dict[str, Any],
                 summary: bool = False) -> None:
        super().__init__(transport, data)
        self._summary = summary  # a list's summary: no inputs, result, logs, artifacts

    def _loaded(self) -> None:
        self._summary = False

    def _partial(self) -> bool:
        return self._summary

    @property
    def done(self) -> bool:
        """Whether the task had ended when last fetched."""
        return self.status in TERMINAL_TASK

    @property
    def error(self) -> Optional[Dict[str, Any]]:
        """``{"type", "message", "traceback"}`` (or ``"limit"``) of an ended task that
        did not complete; None otherwise."""
        e = self.data.get("error")
        return e if isinstance(e, dict) else None

    @property
    def inputs(self) -> Dict[str, Any]:
        """The inputs the task was called with."""
        v = self.data.get("inputs")
        return v if isinstance(v, dict) else {}

    @property
    def progress(self) -> Optional[Progress]:
        """The last progress the function reported, fetched again while the task runs;
        None when it never reported any."""
        if not self.done:
            self.refresh()
        p = self.data.get("progress")
        if not isinstance(p, dict):
            return None
        return Progress(float(p.get("fraction") or 0.0), str(p.get("message") or ""),
                        p.get("at") if isinstance(p.get("at"), str) else None)

    def refresh(self) -> "Task":
        """Fetch the task again (an ended one only if this was a list's summary);
        returns it."""
        if self._summary or not self.done:
            super().refresh()
        return self

    def result(self, timeout: Optional[float] = None) -> Any:
        """Wait for the end (see :meth:`wait`) and return the function's result, or
        raise :class:`TaskFailed` with the user's error type, message and traceback."""
        self.wait(timeout)
        if self.status != "completed":
            raise TaskFailed(self)
        return self.data.get("result")

    # -- what it produced

    def logs(self) -> str:
        """What the function printed (stdout and stderr), as text."""
        return self._t.request("GET", f"tasks/{self.id}/logs",
                               headers={"Accept": "text/plain"}).text()

    @property
    def artifacts(self) -> List[Artifact]:
        """The files the function wrote in ``outputs/`` (of an ended task)."""
        if self._summary:
            self.refresh()
        return [Artifact(self._t, self.id, a) for a in self.data.get("artifacts") or []
                if isinstance(a, dict)]

    def cancel(self) -> "Task":
        """Cancel the task (a queued one never runs, a running one is stopped). Raises
        :class:`mecapy.Conflict` if it had already ended."""
        return self._post("cancel")

    def events(self, timeout: Optional[float] = None) -> Iterator[Event]:
        """Follow the task's event stream (``GET /tasks/{id}/events``): ``status`` at each
        change, ``progress`` and ``log`` while it runs, then ``end`` (the task is updated
        from it) and the stream closes. ``timeout`` bounds the silence between two
        reads (the server sends a heartbeat every 15 s)."""
        r = self._t.stream("GET", f"tasks/{self.id}/events",
                           headers={"Accept": "text/event-stream"},
                           timeout=timeout if timeout is not None else 60.0)
        try:
            event = "message"
            lines: List[str] = []
            for raw in r:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line.startswith(":"):
                    continue
                if line == "":
                    if lines:
                        yield self._event(event, "\n".join(lines))
                    event, lines = "message", []
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    event = value
                elif name == "data":
                    lines.append(value)
            if lines:
                yield self._event(event, "\n".join(lines))
        finally:
            r.close()

    def _event(self, event: str, text: str) -> Event:
        if event == "log":
            return Event(event, text)
        try:
            data = json.loads(text)
        except ValueError:
            return Event(event, text)
        if event == "end" and isinstance(data, dict):
            self._set(data)
        return Event(event, data)

    def __repr__(self) -> str:
        extra = ""
        if self.error:
            extra = f" {self.error.get('type')}: {str(self.error.get('message'))[:60]}"
        return f"<Task {short(self.id)} {self.status}{extra}>"


class TasksAPI:
    """``client.tasks``: the caller's tasks."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def get(self, id: str) -> Task:
        """The task with this id (raises :class:`mecapy.NotFound`)."""
        return Task(self._t, self._t.request("GET", f"tasks/{quote(id)}").json())

    def list(self, *, function: Optional[str] = None, status: Optional[str] = None,
             limit: Optional[int] = None, page_size: int = 100) -> Iterator[Task]:
        """The caller's tasks, newest first, as summaries (call :meth:`Task.refresh` or
        :meth:`Task.wait` for the inputs, result and logs). Pages are fetched as the
        iteration reaches them; ``limit`` caps the count. ``function`` is a function id.
        """
        for item in pages(self._t, "tasks", {"function_id": function, "status": status},
                          limit, page_size):
            yield Task(self._t, item, summary=True)
