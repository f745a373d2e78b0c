"""Training on tiny local Qwen2/Qwen3 models: chat-template prefixes, label masks, LoRA, QLoRA,
resume, merge and a 2-process launch. CPU only; the models have random weights, so these tests
prove the plumbing, not quality."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import redraw_, sft_trainer, two_cpu_process_launch

from llm_ner.generation import chat_prompt_ids, generate_answers, load_model, stop_token_ids
from llm_ner.prompting import load_prompt
from llm_ner.tiny import build_tiny_model, default_texts, qwen_chat_template

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, cluener_dir):
    texts = default_texts()
    folder = tmp_path_factory.mktemp("tiny")
    return {
        arch: build_tiny_model(folder / arch, arch, texts, hidden_size=64, num_layers=2) for arch in ("qwen2", "qwen3")
    }


def train_args(model_dir, cluener_dir, out, *extra):
    return [
        "--model_name_or_path",
        str(model_dir),
        "--train_file",
        str(cluener_dir / "dev.json"),
        "--eval_file",
        str(cluener_dir / "dev.json"),
        "--prompt",
        "cluener_zh_short",
        "--output_dir",
        str(out),
        "--max_train_samples",
        "32",
        "--max_eval_samples",
        "8",
        "--f1_eval_samples",
        "4",
        "--f1_max_new_tokens",
        "8",
        "--per_device_train_batch_size",
        "4",
        "--per_device_eval_batch_size",
        "4",
        "--max_steps",
        "2",
        "--learning_rate",
        "1e-3",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "2",
        "--save_steps",
        "2",
        "--logging_steps",
        "1",
        "--report_to",
        "none",
        "--use_cpu",
        "true",
        "--dtype",
        "float32",
        "--seed",
        "7",
        *extra,
    ]


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_tiny_model_loads_like_a_hub_model(tiny_models, cluener_dev, arch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models[arch])
    model = AutoModelForCausalLM.from_pretrained(tiny_models[arch])
    assert model.config.model_type == arch
    assert tokenizer.chat_template == qwen_chat_template(arch)
    for token in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"):
        assert tokenizer.convert_tokens_to_ids(token) < model.config.vocab_size
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    text = "".join(ex.text for ex in cluener_dev[:50])
    chinese = [c for c in text if "\u4e00" <= c <= "\u9fff"]
    assert all(len(tokenizer.tokenize(c)) == 1 for c in chinese)
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_extraction_prompt_is_the_prefix_and_only_the_answer_is_labelled(tiny_models, cluener_dir, tmp_path, arch):
    """The tokens given at extraction equal the start of the training tokens; labels cover the
    answer and the end-of-turn token only."""
    from transformers import AutoTokenizer

    from llm_ner.training import NERDataArguments, load_split

    prompt = load_prompt("cluener_zh")
    data_args = NERDataArguments(train_file=str(cluener_dir / "dev.json"))
    examples, records, prompt = load_split(data_args.train_file, data_args, prompt, limit=24)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models[arch])
    trainer = sft_trainer(tiny_models[arch], records, tmp_path, tokenizer)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    for i, ex in enumerate(examples):
        row = trainer.train_dataset[i]
        prompt_ids = chat_prompt_ids(tokenizer, prompt.messages(ex.text))
        assert row["input_ids"][: len(prompt_ids)] == prompt_ids
        labelled = [t for t in row["labels"] if t != -100]
        assert row["labels"] == [-100] * len(prompt_ids) + row["input_ids"][len(prompt_ids) :]
        answer = records[i]["completion"][0]["content"]
        assert tokenizer.decode(labelled) == answer + "<|im_end|>\n"
        assert im_end in labelled
        text = tokenizer.decode(row["input_ids"])
        assert "<think>" not in text if arch == "qwen2" else text.count("<think>\n\n</think>\n\n") == 1
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    n_prompt = len(chat_prompt_ids(tokenizer, prompt.messages(examples[0].text)))
    assert (batch["labels"][0, :n_prompt] == -100).all()
    assert (batch["labels"][0, n_prompt:][batch["attention_mask"][0, n_prompt:] == 1] != -100).all()


def test_padding_free_batches_and_fused_head_hold_the_loss_equal(tiny_models, cluener_dir, tmp_path):
    """Our speed-ups (TRL's fused LM head, padding-free batches) give the loss of the naive
    padded full-logits recipe on the same batch."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llm_ner.training import NERDataArguments, load_split, logits_mask_supported

    data_args = NERDataArguments(train_file=str(cluener_dir / "dev.json"))
    _, records, _ = load_split(data_args.train_file, data_args, load_prompt("cluener_zh_short"), limit=6)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["qwen3"])
    losses = {}
    for padding_free in (False, True):
        trainer = sft_trainer(
            tiny_models["qwen3"],
            records,
            tmp_path,
            tokenizer,
            padding_free=padding_free,
            model_init_kwargs={"attn_implementation": "sdpa"},
        )
        features = [trainer.train_dataset[i] for i in range(len(records))]
        batch = trainer.data_collator(features)
        # Both ways of keeping only answer logits: the 2-D mask (transformers >= 5.21) and the
        # 1-D column index older versions need, forced here on a version that has both.
        for mask in {logits_mask_supported(), False}:
            trainer.logits_mask_supported = mask
            with torch.no_grad():
                losses[padding_free, mask] = float(trainer.compute_loss(trainer.model, batch))
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1  # really one flat row
    model = AutoModelForCausalLM.from_pretrained(tiny_models["qwen3"], attn_implementation="sdpa").eval()
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), tokenizer.pad_token_id)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for row, f in enumerate(features):
        ids[row, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
        mask[row, : len(f["input_ids"])] = 1
        labels[row, : len(f["labels"])] = torch.tensor(f["labels"])
    with torch.no_grad():
        naive = float(model(input_ids=ids, attention_mask=mask, labels=labels).loss)
    for key, loss in losses.items():
        assert loss == pytest.approx(naive, rel=1e-5), key


def test_qwen3_extraction_prompt_has_thinking_disabled(tiny_models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["qwen3"])
    ids = chat_prompt_ids(tokenizer, [{"role": "user", "content": "你好"}])
    assert tokenizer.decode(ids).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_batched_generation_matches_one_at_a_time(tiny_models, cluener_dev):
    model, tokenizer = load_model(str(tiny_models["qwen2"]))
    redraw_(model, std=1.0, seed=0)  # larger random weights: answers then depend strongly on the input
    prompt = load_prompt("cluener_zh_short")
    texts = sorted({ex.text for ex in cluener_dev}, key=len)
    texts = [texts[i * (len(texts) - 1) // 5] for i in range(6)]  # shortest to longest
    conversations = [prompt.messages(text) for text in texts]
    batched = generate_answers(model, tokenizer, conversations, batch_size=6, max_new_tokens=12)
    single = [generate_answers(model, tokenizer, [c], batch_size=1, max_new_tokens=12)[0] for c in conversations]
    assert batched == single
    assert len(set(batched)) > 1  # the answers differ per sentence, so padding errors would show
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in stop_token_ids(tokenizer, model)


def _loss_trainer(model_dir, cluener_dir, tmp_path, **config):
    from llm_ner.training import NERDataArguments, load_split

    data_args = NERDataArguments(train_file=str(cluener_dir / "dev.json"))
    _, records, _ = load_split(data_args.train_file, data_args, load_prompt("cluener_zh_short"), limit=6)
    return sft_trainer(model_dir, records, tmp_path, **config)


def test_gradient_accumulation_loss_equals_the_whole_batch_loss(tiny_models, cluener_dir, tmp_path):
    """Two micro-batches, each divided by the answer tokens of both (`num_items_in_batch`, as the
    Trainer passes under gradient accumulation), sum to the loss of the whole batch; the short
    and the long half have different token counts, so a per-micro-batch mean would not."""
    trainer = _loss_trainer(tiny_models["qwen3"], cluener_dir, tmp_path)
    features = sorted((trainer.train_dataset[i] for i in range(6)), key=lambda f: len(f["input_ids"]))
    whole = trainer.data_collator(features)
    count = torch.tensor(int((whole["labels"][:, 1:] != -100).sum()))
    halves = [trainer.data_collator(features[:2]), trainer.data_collator(features[2:])]
    assert len({int((h["labels"][:, 1:] != -100).sum()) for h in halves}) == 2
    with torch.no_grad():
        full = float(trainer.compute_loss(trainer.model, whole))
        accumulated = sum(float(trainer.compute_loss(trainer.model, h, num_items_in_batch=count)) for h in halves)
    assert accumulated == pytest.approx(full, rel=1e-5)


def test_the_eval_loss_computes_the_shared_instructions_once(tiny_models, cluener_dir, tmp_path, monkeypatch):
    """`evaluate` computes the instructions every row starts with once (one row, a KV cache), then each row's
    rest on that cache: the loss of the plain forward pass over whole rows, from fewer tokens."""
    from datasets import Dataset

    from llm_ner.generation import MIN_SHARED_PREFIX

    trainer = _loss_trainer(tiny_models["qwen3"], cluener_dir, tmp_path, per_device_eval_batch_size=8)
    redraw_(trainer.model, std=1.0, seed=0)  # a loss that depends strongly on each row's tokens
    features = [trainer.train_dataset[i] for i in range(6)]
    rows: list[tuple[int, ...]] = []
    hook = trainer.model.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        shared = trainer.evaluate(eval_dataset=Dataset.from_list(features))["eval_loss"]
        prefix_rows = list(rows)
        rows.clear()
        monkeypatch.setattr(trainer, "with_shared_prefix", lambda model, inputs, keep: (inputs, keep))
        plain = trainer.evaluate(eval_dataset=Dataset.from_list(features))["eval_loss"]
    finally:
        hook.remove()
    width = max(len(f["input_ids"]) for f in features)
    assert rows == [(6, width)]  # plain: every row whole
    (one, prefix), (six, rest) = prefix_rows
    assert (one, six) == (1, 6) and prefix >= MIN_SHARED_PREFIX and prefix + rest == width, prefix_rows
    assert shared == pytest.approx(plain, rel=1e-5)


def test_two_process_loss_scale(tiny_models, cluener_dir, tmp_path):
    """Under DDP (2 CPU processes) the mean of the processes' losses is the whole batch's loss:
    scaled once for DDP's gradient averaging, not twice, not zero times."""
    out = tmp_path / "losses.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    command = [
        *two_cpu_process_launch(),
        str(ROOT / "tests" / "ddp_loss_check.py"),
        str(tiny_models["qwen3"]),
        str(cluener_dir / "dev.json"),
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert len(result["per_process"]) == 2 and result["per_process"][0] != result["per_process"][1]
    mean = sum(result["per_process"]) / 2
    assert mean == pytest.approx(result["whole_batch"], rel=1e-5)


def test_metric_for_best_model_eval_f1_picks_the_best_checkpoint(tiny_models, cluener_dir, tmp_path, monkeypatch):
    """`metric_for_best_model: eval_f1` with scripted F1 0.2, 0.5, 0.3 at steps 1, 2, 3: the
    trainer keeps checkpoint-2 as best and loads it at the end."""
    import llm_ner.training as training
    from llm_ner.training import callbacks

    scripted = iter([0.2, 0.5, 0.3, 0.0, 0.0])  # steps 1-3, then any final evaluation
    real = callbacks.f1_metrics

    def f1_metrics(gold, answers, prompt, prefix="eval"):
        return {**real(gold, answers, prompt, prefix), f"{prefix}_f1": next(scripted)}

    monkeypatch.setattr(callbacks, "f1_metrics", f1_metrics)
    out = tmp_path / "best"
    extra = ["--max_steps", "3", "--eval_steps", "1", "--save_steps", "1", "--f1_eval_samples", "2"]
    extra += ["--f1_max_new_tokens", "2", "--metric_for_best_model", "eval_f1", "--load_best_model_at_end", "true"]
    trainer = training.main(train_args(tiny_models["qwen2"], cluener_dir, out, *extra))
    assert [e["eval_f1"] for e in trainer.state.log_history if "eval_f1" in e][:3] == [0.2, 0.5, 0.3]
    assert trainer.state.best_metric == 0.5
    assert Path(trainer.state.best_model_checkpoint).name == "checkpoint-2"


def _training_log(out: Path) -> list[dict]:
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    return state["log_history"]


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_lora_training_writes_adapter_metadata_and_f1(tiny_models, cluener_dir, tmp_path, arch):
    from llm_ner.training import main

    out = tmp_path / "lora"
    trainer = main(train_args(tiny_models[arch], cluener_dir, out, "--use_peft", "true", "--lora_r", "4"))
    assert trainer.state.global_step == 2
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert {name.rsplit(".", 1)[-1] for name in adapter_config["target_modules"]} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    metadata = json.loads((out / "llm_ner.json").read_text())
    assert metadata["answer_format"] == "mentions" and metadata["enable_thinking"] is False
    assert load_prompt(out / "prompt.yaml").messages("x") == load_prompt("cluener_zh_short").messages("x")
    assert (out / "train_config.yaml").is_file() and (out / "tokenizer_config.json").is_file()
    evals = [entry for entry in _training_log(out) if "eval_f1" in entry]
    assert evals and "eval_parse_failure_rate" in evals[0]  # eval_f1 itself: the metric_for_best_model test


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_qlora_4bit_training_on_cpu(tiny_models, cluener_dir, tmp_path, arch):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is a runtime dependency")
    from llm_ner.training import main

    out = tmp_path / "qlora"
    trainer = main(
        train_args(
            tiny_models[arch],
            cluener_dir,
            out,
            "--use_peft",
            "true",
            "--lora_r",
            "4",
            "--load_in_4bit",
            "true",
            "--bnb_4bit_quant_type",
            "nf4",
            "--use_bnb_nested_quant",
            "true",
            "--f1_eval_samples",
            "0",
        )
    )
    import bitsandbytes as bnb

    base = trainer.model.get_base_model()
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in base.modules())
    assert trainer.state.global_step == 2 and (out / "adapter_model.safetensors").is_file()


def test_resume_from_checkpoint_continues_the_run(tiny_models, cluener_dir, tmp_path):
    """Stopped after step 2 and resumed, a run takes only steps 3-4 and ends with the weights of
    an uninterrupted run: step, data position, optimizer moments and learning-rate schedule all
    came from the checkpoint (a restart would take 4 steps; lost optimizer or scheduler state
    would change the weights)."""
    from transformers import TrainerCallback

    from llm_ner.training import main

    class StopAfterTwo(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                control.should_training_stop = True

    class Steps(TrainerCallback):
        def __init__(self):
            self.seen = []

        def on_step_end(self, args, state, control, **kwargs):
            self.seen.append(state.global_step)

    def run(out, *extra, callbacks=()):
        args = train_args(
            tiny_models["qwen2"],
            cluener_dir,
            out,
            "--max_steps",
            "4",
            "--f1_eval_samples",
            "0",
            "--eval_strategy",
            "no",
        )
        return main([*args, "--learning_rate", "5e-3", "--warmup_steps", "1", *extra], callbacks=list(callbacks))

    straight = run(tmp_path / "straight")
    out = tmp_path / "resume"
    first = run(out, callbacks=[StopAfterTwo()])
    assert first.state.global_step == 2 and (out / "checkpoint-2").is_dir()
    steps = Steps()
    second = run(out, "--resume_from_checkpoint", str(out / "checkpoint-2"), callbacks=[steps])
    assert steps.seen == [3, 4] and second.state.global_step == 4
    resumed = dict(second.model.named_parameters())
    changed = False
    for name, parameter in straight.model.named_parameters():
        assert torch.allclose(parameter, resumed[name], atol=1e-6), name
        changed |= not torch.allclose(parameter, dict(first.model.named_parameters())[name], atol=1e-6)
    assert changed  # steps 3-4 moved the weights, so the comparison means something


def test_merge_gives_the_same_outputs_and_keeps_thinking_off(tiny_models, cluener_dir, tmp_path):
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llm_ner.cli import main as cli
    from llm_ner.generation import load_model
    from llm_ner.training import main

    out = tmp_path / "adapter"
    main(
        train_args(
            tiny_models["qwen3"],
            cluener_dir,
            out,
            "--use_peft",
            "true",
            "--lora_r",
            "4",
            "--learning_rate",
            "5e-2",
            "--f1_eval_samples",
            "0",
            "--eval_strategy",
            "no",
        )
    )
    merged_dir = tmp_path / "merged"
    assert cli(["merge", "--adapter", str(out), "--out", str(merged_dir)]) == 0
    from llm_ner.training.model_card import read_card_header

    # the Hub card in place of peft's template, in the run and the merged folder
    assert read_card_header(out / "README.md")["library_name"] == "peft"
    assert read_card_header(merged_dir / "README.md")["library_name"] == "transformers"
    assert read_card_header(merged_dir / "README.md")["base_model"] == str(tiny_models["qwen3"])
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        expected = AutoPeftModelForCausalLM.from_pretrained(out).eval()(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()(ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_models["qwen3"]).eval()(ids).logits
    assert torch.allclose(expected, merged, atol=1e-4)
    assert not torch.allclose(base, merged, atol=1e-4)  # the adapter changed something
    loaded, _ = load_model(str(tiny_models["qwen3"]), str(out), dtype="float32")  # extraction's loader merges
    assert not any("lora" in name for name, _ in loaded.named_modules())
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, expected, atol=1e-4)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    plain = tokenizer.apply_chat_template(
        [{"role": "user", "content": "你好"}], add_generation_prompt=True, tokenize=False
    )
    assert plain.endswith("<think>\n\n</think>\n\n")  # no enable_thinking flag needed
    assert json.loads((merged_dir / "llm_ner.json").read_text())["peft"] is False
    assert (merged_dir / "prompt.yaml").is_file()


def test_two_process_cpu_launch(tiny_models, cluener_dir, tmp_path):
    """train_sft.py --config configs/tiny-cpu.yaml in 2 CPU processes (torchrun, as accelerate launches GPUs)."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [
        *two_cpu_process_launch(),
        str(ROOT / "train_sft.py"),
        "--config",
        str(ROOT / "configs" / "tiny-cpu.yaml"),
        "--max_steps",
        "4",
        "--model_name_or_path",
        str(tiny_models["qwen2"]),
        "--train_file",
        str(cluener_dir / "dev.json"),
        "--eval_file",
        str(cluener_dir / "dev.json"),
        "--max_train_samples",
        "64",
        "--max_eval_samples",
        "8",
        "--f1_eval_samples",
        "4",
        "--f1_max_new_tokens",
        "8",
        "--eval_steps",
        "4",
        "--save_steps",
        "4",
        "--output_dir",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert any("eval_f1" in entry for entry in state["log_history"])
    assert (out / "model.safetensors").is_file()


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_training_config_parses(config, tmp_path):
    from llm_ner.training import make_parser

    data_args, training_args, model_args = make_parser().parse_args_and_config(
        args=["--config", str(config), "--output_dir", str(tmp_path), "--use_cpu", "true"]
    )
    assert model_args.model_name_or_path and data_args.train_file and data_args.prompt
    load_prompt(data_args.prompt)
    if "qlora" in config.name:
        assert model_args.load_in_4bit and model_args.use_peft and model_args.use_bnb_nested_quant
        assert model_args.bnb_4bit_quant_type == "nf4"
    elif "lora" in config.name:
        assert model_args.use_peft and not model_args.load_in_4bit
    header = config.read_text(encoding="utf-8").split("\n", 3)[:3]
    assert config.name == "tiny-cpu.yaml" or any(line.startswith("# Peak GPU memory") for line in header)


@pytest.mark.parametrize("config", sorted((ROOT / "configs" / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_configs_load(config):
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(config))
    assert loaded.num_machines == (2 if config.name.startswith("multi_node") else 1)
    assert loaded.mixed_precision == "bf16"


def test_bad_convert_output_names_the_line(tmp_path):
    from llm_ner.errors import DataError
    from llm_ner.training import NERDataArguments, load_split

    path = tmp_path / "train.jsonl"
    path.write_text('{"prompt": [], "completion": []}\n{"prompt": 1}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"train.jsonl:2: not a prompt-completion record"):
        load_split(str(path), NERDataArguments(train_file=str(path)), load_prompt())


def _counting_generation(monkeypatch, out: Path, fail: bool = False) -> list[bool]:
    """Wrap the F1 generation of `llm_ner.training`: one entry per call, whether the adapter was already
    saved in ``out`` then; ``fail`` makes every call raise."""
    from llm_ner.training import callbacks

    calls: list[bool] = []
    real = callbacks.generate_answers

    def generate(*args, **kwargs):
        calls.append((out / "adapter_model.safetensors").is_file())
        if fail:
            raise RuntimeError("evaluation failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(callbacks, "generate_answers", generate)
    return calls


def test_final_evaluation_runs_once_after_saving_with_a_progress_bar(
    tiny_models, cluener_dir, tmp_path, monkeypatch, capfd
):
    """max_steps 2 with eval_steps 2: one evaluation (not one at step 2 and another after train), after
    the adapter is saved, its F1 generation counted by a progress bar (shown on a terminal)."""
    import llm_ner.training as training
    from llm_ner.training import callbacks, trainer

    out = tmp_path / "once"
    calls = _counting_generation(monkeypatch, out)
    losses, bars = [], []

    class Counting(trainer.NERSFTTrainer):
        def evaluation_loop(self, *args, **kwargs):
            losses.append(self.state.global_step)
            return super().evaluation_loop(*args, **kwargs)

    def recording_bar(total, desc, enabled=True, unit="sent"):
        bar = real_bar(total, desc, enabled, unit)  # hidden off a terminal, so its own count stays 0
        advanced = [0]
        real_update = bar.update

        def update(n=1):
            advanced[0] += n
            return real_update(n)

        bar.update = update
        bars.append((desc, total, advanced))
        return bar

    real_bar = callbacks.progress_bar
    monkeypatch.setattr(trainer, "NERSFTTrainer", Counting)
    monkeypatch.setattr(callbacks, "progress_bar", recording_bar)
    trained = training.main(train_args(tiny_models["qwen2"], cluener_dir, out, "--use_peft", "true", "--lora_r", "4"))
    assert trained.state.global_step == 2
    assert losses == [2] and calls == [True]  # one evaluation, the adapter already saved
    assert "eval_f1" in json.loads((out / "eval_results.json").read_text())
    assert [(desc, total, advanced[0]) for desc, total, advanced in bars] == [("eval F1 generation", 4, 4)]


def test_a_failing_final_evaluation_keeps_the_trained_adapter(tiny_models, cluener_dir, tmp_path, monkeypatch):
    import llm_ner.training as training

    out = tmp_path / "fails"
    calls = _counting_generation(monkeypatch, out, fail=True)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        training.main(train_args(tiny_models["qwen2"], cluener_dir, out, "--use_peft", "true", "--lora_r", "4"))
    assert calls == [True]
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()


def _prompt_lengths(model_dir, path: Path, prompt_name: str, limit: int) -> list[int]:
    from transformers import AutoTokenizer

    from llm_ner.data import read_cluener

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    examples, _ = read_cluener(path)
    prompt = load_prompt(prompt_name)
    return [len(chat_prompt_ids(tokenizer, prompt.messages(ex.text))) for ex in examples[:limit]]


def test_max_length_below_every_prompt_stops_before_training(tiny_models, cluener_dir, tmp_path):
    """The long cluener_zh prompt with max_length 512: TRL would drop every example; a UsageError says
    so before any step, with the prompt lengths."""
    from llm_ner.errors import UsageError
    from llm_ner.training import main

    lengths = _prompt_lengths(tiny_models["qwen2"], cluener_dir / "dev.json", "cluener_zh", 32)
    assert min(lengths) > 512
    args = train_args(tiny_models["qwen2"], cluener_dir, tmp_path / "long", "--max_length", "512")
    args[args.index("cluener_zh_short")] = "cluener_zh"
    with pytest.raises(UsageError, match=rf"max_length=512 leaves no train example.*{min(lengths)} to {max(lengths)}"):
        main(args)
    assert not (tmp_path / "long" / "checkpoint-2").exists()


def test_max_length_below_every_eval_prompt_stops_before_training(tiny_models, cluener_dir, tmp_path):
    """Short training prompts (convert output) but a long eval prompt: the eval set would be dropped
    whole and the run would die in its final evaluation (IndexError) after training."""
    from llm_ner.errors import UsageError
    from llm_ner.training import NERDataArguments, load_split, main

    data_args = NERDataArguments(train_file=str(cluener_dir / "dev.json"))
    _, records, _ = load_split(data_args.train_file, data_args, load_prompt("cluener_zh_short"), limit=32)
    converted = tmp_path / "train.jsonl"
    converted.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    args = train_args(tiny_models["qwen2"], cluener_dir, tmp_path / "long-eval", "--max_length", "512")
    args[args.index("cluener_zh_short")] = "cluener_zh"
    args[args.index("--train_file") + 1] = str(converted)
    lengths = _prompt_lengths(tiny_models["qwen2"], cluener_dir / "dev.json", "cluener_zh", 8)
    with pytest.raises(UsageError, match=rf"no eval example.*{min(lengths)} to {max(lengths)} tokens"):
        main(args)
    assert not (tmp_path / "long-eval" / "checkpoint-2").exists()


def test_max_length_dropping_some_examples_warns_with_the_count(tiny_models, cluener_dir, tmp_path, capfd):
    from llm_ner.training import main

    lengths = _prompt_lengths(tiny_models["qwen2"], cluener_dir / "dev.json", "cluener_zh_short", 32)
    limit = sorted(lengths)[len(lengths) // 2]
    dropped = sum(length >= limit for length in lengths)
    assert 0 < dropped < len(lengths)
    args = train_args(tiny_models["qwen2"], cluener_dir, tmp_path / "some", "--max_length", str(limit))
    args[args.index("--eval_file") : args.index("--prompt")] = []
    args[args.index("--eval_strategy") + 1] = "no"
    trainer = main([*args, "--f1_eval_samples", "0"])
    assert trainer.state.global_step == 2
    assert f"max_length={limit} drops {dropped} of 32 train examples" in capfd.readouterr().err


# ---------------------------------------------------------------------------------------------
# The prompt of a converted file (issue 19: trained on one prompt, scored with another, silently)


def _converted(cluener_dir, out: Path, prompt: str) -> Path:
    from llm_ner.cli import main as cli

    path = out / "train.jsonl"
    assert cli(["convert", "--input", str(cluener_dir / "dev.json"), "--output", str(path), "--prompt", prompt]) == 0
    return path


def _without_prompt(args: list[str]) -> list[str]:
    at = args.index("--prompt")
    return args[:at] + args[at + 2 :]


def test_training_records_the_prompt_the_file_was_converted_with(tiny_models, cluener_dir, tmp_path):
    """Converted with cluener_zh_short, no prompt argument: the run record's prompt copy is the converted file's
    (byte for byte), the F1 evaluation uses it on the raw eval file, not the default cluener_zh."""
    from llm_ner.prompting import read_conversion
    from llm_ner.training import main
    from llm_ner.training.run_dir import RunRecord

    train = _converted(cluener_dir, tmp_path, "cluener_zh_short")
    out = tmp_path / "adopted"
    args = _without_prompt(train_args(tiny_models["qwen2"], cluener_dir, out, "--use_peft", "true", "--lora_r", "4"))
    args[args.index("--train_file") + 1] = str(train)
    trainer = main(args)
    sidecar = json.loads((tmp_path / "train.jsonl.meta.json").read_text(encoding="utf-8"))
    assert (out / "prompt.yaml").read_text(encoding="utf-8") == sidecar["prompt_yaml"]
    record = RunRecord.load(out)
    assert record.prompt_name == "cluener_zh_short" and record.answer_format == "mentions"
    first = json.loads(train.read_text(encoding="utf-8").splitlines()[0])
    text = first["prompt"][1]["content"].split("文本：")[-1]
    assert record.load_prompt().messages(text) == first["prompt"] == read_conversion(train).prompt.messages(text)
    assert trainer.f1.prompt.name == "cluener_zh_short"  # the F1 evaluation's prompt
    assert any("eval_f1" in entry for entry in _training_log(out))


def test_a_prompt_other_than_the_converted_files_stops_before_any_model_loads(
    tiny_models, cluener_dir, tmp_path, capsys
):
    """`llm-ner train --prompt cluener_zh` on a file converted with cluener_zh_short: one line naming both, exit 2,
    before the (here missing) model is looked at and before anything is written."""
    from llm_ner.cli import main as cli

    train = _converted(cluener_dir, tmp_path, "cluener_zh_short")
    capsys.readouterr()
    out = tmp_path / "refused"
    args = train_args(tmp_path / "no-model-here", cluener_dir, out)
    args[args.index("--train_file") + 1] = str(train)
    args[args.index("cluener_zh_short")] = "cluener_zh"
    assert cli(["train", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "converted with prompt cluener_zh_short (sha256:" in err
    assert "says prompt cluener_zh (sha256:" in err and "convert again with --prompt cluener_zh" in err
    assert not out.exists()


def test_an_old_converted_file_without_sidecar_trains_with_a_warning(tiny_models, cluener_dir, tmp_path, capfd):
    from llm_ner.training import main
    from llm_ner.training.run_dir import RunRecord

    train = _converted(cluener_dir, tmp_path, "cluener_zh_short")
    (tmp_path / "train.jsonl.meta.json").unlink()
    out = tmp_path / "old"
    args = train_args(tiny_models["qwen2"], cluener_dir, out, "--use_peft", "true", "--lora_r", "4")
    args[args.index("--train_file") + 1] = str(train)
    assert main(args).state.global_step == 2
    err = capfd.readouterr().err
    assert f"warning: train_file {train} has no train.jsonl.meta.json" in err and "could not be checked" in err
    assert RunRecord.load(out).prompt_name == "cluener_zh_short"  # the prompt asked for, as before sidecars


def test_a_converted_file_with_hostile_json_is_one_data_error(tmp_path):
    """A converted (prompt-completion) training file with a lone surrogate or deep nesting in a record:
    `DataError` naming the line, not a UnicodeEncodeError or RecursionError later."""
    from llm_ner.errors import DataError
    from llm_ner.prompting import load_prompt
    from llm_ner.training import NERDataArguments, load_split

    good = '{"prompt": [{"role": "user", "content": "x"}], "completion": [{"role": "assistant", "content": "[]"}]}'
    for bad, reason in (
        ('{"prompt": [{"role": "user", "content": "\\ud800"}], "completion": []}', "lone surrogate"),
        ('{"prompt": ' + "[" * 5000 + "]" * 5000 + ', "completion": []}', "nested deeper"),
    ):
        path = tmp_path / "train.jsonl"
        path.write_text(good + "\n" + bad + "\n", encoding="utf-8")
        with pytest.raises(DataError) as error:
            load_split(str(path), NERDataArguments(train_file=str(path)), load_prompt("cluener_zh_short"))
        assert error.value.line == 2 and reason in error.value.reason


@pytest.mark.parametrize("bf16_cpu", [True, False])
def test_f1_is_decoded_by_a_merged_bf16_copy_on_a_bf16_cpu(tiny_models, cluener_dir, tmp_path, monkeypatch, bf16_cpu):
    """A float32 LoRA run on a CPU with bf16 instructions: the F1 subset is decoded by a bfloat16 copy with
    the adapter merged (as extraction loads it there), and the trained model stays float32 with its
    adapter; on other CPUs by the trained model itself."""
    import llm_ner.training as training
    from llm_ner.training import callbacks

    monkeypatch.setattr(callbacks, "cpu_computes_bf16", lambda: bf16_cpu)
    seen: list[tuple] = []
    real = callbacks.generate_answers

    def generate(model, *args, **kwargs):
        passes: list[int] = []  # forward passes through this model's own layers
        hook = model.get_output_embeddings().register_forward_hook(lambda *args: passes.append(1))
        try:
            return real(model, *args, **kwargs)
        finally:
            hook.remove()
            seen.append((model.dtype, any("lora" in name for name, _ in model.named_modules()), bool(passes)))

    monkeypatch.setattr(callbacks, "generate_answers", generate)
    out = tmp_path / "run"
    lora = ("--use_peft", "true", "--lora_r", "4", "--bf16", "false")  # float32 training, as the quickstart on CPU
    trainer = training.main(train_args(tiny_models["qwen2"], cluener_dir, out, *lora))
    assert seen == ([(torch.bfloat16, False, True)] if bf16_cpu else [(torch.float32, True, True)])
    model = trainer.accelerator.unwrap_model(trainer.model)
    assert model.dtype == torch.float32 and any("lora" in name for name, _ in model.named_modules())
    assert "eval_f1" in json.loads((out / "eval_results.json").read_text())


@pytest.mark.parametrize("bf16_cpu", [True, False])
def test_dtype_auto_decides_the_precision_of_cpu_training(tmp_path, monkeypatch, bf16_cpu):
    """``dtype: auto`` on a CPU: bf16 weights under bf16 autocast where the CPU computes bf16, else float32 weights
    and no autocast (TRL's own bf16 default undone); eager attention for bf16 there, SDPA otherwise. A dtype given
    by name, and any dtype on a GPU, is kept as it is."""
    import llm_ner.training as training
    from llm_ner.training import run

    monkeypatch.setattr(run, "cpu_computes_bf16", lambda: bf16_cpu)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)

    def parse(*extra):
        return training.make_parser().parse_args_and_config(
            args=["--output_dir", str(tmp_path), "--use_cpu", "true", "--model_name_or_path", "m", *extra]
        )

    _, training_args, model_args = parse("--dtype", "auto")
    assert training_args.bf16  # TRL's default, which auto replaces on a CPU without bf16
    dtype = training.resolve_training_dtype(model_args, training_args)
    assert dtype == ("bfloat16" if bf16_cpu else "float32")
    assert (training_args.bf16, training_args.fp16) == (bf16_cpu, False)
    assert training_args.mixed_precision == ("bf16" if bf16_cpu else "no")
    assert training.default_attention(dtype, training_args) == ("eager" if bf16_cpu else "sdpa")

    _, training_args, model_args = parse("--dtype", "float32", "--bf16", "false")
    assert training.resolve_training_dtype(model_args, training_args) == "float32" and not training_args.bf16
    assert training.default_attention("float32", training_args) == "sdpa"


def test_retrieved_shots_in_training_prompts_never_show_the_sentence_itself(tiny_models, cluener_dir, tmp_path):
    """``train_shots 2``: every training and F1 prompt holds the 2 most similar other train sentences as worked
    examples (the similarity `extract --shots` uses), never the sentence asked about; the run records the
    setting, so extraction can use the same retrieval."""
    from llm_ner.shots import ShotPool
    from llm_ner.training import main

    out = tmp_path / "ra-it"
    trainer = main(train_args(tiny_models["qwen3"], cluener_dir, out, "--train_shots", "2", "--max_steps", "1"))
    train_examples = trainer.f1.shots[0].examples
    pool = ShotPool(train_examples, "similar")
    for index in range(3):
        user_turns = [m["content"] for m in trainer.train_dataset[index]["prompt"] if m["role"] == "user"]
        assert len(user_turns) == 3  # two shots, then the sentence
        text = max((ex.text for ex in train_examples if user_turns[-1].rstrip().endswith(ex.text)), key=len)
        expected = pool.select(text, 2)
        assert text not in [ex.text for ex in expected]
        assert all(turn.rstrip().endswith(ex.text) for turn, ex in zip(user_turns[:2], expected))
    conversations = trainer.f1.conversations(trainer.f1.examples[:2])
    assert all(len([m for m in conversation if m["role"] == "user"]) == 3 for conversation in conversations)
    assert "train_shots: 2" in (out / "train_config.yaml").read_text(encoding="utf-8")


def test_train_shots_needs_labelled_sentences_not_finished_prompts(tiny_models, cluener_dir, tmp_path):
    from llm_ner.errors import UsageError
    from llm_ner.training import main

    converted = _converted(cluener_dir, tmp_path / "conv", "cluener_zh_short")
    args = train_args(tiny_models["qwen3"], cluener_dir, tmp_path / "out", "--train_shots", "2")
    args[args.index("--train_file") + 1] = str(converted)
    with pytest.raises(UsageError, match="train_shots needs a CLUENER/BIO train_file"):
        main(args)
    with pytest.raises(UsageError, match="train_shots must be 0 or more"):
        main(train_args(tiny_models["qwen3"], cluener_dir, tmp_path / "neg", "--train_shots", "-1"))
