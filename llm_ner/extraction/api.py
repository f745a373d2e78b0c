"""`llm_ner.load`: an annotator for a notebook or a script, loaded once and called on texts.

    import llm_ner

    ner = llm_ner.load("runs/qwen3-lora")                       # a training run (LoRA adapter), or a merged model
    ner = llm_ner.load(base_url="http://127.0.0.1:8000/v1", served_model="Qwen/Qwen3-0.6B",
                       prompt="cluener_zh")
    ner(["浙商银行企业信贷部叶老桂博士", "..."])   # [[Entity(0, 4, 'company', '浙商银行'), ...], ...]
    ner("一个句子")                                 # [Entity(...), ...]

The same settings as `llm-ner extract` (prompt and answer format from the training run unless given, long texts
split at ``max_chars``, constrained decoding, shots), answered by a model in this process or by an
OpenAI-compatible server, as `Entity` objects (``start``, ``end`` exclusive, ``label``, ``text``, ``score``).
"""

from __future__ import annotations

from pathlib import Path

from .annotator import Annotator
from .options import ModelOptions


def load(
    model: str | None = None,
    *,
    base_url: str | None = None,
    served_model: str | None = None,
    batch_size: int = 64,
    **options,
) -> Annotator:
    """An `Annotator` for ``model``: a training run's folder (its LoRA adapter: prompt and format as trained), a
    merged model folder or hub id; or, with ``base_url``, the OpenAI-compatible server there answering as
    ``served_model``. ``batch_size``: rows a forward pass. ``options``: the fields of `ModelOptions` (``prompt``,
    ``answer_format``, ``constrained``, ``shots``/``shots_from``, ``max_chars``, ``dtype``, ``device``, ...).
    Close it (or use it in a ``with`` block) to release a server client's threads."""
    from .local import make_backend
    from .settings import run_settings

    if model and "adapter" not in options and (Path(model) / "adapter_config.json").is_file():
        options["adapter"], model = model, None  # a LoRA run: its base model comes from the adapter
    model_options = ModelOptions(model=model, **options)
    if base_url is None:
        settings = run_settings(model_options)
        backend = make_backend(model_options, settings, device=model_options.device, batch_size=batch_size)
        return Annotator(backend, settings, model_options.max_chars)
    from ..backends.openai import OpenAIOptions

    if not served_model:
        from ..errors import UsageError

        raise UsageError("base_url= needs served_model= (the name the server lists at /v1/models)")
    server = OpenAIOptions(base_url=base_url, served_model=served_model, concurrency=min(batch_size, 8))
    settings = run_settings(model_options, served_model)
    backend = make_backend(model_options, settings, server)
    backend.check()
    return Annotator(backend, settings, model_options.max_chars)
