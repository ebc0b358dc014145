"""The client: one server, one token, every resource."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import __version__
from ._common import Me, pages, quote
from ._http import Transport
from .functions import Function, FunctionsAPI
from .studies import StudiesAPI, Study
from .tasks import Task, TasksAPI
from .workflows import Workflow, WorkflowRunsAPI, WorkflowsAPI

__all__ = ["Client", "TokensAPI", "cli_config_path", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8000"


def cli_config_path(env: Optional[Mapping[str, str]] = None) -> str:
    """Where ``mecapy login`` saves its URL and token: ``$MECAPY_CONFIG_DIR/mecapy/
    config.json``, else ``$XDG_CONFIG_HOME/mecapy/config.json``, else
    ``~/.config/mecapy/config.json``."""
    e = os.environ if env is None else env
    if e.get("MECAPY_CONFIG_DIR"):
        return os.path.join(e["MECAPY_CONFIG_DIR"], "mecapy", "config.json")
    if e.get("XDG_CONFIG_HOME"):
        return os.path.join(e["XDG_CONFIG_HOME"], "mecapy", "config.json")
    home = e.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".config", "mecapy", "config.json")


def _normalize(url: str) -> str:
    return url.rstrip("/")


def _saved_login(path: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    try:
        with open(path or cli_config_path(), encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None, None
    if not isinstance(doc, dict):
        return None, None
    url, token = doc.get("url"), doc.get("token")
    return (url if isinstance(url, str) else None, token if isinstance(token, str) else None)


class TokensAPI:
    """``client.tokens``: the account's API tokens."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(self, name: str, *, expires_in_days: Optional[int] = None,
               scopes: Optional[Sequence[str]] = None) -> Dict[str, Any]:
        """A new API token: ``{"id", "name", "token", "expires_at", "scopes", ...}``;
        ``token`` is shown this once."""
        body: Dict[str, Any] = {"name": name}
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        if scopes is not None:
            body["scopes"] = list(scopes)
        data: Dict[str, Any] = self._t.request("POST", "tokens", json_body=body).json()
        return data

    def list(self) -> List[Dict[str, Any]]:
        """The live API tokens (never their secret)."""
        return list(self._t.request("GET", "tokens").json().get("items") or [])

    def delete(self, id: str) -> None:
        """Revoke a token at once."""
        self._t.request("DELETE", f"tokens/{quote(id)}")


class Client:
    """A connection to a MecaPy server with one token.

    ``Client(url, token=T)``; ``Client()`` (or :meth:`from_cli`) takes what the command
    line uses: ``MECAPY_URL`` and ``MECAPY_TOKEN``, else the login ``mecapy login``
    saved. One client may be used from many threads at once (each thread keeps its own
    connection); it holds no event loop, so it works as is in Jupyter.

    Args:
        url: the server, ``http(s)://host[:port]`` (no ``/api/v1``).
        token: a session token (``mecapy login``, :meth:`login`) or an API token.
        timeout: seconds to connect and to wait for an answer (a long poll adds its own
            wait to this).
        max_retries: how many times a request refused with 429 (after its
            ``Retry-After``), or a safe one that met a 503 or a dropped connection, is
            sent again before the error is raised.
        max_retry_wait: the longest ``Retry-After`` honoured (seconds); a longer one
            raises :class:`mecapy.RateLimited` at once.
        verify: for https, False to skip certificate checks, or a CA bundle's path.

    Attributes:
        functions: :class:`~mecapy.functions.FunctionsAPI`.
        tasks: :class:`~mecapy.tasks.TasksAPI`.
        workflows: :class:`~mecapy.workflows.WorkflowsAPI`.
        workflow_runs: :class:`~mecapy.workflows.WorkflowRunsAPI`.
        studies: :class:`~mecapy.studies.StudiesAPI`.
        tokens: :class:`TokensAPI`.
    """

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None, *,
                 timeout: float = 30.0, max_retries: int = 5, max_retry_wait: float = 60.0,
                 verify: Union[bool, str] = True, config_path: Optional[str] = None) -> None:
        env_url = os.environ.get("MECAPY_URL") or None
        saved_url, saved_token = _saved_login(config_path)
        if url is None:
            url = env_url or saved_url or DEFAULT_URL
        if token is None:
            token = os.environ.get("MECAPY_TOKEN") or None
        if token is None and saved_url and _normalize(saved_url) == _normalize(url):
            # The saved token goes only to the server that issued it, as in the CLI.
            token = saved_token
        self._t = Transport(url, token, timeout=timeout, max_retries=max_retries,
                            max_retry_wait=max_retry_wait, verify=verify,
                            user_agent=f"mecapy-python/{__version__}")
        me = Me(self._t)
        self.functions = FunctionsAPI(self._t, me)
        self.tasks = TasksAPI(self._t)
        self.workflows = WorkflowsAPI(self._t, me)
        self.workflow_runs = WorkflowRunsAPI(self._t)
        self.studies = StudiesAPI(self._t)
        self.tokens = TokensAPI(self._t)
        self._me = me

    @classmethod
    def from_cli(cls, config_path: Optional[str] = None, **kwargs: Any) -> "Client":
        """The client of the command line's login (``mecapy login``): the URL and token
        it saved, ``MECAPY_URL``/``MECAPY_TOKEN`` taking precedence."""
        return cls(None, None, config_path=config_path, **kwargs)

    @classmethod
    def login(cls, url: str, email: str, password: str, **kwargs: Any) -> "Client":
        """Log in with an email and password (``POST /auth/login``) and return a client
        with the session token (valid 12 hours)."""
        anon = Transport(url, None, timeout=float(kwargs.get("timeout", 30.0)),
                         max_retries=int(kwargs.get("max_retries", 5)),
                         max_retry_wait=float(kwargs.get("max_retry_wait", 60.0)),
                         verify=kwargs.get("verify", True),
                         user_agent=f"mecapy-python/{__version__}")
        r = anon.request("POST", "auth/login", json_body={"email": email, "password": password})
        anon.close()
        return cls(url, str(r.json()["token"]), **kwargs)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self._t.url

    @property
    def token(self) -> Optional[str]:
        """The bearer token sent (None: anonymous)."""
        return self._t.token

    def me(self) -> Dict[str, Any]:
        """``{"id", "email", "company", "role", "created_at"}`` of the caller."""
        data: Dict[str, Any] = self._t.request("GET", "me").json()
        return data

    def function(self, ref: str, *, version: Optional[int] = None,
                 timeout: Optional[float] = None) -> Function:
        """A callable handle on a function (name or id); nothing is fetched until it is
        used. ``version`` pins a version; ``timeout`` bounds each call's wait."""
        return Function(self._t, ref, version=version, timeout=timeout, me=self._me)

    def task(self, id: str) -> Task:
        """A task by id (fetched now)."""
        return self.tasks.get(id)

    def workflow(self, ref: str, *, version: Optional[int] = None,
                 timeout: Optional[float] = None) -> Workflow:
        """A callable handle on a workflow (its id, or the name of one of yours)."""
        return Workflow(self._t, ref, version=version, timeout=timeout)

    def study(self, id: str) -> Study:
        """A study by id (fetched now)."""
        return self.studies.get(id)

    def request(self, method: str, path: str, *, params: Optional[Mapping[str, Any]] = None,
                json: Any = None) -> Any:
        """Any route of the HTTP API (``path`` relative to ``/api/v1``, or absolute):
        the decoded JSON answer (None for an empty one), errors raised as typed
        exceptions. For what the SDK has no method for yet."""
        r = self._t.request(method.upper(), path, params=params, json_body=json)
        ctype = r.headers.get("content-type", "")
        return r.json() if "json" in ctype and r.body else (r.text() if r.body else None)

    def iterate(self, path: str, params: Optional[Mapping[str, Any]] = None,
                limit: Optional[int] = None) -> Iterator[Dict[str, Any]]:
        """Every item of any list route, following its cursors."""
        return pages(self._t, path, params, limit)

    def close(self) -> None:
        """Close the calling thread's connection (optional: it closes with the thread)."""
        self._t.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        who = "with a token" if self._t.token else "without a token"
        return f"<mecapy.Client {self._t.url} {who}>"
