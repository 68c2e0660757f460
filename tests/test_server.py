"""The real reward server (uvicorn on a loopback port) driven with OpenRLHF's request shape."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from server_utils import ServerThread, start_cli_server, stop, wait_healthy

from openrlhf_reward.checks import run_check
from openrlhf_reward.schema import Requirement, build_prompt
from openrlhf_reward.scorers import ScoreRequest, ScoreResult, get_scorer
from openrlhf_reward.scorers.base import Scorer
from openrlhf_reward.server.batcher import DynamicBatcher

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHATML = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
REQS = [
    {"id": "c1", "type": "length", "text": "Use exactly two sentences.", "check": {"kind": "sentence_count", "exact": 2}},
    {"id": "c2", "type": "style", "text": "Write in lowercase only.", "check": {"kind": "lowercase"}},
    {"id": "c3", "type": "content", "text": "Mention the sea.", "check": {"kind": "contains_all", "keywords": ["sea"]}},
    {"id": "c4", "type": "format", "text": "Be kind.", "check": None},
]
RESPONSES = [
    "the sea is calm. the sky is grey.",
    "The sea is calm.",
    "birds fly. clouds move. rain falls.",
    "the sea. the shore.",
    "Nothing here",
]


def make_sample(response: str, reqs=REQS, eos: str = "<|im_end|>") -> tuple[str, str, dict]:
    instruction = build_prompt("Write about the coast.", [Requirement.from_dict(r) for r in reqs])
    prompt = CHATML.format(instruction)
    return prompt + response + eos, prompt, {"requirements": reqs}


def expected_reward(response: str, reqs=REQS) -> float:
    checks = [run_check(response, r["check"]) for r in reqs if r["check"] is not None]
    return sum(checks) / len(checks)


def body_for(responses: list[str]) -> dict:
    samples = [make_sample(r) for r in responses]
    return {"query": [s[0] for s in samples], "prompts": [s[1] for s in samples], "labels": [s[2] for s in samples]}


class EchoScorer(Scorer):
    """Test double for a model backend: reward = number of words; remembers batch sizes;
    raises on a response containing BOOM; returns NaN for NAN; sleeps ``delay`` per batch."""

    name = "echo"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.batch_sizes: list[int] = []

    def score(self, batch):
        self.batch_sizes.append(len(batch))
        time.sleep(self.delay)
        if any("BOOM" in r.response for r in batch):
            raise RuntimeError("backend exploded")
        return [ScoreResult(float("nan") if "NAN" in r.response else float(len(r.response.split())))
                for r in batch]


@pytest.fixture(scope="module")
def rules_server():
    with ServerThread(get_scorer("rules"), "rules", api_key=KEY, max_body_bytes=64 * 1024,
                      max_items_per_request=8) as srv:
        yield srv


def post(srv, body, headers=AUTH, **kw) -> httpx.Response:
    if isinstance(body, (bytes, str)):
        return httpx.post(srv.url + "/get_reward", content=body, headers=headers, timeout=30, **kw)
    return httpx.post(srv.url + "/get_reward", json=body, headers=headers, timeout=30, **kw)


# --------------------------------------------------------------------------- the protocol


def test_rewards_follow_the_requirements(rules_server):
    r = post(rules_server, body_for(RESPONSES))
    assert r.status_code == 200, r.text
    data = r.json()
    assert set(data) == {"rewards", "scores", "extra_logs"}
    assert data["rewards"] == [expected_reward(x) for x in RESPONSES]
    assert data["scores"] == data["rewards"]
    logs = data["extra_logs"]
    assert all(isinstance(v, float) for v in logs.values())
    # length (c1) over the 5 samples: 1, 0, 0, 1, 0
    assert logs["adherence_length"] == pytest.approx(2 / 5)
    assert logs["coverage_length"] == 1.0
    assert logs["coverage_format"] == 0.0  # c4 has no check: not scorable by rules


def test_one_sample_per_request_like_openrlhf(rules_server):
    for resp in RESPONSES:
        r = post(rules_server, body_for([resp]))
        assert r.status_code == 200
        assert r.json()["rewards"] == [expected_reward(resp)]


def test_empty_batch_answers_empty_lists(rules_server):
    r = post(rules_server, {"query": [], "prompts": [], "labels": []})
    assert r.status_code == 200
    assert r.json() == {"rewards": [], "scores": [], "extra_logs": {}}


def test_details_on_request(rules_server):
    body = {**body_for(["the sea is calm. the sky is grey."]), "return_details": True}
    d = post(rules_server, body).json()["details"][0]
    assert d["requirement_scores"] == {"c1": 1.0, "c2": 1.0, "c3": 1.0, "c4": None}
    assert d["requirement_types"]["c3"] == "content"


GOOD = body_for(["the sea. the sky."])


@pytest.mark.parametrize(
    "body, status, field",
    [
        (b"{not json", 400, "body"),
        (b"\xff\xfe garbage", 400, "body"),
        ([1, 2], 422, "body"),
        ({"prompts": GOOD["prompts"], "labels": GOOD["labels"]}, 422, "query"),
        ({**GOOD, "query": GOOD["query"][0]}, 422, "query"),
        ({**GOOD, "query": [GOOD["query"][0], 5], "prompts": GOOD["prompts"] * 2, "labels": GOOD["labels"] * 2}, 422, "query[1]"),
        ({**GOOD, "prompts": [None]}, 422, "prompts[0]"),
        ({**GOOD, "prompts": GOOD["prompts"] * 2}, 422, "prompts"),
        ({"query": GOOD["query"], "labels": GOOD["labels"]}, 422, "prompts"),
        ({**GOOD, "labels": GOOD["labels"] * 2}, 422, "labels"),
        ({**GOOD, "labels": GOOD["labels"][0]}, 422, "labels"),
        ({**GOOD, "labels": [{"foo": 1}]}, 422, "labels[0].requirements"),
        ({**GOOD, "labels": [None]}, 422, "labels[0].requirements"),
        ({**GOOD, "labels": [{"requirements": [{"id": "c1", "type": "tone", "text": "x"}]}]}, 422, "labels[0].requirements"),
        ({**GOOD, "labels": ["{broken"]}, 422, "labels[0]"),
        ({**GOOD, "return_details": "yes"}, 422, "return_details"),
        ({"query": ["a"] * 9, "prompts": [""] * 9, "labels": [{"requirements": []}] * 9}, 413, "query"),
        ({**GOOD, "query": ["x" * 70000]}, 413, "body"),
    ],
)
def test_bad_input_is_refused_with_the_field_named(rules_server, body, status, field):
    r = post(rules_server, body)
    assert r.status_code == status, r.text
    err = r.json()
    assert err["field"] == field
    assert err["error"]
    if field not in ("body",):
        assert field.split("[")[0].split(".")[0] in err["error"]


def test_oversized_chunked_body_is_refused(rules_server):
    def chunks():
        for _ in range(100):
            yield b" " * 1024

    r = httpx.post(rules_server.url + "/get_reward", content=chunks(), headers=AUTH, timeout=30)
    assert r.status_code == 413


def test_server_still_answers_after_bad_input(rules_server):
    for bad in (b"", b"null", b"{}", b'{"query": [[]]}'):
        assert 400 <= post(rules_server, bad).status_code < 500
    assert httpx.get(rules_server.url + "/health", headers=AUTH).json()["status"] == "ok"
    assert post(rules_server, GOOD).status_code == 200
    assert httpx.get(rules_server.url + "/get_reward", headers=AUTH).status_code == 405


# --------------------------------------------------------------------------- auth


def test_api_key_is_required_on_every_route(rules_server):
    for path in ("/get_reward", "/health", "/metrics", "/nowhere"):
        method = httpx.post if path == "/get_reward" else httpx.get
        kw = {"json": GOOD} if path == "/get_reward" else {}
        assert method(rules_server.url + path, **kw).status_code == 401
        assert method(rules_server.url + path, headers={"Authorization": "Bearer wrong"}, **kw).status_code == 401
    r = post(rules_server, GOOD, headers={})
    assert r.status_code == 401 and r.json()["field"] == "Authorization"
    assert "www-authenticate" in r.headers


def test_api_key_forms(rules_server):
    assert post(rules_server, GOOD).status_code == 200  # Authorization: Bearer
    # OpenRLHF's client cannot add headers: the key goes in the URL
    assert httpx.post(rules_server.url + f"/get_reward?api_key={KEY}", json=GOOD).status_code == 200
    assert httpx.post(rules_server.url + "/get_reward?api_key=nope", json=GOOD).status_code == 401
    basic = f"http://trainer:{KEY}@127.0.0.1:{rules_server.port}/get_reward"
    assert httpx.post(basic, json=GOOD).status_code == 200


def test_api_key_from_environment(monkeypatch):
    monkeypatch.setenv("OPENRLHF_REWARD_API_KEY", "env-key")
    with ServerThread(get_scorer("rules"), "rules") as srv:
        assert httpx.get(srv.url + "/health").status_code == 401
        assert httpx.get(srv.url + "/health", headers={"Authorization": "Bearer env-key"}).status_code == 200


def test_no_key_configured_means_open_on_loopback():
    with ServerThread(get_scorer("rules"), "rules") as srv:
        assert srv.config.host == "127.0.0.1"
        assert httpx.post(srv.url + "/get_reward", json=GOOD).status_code == 200


# --------------------------------------------------------------------------- failures, batching


def test_backend_failure_is_a_5xx_and_the_server_survives():
    scorer = EchoScorer()
    with ServerThread(scorer, "echo", require_requirements=False) as srv:
        r = httpx.post(srv.url + "/get_reward", json={"query": ["p BOOM"], "prompts": ["p "]})
        assert r.status_code == 500
        assert "backend exploded" in r.json()["error"]
        r = httpx.post(srv.url + "/get_reward", json={"query": ["p NAN"], "prompts": ["p "]})
        assert r.status_code == 500 and "non-finite" in r.json()["error"]
        r = httpx.post(srv.url + "/get_reward", json={"query": ["p one two"], "prompts": ["p "]})
        assert r.status_code == 200 and r.json()["rewards"] == [2.0]
        m = httpx.get(srv.url + "/metrics").json()
        assert m["requests"]["by_status"] == {"200": 1, "500": 2}
        assert httpx.get(srv.url + "/health").json()["status"] == "ok"


def test_concurrent_requests_are_batched_and_answered_individually():
    scorer = EchoScorer(delay=0.05)
    n = 48
    with ServerThread(scorer, "echo", require_requirements=False, max_batch_size=16, max_wait_ms=20) as srv:

        async def one(client, i):
            words = " ".join(["w"] * (i + 1))
            r = await client.post(srv.url + "/get_reward", json={"query": [f"P:{words}"], "prompts": ["P:"], "labels": [None]})
            return i, r

        async def main():
            async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=n)) as client:
                return await asyncio.gather(*(one(client, i) for i in range(n)))

        for i, r in asyncio.run(main()):
            assert r.status_code == 200
            assert r.json()["rewards"] == [float(i + 1)]  # its own result
        m = httpx.get(srv.url + "/metrics").json()
    assert m["samples_scored"] == n
    assert m["requests"]["by_status"] == {"200": n}
    assert m["batches"]["max_size"] > 1 and m["batches"]["max_size"] <= 16
    assert m["batches"]["total"] < n
    assert sum(int(k) * v for k, v in m["batches"]["size_histogram"].items()) == n
    assert m["latency_ms"]["count"] == n and m["latency_ms"]["p50"] <= m["latency_ms"]["p99"]
    assert max(scorer.batch_sizes) > 1


def test_metrics_prometheus_format(rules_server):
    post(rules_server, GOOD)
    r = httpx.get(rules_server.url + "/metrics?format=prometheus", headers=AUTH)
    text = r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert 'reward_requests_total{status="200"}' in text
    assert "# TYPE reward_request_latency_seconds summary" in text
    from prometheus_client.parser import text_string_to_metric_families

    fams = {f.name: f for f in text_string_to_metric_families(text)}
    lat = {s.name: s.value for s in fams["reward_request_latency_seconds"].samples if not s.labels}
    assert lat["reward_request_latency_seconds_count"] >= 1 and lat["reward_request_latency_seconds_sum"] > 0
    for name in ("reward_blank_response_rate", "reward_unscorable_requirement_rate",
                 "reward_judge_unparsed_rate", "reward_recovery_fallback_rate", "reward_unauthorized"):
        assert name in fams
    js = httpx.get(rules_server.url + "/metrics", headers=AUTH).json()
    assert fams["reward_samples_scored"].samples[0].value == js["samples_scored"]


class _Blocking:
    """Score function whose first call blocks until released (lets a test queue items)."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.batches: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, batch):
        if not self.batches:
            self.started.set()
            self.release.wait(10)
        self.batches.append(list(batch))
        if self.fail_on is not None and self.fail_on in batch:
            raise ValueError(f"bad item {self.fail_on}")
        return [len(x) for x in batch]


def test_batcher_groups_by_length_and_serves_the_oldest_first():
    fn = _Blocking()
    b = DynamicBatcher(fn, max_batch_size=3, max_wait_ms=0, length_fn=len)
    first = b.submit("blocker")
    assert fn.started.wait(5)
    items = ["a" * 10, "b" * 1000, "c" * 12, "d" * 990, "e" * 11, "f" * 1010]
    futures = b.submit_many(items)
    fn.release.set()
    assert first.result(5) == 7
    assert [f.result(5) for f in futures] == [len(x) for x in items]
    b.close()
    assert [sorted(len(x) for x in batch) for batch in fn.batches[1:]] == [[10, 11, 12], [990, 1000, 1010]]


def test_batcher_isolates_a_failing_item():
    fn = _Blocking(fail_on="bad")
    b = DynamicBatcher(fn, max_batch_size=8, max_wait_ms=0)
    first = b.submit("blocker")
    assert fn.started.wait(5)
    futures = b.submit_many(["ok1", "bad", "ok22"])
    fn.release.set()
    first.result(5)
    assert futures[0].result(5) == 3 and futures[2].result(5) == 4
    with pytest.raises(ValueError, match="bad item"):
        futures[1].result(5)
    b.close()


# --------------------------------------------------------------------------- OpenRLHF's own client and reward_func


class _FakeEngine:
    """Test double for OpenRLHF's vLLM engine: 'generates' a fixed text (token ids + EOS)."""

    def __init__(self, tokenizer, text: str) -> None:
        from types import SimpleNamespace

        ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        self.output = SimpleNamespace(outputs=[SimpleNamespace(
            token_ids=ids, text=tokenizer.decode(ids), finish_reason="stop", logprobs=None)])

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        return self.output


@pytest.fixture(scope="module")
def openrlhf_agent():
    from openrlhf_stubs import use_openrlhf_stubs

    if not use_openrlhf_stubs():
        pytest.skip("openrlhf is not installed")
    return pytest.importorskip("openrlhf.utils.agent")


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    import tiny_models

    return tiny_models.build_tokenizer(tmp_path_factory.mktemp("tok"))


def _execute(executor, tokenizer, response: str, label: dict):
    from types import SimpleNamespace

    instruction = build_prompt("Write about the coast.", [Requirement.from_dict(r) for r in REQS])
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": instruction}],
                                           tokenize=False, add_generation_prompt=True)
    params = SimpleNamespace(max_tokens=256, logprobs=None)
    out = asyncio.run(executor.execute(prompt, label, params, 1024, tokenizer, _FakeEngine(tokenizer, response)))
    return out


@pytest.mark.slow  # OpenRLHF's agent code: torch
@pytest.mark.openrlhf
def test_openrlhf_single_turn_executor_gets_rewards_over_http(rules_server, openrlhf_agent, tiny_tokenizer):
    # OpenRLHF's own rollout code: decode with special tokens (trailing </s>), POST one sample.
    executor = openrlhf_agent.SingleTurnAgentExecutor(
        remote_rm_url=f"{rules_server.url}/get_reward?api_key={KEY}")
    for response in RESPONSES[:3]:
        out = _execute(executor, tiny_tokenizer, response, {"requirements": REQS})
        assert out["reward"] == [expected_reward(response)]
        assert set(out["extra_logs"]) >= {"adherence_length", "coverage_content"}
    # its raw HTTP helper too, with several samples
    q, p, lab = (list(x) for x in zip(*(make_sample(r) for r in RESPONSES)))
    res = asyncio.run(executor._fetch_rewards_via_http(q, p, lab))
    assert res[0]["rewards"] == [expected_reward(r) for r in RESPONSES]


def _load_reward_func(path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("reward_func", path)  # as OpenRLHF 0.11.2 does
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # reward_func returns torch tensors
def test_reward_func_file_matches_the_server(rules_server, monkeypatch):
    from openrlhf_reward.server.reward_func_path_cmd import run as path_cmd

    monkeypatch.setenv("OPENRLHF_REWARD_BACKEND", "rules")
    monkeypatch.delenv("OPENRLHF_REWARD_CONFIG", raising=False)
    import argparse
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert path_cmd(argparse.Namespace(config=None, output=None)) == 0
    module = _load_reward_func(buf.getvalue().strip())
    body = body_for(RESPONSES)
    server = post(rules_server, body).json()
    # OpenRLHF calls it with one sample per call from threads
    with ThreadPoolExecutor(8) as pool:
        per_sample = list(pool.map(lambda i: module.reward_func([body["query"][i]], [body["prompts"][i]], [body["labels"][i]]),
                                   range(len(RESPONSES))))
    import torch

    # OpenRLHF turns HTTP rewards into float32 tensors; reward_func hands back float32 tensors
    want = torch.tensor(server["rewards"], dtype=torch.float32)
    assert torch.equal(torch.cat([x["rewards"] for x in per_sample]), want)
    whole = module.reward_func(body["query"], body["prompts"], body["labels"])
    assert torch.equal(whole["rewards"], want) and torch.equal(whole["scores"], want)
    assert whole["extra_logs"] == server["extra_logs"]
    with pytest.raises(ValueError, match=r"labels\[0\]"):
        module.reward_func(["q"], ["p"], [None])
    module.reset()


@pytest.mark.slow  # OpenRLHF's agent code: torch
@pytest.mark.openrlhf
def test_reward_func_through_openrlhf_executor(openrlhf_agent, tiny_tokenizer, tmp_path, rules_server):
    from openrlhf_reward.cli import main as cli_main

    cfg = tmp_path / "reward.yaml"
    cfg.write_text("backend: rules\nserver:\n  max_batch_size: 4\n")
    wrapper = tmp_path / "my_reward.py"
    assert cli_main(["reward-func-path", "--config", str(cfg), "--output", str(wrapper)]) == 0
    executor = openrlhf_agent.SingleTurnAgentExecutor(remote_rm_url=str(wrapper))
    http = openrlhf_agent.SingleTurnAgentExecutor(remote_rm_url=f"{rules_server.url}/get_reward?api_key={KEY}")
    for response in RESPONSES[:3]:
        via_file = _execute(executor, tiny_tokenizer, response, {"requirements": REQS})
        via_http = _execute(http, tiny_tokenizer, response, {"requirements": REQS})
        assert via_file["reward"] is not None
        assert via_http["reward"] == [expected_reward(response)]
        assert float(via_file["reward"][0]) == pytest.approx(expected_reward(response), abs=1e-7)
        assert via_file["extra_logs"] == via_http["extra_logs"]


# --------------------------------------------------------------------------- the remote backend


def test_remote_scorer_matches_the_local_backend(rules_server):
    from openrlhf_reward.schema import load_weval_jsonl
    from weval_tasks import DEMO_DATA

    docs = load_weval_jsonl(DEMO_DATA)[:6]
    reqs = [ScoreRequest(prompt=d.prompt, response=c.response, requirements=d.requirements, query=d.query)
            for d in docs for c in d.candidates]
    remote = get_scorer("remote", url=rules_server.url + "/get_reward", api_key=KEY, concurrency=8)
    try:
        got = remote.score(reqs)
    finally:
        remote.close()
    want = get_scorer("rules").score(reqs)
    assert [g.reward for g in got] == [w.reward for w in want]
    assert [g.requirement_scores for g in got] == [w.requirement_scores for w in want]


def test_remote_scorer_errors():
    from openrlhf_reward.scorers.remote import RemoteRewardError

    with ServerThread(get_scorer("rules"), "rules", api_key=KEY) as srv:
        bad_key = get_scorer("remote", url=srv.url + "/get_reward", api_key="wrong", max_tries=3)
        with pytest.raises(RemoteRewardError, match="401"):
            bad_key.score([ScoreRequest("p", "r")])
        bad_key.close()
        # a 4xx is not retried: the server saw exactly one request, not max_tries=3
        m = httpx.get(srv.url + "/metrics", headers=AUTH).json()
        assert m["requests"]["by_status"] == {"401": 1}
    down = get_scorer("remote", url=srv.url + "/get_reward", max_tries=2, retry_backoff_s=0.01)
    with pytest.raises(RemoteRewardError, match="after 2 tries"):
        down.score([ScoreRequest("p", "r")])
    down.close()
    with pytest.raises(TypeError, match="unknown option"):
        get_scorer("remote", url="http://x/get_reward", colour="red")
    with pytest.raises(ValueError, match="url"):
        get_scorer("remote")


def test_remote_rm_lm_eval_model_matches_rules_lm(rules_server):
    pytest.importorskip("lm_eval")
    from types import SimpleNamespace

    from openrlhf_reward.schema import load_weval_jsonl
    from weval_tasks import DEMO_DATA
    from weval_tasks.docs import document_to_row
    from weval_tasks.models import RemoteRMLM, RulesLM

    instances = []
    for doc in load_weval_jsonl(DEMO_DATA)[:4]:
        row = document_to_row(doc)  # the task rows lm-eval hands to the model types
        for c in doc.candidates:
            instances.append(SimpleNamespace(doc=row, args=(doc.prompt, c.response)))
    want = RulesLM().loglikelihood(instances, disable_tqdm=True)
    lm = RemoteRMLM(url=rules_server.url + "/get_reward", api_key=KEY, concurrency="4")
    assert lm.loglikelihood(instances, disable_tqdm=True) == want
    with pytest.raises(ValueError, match="url="):
        RemoteRMLM()


# --------------------------------------------------------------------------- the CLI


@pytest.mark.slow  # starts a server process
def test_serve_cli_config_file_and_flag_override(tmp_path):
    from server_utils import free_port

    port = free_port()
    cfg = tmp_path / "reward.yaml"
    cfg.write_text(f"backend: rules\nserver:\n  api_key: cfg-key\n  max_batch_size: 4\n  port: {port}\n")
    proc = start_cli_server(["--config", str(cfg), "--max-batch-size", "8"])
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url + "/health", proc, timeout=60)
        assert httpx.get(url + "/health").status_code == 401
        h = httpx.get(url + "/health", headers={"Authorization": "Bearer cfg-key"}).json()
        assert h["status"] == "ok" and h["backend"] == "rules" and h["max_batch_size"] == 8
        r = httpx.post(url + "/get_reward", json=body_for(RESPONSES[:2]), headers={"Authorization": "Bearer cfg-key"})
        assert r.json()["rewards"] == [expected_reward(x) for x in RESPONSES[:2]]
    finally:
        out = stop(proc)
    assert "127.0.0.1" in out
    assert "the sea is calm" not in out  # no request content in logs by default


def test_serve_cli_errors(tmp_path, capsys):
    from openrlhf_reward.cli import main

    assert main(["serve", "--backend", "no-such-backend"]) == 2
    assert "no-such-backend" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("backend: rules\nserver:\n  max_batch: 4\n")
    assert main(["serve", "--config", str(bad)]) == 2
    assert "max_batch" in capsys.readouterr().err
    assert main(["serve", "--backend", "rules", "--backend-arg", "colour=red"]) == 2
    assert "colour" in capsys.readouterr().err
    assert main(["serve"]) == 2
    assert "--backend" in capsys.readouterr().err
    assert main(["reward-func-path"]) == 0
    assert capsys.readouterr().out.strip().endswith("reward_func.py")


# --------------------------------------------------------------------------- the bt backend


@pytest.fixture(scope="module")
def bt_dir(tmp_path_factory):
    import tiny_models

    return tiny_models.build_openrlhf_rm(tmp_path_factory.mktemp("bt") / "rm", use_openrlhf=False)


@pytest.mark.slow  # loads a model
def test_bt_backend_batches_concurrent_requests(bt_dir):
    reference = get_scorer("bt", model=str(bt_dir), dtype="float32")
    responses = [" ".join(["the sea is calm"] * (1 + i % 7)) + f" {i}." for i in range(24)]
    with ServerThread(get_scorer("bt", model=str(bt_dir), dtype="float32"), "bt", max_batch_size=8, max_wait_ms=20) as srv:

        async def one(client, i):
            q, p, lab = make_sample(responses[i], eos="</s>")
            # bt is holistic: labels may carry no requirements at all
            r = await client.post(srv.url + "/get_reward", json={"query": [q], "prompts": [p], "labels": [lab if i % 2 else None]})
            return i, r

        async def main():
            async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=24)) as client:
                return await asyncio.gather(*(one(client, i) for i in range(24)))

        results = asyncio.run(main())
        m = httpx.get(srv.url + "/metrics").json()
    instruction = build_prompt("Write about the coast.", [Requirement.from_dict(r) for r in REQS])
    for i, r in results:
        assert r.status_code == 200, r.text
        want = reference.score([ScoreRequest(prompt=instruction, response=responses[i])])[0].reward
        assert r.json()["rewards"][0] == pytest.approx(want, abs=1e-5)
    assert m["batches"]["max_size"] > 1
    assert len({round(r.json()["rewards"][0], 4) for _, r in results}) > 5  # not a constant


@pytest.mark.slow
def test_weval_remote_rm_matches_the_local_checkpoint(bt_dir, tmp_path):
    """`weval --model remote-rm` against a served `bt` RM gives the local backend's per-candidate scores."""
    import subprocess
    import sys
    from pathlib import Path

    from server_utils import REPO, free_port

    from openrlhf_reward.schema import load_weval_jsonl
    from weval_tasks import DEMO_DATA

    port = free_port()
    proc = start_cli_server(["--backend", "bt", "--model", str(bt_dir), "--backend-arg", "dtype=float32", "--port", str(port),
                             "--api-key", KEY])
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", proc, timeout=120)
        exe = Path(sys.executable).parent / "weval"
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "weval_tasks"]
        out = tmp_path / "out"
        run = subprocess.run(
            [*cmd, "--model", "remote-rm", "--model_args",
             f"url=http://127.0.0.1:{port}/get_reward,api_key={KEY},concurrency=8",
             "--tasks", "weval-creative_writing", "--output_path", str(out), "--log_samples"],
            cwd=REPO, capture_output=True, text=True, timeout=600,
        )
        assert run.returncode == 0, run.stderr[-3000:]
    finally:
        stop(proc)
    [samples_file] = list(out.rglob("samples_weval-creative_writing_*.jsonl"))
    local = get_scorer("bt", model=str(bt_dir), dtype="float32")
    docs = {d.id: d for d in load_weval_jsonl(DEMO_DATA)}
    n = 0
    for line in samples_file.read_text().splitlines():
        rec = json.loads(line)
        doc = docs[rec["doc"]["id"]]
        got = [float(r[0][0]) for r in rec["resps"]]
        want = [x.reward for x in local.score(
            [ScoreRequest(doc.prompt, c.response, doc.requirements, doc.query) for c in doc.candidates])]
        assert got == pytest.approx(want, abs=1e-5)
        n += len(got)
    assert n > 0
