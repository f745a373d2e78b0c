"""Fine-tune a Qwen model for Chinese NER with TRL (LoRA, QLoRA or full fine-tuning).

    accelerate launch train_sft.py --config configs/qwen2.5-0.5b-lora.yaml [--any_option value]
    python train_sft.py --config configs/tiny-cpu.yaml --max_steps 20

Arguments are three dataclasses parsed by `trl.TrlParser` (YAML `--config` plus CLI overrides):
`llm_ner.training.NERDataArguments` (data, prompt, F1 evaluation), TRL's `SFTConfig` (training)
and TRL's `ModelConfig` (model, LoRA, 4-bit). `python train_sft.py --help` lists them all.
"""

import sys

from llm_ner.data import DataError
from llm_ner.training import NERDataArguments, parse_arguments, train


def main(data_args: NERDataArguments, training_args, model_args):
    train(data_args, training_args, model_args)


if __name__ == "__main__":
    data_args, training_args, model_args = parse_arguments()
    try:
        main(data_args, training_args, model_args)
    except DataError as exc:  # a bad record: FILE:LINE: reason, not a traceback
        sys.exit(f"error: {exc}")
