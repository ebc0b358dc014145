"""Parameter studies: a function or a workflow over the points of a design."""
from __future__ import annotations

import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from ._common import Followed, pages, quote, short
from ._http import Transport

__all__ = ["Study", "Results", "StudiesAPI"]


def _varied(study: Mapping[str, Any]) -> List[str]:
    """The names a study's design varies, in its order."""
    design = study.get("design")
    if not isinstance(design, dict):
        return []
    params = design.get("params")
    if isinstance(params, dict):
        return list(params)
    points = design.get("points")
    if isinstance(points, list) and points and isinstance(points[0], dict):
        return list(points[0])
    return []


class Results:
    """The rows of a study's table, one per point, fetched page by page as they are
    iterated: ``{"index", "inputs", "outputs", "status", "task_id", "run_id",
    "error"}``. ``outputs`` maps each output path (``result.deflection_mm``) to its
    value."""

    def __init__(self, transport: Transport, study_id: str,
                 study: Optional[Dict[str, Any]] = None) -> None:
        self._t = transport
        self.study_id = study_id
        self._first = _varied(study or {})

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return pages(self._t, f"studies/{self.study_id}/results", page_size=200)

    def rows(self) -> List[Dict[str, Any]]:
        """Every row, flat: ``index``, each input, each output path, ``status`` and
        ``error`` (``"Type: message"`` or None), as the CSV's columns."""
        out = []
        for p in self:
            row: Dict[str, Any] = {"index": p.get("index")}
            inputs = p.get("inputs") or {}
            # The CSV's order: the design's parameters first, then the fixed inputs.
            row.update((k, inputs[k]) for k in self._first if k in inputs)
            row.update(inputs)
            row.update(p.get("outputs") or {})
            row["status"] = p.get("status")
            err = p.get("error")
            row["error"] = (f"{err.get('type')}: {err.get('message')}"
                            if isinstance(err, dict) else None)
            out.append(row)
        return out

    def to_pandas(self) -> Any:
        """The table as a ``pandas.DataFrame`` indexed by point (needs pandas)."""
        try:
            import pandas as pd  # type: ignore[import]
        except ImportError as e:
            raise ImportError("to_pandas() needs pandas (pip install pandas, or apt "
                              "install python3-pandas)") from e
        df = pd.DataFrame(self.rows())
        if "index" in df.columns:
            df = df.set_index("index")
        return df

    def to_csv(self, path: Union[str, "os.PathLike[str]", None] = None) -> str:
        """The table as the server's CSV (streamed): written to ``path`` when given
        (the path is returned), else returned as text."""
        r = self._t.stream("GET", f"studies/{self.study_id}/results",
                           params={"format": "csv"}, headers={"Accept": "text/csv"})
        try:
            if path is None:
                return r.read().decode("utf-8")
            dest = os.fspath(path)
            with open(dest, "wb") as f:
                while True:
                    chunk = r.read(64 * 1024)
                    if not chunk:
                        break
                    f.write(chunk)
            return dest
        finally:
            r.close()

    def __repr__(self) -> str:
        return f"<Results of study {short(self.study_id)}>"


class Study(Followed):
    """A study. :attr:`data` is the study as ``GET /studies/{id}`` returns it;
    :attr:`status` is ``running``, ``completed`` (every point ended) or ``cancelled``,
    and :attr:`progress` counts points. Safe to share between threads."""

    _route, _what = "studies", "study"

    @property
    def done(self) -> bool:
        """Whether the study had stopped running when last fetched."""
        return self.status != "running"

    @property
    def progress(self) -> Dict[str, int]:
        """``{"total", "queued", "running", "completed", "failed", "cancelled"}``."""
        p = self.data.get("progress")
        return {k: int(v) for k, v in p.items()} if isinstance(p, dict) else {}

    def results(self) -> Results:
        """The table (iterable rows, ``.to_pandas()``, ``.to_csv()``)."""
        return Results(self._t, self.id, self.data)

    def add_points(self, points: Sequence[Mapping[str, Any]]) -> "Study":
        """Add a list of points (those already in the study are left out)."""
        return self._post("points", {"points": [dict(p) for p in points]})

    def retry(self) -> "Study":
        """Run the failed points again."""
        return self._post("retry")

    def cancel(self) -> "Study":
        """Cancel the points not ended (:class:`mecapy.Conflict` if it had ended)."""
        return self._post("cancel")

    def __repr__(self) -> str:
        p = self.progress
        done = p.get("completed", 0) + p.get("failed", 0) + p.get("cancelled", 0)
        name = self.data.get("name")
        label = f" {name!r}" if name else ""
        return f"<Study {short(self.id)}{label} {self.status} {done}/{p.get('total', 0)}>"


class StudiesAPI:
    """``client.studies``: create, list and read studies."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(self, spec: Optional[Mapping[str, Any]] = None, /, *,
               function: Optional[str] = None, workflow: Optional[str] = None,
               version: Optional[int] = None, design: Optional[Mapping[str, Any]] = None,
               fixed: Optional[Mapping[str, Any]] = None,
               outputs: Optional[Sequence[str]] = None, name: Optional[str] = None,
               notes: Optional[str] = None, concurrency: Optional[int] = None) -> Study:
        """Create and start a study, from a whole ``spec`` (the JSON of
        ``POST /studies``) and/or keywords (keywords win)::

            client.studies.create(function="cantilever",
                                  design={"type": "grid", "params": {"L": [1, 2], "F": [100, 200]}},
                                  outputs=["result.deflection_mm"])

        Every point is validated first: :class:`mecapy.ValidationError` names the first
        bad point and field (``points[3].L``)."""
        body: Dict[str, Any] = dict(spec or {})
        if function is not None or workflow is not None:
            target: Dict[str, Any] = ({"function": function} if function is not None
                                      else {"workflow": workflow})
            if version is not None:
                target["version"] = version
            body["target"] = target
        for k, v in (("design", design), ("fixed", fixed), ("name", name),
                     ("notes", notes), ("concurrency", concurrency)):
            if v is not None:
                body[k] = dict(v) if isinstance(v, Mapping) else v
        if outputs is not None:
            body["outputs"] = list(outputs)
        return Study(self._t, self._t.request("POST", "studies", json_body=body).json())

    def get(self, id: str) -> Study:
        """A study by id (raises :class:`mecapy.NotFound`)."""
        return Study(self._t, self._t.request("GET", f"studies/{quote(id)}").json())

    def list(self, *, status: Optional[str] = None, name: Optional[str] = None,
             limit: Optional[int] = None) -> Iterator[Study]:
        """Your studies, newest first."""
        for s in pages(self._t, "studies", {"status": status, "name": name}, limit):
            yield Study(self._t, s)
