"""Reading OpenRLHF requests: response recovery, end markers, user turns, labels, extra_logs."""

from __future__ import annotations

import pytest

from openrlhf_reward.protocol import (
    DEGENERATE_KEYS,
    ProtocolOptions,
    RequestError,
    build_response,
    extra_logs,
    last_user_turn,
    parse_label,
    parse_reward_request,
    recover_response,
    strip_end_markers,
)
from openrlhf_reward.scorers.base import ScoreResult

CHATML = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
LLAMA3 = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
MISTRAL = "<s>[INST] {} [/INST]"
LLAMA2 = "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n{} [/INST]"
REQ = {"id": "c1", "type": "length", "text": "Use two sentences.", "check": {"kind": "sentence_count", "exact": 2}}


@pytest.mark.parametrize("template", [CHATML, LLAMA3, MISTRAL, LLAMA2])
def test_last_user_turn_of_common_templates(template):
    instruction = "Write about the sea.\n\nRequirements:\n1. Use two sentences."
    assert last_user_turn(template.format(instruction)) == instruction


def test_last_user_turn_takes_the_last_of_several_turns_and_falls_back_to_the_prompt():
    multi = (
        "<|im_start|>user\nfirst question<|im_end|>\n<|im_start|>assistant\nan answer<|im_end|>\n"
        "<|im_start|>user\nsecond question<|im_end|>\n<|im_start|>assistant\n"
    )
    assert last_user_turn(multi) == "second question"
    assert last_user_turn("  Plain prompt without template  ") == "Plain prompt without template"


@pytest.mark.parametrize(
    "generated, expected",
    [
        ("The sea. The sky.<|im_end|>", "The sea. The sky."),
        ("The sea. The sky.</s>", "The sea. The sky."),
        ("The sea.<|eot_id|>", "The sea."),
        ("The sea.\n<|im_end|>\n<|endoftext|>", "The sea."),
        ("The sea.<|end|>", "The sea."),
        ("Mentions </s> inside but not at the end.", "Mentions </s> inside but not at the end."),
        ("No marker, trailing space ", "No marker, trailing space "),
    ],
)
def test_end_markers_are_stripped(generated, expected):
    prompt = CHATML.format("Q")
    response, how = recover_response(prompt + generated, prompt)
    assert how == "prefix"
    assert strip_end_markers(response) == expected


def test_configured_extra_end_marker():
    opts = ProtocolOptions(end_markers=("<|my_eos|>",), require_requirements=False)
    prompt = CHATML.format("Q")
    parsed = parse_reward_request({"query": [prompt + "Answer.<|my_eos|>"], "prompts": [prompt]}, opts)
    assert parsed.items[0].response == "Answer."


def test_response_recovery_when_the_prompt_was_left_truncated():
    # OpenRLHF keeps the last max_prompt_length tokens of a long prompt.
    prompt = CHATML.format("x " * 400 + "Write one line.")
    truncated = prompt[300:]
    response, how = recover_response(truncated + "A line.<|im_end|>", prompt)
    assert (response, how) == ("A line.<|im_end|>", "tail")


def test_response_recovery_through_the_assistant_header():
    # The decoded prompt differs from the sent one (tokenizer normalisation) near its end.
    prompt = "<|im_start|>user\nSay  hi<|im_end|>\n<|im_start|>assistant\n"
    query = "<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\nHi!<|im_end|>"
    response, how = recover_response(query, prompt)
    assert (response, how) == ("Hi!<|im_end|>", "marker")


def test_think_blocks_are_dropped():
    from openrlhf_reward.text import strip_think

    assert strip_think("<think>plan it</think>\n\nThe answer.") == "The answer."
    assert strip_think("<think>never finished") == ""
    # every block, nested and unfinished ones included (issue 20)
    assert strip_think("Text with <think> later") == "Text with "
    assert strip_think("A<think>x</think>B<think>y") == "AB"
    assert strip_think("<think><think>x</think>still thinking</think>Done") == "Done"
    assert strip_think("stray</think> close") == "stray close"
    assert strip_think("no tags at all") == "no tags at all"


def test_label_forms():
    reqs = [REQ]
    a = parse_label({"requirements": reqs, "instruction": "Do it.", "query": "base"}, "labels[0]")
    assert [r.id for r in a.requirements] == ["c1"] and a.instruction == "Do it." and a.query == "base"
    b = parse_label('{"requirements": [{"id": "c1", "type": "length", "text": "t", "check": null}]}', "l")
    assert b.requirements[0].check is None
    assert parse_label(reqs, "l").requirements[0].id == "c1"
    assert parse_label(None, "l").requirements is None
    assert parse_label({"other": 1}, "l").requirements is None


@pytest.mark.parametrize(
    "label, field",
    [
        ("not json", "labels[0]"),
        (5, "labels[0]"),
        ({"requirements": "c1"}, "labels[0].requirements"),
        ({"requirements": [{"id": "c1", "type": "tone", "text": "x"}]}, "labels[0].requirements"),
        ({"requirements": [REQ, REQ]}, "labels[0].requirements"),
        ({"requirements": [{**REQ, "check": {"kind": "no_such_check"}}]}, "labels[0].requirements"),
        ({"requirements": [REQ], "instruction": 3}, "labels[0].instruction"),
        ({"instruction_id_list": "x"}, "labels[0].instruction_id_list"),
        ({"instruction_id_list": ["a", "b"], "kwargs": [{}]}, "labels[0].kwargs"),
    ],
)
def test_bad_labels_name_the_field(label, field):
    with pytest.raises(RequestError) as e:
        parse_label(label, "labels[0]")
    assert e.value.field == field and e.value.status == 422


def test_ifeval_labels_become_requirements():
    # our own module: a missing function is a failure, not a skip
    from openrlhf_reward.schema import requirements_from_ifeval

    ids = ["change_case:english_lowercase", "punctuation:no_comma", "keywords:existence"]
    kwargs = [{}, {}, {"keywords": ["sea"]}]
    info = parse_label({"instruction_id_list": ids, "kwargs": kwargs}, "labels[0]")
    assert list(info.requirements) == requirements_from_ifeval(ids, kwargs)  # one converter for both paths
    assert [r.id for r in info.requirements] == ["c1", "c2", "c3"]
    assert [r.check["instruction_id"] for r in info.requirements] == ids
    assert info.requirements[2].check["kwargs"] == {"keywords": ["sea"]}
    with pytest.raises(RequestError) as e:
        parse_label({"instruction_id_list": ["no:such_id"], "kwargs": [{}]}, "labels[0]")
    assert e.value.field == "labels[0].instruction_id_list"


def test_instruction_from_label_wins_over_the_template():
    prompt = CHATML.format("templated text")
    parsed = parse_reward_request(
        {"query": [prompt + "A.</s>"], "prompts": [prompt],
         "labels": [{"requirements": [REQ], "instruction": "the instruction", "query": "q"}]}
    )
    item = parsed.items[0]
    assert (item.prompt, item.response, item.query) == ("the instruction", "A.", "q")
    parsed = parse_reward_request({"query": [prompt + "A."], "prompts": [prompt], "labels": [[REQ]]})
    assert parsed.items[0].prompt == "templated text"


def test_requirements_optional_only_when_allowed():
    body = {"query": ["p r"], "prompts": ["p "], "labels": [None]}
    with pytest.raises(RequestError) as e:
        parse_reward_request(body)
    assert e.value.field == "labels[0].requirements"
    parsed = parse_reward_request(body, ProtocolOptions(require_requirements=False))
    assert parsed.items[0].response == "r" and parsed.items[0].requirements == ()
    # labels may be left out entirely for holistic backends
    parsed = parse_reward_request({"query": ["p r"], "prompts": ["p "]}, ProtocolOptions(require_requirements=False))
    assert len(parsed.items) == 1


def test_extra_logs_have_fixed_numeric_keys():
    a = ScoreResult(1.0, {"c1": 1.0, "c2": 0.0, "c3": None}, {"c1": "length", "c2": "length", "c3": "style"})
    b = ScoreResult(0.0, {"c1": 0.0, "c2": 1.0}, {"c1": "length", "c2": "content"})
    logs = extra_logs([a, b])
    assert set(logs) == {f"{k}_{t}" for k in ("adherence", "coverage") for t in ("length", "format", "style", "content")} | set(DEGENERATE_KEYS)
    assert all(isinstance(v, float) for v in logs.values())
    assert logs["adherence_length"] == pytest.approx((0.5 + 0.0) / 2)
    assert logs["coverage_length"] == 1.0
    assert logs["adherence_content"] == 1.0 and logs["coverage_content"] == 0.5
    assert logs["adherence_style"] == 0.0 and logs["coverage_style"] == 0.0  # None is not scored
    assert logs["unscorable_requirements"] == pytest.approx((1 / 3 + 0) / 2)
    # one sample: the same keys, so OpenRLHF can stack them across samples
    assert set(extra_logs([b])) == set(logs)


def test_extra_logs_degenerate_rates():
    parsed = parse_reward_request(
        {"query": ["p   ", "p real answer", "XX other"], "prompts": ["p", "p", "p"]},
        ProtocolOptions(require_requirements=False),
    )
    judged = ScoreResult(0.0, {"c1": None}, {"c1": "style"}, info={"n_parsed": 1, "n_unparsed": 3, "all_unparsed": False})
    results = [ScoreResult(0.0), ScoreResult(1.0), judged]
    logs = extra_logs(results, parsed.items, parsed.recovery)
    assert parsed.recovery == ["prefix", "prefix", "common"]
    assert logs["blank_response"] == pytest.approx(1 / 3)
    assert logs["recovery_fallback"] == pytest.approx(1 / 3)
    assert logs["judge_unparsed"] == pytest.approx(0.75 / 3)
    assert logs["unscorable_requirements"] == pytest.approx(1 / 3)
    assert set(logs) == set(extra_logs([ScoreResult(1.0)]))


def test_non_finite_reward_is_refused():
    from openrlhf_reward.protocol import BackendOutputError

    with pytest.raises(BackendOutputError):
        build_response([ScoreResult(float("nan"))])


# ---------------------------------------------------------------- issue 20


@pytest.mark.parametrize("label", [None, "", {}, [], "[]", "{}", {"requirements": []},
                                   {"requirements": None}, {"instruction_id_list": []},
                                   {"requirements": [], "instruction": "x"}])
def test_empty_requirements_are_treated_like_no_label(label):
    """[] / null / {} all mean "no requirements": one answer for all (422 by default)."""
    body = {"query": ["p r"], "prompts": ["p "], "labels": [label]}
    with pytest.raises(RequestError) as e:
        parse_reward_request(body)
    assert (e.value.status, e.value.field) == (422, "labels[0].requirements")
    assert parse_reward_request(body, ProtocolOptions(require_requirements=False)).items[0].requirements == ()


def test_requirement_count_is_limited_before_parsing(monkeypatch):
    from openrlhf_reward import schema

    n = schema.MAX_REQUIREMENTS_PER_SAMPLE
    reqs = [{**REQ, "id": f"r{i}"} for i in range(n)]
    assert len(parse_label({"requirements": reqs}, "labels[0]").requirements) == n
    parsed = []
    real = schema.Requirement.from_dict
    monkeypatch.setattr(schema.Requirement, "from_dict",
                        classmethod(lambda cls, d, where="r": parsed.append(1) or real(d, where)))
    with pytest.raises(RequestError) as e:
        parse_label({"requirements": [REQ] * 40_000}, "labels[0]")
    assert (e.value.status, e.value.field) == (422, "labels[0].requirements")
    assert "40000 requirements" in e.value.message and str(n) in e.value.message
    assert parsed == []  # refused on the count alone
    with pytest.raises(RequestError) as e:
        parse_label({"instruction_id_list": ["punctuation:no_comma"] * (n + 1)}, "labels[0]")
    assert e.value.field == "labels[0].instruction_id_list" and str(n) in e.value.message


def test_duplicate_ids_are_found_in_one_pass():
    reqs = [{**REQ, "id": f"r{i % 100}"} for i in range(200)]
    with pytest.raises(RequestError) as e:
        parse_label({"requirements": reqs}, "labels[0]")
    assert e.value.field == "labels[0].requirements"
    assert "duplicate requirement ids" in e.value.message and "and 80 more" in e.value.message


@pytest.mark.parametrize("constraint", [5, "text", ["only one"], ["a", 3], ["a", "   "], ["a", "\u200b"]])
def test_bad_constraint_names_the_constraint_field(constraint):
    label = {"instruction_id_list": ["punctuation:no_comma", "change_case:english_lowercase"],
             "kwargs": [{}, {}], "constraint": constraint}
    with pytest.raises(RequestError) as e:
        parse_label(label, "labels[0]")
    assert (e.value.status, e.value.field) == (422, "labels[0].constraint")
    assert "has no len" not in e.value.message


def test_blank_contains_all_keywords_are_refused():
    for kw in (" ", "\u200b", "\u3164\u2800"):
        req = {**REQ, "check": {"kind": "contains_all", "keywords": ["sea", kw]}}
        with pytest.raises(RequestError) as e:
            parse_label({"requirements": [req]}, "labels[0]")
        assert e.value.field == "labels[0].requirements" and "visible" in e.value.message


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"keywords": [" "]}, "keywords"), ({"keywords": ["sea", "\u200b"]}, "keywords"),
    ({"keyword": "\t", "frequency": 1, "relation": "at least"}, "keyword"),
    ({"forbidden_words": ["\u3164"]}, "forbidden_words"),
    ({"keywords": ["x" * 257]}, "keywords"),
])
def test_blank_or_long_ifeval_search_arguments_are_refused(kwargs, name):
    iid = next(k for k, v in {"keywords:existence": "keywords", "keywords:frequency": "keyword",
                              "keywords:forbidden_words": "forbidden_words"}.items() if v == name)
    body = {"query": ["p r"], "prompts": ["p "],
            "labels": [{"instruction_id_list": [iid], "kwargs": [kwargs]}]}
    with pytest.raises(RequestError) as e:
        parse_reward_request(body)
    assert e.value.status == 422 and e.value.field == "labels[0].kwargs"
    assert f"kwargs.{name}" in e.value.message


@pytest.mark.parametrize("response", [
    "\u200b", "\ufeff", "\u2060", "\u00ad", "\u3164", "\u2800", "\u180e", "\u115f\u1160\uffa0",
    " \u2028\u2029\u3000\u00a0", "<think>x</think>\u200b", "<think><think>x</think></think>",
    "<think><think>x</think>", "</s>", "<think>x</think></s>",
])
def test_invisible_responses_are_blank_score_0_and_are_counted(response):
    from openrlhf_reward.protocol import build_response
    from openrlhf_reward.scorers import get_scorer

    label = {"requirements": [REQ, {**REQ, "id": "b", "check": {"kind": "forbidden_chars", "chars": ","}}]}
    parsed = parse_reward_request({"query": ["p " + response], "prompts": ["p "], "labels": [label]})
    results = get_scorer("rules").score(parsed.items)
    out = build_response(results, items=parsed.items, recovery=parsed.recovery)
    assert out["rewards"] == [0.0]
    assert out["extra_logs"]["blank_response"] == 1.0
    assert results[0].info["blank"] is True


def test_a_visible_character_among_invisible_ones_is_not_blank():
    from openrlhf_reward.protocol import build_response
    from openrlhf_reward.scorers import get_scorer

    label = {"requirements": [{**REQ, "check": {"kind": "forbidden_chars", "chars": ","}}]}
    parsed = parse_reward_request({"query": ["p \u200bok\u200b"], "prompts": ["p "], "labels": [label]})
    out = build_response(get_scorer("rules").score(parsed.items), items=parsed.items)
    assert out["rewards"] == [1.0] and out["extra_logs"]["blank_response"] == 0.0
