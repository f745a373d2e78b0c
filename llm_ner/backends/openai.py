"""The `openai` extraction backend: chat requests to an OpenAI-compatible server (vLLM, SGLang, llama.cpp's
server, `transformers serve`) instead of a model in this process.

The annotator stays the same (`extraction.annotator.Annotator`): the same prompts, long sentences split, the
same parser and aligner; this module only answers a batch of conversations (a `Backend`), ``concurrency``
requests in flight through a `http.JsonClient` (retries, backoff, cancellation). Requests are greedy
(``temperature 0``), bounded by `generation.default_max_new_tokens` of each sentence, with Qwen3 thinking off
(``chat_template_kwargs``); under constrained decoding the answer format's JSON schema goes as
``response_format``. When `answer` is interrupted (Ctrl-C, or one request failed for good), the requests it
still has in flight are given up at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..errors import ServerError, UsageError
from ..options import CliOptions, non_negative_int, option, positive_float, positive_int
from .base import Answer
from .http import JsonClient

log = logging.getLogger(__name__)

# How a server takes the request's extras. llama-cpp-python's server reads a JSON schema only as
# {"type": "json_object", "schema": ...} and defaults to repeat_penalty 1.1, which changes greedy answers.
API_DIALECTS = ("openai", "llama-cpp-python")


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
    api_dialect: str = option(
        "openai",
        choices=API_DIALECTS,
        help="openai (vLLM, SGLang, transformers serve, llama.cpp's llama-server); llama-cpp-python (its server: "
        "the --constrained schema as a json_object response_format, and repeat_penalty 1 for greedy answers) "
        "(default: %(default)s)",
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
    api_dialect: str = OpenAIOptions.api_dialect

    def __post_init__(self):
        self.client = JsonClient(self.base_url, self.timeout, self.retries, self.backoff)
        self._pool: ThreadPoolExecutor | None = None
        self.requests = 0
        self.truncated = 0  # answers cut at max_tokens (finish_reason "length")

    @property
    def retried(self) -> int:
        return self.client.retried

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
            api_dialect=options.api_dialect,
        )

    def served_models(self) -> list[str]:
        """Model names the server lists at ``/v1/models``."""
        data = self.client.request("GET", "/models")
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
        from ..generation.tokens import default_max_new_tokens  # the package imports torch; this module must not

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
        if self.api_dialect == "llama-cpp-python":
            body["repeat_penalty"] = 1.0
            if self.response_format is not None:  # llama-cpp-python turns this form into a grammar
                schema = self.response_format["json_schema"]["schema"]
                body["response_format"] = {"type": "json_object", "schema": schema}
        data = self.client.request("POST", "/chat/completions", body, stop)
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
        """Answers in input order, ``concurrency`` requests in flight; no token scores (`Backend.answer`)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="llm-ner-openai")
        stop = threading.Event()
        futures = [self._pool.submit(self.complete, c, t, stop) for c, t in zip(conversations, texts)]
        try:
            return [Answer(f.result()) for f in futures]
        except BaseException:
            # Ctrl-C or a failed request: drop what has not started and give up what is in flight
            # (else the exit waits for every timeout and retry); the part files keep every finished
            # batch, so a rerun resumes after it.
            for f in futures:
                f.cancel()
            self.client.abort(stop)
            raise

    def close(self) -> None:
        """Stop the worker threads (an interrupted `answer` has given up its requests) and print the counters."""
        if self.requests or self.retried:
            log.info(
                f"openai backend: {self.requests} requests, {self.retried} retries, "
                f"{self.truncated} answers cut at max_tokens"
            )
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
