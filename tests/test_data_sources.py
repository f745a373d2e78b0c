import functools
import http.server
import io
import threading
import zipfile

import pytest

from llm_ner import data_sources
from llm_ner.cli import main
from llm_ner.data_sources import CLUENER_SIZES, check_cluener, locate_cluener, sample_dir
from llm_ner.errors import DataError
from llm_ner.prompting import load_prompt


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    """data/cluener/ inside tmp_path, and no LLM_NER_DATA."""
    home = tmp_path / "data" / "cluener"
    monkeypatch.setattr(data_sources, "default_data_dir", lambda: home)
    monkeypatch.delenv("LLM_NER_DATA", raising=False)
    return home


@pytest.fixture
def serve(tmp_path):
    """Serve bytes over HTTP on localhost; returns a function name, payload -> URL."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def publish(name: str, payload: bytes) -> str:
        (root / name).write_bytes(payload)
        return f"http://127.0.0.1:{server.server_address[1]}/{name}"

    yield publish
    server.shutdown()


def archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, payload in files.items():
            zf.writestr(name, payload)
    return buffer.getvalue()


def sample_files(prefix: str = "") -> dict[str, bytes]:
    return {f"{prefix}{name}": (sample_dir() / name).read_bytes() for name in ("train.json", "dev.json")}


def refused_url() -> str:
    """A localhost port nobody listens on: the download fails at once, as without network."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/cluener_public.zip"


def test_llm_ner_data_comes_first_and_is_checked(data_home, monkeypatch):
    monkeypatch.setenv("LLM_NER_DATA", str(sample_dir()))
    located = locate_cluener(url=refused_url(), log=lambda message: None)
    assert located.source == "LLM_NER_DATA" and located.folder == sample_dir()
    assert located.check.sizes == {"train.json": 800, "dev.json": 200}
    assert not located.check.is_full_release and not any(located.check.sha256_matches.values())
    assert "not the full CLUENER2020 release" in located.check.summary()


def test_download_unpacks_checks_and_leaves_no_archive(data_home, serve):
    files = sample_files("cluener_public/") | {"cluener_public/test.json": b'{"text": "x"}\n', "README.md": b"r"}
    url = serve("cluener_public.zip", archive(files))
    messages = []
    located = locate_cluener(url=url, log=messages.append)
    assert located.source == "download" and located.folder == data_home
    assert sorted(p.name for p in data_home.iterdir()) == ["dev.json", "train.json"]
    assert (data_home / "dev.json").read_bytes() == (sample_dir() / "dev.json").read_bytes()
    assert located.check.sizes["dev.json"] == 200
    assert any("downloading CLUENER2020" in m for m in messages)
    again = locate_cluener(url=refused_url(), log=lambda message: None)  # now found without a download
    assert again.source == "data/cluener"


def test_download_of_a_bad_archive_is_a_clear_error(data_home, serve):
    with pytest.raises(DataError, match="archive has no dev.json"):
        locate_cluener(url=serve("a.zip", archive({"train.json": b"{}"})), log=lambda message: None)
    with pytest.raises(DataError, match="not a zip archive"):
        locate_cluener(url=serve("b.zip", b"<html>moved</html>"), log=lambda message: None)
    broken = sample_files()
    broken["train.json"] += '{"text": "张三", "label": {"name": {"张三": [[0, 5]]}}}\n'.encode()
    with pytest.raises(DataError, match=r"train\.json:801: "):
        locate_cluener(url=serve("c.zip", archive(broken)), log=lambda message: None)


def test_without_network_it_says_where_to_put_the_files(data_home, capsys):
    messages = []
    with pytest.raises(FileNotFoundError, match="put train.json and dev.json into"):
        locate_cluener(url=refused_url(), log=messages.append)
    assert any(f"into {data_home}/" in m and "LLM_NER_DATA" in m for m in messages)
    assert not data_home.exists()  # no empty folder left behind
    located = locate_cluener(url=refused_url(), allow_sample=True, log=messages.append)
    assert located.source == "sample" and located.folder == sample_dir()
    assert "not CLUENER" in messages[-1]


def test_data_command_prints_the_folder(data_home, capsys):
    assert main(["data", "cluener", "--no-download", "--allow-sample"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(sample_dir())
    assert "sample shipped with llm-ner" in captured.err and "download" not in captured.err.split("\n")[0]
    assert main(["data", "cluener", "--url", refused_url()]) == 1
    assert f"error: CLUENER2020 not found; put train.json and dev.json into {data_home}/" in capsys.readouterr().err


def test_the_sample_is_valid_cluener_with_every_type(cluener_dir):
    result = check_cluener(sample_dir())
    assert result.sizes == {"train.json": 800, "dev.json": 200}
    from llm_ner.data import read_cluener

    train, _ = read_cluener(sample_dir() / "train.json")
    assert {s.label for ex in train for s in ex.spans} == set(load_prompt("cluener_zh").schema.keys)
    assert sum(not ex.spans for ex in train) > 0  # sentences without entities too


def test_real_cluener_release_is_recognised(real_cluener_dir):
    result = check_cluener(real_cluener_dir)
    assert result.sizes == CLUENER_SIZES and result.is_full_release
    assert all(result.sha256_matches.values()), result.summary()
