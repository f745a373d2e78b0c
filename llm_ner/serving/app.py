"""`llm-ner serve`: the model loaded once, answering ``POST /extract {"texts": [...]}`` over HTTP.

Each text goes through the annotator (`extraction.annotator.Annotator`: pieces, prompt, backend, parser and
aligner), so the service answers as `extract` does; requests that arrive together share one batch (`batcher`).
Limits (`ServeLimits`): at most ``max_queue`` texts waiting or running (503 + Retry-After beyond),
``max_body_bytes`` per body, ``max_texts`` per request and ``max_text_chars`` per text (413), malformed JSON or
wrong types (400, `load_json_body`). Who may call it: `access.AccessPolicy`. ``/health`` shows no filesystem
paths, and the OpenAPI schema is served only when asked (``openapi``). Label Studio's ML backend requests, with
``--label-studio``, go to `label_studio.LabelStudioBackend` under ``/label-studio``: same batcher, limits and
access policy.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request) at runtime.
import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from importlib import resources
from pathlib import Path

from ..data import Example, JsonSyntaxError, JsonValueError, decode_json
from ..errors import UsageError
from ..extraction.annotator import Annotator, record_entities
from ..extraction.options import ModelOptions
from ..extraction.resume import extraction_fingerprint
from ..extraction.settings import check_model_folder, run_settings
from ..parsing import ParseStats
from .access import LOCAL_HOSTS, AccessPolicy, Guard, RequestError, access_policy
from .batcher import ClientGone, RequestBatcher
from .label_studio import LabelStudioBackend, LabelStudioError, label_studio_version
from .options import API_KEY_ENV, ServeLimits, ServeOptions

log = logging.getLogger(__name__)


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


def serve_results(annotator: Annotator) -> Callable[[list[str]], list[dict]]:
    """The service's engine: texts -> one result each (``text``, ``entities`` with exclusive ends and, where token
    scores were recorded, their ``score`` and the ``answer_score``; the ``parse`` counters and the ``raw`` answer)."""

    def run(texts: list[str]) -> list[dict]:
        results = []
        annotated = annotator.annotate([Example(str(index), text) for index, text in enumerate(texts)])
        for text, (record, stats) in zip(texts, annotated):
            entities = [entity.as_dict() for entity in record_entities(record)]
            result = {"text": text, "entities": entities, "parse": stats.as_dict(), "raw": record["raw"]}
            if "answer_score" in record:
                result["answer_score"] = record["answer_score"]
            results.append(result)
        return results

    return run


class _Routes:
    """What the request handlers share: the batcher, the limits and the error response."""

    def __init__(self, batcher: RequestBatcher, limits: ServeLimits):
        self.batcher, self.limits = batcher, limits

    def error(self, status: int, message: str):
        from fastapi.responses import JSONResponse

        headers = {"Retry-After": str(self.limits.retry_after_s)} if status == 503 else None
        if status == 408:  # the rest of that body may still come: the connection cannot carry another request
            headers = {"Connection": "close"}
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    async def read_body(self, request) -> bytes:
        """A POST body: JSON only (415), at most ``max_body_bytes`` (413), all of it within ``body_timeout``
        seconds (408), as `RequestError`."""
        limit = self.limits.max_body_bytes
        # Only JSON: a cross-site page may send text/plain without asking (a "simple" request).
        if not is_json_content_type(request.headers.get("content-type")):
            raise RequestError(415, "Content-Type must be application/json")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"body larger than {limit} bytes")
        body = bytearray()

        async def read() -> None:
            async for chunk in request.stream():  # read no more than the limit, whatever the header said
                body.extend(chunk)
                if len(body) > limit:
                    raise RequestError(413, f"body larger than {limit} bytes")

        # One deadline for the whole body, not per chunk: a byte every few seconds would pass a per-chunk one.
        try:
            await asyncio.wait_for(read(), self.limits.body_timeout)
        except asyncio.TimeoutError:
            raise RequestError(
                408, f"request body not received within {self.limits.body_timeout:g} s (serve --body-timeout)"
            ) from None
        return bytes(body)


def _add_label_studio_routes(app, routes: _Routes, label_studio: LabelStudioBackend) -> None:
    """Label Studio's ML backend protocol under its prefix, texts through the same batcher."""
    from fastapi import Request
    from starlette.requests import ClientDisconnect

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
            return label_studio.setup(load_json_body(await routes.read_body(request)))
        except (RequestError, LabelStudioError) as exc:
            return routes.error(exc.status, str(exc))
        except ClientDisconnect:
            return routes.error(499, "client closed the connection")

    @app.post(prefix + "/predict")
    async def label_studio_predict(request: Request):
        try:
            body = load_json_body(await routes.read_body(request))
            return await label_studio.predict(
                body,
                lambda texts: routes.batcher.submit(texts, request.is_disconnected),
                routes.limits.max_texts,
                routes.limits.max_text_chars,
            )
        except (RequestError, LabelStudioError) as exc:
            return routes.error(exc.status, str(exc))
        except (ClientDisconnect, ClientGone):
            return routes.error(499, "client closed the connection")
        except Exception as exc:  # this request's own failure, as on /extract
            return routes.error(500, f"prediction failed: {type(exc).__name__}: {exc}")

    @app.post(prefix + "/webhook")
    async def label_studio_webhook(request: Request):
        try:
            return label_studio.webhook(load_json_body(await routes.read_body(request)))
        except RequestError as exc:
            return routes.error(exc.status, str(exc))
        except ClientDisconnect:
            return routes.error(499, "client closed the connection")


def build_app(
    run,
    limits: ServeLimits,
    info: dict | None = None,
    access: AccessPolicy | None = None,
    openapi=False,
    label_studio: LabelStudioBackend | None = None,
):
    """The FastAPI application around ``run(texts) -> results`` (`serve_results`); ``access`` (default: localhost
    only, no key) guards every request; ``openapi``: serve /openapi.json; ``label_studio``: answer Label Studio's
    ML backend requests under its prefix, texts through the same batcher."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse
    from starlette.requests import ClientDisconnect

    batcher = RequestBatcher(run, limits)
    routes = _Routes(batcher, limits)
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
    app.add_middleware(Guard, policy=access or AccessPolicy())
    app.state.batcher = batcher

    @app.post("/extract")
    async def extract(request: Request):
        try:
            texts = parse_texts(await routes.read_body(request), limits)
            results = await batcher.submit(texts, request.is_disconnected)
        except RequestError as exc:
            return routes.error(exc.status, str(exc))
        except (ClientDisconnect, ClientGone):
            return routes.error(499, "client closed the connection")  # nobody reads it
        except Exception as exc:  # this request's own failure; the server and other requests go on
            return routes.error(500, f"extraction failed: {type(exc).__name__}: {exc}")
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
        _add_label_studio_routes(app, routes, label_studio)
    return app


def _announce(model: str, serve_options: ServeOptions, access: AccessPolicy, label_studio) -> None:
    """What the service says when it starts: where it listens, for whom, and what it lacks."""
    host, port = serve_options.host, serve_options.port
    log.info(f"serving {model} on http://{host}:{port}/ (Ctrl-C stops)")
    if label_studio is not None:
        log.info(
            f"Label Studio ML backend {label_studio.model_version}: connect http://{host}:{port}{label_studio.prefix} "
            "(use the name Label Studio reaches this machine by)"
        )
    if access.any_host:
        log.info("note: --allowed-origins '*': any Host and Origin accepted")
    else:
        names = ", ".join(sorted(access.hosts | access.origins))
        log.info(f"accepting requests for {names} (add names with --allowed-origins)")
    if access.api_key is None and host not in LOCAL_HOSTS:
        log.warning(f"note: no API key: anyone who reaches {host}:{port} may use it ({API_KEY_ENV})")


def run_server(
    model_options: ModelOptions, serve_options: ServeOptions | None = None, limits: ServeLimits | None = None
) -> int:
    """`llm-ner serve`: load the model, then serve until Ctrl-C (texts split at ``model_options.max_chars``)."""
    import uvicorn

    from ..extraction.local import make_backend

    serve_options = serve_options or ServeOptions()
    limits = replace(limits or ServeLimits(), max_chars=model_options.max_chars)
    try:
        access = access_policy(serve_options)  # a bad --allowed-origins stops here, before the model loads
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_model_folder(model_options.model)
    settings = run_settings(model_options)
    for note in settings.notes:
        log.info(f"note: {note}")
    label_studio = None
    if serve_options.label_studio:
        name = public_name(settings.adapter) or public_name(settings.model)
        version = label_studio_version(name, extraction_fingerprint(settings, model_options))
        label_studio = LabelStudioBackend(settings.prompt.schema, version)
    # Generate batches of at most max_batch pieces; token scores (entity scores) only for Label Studio.
    backend = make_backend(
        model_options, settings, device=model_options.device, batch_size=limits.max_batch,
        token_scores=label_studio is not None,
    )  # fmt: skip
    annotator = Annotator(backend, settings, limits.max_chars)
    info = {  # no filesystem paths: /health is for callers, not for this machine's layout
        "model": public_name(settings.model),
        "adapter": public_name(settings.adapter),
        "prompt": settings.prompt.name,
        "format": settings.answer_format,
        "constrained": model_options.constrained,
        "labels": list(settings.prompt.schema.keys),
    }
    app = build_app(serve_results(annotator), limits, info, access, serve_options.openapi, label_studio)
    _announce(settings.model, serve_options, access, label_studio)
    uvicorn.run(app, host=serve_options.host, port=serve_options.port, log_level=serve_options.log_level)
    return 0
