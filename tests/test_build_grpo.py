"""GRPO prompt rows (listed, raw with extraction, IFEval import) loaded with OpenRLHF's own
prompt-dataset code, which must hand `label` to the reward function untouched."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from build_helpers import INSTRUCTIONS, OpenRLHFStrategy, ScriptedTeacher, run_cli

from openrlhf_reward.builders.extract import ExtractConfig, run_extraction
from openrlhf_reward.builders.grpo import grpo_row, validate_grpo_row
from openrlhf_reward.builders.ifeval_import import import_ifeval
from openrlhf_reward.builders.instructions import load_listed, load_raw
from openrlhf_reward.builders.store import WorkStore
from openrlhf_reward.schema import DataError, Requirement, build_prompt

REPO = Path(__file__).resolve().parents[1]
IFEVAL = Path(os.environ.get("WEVAL_IFEVAL_DATA", Path(__file__).parent / "data" / "ifeval")) / "input_data.jsonl"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_grpo_rows_from_listed_instructions(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in INSTRUCTIONS), encoding="utf-8")
    out = tmp_path / "grpo.jsonl"
    p = run_cli("build-grpo", "--input", str(src), "--output", str(out), "--datasource", "wrl", "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "build-grpo: kept rows 3; rejected 0" in p.stderr
    rows = _jsonl(out)
    for row, inst in zip(rows, INSTRUCTIONS):
        validate_grpo_row(row)
        full = build_prompt(inst["query"], [Requirement.from_dict(r) for r in inst["requirements"]])
        assert row["input"] == [{"role": "user", "content": full}]
        assert row["label"] == {"requirements": inst["requirements"], "query": inst["query"], "instruction": full}
        assert row["datasource"] == "wrl"
    assert rows[0]["id"] == "garden" and rows[2]["id"].startswith("i")  # content-hash id


def test_validate_grpo_row_names_problems(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(INSTRUCTIONS[0]) + "\n", encoding="utf-8")
    instructions, _ = load_listed(src)
    row = grpo_row(instructions[0])
    validate_grpo_row(row)
    for change, msg in [
        ({"input": "text"}, "'input' must be one user message"),
        ({"label": {"requirements": []}}, "no requirements"),
        ({"label": {**row["label"], "instruction": "other"}}, "differs from the prompt"),
    ]:
        with pytest.raises(DataError, match=msg):
            validate_grpo_row({**row, **change})


def test_listed_and_raw_loaders_report_bad_lines(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "Q", "requirements": [{"id": "c1", "type": "tone", "text": "x"}]}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: requirement 'c1' has unknown type 'tone'"):
        load_listed(bad)
    dup = tmp_path / "dup.jsonl"
    dup.write_text("\n".join(json.dumps({"id": "x", "instruction": t}) for t in ("A", "B")) + "\n")
    with pytest.raises(DataError, match=r"dup.jsonl:2: duplicate instruction id 'x'"):
        load_raw(dup)
    same = tmp_path / "same.jsonl"
    same.write_text("\n".join(json.dumps({"instruction": "Write a haiku."}) for _ in range(3)) + "\n")
    raw, dups = load_raw(same)
    assert len(raw) == 1 and dups == 2


def test_raw_instructions_extracted_then_grpo_rows(tmp_path):
    text = "Write a limerick about a cat, in exactly five lines, that ends with the word 'hat'."
    answer = {
        "query": "Write a limerick about a cat.",
        "requirements": [
            {"type": "length", "text": "Use exactly five lines.", "check": None},
            {"type": "format", "text": "End with the word 'hat'.", "check": {"kind": "ends_with", "text": "hat"}},
        ],
    }
    src = tmp_path / "raw.jsonl"
    src.write_text(json.dumps({"id": "cat", "instruction": text}) + "\n")
    raw, _ = load_raw(src)
    teacher = ScriptedTeacher(extraction={text: [json.dumps(answer)]})
    with WorkStore.open(tmp_path / "w.jsonl", meta={"t": 1}) as store:
        insts, rejects, stats = run_extraction(raw, teacher, store, ExtractConfig(), seed=0, progress=False)
    assert rejects == [] and not stats.failed
    row = grpo_row(insts[0])
    validate_grpo_row(row)
    assert row["input"][0]["content"] == text  # the raw instruction is the prompt
    assert row["label"]["query"] == answer["query"] and row["label"]["instruction"] == text
    assert [r["id"] for r in row["label"]["requirements"]] == ["c1", "c2"]


@pytest.fixture(scope="module")
def ifeval_rows(tmp_path_factory):
    if not IFEVAL.is_file():
        pytest.skip(f"IFEval data not found at {IFEVAL} (set WEVAL_IFEVAL_DATA)")
    out = tmp_path_factory.mktemp("ifeval") / "ifeval_grpo.jsonl"
    p = run_cli("import-ifeval", "--input", str(IFEVAL), "--output", str(out), "--datasource", "ifeval", "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "import-ifeval: kept rows 541; rejected 0" in p.stderr
    return out


def test_ifeval_import_on_the_public_data(ifeval_rows):
    src = _jsonl(IFEVAL)
    rows = _jsonl(ifeval_rows)
    assert len(rows) == len(src) == 541
    for s, row in zip(src, rows):
        reqs = validate_grpo_row(row)
        assert row["id"] == str(s["key"]) and row["input"][0]["content"] == s["prompt"]
        assert row["label"]["query"] == row["label"]["instruction"] == s["prompt"]
        assert [r.check["instruction_id"] for r in reqs] == s["instruction_id_list"]
        assert [r.check["kwargs"] for r in reqs] == [{k: v for k, v in kw.items() if v} for kw in s["kwargs"]]
        assert all(r.check["kind"] == "ifeval" for r in reqs)
    types = {r["type"] for row in rows for r in row["label"]["requirements"]}
    assert types == {"length", "format", "style", "content"}


def test_ifeval_import_skips_and_names_bad_rows(tmp_path):
    rows = [
        {"key": 1, "prompt": "Write a poem.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
        {"key": 2, "prompt": "Write.", "instruction_id_list": ["punctuation:no_comma", "detectable_format:title"], "kwargs": [{}]},
        {"key": 3, "prompt": "Write.", "instruction_id_list": ["made_up:thing"], "kwargs": [{}]},
        {"key": 1, "prompt": "Again.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
        {"key": 5, "prompt": "", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
    ]
    src = tmp_path / "ifeval.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    insts, rejects = import_ifeval(src)
    assert [i.id for i in insts] == ["1"]
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (2, "invalid_row"), (3, "invalid_row"), (4, "duplicate_id"), (5, "invalid_row")
    ]
    assert "has 2 entries but 'kwargs' has 1" in rejects[0]["error"] and "ifeval.jsonl:2" in rejects[0]["error"]
    assert "made_up:thing" in rejects[1]["error"]
    with pytest.raises(DataError, match="ifeval.jsonl:2"):
        import_ifeval(src, strict=True)
    out = tmp_path / "out.jsonl"
    p = run_cli("import-ifeval", "--input", str(src), "--output", str(out), "--rejects", str(tmp_path / "rej.jsonl"),
                 "--no-progress")
    assert p.returncode == 0 and "rejected 4 (invalid_row: 3, duplicate_id: 1)" in p.stderr
    assert len(_jsonl(tmp_path / "rej.jsonl")) == 4


@pytest.mark.slow  # OpenRLHF's dataset code and a tiny model: torch
@pytest.mark.openrlhf
def test_grpo_rows_load_with_openrlhf_prompt_dataset_and_labels_arrive_untouched(tmp_path, ifeval_rows, tiny_lm_dir):
    from openrlhf_stubs import use_openrlhf_stubs

    if not use_openrlhf_stubs():
        pytest.skip("openrlhf is not installed")
    from openrlhf.datasets import PromptDataset
    from openrlhf.datasets.utils import blending_datasets
    from openrlhf.utils.config import hierarchize
    from transformers import AutoTokenizer

    listed = tmp_path / "listed.jsonl"
    listed.write_text("".join(json.dumps(r) + "\n" for r in INSTRUCTIONS), encoding="utf-8")
    grpo = tmp_path / "grpo.jsonl"
    assert run_cli("build-grpo", "--input", str(listed), "--output", str(grpo), "--no-progress").returncode == 0
    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    for path in (grpo, ifeval_rows):
        # the flags of train_ppo_ray: --data.prompt_dataset F --data.input_key input
        # --data.label_key label --data.apply_chat_template
        import argparse

        args = hierarchize(argparse.Namespace(**{
            "data.prompt_dataset": str(path), "data.prompt_probs": None, "data.max_samples": int(1e8),
            "data.prompt_split": "train", "data.input_key": "input", "data.label_key": "label",
            "data.apply_chat_template": True, "data.input_template": None, "train.seed": 42, "use_ms": False,
        }))
        strategy = OpenRLHFStrategy(args)
        data = blending_datasets(args.data.prompt_dataset, args.data.prompt_probs, strategy, args.train.seed,
                                 max_count=args.data.max_samples, dataset_split=args.data.prompt_split)
        ds = PromptDataset(data, tok, strategy, input_template=args.data.input_template)
        rows = _jsonl(path)
        assert len(ds) == len(rows)
        for i in (0, len(rows) // 2, len(rows) - 1):
            _, prompt, label, _ = ds[i]
            assert label == rows[i]["label"]  # untouched: no keys added, none lost
            assert prompt == tok.apply_chat_template(rows[i]["input"], tokenize=False, add_generation_prompt=True)
        assert [ds[i][2] for i in range(len(ds))] == [r["label"] for r in rows]


def test_weval_documents_are_listed_instructions_too(tmp_path):
    from openrlhf_reward.builders.paper_import import PaperImportConfig, import_paper
    from openrlhf_reward.schema import WEvalDocument

    rows = import_paper(Path(__file__).parent / "data" / "paper" / "writing_subset.parquet",
                        PaperImportConfig(category="creative_writing", requirement_type="content")).rows
    docs = [WEvalDocument.from_dict(r) for r in rows]
    weval = tmp_path / "weval.jsonl"
    weval.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "grpo.jsonl"
    p = run_cli("build-grpo", "--input", str(weval), "--output", str(out), "--no-progress")
    assert p.returncode == 0, p.stderr
    rows = _jsonl(out)
    assert [r["id"] for r in rows] == [d.id for d in docs]
    for r, d in zip(rows, docs):
        assert r["input"][0]["content"] == d.prompt  # the document's own full instruction
        assert r["label"]["query"] == d.query and len(r["label"]["requirements"]) == len(d.requirements)


def test_builder_modules_import_light():
    code = (
        "import sys, json, openrlhf_reward.cli, openrlhf_reward.builders.pairs, openrlhf_reward.builders.grpo, "
        "openrlhf_reward.builders.ifeval_import, openrlhf_reward.builders.paper_import, openrlhf_reward.builders.extract;"
        "print(json.dumps([m for m in ('torch', 'transformers', 'openai', 'lm_eval', 'openrlhf', 'datasets', 'vllm') "
        "if m in sys.modules]))"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
