"""Where CLUENER comes from: $LLM_NER_DATA, data/cluener/, the official CLUE archive, or the
small sample shipped with the package (template sentences written for this project)."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .data import read_cluener
from .data.files import read_input_chunks
from .errors import DataError
from .options import CliOptions, option, positive_float

# The CLUE benchmark's public archive of CLUENER2020 (train.json, dev.json, test.json, README).
CLUENER_URL = "https://storage.googleapis.com/cluebenchmark/tasks/cluener_public.zip"
CLUENER_SIZES = {"train.json": 10748, "dev.json": 1343}
# sha256 of the release files this project was tested with (the CLUENER2020 release as mirrored in
# hemingkx/CLUENER2020); a mismatch is reported, the files are still validated record by record.
CLUENER_SHA256 = {
    "train.json": "b7e9f0802e86943c8af76f8375ae5ed00f15703484092e81579f241db4d0664a",
    "dev.json": "90036b59832e007c45d11eafe5ed80549f58a18a29aaa7fe8b1229622c69ec38",
}
SPLITS = ("train.json", "dev.json")

_log = logging.getLogger(__name__)  # `log` is the parameter name of the functions below


def default_data_dir() -> Path:
    """``data/cluener`` in the checkout (an editable install) or in the working directory."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file():
        return root / "data" / "cluener"
    return Path.cwd() / "data" / "cluener"


def data_dir() -> Path:
    """Where the CLUENER files are expected: ``$LLM_NER_DATA`` or :func:`default_data_dir`."""
    env = os.environ.get("LLM_NER_DATA")
    return Path(env) if env else default_data_dir()


def sample_dir() -> Path:
    """The shipped CLUENER-format sample (800 train / 200 dev template sentences, not CLUENER)."""
    return Path(__file__).resolve().parent / "sample_data" / "cluener"


def has_splits(folder: Path) -> bool:
    return all((folder / name).is_file() for name in SPLITS)


def available_data_dir() -> Path:
    """:func:`data_dir` if it holds train.json and dev.json, else the shipped sample (no download)."""
    folder = data_dir()
    return folder if has_splits(folder) else sample_dir()


def is_sample(folder: str | Path) -> bool:
    return Path(folder).resolve() == sample_dir().resolve()


@dataclass
class CheckResult:
    """What :func:`check_cluener` found in a folder."""

    folder: Path
    sizes: dict[str, int] = field(default_factory=dict)
    sha256_matches: dict[str, bool] = field(default_factory=dict)

    @property
    def is_full_release(self) -> bool:
        return self.sizes == CLUENER_SIZES

    def summary(self) -> str:
        counts = ", ".join(f"{name} {count}" for name, count in self.sizes.items())
        if all(self.sha256_matches.values()):
            origin = "identical to the CLUENER2020 release (sha256)"
        elif self.is_full_release:
            origin = "the CLUENER2020 sizes, but the bytes differ from the release this project knows (sha256)"
        else:
            origin = "not the full CLUENER2020 release"
        return f"{self.folder}: {counts} sentences, all records valid; {origin}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    for block in read_input_chunks(path):
        digest.update(block)
    return digest.hexdigest()


def check_cluener(folder: str | Path) -> CheckResult:
    """Validate train.json and dev.json record by record (raises DataError with FILE:LINE)."""
    from .prompting import load_prompt

    folder = Path(folder)
    labels = load_prompt("cluener_zh").schema.keys  # CLUENER's 10 types
    result = CheckResult(folder)
    for name in SPLITS:
        examples, _ = read_cluener(folder / name, labels=labels)
        result.sizes[name] = len(examples)
        result.sha256_matches[name] = _sha256(folder / name) == CLUENER_SHA256[name]
    return result


def download_cluener(dest: str | Path, url: str = CLUENER_URL, timeout: float = 30.0, progress: bool = True) -> Path:
    """Fetch the CLUENER archive and unpack train.json and dev.json into ``dest``.

    Raises OSError or HTTPException (network, file system) or DataError (not a CLUENER archive).
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / ".cluener_public.zip.part"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(archive, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="CLUENER", disable=not progress) as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    bar.update(len(block))
        try:
            with zipfile.ZipFile(archive) as zf:
                members = {Path(info.filename).name: info for info in zf.infolist() if not info.is_dir()}
                missing = [name for name in SPLITS if name not in members]
                if missing:
                    raise DataError(url, None, f"archive has no {', '.join(missing)} (it has {sorted(members)})")
                for name in SPLITS:
                    tmp = dest / f".{name}.part"
                    with zf.open(members[name]) as src, open(tmp, "wb") as out:
                        shutil.copyfileobj(src, out)
                    os.replace(tmp, dest / name)
        except zipfile.BadZipFile as exc:
            raise DataError(url, None, f"not a zip archive ({exc})") from None
    finally:
        archive.unlink(missing_ok=True)
        if not any(dest.iterdir()):
            dest.rmdir()  # leave no empty data/cluener behind a failed download
    return dest


def where_to_put(dest: Path) -> str:
    """The message for users without network access."""
    return (
        "CLUENER2020 is not available on this machine. To use it, either\n"
        f"  - put train.json and dev.json (from {CLUENER_URL}) into {dest}/, or\n"
        "  - set LLM_NER_DATA to the folder that holds train.json and dev.json."
    )


@dataclass
class Located:
    folder: Path
    source: str  # "LLM_NER_DATA", "data/cluener", "download" or "sample"
    check: CheckResult | None = None


def locate_cluener(
    download: bool = True,
    allow_sample: bool = False,
    url: str = CLUENER_URL,
    timeout: float = 30.0,
    log=lambda message: _log.info(message),
) -> Located:
    """Find CLUENER: $LLM_NER_DATA, then data/cluener/, else download it into data/cluener/.

    With none of them, the shipped sample if ``allow_sample``, else FileNotFoundError with the
    exact place to put the files. Found files are checked record by record.
    """
    env = os.environ.get("LLM_NER_DATA")
    candidates = [(Path(env), "LLM_NER_DATA")] if env else []
    candidates.append((default_data_dir(), "data/cluener"))
    for folder, source in candidates:
        if has_splits(folder):
            return Located(folder, source, check_cluener(folder))
        log(f"no train.json + dev.json in {folder} ({source})")
    dest = default_data_dir()
    if download:
        log(f"downloading CLUENER2020 from {url} into {dest}/")
        try:
            download_cluener(dest, url, timeout)
            return Located(dest, "download", check_cluener(dest))
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            reason = getattr(exc, "reason", None) or exc
            log(f"download failed: {reason}")
    log(where_to_put(dest))
    if allow_sample:
        log(
            f"using the small sample shipped with llm-ner instead ({sample_dir()}): template sentences written "
            "for this project, not CLUENER; scores on it say nothing about CLUENER."
        )
        return Located(sample_dir(), "sample")
    raise FileNotFoundError(f"CLUENER2020 not found; put train.json and dev.json into {dest}/ or set LLM_NER_DATA")


@dataclass
class DataOptions(CliOptions):
    """`llm-ner data`: where to look for a dataset, and whether to download or fall back to the sample."""

    dataset: str = option("cluener", flag="dataset", choices=("cluener",))
    no_download: bool = option(False, help="only look, do not download")
    allow_sample: bool = option(
        False,
        help="if CLUENER is not available, print the small sample shipped with llm-ner (template sentences "
        "written for the project, not CLUENER) instead of failing",
    )
    url: str = option(CLUENER_URL, help="archive to download (default: %(default)s)")
    timeout: float = option(30.0, type=positive_float, help="network timeout in seconds")


def find_data(options: DataOptions) -> Path:
    """`llm-ner data`: the folder of the dataset (checked, said on stderr with its summary)."""
    located = locate_cluener(
        download=not options.no_download, allow_sample=options.allow_sample, url=options.url, timeout=options.timeout
    )
    if located.check is not None:
        _log.info(f"CLUENER ({located.source}) {located.check.summary()}")
    return located.folder
