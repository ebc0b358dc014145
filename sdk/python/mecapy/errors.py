"""The exceptions the SDK raises.

Every error the server answers is an RFC 9457 ``application/problem+json`` document; the
SDK turns it into an :class:`APIError` subclass chosen by its HTTP status, keeping the
problem's ``type``, ``title``, ``detail`` and per-field ``errors``. A calculation that ran
and failed is not an HTTP error: :class:`TaskFailed` carries the user's exception.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

__all__ = [
    "MecapyError", "TransportError", "WaitTimeout", "APIError", "FieldError", "BadRequest",
    "Unauthorized", "Forbidden", "NotFound", "Conflict", "ValidationError", "RateLimited",
    "QuotaExceeded", "ServerError", "TaskFailed", "RunFailed",
]


class MecapyError(Exception):
    """The base of every exception the SDK raises."""


class TransportError(MecapyError):
    """The server could not be reached, or the connection broke before an answer came
    (after the automatic retries of safe requests)."""


class WaitTimeout(MecapyError, TimeoutError):
    """A wait ran out of time; the task, run or study goes on on the server.

    Attributes:
        id: the id of what was waited for.
    """

    def __init__(self, message: str, id: str) -> None:
        super().__init__(message)
        self.id = id


@dataclass(frozen=True)
class FieldError:
    """One offending field of a request: ``path`` such as ``inputs.L``, and a sentence."""

    path: str
    message: str
    line: Optional[int] = None


class APIError(MecapyError):
    """The server answered an error (a problem+json document).

    Attributes:
        status: the HTTP status code.
        type: the problem type, ``urn:mecapy:problem:<code>``.
        code: the last part of the type (``validation``, ``not_found``, ...).
        title: the HTTP reason phrase.
        detail: a sentence naming what is at fault.
        errors: one :class:`FieldError` per offending field (may be empty).
        problem: the whole problem document as the server sent it.
        retry_after: seconds the server asked to wait (``Retry-After``), or None.
    """

    def __init__(self, status: int, problem: Mapping[str, Any],
                 retry_after: Optional[float] = None) -> None:
        self.status = status
        self.problem: Dict[str, Any] = dict(problem)
        self.type: str = str(problem.get("type") or "about:blank")
        self.code: str = self.type.rsplit(":", 1)[-1]
        self.title: str = str(problem.get("title") or "")
        self.detail: str = str(problem.get("detail") or "")
        self.retry_after = retry_after
        errs: List[FieldError] = []
        raw = problem.get("errors")
        if isinstance(raw, list):
            for e in raw:
                if isinstance(e, dict):
                    line = e.get("line")
                    errs.append(FieldError(str(e.get("path", "")), str(e.get("message", "")),
                                           line if isinstance(line, int) else None))
        self.errors = errs
        text = f"{status} {self.title}".strip()
        if self.detail:
            text += f": {self.detail}"
        super().__init__(text)

    @property
    def fields(self) -> List[str]:
        """The field paths at fault (``["inputs.L"]``), in the server's order."""
        return [e.path for e in self.errors]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.detail!r})"


class BadRequest(APIError):
    """400: malformed JSON, a bad query parameter."""


class Unauthorized(APIError):
    """401: no token, or one that is unknown, expired or revoked."""


class Forbidden(APIError):
    """403: the caller's role or the token's scopes do not allow this."""


class NotFound(APIError):
    """404: an unknown id, or an object the caller may not see."""


class Conflict(APIError):
    """409: a name already taken, cancelling what has ended, an Idempotency-Key reused
    with other inputs."""


class ValidationError(APIError):
    """422: the body parses but breaks the rules; :attr:`fields` lists the paths at
    fault (``inputs.L``, ``nodes[1].inputs.M``, ``code``)."""


class RateLimited(APIError):
    """429: a rate limit was reached. The SDK already waited ``Retry-After`` and retried
    (``max_retries`` times) before raising this; :attr:`retry_after` says how long the
    server asked to wait."""


class QuotaExceeded(APIError):
    """Over a quota of the company or user (402, 403 or 429 with a problem naming the
    quota).

    Attributes:
        quota: which quota (``calls_per_day``, ``concurrent_calls``, ...), or None.
        limit: the quota's limit, or None.
        resets_at: when it resets (RFC 3339), or None.
    """

    def __init__(self, status: int, problem: Mapping[str, Any],
                 retry_after: Optional[float] = None) -> None:
        super().__init__(status, problem, retry_after)
        q = problem.get("quota")
        self.quota: Optional[str] = q if isinstance(q, str) else None
        self.limit: Any = problem.get("limit")
        r = problem.get("resets_at")
        self.resets_at: Optional[str] = r if isinstance(r, str) else None


class _RateQuotaExceeded(QuotaExceeded, RateLimited):
    """429 over a concurrency or rate quota: both a QuotaExceeded and a RateLimited."""


class ServerError(APIError):
    """5xx: the server failed, or cannot reach its store right now (503, with
    :attr:`retry_after`)."""


_BY_STATUS = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
              409: Conflict, 422: ValidationError, 429: RateLimited}


def error_from_problem(status: int, problem: Mapping[str, Any],
                       retry_after: Optional[float] = None) -> APIError:
    """The exception for an error answer (status and its decoded problem body)."""
    kind = str(problem.get("type") or "").lower()
    if "quota" in kind:
        return (_RateQuotaExceeded if status == 429 else QuotaExceeded)(
            status, problem, retry_after)
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIError
    return cls(status, problem, retry_after)


class TaskFailed(MecapyError):
    """A call ended without a result: the function raised, a limit stopped it, or it was
    cancelled.

    Attributes:
        task: the ended :class:`mecapy.Task`.
        status: ``failed``, ``timed_out`` or ``cancelled``.
        error_type: the user's exception type (``ValueError``), or the platform's
            (``TimeoutError``, ``MemoryError``, ``Cancelled``).
        message: the exception's message.
        traceback: the user's frames, as Python printed them (empty when a limit stopped
            the call).
        limit: which limit stopped it (``timeout``, ``memory``, ...), or None.
    """

    def __init__(self, task: Any) -> None:
        self.task = task
        data: Mapping[str, Any] = task.data
        err = data.get("error") if isinstance(data.get("error"), dict) else {}
        assert isinstance(err, dict)
        self.status: str = str(data.get("status"))
        self.error_type: str = str(err.get("type") or self.status)
        self.message: str = str(err.get("message") or "")
        self.traceback: str = str(err.get("traceback") or "")
        lim = err.get("limit")
        self.limit: Optional[str] = lim if isinstance(lim, str) else None
        super().__init__(f"task {data.get('id')} {self.status}: {self.error_type}: {self.message}")


class RunFailed(MecapyError):
    """A workflow run ended without its outputs (failed or cancelled).

    Attributes:
        run: the ended :class:`mecapy.WorkflowRun`.
        status: ``failed`` or ``cancelled``.
        error: the run's error object as the server gives it (``{"type", "message",
            "node"...}``), or an empty dict.
    """

    def __init__(self, run: Any) -> None:
        self.run = run
        data: Mapping[str, Any] = run.data
        self.status: str = str(data.get("status"))
        err = data.get("error")
        self.error: Dict[str, Any] = dict(err) if isinstance(err, dict) else {}
        msg = self.error.get("message") or self.error.get("type") or ""
        super().__init__(f"workflow run {data.get('id')} {self.status}: {msg}".rstrip(": "))
