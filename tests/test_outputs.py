"""Nothing overwritten, temporary files cleaned up, an exit status that tells the truth.

- ONE rule (`llm_ner.data.check_output_path`) for every writing command: an output that is an input
  (through symlinks and hard links), holds an input, or (for commands that write folders) lies inside
  an input folder is refused with one line, exit 2, before anything is read or written;
- a SIGTERM or Ctrl-C during an atomic write leaves no hidden temporary file and the old output intact;
- `llm-ner extract` exits 1 when the answers could not be parsed (all of them, or more than
  ``--max-parse-failures``), and `evaluate` says how many were unreadable;
- expected failures that used to end in a traceback are one line.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import one_layer_qwen3

from llm_ner.cli import main
from llm_ner.data import check_output_path
from llm_ner.errors import UsageError

GOLD = [
    {"id": "a", "text": "张三在北京工作", "label": {"name": {"张三": [[0, 1]]}, "address": {"北京": [[3, 4]]}}},
    {"id": "b", "text": "李四去了上海", "label": {"name": {"李四": [[0, 1]]}, "address": {"上海": [[4, 5]]}}},
    {"id": "c", "text": "王五说好", "label": {"name": {"王五": [[0, 1]]}}},
]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (symlinks as their targets' names) and its bytes."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            files[str(path.relative_to(root))] = os.readlink(path).encode()
        elif path.is_file():
            files[str(path.relative_to(root))] = path.read_bytes()
    return files


def run_cli(arguments: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(arguments)
    except SystemExit as exit:  # argparse
        code = exit.code
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """A tiny model, a LoRA adapter of it (with a run record), a tokenizer folder, predictions with
    scores (a finished extraction) and a Label Studio annotation file."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llm_ner.prompting import load_prompt
    from llm_ner.training.run_dir import RunRecord

    root = tmp_path_factory.mktemp("outputs")
    c = {"root": root, "gold": write_jsonl(root / "gold.json", GOLD)}
    c["model"] = one_layer_qwen3(root / "tiny", [g["text"] for g in GOLD])
    c["adapter"] = root / "adapter"
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(c["model"]), LoraConfig(r=2, target_modules="all-linear")
    )
    peft_model.save_pretrained(c["adapter"])
    AutoTokenizer.from_pretrained(c["model"]).save_pretrained(c["adapter"])
    RunRecord(prompt_name="cluener_zh", base_model=str(c["model"]), peft=True).save(
        c["adapter"], prompt=load_prompt("cluener_zh")
    )
    c["pred"] = root / "pred.json"  # random weights: every answer unreadable, hence the allowance
    extract = ["extract", "--model", str(c["model"]), "--input", str(c["gold"]), "--output", str(c["pred"])]
    assert main([*extract, "--max-new-tokens", "4", "--quiet", "--max-parse-failures", "1"]) == 0
    c["labelstudio"] = root / "annotated.json"
    assert (
        main(["export", str(c["gold"]), "--to", "labelstudio", "--as-annotation", "--output", str(c["labelstudio"])])
        == 0
    )
    c["prompt"] = root / "prompt.yaml"
    c["prompt"].write_text(load_prompt("cluener_zh").to_yaml(), encoding="utf-8")
    (root / "pred_link.json").symlink_to(c["pred"])
    os.link(c["gold"], root / "gold_hardlink.json")
    (root / "data").mkdir()
    write_jsonl(root / "data" / "t.json", GOLD)
    return c


def p(c, name: str) -> str:
    """A fixture path by name, else a path under the fixture's root."""
    return str(c[name] if name in c else c["root"] / name)


def args(template: str):
    """Command-line arguments from a template whose ``{name}`` fields are the fixture's paths."""
    return lambda c: [word.format(**{k: str(v) for k, v in c.items()}) for word in template.split()]


# (case, arguments, fragment of the error line): every one refused with exit 2 and nothing written
REFUSED = [
    # export X --output X turned a Label Studio annotation into a prediction, dropping its metadata
    (
        "export onto its input",
        args("export {labelstudio} --input-format labelstudio --to labelstudio --output {labelstudio}"),
        "would destroy the input",
    ),
    ("export onto --gold", args("export {pred} --to labelstudio --gold {gold} --output {gold}"), "is the --gold file"),
    # select --pred X --output X replaced the predictions by the few selected
    ("select onto its --pred", args("select --pred {pred} --by uncertainty -n 1 --output {pred}"), "is the --pred"),
    (
        "select onto the second --pred",
        args("select --pred {gold} --pred {pred} --by disagreement --output {pred}"),
        "would destroy the input",
    ),
    (
        "select through a symlink",
        args("select --pred {pred} --by uncertainty --output {root}/pred_link.json"),
        "--pred",
    ),
    # merge --adapter X --out X wrote the merged weights into the adapter, rewrote its run record, then crashed
    ("merge into the adapter", args("merge --adapter {adapter} --out {adapter}"), "is the --adapter folder"),
    ("merge into the base model", args("merge --adapter {adapter} --out {model}"), "is the base model folder"),
    ("merge inside the adapter", args("merge --adapter {adapter} --out {adapter}/m"), "inside the --adapter folder"),
    ("merge into a folder holding it", args("merge --adapter {adapter} --out {root}"), "contains the --adapter folder"),
    # tiny-model --tokenizer D --out D wrote random weights into the tokenizer folder
    (
        "tiny-model into its tokenizer",
        args("tiny-model --tokenizer {model} --out {model}"),
        "is the --tokenizer folder",
    ),
    ("tiny-model into its texts' folder", args("tiny-model --texts {root}/data/t.json --out {root}/data"), "contains"),
    ("convert onto a hard link", args("convert --input {gold} --output {root}/gold_hardlink.json"), "is the --input"),
    ("convert into a folder holding it", args("convert --input {gold} --output {root}"), "contains the --input file"),
    ("convert onto its prompt", args("convert --input {gold} --prompt {prompt} --output {prompt}"), "is the --prompt"),
    (
        "extract onto the model",
        args("extract --model {model} --input {gold} --output {model}"),
        "is the --model folder",
    ),
    (
        "extract onto its prompt",
        args("extract --model {model} --input {gold} --prompt {prompt} --output {prompt}"),
        "is the --prompt file",
    ),
    (
        "evaluate --json onto a symlinked pred",
        args("evaluate --gold {gold} --pred {root}/pred_link.json --json {pred}"),
        "--json",
    ),
    (
        "baseline train into the folder of its data",
        args("baseline train --arch bilstm-crf --train {root}/data/t.json --out {root}/data"),
        "contains the --train file",
    ),
    (
        "baseline predict onto the model folder",
        args("baseline predict --model {root}/data --input {gold} --output {root}/data"),
        "is the --model folder",
    ),
]


@pytest.mark.parametrize("name, arguments, fragment", REFUSED, ids=[case[0] for case in REFUSED])
def test_an_output_that_could_destroy_an_input_is_refused(ctx, name, arguments, fragment, capsys):
    before = snapshot(ctx["root"])
    code, err = run_cli(arguments(ctx), capsys)
    assert code == 2, err
    assert fragment in err, err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()][-1].startswith("error: "), err
    assert snapshot(ctx["root"]) == before  # nothing read into, nothing written


def test_the_rule_allows_what_destroys_nothing(tmp_path):
    """A prediction file inside the model folder (the README's pattern), a hub id, an input that is not there."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    source = write_jsonl(tmp_path / "in.json", GOLD)
    check_output_path(model / "dev.pred.json", {"--model": model, "--input": source})
    check_output_path(tmp_path / "out", {"--model": "Qwen/Qwen3-0.6B", "--input": tmp_path / "missing.json"})
    check_output_path(tmp_path / "merged", {"--adapter": model}, writes_folder=True)
    with pytest.raises(UsageError, match="inside the --model folder"):
        check_output_path(model / "sub", {"--model": model}, writes_folder=True)
    (tmp_path / "alias").symlink_to(model, target_is_directory=True)
    with pytest.raises(UsageError, match="is the --model folder"):
        check_output_path(tmp_path / "alias", {"--model": model}, writes_folder=True)


# ---------------------------------------------------------------------------------------------------------
# Signals: an atomic write interrupted by SIGTERM or Ctrl-C leaves nothing behind


@pytest.mark.parametrize(
    "signum, code, line", [(signal.SIGTERM, 143, "terminated (SIGTERM)"), (signal.SIGINT, 130, "interrupted")]
)
def test_a_signal_during_convert_leaves_no_temporary_file(tmp_path, signum, code, line):
    big = tmp_path / "big.json"
    texts = ["张三在北京的一家公司工作了很多年，后来去了上海。", "李四说王五明天会到广州参加会议。"]
    records = (
        {"id": str(i), "text": texts[i % 2] * 4, "label": {"name": {texts[i % 2][:2]: [[0, 1]]}}} for i in range(60000)
    )
    write_jsonl(big, records)
    out = tmp_path / "out.json"
    out.write_text("the previous output\n", encoding="utf-8")
    command = [sys.executable, "-m", "llm_ner", "convert", "--input", str(big), "--output", str(out)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.json.*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(tmp_path.glob(".out.json.*")), "convert ended or never started writing"
    time.sleep(0.2)  # well inside the write (several seconds for this input)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert err.strip().splitlines()[-1] == line, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.json", "out.json"]  # no hidden temporary file
    assert out.read_text(encoding="utf-8") == "the previous output\n"


def test_the_sigterm_handler_is_put_back(ctx, capsys):
    before = signal.getsignal(signal.SIGTERM)
    run_cli(["convert", "--input", p(ctx, "gold"), "--output", p(ctx, "gold")], capsys)
    assert signal.getsignal(signal.SIGTERM) is before


# ---------------------------------------------------------------------------------------------------------
# Exit status: unreadable answers


def test_extract_exits_1_when_no_answer_parses_and_keeps_the_records(ctx, tmp_path, capsys):
    out = tmp_path / "p.json"
    arguments = [
        "extract",
        "--model",
        p(ctx, "model"),
        "--input",
        p(ctx, "gold"),
        "--output",
        str(out),
        "--max-new-tokens",
        "4",
        "--quiet",
    ]
    code, err = run_cli(arguments, capsys)
    assert code == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "3 of 3 answers could not be parsed" in last and "--prompt" in last, err
    assert len(out.read_text(encoding="utf-8").splitlines()) == 3  # written all the same, raw answers inside
    # a share the user allows; the finished output is checked again on a rerun (nothing left to do)
    assert run_cli([*arguments, "--max-parse-failures", "1"], capsys)[0] == 0
    code, err = run_cli([*arguments, "--max-parse-failures", "0.5"], capsys)
    assert code == 1 and "more than --max-parse-failures 0.5" in err, err


def test_max_parse_failures_is_a_share(ctx, capsys):
    arguments = ["extract", "--model", p(ctx, "model"), "--input", p(ctx, "gold"), "--output", "o"]
    code, err = run_cli([*arguments, "--max-parse-failures", "1.5"], capsys)
    assert code == 2 and "must be a number from 0 to 1" in err, err


def test_evaluate_says_how_many_answers_were_unreadable(ctx, tmp_path, capsys):
    scores = tmp_path / "scores.json"
    code, err = run_cli(["evaluate", "--gold", p(ctx, "gold"), "--pred", p(ctx, "pred"), "--json", str(scores)], capsys)
    assert code == 0, err
    result = json.loads(scores.read_text(encoding="utf-8"))
    assert result["parsing"] == {"answers": 3, "parse_failures": 3}
    assert any(w.startswith("3 of 3 answers could not be parsed") for w in result["warnings"]), result["warnings"]


def test_evaluate_prints_the_parse_line_report_prints(ctx, tmp_path, capsys):
    from llm_ner.report.inputs import parse_counters, parse_failure_line

    line = parse_failure_line(parse_counters(ctx["pred"]))
    assert line and line.startswith("3 of 3 answers could not be parsed")
    assert main(["evaluate", "--gold", p(ctx, "gold"), "--pred", p(ctx, "pred")]) == 0
    assert f"warning: {line}" in capsys.readouterr().out
    out = tmp_path / "report"
    assert (
        main(["report", "--gold", p(ctx, "gold"), "--pred", f"x={ctx['pred']}", "--out", str(out), "--resamples", "10"])
        == 0
    )
    assert f"warning: x: {line}" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# One line instead of a traceback


TINY = "tiny-model --texts {gold} --hidden-size 32 --num-layers 1 --out {root}/never "


def bad_yaml(text: str, name: str):
    """``llm-ner train --config`` of a file holding ``text``."""

    def arguments(c):
        (c["root"] / name).write_text(text, encoding="utf-8")
        return ["train", "--config", str(c["root"] / name)]

    return arguments


def no_config(command: str):
    """``command`` with ``{folder}``: a folder with a tokenizer file but no config.json."""

    def arguments(c):
        folder = c["root"] / "no_config"
        folder.mkdir(exist_ok=True)
        (folder / "tokenizer_config.json").write_text("{}")
        return args(command)({**c, "folder": folder})

    return arguments


ONE_LINE = [
    (
        "tiny-model 4 heads, 3 kv heads",
        args(TINY + "--num-heads 4 --num-kv-heads 3"),
        2,
        "num_heads 4 is not a multiple",
    ),
    ("tiny-model 3 heads of 32", args(TINY + "--num-heads 3 --num-kv-heads 1"), 2, "hidden_size 32 is not a multiple"),
    (
        "tiny-model odd head size",
        args(TINY + "--hidden-size 30 --num-heads 2 --num-kv-heads 1"),
        2,
        "head size 15 is odd",
    ),
    ("train --config bad YAML", bad_yaml("a: [1\n", "bad.yaml"), 1, "bad.yaml:2: invalid YAML"),
    ("train --config a list", bad_yaml("- a\n", "list.yaml"), 1, "list.yaml: expected a YAML mapping"),
    (
        "train --config unknown key",
        bad_yaml("learning_rat: 1\n", "key.yaml"),
        1,
        "key.yaml: unknown option learning_rat",
    ),
    ("train --config without a file", args("train --config"), 2, "--config needs a YAML file"),
    (
        "extract, a folder without config.json",
        no_config("extract --model {folder} --input {gold} --output {root}/o.json"),
        2,
        "no config.json there",
    ),
    ("serve, a folder without config.json", no_config("serve --model {folder}"), 2, "no config.json there"),
    ("merge, not an adapter", no_config("merge --adapter {folder} --out {root}/m"), 2, "not a LoRA adapter directory"),
    ("merge, a full model", args("merge --adapter {model} --out {root}/m"), 2, "holds a full model"),
]


@pytest.mark.parametrize("name, arguments, code, fragment", ONE_LINE, ids=[case[0] for case in ONE_LINE])
def test_expected_failures_are_one_line(ctx, name, arguments, code, fragment, capsys):
    got, err = run_cli(arguments(ctx), capsys)
    assert got == code, err
    assert fragment in err, err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()][-1].startswith("error: "), err
    assert not (ctx["root"] / "never").exists() and not (ctx["root"] / "m").exists()


def test_train_sft_script_says_bad_yaml_in_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: [x\n", encoding="utf-8")
    script = Path(__file__).resolve().parents[1] / "train_sft.py"
    result = subprocess.run([sys.executable, str(script), "--config", str(bad)], capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}:2: invalid YAML: expected ',' or ']', but got '<stream end>'"
    ]


def test_merge_a_real_adapter_still_works(ctx, tmp_path, capsys):
    out = tmp_path / "merged"
    code, err = run_cli(["merge", "--adapter", p(ctx, "adapter"), "--out", str(out)], capsys)
    assert code == 0, err
    assert (out / "config.json").is_file() and (out / "llm_ner.json").is_file()
