"""`llm-ner serve`: extraction over HTTP, one model loaded once.

- `options`: the command's flags (`ServeOptions`, `ServeLimits`), no torch;
- `access`: who may call it (`AccessPolicy`: Host, Origin, API key) and the middleware that asks;
- `batcher`: dynamic batching of concurrent requests (`RequestBatcher`);
- `app`: the FastAPI application (`build_app`), the annotator behind it (`serve_results`), `run_server`;
- `label_studio`: Label Studio's ML backend protocol (`LabelStudioBackend`) on the same batcher.
"""

from .access import AccessPolicy, RequestError
from .app import build_app, parse_texts, public_name, run_server, serve_results
from .batcher import ClientGone, RequestBatcher
from .label_studio import LabelStudioBackend
from .options import API_KEY_ENV, LABEL_STUDIO_PREFIX, ServeLimits, ServeOptions

__all__ = [
    "API_KEY_ENV",
    "LABEL_STUDIO_PREFIX",
    "AccessPolicy",
    "ClientGone",
    "LabelStudioBackend",
    "RequestBatcher",
    "RequestError",
    "ServeLimits",
    "ServeOptions",
    "build_app",
    "parse_texts",
    "public_name",
    "run_server",
    "serve_results",
]
