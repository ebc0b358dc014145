"""The HTTP transport: one keep-alive connection per thread, problem+json errors, and
bounded retries (429 and 503 with Retry-After, dropped connections of safe requests)."""
from __future__ import annotations

import http.client
import json
import logging
import select
import ssl
import threading
import time
import urllib.parse
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from .errors import APIError, RateLimited, ServerError, TransportError, error_from_problem

__all__ = ["Transport", "Response"]

log = logging.getLogger("mecapy")

_IDEMPOTENT = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}
Params = Mapping[str, Union[str, int, float, bool, None]]


class Response:
    """A whole answer: status, headers (lower-case names) and body bytes."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def _retry_after(headers: Mapping[str, str]) -> Optional[float]:
    v = headers.get("retry-after")
    if v is None:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        return None


def _raise_for(status: int, headers: Dict[str, str], body: bytes) -> None:
    if status < 400:
        return
    problem: Dict[str, Any]
    try:
        doc = json.loads(body.decode("utf-8")) if body else None
        problem = doc if isinstance(doc, dict) else {}
    except (ValueError, UnicodeDecodeError):
        problem = {}
    if not problem:
        problem = {"title": http.client.responses.get(status, ""),
                   "detail": body.decode("utf-8", "replace")[:500]}
    raise error_from_problem(status, problem, _retry_after(headers))


class Transport:
    """Sends requests to one server with one token. Safe to share between threads: each
    thread keeps its own connection."""

    def __init__(self, url: str, token: Optional[str], *, timeout: float, max_retries: int,
                 max_retry_wait: float, verify: Union[bool, str], user_agent: str) -> None:
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"the server URL must be http:// or https://, not {url!r}")
        self.url = f"{u.scheme}://{u.netloc}{u.path.rstrip('/')}"
        self._scheme = u.scheme
        self._host = u.hostname
        self._port = u.port
        self._prefix = u.path.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.user_agent = user_agent
        self._ssl: Optional[ssl.SSLContext] = None
        if u.scheme == "https":
            if verify is False:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            elif isinstance(verify, str):
                ctx = ssl.create_default_context(cafile=verify)
            else:
                ctx = ssl.create_default_context()
            self._ssl = ctx
        self._local = threading.local()

    # -- connections

    def _new_connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                               context=self._ssl)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _connection(self, timeout: float) -> Tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it was used before."""
        conn: Optional[http.client.HTTPConnection] = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None:
            # A kept-alive socket that is readable while idle was closed by the server.
            try:
                readable, _, _ = select.select([conn.sock], [], [], 0)
            except (OSError, ValueError):
                readable = [conn.sock]
            if readable:
                conn.close()
                conn = None
        if conn is None:
            conn = self._new_connection(timeout)
            self._local.conn = conn
            return conn, False
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn, True

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def close(self) -> None:
        """Close this thread's connection (the others close when their threads end)."""
        self._drop_connection()

    # -- requests

    def path(self, path: str, params: Optional[Params] = None) -> str:
        p = self._prefix + (path if path.startswith("/") else "/api/v1/" + path)
        if params:
            q = {k: ("true" if v is True else "false" if v is False else str(v))
                 for k, v in params.items() if v is not None}
            if q:
                p += "?" + urllib.parse.urlencode(q)
        return p

    def headers(self, extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        h = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        if extra:
            h.update(extra)
        return h

    def request(self, method: str, path: str, *, params: Optional[Params] = None,
                json_body: Any = None, body: Optional[bytes] = None,
                headers: Optional[Mapping[str, str]] = None, wait: float = 0.0,
                retry_unsafe: bool = False) -> Response:
        """Send one request and return the answer, raising an APIError for a 4xx/5xx.

        wait: seconds the server may hold the request (``?wait=``), added to the read
        timeout. retry_unsafe: the request may be sent again (it carries an
        Idempotency-Key, or it was refused before any effect).
        """
        h = self.headers(headers)
        if json_body is not None:
            body = json.dumps(json_body).encode("utf-8")
            h["Content-Type"] = "application/json"
        target = self.path(path, params)
        safe = method in _IDEMPOTENT or retry_unsafe
        timeout = self.timeout + wait
        attempt = 0
        while True:
            attempt += 1
            conn, reused = self._connection(timeout)
            try:
                conn.request(method, target, body=body, headers=h)
                r = conn.getresponse()
                data = r.read()
                rh = {k.lower(): v for k, v in r.getheaders()}
                if r.will_close:
                    self._drop_connection()
            except (http.client.HTTPException, OSError) as e:
                self._drop_connection()
                # A kept-alive connection the server had closed: send again on a new one
                # (nothing reached the server). Otherwise only safe requests are resent.
                stale = reused and isinstance(e, (http.client.RemoteDisconnected,
                                                  ConnectionResetError, BrokenPipeError))
                if (stale and attempt == 1) or (safe and attempt <= self.max_retries
                                                and not isinstance(e, TimeoutError)):
                    if not stale:
                        log.info("%s %s: %s; retrying", method, target, e)
                        time.sleep(min(0.25 * 2 ** (attempt - 1), 4.0))
                    continue
                raise TransportError(f"{method} {self.url}{target[len(self._prefix):]}: "
                                     f"{type(e).__name__}: {e}") from e
            try:
                _raise_for(r.status, rh, data)
            except APIError as e:
                if self._should_retry(e, safe, attempt):
                    self._pause(e, method, target, attempt)
                    continue
                raise
            return Response(r.status, rh, data)

    def _pause(self, e: APIError, method: str, target: str, attempt: int) -> None:
        wait = e.retry_after if e.retry_after is not None else 1.0
        log.info("%s %s answered %d; retrying in %g s (retry %d of %d)", method, target,
                 e.status, wait, attempt, self.max_retries)
        time.sleep(wait)

    def _should_retry(self, e: APIError, safe: bool, attempt: int) -> bool:
        if attempt > self.max_retries:
            return False
        wait = e.retry_after if e.retry_after is not None else 1.0
        if wait > self.max_retry_wait:
            return False
        if isinstance(e, RateLimited):
            return True  # refused before anything was done: safe for every method
        return isinstance(e, ServerError) and e.status == 503 and safe

    def stream(self, method: str, path: str, *, params: Optional[Params] = None,
               headers: Optional[Mapping[str, str]] = None,
               timeout: Optional[float] = None) -> http.client.HTTPResponse:
        """Open a request whose body is read as it comes (event streams, CSV downloads),
        on a connection of its own; the caller closes the answer. Errors raise as for
        request(), 429 retried the same way."""
        attempt = 0
        while True:
            attempt += 1
            conn = self._new_connection(timeout if timeout is not None else self.timeout)
            try:
                conn.request(method, self.path(path, params), headers=self.headers(headers))
                r = conn.getresponse()
            except (http.client.HTTPException, OSError) as e:
                conn.close()
                raise TransportError(f"{method} {path}: {type(e).__name__}: {e}") from e
            if r.status < 400:
                return r
            data = r.read()
            conn.close()
            try:
                _raise_for(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
            except APIError as e:
                if self._should_retry(e, method in _IDEMPOTENT, attempt):
                    self._pause(e, method, path, attempt)
                    continue
                raise
