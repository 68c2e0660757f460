"""WRL for real on CPU: OpenRLHF 0.11.2's own train_rm from the demo model (SmolLM2-135M) on
pairs imported from the paper's train.parquet, then the `bt` backend on the saved checkpoint
and `weval --model rm` on held-out writing_subset groups.

Only DeepSpeed is swapped for the single-process CPU stand-in of tests/test_rm_training.py.
Tiny on purpose (short max length, a few steps): it asserts what must hold (the loss on the
trained pairs falls, the checkpoint loads and scores, the metrics are finite); the quality
figures come from `benchmarks/train_rm_demo.py` and are quoted in the README.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

PAPER = Path(__file__).parent / "data" / "paper"  # small excerpts of the released files
pytestmark = [pytest.mark.slow, pytest.mark.openrlhf]
N_TRAIN, BATCH, EPOCHS, MAX_LEN = 4, 2, 3, 192


def _import_paper(src: Path, out: Path, *extra: str) -> Path:
    from openrlhf_reward import cli

    assert cli.main(["import-paper", "--input", str(src), "--output", str(out), *extra]) == 0
    return out


@pytest.fixture(scope="module")
def trained(demo_model_dir, tmp_path_factory):
    pytest.importorskip("openrlhf", reason="openrlhf==0.11.2 is not installed")
    from benchmarks.train_rm_demo import train_rm_cpu

    base = tmp_path_factory.mktemp("rm_demo")
    pairs = _import_paper(PAPER / "train.parquet", base / "pairs.jsonl")
    lines = pairs.read_text().splitlines()
    (base / "train.jsonl").write_text("\n".join(lines[:N_TRAIN]) + "\n")
    (base / "eval.jsonl").write_text("\n".join(lines[N_TRAIN:N_TRAIN + 2]) + "\n")
    return train_rm_cpu(demo_model_dir, base / "train.jsonl", base / "eval.jsonl", base / "run",
                        max_len=MAX_LEN, batch=BATCH, epochs=EPOCHS, lr=5e-5, max_samples=N_TRAIN,
                        untrained_dir=base / "untrained")


def test_train_rm_from_the_demo_model_lowers_the_loss(trained):
    loss0, _ = trained.before
    loss1, diffs1 = trained.after
    print(f"pair loss {loss0:.3f} -> {loss1:.3f}; step losses {trained.step_losses}")
    assert len(diffs1) == N_TRAIN and all(math.isfinite(d) for d in diffs1)
    assert len(trained.step_losses) == EPOCHS * N_TRAIN // BATCH
    assert loss1 < loss0, (loss0, loss1)
    cfg = json.loads((trained.ckpt / "config.json").read_text())
    assert cfg["value_head_prefix"] == "score" and cfg["num_hidden_layers"] == 30


def test_bt_and_weval_rm_on_held_out_writing_subset(trained, tmp_path):
    from openrlhf_reward.scorers import ScoreRequest, get_scorer

    requests = [ScoreRequest(prompt="Write a haiku.", response="Leaves fall."),
                ScoreRequest(prompt="Write a haiku.", response="x")]
    sc = get_scorer("bt", model=str(trained.ckpt), device="cpu", dtype="float32", max_length=MAX_LEN)
    got = [r.reward for r in sc.score(requests)]
    assert all(math.isfinite(g) for g in got) and got[0] != got[1]
    # the untrained head (saved before step 1, train_rm's layout) loads too and is another model
    sc0 = get_scorer("bt", model=str(trained.untrained), device="cpu", dtype="float32", max_length=MAX_LEN)
    got0 = [r.reward for r in sc0.score(requests)]
    assert all(math.isfinite(g) for g in got0) and got0 != got

    ws = _import_paper(PAPER / "writing_subset.parquet", tmp_path / "ws.jsonl",
                       "--category", "creative_writing", "--requirement-type", "content")
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text("\n".join(ws.read_text().splitlines()[-2:]) + "\n")  # 2 groups x 5 levels
    out = tmp_path / "out"
    bin_dir = Path(sys.executable).parent
    weval = [str(bin_dir / "weval")] if (bin_dir / "weval").exists() else [sys.executable, "-m", "weval_tasks"]
    proc = subprocess.run(
        [*weval, "--model", "rm", "--model_args",
         f"pretrained={trained.ckpt},backend=bt,dtype=float32,max_length={MAX_LEN}", "--batch_size", "5", "--device", "cpu",
         "--tasks", "weval-creative_writing", "--metadata", json.dumps({"data_files": str(held_out)}),
         "--output_path", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [res] = sorted(out.rglob("results_*.json"))
    metrics = json.loads(res.read_text())["results"]["weval-creative_writing"]
    for name in ("correlation,none", "pairwise_acc,none", "il,none"):
        assert math.isfinite(metrics[name]) and -100 <= metrics[name] <= 100, metrics
