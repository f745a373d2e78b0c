"""Shared-prefix training: the tokens every row of a batch starts with (the instructions) are computed once,
with gradients, and each row's own tokens on their KV cache. On a random-weight Qwen2.5 of a small shape
beside the real Qwen2.5 tokenizer, the loss and every LoRA gradient equal those of whole rows, in float32,
under bf16 autocast, on a 4-bit base, over accumulated micro-batches and under DDP; batches that share no
prefix, and gradient checkpointing, take the whole-row path and say so once. Random weights: plumbing and
arithmetic, not quality."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import redraw_, two_cpu_process_launch

from llm_ner.generation import MIN_SHARED_PREFIX
from llm_ner.prompting import load_prompt
from llm_ner.training import NERDataArguments, load_split

ROOT = Path(__file__).resolve().parent.parent
ROWS = 6


@pytest.fixture(scope="module")
def tiny_qwen3(tmp_path_factory):
    """A tiny random Qwen3 with its own per-character tokenizer (no default system prompt in its template)."""
    from llm_ner.tiny import build_tiny_model, default_texts

    return build_tiny_model(
        tmp_path_factory.mktemp("qwen3") / "model", "qwen3", default_texts(), hidden_size=64, num_layers=2
    )


@pytest.fixture(scope="module")
def qwen25(qwen_tokenizer_dir, tmp_path_factory):
    """A random-weight Qwen2 (hidden 64, 2 layers, grouped-query attention) beside the real Qwen2.5 tokenizer,
    its weights drawn large enough that every row's loss depends on its own tokens."""
    from transformers import AutoModelForCausalLM

    from llm_ner.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("qwen25") / "model"
    build_tiny_model(
        out, "qwen2", [], hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
        tokenizer_dir=qwen_tokenizer_dir("qwen2.5"),
    )  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(out)
    redraw_(model, std=0.2, seed=0)
    model.save_pretrained(out)
    return out


def cluener_records(cluener_dir, limit: int = ROWS, prompt: str = "cluener_zh_short") -> list[dict]:
    data_args = NERDataArguments(train_file=str(cluener_dir / "dev.json"))
    _, records, _ = load_split(data_args.train_file, data_args, load_prompt(prompt), limit=limit)
    return records


def lora_trainer(model_dir, records, output_dir, quantized: bool = False, **config):
    """The project's trainer with LoRA (r 4, every projection, no dropout: both paths then compute the same
    function) whose B matrices are drawn at random, so every A matrix gets a gradient too."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, BitsAndBytesConfig
    from trl import SFTConfig

    from llm_ner.training.trainer import NERSFTTrainer

    model_init_kwargs = {"attn_implementation": "sdpa", "dtype": "float32"}
    if quantized:
        model_init_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        )
    config = {"bf16": False, "gradient_checkpointing": False, **config}
    trainer = NERSFTTrainer(
        model=str(model_dir),
        args=SFTConfig(
            output_dir=str(output_dir), report_to="none", use_cpu=True, max_length=None,
            model_init_kwargs=model_init_kwargs, **config,
        ),
        train_dataset=Dataset.from_list(records),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        peft_config=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"),
    )  # fmt: skip
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in trainer.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    return trainer


def loss_and_grads(trainer, model, batches: list[dict], count: torch.Tensor, shared: bool):
    """The summed loss of ``batches`` (each divided by ``count`` answer tokens, as under gradient accumulation)
    and the accumulated gradient of every trainable parameter, with or without the shared prefix."""
    trainer.shared_prefix = shared
    model.train()
    model.zero_grad()
    total = 0.0
    for batch in batches:
        loss = trainer.compute_loss(model, batch, num_items_in_batch=count)
        loss.backward()
        total += float(loss.detach())
    return total, {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def record_rows(model) -> tuple[list[tuple[int, ...]], object]:
    """The shape of ``input_ids`` of every pass through ``model`` (a list), and the hook to remove."""
    rows: list[tuple[int, ...]] = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    return rows, hook


def assert_same_gradients(shared: dict, whole: dict, rtol: float) -> None:
    assert shared.keys() == whole.keys() and len(whole) >= 14  # every LoRA A and B of both layers at least
    for name, grad in whole.items():
        assert grad.abs().sum() > 0, name  # a gradient that is all zeros cannot show a difference
        error = float((shared[name] - grad).norm() / grad.norm())
        assert error < rtol, f"{name}: relative difference {error:.2e}"


@pytest.mark.parametrize("quantized", [False, True], ids=["float32", "nf4"])
def test_training_loss_and_lora_gradients_equal_whole_rows(qwen25, cluener_dir, tmp_path, quantized):
    """Two accumulated micro-batches through the shared prefix give the loss and every LoRA gradient of the
    whole batch computed row by row, on a float32 and on a 4-bit (NF4) base; the prefix really went once."""
    if quantized:
        pytest.importorskip("bitsandbytes", reason="bitsandbytes is a runtime dependency")
    trainer = lora_trainer(qwen25, cluener_records(cluener_dir), tmp_path, quantized=quantized)
    features = sorted((trainer.train_dataset[i] for i in range(ROWS)), key=lambda f: len(f["input_ids"]))
    whole = trainer._prepare_inputs(trainer.data_collator(features))
    halves = [trainer._prepare_inputs(trainer.data_collator(part)) for part in (features[:3], features[3:])]
    count = (whole["labels"][:, 1:] != -100).sum()
    model = trainer.model
    rows, hook = record_rows(trainer.accelerator.unwrap_model(model).get_base_model())
    try:
        whole_loss, whole_grads = loss_and_grads(trainer, model, [whole], count, shared=False)
        assert rows == [tuple(whole["input_ids"].shape)]
        rows.clear()
        shared_loss, shared_grads = loss_and_grads(trainer, model, halves, count, shared=True)
    finally:
        hook.remove()
    for half, (one, prefix), (three, rest) in zip(halves, rows[0::2], rows[1::2]):
        assert (one, three) == (1, 3) and prefix >= MIN_SHARED_PREFIX and prefix + rest == half["input_ids"].shape[1]
    assert shared_loss == pytest.approx(whole_loss, rel=1e-5)
    # bitsandbytes' 4-bit kernels round to bf16 precision depending on the batch's shape: whole rows split into
    # the same two halves (no shared prefix) differ from the whole batch by 2^-8 (0.0039) too.
    assert_same_gradients(shared_grads, whole_grads, rtol=1e-2 if quantized else 1e-4)


def test_under_bf16_autocast_the_gradients_match_whole_rows(qwen25, cluener_dir, tmp_path):
    """Under accelerate's bf16 autocast (how the 0.5B config trains on CPU), with LoRA inputs left uncast, the
    shared prefix gives the loss and gradients of whole rows to bf16 precision."""
    trainer = lora_trainer(qwen25, cluener_records(cluener_dir), tmp_path, bf16=True)
    model = trainer.accelerator.prepare_model(trainer.model)
    assert hasattr(model, "_original_forward")  # the autocast wrapper our trainer checks for
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(ROWS)]))
    count = (batch["labels"][:, 1:] != -100).sum()
    whole_loss, whole_grads = loss_and_grads(trainer, model, [batch], count, shared=False)
    shared_loss, shared_grads = loss_and_grads(trainer, model, [batch], count, shared=True)
    assert shared_loss == pytest.approx(whole_loss, rel=1e-2)
    assert_same_gradients(shared_grads, whole_grads, rtol=5e-2)


def test_two_processes_get_the_whole_batch_gradients(qwen25, cluener_dir, tmp_path):
    """Under DDP (2 CPU processes), each process's half through the shared prefix (the prefix outside DDP's
    forward, the rest through it) leaves the gradients of the whole batch computed by one process."""
    out = tmp_path / "ddp.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    command = [
        *two_cpu_process_launch(),
        str(ROOT / "tests" / "ddp_prefix_check.py"),
        str(qwen25),
        str(cluener_dir / "dev.json"),
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["prefix_passes"] == [1, 1] and result["ddp"]  # each process shared its prefix, under DDP
    assert result["parameters"] >= 14 and result["max_relative_difference"] < 1e-4, result


def _text_first_prompt(tmp_path: Path) -> Path:
    """A prompt whose user turn starts with the sentence and has no system message: on Qwen3's template the
    rows then share 3 tokens (``<|im_start|>user\\n``)."""
    path = tmp_path / "text_first.yaml"
    path.write_text(
        "name: text_first\nlabels_from: cluener_zh.yaml\nuser: |\n  {{ text }}\n  {{ format_instruction }}\n"
        "format_instructions:\n  mentions: 输出JSON数组。\n  grouped: 输出JSON对象。\n",
        encoding="utf-8",
    )
    return path


def test_rows_without_a_shared_prefix_are_computed_whole_and_said_once(tiny_qwen3, cluener_dir, tmp_path, capfd):
    trainer = lora_trainer(tiny_qwen3, cluener_records(cluener_dir, prompt=str(_text_first_prompt(tmp_path))), tmp_path)
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(ROWS)]))
    count = (batch["labels"][:, 1:] != -100).sum()
    rows, hook = record_rows(trainer.model.get_base_model())
    try:
        losses = [loss_and_grads(trainer, trainer.model, [batch], count, shared=True)[0] for _ in range(2)]
    finally:
        hook.remove()
    assert rows == [tuple(batch["input_ids"].shape)] * 2  # whole rows, both times
    notes = [line for line in capfd.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "fewer than 16 leading tokens" in notes[0], notes
    assert losses[0] == pytest.approx(loss_and_grads(trainer, trainer.model, [batch], count, shared=False)[0])


def test_gradient_checkpointing_takes_whole_rows_and_says_so(qwen25, cluener_dir, tmp_path, capfd):
    """A checkpointed layer drops the KV cache: with gradient checkpointing the shared prefix is not used in
    training (one note), and the loss is the whole rows' loss."""
    trainer = lora_trainer(qwen25, cluener_records(cluener_dir), tmp_path, gradient_checkpointing=True)
    trainer.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(ROWS)]))
    count = (batch["labels"][:, 1:] != -100).sum()
    rows, hook = record_rows(trainer.model.get_base_model())
    try:
        shared_loss, shared_grads = loss_and_grads(trainer, trainer.model, [batch], count, shared=True)
    finally:
        hook.remove()
    assert rows == [tuple(batch["input_ids"].shape)]
    notes = [line for line in capfd.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "gradient checkpointing" in notes[0], notes
    trainer.model.gradient_checkpointing_disable()
    whole_loss, whole_grads = loss_and_grads(trainer, trainer.model, [batch], count, shared=False)
    assert shared_loss == pytest.approx(whole_loss, rel=1e-5)
    assert_same_gradients(shared_grads, whole_grads, rtol=1e-4)


def test_the_logged_padding_share_counts_the_prefix_once(qwen25, cluener_dir, tmp_path):
    """``padding_share``: padded positions over the positions a pass computed (the shared prefix once, each
    row's rest once per row), counted here by hand from the batch."""
    trainer = lora_trainer(qwen25, cluener_records(cluener_dir, limit=4), tmp_path)
    features = [trainer.train_dataset[i] for i in range(4)]
    batch = trainer._prepare_inputs(trainer.data_collator(features))
    for shared in (True, False):
        trainer._metrics["train"].clear()
        loss_and_grads(trainer, trainer.model, [batch], (batch["labels"][:, 1:] != -100).sum(), shared=shared)
        lengths = [len(f["input_ids"]) for f in features]
        width = max(lengths)
        prefix = 0
        if shared:  # positions every row holds alike, and where no row's next token is a target
            first = features[0]["input_ids"]
            while prefix < width - 1 and all(
                prefix < len(f["input_ids"])
                and f["input_ids"][prefix] == first[prefix]
                and (prefix + 1 >= len(f["labels"]) or f["labels"][prefix + 1] == -100)
                for f in features
            ):
                prefix += 1
            assert prefix >= MIN_SHARED_PREFIX
        computed = prefix + len(features) * (width - prefix)
        expected = sum(width - length for length in lengths) / computed
        assert trainer._metrics["train"]["padding_share"] == [pytest.approx(expected)], (shared, prefix)
