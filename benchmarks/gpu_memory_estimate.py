"""Estimate GPU memory for the shipped GPU configs from the real Qwen shapes (no weights, no GPU).

Parameter counts are exact: the model of each shape in ../shared/qwen_shapes.json is built on the
meta device (no memory) and its modules are counted. Everything else is arithmetic, stated here:

- weights: bf16 2 bytes per parameter; 4-bit NF4 with double quantization 0.516 bytes per
  parameter of the decoder's linear layers (4 bits + an 8-bit absmax per 64 weights + an fp32
  constant per 256 absmax), embeddings, norms and the LM head stay bf16;
- LoRA on every linear projection: r x (in + out) parameters each, kept in fp32 by PEFT, with fp32
  gradients and two AdamW moments: 16 bytes per trainable parameter;
- activations with gradient checkpointing: each decoder layer's bf16 input for the whole batch,
  plus the tensors one layer saves while it is recomputed during backward (x2 for its gradients):
  2 x seq x batch x (21 h + 3 kv + 5 i) bytes, counting the norms' fp32 upcasts and the LoRA dropout
  copies (h hidden, kv key/value width, i MLP width); SDPA keeps no attention matrix;
- logits only at answer positions (our trainer's compute_loss): batch x answer x vocab x 10 bytes
  (bf16 logits, their fp32 upcast, fp32 gradient);
- extraction: bf16 (or 4-bit) weights plus the static KV cache, batch x (prompt + answer) x layers
  x 2 x kv x 2 bytes;
- 1 GiB for the CUDA context and allocator slack.

Batch size, LoRA rank, max_length and gradient checkpointing are read from each config in configs/.
Sequence lengths are upper bounds: the chat-formatted prompt and answer of the longest training
sentence counted in characters (Qwen's tokenizer needs fewer tokens than characters for Chinese),
capped at the config's max_length; the longest answer is assumed for every row of the batch.

    python benchmarks/gpu_memory_estimate.py [--shapes ../shared/qwen_shapes.json] [--configs configs]
    python benchmarks/gpu_memory_estimate.py --check-on-cpu Qwen2.5-0.5B-Instruct --check-batch 8  # the check

The check measures one float32 LoRA step of the shape on the CPU against the same arithmetic in
float32 (benchmarks/README.md has the figures: the estimate errs high, 1.1x without and 1.7x with
gradient checkpointing).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

GIB = 1024**3
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
CONTEXT_BYTES = 1 * GIB
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class Setup:
    name: str
    shape: str
    method: str  # "lora" (bf16 base) or "qlora" (4-bit base)
    batch: int
    lora_r: int
    max_length: int
    checkpointing: bool
    prompt: str
    gpus: int = 1
    fsdp: bool = False


def read_setups(config_dir: Path, shapes: dict) -> list[Setup]:
    """One Setup per shipped GPU config whose model has a shape in qwen_shapes.json."""
    import yaml

    setups = []
    for path in sorted(config_dir.glob("qwen*.yaml")):
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        shape = config["model_name_or_path"].split("/")[-1]
        if shape not in shapes:
            print(f"({path.name}: no shape for {shape} in qwen_shapes.json, skipped)")
            continue
        setup = Setup(
            name=path.stem,
            shape=shape,
            method="qlora" if config.get("load_in_4bit") else "lora",
            batch=config["per_device_train_batch_size"],
            lora_r=config.get("lora_r", 16),
            max_length=config.get("max_length", 1024),
            checkpointing=bool(config.get("gradient_checkpointing")),
            prompt=config.get("prompt", "cluener_zh"),
        )
        setups.append(setup)
        if setup.method == "lora" and shape == "Qwen3-8B":
            setups.append(replace(setup, name=f"{path.stem}, FSDP on 4 GPUs", gpus=4, fsdp=True))
    return setups


def count_parameters(shape: dict) -> dict[str, int]:
    """Exact parameter counts of a Qwen shape, from a model built on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = {k: v for k, v in shape.items() if k != "model_type"}
    config = AutoConfig.for_model(shape["model_type"], **fields)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    linear = lora_in_out = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.split(".")[-1] in LORA_TARGETS:
            linear += module.weight.numel() + (module.bias.numel() if module.bias is not None else 0)
            lora_in_out += module.in_features + module.out_features
    total = sum(p.numel() for p in model.parameters())
    return {"total": total, "decoder_linear": linear, "other": total - linear, "lora_in_out": lora_in_out}


def sequence_lengths(train_file: Path | None, prompt_name: str = "cluener_zh") -> tuple[int, int]:
    """(prompt + answer, answer) characters of the longest sentence, chat template included."""
    from llm_ner.answer_format import format_answer
    from llm_ner.data import read_cluener
    from llm_ner.data_sources import available_data_dir
    from llm_ner.prompting import load_prompt

    examples, _ = read_cluener(train_file or available_data_dir() / "train.json")
    prompt = load_prompt(prompt_name)
    template_overhead = 40  # <|im_start|>system ... <|im_end|> markers and the empty think block
    longest = 0
    answer_longest = 0
    for ex in examples:
        messages = prompt.messages(ex.text)
        answer = len(format_answer(ex, "mentions"))
        longest = max(longest, sum(len(m["content"]) for m in messages) + answer + template_overhead)
        answer_longest = max(answer_longest, answer)
    return longest, answer_longest


def widths(shape: dict) -> tuple[int, int, int, int]:
    """(hidden, MLP width, layers, key/value width) of a shape."""
    h = shape["hidden_size"]
    kv = shape["num_key_value_heads"] * shape.get("head_dim", h // shape["num_attention_heads"])
    return h, shape["intermediate_size"], shape["num_hidden_layers"], kv


def activation_bytes(shape: dict, batch: int, seq: int, answer: int, checkpointing: bool, scale: float = 1.0) -> float:
    """Activations and answer logits of one training step (``scale`` 2 for float32 instead of bf16)."""
    h, i, layers, kv = widths(shape)
    one_layer = 2 * seq * batch * (21 * h + 3 * kv + 5 * i) * scale
    # With checkpointing: each layer's input is kept, one layer is recomputed at a time (x2: its gradients).
    held = (layers * batch * seq * h * 2 * scale + 2 * one_layer) if checkpointing else layers * one_layer
    return held + batch * answer * shape["vocab_size"] * (10 if scale == 1.0 else 12)


def estimate(setup: Setup, shape: dict, counts: dict[str, int], seq: int, answer: int) -> dict[str, float]:
    _, _, layers, kv = widths(shape)
    if setup.method == "qlora":
        base = counts["decoder_linear"] * NF4_BYTES + counts["other"] * 2
    else:
        base = counts["total"] * 2
    weights = base
    lora = setup.lora_r * counts["lora_in_out"] * 16
    if setup.fsdp:  # sharded, plus one layer's full weights gathered at a time
        weights = base / setup.gpus + 2 * counts["decoder_linear"] / layers
        lora /= setup.gpus
    seq = min(seq, setup.max_length)
    answer = min(answer, seq)
    activations = activation_bytes(shape, setup.batch, seq, answer, setup.checkpointing)
    train = weights + lora + activations + CONTEXT_BYTES
    kv_cache = 64 * seq * layers * 2 * kv * 2  # extraction batch 64, bf16 keys and values
    extract = base + kv_cache + CONTEXT_BYTES
    return {
        "params_b": counts["total"] / 1e9,
        "lora_m": setup.lora_r * counts["lora_in_out"] / 1e6,
        "weights": weights / GIB,
        "lora_optimizer": lora / GIB,
        "activations": activations / GIB,
        "train_total": train / GIB,
        "extract_total": extract / GIB,
    }


def check_on_cpu(shape_name: str, shape: dict, batch: int, seq: int, answer: int, checkpointing: bool) -> None:
    """Measure one float32 LoRA training step of a random-weight model of the real shape on the CPU
    (peak resident memory above the loaded model) against the estimate's arithmetic in float32."""
    import ctypes

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    # A fixed mmap threshold makes glibc return every freed block over 128 KiB to the system at once,
    # so resident memory follows live tensors instead of what the allocator keeps for reuse.
    ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    torch.manual_seed(0)
    fields = {k: v for k, v in shape.items() if k != "model_type"}
    config = AutoConfig.for_model(shape["model_type"], **fields, attn_implementation="sdpa")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=list(LORA_TARGETS)))
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    ids = torch.randint(0, shape["vocab_size"], (batch, seq))
    keep = torch.zeros(batch, seq, dtype=torch.bool)
    keep[:, seq - answer - 1 : seq - 1] = True

    def step() -> None:
        logits = model(input_ids=ids, use_cache=False, logits_to_keep=keep).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), ids[:, -answer:].reshape(-1)
        )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def rss(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {field} in /proc/self/status")

    base = rss("VmRSS:")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    step()  # the first step: nothing of an earlier one is cached; AdamW allocates its states here
    measured = rss("VmHWM:") - base
    lora_states = 12 * sum(p.numel() for p in trainable)  # gradients and two AdamW moments, fp32
    estimated = activation_bytes(shape, batch, seq, answer, checkpointing, scale=2.0) + lora_states
    print(
        f"{shape_name}, float32 on CPU, batch {batch} x {seq} tokens, {answer} answer tokens, gradient "
        f"checkpointing {'on' if checkpointing else 'off'}: peak above the trained-on model {measured / GIB:.2f} GiB, "
        f"estimated activations + logits + LoRA gradients and AdamW states {estimated / GIB:.2f} GiB "
        f"(ratio {estimated / max(measured, 1):.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from llm_ner.tiny import shared_dir

    parser.add_argument("--shapes", type=Path, default=shared_dir() / "qwen_shapes.json")
    parser.add_argument("--train-file", type=Path, help="CLUENER train file for the sequence length")
    parser.add_argument("--configs", type=Path, default=Path(__file__).resolve().parents[1] / "configs")
    parser.add_argument(
        "--check-on-cpu",
        metavar="SHAPE",
        help="instead: measure one float32 LoRA step of SHAPE on this CPU against the activation arithmetic",
    )
    parser.add_argument("--check-batch", type=int, default=2)
    parser.add_argument("--check-seq", type=int, default=512)
    parser.add_argument("--check-answer", type=int, default=64)
    parser.add_argument("--check-checkpointing", action="store_true")
    args = parser.parse_args()
    if not args.shapes.is_file():
        sys.exit(f"error: {args.shapes} not found (pass --shapes)")
    shapes = json.loads(args.shapes.read_text(encoding="utf-8"))
    if args.check_on_cpu:
        check_on_cpu(
            args.check_on_cpu,
            shapes[args.check_on_cpu],
            args.check_batch,
            args.check_seq,
            args.check_answer,
            args.check_checkpointing,
        )
        return
    setups = read_setups(args.configs, shapes)
    lengths = {name: sequence_lengths(args.train_file, name) for name in {s.prompt for s in setups}}
    for name, (seq, answer) in lengths.items():
        print(f"prompt {name}: sequence length bound {seq} (answer {answer}), capped at each config's max_length")
    print()
    print(
        "| config | shape | params | LoRA params | per-GPU batch | grad. ckpt | weights | LoRA + AdamW | activations "
        "| training, per GPU | extraction (batch 64) |"
    )
    print("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    counted: dict[str, dict] = {}
    for setup in setups:
        shape = shapes[setup.shape]
        counts = counted.setdefault(setup.shape, count_parameters(shape))
        e = estimate(setup, shape, counts, *lengths[setup.prompt])
        print(
            f"| {setup.name} | {setup.shape} | {e['params_b']:.2f} B | {e['lora_m']:.1f} M | {setup.batch} "
            f"| {'yes' if setup.checkpointing else 'no'} "
            f"| {e['weights']:.1f} GiB | {e['lora_optimizer']:.2f} GiB | {e['activations']:.1f} GiB "
            f"| **{e['train_total']:.1f} GiB** | {e['extract_total']:.1f} GiB |"
        )


if __name__ == "__main__":
    main()
