"""The client layer (openrlhf_reward.clients) and the judge's prompt module.

One retry policy and one way to fail for the teacher, the judge and the remote backend; the
failures keep what they were, so the reward server still tells an unreachable backend
(ride-through) from one that answered with an error.
"""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
from scripted_openai_server import MODEL, ScriptedServer

from openrlhf_reward.clients import (
    ChatClient,
    EndpointError,
    HttpClient,
    chat_body,
    resolve_api_key,
)
from openrlhf_reward.judge_prompts import normalized_verdict, read_template, verdict_probability
from openrlhf_reward.retry import RetryPolicy, TransientError
from openrlhf_reward.scorers import ScoreRequest, get_scorer
from openrlhf_reward.server.batcher import is_backend_unavailable

CONV = [{"role": "user", "content": "Say hi."}]


@pytest.fixture
def closed_port():
    """A port that refuses connections for the whole test: bound, never listening, so no
    other process can take it meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def test_chat_body_leaves_out_none_and_extra_body_wins():
    body = chat_body("m", CONV, temperature=0.0, max_tokens=5, max_tokens_field="max_completion_tokens",
                     extra_body={"temperature": 0.5, "chat_template_kwargs": {"x": 1}}, seed=None, top_p=0.9)
    assert body == {"model": "m", "messages": CONV, "temperature": 0.5, "max_completion_tokens": 5,
                    "top_p": 0.9, "chat_template_kwargs": {"x": 1}}


def test_resolve_api_key(monkeypatch):
    monkeypatch.delenv("WEVAL_TEST_KEY", raising=False)
    assert resolve_api_key(None, "WEVAL_TEST_KEY") is None
    assert resolve_api_key(None, "WEVAL_TEST_KEY", "EMPTY") == "EMPTY"
    monkeypatch.setenv("WEVAL_TEST_KEY", "from-env")
    assert resolve_api_key(None, "WEVAL_TEST_KEY", "EMPTY") == "from-env"
    assert resolve_api_key("given", "WEVAL_TEST_KEY") == "given"


def test_chat_client_retries_then_fails_for_good():
    retried: list[BaseException] = []
    with ScriptedServer(fail_first=10, fail_status=503) as srv:
        client = ChatClient(srv.base_url, "k", timeout=5, concurrency=2,
                            retry=RetryPolicy(max_tries=3, backoff=0.001), on_retry=retried.append)
        with pytest.raises(EndpointError) as info:
            client.complete(chat_body(MODEL, CONV, temperature=0.0, max_tokens=4))
        assert client.model_ids() == [MODEL]
        client.close()
    err = info.value
    assert (err.attempts, err.transient, len(retried), len(srv.requests)) == (3, True, 2, 3)
    assert err.__cause__ is err.error and type(err.error).__name__ == "InternalServerError"
    assert not is_backend_unavailable(err)  # it answered: an HTTP error, not an outage


def test_chat_client_unreachable_is_an_outage(closed_port):
    client = ChatClient(f"http://127.0.0.1:{closed_port}/v1", "k", timeout=2, concurrency=1,
                        retry=RetryPolicy(max_tries=2, backoff=0.001))
    with pytest.raises(EndpointError) as info:
        client.complete(chat_body("m", CONV, temperature=0.0, max_tokens=4))
    client.close()
    assert info.value.attempts == 2 and info.value.transient
    assert is_backend_unavailable(info.value)


def test_http_client_transport_failure_is_transient_from_the_httpx_error(closed_port):
    client = HttpClient(timeout=2, concurrency=1)
    url = f"http://127.0.0.1:{closed_port}/get_reward"
    with pytest.raises(TransientError, match=r"127\.0\.0\.1.*ConnectError") as info:
        client.post(url, {"query": ["x"]})
    client.close()
    assert type(info.value.__cause__).__name__ == "ConnectError" and is_backend_unavailable(info.value)


def _failure(backend: str, error: type[Exception], match: str, **args) -> Exception:
    """The exception scoring one sample with ``backend`` raises (the scorer is closed after)."""
    scorer = get_scorer(backend, **args)
    try:
        with pytest.raises(error, match=match) as info:
            scorer.score([ScoreRequest("p", "r")])
    finally:
        scorer.close()
    return info.value


def test_judge_and_remote_failures_keep_their_classification(closed_port):
    """The reward server holds requests (ride-through) only for unreachable backends."""
    from openrlhf_reward.scorers.judge import JudgeError
    from openrlhf_reward.scorers.remote import RemoteRewardError

    port = closed_port
    down = _failure("judge", JudgeError, "1 attempt", model="m", base_url=f"http://127.0.0.1:{port}/v1",
                    max_retries=0, timeout=2)
    assert is_backend_unavailable(down)
    with ScriptedServer(fail_first=10, fail_status=400) as srv:
        refused = _failure("judge", JudgeError, "1 attempt", model="m", base_url=srv.base_url, max_retries=3, timeout=5)
    assert not is_backend_unavailable(refused) and len(srv.requests) == 1
    down = _failure("remote", RemoteRewardError, "after 2 tries", url=f"http://127.0.0.1:{port}/get_reward",
                    max_tries=2, retry_backoff_s=0.001)
    assert is_backend_unavailable(down)


def test_verdict_probability_reads_json_and_client_objects():
    top = [{"token": " yes", "logprob": -0.5}, {"token": "No", "logprob": -1.5}, {"token": "YES", "logprob": -3.0}]
    wire = {"content": [{"token": " ", "logprob": -0.1, "top_logprobs": []},
                        {"token": " yes", "logprob": -0.5, "top_logprobs": top}]}
    import math

    want = normalized_verdict(math.log(math.exp(-0.5) + math.exp(-3.0)), -1.5)
    assert verdict_probability(wire) == pytest.approx(want)

    def ns(obj):
        if isinstance(obj, dict):
            return SimpleNamespace(**{k: ns(v) for k, v in obj.items()})
        return [ns(v) for v in obj] if isinstance(obj, list) else obj

    assert verdict_probability(ns(wire)) == pytest.approx(want)
    assert verdict_probability(None) is None and verdict_probability({"content": None}) is None


def test_read_template_names_the_option_without_a_prefix(tmp_path):
    assert read_template(None, "default {query}", "query", "--x") == "default {query}"
    good = tmp_path / "t.txt"
    good.write_text("mine {query}")
    assert read_template(str(good), "d", "query", "--x") == "mine {query}"
    good.write_text("no placeholder")
    with pytest.raises(ValueError, match=r"^--x '.*t\.txt' lacks the placeholder \{query\}$"):
        read_template(str(good), "d", "query", "--x")
    with pytest.raises(ValueError, match=r"^opt '.*missing' cannot be read"):
        read_template(str(tmp_path / "missing"), "d", "query", "opt")


def test_client_layer_and_prompts_import_light():
    from test_imports import heavy_modules_after

    code = ("import openrlhf_reward.judge_prompts, openrlhf_reward.clients, openrlhf_reward.retry\n"
            "import openrlhf_reward.scorers.judge, openrlhf_reward.scorers.remote, openrlhf_reward.teachers.openai_api\n"
            "import sys; assert 'httpx' not in sys.modules and 'tenacity' not in sys.modules\n")
    assert heavy_modules_after(code) == []
