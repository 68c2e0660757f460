"""Adherence rows (the `classifier` backend's training data): labels from requirement dropout,
the backend's input text, and splits by group. Fast: no model is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openrlhf_reward import cli
from openrlhf_reward.builders.adherence import adherence_rows, rows_from_documents, split_groups
from openrlhf_reward.schema import load_weval_jsonl
from openrlhf_reward.scorers.classifier import PAPER_TEMPLATE

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "weval_tasks" / "data" / "weval_demo.jsonl"
PAPER = ROOT / "tests" / "data" / "paper"


def test_demo_rows_labels_and_text():
    docs = load_weval_jsonl(DEMO)
    rows = rows_from_documents(docs)
    assert len(rows) == sum(len(d.candidates) * len(d.requirements) for d in docs)
    doc = docs[0]
    rows = adherence_rows(doc)
    by_key = {(r["candidate"], r["requirement_id"]): r for r in rows}
    for ci, cand in enumerate(doc.candidates):
        for req in doc.requirements:
            r = by_key[(ci, req.id)]
            assert r["label"] == (0 if req.id in cand.dropped else 1)
            assert r["group"] == doc.id and r["type"] == req.type and r["gold_rank"] == cand.gold_rank
            # exactly the classifier backend's format_text (answer = response, question = requirement)
            assert r["text"] == PAPER_TEMPLATE.format(answer=cand.response, question=req.text)
            assert r["text"].endswith(f"Constraint: {req.text}")
    # the demo's first document drops c3, c4, c5, c1 from its worst candidate: 1 positive of 5
    assert sum(by_key[(0, q.id)]["label"] for q in doc.requirements) == 1


def test_writing_subset_levels_label_by_construction(tmp_path):
    """Paper data via import-paper: the level-k answer adheres to constraints 1..k only."""
    ws = tmp_path / "ws.jsonl"
    assert cli.main(["import-paper", "--input", str(PAPER / "writing_subset.parquet"), "--output", str(ws),
                     "--category", "creative_writing", "--requirement-type", "content"]) == 0
    docs = load_weval_jsonl(ws)
    assert len(docs) == 3
    for doc in docs:
        rows = adherence_rows(doc)
        assert len(rows) == 25 and sum(r["label"] for r in rows) == 15  # 1+2+3+4+5 of 25
        for r in rows:
            level = 6 - r["gold_rank"]  # gold rank 1 = level 5
            j = int(r["requirement_id"][1:])
            assert r["label"] == int(j <= level), (level, j)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 0.9])
def test_split_groups_disjoint_and_seeded(fraction):
    groups = [f"g{i}" for i in range(40)] + ["g3", "g7"]  # repeated ids: still one group each
    train, held = split_groups(groups, fraction, seed=1)
    assert not set(train) & set(held)
    assert sorted(train + held) == sorted(set(groups))
    assert len(held) == (0 if fraction == 0 else max(1, round(fraction * 40)))
    assert split_groups(groups, fraction, seed=1) == (train, held)
    if 0 < fraction < 1:
        assert split_groups(groups, fraction, seed=2)[1] != held  # the seed matters


def test_split_groups_keeps_both_sides_and_refuses_bad_fraction():
    assert split_groups(["a", "b"], 0.01) [0] and split_groups(["a", "b"], 0.01)[1]
    with pytest.raises(ValueError):
        split_groups(["a"], 1.0)


def test_build_adherence_cli_splits_by_group(tmp_path, capsys):
    train, held = tmp_path / "train.jsonl", tmp_path / "held.jsonl"
    rc = cli.main(["build-adherence", "--input", str(DEMO), "--output", str(train), "--eval-output", str(held),
                   "--eval-fraction", "0.2", "--seed", "3"])
    assert rc == 0
    tr = [json.loads(x) for x in train.read_text().splitlines()]
    he = [json.loads(x) for x in held.read_text().splitlines()]
    g_tr, g_he = {r["group"] for r in tr}, {r["group"] for r in he}
    assert len(g_he) == 5 and len(g_tr) == 20 and not g_tr & g_he
    assert len(tr) + len(he) == len(rows_from_documents(load_weval_jsonl(DEMO)))
    assert {r["label"] for r in tr} == {0, 1}
