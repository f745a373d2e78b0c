"""The flags of `llm-ner serve` beside the model's (`extraction.options.ModelOptions`): where it listens and who
may call it (`ServeOptions`), batching and request limits (`ServeLimits`). Importing this module imports no torch."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..extraction.options import ModelOptions
from ..options import CliOptions, option, port_number, positive_float, positive_int

# Where Label Studio's ML backend protocol is served (`label_studio`).
LABEL_STUDIO_PREFIX = "/label-studio"


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
    body_timeout: float = option(  # a client that sends half a body must not hold its connection
        30.0,
        type=positive_float,
        metavar="SECONDS",
        help="seconds a client may take to send its request body; slower -> 408 and the connection is closed "
        "(default: %(default)s)",
    )
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
        f"{API_KEY_ENV}, which the process list does not show. An empty or blank key (flag or variable) is refused",
    )
    openapi: bool = option(False, help="serve the OpenAPI schema at /openapi.json (default: off)")
    label_studio: bool = option(
        False,
        help=f"also serve Label Studio's ML backend protocol at {LABEL_STUDIO_PREFIX} (/health, /setup, /predict): "
        f"in a project's Settings > Model > Connect Model, enter http://HOST:PORT{LABEL_STUDIO_PREFIX}; its "
        "<Labels> over a <Text> get pre-annotations with scores (entity scores are recorded while decoding)",
    )


@dataclass
class ServeRequest:
    """Everything one `llm-ner serve` asks for: the model, where the service listens and its limits."""

    model: ModelOptions
    serve: ServeOptions
    limits: ServeLimits

    def __post_init__(self) -> None:
        if self.model.max_chars > self.limits.max_text_chars:
            raise UsageError("--max-chars (piece length) must not exceed --max-text-chars (longest text accepted)")

    @classmethod
    def from_cli_args(cls, args) -> ServeRequest:
        return cls(ModelOptions.from_cli_args(args), ServeOptions.from_cli_args(args), ServeLimits.from_cli_args(args))
