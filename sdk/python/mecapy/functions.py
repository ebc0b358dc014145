"""Functions: upload Python code, then call it like a Python function."""
from __future__ import annotations

import os
import threading
import uuid
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from ._common import Deadline, Me, is_uuid, pages, quote, short
from ._http import Transport
from .errors import Conflict, NotFound
from .tasks import Task, TasksAPI

__all__ = ["Function", "FunctionsAPI"]

PathLike = Union[str, "os.PathLike[str]"]


def _merge(inputs: Optional[Mapping[str, Any]], kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    merged = dict(inputs or {})
    merged.update(kwargs)
    return merged


class Function:
    """A function on the server, called like a Python function::

        beam = client.function("cantilever")
        beam(F=1000, L=2)                  # the result, or raises TaskFailed
        task = beam.submit(F=1000, L=2)    # a Task, without waiting

    A name is resolved to an id on first use (your own function of that name first,
    as the CLI does), then kept. Safe to share between threads.

    Attributes:
        timeout: seconds a call waits for its result (None: until the task ends; the
            function's own time limit bounds the run).
        version: the version called (None: the latest).
    """

    def __init__(self, transport: Transport, ref: str, *, version: Optional[int] = None,
                 timeout: Optional[float] = None, data: Optional[Dict[str, Any]] = None,
                 me: Optional[Me] = None) -> None:
        self._t = transport
        self._ref = ref
        self._lock = threading.Lock()
        self._data = data
        self._me = me
        self.version = version
        self.timeout = timeout

    # -- what it is

    @property
    def data(self) -> Dict[str, Any]:
        """The function object (``GET /functions/{id}``), fetched once."""
        with self._lock:
            if self._data is None:
                params = {"version": self.version} if self.version is not None else None
                self._data = self._t.request("GET", f"functions/{self._resolve()}",
                                             params=params).json()
            assert self._data is not None
            return self._data

    def _resolve(self) -> str:
        """The id (caller holds the lock or does not care about a duplicate lookup)."""
        if self._data is not None:
            return str(self._data["id"])
        if is_uuid(self._ref):
            return self._ref
        found = list(pages(self._t, "functions", {"name": self._ref}))
        found = [f for f in found if f.get("name") == self._ref]
        if not found:
            raise NotFound(404, {"title": "Not Found",
                                 "detail": f"no function named {self._ref!r} is visible to you"})
        mine = [f for f in found if self._me and f.get("owner_id") == self._me.id()]
        pick = mine or found
        if len(pick) > 1:
            raise Conflict(409, {"title": "Conflict", "detail":
                                 f"{len(pick)} functions are named {self._ref!r}: give the id"})
        self._ref = str(pick[0]["id"])
        return self._ref

    @property
    def id(self) -> str:
        """The function's id (a name is looked up once)."""
        with self._lock:
            return self._resolve()

    @property
    def name(self) -> str:
        """The function's name."""
        return str(self.data.get("name"))

    @property
    def input_schema(self) -> Dict[str, Any]:
        """The JSON Schema of the inputs, read from the handler's type hints."""
        v = self.data.get("input_schema")
        return v if isinstance(v, dict) else {}

    @property
    def parameters(self) -> List[str]:
        """The names of the inputs, in the order of the signature."""
        props = self.input_schema.get("properties")
        return list(props) if isinstance(props, dict) else []

    def versions(self) -> List[Dict[str, Any]]:
        """Every version, newest first: ``{"version", "handler", "input_schema",
        "created_at"}``."""
        items = self._t.request("GET", f"functions/{self.id}/versions").json().get("items")
        return list(items or [])

    # -- calling

    def submit(self, inputs: Optional[Mapping[str, Any]] = None, /, **kwargs: Any) -> Task:
        """Start a call and return its :class:`Task` at once (queued or running).
        Inputs are a mapping and/or keywords (keywords win)."""
        return self._execute(_merge(inputs, kwargs), wait=0)

    def call(self, inputs: Optional[Mapping[str, Any]] = None, /, *,
             timeout: Optional[float] = None, idempotency_key: Optional[str] = None) -> Any:
        """Call with an inputs mapping and options: the result, or raises
        :class:`mecapy.TaskFailed`; :class:`mecapy.WaitTimeout` after ``timeout``
        seconds. ``idempotency_key`` makes a retried call return the first call's task."""
        d = Deadline(timeout if timeout is not None else self.timeout)
        task = self._execute(dict(inputs or {}), wait=d.poll_wait(), key=idempotency_key)
        return task.result(d.left())

    def __call__(self, inputs: Optional[Mapping[str, Any]] = None, /, **kwargs: Any) -> Any:
        """``beam(F=1000, L=2)``: call and wait; the result, or raises
        :class:`mecapy.TaskFailed` (the user's error type, message and traceback)."""
        return self.call(_merge(inputs, kwargs))

    def _execute(self, inputs: Dict[str, Any], wait: int,
                 key: Optional[str] = None) -> Task:
        params: Dict[str, Any] = {"wait": wait or None, "version": self.version}
        # A fresh Idempotency-Key: the request can be sent again safely (a dropped
        # connection, a 503) and never runs the function twice.
        r = self._t.request("POST", f"functions/{self.id}/execute", params=params,
                            json_body={"inputs": inputs}, wait=wait, retry_unsafe=True,
                            headers={"Idempotency-Key": key or uuid.uuid4().hex})
        return Task(self._t, r.json())

    def tasks(self, *, status: Optional[str] = None,
              limit: Optional[int] = None) -> Iterator[Task]:
        """This function's tasks (yours), newest first."""
        return TasksAPI(self._t).list(function=self.id, status=status, limit=limit)

    def __repr__(self) -> str:
        if self._data is None:
            return f"<Function {self._ref!r}>"
        params = ", ".join(self.parameters)
        return f"<Function {self.name} v{self._data.get('version')} ({params})>"


class FunctionsAPI:
    """``client.functions``: upload, list, read and delete functions."""

    def __init__(self, transport: Transport, me: Me) -> None:
        self._t = transport
        self._me = me

    def push(self, source: PathLike, *, name: Optional[str] = None,
             code: Optional[str] = None, handler: Optional[str] = None,
             description: Optional[str] = None, visibility: Optional[str] = None,
             requirements: Optional[Sequence[str]] = None,
             limits: Optional[Mapping[str, Any]] = None, cache: Optional[bool] = None,
             tags: Optional[Sequence[str]] = None) -> Function:
        """Upload a Python file as a function, as ``mecapy fn push`` does: a new
        function, or a new version of your own function of that name. The name defaults
        to the file's base name without ``.py``. With ``code``, ``source`` is only the
        name's default and nothing is read. Options left None keep what the function
        has (or the server's defaults for a new one). Raises
        :class:`mecapy.ValidationError` for code the server refuses (each problem's
        ``path``, ``line`` and ``message`` in ``errors``)."""
        path = os.fspath(source)
        if code is None:
            with open(path, encoding="utf-8") as f:
                code = f.read()
        if name is None:
            base = os.path.basename(path)
            name = base[:-3] if base.endswith(".py") else base
        body: Dict[str, Any] = {"name": name, "code": code}
        for k, v in (("handler", handler), ("description", description),
                     ("visibility", visibility), ("limits", limits), ("cache", cache)):
            if v is not None:
                body[k] = dict(v) if isinstance(v, Mapping) else v
        if requirements is not None:
            body["requirements"] = list(requirements)
        if tags is not None:
            body["tags"] = list(tags)
        mine = [f for f in pages(self._t, "functions", {"name": name})
                if f.get("name") == name and f.get("owner_id") == self._me.id()]
        if mine:
            data = self._t.request("PUT", f"functions/{mine[0]['id']}", json_body=body).json()
        else:
            data = self._t.request("POST", "functions", json_body=body).json()
        return Function(self._t, str(data["id"]), data=data, me=self._me)

    def list(self, *, name: Optional[str] = None, limit: Optional[int] = None) -> Iterator[Function]:
        """The functions you can see (yours, your company's, public ones)."""
        for f in pages(self._t, "functions", {"name": name}, limit):
            yield Function(self._t, str(f["id"]), data=f, me=self._me)

    def get(self, ref: str, *, version: Optional[int] = None) -> Function:
        """A function by name or id, loaded (raises :class:`mecapy.NotFound`)."""
        fn = Function(self._t, ref, version=version, me=self._me)
        fn.data  # noqa: B018 - load it now, so that an unknown name raises here
        return fn

    def delete(self, ref: str) -> None:
        """Delete one of your functions (by name or id); its tasks stay readable."""
        fid = Function(self._t, ref, me=self._me).id
        self._t.request("DELETE", f"functions/{quote(fid)}")

    def __repr__(self) -> str:
        return f"<FunctionsAPI {short(self._t.url)}>"
