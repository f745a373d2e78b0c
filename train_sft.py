"""Fine-tune a Qwen model for Chinese NER with TRL (LoRA, QLoRA or full fine-tuning).

    accelerate launch train_sft.py --config configs/qwen2.5-0.5b-lora.yaml [--any_option value]
    python train_sft.py --config configs/tiny-cpu.yaml --max_steps 20

Arguments are three dataclasses parsed by `trl.TrlParser` (YAML `--config` plus CLI overrides):
`llm_ner.training.NERDataArguments` (data, prompt, F1 evaluation), TRL's `SFTConfig` (training)
and TRL's `ModelConfig` (model, LoRA, 4-bit). `python train_sft.py --help` lists them all.
"""

import sys

from llm_ner import logs
from llm_ner.errors import user_facing_error
from llm_ner.training import NERDataArguments, parse_arguments, train


def main(data_args: NERDataArguments, training_args, model_args):
    train(data_args, training_args, model_args)


if __name__ == "__main__":
    logs.configure()
    try:
        main(*parse_arguments())  # parsing checks the library versions too
    except Exception as exc:  # expected failures (bad data, missing model, ...) in one line; bugs keep the traceback
        expected = user_facing_error(exc)
        if expected is None:
            raise
        print(f"error: {expected[1]}", file=sys.stderr)
        sys.exit(expected[0])
