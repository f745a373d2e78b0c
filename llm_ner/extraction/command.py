"""`llm-ner extract` as one library call: the request checked, then the local or the Ray engine."""

from __future__ import annotations

from ..data import check_output_path
from .options import ExtractRequest
from .settings import check_model_folder


def run_extract(request: ExtractRequest) -> int:
    """Refuse an output that could destroy one of the inputs (every path the run reads) and a local folder that
    holds no model, then extract; the exit status (0, 1 for unparsable answers, 130 when interrupted)."""
    model, options = request.model, request.extract
    inputs = {"--input": options.input, "--model": model.model, "--adapter": model.adapter, "--prompt": model.prompt}
    inputs["--shots-from"] = model.shots_from
    check_output_path(options.output, inputs)
    if options.backend == "local":  # the openai backend's --model may name the model on the server
        check_model_folder(model.model)
    if options.engine == "ray":
        from .ray_run import run_ray_extraction

        return run_ray_extraction(model, options, request.ray, request.openai)
    from .local import run_extraction

    return run_extraction(model, options, request.openai)
