"""`llm-ner serve`: limits, dynamic batching and failure isolation on a real uvicorn server
(127.0.0.1) around a stand-in engine; the real engine with a tiny Qwen3 in a `llm-ner serve`
process; the page in a real headless Chromium, its DOM checked against the API's answer."""

import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import noisy_model, records
from harness import free_port, stop, wait_for

pytest.importorskip("fastapi", reason='`llm-ner serve` needs fastapi and uvicorn: pip install "llm-ner[serve]"')
pytest.importorskip("uvicorn", reason='`llm-ner serve` needs fastapi and uvicorn: pip install "llm-ner[serve]"')

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT_COPY = Path("/tmp/llm-ner-serve-page.png")


def post(url: str, body: bytes, timeout: float = 60) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)


def extract(url: str, texts: list[str]) -> tuple[int, dict, dict]:
    return post(url + "/extract", json.dumps({"texts": texts}, ensure_ascii=False).encode())


class FakeEngine:
    """Stands in for `Engine.run`: an entity per text (its first character, labelled with its
    length), a delay like a generate, ``BOOM`` texts raise; records each batch's size."""

    def __init__(self, delay: float = 0.2):
        self.delay, self.batches = delay, []

    def __call__(self, texts: list[str]) -> list[dict]:
        self.batches.append(len(texts))
        time.sleep(self.delay)
        if any("BOOM" in t for t in texts):
            raise RuntimeError("this text breaks the model")
        parse = {"answers": 1, "aligned": 1}
        return [
            {"text": t, "entities": [{"start": 0, "end": 1, "label": f"L{len(t)}", "text": t[:1]}], "parse": parse}
            for t in texts
        ]


def call(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, dict]:
    """GET (or POST ``body``) with these headers: status, JSON answer, response headers."""
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            data = response.read()
            is_json = response.headers.get("content-type", "").startswith("application/json")
            return response.status, json.loads(data) if is_json else {}, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)


class AppServer:
    """`serve.build_app` under uvicorn in a thread on a free 127.0.0.1 port."""

    def __init__(self, run, access=None, openapi=False, **limits):
        import uvicorn

        from llm_ner.serving import ServeLimits, build_app

        self.app = build_app(run, ServeLimits(**limits), {"labels": ["name"]}, access, openapi=openapi)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="error")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def test_bad_requests_get_400_and_413():
    server = AppServer(FakeEngine(0), max_texts=3, max_text_chars=10, max_body_bytes=200)
    try:
        url = server.url + "/extract"
        assert post(url, b"{not json")[0] == 400
        assert post(url, b'{"texts": "one"}')[0] == 400
        assert post(url, b'{"texts": [1, 2]}')[0] == 400
        assert post(url, b'{"texts": []}')[0] == 400
        assert post(url, b'["a"]')[0] == 400
        status, body, _ = post(url, b'{"texts": ["a", "b", "c", "d"]}')
        assert status == 413 and "4 texts" in body["error"]
        assert post(url, json.dumps({"texts": ["x" * 11]}).encode())[0] == 413
        assert post(url, json.dumps({"texts": ["x" * 5] * 3, "pad": "y" * 300}).encode())[0] == 413
        status, body, _ = post(url, json.dumps({"texts": ["abc", "x" * 10]}).encode())
        assert status == 200 and [r["entities"][0]["label"] for r in body["results"]] == ["L3", "L10"]
        with urllib.request.urlopen(server.url + "/health") as response:
            assert json.loads(response.read())["status"] == "ok"
    finally:
        server.close()


def test_dynamic_batching_routes_results_and_isolates_a_failing_request():
    engine = FakeEngine(0.3)
    server = AppServer(engine, max_batch=16, max_wait_ms=50)

    def burst(requests):
        with ThreadPoolExecutor(len(requests)) as pool:
            return list(pool.map(lambda t: extract(server.url, t), requests))

    def labels(body):
        return [r["entities"][0]["label"] for r in body["results"]]

    try:
        requests = [["a" * (i + 1), "b" * (i + 20)] for i in range(8)]
        for request, (status, body, _) in zip(requests, burst(requests)):
            assert status == 200 and labels(body) == [f"L{len(t)}" for t in request]
        # 8 requests of 2 texts, cap 16 texts: far fewer generate calls than requests.
        assert max(engine.batches) > 2 and max(engine.batches) <= 16 and len(engine.batches) <= 4
        # A request that breaks its batch fails alone; the others of that batch are answered.
        answers = burst([["fine", "BOOM"], *requests[:3]])
        assert answers[0][0] == 500 and "breaks the model" in answers[0][1]["error"]
        for request, (status, body, _) in zip(requests[:3], answers[1:]):
            assert status == 200 and labels(body) == [f"L{len(t)}" for t in request]
        assert extract(server.url, ["after"])[0] == 200
    finally:
        server.close()


def test_burst_above_the_queue_limit_gets_200_or_503():
    engine = FakeEngine(0.2)
    server = AppServer(engine, max_batch=4, max_wait_ms=5, max_queue=6)
    try:
        with ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(lambda i: extract(server.url, [f"t{i}", "u"]), range(24)))
        statuses = [status for status, _, _ in answers]
        assert set(statuses) <= {200, 503} and statuses.count(200) >= 3 and statuses.count(503) >= 1
        assert all(headers.get("retry-after") == "1" for status, _, headers in answers if status == 503)
        assert server.app.state.batcher.pending == 0
    finally:
        server.close()


JSON = {"Content-Type": "application/json"}
ONE = json.dumps({"texts": ["abc"]}).encode()


def test_extract_takes_only_a_json_content_type():
    """A web page may POST text/plain to any server without a preflight: /extract refuses it."""
    server = AppServer(FakeEngine(0))
    try:
        url = server.url + "/extract"
        for content_type in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", None):
            status, body, _ = call(url, ONE, {"Content-Type": content_type} if content_type else {})
            assert status == 415 and "application/json" in body["error"], (content_type, status)
        assert call(url, ONE, {"Content-Type": "Application/JSON; charset=utf-8"})[0] == 200
    finally:
        server.close()


def test_foreign_origin_and_host_get_403():
    from llm_ner.serving import AccessPolicy

    server = AppServer(FakeEngine(0))
    try:
        port = server.port
        for path in ("/extract", "/health", "/"):
            body = ONE if path == "/extract" else None
            # another web site (CSRF), a sandboxed page, and DNS rebinding (a page whose name now points here)
            for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Host": f"evil.example:{port}"}):
                status, answer, _ = call(server.url + path, body, {**JSON, **headers})
                assert status == 403 and "not allowed" in answer["error"], (path, headers, status)
            for headers in ({"Origin": f"http://127.0.0.1:{port}"}, {"Origin": "http://localhost:5173"}):
                assert call(server.url + path, body, {**JSON, **headers})[0] == 200, (path, headers)
            assert call(server.url + path, body, {**JSON, "Host": f"localhost:{port}"})[0] == 200
            assert call(server.url + path, body, {**JSON, "Host": f"[::1]:{port}"})[0] == 200
        assert call(server.url + "/openapi.json")[0] == 404  # off unless asked
    finally:
        server.close()
    # --host 0.0.0.0 --allowed-origins myserver.lan,http://app.example:3000: those names, and the origin exactly.
    server = AppServer(FakeEngine(0), AccessPolicy.from_options("myserver.lan, http://app.example:3000", "0.0.0.0"))
    try:
        url = server.url + "/extract"
        assert call(url, ONE, {**JSON, "Host": f"myserver.lan:{server.port}"})[0] == 200
        assert call(url, ONE, {**JSON, "Host": f"{socket.gethostname()}:{server.port}"})[0] == 200
        assert call(url, ONE, {**JSON, "Origin": "http://app.example:3000"})[0] == 200
        assert call(url, ONE, {**JSON, "Origin": "http://app.example:3001"})[0] == 403
        assert call(url, ONE, {**JSON, "Host": "app.example:3000"})[0] == 403  # an origin is no Host name
    finally:
        server.close()
    server = AppServer(FakeEngine(0), openapi=True)
    try:
        status, schema, _ = call(server.url + "/openapi.json")
        assert status == 200 and "/extract" in schema["paths"]
    finally:
        server.close()


def test_api_key_is_needed_on_extract_and_health(monkeypatch):
    from llm_ner.serving import AccessPolicy, ServeOptions
    from llm_ner.serving.access import access_policy

    server = AppServer(FakeEngine(0), AccessPolicy(api_key="s3cret-ключ"))
    try:
        for path, body in (("/extract", ONE), ("/health", None)):
            for auth in (None, "Bearer wrong", "Bearer s3cret", "s3cret-ключ", "Basic s3cret-ключ"):
                headers = {**JSON, **({"Authorization": auth.encode().decode("latin-1")} if auth else {})}
                status, answer, response_headers = call(server.url + path, body, headers)
                assert status == 401 and response_headers["www-authenticate"] == "Bearer", (path, auth, status)
                assert "API key" in answer["error"]
            right = "Bearer s3cret-ключ".encode().decode("latin-1")  # the UTF-8 bytes a client sends
            assert call(server.url + path, body, {**JSON, "Authorization": right})[0] == 200
        status, _, response_headers = call(server.url + "/")  # the page stays open; it asks for the key
        assert status == 200 and response_headers["content-type"].startswith("text/html")
    finally:
        server.close()
    monkeypatch.setenv("LLM_NER_SERVE_API_KEY", "from-env")
    assert access_policy(ServeOptions()).api_key == "from-env"
    assert access_policy(ServeOptions(api_key="flag")).api_key == "flag"
    monkeypatch.delenv("LLM_NER_SERVE_API_KEY")
    assert access_policy(ServeOptions()).api_key is None  # no key given at all: served without one


@pytest.mark.parametrize(
    "flags, env, named",
    [
        (["--api-key", ""], None, "--api-key is empty"),  # --api-key "$KEY" with KEY unset
        (["--api-key", " \t"], "good-key", "--api-key is blank"),  # the flag wins over the variable
        ([], "", "LLM_NER_SERVE_API_KEY is empty"),
        ([], "  ", "LLM_NER_SERVE_API_KEY is blank"),
    ],
)
def test_an_empty_api_key_is_refused_before_anything_starts(flags, env, named, monkeypatch, capsys):
    """An empty key would serve /extract to anyone: one line, exit 2, before the model loads or a port opens."""
    from llm_ner.cli import main as cli
    from llm_ner.serving import AccessPolicy

    def started(*args, **kwargs):
        raise AssertionError("the service went on to load the model and serve")

    monkeypatch.setattr("llm_ner.serving.app.check_model_folder", started)
    monkeypatch.setattr("uvicorn.run", started)
    if env is None:
        monkeypatch.delenv("LLM_NER_SERVE_API_KEY", raising=False)
    else:
        monkeypatch.setenv("LLM_NER_SERVE_API_KEY", env)
    assert cli(["serve", "--model", "m", *flags]) == 2
    err = capsys.readouterr().err
    assert named in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(ValueError, match="API key is empty"):  # the library refuses it too: "Bearer " matched it
        AccessPolicy(api_key=" ")


@pytest.mark.parametrize(
    "body, reason",
    [
        (b'{"texts": ["\\ud800abc"]}', "lone surrogate"),
        (b'{"texts": ["ok", "a\\udfffb"]}', "lone surrogate"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 100 levels"),
        (b'{"texts": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", "nested deeper than 100 levels"),
        (b'{"texts": ["a"], "n": ' + b"9" * 5000 + b"}", "an integer of more than 4300 digits"),
        (b'{"texts": [1e999]}', "out of range"),
        (b'{"texts": {"a": "b"}}', "list of strings"),
        (b'{"texts": [null]}', "list of strings"),
        (b'{"texts": ["\xff"]}', "not valid UTF-8"),
        (b'{"texts": ["a"]', "not JSON"),
        (b"null", "JSON object"),
    ],
)
def test_odd_bodies_get_400_with_one_line(body, reason):
    from llm_ner.serving import RequestError, ServeLimits, parse_texts

    with pytest.raises(RequestError) as caught:
        parse_texts(body, ServeLimits())
    assert caught.value.status == 400 and reason in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


def test_odd_bodies_over_http_get_400_not_500():
    server = AppServer(FakeEngine(0))
    try:
        url = server.url + "/extract"
        for body in (b'{"texts": ["\\ud800"]}', b"[" * 100_000, b'{"texts": ["a"], "n": ' + b"9" * 5000 + b"}"):
            status, answer, _ = call(url, body, JSON)
            assert status == 400 and "\n" not in answer["error"], (body[:30], status, answer)
        assert call(url, ONE, JSON)[0] == 200  # and the server goes on
    finally:
        server.close()


def raw_post(port: int, body: bytes, declared: int | None = None) -> socket.socket:
    """A connection that sent a POST /extract with ``body``, its Content-Length ``declared`` (default: the truth)."""
    head = f"POST /extract HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    length = len(body) if declared is None else declared
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head.encode() + f"Content-Length: {length}\r\n\r\n".encode() + body)
    return sock


def test_a_partial_body_times_out_and_others_are_served():
    """A client that sends half its body gets 408 and its connection closed after --body-timeout;
    the server answers other requests meanwhile and after."""
    server = AppServer(FakeEngine(0), body_timeout=0.5)
    half = raw_post(server.port, b'{"texts": ["ab', declared=100)
    try:
        assert extract(server.url, ["abc"])[0] == 200
        half.settimeout(20)  # generous: without the timeout, recv waits here and raises
        answer = b""
        while chunk := half.recv(4096):  # until the server closes the connection
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 ") and b"serve --body-timeout" in answer, answer
        assert b"\r\nconnection: close\r\n" in answer.lower()  # closed at once, not after the keep-alive
        assert extract(server.url, ["after"])[0] == 200
    finally:
        half.close()
        server.close()


def test_clients_that_disconnect_free_the_queue_at_once():
    """60 clients send 4 texts each and close their connections: the waiting texts are dropped
    within 1 s (/health) and are not generated; only the batch already running is. /health's
    texts_dropped counts all 240 texts at once, the running batch's too (nobody reads them)."""
    engine = FakeEngine(2.0)
    server = AppServer(engine, max_batch=32, max_wait_ms=5, max_queue=256)
    sockets = []
    try:
        for i in range(60):
            body = json.dumps({"texts": [f"t{i}-{k}" for k in range(4)]}).encode()
            head = f"POST /extract HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            sockets.append(sock)
        batcher = server.app.state.batcher
        deadline = time.monotonic() + 10
        while not (batcher.pending == 240 and engine.batches) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert batcher.pending == 240 and engine.batches, "the 60 requests were not all queued while one batch ran"
        for sock in sockets:
            sock.close()
        start = time.monotonic()
        while call(server.url + "/health")[1]["queued_texts"] and time.monotonic() - start < 5:
            time.sleep(0.02)
        freed = time.monotonic() - start
        print(f"queue free {freed:.2f} s after 60 clients disconnected")
        assert freed < 1.0
        assert call(server.url + "/health")[1]["texts_dropped"] == 240  # not only once the running batch ends
        time.sleep(2.5)  # the batch that was running ends; nothing else may start
        health = call(server.url + "/health")[1]
        generated = sum(engine.batches)
        assert generated <= 32 and len(engine.batches) == 1, engine.batches
        assert health["texts_dropped"] == 240 and health["texts_done"] == 0
        assert extract(server.url, ["after"])[0] == 200  # the service goes on
    finally:
        for sock in sockets:
            sock.close()
        server.close()


def test_serve_port_must_be_a_port(capsys):
    from llm_ner.cli import main as cli

    with pytest.raises(SystemExit) as caught:
        cli(["serve", "--model", "m", "--port", "70000"])
    assert caught.value.code == 2 and "1-65535" in capsys.readouterr().err


@pytest.fixture(scope="module")
def served_tiny(tmp_path_factory):
    """`llm-ner serve` of a tiny random Qwen3 (varied answers) with constrained decoding, so entities appear."""
    model = noisy_model(tmp_path_factory.mktemp("noisy") / "qwen3")
    talkative(model)
    port = free_port()
    command = [sys.executable, "-m", "llm_ner", "serve", "--model", str(model), "--prompt", "cluener_zh"]
    command += ["--format", "mentions", "--constrained", "--port", str(port), "--max-new-tokens", "40"]
    command += ["--max-chars", "30"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", process)
        yield f"http://127.0.0.1:{port}", model
    finally:
        stop(process)


def talkative(model_dir: Path) -> None:
    """Zero the output rows of every token holding "]": random weights would otherwise mostly
    answer ``[]`` under constrained decoding, and a page without entities tests nothing."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with torch.no_grad():
        for token, index in tokenizer.get_vocab().items():
            if "]" in token:
                model.lm_head.weight[index] = 0
    model.save_pretrained(model_dir)


TEXTS = ["浙商银行企业信贷部叶老桂博士则从另一个角度对五道门槛进行了解读。", "生生不息CSOL生化狂潮让你填弹狂扫"]


def test_health_shows_no_local_path(served_tiny):
    url, model = served_tiny
    status, info, _ = call(url + "/health")
    assert status == 200 and info["model"] == model.name == "qwen3"
    assert str(model.parent) not in json.dumps(info)


def test_real_engine_spans_are_substrings_and_match_extract(served_tiny, tmp_path):
    url, model = served_tiny
    long_text = TEXTS[0] + TEXTS[1]  # longer than --max-chars 30: split, spans shifted back
    status, body, _ = extract(url, [*TEXTS, long_text])
    assert status == 200
    source = tmp_path / "in.json"
    source.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate([*TEXTS, long_text])))
    out = tmp_path / "out.json"
    from llm_ner.cli import main as cli

    args = ["extract", "--model", str(model), "--input", str(source), "--output", str(out), "--prompt", "cluener_zh"]
    args += ["--format", "mentions", "--constrained", "--max-new-tokens", "40", "--max-chars", "30", "--quiet"]
    assert cli(args) == 0
    expected = records(out)
    assert sum(len(r["entities"]) for r in body["results"]) >= 2, body
    for result, record in zip(body["results"], expected):
        assert result["raw"] == record["raw"]
        for entity in result["entities"]:
            assert result["text"][entity["start"] : entity["end"]] == entity["text"]
            assert [entity["start"], entity["end"] - 1] in record["label"][entity["label"]][entity["text"]]
    assert isinstance(body["results"][2]["raw"], list)  # the long text was split
    for entity in body["results"][2]["entities"]:
        assert long_text[entity["start"] : entity["end"]] == entity["text"]


def find_chromium() -> tuple[str | None, str]:
    """The browser `scripts/install_chromium.sh` finds (without installing anything here)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name), ""
    return None, "no chromium on PATH: run scripts/install_chromium.sh (Debian's chromium package)"


class Marks(HTMLParser):
    """The highlighted entities of the page's DOM: (start, end, label, text)."""

    def __init__(self):
        super().__init__()
        self.marks, self._open, self._in_sup = [], None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "mark" and "entity" in (attrs.get("class") or ""):
            self._open = [int(attrs["data-start"]), int(attrs["data-end"]), attrs["data-label"], ""]
        elif tag == "sup":
            self._in_sup = True

    def handle_endtag(self, tag):
        if tag == "mark" and self._open:
            self.marks.append(tuple(self._open))
            self._open = None
        elif tag == "sup":
            self._in_sup = False

    def handle_data(self, data):
        if self._open and not self._in_sup:
            self._open[3] += data


def test_page_in_headless_chromium(served_tiny, tmp_path):
    chromium, reason = find_chromium()
    if chromium is None:
        print(reason)
        pytest.skip(reason)
    check_page(chromium, served_tiny[0], tmp_path)


def check_page(chromium: str, url: str, tmp_path: Path) -> None:
    texts = [*TEXTS, "𠀋我在北京"]
    status, body, _ = extract(url, texts)
    assert status == 200
    entities = [(e["start"], e["end"], e["label"], e["text"]) for r in body["results"] for e in r["entities"]]
    assert len(entities) >= 2, body
    expected = []  # the page marks entities in reading order, skipping one that overlaps the last shown
    for result in body["results"]:
        end = 0
        for e in result["entities"]:
            if e["start"] >= end:
                expected.append((e["start"], e["end"], e["label"], e["text"]))
                end = e["end"]
    page = f"{url}/?run&text=" + urllib.request.quote("\n".join(texts))
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"]
    flags += ["--virtual-time-budget=30000", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page], capture_output=True, text=True, timeout=90).stdout
    assert 'data-state="done"' in dom, dom[-2000:]
    parser = Marks()
    parser.feed(dom)
    assert sorted(parser.marks) == sorted(expected)
    assert len(re.findall(r'class="result"', dom)) == len(texts)
    shot = tmp_path / "page.png"
    subprocess.run([*flags, "--window-size=1000,700", f"--screenshot={shot}", page], capture_output=True, timeout=90)
    assert shot.is_file() and shot.stat().st_size > 10_000
    shutil.copyfile(shot, SCREENSHOT_COPY)
    print(f"screenshot: {SCREENSHOT_COPY}")


def test_page_asks_for_the_key_in_headless_chromium(tmp_path):
    """With an API key the page still loads (no key needed for /), and the 401 of /health and
    /extract shows the key field and the error instead of failing silently."""
    from llm_ner.serving import AccessPolicy

    chromium, reason = find_chromium()
    if chromium is None:
        print(reason)
        pytest.skip(reason)
    server = AppServer(FakeEngine(0), AccessPolicy(api_key="k"))
    try:
        flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
        flags += ["--virtual-time-budget=10000", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom"]
        dom = subprocess.run([*flags, f"{server.url}/?run&text=abc"], capture_output=True, text=True, timeout=90).stdout
        assert 'data-state="done"' in dom, dom[-2000:]
        assert re.search(r'<div id="keybox">', dom) and "401: missing or wrong API key" in dom, dom[-2000:]
    finally:
        server.close()
