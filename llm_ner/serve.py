"""`llm-ner serve`: the extraction engine behind HTTP (FastAPI + uvicorn), with dynamic batching.

``POST /extract {"texts": [...]}`` answers, per text, the entities (character offsets, end
exclusive) and the parse counters; ``GET /health``; ``GET /`` a page that highlights entities.

Requests that arrive together are answered together: the batcher takes the first waiting request,
waits at most ``max_wait_ms`` for more (up to ``max_batch`` texts) and runs them in one worker
thread (generate batches of at most ``max_batch`` pieces), so the event loop keeps accepting
requests meanwhile. Everything about a text is extract's: `split_long` pieces, `answer_pieces`
(a `backend.Backend`), `make_record` (parser and aligner). Limits (`ServeLimits`):
at most ``max_queue`` texts waiting or running (503 + Retry-After beyond), ``max_body_bytes`` per
body, ``max_texts`` per request and ``max_text_chars`` per text (413), malformed JSON or wrong
types (400, `load_json_body`). A batch that fails is rerun request by request, so one bad request
fails alone. A request whose client went away before its batch started is dropped, not generated.

Any web page the user visits can send requests to a local server, so (`AccessPolicy`): ``/extract``
takes only ``Content-Type: application/json`` (415; a cross-site page cannot send that without a
CORS preflight, which this server never grants); a request whose ``Host`` is not an allowed name
(DNS rebinding) or whose ``Origin`` is another site gets 403; with an API key, every path but the
page at ``/`` needs ``Authorization: Bearer KEY`` (401). ``/health`` shows no filesystem paths, and
the OpenAPI schema is served only when asked (``openapi``). Label Studio's ML backend requests, with
``--label-studio``, go to `label_studio_backend.LabelStudioBackend` under ``/label-studio``: same
batcher, limits and access policy (the key may also come as Basic auth, which Label Studio sends).
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request) at runtime.
import asyncio
import base64
import hashlib
import hmac
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from .backend import Backend
from .confidence import record_scores
from .data import Example, JsonSyntaxError, JsonValueError, Span, decode_json, split_long
from .extraction import ModelOptions, RunSettings, answer_pieces, extraction_fingerprint, make_record
from .label_studio_backend import LABEL_STUDIO_PREFIX, LabelStudioBackend, LabelStudioError, label_studio_version
from .options import CliOptions, option, port_number, positive_float, positive_int
from .parsing import ParseStats


@dataclass
class ServeLimits(CliOptions):
    """Batching and request limits of the service."""

    max_batch: int = option(
        32, type=positive_int, help="texts gathered per batch, and pieces per generate call (default: %(default)s)"
    )
    max_wait_ms: float = option(  # how long the first request of a batch waits for company
        5.0, type=positive_float, help="how long a request waits for others to share its batch (default: %(default)s)"
    )
    max_queue: int = option(  # texts waiting or running; more -> 503
        256, type=positive_int, help="texts queued or running before 503 (default: %(default)s)"
    )
    max_texts: int = option(64, type=positive_int, help="texts per request (default: %(default)s)")  # more -> 413
    max_text_chars: int = option(  # more -> 413 (longer than max_chars: split)
        5000, type=positive_int, help="characters per text (default: %(default)s)"
    )
    max_body_bytes: int = option(1_000_000, type=positive_int, help="request body size (default: %(default)s)")
    max_chars: int = ModelOptions.max_chars  # pieces of at most this many characters: `--max-chars`, a model option
    retry_after_s: int = 1


API_KEY_ENV = "LLM_NER_SERVE_API_KEY"


@dataclass
class ServeOptions(CliOptions):
    """Where `llm-ner serve` listens, and who may call it."""

    host: str = option("127.0.0.1", help="listen address (default: %(default)s; 0.0.0.0 exposes it)")
    port: int = option(8000, type=port_number, help="(default: %(default)s)")
    log_level: str = option("warning", choices=("critical", "error", "warning", "info", "debug"))
    allowed_origins: str = option(
        "",
        metavar="NAMES",
        help="comma-separated host names (any port) or origins (http://name:port) that may call the service "
        "besides localhost, 127.0.0.1 and [::1]: a request whose Host header names another host, or whose Origin "
        "header is another web site, gets 403 (this stops web pages the user visits from using or reading the "
        "service). The --host you bind is accepted (for 0.0.0.0 or ::, this machine's host name); name the other "
        "addresses clients use, e.g. --allowed-origins myserver.lan,192.168.1.20; '*' accepts any (only behind a "
        "proxy that checks)",
    )
    api_key: str | None = option(
        None,
        metavar="KEY",
        help=f"require 'Authorization: Bearer KEY' on /extract and /health (401 otherwise; the page at / asks "
        f"for it; Label Studio sends it as Basic auth, any user name, the key as password). Better: set "
        f"{API_KEY_ENV}, which the process list does not show",
    )
    openapi: bool = option(False, help="serve the OpenAPI schema at /openapi.json (default: off)")
    label_studio: bool = option(
        False,
        help=f"also serve Label Studio's ML backend protocol at {LABEL_STUDIO_PREFIX} (/health, /setup, /predict): "
        f"in a project's Settings > Model > Connect Model, enter http://HOST:PORT{LABEL_STUDIO_PREFIX}; its "
        "<Labels> over a <Text> get pre-annotations with scores (entity scores are recorded while decoding)",
    )

    def access_policy(self) -> "AccessPolicy":
        """The `AccessPolicy` of these options; the key from ``--api-key`` or LLM_NER_SERVE_API_KEY."""
        return AccessPolicy.from_options(
            self.allowed_origins, self.host, self.api_key or os.environ.get(API_KEY_ENV) or None
        )


class RequestError(Exception):
    """A request the service refuses: HTTP status and message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def _host_name(netloc: str) -> str | None:
    """The lower-case host name of ``name``, ``name:port``, ``[v6]:port`` or a bare IPv6 address."""
    netloc = netloc.strip()
    if netloc.count(":") > 1 and not netloc.startswith("["):
        return netloc.lower()  # a bare IPv6 address
    try:
        name = urlsplit("//" + netloc).hostname
    except ValueError:
        return None
    return name.rstrip(".") if name else None


@dataclass(frozen=True)
class AccessPolicy:
    """Who may call the service: the host names a request's ``Host`` may name (any port), the
    origins (exact ``scheme://host:port``) or host names its ``Origin`` may come from, the API key."""

    hosts: frozenset = frozenset(LOCAL_HOSTS)
    origins: frozenset = frozenset()
    any_host: bool = False  # '*': no Host or Origin check
    api_key: str | None = None

    @classmethod
    def from_options(cls, allowed: str, bound_host: str = "127.0.0.1", api_key: str | None = None) -> "AccessPolicy":
        """The policy of ``--allowed-origins`` (comma-separated names or origins, '*'), the bound
        ``--host`` (accepted too; for a wildcard address, this machine's name) and the key."""
        hosts, origins, any_host = set(LOCAL_HOSTS), set(), False
        bound = bound_host.strip("[]").lower()
        hosts.add(socket.gethostname().lower() if bound in WILDCARD_HOSTS else bound)
        for entry in filter(None, (part.strip() for part in allowed.split(","))):
            if entry == "*":
                any_host = True
            elif "://" in entry:
                origin = _origin(entry)
                if origin is None:
                    raise ValueError(f"--allowed-origins: not an origin such as http://name:8000: {entry!r}")
                origins.add(origin)
            else:
                name = _host_name(entry)
                if not name:
                    raise ValueError(f"--allowed-origins: not a host name: {entry!r}")
                hosts.add(name)
        return cls(frozenset(hosts), frozenset(origins), any_host, api_key or None)

    def refusal(self, path: str, headers) -> tuple[int, str] | None:
        """(status, reason) when the request with these headers may not have ``path``; None if it may."""
        if not self.any_host:
            host = headers.get("host")
            if host is not None and _host_name(host) not in self.hosts:  # no Host: not a browser
                return 403, f"host {host!r} is not allowed (serve --allowed-origins)"
            origin = headers.get("origin")
            if origin is not None and not self.origin_allowed(origin):
                return 403, f"origin {origin!r} is not allowed (serve --allowed-origins)"
        if self.api_key is not None and path != "/" and not self.key_matches(headers.get("authorization")):
            return 401, "missing or wrong API key: send 'Authorization: Bearer KEY'"
        return None

    def origin_allowed(self, origin: str) -> bool:
        """An ``Origin`` header listed, or on an allowed host name (``null``, from a sandbox or a file, is not)."""
        normal = _origin(origin)
        if normal is None:
            return False
        return normal in self.origins or _host_name(urlsplit(normal).netloc) in self.hosts

    def key_matches(self, authorization: str | None) -> bool:
        """``Bearer KEY``, or ``Basic`` with the key as password (any user name: Label Studio's ML
        backend authentication is HTTP Basic), with this policy's key, compared in constant time."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() == "basic":  # base64 of "user:password"
            try:
                sent = base64.b64decode(token.strip(), validate=True).partition(b":")[2]
            except ValueError:  # binascii.Error, or characters outside ASCII
                return False
        elif scheme.lower() == "bearer":
            sent = token.strip().encode("latin-1", "replace")
        else:
            return False
        # Digests first: compare_digest of equal-length values, so the time tells nothing of the length either.
        return hmac.compare_digest(hashlib.sha256(sent).digest(), hashlib.sha256(self.api_key.encode("utf-8")).digest())


def _origin(value: str) -> str | None:
    """``scheme://host[:port]`` in lower case, or None for anything that is not an http(s) origin."""
    try:
        parts = urlsplit(value.strip().rstrip("/").lower())
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
        return None
    return f"{parts.scheme}://{parts.netloc}"


class Engine:
    """Texts -> entities: the same steps as `extraction.extract`, answered by ``backend``."""

    def __init__(self, backend: Backend, settings: RunSettings, max_chars: int = ModelOptions.max_chars):
        self.backend, self.settings, self.max_chars = backend, settings, max_chars

    def run(self, texts: list[str]) -> list[dict]:
        """Every piece of ``texts`` in one backend call (a `LocalBackend` generates in batches of its
        ``batch_size`` rows: a batch of long texts has many pieces, memory stays bounded); one result per text."""
        pieces = [split_long(text, self.max_chars) for text in texts]
        flat = [piece for parts in pieces for _, piece in parts]
        answered = answer_pieces(self.backend, self.settings, flat)
        answers = [text for text, _ in answered]
        # A backend that records token scores (serve --label-studio): entity and answer scores, as extract's.
        token_scores = None if any(s is None for _, s in answered) else [s for _, s in answered]
        results, cursor = [], 0
        for index, (text, parts) in enumerate(zip(texts, pieces)):
            end = cursor + len(parts)
            record, stats = make_record(
                Example(str(index), text),
                parts,
                answers[cursor:end],
                self.settings.prompt,
                None if token_scores is None else token_scores[cursor:end],
            )
            cursor = end
            result = {"text": text, "entities": entities_of(record), "parse": stats.as_dict(), "raw": record["raw"]}
            if "answer_score" in record:
                result["answer_score"] = record["answer_score"]
            results.append(result)
        return results


def entities_of(record: dict) -> list[dict]:
    """A CLUENER record's spans as ``{start, end (exclusive), label, text}`` in reading order, with
    the entity's ``score`` where the record has ``scores``."""
    scores = record_scores(record)
    entities = [
        {"start": start, "end": end + 1, "label": label, "text": mention}
        for label, mentions in record["label"].items()
        for mention, ranges in mentions.items()
        for start, end in ranges
    ]
    for entity in entities:
        score = scores.get(Span(entity["start"], entity["end"], entity["label"]))
        if score is not None:
            entity["score"] = score
    return sorted(entities, key=lambda e: (e["start"], e["end"], e["label"]))


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future  # cancelled when the client went away: the batcher skips the job


class ClientGone(Exception):
    """The client closed its connection before its answer was ready."""


@dataclass
class RequestBatcher:
    """Dynamic batching: collects waiting requests into one engine call at a time."""

    run: object  # texts -> results (the engine; a plain callable in tests)
    limits: ServeLimits
    pending: int = 0  # texts waiting or running for clients still there
    batches: int = 0
    texts_done: int = 0
    texts_dropped: int = 0  # texts of clients that went away before their batch started
    largest_batch: int = 0
    poll_s: float = 0.1  # how often a waiting request checks that its client is still there
    _queue: asyncio.Queue | None = None
    _held: _Job | None = None
    _task: asyncio.Task | None = None
    _executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="generate"))

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, texts: list[str], gone: Callable[[], Awaitable[bool]] | None = None) -> list[dict]:
        """The results for ``texts`` once their batch ran; RequestError(503) when the queue is full.

        ``gone`` (a `Request.is_disconnected`) is asked every ``poll_s`` while the texts wait: once
        the client is gone the job is cancelled (not generated if its batch has not started) and
        `ClientGone` raised, so abandoned requests do not hold the queue."""
        if self.pending + len(texts) > self.limits.max_queue:
            raise RequestError(503, f"busy: {self.pending} texts queued (limit {self.limits.max_queue}); retry later")
        self.pending += len(texts)
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(texts, future))
        try:
            while gone is not None:
                done, _ = await asyncio.wait({future}, timeout=self.poll_s)
                if done:
                    break
                if await gone():
                    raise ClientGone
            return await future
        finally:
            future.cancel()  # no-op once answered; else the batcher skips it
            self.pending -= len(texts)

    async def _next_job(self, deadline: float | None) -> _Job | None:
        """The next job whose client still waits; None once ``deadline`` (loop time) has passed."""
        loop = asyncio.get_running_loop()
        while True:
            if self._held is not None:
                job, self._held = self._held, None
            elif not self._queue.empty():
                job = self._queue.get_nowait()
            elif deadline is None:
                job = await self._queue.get()
            else:
                try:
                    job = await asyncio.wait_for(self._queue.get(), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    return None
            if not job.future.done():
                return job
            self.texts_dropped += len(job.texts)  # its client went away: never generated

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._next_job(None)]
            count = len(jobs[0].texts)
            deadline = loop.time() + self.limits.max_wait_ms / 1000
            while count < self.limits.max_batch:
                job = await self._next_job(deadline)
                if job is None:
                    break
                if count + len(job.texts) > self.limits.max_batch:
                    self._held = job  # first in the next batch
                    break
                jobs.append(job)
                count += len(job.texts)
            live = [job for job in jobs if not job.future.done()]  # clients that went away while it gathered
            self.texts_dropped += count - sum(len(job.texts) for job in live)
            if not live:
                continue
            outcomes = await loop.run_in_executor(self._executor, self._run_jobs, live)
            self.batches += 1
            self.largest_batch = max(self.largest_batch, sum(len(job.texts) for job in live))
            for job, outcome in zip(live, outcomes):
                if job.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    self.texts_done += len(job.texts)
                    job.future.set_result(outcome)

    def _run_jobs(self, jobs: list[_Job]) -> list:
        """Results per job; when the shared batch fails, each job alone, so one bad job fails alone."""
        texts = [text for job in jobs for text in job.texts]
        try:
            results = self.run(texts)
        except Exception as exc:
            if len(jobs) == 1:
                return [exc]
            return [self._run_jobs([job])[0] for job in jobs]
        outcomes, cursor = [], 0
        for job in jobs:
            outcomes.append(results[cursor : cursor + len(job.texts)])
            cursor += len(job.texts)
        return outcomes


def load_json_body(body: bytes) -> object:
    """The JSON value of a request body, or RequestError(400) with a one-line reason: the readers'
    checks (`llm_ner.data.decode_json`: UTF-8, depth, huge numbers, lone surrogates)."""
    try:
        return decode_json(body)
    except JsonSyntaxError as exc:
        raise RequestError(400, f"body is not JSON: {exc.reason}") from None
    except JsonValueError as exc:
        raise RequestError(400, f"body is not JSON we accept: {exc.reason}") from None


def parse_texts(body: bytes, limits: ServeLimits) -> list[str]:
    """The texts of an ``/extract`` body, or RequestError 400/413 saying what is wrong."""
    if len(body) > limits.max_body_bytes:
        raise RequestError(413, f"body larger than {limits.max_body_bytes} bytes")
    data = load_json_body(body)
    if not isinstance(data, dict) or "texts" not in data:
        raise RequestError(400, 'body must be a JSON object {"texts": ["...", ...]}')
    texts = data["texts"]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise RequestError(400, '"texts" must be a list of strings')
    if not texts:
        raise RequestError(400, '"texts" is empty')
    if len(texts) > limits.max_texts:
        raise RequestError(413, f"{len(texts)} texts in one request (limit {limits.max_texts})")
    longest = max(len(t) for t in texts)
    if longest > limits.max_text_chars:
        raise RequestError(413, f"a text of {longest} characters (limit {limits.max_text_chars})")
    return texts


def is_json_content_type(value: str | None) -> bool:
    """``application/json``, with parameters such as ``charset`` or not."""
    return (value or "").split(";", 1)[0].strip().lower() == "application/json"


def public_name(name: str | None) -> str | None:
    """A model or adapter as /health may show it: a hub id as given, a local directory by its last
    part only (its path tells a caller about this machine's files)."""
    if not name:
        return name
    path = Path(name).expanduser()
    if path.is_absolute() or name.startswith((".", "~")) or path.exists() or name.count("/") > 1:
        return path.resolve().name or name
    return name


def page_html() -> str:
    """The self-contained demo page (no external scripts or styles)."""
    return resources.files("llm_ner").joinpath("static/serve.html").read_text(encoding="utf-8")


class _Guard:
    """ASGI middleware: every HTTP request passes `AccessPolicy.refusal` before it reaches the app."""

    def __init__(self, app, policy: AccessPolicy):
        self.app, self.policy = app, policy

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            from starlette.datastructures import Headers
            from starlette.responses import JSONResponse

            refusal = self.policy.refusal(scope["path"], Headers(scope=scope))
            if refusal is not None:
                status, message = refusal
                headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
                await JSONResponse({"error": message}, status_code=status, headers=headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_app(
    run,
    limits: ServeLimits,
    info: dict | None = None,
    access: AccessPolicy | None = None,
    openapi=False,
    label_studio: LabelStudioBackend | None = None,
):
    """The FastAPI application around ``run(texts) -> results`` (an `Engine.run`); ``access``
    (default: localhost only, no key) guards every request; ``openapi``: serve /openapi.json;
    ``label_studio``: answer Label Studio's ML backend requests under its prefix, texts through the
    same batcher."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.requests import ClientDisconnect

    batcher = RequestBatcher(run, limits)
    page = page_html()

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="llm-ner",
        lifespan=lifespan,
        docs_url=None,  # the docs pages load scripts from a CDN
        redoc_url=None,
        openapi_url="/openapi.json" if openapi else None,
    )
    app.add_middleware(_Guard, policy=access or AccessPolicy())
    app.state.batcher = batcher

    def error(status: int, message: str) -> JSONResponse:
        headers = {"Retry-After": str(limits.retry_after_s)} if status == 503 else None
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    async def read_body(request: Request) -> bytes:
        """A POST body: JSON only (415), at most ``max_body_bytes`` (413), as `RequestError`."""
        # Only JSON: a cross-site page may send text/plain without asking (a "simple" request).
        if not is_json_content_type(request.headers.get("content-type")):
            raise RequestError(415, "Content-Type must be application/json")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise RequestError(413, f"body larger than {limits.max_body_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():  # read no more than the limit, whatever the header said
            body += chunk
            if len(body) > limits.max_body_bytes:
                raise RequestError(413, f"body larger than {limits.max_body_bytes} bytes")
        return bytes(body)

    @app.post("/extract")
    async def extract(request: Request):
        try:
            texts = parse_texts(await read_body(request), limits)
            results = await batcher.submit(texts, request.is_disconnected)
        except RequestError as exc:
            return error(exc.status, str(exc))
        except (ClientDisconnect, ClientGone):
            return error(499, "client closed the connection")  # nobody reads it
        except Exception as exc:  # this request's own failure; the server and other requests go on
            return error(500, f"extraction failed: {type(exc).__name__}: {exc}")
        totals = ParseStats()
        for result in results:
            totals += ParseStats(**result["parse"])
        return {"results": results, "parse": totals.as_dict()}

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            **(info or {}),
            "queued_texts": batcher.pending,
            "batches": batcher.batches,
            "texts_done": batcher.texts_done,
            "texts_dropped": batcher.texts_dropped,
            "largest_batch": batcher.largest_batch,
        }

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return page

    if label_studio is not None:
        prefix = label_studio.prefix

        @app.get(prefix + "/health")
        @app.get(prefix + "/")
        async def label_studio_health():
            return label_studio.health()

        @app.get(prefix + "/metrics")
        async def label_studio_metrics():
            return {}

        @app.post(prefix + "/setup")
        async def label_studio_setup(request: Request):
            try:
                return label_studio.setup(load_json_body(await read_body(request)))
            except (RequestError, LabelStudioError) as exc:
                return error(exc.status, str(exc))
            except ClientDisconnect:
                return error(499, "client closed the connection")

        @app.post(prefix + "/predict")
        async def label_studio_predict(request: Request):
            try:
                body = load_json_body(await read_body(request))
                return await label_studio.predict(
                    body,
                    lambda texts: batcher.submit(texts, request.is_disconnected),
                    limits.max_texts,
                    limits.max_text_chars,
                )
            except (RequestError, LabelStudioError) as exc:
                return error(exc.status, str(exc))
            except (ClientDisconnect, ClientGone):
                return error(499, "client closed the connection")
            except Exception as exc:  # this request's own failure, as on /extract
                return error(500, f"prediction failed: {type(exc).__name__}: {exc}")

        @app.post(prefix + "/webhook")
        async def label_studio_webhook(request: Request):
            try:
                return label_studio.webhook(load_json_body(await read_body(request)))
            except RequestError as exc:
                return error(exc.status, str(exc))
            except ClientDisconnect:
                return error(499, "client closed the connection")

    return app


def run_server(
    model_options: ModelOptions, serve_options: ServeOptions | None = None, limits: ServeLimits | None = None
) -> int:
    """`llm-ner serve`: load the model, then serve until Ctrl-C (texts split at ``model_options.max_chars``)."""
    import uvicorn

    serve_options = serve_options or ServeOptions()
    limits = replace(limits or ServeLimits(), max_chars=model_options.max_chars)
    settings = model_options.settings()
    for note in settings.notes:
        print(f"note: {note}", file=sys.stderr)
    label_studio = None
    if serve_options.label_studio:
        name = public_name(settings.adapter) or public_name(settings.model)
        version = label_studio_version(name, extraction_fingerprint(settings, model_options))
        label_studio = LabelStudioBackend(settings.prompt.schema, version)
    # Generate batches of at most max_batch pieces; token scores (entity scores) only for Label Studio.
    backend = model_options.local_backend(
        settings, model_options.device, batch_size=limits.max_batch, token_scores=label_studio is not None
    )
    engine = Engine(backend, settings, limits.max_chars)
    info = {  # no filesystem paths: /health is for callers, not for this machine's layout
        "model": public_name(settings.model),
        "adapter": public_name(settings.adapter),
        "prompt": settings.prompt.name,
        "format": settings.answer_format,
        "constrained": model_options.constrained,
        "labels": list(settings.prompt.schema.keys),
    }
    access = serve_options.access_policy()
    app = build_app(engine.run, limits, info, access, openapi=serve_options.openapi, label_studio=label_studio)
    host, port = serve_options.host, serve_options.port
    print(f"serving {settings.model} on http://{host}:{port}/ (Ctrl-C stops)", file=sys.stderr)
    if label_studio is not None:
        print(
            f"Label Studio ML backend {label_studio.model_version}: connect http://{host}:{port}{label_studio.prefix} "
            "(use the name Label Studio reaches this machine by)",
            file=sys.stderr,
        )
    if access.any_host:
        print("note: --allowed-origins '*': any Host and Origin accepted", file=sys.stderr)
    else:
        names = ", ".join(sorted(access.hosts | access.origins))
        print(f"accepting requests for {names} (add names with --allowed-origins)", file=sys.stderr)
    if access.api_key is None and host not in LOCAL_HOSTS:
        print(f"note: no API key: anyone who reaches {host}:{port} may use it ({API_KEY_ENV})", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level=serve_options.log_level)
    return 0
