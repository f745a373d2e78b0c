"""`extract --engine ray`, the output: the driver alone appends records to shard files in ``OUTPUT.ray/`` (a
manifest holds the run fingerprint and the shard list), and at the end a k-way merge of the sorted shards writes
OUTPUT in input order, holding one shard at a time, never the corpus."""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..data import write_jsonl_atomic, write_text_atomic
from ..fingerprints import without_run_record
from .resume import RESTART_HINT, RUN_FILE, read_json_lines

MANIFEST = "manifest.json"

SHARD_RECORDS = 10_000  # records per shard file: what the final merge sorts in memory at once

MERGE_FAN_IN = 256  # shards merged at once (open files)


def text_digest(text: str) -> bytes:
    """8 bytes that tell two texts apart (a resume from another input)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


def work_dir(output: Path) -> Path:
    return output.with_name(output.name + ".ray")


def run_file(output: Path) -> Path:
    return output.with_name(output.name + "." + RUN_FILE)


class ShardStore:
    """``OUTPUT.ray/``: the manifest (run fingerprint, inputs, shards) and shard files of
    ``[file index, position, record]`` lines, appended by the driver only."""

    def __init__(self, output: str | Path, shard_records: int = SHARD_RECORDS):
        self.output = Path(output)
        self.work = work_dir(self.output)
        self.manifest = self.work / MANIFEST
        self.run_file = run_file(self.output)
        self.shard_records = shard_records
        self.shards: list[str] = []
        self._handle = None
        self._lines = 0

    def shard_paths(self) -> list[Path]:
        return sorted(self.work.glob("shard-*.jsonl")) if self.work.is_dir() else []

    def earlier_settings(self) -> tuple[Path, dict] | None:
        """(what holds earlier results, their fingerprint), None when there are none; `ResumeMismatch`
        for results without a readable fingerprint."""
        for results, record in ((self.work, self.manifest), (self.output, self.run_file)):
            if not results.exists():
                continue
            try:
                return results, json.loads(record.read_text(encoding="utf-8"))["settings"]
            except (OSError, ValueError, KeyError, TypeError):
                raise without_run_record(results, record, "llm-ner extract", RESTART_HINT) from None
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
