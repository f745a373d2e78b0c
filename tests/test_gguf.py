"""`llm-ner export-model`, the Ollama Modelfile, llama.cpp as an extraction backend, the model card.

The round trip runs llama.cpp's own converter (the copy `--fetch-converter` keeps, from the llama-cpp-python
sdist) on a random-weight Qwen2 of a small shape beside the real Qwen2.5 tokenizer (the converter checks the
pre-tokenizer by hashing the tokenizer's output), reads the GGUF back with the gguf package (metadata and every
tensor), runs it in llama.cpp (tokens and logits) and serves it with llama-cpp-python's OpenAI-compatible server
for `llm-ner extract --backend openai`. Tests that need what is not installed skip, saying what to install.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import dev_file, records, redraw_weights
from harness import free_port, perturbed, stop, wait_for

from llm_ner.backends.openai import OpenAIBackend
from llm_ner.cli import main as cli
from llm_ner.gguf_export.converter import find_converter, read_metadata
from llm_ner.gguf_export.export import run_metadata
from llm_ner.gguf_export.modelfile import OLLAMA_PARAMETERS, ollama_modelfile, parse_modelfile
from llm_ner.prompting import load_prompt, prompt_from_yaml
from llm_ner.training.model_card import read_card_header
from llm_ner.training.run_dir import RunRecord

SENTENCE = "浙商银行企业信贷部叶老桂博士则从另一个角度对五道门槛进行了解读。"


def needs(module: str, install: str):
    try:
        __import__(module)
    except ImportError:
        pytest.skip(f"needs {module} ({install}; `bash scripts/setup_gguf.sh` installs the [gguf] extra)")


@pytest.fixture(scope="module")
def converter():
    needs("gguf", "pip install 'llm-ner[gguf]'")
    from llm_ner.errors import UsageError

    try:
        return find_converter()
    except UsageError as exc:
        pytest.skip(f"needs llama.cpp's converter: {exc}")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, qwen_tokenizer_dir):
    """A random Qwen2 (hidden 64, 2 layers) beside the real Qwen2.5 tokenizer, weights redrawn (std 1) so greedy
    answers differ from sentence to sentence, with the run record of a cluener_zh_short training run."""
    from llm_ner.tiny import build_tiny_model

    folder = tmp_path_factory.mktemp("gguf")
    base = build_tiny_model(folder / "base", None, tokenizer_dir=qwen_tokenizer_dir("qwen2.5"), hidden_size=64)
    model = redraw_weights(base, folder / "run", std=1.0)
    shutil.copyfile(base / "chat_template.jinja", model / "chat_template.jinja")
    RunRecord(prompt_name="cluener_zh_short", answer_format="mentions", base_model=str(model)).save(
        model, prompt=load_prompt("cluener_zh_short")
    )
    return model


@pytest.fixture(scope="module")
def exported(converter, tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "tiny-ner"
    code = cli(["export-model", "--model", str(tiny_run), "--out", str(out), "--gguf", "f32,f16,q8_0"])
    assert code == 0
    return out


def hf_state(model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32").eval()
    return model, {name: p.detach().numpy() for name, p in model.state_dict().items()}


HF_NAMES = {  # llama.cpp's GGUF tensor names of a Qwen2 block, written out here rather than taken from gguf
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def hf_name(gguf_name: str) -> str:
    fixed = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight"}
    if gguf_name in fixed:
        return fixed[gguf_name]
    if gguf_name == "output.weight":
        return "lm_head.weight"
    block, index, part, kind = re.fullmatch(r"(blk)\.(\d+)\.(\w+)\.(weight|bias)", gguf_name).groups()
    return f"model.layers.{index}.{HF_NAMES[part]}.{kind}"


def test_gguf_metadata_and_tensors_round_trip(exported, tiny_run):
    """Written by llama.cpp's converter, read back by gguf: the architecture, the pre-tokenizer llama.cpp
    recognised, the chat template, rope, llm-ner's metadata, and every tensor (f32 exact, f16 exactly the
    weights rounded to f16, q8_0 within its block scale)."""
    import gguf
    import numpy as np
    from transformers import AutoConfig, AutoTokenizer

    files = {t: exported / f"tiny-ner-{t}.gguf" for t in ("f32", "f16", "q8_0")}
    assert all(f.is_file() for f in files.values())
    meta = read_metadata(files["f16"])
    config = AutoConfig.from_pretrained(tiny_run)
    tokenizer = AutoTokenizer.from_pretrained(tiny_run)
    assert meta["general.architecture"] == "qwen2"
    assert meta["tokenizer.ggml.pre"] == "qwen2"  # the real Qwen2.5 pre-tokenizer, found by llama.cpp's hash check
    assert meta["tokenizer.chat_template"] == tokenizer.chat_template
    assert meta["qwen2.block_count"] == config.num_hidden_layers
    assert meta["qwen2.rope.freq_base"] == pytest.approx(config.rope_parameters["rope_theta"])
    assert meta["tokenizer.ggml.eos_token_id"] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    record = RunRecord.load(tiny_run)
    prompt = record.load_prompt()
    for key, value in run_metadata(record, prompt).items():
        assert meta[key] == value, key
    carried = prompt_from_yaml(meta["llm_ner.prompt_yaml"], Path("gguf"))
    assert carried.messages(SENTENCE, "mentions") == prompt.messages(SENTENCE, "mentions")
    assert json.loads(meta["llm_ner.run_record"])["answer_format"] == "mentions"
    # the sidecar extract reads, and the folder's card
    assert RunRecord.load(exported).load_prompt().messages(SENTENCE) == prompt.messages(SENTENCE)
    assert read_card_header(exported / "README.md")["library_name"] == "gguf"

    _, state = hf_state(tiny_run)
    for kind, path in files.items():
        reader = gguf.GGUFReader(path)
        names = {t.name for t in reader.tensors}
        # the type asked for, in every matrix (llama.cpp keeps norms and biases in f32)
        assert {t.tensor_type.name for t in reader.tensors if len(t.shape) > 1} == {kind.upper()}, kind
        tied = "output.weight" not in names  # tied embeddings: llama.cpp reuses token_embd as the output layer
        assert {hf_name(n) for n in names} == set(state) - ({"lm_head.weight"} if tied else set()), kind
        for tensor in reader.tensors:
            expected = state[hf_name(tensor.name)]
            got = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(expected.shape)
            if kind == "f32" or tensor.tensor_type == gguf.GGMLQuantizationType.F32:
                assert np.array_equal(got, expected), (kind, tensor.name)
            elif kind == "f16":
                assert np.array_equal(got, expected.astype(np.float16).astype(np.float32)), tensor.name
            else:  # q8_0: 8 bits per weight and a scale per block of 32
                assert np.abs(got - expected).max() <= np.abs(expected).max() / 127 + 1e-6, tensor.name


def test_llama_cpp_tokens_and_logits_equal_transformers(exported, tiny_run, cluener_dev):
    """llama.cpp tokenizes CLUENER sentences and the chat prompt as the real Qwen2.5 tokenizer does, and its
    logits equal transformers' (f32 GGUF: float32 rounding; f16 GGUF: against the weights rounded to f16).

    The KV cache is float32 here (llama.cpp's default is f16, off by 1e-2 on these std-1 weights): the test is of
    the converted weights, not of the cache. With f16 weights llama.cpp's CPU matmul also rounds the activations
    to f16, which these weights amplify (measured: 1.6e-2 relative RMS), hence the f16 bound."""
    needs("llama_cpp", "pip install 'llm-ner[gguf]' builds llama-cpp-python")
    import numpy as np
    import torch
    from llama_cpp import GGML_TYPE_F32, Llama
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_run)
    prompt = load_prompt("cluener_zh_short")
    chat = tokenizer.apply_chat_template(prompt.messages(SENTENCE), add_generation_prompt=True, tokenize=False)
    texts = [ex.text for ex in cluener_dev[:200]] + [chat]
    model, _ = hf_state(tiny_run)
    ids = tokenizer(chat)["input_ids"]
    for kind in ("f32", "f16"):
        path = str(exported / f"tiny-ner-{kind}.gguf")
        llm = Llama(
            path, n_ctx=512, logits_all=True, n_threads=2, type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, verbose=False
        )
        if kind == "f32":
            for text in texts:
                assert llm.tokenize(text.encode(), add_bos=False, special=True) == tokenizer(text)["input_ids"], text
        llm.eval(ids)
        got = np.array(llm.scores[: len(ids)])
        reference = model if kind == "f32" else model.to(torch.float16).to(torch.float32)
        with torch.no_grad():
            expected = reference(torch.tensor([ids])).logits[0].numpy()
        error = np.abs(got - expected).max() / np.abs(expected).max()
        rms = np.sqrt(((got - expected) ** 2).mean() / (expected**2).mean())
        agree = (got.argmax(-1) == expected.argmax(-1)).mean()
        print(f"{kind}: max |llama.cpp - transformers| / max |logit| = {error:.2e}, relative RMS {rms:.2e}, "
              f"argmax agreement {agree:.3f}")  # fmt: skip
        if kind == "f32":
            assert error < 1e-4 and agree == 1.0
        else:
            assert rms < 3e-2 and agree >= 0.95
        llm.close()


@pytest.fixture(scope="module")
def llama_cpp_server(exported, tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server on 127.0.0.1 with the f32 GGUF as model "tiny-ner" (its log in
    a file: a pipe nobody reads would fill up and stop the server)."""

    needs("llama_cpp", "pip install 'llm-ner[gguf]' builds llama-cpp-python")
    needs("llama_cpp.server.app", "pip install 'llama-cpp-python[server]'")
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(exported / "tiny-ner-f32.gguf")]
    command += ["--model_alias", "tiny-ner", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    # a float32 KV cache (llama.cpp's default is f16): answers compared with the local engine's in float32
    command += ["--n_threads", "2", "--type_k", "0", "--type_v", "0", "--logits_all", "false", "--verbose", "false"]
    log = tmp_path_factory.mktemp("server") / "llama-cpp-server.log"
    with open(log, "w", encoding="utf-8") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/v1/models", process, 120, log=log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(process)


def test_llama_cpp_server_answers_as_the_local_engine(exported, tiny_run, llama_cpp_server, cluener_dev, tmp_path):
    """`extract --backend openai --api-dialect llama-cpp-python` against the served f32 GGUF writes the records
    the local engine writes from the Hugging Face model (float32), prompt and format read from the GGUF folder."""
    source = dev_file(tmp_path / "dev.json", cluener_dev, 16)
    common = ["--input", str(source), "--quiet", "--max-new-tokens", "12", "--max-parse-failures", "1"]
    local = ["--model", str(tiny_run), "--dtype", "float32", "--output", str(tmp_path / "local.json")]
    assert cli(["extract", *local, *common]) == 0
    remote = ["--backend", "openai", "--api-dialect", "llama-cpp-python", "--base-url", llama_cpp_server]
    remote += ["--served-model", "tiny-ner", "--model", str(exported), "--output", str(tmp_path / "served.json")]
    assert cli(["extract", *remote, *common, "--concurrency", "2"]) == 0
    mine, served = records(tmp_path / "local.json"), records(tmp_path / "served.json")
    assert len({r["raw"] for r in mine}) >= 12, "answers must differ from sentence to sentence"

    def text(answer: str) -> str:  # llama-cpp-python drops bytes that are not UTF-8, transformers writes U+FFFD
        return answer.replace("\ufffd", "")

    same = sum(text(a["raw"]) == text(b["raw"]) for a, b in zip(mine, served))
    print(f"llama.cpp f32 answers identical to the local engine's: {same} of {len(mine)}")
    assert same == len(mine)
    assert [(r["label"], r["parse"]) for r in served] == [(r["label"], r["parse"]) for r in mine]


def test_llama_cpp_server_constrained_answers_follow_the_schema(exported, llama_cpp_server, cluener_dev, tmp_path):
    """--constrained sends the answer format's JSON schema, which llama.cpp turns into a grammar: a random model's
    answers become JSON lists of {text, label} whose labels are the schema's (free, they are not JSON)."""
    source = dev_file(tmp_path / "dev.json", cluener_dev, 16)
    common = ["--backend", "openai", "--api-dialect", "llama-cpp-python", "--base-url", llama_cpp_server]
    common += ["--served-model", "tiny-ner", "--model", str(exported), "--input", str(source), "--quiet"]
    common += ["--max-new-tokens", "48", "--max-parse-failures", "1"]
    assert cli(["extract", *common, "--output", str(tmp_path / "free.json")]) == 0
    assert cli(["extract", *common, "--constrained", "--output", str(tmp_path / "constrained.json")]) == 0
    free, constrained = records(tmp_path / "free.json"), records(tmp_path / "constrained.json")
    assert sum(r["raw"].lstrip().startswith("[") for r in free) < len(free) / 2
    assert all(r["raw"].lstrip().startswith("[") for r in constrained)
    # Every label the grammar let through is one of the schema's, also in answers cut at --max-new-tokens (a random
    # model fills its strings with any token until the cut, so the parser's counters of salvaged cut answers are
    # not the test); free answers name no schema label.
    labels = [label for r in constrained for label in re.findall(r'"label"\s*:\s*"([^"]*)"', r["raw"])]
    print(f"constrained: {len(labels)} labels in {len(constrained)} answers, e.g. {constrained[1]['raw'][:80]!r}")
    assert len(labels) >= 2 and set(labels) <= set(load_prompt("cluener_zh_short").schema.keys)
    assert not any(re.search(r'"label"\s*:', r["raw"]) for r in free)


def test_llama_cpp_python_dialect_request_body():
    """--api-dialect llama-cpp-python: the schema as the json_object form llama-cpp-python's server turns into a
    grammar (it ignores the json_schema form) and repeat_penalty 1; the openai dialect's body stays as it was."""
    from llm_ner.answer_format import MENTIONS

    schema = MENTIONS.json_schema(load_prompt("cluener_zh_short").schema)
    bodies = {}
    for dialect in ("openai", "llama-cpp-python"):
        backend = OpenAIBackend("http://127.0.0.1:9/v1", "m", response_format=schema, api_dialect=dialect)
        backend.client.request = lambda method, path, body, stop, dialect=dialect: (
            bodies.setdefault(dialect, body) and {"choices": [{"message": {"content": "[]"}}]}
        )
        assert backend.complete([{"role": "user", "content": SENTENCE}], SENTENCE) == "[]"
    assert bodies["openai"]["response_format"] == schema and "repeat_penalty" not in bodies["openai"]
    served = bodies["llama-cpp-python"]
    assert served["response_format"] == {"type": "json_object", "schema": schema["json_schema"]["schema"]}
    assert served["repeat_penalty"] == 1.0


# -- Ollama ------------------------------------------------------------------------------------------


def render_go_template(template: str, values: dict[str, str]) -> str:
    """The subset of Go's text/template the Modelfile uses: {{ .X }}, {{ if .X }}..{{ end }} (not nested) and
    {{ "literal" }}; anything else fails the test."""
    out, position, skipping = [], 0, False
    for match in re.finditer(r"\{\{(.*?)\}\}", template, re.S):
        if not skipping:
            out.append(template[position : match.start()])
        action = match.group(1).strip()
        if action.startswith("if "):
            assert not skipping, "nested if"
            skipping = not values[action[3:].strip().lstrip(".")]
        elif action == "end":
            skipping = False
        elif action.startswith("."):
            out.append("" if skipping else values[action[1:]])
        elif action.startswith('"'):
            out.append("" if skipping else json.loads(action))
        else:
            raise AssertionError(f"unexpected action {action!r}")
        position = match.end()
    out.append(template[position:])
    return "".join(out)


@pytest.mark.parametrize("tokenizer_name", ["qwen2.5", "qwen3"])
def test_modelfile_renders_the_training_prompt(qwen_tokenizer_dir, tokenizer_name, tmp_path):
    """Parsed as Ollama parses a Modelfile, the TEMPLATE filled with SYSTEM and a sentence is exactly the chat
    template's prompt of the training conversation (Qwen3: with its empty thinking block), decoding is greedy
    without Ollama's repeat penalty, and it stops at <|im_end|>."""
    from transformers import AutoTokenizer

    from llm_ner.generation import disable_thinking_by_default

    tokenizer = AutoTokenizer.from_pretrained(qwen_tokenizer_dir(tokenizer_name))
    disable_thinking_by_default(tokenizer)  # as training saves it
    prompt = load_prompt("cluener_zh_short")
    text = ollama_modelfile("m-q8_0.gguf", tokenizer, prompt, "mentions", 4096, ["m-f16.gguf"])
    parsed = parse_modelfile(text)
    instructions = [name for name, _ in parsed]
    assert instructions[:3] == ["from", "template", "system"]
    values = dict(parsed[:3])
    parameters = [value.split(" ", 1) for name, value in parsed if name == "parameter"]
    assert values["from"] == "./m-q8_0.gguf"
    assert values["system"] == prompt.messages(SENTENCE)[0]["content"]
    assert parameters[: len(OLLAMA_PARAMETERS)] == [list(p) for p in OLLAMA_PARAMETERS]
    assert ["temperature", "0"] in parameters and ["repeat_penalty", "1"] in parameters
    stops = [value for key, value in parameters if key == "stop"]
    assert stops[0] == "<|im_end|>"
    for sentence in (SENTENCE, '含有{{ .System }}和"""的句子'):
        expected = tokenizer.apply_chat_template(
            prompt.messages(sentence), add_generation_prompt=True, tokenize=False, enable_thinking=False
        )
        rendered = render_go_template(
            values["template"], {"System": values["system"], "Prompt": sentence, "Response": ""}
        )
        assert rendered == expected
    if tokenizer_name == "qwen3":
        assert "<think>\n\n</think>\n\n" in values["template"]


def test_modelfile_parser_refuses_what_ollama_refuses():
    assert parse_modelfile('FROM ./a.gguf\n# note\nSYSTEM """two\nlines"""\nPARAMETER stop "<|im_end|>"\n') == [
        ("from", "./a.gguf"),
        ("system", "two\nlines"),
        ("parameter", "stop <|im_end|>"),
    ]
    for bad in ('FROM a\nSYSTEM """open', "FROM a\nBOGUS x\n", 'FROM a\nSYSTEM "half\n'):
        with pytest.raises(ValueError):
            parse_modelfile(bad)


# -- errors and the model card --------------------------------------------------------------------


def test_export_errors_are_one_line(tiny_run, tmp_path, capsys, monkeypatch):
    assert cli(["export-model", "--out", str(tmp_path / "o")]) == 2
    assert "--adapter" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["export-model", "--model", str(tiny_run), "--out", str(tmp_path / "o"), "--gguf", "q4_k"])
    assert "f32, f16, bf16, q8_0" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "gguf", None)  # the [gguf] extra not installed
    assert cli(["export-model", "--model", str(tiny_run), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "llm-ner[gguf]" in err
    monkeypatch.delitem(sys.modules, "gguf")
    needs("gguf", "pip install 'llm-ner[gguf]'")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("LLM_NER_LLAMA_CPP", raising=False)
    assert cli(["export-model", "--model", str(tiny_run), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--fetch-converter" in err
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    assert cli(["export-model", "--model", str(plain), "--out", str(tmp_path / "o")]) == 2
    assert "llm_ner.json" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_model_card_scores_equal_evaluate(tiny_run, cluener_dev, tmp_path, capsys):
    """The card's model-index holds `llm-ner evaluate`'s span micro-F1 and per-class F1 of the predictions; the
    header is YAML with the Hub's fields."""
    from llm_ner.data import example_to_cluener

    gold, pred = tmp_path / "gold.json", tmp_path / "pred.json"
    examples = cluener_dev[:120]
    gold.write_text("".join(json.dumps(example_to_cluener(ex), ensure_ascii=False) + "\n" for ex in examples))
    noisy = perturbed(examples, seed=3, rate=0.3)
    pred.write_text("".join(json.dumps(example_to_cluener(ex), ensure_ascii=False) + "\n" for ex in noisy))
    folder = tmp_path / "run"
    shutil.copytree(tiny_run, folder)
    args = ["--gold", str(gold), "--pred", str(pred), "--base-model-id", "Qwen/Qwen2.5-0.5B-Instruct"]
    assert cli(["model-card", str(folder), *args, "--dataset", "cluener2020"]) == 0
    assert cli(["evaluate", "--gold", str(gold), "--pred", str(pred), "--json", str(tmp_path / "e.json")]) == 0
    capsys.readouterr()
    scores = json.loads((tmp_path / "e.json").read_text())["span"]
    header = read_card_header(folder / "README.md")
    assert header["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert header["library_name"] == "transformers" and "ner" in header["tags"]
    assert header["datasets"] == ["cluener2020"]
    metrics = {m["name"]: m["value"] for m in header["model-index"][0]["results"][0]["metrics"]}
    assert metrics["span micro-F1"] == scores["micro avg"]["f1-score"]
    assert 0.05 < metrics["span micro-F1"] < 0.95  # perturbed: neither empty nor perfect
    for label, values in scores["per_class"].items():
        assert metrics[f"span F1 {label}"] == values["f1-score"], label
    assert len([name for name in metrics if name.startswith("span F1 ")]) == len(scores["per_class"]) >= 8
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert "文本：" in text and "ollama" not in header["tags"]
    assert cli(["model-card", str(tmp_path), "--gold", str(gold)]) == 2  # --pred missing
    assert cli(["model-card", str(tmp_path)]) == 2  # no llm_ner.json
