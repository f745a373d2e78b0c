"""`extract --engine ray`, the inputs: the files of ``--input``, each read by a Ray task that counts its pieces,
then emits one row per piece with its batch number (the very batches `extract` makes on one machine)."""

from __future__ import annotations

import fnmatch
import glob
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..data import Example, read_inputs, split_long
from ..errors import UsageError
from .ray_store import run_file, text_digest, work_dir


def input_files(spec: str | Path) -> list[Path]:
    """The files of ``--input``: a file, every file under a folder (hidden ones skipped), or the files a
    glob matches (``**`` recursive), in sorted order."""
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.exists() and not path.is_dir():
        # Ray's workers open the files themselves: a pipe would be read by one of them at most, a device never ends
        raise UsageError(
            f"--input {spec} is a pipe or device, not a file: --engine ray reads files on its workers; "
            "save the input to a file first"
        )
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.parts)]
    elif glob.has_magic(str(spec)):
        files = [Path(p) for p in glob.glob(os.path.expanduser(str(spec)), recursive=True) if Path(p).is_file()]
    else:
        raise UsageError(f"--input {spec}: no such file or folder")
    if not files:
        raise UsageError(f"--input {spec}: no files")
    return sorted(files)


def id_prefixes(files: Sequence[Path]) -> list[str]:
    """What each file's ids are prefixed with: nothing for one file (the ids of `extract`), else the
    file's path relative to the files' common folder and a colon, so ids of many files are unique."""
    if len(files) == 1:
        return [""]
    root = os.path.commonpath([str(f.resolve().parent) for f in files])
    return [os.path.relpath(f.resolve(), root) + ":" for f in files]


def check_output_not_read(spec: str | Path, output: Path) -> None:
    """Refuse an output that a rerun would read back as input (inside an input folder, or matched by
    the input glob): `UsageError`."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if output.resolve().is_relative_to(path.resolve()):
            raise UsageError(f"--output {output} is inside the --input folder {spec}: a rerun would read it as input")
    elif not path.is_file() and glob.has_magic(str(spec)):
        pattern = os.path.abspath(os.path.expanduser(str(spec)))
        for candidate in (output, work_dir(output), run_file(output)):
            if fnmatch.fnmatch(str(candidate.absolute()), pattern):
                raise UsageError(f"--output {output}: the input glob {spec} matches it; choose another --output")


def read_file(path: str, input_format: str, lenient: bool, prefix: str) -> list[Example]:
    """The sentences of one input file, ids prefixed."""
    examples = read_inputs(path, input_format, lenient=lenient)
    if prefix:
        examples = [Example(prefix + ex.id, ex.text) for ex in examples]
    return examples


# Work on the Ray workers (module-level functions: Ray pickles them by reference)


def plan_file(row: dict, input_format: str, lenient: bool, max_chars: int, done_ref: list) -> dict:
    """Counts of one file: its sentences, those to do (``row["cap"]``: only the first N), the pieces to
    do per length, and the finished ids it holds (texts other than the finished record's: listed)."""
    import ray

    done = ray.get(done_ref[0])
    examples = read_file(row["path"], input_format, lenient, row["prefix"])
    cap = row["cap"] if row["cap"] >= 0 else len(examples)
    lengths: dict[int, int] = {}
    todo = seen = 0
    changed = []
    for ex in examples[:cap]:
        digest = done.get(ex.id)
        if digest is not None:
            seen += 1
            if digest != text_digest(ex.text):
                changed.append(ex.id)
            continue
        todo += 1
        for _, piece in split_long(ex.text, max_chars):
            lengths[len(piece)] = lengths.get(len(piece), 0) + 1
    return {
        "file": row["file"],
        "sentences": len(examples),
        "todo": todo,
        "done_seen": seen,
        "changed": json.dumps(changed[:1] + [len(changed)]),
        "lengths": json.dumps(sorted(lengths.items())),
    }


def file_pieces(
    row: dict, input_format: str, lenient: bool, max_chars: int, batch_size: int, done_ref: list
) -> Iterator[dict]:
    """One row per piece to do, with its batch number: its place in `extract`'s order (longest first,
    then input order) // ``batch_size``; ``row["start"]`` holds, per length, the place of this file's
    first piece of that length."""
    import ray

    done = ray.get(done_ref[0])
    examples = read_file(row["path"], input_format, lenient, row["prefix"])
    cap = row["cap"] if row["cap"] >= 0 else len(examples)
    place = {int(length): start for length, start in json.loads(row["start"])}
    for position, ex in enumerate(examples[:cap]):
        if ex.id in done:
            continue
        pieces = split_long(ex.text, max_chars)
        for k, (_, piece) in enumerate(pieces):
            rank = place[len(piece)]
            place[len(piece)] = rank + 1
            yield {
                "batch": rank // batch_size,
                "rank": rank,
                "file": row["file"],
                "pos": position,
                "k": k,
                "n": len(pieces),
                "id": ex.id,
                "text": ex.text,
            }


def pack_batch(group) -> dict:
    """One row per batch: its pieces as JSON, in `extract`'s order (the place in it)."""
    import numpy as np

    order = np.argsort(group["rank"], kind="stable")
    rows = [
        {
            key: group[key][i].item() if key in ("file", "pos", "k", "n") else str(group[key][i])
            for key in ("file", "pos", "k", "n", "id", "text")
        }
        for i in order
    ]
    return {"rows": np.array([json.dumps(rows, ensure_ascii=False)], dtype=object)}
