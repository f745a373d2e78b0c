"""The oldest library versions llm-ner works with, checked before any model loads.

Below these the failures come late and obscure (an `IndexError` at the first training step, an
unknown config field, a missing TRL chat template); `check_versions` names the package, the
installed version and the floor instead. The same floors are the lower bounds in
`pyproject.toml` and the pins `.ci/floors.txt` proves in CI (a test keeps the three equal).
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version

from packaging.version import Version

from .errors import DependencyVersionError

FLOORS = {
    "transformers": "5.2.0",  # TrainingArguments.train_sampling_strategy (the configs use it)
    "trl": "1.8.0",  # SFTTrainer(quantization_config=...); 1.0-1.7 lack it
    "peft": "0.18.0",  # the first release that works with transformers 5
    "accelerate": "1.4.0",  # TRL 1.8's own floor
    "datasets": "4.7.0",  # TRL 1.8's own floor
    "ray": "2.44.1",  # `llm-ner extract --engine ray` only (the ray extra): checked when that engine starts
}

TRAINING = ("transformers", "trl", "peft", "accelerate", "datasets")

# peft and TRL read model.is_gradient_checkpointing, which transformers 5.2x renamed and warns about (a
# FutureWarning) whenever a LoRA model is built or loaded; nothing a user can change, so it is filtered.
PEFT_CHECKPOINTING_WARNING = "`is_gradient_checkpointing` is deprecated"


def check_versions(packages: Iterable[str] = TRAINING, installed: dict[str, str] | None = None) -> None:
    """Raise `DependencyVersionError` naming every package below its floor.

    ``installed`` (tests) replaces the versions read from the environment.
    """
    problems = []
    for name in packages:
        floor = FLOORS[name]
        try:
            found = installed[name] if installed is not None else version(name)
        except (KeyError, PackageNotFoundError):
            problems.append(f"{name} is not installed (llm-ner needs {name}>={floor})")
            continue
        if Version(found).release < Version(floor).release:
            problems.append(f"{name} {found} is older than llm-ner's floor {floor}")
    if problems:
        fix = " ".join(f"'{name}>={FLOORS[name]}'" for name in packages if any(p.startswith(name) for p in problems))
        raise DependencyVersionError("; ".join(problems) + f". Upgrade with: pip install -U {fix}")
