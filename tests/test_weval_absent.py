"""WEval files that lack categories, and judge prompts with bounded responses.

`weval --tasks 'weval_*'` / `'wevaljudge_*'` on a file without some categories skips those
tasks (reported on stderr) and aggregates over the documents present; stock `lm_eval`
stops with a hint naming the task family in use. Judge prompts cut responses to
`max_response_chars`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_lm_eval_e2e import read_outputs

from openrlhf_reward.schema import CATEGORIES, DataError, load_weval_jsonl
from weval_tasks import DEMO_DATA, TASKS_DIR

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PRESENT = ("creative_writing", "academic_writing")


def _utils():
    spec = importlib.util.spec_from_file_location("weval_task_utils", Path(TASKS_DIR) / "weval" / "utils.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cli(name: str, module: str) -> list[str]:
    exe = BIN / name
    return [str(exe)] if exe.exists() else [sys.executable, "-m", module]


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("WEVAL_SKIP_ABSENT_CATEGORIES", None)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)


def _write(path: Path, docs) -> Path:
    path.write_text("".join(json.dumps(d.to_dict()) + "\n" for d in docs), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- unit


def test_truncate_middle_and_judge_contexts_bound_responses():
    from weval_tasks.docs import document_to_row

    u = _utils()
    assert u.truncate_middle("short", 100) == ("short", 0)
    assert u.truncate_middle("x" * 50, 0) == ("x" * 50, 0)  # 0 = never cut
    text = "a" * 3000 + "b" * 1000
    cut, removed = u.truncate_middle(text, 1000)
    assert removed == 3000 and cut.startswith("a" * 750) and cut.endswith("b" * 250)
    assert "[... 3000 characters omitted ...]" in cut

    doc = load_weval_jsonl(DEMO_DATA)[0]
    big = doc.to_dict()
    big["candidates"][0]["response"] = "-" * 2_000_000 + " the end"
    from openrlhf_reward.schema import WEvalDocument

    row = {**document_to_row(WEvalDocument.from_dict(big)), "max_response_chars": u.DEFAULT_MAX_RESPONSE_CHARS}
    ctxs = u.judge_contexts(row)
    n_req = len(doc.requirements)
    assert len(ctxs) == len(doc.candidates) * n_req
    assert max(len(c) for c in ctxs) < len(doc.prompt) + 16000 + 1000  # bounded by the budget
    assert "characters omitted" in ctxs[0] and ctxs[0].count("the end") == 1
    assert "characters omitted" not in ctxs[n_req]  # other candidates as they are
    row["max_response_chars"] = 0
    assert len(u.judge_contexts(row)[0]) > 2_000_000


def test_load_weval_absent_category_messages(tmp_path, monkeypatch):
    u = _utils()
    docs = [d for d in load_weval_jsonl(DEMO_DATA) if d.category in PRESENT]
    f = _write(tmp_path / "two.jsonl", docs)
    monkeypatch.delenv("WEVAL_SKIP_ABSENT_CATEGORIES", raising=False)
    with pytest.raises(DataError, match=r"--tasks wevaljudge-academic_writing,wevaljudge-creative_writing"):
        u.load_weval(str(f), "frameworks_plans", family="wevaljudge")
    with pytest.raises(DataError, match=r"--tasks weval-academic_writing,weval-creative_writing"):
        u.load_weval(str(f), "frameworks_plans")
    with pytest.raises(DataError, match="max_response_chars"):
        u.load_weval(str(f), "creative_writing", max_response_chars=-1)
    monkeypatch.setenv("WEVAL_SKIP_ABSENT_CATEGORIES", "1")  # as under `weval`: a marked stand-in
    split = u.load_weval(str(f), "frameworks_plans")["test"]
    assert len(split) == 1 and split[0]["weval_absent_category"] == "frameworks_plans"
    assert "weval_absent_category" not in u.load_weval(str(f), "creative_writing")["test"].column_names


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_weval_rules_on_a_file_lacking_categories(tmp_path):
    docs = [d for d in load_weval_jsonl(DEMO_DATA) if d.category in PRESENT]
    f = _write(tmp_path / "two.jsonl", docs)
    out = tmp_path / "out"
    p = _run([*_cli("weval", "weval_tasks.cli"), "--model", "rules", "--tasks", "weval_*",
              "--metadata", json.dumps({"data_files": str(f)}), "--output_path", str(out), "--log_samples"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    for c in CATEGORIES:
        assert (f"weval-{c} skipped" in p.stderr) == (c not in PRESENT)
    results, samples = read_outputs(out)
    assert set(samples) == {f"weval-{c}" for c in PRESENT}
    per_doc = [s["correlation"] for task in samples.values() for s in task]
    assert len(per_doc) == len(docs)
    assert results["results"]["weval_all"]["correlation,none"] == pytest.approx(sum(per_doc) / len(per_doc))


@pytest.mark.slow
def test_weval_judge_on_a_file_lacking_categories_with_a_huge_response(tmp_path, tiny_lm_dir):
    docs = [d.to_dict() for d in load_weval_jsonl(DEMO_DATA) if d.category == "creative_writing"][:2]
    docs[0]["candidates"][0]["response"] = "-" * 2_000_000 + " the end"
    from openrlhf_reward.schema import WEvalDocument

    f = _write(tmp_path / "one.jsonl", [WEvalDocument.from_dict(d) for d in docs])
    out = tmp_path / "out"
    p = _run([*_cli("weval", "weval_tasks.cli"), "--model", "hf",
              "--model_args", f"pretrained={tiny_lm_dir},dtype=float32", "--tasks", "wevaljudge_*",
              "--metadata", json.dumps({"data_files": str(f), "max_response_chars": 2000}),
              "--batch_size", "8", "--output_path", str(out), "--log_samples"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "wevaljudge-frameworks_plans skipped" in p.stderr
    results, samples = read_outputs(out)
    assert set(samples) == {"wevaljudge-creative_writing"}
    assert "wevaljudge_all" in results["results"]
    rec = next(s for s in samples["wevaljudge-creative_writing"] if s["doc"]["id"] == docs[0]["id"])
    args = rec["arguments"]
    contexts = [a[0] for a in args] if isinstance(args, list) else [v["arg_0"] for v in args.values()]
    assert max(len(c) for c in contexts) < 2_000_000 // 100  # the 2 MB answer went in cut
    assert any("characters omitted" in c for c in contexts)


@pytest.mark.slow
def test_stock_lm_eval_names_the_judge_family(tmp_path):
    docs = [d for d in load_weval_jsonl(DEMO_DATA) if d.category in PRESENT]
    f = _write(tmp_path / "two.jsonl", docs)
    p = _run([*_cli("lm_eval", "lm_eval"), "--model", "dummy", "--include_path", TASKS_DIR,
              "--tasks", "wevaljudge_*", "--metadata", json.dumps({"data_files": str(f)})], tmp_path)
    assert p.returncode != 0
    assert "--tasks wevaljudge-academic_writing,wevaljudge-creative_writing" in p.stderr
