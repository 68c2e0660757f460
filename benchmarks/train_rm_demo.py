"""WRL on CPU with the real demo model: OpenRLHF 0.11.2's own train_rm from SmolLM2-135M on
pairs imported from the paper's train.parquet, then `weval --model rm` (bt) on held-out
writing_subset groups, next to the length baseline.

    openrlhf-reward demo-model /tmp/smollm2
    python -m benchmarks.train_rm_demo --model /tmp/smollm2 --paper-data /path/to/paper \\
        --train-pairs 32 --epochs 1 --batch 4 --max-len 384 --held-out 24 --out /tmp/rm_demo_run

train_rm's command line is recipes/train_rm_bt.sh's (parsed by OpenRLHF's own parser); only
DeepSpeed is replaced by the single-process CPU stand-in of tests/test_rm_training.py (plain
torch AdamW, the same LR schedule). Prints the per-step loss, the training-pair loss before and
after, and WEval metrics for trained / untrained / length. Times depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]


def train_rm_cpu(model: Path, train: Path, eval_: Path, run_dir: Path, *, max_len: int, batch: int,
                 epochs: int, lr: float, max_samples: int) -> SimpleNamespace:
    """recipes/train_rm_bt.sh's train_rm command, run in-process by OpenRLHF's ``train(args)``."""
    sys.path.insert(0, str(REPO / "tests"))  # the CPU stand-in for DeepSpeed lives with the tests
    from recipe_helpers import (
        dry_run,
        find,
        make_shims,
        parse_openrlhf,
        recipe_env,
        split_at,
    )
    from test_rm_training import train_rm_on_cpu

    run_dir.mkdir(parents=True, exist_ok=True)
    env = recipe_env(make_shims(run_dir / "bin"), run_dir, MODEL=str(model), TRAIN_DATA=str(train),
                     EVAL_DATA=str(eval_), MARGIN_LOSS="0", PACKING="0", GRAD_CKPT="0", ATTN_IMPL="eager",
                     NUM_GPUS="1", TRAIN_BATCH_SIZE=str(batch), MICRO_BATCH_SIZE=str(batch),
                     MAX_LEN=str(max_len), MAX_EPOCHS=str(epochs), LR=str(lr))
    (cmd,) = find(dry_run("train_rm_bt.sh", env, ["--data.max_samples", str(max_samples)]), "deepspeed")
    _, argv = split_at(cmd, ["--module", "openrlhf.cli.train_rm"])
    _, args, _ = parse_openrlhf("openrlhf.cli.train_rm", argv)
    start = time.perf_counter()
    run = train_rm_on_cpu(args)
    return SimpleNamespace(args=args, ckpt=Path(args.ckpt.output_dir), seconds=time.perf_counter() - start,
                           step_losses=[float(x["loss"]) for x in run.strategy.train_logs],
                           before=run.before, after=run.after)


def weval_metrics(model_args: str, data: Path, out: Path) -> dict[str, float]:
    weval = Path(sys.executable).parent / "weval"
    proc = subprocess.run([str(weval), "--model", "rm", "--model_args", model_args, "--tasks", "weval_*", "--batch_size", "5", "--device", "cpu",
                           "--metadata", json.dumps({"data_files": str(data)}), "--output_path", str(out)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    [res] = sorted(out.rglob("results_*.json"))
    m = json.loads(res.read_text())["results"]["weval_all"]
    return {k.split(",")[0]: round(v, 1) for k, v in m.items() if k.endswith(",none")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="demo-model folder")
    p.add_argument("--paper-data", type=Path, required=True, help="folder with train.parquet, writing_subset.parquet")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--train-pairs", type=int, default=32)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--max-len", type=int, default=384)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--held-out", type=int, default=24, help="writing_subset groups (the last N) to evaluate on")
    a = p.parse_args(argv)
    from openrlhf_reward import cli

    a.out.mkdir(parents=True, exist_ok=True)
    pairs, ws = a.out / "pairs.jsonl", a.out / "ws.jsonl"
    cli.main(["import-paper", "--input", str(a.paper_data / "train.parquet"), "--output", str(pairs)])
    cli.main(["import-paper", "--input", str(a.paper_data / "writing_subset.parquet"), "--output", str(ws),
              "--category", "creative_writing", "--requirement-type", "content"])
    lines = pairs.read_text().splitlines()
    (a.out / "train.jsonl").write_text("\n".join(lines[:a.train_pairs]) + "\n")
    (a.out / "eval.jsonl").write_text("\n".join(lines[-8:]) + "\n")
    held = a.out / "held_out.jsonl"
    held.write_text("\n".join(ws.read_text().splitlines()[-a.held_out:]) + "\n")

    r = train_rm_cpu(a.model, a.out / "train.jsonl", a.out / "eval.jsonl", a.out / "run", max_len=a.max_len,
                     batch=a.batch, epochs=a.epochs, lr=a.lr, max_samples=a.train_pairs)
    print(f"train_rm: {len(r.step_losses)} steps in {r.seconds:.0f} s; step loss {[round(x, 3) for x in r.step_losses]}")
    print(f"training-pair loss {r.before[0]:.3f} -> {r.after[0]:.3f}")
    common = f"dtype=float32,max_length={a.max_len}"
    # The untrained head is not listed: the bt backend (rightly) refuses a plain causal-LM
    # folder, and train_rm saves no step-0 checkpoint; see the README.
    for name, margs in (("trained", f"pretrained={r.ckpt},backend=bt,{common}"),
                        ("length", "backend=length")):
        t = time.perf_counter()
        m = weval_metrics(margs, held, a.out / f"weval_{name}")
        print(f"{name}: {m} ({time.perf_counter() - t:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
