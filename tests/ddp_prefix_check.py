"""Run by tests/test_shared_prefix.py in 2 CPU processes (`torchrun`, conftest.two_cpu_process_launch): each
process first computes the gradients of the whole batch alone (whole rows, no DDP), then its half of the batch
through the shared prefix under DDP (the prefix through the unwrapped model, the rest through DDP's forward),
with the global answer-token count as the Trainer passes it. DDP averages the gradients over the processes, so
they must equal the whole batch's. Writes the largest relative difference to argv[3]."""

import json
import sys
from pathlib import Path

import torch
from test_shared_prefix import ROWS, cluener_records, lora_trainer, loss_and_grads

model_dir, train_file, out = sys.argv[1:4]
records = cluener_records(Path(train_file).parent)
trainer = lora_trainer(model_dir, records, out + ".trainer", average_tokens_across_devices=True)
rank, world = trainer.accelerator.process_index, trainer.accelerator.num_processes
assert world == 2, world
features = [trainer.train_dataset[i] for i in range(ROWS)]
whole = trainer._prepare_inputs(trainer.data_collator(features))
mine = trainer._prepare_inputs(trainer.data_collator(features[rank::world]))
count = (whole["labels"][:, 1:] != -100).sum()
# One process, whole rows, the mean over the whole batch's answer tokens (no count: no DDP scaling).
_, reference = loss_and_grads(trainer, trainer.model, [whole], None, shared=False)

ddp = trainer.accelerator.prepare_model(trainer.model)
prefix_passes = []
hook = trainer.model.get_base_model().register_forward_pre_hook(
    lambda module, args, kwargs: prefix_passes.append(kwargs["input_ids"].shape[0] == 1), with_kwargs=True
)
trainer.shared_prefix = True
ddp.train()
ddp.zero_grad()
trainer.compute_loss(ddp, mine, num_items_in_batch=count).backward()
hook.remove()
errors = [
    float((p.grad - reference[name]).norm() / reference[name].norm())
    for name, p in trainer.model.named_parameters()
    if p.requires_grad
]
passes = trainer.accelerator.gather_for_metrics(torch.tensor([sum(prefix_passes)])).tolist()
if rank == 0:
    with open(out, "w") as handle:
        json.dump(
            {
                "ddp": isinstance(ddp, torch.nn.parallel.DistributedDataParallel),
                "prefix_passes": passes,
                "parameters": len(errors),
                "max_relative_difference": max(errors),
            },
            handle,
        )
# Leaving with the gloo group alive lets its threads die unjoined at exit (see ddp_loss_check.py).
trainer.accelerator.wait_for_everyone()
trainer.accelerator.end_training()
