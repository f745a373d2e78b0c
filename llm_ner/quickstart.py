"""`llm-ner quickstart`: the whole pipeline in eight steps, resumable (`scripts/quickstart.sh` runs it).

Find CLUENER (`llm-ner data cluener`) -> convert train to chat instructions -> build a tiny random Qwen3 with a
locally trained tokenizer (or, with ``--model``, a real model with LoRA and the config made for it) -> fine-tune
(`train_sft.py --config`) -> extract dev with constrained decoding -> train the BiLSTM-CRF baseline -> its dev
predictions -> `llm-ner report` with both systems and the published BERT-CRF figures. Each step runs as its own
process, as a user would type it. A finished step leaves a marker in the output folder, so a rerun continues
where it stopped; a folder holding a run of other settings (its ``.settings.json``) is refused unless
``--restart``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .data import check_output_path
from .errors import UsageError
from .extraction.settings import check_model_name
from .options import CliOptions, option, positive_int

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent  # the checkout: configs/, train_sft.py, eval/
TINY_CONFIG = "configs/tiny-cpu.yaml"
STEPS = 8


@dataclass
class QuickstartOptions(CliOptions):
    """What `llm-ner quickstart` runs: the data's size, the model, where the results go."""

    quick: bool = option(False, help="the first 2 000 train / 300 dev sentences, one epoch (about 2 minutes)")
    model: str | None = option(
        None,
        help="a real model (hub id or local directory): LoRA with the matching configs/*-lora.yaml, on the GPU "
        "when there is one (default: a tiny random Qwen3 built here)",
    )
    config: str | None = option(None, help="the training config of --model (default: the one made for it)")
    out: str | None = option(
        None, help="results folder (default: runs/quickstart[-MODEL][-quick], e.g. runs/quickstart-Qwen2.5-0.5B)"
    )
    train_n: int | None = option(None, type=positive_int, metavar="N", help="the first N train sentences")
    dev_n: int | None = option(None, type=positive_int, metavar="N", help="the first N dev sentences")
    restart: bool = option(False, help="discard earlier results (a folder with another run is refused without it)")
    dry_run: bool = option(False, help="print the plan and stop")
    train_args: list[str] = field(default_factory=list)  # after `--`: passed on to train_sft.py

    def __post_init__(self) -> None:
        if self.model:
            check_model_name(self.model)
        if self.config and not Path(self.config).is_file():
            raise UsageError(f"--config {self.config}: no such file")


def config_for(model: str, configs: Path = ROOT / "configs") -> Path:
    """The config made for ``model``: the ``*-lora.yaml`` whose ``model_name_or_path`` has the same last part,
    else whose file name (qwen2.5-0.5b, qwen3-8b, ...) is part of the model's name."""
    name = Path(model).name.lower()
    candidates = sorted(configs.glob("*-lora.yaml"))
    for path in candidates:
        named = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("model_name_or_path") or ""
        if Path(str(named)).name.lower() == name:
            return path
    for path in candidates:
        if path.name.removesuffix("-lora.yaml") in name:
            return path
    raise UsageError(f"no config in configs/ matches {model}; pass --config configs/FILE.yaml")


def option_value(args: list[str], name: str) -> str | None:
    """The value of ``--name V`` or ``--name=V`` in ``args`` (the last one wins), else None."""
    value = None
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg[len(name) + 1 :]
    return value


@dataclass
class Plan:
    """What a quickstart runs: every setting a step depends on, resolved."""

    out: Path
    model: str | None
    train_config: str
    config: str | None
    train_n: int | None
    dev_n: int | None
    epochs: int | None
    baseline_epochs: int
    prompt: str
    answer_format: str
    prompt_from: str
    quick: bool
    train_args: list[str]

    @classmethod
    def of(cls, options: QuickstartOptions) -> Plan:
        quick = options.quick
        train_n, dev_n, epochs, baseline_epochs = (2000, 300, 1, 5) if quick else (None, None, 2, 10)
        train_n, dev_n = options.train_n or train_n, options.dev_n or dev_n
        config = None
        if options.model:
            config = options.config or str(config_for(options.model).relative_to(ROOT))
            if not (options.train_n or options.dev_n or quick):
                epochs = None  # the config's epochs
        train_config = config or TINY_CONFIG
        # One prompt end to end: the training file is converted with the prompt and answer format the training
        # config names (or `-- --prompt X` / `-- --answer_format F`), and training checks the converted file.
        settings = yaml.safe_load((ROOT / train_config).read_text(encoding="utf-8")) or {}
        prompt = option_value(options.train_args, "--prompt") or settings.get("prompt") or "cluener_zh"
        answer_format = option_value(options.train_args, "--answer_format") or settings.get("answer_format")
        told = any(option_value(options.train_args, n) for n in ("--prompt", "--answer_format"))
        prompt_from = f"{train_config} and the arguments after --" if told else train_config
        suffix = "-quick" if quick else ""
        out = Path(options.out or f"runs/quickstart{'-' + Path(options.model).name if options.model else ''}{suffix}")
        return cls(
            out, options.model, train_config, config, train_n, dev_n, epochs, baseline_epochs, prompt,
            answer_format or "mentions", prompt_from, quick, list(options.train_args),
        )  # fmt: skip

    def lines(self) -> list[str]:
        """The plan as `--dry-run` prints it."""
        model = self.model or "tiny random Qwen3 built here"
        first = {n: f"the first {n}" if n else "all" for n in (self.train_n, self.dev_n)}
        return [
            f"out: {self.out}",
            f"model: {model}{f' (config {self.config})' if self.config else ''}",
            f"train: {first[self.train_n]} sentences, dev: {first[self.dev_n]} sentences",
            f"prompt: {self.prompt}, answer format {self.answer_format} ({self.prompt_from})",
        ]

    def settings(self, data: str) -> dict:
        """What earlier results must have been made with to be kept."""
        return {"data": data, "quick": self.quick, "model": self.model, "config": self.config,
                "train_n": self.train_n, "dev_n": self.dev_n, "train_args": self.train_args}  # fmt: skip


class Steps:
    """The eight steps, numbered and timed as they start; finished ones are kept across runs."""

    def __init__(self, out: Path):
        self.out, self.started = out, time.monotonic()

    def start(self, number: int, title: str) -> None:
        print(f"\n== [{number}/{STEPS}] {title} ({int(time.monotonic() - self.started)}s)", flush=True)

    def done(self, name: str) -> bool:
        """Whether step ``name`` finished in an earlier run (said so)."""
        if (self.out / f".done-{name}").is_file():
            print("done in an earlier run, kept (--restart starts over)", flush=True)
            return True
        return False

    def finish(self, name: str) -> None:
        (self.out / f".done-{name}").touch()


def run_command(argv: list[str], capture: bool = False) -> str:
    """Run one step's command (its output shown as it comes); `UsageError`-like exit on failure."""
    done = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE if capture else None, text=True)
    if done.returncode != 0:
        raise SystemExit(done.returncode)
    return done.stdout or ""


def _first_lines(source: Path, target: Path, count: int | None) -> Path:
    if count is None:
        return source
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)[:count]
    target.write_text("".join(lines), encoding="utf-8")
    return target


def prepare_output(plan: Plan, data: str, restart: bool) -> None:
    """Keep earlier results only if they came from the same settings; `--restart` clears them."""
    import shutil

    record = plan.out / ".settings.json"
    settings = plan.settings(data)
    # Checked before anything is cleared: `--out` naming the data, the model, the config or the checkout
    # itself would otherwise be deleted by --restart or filled with a run.
    model = plan.model if plan.model and Path(plan.model).exists() else None
    config = ROOT / plan.config if plan.config else None
    inputs = {"data": data, "--model": model, "--config": config, "llm-ner checkout": ROOT / "llm_ner"}
    check_output_path(plan.out, inputs, option="--out", writes_folder=True)
    if restart and plan.out.is_dir() and not record.is_file() and any(plan.out.iterdir()):
        raise UsageError(
            f"--out {plan.out} holds files that are not a quickstart run; --restart clears only a quickstart's own "
            "folder: choose another --out"
        )
    if restart:
        shutil.rmtree(plan.out, ignore_errors=True)
    elif plan.out.exists():
        try:
            earlier = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            earlier = None
        if earlier != settings:
            raise UsageError(
                f"{plan.out} holds a run with other settings (or no quickstart run); use --restart to replace it, "
                "or --out DIR"
            )
    (plan.out / "data").mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(settings, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


@dataclass
class Run:
    """A quickstart under way: its plan, its steps, the data it found and the files it made so far."""

    plan: Plan
    steps: Steps
    source: str = ""
    train: Path | None = None
    dev: Path | None = None
    system: str = ""
    device: str = "CPU"
    base_model: str = ""

    @property
    def llm_ner(self) -> list[str]:
        return [sys.executable, "-m", "llm_ner"]

    def data(self, restart: bool) -> None:
        """Steps 1-2: find the data, keep or clear the output folder, convert train to chat instructions."""
        plan, out = self.plan, self.plan.out
        self.steps.start(1, "data")
        shared = ROOT.parent / "shared" / "data" / "cluener"
        if not os.environ.get("LLM_NER_DATA") and (shared / "dev.json").is_file():
            os.environ["LLM_NER_DATA"] = str(shared)
        data = run_command([*self.llm_ner, "data", "cluener", "--allow-sample"], capture=True).strip()
        self.source = "CLUENER2020"
        if "/sample_data/" in data:
            self.source = "the template sample shipped with llm-ner (not CLUENER)"
        prepare_output(plan, data, restart)
        self.train = _first_lines(Path(data) / "train.json", out / "data" / "train.json", plan.train_n)
        self.dev = _first_lines(Path(data) / "dev.json", out / "data" / "dev.json", plan.dev_n)
        count = {path: len(path.read_text(encoding="utf-8").splitlines()) for path in (self.train, self.dev)}
        print(f"train {self.train} ({count[self.train]} sentences), dev {self.dev} ({count[self.dev]} sentences): "
              f"{self.source}")  # fmt: skip
        self.steps.start(2, f"convert train to chat instructions with prompt {plan.prompt} ({plan.prompt_from})")
        run_command([*self.llm_ner, "convert", "--input", str(self.train), "--output", str(out / "train.jsonl"),
                     "--prompt", plan.prompt, "--format", plan.answer_format])  # fmt: skip

    def model(self) -> None:
        """Steps 3-4: the model (a tiny one built here, or --model with LoRA), then its fine-tuning."""
        plan, out = self.plan, self.plan.out
        device_args: list[str] = []
        if plan.model:
            import torch

            self.system, self.base_model = f"{Path(plan.model).name}-lora", plan.model
            self.device = "GPU" if torch.cuda.is_available() else "CPU"
            if self.device == "CPU":  # bf16 where the CPU computes it, else float32 (resolve_training_dtype)
                device_args = ["--use_cpu", "true", "--dtype", "auto"]
            self.steps.start(3, f"model {plan.model} with LoRA, {plan.config}, on the {self.device}")
            print(plan.model)
        else:
            self.system, self.base_model = "tiny-qwen3-sft", str(out / "tiny-qwen3")
            self.steps.start(3, "build a tiny random Qwen3 with a locally trained tokenizer")
            if not self.steps.done("tiny"):
                # --force: a model left there is this step's own, unfinished (the step is not marked done)
                run_command([*self.llm_ner, "tiny-model", "--arch", "qwen3", "--out", self.base_model, "--force",
                             "--texts", str(self.train), str(self.dev)])  # fmt: skip
                self.steps.finish("tiny")
        self.steps.start(4, f"fine-tune it: train_sft.py --config {plan.train_config}")
        if self.steps.done("train"):
            return
        resume = []
        checkpoints = sorted((out / "model").glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[-1]))
        if checkpoints:
            resume = ["--resume_from_checkpoint", str(checkpoints[-1])]
            print(f"resuming from {checkpoints[-1]}")
        epochs = ["--num_train_epochs", str(plan.epochs)] if plan.epochs is not None else []
        run_command([sys.executable, "train_sft.py", "--config", plan.train_config, "--train_file",
                     str(out / "train.jsonl"), "--eval_file", str(self.dev), "--model_name_or_path", self.base_model,
                     "--output_dir", str(out / "model"), *epochs, *device_args, *resume, *plan.train_args])  # fmt: skip
        self.steps.finish("train")

    def evaluation(self) -> None:
        """Steps 5-8: extract dev, the BiLSTM-CRF baseline and its predictions, the report and its summary."""
        plan, out, dev = self.plan, self.plan.out, str(self.dev)
        self.steps.start(5, "extract entities from dev (batched, resumable, constrained decoding)")
        predictions = out / f"{self.system}.dev.pred.json"
        run_command([*self.llm_ner, "extract", "--model", str(out / "model"), "--input", dev, "--output",
                     str(predictions), "--batch-size", "64", "--constrained"])  # fmt: skip
        self.steps.start(6, f"train the BiLSTM-CRF baseline ({plan.baseline_epochs} epochs, best epoch by dev F1)")
        if not self.steps.done("baseline"):
            run_command([*self.llm_ner, "baseline", "train", "--arch", "bilstm-crf", "--train", str(self.train),
                         "--dev", dev, "--out", str(out / "bilstm-crf"),
                         "--epochs", str(plan.baseline_epochs)])  # fmt: skip
            self.steps.finish("baseline")
        self.steps.start(7, "BiLSTM-CRF predictions for dev")
        baseline = out / "bilstm-crf.dev.pred.json"
        run_command([*self.llm_ner, "baseline", "predict", "--model", str(out / "bilstm-crf"), "--input", dev,
                     "--output", str(baseline)])  # fmt: skip
        self.steps.start(8, "side-by-side report")
        published = ["--published", "eval/published_cluener.json"] if self.source == "CLUENER2020" else []
        run_command([*self.llm_ner, "report", "--gold", dev, "--pred", f"{self.system}={predictions}",
                     "--pred", f"bilstm-crf={baseline}", *published, "--out", str(out / "report"),
                     "--note", report_note(plan, self.system, self.device, self.source)])  # fmt: skip
        print()
        print(summary_table((out / "report" / "report.md").read_text(encoding="utf-8")))
        print()
        print(f"done in {int(time.monotonic() - self.steps.started)}s on {self.source}")
        print(f"report: {out / 'report' / 'report.md'}")
        print(f"chart:  {out / 'report' / 'f1_per_class.png'}")


def run_quickstart(options: QuickstartOptions) -> int:
    """`llm-ner quickstart`: the eight steps (see the module docstring); 0, or the failing step's exit status."""
    plan = Plan.of(options)
    if options.dry_run:
        print("\n".join(plan.lines()))
        return 0
    run = Run(plan, Steps(plan.out))
    run.data(options.restart)
    run.model()
    run.evaluation()
    return 0


def report_note(plan: Plan, system: str, device: str, source: str) -> str:
    """The note of the report: where the data came from, what was trained and how."""
    note = f"Data: {source}."
    if source == "CLUENER2020" and plan.quick:
        note += (
            f" Quick run: trained on the first {plan.train_n} train sentences, scored on the first {plan.dev_n} dev "
            "sentences; the published rows are on all of dev."
        )
    if plan.model:
        epochs = f", {plan.epochs} epoch(s)" if plan.epochs is not None else ""
        note += (
            f" {system}: {plan.model} fine-tuned with LoRA ({plan.config}{epochs}) on the {device}, extraction with "
            "constrained decoding."
        )
    else:
        note += (
            f" tiny-qwen3-sft: a 1.2 M-parameter Qwen3 with random initial weights, fully fine-tuned for "
            f"{plan.epochs} epoch(s) on CPU (configs/tiny-cpu.yaml), extraction with constrained decoding: it proves "
            "the plumbing, not quality."
        )
    if (plan.train_n or plan.dev_n) and not plan.quick:
        note += (
            f" Trained on the first {plan.train_n or 'all'} train sentences, scored on the first "
            f"{plan.dev_n or 'all'} dev sentences."
        )
    return note + (
        f" bilstm-crf: trained from scratch for {plan.baseline_epochs} epochs, the epoch with the best dev F1 kept."
    )


def summary_table(report_md: str) -> str:
    """The report's summary section: its heading and its table."""
    lines, found, table = [], False, False
    for line in report_md.splitlines():
        if line.startswith("## Summary"):
            found = True
            lines.append(line)
        elif found and line.startswith("|"):
            lines.append(line)
            table = True
        elif found and table:
            break
    return "\n".join(lines)
