"""IFEval-format labels: requirements, the `ifeval` check kind, and parity with lm-eval's IFEval.

The parity test scores the 541 published GPT-4 responses and compares every scorable
instruction with the reference computed by lm-eval 0.4.13's own IFEval code
(a copy of the public IFEval data in tests/data/ifeval, README there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from openrlhf_reward.checks import run_check, validate_check
from openrlhf_reward.ifeval import (
    IFEVAL_INSTRUCTION_ARGS,
    PUNKT_INSTRUCTION_IDS,
    punkt_tab_dir,
    unscorable_reason,
)
from openrlhf_reward.schema import (
    DataError,
    Requirement,
    requirements_from_ifeval,
    requirements_from_ifeval_label,
)
from openrlhf_reward.scorers import ScoreRequest, get_scorer
from openrlhf_reward.text import CheckSpecError

REPO = Path(__file__).resolve().parents[1]
IFEVAL_DIR = Path(os.environ.get("WEVAL_IFEVAL_DATA", Path(__file__).parent / "data" / "ifeval"))
RANDOM_LETTER_KEYS = {1122, 1129}  # keywords:letter_frequency with '#' and '!'


def _lm_eval_registry():
    from openrlhf_reward.ifeval import _registry

    return _registry()


def test_import_is_light():
    code = (
        "import sys, openrlhf_reward.ifeval, openrlhf_reward.checks, openrlhf_reward.scorers.rules,"
        " openrlhf_reward.scorers.judge, openrlhf_reward.scorers.ensemble;"
        "bad = [m for m in ('lm_eval', 'nltk', 'torch', 'langdetect', 'openai') if m in sys.modules];"
        "sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_argument_table_matches_lm_eval_registry():
    reg = _lm_eval_registry()
    assert set(reg) == set(IFEVAL_INSTRUCTION_ARGS)
    for iid, cls in reg.items():
        assert tuple(cls(iid).get_instruction_args_keys()) == IFEVAL_INSTRUCTION_ARGS[iid], iid


def test_requirements_from_ifeval_builds_typed_checked_requirements():
    reqs = requirements_from_ifeval(
        ["length_constraints:number_words", "punctuation:no_comma", "detectable_format:title"],
        [{"num_words": 50, "relation": "at least", "unused_null": None}, {}, None],
    )
    assert [r.id for r in reqs] == ["c1", "c2", "c3"]
    assert [r.type for r in reqs] == ["length", "style", "format"]
    assert reqs[0].check == {
        "kind": "ifeval",
        "instruction_id": "length_constraints:number_words",
        "kwargs": {"num_words": 50, "relation": "at least"},
    }
    assert "50 words" in reqs[0].text and "comma" in reqs[1].text.lower()
    # The requirements round-trip through the schema (validate_check accepts the kind).
    for r in reqs:
        assert Requirement.from_dict(r.to_dict()) == r
    label = {"instruction_id_list": ["detectable_format:title"]}
    assert requirements_from_ifeval_label(label)[0].check["instruction_id"] == "detectable_format:title"


@pytest.mark.parametrize(
    "ids, kwargs, match",
    [
        (["no:such_id"], [{}], "unknown instruction_id"),
        (["punctuation:no_comma", "detectable_format:title"], [{}], "has 2 entries"),
        (["length_constraints:number_words"], [{"num_words": 5, "relation": "exactly"}], "relation"),
        (["length_constraints:number_words"], [{"num_word": 5}], "unknown kwargs"),
        ("punctuation:no_comma", [{}], "must be a list"),
        (["punctuation:no_comma"], ["x"], "kwargs"),
    ],
)
def test_bad_ifeval_labels_name_the_problem(ids, kwargs, match):
    with pytest.raises(DataError, match=match):
        requirements_from_ifeval(ids, kwargs)


def test_language_table_matches_lm_eval():
    from lm_eval.tasks.ifeval.instructions_util import LANGUAGE_CODES

    from openrlhf_reward.ifeval import IFEVAL_LANGUAGES

    assert tuple(LANGUAGE_CODES) == IFEVAL_LANGUAGES


def test_integral_float_kwargs_become_ints():
    [nth, letters] = requirements_from_ifeval(
        ["length_constraints:nth_paragraph_first_word", "keywords:letter_frequency"],
        [{"num_paragraphs": 4.0, "nth_paragraph": 3.0, "first_word": "then"},
         {"letter": "a", "let_frequency": 2.0, "let_relation": "at least"}],
    )
    assert nth.check["kwargs"] == {"num_paragraphs": 4, "nth_paragraph": 3, "first_word": "then"}
    assert type(nth.check["kwargs"]["nth_paragraph"]) is int
    assert "paragraph 3" in nth.text.lower()
    assert letters.check["kwargs"]["let_frequency"] == 2
    assert run_check("a banana", letters.check) is True
    # a float spec given directly as a check is normalised too
    spec = {"kind": "ifeval", "instruction_id": "length_constraints:number_words",
            "kwargs": {"num_words": 3.0, "relation": "less than"}}
    validate_check(spec)
    assert run_check("two words", spec) is True


@pytest.mark.parametrize(
    "iid, kwargs, match",
    [
        ("length_constraints:number_words", {"num_words": "abc", "relation": "at least"},
         "kwargs.num_words must be an integer, got 'abc'"),
        ("length_constraints:number_words", {"num_words": 2.5, "relation": "at least"},
         "kwargs.num_words must be an integer, got 2.5"),
        ("length_constraints:number_words", {"num_words": True, "relation": "at least"},
         "kwargs.num_words must be an integer"),
        ("keywords:existence", {"keywords": "storm"}, "kwargs.keywords must be a list of strings"),
        ("keywords:existence", {"keywords": ["x" * 300]}, "longer than 256"),
        ("startend:end_checker", {"end_phrase": 5}, "kwargs.end_phrase must be a string"),
        ("language:response_language", {"language": "xx"}, "kwargs.language 'xx' is not one of"),
    ],
)
def test_wrong_kwarg_types_name_the_field(iid, kwargs, match):
    with pytest.raises(CheckSpecError, match=match):
        validate_check({"kind": "ifeval", "instruction_id": iid, "kwargs": kwargs})
    with pytest.raises(DataError, match=match):
        requirements_from_ifeval([iid], [kwargs])


def test_regex_kwargs_are_literal_text():
    def check(iid, kwargs, text):
        spec = {"kind": "ifeval", "instruction_id": iid, "kwargs": kwargs}
        validate_check(spec)
        return run_check(text, spec)

    assert check("keywords:existence", {"keywords": ["("]}, "a (b") is True
    assert check("keywords:existence", {"keywords": ["(a+)+$"]}, "a" * 5000 + "!") is False
    assert check("keywords:existence", {"keywords": ["a.c"]}, "abc") is False
    assert check("keywords:frequency", {"keyword": "a+", "frequency": 2, "relation": "at least"},
                 "a+ and A+") is True
    assert check("keywords:forbidden_words", {"forbidden_words": ["c++"]}, "no pluses") is True
    assert check("detectable_format:multiple_sections",
                 {"section_spliter": "S.", "num_sections": 2}, "S. 1 x SX 2 y") is False
    assert check("detectable_content:postscript", {"postscript_marker": "Note.*"},
                 "Note: hi") is False


def test_negative_and_out_of_range_arguments_are_not_scorable():
    assert run_check("x", {"kind": "ifeval", "instruction_id": "length_constraints:number_words",
                           "kwargs": {"num_words": -3, "relation": "at least"}}) is None
    assert run_check("x\n\ny", {"kind": "ifeval",
                                 "instruction_id": "length_constraints:nth_paragraph_first_word",
                                 "kwargs": {"num_paragraphs": 2, "nth_paragraph": 3,
                                            "first_word": "y"}}) is None


def test_deeply_nested_json_answer_fails_without_error():
    spec = {"kind": "ifeval", "instruction_id": "detectable_format:json_format", "kwargs": {}}
    assert run_check("[" * 100_000 + "]" * 100_000, spec) is False
    assert run_check('{"a": [1, 2]}', spec) is True


@pytest.mark.slow  # a fresh interpreter importing lm-eval and NLTK: seconds
def test_preload_imports_lm_eval_and_nltk():
    code = (
        "import sys, openrlhf_reward.ifeval as m; assert 'lm_eval' not in sys.modules; m.preload();"
        "assert 'lm_eval.tasks.ifeval.instructions_registry' in sys.modules and 'nltk' in sys.modules"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_validate_check_ifeval_kind():
    validate_check({"kind": "ifeval", "instruction_id": "punctuation:no_comma"})
    with pytest.raises(CheckSpecError, match="needs"):
        validate_check({"kind": "ifeval", "kwargs": {}})
    with pytest.raises(CheckSpecError, match="does not take"):
        validate_check({"kind": "ifeval", "instruction_id": "punctuation:no_comma", "x": 1})


def test_run_check_ifeval_verdicts_and_unscorable_cases():
    no_comma = {"kind": "ifeval", "instruction_id": "punctuation:no_comma", "kwargs": {}}
    assert run_check("No commas here.", no_comma) is True
    assert run_check("One, two.", no_comma) is False
    assert run_check("   \n", no_comma) is False  # lm-eval: a blank response follows nothing
    words = {"kind": "ifeval", "instruction_id": "length_constraints:number_words",
             "kwargs": {"num_words": 3, "relation": "less than"}}
    assert run_check("two words", words) is True
    assert run_check("one two three", words) is False
    # A letter outside a-z: lm-eval would check a random letter -> not scorable here.
    letter = {"kind": "ifeval", "instruction_id": "keywords:letter_frequency",
              "kwargs": {"letter": "#", "let_frequency": 2, "let_relation": "at least"}}
    assert run_check("## a", letter) is None
    assert "random letter" in unscorable_reason(letter["instruction_id"], letter["kwargs"])
    # A missing argument would be drawn at random -> not scorable.
    missing = {"kind": "ifeval", "instruction_id": "keywords:existence", "kwargs": {}}
    assert run_check("anything", missing) is None


def test_ifeval_does_not_touch_global_random_state():
    import random

    random.seed(123)
    expected = random.random()
    random.seed(123)
    requirements_from_ifeval(["keywords:letter_frequency", "startend:end_checker"],
                             [{"letter": "q", "let_frequency": 1, "let_relation": "at least"},
                              {"end_phrase": "Bye."}])
    assert random.random() == expected


def test_rules_scorer_with_ifeval_requirements():
    reqs = requirements_from_ifeval(
        ["punctuation:no_comma", "keywords:letter_frequency", "change_case:english_lowercase"],
        [{}, {"letter": "!", "let_frequency": 1, "let_relation": "at least"}, {}],
    )
    [res] = get_scorer("rules").score([ScoreRequest("p", "hello, this is all lowercase english text.", reqs)])
    assert res.requirement_scores == {"c1": 0.0, "c2": None, "c3": 1.0}
    assert res.reward == 0.5 and res.info["n_scorable"] == 2
    assert res.type_adherence() == {"style": 0.5}


def test_rules_scorer_config_convention():
    assert get_scorer("rules", unscorable_reward="0.25").config.unscorable_reward == 0.25
    with pytest.raises(TypeError, match="unscorable_rewrd"):
        get_scorer("rules", unscorable_rewrd=1)


def _load_ifeval():
    if not (IFEVAL_DIR / "input_data.jsonl").is_file():
        pytest.skip(f"IFEval data not found in {IFEVAL_DIR} (set WEVAL_IFEVAL_DATA)")
    inputs = [json.loads(x) for x in (IFEVAL_DIR / "input_data.jsonl").open()]
    responses = {
        (d := json.loads(x))["prompt"]: d["response"]
        for x in (IFEVAL_DIR / "input_response_data_gpt4_20231107_145030.jsonl").open()
    }
    ref = {(d := json.loads(x))["key"]: d for x in (IFEVAL_DIR / "reference_per_prompt_gpt4.jsonl").open()}
    return inputs, responses, ref


def test_parity_with_lm_eval_ifeval_strict_on_gpt4_responses():
    inputs, responses, ref = _load_ifeval()
    ours_inst, ref_inst, ours_prompt, ref_prompt = [], [], [], []
    unscorable: dict[int, list[str]] = {}
    mismatches = []
    for d in inputs:
        reqs = requirements_from_ifeval(d["instruction_id_list"], d["kwargs"])
        got = [run_check(responses[d["prompt"]], r.check) for r in reqs]
        exp = ref[d["key"]]["follow_instruction_list"]
        assert len(exp) == len(got)
        for iid, g, e in zip(d["instruction_id_list"], got, exp):
            if g is None:
                unscorable.setdefault(d["key"], []).append(iid)
                continue
            ours_inst.append(g)
            ref_inst.append(e)
            if g != e:
                mismatches.append((d["key"], iid, g, e))
        if None not in got:
            ours_prompt.append(all(got))
            ref_prompt.append(ref[d["key"]]["follow_all_instructions"])
    assert not mismatches, mismatches[:10]
    # Only the two random-letter instructions are unscorable (plus the punkt ones if absent).
    allowed = set(PUNKT_INSTRUCTION_IDS) if punkt_tab_dir() is None else set()
    extra = {k: v for k, v in unscorable.items()
             if k not in RANDOM_LETTER_KEYS and not set(v) <= allowed}
    assert not extra, extra
    assert RANDOM_LETTER_KEYS <= set(unscorable)
    pl = 100 * sum(ours_prompt) / len(ours_prompt)
    il = 100 * sum(ours_inst) / len(ours_inst)
    assert pl == 100 * sum(ref_prompt) / len(ref_prompt)
    assert il == 100 * sum(ref_inst) / len(ref_inst)
    print(f"\nIFEval strict parity: {len(ours_prompt)} prompts / {len(ours_inst)} instructions "
          f"scorable; prompt-level {pl:.2f}, instruction-level {il:.2f} (reference identical)")


def test_parity_covers_sentence_instructions_when_punkt_is_installed():
    if punkt_tab_dir() is None:
        pytest.skip("NLTK punkt_tab not installed: `pip install --no-deps llama-index-core` "
                    "or `python -m nltk.downloader punkt_tab`")
    inputs, responses, ref = _load_ifeval()
    n = 0
    for d in inputs:
        for i, iid in enumerate(d["instruction_id_list"]):
            if iid in PUNKT_INSTRUCTION_IDS:
                [req] = requirements_from_ifeval([iid], [d["kwargs"][i]])
                assert run_check(responses[d["prompt"]], req.check) == \
                    ref[d["key"]]["follow_instruction_list"][i], (d["key"], iid)
                n += 1
    assert n == 52 + 25


# ---------------------------------------------------------------- issue 20: bounded work and memory


def test_checker_cache_keeps_only_small_specs():
    from openrlhf_reward import ifeval

    ifeval._cached_checker.cache_clear()
    spec = {"kind": "ifeval", "instruction_id": "startend:end_checker", "kwargs": {"end_phrase": "Bye."}}
    assert run_check("Hello. Bye.", spec) is True
    assert ifeval._cached_checker.cache_info().currsize == 1
    for i in range(20):  # large unique specs are built per check, never kept
        phrase = f"{i} " + "x" * 10_000
        spec = {"kind": "ifeval", "instruction_id": "startend:end_checker", "kwargs": {"end_phrase": phrase}}
        assert run_check("Hello " + phrase, spec) is True
    assert ifeval._cached_checker.cache_info().currsize == 1
    assert ifeval._cached_checker.cache_info().maxsize <= 4096


def _needs_punkt():
    if punkt_tab_dir() is None:
        pytest.skip("NLTK punkt_tab not installed: `pip install --no-deps llama-index-core`")


@pytest.mark.parametrize("iid,kwargs", [
    ("length_constraints:number_sentences", {"num_sentences": 1, "relation": "at least"}),
    ("change_case:capital_word_frequency", {"capital_frequency": 1, "capital_relation": "at least"}),
])
def test_nltk_ids_past_the_length_bound_are_not_scorable(iid, kwargs):
    from openrlhf_reward.ifeval import MAX_NLTK_CHARS

    _needs_punkt()
    spec = {"kind": "ifeval", "instruction_id": iid, "kwargs": kwargs}
    unit = "P. A. "
    at_bound = (unit * (MAX_NLTK_CHARS // len(unit) + 1))[:MAX_NLTK_CHARS]
    assert run_check(at_bound, spec) is True  # scored: NLTK runs, no timeout involved
    assert run_check(at_bound + "B", spec) is None  # past the bound: never a verdict


@pytest.mark.parametrize("iid,kwargs", [
    ("length_constraints:number_sentences", {"num_sentences": 1, "relation": "less than"}),
    ("change_case:capital_word_frequency", {"capital_frequency": 1, "capital_relation": "at least"}),
])
def test_an_nltk_timeout_is_not_scorable_never_a_verdict(monkeypatch, iid, kwargs):
    from lm_eval.tasks.ifeval import instructions_util

    _needs_punkt()

    def slow_machine(*a, **k):
        raise TimeoutError("regex timed out")

    monkeypatch.setattr(instructions_util, "count_sentences", slow_machine)
    monkeypatch.setattr(instructions_util.nltk, "word_tokenize", slow_machine)
    spec = {"kind": "ifeval", "instruction_id": iid, "kwargs": kwargs}
    assert run_check("A NEW text. Not seen before by the memo.", spec) is None
    result = get_scorer("rules").score([ScoreRequest(
        prompt="p", response="A NEW text. Not seen before by the memo.",
        requirements=(Requirement(id="c1", type="length", text="t", check=spec),))])[0]
    assert result.requirement_scores == {"c1": None}


def test_one_response_is_tokenized_once_for_several_sentence_requirements(monkeypatch):
    from lm_eval.tasks.ifeval import instructions_util

    _needs_punkt()
    calls = []
    real = instructions_util.count_sentences
    monkeypatch.setattr(instructions_util, "count_sentences", lambda t: calls.append(1) or real(t))
    text = "One sentence here. Another one, freshly made for this test."
    reqs = tuple(
        Requirement(id=f"c{n}", type="length", text="t", check={
            "kind": "ifeval", "instruction_id": "length_constraints:number_sentences",
            "kwargs": {"num_sentences": n, "relation": "at least"}})
        for n in range(1, 6))
    result = get_scorer("rules").score([ScoreRequest(prompt="p", response=text, requirements=reqs)])[0]
    assert result.requirement_scores == {"c1": 1.0, "c2": 1.0, "c3": 0.0, "c4": 0.0, "c5": 0.0}
    assert len(calls) == 1


@pytest.mark.slow
def test_500_unique_1mb_end_phrases_keep_rss_bounded():
    """Issue 20 item 3: the checker cache kept every spec (963 MB after these 500 requests)."""
    import gc

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    scorer = get_scorer("rules")
    tail = "y" * (1 << 20)
    run_check("warm up. end", {"kind": "ifeval", "instruction_id": "startend:end_checker",
                               "kwargs": {"end_phrase": "end"}})
    gc.collect()
    start = rss_mb()
    passed = 0
    for i in range(500):
        phrase = f"{i:04d}" + tail[4:]  # a unique 1 MB end_phrase per request
        req = Requirement(id="c1", type="format", text="t", check={
            "kind": "ifeval", "instruction_id": "startend:end_checker", "kwargs": {"end_phrase": phrase}})
        passed += scorer.score([ScoreRequest(prompt="p", response="Answer. " + phrase, requirements=(req,))])[0].reward == 1.0
    gc.collect()
    assert passed == 500
    assert rss_mb() - start < 100
