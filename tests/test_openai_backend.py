"""`extract --backend openai` against a real OpenAI-compatible server: `transformers serve` on
127.0.0.1 with a tiny random-weight Qwen3 on CPU, compared answer for answer with the local
backend; retries, errors and the structured-output request against a small stdlib HTTP server."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import dev_file, noisy_model, records
from harness import free_port, stop, wait_for

from llm_ner.answer_format import MENTIONS
from llm_ner.backends.openai import OpenAIBackend
from llm_ner.cli import main as cli
from llm_ner.errors import ServerError
from llm_ner.prompting import load_prompt


@pytest.fixture(scope="module")
def noisy_qwen(tmp_path_factory):
    return noisy_model(tmp_path_factory.mktemp("noisy") / "qwen3")


@pytest.fixture(scope="module")
def transformers_serve(noisy_qwen):
    """`transformers serve MODEL` on 127.0.0.1 (CPU, float32); yields its base URL."""
    from transformers.utils.import_utils import is_serve_available

    command = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
    if not is_serve_available() or command is None:
        pytest.skip('needs `pip install "transformers[serving]"` (fastapi, uvicorn, openai) for `transformers serve`')
    port = free_port()
    process = subprocess.Popen(
        [command, "serve", str(noisy_qwen), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
        + ["--dtype", "float32"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/health", process)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(process)


def test_openai_backend_equals_local_backend(noisy_qwen, transformers_serve, cluener_dev, tmp_path):
    source = dev_file(tmp_path / "dev.json", cluener_dev, 6)
    # Short pieces: sentences are split, so the openai path also goes through split_long and the
    # offset shift. A fixed answer bound: the local backend bounds a batch by its longest sentence.
    common = ["--input", str(source), "--prompt", "cluener_zh", "--format", "mentions", "--quiet"]
    common += ["--max-chars", "40", "--max-new-tokens", "8"]
    common += ["--max-parse-failures", "1"]  # random weights: no answer parses, which would exit 1
    local_args = ["--model", str(noisy_qwen), "--dtype", "float32"]  # as the server (bf16 on a CPU that has it)
    assert cli(["extract", *local_args, "--output", str(tmp_path / "local.json"), *common]) == 0
    remote = ["--backend", "openai", "--base-url", transformers_serve, "--served-model", str(noisy_qwen)]
    remote += ["--concurrency", "4"]
    assert cli(["extract", *remote, "--output", str(tmp_path / "remote.json"), *common]) == 0
    local, served = records(tmp_path / "local.json"), records(tmp_path / "remote.json")
    assert [r["id"] for r in served] == [f"d{i}" for i in range(6)]
    assert any(isinstance(r["raw"], list) for r in served), "no sentence was split"
    assert len({json.dumps(r["raw"], ensure_ascii=False) for r in local}) >= 5, "answers must differ per sentence"
    assert [(r["raw"], r["label"], r["parse"]) for r in served] == [(r["raw"], r["label"], r["parse"]) for r in local]


def test_unreachable_server_and_unknown_model(noisy_qwen, transformers_serve, cluener_dev, tmp_path, capsys):
    source = dev_file(tmp_path / "dev.json", cluener_dev, 2)
    base = ["extract", "--backend", "openai", "--input", str(source), "--output", str(tmp_path / "o.json")]
    base += ["--prompt", "cluener_zh", "--quiet", "--retries", "0"]
    closed = f"http://127.0.0.1:{free_port()}/v1"
    assert cli([*base, "--base-url", closed, "--served-model", "m"]) == 1
    assert "cannot reach an OpenAI-compatible server" in capsys.readouterr().err
    assert cli([*base, "--base-url", transformers_serve, "--served-model", "no-such-model"]) == 2  # usage
    err = capsys.readouterr().err
    assert "does not serve 'no-such-model'" in err and str(noisy_qwen) in err
    assert not (tmp_path / "o.json").exists()
    with pytest.raises(SystemExit):  # --concurrency uses positive_int
        cli([*base, "--base-url", closed, "--served-model", "m", "--concurrency", "0"])
    assert cli(["extract", "--model", "x", "--input", str(source), "--output", "o", "--base-url", closed]) == 2
    assert "need --backend openai" in capsys.readouterr().err


class FlakyServer:
    """A stdlib HTTP server on 127.0.0.1 answering chat completions after ``failures`` 429/503s;
    it lists model ``m`` and keeps the Authorization header of that request in ``auth``."""

    def __init__(self, failures: int = 2, status: int = 429):
        self.failures, self.status, self.bodies, self.auth = failures, status, [], None
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.bodies.append(body)
                if owner.failures > 0:
                    owner.failures -= 1
                    self.send_response(owner.status)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                text = body["messages"][-1]["content"][-4:]
                answer = json.dumps([{"text": text, "label": "name"}], ensure_ascii=False)
                data = json.dumps({"choices": [{"message": {"content": answer}, "finish_reason": "stop"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                owner.auth = self.headers.get("Authorization")
                data = b'{"data": [{"id": "m"}]}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_retries_429_then_answers_and_sends_schema_and_key(monkeypatch):
    monkeypatch.setenv("LLM_NER_API_KEY", "secret-key")
    server = FlakyServer(failures=2, status=429)
    try:
        schema = load_prompt("cluener_zh").schema
        backend = OpenAIBackend(server.url, "m", concurrency=2, retries=3, backoff=0.01)
        backend.response_format = MENTIONS.json_schema(schema)
        answered = backend.answer([[{"role": "user", "content": "叶老桂博士"}]] * 3, ["叶老桂博士"] * 3)
        answers = [answer.text for answer in answered]
        assert answers == [json.dumps([{"text": "老桂博士", "label": "name"}], ensure_ascii=False)] * 3
        assert backend.retried == 2 and len(server.bodies) == 5
        body = server.bodies[-1]
        assert body["temperature"] == 0 and body["chat_template_kwargs"] == {"enable_thinking": False}
        assert body["max_tokens"] == 24 + 3 * 5
        enum = body["response_format"]["json_schema"]["schema"]["items"]["properties"]["label"]["enum"]
        assert enum == list(schema.keys)
        backend.close()
        # 400 is the client's fault: no retry, a clear error.
        server.failures, server.status = 1, 400
        backend = OpenAIBackend(server.url, "m", retries=3, backoff=0.01)
        with pytest.raises(ServerError, match="HTTP 400"):
            backend.complete([{"role": "user", "content": "x"}], "x")
        assert backend.retried == 0
    finally:
        server.close()


def test_api_key_header_from_environment(monkeypatch):
    server = FlakyServer(failures=0)
    try:
        monkeypatch.delenv("LLM_NER_API_KEY", raising=False)
        monkeypatch.setenv("OPENAI_API_KEY", "k-123")
        OpenAIBackend(server.url, "m").check()
        assert server.auth == "Bearer k-123"
    finally:
        server.close()
    # The backend only reads the key: it must not write it into the environment.
    assert os.environ.get("LLM_NER_API_KEY") is None


class SlowServer(FlakyServer):
    """FlakyServer without failures, ``delay`` seconds per answer."""

    def __init__(self, delay: float):
        super().__init__(failures=0)
        handler = self.server.RequestHandlerClass
        post = handler.do_POST

        def slow_post(request):
            time.sleep(delay)
            post(request)

        handler.do_POST = slow_post


def test_ctrl_c_keeps_finished_batches_and_a_rerun_completes(cluener_dev, tmp_path):
    import signal

    server = SlowServer(delay=0.1)
    try:
        source = dev_file(tmp_path / "dev.json", cluener_dev, 40)
        out = tmp_path / "out.json"
        args = ["extract", "--backend", "openai", "--base-url", server.url, "--served-model", "m"]
        args += ["--input", str(source), "--output", str(out), "--prompt", "cluener_zh", "--quiet"]
        args += ["--batch-size", "4", "--concurrency", "2"]
        process = subprocess.Popen([sys.executable, "-m", "llm_ner", *args], stderr=subprocess.PIPE, text=True)
        part = Path(str(out) + ".parts") / "rank-0.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not part.exists() or len(records(part)) < 8):
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130, process.stderr.read()
        saved = records(part)
        assert 8 <= len(saved) < 40 and not out.exists()
        before = len(server.bodies)
        assert cli(args) == 0
        assert len(server.bodies) - before == 40 - len({r["id"] for r in saved})  # finished ids not resent
        merged = records(out)
        assert [r["id"] for r in merged] == [f"d{i}" for i in range(40)]
        for record, example in zip(merged, cluener_dev):
            assert record["text"] == example.text
            # The stub names the last 4 characters of the user message, the sentence's end.
            ((mention, ranges),) = record["label"]["name"].items()
            assert mention == example.text[-4:] and example.text[ranges[0][0] : ranges[0][1] + 1] == mention
    finally:
        server.close()


class HangingServer(FlakyServer):
    """FlakyServer answering its first ``fast`` chat requests at once and holding every later one
    (until `close`, or until ``fast`` is raised for requests that come after); ``held`` counts them."""

    def __init__(self, fast: int):
        super().__init__(failures=0)
        self.fast, self.held, self.release = fast, 0, threading.Event()
        self.server.handle_error = lambda *args: None  # a held request's client is gone: no traceback
        handler, lock, owner = self.server.RequestHandlerClass, threading.Lock(), self
        post = handler.do_POST

        def maybe_hold(request):
            with lock:
                hold = owner.fast <= 0
                owner.fast -= 1
                owner.held += hold
            if hold:
                owner.release.wait(120)
            post(request)

        handler.do_POST = maybe_hold

    def close(self):
        self.release.set()
        super().close()


def test_ctrl_c_gives_up_the_requests_in_flight_at_once(cluener_dev, tmp_path):
    """Ctrl-C while the server holds 4 requests (60 s timeout, 5 retries each): exit 130 in well
    under 3 s, the 2 batches answered before are in the part file, and a rerun completes the rest."""
    import signal

    server = HangingServer(fast=8)
    process = None
    try:
        source = dev_file(tmp_path / "dev.json", cluener_dev, 20)
        out = tmp_path / "out.json"
        args = ["extract", "--backend", "openai", "--base-url", server.url, "--served-model", "m"]
        args += ["--input", str(source), "--output", str(out), "--prompt", "cluener_zh", "--quiet"]
        args += ["--batch-size", "4", "--concurrency", "4", "--timeout", "60", "--retries", "5"]
        process = subprocess.Popen([sys.executable, "-m", "llm_ner", *args], stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.held < 4:
            time.sleep(0.05)
        assert server.held == 4, "the third batch never reached the server"
        process.send_signal(signal.SIGINT)
        start = time.monotonic()
        code = process.wait(timeout=20)
        elapsed = time.monotonic() - start
        stderr = process.stderr.read()
        print(f"exit {code} {elapsed:.2f} s after SIGINT")
        assert code == 130 and elapsed < 3, (code, elapsed, stderr)
        assert "Traceback" not in stderr and "8/20 sentences saved" in stderr, stderr
        saved = records(Path(str(out) + ".parts") / "rank-0.jsonl")
        assert len({r["id"] for r in saved}) == len(saved) == 8
        server.fast = 10**6  # the server answers again: the rerun sends only the 12 missing sentences
        before = len(server.bodies)
        assert cli(args) == 0
        assert len(server.bodies) - before == 12
        assert [r["id"] for r in records(out)] == [f"d{i}" for i in range(20)]
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        server.close()


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://127.0.0.1:99999/v1", "out of range"),
        ("http://127.0.0.1:port/v1", "port"),
        ("http://[::1/v1", "IPv6"),
        ("ftp://127.0.0.1/v1", "http(s) URL"),
        ("http://127.0.0.1:0/v1", "port 0"),
        ("http://user:secret@127.0.0.1:8000/v1", "credentials"),
        ("http://127.0.0.1:8000/v1?x=1", "query"),
    ],
)
def test_bad_base_urls_are_one_line_usage_errors(url, reason, tmp_path, capsys):
    source = tmp_path / "in.json"
    source.write_text('{"id": "0", "text": "叶老桂博士"}\n', encoding="utf-8")
    args = ["extract", "--backend", "openai", "--base-url", url, "--served-model", "m", "--input", str(source)]
    assert cli([*args, "--output", str(tmp_path / "o.json"), "--prompt", "cluener_zh", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --base-url") and reason in err and len(err.strip().splitlines()) == 1, err
    assert "secret" not in err
