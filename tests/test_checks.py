"""The `check` vocabulary and counting rules of openrlhf_reward.checks."""

from __future__ import annotations

import pytest

from openrlhf_reward.checks import CHECK_KINDS, run_check, validate_check
from openrlhf_reward.schema import Requirement
from openrlhf_reward.scorers import ScoreRequest, get_scorer
from openrlhf_reward.text import (
    CheckSpecError,
    contains_phrase,
    count_bullets,
    count_paragraphs,
    count_percents,
    count_sentences,
    count_words,
)


@pytest.mark.parametrize(
    "text,n",
    [
        ("one two three", 3),
        ("a - b -- c1 ...", 3),  # punctuation-only tokens are not words
        ("  spaced\n\nout\twords ", 3),
        ("", 0),
    ],
)
def test_count_words(text, n):
    assert count_words(text) == n


@pytest.mark.parametrize(
    "text,n",
    [
        ("One. Two! Three?", 3),
        ("Wait... what?! Yes.", 3),  # a run of end punctuation counts once
        ("No end punctuation", 1),
        ("Version 2.5 is out. It is fast.", 2),  # 2.5: not followed by whitespace
        ("<<My Title>>\nFirst sentence. Second one.", 2),
        ('He said "stop." Then he left.', 2),
        ("Steps:\n1. Boil water.\n2. Pour it.", 2),  # enumerators are not sentence ends
        ("...", 0),
    ],
)
def test_count_sentences(text, n):
    assert count_sentences(text) == n


def test_count_paragraphs_bullets_percents():
    text = "<<Title>>\n\nFirst para\nstill first.\n\n   \n- a\n- b\n  - c\n\nLast with 12% and 3.5 % and 7"
    assert count_paragraphs(text) == 3
    assert count_bullets(text) == 3
    assert count_bullets(text, "* ") == 0
    assert count_percents(text) == 2
    assert count_percents("12\n% is not a figure") == 0


@pytest.mark.parametrize(
    "spec,text,ok",
    [
        ({"kind": "word_count", "min": 2, "max": 3}, "one two three", True),
        ({"kind": "word_count", "max": 2}, "one two three", False),
        ({"kind": "sentence_count", "exact": 2}, "A. B.", True),
        ({"kind": "paragraph_count", "min": 2}, "a\n\nb", True),
        ({"kind": "bullet_count", "marker": "* ", "exact": 1}, "* x\n- y", True),
        ({"kind": "ends_with", "text": "Best wishes."}, "Hi.\nBest wishes.  \n", True),
        ({"kind": "starts_with", "text": "Dear"}, "  Dear team", True),
        ({"kind": "contains_all", "keywords": ["Budget", "risk"]}, "the BUDGET has a risk", True),
        ({"kind": "contains_all", "keywords": ["budget", "risk"]}, "the budget", False),
        # whole words: "research" does not contain the keyword "sea", "seas" neither
        ({"kind": "contains_all", "keywords": ["sea"]}, "Research overseas", False),
        ({"kind": "contains_all", "keywords": ["sea"]}, "By the sea, again.", True),
        ({"kind": "contains_all", "keywords": ["light keeper"]}, "the Light\n  Keeper's log", True),
        ({"kind": "contains_all", "keywords": ["light keeper"]}, "the lightkeeper", False),
        ({"kind": "contains_all", "keywords": ["leak-proof"]}, "It is leak-proof.", True),
        ({"kind": "contains_all", "keywords": ["C++"]}, "I write c++11 daily", True),
        ({"kind": "contains_all", "keywords": ["café"]}, "Un CAFÉ noir", True),
        ({"kind": "contains_all", "keywords": ["café"]}, "cafés", False),
        ({"kind": "contains_all", "keywords": ["Straße"]}, "die STRASSE", False),  # no folding
        ({"kind": "contains_all", "keywords": ["हिन"]}, "हिन्दी भाषा", False),  # marks are word chars
        ({"kind": "contains_all", "keywords": ["हिन्दी"]}, "हिन्दी भाषा", True),
        ({"kind": "contains_all", "keywords": ["(a+)+$"]}, "x (a+)+$ y", True),
        ({"kind": "forbidden_chars", "chars": ",;"}, "no commas here", True),
        ({"kind": "forbidden_chars", "chars": ","}, "a, b", False),
        ({"kind": "lowercase"}, "all lower 123", True),
        ({"kind": "lowercase"}, "not All lower", False),
        ({"kind": "title_brackets"}, "\n<<A Title>>\ntext", True),
        ({"kind": "title_brackets"}, "Title\n<<A Title>>", False),
        ({"kind": "question_count", "exact": 2}, "Why? How?", True),
        ({"kind": "percent_count", "min": 1, "max": 1}, "up 5% this year", True),
    ],
)
def test_run_check(spec, text, ok):
    validate_check(spec)
    assert run_check(text, spec) is ok


@pytest.mark.parametrize(
    "spec,msg",
    [
        ({"kind": "nope"}, "unknown check kind"),
        ("word_count", "must be an object"),
        ({"kind": "sentence_count"}, "needs 'exact' or 'min'/'max'"),
        ({"kind": "sentence_count", "exact": 3, "min": 1}, "stands alone"),
        ({"kind": "word_count", "min": 5, "max": 2}, "min 5 > max 2"),
        ({"kind": "word_count", "min": -1}, "non-negative integer"),
        ({"kind": "ends_with"}, "needs \\['text'\\]"),
        ({"kind": "lowercase", "extra": 1}, "does not take"),
        ({"kind": "contains_all", "keywords": []}, "non-empty list"),
        ({"kind": "contains_all", "keywords": ["  "]}, "non-empty list"),
        ({"kind": "contains_all", "keywords": ["x" * 257]}, "longer than 256"),
        ({"kind": ["word_count"]}, "unknown check kind"),
    ],
)
def test_validate_check_names_the_problem(spec, msg):
    with pytest.raises(CheckSpecError, match=msg):
        validate_check(spec)


def test_every_documented_kind_is_known():
    documented = {
        "word_count", "sentence_count", "paragraph_count", "bullet_count", "ends_with",
        "starts_with", "contains_all", "forbidden_chars", "lowercase", "title_brackets",
        "question_count", "percent_count",
    }
    assert documented <= set(CHECK_KINDS)


def test_rules_scorer_counts_only_scorable_requirements():
    reqs = [
        Requirement("c1", "length", "Use at most 3 words.", {"kind": "word_count", "max": 3}),
        Requirement("c2", "style", "Be warm.", None),
        Requirement("c3", "format", "All lowercase.", {"kind": "lowercase"}),
    ]
    [res] = get_scorer("rules").score([ScoreRequest("p", "Hello there", reqs)])
    assert res.requirement_scores == {"c1": 1.0, "c2": None, "c3": 0.0}
    assert res.reward == 0.5
    assert res.info["n_scorable"] == 2
    assert res.type_adherence() == {"length": 1.0, "format": 0.0}
    [none] = get_scorer("rules").score([ScoreRequest("p", "x", reqs[1:2])])
    assert none.info["n_scorable"] == 0


# One valid spec per kind: negative checks ("no commas", "at most 5 words", "lowercase")
# included, which an empty answer would trivially meet without the blank rule.
SPEC_PER_KIND = [
    {"kind": "word_count", "max": 5},
    {"kind": "sentence_count", "min": 0},
    {"kind": "paragraph_count", "min": 0},
    {"kind": "bullet_count", "exact": 0},
    {"kind": "ends_with", "text": "."},
    {"kind": "starts_with", "text": "A"},
    {"kind": "contains_all", "keywords": ["a"]},
    {"kind": "forbidden_chars", "chars": ","},
    {"kind": "lowercase"},
    {"kind": "title_brackets"},
    {"kind": "question_count", "exact": 0},
    {"kind": "percent_count", "max": 3},
    {"kind": "ifeval", "instruction_id": "punctuation:no_comma", "kwargs": {}},
    # not scorable on a real answer (random letter), but a blank answer still fails it
    {"kind": "ifeval", "instruction_id": "keywords:letter_frequency",
     "kwargs": {"letter": "#", "let_frequency": 1, "let_relation": "less than"}},
]


def test_spec_per_kind_covers_every_kind():
    assert {s["kind"] for s in SPEC_PER_KIND} == set(CHECK_KINDS)


@pytest.mark.parametrize("spec", SPEC_PER_KIND, ids=lambda s: s.get("instruction_id", s["kind"]))
@pytest.mark.parametrize("blank", ["", " ", "\n\t \u3000\n", "\u200b", "\ufeff\u2060\u00ad", "\u3164", "\u2800",
                                   "\u180e", "<think><think>x</think></think>", "<think>a</think>\u200b<think>b"])
def test_blank_response_fails_every_check(spec, blank):
    validate_check(spec)
    assert run_check(blank, spec) is False


def test_rules_scorer_gives_blank_responses_zero_and_says_why():
    reqs = [
        Requirement(f"c{i}", "format", "check", spec) for i, spec in enumerate(SPEC_PER_KIND)
    ] + [Requirement("j", "style", "Be warm.", None)]
    scorer = get_scorer("rules", unscorable_reward=0.5)
    [res] = scorer.score([ScoreRequest("p", "  \n ", reqs)])
    assert res.reward == 0.0
    assert res.info == {"n_scorable": len(SPEC_PER_KIND), "blank": True, "reason": "blank response"}
    assert res.requirement_scores["j"] is None
    assert {v for k, v in res.requirement_scores.items() if k != "j"} == {0.0}
    # no scorable requirement at all: still 0, not unscorable_reward
    [judge_only] = scorer.score([ScoreRequest("p", "", reqs[-1:])])
    assert judge_only.reward == 0.0 and judge_only.info["blank"] is True
    [answered] = scorer.score([ScoreRequest("p", "a", reqs[-1:])])
    assert answered.reward == 0.5 and answered.info == {"n_scorable": 0, "blank": False}


@pytest.mark.parametrize(
    "text,phrase,ok",
    [
        ("Research", "sea", False),
        ("the_sea", "sea", False),  # underscore is a word character, as in regex \b
        ("sea-side", "sea", True),  # a hyphen is not
        ("New  York", "new york", True),
        ("NewYork", "new york", False),
        ("x", "   ", False),
    ],
)
def test_contains_phrase(text, phrase, ok):
    assert contains_phrase(text, phrase) is ok


# ---------------------------------------------------------------- issue 20: one blank rule

INVISIBLE_CHARS = ["\u200b", "\ufeff", "\u2060", "\u00ad", "\u3164", "\u2800", "\u180e", "\u115f",
                   "\u1160", "\uffa0", "\u200e", "\u202e", "\u034f", "\ufe0f", "\U000e0020", "\x00",
                   " ", "\n", "\t", "\u00a0", "\u3000", "\u2028", "\u2029"]


@pytest.mark.parametrize("ch", INVISIBLE_CHARS, ids=lambda c: f"U+{ord(c):04X}")
def test_each_invisible_character_is_blank_and_a_visible_one_is_not(ch):
    from openrlhf_reward.text import has_visible, is_blank

    assert is_blank(ch) and is_blank(ch * 3) and not has_visible(ch)
    for visible in ("a", ".", "\u0301", "\ue000", "\u4e00", "\U0001f600"):
        assert not is_blank(ch + visible + ch)


def test_blank_is_decided_after_every_think_block():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from openrlhf_reward.text import is_blank, strip_think

    parts = st.lists(st.sampled_from([*INVISIBLE_CHARS[:6], "<think>", "</think>", "x"]), max_size=12)

    @settings(max_examples=300, deadline=None)
    @given(parts=parts)
    def check(parts):
        text = "".join(parts)
        # x outside every block (depth 0 at that point, counting only opens that are closed
        # later or not at all) is what a reader sees
        depth, visible = 0, False
        for p in parts:
            if p == "<think>":
                depth += 1
            elif p == "</think>":
                depth = max(0, depth - 1)
            elif p == "x" and depth == 0:
                visible = True
        assert is_blank(text) == (not visible), text
        assert "<think>" not in strip_think(text) and "</think>" not in strip_think(text)

    check()
