"""End-to-end lm-eval runs: the rules tasks through `weval`, the judge tasks through stock
`lm_eval --model hf` on a tiny random LM, and bad input through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from openrlhf_reward.checks import run_check
from openrlhf_reward.schema import CATEGORIES, load_weval_jsonl
from weval_tasks import DEMO_DATA, TASKS_DIR

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _cli(name: str, module: str) -> list[str]:
    exe = BIN / name
    return [str(exe)] if exe.exists() else [sys.executable, "-m", module]


def run_cli(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def read_outputs(out: Path) -> tuple[dict, dict[str, list[dict]]]:
    [res_file] = sorted(out.rglob("results_*.json"))
    samples = {}
    for f in out.rglob("samples_*.jsonl"):
        task = f.name[len("samples_") :].rsplit("_", 1)[0]
        samples[task] = [json.loads(line) for line in f.read_text().splitlines()]
    return json.loads(res_file.read_text()), samples


# ---- an independent computation of the expected values ---------------------------------


def rules_score(doc, response: str) -> float:
    checks = [run_check(response, r.check) for r in doc.requirements if r.check is not None]
    return sum(checks) / len(checks)


def expected_doc_metrics(gold: list[int], s: list[float]) -> dict[str, float]:
    n = len(gold)
    pairs = [(i, j) for i in range(n) for j in range(n) if i < j]
    sign = lambda x: (x > 0) - (x < 0)  # noqa: E731
    concord = [sign(s[i] - s[j]) * sign(gold[j] - gold[i]) for i, j in pairs]
    # pessimistic position: everyone scored higher, plus tied ones that are gold-worse
    pos = [sum(s[j] > s[i] or (s[j] == s[i] and gold[j] > gold[i]) for j in range(n)) for i in range(n)]
    best = gold.index(min(gold))
    return {
        "correlation": 100 * sum(concord) / len(pairs),
        "pairwise_acc": 100 * sum(c == 1 for c in concord) / len(pairs),
        "il": 100 * (1 - sum(abs(pos[i] - (gold[i] - 1)) for i in range(n)) / n / (n - 1)),
        "pl": 100.0 * all(c == 1 for c in concord),
        "top1": 100.0 * all(s[best] > s[j] for j in range(n) if j != best),
        # RewardBench 2 best-of-n: the gold best shares the top score with k-1 others -> 1/k
        "bon": 100.0 * (s[best] == max(s)) / sum(v == max(s) for v in s),
        "tie_rate": 100 * sum(s[i] == s[j] for i, j in pairs) / len(pairs),
    }


def expected_rules_results(path: str) -> dict[str, dict[str, float]]:
    per_task: dict[str, list[dict]] = defaultdict(list)
    type_pairs: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for doc in load_weval_jsonl(path):
        cands = sorted(doc.candidates, key=lambda c: c.gold_rank)
        s = [rules_score(doc, c.response) for c in cands]
        task = f"weval-{doc.category}"
        per_task[task].append(expected_doc_metrics([c.gold_rank for c in cands], s))
        for a, b in zip(range(len(cands)), range(1, len(cands))):
            (rid,) = set(cands[b].dropped) - set(cands[a].dropped)
            t = next(r.type for r in doc.requirements if r.id == rid)
            for key in (task, "weval_all"):
                type_pairs[key][t][0] += s[a] > s[b]
                type_pairs[key][t][1] += 1
    out = {}
    all_docs = [m for ms in per_task.values() for m in ms]
    for task, ms in [*per_task.items(), ("weval_all", all_docs)]:
        out[task] = {k: sum(m[k] for m in ms) / len(ms) for k in ms[0]}
        for t, (c, tot) in type_pairs.get(task, {}).items():
            out[task][f"acc_{t}"] = 100 * c / tot
    return out


# ---- tests ----------------------------------------------------------------------------


def test_rules_tasks_through_weval_match_independent_computation(tmp_path):
    out = tmp_path / "out"
    proc = run_cli(
        [*_cli("weval", "weval_tasks"), "--model", "rules", "--tasks", "weval_*",
         "--output_path", str(out), "--log_samples"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the printed table has every category and the aggregate row
    for name in ["weval_all", *(f"weval-{c}" for c in CATEGORIES)]:
        assert name in proc.stdout
    results, samples = read_outputs(out)
    expected = expected_rules_results(DEMO_DATA)
    assert set(results["results"]) == set(expected)
    for task, metrics in expected.items():
        for metric, value in metrics.items():
            if task == "weval_all" and metric.startswith("acc_"):
                continue  # pooled per-type accuracy is not a group metric; see `weval report`
            got = results["results"][task][f"{metric},none"]
            assert got == pytest.approx(value, abs=1e-9), (task, metric)
    # `weval report` pools per-type accuracy over all documents from the samples, exactly.
    from weval_tasks.report import main as report_main

    assert report_main([str(out), "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")]) == 0
    [run] = json.loads((tmp_path / "r.json").read_text())
    want = {k[len("acc_"):]: v for k, v in expected["weval_all"].items() if k.startswith("acc_")}
    assert {t: v["value"] for t, v in run["per_type"].items()} == pytest.approx(want)
    corr = run["tasks"]["weval_all"]["correlation"]
    assert corr["value"] == pytest.approx(expected["weval_all"]["correlation"])
    assert corr["n_docs"] == 25 and corr["ci95"][0] < corr["value"] < corr["ci95"][1]
    assert (tmp_path / "r.png").stat().st_size > 10_000
    # per-document samples: the per-candidate scores and the per-document metric values
    docs = {d.id: d for d in load_weval_jsonl(DEMO_DATA)}
    cw = samples["weval-creative_writing"]
    assert len(cw) == sum(d.category == "creative_writing" for d in docs.values())
    for rec in cw:
        doc = docs[rec["doc"]["id"]]
        scores = [float(r[0][0]) for r in rec["resps"]]
        assert scores == [rules_score(doc, c.response) for c in doc.candidates]
        gold = [c.gold_rank for c in doc.candidates]
        for k, v in expected_doc_metrics(gold, scores).items():
            assert rec[k] == pytest.approx(v)


def test_readme_demo_figures_for_rules_match_the_computation():
    """The README's `rules` figures on the demo set are what the metrics give (the weval run
    itself is checked against the same computation above)."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    m = re.search(r"On the demo set the `rules` scorer gets Correlation ([\d.]+), IL ([\d.]+), PL ([\d.]+), "
                  r"top-1 ([\d.]+),\s+tie rate ([\d.]+)", readme)
    assert m, "README no longer states the demo figures in the expected sentence"
    got = expected_rules_results(DEMO_DATA)["weval_all"]
    stated = dict(zip(("correlation", "il", "pl", "top1", "tie_rate"), map(float, m.groups())))
    assert stated == {k: round(got[k], 1) for k in stated}


def test_weval_runs_on_a_user_file_via_metadata(tmp_path):
    # A user's own file: two demo documents with one candidate's response replaced.
    docs = [d for d in load_weval_jsonl(DEMO_DATA) if d.category == "academic_writing"][:2]
    rows = [d.to_dict() for d in docs]
    f = tmp_path / "mine.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    proc = run_cli(
        [*_cli("weval", "weval_tasks"), "--model", "rules", "--tasks", "weval-academic_writing",
         "--metadata", json.dumps({"data_files": str(f)}), "--output_path", str(out), "--log_samples"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, samples = read_outputs(out)
    assert sorted(r["doc"]["id"] for r in samples["weval-academic_writing"]) == sorted(d.id for d in docs)


def test_bad_data_file_gives_a_clear_error_not_a_traceback(tmp_path):
    bad = json.loads(Path(DEMO_DATA).read_text().splitlines()[0])
    bad["candidates"][0]["gold_rank"] = 9
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps(bad) + "\n")
    proc = run_cli(
        [*_cli("weval", "weval_tasks"), "--model", "rules", "--tasks", "weval_*",
         "--metadata", json.dumps({"data_files": str(f)})],
        tmp_path,
    )
    assert proc.returncode == 2
    assert f"weval: error: document {bad['id']!r}" in proc.stderr
    assert "gold_rank 9 inconsistent" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_loader_errors_name_the_problem(tmp_path):
    sys.path.insert(0, str(Path(TASKS_DIR) / "weval"))
    try:
        import utils as weval_utils
    finally:
        sys.path.pop(0)
    from openrlhf_reward.schema import DataError

    with pytest.raises(DataError, match="data file not found"):
        weval_utils.load_weval(data_files=str(tmp_path / "nope.jsonl"), category="creative_writing")
    with pytest.raises(DataError, match="unknown category 'poems'"):
        weval_utils.load_weval(category="poems")
    row = json.loads(Path(DEMO_DATA).read_text().splitlines()[0])
    row["category"] = "poetry"
    (tmp_path / "cat.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match="unknown category 'poetry'"):
        weval_utils.load_weval(data_files=str(tmp_path / "cat.jsonl"), category="creative_writing")
    ok = load_weval_jsonl(DEMO_DATA)[0]
    (tmp_path / "one.jsonl").write_text(json.dumps(ok.to_dict()) + "\n")
    with pytest.raises(DataError, match="categories present"):
        weval_utils.load_weval(data_files=str(tmp_path / "one.jsonl"), category="academic_writing"
                               if ok.category != "academic_writing" else "creative_writing")


def _yes_loglikelihood(model, tok, context: str, continuation: str) -> float:
    """log P(continuation | context), split the way lm-eval's HFLM splits the pair."""
    import torch

    whole = tok(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tok(context, add_special_tokens=False)["input_ids"]
    cont = whole[len(ctx) :]
    ids = torch.tensor([whole])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
    return sum(logp[len(ctx) - 1 + k, t].item() for k, t in enumerate(cont))


def sample_requests(rec: dict) -> list[tuple[str, str]]:
    """(context, continuation) of every request of a logged lm-eval sample, in order."""
    args = rec["arguments"]
    if isinstance(args, list):
        return [(a[0], a[1]) for a in args]
    return [(args[f"gen_args_{k}"]["arg_0"], args[f"gen_args_{k}"]["arg_1"]) for k in range(len(args))]


def logged_verdicts(rec: dict) -> tuple[list[str], list[float]]:
    """The judge prompts of a logged judge sample and P(Yes) / (P(Yes) + P(No)) for each,
    recomputed here from the logged log-likelihoods of its (Yes, No) request pairs."""
    import math

    reqs, lls = sample_requests(rec), [float(r[0][0]) for r in rec["resps"]]
    assert len(reqs) == len(lls) and len(reqs) % 2 == 0
    prompts, probs = [], []
    for k in range(0, len(reqs), 2):
        (ctx_yes, yes), (ctx_no, no) = reqs[k], reqs[k + 1]
        assert ctx_yes == ctx_no and yes.strip() == "Yes" and no.strip() == "No" and yes[:-3] == no[:-2]
        prompts.append(ctx_yes)
        probs.append(math.exp(lls[k]) / (math.exp(lls[k]) + math.exp(lls[k + 1])))
    return prompts, probs


def test_judge_tasks_with_stock_lm_eval_hf(tmp_path, tiny_lm_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "out"
    proc = run_cli(
        [*_cli("lm_eval", "lm_eval"), "--model", "hf",
         "--model_args", f"pretrained={tiny_lm_dir},dtype=float32",
         "--include_path", TASKS_DIR, "--tasks", "wevaljudge_*", "--limit", "1",
         "--batch_size", "8", "--output_path", str(out), "--log_samples"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results, samples = read_outputs(out)
    assert "wevaljudge_all" in results["results"]
    assert {f"wevaljudge-{c}" for c in CATEGORIES} <= set(samples)

    # Recompute one document's candidate scores with transformers directly.
    from openrlhf_reward.judge_prompts import verdict_text

    rec = samples["wevaljudge-creative_writing"][0]
    docs = {d.id: d for d in load_weval_jsonl(DEMO_DATA)}
    doc = docs[rec["doc"]["id"]]
    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir, dtype="float32").eval()
    n_req = len(doc.requirements)
    prompts, probs = logged_verdicts(rec)  # two requests (" Yes", " No") per judge prompt
    assert len(prompts) == len(doc.candidates) * n_req
    # the backend's verdict prompt, as plain text; candidate-major
    assert prompts == [verdict_text(doc.prompt, c.response, r.text) for c in doc.candidates for r in doc.requirements]
    lls = [float(r[0][0]) for r in rec["resps"]]
    # spot-check prompts that fit the tiny model's 1024 positions (lm-eval cuts longer ones
    # from the left, which this recomputation does not)
    fits = [k for k, c in enumerate(prompts) if len(tok(c + " Yes")["input_ids"]) <= model.config.max_position_embeddings]
    assert len(fits) >= 3
    for k in (fits[0], fits[len(fits) // 2], fits[-1]):
        assert prompts[k].endswith("Answer:")
        assert lls[2 * k] == pytest.approx(_yes_loglikelihood(model, tok, prompts[k], " Yes"), abs=1e-3)
        assert lls[2 * k + 1] == pytest.approx(_yes_loglikelihood(model, tok, prompts[k], " No"), abs=1e-3)
    assert len(set(probs)) > 1 and all(0 < p < 1 for p in probs)
    scores = [sum(probs[i * n_req : (i + 1) * n_req]) / n_req for i in range(len(doc.candidates))]
    gold = [c.gold_rank for c in doc.candidates]
    for k, v in expected_doc_metrics(gold, scores).items():
        assert rec[k] == pytest.approx(v)
