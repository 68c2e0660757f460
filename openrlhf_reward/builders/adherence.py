"""Adherence rows from WEval documents: the training data of the `classifier` backend.

Requirement dropout labels every (candidate, requirement) pair by construction: a candidate
adheres to requirement ``r`` unless ``r`` is in its ``dropped`` list. One row per pair::

    {"text": <the classifier's input text>, "label": 1|0, "group": <document id>,
     "response": ..., "requirement": ..., "requirement_id": "c3", "type": "style",
     "candidate": 2, "gold_rank": 3}

``text`` is :data:`~openrlhf_reward.scorers.classifier.PAPER_TEMPLATE` filled in exactly as
the backend fills it (``label`` 1 = adheres = the backend's default ``positive_label``), so a
model trained on ``text``/``label`` is scored by ``--backend classifier`` on the same inputs.

Splits are by group (one WEval document = one base prompt): a seeded shuffle of the group ids,
so no base prompt is on both sides. For the paper's ``writing_subset`` run ``import-paper``
first (one document per base prompt).

    openrlhf-reward build-adherence --input weval.jsonl --output rows.jsonl \\
        [--eval-output eval_rows.jsonl --eval-fraction 0.1 --seed 0]
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterable, Sequence
from typing import Any

from openrlhf_reward.schema import WEvalDocument, load_weval_jsonl

__all__ = ["adherence_rows", "rows_from_documents", "split_groups", "split_rows"]

HELP = "Turn WEval documents into labelled (response, requirement) adherence rows for the classifier, split by group."


def adherence_rows(doc: WEvalDocument) -> list[dict[str, Any]]:
    """One labelled row per (candidate, requirement) of ``doc``; label 1 = adheres."""
    from openrlhf_reward.scorers.classifier import PAPER_TEMPLATE

    rows = []
    for ci, cand in enumerate(doc.candidates):
        dropped = set(cand.dropped)
        for req in doc.requirements:
            rows.append({
                # The backend's format_text: answer = response, question = requirement text.
                "text": PAPER_TEMPLATE.format(answer=cand.response, question=req.text, instruction=doc.prompt),
                "label": 0 if req.id in dropped else 1,
                "group": doc.id,
                "response": cand.response,
                "requirement": req.text,
                "requirement_id": req.id,
                "type": req.type,
                "candidate": ci,
                "gold_rank": cand.gold_rank,
            })
    return rows


def rows_from_documents(docs: Iterable[WEvalDocument]) -> list[dict[str, Any]]:
    return [row for doc in docs for row in adherence_rows(doc)]


def split_groups(groups: Sequence[str], eval_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Seeded split of distinct group ids into (train, eval); every group lands on one side.

    The eval side gets ``round(eval_fraction * n)`` groups, at least one when the fraction is
    positive and there are two or more groups, so both sides are non-empty."""
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    distinct = list(dict.fromkeys(groups))
    n_eval = round(eval_fraction * len(distinct))
    if eval_fraction > 0 and len(distinct) >= 2:
        n_eval = min(max(n_eval, 1), len(distinct) - 1)
    shuffled = distinct[:]
    random.Random(seed).shuffle(shuffled)
    held = set(shuffled[:n_eval])
    return [g for g in distinct if g not in held], [g for g in distinct if g in held]


def split_rows(docs: Sequence[WEvalDocument], eval_fraction: float,
               seed: int = 0) -> tuple[list[str], list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """The seeded group split of ``docs`` (:func:`split_groups`) and the adherence rows of each
    side: ``(train_ids, eval_ids, train_rows, eval_rows)``."""
    train_ids, eval_ids = split_groups([d.id for d in docs], eval_fraction, seed)
    held = set(eval_ids)
    return (train_ids, eval_ids, rows_from_documents(d for d in docs if d.id not in held),
            rows_from_documents(d for d in docs if d.id in held))


def add_arguments(p: argparse.ArgumentParser) -> None:
    from openrlhf_reward.builders.cli_args import add_io_arguments

    add_io_arguments(p, "WEval JSONL (build-weval or import-paper output).", "Adherence rows (JSONL) of the training groups.")
    p.add_argument("--eval-output", default=None, help="Adherence rows of the held-out groups (with --eval-fraction).")
    p.add_argument("--eval-fraction", type=float, default=0.0, help="Share of groups held out. Default: %(default)s.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the group split. Default: %(default)s.")


def run(args: argparse.Namespace) -> int:
    from openrlhf_reward.builders.runner import finish, write_rows
    from openrlhf_reward.builders.store import write_jsonl_atomic

    docs = load_weval_jsonl(args.input)
    if args.eval_fraction and not args.eval_output:
        raise ValueError("--eval-fraction needs --eval-output")
    train_ids, eval_ids, train, held = split_rows(docs, args.eval_fraction, args.seed)
    notes = [f"{len(train)} rows from {len(train_ids)} groups"]
    output = write_rows(args.output, train)
    if output and args.eval_output:
        write_jsonl_atomic(args.eval_output, held)
        notes.append(f"{len(held)} rows from {len(eval_ids)} held-out groups -> {args.eval_output}")
    return finish("build-adherence", {"rows": len(train)}, {}, output=output, notes=notes)
