"""WRL on CPU with the real demo model: OpenRLHF 0.11.2's own train_rm from SmolLM2-135M on
pairs imported from the paper's train.parquet, then `weval --model rm` (bt) on held-out
writing_subset groups: the trained RM next to the untrained head and the length baseline.

    openrlhf-reward demo-model /tmp/smollm2
    python -m benchmarks.train_rm_demo --model /tmp/smollm2 --paper-data /path/to/paper \\
        --train-pairs 40 --epochs 1 --batch 2 --max-len 256 --held-out 16 --out /tmp/rm_demo_run

train_rm's command line is recipes/train_rm_bt.sh's (parsed by OpenRLHF's own parser); only
DeepSpeed is replaced by the single-process CPU stand-in of tests/test_rm_training.py (plain
torch AdamW, the same LR schedule). The untrained head is the reward model exactly as
train_rm initialised it (its seed, ``init_value_head=True``), saved before step 1 in the
layout train_rm saves, so `bt` loads it like the trained checkpoint.

Training pairs: the first ``--train-pairs`` of train.parquet whose chosen and rejected
answers still differ after OpenRLHF's RewardDataset has tokenised and truncated them to
``--max-len`` (a pair that truncates to the same tokens has loss log 2 and zero gradient);
the number skipped is printed. The held-out groups are the last ``--held-out`` of
writing_subset.parquet (506 base prompts, none of them in train.parquet).

Prints the per-step loss, the training-pair loss before and after, and WEval metrics for
trained / untrained / length; writes ``summary.json`` and (with matplotlib) ``loss.png``
into ``--out``. Times depend on the machine's load, which is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]


def train_rm_cpu(model: Path, train: Path, eval_: Path, run_dir: Path, *, max_len: int, batch: int,
                 epochs: int, lr: float, max_samples: int, untrained_dir: Path | None = None) -> SimpleNamespace:
    """recipes/train_rm_bt.sh's train_rm command, run in-process by OpenRLHF's ``train(args)``.

    With ``untrained_dir`` the freshly initialised reward model is saved there before step 1."""
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
    run = train_rm_on_cpu(args, untrained_dir=untrained_dir)
    return SimpleNamespace(args=args, ckpt=Path(args.ckpt.output_dir), untrained=untrained_dir,
                           seconds=time.perf_counter() - start,
                           step_losses=[float(x["loss"]) for x in run.strategy.train_logs],
                           before=run.before, after=run.after)


def distinct_pairs(model: Path, lines: list[str], max_len: int) -> list[bool]:
    """For each pair (a JSONL line): do chosen and rejected still differ once OpenRLHF's own
    RewardDataset has built train_rm's inputs (chat template, truncation to ``max_len``, the
    final EOS)?"""
    from datasets import Dataset
    from openrlhf.datasets import RewardDataset
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model))
    rows = [json.loads(line) for line in lines]
    data = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    keys = SimpleNamespace(prompt_key="prompt", chosen_key="chosen", rejected_key="rejected",
                           apply_chat_template=True, tokenizer_chat_template=None)
    ds = RewardDataset(data, tok, max_len, SimpleNamespace(args=SimpleNamespace(data=keys)), num_processors=1)
    return [ds[i][0].tolist() != ds[i][2].tolist() for i in range(len(ds))]


def weval_metrics(model_args: str, data: Path, out: Path) -> dict[str, float]:
    weval = Path(sys.executable).parent / "weval"
    proc = subprocess.run([str(weval), "--model", "rm", "--model_args", model_args, "--tasks", "weval_*",
                           "--batch_size", "5", "--device", "cpu",
                           "--metadata", json.dumps({"data_files": str(data)}), "--output_path", str(out)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    [res] = sorted(out.rglob("results_*.json"))
    m = json.loads(res.read_text())["results"]["weval_all"]
    return {k.split(",")[0]: round(v, 1) for k, v in m.items()
            if k.endswith(",none") and "stderr" not in k and isinstance(v, int | float)}


def plot_losses(step_losses: list[float], before: float, after: float, path: Path, title: str) -> bool:
    """The loss curve as a PNG; False (nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    steps = list(range(1, len(step_losses) + 1))
    ax.plot(steps, step_losses, marker="o", ms=3, lw=1, label="train_rm step loss (batch)")
    ax.axhline(before, color="grey", ls="--", lw=1, label=f"all training pairs, before: {before:.3f}")
    ax.axhline(after, color="green", ls="--", lw=1, label=f"all training pairs, after: {after:.3f}")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("PairWiseLoss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="demo-model folder")
    p.add_argument("--paper-data", type=Path, required=True, help="folder with train.parquet, writing_subset.parquet")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--train-pairs", type=int, default=40)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--max-len", type=int, default=256)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--held-out", type=int, default=16, help="writing_subset groups (the last N) to evaluate on")
    p.add_argument("--keep-indistinct", action="store_true",
                   help="also train on pairs whose chosen/rejected truncate to the same tokens")
    a = p.parse_args(argv)
    from openrlhf_reward import cli

    t0 = time.perf_counter()
    load0 = os.getloadavg()
    a.out.mkdir(parents=True, exist_ok=True)
    pairs, ws = a.out / "pairs.jsonl", a.out / "ws.jsonl"
    cli.main(["import-paper", "--input", str(a.paper_data / "train.parquet"), "--output", str(pairs)])
    cli.main(["import-paper", "--input", str(a.paper_data / "writing_subset.parquet"), "--output", str(ws),
              "--category", "creative_writing", "--requirement-type", "content"])
    lines = pairs.read_text().splitlines()
    eval_lines = lines[-8:]  # train_rm's eval set (sets the reward mean/std); never trained on
    pool = lines[:-8]
    if a.keep_indistinct:
        train_lines, skipped = pool[:a.train_pairs], 0
    else:
        train_lines, skipped, start = [], 0, 0
        while len(train_lines) < a.train_pairs and start < len(pool):
            chunk = pool[start:start + 4 * a.train_pairs]
            for line, ok in zip(chunk, distinct_pairs(a.model, chunk, a.max_len), strict=True):
                if len(train_lines) == a.train_pairs:
                    break
                if ok:
                    train_lines.append(line)
                else:
                    skipped += 1
            start += len(chunk)
    (a.out / "train.jsonl").write_text("\n".join(train_lines) + "\n")
    (a.out / "eval.jsonl").write_text("\n".join(eval_lines) + "\n")
    held = a.out / "held_out.jsonl"
    held.write_text("\n".join(ws.read_text().splitlines()[-a.held_out:]) + "\n")
    print(f"training pairs: {len(train_lines)} (the first of train.parquet; {skipped} skipped as identical "
          f"after truncation to {a.max_len} tokens); held-out: {a.held_out} writing_subset groups x 5 levels")

    r = train_rm_cpu(a.model, a.out / "train.jsonl", a.out / "eval.jsonl", a.out / "run", max_len=a.max_len,
                     batch=a.batch, epochs=a.epochs, lr=a.lr, max_samples=a.train_pairs,
                     untrained_dir=a.out / "untrained")
    n = len(r.step_losses)
    print(f"train_rm: {n} steps (batch {a.batch}, lr {a.lr:g}, max_len {a.max_len}) in {r.seconds:.0f} s "
          f"({r.seconds / max(n, 1):.1f} s/step, incl. the untrained save and the before/after passes)")
    print(f"step loss: {[round(x, 3) for x in r.step_losses]}")
    k = max(1, n // 4)
    print(f"step loss, mean of first {k} / last {k} steps: {sum(r.step_losses[:k]) / k:.3f} / "
          f"{sum(r.step_losses[-k:]) / k:.3f}")
    print(f"training-pair loss {r.before[0]:.3f} -> {r.after[0]:.3f}; chosen above rejected on "
          f"{sum(d > 0 for d in r.before[1])}/{len(r.before[1])} -> {sum(d > 0 for d in r.after[1])}/{len(r.after[1])}")
    png = a.out / "loss.png"
    if plot_losses(r.step_losses, r.before[0], r.after[0], png,
                   f"train_rm on CPU, SmolLM2-135M, {len(train_lines)} paper pairs, batch {a.batch}, lr {a.lr:g}"):
        print(f"loss curve: {png}")

    common = f"dtype=float32,max_length={a.max_len}"
    results: dict[str, dict] = {}
    for name, margs in (("trained", f"pretrained={r.ckpt},backend=bt,{common}"),
                        ("untrained", f"pretrained={r.untrained},backend=bt,{common}"),
                        ("length", "backend=length")):
        t = time.perf_counter()
        m = weval_metrics(margs, held, a.out / f"weval_{name}")
        results[name] = {"metrics": m, "seconds": round(time.perf_counter() - t, 1)}
        print(f"{name}: {m} ({results[name]['seconds']:.0f} s)")
    load1 = os.getloadavg()
    total = time.perf_counter() - t0
    print(f"total {total:.0f} s; load average (1/5/15 min) at start {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f}, "
          f"at end {load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f} on {os.cpu_count()} cores")
    summary = {"args": {k: str(v) for k, v in vars(a).items()}, "train_pairs": len(train_lines),
               "skipped_indistinct": skipped, "train_seconds": round(r.seconds, 1), "step_losses": r.step_losses,
               "pair_loss_before": r.before[0], "pair_loss_after": r.after[0], "weval": results,
               "total_seconds": round(total, 1), "loadavg_start": load0, "loadavg_end": load1,
               "cpu_count": os.cpu_count()}
    (a.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
