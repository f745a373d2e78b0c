"""Does ranking entities by their score beat a random ranking? (`llm-ner extract` scores)

    python benchmarks/confidence_ranking.py --gold dev.json --pred dev.pred.json [--shuffles 1000]

Prints the area under the precision-recall curve over the score threshold (as `llm-ner report`
draws it), the best-F1 threshold, the mean area of random rankings of the same predictions (the
scores shuffled among them) and the share of random rankings at least as good (a permutation p).
"""

import argparse
import random

from llm_ner.confidence import pr_curve, read_scores
from llm_ner.data import load_examples
from llm_ner.metrics import match_predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gold", required=True)
    parser.add_argument("--pred", required=True)
    parser.add_argument("--shuffles", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    gold, _ = load_examples(args.gold)
    pred, _ = load_examples(args.pred, "cluener", allow_empty=True)
    aligned, _ = match_predictions(gold, pred)
    scores = read_scores(args.pred)
    curve = pr_curve(gold, aligned, scores)
    keys = [(ex.id, span) for ex in aligned for span in ex.spans]
    values = [scores.get(i, {}).get(span, 1.0) for i, span in keys]
    rng = random.Random(args.seed)
    random_aucs = []
    for _ in range(args.shuffles):
        rng.shuffle(values)
        shuffled: dict = {}
        for (i, span), value in zip(keys, values):
            shuffled.setdefault(i, {})[span] = value
        random_aucs.append(pr_curve(gold, aligned, shuffled)["auc"])
    p = sum(a >= curve["auc"] for a in random_aucs) / len(random_aucs)
    best = curve["best"]
    print(
        f"{curve['predictions']} predicted entities, {sum(len(ex.spans) for ex in gold)} gold; "
        f"PR AUC {curve['auc']:.4f} vs random rankings {sum(random_aucs) / len(random_aucs):.4f} "
        f"(expected {curve['random_auc']:.4f}); permutation p = {p:.3f} ({args.shuffles} shuffles); "
        f"best F1 {best['f1']:.4f} at score >= {best['threshold']:.4g} (P {best['precision']:.4f}, "
        f"R {best['recall']:.4f}); all predictions: P {curve['points'][-1]['precision'] if curve['points'] else 0:.4f}"
    )


if __name__ == "__main__":
    main()
