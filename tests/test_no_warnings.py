"""A first run is quiet: a tiny training (full and LoRA), an extraction (of each) and a baseline run in a fresh
process with the warnings of our code paths turned into errors, and --quiet showing no progress bar at all."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import runpy, sys, warnings

def strict():  # our modules, and the messages a first run used to print (issue 12), are errors
    warnings.filterwarnings("error", module=r"llm_ner(\.|$)")
    for message in (r".*`past_key_values` is deprecated", r"`gradient_checkpointing` is deprecated",
                    r"Converting a tensor with requires_grad"):
        warnings.filterwarnings("error", message=message)

strict()
from llm_ner.cli import main

out, train, dev = sys.argv[1:4]
shape = '{"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1}'
# train_sft.py, as the quickstart runs it
sys.argv = ["train_sft.py", "--config", "configs/tiny-cpu.yaml", "--train_file", train, "--eval_file", "",
            "--eval_strategy", "no", "--model_name_or_path", out + "/tiny", "--tiny_model_shape", shape,
            "--output_dir", out + "/model", "--max_steps", "2", "--save_strategy", "no", "--disable_tqdm", "true"]
runpy.run_path("train_sft.py", run_name="__main__")
sys.argv[sys.argv.index("--output_dir") + 1] = out + "/lora"
sys.argv += ["--use_peft", "true", "--lora_r", "4", "--lora_target_modules", "all-linear"]
runpy.run_path("train_sft.py", run_name="__main__")
# Training ignores what it cannot help for the whole process: extraction must be quiet without that.
warnings.filters[:] = [f for f in warnings.filters if not (f[1] and "is_gradient_checkpointing" in f[1].pattern)]
print("== quiet from here", file=sys.stderr, flush=True)
assert main(["extract", "--model", out + "/model", "--input", dev, "--output", out + "/pred.json",
             "--max-new-tokens", "8", "--quiet", "--max-parse-failures", "1"]) == 0
assert main(["extract", "--adapter", out + "/lora", "--input", dev, "--output", out + "/lora.pred.json",
             "--max-new-tokens", "8", "--quiet", "--max-parse-failures", "1"]) == 0
assert main(["baseline", "train", "--arch", "bilstm-crf", "--train", train, "--dev", dev, "--out",
             out + "/bilstm", "--epochs", "1", "--quiet"]) == 0
assert main(["baseline", "predict", "--model", out + "/bilstm", "--input", dev, "--output", out + "/b.json",
             "--quiet"]) == 0
"""


def test_first_run_prints_no_warning(tmp_path, cluener_dir):
    train, dev = tmp_path / "train.json", tmp_path / "dev.json"
    train.write_text("".join((cluener_dir / "train.json").read_text(encoding="utf-8").splitlines(True)[:24]))
    dev.write_text("".join((cluener_dir / "dev.json").read_text(encoding="utf-8").splitlines(True)[:6]))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(train), str(dev)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "gemm_4bit_forward" not in done.stderr  # bitsandbytes' CPU notice, printed even without 4-bit
    assert "Warning" not in done.stderr, done.stderr[-3000:]
    quiet = done.stderr.split("== quiet from here")[1]
    assert "it/s]" not in quiet and "Loading weights" not in quiet, quiet[-2000:]  # --quiet: no bars at all
