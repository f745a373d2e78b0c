"""llama.cpp's converter and GGUF metadata.

The converter is not a pip package: llama.cpp ships it in its source tree, which the ``llama-cpp-python``
sdist on PyPI vendors. `fetch_converter` downloads that sdist (``pip download``) and keeps its
``convert_hf_to_gguf.py``, ``conversion/`` and ``gguf-py/`` under ``~/.cache/llm-ner/``; ``--converter``
or ``$LLM_NER_LLAMA_CPP`` name a llama.cpp checkout instead. Metadata is added with the ``gguf`` package's
own copier (llama.cpp's ``gguf-new-metadata``), not a writer of ours.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..errors import LlmNerError, UsageError

# The llama-cpp-python release whose vendored llama.cpp converter and runtime this package is tested with.
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
CONVERTER = "convert_hf_to_gguf.py"
CONVERTER_ENV = "LLM_NER_LLAMA_CPP"
EXTRA_HINT = "pip install 'llm-ner[gguf]'"


def cache_dir() -> Path:
    """``~/.cache/llm-ner`` (``$XDG_CACHE_HOME`` respected): where fetched converters are kept."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llm-ner"


def installed_llama_cpp_version() -> str | None:
    """The installed llama-cpp-python's version (None when it is not installed), read without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llama_cpp_python")
    except PackageNotFoundError:
        return None


def _converter_in(path: Path) -> Path | None:
    if path.is_file() and path.name == CONVERTER:
        return path
    for candidate in (path / CONVERTER, path / "vendor" / "llama.cpp" / CONVERTER):
        if candidate.is_file():
            return candidate
    return None


def find_converter(explicit: str | None = None) -> Path:
    """llama.cpp's ``convert_hf_to_gguf.py``: ``explicit``, else ``$LLM_NER_LLAMA_CPP``, else the copy
    `fetch_converter` made for the installed llama-cpp-python (or the tested version); `UsageError` saying
    how to get it when there is none."""
    if explicit:
        found = _converter_in(Path(explicit).expanduser())
        if found is None:
            raise UsageError(f"--converter {explicit}: no {CONVERTER} there (a llama.cpp checkout or the file)")
        return found
    if os.environ.get(CONVERTER_ENV):
        found = _converter_in(Path(os.environ[CONVERTER_ENV]).expanduser())
        if found is None:
            raise UsageError(f"${CONVERTER_ENV}={os.environ[CONVERTER_ENV]}: no {CONVERTER} there")
        return found
    version = installed_llama_cpp_version() or LLAMA_CPP_PYTHON_VERSION
    found = _converter_in(cache_dir() / f"llama.cpp-{version}")
    if found is None:
        raise UsageError(
            f"llama.cpp's converter ({CONVERTER}) is not here: add --fetch-converter (downloads the llama-cpp-python "
            f"{version} sdist from PyPI, about 77 MB, and keeps its converter in {cache_dir()}), or pass "
            f"--converter PATH to a llama.cpp checkout"
        )
    return found


def fetch_converter(version: str | None = None) -> Path:
    """Download the llama-cpp-python sdist of ``version`` (default: the installed one, else the tested one)
    with pip and keep its ``vendor/llama.cpp`` converter (the script, ``conversion/``, ``gguf-py/``) in the
    cache; returns the script's path."""
    version = version or installed_llama_cpp_version() or LLAMA_CPP_PYTHON_VERSION
    target = cache_dir() / f"llama.cpp-{version}"
    if _converter_in(target) is not None:
        return target / CONVERTER
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llm-ner-sdist-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
        command += ["--dest", tmp, f"llama-cpp-python=={version}"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise LlmNerError(f"could not download the llama-cpp-python {version} sdist with pip: {last}")
        (sdist,) = Path(tmp).glob("*.tar.gz")
        staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache_dir()))
        try:
            with tarfile.open(sdist) as archive:
                wanted = re.compile(r"^[^/]+/vendor/llama\.cpp/(convert_hf_to_gguf\.py|LICENSE|conversion/|gguf-py/)")
                members = [m for m in archive.getmembers() if wanted.match(m.name) and (m.isfile() or m.isdir())]
                for member in members:  # plain files and folders only, inside the archive's top folder
                    if member.name.startswith("/") or ".." in Path(member.name).parts:
                        raise LlmNerError(f"{sdist.name}: unsafe path {member.name!r} in the archive")
                archive.extractall(staging, members=members)
            (top,) = [p for p in staging.iterdir() if p.is_dir()]
            if target.exists():  # an earlier fetch cut short: no converter in it
                shutil.rmtree(target)
            (top / "vendor" / "llama.cpp").rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target / CONVERTER


def require_gguf():
    """The ``gguf`` package (the ``[gguf]`` extra), or a one-line `UsageError` naming the extra."""
    try:
        import gguf
    except ImportError:
        raise UsageError(f"GGUF export needs the gguf package: {EXTRA_HINT}") from None
    return gguf


def convert_to_gguf(model_dir: Path, out_file: Path, outtype: str, converter: Path, log_file: Path) -> Path:
    """Run llama.cpp's converter on a Hugging Face model folder; `LlmNerError` with its last line (its whole
    output kept in ``log_file``) when it fails."""
    env = dict(os.environ)
    env.pop("NO_LOCAL_GGUF", None)  # the converter uses the gguf-py of its own tree, the version it was written for
    command = [sys.executable, str(converter), str(model_dir), "--outfile", str(out_file), "--outtype", outtype]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not out_file.is_file():
        log_file.write_text(done.stdout + done.stderr, encoding="utf-8")
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise LlmNerError(f"llama.cpp's converter failed ({outtype}): {last} (full log: {log_file})")
    return out_file


def add_metadata(source: Path, target: Path, values: dict[str, str | list[str]]) -> Path:
    """A copy of the GGUF ``source`` at ``target`` with ``values`` added as string (array) metadata, written
    by the gguf package's own copier (llama.cpp's ``gguf-new-metadata``)."""
    gguf = require_gguf()
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(source, "r")
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    writer = gguf.GGUFWriter(target, arch=arch, endianess=reader.endianess)
    alignment = reader.get_field(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = alignment.contents()
    new = {}
    for key, value in values.items():
        if isinstance(value, list):
            new[key] = MetadataDetails(gguf.GGUFValueType.ARRAY, value, sub_type=gguf.GGUFValueType.STRING)
        else:
            new[key] = MetadataDetails(gguf.GGUFValueType.STRING, value)
    copy_with_new_metadata(reader, writer, new, [])
    del reader  # its memory map
    return target


def read_metadata(path: str | Path) -> dict[str, object]:
    """Every metadata key of a GGUF file with its value (strings, numbers, lists; token lists included)."""
    gguf = require_gguf()
    reader = gguf.GGUFReader(path, "r")
    return {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
