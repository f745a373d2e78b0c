"""Extraction past one machine on Ray Data: `llm-ner extract --engine ray`.

The same records as `extraction.extract`, in the same order, from a pool of Ray actors that each hold
one engine (`make_backend`: a model on its GPU or CPU, or a client of an OpenAI-compatible server):

1. plan: a Ray task per input file reads it (the project's readers), drops finished ids and counts the
   pieces (`split_long`) of each length. From these counts alone the driver knows every piece's place
   in the single-process order (longest pieces first, then input order), so a piece's batch number is
   its place // ``batch_size``: the very batches `extract` makes on one machine. Batch composition moves
   token scores in the last digits (padding), so equal batches are what make the records identical.
2. answer: a second read emits one row per piece with its batch number; `groupby(batch).map_groups`
   hands each batch whole to an actor, which answers it with `answer_pieces` and writes its records
   with `make_record` (a long sentence's pieces may lie in several batches: the driver joins them).
3. write: the driver is the only writer. It streams the actors' output (`iter_batches`), drops ids it
   already has (a batch redone after an actor died), and appends to shard files in ``OUTPUT.ray/``
   (flushed and synced; a manifest holds the run fingerprint and the shard list). Each record carries
   its order key (file index, position), so at the end each shard is sorted and a k-way merge writes
   OUTPUT in input order, holding one shard at a time, never the corpus.

Driver memory holds the finished ids (and an 8-byte digest of each text, to refuse a resume from
another input), never the texts: sentences travel through Ray's object store. A rerun resumes; a
worker that dies is restarted by Ray and its block redone. Ray is imported only here, when the engine
runs: the CLI works without it.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import heapq
import itertools
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .data import Example, read_inputs, split_long, write_jsonl_atomic, write_text_atomic
from .errors import DependencyVersionError, ResumeMismatch, UsageError
from .extraction import (
    RESTART_HINT,
    RUN_FILE,
    ExtractOptions,
    ModelOptions,
    RunSettings,
    answer_pieces,
    extraction_fingerprint,
    make_backend,
    make_record,
    parse_failure_error,
    read_json_lines,
    settings_differences,
    summarize,
)
from .openai_backend import OpenAIOptions
from .options import CliOptions, non_negative_float, option, positive_int
from .parsing import ParseStats

MANIFEST = "manifest.json"
SHARD_RECORDS = 10_000  # records per shard file: what the final merge sorts in memory at once
MERGE_FAN_IN = 256  # shards merged at once (open files)


@dataclass
class RayOptions(CliOptions):
    """Where and on how many workers `llm-ner extract --engine ray` runs."""

    ray_address: str | None = option(
        None,
        help="Ray cluster to join: auto (the one `ray start` runs on this machine) or HEAD_IP:6379 "
        "(default: start a Ray runtime of this run's own, on 127.0.0.1)",
    )
    workers: int = option(1, type=positive_int, help="actors, each holding one engine (default: %(default)s)")
    gpus_per_worker: float = option(
        0.0,
        type=non_negative_float,
        help="GPUs per actor; > 0 loads the model on the actor's GPU (default: %(default)s)",
    )
    cpus_per_worker: float = option(
        1.0, type=non_negative_float, help="CPUs per actor, also its torch threads (default: %(default)s)"
    )
    output_dir: bool = option(
        False,
        help="--output is a folder: the records are written there as part-00000.json, ... (--part-records each, in "
        "input order) instead of one file, for corpora too large for one",
    )
    part_records: int = option(
        1_000_000, type=positive_int, help="records per part file with --output-dir (default: %(default)s)"
    )


# ---------------------------------------------------------------------------------------------
# Inputs


def input_files(spec: str | Path) -> list[Path]:
    """The files of ``--input``: a file, every file under a folder (hidden ones skipped), or the files a
    glob matches (``**`` recursive), in sorted order."""
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
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
        for candidate in (output, _work_dir(output), _run_file(output)):
            if fnmatch.fnmatch(str(candidate.absolute()), pattern):
                raise UsageError(f"--output {output}: the input glob {spec} matches it; choose another --output")


def text_digest(text: str) -> bytes:
    """8 bytes that tell two texts apart (a resume from another input)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


def read_file(path: str, input_format: str, lenient: bool, prefix: str) -> list[Example]:
    """The sentences of one input file, ids prefixed."""
    examples = read_inputs(path, input_format, lenient=lenient)
    if prefix:
        examples = [Example(prefix + ex.id, ex.text) for ex in examples]
    return examples


# ---------------------------------------------------------------------------------------------
# Work on the Ray workers (module-level functions and classes: Ray pickles them by reference)


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


class BatchAnswerer:
    """A Ray actor's engine: answers one batch of pieces (a group) the way `extract` answers a batch."""

    def __init__(
        self,
        model_options: ModelOptions,
        settings: RunSettings,
        openai_options: OpenAIOptions | None,
        device: str | None,
        threads: int,
        backend_factory: Callable | None = None,
    ):
        if threads >= 1 and openai_options is None and backend_factory is None:
            import torch

            torch.set_num_threads(threads)
        self.settings = settings
        self.max_chars = model_options.max_chars
        if backend_factory is not None:  # benchmarks: a null engine, to measure what the driver costs
            self.backend = backend_factory()
        else:
            self.backend = make_backend(model_options, settings, openai_options, device)
            if openai_options is not None:
                self.backend.check()

    def __call__(self, packed: dict) -> dict:
        """Answer the batches of ``packed`` (rows of `pack_batch`), each alone."""
        import numpy as np

        columns: dict[str, list] = {"file": [], "pos": [], "k": [], "n": [], "id": [], "payload": []}
        for rows_json in packed["rows"]:
            rows = json.loads(str(rows_json))
            pieces = [split_long(r["text"], self.max_chars) for r in rows]
            answered = answer_pieces(self.backend, self.settings, [p[r["k"]][1] for r, p in zip(rows, pieces)])
            for r, p, (answer, scores) in zip(rows, pieces, answered):
                if r["n"] == 1:
                    example = Example(r["id"], r["text"])
                    record, _ = make_record(
                        example, p, [answer], self.settings.prompt, None if scores is None else [scores]
                    )
                    payload = json.dumps(record, ensure_ascii=False)
                else:  # one piece of a long sentence: the driver joins the pieces
                    payload = json.dumps([r["text"], answer, scores], ensure_ascii=False)
                for key in ("file", "pos", "k", "n", "id"):
                    columns[key].append(r[key])
                columns["payload"].append(payload)
        return {
            key: np.array(values, dtype=object if key in ("id", "payload") else np.int64)
            for key, values in columns.items()
        }

    def __del__(self):
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()


# ---------------------------------------------------------------------------------------------
# The driver's output: shards, manifest, merge


def _work_dir(output: Path) -> Path:
    return output.with_name(output.name + ".ray")


def _run_file(output: Path) -> Path:
    return output.with_name(output.name + "." + RUN_FILE)


class ShardStore:
    """``OUTPUT.ray/``: the manifest (run fingerprint, inputs, shards) and shard files of
    ``[file index, position, record]`` lines, appended by the driver only."""

    def __init__(self, output: str | Path, shard_records: int = SHARD_RECORDS):
        self.output = Path(output)
        self.work = _work_dir(self.output)
        self.manifest = self.work / MANIFEST
        self.run_file = _run_file(self.output)
        self.shard_records = shard_records
        self.shards: list[str] = []
        self._handle = None
        self._lines = 0

    def shard_paths(self) -> list[Path]:
        return sorted(self.work.glob("shard-*.jsonl")) if self.work.is_dir() else []

    def earlier_settings(self) -> tuple[Path, dict] | None:
        """(what holds earlier results, their fingerprint), None when there are none; `ResumeMismatch`
        for results without a readable fingerprint."""
        for results, run_file in ((self.work, self.manifest), (self.output, self.run_file)):
            if not results.exists():
                continue
            try:
                return results, json.loads(run_file.read_text(encoding="utf-8"))["settings"]
            except (OSError, ValueError, KeyError, TypeError):
                raise ResumeMismatch(
                    f"{results} exists but was not written by `llm-ner extract` with a run record ({run_file} "
                    f"missing or unreadable); {RESTART_HINT}"
                ) from None
        return None

    def done(self) -> dict[str, bytes]:
        """Finished ids and their texts' digests: the shards (a torn last line cut off), or a finished output."""
        done: dict[str, bytes] = {}
        if self.work.is_dir():
            for shard in self.shard_paths():
                for _, _, record in read_json_lines(shard, repair=True):
                    done[str(record["id"])] = text_digest(record["text"])
        elif self.output.exists():
            for part in self.finished_files():
                for record in read_json_lines(part):
                    done[str(record["id"])] = text_digest(record["text"])
        return done

    def finished_files(self) -> list[Path]:
        if self.output.is_dir():
            return sorted(self.output.glob("part-*.json"))
        return [self.output] if self.output.is_file() else []

    def start(self, fingerprint: dict, inputs: Sequence[Path]) -> None:
        """Write the manifest (before any record) and open a new shard for this run."""
        self.work.mkdir(parents=True, exist_ok=True)
        self.shards = [p.name for p in self.shard_paths()]
        self.fingerprint, self.inputs = fingerprint, [str(p) for p in inputs]
        self._open_shard()

    def _write_manifest(self) -> None:
        manifest = {"settings": self.fingerprint, "inputs": self.inputs, "shards": self.shards}
        write_text_atomic(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", self.manifest)

    def _open_shard(self) -> None:
        if self._handle is not None:
            self._handle.close()
        name = f"shard-{len(self.shards):05d}.jsonl"
        self.shards.append(name)
        self._write_manifest()
        self._handle = open(self.work / name, "a", encoding="utf-8")  # noqa: SIM115 (open for the whole run)
        self._lines = 0

    def append(self, keyed: Sequence[tuple[int, int, dict]]) -> None:
        """Append ``(file index, position, record)`` lines, flushed and synced."""
        if self._lines >= self.shard_records:
            self._open_shard()
        self._handle.write("".join(json.dumps(list(k), ensure_ascii=False) + "\n" for k in keyed))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._lines += len(keyed)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def clear(self) -> None:
        """Forget earlier results: the work folder, the output and its run record."""
        import shutil

        if self.work.is_dir():
            shutil.rmtree(self.work)
        for part in self.finished_files():
            part.unlink()
        if self.output.is_dir():
            self.output.rmdir()
        self.run_file.unlink(missing_ok=True)

    def merge(self, part_records: int | None = None) -> int:
        """Write the output in input order (one file, or ``part_records`` records per part file in the
        output folder) by a k-way merge of the sorted shards; keep the fingerprint beside it as
        ``OUTPUT.run.json``, as `extract` does; remove the work folder."""
        self.close()
        for shard in self.shard_paths():  # sorted one at a time: memory bounded by a shard
            keyed = sorted(read_json_lines(shard, repair=True), key=_order)
            write_jsonl_atomic(keyed, shard) if keyed else shard.unlink()
        shards = self.shard_paths()
        while len(shards) > MERGE_FAN_IN:  # bounded open files: merge the first ones into one sorted shard
            merged_shard = self.work / f"shard-m{len(list(self.work.glob('shard-m*'))):05d}.jsonl"
            write_jsonl_atomic(_merged([read_json_lines(s) for s in shards[:MERGE_FAN_IN]]), merged_shard)
            for shard in shards[:MERGE_FAN_IN]:
                shard.unlink()
            shards = self.shard_paths()
        merged = (record for _, _, record in _merged([read_json_lines(shard) for shard in shards]))
        if part_records is None:
            written = write_jsonl_atomic(merged, self.output)
        else:
            self.output.mkdir(parents=True, exist_ok=True)
            written, index = 0, 0
            while True:  # streamed: a part is never held in memory
                part = self.output / f"part-{index:05d}.json"
                count = write_jsonl_atomic(itertools.islice(merged, part_records), part)
                if not count and index:
                    part.unlink()
                    break
                written, index = written + count, index + 1
        manifest = json.loads(self.manifest.read_text(encoding="utf-8"))
        write_text_atomic(
            json.dumps({"settings": manifest["settings"]}, ensure_ascii=False, indent=2) + "\n", self.run_file
        )
        import shutil

        shutil.rmtree(self.work)
        return written


def _order(line: list) -> tuple[int, int]:
    return line[0], line[1]


def _merged(streams: list[Iterator]) -> Iterator[list]:
    """The shard lines of sorted ``streams`` in input order; a line twice (a merge cut short between writing
    a merged shard and removing its sources) once."""
    last = None
    for line in heapq.merge(*streams, key=_order):
        if _order(line) != last:
            yield line
        last = _order(line)


# ---------------------------------------------------------------------------------------------
# The run


def import_ray():
    """Ray and Ray Data, checked against llm-ner's floor; `DependencyVersionError` naming the extra."""
    from .versions import FLOORS, check_versions

    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise DependencyVersionError(
            f"--engine ray needs Ray Data (ray[data]>={FLOORS['ray']}): pip install 'llm-ner[ray]'"
        ) from None
    check_versions(["ray"])
    return ray


def run_ray_extraction(
    model_options: ModelOptions,
    extract_options: ExtractOptions,
    ray_options: RayOptions,
    openai_options: OpenAIOptions | None = None,
    backend_factory: Callable | None = None,
    timings: dict | None = None,
) -> int:
    """`llm-ner extract --engine ray`: plan, answer on the actor pool, write shards, merge; 0, 1 when
    the answers could not be parsed (see `parse_failure_error`), or 130 when interrupted (resumable).

    ``backend_factory`` (benchmarks): a picklable callable each actor calls for its backend instead of
    `make_backend` (a null engine measures the driver's own cost); ``timings`` (benchmarks) receives
    ``records`` written, ``answer_seconds`` (first to last block), ``driver_seconds`` (the driver's own
    work on the blocks) and ``merge_seconds``.
    """
    ray = import_ray()
    output = Path(extract_options.output)
    check_output_not_read(extract_options.input, output)
    remote = openai_options is not None
    settings = model_options.settings(openai_options.served_model if remote else None)
    fingerprint = extraction_fingerprint(settings, model_options, openai_options)
    files = input_files(extract_options.input)
    store = ShardStore(output)
    if not extract_options.restart:
        earlier = store.earlier_settings()
        if earlier is not None:
            differences = settings_differences(earlier[1], fingerprint)
            if differences:
                raise ResumeMismatch(
                    f"{earlier[0]} was made with other settings ({'; '.join(differences)}); {RESTART_HINT}"
                )
    if ray_options.output_dir and output.is_file():
        raise UsageError(f"--output-dir: {output} is a file")
    if not ray_options.output_dir and output.is_dir():
        raise UsageError(f"--output {output} is a folder (add --output-dir to write part files there)")

    started_here = not ray.is_initialized()
    if started_here:
        # A runtime of this run alone listens on the loopback interface only.
        local = {} if ray_options.ray_address else {"_node_ip_address": "127.0.0.1"}
        ray.init(address=ray_options.ray_address, include_dashboard=False, log_to_driver=True, **local)
    try:
        return _run(
            ray,
            files,
            store,
            settings,
            fingerprint,
            model_options,
            extract_options,
            ray_options,
            openai_options,
            backend_factory,
            timings if timings is not None else {},
        )
    finally:
        store.close()
        if started_here:
            ray.shutdown()


def _run(
    ray,
    files,
    store,
    settings,
    fingerprint,
    model_options,
    extract_options,
    ray_options,
    openai_options,
    backend_factory,
    timings: dict,
) -> int:
    from ray.data import ActorPoolStrategy, DataContext
    from tqdm.auto import tqdm

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # not a line per dataset run
    context = DataContext.get_current()
    context.enable_progress_bars = False  # the driver shows its own: sentences done / total
    if hasattr(context, "print_on_execution_start"):
        context.print_on_execution_start = False
    if extract_options.restart:
        store.clear()
    done = store.done() if not extract_options.restart else {}
    done_ref = [ray.put(done)]  # in a list: Ray Data passes it through, each worker gets it from the store
    prefixes = id_prefixes(files)
    reading = {
        "input_format": extract_options.input_format,
        "lenient": extract_options.lenient,
        "max_chars": model_options.max_chars,
        "done_ref": done_ref,
    }
    rows = [{"file": i, "path": str(f), "prefix": p, "cap": -1} for i, (f, p) in enumerate(zip(files, prefixes))]

    def plan(rows: list[dict]) -> list[dict]:
        planned = ray.data.from_items(rows, override_num_blocks=len(rows)).map(plan_file, fn_kwargs=reading)
        return sorted(planned.take_all(), key=lambda r: r["file"])

    plans = plan(rows)
    if extract_options.limit:  # the first N sentences of the inputs, in order
        left = extract_options.limit
        for row, counted in zip(rows, plans):
            row["cap"], left = min(left, counted["sentences"]), max(0, left - counted["sentences"])
        plans = plan(rows)
    changed = sum(json.loads(p["changed"])[-1] for p in plans)
    if changed:
        first = next(json.loads(p["changed"])[0] for p in plans if json.loads(p["changed"])[-1])
        raise ResumeMismatch(
            f"{store.output}: earlier records have another text than the input for {changed} ids (first: id "
            f"{first!r}): made from another input; {RESTART_HINT}"
        )
    seen = sum(p["done_seen"] for p in plans)
    if seen < len(done) and not extract_options.limit:
        raise ResumeMismatch(
            f"{store.output}: {len(done) - seen} earlier records have ids that are not in the input: made from "
            f"another input; {RESTART_HINT}"
        )
    todo = sum(p["todo"] for p in plans)
    total = sum(min(p["sentences"], r["cap"]) if r["cap"] >= 0 else p["sentences"] for p, r in zip(plans, rows))
    print(
        f"prompt {settings.prompt.name} ({settings.source}), format {settings.answer_format}, {total} sentences in "
        f"{len(files)} file{'s' if len(files) > 1 else ''}, {todo} to do, on {ray_options.workers} Ray workers",
        file=sys.stderr,
    )
    for note in settings.notes:
        print(f"note: {note}", file=sys.stderr)
    if store.output.exists() and not store.work.exists():
        if todo:
            raise ResumeMismatch(
                f"{store.output} is a finished run of other inputs ({todo} sentences are not in it); {RESTART_HINT}"
            )
        print(f"nothing to do: {store.output} holds every sentence", file=sys.stderr)
        return 0

    # Each piece's place in `extract`'s order: longer pieces first; within a length, file by file.
    counts = [{int(length): n for length, n in json.loads(p["lengths"])} for p in plans]
    longer_first = sorted({length for c in counts for length in c}, reverse=True)
    start_of_length, place = {}, 0
    for length in longer_first:
        start_of_length[length] = place
        place += sum(c.get(length, 0) for c in counts)
    for row, c in zip(rows, counts):
        row["start"] = json.dumps(sorted(start_of_length.items()))
        for length in c:
            start_of_length[length] += c[length]
    batch_size = (
        max(extract_options.batch_size, openai_options.concurrency) if openai_options else extract_options.batch_size
    )
    batches = -(-place // batch_size)

    store.start(fingerprint, files)
    stats = ParseStats()
    interrupted = False
    driver_seconds = 0.0
    written = 0
    if todo:
        device = None
        if openai_options is None and backend_factory is None:
            device = "cuda" if ray_options.gpus_per_worker > 0 else (model_options.device or "cpu")
        pieces = ray.data.from_items(rows, override_num_blocks=len(rows)).flat_map(
            file_pieces, fn_kwargs={**reading, "batch_size": batch_size}
        )
        # Batches are packed (one row each) before any actor starts: the actors may then take every CPU.
        partitions = max(1, min(batches, 4 * ray_options.workers))
        packed = pieces.groupby("batch", num_partitions=partitions).map_groups(pack_batch, batch_format="numpy")
        packed = packed.materialize()
        answered = packed.map_batches(
            BatchAnswerer,
            batch_size=1,  # one batch per call: what an actor death makes Ray redo
            batch_format="numpy",
            compute=ActorPoolStrategy(size=ray_options.workers),
            fn_constructor_kwargs={
                "model_options": model_options,
                "settings": settings,
                "openai_options": openai_options,
                "device": device,
                "threads": int(ray_options.cpus_per_worker),
                "backend_factory": backend_factory,
            },
            num_cpus=ray_options.cpus_per_worker,
            num_gpus=ray_options.gpus_per_worker or None,
            # Ray Data's actor pools restart a dead actor and redo its call (max_restarts=-1,
            # max_task_retries=-1 by default); the driver drops the ids it already has.
        )
        bar = tqdm(total=todo, unit="sent", desc="extract[ray]", disable=extract_options.quiet, dynamic_ncols=True)
        collect = BlockRecords(done, settings, model_options.max_chars)
        try:
            first_block = None
            for block in answered.iter_batches(batch_size=None, batch_format="numpy"):
                began = time.perf_counter()
                first_block = first_block or began
                keyed = collect.records(block)
                for _, _, record in keyed:
                    stats += ParseStats(**record["parse"])
                if keyed:
                    store.append(keyed)
                    written += len(keyed)
                    bar.update(len(keyed))
                driver_seconds += time.perf_counter() - began
            timings["answer_seconds"] = time.perf_counter() - first_block if first_block else 0.0
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
    if interrupted:
        store.close()
        print(f"interrupted: {len(done)}/{total} sentences saved; rerun the same command to resume", file=sys.stderr)
        return 130
    began = time.perf_counter()
    count = store.merge(ray_options.part_records if ray_options.output_dir else None)
    merge_seconds = time.perf_counter() - began
    timings.update(records=written, driver_seconds=driver_seconds, merge_seconds=merge_seconds)
    if written:
        print(
            f"driver: {1000 * driver_seconds / written:.3f} ms per record while answering, merge "
            f"{1000 * merge_seconds / max(count, 1):.3f} ms per record",
            file=sys.stderr,
        )
    print(f"this run: {summarize(stats)}", file=sys.stderr)
    print(f"wrote {count} records to {store.output}", file=sys.stderr)
    for part in store.finished_files():
        unusable = parse_failure_error(part, extract_options.max_parse_failures)
        if unusable is not None:
            raise unusable
    return 0


class BlockRecords:
    """The driver's reading of the actors' output blocks: the records of ids not yet ``done`` (a block
    redone after an actor died brings them again), a long sentence's once all its pieces are in."""

    def __init__(self, done: dict[str, bytes], settings: RunSettings, max_chars: int):
        self.done, self.settings, self.max_chars = done, settings, max_chars
        self.pending: dict[str, dict[int, list]] = {}  # answered pieces of long sentences not yet complete

    def records(self, block: dict) -> list[tuple[int, int, dict]]:
        """``(file index, position, record)`` of the new sentences of ``block``; they join ``done``."""
        keyed = []
        for file, pos, k, n, record_id, payload in zip(
            block["file"], block["pos"], block["k"], block["n"], block["id"], block["payload"]
        ):
            record_id = str(record_id)
            if record_id in self.done:
                continue
            if n == 1:
                record = json.loads(payload)
            else:
                self.pending.setdefault(record_id, {})[int(k)] = json.loads(payload)
                if len(self.pending[record_id]) < n:
                    continue
                record = _join_pieces(record_id, self.pending.pop(record_id), self.settings, self.max_chars)
            self.done[record_id] = b""
            keyed.append((int(file), int(pos), record))
        return keyed


def _join_pieces(record_id: str, answered: dict[int, list], settings: RunSettings, max_chars: int) -> dict:
    """The record of a long sentence from the answers of its pieces (as `extract` makes it)."""
    text = answered[0][0]
    answers = [answered[k] for k in range(len(answered))]
    token_scores = None
    if all(scores is not None for _, _, scores in answers):
        token_scores = [
            (None if ranges is None else [tuple(r) for r in ranges], logprobs) for _, _, (ranges, logprobs) in answers
        ]
    record, _ = make_record(
        Example(record_id, text), split_long(text, max_chars), [a for _, a, _ in answers], settings.prompt, token_scores
    )
    return record
