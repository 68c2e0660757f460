"""The `judge` backend with the real demo model behind a real CPU vLLM OpenAI server, through
the real reward server, one sample per POST as OpenRLHF sends them (verdict and criteria)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import httpx
import pytest
from server_utils import ServerThread
from vllm_fixture import VLLMServer, require_vllm_python, start_vllm_server

from openrlhf_reward.schema import load_weval_jsonl
from openrlhf_reward.scorers import get_scorer
from weval_tasks import DEMO_DATA

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
N_CANDIDATES = 3  # of one demo document: 3 POSTs per mode


@pytest.fixture(scope="module")
def demo_vllm(demo_model_dir, tmp_path_factory) -> Iterator[VLLMServer]:
    """vLLM (CPU, fp32) serving SmolLM2-135M-Instruct; one start per module (minutes on 2 cores)."""
    py = require_vllm_python()
    try:
        server = start_vllm_server(demo_model_dir, python=py, served_model_name="smollm2",
                                   max_model_len=2048, log_dir=tmp_path_factory.mktemp("vllm_demo_log"))
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


def _samples(demo_model_dir) -> list[tuple[str, str, dict]]:
    """(query, prompt, label) as OpenRLHF builds them: the policy's chat template around the
    instruction, the response plus the end-of-turn token, the requirements in the label."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo_model_dir)
    doc = load_weval_jsonl(DEMO_DATA)[0]
    prompt = tok.apply_chat_template([{"role": "user", "content": doc.prompt}], add_generation_prompt=True,
                                     tokenize=False)
    label = {"requirements": [r.to_dict() for r in doc.requirements]}
    return [(prompt + c.response + "<|im_end|>", prompt, label) for c in doc.candidates[:N_CANDIDATES]]


@pytest.mark.parametrize("mode", ["verdict", "criteria"])
def test_judge_backend_with_demo_model_through_reward_server(demo_vllm, demo_model_dir, mode):
    scorer = get_scorer("judge", model=demo_vllm.model, base_url=demo_vllm.base_url, mode=mode,
                        logprobs=(mode == "verdict"), max_tokens=4, criteria_max_tokens=96,
                        score_max_tokens=16, timeout=300, max_retries=1)
    samples = _samples(demo_model_dir)
    n_req = len(samples[0][2]["requirements"])
    try:
        with ServerThread(scorer, "judge") as srv:
            rewards = []
            for query, prompt, label in samples:  # one sample per POST, like OpenRLHF
                r = httpx.post(srv.url + "/get_reward", json={"query": [query], "prompts": [prompt],
                                                               "labels": [label]}, timeout=600)
                assert r.status_code == 200, r.text
                data = r.json()
                assert len(data["rewards"]) == 1 and data["scores"] == data["rewards"]
                rewards.append(data["rewards"][0])
    finally:
        scorer.close()
    assert all(math.isfinite(x) and 0.0 <= x <= 1.0 for x in rewards), rewards
    st = scorer.stats()
    assert st["failures"] == 0 and st["samples"] == N_CANDIDATES
    if mode == "verdict":
        assert st["verdicts"] == N_CANDIDATES * n_req
        # a real instruct model answers Yes/No; with logprobs each verdict is P(Yes)/(P(Yes)+P(No))
        assert st["verdicts_unparsed"] < st["verdicts"]
    else:
        assert st["criteria_calls"] == 1  # one query, three samples: criteria derived once
    print(f"{mode}: rewards {rewards} stats {st}")
