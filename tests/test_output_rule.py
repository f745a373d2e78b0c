"""One output rule over every path a command reads (issue 31: a careless user's outputs that destroyed inputs).

- a file output inside a model, adapter or baseline folder never replaces a file the model is loaded from
  (`llm_ner.data.outputs.is_model_file`); a new file or an earlier prediction file there is fine;
- `extract --shots-from F` is an input like the others;
- `merge --out` / `tiny-model --out`: an existing file is one line before anything loads, a folder holding
  another model is refused without --force and emptied whole with it, a folder of other files is never emptied;
- `report --out` holding one of its inputs is refused, as the README says of every command.

Every refusal: exit 2, one ``error:`` line, no traceback, the inputs' bytes unchanged.
"""

import json
from pathlib import Path

import pytest
from conftest import one_layer_qwen3
from test_outputs import GOLD, run_cli, snapshot, write_jsonl

from llm_ner.cli import main
from llm_ner.data import check_output_path
from llm_ner.errors import UsageError


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    """Folders that look like a model, an adapter and a baseline (enough for the checks, which run before any
    load), a shots file and gold sentences."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen3"}\n')
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "checkpoint-5").mkdir()
    (model / "checkpoint-5" / "notes.json").write_text("{}\n")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(model)}) + "\n")
    (adapter / "llm_ner.json").write_text("{}\n")
    baseline = tmp_path / "bilstm"
    baseline.mkdir()
    (baseline / "baseline.json").write_text("{}\n")
    (baseline / "model.pt").write_bytes(b"trained weights")
    (tmp_path / "labelled").mkdir()
    return {
        "root": tmp_path, "model": model, "adapter": adapter, "baseline": baseline,
        "gold": write_jsonl(tmp_path / "gold.json", GOLD),
        "shots": write_jsonl(tmp_path / "labelled" / "shots.json", GOLD),
    }  # fmt: skip


def refused(arguments: list[str], fragment: str, root: Path, capsys) -> str:
    """Run ``arguments``: exit 2, one error line holding ``fragment``, nothing under ``root`` changed."""
    before = snapshot(root)
    code, err = run_cli(arguments, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0], err
    assert snapshot(root) == before
    return lines[0]


# (case, arguments from the fixture's paths, fragment of the error line)
REFUSED = [
    # the model's config.json was deleted by --restart, then a traceback
    ("extract onto the model's config", "extract --model {model} --input {gold} --output {model}/config.json "
     "--restart", "would replace a file of the --model folder"),
    ("extract onto the adapter's config", "extract --adapter {adapter} --input {gold} --output "
     "{adapter}/adapter_config.json --restart", "would replace a file of the --adapter folder"),
    ("extract onto the adapter's run record", "extract --adapter {adapter} --input {gold} --output "
     "{adapter}/llm_ner.json", "--adapter folder"),
    ("extract into a checkpoint", "extract --model {model} --input {gold} --output {model}/checkpoint-5/notes.json",
     "would replace a file of the --model folder"),
    # the labelled shots were replaced by predictions, exit 0
    ("extract onto --shots-from", "extract --model {model} --input {gold} --shots 1 --shots-from {shots} "
     "--output {shots} --restart", "is the --shots-from file"),
    ("extract into the folder of --shots-from", "extract --model {model} --input {gold} --shots 1 --shots-from "
     "{shots} --output {root}/labelled", "contains the --shots-from file"),
    # the trained weights were replaced by predictions, exit 0
    ("baseline predict onto model.pt", "baseline predict --model {baseline} --input {gold} --output "
     "{baseline}/model.pt", "would replace a file of the --model folder"),
    ("merge into an existing file", "merge --adapter {adapter} --out {gold}", "exists and is not a folder"),
    ("merge into another model", "merge --adapter {adapter} --out {baseline}", "already holds a model"),
    ("merge --force into a folder of other files", "merge --adapter {adapter} --out {root}/other --force",
     "holds files that are not a model's"),
    ("tiny-model into an existing file", "tiny-model --out {gold}", "exists and is not a folder"),
    ("tiny-model into another model", "tiny-model --out {baseline}", "--force replaces it"),
    ("report into the folder of its --pred", "report --gold {gold} --pred x={root}/other/pred.json --out "
     "{root}/other", "contains the --pred x file"),
]  # fmt: skip


@pytest.mark.parametrize("name, template, fragment", REFUSED, ids=[case[0] for case in REFUSED])
def test_an_output_over_anything_read_is_refused(files, name, template, fragment, capsys):
    (files["root"] / "other").mkdir()
    write_jsonl(files["root"] / "other" / "pred.json", GOLD)
    arguments = [word.format(**files) for word in template.split()]
    refused(arguments, fragment, files["root"], capsys)


def test_predictions_inside_a_model_folder_stay_allowed(files):
    """The README's pattern: a new prediction file in the run folder, and the same file again (rerun, resume)."""
    inputs = {"--model": files["model"], "--input": files["gold"]}
    check_output_path(files["model"] / "dev.pred.json", inputs)
    (files["model"] / "dev.pred.json").write_text("")
    check_output_path(files["model"] / "dev.pred.json", inputs)
    check_output_path(files["model"] / "new_config.txt", inputs)
    with pytest.raises(UsageError, match="would replace a file of the --model folder"):
        check_output_path(files["model"] / "model.safetensors", inputs)


def test_tiny_model_force_replaces_the_old_model_whole(files, capsys):
    """--force: the folder is emptied before the new model is written, so nothing of the old one is left."""
    out = files["baseline"]
    texts = files["root"] / "texts.txt"
    texts.write_text("张三在北京\n")
    tiny = ["tiny-model", "--texts", str(texts), "--hidden-size", "32", "--num-layers", "1", "--out", str(out)]
    # a bad size is found before anything is removed
    refused([*tiny, "--num-heads", "3", "--force"], "not a multiple", files["root"], capsys)
    code, err = run_cli([*tiny, "--force"], capsys)
    assert code == 0, err
    names = {path.name for path in out.iterdir()}
    assert "config.json" in names and not names & {"baseline.json", "model.pt"}, names


@pytest.fixture(scope="module")
def adapter_run(tmp_path_factory) -> Path:
    """A real LoRA adapter of a one-layer model, with its run record."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llm_ner.prompting import load_prompt
    from llm_ner.training.run_dir import RunRecord

    root = tmp_path_factory.mktemp("merge")
    model = one_layer_qwen3(root / "tiny", [g["text"] for g in GOLD])
    adapter = root / "adapter"
    lora = LoraConfig(r=2, target_modules="all-linear")
    get_peft_model(AutoModelForCausalLM.from_pretrained(model), lora).save_pretrained(adapter)
    AutoTokenizer.from_pretrained(model).save_pretrained(adapter)
    record = RunRecord(prompt_name="cluener_zh", base_model=str(model), peft=True)
    record.save(adapter, prompt=load_prompt("cluener_zh"))
    return adapter


def test_merge_force_replaces_the_old_run_whole(adapter_run, files, capsys):
    out = files["baseline"]  # another model's run folder, with a checkpoint of its own
    (out / "checkpoint-9").mkdir()
    (out / "checkpoint-9" / "optimizer.pt").write_bytes(b"old")
    code, err = run_cli(["merge", "--adapter", str(adapter_run), "--out", str(out), "--force"], capsys)
    assert code == 0, err
    names = {path.name for path in out.iterdir()}
    assert {"config.json", "llm_ner.json"} <= names and not names & {"baseline.json", "model.pt", "checkpoint-9"}
    assert main(["merge", "--adapter", str(adapter_run), "--out", str(files["root"] / "fresh")]) == 0
