"""Accuracy of the embedding requirement-type classifier on the paper's train.parquet.

Each of the 1,319 x 5 = 6,595 constraint texts carries an instruction id (IFEval or the
paper's soft ids) whose type is known from the id table (docs/data.md); the classifier sees
only the text. Prints accuracy and the confusion matrix (rows: true type, columns:
predicted). The shipped prototypes are hand-written and disjoint from this data.

    python -m benchmarks.paper_types --input PATH/train.parquet [--k 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from openrlhf_reward.schema import REQUIREMENT_TYPES


def evaluate(path: str, k: int = 3, prototypes: str | None = None) -> dict:
    from openrlhf_reward.builders.paper_import import read_rows
    from openrlhf_reward.builders.requirement_types import TypeClassifier
    from openrlhf_reward.ifeval import requirement_type

    texts, truth, ids = [], [], []
    for _, row in read_rows(path):
        for iid, text in zip(row["instruction_id_list"], row["constraint"]):
            texts.append(text)
            truth.append(requirement_type(iid))
            ids.append(iid)
    t0 = time.perf_counter()
    pred = TypeClassifier(k=k, prototypes=prototypes).classify(texts)
    seconds = time.perf_counter() - t0
    confusion = Counter(zip(truth, pred))
    correct = sum(v for (a, b), v in confusion.items() if a == b)
    by_id: dict[str, Counter] = {}
    for iid, p in zip(ids, pred):
        by_id.setdefault(iid, Counter())[p] += 1
    return {"n": len(texts), "accuracy": correct / len(texts), "confusion": confusion, "seconds": seconds,
            "distinct_texts": len(set(texts)), "by_id": by_id}


def format_report(res: dict, by_id: bool = False) -> str:
    w = max(len(t) for t in REQUIREMENT_TYPES) + 2
    lines = [
        f"texts: {res['n']} ({res['distinct_texts']} distinct); accuracy {100 * res['accuracy']:.1f}% "
        f"({res['seconds']:.1f} s incl. model load)",
        "true \\ predicted".ljust(18) + "".join(t.rjust(w) for t in REQUIREMENT_TYPES) + "recall".rjust(9),
    ]
    for a in REQUIREMENT_TYPES:
        row = [res["confusion"].get((a, b), 0) for b in REQUIREMENT_TYPES]
        tot = sum(row)
        rec = f"{100 * row[REQUIREMENT_TYPES.index(a)] / tot:.1f}%" if tot else "-"
        lines.append(a.ljust(18) + "".join(str(v).rjust(w) for v in row) + rec.rjust(9))
    if by_id:
        from openrlhf_reward.ifeval import requirement_type

        lines += ["", "per id: true type, n, predicted counts"]
        for iid in sorted(res["by_id"]):
            c = res["by_id"][iid]
            lines.append(f"  {iid} ({requirement_type(iid)}), n={sum(c.values())}: "
                         + ", ".join(f"{t} {c[t]}" for t in REQUIREMENT_TYPES if c[t]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True, help="The paper's train.parquet (or a fixture excerpt).")
    p.add_argument("--k", type=int, default=3, help="Nearest prototypes averaged per type (default %(default)s).")
    p.add_argument("--prototypes", default=None, help="Prototype JSON (default: the shipped one).")
    p.add_argument("--by-id", action="store_true", help="Also print the predictions per instruction id.")
    args = p.parse_args(argv)
    print(format_report(evaluate(args.input, args.k, args.prototypes), by_id=args.by_id))
    return 0


if __name__ == "__main__":
    sys.exit(main())
