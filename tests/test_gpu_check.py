"""benchmarks/gpu_check.py --smoke: every item of the GPU check runs on CPU with tiny shapes of the
real architectures and the real tokenizers, so the script a GPU session runs cannot rot."""

import json
from pathlib import Path

import gpu_check  # benchmarks/ is on pytest's pythonpath (pyproject.toml)
import pytest

ROOT = Path(__file__).resolve().parent.parent
TOKENIZERS = ROOT.parent / "shared" / "tokenizers"


def test_gpu_check_smoke_runs_every_item(tmp_path, cluener_dir):
    if not (TOKENIZERS / "qwen2.5").is_dir() or not (TOKENIZERS / "qwen3").is_dir():
        pytest.skip(f"needs the real Qwen tokenizers in {TOKENIZERS}")
    out = tmp_path / "out"
    status = gpu_check.main(["--smoke", "--out", str(out), "--data", str(cluener_dir), "--tokenizers", str(TOKENIZERS)])
    report = json.loads((out / "gpu_check.json").read_text())
    items = report["items"]
    assert status == 0, {k: v["status"] for k, v in items.items()}
    assert list(items) == ["correctness", "extraction", "train_small", "train_qlora", "train_lora8b"]
    for name, item in items.items():  # only 4-bit may be skipped on CPU, and then with its reason
        assert item["status"] == "ok" or (name == "train_qlora" and item["status"].startswith("skipped: ")), name

    correctness = items["correctness"]
    fp32 = correctness["prefix_cache_vs_generate_float32"]
    assert fp32["differences"] == 0 and fp32["distinct_answers"] > 1
    assert correctness["constrained_guarantee"]["holds"]
    assert correctness["extraction_4bit"].get("ran") or correctness["extraction_4bit"]["skipped"]

    engines = items["extraction"]["engines"]
    assert set(engines) == {
        "one-at-a-time",
        "static bs=2",
        "static bs=4",
        f"constrained bs={items['extraction']['best_batch_size']}",
        "continuous (generate_batch)",
    }
    assert all(e["seconds"] > 0 for e in engines.values())

    train = items["train_small"]
    for setup in ("naive", "ours"):
        assert train[setup]["steps"] == 2 and train[setup]["tokens"] > 0 and train[setup]["peak_memory_gib"] > 0
    assert train["speedup"] == pytest.approx(train["ours"]["tokens_per_s"] / train["naive"]["tokens_per_s"])
    if items["train_qlora"]["status"] == "ok":
        assert items["train_qlora"]["load_in_4bit"] and items["train_qlora"]["linear4bit_modules"] > 0
        assert items["train_qlora"]["gradient_checkpointing"]
    assert items["train_lora8b"]["steps"] == 1 and not items["train_lora8b"]["load_in_4bit"]

    markdown = (out / "gpu_check.md").read_text()
    assert "Speed-up" in markdown and "continuous (generate_batch)" in markdown and "Peak memory" in markdown


def test_gpu_check_refuses_an_unknown_item_before_running_any(tmp_path, cluener_dir, capsys):
    out = tmp_path / "out"
    argv = ["--smoke", "--out", str(out), "--data", str(cluener_dir), "--tokenizers", str(TOKENIZERS)]
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main([*argv, "--items", "correctness,nonsense"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "unknown item(s) 'nonsense'" in error and "choose from correctness, extraction" in error
    assert "correctness ..." not in error  # the first item never started
    assert not (out / "gpu_check.json").exists()
