"""`weval report`: compare WEval runs: ranking metrics, hack rates and score diagnostics.

Reads lm-eval output folders (``--output_path`` of ``weval``/``lm_eval`` runs) and prints one
row per run and task family (``weval``, ``wevaljudge``, ``wevaladv``, ``wevaladvjudge``; the
families' samples are never mixed): the aggregate group, or the categories present. From
the logged samples (``--log_samples``) it adds what lm-eval groups cannot hold: the
per-requirement-type pairwise accuracy pooled over *all* documents of the family, and score
diagnostics (score range, mean score and mean adjacent margin by gold rank).
``--baseline length`` adds a row per data set and family scored by response word count,
computed from the logged documents themselves. ``--plot FILE.png`` draws it all.
Every metric of a row with logged samples carries a 95 % bootstrap CI over documents
(:func:`add_cis`); ``--compare A B`` is a paired bootstrap of A - B on the documents both
runs scored (:func:`compare`). Metric definitions: docs/metrics.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from openrlhf_reward.schema import CATEGORIES, REQUIREMENT_TYPES, DataError
from weval_tasks.stats import DEFAULT_RESAMPLES, DEFAULT_SEED

HEADLINE = ("correlation", "il", "pl", "top1", "bon", "pairwise_acc", "tie_rate")
# Longest first so that "wevaladvjudge-x" is not taken for the "wevaladv" family.
FAMILIES = ("wevaladvjudge", "wevaljudge", "wevaladv", "weval")
ADV_FAMILIES = ("wevaladv", "wevaladvjudge")
BASELINES = ("length",)


def _attacks() -> tuple[str, ...]:
    from weval_tasks.attacks import ATTACKS

    return ATTACKS


def hack_columns() -> tuple[str, ...]:
    return ("hack_rate", "hack_rate_keys", *(f"hack_{a}" for a in _attacks()),
            "margin", "margin_keys", *(f"margin_{a}" for a in _attacks()))


def task_family(task: str) -> str | None:
    """The family a task or group name belongs to (``None`` for other tasks)."""
    for fam in FAMILIES:
        if task == f"{fam}_all" or task.startswith(f"{fam}-"):
            return fam
    return None


# ---- run labels --------------------------------------------------------------------------


def _data_label(results: dict[str, Any]) -> str:
    files: set[str] = set()
    for name, cfg in results.get("configs", {}).items():
        if task_family(name) is None:
            continue
        data = (cfg.get("metadata") or {}).get("data_files")
        if not data:
            files.add("demo")
        else:
            files.update(Path(str(f)).name for f in ([data] if isinstance(data, str) else data))
    return "+".join(sorted(files)) or "demo"


def _model_label(results: dict[str, Any], path: Path) -> str:
    cfg = results.get("config", {})
    model = str(cfg.get("model") or path.parent.name)
    args = cfg.get("model_args") or {}
    if isinstance(args, str):
        pairs = [kv.split("=", 1) for kv in args.split(",") if "=" in kv]
        args = {k.strip(): v.strip() for k, v in pairs}
    keep = ("backend", "pretrained", "model", "url", "dtype")
    detail = ",".join(
        f"{k}={Path(v).name if k == 'pretrained' else v}" for k, v in args.items() if k in keep and v
    )
    return f"{model}({detail})" if detail else model


# ---- per-document scores from logged samples -----------------------------------------


Scored = tuple[str, Any, list[float], dict[str, float] | None]  # (task, document, real, attacks)


def sample_scores(family: str, rec: dict[str, Any]) -> tuple[Any, list[float], dict[str, float] | None]:
    """(document, real candidate scores, {attack: score} or None) of one logged sample."""
    from weval_tasks.docs import document_from_row
    from weval_tasks.metrics import mean_per_candidate, verdict_scores

    doc = document_from_row(rec["doc"])
    n = len(doc.candidates)
    k = len(_attacks()) if family in ADV_FAMILIES else 0
    if family.endswith("judge"):  # (Yes, No) log-likelihood pairs: score them as the tasks do
        values = mean_per_candidate(verdict_scores([r[0] for r in rec["resps"]]), n + k)
    else:
        values = [float(r[0][0]) for r in rec["resps"]]
    if len(values) != n + k:
        raise DataError(f"sample of document {doc.id!r}: {len(values)} scores for {n} candidates + {k} attacks")
    attacks = dict(zip(_attacks(), values[n:])) if k else None
    return doc, values[:n], attacks


def baseline_scores(name: str, family: str, doc) -> tuple[list[float], dict[str, float] | None]:
    """Scores of a data-only baseline (``length``: response word count, as the rules count words)."""
    from openrlhf_reward.text import count_words
    from weval_tasks.attacks import build_attacks

    if name != "length":
        raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
    real = [float(count_words(c.response)) for c in doc.candidates]
    attacks = None
    if family in ADV_FAMILIES:
        attacks = {a: float(count_words(t)) for a, t in build_attacks(doc).items()}
    return real, attacks


def summarise(family: str, items: Iterable[Scored]) -> dict[str, Any]:
    """Everything the report shows, from per-document scores (task, doc, real, attacks).

    ``tasks`` holds the per-task means and the family mean over all documents (keyed
    ``<family>_all``), exactly as the tasks compute them; ``per_type`` the pooled per-type
    accuracy (``type_pairs``: its [correct, total] pair counts); ``diagnostics`` the score range and, per gold rank, the mean score and the mean
    margin to the next gold rank; ``per_doc`` one entry per document (task, id, metrics,
    per-type pair counts), what the bootstrap resamples.
    """
    from weval_tasks.attacks import RATE_GROUPS
    from weval_tasks.metrics import document_metrics, hack_metrics, requirement_type_pairs

    per_task: dict[str, list[dict[str, float]]] = defaultdict(list)
    pooled: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_rank: dict[int, list[float]] = defaultdict(list)
    gaps: dict[int, list[float]] = defaultdict(list)
    lo, hi = float("inf"), float("-inf")
    per_doc: list[dict[str, Any]] = []
    for task, doc, real, attacks in items:
        gold = [c.gold_rank for c in doc.candidates]
        m = {k: 100.0 * v for k, v in document_metrics(gold, real).items()}
        if attacks:
            m.update({k: 100.0 * v if k.startswith("hack_") else v
                      for k, v in hack_metrics(gold, real, attacks, RATE_GROUPS).items()})
        per_task[task].append(m)
        types = {r.id: r.type for r in doc.requirements}
        doc_pairs = requirement_type_pairs(gold, real, [c.dropped for c in doc.candidates], types)
        for t, (c, tot) in doc_pairs.items():
            pooled[t][0] += c
            pooled[t][1] += tot
        per_doc.append({"task": task, "id": doc.id, "metrics": m, "pairs": doc_pairs})
        score_of = dict(zip(gold, real))
        for g, s in score_of.items():
            by_rank[g].append(s)
            if g + 1 in score_of:
                gaps[g].append(s - score_of[g + 1])
        lo, hi = min(lo, *real), max(hi, *real)
    every = [m for ms in per_task.values() for m in ms]
    tasks = {t: _mean_dicts(ms) for t, ms in sorted(per_task.items())}
    if every:
        tasks[f"{family}_all"] = _mean_dicts(every)
    return {
        "tasks": tasks,
        "per_type": {t: 100.0 * c / tot for t, (c, tot) in pooled.items() if tot},
        "type_pairs": {t: list(ct) for t, ct in pooled.items()},
        "diagnostics": {
            "n_docs": len(every),
            "score_min": lo if every else None,
            "score_max": hi if every else None,
            "mean_score_by_rank": {g: sum(v) / len(v) for g, v in sorted(by_rank.items())},
            "mean_margin_by_rank": {g: sum(v) / len(v) for g, v in sorted(gaps.items())},
        },
        "per_doc": per_doc,
    }


def _mean_dicts(ms: list[dict[str, float]]) -> dict[str, float]:
    return {k: sum(m[k] for m in ms) / len(ms) for k in ms[0]}


# ---- loading runs --------------------------------------------------------------------


def load_run(results_file: Path) -> list[dict[str, Any]]:
    """One report row per task family of one run (lm-eval's results file + its samples)."""
    results = json.loads(results_file.read_text())
    stamp = results_file.stem[len("results_") :]
    metric_names = (*HEADLINE, *hack_columns())
    by_family: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for name, vals in results.get("results", {}).items():
        fam = task_family(name)
        if fam is not None:
            by_family[fam][name] = {m: vals[f"{m},none"] for m in metric_names if f"{m},none" in vals}
    samples: dict[str, list[Scored]] = defaultdict(list)
    docs: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for f in sorted(results_file.parent.glob(f"samples_*_{stamp}.jsonl")):
        task = f.name[len("samples_") : -len(f"_{stamp}.jsonl")]
        fam = task_family(task)
        if fam is None:
            continue
        for lineno, line in enumerate(f.read_text().splitlines(), 1):
            try:
                doc, real, attacks = sample_scores(fam, json.loads(line))
            except (KeyError, ValueError, IndexError, TypeError) as e:
                raise DataError(f"{f}, line {lineno}: not a WEval sample record ({e})") from None
            samples[fam].append((task, doc, real, attacks))
            docs[fam].append((task, doc))
    label = _model_label(results, results_file)
    data = _data_label(results)
    rows = []
    for fam in sorted(by_family, key=FAMILIES[::-1].index):
        summary = (summarise(fam, samples[fam]) if samples[fam]
                   else {"per_type": {}, "type_pairs": {}, "diagnostics": {}, "per_doc": []})
        rows.append({
            "label": label, "data": data, "family": fam, "file": str(results_file),
            "tasks": by_family[fam], "per_type": summary["per_type"], "type_pairs": summary["type_pairs"],
            "diagnostics": summary["diagnostics"], "docs": docs[fam], "baseline": False,
            "per_doc": summary["per_doc"], "scored": samples[fam],
        })
    return rows


def baseline_rows(name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``name`` baseline row per distinct (data set, family) among the rows with samples."""
    out, seen = [], set()
    for row in rows:
        if not row["docs"]:
            continue
        key = (row["family"], tuple(sorted((t, d.id) for t, d in row["docs"])))
        if key in seen:
            continue
        seen.add(key)
        fam = row["family"]
        scored = [(t, d, *baseline_scores(name, fam, d)) for t, d in row["docs"]]
        s = summarise(fam, scored)
        tasks = {t: v for t, v in s["tasks"].items() if t in row["tasks"]} or s["tasks"]
        out.append({
            "label": f"{name} baseline", "data": row["data"], "family": fam, "file": row["file"],
            "tasks": tasks, "per_type": s["per_type"], "type_pairs": s["type_pairs"],
            "diagnostics": s["diagnostics"],
            "docs": row["docs"], "baseline": True, "per_doc": s["per_doc"], "scored": scored,
        })
    return out


# ---- confidence intervals and paired comparison ---------------------------------------


def _docs_of(row: dict[str, Any], task: str) -> list[dict[str, Any]]:
    """The per-document entries behind one task value (all of the family's for ``<family>_all``)."""
    if task.endswith("_all"):
        return row["per_doc"]
    return [d for d in row["per_doc"] if d["task"] == task]


def _columns(entries: list[dict[str, Any]]) -> tuple[dict[str, list[float]], dict[str, tuple[list[int], list[int]]]]:
    """Per-document metric columns and per-type (correct, total) columns of some documents."""
    keys = [k for k in entries[0]["metrics"] if all(k in e["metrics"] for e in entries)]
    per_doc = {k: [e["metrics"][k] for e in entries] for k in keys}
    types = sorted({t for e in entries for t in e["pairs"]})
    ratios = {f"acc_{t}": ([e["pairs"].get(t, (0, 0))[0] for e in entries],
                           [e["pairs"].get(t, (0, 0))[1] for e in entries]) for t in types}
    return per_doc, ratios


def add_cis(rows: list[dict[str, Any]], n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> None:
    """Attach a 95 % bootstrap CI over documents to every metric of every row with samples.

    Sets ``row["ci"][task][metric]`` = [lo, hi], ``row["n_docs"][task]`` and
    ``row["per_type_ci"][type]`` (per-type accuracy is pooled over the whole family, so its
    interval resamples all the family's documents). Rows without samples get none.
    """
    from weval_tasks.stats import bootstrap

    for row in rows:
        row["ci"], row["n_docs"], row["per_type_ci"] = {}, {}, {}
        if not row.get("per_doc"):
            continue
        for task in row["tasks"]:
            entries = _docs_of(row, task)
            if not entries:
                continue
            per_doc, ratios = _columns(entries)
            row["ci"][task] = bootstrap(per_doc, None, n_resamples, seed)
            row["n_docs"][task] = len(entries)
        per_doc, ratios = _columns(row["per_doc"])
        row["per_type_ci"] = {k[len("acc_"):]: v for k, v in bootstrap({}, ratios, n_resamples, seed).items()} if ratios else {}


def lower_is_better(metric: str) -> bool:
    return metric == "tie_rate" or metric.startswith("hack_")


def compare(a: dict[str, Any], b: dict[str, Any], n_resamples: int = DEFAULT_RESAMPLES,
            seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Paired bootstrap of A - B for one task family of two runs scored on the same documents.

    Raises :class:`DataError` naming the mismatch when the runs scored different documents
    (ids, or the same id with other candidates). Margins are in each scorer's own units and
    are left out. Returns {"n_docs", "metrics": {metric: {"a", "b", "diff", "ci95", "verdict"}}}.
    """
    from weval_tasks.stats import paired_bootstrap

    fam = a["family"]
    da = {(e["task"], e["id"]): e for e in a["per_doc"]}
    db = {(e["task"], e["id"]): e for e in b["per_doc"]}
    if not da or not db:
        raise DataError(f"--compare needs logged samples of both runs ({fam}); rerun weval with --log_samples")
    only_a, only_b = sorted(set(da) - set(db)), sorted(set(db) - set(da))
    if only_a or only_b:
        def names(keys: list[tuple[str, str]]) -> str:
            shown = ", ".join(f"{i} ({t})" for t, i in keys[:5])
            return shown + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        raise DataError(
            f"--compare: the runs scored different documents ({fam}): {len(only_a)} only in A"
            + (f" [{names(only_a)}]" if only_a else "") + f", {len(only_b)} only in B"
            + (f" [{names(only_b)}]" if only_b else "") + "; a paired comparison needs the same documents")
    docs_a = {(t, d.id): d for t, d in a["docs"]}
    docs_b = {(t, d.id): d for t, d in b["docs"]}
    changed = sorted(k for k in docs_a if k in docs_b and docs_a[k].to_dict() != docs_b[k].to_dict())
    if changed:
        raise DataError(f"--compare: {len(changed)} document(s) share an id but differ between the runs ({fam}): "
                        + ", ".join(i for _, i in changed[:5]))
    keys = sorted(da)
    ea, eb = [da[k] for k in keys], [db[k] for k in keys]
    ca, ra = _columns(ea)
    cb, rb = _columns(eb)
    ca = {k: v for k, v in ca.items() if not k.startswith("margin")}
    res = paired_bootstrap(ca, cb, ra, rb, n_resamples, seed)
    # the report's column order: ranking metrics, per-type accuracy, hack rates, per attack
    order = [*HEADLINE, *(f"acc_{t}" for t in REQUIREMENT_TYPES), *hack_columns()]
    out = {}
    for k, r in sorted(res.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)):
        va = sum(ca[k]) / len(keys) if k in ca else (100.0 * sum(ra[k][0]) / sum(ra[k][1]) if sum(ra[k][1]) else None)
        vb = sum(cb[k]) / len(keys) if k in cb else (100.0 * sum(rb[k][0]) / sum(rb[k][1]) if sum(rb[k][1]) else None)
        out[k] = {"a": va, "b": vb, **r, "verdict": _verdict(k, r["ci95"])}
    return {"family": fam, "n_docs": len(keys), "metrics": out}


def _verdict(metric: str, ci: list[float] | None) -> str:
    if ci is None:
        return "no data"
    lo, hi = ci
    if lo > 0 or hi < 0:
        a_higher = lo > 0
        return "A better" if a_higher != lower_is_better(metric) else "B better"
    return "no detectable difference at this size"


def render_compare(name_a: str, name_b: str, results: list[dict[str, Any]]) -> str:
    out = []
    for res in results:
        body = [[k, _fmt(m["a"]), _fmt(m["b"]), _fmt(m["diff"]), _fmt_ci(m["ci95"]), m["verdict"]]
                for k, m in res["metrics"].items()]
        out.append(f"Paired bootstrap, {res['family']}, {res['n_docs']} documents scored by both "
                   f"(A = {name_a}, B = {name_b}):\n\n"
                   + _table(["metric", "A", "B", "A - B", "95% CI of A - B", "verdict"], body))
    return "\n\n".join(out)


def disambiguate(rows: list[dict[str, Any]]) -> None:
    """Row names: "model(args) on data"; the output folder is added where that is not unique."""
    for r in rows:
        r["name"] = f"{r['label']} on {r['data']}"
    count = defaultdict(int)
    for r in rows:
        count[(r["name"], r["family"])] += 1
    for r in rows:
        if count[(r["name"], r["family"])] > 1 and not r["baseline"]:
            p = Path(r["file"])
            r["name"] += f" @ {p.parent.parent.name}/{p.parent.name}/{p.stem[len('results_'):]}"


def find_results(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files.extend(sorted(p.rglob("results_*.json")))
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    if not files:
        raise FileNotFoundError(f"no lm-eval results_*.json under {', '.join(paths)}")
    unique: dict[Path, Path] = {}
    for f in files:
        unique.setdefault(f.resolve(), f)  # a run named twice (folder and file) is one run
    return list(unique.values())


# ---- rendering -------------------------------------------------------------------------


def _fmt(v: Any, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _fmt_ci(ci: list[float] | None, digits: int = 1) -> str:
    return "" if ci is None else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _cell(row: dict[str, Any], task: str, metric: str, digits: int = 1) -> str:
    """A value with its 95 % CI, e.g. ``79.6 [70.1, 88.0]`` (the value alone without samples)."""
    v = row["tasks"][task].get(metric)
    ci = row.get("ci", {}).get(task, {}).get(metric)
    return _fmt(v, digits) + (f" {_fmt_ci(ci, digits)}" if v is not None and ci else "")


def _type_cell(row: dict[str, Any], t: str, show: bool) -> str:
    if not show or t not in row["per_type"]:
        return "-"
    ci = row.get("per_type_ci", {}).get(t)
    return _fmt(row["per_type"][t]) + (f" {_fmt_ci(ci)}" if ci else "")


def _shown_tasks(row: dict[str, Any]) -> list[str]:
    return [t for t in row["tasks"] if t.endswith("_all")] or sorted(row["tasks"])


def _table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def render_table(rows: list[dict[str, Any]]) -> str:
    """Three Markdown tables: ranking (+ hack rate), hack rate per attack, score diagnostics.

    Every metric cell holds the value and, where the run has logged samples, its 95 %
    bootstrap CI over documents (:func:`add_cis`).
    """
    if any("name" not in r for r in rows):
        disambiguate(rows)
    body = []
    for r in rows:
        tasks = _shown_tasks(r)
        for task in tasks:
            show = task.endswith("_all") or len(tasks) == 1
            body.append([r["name"], task, *(_cell(r, task, k) for k in HEADLINE),
                         *(_type_cell(r, t, show) for t in REQUIREMENT_TYPES),
                         _cell(r, task, "hack_rate"), _cell(r, task, "margin", 3)])
    out = [_table(["run", "task", *HEADLINE, *(f"acc_{t}" for t in REQUIREMENT_TYPES), "hack_rate", "margin"], body)]

    adv = [r for r in rows if r["family"] in ADV_FAMILIES]
    if adv:
        body = []
        for r in adv:
            for task in _shown_tasks(r):
                body.append([r["name"], task, _cell(r, task, "hack_rate"), _cell(r, task, "hack_rate_keys"),
                             *(_cell(r, task, f"hack_{a}") for a in _attacks()), _cell(r, task, "margin", 3)])
        out.append("Hack rate per attack (% of documents where the degenerate answer scores >= the "
                   "gold-worst real one; lower is better; hack_rate: the 7 degenerate answers, hack_rate_keys: the master "
                   "keys and self-claims) and mean margin (scorer units), with 95 % CIs:\n\n"
                   + _table(["run", "task", "hack_rate", "hack_rate_keys", *_attacks(), "margin"], body))

    diag = [r for r in rows if r["diagnostics"].get("n_docs")]
    if diag:
        ranks = sorted({g for r in diag for g in r["diagnostics"]["mean_score_by_rank"]})
        body = []
        for r in diag:
            d = r["diagnostics"]
            body.append([r["name"], r["family"], str(d["n_docs"]),
                         f"[{_fmt(d['score_min'], 3)}, {_fmt(d['score_max'], 3)}]",
                         *(_fmt(d["mean_score_by_rank"].get(g), 3) for g in ranks),
                         *(_fmt(d["mean_margin_by_rank"].get(g), 3) for g in ranks[:-1])])
        out.append("Score diagnostics (scorer units): range over real candidates, mean score by gold "
                   "rank, mean margin to the next gold rank:\n\n"
                   + _table(["run", "family", "docs", "range", *(f"score r{g}" for g in ranks),
                             *(f"margin r{g}-{g + 1}" for g in ranks[:-1])], body))
    return "\n\n".join(out)


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if any("name" not in r for r in rows):
        disambiguate(rows)
    fig, axes = plt.subplots(2, 2, figsize=(15, 9))
    (ax_corr, ax_type), (ax_hack, ax_diag) = axes
    width = 0.8 / max(1, len(rows))

    def bars(ax, keys: list[str], values: Callable[[dict[str, Any]], list[tuple[float, list[float] | None]]]) -> None:
        for k, r in enumerate(rows):
            vals = values(r)
            ys = [v for v, _ in vals]
            # 95 % CI as error bars (none where the run has no samples)
            err = [[v - ci[0] if ci else 0 for v, ci in vals], [ci[1] - v if ci else 0 for v, ci in vals]]
            ax.bar([i + k * width for i in range(len(keys))], ys, width, label=f"{r['name']} [{r['family']}]",
                   yerr=err, capsize=2, error_kw={"elinewidth": 0.8})
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(keys))], keys, fontsize=8)

    def corr(r: dict[str, Any]) -> list[tuple[float, list[float] | None]]:
        vals = []
        for c in CATEGORIES:
            task = next((t for t in r["tasks"] if t.endswith(c)), None)
            v = r["tasks"][task].get("correlation") if task else None
            ci = r.get("ci", {}).get(task, {}).get("correlation") if task else None
            vals.append((float("nan"), None) if v is None else (v, ci))
        return vals

    bars(ax_corr, [c.replace("_", "\n") for c in CATEGORIES], corr)
    ax_corr.set_ylabel("Correlation (Kendall tau-a x 100)")
    ax_corr.set_title("WEval correlation by task category (bars: 95% bootstrap CI)")
    ax_corr.axhline(0, color="black", linewidth=0.5)

    bars(ax_type, list(REQUIREMENT_TYPES),
         lambda r: [(r["per_type"].get(t, float("nan")), r.get("per_type_ci", {}).get(t)) for t in REQUIREMENT_TYPES])
    ax_type.set_ylabel("adjacent-pair accuracy (%)")
    ax_type.set_ylim(0, 100)
    ax_type.set_title("Accuracy by dropped requirement type")

    def hacks(r: dict[str, Any]) -> list[tuple[float, list[float] | None]]:
        tasks = r["tasks"]
        key = f"{r['family']}_all" if f"{r['family']}_all" in tasks else (next(iter(tasks)) if len(tasks) == 1 else None)
        group, cis = (tasks[key], r.get("ci", {}).get(key, {})) if key else ({}, {})
        return [(group.get(k, float("nan")), cis.get(k))
                for k in ("hack_rate", "hack_rate_keys", *(f"hack_{a}" for a in _attacks()))]

    bars(ax_hack, ["degenerate", "keys", *_attacks()], hacks)
    plt.setp(ax_hack.get_xticklabels(), rotation=45, ha="right")  # 18 groups: labels would overlap
    ax_hack.set_ylabel("hack rate (%), lower is better")
    ax_hack.set_ylim(0, 100)
    ax_hack.set_title("Degenerate answer scores >= gold-worst real answer (wevaladv)")

    for r in rows:
        d = r["diagnostics"]
        if not d.get("n_docs"):
            continue
        lo, hi = d["score_min"], d["score_max"]
        ranks = list(d["mean_score_by_rank"])
        scale = (hi - lo) or 1.0
        ys = {g: (d["mean_score_by_rank"][g] - lo) / scale for g in ranks}
        [line] = ax_diag.plot(ranks, list(ys.values()), marker="o",
                              label=f"{r['name']} [{r['family']}] range [{lo:.3g}, {hi:.3g}]")
        # mean margin to the next gold rank, in scorer units, between the two points
        for g, m in d["mean_margin_by_rank"].items():
            if g + 1 in ys:
                ax_diag.annotate(f"{m:.3g}", ((2 * g + 1) / 2, (ys[g] + ys[g + 1]) / 2), fontsize=6,
                                 color=line.get_color(), ha="center")
    ax_diag.xaxis.get_major_locator().set_params(integer=True)
    ax_diag.set_xlabel("gold rank (1 = full instruction)")
    ax_diag.set_ylabel("mean score, scaled to the run's score range")
    ax_diag.set_title("Mean score by gold rank (labels: mean margin to the next rank, scorer units)")
    handles, labels = ax_corr.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=2)
    if ax_diag.lines:
        ax_diag.legend(fontsize=6)
    fig.tight_layout(rect=(0, 0.04 + 0.02 * ((len(rows) + 1) // 2), 1, 1))
    fig.savefig(out, dpi=120)
    plt.close(fig)


_INTERNAL = ("docs", "per_doc", "scored", "ci", "n_docs", "per_type_ci")


def json_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for ``--json``: every metric as {"value", "ci95", "n_docs"} (ci95/n_docs null
    for a run without logged samples)."""
    out = []
    for r in rows:
        j = {k: v for k, v in r.items() if k not in _INTERNAL}
        cis, ns = r.get("ci", {}), r.get("n_docs", {})
        j["tasks"] = {t: {k: {"value": v, "ci95": cis.get(t, {}).get(k), "n_docs": ns.get(t)}
                          for k, v in m.items()} for t, m in r["tasks"].items()}
        n_all = len(r.get("per_doc") or []) or None
        j["per_type"] = {t: {"value": v, "ci95": r.get("per_type_ci", {}).get(t), "n_docs": n_all}
                         for t, v in r["per_type"].items()}
        out.append(j)
    return out


def _one_run(path: str) -> list[dict[str, Any]]:
    files = find_results([path])
    if len(files) != 1:
        raise DataError(f"--compare: {path} holds {len(files)} runs; name one results_*.json file")
    return load_run(files[0])


def compare_runs(path_a: str, path_b: str, n_resamples: int = DEFAULT_RESAMPLES,
                 seed: int = DEFAULT_SEED) -> tuple[str, str, list[dict[str, Any]]]:
    """Paired comparison of two runs, per task family both hold: (name A, name B, results)."""
    rows_a, rows_b = _one_run(path_a), _one_run(path_b)
    by_b = {r["family"]: r for r in rows_b}
    common = [r for r in rows_a if r["family"] in by_b]
    if not common:
        raise DataError(f"--compare: no task family in both runs (A: {', '.join(r['family'] for r in rows_a)}; "
                        f"B: {', '.join(r['family'] for r in rows_b)})")
    disambiguate(rows_a + rows_b)
    results = [compare(r, by_b[r["family"]], n_resamples, seed) for r in common]
    return rows_a[0]["name"], rows_b[0]["name"], results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="weval report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="lm-eval output folders or results_*.json files")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG comparison plot here")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument("--baseline", choices=BASELINES, action="append", default=[],
                        help="add a baseline row per data set and family, scored from the logged samples")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                        help="paired bootstrap of A - B over the documents both runs scored (one run each)")
    parser.add_argument("--n-resamples", type=int, default=DEFAULT_RESAMPLES,
                        help=f"bootstrap resamples for the 95%% CIs (default {DEFAULT_RESAMPLES})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="bootstrap seed (default %(default)s)")
    args = parser.parse_args(argv)
    if args.n_resamples < 1:
        parser.error("--n-resamples must be >= 1")
    if args.compare:
        if args.paths or args.baseline or args.plot:
            parser.error("--compare A B takes no other runs, --baseline or --plot")
        try:
            name_a, name_b, results = compare_runs(*args.compare, n_resamples=args.n_resamples, seed=args.seed)
        except (FileNotFoundError, json.JSONDecodeError, DataError) as e:
            print(f"weval report: error: {e}", file=sys.stderr)
            return 2
        print(render_compare(name_a, name_b, results))
        if args.json:
            args.json.write_text(json.dumps({"a": name_a, "b": name_b, "families": results}, indent=2))
        return 0
    if not args.paths:
        parser.error("give run folders / results files, or --compare A B")
    try:
        rows = [row for f in find_results(args.paths) for row in load_run(f)]
        if not rows:
            raise DataError(f"no WEval task results in {', '.join(args.paths)}")
        for name in args.baseline:
            extra = baseline_rows(name, rows)
            if not extra:
                raise DataError(f"--baseline {name} needs logged samples; rerun weval with --log_samples")
            rows += extra
    except (FileNotFoundError, json.JSONDecodeError, DataError) as e:
        print(f"weval report: error: {e}", file=sys.stderr)
        return 2
    disambiguate(rows)
    add_cis(rows, args.n_resamples, args.seed)
    print(render_table(rows))
    if args.json:
        args.json.write_text(json.dumps(json_rows(rows), indent=2))
    if args.plot:
        plot(rows, args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
