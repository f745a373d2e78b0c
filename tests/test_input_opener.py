"""The one input opener (`llm_ner.data.files.read_input_chunks`), swept over what a careless user passes as
an input file (issue 31): a FIFO with a writer, ``/dev/stdin`` and process substitutions (pipes), which
must be read exactly once however many passes the readers make (format sniffing, parsing, hashing);
``/dev/zero``, which must be refused in one line; an input over the size bound; SIGTERM during an endless
read; and a text file that is not UTF-8. Pipes here are ``os.pipe()`` read as ``/dev/fd/N``, as bash's
``<(...)`` is: written and closed before reading, so a reader that opened one twice finds it empty
instead of hanging. FIFOs, whose second open would block, are read by a subprocess under a timeout.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from llm_ner.cli import main
from llm_ner.data import read_inputs
from llm_ner.data.files import input_scope
from llm_ner.errors import DataError, UsageError
from llm_ner.extraction.ray_inputs import input_files
from llm_ner.fingerprints import file_identity

RECORDS = [
    {"id": "a", "text": "浙商银行的叶老桂说", "label": {"company": {"浙商银行": [[0, 3]]}}},
    {"id": "b", "text": "张三在北京", "label": {"name": {"张三": [[0, 1]]}}},
    {"id": "c", "text": "李四去了上海", "label": {"name": {"李四": [[0, 1]]}}},
]
CLUENER = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in RECORDS).encode()


@pytest.fixture(autouse=True)
def spool_dir(tmp_path, monkeypatch) -> Path:
    """The temporary folder, where spools of pipes go, to check what is left in it."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setenv("TMPDIR", str(folder))  # the subprocesses'
    return folder


@contextmanager
def pipe_path(data: bytes):
    """A pipe holding ``data`` (written, then closed), as ``/dev/fd/N``: bash's ``<(printf ...)``."""
    read_end, write_end = os.pipe()
    try:
        assert len(data) < 65536  # fits the pipe's buffer: written before anything reads
        os.write(write_end, data)
        os.close(write_end)
        write_end = -1
        yield f"/dev/fd/{read_end}"
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def error_line(capsys) -> str:
    """The command's stderr, checked to be one line and no traceback."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def llm_ner(*args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "llm_ner", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=60, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# Pipes and FIFOs: read exactly once


def test_a_fifo_with_a_writer_is_converted_once(tmp_path, spool_dir):
    fifo = tmp_path / "train.fifo"
    os.mkfifo(fifo)
    out = tmp_path / "train.jsonl"

    def write() -> None:
        with open(fifo, "wb") as handle:  # blocks until convert opens the FIFO
            handle.write(CLUENER)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    # A reader that opens the FIFO a second time (after sniffing the format) waits for a writer forever.
    done = llm_ner("convert", "--input", str(fifo), "--output", str(out), cwd=tmp_path)
    writer.join(timeout=60)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()] == ["a", "b", "c"]
    assert list(spool_dir.iterdir()) == []  # the spool went with the command


def test_dev_stdin_of_three_lines_is_not_an_empty_file(tmp_path):
    out = tmp_path / "out.jsonl"
    done = llm_ner("convert", "--input", "/dev/stdin", "--output", str(out), cwd=tmp_path, input=CLUENER.decode())
    assert done.returncode == 0, done.stderr
    assert "/dev/stdin: 3 records" in done.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == 3


def test_sentences_of_a_pipe_are_sniffed_parsed_and_hashed_from_one_read(spool_dir):
    # extract's readers: auto format (sniffing), parsing, and the --shots-from fingerprint of a resume
    with input_scope(), pipe_path(CLUENER) as path:
        examples = read_inputs(path)
        identity = file_identity(Path(path))
        assert len(list(spool_dir.iterdir())) == 1  # one spool folder, while the command runs
    assert [(ex.id, ex.text) for ex in examples] == [(r["id"], r["text"]) for r in RECORDS]
    assert identity == "sha256:" + hashlib.sha256(CLUENER).hexdigest()[:16]
    assert list(spool_dir.iterdir()) == []


def test_evaluate_reads_gold_and_predictions_from_process_substitutions(capsys, spool_dir):
    with pipe_path(CLUENER) as gold, pipe_path(CLUENER) as pred:
        assert main(["evaluate", "--gold", gold, "--pred", pred]) == 0
    assert "1.0000" in capsys.readouterr().out
    assert list(spool_dir.iterdir()) == []


def test_multibyte_characters_split_between_chunks_read_whole(monkeypatch):
    # 7-byte chunks: most 3-byte characters, and the BOM, are cut between two reads
    monkeypatch.setattr("llm_ner.data.files._CHUNK_BYTES", 7)
    lines = ["浙商银行的叶老桂说", "中文，English 和数字 123", "😀表情在这里", "最后一行没有换行"]
    data = b"\xef\xbb\xbf" + "\n".join(lines).encode()
    with input_scope(), pipe_path(data) as path:
        examples = read_inputs(path, "text")
    assert [ex.text for ex in examples] == lines


# ---------------------------------------------------------------------------------------------------------
# Refused in one line: devices, inputs over the bound


def test_dev_zero_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    # a bound that a read of /dev/zero reaches at once, should the device check be missing
    monkeypatch.setenv("LLM_NER_MAX_INPUT_BYTES", "8M")
    out = tmp_path / "out.jsonl"
    assert main(["convert", "--input", "/dev/zero", "--output", str(out)]) == 1
    assert error_line(capsys) == (
        "error: /dev/zero: is a character device (such as /dev/zero or a terminal), not a file: pass a file or a pipe"
    )
    assert not out.exists()


@pytest.mark.parametrize("how", ["option", "variable"])
def test_a_file_over_the_bound_is_refused_before_reading(tmp_path, monkeypatch, capsys, how):
    source = tmp_path / "train.json"
    source.write_bytes(CLUENER)
    out = tmp_path / "out.jsonl"
    bound = ["--max-input-bytes", str(len(CLUENER) - 1)] if how == "option" else []
    if how == "variable":
        monkeypatch.setenv("LLM_NER_MAX_INPUT_BYTES", str(len(CLUENER) - 1))
    assert main([*bound, "convert", "--input", str(source), "--output", str(out)]) == 1
    assert error_line(capsys) == (
        f"error: {source}: larger than the input limit of {len(CLUENER) - 1} bytes; raise it with "
        "`llm-ner --max-input-bytes N` or LLM_NER_MAX_INPUT_BYTES=N if the file is meant to be this large"
    )
    assert not out.exists()
    # exactly the bound is fine
    assert main(["--max-input-bytes", str(len(CLUENER)), "convert", "--input", str(source), "--output", str(out)]) == 0


def test_a_pipe_over_the_bound_is_refused_and_its_spool_removed(tmp_path, capsys, spool_dir):
    out = tmp_path / "out.jsonl"
    with pipe_path(CLUENER) as path:
        assert main(["--max-input-bytes", "100", "convert", "--input", path, "--output", str(out)]) == 1
    assert error_line(capsys).startswith(f"error: {path}: larger than the input limit of 100 bytes")
    assert list(spool_dir.iterdir()) == []
    assert not out.exists()


def test_a_bad_bound_is_a_usage_error(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--max-input-bytes", "lots", "convert", "--input", "x", "--output", str(tmp_path / "o")])
    assert exit_.value.code == 2
    assert "--max-input-bytes: 'lots' is not a byte count" in capsys.readouterr().err
    monkeypatch.setenv("LLM_NER_MAX_INPUT_BYTES", "4 gigs")
    source = tmp_path / "train.json"
    source.write_bytes(CLUENER)
    assert main(["convert", "--input", str(source), "--output", str(tmp_path / "o")]) == 2
    assert "LLM_NER_MAX_INPUT_BYTES: '4 gigs' is not a byte count" in error_line(capsys)


def test_ray_refuses_a_fifo_or_device_it_cannot_hand_to_workers(tmp_path):
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        with pytest.raises(UsageError, match="is a pipe or device, not a file: --engine ray reads files"):
            input_files(path)


# ---------------------------------------------------------------------------------------------------------
# SIGTERM ends an endless read


def test_sigterm_ends_convert_reading_an_endless_fifo(tmp_path, spool_dir):
    fifo = tmp_path / "endless.fifo"
    os.mkfifo(fifo)
    out = tmp_path / "out.jsonl"
    line = (json.dumps(RECORDS[0], ensure_ascii=False) + "\n").encode() * 1000
    reading = threading.Event()

    def write_forever() -> None:
        try:
            with open(fifo, "wb") as handle:  # opens once convert opens the FIFO: its SIGTERM handler is set
                while True:
                    handle.write(line)
                    handle.flush()
                    reading.set()
        except (BrokenPipeError, ValueError):
            reading.set()  # convert ended

    writer = threading.Thread(target=write_forever, daemon=True)
    writer.start()
    command = [sys.executable, "-m", "llm_ner", "convert", "--input", str(fifo), "--output", str(out)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert reading.wait(timeout=120), "convert never opened the FIFO"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)  # generous: an unbounded read never ends at all
    finally:
        process.kill()
    writer.join(timeout=60)
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1] == "terminated (SIGTERM)", err
    assert list(spool_dir.iterdir()) == []  # no spool left behind
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------
# Text files that are not UTF-8


def test_tiny_model_texts_not_utf8_is_one_line_naming_the_line(tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_bytes("张三在北京\n".encode() + "李四".encode("gbk") + b"\n")
    out = tmp_path / "model"
    assert main(["tiny-model", "--texts", str(texts), "--out", str(out)]) == 1
    assert error_line(capsys) == f"error: {texts}:2: not valid UTF-8 (byte 0 of the line: b'\\xc0')"
    assert not out.exists()


def test_read_errors_name_the_path_as_given(tmp_path):
    with pytest.raises(DataError, match=r"nope.json: cannot read file: No such file"):
        read_inputs(tmp_path / "nope.json")
    with pytest.raises(DataError, match=r"cannot read file: it is a folder"):
        read_inputs(tmp_path)
