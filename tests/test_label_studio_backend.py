"""`llm-ner serve --label-studio`: Label Studio's ML backend protocol, replayed against a real server.

The requests are those Label Studio itself sends, built as in label_studio/ml/api_connector.py of
HumanSignal/label-studio (MLApi.health/setup/make_predictions: GET health; POST setup {project,
schema, hostname, access_token, model_version}; POST predict {tasks, model_version, project,
label_config, params: {login, password, context}}; the URL is urljoin(url + "/", endpoint)), and
the answers are checked against what label_studio_ml/api.py of HumanSignal/label-studio-ml-backend
(commit d02cedf35d0e5d21f2f437c120174c62f66bf57a) returns and its tests/test_api.py asks. The
packages themselves are not installed: label-studio-ml 1.0.9 on PyPI pins Flask 1.1.2 and the SDK
it needs pulls opencv, pandas and nltk, too much for a protocol of four JSON requests.
"""

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urljoin

import pytest
from conftest import noisy_model
from harness import free_port, stop, wait_for

pytest.importorskip("fastapi", reason='`llm-ner serve` needs fastapi and uvicorn: pip install "llm-ner[serve]"')
pytest.importorskip("uvicorn", reason='`llm-ner serve` needs fastapi and uvicorn: pip install "llm-ner[serve]"')

from test_serve import talkative  # noqa: E402  (after the skips: it needs the serving extra too)

from llm_ner.prompting import load_prompt  # noqa: E402
from llm_ner.serving.label_studio import LabelStudioError, parse_label_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
KEY = "ls-test-key"
SCHEMA = load_prompt("cluener_zh").schema

# Control and object names other than the "label"/"text" of `llm-ner export`: the answers must use the config's.
CONFIG = """<View>
  <Header value="实体"/>
  <Labels name="ner" toName="content">
    <Label value="name" background="red"/>
    <Label value="公司" background="blue"/>
    <Label value="Place" predicted_values="address, scene" background="green"/>
    <Label value="组织机构"/>
    <Label value="government"/><Label value="position"/><Label value="game"/>
    <Label value="book"/><Label value="movie"/>
  </Labels>
  <Text name="content" value="$sentence"/>
</View>"""
CONFIG_MAP = {
    "name": "name",
    "company": "公司",
    "address": "Place",
    "scene": "Place",
    "organization": "组织机构",
    **{key: key for key in ("government", "position", "game", "book", "movie")},
}
TEXTS = [
    "浙商银行企业信贷部叶老桂博士则从另一个角度对五道门槛进行了解读。",
    "生生不息CSOL生化狂潮让你填弹狂扫",
    # longer than --max-chars 30: answered in pieces, offsets shifted back into the whole text
    "北京市海淀区的清华大学和北京大学举办了一场关于人工智能的讲座，腾讯公司和阿里巴巴的工程师也参加了讨论。",
    "",
]


def basic(user: str, password: str) -> str:
    """The header `requests` sends for auth=(user, password), as Label Studio's Basic Authentication does."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode("latin-1")).decode()


AUTH = {"Authorization": basic("labelstudio", KEY)}


def call(base: str, endpoint: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    """GET (or POST ``body`` as JSON) Label Studio's way: the endpoint joined to the URL the user entered."""
    url = urljoin(base if base.endswith("/") else base + "/", endpoint)
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
    request_headers = {"User-Agent": "heartex/test", **({"Content-Type": "application/json"} if data else {})}
    request = urllib.request.Request(url, data=data, headers={**request_headers, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def predict_request(tasks: list[dict], config: str = CONFIG, model_version: str | None = None) -> dict:
    """MLApi.make_predictions's body (tasks as TaskSimpleSerializer writes them)."""
    return {
        "tasks": tasks,
        "model_version": model_version,
        "project": "3.1712345678",
        "label_config": config,
        "params": {"login": None, "password": None, "context": None},
    }


def tasks_of(texts: list[str]) -> list[dict]:
    return [
        {"id": 100 + i, "data": {"sentence": text}, "meta": {}, "annotations": [], "predictions": [], "project": 3}
        for i, text in enumerate(texts)
    ]


def extract(base: str, texts: list[str]) -> list[dict]:
    """The results of ``POST /extract`` for ``texts``."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    request = urllib.request.Request(base + "/extract", json.dumps({"texts": texts}).encode(), headers)
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())["results"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`llm-ner serve --label-studio` of a tiny random Qwen3 that answers entities, with an API key;
    yields (the URL an annotator enters in Label Studio, the server's /extract URL)."""
    model = noisy_model(tmp_path_factory.mktemp("noisy") / "qwen3")
    talkative(model)
    port = free_port()
    command = [sys.executable, "-m", "llm_ner", "serve", "--model", str(model), "--prompt", "cluener_zh"]
    command += ["--format", "mentions", "--constrained", "--port", str(port), "--max-new-tokens", "40"]
    command += ["--max-chars", "30", "--max-texts", "3", "--label-studio"]
    env = {**os.environ, "LLM_NER_SERVE_API_KEY": KEY}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/", process)  # the page needs no key
        yield base + "/label-studio", base
    finally:
        stop(process)


def test_health_setup_predict_as_label_studio_sends_them(served):
    url, base = served
    status, health = call(url, "health", headers=AUTH)
    assert status == 200 and health["status"] == "UP" and health["model_class"]
    assert call(url, "", headers=AUTH)[0] == 200  # label-studio-ml-backend answers / too
    assert call(url, "health")[0] == 401  # the API key guards the backend
    assert call(url, "health", headers={"Authorization": basic("labelstudio", "wrong")})[0] == 401

    setup = {
        "project": "3.1712345678",
        "schema": CONFIG,
        "hostname": "http://localhost:8080",
        "access_token": "0123456789abcdef",
        "model_version": None,
    }
    status, answer = call(url, "setup", setup, AUTH)
    version = answer.get("model_version")
    assert status == 200 and version == health["model_version"] and version.startswith("llm-ner-qwen3-"), answer

    tasks = tasks_of(TEXTS)
    status, answer = call(url, "predict", predict_request(tasks, model_version=version), AUTH)
    assert status == 200, answer
    predictions = answer["results"]
    assert len(predictions) == len(tasks)  # one per task, in order (--max-texts 3: two batcher calls)

    # The same texts through /extract: the same engine, so the same entities, mapped to the config's labels.
    extracted = extract(base, TEXTS[:3]) + extract(base, TEXTS[3:])  # --max-texts 3 per /extract request
    entities = 0
    for text, prediction, result in zip(TEXTS, predictions, extracted):
        assert prediction["model_version"] == version
        expected = sorted(
            (e["start"], e["end"], e["text"], CONFIG_MAP[e["label"]], e["score"])
            for e in result["entities"]
            if e["label"] in CONFIG_MAP
        )
        got = []
        for item in prediction["result"]:
            value = item["value"]
            assert (item["from_name"], item["to_name"], item["type"]) == ("ner", "content", "labels"), item
            assert text[value["start"] : value["end"]] == value["text"], (text, value)
            assert len(value["labels"]) == 1 and value["labels"][0] in CONFIG_MAP.values()
            assert 0.0 < item["score"] <= 1.0
            got.append((value["start"], value["end"], value["text"], value["labels"][0], item["score"]))
        assert sorted(got) == expected
        assert len({item["id"] for item in prediction["result"]}) == len(prediction["result"])
        entities += len(got)
        # Task score: the least certain of its entities and its answer (an empty answer is scored too).
        assert 0.0 < prediction["score"] <= min([score for *_, score in got], default=1.0)
        assert prediction["score"] == pytest.approx(min([result["answer_score"], *(s for *_, s in got)]), abs=1e-6)
    assert entities >= 3, "the tiny model answered too few entities to test anything"
    long_ends = [item["value"]["end"] for item in predictions[2]["result"]]
    assert any(end > 30 for end in long_ends), f"no entity in the long text's second piece: {long_ends}"


def test_a_config_with_fewer_labels_gets_only_those(served):
    url, _ = served
    config = CONFIG.replace('<Label value="name" background="red"/>', "").replace(
        '<Label value="公司" background="blue"/>', ""
    )
    full = call(url, "predict", predict_request(tasks_of(TEXTS[:3])), AUTH)[1]["results"]
    fewer = call(url, "predict", predict_request(tasks_of(TEXTS[:3]), config), AUTH)[1]["results"]
    for a, b in zip(full, fewer):
        assert [r for r in a["result"] if r["value"]["labels"][0] not in ("name", "公司")] == b["result"]


@pytest.mark.parametrize(
    "config, status, reason",
    [
        (CONFIG.replace('value="book"', 'value="Book title"'), 400, "'Book title' not among the model's labels"),
        (CONFIG.replace("address, scene", "address, sceen"), 400, "'sceen' (predicted_values of 'Place') not among"),
        ("<View><Labels name='ner' toName='content'><Label value='name'/></Labels>", 400, "not well-formed XML"),
        ("<View><Text name='content' value='$sentence'/></View>", 400, "no <Labels"),
        ('<!DOCTYPE x [<!ENTITY a "aaaa">]><View/>', 400, "DOCTYPE is not accepted"),
        (None, 400, "no label config"),
    ],
)
def test_configs_the_model_cannot_serve_get_a_reason(served, config, status, reason):
    url, _ = served
    setup = {"project": "3.1712345678", "schema": config, "hostname": "http://localhost:8080", "access_token": "x"}
    for endpoint, body in (("setup", setup), ("predict", predict_request(tasks_of(TEXTS[:1]), config))):
        code, answer = call(url, endpoint, body, AUTH)
        assert code == status and reason in answer["error"] and "\n" not in answer["error"], (endpoint, answer)


def test_bad_tasks_and_other_endpoints(served):
    url, base = served
    tasks = tasks_of(TEXTS[:2])
    del tasks[1]["data"]["sentence"]
    tasks[1]["data"]["text"] = TEXTS[1]
    status, answer = call(url, "predict", predict_request(tasks), AUTH)
    assert status == 400 and "task 101: no text in data.sentence" in answer["error"], answer
    assert call(url, "predict", predict_request([]), AUTH) == (200, {"results": []})
    assert call(url, "predict", {"tasks": "x"}, AUTH)[0] == 400
    status, answer = call(url, "webhook", {"action": "START_TRAINING", "project": {"id": 3}}, AUTH)
    assert status == 200 and "llm-ner train" in answer["detail"]
    assert call(url, "metrics", headers=AUTH) == (200, {})
    # The Host check still holds: a name the server was not told about (DNS rebinding) gets 403.
    assert call(url, "health", headers={**AUTH, "Host": "evil.example"})[0] == 403


def test_label_config_mapping_without_a_server():
    target = parse_label_config(CONFIG, SCHEMA)
    assert (target.from_name, target.to_name, target.field) == ("ner", "content", "sentence")
    assert target.labels == CONFIG_MAP
    aliased = "<View><Text name='t' value='$text'/><Labels name='l' toName='t'><Label value='姓名' alias='PER'/>"
    aliased += "</Labels></View>"
    assert parse_label_config(aliased, SCHEMA).labels == {"name": "PER"}  # results carry the alias
    # A typo among predicted values is refused too, though its neighbour is known: naming it and the known labels.
    typo = CONFIG.replace('predicted_values="address, scene"', 'predicted_values="address,sceen, Adress"')
    with pytest.raises(LabelStudioError) as caught:
        parse_label_config(typo, SCHEMA)
    message = str(caught.value)
    assert "'sceen' (predicted_values of 'Place'), 'Adress' (predicted_values of 'Place') not among" in message
    assert "address (地址)" in message and "scene (景点)" in message and "\n" not in message
    for config, reason in [
        (CONFIG.replace('value="government"', 'value="姓名"'), "both mean the model's 'name'"),
        (CONFIG.replace('value="$sentence"', 'value="$sentence" valueType="url"'), "only text in the task"),
        (CONFIG.replace('value="$sentence"', 'value="literal"'), "must show a task field"),
        ("<View>" + "<View>" * 10 + "</View>" * 10, "not well-formed"),
    ]:
        with pytest.raises(LabelStudioError, match=reason.replace("(", r"\(")):
            parse_label_config(config, SCHEMA)


def test_basic_auth_carries_the_api_key():
    from llm_ner.serving import AccessPolicy

    policy = AccessPolicy(api_key=KEY)
    assert policy.key_matches(basic("anyone", KEY)) and policy.key_matches(f"Bearer {KEY}")
    assert not policy.key_matches(basic(KEY, "wrong")) and not policy.key_matches("Basic !!not-base64")
    assert not policy.key_matches("Basic ключ")  # not ASCII: no base64 (the server sees latin-1 decoded bytes)
    assert not policy.key_matches(basic("anyone", KEY + "x")) and not policy.key_matches(f"Token {KEY}")
