"""Fine-tune a Qwen model for Chinese NER with TRL (LoRA, QLoRA or full fine-tuning).

    accelerate launch train_sft.py --config configs/qwen2.5-0.5b-lora.yaml [--any_option value]
    python train_sft.py --config configs/tiny-cpu.yaml --max_steps 20

Arguments are three dataclasses parsed by `trl.TrlParser` (YAML `--config` plus CLI overrides):
`llm_ner.training.NERDataArguments` (data, prompt, F1 evaluation), TRL's `SFTConfig` (training)
and TRL's `ModelConfig` (model, LoRA, 4-bit). `python train_sft.py --help` lists them all.
"""

import sys

from llm_ner.training import NERDataArguments, train


def main(data_args: NERDataArguments, training_args, model_args):
    train(data_args, training_args, model_args)


if __name__ == "__main__":
    from llm_ner.cli.main import main as cli_main

    # `llm-ner train`'s dispatch: an expected failure (a bad argument, bad data, a refused resume, a missing
    # model) is one line and its exit status, Ctrl-C and SIGTERM end cleanly, a bug keeps its traceback.
    status = cli_main(["train", *sys.argv[1:]])
    if status:  # success returns, so a runpy caller can run the script again
        sys.exit(status)
