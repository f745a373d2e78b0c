"""A JSON-over-HTTP client for OpenAI-compatible servers, with retries and cancellation.

The standard library's ``http.client``, one kept-alive connection per worker thread: no new dependency for a
few JSON POSTs. Connection errors, timeouts, 429 and 5xx are retried with exponential backoff (``Retry-After``
honoured). A batch of requests shares a ``stop`` event: `JsonClient.abort` gives them up at once (no new
attempt, no retry wait, the sockets of those in flight shut down), so an interrupted run exits in a moment
instead of after every timeout and retry.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import socket
import threading
from urllib.parse import urlsplit

from ..errors import ServerError, UsageError

API_KEY_ENVS = ("LLM_NER_API_KEY", "OPENAI_API_KEY")
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class Cancelled(Exception):
    """A request given up because the batch that asked for it was interrupted (`JsonClient.abort`)."""


def split_base_url(url: str) -> tuple[str, str, int | None, str]:
    """(scheme, host, port or None, path ending in ``/v1``) of a ``--base-url``; UsageError otherwise."""
    example = "an http(s) URL such as http://127.0.0.1:8000/v1"
    shown = re.sub(r"//[^/@]*@", "//...@", url)  # never print credentials
    try:
        parts = urlsplit(url.strip().rstrip("/"))
        port = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise UsageError(f"--base-url must be {example}, got {shown!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--base-url must be {example}, got {shown!r}")
    if port == 0:
        raise UsageError(f"--base-url must be {example}, got {shown!r} (port 0)")
    if parts.username or parts.password:
        raise UsageError(f"--base-url must not hold credentials ({shown!r}); put the API key in {API_KEY_ENVS[0]}")
    if parts.query or parts.fragment:
        raise UsageError(f"--base-url must be {example}, without ?query or #fragment, got {shown!r}")
    path = parts.path if parts.path.endswith("/v1") else parts.path + "/v1"
    return parts.scheme, parts.hostname, port, path


def api_key() -> str | None:
    """The API key from ``LLM_NER_API_KEY`` or ``OPENAI_API_KEY`` (never a command-line flag:
    flags show up in shell history and process lists)."""
    for name in API_KEY_ENVS:
        if os.environ.get(name):
            return os.environ[name]
    return None


class JsonClient:
    """JSON requests to ``base_url`` (an http(s) URL ending in ``/v1``): ``timeout`` seconds each, ``retries``
    retries with backoff starting at ``backoff`` seconds; safe to use from many threads."""

    def __init__(self, base_url: str, timeout: float, retries: int, backoff: float = 0.5):
        self.base_url, self.timeout, self.retries, self.backoff = base_url, timeout, retries, backoff
        self._scheme, self._host, self._port, self._path = split_base_url(base_url)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._busy: dict[http.client.HTTPConnection, threading.Event] = {}  # in flight -> its batch's stop
        self._never = threading.Event()  # the stop of requests outside a batch
        self.retried = 0

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def _send(self, conn: http.client.HTTPConnection, stop: threading.Event, method: str, path: str, payload, headers):
        """The response of one request on ``conn``, which `abort` can shut down while it waits."""
        if conn.sock is None:
            conn.connect()
        with self._lock:  # registered before `abort` looks, or `stop` is already seen here
            if stop.is_set():
                raise Cancelled
            self._busy[conn] = stop
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            return response.status, response.read(), response.getheader("Retry-After")
        finally:
            with self._lock:
                self._busy.pop(conn, None)

    def abort(self, stop: threading.Event) -> None:
        """Give up the requests of ``stop``'s batch: no new attempt, no retry wait, and the sockets of
        those in flight shut down (a blocked read then returns at once)."""
        with self._lock:
            stop.set()
            sockets = [conn.sock for conn, owner in self._busy.items() if owner is stop and conn.sock is not None]
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    def request(
        self, method: str, endpoint: str, body: dict | None = None, stop: threading.Event | None = None
    ) -> dict:
        """One API call with retries; the decoded JSON response. ``stop`` set (`abort`): given up."""
        stop = stop or self._never
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
        url = f"{self._scheme}://{self._host}{':' + str(self._port) if self._port else ''}{self._path}{endpoint}"
        last = ""
        for attempt in range(self.retries + 1):
            wait = None
            if stop.is_set():
                raise Cancelled
            try:
                status, raw, retry_after = self._send(
                    self._connection(), stop, method, self._path + endpoint, payload, headers
                )
                if status == 200:
                    try:
                        return json.loads(raw)
                    except ValueError:
                        raise ServerError(f"{method} {url}: not JSON: {raw[:200]!r}") from None
                last = f"HTTP {status}: {raw[:300].decode('utf-8', 'replace')}"
                if status not in RETRY_STATUS:
                    raise ServerError(f"{method} {url}: {last}")
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    wait = float(retry_after)
            except (http.client.HTTPException, OSError) as exc:
                if isinstance(exc, ServerError):
                    raise
                self._drop_connection()
                if stop.is_set():  # our own `abort` shut the socket: not the server's fault
                    raise Cancelled from None
                last = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                self.retried += 1
                # Exponential backoff with jitter, so many workers do not retry in lockstep.
                delay = min(wait if wait is not None else self.backoff * 2**attempt, 30.0) * random.uniform(1, 1.25)
                if stop.wait(delay):
                    raise Cancelled
        raise ServerError(f"{method} {url} failed after {self.retries + 1} attempts: {last}")
