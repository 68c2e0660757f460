"""Property-based tests (hypothesis) of the rules scorer and of the linear-time rewrites.

1. Any response x any valid check spec -> a reward in [0, 1], no exception; any JSON value
   as a check spec -> a clean CheckSpecError or a result.
2. Each checker rewritten for linear time gives the same answer as the code it replaced
   (our old regexes, lm-eval's IFEval checkers, the old protocol text functions) on random
   texts drawn from the characters that matter to it.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openrlhf_reward import ifeval, protocol
from openrlhf_reward import text as text_module
from openrlhf_reward.checks import CHECK_KINDS, run_check, validate_check
from openrlhf_reward.ifeval import IFEVAL_INSTRUCTION_ARGS
from openrlhf_reward.schema import Requirement
from openrlhf_reward.scorers import ScoreRequest, get_scorer
from openrlhf_reward.text import CheckSpecError, count_percents, count_sentences

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Texts made of the characters the checkers look at, and any text at all.
SPECIAL = list(". !?\n\t\r [](){}*-<>%,;:\"'_#1 2aAbzZPpSs\u00e9\u0301\u3000\u201d")
texts = st.one_of(st.text(alphabet=st.sampled_from(SPECIAL), max_size=120), st.text(max_size=60))
words = st.text(alphabet=st.sampled_from(list("abcAB -+.()$Ss1é")), min_size=1, max_size=12)
visible_words = words.filter(str.strip)  # a blank keyword or phrase is not a valid spec

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
counts = st.integers(min_value=0, max_value=30)


def _bounds(kind: str):
    if kind == "word_count":
        return st.sampled_from([{"min": 1}, {"max": 5}, {"min": 2, "max": 9}])
    return st.one_of(counts.map(lambda n: {"exact": n}), counts.map(lambda n: {"min": n}),
                     counts.map(lambda n: {"max": n}))


@st.composite
def valid_specs(draw) -> dict:
    kind = draw(st.sampled_from(CHECK_KINDS))
    spec: dict = {"kind": kind}
    if kind in ("word_count", "sentence_count", "paragraph_count", "bullet_count",
                "question_count", "percent_count"):
        spec.update(draw(_bounds(kind)))
        if kind == "bullet_count" and draw(st.booleans()):
            spec["marker"] = draw(st.sampled_from(["* ", "-", "1.", "•"]))
    elif kind in ("ends_with", "starts_with"):
        spec["text"] = draw(words)
    elif kind == "contains_all":
        spec["keywords"] = draw(st.lists(visible_words, min_size=1, max_size=3))
    elif kind == "forbidden_chars":
        spec["chars"] = draw(st.text(min_size=1, max_size=4))
    elif kind == "ifeval":
        iid = draw(st.sampled_from(sorted(IFEVAL_INSTRUCTION_ARGS)))
        kw = {}
        for arg in IFEVAL_INSTRUCTION_ARGS[iid]:
            kw[arg] = draw(_ifeval_arg(arg))
        spec.update(instruction_id=iid, kwargs=kw)
    return spec


def _ifeval_arg(arg: str):
    if arg in ("relation", "let_relation", "capital_relation"):
        return st.sampled_from(["less than", "at least"])
    if arg == "language":
        return st.sampled_from(["en", "fr", "de"])
    if arg == "letter":
        return st.sampled_from(["a", "z", "#"])
    if arg in ("keywords", "forbidden_words"):
        return st.lists(visible_words, min_size=1, max_size=3)
    if arg in ("keyword", "first_word", "end_phrase", "prompt_to_repeat", "section_spliter"):
        return visible_words
    if arg == "postscript_marker":
        return st.one_of(st.sampled_from(["P.S.", "P.P.S"]), visible_words)
    return st.one_of(counts, counts.map(float))  # integers, also as integral floats


@FUZZ
@given(text=texts, specs=st.lists(valid_specs(), min_size=1, max_size=4))
def test_any_text_any_valid_spec_scores_in_unit_interval(text, specs):
    reqs = []
    for i, spec in enumerate(specs):
        validate_check(spec)
        reqs.append(Requirement(f"c{i}", "format", "t", spec))
    [res] = get_scorer("rules").score([ScoreRequest("p", text, reqs)])
    assert 0.0 <= res.reward <= 1.0
    assert isinstance(res.info["blank"], bool)
    assert res.info["n_scorable"] <= len(specs)


@FUZZ
@given(spec=st.one_of(
    json_values,
    st.fixed_dictionaries({"kind": st.sampled_from(CHECK_KINDS)},
                          optional={k: json_values for k in ("exact", "min", "max", "marker", "text",
                                                             "keywords", "chars", "kwargs")}),
    st.fixed_dictionaries({"kind": st.just("ifeval"),
                           "instruction_id": st.sampled_from(sorted(IFEVAL_INSTRUCTION_ARGS))},
                          optional={"kwargs": st.dictionaries(
                              st.sampled_from(sorted({a for v in IFEVAL_INSTRUCTION_ARGS.values()
                                                      for a in v})), json_values, max_size=3)}),
), text=texts)
def test_any_json_check_spec_is_refused_cleanly_or_scored(spec, text):
    try:
        validate_check(spec)
    except CheckSpecError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert run_check(text, spec) in (True, False, None)


# --------------------------------------------------------------------------- equivalence

_OLD_SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s|$)")
_OLD_PERCENT = re.compile(r"\d+(?:[.,]\d+)?[ \t]?%")
_PERCENT = text_module._PERCENT
sentence_texts = st.text(alphabet=st.sampled_from(list(".!?\"')] \n\tab1\u201d")), max_size=80)


@FUZZ
@given(text=sentence_texts)
def test_sentence_split_matches_the_backtracking_regex(text):
    assert _OLD_SENTENCE_END.split(text) == text_module.SENTENCE_END.split(text)
    assert count_sentences(text) >= 0


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list("0123456789.,% \t\na٣²")), max_size=80))
def test_percent_count_matches_the_backtracking_regex(text):
    assert count_percents(text) == len(_OLD_PERCENT.findall(text)) == len(_PERCENT.findall(text))


def _lm_eval_checker(iid: str, **kwargs):
    checker = ifeval._registry()[iid](iid)
    checker.build_description(**kwargs)
    return checker


IFEVAL_CASES = [
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "[]x \n[\r"),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "*- \n\t x\r\x0b\x1c\u2028"),
    ("detectable_format:title", {}, "<> \nx\r"),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Pp.Ss \n"),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Pp.Ss \n"),
    ("detectable_content:postscript", {"postscript_marker": "Note"}, "Note \nx"),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     ["Section", "SECTION", " ", "\n", "1", "2", "x"]),
    ("keywords:existence", {"keywords": ["sea", "Light"]}, ["sea", "SEA", "light", "x", " "]),
    ("keywords:frequency", {"keyword": "aa", "frequency": 2, "relation": "at least"}, "aAb "),
    ("keywords:forbidden_words", {"forbidden_words": ["sea", "is it"]}, ["sea", "is", "it", "s", " ", "_"]),
    ("detectable_format:json_format", {}, ['{', '}', '[', ']', '"a"', ':', ',', '1', ' ', '```']),
    ("language:response_language", {"language": "en"}, ["the", "cat", "le", "chat", " ", "."]),
    ("change_case:english_lowercase", {}, ["the", "cat", "The", " ", "."]),
    ("change_case:english_capital", {}, ["THE", "CAT", "The", " ", "."]),
]


@pytest.mark.parametrize("iid,kwargs,alphabet", IFEVAL_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(IFEVAL_CASES)])
def test_linear_ifeval_checkers_match_lm_eval(iid, kwargs, alphabet):
    checker = _lm_eval_checker(iid, **kwargs)
    own = ifeval._LINEAR_CHECKS[iid]
    args = checker.get_instruction_args() or {}
    strategy = st.lists(st.sampled_from(list(alphabet)), max_size=40).map("".join)

    @settings(max_examples=200, deadline=None)
    @given(text=strategy)
    def check(text):
        assert own(text, args) == bool(checker.check_following(text)), text

    check()


# The request-path text functions before they were rewritten with str.find.
_OLD_USER_TURNS = (
    re.compile(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", re.S),
    re.compile(r"\[INST\](.*?)\[/INST\]", re.S),
    re.compile(r"<\|user\|>\n?(.*?)<\|end\|>", re.S),
)
_OLD_SYS = re.compile(r"<<SYS>>.*?<</SYS>>", re.S)


def _old_last_user_turn(prompt: str) -> str:
    for pat in _OLD_USER_TURNS:
        matches = pat.findall(prompt)
        if matches:
            text = matches[-1]
            if pat.pattern.startswith(r"\[INST\]"):
                text = _OLD_SYS.sub("", text)
            return text.strip()
    return prompt.strip()


def _old_strip_end_markers(text: str, markers) -> str:
    stripped = False
    while True:
        t = text.rstrip()
        for m in markers:
            if m and t.endswith(m):
                text = t[: -len(m)]
                stripped = True
                break
        else:
            return t if stripped else text


@FUZZ
@given(parts=st.lists(st.sampled_from(
    ["[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "<|user|>", "<|end|>", "\n", " ", "hi", "x"]),
    max_size=14))
def test_last_user_turn_matches_the_regex_version(parts):
    prompt = "".join(parts)
    assert protocol.last_user_turn(prompt) == _old_last_user_turn(prompt)


@FUZZ
@given(parts=st.lists(st.sampled_from(["</s>", "<|im_end|>", " ", "\n", "x", "</", "s>"]), max_size=12))
def test_strip_end_markers_matches_the_copying_version(parts):
    text = "".join(parts)
    markers = protocol.DEFAULT_END_MARKERS
    assert protocol.strip_end_markers(text, markers) == _old_strip_end_markers(text, markers)


@pytest.mark.parametrize("iid,kwargs", [
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"}),
    ("change_case:capital_word_frequency", {"capital_frequency": 1, "capital_relation": "less than"}),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "at least"}),
])
def test_wrapped_nltk_checkers_match_lm_eval(iid, kwargs):
    checker = _lm_eval_checker(iid, **kwargs)
    spec = {"kind": "ifeval", "instruction_id": iid, "kwargs": kwargs}
    alphabet = ["THE", "cat", "Sat", "é", ".", "!", " ", "[", "*", "-", "\n", "Mr."]

    @settings(max_examples=100, deadline=None)
    @given(text=st.lists(st.sampled_from(alphabet), max_size=30).map("".join))
    def check(text):
        expected = bool(text.strip()) and bool(checker.check_following(text))
        assert run_check(text, spec) == expected, text

    check()


# ---------------------------------------------------------------- issue 20: linear keyword search

# Characters whose case-insensitive matching is not plain str.lower(): dotted/dotless i,
# long s, Kelvin sign, final sigma, German sharp s, the iota family (one of them a mark).
CASE_SPECIAL = ["i", "I", "\u0130", "\u0131", "s", "S", "\u017f", "k", "K", "\u212a", "\u03c3",
                "\u03c2", "\u03a3", "\u00df", "\u1e9e", "\u0345", "\u03b9", "\u0399", "\u1fbe", " ", "-", "_"]

IFEVAL_KEYWORD_CASES = [
    ("keywords:existence", {"keywords": ["si", "\u0130K"]}, CASE_SPECIAL),
    ("keywords:existence", {"keywords": ["\u03c3\u03b9"]}, CASE_SPECIAL),
    ("keywords:frequency", {"keyword": "s\u0131", "frequency": 2, "relation": "at least"}, CASE_SPECIAL),
    ("keywords:frequency", {"keyword": "\u03b9\u03b9", "frequency": 2, "relation": "less than"}, CASE_SPECIAL),
    ("keywords:forbidden_words", {"forbidden_words": ["sk", "-s", "s-", "\u0345i"]}, CASE_SPECIAL),
    ("keywords:forbidden_words", {"forbidden_words": ["a-b", "-", "_a"]}, ["a", "b", "-", "_", " ", "A", "B"]),
    ("detectable_format:multiple_sections", {"section_spliter": "SS", "num_sections": 2},
     ["S", "SS", " ", "\n", "1", "2", "x"]),
    ("detectable_format:multiple_sections", {"section_spliter": " S", "num_sections": 2},
     ["S", " ", "\n", "1", "x"]),
]


@pytest.mark.parametrize("iid,kwargs,alphabet", IFEVAL_KEYWORD_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(IFEVAL_KEYWORD_CASES)])
def test_linear_keyword_checkers_match_lm_eval_on_case_folding(iid, kwargs, alphabet):
    test_linear_ifeval_checkers_match_lm_eval(iid, kwargs, alphabet)


def _old_contains_phrase(text: str, phrase: str) -> bool:
    """contains_phrase before issue 20: a whitespace-tolerant regex plus a boundary check
    before each match (O(text x phrase) on near-misses)."""
    word = re.compile(text_module._word_class())
    words = phrase.lower().split()
    if not words:
        return False
    text = text.lower()
    body = r"\s+".join(re.escape(w) for w in words)
    if word.match(words[-1][-1]):
        body += f"(?!{word.pattern})"
    pattern, before = re.compile(body), word.match(words[0][0]) is not None
    pos = 0
    while (m := pattern.search(text, pos)) is not None:
        if not before or m.start() == 0 or not word.match(text, m.start() - 1):
            return True
        pos = m.start() + 1
    return False


# The sentinel characters the aligned search cuts with, so that its fallbacks run too.
ALIGN_ALPHABET = ["a", "b", "A", "é", "e\u0301", " ", "\n", "-", "+", ".", "_", "\u0301",
                  *text_module._SENTINELS]


class _Cut:
    """Force the cut search (no occurrence checked one by one) in tiny chunks."""

    def __init__(self, on: bool):
        self.on = on

    def __enter__(self):
        self.saved = text_module._ALIGNED_LOOP_CAP, text_module._CUT_CHUNK
        if self.on:
            text_module._ALIGNED_LOOP_CAP, text_module._CUT_CHUNK = 0, 3

    def __exit__(self, *exc):
        text_module._ALIGNED_LOOP_CAP, text_module._CUT_CHUNK = self.saved


@pytest.mark.parametrize("cut", [False, True], ids=["loop-first", "cut"])
def test_contains_phrase_matches_the_regex_version(cut):
    @FUZZ
    @given(text=st.lists(st.sampled_from(ALIGN_ALPHABET), max_size=30).map("".join),
           phrase=st.lists(st.sampled_from(ALIGN_ALPHABET[:-6]), min_size=1, max_size=6).map("".join))
    def check(text, phrase):
        with _Cut(cut):
            assert text_module.contains_phrase(text, phrase) == _old_contains_phrase(text, phrase)

    check()


@pytest.mark.parametrize("cut", [False, True], ids=["loop-first", "cut"])
def test_aligned_search_matches_the_occurrence_loop(cut):
    runs = re.compile(r"(\w+)")

    @FUZZ
    @given(text=st.lists(st.sampled_from(ALIGN_ALPHABET), max_size=30).map("".join),
           needle=st.lists(st.sampled_from(ALIGN_ALPHABET), min_size=1, max_size=5).map("".join),
           strict=st.booleans())
    def check(text, needle, strict):
        with _Cut(cut):
            fast = text_module.contains_aligned(text, needle, runs, strict=strict)
        assert fast == text_module._contains_aligned_loop(text, needle, runs, strict=strict)
        if strict:  # the IFEval definition: regex \b on both sides
            assert fast == (re.search(r"\b" + re.escape(needle) + r"\b", text) is not None)

    check()


@pytest.mark.parametrize("iid,kwargs,alphabet", IFEVAL_KEYWORD_CASES[4:6], ids=["forbidden-fold", "forbidden-punct"])
def test_forbidden_words_through_the_cut_match_lm_eval(iid, kwargs, alphabet):
    with _Cut(True):
        test_linear_ifeval_checkers_match_lm_eval(iid, kwargs, alphabet)


def test_aligned_search_with_every_usual_sentinel_in_the_text():
    text = text_module._SENTINELS + " the sea "
    runs = re.compile(r"(\w+)")
    assert text_module._pick_sentinel(text) not in text
    with _Cut(True):
        assert text_module.contains_aligned(text, "sea", runs)
        assert not text_module.contains_aligned(text, "se", runs)
        assert text_module.contains_aligned("a" * 100 + " a", "a", runs)  # 100 near-misses, then one
