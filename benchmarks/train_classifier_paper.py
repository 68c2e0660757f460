"""The paper's kind of reward model, trained here: a per-requirement adherence classifier
learned from requirement dropout on the paper's writing_subset, against length and rules.

    python -m benchmarks.train_classifier_paper --paper-data PAPER_DIR \\
        --out /tmp/tcp_run [--max-minutes 12] [--eval-groups 100] [--png docs/img/train_classifier_paper.png]

Data discipline (issue 21): writing_subset has 506 base prompts (one WEval document each after
``import-paper``, in the file's order). Base prompts 405-505 are reserved for an independent
check: right after the import only documents 0-404 are kept (the full import is deleted) and
nothing here trains, tunes, selects or reports on the reserved ones. Within 0-404,
``--eval-groups`` groups (a seeded split by group, :func:`split_groups`) are held out for the
figure; train-classifier trains on the rest (and holds out 5 % of those for its own loss).

Training: ``train_classifier`` with its CPU default (all-MiniLM-L6-v2 + a 2-label head, HF
Trainer), stopped by ``--max-minutes``. Scoring: the checkpoint through the `classifier`
backend exactly as the server / ``weval --model rm`` load it (no options), `length` and
`rules`, in-process; per-document WEval metrics from :mod:`weval_tasks.metrics` (the tasks'
own definitions), each with a 95 % percentile bootstrap CI over documents, plus a paired
bootstrap CI of the correlation difference classifier - length. The demo set
(weval_tasks/data/weval_demo.jsonl, other teachers, categories and requirement styles) is
the out-of-distribution check; there the checkpoint is also run through the real ``weval``
command and its ``weval_all`` correlation is compared with the in-process one.

Prints the table, the load average and wall time; writes ``summary.json`` into ``--out`` and,
with ``--png``, the figure (loss curve + metrics with CIs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "weval_tasks" / "data" / "weval_demo.jsonl"
DEV_GROUPS = 405  # base prompts 0-404; 405-505 are reserved (issue 21)
METRICS = ("correlation", "il", "pl", "pairwise_acc", "top1", "tie_rate")
TYPES = ("length", "format", "style", "content")


def score_documents(scorer: Any, docs: Sequence[Any], batch: int = 25) -> list[list[float]]:
    """One reward per candidate, per document, with the requests ``weval --model rm`` builds."""
    from openrlhf_reward.scorers.base import ScoreRequest

    reqs = [ScoreRequest(prompt=d.prompt, response=c.response, requirements=d.requirements, query=d.query)
            for d in docs for c in d.candidates]
    rewards: list[float] = []
    for i in range(0, len(reqs), batch):
        rewards.extend(r.reward for r in scorer.score(reqs[i:i + batch]))
    out, k = [], 0
    for d in docs:
        out.append(rewards[k:k + len(d.candidates)])
        k += len(d.candidates)
    return out


def per_document(docs: Sequence[Any], scores: Sequence[Sequence[float]]) -> list[dict[str, Any]]:
    """Each document's WEval metrics (0-100) and per-type (correct, total) adjacent pairs."""
    from weval_tasks.metrics import document_metrics, requirement_type_pairs

    rows = []
    for d, s in zip(docs, scores, strict=True):
        gold = [c.gold_rank for c in d.candidates]
        m = {k: 100.0 * v for k, v in document_metrics(gold, s).items()}
        types = {r.id: r.type for r in d.requirements}
        m["types"] = requirement_type_pairs(gold, s, [c.dropped for c in d.candidates], types)
        rows.append(m)
    return rows


def summarise(rows: list[dict[str, Any]], n_boot: int, seed: int) -> dict[str, dict[str, float]]:
    """Mean over documents and a 95 % percentile bootstrap CI (documents resampled), with
    ``weval report``'s bootstrap; per-type accuracies pooled over documents as it pools them."""
    from weval_tasks.stats import bootstrap

    per_doc = {k: [r[k] for r in rows] for k in METRICS}
    ratios = {}
    for t in TYPES:
        c = [r["types"].get(t, (0, 0))[0] for r in rows]
        n = [r["types"].get(t, (0, 0))[1] for r in rows]
        if sum(n):
            ratios[f"type_{t}"] = (c, n)
    ci = bootstrap(per_doc, ratios, n_resamples=n_boot, seed=seed)
    out: dict[str, dict[str, float]] = {}
    for k, v in per_doc.items():
        out[k] = {"mean": sum(v) / len(v), "lo": ci[k][0], "hi": ci[k][1]}
    for k, (c, n) in ratios.items():
        out[k] = {"mean": 100.0 * sum(c) / sum(n), "lo": ci[k][0], "hi": ci[k][1], "pairs": int(sum(n))}
    return out


def paired_diff(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str, n_boot: int, seed: int) -> dict[str, float]:
    """Mean difference a - b of ``key`` with a paired 95 % bootstrap CI over documents."""
    from weval_tasks.stats import paired_bootstrap

    d = paired_bootstrap({key: [x[key] for x in a]}, {key: [y[key] for y in b]}, n_resamples=n_boot, seed=seed)[key]
    return {"mean": d["diff"], "lo": d["ci95"][0], "hi": d["ci95"][1]}


def fmt(c: dict[str, float]) -> str:
    return f"{c['mean']:5.1f} [{c['lo']:5.1f}, {c['hi']:5.1f}]"


def table(title: str, results: dict[str, dict[str, dict[str, float]]]) -> str:
    cols = ["correlation", "il", "pl", "pairwise_acc", *(f"type_{t}" for t in TYPES)]
    lines = [f"### {title}", "", "| scorer | " + " | ".join(c.replace("type_", "acc ") for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for name, s in results.items():
        lines.append(f"| {name} | " + " | ".join(fmt(s[c]) if c in s else "n/a" for c in cols) + " |")
    return "\n".join(lines)


def plot(path: Path, log: list[dict[str, Any]], held: dict[str, Any], demo: dict[str, Any], title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from openrlhf_reward.train_classifier import draw_loss

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=80, gridspec_kw={"width_ratios": [1, 1.3, 1.3]})
    draw_loss(axes[0], log)
    axes[0].set_title("train-classifier loss", fontsize=9)
    keys = ["correlation", "il", "pl", "pairwise_acc"]
    for ax, (name, res) in zip(axes[1:], (("held-out writing_subset groups", held), ("demo set (OOD)", demo)), strict=True):
        scorers = list(res)
        w = 0.8 / len(scorers)
        for j, sc in enumerate(scorers):
            xs = [i + (j - (len(scorers) - 1) / 2) * w for i in range(len(keys))]
            m = [res[sc][k]["mean"] for k in keys]
            err = [[res[sc][k]["mean"] - res[sc][k]["lo"] for k in keys], [res[sc][k]["hi"] - res[sc][k]["mean"] for k in keys]]
            ax.bar(xs, m, w, yerr=err, capsize=2, label=sc)
        ax.set_xticks(range(len(keys)), ["correlation", "IL", "PL", "pairwise acc"], fontsize=8)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_title(f"{name} (95% bootstrap CI)", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paper-data", type=Path, required=True,
                   help="folder with the paper's writing_subset.parquet (docs/data.md: where to get it)")
    p.add_argument("--out", type=Path, default=Path("/tmp/train_classifier_paper"))
    p.add_argument("--max-minutes", type=float, default=12.0, help="training time budget")
    p.add_argument("--eval-groups", type=int, default=80, help="groups of 0-404 held out for the figure")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; on a shared, loaded CPU one thread is much faster than two")
    p.add_argument("--base-model", default=None, help="default: the train-classifier default (MiniLM)")
    p.add_argument("--bootstrap", type=int, default=2000)
    p.add_argument("--png", type=Path, default=None, help="also save the figure here")
    p.add_argument("--train-eval-fraction", type=float, default=0.03,
                   help="share of the training groups train-classifier holds out for its own loss")
    p.add_argument("--reuse-data", action="store_true",
                   help="reuse OUT/train.jsonl and OUT/held_out.jsonl of a previous run (skips import-paper)")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="score this checkpoint (a previous run's OUT/ckpt, same split) instead of training")
    p.add_argument("--no-weval-cli", action="store_true", help="skip the weval command check on the demo set")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(a.threads)
    from openrlhf_reward import cli
    from openrlhf_reward.builders.adherence import split_groups
    from openrlhf_reward.schema import load_weval_jsonl
    from openrlhf_reward.scorers import get_scorer
    from openrlhf_reward.train_classifier import TrainResult, TrainSettings, train_classifier

    t_start, load0 = time.perf_counter(), os.getloadavg()
    a.out.mkdir(parents=True, exist_ok=True)
    full = a.out / "ws_all.jsonl"
    if a.reuse_data and (a.out / "train.jsonl").is_file() and (a.out / "held_out.jsonl").is_file():
        # a previous run's split of groups 0-404, same --eval-groups/--seed (checked below)
        lines = (a.out / "train.jsonl").read_text().splitlines() + (a.out / "held_out.jsonl").read_text().splitlines()
        lines.sort(key=lambda line: json.loads(line)["id"])
        lines += [""] * (506 - len(lines))  # stand-ins for the reserved groups, never read
    elif cli.main(["import-paper", "--input", str(a.paper_data / "writing_subset.parquet"), "--output", str(full)]):
        raise SystemExit("import-paper failed")
    else:
        lines = full.read_text().splitlines()
        full.unlink()  # the reserved base prompts 405-505 leave with it
    if len(lines) != 506:
        raise SystemExit(f"expected 506 writing_subset groups, got {len(lines)}")
    dev = lines[:DEV_GROUPS]
    ids = [json.loads(line)["id"] for line in dev]
    train_ids, held_ids = split_groups(ids, a.eval_groups / len(ids), a.seed)
    assert not set(train_ids) & set(held_ids)
    if a.reuse_data:
        old_held = [json.loads(line)["id"] for line in (a.out / "held_out.jsonl").read_text().splitlines()]
        if sorted(old_held) != sorted(held_ids):
            raise SystemExit("--reuse-data: the saved split differs from this --eval-groups/--seed")
    held_set = set(held_ids)
    (a.out / "train.jsonl").write_text("".join(f"{line}\n" for i, line in zip(ids, dev, strict=True) if i not in held_set))
    (a.out / "held_out.jsonl").write_text("".join(f"{line}\n" for i, line in zip(ids, dev, strict=True) if i in held_set))
    print(f"writing_subset: groups 0-{DEV_GROUPS - 1} used (405-505 reserved, not kept); "
          f"{len(train_ids)} training groups, {len(held_ids)} held-out groups (seed {a.seed})", flush=True)

    ckpt = a.out / "ckpt"
    if a.checkpoint:
        ckpt = a.checkpoint
        r = TrainResult(**json.loads((ckpt / "train_classifier.json").read_text()))
    else:
        settings = TrainSettings(base_model=a.base_model, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                                 max_length=a.max_length, eval_fraction=a.train_eval_fraction, seed=a.seed,
                                 max_minutes=a.max_minutes, threads=a.threads, logging_steps=10)
        r = train_classifier(a.out / "train.jsonl", ckpt, settings)
    print(f"trained: {r.steps}/{r.planned_steps} steps (batch {a.batch_size}, {r.steps * a.batch_size} rows seen of "
          f"{r.train_rows}) in {r.train_seconds:.0f} s, {'stopped by the time budget' if r.stopped_by_budget else 'done'}; "
          f"train-side held-out groups: {r.held_out}", flush=True)

    held_docs, demo_docs = load_weval_jsonl(a.out / "held_out.jsonl"), load_weval_jsonl(DEMO)
    scorers = {"classifier (trained)": get_scorer("classifier", model=str(ckpt), device="cpu"),
               "length": get_scorer("length"), "rules": get_scorer("rules")}
    per: dict[str, dict[str, list]] = {"held": {}, "demo": {}}
    t_score = time.perf_counter()
    for name, sc in scorers.items():
        per["held"][name] = per_document(held_docs, score_documents(sc, held_docs))
        per["demo"][name] = per_document(demo_docs, score_documents(sc, demo_docs))
    score_seconds = time.perf_counter() - t_score
    res = {k: {n: summarise(rows, a.bootstrap, a.seed) for n, rows in v.items()} for k, v in per.items()}
    diff = {k: paired_diff(per[k]["classifier (trained)"], per[k]["length"], "correlation", a.bootstrap, a.seed)
            for k in per}

    cli_check: dict[str, Any] = {}
    if not a.no_weval_cli:  # the checkpoint through the real weval command, loaded with no options
        sys.path.insert(0, str(REPO))
        from benchmarks.train_rm_demo import weval_metrics

        m = weval_metrics(f"pretrained={ckpt},backend=classifier", DEMO, a.out / "weval_demo_cli")
        cli_check = {"weval_all_correlation": m.get("correlation"),
                     "in_process": round(res["demo"]["classifier (trained)"]["correlation"]["mean"], 1)}

    print()
    print(table(f"Held-out writing_subset groups ({len(held_docs)} of 0-404; 95 % bootstrap CI over documents)", res["held"]))
    print(f"\ncorrelation, classifier - length (paired bootstrap): {fmt(diff['held'])}\n")
    print(table(f"Demo set, out of distribution ({len(demo_docs)} documents)", res["demo"]))
    print(f"\ncorrelation, classifier - length (paired bootstrap): {fmt(diff['demo'])}")
    if cli_check:
        print(f"weval --model rm --model_args pretrained=CKPT,backend=classifier on the demo set: weval_all "
              f"correlation {cli_check['weval_all_correlation']} (in-process {cli_check['in_process']})")
    load1, total = os.getloadavg(), time.perf_counter() - t_start
    print(f"\ntraining {r.train_seconds:.0f} s ({r.steps} steps), scoring {score_seconds:.0f} s, total {total:.0f} s; "
          f"load average (1/5/15 min) at start {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f}, at end "
          f"{load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f} on {os.cpu_count()} cores; torch threads {a.threads}")
    summary = {"args": {k: str(v) for k, v in vars(a).items()}, "train": {k: v for k, v in vars(r).items() if k != "log"},
               "log": r.log, "held_out_groups": held_ids, "results": res, "diff_correlation_vs_length": diff,
               "weval_cli_check": cli_check, "score_seconds": round(score_seconds, 1), "total_seconds": round(total, 1),
               "loadavg_start": load0, "loadavg_end": load1, "cpu_count": os.cpu_count()}
    (a.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if a.png:
        base = "all-MiniLM-L6-v2" if a.base_model is None else Path(a.base_model).name
        title = (f"{base} adherence classifier, {r.steps} CPU steps x {a.batch_size} "
                 f"({r.train_seconds / 60:.1f} min) on {r.train_groups} writing_subset groups")
        if plot(a.png, r.log, res["held"], res["demo"], title):
            print(f"figure: {a.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
