"""Who answers the prompts: the `Backend` protocol and the `Answer` it returns.

The annotator (`extraction.annotator.Annotator`) turns texts into conversations (the run's prompt, answer format
and shots), hands them to a backend and parses what comes back with one parser and aligner, so answers from a
model in this process (`LocalBackend`) and from an OpenAI-compatible server (`OpenAIBackend`: vLLM, SGLang,
llama.cpp, `transformers serve`) become the same records. Importing this package imports no torch: the local
backend loads it with its model.
"""

from .base import Answer, Backend
from .local import LocalBackend
from .openai import OpenAIBackend, OpenAIOptions

__all__ = ["Answer", "Backend", "LocalBackend", "OpenAIBackend", "OpenAIOptions"]
