"""Does ranking entities by their score beat a random ranking? (`llm-ner extract` scores)

    python benchmarks/confidence_ranking.py --gold dev.json --pred dev.pred.json [--shuffles 1000]

Prints the area under the precision-recall curve over the score threshold (as `llm-ner report`
draws it), the best-F1 threshold, the mean area of random rankings of the same predictions (the
scores shuffled among them) and the share of random rankings at least as good (a permutation p),
over all entities and within the sentences that have several (`llm_ner.confidence.ranking_test`).
"""

import argparse

from llm_ner.confidence import ranking_test, read_scores
from llm_ner.data import load_examples
from llm_ner.metrics import match_predictions


def describe(test: dict) -> str:
    best = test["best"]
    return (
        f"{test['predictions']} predicted entities in {test['sentences']} sentences; PR AUC {test['auc']:.4f} vs "
        f"shuffled scores {test['shuffled_auc']:.4f}, permutation p = {test['p']:.4f} ({test['shuffles']} shuffles); "
        f"best F1 {best['f1']:.4f} at score >= {best['threshold']:.4g}"
    )


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
    print("all entities:", describe(ranking_test(gold, aligned, scores, args.shuffles, args.seed)))
    within = ranking_test(gold, aligned, scores, args.shuffles, args.seed, within_sentence=True)
    print("within sentences:", describe(within) if within["predictions"] else "no sentence with two predictions")


if __name__ == "__main__":
    main()
