"""Workflows (DAGs of function calls) and their runs."""
from __future__ import annotations

import json
import os
import uuid
from typing import Any, Dict, Iterator, List, Mapping, Optional, Union

from ._common import Deadline, Followed, Me, pages, quote, short
from ._http import Transport
from .errors import RunFailed
from .tasks import Task

__all__ = ["Workflow", "WorkflowRun", "WorkflowsAPI", "WorkflowRunsAPI"]

_RUN_TERMINAL = frozenset({"completed", "failed", "cancelled"})


class WorkflowRun(Followed):
    """One run of a workflow. :attr:`data` is the run as ``GET /workflow-runs/{id}``
    returns it (its ``nodes`` with their tasks); :attr:`status` is ``running``,
    ``completed``, ``failed`` or ``cancelled``. Safe to share between threads."""

    _route, _what = "workflow-runs", "workflow run"

    @property
    def done(self) -> bool:
        """Whether it had ended, none of its calls running, when last fetched."""
        return self.status in _RUN_TERMINAL and self.data.get("finished_at") is not None

    @property
    def nodes(self) -> List[Dict[str, Any]]:
        """Each node: ``{"id", "status", "task_id", "error", ...}``."""
        return list(self.data.get("nodes") or [])

    def node_task(self, node_id: str) -> Optional[Task]:
        """The task of a node (None before it started; map nodes: use ``task_ids``)."""
        for n in self.nodes:
            if n.get("id") == node_id and n.get("task_id"):
                return Task(self._t, self._t.request("GET", f"tasks/{n['task_id']}").json())
        return None

    def outputs(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Wait for the end and return the run's outputs, or raise
        :class:`mecapy.RunFailed`."""
        self.wait(timeout)
        if self.status != "completed":
            raise RunFailed(self)
        out = self.data.get("outputs")
        return out if isinstance(out, dict) else {}

    def retry(self) -> "WorkflowRun":
        """Run the failed part again (what completed is not run again); returns the
        run, running."""
        return WorkflowRun(self._t, self._t.request(
            "POST", f"workflow-runs/{self.id}/retry").json())

    def cancel(self) -> "WorkflowRun":
        """Cancel the run and its running calls (:class:`mecapy.Conflict` if it had
        ended)."""
        return self._post("cancel")

    def __repr__(self) -> str:
        return f"<WorkflowRun {short(self.id)} {self.status}>"


class Workflow:
    """A workflow, called like a function: ``client.workflow("beam-check")(F=1000, L=2,
    fy=235e6)`` returns the outputs (or raises :class:`mecapy.RunFailed`);
    :meth:`submit` returns the :class:`WorkflowRun` at once."""

    def __init__(self, transport: Transport, ref: str, *, version: Optional[int] = None,
                 timeout: Optional[float] = None,
                 data: Optional[Dict[str, Any]] = None) -> None:
        self._t = transport
        self._ref = ref
        self._data = data
        self.version = version
        self.timeout = timeout

    @property
    def data(self) -> Dict[str, Any]:
        """The workflow object, fetched once."""
        if self._data is None:
            params = {"version": self.version} if self.version is not None else None
            self._data = self._t.request("GET", f"workflows/{quote(self._ref)}",
                                         params=params).json()
        return self._data

    @property
    def id(self) -> str:
        """The workflow's id."""
        return str(self.data["id"])

    @property
    def name(self) -> str:
        """The workflow's name."""
        return str(self.data.get("name"))

    def _execute(self, inputs: Dict[str, Any], wait: int) -> WorkflowRun:
        ref = str(self._data["id"]) if self._data else self._ref
        r = self._t.request("POST", f"workflows/{quote(ref)}/execute",
                            params={"wait": wait or None, "version": self.version},
                            json_body={"inputs": inputs}, wait=wait, retry_unsafe=True,
                            headers={"Idempotency-Key": uuid.uuid4().hex})
        return WorkflowRun(self._t, r.json())

    def submit(self, inputs: Optional[Mapping[str, Any]] = None, /,
               **kwargs: Any) -> WorkflowRun:
        """Start a run and return it at once."""
        return self._execute({**(inputs or {}), **kwargs}, wait=0)

    def __call__(self, inputs: Optional[Mapping[str, Any]] = None, /,
                 **kwargs: Any) -> Dict[str, Any]:
        """Run and wait: the outputs, or raises :class:`mecapy.RunFailed`."""
        d = Deadline(self.timeout)
        run = self._execute({**(inputs or {}), **kwargs}, wait=d.poll_wait())
        return run.outputs(d.left())

    def runs(self, *, status: Optional[str] = None,
             limit: Optional[int] = None) -> Iterator[WorkflowRun]:
        """This workflow's runs, newest first."""
        return WorkflowRunsAPI(self._t).list(workflow=self.id, status=status, limit=limit)

    def __repr__(self) -> str:
        if self._data is None:
            return f"<Workflow {self._ref!r}>"
        return f"<Workflow {self.name} v{self._data.get('version')}>"


class WorkflowsAPI:
    """``client.workflows``: save, list, read and delete workflow definitions."""

    def __init__(self, transport: Transport, me: Me) -> None:
        self._t = transport
        self._me = me

    def push(self, definition: Union[Mapping[str, Any], str, "os.PathLike[str]"]) -> Workflow:
        """Save a definition (a dict, or a ``.json`` file; ``.yaml`` when PyYAML is
        installed): a new workflow, or a new version of yours of that name. Raises
        :class:`mecapy.ValidationError` listing every problem at its field path."""
        if isinstance(definition, Mapping):
            body = dict(definition)
        else:
            path = os.fspath(definition)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            if path.endswith((".yaml", ".yml")):
                try:
                    import yaml  # type: ignore[import]
                except ImportError as e:
                    raise ImportError("reading a YAML workflow needs PyYAML; "
                                      "give a .json file or a dict") from e
                body = yaml.safe_load(text)
            else:
                body = json.loads(text)
        name = str(body.get("name", ""))
        mine = [w for w in pages(self._t, "workflows", {"name": name})
                if w.get("name") == name and w.get("owner_id") == self._me.id()]
        if mine:
            data = self._t.request("PUT", f"workflows/{mine[0]['id']}", json_body=body).json()
        else:
            data = self._t.request("POST", "workflows", json_body=body).json()
        return Workflow(self._t, str(data["id"]), data=data)

    def list(self, *, name: Optional[str] = None,
             limit: Optional[int] = None) -> Iterator[Workflow]:
        """The workflows you can see, newest first."""
        for w in pages(self._t, "workflows", {"name": name}, limit):
            yield Workflow(self._t, str(w["id"]), data=w)

    def get(self, ref: str, *, version: Optional[int] = None) -> Workflow:
        """A workflow by id, or by the name of one of yours (raises
        :class:`mecapy.NotFound`)."""
        w = Workflow(self._t, ref, version=version)
        w.data  # noqa: B018 - load now, so that an unknown name raises here
        return w

    def delete(self, ref: str) -> None:
        """Delete one of your workflows (its runs stay readable)."""
        self._t.request("DELETE", f"workflows/{quote(ref)}")


class WorkflowRunsAPI:
    """``client.workflow_runs``: your workflow runs."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def get(self, id: str) -> WorkflowRun:
        """A run by id (raises :class:`mecapy.NotFound`)."""
        return WorkflowRun(self._t, self._t.request("GET", f"workflow-runs/{quote(id)}").json())

    def list(self, *, workflow: Optional[str] = None, status: Optional[str] = None,
             limit: Optional[int] = None) -> Iterator[WorkflowRun]:
        """Runs, newest first (``workflow``: a workflow id), as summaries."""
        for r in pages(self._t, "workflow-runs", {"workflow_id": workflow, "status": status},
                       limit):
            yield WorkflowRun(self._t, r)
