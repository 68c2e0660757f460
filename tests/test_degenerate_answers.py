"""Degenerate answers through the real reward server never outscore a genuine answer.

What a GRPO policy finds first when the reward allows it: saying nothing, whitespace, an
unfinished ``<think>``, only the keywords, an echo of the prompt. Each is sent the way
OpenRLHF sends a sample (templated prompt + response + end marker, over HTTP to
``/get_reward``) next to a genuine answer that meets every check, for a label with our own
checks (negative ones included: at most N words, no commas, lowercase) and for an IFEval
label.
"""

from __future__ import annotations

import httpx
import pytest
from server_utils import ServerThread

from openrlhf_reward.scorers import get_scorer

USER = (
    "write a short note about a lighthouse in a storm, in lowercase, with at least two "
    "sentences, at most 40 words and no commas; mention the lighthouse and the storm."
)
PROMPT = f"<|im_start|>user\n{USER}<|im_end|>\n<|im_start|>assistant\n"
GENUINE = (
    "the lighthouse stood alone against the storm. its beam swept the black water all night "
    "and the keeper never slept."
)
OUR_LABEL = {"requirements": [
    {"id": "c1", "type": "length", "text": "At most 40 words.", "check": {"kind": "word_count", "max": 40}},
    {"id": "c2", "type": "style", "text": "No commas.", "check": {"kind": "forbidden_chars", "chars": ","}},
    {"id": "c3", "type": "style", "text": "All lowercase.", "check": {"kind": "lowercase"}},
    {"id": "c4", "type": "length", "text": "At least two sentences.", "check": {"kind": "sentence_count", "min": 2}},
    {"id": "c5", "type": "content", "text": "Mention the lighthouse and the storm.",
     "check": {"kind": "contains_all", "keywords": ["lighthouse", "storm"]}},
    {"id": "c6", "type": "style", "text": "Warm tone.", "check": None},
]}
IFEVAL_LABEL = {
    "instruction_id_list": ["punctuation:no_comma", "keywords:existence", "length_constraints:number_words"],
    "kwargs": [{}, {"keywords": ["storm"]}, {"num_words": 15, "relation": "at least"}],
}
DEGENERATE = {
    "empty": "",
    "whitespace": "  \n\t \n",
    "unfinished think": "<think>the user wants a note about a lighthouse in a storm. let me plan",
    "think only": "<think>a lighthouse in a storm</think>\n",
    "end markers only": "</s><|im_end|>",
    "keyword only": "lighthouse storm",
    "prompt echo": USER,
}


@pytest.fixture(scope="module")
def server():
    with ServerThread(get_scorer("rules"), "rules") as srv:
        yield srv


def _score(server, responses: list[str], label) -> tuple[list[float], list[dict]]:
    body = {
        "query": [PROMPT + r + "<|im_end|>" for r in responses],
        "prompts": [PROMPT] * len(responses),
        "labels": [label] * len(responses),
        "return_details": True,
    }
    r = httpx.post(server.url + "/get_reward", json=body, timeout=120)
    assert r.status_code == 200, r.text
    out = r.json()
    return out["rewards"], out["details"]


@pytest.mark.parametrize("label", [OUR_LABEL, IFEVAL_LABEL], ids=["our-checks", "ifeval"])
def test_no_degenerate_answer_outscores_a_genuine_one(server, label):
    names = list(DEGENERATE)
    rewards, details = _score(server, [GENUINE, *DEGENERATE.values()], label)
    genuine, rest = rewards[0], dict(zip(names, rewards[1:]))
    assert genuine == 1.0, details[0]
    assert details[0]["info"]["blank"] is False
    for name, reward in rest.items():
        assert reward < genuine, (name, reward)
    blank = {"empty", "whitespace", "unfinished think", "think only", "end markers only"}
    for name, d in zip(names, details[1:]):
        if name in blank:
            assert d["info"]["blank"] is True and d["info"]["reason"] == "blank response", name
            assert rest[name] == 0.0
            assert {v for v in d["requirement_scores"].values() if v is not None} == {0.0}
        else:
            assert d["info"]["blank"] is False, name
