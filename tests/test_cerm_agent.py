"""CE-RM two-stage rollout: the agent file run by OpenRLHF 0.11.2's own rollout actor code
(``RolloutRayActor.generate_responses`` -> ``_load_agent_executor`` ->
``MultiTurnAgentExecutor.execute``) against a scripted generation engine, with a real
(tiny, trained-here) chat tokenizer. Known outputs -> known rewards; malformed outputs; ties.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.slow  # OpenRLHF's rollout code: torch, deepspeed, ray
pytest.importorskip("openrlhf")

from openrlhf_stubs import vllm_stub  # noqa: E402

AGENT = Path(__file__).resolve().parents[1] / "openrlhf_reward" / "cerm" / "agent.py"


@dataclass
class Params:
    """The fields of vLLM's SamplingParams that OpenRLHF's executor and the agent use."""

    temperature: float = 1.0
    max_tokens: int | None = None
    logprobs: int | None = 1


class ScriptedLLM:
    """Stands in for vLLM's AsyncLLMEngine: answers are a function of the decoded context.

    The criteria turn gets tagged criteria (none when the query says NOTAGS); an evaluation
    turn gets ``\\boxed{}`` scores looked up by the response text; a list of answers is used
    in turn (sampling).
    """

    def __init__(self, tokenizer, evals: dict[str, list[str]]) -> None:
        self.tok = tokenizer
        self.evals = {k: list(v) for k, v in evals.items()}
        self.seen = {k: 0 for k in evals}
        self.contexts: list[str] = []
        self.end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def answer(self, context: str) -> str:
        last_user = context.rsplit("<|im_start|>user\n", 1)[1]
        if "[Start of Response]" in last_user:
            resp = last_user.split("[Start of Response]\n", 1)[1].split("\n[End of Response]", 1)[0]
            key = resp.split()[0]
            i = self.seen[key]
            self.seen[key] += 1
            return self.evals[key][i % len(self.evals[key])]
        query = last_user.split("[Start of Query]\n", 1)[1].split("\n[End of Query]", 1)[0]
        if "NOTAGS" in query:
            return "I would judge relevance and clarity."
        return "Analysis.\n[Start of Criteria]\n1. Relevance: on topic\n2. Clarity: easy to read\n[End of Criteria]"

    async def generate(self, prompt, sampling_params, request_id):
        ids = prompt["prompt_token_ids"]
        context = self.tok.decode(ids, skip_special_tokens=False)
        self.contexts.append(context)
        text = self.answer(context)
        out_ids = self.tok(text=text, add_special_tokens=False)["input_ids"] + [self.end_id]
        finish = "stop"
        if len(out_ids) > sampling_params.max_tokens:
            out_ids, finish = out_ids[: sampling_params.max_tokens], "length"
        await asyncio.sleep(0)
        logprobs = None
        if sampling_params.logprobs is not None:
            logprobs = [{t: SimpleNamespace(logprob=-0.5)} for t in out_ids]
        yield SimpleNamespace(outputs=[SimpleNamespace(
            token_ids=out_ids, text=self.tok.decode(out_ids, skip_special_tokens=False),
            finish_reason=finish, logprobs=logprobs)])


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from tiny_models import build_tokenizer

    return build_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def openrlhf_actor():
    with vllm_stub():
        import openrlhf.trainer.ppo_utils.samples_generator  # noqa: F401  (imports vllm at load)
        import openrlhf.trainer.ray.vllm_engine as ve
    return ve


def to_experience(out, max_len=4096):
    """OpenRLHF's own conversion of an executor result into a training Experience."""
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator

    return SamplesGenerator._process_response_into_experience(None, out, max_len=max_len)


def rollout(ve, monkeypatch, tokenizer, label, evals, n=2, max_length=4096, env=None):
    """Rows' samples through OpenRLHF's own RolloutRayActor.generate_responses."""
    # vLLM's TokensPrompt is a TypedDict and random_uuid a hex uuid; the scoped vllm stub has neither.
    monkeypatch.setattr(ve, "TokensPrompt", dict)
    monkeypatch.setattr(ve, "random_uuid", lambda: uuid.uuid4().hex)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    actor = object.__new__(ve.RolloutRayActor.__ray_actor_class__)
    actor.executor = ve._load_agent_executor(str(AGENT))  # OpenRLHF's own loader and checks
    actor.llm = ScriptedLLM(tokenizer, evals)
    actor._mm_pad_token_ids = None
    query = label["query"]
    from openrlhf_reward.judge_prompts import CERM_CRITERIA_TEMPLATE, fill_template

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": fill_template(CERM_CRITERIA_TEMPLATE, query=query)}],
        tokenize=False, add_generation_prompt=True)
    outs = asyncio.run(actor.generate_responses(
        prompt=prompt, label=label, sampling_params=Params(), max_length=max_length,
        hf_tokenizer=tokenizer, num_samples=n))
    return outs, actor.llm, prompt


def pair(side, chosen="GOOD essay on rain.", rejected="BAD essay on rain.", query="Write about rain."):
    return {"query": query, "chosen": chosen, "rejected": rejected, "side": side}


EVALS = {"GOOD": ["Relevance \\boxed{4}\nClarity \\boxed{4.5}\nOverall \\boxed{8}"],
         "BAD": ["Relevance \\boxed{2}\nClarity \\boxed{1}\nOverall \\boxed{3}"],
         "SAME": ["Overall \\boxed{5}"], "GARBLED": ["I think it is fine."]}


@pytest.mark.parametrize("side", ["chosen", "rejected"])
def test_correct_order_is_rewarded_and_evaluation_is_pointwise(openrlhf_actor, monkeypatch, tokenizer, side):
    outs, llm, prompt = rollout(openrlhf_actor, monkeypatch, tokenizer, pair(side), EVALS)
    assert len(outs) == 2
    own, other = ("GOOD", "BAD") if side == "chosen" else ("BAD", "GOOD")
    for out in outs:
        assert out["reward"] == 1.0 and float(out["scores"]) == 1.0
        logs = {k: float(v) for k, v in out["extra_logs"].items()}
        assert logs["cerm_correct"] == 1.0 and logs["cerm_counterparts_parsed"] == 2.0
        assert logs["cerm_score"] == (8.0 if side == "chosen" else 3.0)
        assert logs["cerm_side_chosen"] == float(side == "chosen")
        text = tokenizer.decode(out["observation_tokens"], skip_special_tokens=False)
        # The trajectory is exactly the two-turn conversation, rendered by the chat template.
        criteria = llm.answer(prompt)
        from openrlhf_reward.judge_prompts import CERM_EVAL_TEMPLATE, fill_template

        conv = [{"role": "user", "content": prompt.split("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]},
                {"role": "assistant", "content": criteria},
                {"role": "user", "content": fill_template(CERM_EVAL_TEMPLATE, response=pair(side)[side])},
                {"role": "assistant", "content": EVALS[own][0]}]
        assert text == tokenizer.apply_chat_template(conv, tokenize=False).rstrip("\n")
        # Pointwise: the other response and its score are nowhere in the trained context.
        assert pair(side)["rejected" if side == "chosen" else "chosen"] not in text
        assert EVALS[other][0] not in text
        # Two trained actions: the criteria and the evaluation; log-probs cover every token.
        (s1, e1), (s2, e2) = out["action_ranges"]
        toks = out["observation_tokens"]
        assert tokenizer.decode(toks[s1:e1], skip_special_tokens=True) == criteria
        assert tokenizer.decode(toks[s2:e2], skip_special_tokens=True) == EVALS[own][0]
        assert len(out["rollout_log_probs"]) == len(toks)
        # ... and OpenRLHF turns it into an Experience: both turns trained, the prompts and
        # the evaluation turn's user text masked out, the reward and logs carried along
        exp = to_experience(out)
        assert exp.action_mask.sum().item() == (e1 - s1) + (e2 - s2)
        assert exp.rewards.tolist() == [1.0] and exp.scores.tolist() == [1.0]
        assert {k for k in exp.info if k.startswith("cerm_")} == set(out["extra_logs"])
    # Per trajectory: criteria + own evaluation + 2 counterparts (default CERM_COUNTERPARTS).
    assert len(llm.contexts) == 2 * 4
    other_response = pair(side)["rejected" if side == "chosen" else "chosen"]
    counter = [c for c in llm.contexts if f"[Start of Response]\n{other_response}" in c]
    assert len(counter) == 4
    for c in counter:  # a counterpart sees the criteria and the other response only
        assert criteria in c and pair(side)[side] not in c


def test_wrong_order_ties_and_mixed_counterparts(openrlhf_actor, monkeypatch, tokenizer):
    # chosen scored below rejected: wrong order -> 0
    outs, _, _ = rollout(openrlhf_actor, monkeypatch, tokenizer,
                         pair("chosen", chosen="BAD one", rejected="GOOD one"), EVALS, n=1)
    assert outs[0]["reward"] == 0.0 and float(outs[0]["extra_logs"]["cerm_correct"]) == 0.0
    # equal scores: tie_reward
    outs, _, _ = rollout(openrlhf_actor, monkeypatch, tokenizer,
                         pair("rejected", chosen="SAME a", rejected="SAME b"), EVALS, n=1,
                         env={"CERM_TIE_REWARD": "0.25"})
    assert outs[0]["reward"] == 0.25 and float(outs[0]["extra_logs"]["cerm_tie"]) == 1.0
    # counterparts disagree (3 then 9 against 8): half right
    evals = dict(EVALS, BAD=["\\boxed{3}", "\\boxed{9}"])
    outs, _, _ = rollout(openrlhf_actor, monkeypatch, tokenizer, pair("chosen"), evals, n=1)
    assert outs[0]["reward"] == 0.5
    # an unparseable counterpart does not count; none parsed -> no_counterpart_reward
    evals = dict(EVALS, BAD=["\\boxed{3}", "no score"])
    outs, _, _ = rollout(openrlhf_actor, monkeypatch, tokenizer, pair("chosen"), evals, n=1)
    assert outs[0]["reward"] == 1.0 and float(outs[0]["extra_logs"]["cerm_counterparts_parsed"]) == 1.0
    outs, _, _ = rollout(openrlhf_actor, monkeypatch, tokenizer, pair("chosen", rejected="GARBLED x"), EVALS,
                         n=1, env={"CERM_NO_COUNTERPART_REWARD": "0.1"})
    assert outs[0]["reward"] == pytest.approx(0.1)  # float32 tensor


def test_malformed_outputs_are_penalised(openrlhf_actor, monkeypatch, tokenizer):
    # criteria without tags: the trajectory ends after turn 1 with the penalty, nothing else asked
    outs, llm, _ = rollout(openrlhf_actor, monkeypatch, tokenizer, pair("chosen", query="NOTAGS rain"), EVALS, n=1)
    assert outs[0]["reward"] == -1.0 and len(outs[0]["action_ranges"]) == 1 and len(llm.contexts) == 1
    assert float(outs[0]["extra_logs"]["cerm_malformed_criteria"]) == 1.0
    # an evaluation without a final boxed score
    outs, _, _ = rollout(openrlhf_actor, monkeypatch, tokenizer, pair("chosen", chosen="GARBLED y"), EVALS, n=1,
                         env={"CERM_MALFORMED_REWARD": "-0.5"})
    assert outs[0]["reward"] == -0.5 and float(outs[0]["extra_logs"]["cerm_malformed_eval"]) == 1.0
    # an evaluation cut off by its token cap has no final score, even when a criterion's box
    # made it in before the cut (its last box would otherwise be read as the overall score)
    first_box = EVALS["GOOD"][0].split("\n")[0]  # "Relevance \\boxed{4}"
    cap = len(tokenizer(text=first_box, add_special_tokens=False)["input_ids"]) + 1
    outs, _, _ = rollout(openrlhf_actor, monkeypatch, tokenizer, pair("chosen"), EVALS, n=1,
                         env={"CERM_EVAL_MAX_TOKENS": str(cap)})
    (s2, e2) = outs[0]["action_ranges"][1]
    assert first_box in tokenizer.decode(outs[0]["observation_tokens"][s2:e2])
    assert outs[0]["reward"] == -0.5 and outs[0]["truncated"] is True  # env kept from above
    # every trajectory logs the same keys (OpenRLHF stacks them)
    from openrlhf_reward.cerm.rollout import LOG_KEYS

    assert set(outs[0]["extra_logs"]) == set(LOG_KEYS)


def test_bad_label_and_config_fail_clearly(openrlhf_actor, monkeypatch, tokenizer):
    with pytest.raises(ValueError, match="'side' must be 'chosen' or 'rejected'"):
        rollout(openrlhf_actor, monkeypatch, tokenizer, pair("both"), EVALS, n=1)
    with pytest.raises(ValueError, match="counterparts"):
        rollout(openrlhf_actor, monkeypatch, tokenizer, pair("chosen"), EVALS, n=1,
                env={"CERM_COUNTERPARTS": "many"})
    from openrlhf_reward.cerm.rollout import parse_label

    assert parse_label('{"query": "q", "chosen": "a", "rejected": "b", "side": "chosen"}').other == "rejected"
    assert re.search("non-empty", str(pytest.raises(ValueError, parse_label, {"query": "q"}).value))
    assert deepcopy(Params()).logprobs == 1
