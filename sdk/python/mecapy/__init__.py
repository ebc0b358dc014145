"""MecaPy's Python SDK: call your functions on a MecaPy server as Python functions.

::

    from mecapy import Client, TaskFailed
    client = Client("http://127.0.0.1:8000", token=T)   # or Client(): the CLI's login
    client.functions.push("cantilever.py")
    beam = client.function("cantilever")
    beam(F=1000, L=2)           # -> the result; raises TaskFailed when the call fails

See docs/sdk.md for the guide and docs/sdk-reference.md for every class and method.
"""
from __future__ import annotations

__version__ = "0.1.0"

from ._progress import check, progress  # noqa: E402
from .client import Client, TokensAPI  # noqa: E402
from .errors import (  # noqa: E402
    APIError, BadRequest, Conflict, FieldError, Forbidden, MecapyError, NotFound,
    QuotaExceeded, RateLimited, RunFailed, ServerError, TaskFailed, TransportError,
    Unauthorized, ValidationError, WaitTimeout)
from .functions import Function, FunctionsAPI  # noqa: E402
from .studies import Results, StudiesAPI, Study  # noqa: E402
from .tasks import Artifact, Event, Progress, Task, TasksAPI  # noqa: E402
from .workflows import Workflow, WorkflowRun, WorkflowRunsAPI, WorkflowsAPI  # noqa: E402

__all__ = [
    "Client", "progress", "check", "Function", "Task", "Artifact", "Progress", "Event", "Workflow",
    "WorkflowRun", "Study", "Results", "FunctionsAPI", "TasksAPI", "WorkflowsAPI",
    "WorkflowRunsAPI", "StudiesAPI", "TokensAPI", "MecapyError", "APIError", "FieldError",
    "BadRequest", "Unauthorized", "Forbidden", "NotFound", "Conflict", "ValidationError",
    "RateLimited", "QuotaExceeded", "ServerError", "TransportError", "WaitTimeout",
    "TaskFailed", "RunFailed", "__version__",
]
