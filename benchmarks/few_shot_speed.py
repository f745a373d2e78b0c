"""Where the time of few-shot extraction goes on a real model: one prefill of a batch, or a whole batch.

    python benchmarks/few_shot_speed.py 16 float32 prefill     # one forward pass over 16 8-shot prompts
    python benchmarks/few_shot_speed.py 16 bfloat16 prefill
    python benchmarks/few_shot_speed.py 16 bfloat16 generate   # generation.generate_answers, one batch

The first N dev sentences, 8 similar shots from train (`cluener_zh_short`), the model of
``LLM_NER_REAL_MODEL`` (default: ../shared/tools/real-qwen.sh's output); prints the prompt tokens and
the seconds. The figures of benchmarks/README.md ("Speed fix found on the way") come from this code.
"""

import os
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llm_ner import generation  # noqa: E402
from llm_ner.data import load_examples  # noqa: E402
from llm_ner.extraction import ModelOptions, run_settings  # noqa: E402

MODEL = os.environ.get("LLM_NER_REAL_MODEL", str(Path.home() / ".cache/llm-ner/qwen2.5-coder-0.5b-instruct"))
DATA = os.environ.get("LLM_NER_DATA", str(ROOT.parent / "shared/data/cluener"))


def main() -> None:
    n, dtype, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    options = ModelOptions(model=MODEL, prompt="cluener_zh_short", shots=8, shots_from=f"{DATA}/train.json")
    settings = run_settings(options)
    texts = [ex.text for ex in load_examples(f"{DATA}/dev.json")[0]][:n]
    conversations = settings.conversations(texts)
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=getattr(torch, dtype)).eval()
    prompts = [generation.chat_prompt_ids(tokenizer, m) for m in conversations]
    print("prompt tokens mean", sum(map(len, prompts)) / n, "max", max(map(len, prompts)))
    if mode == "prefill":
        width = max(map(len, prompts))
        ids = torch.full((n, width), tokenizer.pad_token_id)
        attention = torch.zeros((n, width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            attention[row, width - len(prompt) :] = 1
        with torch.inference_mode():
            start = time.time()
            model(input_ids=ids, attention_mask=attention, logits_to_keep=1)
            print("prefill s", time.time() - start, "per sentence", (time.time() - start) / n)
    else:
        start = time.time()
        answers = generation.generate_answers(model, tokenizer, conversations, texts, batch_size=n)
        print("generate s", time.time() - start, "per sentence", (time.time() - start) / n)
        print("answer lengths", [len(a) for a in answers])


if __name__ == "__main__":
    main()
