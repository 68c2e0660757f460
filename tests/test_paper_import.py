"""`import-paper` on the paper's released layouts (Rainier-rq1/From_Coarse_to_Fine).

Fixtures in tests/data/paper/ are small excerpts of the real files, re-serialised by
tests/data/paper/make_fixtures.py. The last tests run over the full released files in
../shared/data/paper/ next to the repository (or $WEVAL_PAPER_DATA) when that folder exists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from build_helpers import run_cli

from openrlhf_reward.builders.paper_import import (
    PaperImportConfig,
    detect_layout,
    import_paper,
    normalise_kwargs,
    read_rows,
)
from openrlhf_reward.schema import DataError, WEvalDocument

REPO = Path(__file__).resolve().parents[1]
FIX = Path(__file__).parent / "data" / "paper"
FULL = Path(os.environ.get("WEVAL_PAPER_DATA", REPO.parent / "shared" / "data" / "paper"))
SOFT = {"style:open_ended", "soft_content:open_ended", "soft_content:language", "situation:role_play",
        "situation:story_generation", "situation:suggestion"}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _levels(path: Path) -> list[list[dict]]:
    """Base prompt i -> its 5 raw rows (levels 1..5), read independently of the importer."""
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    g = len(rows) // 5
    return [[rows[i + k * g] for k in range(5)] for i in range(g)]


# ----------------------------------------------------------------------------- layouts


@pytest.mark.parametrize(
    ("name", "layout"),
    [("writing_subset.parquet", "writing_subset"), ("train.parquet", "train"),
     ("wrl_pairs_test.jsonl", "chat_pairs"), ("val_set.jsonl", "ifeval")],
)
def test_layout_is_recognised_by_columns(name, layout):
    rows = read_rows(FIX / name)
    assert detect_layout(rows[0][1].keys()) == layout


def test_unknown_layout_and_wrong_kind_are_exit_2_naming_file_and_row(tmp_path):
    bad = tmp_path / "other.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n", encoding="utf-8")
    p = run_cli("import-paper", "--input", str(bad), "--output", str(tmp_path / "o.jsonl"))
    assert p.returncode == 2 and "other.jsonl row 1" in p.stderr and "match none" in p.stderr
    p = run_cli("import-paper", "--input", str(FIX / "val_set.jsonl"), "--output", str(tmp_path / "o.jsonl"), "--as", "weval")
    assert p.returncode == 2 and "imports as grpo" in p.stderr
    assert not (tmp_path / "o.jsonl").exists()  # nothing written on error


def test_malformed_rows_name_file_row_and_field(tmp_path):
    rows = [json.loads(x) for x in (FIX / "val_set.jsonl").read_text(encoding="utf-8").splitlines()]
    rows[2]["prompt"] = ""
    bad = tmp_path / "val.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataError, match=r"val.jsonl:3: field 'prompt'"):
        import_paper(bad)

    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(FIX / "writing_subset.parquet")
    pq.write_table(t.slice(0, 14), tmp_path / "ws.parquet")
    with pytest.raises(DataError, match="14 rows is not a multiple of 5"):
        import_paper(tmp_path / "ws.parquet", PaperImportConfig(category="creative_writing", requirement_type="content"))
    # the level order broken: rows of level 1 and 2 swapped -> the constraint count is named
    idx = list(range(3, 6)) + list(range(0, 3)) + list(range(6, 15))
    pq.write_table(t.take(pa.array(idx)), tmp_path / "ws2.parquet")
    with pytest.raises(DataError, match=r"ws2.parquet row 1 .*field 'constraint' has 2 entries, expected 1"):
        import_paper(tmp_path / "ws2.parquet", PaperImportConfig(category="creative_writing", requirement_type="content"))


def test_normalise_kwargs():
    assert normalise_kwargs({"nth_paragraph": 3.0, "num_paragraphs": None, "let_frequency": 2.5, "x": "a"}) == {
        "nth_paragraph": 3, "let_frequency": 2.5, "x": "a"}
    assert isinstance(normalise_kwargs({"n": 3.0})["n"], int)


# ----------------------------------------------------------------------------- writing_subset -> WEval


def _check_weval(docs: list[dict], src: Path) -> None:
    raw = _levels(src)
    assert len(docs) == len(raw)
    for i, (d, levels) in enumerate(zip(docs, raw)):
        doc = WEvalDocument.from_dict(d)  # schema-valid
        assert doc.id.endswith(f"-{i:05d}")  # input order
        assert [r.text for r in doc.requirements] == [c.strip() for c in levels[4]["constraint"]]
        assert doc.prompt == levels[4]["prompt"]
        assert levels[0]["prompt"].startswith(doc.query) and doc.query
        by_rank = {c.gold_rank: c for c in doc.candidates}
        assert sorted(by_rank) == [1, 2, 3, 4, 5]
        for k in range(1, 6):  # level k answered k constraints: rank 6-k, dropped c(k+1)..c5
            assert by_rank[6 - k].response == levels[k - 1]["response"]
            assert list(by_rank[6 - k].dropped) == [f"c{j}" for j in range(k + 1, 6)]


def _imported(src: Path, out: Path, *flags: str) -> list[dict]:
    """`openrlhf-reward import-paper` of src into out (it must succeed), and the rows written."""
    p = run_cli("import-paper", "--input", str(src), "--output", str(out), *flags)
    assert p.returncode == 0, p.stderr
    return _jsonl(out)


def _weval_given_category_and_type(src: Path, out: Path, category: str) -> list[dict]:
    """`import-paper` of a writing_subset file with the category and type given (no MiniLM),
    checked against its source."""
    docs = _imported(src, out, "--category", category, "--requirement-type", "content")
    _check_weval(docs, src)
    return docs


def test_writing_subset_to_weval_given_category_and_type(tmp_path):
    docs = _weval_given_category_and_type(FIX / "writing_subset.parquet", tmp_path / "w.jsonl", "academic_writing")
    assert {d["category"] for d in docs} == {"academic_writing"}
    assert {r["type_source"] for d in docs for r in d["requirements"]} == {"given"}


@pytest.mark.slow  # loads MiniLM
def test_writing_subset_minilm_category_and_embedding_types(tmp_path):
    out = tmp_path / "w.jsonl"
    p = run_cli("import-paper", "--input", str(FIX / "writing_subset.parquet"), "--output", str(out))
    assert p.returncode == 0, p.stderr
    docs = _jsonl(out)
    _check_weval(docs, FIX / "writing_subset.parquet")
    for d in docs:
        assert d["source"]["category_from"] == "minilm" and -1 <= d["source"]["category_similarity"] <= 1
        assert {r["type_source"] for r in d["requirements"]} == {"embedding"}
    # the classifier's verdicts, recorded per requirement, are the classifier's own answer
    from openrlhf_reward.builders.requirement_types import TypeClassifier

    texts = [r["text"] for d in docs for r in d["requirements"]]
    assert [r["type"] for d in docs for r in d["requirements"]] == TypeClassifier().classify(texts)


# ----------------------------------------------------------------------------- train -> pairs / GRPO


def test_train_to_pairs_keeps_order_and_skips_identical(tmp_path):
    out = tmp_path / "p.jsonl"
    p = run_cli("import-paper", "--input", str(FIX / "train.parquet"), "--output", str(out))
    assert p.returncode == 0, p.stderr
    assert "identical_answers: 1" in p.stderr
    pairs = _jsonl(out)
    raw = [r for _, r in read_rows(FIX / "train.parquet")]
    kept = [r for r in raw if r["chosen"].strip() != r["rejected"].strip()]
    assert len(pairs) == len(kept) == len(raw) - 1
    for pair, r in zip(pairs, kept):
        assert pair["prompt"] == [{"role": "user", "content": r["prompt"]}]
        assert pair["chosen"] == [{"role": "assistant", "content": r["chosen"]}]
        assert pair["rejected"] == [{"role": "assistant", "content": r["rejected"]}]
        assert [q["text"] for q in pair["requirements"]] == [c.strip() for c in r["constraint"]]
        assert "margin" not in pair  # the release does not say how many requirements were missed


def test_train_to_grpo_labels_carry_all_five_requirements(tmp_path):
    from openrlhf_reward.builders.grpo import validate_grpo_row
    from openrlhf_reward.ifeval import IFEVAL_INSTRUCTION_ARGS

    out = tmp_path / "g.jsonl"
    p = run_cli("import-paper", "--input", str(FIX / "train.parquet"), "--output", str(out), "--as", "grpo",
                "--datasource", "paper")
    assert p.returncode == 0, p.stderr
    rows = _jsonl(out)
    raw = [r for _, r in read_rows(FIX / "train.parquet")]
    assert len(rows) == len(raw)
    seen_soft = 0
    for row, r in zip(rows, raw):
        reqs = validate_grpo_row(row)
        assert row["datasource"] == "paper" and row["input"][0]["content"] == r["prompt"]
        assert len(reqs) == 5
        for req, iid, kw in zip(reqs, r["instruction_id_list"], r["kwargs"]):
            if iid in SOFT:
                seen_soft += 1
                assert req.check is None and req.type_source == "paper-soft-id"
            else:
                assert iid in IFEVAL_INSTRUCTION_ARGS and req.type_source == "ifeval-id"
                assert req.check["instruction_id"] == iid
                assert req.check["kwargs"] == {k: v for k, v in kw.items() if v}
    assert seen_soft > 0


def _post_all_labels(rows: list[dict], raw: list[dict]) -> list[float]:
    """Every label through the real reward server (rules backend), as OpenRLHF sends it."""
    import httpx
    from server_utils import ServerThread

    from openrlhf_reward.scorers import get_scorer

    rewards = []
    with ServerThread(get_scorer("rules"), "rules") as srv, httpx.Client(timeout=120) as client:
        for i in range(0, len(rows), 64):
            chunk = list(zip(rows[i : i + 64], raw[i : i + 64]))
            body = {
                "query": [g["input"][0]["content"] + r["chosen"] for g, r in chunk],
                "prompts": [g["input"][0]["content"] for g, _ in chunk],
                "labels": [g["label"] for g, _ in chunk],
            }
            resp = client.post(srv.url + "/get_reward", json=body)
            assert resp.status_code == 200, resp.text
            rewards += resp.json()["rewards"]
    return rewards


@pytest.mark.slow  # reward_func returns torch tensors
def test_server_and_reward_func_accept_imported_labels(tmp_path):
    out = tmp_path / "g.jsonl"
    assert run_cli("import-paper", "--input", str(FIX / "train.parquet"), "--output", str(out), "--as", "grpo").returncode == 0
    rows = _jsonl(out)
    raw = [r for _, r in read_rows(FIX / "train.parquet")]
    rewards = _post_all_labels(rows, raw)
    assert len(rewards) == len(rows) and all(0.0 <= x <= 1.0 for x in rewards)

    from openrlhf_reward import reward_func as rf

    rf.reset()
    rf.configure(backend="rules")
    try:
        res = rf.reward_func([g["input"][0]["content"] + r["chosen"] for g, r in zip(rows, raw)],
                             [g["input"][0]["content"] for g in rows], [g["label"] for g in rows])
    finally:
        rf.reset()
    assert [round(float(x), 6) for x in res["rewards"]] == [round(x, 6) for x in rewards]


def test_raw_ifeval_style_label_with_soft_ids_is_accepted():
    """A train.parquet row sent as an IFEval label (ids + kwargs + constraint texts)."""
    from openrlhf_reward.protocol import parse_label

    _, r = read_rows(FIX / "train.parquet")[0]
    label = {"instruction_id_list": r["instruction_id_list"], "constraint": r["constraint"],
             "kwargs": [normalise_kwargs(k) for k in r["kwargs"]]}
    info = parse_label(label, "labels[0]")
    assert [q.text for q in info.requirements] == [c.strip() for c in r["constraint"]]
    assert sum(q.check is None for q in info.requirements) == sum(i in SOFT for i in r["instruction_id_list"])


# ----------------------------------------------------------------------------- chat pairs, IFEval val set


def test_chat_pairs_to_rm_pairs(tmp_path):
    pairs = _imported(FIX / "wrl_pairs_test.jsonl", tmp_path / "p.jsonl")
    raw = _jsonl(FIX / "wrl_pairs_test.jsonl")
    kept = [r for r in raw if r["chosen"][-1]["content"].strip() != r["rejected"][-1]["content"].strip()]
    assert len(pairs) == len(kept) == len(raw) - 1
    for pair, r in zip(pairs, kept):
        assert pair["prompt"][0]["content"] == r["chosen"][0]["content"] == r["prompt"]
        assert pair["chosen"][0]["content"] == r["chosen"][1]["content"]
        assert pair["rejected"][0]["content"] == r["rejected"][1]["content"]
    assert [p["source"]["line"] for p in pairs] == sorted(p["source"]["line"] for p in pairs)


def test_val_set_to_grpo(tmp_path):
    from openrlhf_reward.builders.grpo import validate_grpo_row

    rows = _imported(FIX / "val_set.jsonl", tmp_path / "g.jsonl")
    raw = _jsonl(FIX / "val_set.jsonl")
    assert [r["id"] for r in rows] == [str(r["key"]) for r in raw]
    for row, r in zip(rows, raw):
        reqs = validate_grpo_row(row)
        assert [q.check["instruction_id"] for q in reqs] == r["instruction_id_list"]


# ----------------------------------------------------------------------------- benchmarks on the fixture


def test_rules_table_benchmark_on_fixture():
    from benchmarks.paper_rules_table import evaluate, format_table

    res = evaluate(str(FIX / "train.parquet"))
    raw = [r for _, r in read_rows(FIX / "train.parquet")]
    n_ifeval = sum(i not in SOFT for r in raw for i in r["instruction_id_list"])
    assert res["pairs"] == len(raw)
    assert sum(sum(c.values()) for c in res["families"].values()) == n_ifeval
    assert res["soft"] == 5 * len(raw) - n_ifeval
    assert sum(res["pair_level"].values()) == len(raw)
    # an identical pair can only tie
    text = format_table(res)
    assert "| keywords |" in text and "pair-level" in text


# ----------------------------------------------------------------------------- the full released files


def full(test):
    # slow: the whole paper data files through the CLI (thousands of rows, seconds each)
    return pytest.mark.slow(pytest.mark.skipif(not FULL.is_dir(), reason=f"paper data folder {FULL} not present")(test))


@full
def test_full_train_parquet_every_label_accepted(tmp_path):
    out = tmp_path / "g.jsonl"
    p = run_cli("import-paper", "--input", str(FULL / "train.parquet"), "--output", str(out), "--as", "grpo")
    assert p.returncode == 0, p.stderr
    rows = _jsonl(out)
    raw = [r for _, r in read_rows(FULL / "train.parquet")]
    assert len(rows) == 1319
    rewards = _post_all_labels(rows, raw)  # no 422, no 5xx
    assert len(rewards) == 1319
    p = run_cli("import-paper", "--input", str(FULL / "train.parquet"), "--output", str(tmp_path / "p.jsonl"))
    assert p.returncode == 0 and len(_jsonl(tmp_path / "p.jsonl")) == 1319 - sum(
        r["chosen"].strip() == r["rejected"].strip() for r in raw)


@full
def test_full_jsonl_files(tmp_path):
    p = run_cli("import-paper", "--input", str(FULL / "wrl_pairs_test.jsonl"), "--output", str(tmp_path / "p.jsonl"))
    assert p.returncode == 0, p.stderr
    assert len(_jsonl(tmp_path / "p.jsonl")) == 699  # 700 lines, one with identical answers
    p = run_cli("import-paper", "--input", str(FULL / "val_set.jsonl"), "--output", str(tmp_path / "g.jsonl"))
    assert p.returncode == 0, p.stderr
    assert len(_jsonl(tmp_path / "g.jsonl")) == 541


@full
def test_full_writing_subset(tmp_path):
    # Given category and type: the MiniLM paths are covered on the excerpt above.
    docs = _weval_given_category_and_type(FULL / "writing_subset.parquet", tmp_path / "w.jsonl", "creative_writing")
    assert len(docs) == 506
    longest = max(len(c["response"]) for d in docs for c in d["candidates"])
    assert longest > 1_000_000  # the 2 MB answer of base prompt 7 comes through as it is


@pytest.mark.slow  # loads MiniLM
def test_type_classifier_benchmark_on_fixture():
    from benchmarks.paper_types import evaluate, format_report
    from openrlhf_reward.ifeval import requirement_type

    raw = [r for _, r in read_rows(FIX / "train.parquet")]
    res = evaluate(str(FIX / "train.parquet"))
    assert res["n"] == 5 * len(raw) == sum(res["confusion"].values())
    truth = [requirement_type(i) for r in raw for i in r["instruction_id_list"]]
    for t in set(truth):  # the rows of the confusion matrix are the id-given types
        assert sum(v for (a, _), v in res["confusion"].items() if a == t) == truth.count(t)
    assert 0.0 <= res["accuracy"] <= 1.0
    assert "per id" in format_report(res, by_id=True)


@pytest.mark.slow  # OpenRLHF's dataset code and a tiny model: torch
@pytest.mark.openrlhf
def test_imported_pairs_load_with_openrlhf_reward_dataset(tmp_path, tiny_lm_dir):
    from build_helpers import OpenRLHFStrategy
    from test_build_pairs import openrlhf_train_rm_args

    out = tmp_path / "pairs.jsonl"
    assert run_cli("import-paper", "--input", str(FIX / "train.parquet"), "--output", str(out)).returncode == 0
    records = _jsonl(out)
    args = openrlhf_train_rm_args([
        "--model.model_name_or_path", str(tiny_lm_dir), "--data.dataset", str(out),
        "--data.prompt_key", "prompt", "--data.chosen_key", "chosen", "--data.rejected_key", "rejected",
        "--data.apply_chat_template", "--data.max_len", "16384",
    ])
    from openrlhf.datasets import RewardDataset
    from openrlhf.datasets.utils import blending_datasets
    from transformers import AutoTokenizer

    strategy = OpenRLHFStrategy(args)
    data = blending_datasets(args.data.dataset, args.data.dataset_probs, strategy, args.train.seed,
                             max_count=args.data.max_samples, dataset_split=args.data.dataset_split)
    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    ds = RewardDataset(data, tok, args.data.max_len, strategy, input_template=args.data.input_template, num_processors=1)
    assert len(ds) == len(records)
    assert list(ds.extras) == [0] * len(records)  # no margin in the release: OpenRLHF uses 0
    chosen_ids, _, reject_ids, _, _ = ds[0]
    expect_prompt = tok.apply_chat_template(records[0]["prompt"], tokenize=False, add_generation_prompt=True)
    chosen, rejected = tok.decode(chosen_ids[0]), tok.decode(reject_ids[0])
    assert chosen.startswith(expect_prompt)
    assert records[0]["chosen"][0]["content"][:100] in chosen
    assert records[0]["rejected"][0]["content"][:100] in rejected
