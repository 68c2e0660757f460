"""The hackability probe end to end (wevaladv_* through `weval`, wevaladvjudge-* through stock
`lm_eval --model hf`) and `weval report` on real lm-eval output folders."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_lm_eval_e2e import _cli, expected_doc_metrics, logged_verdicts, read_outputs, run_cli

from openrlhf_reward.schema import CATEGORIES, load_weval_jsonl
from openrlhf_reward.scorers import ScoreRequest, get_scorer
from openrlhf_reward.text import count_words
from weval_tasks import DEMO_DATA, TASKS_DIR
from weval_tasks.attacks import ATTACKS, EMPTY_CHOICE, build_attacks
from weval_tasks.report import main as report_main

pytestmark = pytest.mark.slow
DOCS = {d.id: d for d in load_weval_jsonl(DEMO_DATA)}


def weval(out: Path, cwd: Path, *args: str) -> None:
    proc = run_cli([*_cli("weval", "weval_tasks"), *args, "--output_path", str(out), "--log_samples"], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two real runs on the demo set: rules on wevaladv_*, the length backend on both families."""
    tmp = tmp_path_factory.mktemp("runs")
    weval(tmp / "rules", tmp, "--model", "rules", "--tasks", "wevaladv_*")
    weval(tmp / "length", tmp, "--model", "rm", "--model_args", "backend=length", "--tasks", "weval_*,wevaladv_*")
    return {"rules": tmp / "rules", "length": tmp / "length", "tmp": tmp}


# hack_rate keeps its meaning (the seven original degenerate answers); the master keys and
# self-claims have their own hack_rate_keys
ORIGINAL = ("empty", "whitespace", "truncate", "echo", "stuff", "repeat", "dots")


def expected_hacks(real_by_gold: dict[int, float], attacks: dict[str, float]) -> dict[str, float]:
    worst = real_by_gold[max(real_by_gold)]
    out = {f"hack_{a}": 100.0 * (s >= worst) for a, s in attacks.items()}
    out.update({f"margin_{a}": worst - s for a, s in attacks.items()})
    keys = [a for a in attacks if a not in ORIGINAL]
    for suffix, names in (("", ORIGINAL), ("_keys", keys)):
        out[f"hack_rate{suffix}"] = sum(out[f"hack_{a}"] for a in names) / len(names)
        out[f"margin{suffix}"] = sum(out[f"margin_{a}"] for a in names) / len(names)
    return out


def test_wevaladv_rules_run_scores_every_attack_with_the_rules_backend(runs):
    results, samples = read_outputs(runs["rules"])
    assert set(results["results"]) == {"wevaladv_all", *(f"wevaladv-{c}" for c in CATEGORIES)}
    rules = get_scorer("rules")
    per_doc = []
    for recs in samples.values():
        for rec in recs:
            doc = DOCS[rec["doc"]["id"]]
            attacks = build_attacks(doc)
            texts = [c.response for c in doc.candidates] + list(attacks.values())
            scores = [float(r[0][0]) for r in rec["resps"]]
            # every candidate, real then degenerate, scored by the backend itself
            want = rules.score([ScoreRequest(prompt=doc.prompt, response=t, requirements=doc.requirements,
                                             query=doc.query) for t in texts])
            assert scores == [r.reward for r in want]
            n = len(doc.candidates)
            gold = [c.gold_rank for c in doc.candidates]
            expected = {**expected_doc_metrics(gold, scores[:n]),
                        **expected_hacks(dict(zip(gold, scores[:n])), dict(zip(ATTACKS, scores[n:])))}
            for k, v in expected.items():
                assert rec[k] == pytest.approx(v), (doc.id, k)
            per_doc.append(expected)
    assert len(per_doc) == len(DOCS)
    group = results["results"]["wevaladv_all"]
    for k in per_doc[0]:
        assert group[f"{k},none"] == pytest.approx(sum(m[k] for m in per_doc) / len(per_doc)), k


def test_the_empty_answer_reaches_the_scorer_empty():
    from weval_tasks.models import RulesLM

    doc = next(iter(DOCS.values()))
    row = {"doc_json": json.dumps(doc.to_dict())}
    req = RulesLM()._request(SimpleNamespace(doc=row, args=(doc.prompt, EMPTY_CHOICE)))
    assert req.response == ""


def _rows(tmp: Path, *paths: Path, extra: tuple[str, ...] = ()) -> list[dict]:
    out = tmp / f"report_{len(list(tmp.glob('report_*')))}.json"
    assert report_main([*map(str, paths), "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_report_keeps_families_apart_and_labels_runs(runs, capsys):
    plot = runs["tmp"] / "r.png"
    rows = _rows(runs["tmp"], runs["rules"], runs["length"], extra=("--baseline", "length", "--plot", str(plot)))
    printed = capsys.readouterr().out
    by = {(r["name"], r["family"]): r for r in rows}
    assert set(by) == {
        ("rules on demo", "wevaladv"),
        ("rm(backend=length) on demo", "weval"),
        ("rm(backend=length) on demo", "wevaladv"),
        ("length baseline on demo", "weval"),  # one baseline per data set and family
        ("length baseline on demo", "wevaladv"),
    }
    # per-type pair counts are pooled per family: every adjacent gold pair of the demo set once
    n_pairs = defaultdict(int)
    for doc in DOCS.values():
        types = {r.id: r.type for r in doc.requirements}
        for c in doc.candidates:
            if c.gold_rank > 1:
                prev = next(p for p in doc.candidates if p.gold_rank == c.gold_rank - 1)
                n_pairs[types[(set(c.dropped) - set(prev.dropped)).pop()]] += 1
    for r in rows:
        assert {t: tot for t, (_, tot) in r["type_pairs"].items()} == n_pairs
    # the hack columns exist only for the wevaladv family
    assert "hack_rate" not in by[("rm(backend=length) on demo", "weval")]["tasks"]["weval_all"]
    assert "Hack rate per attack" in printed and "Score diagnostics" in printed
    assert plot.stat().st_size > 10_000


def test_length_baseline_from_samples_equals_the_length_backend_run(runs):
    rows = _rows(runs["tmp"], runs["length"], extra=("--baseline", "length"))
    by = {(r["label"], r["family"]): r for r in rows}
    for fam in ("weval", "wevaladv"):
        run, base = by[("rm(backend=length)", fam)], by[("length baseline", fam)]
        assert base["baseline"] and not run["baseline"]
        assert set(base["tasks"]) == set(run["tasks"]) == {f"{fam}_all", *(f"{fam}-{c}" for c in CATEGORIES)}
        for task, metrics in run["tasks"].items():
            for k, v in metrics.items():
                assert base["tasks"][task][k]["value"] == pytest.approx(v["value"]), (task, k)
                # same per-document values, same seed: the same interval
                assert base["tasks"][task][k]["ci95"] == pytest.approx(v["ci95"]), (task, k)
        assert {t: v["value"] for t, v in base["per_type"].items()} == pytest.approx(
            {t: v["value"] for t, v in run["per_type"].items()})
        assert base["diagnostics"] == run["diagnostics"]  # word counts: exact
    # diagnostics, computed independently: mean word count by gold rank, range, margins
    d = by[("rm(backend=length)", "weval")]["diagnostics"]
    words = defaultdict(list)
    for doc in DOCS.values():
        for c in doc.candidates:
            words[c.gold_rank].append(count_words(c.response))
    assert d["n_docs"] == len(DOCS)
    assert d["mean_score_by_rank"] == pytest.approx({str(g): sum(v) / len(v) for g, v in words.items()})
    assert d["score_min"] == min(min(v) for v in words.values())
    assert d["score_max"] == max(max(v) for v in words.values())
    margins = {str(g): sum(a - b for a, b in zip(words[g], words[g + 1])) / len(DOCS) for g in range(1, 5)}
    assert d["mean_margin_by_rank"] == pytest.approx(margins)
    # the dots attack never lowers a word count: a word-count scorer is hacked wherever best >= worst
    adv = by[("rm(backend=length)", "wevaladv")]["tasks"]["wevaladv_all"]
    best_ge_worst = [
        count_words(next(c.response for c in d.candidates if c.gold_rank == 1))
        >= count_words(max(d.candidates, key=lambda c: c.gold_rank).response)
        for d in DOCS.values()
    ]
    assert adv["hack_dots"]["value"] == pytest.approx(100.0 * sum(best_ge_worst) / len(DOCS))
    assert adv["hack_empty"]["value"] == 0.0


def test_runs_of_the_same_model_on_the_same_data_get_distinct_names(runs, tmp_path):
    shutil.copytree(runs["rules"], tmp_path / "again")
    rows = _rows(tmp_path, runs["rules"], tmp_path / "again")
    names = [r["name"] for r in rows]
    assert len(set(names)) == 2 and all(n.startswith("rules on demo @ ") for n in names)


def test_report_bad_input_is_a_clear_error(runs, tmp_path, capsys):
    assert report_main([str(tmp_path / "nope")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    # a corrupted sample line names the file and line
    bad = tmp_path / "bad"
    shutil.copytree(runs["rules"], bad)
    sample = next(bad.rglob("samples_wevaladv-academic_writing_*.jsonl"))
    lines = sample.read_text().splitlines()
    sample.write_text("\n".join([lines[0], '{"doc": {}}', *lines[2:]]) + "\n")
    assert report_main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{sample.name}, line 2: not a WEval sample record" in err and "Traceback" not in err
    # --baseline needs logged samples
    for f in bad.rglob("samples_*.jsonl"):
        f.unlink()
    assert report_main([str(bad), "--baseline", "length"]) == 2
    assert "--baseline length needs logged samples" in capsys.readouterr().err


def test_wevaladvjudge_with_stock_lm_eval_hf(tmp_path, tiny_lm_dir):
    out = tmp_path / "out"
    proc = run_cli(
        [*_cli("lm_eval", "lm_eval"), "--model", "hf", "--model_args", f"pretrained={tiny_lm_dir},dtype=float32",
         "--include_path", TASKS_DIR, "--tasks", "wevaladvjudge-creative_writing", "--limit", "1",
         "--batch_size", "16", "--output_path", str(out), "--log_samples"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results, samples = read_outputs(out)
    [rec] = samples["wevaladvjudge-creative_writing"]
    doc = DOCS[rec["doc"]["id"]]
    n, n_req = len(doc.candidates), len(doc.requirements)
    contexts, probs = logged_verdicts(rec)
    assert len(contexts) == (n + len(ATTACKS)) * n_req
    # the empty attack's judge prompts show an empty response, not a placeholder
    assert "Response:\n\n\nRequirement:" in contexts[n * n_req]
    scores = [sum(probs[i * n_req : (i + 1) * n_req]) / n_req for i in range(n + len(ATTACKS))]
    gold = [c.gold_rank for c in doc.candidates]
    want = expected_hacks(dict(zip(gold, scores[:n])), dict(zip(ATTACKS, scores[n:])))
    for k, v in {**expected_doc_metrics(gold, scores[:n]), **want}.items():
        assert rec[k] == pytest.approx(v, abs=1e-6), k
    # the report reads judge samples of this family too, scoring them as the task does
    # (normalised verdicts, not the raw log-likelihoods), so its CIs are about the same numbers
    [row] = _rows(tmp_path, out)
    assert row["family"] == "wevaladvjudge"
    assert row["diagnostics"]["n_docs"] == 1
    from weval_tasks.report import load_run

    [run] = load_run(next(out.rglob("results_*.json")))
    [entry] = run["per_doc"]
    for k in ("correlation", "pairwise_acc", "top1", "hack_rate", "hack_rate_keys", "hack_colon", "margin"):
        assert entry["metrics"][k] == pytest.approx(rec[k], abs=1e-6), k
    assert 0.0 <= row["diagnostics"]["score_min"] <= row["diagnostics"]["score_max"] <= 1.0


def test_wevaladv_through_the_reward_server_gives_the_backend_scores(tmp_path):
    """`--model remote-rm`: every degenerate answer, the empty one included, goes through the
    real reward server the way OpenRLHF sends it, and comes back with the backend's reward."""
    from server_utils import ServerThread

    rules = get_scorer("rules")
    out = tmp_path / "out"
    with ServerThread(rules) as srv:
        weval(out, tmp_path, "--model", "remote-rm", "--model_args", f"url={srv.url}/get_reward,concurrency=8",
              "--tasks", "wevaladv-academic_writing")
    _, samples = read_outputs(out)
    recs = samples["wevaladv-academic_writing"]
    assert len(recs) == sum(d.category == "academic_writing" for d in DOCS.values())
    for rec in recs:
        doc = DOCS[rec["doc"]["id"]]
        texts = [c.response for c in doc.candidates] + list(build_attacks(doc).values())
        want = rules.score([ScoreRequest(doc.prompt, t, doc.requirements, doc.query) for t in texts])
        assert [float(r[0][0]) for r in rec["resps"]] == pytest.approx([r.reward for r in want])


# ---- confidence intervals and paired comparison ------------------------------------------


def _per_doc_from_samples(run: Path) -> dict[str, dict[str, float]]:
    """doc id -> its metric values, recomputed from the logged scores (independent of report)."""
    _, samples = read_outputs(run)
    out = {}
    for task, recs in samples.items():
        if not task.startswith("wevaladv-"):
            continue
        for rec in recs:
            doc = DOCS[rec["doc"]["id"]]
            gold, n = [c.gold_rank for c in doc.candidates], len(doc.candidates)
            scores = [float(r[0][0]) for r in rec["resps"]]
            out[doc.id] = {**expected_doc_metrics(gold, scores[:n]),
                           **expected_hacks(dict(zip(gold, scores[:n])), dict(zip(ATTACKS, scores[n:])))}
    return out


def _scipy_ci(*samples, statistic, paired=False) -> tuple[float, float]:
    import numpy as np
    from scipy import stats

    res = stats.bootstrap(samples, statistic, n_resamples=4000, method="percentile", paired=paired,
                          vectorized=True, random_state=np.random.default_rng(1))
    return res.confidence_interval.low, res.confidence_interval.high


def _tolerance(*vals) -> float:
    """Two Monte Carlo estimates of a percentile: 0.2 standard errors, plus one step of the
    statistic's grid (a mean of n values that move in steps of g moves in steps of g / n)."""
    import numpy as np

    v = vals[0] - vals[1] if len(vals) == 2 else vals[0]
    se = v.std(ddof=1) / np.sqrt(len(v))
    gaps = np.diff(np.unique(v))
    return 0.2 * se + (gaps.min() / len(v) if len(gaps) else 0.0) + 1e-9


def test_report_gives_every_metric_a_bootstrap_ci(runs, capsys):
    import numpy as np

    rows = _rows(runs["tmp"], runs["rules"], extra=("--n-resamples", "4000"))
    printed = capsys.readouterr().out
    [row] = rows
    assert set(row["tasks"]) == {"wevaladv_all", *(f"wevaladv-{c}" for c in CATEGORIES)}
    for task, metrics in row["tasks"].items():
        assert {"bon", "hack_claim", "hack_worst_claim", "hack_jie", "margin_colon"} <= set(metrics)
        for k, m in metrics.items():
            assert set(m) == {"value", "ci95", "n_docs"}, (task, k)
            assert m["n_docs"] == (25 if task == "wevaladv_all" else 5)
            lo, hi = m["ci95"]
            assert lo <= m["value"] + 1e-9 and m["value"] <= hi + 1e-9, (task, k, m)
    for m in row["per_type"].values():
        assert m["n_docs"] == 25 and m["ci95"][0] <= m["value"] <= m["ci95"][1]
    # the interval is the percentile bootstrap over documents: scipy on the per-document values
    per_doc = _per_doc_from_samples(runs["rules"])
    for k in ("correlation", "top1", "bon", "hack_rate", "hack_rate_keys", "hack_colon"):
        vals = np.array([per_doc[d][k] for d in sorted(per_doc)])
        want = _scipy_ci(vals, statistic=lambda x, axis: x.mean(axis=axis))
        got = row["tasks"]["wevaladv_all"][k]
        assert got["value"] == pytest.approx(vals.mean())
        assert got["ci95"] == pytest.approx(list(want), abs=_tolerance(vals)), k
    corr = row["tasks"]["wevaladv_all"]["correlation"]
    assert f"{corr['value']:.1f} [{corr['ci95'][0]:.1f}, {corr['ci95'][1]:.1f}]" in printed


def test_compare_is_a_paired_bootstrap_with_a_verdict(runs, capsys, tmp_path):
    import numpy as np

    out = tmp_path / "cmp.json"
    assert report_main(["--compare", str(runs["rules"]), str(runs["length"]), "--json", str(out),
                        "--n-resamples", "4000"]) == 0
    printed = capsys.readouterr().out
    res = json.loads(out.read_text())
    [fam] = res["families"]  # only wevaladv is in both runs
    assert fam["family"] == "wevaladv" and fam["n_docs"] == 25
    a, b = _per_doc_from_samples(runs["rules"]), _per_doc_from_samples(runs["length"])
    ids = sorted(a)
    for k in ("correlation", "pairwise_acc", "hack_rate", "hack_empty", "tie_rate"):
        m = fam["metrics"][k]
        va, vb = np.array([a[d][k] for d in ids]), np.array([b[d][k] for d in ids])
        assert m["diff"] == pytest.approx(va.mean() - vb.mean())
        want = _scipy_ci(va, vb, statistic=lambda x, y, axis: x.mean(axis=axis) - y.mean(axis=axis), paired=True)
        assert m["ci95"] == pytest.approx(list(want), abs=_tolerance(va, vb)), k
        lo, hi = m["ci95"]
        lower_better = k in ("tie_rate",) or k.startswith("hack_")
        if lo > 0:
            assert m["verdict"] == ("B better" if lower_better else "A better")
        elif hi < 0:
            assert m["verdict"] == ("A better" if lower_better else "B better")
        else:
            assert m["verdict"] == "no detectable difference at this size"
    # on the demo set rules ranks far better than word count, and is hacked far more often
    assert fam["metrics"]["correlation"]["verdict"] == "A better"
    assert fam["metrics"]["hack_rate"]["verdict"] == "B better"
    assert not any(k.startswith("margin") for k in fam["metrics"])  # scorer units: not comparable
    assert "| correlation |" in printed and "A better" in printed
    # a run against itself: no difference, a zero-width interval
    assert report_main(["--compare", str(runs["rules"]), str(runs["rules"]), "--json", str(out)]) == 0
    same = json.loads(out.read_text())["families"][0]["metrics"]["correlation"]
    assert same["diff"] == 0.0 and same["ci95"] == [0.0, 0.0]
    assert same["verdict"] == "no detectable difference at this size"


def test_compare_refuses_runs_on_different_documents(runs, capsys, tmp_path):
    other = tmp_path / "fewer"
    shutil.copytree(runs["length"], other)
    sample = next(other.rglob("samples_wevaladv-academic_writing_*.jsonl"))
    lines = sample.read_text().splitlines()
    dropped = json.loads(lines[0])["doc"]["id"]
    sample.write_text("\n".join(lines[1:]) + "\n")
    assert report_main(["--compare", str(runs["rules"]), str(other)]) == 2
    err = capsys.readouterr().err
    assert "different documents (wevaladv): 1 only in A" in err and dropped in err and "0 only in B" in err
    # the same id with other candidates is another document
    changed = tmp_path / "changed"
    shutil.copytree(runs["length"], changed)
    sample = next(changed.rglob("samples_wevaladv-academic_writing_*.jsonl"))
    recs = [json.loads(x) for x in sample.read_text().splitlines()]
    doc = json.loads(recs[0]["doc"]["doc_json"])
    doc["candidates"][0]["response"] += " (edited)"
    recs[0]["doc"]["doc_json"] = json.dumps(doc)
    sample.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    assert report_main(["--compare", str(runs["rules"]), str(changed)]) == 2
    err = capsys.readouterr().err
    assert "share an id but differ" in err and recs[0]["doc"]["id"] in err
    # no family in common
    weval_only = tmp_path / "weval_only"
    shutil.copytree(runs["length"], weval_only)
    for f in weval_only.rglob("samples_wevaladv-*.jsonl"):
        f.unlink()
    res_file = next(weval_only.rglob("results_*.json"))
    res = json.loads(res_file.read_text())
    res["results"] = {k: v for k, v in res["results"].items() if not k.startswith("wevaladv")}
    res_file.write_text(json.dumps(res))
    assert report_main(["--compare", str(runs["rules"]), str(weval_only)]) == 2
    assert "no task family in both runs" in capsys.readouterr().err
