"""Extraction past one machine on Ray Data: `llm-ner extract --engine ray`.

The same records as `local.extract`, in the same order, from a pool of Ray actors that each hold one annotator
(a model on its GPU or CPU, or a client of an OpenAI-compatible server):

1. plan (`ray_inputs`): a Ray task per input file reads it (the project's readers), drops finished ids and counts
   the pieces of each length. From these counts alone the driver knows every piece's place in the
   single-process order (longest pieces first, then input order), so a piece's batch number is its place //
   ``batch_size``: the very batches `extract` makes on one machine. Batch composition moves token scores in
   the last digits (padding), so equal batches are what make the records identical.
2. answer: a second read emits one row per piece with its batch number; `groupby(batch).map_groups` hands each
   batch whole to an actor, which answers it with `Annotator.answer` and writes its records with
   `Annotator.record` (a long sentence's pieces may lie in several batches: the driver joins them).
3. write (`ray_store`): the driver is the only writer. It streams the actors' output (`iter_batches`), drops ids
   it already has (a batch redone after an actor died), and appends to shard files; at the end a k-way merge
   writes OUTPUT in input order.

Driver memory holds the finished ids (and an 8-byte digest of each text, to refuse a resume from another
input), never the texts: sentences travel through Ray's object store. A rerun resumes; a worker that dies is
restarted by Ray and its block redone. Ray is imported only here, when the engine runs: the CLI works without it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..backends import Answer
from ..backends.openai import OpenAIOptions
from ..data import Example
from ..errors import DependencyVersionError, UsageError
from ..logs import progress_bar
from ..parsing import ParseStats
from .annotator import Annotator
from .local import make_backend, parse_failure_error, summarize
from .options import ExtractOptions, ModelOptions, RayOptions
from .ray_inputs import check_output_not_read, file_pieces, id_prefixes, input_files, pack_batch, plan_file
from .ray_store import ShardStore
from .resume import (
    RESTART_HINT,
    extraction_fingerprint,
    finished_with_other_inputs,
    interrupted_line,
    made_with_other_settings,
    other_texts,
    stray_ids,
)
from .settings import RunSettings, run_settings

log = logging.getLogger(__name__)


def import_ray():
    """Ray and Ray Data, checked against llm-ner's floor; `DependencyVersionError` naming the extra."""
    from ..versions import FLOORS, check_versions

    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise DependencyVersionError(
            f"--engine ray needs Ray Data (ray[data]>={FLOORS['ray']}): pip install 'llm-ner[ray]'"
        ) from None
    check_versions(["ray"])
    return ray


class BatchAnswerer:
    """A Ray actor: one annotator, answering one batch of pieces (a group) the way `extract` answers a batch."""

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
        if backend_factory is not None:  # benchmarks: a null engine, to measure what the driver costs
            backend = backend_factory()
        else:
            backend = make_backend(model_options, settings, openai_options, device)
            if openai_options is not None:
                backend.check()
        self.annotator = Annotator(backend, settings, model_options.max_chars)

    def __call__(self, packed: dict) -> dict:
        """Answer the batches of ``packed`` (rows of `pack_batch`), each alone."""
        import numpy as np

        columns: dict[str, list] = {"file": [], "pos": [], "k": [], "n": [], "id": [], "payload": []}
        for rows_json in packed["rows"]:
            rows = json.loads(str(rows_json))
            pieces = [self.annotator.pieces(r["text"])[r["k"]][1] for r in rows]
            for r, answer in zip(rows, self.annotator.answer(pieces, [r["text"] for r in rows])):
                if r["n"] == 1:
                    record, _ = self.annotator.record(Example(r["id"], r["text"]), [answer])
                    payload = json.dumps(record, ensure_ascii=False)
                else:  # one piece of a long sentence: the driver joins the pieces
                    payload = json.dumps(
                        [r["text"], answer.text, answer.char_ranges, answer.logprobs], ensure_ascii=False
                    )
                for key in ("file", "pos", "k", "n", "id"):
                    columns[key].append(r[key])
                columns["payload"].append(payload)
        return {
            key: np.array(values, dtype=object if key in ("id", "payload") else np.int64)
            for key, values in columns.items()
        }

    def __del__(self):
        annotator = getattr(self, "annotator", None)
        if annotator is not None:
            annotator.close()


class BlockRecords:
    """The driver's reading of the actors' output blocks: the records of ids not yet ``done`` (a block redone
    after an actor died brings them again), a long sentence's once all its pieces are in."""

    def __init__(self, done: dict[str, bytes], annotator: Annotator):
        self.done, self.annotator = done, annotator
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
                record = self.join(record_id, self.pending.pop(record_id))
            self.done[record_id] = b""
            keyed.append((int(file), int(pos), record))
        return keyed

    def join(self, record_id: str, answered: dict[int, list]) -> dict:
        """The record of a long sentence from the answers of its pieces (as `extract` makes it)."""
        text = answered[0][0]
        answers = []
        for k in range(len(answered)):
            _, answer, ranges, logprobs = answered[k]
            ranges = None if ranges is None else tuple(tuple(r) for r in ranges)
            answers.append(Answer(answer, ranges, None if logprobs is None else tuple(logprobs)))
        return self.annotator.record(Example(record_id, text), answers)[0]


@dataclass
class RayRun:
    """One `run_ray_extraction` on a running Ray: its options, settings and output store."""

    ray: object
    model_options: ModelOptions
    extract_options: ExtractOptions
    ray_options: RayOptions
    openai_options: OpenAIOptions | None
    settings: RunSettings
    store: ShardStore
    backend_factory: Callable | None = None
    timings: dict = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        if self.openai_options is not None:
            return max(self.extract_options.batch_size, self.openai_options.concurrency)
        return self.extract_options.batch_size

    def reading(self, done_ref: list) -> dict:
        """The keyword arguments of the workers' file readers."""
        options = self.extract_options
        return {
            "input_format": options.input_format,
            "lenient": options.lenient,
            "max_chars": self.model_options.max_chars,
            "done_ref": done_ref,
        }

    def plan(self, rows: list[dict], reading: dict) -> list[dict]:
        """Each file's counts (`plan_file`), in file order; with ``--limit`` each file's cap set first."""

        def counts() -> list[dict]:
            planned = self.ray.data.from_items(rows, override_num_blocks=len(rows)).map(plan_file, fn_kwargs=reading)
            return sorted(planned.take_all(), key=lambda r: r["file"])

        plans = counts()
        if self.extract_options.limit:  # the first N sentences of the inputs, in order
            left = self.extract_options.limit
            for row, counted in zip(rows, plans):
                row["cap"], left = min(left, counted["sentences"]), max(0, left - counted["sentences"])
            plans = counts()
        return plans

    def check_resume(self, plans: list[dict], done: dict) -> None:
        """Refuse earlier records made from another input (other texts, or ids the input lacks)."""
        changed = sum(json.loads(p["changed"])[-1] for p in plans)
        if changed:
            first = next(json.loads(p["changed"])[0] for p in plans if json.loads(p["changed"])[-1])
            raise other_texts(self.store.output, changed, first)
        seen = sum(p["done_seen"] for p in plans)
        if seen < len(done) and not self.extract_options.limit:
            raise stray_ids(self.store.output, len(done) - seen)

    @staticmethod
    def batch_places(rows: list[dict], plans: list[dict]) -> int:
        """Set each file's ``start``: per length, the place of its first piece in `extract`'s order (longer pieces
        first; within a length, file by file); the number of pieces."""
        counts = [{int(length): n for length, n in json.loads(p["lengths"])} for p in plans]
        start_of_length, place = {}, 0
        for length in sorted({length for c in counts for length in c}, reverse=True):
            start_of_length[length] = place
            place += sum(c.get(length, 0) for c in counts)
        for row, c in zip(rows, counts):
            row["start"] = json.dumps(sorted(start_of_length.items()))
            for length in c:
                start_of_length[length] += c[length]
        return place

    def answered_blocks(self, rows: list[dict], reading: dict, places: int):
        """The actors' output: every batch of pieces answered, as a stream of blocks."""
        from ray.data import ActorPoolStrategy

        options, batch_size = self.ray_options, self.batch_size
        device = None
        if self.openai_options is None and self.backend_factory is None:
            device = "cuda" if options.gpus_per_worker > 0 else (self.model_options.device or "cpu")
        pieces = self.ray.data.from_items(rows, override_num_blocks=len(rows)).flat_map(
            file_pieces, fn_kwargs={**reading, "batch_size": batch_size}
        )
        # Batches are packed (one row each) before any actor starts: the actors may then take every CPU.
        partitions = max(1, min(-(-places // batch_size), 4 * options.workers))
        packed = pieces.groupby("batch", num_partitions=partitions).map_groups(pack_batch, batch_format="numpy")
        packed = packed.materialize()
        answered = packed.map_batches(
            BatchAnswerer,
            batch_size=1,  # one batch per call: what an actor death makes Ray redo
            batch_format="numpy",
            compute=ActorPoolStrategy(size=options.workers),
            fn_constructor_kwargs={
                "model_options": self.model_options,
                "settings": self.settings,
                "openai_options": self.openai_options,
                "device": device,
                "threads": int(options.cpus_per_worker),
                "backend_factory": self.backend_factory,
            },
            num_cpus=options.cpus_per_worker,
            num_gpus=options.gpus_per_worker or None,
            # Ray Data's actor pools restart a dead actor and redo its call (max_restarts=-1,
            # max_task_retries=-1 by default); the driver drops the ids it already has.
        )
        return answered.iter_batches(batch_size=None, batch_format="numpy")

    def write(self, blocks, done: dict, todo: int) -> tuple[int, ParseStats]:
        """Append the new records of the actors' ``blocks`` to the shards (progress bar over ``todo``); the
        records written and their parse counters. Times the driver's own work into ``timings``."""
        stats, written, driver_seconds = ParseStats(), 0, 0.0
        collect = BlockRecords(done, Annotator(None, self.settings, self.model_options.max_chars))
        first_block = None
        with progress_bar(todo, "extract[ray]", not self.extract_options.quiet) as bar:
            for block in blocks:
                began = time.perf_counter()
                first_block = first_block or began
                keyed = collect.records(block)
                for _, _, record in keyed:
                    stats += ParseStats(**record["parse"])
                if keyed:
                    self.store.append(keyed)
                    written += len(keyed)
                    bar.update(len(keyed))
                driver_seconds += time.perf_counter() - began
        self.timings["answer_seconds"] = time.perf_counter() - first_block if first_block else 0.0
        self.timings["driver_seconds"] = driver_seconds
        return written, stats

    def run(self, files: list[Path], fingerprint: dict) -> int:
        """Plan, answer, write, merge; the exit status."""
        self.quiet_ray_data()
        if self.extract_options.restart:
            self.store.clear()
        done = self.store.done() if not self.extract_options.restart else {}
        reading = self.reading([self.ray.put(done)])  # in a list: Ray Data passes it through to each worker
        rows = [
            {"file": i, "path": str(f), "prefix": p, "cap": -1}
            for i, (f, p) in enumerate(zip(files, id_prefixes(files)))
        ]
        plans = self.plan(rows, reading)
        self.check_resume(plans, done)
        todo = sum(p["todo"] for p in plans)
        total = sum(min(p["sentences"], r["cap"]) if r["cap"] >= 0 else p["sentences"] for p, r in zip(plans, rows))
        plural = "s" if len(files) > 1 else ""
        log.info(
            f"prompt {self.settings.prompt.name} ({self.settings.source}), format {self.settings.answer_format}, "
            f"{total} sentences in {len(files)} file{plural}, {todo} to do, on {self.ray_options.workers} Ray workers"
        )
        for note in self.settings.notes:
            log.info("note: %s", note)
        if self.store.output.exists() and not self.store.work.exists():
            if todo:
                raise finished_with_other_inputs(self.store.output, todo)
            log.info("nothing to do: %s holds every sentence", self.store.output)
            return 0
        places = self.batch_places(rows, plans)
        self.store.start(fingerprint, files)
        written, stats = 0, ParseStats()
        if todo:
            try:
                written, stats = self.write(self.answered_blocks(rows, reading, places), done, todo)
            except KeyboardInterrupt:
                self.store.close()
                log.warning(interrupted_line(len(done), total))
                return 130
        return self.finish(written, stats)

    def finish(self, written: int, stats: ParseStats) -> int:
        """Merge the shards into the output, report, and refuse answers that could not be parsed."""
        began = time.perf_counter()
        options = self.ray_options
        count = self.store.merge(options.part_records if options.output_dir else None)
        merge_seconds = time.perf_counter() - began
        self.timings.update(records=written, merge_seconds=merge_seconds)
        if written:
            log.info(
                f"driver: {1000 * self.timings['driver_seconds'] / written:.3f} ms per record while answering, "
                f"merge {1000 * merge_seconds / max(count, 1):.3f} ms per record"
            )
        log.info("this run: %s", summarize(stats))
        log.info("wrote %d records to %s", count, self.store.output)
        for part in self.store.finished_files():
            unusable = parse_failure_error(part, self.extract_options.max_parse_failures)
            if unusable is not None:
                raise unusable
        return 0

    @staticmethod
    def quiet_ray_data() -> None:
        """No line per dataset run and no progress bars of Ray Data's own: the driver shows sentences done."""
        from ray.data import DataContext

        logging.getLogger("ray.data").setLevel(logging.WARNING)
        context = DataContext.get_current()
        context.enable_progress_bars = False
        if hasattr(context, "print_on_execution_start"):
            context.print_on_execution_start = False


def run_ray_extraction(
    model_options: ModelOptions,
    extract_options: ExtractOptions,
    ray_options: RayOptions,
    openai_options: OpenAIOptions | None = None,
    backend_factory: Callable | None = None,
    timings: dict | None = None,
) -> int:
    """`llm-ner extract --engine ray`: plan, answer on the actor pool, write shards, merge; 0, 1 when the answers
    could not be parsed (see `parse_failure_error`), or 130 when interrupted (resumable).

    ``backend_factory`` (benchmarks): a picklable callable each actor calls for its backend instead of
    `make_backend` (a null engine measures the driver's own cost); ``timings`` (benchmarks) receives ``records``
    written, ``answer_seconds`` (first to last block), ``driver_seconds`` (the driver's own work on the blocks)
    and ``merge_seconds``.
    """
    ray = import_ray()
    output = Path(extract_options.output)
    check_output_not_read(extract_options.input, output)
    remote = openai_options is not None
    settings = run_settings(model_options, openai_options.served_model if remote else None)
    if backend_factory is None:  # on the driver: an actor's UsageError would come back as Ray's traceback
        settings.check_prompt_budget_early(served=remote)
    fingerprint = extraction_fingerprint(settings, model_options, openai_options)
    files = input_files(extract_options.input)
    store = ShardStore(output)
    if not extract_options.restart:
        earlier = store.earlier_settings()
        refusal = made_with_other_settings(*earlier, fingerprint, RESTART_HINT) if earlier is not None else None
        if refusal is not None:
            raise refusal
    if ray_options.output_dir and output.is_file():
        raise UsageError(f"--output-dir: {output} is a file")
    if not ray_options.output_dir and output.is_dir():
        raise UsageError(f"--output {output} is a folder (add --output-dir to write part files there)")
    started_here = not ray.is_initialized()
    run = None
    try:  # ray.init inside: a SIGTERM or Ctrl-C while the runtime starts still shuts down what it started
        if started_here:
            # A runtime of this run alone listens on the loopback interface only.
            local = {} if ray_options.ray_address else {"_node_ip_address": "127.0.0.1"}
            ray.init(address=ray_options.ray_address, include_dashboard=False, log_to_driver=True, **local)
        run = RayRun(ray, model_options, extract_options, ray_options, openai_options, settings, store, backend_factory)
        return run.run(files, fingerprint)
    finally:
        if timings is not None and run is not None:
            timings.update(run.timings)
        store.close()
        if started_here:
            ray.shutdown()
