"""A full disk, a read-only one, no permission (issue 31: tracebacks from every writing command).

Each writing command, in-process, with the failure injected where the write happens (the rename of
`atomic_path`, a ``write()`` that finds the disk full, the append of a resumable extraction): one line naming
the path the user gave and what to do, exit 1, the previous output byte for byte, no temporary file left.
And the temporary files of killed writers: removed by the next write of the same file, a live writer's kept.
"""

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import one_layer_qwen3
from test_outputs import GOLD, run_cli, write_jsonl

import llm_ner.data.outputs as files_module
from llm_ner.data import atomic_path, write_text_atomic
from llm_ner.errors import WRITE_FAILURES

PREVIOUS = b"the previous output\n"
ERRNOS = [errno.ENOSPC, errno.EROFS, errno.EACCES]


def replace_fails(monkeypatch, code: int) -> None:
    """`os.replace` fails as the kernel says it: the source and destination named."""

    def failing(src, dst, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(src), None, str(dst))

    monkeypatch.setattr(os, "replace", failing)


# (command, arguments with {d} the test's folder, the output the user named)
COMMANDS = [
    ("convert", "convert --input {d}/gold.json --output {d}/out/train.jsonl", "out/train.jsonl"),
    ("export", "export {d}/gold.json --to labelstudio --output {d}/out/tasks.json", "out/tasks.json"),
    ("evaluate", "evaluate --gold {d}/gold.json --pred {d}/gold.json --json {d}/out/scores.json", "out/scores.json"),
    ("select", "select --pred {d}/gold.json --by random -n 1 --output {d}/out/next.json", "out/next.json"),
    ("curve", "curve --gold {d}/gold.json --pred {d}/gold.json --labelled {d}/gold.json --arm random --round 0 "
     "--resamples 10 --output {d}/out/curve.jsonl", "out/curve.jsonl"),
    ("report", "report --gold {d}/gold.json --pred x={d}/gold.json --resamples 10 --out {d}/out", "out"),
]  # fmt: skip


def prepare(tmp_path: Path, output: str, content: bytes = PREVIOUS) -> Path:
    """The gold file, and a previous output where the command writes (report: a previous report.md)."""
    write_jsonl(tmp_path / "gold.json", GOLD)
    (tmp_path / "out").mkdir()
    previous = tmp_path / output / "report.md" if output == "out" else tmp_path / output
    previous.write_bytes(content)
    return previous


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("wrote", "warning"))]
    assert "Traceback" not in err and lines and lines[-1].startswith("error: "), err
    return lines[-1]


@pytest.mark.parametrize("code", ERRNOS, ids=[errno.errorcode[c] for c in ERRNOS])
@pytest.mark.parametrize("name, template, output", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_a_failed_rename_is_one_line_and_keeps_the_previous_output(
    tmp_path, monkeypatch, capsys, name, template, output, code
):
    content = b"\n" if name == "curve" else PREVIOUS  # curve reads its earlier points: none here
    previous = prepare(tmp_path, output, content)
    replace_fails(monkeypatch, code)
    status, err = run_cli(template.format(d=tmp_path).split(), capsys)
    assert status == 1, err
    line = one_error_line(err)
    assert line.startswith(f"error: {tmp_path / output}: {os.strerror(code)}; {WRITE_FAILURES[code]}"), line
    assert previous.read_bytes() == content
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [previous.name]  # no temporary left


def test_a_full_disk_found_by_write_names_the_output(tmp_path, monkeypatch, capsys):
    """ENOSPC raised by ``write()`` names no file: the line names the output, and says it is unchanged."""
    previous = prepare(tmp_path, "out/train.jsonl")
    real_open = open

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def open_full(file, mode="r", *args, **kwargs):  # reading the input still works
        handle = real_open(file, mode, *args, **kwargs)
        return FullDisk(handle) if "w" in mode else handle

    monkeypatch.setattr(files_module, "open", open_full, raising=False)
    status, err = run_cli(["convert", "--input", str(tmp_path / "gold.json"), "--output", str(previous)], capsys)
    assert status == 1, err
    line = one_error_line(err)
    assert line == (
        f"error: {previous}: No space left on device; {WRITE_FAILURES[errno.ENOSPC]}; {previous} is unchanged"
    ), line
    assert previous.read_bytes() == PREVIOUS
    assert sorted(p.name for p in previous.parent.iterdir()) == [previous.name]


def test_a_full_disk_during_extraction_keeps_the_finished_part_and_resumes(tmp_path, monkeypatch, capsys):
    model = one_layer_qwen3(tmp_path / "tiny", [g["text"] for g in GOLD])
    gold = write_jsonl(tmp_path / "gold.json", GOLD)
    output = tmp_path / "pred.json"
    arguments = ["extract", "--model", str(model), "--input", str(gold), "--output", str(output)]
    arguments += ["--max-new-tokens", "4", "--quiet", "--max-parse-failures", "1", "--batch-size", "1"]
    real_fsync = os.fsync
    calls = []

    def fsync_fails_second(fd):  # the second batch finds the disk full
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_fails_second)
    status, err = run_cli(arguments, capsys)
    assert status == 1, err
    line = one_error_line(err)
    part = output.with_name("pred.json.parts") / "rank-0.jsonl"
    assert line.startswith(f"error: {part}: No space left on device; {WRITE_FAILURES[errno.ENOSPC]}"), line
    assert line.endswith("rerun the same command to resume"), line
    assert not output.exists()
    monkeypatch.setattr(os, "fsync", real_fsync)
    status, err = run_cli(arguments, capsys)
    assert status == 0, err
    assert len(output.read_text(encoding="utf-8").splitlines()) == 3
    assert not output.with_name("pred.json.parts").exists()


def test_a_killed_writers_temporary_is_removed_a_live_ones_kept(tmp_path):
    target = tmp_path / "pred.json"
    # a writer killed inside its write (os._exit: no clean-up runs), as SIGKILL or a power cut would
    script = (
        "import os, sys\nfrom llm_ner.data import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_text('half')\n    os._exit(9)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    assert subprocess.run([sys.executable, "-c", script, str(target)], env=env).returncode == 9
    (stale,) = [p for p in tmp_path.iterdir() if p.name.startswith(".pred.json.")]
    with atomic_path(target) as live:
        assert not stale.exists()  # removed before this write began
        live.write_text("live")
        write_text_atomic("another\n", target)  # a second write of the same file while the first is live
        assert live.exists() and live.read_text() == "live"
    assert target.read_text() == "live"
    assert [p.name for p in tmp_path.iterdir()] == ["pred.json"]


def test_a_killed_reports_staging_folder_is_removed(tmp_path, capsys):
    gold = write_jsonl(tmp_path / "gold.json", GOLD)
    out = tmp_path / "report"
    out.mkdir()
    script = (
        "import os, sys, tempfile\nfrom pathlib import Path\nfrom llm_ner.data import temporary_prefix\n"
        "out = Path(sys.argv[1])\nstaging = tempfile.mkdtemp(prefix=temporary_prefix(out / 'report'), dir=out)\n"
        "(Path(staging) / 'report.md').write_text('half')\nos._exit(9)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    assert subprocess.run([sys.executable, "-c", script, str(out)], env=env).returncode == 9
    assert [p.name for p in out.iterdir() if p.name.startswith(".report.")]
    arguments = ["report", "--gold", str(gold), "--pred", f"x={gold}", "--resamples", "10", "--out", str(out)]
    status, err = run_cli(arguments, capsys)
    assert status == 0, err
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (root only; elsewhere the injected errors above stand in for it), unmounted after."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root and mount(8): the injected ENOSPC/EROFS tests cover this")
    mount = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)]
    done = subprocess.run(mount, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): the injected ENOSPC/EROFS tests cover this")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_really_full_then_read_only_disk_is_one_line_and_keeps_the_output(small_disk, tmp_path, capsys):
    """No injection: `convert` of ~400 KB of instructions onto a 64 KiB tmpfs (ENOSPC), then onto the same
    tmpfs remounted read-only (EROFS): one line each, the previous output intact, no temporary left."""
    source = write_jsonl(tmp_path / "big.json", [{**GOLD[i % 3], "id": str(i)} for i in range(600)])
    previous = small_disk / "train.jsonl"
    previous.write_bytes(PREVIOUS)
    arguments = ["convert", "--input", str(source), "--output", str(previous)]
    for code in (errno.ENOSPC, errno.EROFS):
        if code == errno.EROFS:
            subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
        status, err = run_cli(arguments, capsys)
        assert status == 1, err
        line = one_error_line(err)
        assert line.startswith(f"error: {previous}: {os.strerror(code)}; {WRITE_FAILURES[code]}"), line
        assert previous.read_bytes() == PREVIOUS
        assert [p.name for p in small_disk.iterdir()] == ["train.jsonl"]  # no temporary, no sidecar
