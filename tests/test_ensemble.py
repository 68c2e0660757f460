"""`ensemble`: per-requirement routing and weighted mixing over member backends."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from openrlhf_reward.schema import Requirement
from openrlhf_reward.scorers import (
    Scorer,
    ScoreRequest,
    ScoreResult,
    get_scorer,
    register_scorer,
    unregister_scorer,
)

REQS = (
    Requirement("c1", "length", "Write at most five words.", {"kind": "word_count", "max": 5}),
    Requirement("c2", "style", "Mention the ocean.", None),
    Requirement("c3", "format", "End with a question mark.", {"kind": "ends_with", "text": "?"}),
    Requirement("c4", "content", "Mention the budget.", None),
)


class KeywordDouble(Scorer):
    """Test double: a requirement passes when its text's last word occurs in the response."""

    asked: list[list[str]] = []

    def score(self, batch: Sequence[ScoreRequest]) -> list[ScoreResult]:
        out = []
        for req in batch:
            KeywordDouble.asked.append([r.id for r in req.requirements])
            scores = {
                r.id: float(r.text.rstrip(".").split()[-1].lower() in req.response.lower())
                for r in req.requirements
            }
            vals = list(scores.values())
            out.append(ScoreResult(sum(vals) / len(vals) if vals else 0.5, scores,
                                   {r.id: r.type for r in req.requirements}))
        return out


class LengthDouble(Scorer):
    """Test double for a holistic RM: reward = response length / 100, no per-requirement detail."""

    def score(self, batch: Sequence[ScoreRequest]) -> list[ScoreResult]:
        return [ScoreResult(len(req.response) / 100) for req in batch]


@pytest.fixture(autouse=True)
def doubles():
    register_scorer("test-keyword")(KeywordDouble)
    register_scorer("test-length")(LengthDouble)
    KeywordDouble.asked = []
    yield
    for name in ("test-keyword", "test-length"):
        unregister_scorer(name)


def test_registry_refuses_a_conflicting_name_and_unregisters():
    from openrlhf_reward.scorers import available_scorers

    register_scorer("test-keyword")(KeywordDouble)  # the same class again: a no-op
    with pytest.raises(ValueError, match=r"'test-keyword' is already registered to .*KeywordDouble"):
        register_scorer("test-keyword")(LengthDouble)
    with pytest.raises(ValueError, match=r"'rules' is already registered to "
                                         r"openrlhf_reward\.scorers\.rules:RulesScorer"):
        register_scorer("rules")(LengthDouble)  # built-in, not imported yet: still refused
    assert get_scorer("test-keyword").__class__ is KeywordDouble  # nothing was overwritten
    unregister_scorer("test-length")
    assert "test-length" not in available_scorers()
    with pytest.raises(ValueError, match="unknown reward backend 'test-length'"):
        get_scorer("test-length")
    register_scorer("test-length")(KeywordDouble)  # free again
    assert get_scorer("test-length").__class__ is KeywordDouble


def _rules_then_keyword(**kw):
    return get_scorer("ensemble", members=[
        {"backend": "rules", "weight": kw.get("w_rules", 1.0)},
        {"backend": "test-keyword", "weight": kw.get("w_kw", 1.0)},
    ], mode="route")


def test_route_sends_checkable_requirements_to_rules_and_the_rest_to_the_model():
    responses = ["The ocean budget?", "A long answer about the ocean and many other things."]
    batch = [ScoreRequest("p", r, REQS) for r in responses]
    results = _rules_then_keyword().score(batch)
    rules_res = get_scorer("rules").score(batch)
    kw_res = KeywordDouble().score([ScoreRequest("p", r, (REQS[1], REQS[3])) for r in responses])
    assert KeywordDouble.asked[:2] == [["c2", "c4"], ["c2", "c4"]]  # never the checkable ones
    for res, rr, kr in zip(results, rules_res, kw_res):
        expected = {"c1": rr.requirement_scores["c1"], "c3": rr.requirement_scores["c3"],
                    "c2": kr.requirement_scores["c2"], "c4": kr.requirement_scores["c4"]}
        assert res.requirement_scores == expected
        assert res.reward == pytest.approx(sum(expected.values()) / 4)
        assert res.info["routed"] == {"c1": "rules", "c3": "rules", "c2": "test-keyword",
                                      "c4": "test-keyword"}
        assert res.requirement_types == {r.id: r.type for r in REQS}
    assert results[0].reward == 1.0
    assert results[1].requirement_scores == {"c1": 0.0, "c2": 1.0, "c3": 0.0, "c4": 0.0}


def test_route_weights_scale_each_members_requirements():
    req = ScoreRequest("p", "The ocean?", REQS)  # rules: c1 1, c3 1; keyword: c2 1, c4 0
    [res] = _rules_then_keyword(w_rules=3.0, w_kw=1.0).score([req])
    assert res.reward == pytest.approx((3 * (1 + 1) + 1 * (1 + 0)) / (3 * 2 + 1 * 2))


def test_route_with_holistic_member_and_samples_without_requirements():
    ens = get_scorer("ensemble", mode="route", members=[
        {"backend": "rules", "weight": 1.0},
        {"backend": "test-length", "weight": 2.0, "scope": "holistic", "name": "rm"},
    ])
    text = "Short one?"
    with_reqs, no_reqs = ens.score([ScoreRequest("p", text, REQS), ScoreRequest("p", text, ())])
    # rules scored c1, c3 (both pass); the RM covers c2, c4 as a block of two with its reward
    rm = len(text) / 100
    assert with_reqs.reward == pytest.approx((1 + 1 + 2 * 2 * rm) / (2 + 2 * 2))
    assert with_reqs.requirement_scores == {"c1": 1.0, "c2": None, "c3": 1.0, "c4": None}
    assert with_reqs.info["routed"] == {"c1": "rules", "c3": "rules", "c2": "rm", "c4": "rm"}
    assert no_reqs.reward == pytest.approx(rm) and no_reqs.info["member_rewards"] == {"rm": rm}


def test_route_nothing_scorable_gives_unscorable_reward():
    ens = get_scorer("ensemble", members=[{"backend": "rules"}], unscorable_reward=-1)
    [res] = ens.score([ScoreRequest("p", "x", (REQS[1],))])
    assert res.reward == -1.0 and res.requirement_scores == {"c2": None}


def test_mix_is_the_weighted_mean_of_member_rewards_and_scores():
    ens = get_scorer("ensemble", mode="mix", members=[
        {"backend": "rules", "weight": 1.0},
        {"backend": "test-keyword", "weight": 3.0, "name": "kw"},
    ])
    batch = [ScoreRequest("p", "The ocean budget is large.", REQS)]
    [res] = ens.score(batch)
    [r1] = get_scorer("rules").score(batch)
    [r2] = KeywordDouble().score(batch)
    assert res.reward == pytest.approx((r1.reward + 3 * r2.reward) / 4)
    for rid in ("c1", "c3"):  # both members scored them
        expected = (r1.requirement_scores[rid] + 3 * r2.requirement_scores[rid]) / 4
        assert res.requirement_scores[rid] == pytest.approx(expected)
    for rid in ("c2", "c4"):  # rules abstains: the keyword double alone
        assert res.requirement_scores[rid] == r2.requirement_scores[rid]
    assert res.info["member_rewards"] == {"rules": r1.reward, "kw": r2.reward}


def test_members_as_json_string_and_member_args():
    ens = get_scorer("ensemble", mode="mix",
                     members='[{"backend": "rules", "args": {"unscorable_reward": 0.25}}]')
    [res] = ens.score([ScoreRequest("p", "x", (REQS[1],))])
    assert res.reward == 0.25


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"members": []}, "non-empty"),
        ({"members": [{"backend": "rules"}], "mode": "vote"}, "mode"),
        ({"members": [{"backend": "rules", "wieght": 1}]}, "wieght"),
        ({"members": [{"backend": "nope"}]}, "unknown reward backend"),
        ({"members": [{"backend": "rules", "weight": -1}]}, "weight"),
        ({"members": [{"backend": "rules", "scope": "global"}]}, "scope"),
        ({"members": ["rules"]}, "must be an object"),
    ],
)
def test_bad_config_names_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_scorer("ensemble", **kwargs)


def test_route_rules_then_real_judge_over_http(tmp_path):
    """rules + judge (scripted HTTP test double): the judge is asked only what rules cannot check."""
    from test_judge import ScriptedChat

    srv = ScriptedChat(lambda kind, body: "Yes")
    try:
        ens = get_scorer("ensemble", mode="route", members=[
            {"backend": "rules"},
            {"backend": "judge", "args": {"model": "m", "base_url": srv.base_url, "api_key": "k"}},
        ])
        try:
            [res] = ens.score([ScoreRequest("p", "Too many words in this response here.", REQS)])
        finally:
            ens.close()
    finally:
        srv.close()
    asked = sorted(body["messages"][1]["content"].split("Requirement:\n")[1].split("\n")[0]
                   for _, body in srv.calls)
    assert asked == ["Mention the budget.", "Mention the ocean."]
    assert res.requirement_scores == {"c1": 0.0, "c2": 1.0, "c3": 0.0, "c4": 1.0}
    assert res.reward == 0.5
