"""Run by tests/test_training.py in 2 CPU processes (`torchrun`, conftest.two_cpu_process_launch):
each process computes the trainer's loss on its half of a batch with the global answer-token
count, as the Trainer does with `average_tokens_across_devices`. DDP averages gradients over
processes, so the mean of the two losses must equal the loss of the whole batch in one process.
Writes both to argv[3]."""

import json
import sys

import torch
from conftest import sft_trainer

from llm_ner.prompting import load_prompt
from llm_ner.training import NERDataArguments, load_split

model_dir, train_file, out = sys.argv[1:4]
_, records, _ = load_split(
    train_file, NERDataArguments(train_file=train_file), load_prompt("cluener_zh_short"), limit=6
)
trainer = sft_trainer(model_dir, records, out + ".trainer", average_tokens_across_devices=True)
rank, world = trainer.accelerator.process_index, trainer.accelerator.num_processes
assert world == 2, world
features = [trainer.train_dataset[i] for i in range(len(records))]
whole = trainer.data_collator(features)
mine = trainer.data_collator(features[rank::world])
count = torch.tensor(int((whole["labels"][:, 1:] != -100).sum()))
with torch.no_grad():
    full = float(trainer.compute_loss(trainer.model, whole))
    local = trainer.compute_loss(trainer.model, mine, num_items_in_batch=count)
    losses = trainer.accelerator.gather(local.reshape(1)).tolist()
if rank == 0:
    with open(out, "w") as handle:
        json.dump({"whole_batch": full, "per_process": losses}, handle)
# Leaving with the gloo group alive lets its threads die unjoined at exit: "terminate called
# without an active exception" (SIGABRT) in about 1 run out of 10.
trainer.accelerator.wait_for_everyone()
trainer.accelerator.end_training()
