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
types (400). A batch that fails is rerun request by request, so one bad request fails alone.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request) at runtime.
import asyncio
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from importlib import resources

from .backend import Backend
from .data import Example, split_long
from .extraction import ModelOptions, RunSettings, answer_pieces, make_record
from .options import CliOptions, option, positive_float, positive_int
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


@dataclass
class ServeOptions(CliOptions):
    """Where `llm-ner serve` listens."""

    host: str = option("127.0.0.1", help="listen address (default: %(default)s; 0.0.0.0 exposes it)")
    port: int = option(8000, type=positive_int, help="(default: %(default)s)")
    log_level: str = option("warning", choices=("critical", "error", "warning", "info", "debug"))


class RequestError(Exception):
    """A request the service refuses: HTTP status and message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Engine:
    """Texts -> entities: the same steps as `extraction.extract`, answered by ``backend``."""

    def __init__(self, backend: Backend, settings: RunSettings, max_chars: int = ModelOptions.max_chars):
        self.backend, self.settings, self.max_chars = backend, settings, max_chars

    def run(self, texts: list[str]) -> list[dict]:
        """Every piece of ``texts`` in one backend call (a `LocalBackend` generates in batches of its
        ``batch_size`` rows: a batch of long texts has many pieces, memory stays bounded); one result per text."""
        pieces = [split_long(text, self.max_chars) for text in texts]
        flat = [piece for parts in pieces for _, piece in parts]
        answers = [text for text, _ in answer_pieces(self.backend, self.settings, flat)]
        results, cursor = [], 0
        for index, (text, parts) in enumerate(zip(texts, pieces)):
            record, stats = make_record(
                Example(str(index), text), parts, answers[cursor : cursor + len(parts)], self.settings.prompt
            )
            cursor += len(parts)
            results.append(
                {"text": text, "entities": entities_of(record), "parse": stats.as_dict(), "raw": record["raw"]}
            )
        return results


def entities_of(record: dict) -> list[dict]:
    """A CLUENER record's spans as ``{start, end (exclusive), label, text}`` in reading order."""
    entities = [
        {"start": start, "end": end + 1, "label": label, "text": mention}
        for label, mentions in record["label"].items()
        for mention, ranges in mentions.items()
        for start, end in ranges
    ]
    return sorted(entities, key=lambda e: (e["start"], e["end"], e["label"]))


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future


@dataclass
class RequestBatcher:
    """Dynamic batching: collects waiting requests into one engine call at a time."""

    run: object  # texts -> results (the engine; a plain callable in tests)
    limits: ServeLimits
    pending: int = 0  # texts waiting or running
    batches: int = 0
    texts_done: int = 0
    largest_batch: int = 0
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

    async def submit(self, texts: list[str]) -> list[dict]:
        """The results for ``texts`` once their batch ran; RequestError(503) when the queue is full."""
        if self.pending + len(texts) > self.limits.max_queue:
            raise RequestError(503, f"busy: {self.pending} texts queued (limit {self.limits.max_queue}); retry later")
        self.pending += len(texts)
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(texts, future))
        try:
            return await future
        finally:
            self.pending -= len(texts)

    async def _next_job(self, timeout: float | None) -> _Job | None:
        if self._held is not None:
            job, self._held = self._held, None
            return job
        if timeout is None:
            return await self._queue.get()
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._next_job(None)]
            count = len(jobs[0].texts)
            deadline = loop.time() + self.limits.max_wait_ms / 1000
            while count < self.limits.max_batch:
                job = await self._next_job(max(0.0, deadline - loop.time()))
                if job is None:
                    break
                if count + len(job.texts) > self.limits.max_batch:
                    self._held = job  # first in the next batch
                    break
                jobs.append(job)
                count += len(job.texts)
            jobs = [job for job in jobs if not job.future.done()]  # clients that went away
            if not jobs:
                continue
            outcomes = await loop.run_in_executor(self._executor, self._run_jobs, jobs)
            self.batches += 1
            self.largest_batch = max(self.largest_batch, count)
            for job, outcome in zip(jobs, outcomes):
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


def parse_texts(body: bytes, limits: ServeLimits) -> list[str]:
    """The texts of an ``/extract`` body, or RequestError 400/413 saying what is wrong."""
    if len(body) > limits.max_body_bytes:
        raise RequestError(413, f"body larger than {limits.max_body_bytes} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"body is not JSON: {exc}") from None
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


def page_html() -> str:
    """The self-contained demo page (no external scripts or styles)."""
    return resources.files("llm_ner").joinpath("static/serve.html").read_text(encoding="utf-8")


def build_app(run, limits: ServeLimits, info: dict | None = None):
    """The FastAPI application around ``run(texts) -> results`` (an `Engine.run`)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse

    batcher = RequestBatcher(run, limits)
    page = page_html()

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="llm-ner", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.batcher = batcher

    def error(status: int, message: str) -> JSONResponse:
        headers = {"Retry-After": str(limits.retry_after_s)} if status == 503 else None
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.post("/extract")
    async def extract(request: Request):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
            return error(413, f"body larger than {limits.max_body_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():  # read no more than the limit, whatever the header said
            body += chunk
            if len(body) > limits.max_body_bytes:
                return error(413, f"body larger than {limits.max_body_bytes} bytes")
        try:
            texts = parse_texts(bytes(body), limits)
            results = await batcher.submit(texts)
        except RequestError as exc:
            return error(exc.status, str(exc))
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
            "largest_batch": batcher.largest_batch,
        }

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return page

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
    # Generate batches of at most max_batch pieces; the service reports no token scores.
    backend = model_options.local_backend(
        settings, model_options.device, batch_size=limits.max_batch, token_scores=False
    )
    engine = Engine(backend, settings, limits.max_chars)
    info = {
        "model": settings.model,
        "adapter": settings.adapter,
        "prompt": settings.prompt.name,
        "format": settings.answer_format,
        "constrained": model_options.constrained,
        "labels": list(settings.prompt.schema.keys),
    }
    app = build_app(engine.run, limits, info)
    host, port = serve_options.host, serve_options.port
    print(f"serving {settings.model} on http://{host}:{port}/ (Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level=serve_options.log_level)
    return 0
