"""WRL reward-model pairs: dropout levels, pairing modes, granularities, extraction, resumption,
and loading with OpenRLHF 0.11.2's own RewardDataset (CPU, tiny tokenizer)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from build_helpers import (
    INSTRUCTIONS,
    Crash,
    OpenRLHFStrategy,
    ScriptedTeacher,
    answer_tag,
    run_cli,
)

from openrlhf_reward.builders.dropout import dropout_levels
from openrlhf_reward.builders.extract import extraction_prompt, parse_extraction
from openrlhf_reward.builders.pairs import (
    PairsBuildConfig,
    build_pairs,
    level_pairs,
    load_pairs_jsonl,
    validate_pair,
)
from openrlhf_reward.builders.store import WorkStore
from openrlhf_reward.builders.teacher_units import Rejected
from openrlhf_reward.schema import DataError, Requirement
from openrlhf_reward.scorers.per_requirement import FOCUS_TEMPLATE

REPO = Path(__file__).resolve().parents[1]

def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _reqs(d: dict) -> list[Requirement]:
    return [Requirement.from_dict(r) for r in d["requirements"]]


# ---- pairing --------------------------------------------------------------------------------
def test_level_pairs_modes():
    assert level_pairs(4, "full") == [(0, 1), (0, 2), (0, 3)]
    assert level_pairs(4, "adjacent") == [(0, 1), (1, 2), (2, 3)]
    assert level_pairs(3, "all") == [(0, 1), (0, 2), (1, 2)]
    with pytest.raises(ValueError, match="unknown pairing"):
        level_pairs(3, "random")


@pytest.mark.parametrize("pairing", ["full", "adjacent", "all"])
def test_pairs_follow_dropout_levels_and_validate(tmp_path, pairing):
    src = _write_jsonl(tmp_path / "in.jsonl", INSTRUCTIONS)
    out = tmp_path / "pairs.jsonl"
    teacher = ScriptedTeacher()
    summary = build_pairs(
        PairsBuildConfig(input=str(src), output=str(out), seed=3, pairing=pairing, granularity="both", progress=False),
        teacher,
    )
    assert summary["complete"] and summary["rejected_by_reason"] == {}
    pairs = load_pairs_jsonl(out)
    assert summary["pairs"] == len(pairs)
    for d in INSTRUCTIONS[:2]:
        reqs = _reqs(d)
        levels = dropout_levels(d["query"], reqs, seed=3, doc_id=d["id"], max_dropped=len(reqs) - 1)
        full = levels[0].prompt
        mine = [p for p in pairs if p["source"]["instruction"] == d["id"]]
        q = [p for p in mine if p["granularity"] == "query"]
        r = [p for p in mine if p["granularity"] == "requirement"]
        assert [tuple(p["source"]["levels"]) for p in q] == level_pairs(len(levels), pairing)
        for p in q:
            i, j = p["source"]["levels"]
            # chosen answered level i's prompt, rejected level j's (rebuilt from kept requirements)
            assert answer_tag(levels[i].prompt) in p["chosen"][0]["content"]
            assert answer_tag(levels[j].prompt) in p["rejected"][0]["content"]
            assert p["prompt"] == [{"role": "user", "content": full}]
            assert p["margin"] == j - i == len(p["dropped"])
            assert set(p["dropped"]) == set(levels[j].dropped) - set(levels[i].dropped)
            assert p["requirements"] == d["requirements"]
            # requirement granularity: one pair per dropped requirement, same two answers
            rp = [x for x in r if x["source"]["levels"] == [i, j]]
            assert sorted(x["dropped"][0] for x in rp) == sorted(p["dropped"])
            for x in rp:
                text = next(q_.text for q_ in reqs if q_.id == x["dropped"][0])
                assert x["prompt"][0]["content"] == FOCUS_TEMPLATE.format(instruction=full, requirement=text)
                assert (x["chosen"], x["rejected"], x["margin"]) == (p["chosen"], p["rejected"], 1)
    # a one-requirement instruction drops it entirely by default (levels 0..1)
    third = [p for p in pairs if p["source"]["instruction"] not in ("garden", "sky")]
    assert {tuple(p["source"]["levels"]) for p in third} == {(0, 1)}
    # each level was asked exactly once
    assert len(teacher.calls) == len({c[0] for c in teacher.calls}) == 4 + 3 + 2


def test_levels_option_and_query_only_default(tmp_path):
    src = _write_jsonl(tmp_path / "in.jsonl", INSTRUCTIONS[:1])
    out = tmp_path / "pairs.jsonl"
    build_pairs(PairsBuildConfig(input=str(src), output=str(out), levels=2, progress=False), ScriptedTeacher())
    pairs = load_pairs_jsonl(out)
    assert [p["margin"] for p in pairs] == [1, 2]
    assert {p["granularity"] for p in pairs} == {"query"}


def test_empty_answers_are_retried_then_recorded(tmp_path):
    src = _write_jsonl(tmp_path / "in.jsonl", INSTRUCTIONS[1:2])
    out = tmp_path / "pairs.jsonl"
    # every prompt that still lists "Write for teenagers." gets an empty answer
    teacher = ScriptedTeacher(empty_for=["Write for teenagers."])
    summary = build_pairs(PairsBuildConfig(input=str(src), output=str(out), seed=1, progress=False), teacher)
    levels = dropout_levels(INSTRUCTIONS[1]["query"], _reqs(INSTRUCTIONS[1]), seed=1, doc_id="sky")
    empty = [lv.k for lv in levels if "Write for teenagers." in lv.prompt]
    assert 0 in empty  # the full prompt lists it
    assert summary["rejected_by_reason"]["answer/empty_response"] == len(empty)
    rejects = [json.loads(x) for x in (tmp_path / "pairs.jsonl.work" / "rejects.jsonl").read_text().splitlines()]
    assert {r["reason"] for r in rejects} >= {"empty_response"}
    # 3 tries (1 + retries=2) for each empty level, one for the others
    assert len(teacher.calls) == 3 * len(empty) + (len(levels) - len(empty))
    pairs = load_pairs_jsonl(out) if summary["pairs"] else []
    assert all(p["source"]["levels"][0] not in empty and p["source"]["levels"][1] not in empty for p in pairs)


def test_validate_pair_rejects_bad_records():
    good = {
        "prompt": [{"role": "user", "content": "Q"}],
        "chosen": [{"role": "assistant", "content": "A"}],
        "rejected": [{"role": "assistant", "content": "B"}],
        "margin": 1, "dropped": ["c1"], "granularity": "query",
        "requirements": [{"id": "c1", "type": "style", "text": "Be formal.", "check": None}],
    }
    validate_pair(good)
    for change, msg in [
        ({"margin": 2}, "margin 2 != 1"),
        ({"dropped": ["c9"]}, "distinct ids"),
        ({"rejected": [{"role": "assistant", "content": "A"}]}, "same text"),
        ({"granularity": "doc"}, "'granularity'"),
        ({"chosen": [{"role": "user", "content": "A"}]}, "'chosen' must be one assistant message"),
    ]:
        with pytest.raises(DataError, match=msg):
            validate_pair({**good, **change})


# ---- extraction (source b) -----------------------------------------------------------------
GOOD = {
    "query": "Write a product description for a reusable water bottle.",
    "requirements": [
        {"type": "length", "text": "Use at most 60 words.", "check": {"kind": "word_count", "max": 60}},
        {"type": "style", "text": "Sound upbeat.", "check": None},
    ],
}


def test_parse_extraction_accepts_strict_json_and_names_problems():
    q, reqs = parse_extraction("<think>let me see</think>\n```json\n" + json.dumps(GOOD) + "\n```")
    assert q == GOOD["query"] and [r.id for r in reqs] == ["c1", "c2"]
    assert reqs[0].check == {"kind": "word_count", "max": 60}
    cases = [
        ("Here you go: requirements are ...", "invalid_json"),
        (json.dumps([GOOD]), "bad_schema"),
        (json.dumps({**GOOD, "requirements": []}), "too_few_requirements"),
        (json.dumps({**GOOD, "requirements": [{**GOOD["requirements"][0], "type": "tone"}]}), "unknown_type"),
        (json.dumps({**GOOD, "requirements": [{**GOOD["requirements"][0], "check": {"kind": "rhymes"}}]}), "bad_check"),
        (json.dumps({**GOOD, "requirements": [GOOD["requirements"][1]] * 2}), "duplicate_requirement"),
        ("<think>still thinking when cut off", "empty_output"),
    ]
    for text, reason in cases:
        with pytest.raises(Rejected) as e:
            parse_extraction(text)
        assert e.value.reason == reason, text
    assert "word_count" in extraction_prompt("Write something.")  # the check vocabulary is shown


def test_pairs_from_raw_instructions_with_extraction_retries_and_rejects(tmp_path):
    raw = [
        {"id": "bottle", "instruction": "Write an upbeat product description of a reusable water bottle in at most 60 words."},
        {"id": "poem", "instruction": "Write a poem about autumn, in the style of a haiku."},
    ]
    src = _write_jsonl(tmp_path / "raw.jsonl", raw)
    teacher = ScriptedTeacher(extraction={
        raw[0]["instruction"]: ["not json at all", json.dumps(GOOD)],  # retried, then valid
        raw[1]["instruction"]: [json.dumps({"query": "Write a poem.", "requirements": [{"type": "vibe", "text": "x"}]})],
    })
    out = tmp_path / "pairs.jsonl"
    summary = build_pairs(PairsBuildConfig(input=str(src), output=str(out), raw=True, progress=False), teacher)
    assert summary["complete"]
    assert summary["rejected_by_reason"] == {"extract/unknown_type": 1}
    rejects = [json.loads(x) for x in (tmp_path / "pairs.jsonl.work" / "rejects.jsonl").read_text().splitlines()]
    assert rejects[0]["id"] == "poem" and rejects[0]["stage"] == "extract" and "vibe" in rejects[0]["error"]
    pairs = load_pairs_jsonl(out)
    assert {p["source"]["instruction"] for p in pairs} == {"bottle"}
    assert pairs[0]["prompt"][0]["content"].startswith(GOOD["query"])
    assert [r["text"] for r in pairs[0]["requirements"]] == [r["text"] for r in GOOD["requirements"]]
    n_calls = len(teacher.calls)
    # rerun: everything (extractions, rejects and answers) comes from the work store
    again = ScriptedTeacher(extraction=teacher.extraction)
    build_pairs(PairsBuildConfig(input=str(src), output=str(out), raw=True, progress=False), again)
    assert again.calls == [] and n_calls == 2 + 3 + 2  # 2 tries + 3 for poem, then 2 answers


# ---- resumption ----------------------------------------------------------------------------
def test_resume_after_crash_gives_the_uninterrupted_file_without_duplicates(tmp_path):
    src = _write_jsonl(tmp_path / "in.jsonl", INSTRUCTIONS)
    ref = tmp_path / "ref.jsonl"
    cfg = dict(input=str(src), seed=5, pairing="all", granularity="both", chunk_size=2, progress=False)
    build_pairs(PairsBuildConfig(output=str(ref), **cfg), ScriptedTeacher())
    out = tmp_path / "pairs.jsonl"
    with pytest.raises(Crash):
        build_pairs(PairsBuildConfig(output=str(out), **cfg), ScriptedTeacher(crash_after=5))
    assert not out.exists()
    store_path = tmp_path / "pairs.jsonl.work" / "work.jsonl"
    assert len(store_path.read_text().splitlines()) == 1 + 4  # header + the 2 finished chunks
    second = ScriptedTeacher()
    summary = build_pairs(PairsBuildConfig(output=str(out), **cfg), second)
    assert summary["this_run"]["done_before"] == 4 and len(second.calls) == 9 - 4
    assert out.read_bytes() == ref.read_bytes()
    with WorkStore.open(store_path) as store:  # loading fails on any duplicate key
        assert len(store) == 9
    # pairing and granularity only shape the assembly: a rerun re-pairs without the teacher
    third = ScriptedTeacher()
    build_pairs(PairsBuildConfig(output=str(out), **{**cfg, "pairing": "full", "granularity": "query"}), third)
    assert third.calls == [] and {p["granularity"] for p in load_pairs_jsonl(out)} == {"query"}


def test_changed_settings_are_refused_on_the_same_workdir(tmp_path):
    from openrlhf_reward.builders.store import StoreMismatchError

    src = _write_jsonl(tmp_path / "in.jsonl", INSTRUCTIONS[:1])
    out = tmp_path / "pairs.jsonl"
    build_pairs(PairsBuildConfig(input=str(src), output=str(out), seed=1, progress=False), ScriptedTeacher())
    with pytest.raises(StoreMismatchError, match="seed"):
        build_pairs(PairsBuildConfig(input=str(src), output=str(out), seed=2, progress=False), ScriptedTeacher())


# ---- OpenRLHF's own dataset code -----------------------------------------------------------
def openrlhf_train_rm_args(argv: list[str]):
    """Parse train_rm flags with OpenRLHF 0.11.2's own parser (its __main__ block), on CPU."""
    import runpy

    from openrlhf_stubs import use_openrlhf_stubs

    if not use_openrlhf_stubs():
        pytest.skip("openrlhf is not installed")
    import openrlhf.utils.config as config

    class Parsed(Exception):
        pass

    real = config.hierarchize

    def capture(args):
        raise Parsed(real(args))

    old_argv = sys.argv
    config.hierarchize = capture
    sys.argv = ["train_rm", *argv]
    try:
        runpy.run_module("openrlhf.cli.train_rm", run_name="__main__")
    except Parsed as p:
        return p.args[0]
    finally:
        config.hierarchize = real
        sys.argv = old_argv
    raise AssertionError("train_rm did not parse its arguments")


def openrlhf_reward_dataset(pairs: Path, model_dir: Path, max_len: int):
    """(OpenRLHF's own RewardDataset over a pairs file, as train_rm builds it with the model's
    tokenizer and chat template; the tokenizer)."""
    args = openrlhf_train_rm_args([
        "--model.model_name_or_path", str(model_dir), "--data.dataset", str(pairs),
        "--data.prompt_key", "prompt", "--data.chosen_key", "chosen", "--data.rejected_key", "rejected",
        "--data.apply_chat_template", "--model.margin_loss_enable", "--data.max_len", str(max_len),
    ])
    from openrlhf.datasets import RewardDataset
    from openrlhf.datasets.utils import blending_datasets
    from transformers import AutoTokenizer

    strategy = OpenRLHFStrategy(args)
    data = blending_datasets(args.data.dataset, args.data.dataset_probs, strategy, args.train.seed,
                             max_count=args.data.max_samples, dataset_split=args.data.dataset_split)
    tok = AutoTokenizer.from_pretrained(model_dir)
    ds = RewardDataset(data, tok, args.data.max_len, strategy, input_template=args.data.input_template, num_processors=1)
    return ds, tok


@pytest.mark.slow  # OpenRLHF's dataset code and a tiny model: torch
@pytest.mark.openrlhf
def test_pairs_load_with_openrlhf_reward_dataset(tmp_path, tiny_lm_dir):
    src = _write_jsonl(tmp_path / "in.jsonl", INSTRUCTIONS)
    out = tmp_path / "pairs.jsonl"
    build_pairs(PairsBuildConfig(input=str(src), output=str(out), granularity="both", pairing="all", progress=False),
                ScriptedTeacher())
    records = load_pairs_jsonl(out)
    ds, tok = openrlhf_reward_dataset(out, tiny_lm_dir, max_len=512)
    assert len(ds) == len(records)
    assert list(ds.extras) == [r["margin"] for r in records]  # margins come through
    for k in (0, len(records) - 1):
        rec = records[k]
        chosen_ids, chosen_mask, reject_ids, reject_mask, margin = ds[k]
        chosen_text = tok.decode(chosen_ids[0])
        reject_text = tok.decode(reject_ids[0])
        expect_prompt = tok.apply_chat_template(rec["prompt"], tokenize=False, add_generation_prompt=True)
        assert chosen_text.startswith(expect_prompt) and reject_text.startswith(expect_prompt)
        assert rec["chosen"][0]["content"] in chosen_text and rec["rejected"][0]["content"] in reject_text
        assert chosen_ids[0, -1].item() == tok.eos_token_id and margin == rec["margin"]
    batch = ds.collate_fn([ds[0], ds[1]])
    assert batch[4] == [records[0]["margin"], records[1]["margin"]]


# ---- the hf teacher on the tiny model, through the CLI ---------------------------------------
def _cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "openrlhf_reward.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow  # loads a model (the hf teacher)
def test_build_pairs_cli_hf_teacher_tiny_model(tmp_path, tiny_lm_dir):
    src = _write_jsonl(tmp_path / "in.jsonl", INSTRUCTIONS[:2])
    out = tmp_path / "pairs.jsonl"
    p = run_cli("build-pairs", "--input", str(src), "--output", str(out), "--granularity", "both",
                "--teacher", "hf", "--teacher-model", str(tiny_lm_dir), "--teacher-opt", "device=cpu",
                "--max-tokens", "12", "--temperature", "1.0", "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "build-pairs: kept pairs" in p.stderr and f"wrote {out}" in p.stderr
    pairs = load_pairs_jsonl(out)
    assert {p_["granularity"] for p_ in pairs} == {"query", "requirement"}
    teachers = {p_["source"]["teacher"] for p_ in pairs}
    assert len(teachers) == 1 and teachers.pop()  # the hf teacher's model identity
    summary = json.loads((tmp_path / "pairs.jsonl.work" / "summary.json").read_text())
    assert summary["complete"] and summary["pairs"] == len(pairs)
    help_ = subprocess.run([sys.executable, "-m", "openrlhf_reward.cli", "build-pairs", "--help"], cwd=REPO,
                           capture_output=True, text=True)
    assert help_.returncode == 0 and "--pairing {full,adjacent,all}" in help_.stdout


@pytest.mark.slow
def test_sigkill_midway_then_rerun_matches_uninterrupted_run(tmp_path):
    """A real build process killed with SIGKILL mid-way (teacher: a scripted HTTP endpoint);
    the rerun ends with exactly the uninterrupted file, every unit stored once."""
    from scripted_openai_server import MODEL, ScriptedServer

    from openrlhf_reward.teachers import get_teacher

    rows = [{"id": f"i{n:02d}", "query": f"Write a short note about topic {n}.",
             "requirements": INSTRUCTIONS[0]["requirements"]} for n in range(8)]
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    total = 8 * 4  # 4 requirements -> levels 0..3 per instruction
    with ScriptedServer(latency=0.05) as srv:
        ref = tmp_path / "ref.jsonl"  # uninterrupted, in-process, same settings as the CLI below
        cfg = PairsBuildConfig(input=str(src), output=str(ref), granularity="both", pairing="adjacent", seed=7,
                               chunk_size=4, progress=False)
        with get_teacher("openai", base_url=srv.base_url, model=MODEL, concurrency=2) as teacher:
            assert build_pairs(cfg, teacher)["complete"]
        out = tmp_path / "pairs.jsonl"
        store = tmp_path / "pairs.jsonl.work" / "work.jsonl"
        cmd = ["build-pairs", "--input", str(src), "--output", str(out), "--granularity", "both",
               "--pairing", "adjacent", "--seed", "7", "--chunk-size", "4", "--no-progress",
               "--teacher", "openai", "--base-url", srv.base_url, "--teacher-model", MODEL, "--concurrency", "2"]
        p = _cli(cmd)
        deadline = time.time() + 240
        while time.time() < deadline and p.poll() is None:
            if store.exists() and store.read_bytes().count(b"\n") >= 1 + total // 2:
                break
            time.sleep(0.01)
        assert p.poll() is None, "the build finished before it could be killed"
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        finished = store.read_bytes().count(b"\n") - 1
        assert total // 2 <= finished < total and not out.exists()
        before = len(srv.requests)
        p = _cli(cmd)
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert len(srv.requests) - before <= total - finished + 2  # only unfinished work is asked again
    assert out.read_bytes() == ref.read_bytes()
    with WorkStore.open(store) as s:  # loading fails on a duplicate key
        assert len(s) == total


@pytest.mark.slow
@pytest.mark.vllm
def test_pairs_against_real_vllm_server(tmp_path, vllm_server):
    from openrlhf_reward.teachers import get_teacher

    src = _write_jsonl(tmp_path / "in.jsonl", INSTRUCTIONS[:2])
    out = tmp_path / "pairs.jsonl"
    cfg = PairsBuildConfig(input=str(src), output=str(out), granularity="both", max_tokens=16, progress=False)
    with get_teacher("openai", base_url=vllm_server.base_url, model=vllm_server.model, concurrency=8) as teacher:
        summary = build_pairs(cfg, teacher)
    assert summary["complete"] and summary["pairs"] > 0
    pairs = load_pairs_jsonl(out)
    assert {p["source"]["teacher"] for p in pairs} == {vllm_server.model}
    assert {p["source"]["instruction"] for p in pairs} <= {"garden", "sky"}
