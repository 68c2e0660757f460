"""Every check kind, every IFEval id and the request-path text steps finish on 1 MB inputs.

Runs of dots, digits, brackets, end markers, ``[INST]`` and newlines are what made the old
code quadratic (or exponential, for the IFEval keyword ``(a+)+$``): hours on 1 MB. With
linear code each case takes well under a second to a few seconds (NLTK); a regression would
run into the test timeout, so the 1 MB check run is in the slow tier. No times are asserted:
``python -m benchmarks.bench_pathological`` prints them.
"""

from __future__ import annotations

import pytest

from benchmarks.bench_pathological import IFEVAL_KWARGS, RULE_SPECS
from openrlhf_reward import protocol
from openrlhf_reward.checks import CHECK_KINDS, run_check, validate_check
from openrlhf_reward.ifeval import IFEVAL_INSTRUCTION_ARGS, MAX_NLTK_CHARS
from openrlhf_reward.text import strip_think

MB = 1 << 20
UNITS = {"dots": ".", "digits": "1", "brackets": "[", "end-markers": "</s>", "inst": "[INST]",
         "newlines": "\n"}
# a tail that makes each run fail to match at its end (what triggers backtracking)
TEXTS = {name: unit * (MB // len(unit)) + "x" for name, unit in UNITS.items()}
SPECS = [*RULE_SPECS, *({"kind": "ifeval", "instruction_id": iid, "kwargs": kw}
                       for iid, kw in IFEVAL_KWARGS.items())]


def test_cases_cover_every_kind_and_ifeval_id():
    assert {s["kind"] for s in SPECS} == set(CHECK_KINDS)
    assert set(IFEVAL_KWARGS) == set(IFEVAL_INSTRUCTION_ARGS)


# Sizes whose verdicts must equal the 1 MB ones: past every threshold of the specs and past
# langdetect's 10,000-character window (it reads only that much, so a shorter text whose
# "x" tail falls inside the window is classified differently: a real, documented effect).
MID = 1 << 16
# The two ids tokenised by NLTK are not scorable (None) above MAX_NLTK_CHARS, by design.
NLTK_IDS = {"length_constraints:number_sentences", "change_case:capital_word_frequency"}
SMALL = 2048  # for lm-eval's own checkers: backtracking and NLTK stay well under a second
assert SMALL < MAX_NLTK_CHARS < MID


def _text(name: str, size: int) -> str:
    unit = UNITS[name]
    return unit * (size // len(unit)) + "x"


def _label(spec: dict) -> str:
    return spec.get("instruction_id", spec["kind"])


@pytest.mark.slow  # ~10 s in all; a regression to quadratic code runs into the 1200 s timeout
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("name", list(UNITS))
def test_every_check_finishes_on_1mb(name):
    """Linear code gives the same verdict on 1 MB as on 64 KB (where even the old code finished)."""
    text, mid = TEXTS[name], _text(name, MID)
    wrong = []
    for spec in SPECS:
        validate_check(spec)
        got, want = run_check(text, spec), run_check(mid, spec)
        # every other spec is checkable on these texts
        assert want in (True, False) or _label(spec) in NLTK_IDS, (spec, want)
        if got != want:
            wrong.append((_label(spec), got, want))
    assert not wrong, wrong
    assert run_check(text, {"kind": "sentence_count", "exact": 1}) is True  # the "x"


@pytest.mark.parametrize("name", list(UNITS))
def test_ifeval_verdicts_on_these_inputs_equal_lm_eval(name):
    """On 2 KB of the same runs, small enough for lm-eval's own (backtracking) checkers, our
    IFEval verdicts are lm-eval's."""
    from openrlhf_reward.ifeval import _registry

    text = _text(name, SMALL)
    wrong = []
    for spec in SPECS:
        if spec["kind"] != "ifeval":
            continue
        checker = _registry()[spec["instruction_id"]](spec["instruction_id"])
        checker.build_description(**spec["kwargs"])
        try:
            want = bool(checker.check_following(text))
        except RecursionError:  # lm-eval's json.loads on deep nesting; documented: not JSON
            want = False
        if run_check(text, spec) is not want:
            wrong.append((spec["instruction_id"], want))
    assert not wrong, wrong


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", list(UNITS))
def test_request_path_text_steps_finish_on_1mb(name):
    text = TEXTS[name]
    stripped = protocol.strip_end_markers("answer" + text[:-1])
    # only "</s>" is an end marker here; the other runs are left as they are
    assert stripped == ("answer" if name == "end-markers" else "answer" + text[:-1])
    assert strip_think("<think>" + text) == ""
    assert strip_think("<think>" * 1000 + text + "</think>" * 999) == ""
    response, how = protocol.recover_response(text + "answer", text[:-1] + "?")
    assert response.endswith("answer")
    # no run closes a user turn ("[INST]" opens one, "[/INST]" never comes): the whole prompt
    assert protocol.last_user_turn(text) == text.strip()
    assert protocol.last_user_turn(text + "<|im_start|>user\nhi<|im_end|>") == "hi"
