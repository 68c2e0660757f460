"""`openrlhf-reward train-classifier`: a tiny real run (HF Trainer, the offline MiniLM) on the
committed writing_subset excerpt. The loss falls, the checkpoint loads in the `classifier`
backend with no options, and it rewards the answer that meets the requirements above the
one that drops them; the group split never puts one group on both sides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openrlhf_reward import cli

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "tests" / "data" / "paper"


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """Small matrices on a shared CPU: a second thread only contends (measured ~2x slower)."""
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def excerpt(tmp_path_factory) -> Path:
    """The 3 committed writing_subset groups as WEval (import-paper, given category/type)."""
    out = tmp_path_factory.mktemp("ws") / "ws.jsonl"
    assert cli.main(["import-paper", "--input", str(PAPER / "writing_subset.parquet"), "--output", str(out),
                     "--category", "creative_writing", "--requirement-type", "content"]) == 0
    return out


def _rewards(ckpt: Path, doc) -> dict[int, float]:
    """Reward per gold rank, the classifier backend loaded exactly as `weval --model rm` does."""
    from openrlhf_reward.scorers import get_scorer
    from openrlhf_reward.scorers.base import ScoreRequest

    scorer = get_scorer("classifier", model=str(ckpt))
    try:
        res = scorer.score([ScoreRequest(prompt=doc.prompt, response=c.response, requirements=doc.requirements,
                                         query=doc.query) for c in doc.candidates])
        assert scorer.config.max_length == 128  # cut where training cut (the saved model_max_length)
    finally:
        scorer.close()
    return {c.gold_rank: r.reward for c, r in zip(doc.candidates, res, strict=True)}


def test_train_classifier_tiny_run(excerpt, tmp_path):
    from openrlhf_reward.schema import load_weval_jsonl

    ckpt = tmp_path / "ckpt"
    # 2 training groups (50 rows) fitted for a few epochs; 1 group held out.
    rc = cli.main(["train-classifier", "--input", str(excerpt), "--output", str(ckpt), "--epochs", "6",
                   "--batch-size", "10", "--lr", "3e-4", "--max-length", "128", "--eval-fraction", "0.34",
                   "--seed", "0", "--logging-steps", "5", "--no-progress"])
    assert rc == 0
    info = json.loads((ckpt / "train_classifier.json").read_text())
    assert info["steps"] == info["planned_steps"] == 30 and not info["stopped_by_budget"]
    assert (info["train_groups"], info["eval_groups"]) == (2, 1)
    train_ids, held_ids = info["train_group_ids"], info["eval_group_ids"]
    assert not set(train_ids) & set(held_ids) and len(set(train_ids) | set(held_ids)) == 3
    losses = [e["loss"] for e in info["log"] if "loss" in e]
    assert losses[0] > 0.6 and losses[-1] < 0.5 * losses[0], losses  # the loss falls
    assert (ckpt / "loss.png").stat().st_size > 1000
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["id2label"] == {"0": "violates", "1": "adheres"}

    doc = next(d for d in load_weval_jsonl(excerpt) if d.id in train_ids)
    rewards = _rewards(ckpt, doc)
    # gold rank 1 = level 5 (meets all five requirements); rank 5 = level 1 (drops c2..c5)
    assert rewards[1] > rewards[5], rewards


def test_train_classifier_time_budget_stops_cleanly(excerpt, tmp_path):
    """A budget already spent stops after the first step; the checkpoint still scores."""
    from openrlhf_reward.schema import load_weval_jsonl
    from openrlhf_reward.train_classifier import TrainSettings, train_classifier

    r = train_classifier(excerpt, tmp_path / "ckpt", TrainSettings(
        max_minutes=0.0, epochs=3, batch_size=8, max_length=128, eval_fraction=0.0, progress=False))
    assert r.stopped_by_budget and r.steps == 1 < r.planned_steps
    assert r.eval_groups == 0 and r.held_out == {}
    rewards = _rewards(tmp_path / "ckpt", load_weval_jsonl(excerpt)[0])
    assert all(0.0 < v < 1.0 for v in rewards.values())


def test_train_classifier_refuses_a_file_as_output(excerpt, tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("x")
    assert cli.main(["train-classifier", "--input", str(excerpt), "--output", str(out), "--no-progress"]) == 2
    assert "is a file" in capsys.readouterr().err
