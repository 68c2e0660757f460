"""Every check kind, every IFEval id and the request-path text steps finish on 1 MB inputs.

Runs of dots, digits, brackets, end markers, ``[INST]`` and newlines are what made the old
code quadratic (or exponential, for the IFEval keyword ``(a+)+$``): hours on 1 MB. With
linear code each case takes well under a second to a few seconds (NLTK), so the whole test
runs in about a minute; a regression would run into the test timeout. No times are
asserted: ``python -m benchmarks.bench_pathological`` prints them.
"""

from __future__ import annotations

import pytest

from benchmarks.bench_pathological import IFEVAL_KWARGS, RULE_SPECS
from openrlhf_reward import protocol
from openrlhf_reward.checks import CHECK_KINDS, run_check, strip_think, validate_check
from openrlhf_reward.ifeval import IFEVAL_INSTRUCTION_ARGS

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


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("name", list(UNITS))
def test_every_check_finishes_on_1mb(name):
    text = TEXTS[name]
    verdicts = []
    for spec in SPECS:
        validate_check(spec)
        verdicts.append(run_check(text, spec))
    assert all(v in (True, False, None) for v in verdicts)
    assert run_check(text, {"kind": "sentence_count", "exact": 1}) is True  # the "x"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", list(UNITS))
def test_request_path_text_steps_finish_on_1mb(name):
    text = TEXTS[name]
    stripped = protocol.strip_end_markers("answer" + text[:-1])
    if name == "end-markers":
        assert stripped == "answer"
    assert strip_think("<think>" + text) == ""
    assert strip_think("<think>" * 1000 + text + "</think>" * 999) == ""
    response, how = protocol.recover_response(text + "answer", text[:-1] + "?")
    assert response.endswith("answer")
    assert isinstance(protocol.last_user_turn(text), str)
    assert protocol.last_user_turn(text + "<|im_start|>user\nhi<|im_end|>") == "hi"
