"""Extraction: run a (fine-tuned) model over many texts and write exact spans.

- `options`: the flags of `extract` and `serve` (`ModelOptions`, `ExtractOptions`, `RayOptions`), no torch;
- `settings`: what a run uses (`RunSettings`: model, adapter, prompt, answer format, shots);
- `annotator`: texts in, records out (`Annotator`, `Entity`, `make_record`), the one path of every engine;
- `api`: `load`, the public Python API (`llm_ner.load`);
- `resume`: run fingerprints, resumable part files, the messages of a refused resume;
- `local`: `extract` on this machine (`run_extraction`);
- `ray_inputs`, `ray_store`, `ray_run`: `extract --engine ray` on Ray Data (`run_ray_extraction`).
"""

from .annotator import Annotator, Entity, make_record, record_entities
from .api import load
from .local import extract, make_backend, parse_failure_error, run_extraction, summarize
from .options import DTYPES, ExtractOptions, ModelOptions, RayOptions
from .resume import ResumableOutput, extraction_fingerprint, run_fingerprint
from .settings import RunSettings, resolve_settings, run_settings

__all__ = [
    "DTYPES",
    "Annotator",
    "Entity",
    "ExtractOptions",
    "ModelOptions",
    "RayOptions",
    "ResumableOutput",
    "RunSettings",
    "extract",
    "extraction_fingerprint",
    "load",
    "make_backend",
    "make_record",
    "parse_failure_error",
    "record_entities",
    "resolve_settings",
    "run_extraction",
    "run_fingerprint",
    "run_settings",
    "summarize",
]
