"""Training across machines: `accelerate launch --config_file configs/accelerate/multi_node_*.yaml`, one
launch per machine. Here both "machines" are machine ranks on 127.0.0.1 (CPU, gloo), one process each: the
test proves the launch, the rendezvous and the loss arithmetic over node ranks, not a network, NCCL or GPUs.

FSDP is checked as far as its launch (the torchrun arguments and FSDP settings each machine gets), not
trained: accelerate 1.15 turns FSDP on only for accelerator devices (AcceleratorState sets
DistributedType.FSDP when the type is MULTI_GPU/NPU/XPU/...); with `use_cpu` the type is MULTI_CPU and the
same launch trains the model wrapped in DistributedDataParallel, so a CPU run of the FSDP config is DDP.
"""

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import machine_launch, one_layer_qwen3, redraw_weights, run_together
from harness import free_port

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs" / "accelerate"
TIMEOUT = 300  # seconds per run; a run takes ~10 s on 2 free cores
SAMPLES = 16


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, cluener_dev):
    """A one-layer Qwen3 with large random weights: its per-token losses differ widely, so a mean of
    per-process means is visibly not the mean over the tokens of both (with the small initial weights
    every token's loss is about ln(vocab), and both means agree to 1e-5)."""
    folder = tmp_path_factory.mktemp("multinode")
    tiny = one_layer_qwen3(folder / "tiny", [ex.text for ex in cluener_dev[:SAMPLES]])
    return redraw_weights(tiny, folder / "model", std=0.5)


def train_arguments(model_dir: Path, train_file: Path, out: Path, batch_size: int, seed: int = 7) -> list[str]:
    """`train_sft.py` arguments: LoRA, 2 optimizer steps, per-step loss logged and saved in checkpoint-2.

    SGD, not AdamW: Adam divides each gradient element by its own size (the first update is about
    lr * sign(gradient)), which hides a gradient scaled twice and turns float rounding in near-zero elements
    into visible weight differences; SGD's update is linear in the gradient. float32 (TRL's default is bf16
    autocast, which rounds differently for each batch shape), LoRA dropout 0 (each process draws its own
    masks), no gradient clipping (clipping to a fixed norm hides a scaled gradient), and the random sampler,
    not group_by_length (its megabatches are 50 per-device batches, so the order would depend on the
    per-device batch size)."""
    return [
        str(ROOT / "train_sft.py"),
        *("--model_name_or_path", str(model_dir), "--train_file", str(train_file), "--output_dir", str(out)),
        *("--prompt", "cluener_zh_short", "--max_train_samples", str(SAMPLES), "--eval_strategy", "no"),
        *("--per_device_train_batch_size", str(batch_size), "--max_steps", "2", "--logging_steps", "1"),
        *("--save_strategy", "steps", "--save_steps", "2", "--report_to", "none", "--seed", str(seed)),
        *("--use_cpu", "true", "--dtype", "float32", "--bf16", "false", "--optim", "sgd", "--learning_rate", "0.5"),
        *("--use_peft", "true", "--lora_dropout", "0", "--max_grad_norm", "0"),
    ]


def environment(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def train_on_two_machines(config: Path, model_dir, train_file, out, batch_size, seeds=(7, 7)) -> Path:
    """Machine ranks 0 and 1 of ``config`` on 127.0.0.1, one process each; fails with both outputs."""
    port = free_port()
    commands = [
        [*machine_launch(config, rank, port), *train_arguments(model_dir, train_file, out, batch_size, seed)]
        for rank, seed in enumerate(seeds)
    ]
    results = run_together(commands, TIMEOUT, cwd=ROOT)
    # A machine killed after its peer failed says None.
    reports = [f"machine {rank} exited with {code}:\n{log[-2000:]}" for rank, (code, log) in enumerate(results)]
    assert all(code == 0 for code, _ in results), "\n".join(reports)
    return out


def train_in_one_process(model_dir, train_file, out, batch_size) -> Path:
    import subprocess
    import sys

    command = [sys.executable, *train_arguments(model_dir, train_file, out, batch_size)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def logged_losses(out: Path) -> dict[int, float]:
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}


def adapter_weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(out / "adapter_model.safetensors")


def test_two_machines_train_like_one_process_on_the_doubled_batch(model_dir, cluener_dir, tmp_path, monkeypatch):
    """2 machine ranks x 1 process, batch 2 per process, give the per-step loss and final LoRA weights of 1
    process with batch 4, same seed.

    Data order: the Trainer hands accelerate a seeded random sampler; under 2 processes accelerate shards the
    *batch* sampler (BatchSamplerShard): every rank draws the same seeded permutation, cuts it into batches of
    2, and rank r takes batches r, r + 2, ... So optimizer step k sees batches 2k and 2k + 1, the single
    run's batch k of 4. Which rank holds which half does not matter: with `average_tokens_across_devices`
    (the default) each rank divides its loss sum by the answer tokens of both ranks and the DDP gradient
    average undoes the x2, so a step's loss and gradient are those of the whole batch of 4.

    Tolerance 1e-5 relative: float32, and the runs differ only in summation order (two half-batch sums
    added by gloo's allreduce) and padding width. Measured: losses bit-equal, weights within 1.6e-7 of
    each tensor's largest value; node 1 with another seed or batch 4 per process, or a mean of per-rank
    means, move them by 1e-3 or more."""
    environment(monkeypatch)
    train_file = cluener_dir / "dev.json"
    nodes = train_on_two_machines(CONFIGS / "multi_node_ddp.yaml", model_dir, train_file, tmp_path / "nodes", 2)
    single = train_in_one_process(model_dir, train_file, tmp_path / "single", 4)

    # 2 processes took part (one RNG state saved per process), and 1 in the single run.
    assert sorted(p.name for p in (nodes / "checkpoint-2").glob("rng_state*")) == ["rng_state_0.pth", "rng_state_1.pth"]
    assert [p.name for p in (single / "checkpoint-2").glob("rng_state*")] == ["rng_state.pth"]
    # The run record is written once, by the global main process (machine 0).
    assert json.loads((nodes / "llm_ner.json").read_text())["peft"] is True

    losses, expected = logged_losses(nodes), logged_losses(single)
    assert sorted(expected) == [1, 2] and expected[1] != expected[2]
    assert losses == pytest.approx(expected, rel=1e-5)

    weights, reference = adapter_weights(nodes), adapter_weights(single)
    assert weights.keys() == reference.keys() and any("lora_B" in name for name in reference)
    for name, value in reference.items():
        # LoRA B starts at zero, so the scale of a tensor is its largest value, not each element.
        scale = float(value.abs().max())
        assert scale > 0, name
        assert float((weights[name] - value).abs().max()) <= 1e-5 * scale, name


@pytest.mark.parametrize("name", ["multi_node_ddp.yaml", "multi_node_fsdp.yaml"])
def test_multi_machine_config_is_the_one_machine_config_plus_the_machines(name):
    """Beside the machine settings (count, rank, rendezvous address), a multi-machine config says what its
    one-machine counterpart says (ddp.yaml / fsdp.yaml): they cannot drift apart."""
    machine_keys = {"num_machines", "machine_rank", "main_process_ip", "main_process_port", "rdzv_backend"}
    machine_keys |= {"same_network", "num_processes"}
    many = yaml.safe_load((CONFIGS / name).read_text())
    one = yaml.safe_load((CONFIGS / name.removeprefix("multi_node_")).read_text())
    assert many["num_machines"] == 2 and many["machine_rank"] == 0 and many["rdzv_backend"] == "static"
    assert many["num_processes"] % many["num_machines"] == 0  # in all, one per GPU on every machine
    assert {k: v for k, v in many.items() if k not in machine_keys} == {
        k: v for k, v in one.items() if k not in machine_keys
    }


@pytest.mark.parametrize("name", ["multi_node_ddp.yaml", "multi_node_fsdp.yaml"])
@pytest.mark.parametrize("machine_rank", [0, 1])
def test_multi_machine_config_launches_torchrun_across_machines(name, machine_rank):
    """What `accelerate launch --config_file NAME --machine_rank R` hands torchrun on each machine (on GPUs;
    the FSDP config cannot train on CPU, see the module docstring): 2 nodes, this node's rank, one process
    per GPU, the static rendezvous at main_process_ip:port; for FSDP, the FSDP settings of fsdp.yaml."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    port = free_port()  # machine 0 checks that the port is free
    arguments = ["--config_file", str(CONFIGS / name), "--machine_rank", str(machine_rank)]
    args = launch_command_parser().parse_args([*arguments, "--main_process_port", str(port), "train_sft.py"])
    args, _, _ = _validate_launch_command(args)
    env = prepare_multi_gpu_env(args)
    assert (args.nnodes, args.node_rank, args.nproc_per_node) == ("2", machine_rank, "8")
    # accelerate 1.15 reads same_network only as a flag, so it passes the address as the rendezvous endpoint.
    same_network = getattr(args, "same_network", False)
    endpoint = f"{args.master_addr}:{args.master_port}" if same_network else args.rdzv_endpoint
    assert (args.rdzv_backend, endpoint) == ("static", f"10.0.0.1:{port}")
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    if "fsdp" in name:
        assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
        assert env["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "Qwen2DecoderLayer,Qwen3DecoderLayer"
    else:
        assert "ACCELERATE_USE_FSDP" not in env


class _StopAfterTheModel(Exception):
    pass


def build_tiny_model_in_train(monkeypatch, cluener_dir, tmp_path, other_machine_first: bool) -> tuple[Path, list]:
    """`train` with ``tiny_model_arch`` up to the tiny model (stopped when it reads the data); returns the model
    path and, for each build, (the folder written, whether the model path existed when that build ended).
    ``other_machine_first``: another machine's copy lands at the model path while this one builds."""
    from trl import ModelConfig, SFTConfig

    import llm_ner.tiny
    from llm_ner import training

    target = tmp_path / "models" / "tiny"
    real_build = llm_ner.tiny.build_tiny_model
    builds = []

    def build(out_dir, *args, **kwargs):
        if other_machine_first:
            real_build(target, *args, **kwargs)
            (target / "other-machine").write_text("")
        real_build(out_dir, *args, **kwargs)
        builds.append((Path(out_dir), target.exists()))
        return Path(out_dir)

    def stop(*args, **kwargs):
        raise _StopAfterTheModel

    monkeypatch.setattr(llm_ner.tiny, "build_tiny_model", build)
    monkeypatch.setattr(llm_ner.tiny, "default_texts", lambda limit=None: ["北京大学"])
    monkeypatch.setattr(training.run, "build_trainer", stop)  # the data is read before the model is built
    data_args = training.NERDataArguments(
        train_file=str(cluener_dir / "dev.json"),
        tiny_model_arch="qwen3",
        tiny_model_shape='{"hidden_size": 16, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1}',
    )
    training_args = SFTConfig(output_dir=str(tmp_path / "run"), use_cpu=True, report_to="none")
    with pytest.raises(_StopAfterTheModel):
        training.train(data_args, training_args, ModelConfig(model_name_or_path=str(target)))
    return target, builds


def test_the_tiny_model_appears_whole_for_machines_sharing_a_disk(monkeypatch, cluener_dir, tmp_path):
    """Every machine's first process builds the tiny model (main_process_first is per machine). On a shared
    disk the model path must not exist until the model is complete: a machine that finds it loads it at once,
    and a half-written one fails. So it is built beside the path and renamed into place."""
    target, builds = build_tiny_model_in_train(monkeypatch, cluener_dir, tmp_path, other_machine_first=False)
    [(written, existed)] = builds
    assert written != target and not existed
    assert (target / "config.json").is_file() and (target / "model.safetensors").is_file()
    assert [p.name for p in target.parent.iterdir()] == ["tiny"]  # the private folder is gone


def test_a_tiny_model_another_machine_renamed_first_is_kept(monkeypatch, cluener_dir, tmp_path):
    target, builds = build_tiny_model_in_train(monkeypatch, cluener_dir, tmp_path, other_machine_first=True)
    assert len(builds) == 1 and builds[0][0] != target
    assert (target / "other-machine").is_file() and (target / "model.safetensors").is_file()
    assert [p.name for p in target.parent.iterdir()] == ["tiny"]
