"""A training resume keeps what the run learns (prompt, data, learning rate, ...) or is refused in one line as
`extract` refuses; the run record lists every stretch of training; `train_sft.py` and `llm-ner train` answer
bad arguments (unknown options, numbers out of bounds) in one line, never a traceback. Tiny random models on
the CPU: the refusals load no model at all."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_training import ROOT, train_args

from llm_ner.cli import main as cli_main
from llm_ner.errors import UsageError
from llm_ner.tiny import build_tiny_model, default_texts


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, cluener_dir):
    """A 4-step run stopped after step 2 (its checkpoint-2 saved): (the training arguments, its output dir)."""
    from transformers import TrainerCallback

    from llm_ner.training import main

    class StopAfterTwo(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                control.should_training_stop = True

    folder = tmp_path_factory.mktemp("resume")
    model = build_tiny_model(folder / "qwen2", "qwen2", default_texts(), hidden_size=64, num_layers=2)
    out = folder / "run"
    args = train_args(model, cluener_dir, out, "--max_steps", "4", "--eval_strategy", "no", "--f1_eval_samples", "0")
    main(args, callbacks=[StopAfterTwo()])
    assert (out / "checkpoint-2").is_dir()
    return args, out


def _with(args: list[str], option: str, value: str) -> list[str]:
    """``args`` with ``option`` set to ``value`` (replaced where it is already given)."""
    args = list(args)
    if option in args:
        args[args.index(option) + 1] = value
        return args
    return [*args, option, value]


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--prompt", "cluener_zh", "prompt: 'cluener_zh_short sha256:"),
        ("--learning_rate", "5e-3", "learning_rate: 0.001 then, 0.005 now"),
        ("--train_file", "OTHER", "train_file: 'sha256:"),
    ],
)
def test_a_resume_with_other_settings_is_refused_in_one_line(stopped_run, tmp_path, capsys, option, value, named):
    args, out = stopped_run
    if value == "OTHER":  # the same sentences but the last
        other = tmp_path / "other.json"
        source = Path(args[args.index("--train_file") + 1])
        other.write_text("".join(source.read_text(encoding="utf-8").splitlines(True)[:-1]), encoding="utf-8")
        value = str(other)
    record = (out / "llm_ner.json").read_bytes()
    checkpoint = str(out / "checkpoint-2")
    code = cli_main(["train", *_with(_with(args, option, value), "--resume_from_checkpoint", checkpoint)])
    err = capsys.readouterr().err
    assert code == 1, err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {checkpoint} was made with other settings (") and named in line
    assert line.endswith("train without --resume_from_checkpoint to start over, or choose another --output_dir")
    assert "Traceback" not in err
    assert (out / "llm_ner.json").read_bytes() == record  # refused before anything was written


def test_a_resume_with_the_same_settings_continues_and_the_record_lists_both_segments(stopped_run, tmp_path):
    from llm_ner.training import main

    args, out = stopped_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    first = json.loads((copy / "llm_ner.json").read_text(encoding="utf-8"))
    trainer = main(_with(_with(args, "--output_dir", str(copy)), "--resume_from_checkpoint", "true"))
    assert trainer.state.global_step == 4
    record = json.loads((copy / "llm_ner.json").read_text(encoding="utf-8"))
    assert record["training_settings"] == first["training_settings"]
    assert record["training_settings"]["learning_rate"] == 0.001
    started, resumed = record["training_segments"]
    assert started["from_step"] == 0 and started["to_step"] == 2 and started["checkpoint"] is None
    assert resumed["from_step"] == 2 and resumed["to_step"] == 4
    assert resumed["checkpoint"] == str(copy / "checkpoint-2") and resumed["started"] >= started["ended"]


def test_a_checkpoint_without_recorded_settings_is_refused(stopped_run, tmp_path, capsys):
    args, out = stopped_run
    copy = tmp_path / "run"
    shutil.copytree(out / "checkpoint-2", copy / "checkpoint-2")
    (copy / "checkpoint-2" / "llm_ner.json").unlink()  # as an older llm-ner left its checkpoints
    record = json.loads((out / "llm_ner.json").read_text(encoding="utf-8"))
    del record["training_settings"]  # and its run record
    (copy / "llm_ner.json").write_text(json.dumps(record), encoding="utf-8")
    code = cli_main(["train", *_with(_with(args, "--output_dir", str(copy)), "--resume_from_checkpoint", "true")])
    err = capsys.readouterr().err
    assert code == 1 and "was not written by `llm-ner train` with a run record" in err, err


def test_a_checkpoint_is_compared_with_its_own_record_not_a_later_runs(stopped_run, tmp_path, capsys):
    """A later run into the same output_dir (here: learning rate 5e-3) rewrites the record there; resuming an
    old checkpoint with the later run's settings is still refused: each checkpoint keeps its run's record."""
    args, out = stopped_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    own = json.loads((copy / "checkpoint-2" / "llm_ner.json").read_text(encoding="utf-8"))
    assert own["training_settings"]["learning_rate"] == 0.001
    assert [(s["from_step"], s["to_step"]) for s in own["training_segments"]] == [(0, 2)]
    assert (copy / "checkpoint-2" / "prompt.yaml").is_file()  # a run directory of its own
    later = json.loads((copy / "llm_ner.json").read_text(encoding="utf-8"))
    later["training_settings"]["learning_rate"] = 0.005
    (copy / "llm_ner.json").write_text(json.dumps(later), encoding="utf-8")
    resume = _with(_with(args, "--output_dir", str(copy)), "--resume_from_checkpoint", "true")
    assert cli_main(["train", *_with(resume, "--learning_rate", "5e-3")]) == 1
    assert "learning_rate: 0.001 then, 0.005 now" in capsys.readouterr().err


def _train_sft(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train_sft.py", *args], capture_output=True, text=True, cwd=ROOT)


def test_train_sft_answers_an_unknown_option_in_one_line():
    done = _train_sft("--use_cpu", "true", "--no_such_option", "1")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "error: unknown option --no_such_option (`llm-ner train --help` lists them)" in done.stderr.splitlines()


def test_train_sft_refuses_lora_r_0_in_one_line_before_any_model_loads(stopped_run, tmp_path):
    """With a model and data at hand, peft would fail on r=0 with a traceback once the model is loaded."""
    args, _ = stopped_run
    done = _train_sft(*_with(args, "--output_dir", str(tmp_path / "out")), "--use_peft", "true", "--lora_r", "0")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "error: lora_r must be 1 or more, got 0" in done.stderr.splitlines()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--lora_r", "0", "lora_r must be 1 or more, got 0"),
        ("--lora_alpha", "-4", "lora_alpha must be more than 0, got -4"),
        ("--lora_dropout", "1", "lora_dropout must be from 0 and below 1, got 1.0"),
        ("--learning_rate", "0", "learning_rate must be more than 0, got 0.0"),
        ("--learning_rate", "nan", "learning_rate must be a number, got nan"),
        ("--max_steps", "0", "max_steps must be 1 or more (or -1: num_train_epochs decides), got 0"),
        ("--max_steps", "-2", "max_steps must be 1 or more (or -1: num_train_epochs decides), got -2"),
        ("--num_train_epochs", "0", "num_train_epochs must be more than 0 (or set max_steps), got 0.0"),
        ("--per_device_train_batch_size", "0", "per_device_train_batch_size must be 1 or more, got 0"),
        ("--gradient_accumulation_steps", "0", "gradient_accumulation_steps must be 1 or more, got 0"),
        ("--max_length", "0", "max_length must be 1 or more, got 0"),
        ("--max_train_samples", "0", "max_train_samples must be 1 or more, got 0"),
        ("--seed", "-1", "seed must be from 0 and below 4294967296, got -1"),
        ("--learning_rate", "fast", "argument --learning_rate/--learning-rate: invalid float value: 'fast'"),
    ],
)
def test_numbers_out_of_bounds_are_refused_naming_the_option(option, value, message):
    from llm_ner.training import parse_arguments

    with pytest.raises(UsageError) as refused:
        parse_arguments(["--use_cpu", "true", "--output_dir", "unused", option, value])
    assert str(refused.value) == message


def test_llm_ner_train_answers_an_unknown_option_in_one_line(capsys):
    assert cli_main(["train", "--use_cpu", "true", "--lora_rank", "8"]) == 2
    err = capsys.readouterr().err
    assert "error: unknown option --lora_rank (`llm-ner train --help` lists them)" in err.splitlines()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("lora_r: [1]", "lora_r must be a number, got [1]"),
        ("max_steps: 1.5", "max_steps must be 1 or more (or -1: num_train_epochs decides), got 1.5"),
        ("per_device_train_batch_size: 2.5", "per_device_train_batch_size must be a whole number, got 2.5"),
    ],
)
def test_yaml_values_argparse_does_not_convert_are_checked_too(tmp_path, line, message):
    from llm_ner.training import parse_arguments

    config = tmp_path / "config.yaml"
    config.write_text(f"{line}\nuse_cpu: true\noutput_dir: unused\n", encoding="utf-8")
    with pytest.raises(UsageError) as refused:
        parse_arguments(["--config", str(config)])
    assert str(refused.value) == message


def test_a_setting_trainingarguments_refuses_is_one_usage_error():
    """TrainingArguments checks some combinations itself (a ValueError while parsing): one line, exit 2."""
    from llm_ner.training import parse_arguments

    with pytest.raises(UsageError, match="--logging_steps"):
        parse_arguments(["--use_cpu", "true", "--output_dir", "unused", "--logging_steps", "0"])


@pytest.mark.parametrize("named", ["missing", "true"])
def test_no_checkpoint_to_resume_is_one_line(stopped_run, tmp_path, capsys, named):
    """A folder that is not a checkpoint, or true with none in --output_dir: one line, not transformers'
    ValueError once the model is loaded."""
    args, _ = stopped_run
    resume = str(tmp_path / named) if named == "missing" else named
    args = _with(_with(args, "--output_dir", str(tmp_path / "out")), "--resume_from_checkpoint", resume)
    assert cli_main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert f"error: --resume_from_checkpoint {resume}: " in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
