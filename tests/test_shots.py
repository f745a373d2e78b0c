"""Few-shot prompts (`llm_ner.shots`): which shots each sentence gets, where they sit in the conversation
(the real Qwen2.5 chat template), the token budget, the run fingerprint, and runs through every
backend: the local engine under --constrained (the prefix cache still used), an OpenAI-compatible
server and `llm-ner serve`. Tiny random-weight models: plumbing, not quality."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import noisy_model, records
from harness import free_port, stop, wait_for

from llm_ner import generation
from llm_ner.backends import Answer
from llm_ner.cli import main as cli
from llm_ner.data import Example, Span
from llm_ner.errors import UsageError
from llm_ner.extraction import Annotator, ModelOptions, RunSettings, extraction_fingerprint, run_settings
from llm_ner.prompting import load_prompt
from llm_ner.shots import ShotPool, few_shot_messages, prompt_token_counter

ROOT = Path(__file__).resolve().parent.parent


def ex(text: str, *spans: tuple[int, int, str], id: str = "") -> Example:
    return Example(id or text, text, [Span(*s) for s in spans])


def texts(shots) -> list[str]:
    return [s.text for s in shots]


# ---------------------------------------------------------------------------------------------
# Selection


def test_similar_puts_the_most_similar_last_and_breaks_ties_by_file_order():
    pool = ShotPool([ex("张三去北京"), ex("李四去北京"), ex("今天天气很好"), ex("王五去北京大学读书")])
    # 张三去北京 and 李四去北京 are equally similar to 赵六去北京 (their other characters are unknown to it)
    assert texts(pool.select("赵六去北京", 1)) == ["张三去北京"]
    assert texts(pool.select("赵六去北京", 2)) == ["李四去北京", "张三去北京"]  # best ranked last
    swapped = ShotPool([ex("李四去北京"), ex("张三去北京"), ex("今天天气很好")])
    assert texts(swapped.select("赵六去北京", 1)) == ["李四去北京"]
    # the least similar comes first; sentences sharing nothing still fill K, in file order
    assert texts(pool.select("王五在北京大学", 4)) == ["今天天气很好", "李四去北京", "张三去北京", "王五去北京大学读书"]


def test_a_shot_equal_to_the_sentence_is_never_used_and_repeats_are_kept_once():
    sentences = [ex("张三去北京"), ex("李四去北京"), ex("张三去北京", (0, 2, "name")), ex("今天天气很好")]
    for selection in ("similar", "random", "fixed"):
        pool = ShotPool(sentences, selection)
        assert len(pool) == 3 and pool.examples[0].spans == []  # the first of a repeated text
        for k in (1, 2, 3):
            chosen = texts(pool.select("张三去北京", k))
            assert "张三去北京" not in chosen and len(chosen) == min(k, 2), (selection, k, chosen)
    assert texts(ShotPool(sentences, "fixed").select("今天", 2)) == ["李四去北京", "张三去北京"]  # first K, first last
    assert texts(ShotPool(sentences, "fixed").select("张三去北京", 2)) == ["今天天气很好", "李四去北京"]


def test_random_shots_depend_on_the_seed_and_the_sentence_only(cluener_dev):
    sentences = cluener_dev[:200]
    queries = [e.text for e in cluener_dev[200:230]]
    first = ShotPool(sentences, "random", seed=3)
    alone = [texts(first.select(q, 4)) for q in queries]
    again = [texts(s) for s in ShotPool(list(sentences), "random", seed=3).select_many(queries[::-1], 4)][::-1]
    assert alone == again  # another pool, another batch and order: the same shots per sentence
    assert len({tuple(a) for a in alone}) == len(queries)  # not one draw for every sentence
    other_seed = [texts(ShotPool(sentences, "random", seed=4).select(q, 4)) for q in queries]
    assert sum(a != b for a, b in zip(alone, other_seed)) > len(queries) // 2


def test_similar_shots_share_labels_with_the_sentence_more_than_random_ones(real_cluener_dir):
    """Retrieval does its job on CLUENER: the similar shots of dev sentences (from train) share more
    entity types with them than random shots do."""
    from llm_ner.data import load_examples

    train, _ = load_examples(real_cluener_dir / "train.json")
    dev, _ = load_examples(real_cluener_dir / "dev.json")

    def shared_labels(selection: str) -> float:
        pool = ShotPool(train[:3000], selection)
        chosen = pool.select_many([d.text for d in dev[:100]], 4)
        hits = [
            bool({s.label for s in d.spans} & {s.label for s in shot.spans}) for d, c in zip(dev, chosen) for shot in c
        ]
        return sum(hits) / len(hits)

    similar, drawn = shared_labels("similar"), shared_labels("random")
    print(f"\nshots sharing an entity type with the sentence: similar {similar:.2f}, random {drawn:.2f}")
    assert similar > drawn + 0.15


# ---------------------------------------------------------------------------------------------
# The conversation


SHOTS = [ex("李四在上海工作", (0, 2, "name"), (3, 5, "address")), ex("张三去北京", (0, 2, "name"), (3, 5, "address"))]


def test_the_conversation_through_the_real_qwen_template(qwen_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(qwen_tokenizer_dir("qwen2.5"))
    prompt = load_prompt("cluener_zh_short")
    question = "王五去南京"
    messages = prompt.messages(question, "mentions", SHOTS)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    zero_shot = prompt.messages(question, "mentions")
    assert messages[0] == zero_shot[0] and messages[-1] == zero_shot[-1]
    assert messages[1] == prompt.messages(SHOTS[0].text, "mentions")[-1]  # a shot is asked as a sentence is
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # the answer exactly as training renders it (compact JSON, mentions in reading order)
    answer = '[{"text":"张三","label":"name"},{"text":"北京","label":"address"}]'
    assert prompt.render_answer(SHOTS[1], "mentions") == answer
    assert f"<|im_start|>assistant\n{answer}<|im_end|>\n<|im_start|>user\n" in rendered
    assert rendered.index("李四在上海工作") < rendered.index("张三去北京") < rendered.index(question)
    assert rendered.endswith(f"文本：{question}<|im_end|>\n<|im_start|>assistant\n")
    grouped = prompt.messages(question, "grouped", SHOTS)
    assert json.loads(grouped[4]["content"]) == {"address": ["北京"], "name": ["张三"]}


def test_the_budget_drops_the_least_similar_shots_first(qwen_tokenizer_dir):
    from transformers import AutoTokenizer

    count = prompt_token_counter(AutoTokenizer.from_pretrained(qwen_tokenizer_dir("qwen2.5")))
    prompt = load_prompt("cluener_zh_short")
    shots = [ex("今天天气很好"), *SHOTS]  # conversation order: 张三去北京 (the best ranked) last
    sizes = [count(prompt.messages("王五去南京", "mentions", shots[len(shots) - n :])) for n in range(4)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4
    for kept in range(4):
        messages = few_shot_messages(prompt, "王五去南京", "mentions", shots, sizes[kept], count)
        assert messages == prompt.messages("王五去南京", "mentions", shots[len(shots) - kept :])
        assert count(messages) <= sizes[kept]
    assert few_shot_messages(prompt, "王五去南京", "mentions", shots, 1, count) == prompt.messages("王五去南京")


def test_the_byte_bound_never_undercounts_qwen(qwen_tokenizer_dir, cluener_dev):
    """--backend openai has no tokenizer here: its bound must not let a prompt over the budget through."""
    from transformers import AutoTokenizer

    exact = prompt_token_counter(AutoTokenizer.from_pretrained(qwen_tokenizer_dir("qwen2.5")))
    bound = prompt_token_counter(None)
    pool = ShotPool(cluener_dev[:100])
    for name in ("cluener_zh", "cluener_zh_short"):
        prompt = load_prompt(name)
        for sentence in cluener_dev[100:130]:
            messages = prompt.messages(sentence.text, "mentions", pool.select(sentence.text, 3))
            assert exact(messages) <= bound(messages) <= 5 * exact(messages)  # Chinese: 3 bytes, ~1.5 a token


# ---------------------------------------------------------------------------------------------
# Options and fingerprint


def test_shot_options_are_checked(tmp_path):
    for options in ({"shots": 2}, {"shots_from": "x.json"}, {"max_prompt_tokens": 100}):
        with pytest.raises(UsageError):
            ModelOptions(**options)
    assert cli(["extract", "--model", "m", "--input", "i", "--output", "o", "--shots", "2"]) == 2
    shots = tmp_path / "shots.json"
    shots.write_text('{"text": "张三", "label": {"name": {"张三": [[0, 1]]}}}\n{"text": "x", "label": {"fish": '
                     '{"x": [[0, 0]]}}}\n', encoding="utf-8")  # fmt: skip
    options = ModelOptions(model="m", prompt="cluener_zh", shots=1, shots_from=str(shots))
    with pytest.raises(Exception, match=rf"{shots}:2: .*unknown label 'fish'"):
        run_settings(options)


def test_zero_shot_fingerprints_stay_as_before_and_shots_enter_them(tmp_path):
    shots = tmp_path / "shots.json"
    shots.write_text('{"text": "张三", "label": {"name": {"张三": [[0, 1]]}}}\n', encoding="utf-8")
    zero = ModelOptions(model="m", prompt="cluener_zh")
    fingerprint = extraction_fingerprint(run_settings(zero), zero)
    assert not {k for k in fingerprint if "shot" in k or "prompt_tokens" in k}
    few = ModelOptions(model="m", prompt="cluener_zh", shots=1, shots_from=str(shots))
    with_shots = extraction_fingerprint(run_settings(few), few)
    assert with_shots["shots"] == 1 and with_shots["shot_selection"] == "similar" and "shot_seed" not in with_shots
    assert with_shots["shots_from"].startswith("sha256:")
    drawn = ModelOptions(model="m", prompt="cluener_zh", shots=1, shots_from=str(shots), shot_selection="random")
    assert extraction_fingerprint(run_settings(drawn), drawn)["shot_seed"] == 0
    shots.write_text('{"text": "李四", "label": {"name": {"李四": [[0, 1]]}}}\n', encoding="utf-8")
    assert extraction_fingerprint(run_settings(few), few)["shots_from"] != with_shots["shots_from"]


# ---------------------------------------------------------------------------------------------
# Runs


@pytest.fixture(scope="module")
def noisy_qwen(tmp_path_factory):
    """A tiny Qwen3 with large random weights: its answers change with the prompt."""
    return noisy_model(tmp_path_factory.mktemp("noisy") / "qwen3")


@pytest.fixture(scope="module")
def data(tmp_path_factory, cluener_dev):
    """dev sentences 40-45 to extract, dev 0-39 (labelled) as the shots file."""
    folder = tmp_path_factory.mktemp("data")
    lines = [json.dumps({"id": f"d{i}", "text": e.text}, ensure_ascii=False) for i, e in enumerate(cluener_dev[40:45])]
    (folder / "in.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    from llm_ner.data import example_to_cluener

    shots = [json.dumps(example_to_cluener(e), ensure_ascii=False) for e in cluener_dev[:40]]
    (folder / "shots.json").write_text("\n".join(shots) + "\n", encoding="utf-8")
    return folder


def extract(model, data: Path, output: Path, *extra: str) -> list[str]:
    return ["extract", "--model", str(model), "--input", str(data / "in.json"), "--output", str(output),
            "--prompt", "cluener_zh_short", "--format", "mentions", "--max-new-tokens", "12", "--quiet",
            "--max-parse-failures", "1", *extra]  # fmt: skip


def test_constrained_few_shot_run_parses_every_answer_and_keeps_the_prefix_cache(
    noisy_qwen, data, tmp_path, monkeypatch
):
    built, used = [], []
    real_cache, real_start = generation.prefix_cache, generation.DecodingBatch.start

    def spy_cache(model, prefix):
        built.append(list(prefix))
        return real_cache(model, prefix)

    def spy_start(model, prompts, pad_id, max_new_tokens, prefix=None):
        used.append(prefix[0] if prefix else 0)
        return real_start(model, prompts, pad_id, max_new_tokens, prefix)

    monkeypatch.setattr(generation.decoding, "prefix_cache", spy_cache)
    monkeypatch.setattr(generation.DecodingBatch, "start", staticmethod(spy_start))
    shots = ["--shots", "3", "--shots-from", str(data / "shots.json")]
    out = tmp_path / "similar.json"
    assert cli(extract(noisy_qwen, data, out, "--constrained", *shots, "--max-prompt-tokens", "4000")) == 0
    results = records(out)
    assert len(results) == 5 and sum(r["parse"].get("answers", 0) for r in results) == 5
    assert sum(r["parse"].get("parse_failures", 0) for r in results) == 0
    for record in results:
        for mentions in record["label"].values():
            for mention, ranges in mentions.items():
                assert all(record["text"][a : b + 1] == mention for a, b in ranges)
    # similar shots differ per sentence: the cache holds the system prompt (and the turn header)
    assert len(built) == 1 and len(built[0]) >= generation.MIN_SHARED_PREFIX
    assert used and all(length == len(built[0]) for length in used)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(noisy_qwen)
    prompt = load_prompt("cluener_zh_short")
    assert prompt.messages("x")[0]["content"] in tokenizer.decode(built[0])

    # fixed shots: every prompt shares them, so the cached prefix covers them too
    built.clear()
    out = tmp_path / "fixed.json"
    assert cli(extract(noisy_qwen, data, out, "--constrained", *shots, "--shot-selection", "fixed")) == 0
    pool = ShotPool.load(data / "shots.json", selection="fixed")
    cached = tokenizer.decode(built[0])
    assert len(built) == 1
    for shot in pool.select("x", 3):
        assert shot.text in cached and prompt.render_answer(shot) in cached
    assert sum(r["parse"].get("parse_failures", 0) for r in records(out)) == 0


def test_shots_change_the_answers_and_a_changed_fingerprint_refuses_a_resume(noisy_qwen, data, tmp_path, capsys):
    zero, few = tmp_path / "zero.json", tmp_path / "few.json"
    assert cli(extract(noisy_qwen, data, zero)) == 0
    shots = ["--shots", "2", "--shots-from", str(data / "shots.json")]
    assert cli(extract(noisy_qwen, data, few, *shots)) == 0
    assert "2 similar shots per sentence" in capsys.readouterr().err
    assert [r["raw"] for r in records(zero)] != [r["raw"] for r in records(few)]
    assert cli(extract(noisy_qwen, data, few, *shots, "--shot-selection", "random")) == 1
    assert "shot_selection: 'similar' then, 'random' now" in capsys.readouterr().err
    assert cli(extract(noisy_qwen, data, few)) == 1  # zero-shot over a few-shot output
    assert "shots:" in capsys.readouterr().err
    assert cli(extract(noisy_qwen, data, zero, *shots)) == 1
    assert cli(extract(noisy_qwen, data, few, *shots)) == 0  # the same settings resume


def test_openai_backend_sends_the_shots(data, tmp_path):
    """The server receives the few-shot conversation; the byte bound drops shots for a small budget."""
    from test_openai_backend import FlakyServer

    server = FlakyServer(failures=0)
    try:
        base = ["extract", "--backend", "openai", "--base-url", server.url, "--served-model", "m", "--quiet"]
        base += ["--input", str(data / "in.json"), "--prompt", "cluener_zh_short", "--format", "mentions"]
        shots = ["--shots", "3", "--shots-from", str(data / "shots.json")]
        assert cli([*base, "--output", str(tmp_path / "a.json"), *shots]) == 0
        pool = ShotPool.load(data / "shots.json")
        prompt = load_prompt("cluener_zh_short")
        sent = {body["messages"][-1]["content"]: body["messages"] for body in server.bodies}
        assert len(sent) == 5
        for record in records(tmp_path / "a.json"):
            expected = prompt.messages(record["text"], "mentions", pool.select(record["text"], 3))
            assert sent[expected[-1]["content"]] == expected
        server.bodies.clear()
        bound = prompt_token_counter(None)
        one_shot = max(bound(m) for m in (prompt.messages(r["text"], "mentions", pool.select(r["text"], 1))
                                          for r in records(tmp_path / "a.json")))  # fmt: skip
        budget = ["--max-prompt-tokens", str(one_shot)]
        assert cli([*base, "--output", str(tmp_path / "b.json"), *shots, *budget]) == 0
        kept = []
        for body in server.bodies:
            text = body["messages"][-1]["content"].rpartition("文本：")[2]
            n = (len(body["messages"]) - 2) // 2
            # the best ranked shots stay: the ones nearest the question
            assert body["messages"] == prompt.messages(text, "mentions", pool.select(text, 3)[3 - n :])
            assert bound(body["messages"]) <= one_shot
            kept.append(n)
        assert len(kept) == 5 and min(kept) >= 1 and max(kept) < 3, kept
    finally:
        server.close()


def test_serve_with_shots_answers_as_extract_does(noisy_qwen, data, tmp_path):
    import urllib.request

    port = free_port()
    flags = ["--prompt", "cluener_zh_short", "--format", "mentions", "--max-new-tokens", "12"]
    flags += ["--shots", "2", "--shots-from", str(data / "shots.json"), "--max-prompt-tokens", "4000"]
    command = [sys.executable, "-m", "llm_ner", "serve", "--model", str(noisy_qwen), "--port", str(port), *flags]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", process)
        sentences = [json.loads(line)["text"] for line in (data / "in.json").read_text(encoding="utf-8").splitlines()]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/extract",
            data=json.dumps({"texts": sentences}, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            served = json.loads(response.read())["results"]
    finally:
        stop(process)
    log = process.stdout.read()
    assert "2 similar shots per sentence" in log
    out = tmp_path / "few.json"
    assert cli(extract(noisy_qwen, data, out, *flags[6:])) == 0
    assert [r["raw"] for r in served] == [r["raw"] for r in records(out)]


def test_the_annotator_counts_the_budget_with_the_backends_tokenizer(qwen_tokenizer_dir):
    """A local backend's tokenizer counts the budget exactly; a backend without one gets the byte bound."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(qwen_tokenizer_dir("qwen2.5"))
    prompt = load_prompt("cluener_zh_short")
    pool = ShotPool([ex("今天天气很好"), *SHOTS])
    exact = prompt_token_counter(tokenizer)
    budget = exact(prompt.messages("王五去南京", "mentions", pool.select("王五去南京", 2)))
    settings = RunSettings("m", None, prompt, "mentions", shot_pool=pool, shots=3, max_prompt_tokens=budget)

    class Recorder:
        def __init__(self, tokenizer=None):
            self.tokenizer, self.conversations = tokenizer, None

        def answer(self, conversations, texts):
            self.conversations = conversations
            return [Answer("[]") for _ in texts]

    local = Recorder(tokenizer)
    Annotator(local, settings).answer(["王五去南京"])
    assert len(local.conversations[0]) == 1 + 2 * 2 + 1  # two shots fit, counted exactly
    # the bound counts more: even the zero-shot prompt exceeds this budget, refused before any answer
    with pytest.raises(UsageError, match=rf"--max-prompt-tokens {budget} is below .* as bounded"):
        Annotator(Recorder(), settings)
