"""The `rules` backend on the paper's WRL pairs (train.parquet), per IFEval id family.

For every pair and every requirement with an IFEval id, lm-eval's strict checker judges the
chosen and the rejected answer: *correct* when only the chosen one passes, *wrong* when
only the rejected one passes, *tie* when both pass or both fail, *n/s* when the checker
cannot decide (not scorable). The last rows give the pair-level outcome of the `rules`
reward (share of scorable requirements passed) and the count of the paper's soft ids,
which `rules` cannot score. Reads the file through the importer (``--as grpo`` labels).

    python -m benchmarks.paper_rules_table --input PATH/train.parquet
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict

OUTCOMES = ("correct", "tie", "wrong", "n/s")


def _outcome(c: float | None, r: float | None) -> str:
    if c is None or r is None:
        return "n/s"
    return "correct" if c > r else "wrong" if c < r else "tie"


def evaluate(path: str) -> dict:
    from openrlhf_reward.builders.paper_import import read_rows, train_requirements
    from openrlhf_reward.scorers import get_scorer
    from openrlhf_reward.scorers.base import ScoreRequest

    scorer = get_scorer("rules")
    fam: dict[str, Counter] = defaultdict(Counter)
    pair_level: Counter = Counter()
    soft = 0
    t0 = time.perf_counter()
    rows = read_rows(path)
    for rownum, row in rows:
        reqs, _ = train_requirements(row, f"row {rownum}")
        batch = [ScoreRequest(prompt=row["prompt"], response=row[k], requirements=reqs) for k in ("chosen", "rejected")]
        res_c, res_r = scorer.score(batch)
        for r in reqs:
            if r.check is None:
                soft += 1
                continue
            family = r.check["instruction_id"].split(":", 1)[0]
            fam[family][_outcome(res_c.requirement_scores.get(r.id), res_r.requirement_scores.get(r.id))] += 1
        scorable = any(v is not None for v in res_c.requirement_scores.values())
        pair_level[_outcome(res_c.reward, res_r.reward) if scorable else "n/s"] += 1
    return {"pairs": len(rows), "families": dict(fam), "pair_level": pair_level, "soft": soft,
            "seconds": time.perf_counter() - t0}


def format_table(res: dict) -> str:
    lines = [f"{res['pairs']} pairs ({res['seconds']:.1f} s)", "",
             "| IFEval family | n | correct | tie | wrong | not scorable |", "|---|---:|---:|---:|---:|---:|"]

    def row(name: str, c: Counter) -> str:
        n = sum(c.values())
        pct = [f"{c[o]} ({100 * c[o] / n:.1f}%)" if n else "0" for o in OUTCOMES]
        return f"| {name} | {n} | " + " | ".join(pct) + " |"

    total: Counter = Counter()
    for family in sorted(res["families"]):
        lines.append(row(family, res["families"][family]))
        total.update(res["families"][family])
    lines.append(row("**all IFEval requirements**", total))
    lines.append(row("**pair-level `rules` reward**", res["pair_level"]))
    lines.append("")
    lines.append(f"paper soft-id requirements (no check; `rules` ignores them): {res['soft']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True, help="The paper's train.parquet (or a fixture excerpt).")
    args = p.parse_args(argv)
    print(format_table(evaluate(args.input)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
