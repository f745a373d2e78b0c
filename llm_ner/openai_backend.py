"""The `openai` extraction backend: chat requests to an OpenAI-compatible server (vLLM, SGLang,
`transformers serve`) instead of a model in this process.

The engine stays `extraction.extract`: it builds the same prompts, splits long sentences, writes
the same resumable part files and parses answers with the same parser and aligner; this module
only answers a batch of conversations (a `backend.Backend`), ``concurrency`` requests in flight.
Requests are greedy (``temperature 0``), bounded by `generation.default_max_new_tokens` of each
sentence, with Qwen3 thinking off (``chat_template_kwargs``). Connection errors, timeouts, 429
and 5xx are retried with exponential backoff (``Retry-After`` honoured). The client is the
standard library's ``http.client`` with one kept-alive connection per worker thread: no new
dependency for a few JSON POSTs. When `answer` is interrupted (Ctrl-C, or one request failed for
good), the requests it still has in flight are given up at once: their sockets are shut down and
their retry waits end, so the command exits in a moment instead of after every timeout and retry.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import socket
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from .backend import Answer
from .errors import ServerError, UsageError
from .options import CliOptions, non_negative_int, option, positive_float, positive_int

API_KEY_ENVS = ("LLM_NER_API_KEY", "OPENAI_API_KEY")
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class _Cancelled(Exception):
    """A request given up because its `OpenAIBackend.answer` call was interrupted."""


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


@dataclass
class OpenAIOptions(CliOptions):
    """The server of `extract --backend openai` and how to talk to it."""

    base_url: str = option(help="server URL, e.g. http://127.0.0.1:8000/v1")
    served_model: str = option(help="the model name the server lists at /v1/models")
    concurrency: int = option(8, type=positive_int, help="requests in flight (default: %(default)s)")
    timeout: float = option(120.0, type=positive_float, help="seconds per request (default: %(default)s)")
    retries: int = option(
        5,
        type=non_negative_int,
        help="retries with backoff on connection errors, timeouts, 429 and 5xx (default: %(default)s)",
    )


@dataclass
class OpenAIBackend:
    """Answers conversations with an OpenAI-compatible ``/v1/chat/completions`` endpoint."""

    base_url: str
    model: str
    concurrency: int = OpenAIOptions.concurrency
    timeout: float = OpenAIOptions.timeout
    retries: int = OpenAIOptions.retries
    max_new_tokens: int | None = None
    response_format: dict | None = None
    backoff: float = 0.5

    def __post_init__(self):
        self._scheme, self._host, self._port, self._path = split_base_url(self.base_url)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._busy: dict[http.client.HTTPConnection, threading.Event] = {}  # in flight -> its answer's stop
        self._never = threading.Event()  # the stop of requests outside `answer` (`check`)
        self._pool: ThreadPoolExecutor | None = None
        self.requests = 0
        self.retried = 0
        self.truncated = 0  # answers cut at max_tokens (finish_reason "length")

    @classmethod
    def from_options(
        cls, options: OpenAIOptions, max_new_tokens: int | None = None, response_format: dict | None = None
    ) -> OpenAIBackend:
        """The backend of `llm-ner extract --backend openai` (call `check` before relying on it)."""
        return cls(
            options.base_url,
            options.served_model,
            concurrency=options.concurrency,
            timeout=options.timeout,
            retries=options.retries,
            max_new_tokens=max_new_tokens,
            response_format=response_format,
        )

    # -- HTTP ----------------------------------------------------------------------------------

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
        """The response of one request on ``conn``, which `_abort` can shut down while it waits."""
        if conn.sock is None:
            conn.connect()
        with self._lock:  # registered before `_abort` looks, or `stop` is already seen here
            if stop.is_set():
                raise _Cancelled
            self._busy[conn] = stop
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            return response.status, response.read(), response.getheader("Retry-After")
        finally:
            with self._lock:
                self._busy.pop(conn, None)

    def _abort(self, stop: threading.Event) -> None:
        """Give up the requests of ``stop``'s `answer` call: no new attempt, no retry wait, and the
        sockets of those in flight shut down (a blocked read then returns at once)."""
        with self._lock:
            stop.set()
            sockets = [conn.sock for conn, owner in self._busy.items() if owner is stop and conn.sock is not None]
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    def request(
        self, method: str, endpoint: str, body: dict | None = None, stop: threading.Event | None = None
    ) -> dict:
        """One API call with retries; the decoded JSON response. ``stop`` set (`_abort`): given up."""
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
                raise _Cancelled
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
                if stop.is_set():  # our own `_abort` shut the socket: not the server's fault
                    raise _Cancelled from None
                last = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                self.retried += 1
                # Exponential backoff with jitter, so many workers do not retry in lockstep.
                delay = min(wait if wait is not None else self.backoff * 2**attempt, 30.0) * random.uniform(1, 1.25)
                if stop.wait(delay):
                    raise _Cancelled
        raise ServerError(f"{method} {url} failed after {self.retries + 1} attempts: {last}")

    # -- API -----------------------------------------------------------------------------------

    def served_models(self) -> list[str]:
        """Model names the server lists at ``/v1/models``."""
        data = self.request("GET", "/models")
        return [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)]

    def check(self) -> None:
        """Fail early with a clear message when the server is down or does not serve ``model``."""
        try:
            names = self.served_models()
        except ServerError as exc:
            raise ServerError(f"cannot reach an OpenAI-compatible server at {self.base_url} ({exc})") from None
        if self.model not in names:
            listed = ", ".join(names) or "none"
            raise UsageError(f"the server at {self.base_url} does not serve {self.model!r}; it lists: {listed}")

    def complete(self, messages: Sequence[dict], text: str, stop: threading.Event | None = None) -> str:
        """The greedy answer to one conversation (``text``: the sentence, for the length bound;
        ``stop``: set when the `answer` call that asked is interrupted)."""
        from .generation import default_max_new_tokens  # generation imports torch; this module must not

        body = {
            "model": self.model,
            "messages": list(messages),
            "temperature": 0,
            "max_tokens": self.max_new_tokens or default_max_new_tokens(len(text)),
            # Qwen3: answer without a thinking block, as at training time (vLLM, SGLang and
            # transformers serve pass these to the chat template; other servers ignore them).
            "chat_template_kwargs": {"enable_thinking": False},
        }
        if self.response_format is not None:
            body["response_format"] = self.response_format
        data = self.request("POST", "/chat/completions", body, stop)
        self.requests += 1
        try:
            choice = data["choices"][0]
            content = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ServerError(f"unexpected chat completion response: {str(data)[:300]}") from None
        if choice.get("finish_reason") == "length":
            self.truncated += 1
        return content

    def answer(self, conversations: Sequence[Sequence[dict]], texts: Sequence[str]) -> list[Answer]:
        """Answers in input order, ``concurrency`` requests in flight; no token scores (`backend.Backend`)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="llm-ner-openai")
        stop = threading.Event()
        futures = [self._pool.submit(self.complete, c, t, stop) for c, t in zip(conversations, texts)]
        try:
            return [(f.result(), None) for f in futures]
        except BaseException:
            # Ctrl-C or a failed request: drop what has not started and give up what is in flight
            # (else the exit waits for every timeout and retry); the part files keep every finished
            # batch, so a rerun resumes after it.
            for f in futures:
                f.cancel()
            self._abort(stop)
            raise

    def close(self) -> None:
        """Stop the worker threads (an interrupted `answer` has given up its requests) and print the counters."""
        if self.requests or self.retried:
            print(
                f"openai backend: {self.requests} requests, {self.retried} retries, "
                f"{self.truncated} answers cut at max_tokens",
                file=sys.stderr,
            )
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
