"""`judge` backend: parsing, retries, criteria caching, unparseable counting.

Unit tests talk to a small real HTTP server (a scripted OpenAI-compatible test double) through
the real ``openai`` client; the integration test talks to a real vLLM server (random tiny
model: gibberish answers, so it asserts plumbing and counting, not content).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from openrlhf_reward.judge_prompts import (
    CRITERIA_SYSTEM_PROMPT,
    SCORE_SYSTEM_PROMPT,
    VERDICT_SYSTEM_PROMPT,
    parse_criteria,
    parse_item_scores,
    parse_verdict,
)
from openrlhf_reward.schema import Requirement
from openrlhf_reward.scorers import ScoreRequest, get_scorer
from openrlhf_reward.scorers.judge import JudgeError

# --------------------------------------------------------------------------- test double


class ScriptedChat:
    """A real loopback HTTP server speaking /v1/chat/completions with scripted answers.

    ``script(kind, body)`` returns the answer text, a ``(status, message)`` tuple for an HTTP
    error, or a dict with ``content`` and ``logprobs``. ``kind`` is verdict/criteria/score,
    told apart by the system prompt.
    """

    def __init__(self, script: Callable[[str, dict], Any], delay: float = 0.0) -> None:
        self.script = script
        self.delay = delay
        self.calls: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                system = body["messages"][0]["content"]
                kind = {VERDICT_SYSTEM_PROMPT: "verdict", CRITERIA_SYSTEM_PROMPT: "criteria",
                        SCORE_SYSTEM_PROMPT: "score"}.get(system, "other")
                with outer.lock:
                    outer.calls.append((kind, body))
                if outer.delay:
                    time.sleep(outer.delay)
                out = outer.script(kind, body)
                if isinstance(out, tuple):
                    self._send(out[0], {"error": {"message": out[1], "type": "test"}})
                    return
                if isinstance(out, str):
                    out = {"content": out}
                self._send(200, {
                    "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": out.get("finish_reason", "stop"),
                                 "message": {"role": "assistant", "content": out["content"]},
                                 "logprobs": out.get("logprobs")}],
                })

            def _send(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        # a short poll: shutdown() waits up to one poll interval (0.5 s by default, per test)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def kinds(self) -> list[str]:
        return [k for k, _ in self.calls]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat_double():
    servers = []

    def make(script, delay=0.0):
        s = ScriptedChat(script, delay)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def judge(server, **kw):
    args = dict(model="m", base_url=server.base_url, api_key="k", backoff_initial=0.01,
                backoff_max=0.02, timeout=10)
    args.update(kw)
    return get_scorer("judge", **args)


REQS = (
    Requirement("c1", "length", "Write exactly three sentences."),
    Requirement("c2", "style", "Use a formal tone."),
    Requirement("c3", "content", "Mention the budget."),
)


def _field(body: dict, label: str) -> str:
    """The text after 'label:\\n' up to the next blank line in the user message."""
    user = body["messages"][1]["content"]
    return user.split(f"{label}:\n", 1)[1].split("\n\n", 1)[0]


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "text, expected",
    [("Yes", True), ("no.", False), ("**Yes**, because", True), ("Answer: No", False),
     ("<think>maybe yes</think>\nNo", False), ("Yesterday", None), ("I think yes", None),
     ("", None), (None, None), ("Maybe", None), ("No idea", None), ("Yes and no", None),
     ("No.\nThe response has four sentences.", False), ("yes", True)],
)
def test_parse_verdict_is_strict(text, expected):
    assert parse_verdict(text) is expected


def test_parse_criteria_and_item_scores():
    assert parse_criteria("Criteria:\n1. Clear thesis\n2) Cites sources\n- Formal tone\nfoo", 5) == [
        "Clear thesis", "Cites sources", "Formal tone"]
    assert parse_criteria("1. a\n2. b\n3. c", 2) == ["a", "b"]
    assert parse_item_scores("1: 7\n2: 10/10\n3: 11\nItem 4: 3 (weak)", 5) == [7.0, 10.0, None, 3.0, None]
    assert parse_item_scores("1: 7\n1: 8", 1) == [None]  # contradicting itself
    assert parse_item_scores("garbage", 2) == [None, None]


# --------------------------------------------------------------------------- verdict mode


def test_verdict_mode_scores_each_requirement(chat_double):
    answers = {"Write exactly three sentences.": "Yes", "Use a formal tone.": "No.",
               "Mention the budget.": "no idea"}
    srv = chat_double(lambda kind, body: answers[_field(body, "Requirement")])
    sc = judge(srv)
    try:
        [res] = sc.score([ScoreRequest("Write about money.", "Some text.", REQS)])
    finally:
        sc.close()
    assert res.requirement_scores == {"c1": 1.0, "c2": 0.0, "c3": None}
    assert res.reward == 0.5
    assert res.info["n_unparsed"] == 1 and res.info["unparsed"] == ["c3"]
    assert res.info["all_unparsed"] is False
    assert res.type_adherence() == {"length": 1.0, "style": 0.0}
    st = sc.stats()
    assert st["verdicts"] == 3 and st["verdicts_unparsed"] == 1 and st["calls"] == 3
    body = srv.calls[0][1]
    assert body["temperature"] == 0.0 and body["max_tokens"] == 16 and body["model"] == "m"


def test_all_unparsed_gives_explicit_reward_and_raw_on_request(chat_double):
    srv = chat_double(lambda kind, body: "I cannot tell.")
    sc = judge(srv, unparsed_reward=-1.0, report_raw=True)
    try:
        [res] = sc.score([ScoreRequest("p", "r", REQS[:2])])
    finally:
        sc.close()
    assert res.reward == -1.0 and res.info["all_unparsed"] is True
    assert res.requirement_scores == {"c1": None, "c2": None}
    assert res.info["raw"] == ["I cannot tell.", "I cannot tell."]
    assert sc.stats()["samples_all_unparsed"] == 1


def test_verdict_without_requirements_uses_generic_requirement(chat_double):
    srv = chat_double(lambda kind, body: "Yes")
    sc = judge(srv)
    try:
        [res] = sc.score([ScoreRequest("p", "r", ())])
    finally:
        sc.close()
    assert res.reward == 1.0 and res.requirement_scores == {}
    assert len(srv.calls) == 1


def test_verdict_logprobs_give_probability(chat_double):
    import math

    def script(kind, body):
        assert body["logprobs"] is True and body["top_logprobs"] == 5
        top = [{"token": "Yes", "logprob": math.log(0.6), "bytes": None},
               {"token": " no", "logprob": math.log(0.2), "bytes": None},
               {"token": "Maybe", "logprob": math.log(0.2), "bytes": None}]
        return {"content": "Yes", "logprobs": {"content": [
            {"token": "Yes", "logprob": math.log(0.6), "bytes": None, "top_logprobs": top}]}}

    srv = chat_double(script)
    sc = judge(srv, logprobs=True)
    try:
        [res] = sc.score([ScoreRequest("p", "r", REQS[:1])])
    finally:
        sc.close()
    assert res.requirement_scores["c1"] == pytest.approx(0.75)


def test_verdict_prompt_and_score_are_the_shared_definition(chat_double):
    """The backend sends exactly verdict_messages (the prompt the wevaljudge tasks render) and
    its logprob score is normalized_verdict (the tasks' score)."""
    from openrlhf_reward.judge_prompts import normalized_verdict, verdict_messages, verdict_text

    def script(kind, body):
        top = [{"token": " yes", "logprob": -0.5, "bytes": None}, {"token": "No", "logprob": -1.5, "bytes": None}]
        return {"content": "Yes", "logprobs": {"content": [
            {"token": " yes", "logprob": -0.5, "bytes": None, "top_logprobs": top}]}}

    srv = chat_double(script)
    sc = judge(srv, logprobs=True)
    try:
        [res] = sc.score([ScoreRequest("the instruction", "the response", REQS[:2])])
    finally:
        sc.close()
    sent = [body["messages"] for _, body in srv.calls]
    assert sorted(map(str, sent)) == sorted(
        str(verdict_messages("the instruction", "the response", r.text)) for r in REQS[:2])
    assert res.requirement_scores["c1"] == pytest.approx(normalized_verdict(-0.5, -1.5))
    assert normalized_verdict(-0.5, -1.5) == pytest.approx(math.exp(-0.5) / (math.exp(-0.5) + math.exp(-1.5)))
    # stable far out in the tails, symmetric, and undefined only when neither answer is possible
    assert normalized_verdict(0.0, -1000.0) == 1.0 and normalized_verdict(-1000.0, 0.0) < 1e-300
    assert normalized_verdict(-3.0, -1.0) == pytest.approx(1 - normalized_verdict(-1.0, -3.0))
    assert normalized_verdict(-math.inf, -2.0) == 0.0 and normalized_verdict(-math.inf, -math.inf) is None
    text = verdict_text("I", "R", "Q")
    assert text.startswith(VERDICT_SYSTEM_PROMPT) and text.endswith("Answer Yes or No.\nAnswer:")


def test_retries_with_backoff_then_success(chat_double):
    seen = {"n": 0}

    def script(kind, body):
        seen["n"] += 1
        return (503, "overloaded") if seen["n"] <= 2 else "Yes"

    srv = chat_double(script)
    sc = judge(srv, max_retries=3)
    try:
        [res] = sc.score([ScoreRequest("p", "r", REQS[:1])])
    finally:
        sc.close()
    assert res.reward == 1.0
    assert sc.stats()["retries"] == 2 and len(srv.calls) == 3


@pytest.mark.parametrize("status, body, max_retries, match, n_calls", [
    (500, "boom", 2, "3 attempt", 3),  # retries exhausted
    (400, "prompt too long", 5, "prompt too long", 1),  # a 400 is not retried
])
def test_retries_exhausted_and_non_retryable_raise(chat_double, status, body, max_retries, match, n_calls):
    srv = chat_double(lambda kind, _body: (status, body))
    sc = judge(srv, max_retries=max_retries)
    try:
        with pytest.raises(JudgeError, match=match):
            sc.score([ScoreRequest("p", "r", REQS[:1])])
    finally:
        sc.close()
    assert len(srv.calls) == n_calls


def test_unreachable_endpoint_raises_after_retries():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sc = get_scorer("judge", model="m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1,
                    backoff_initial=0.01, timeout=2)
    try:
        with pytest.raises(JudgeError, match="APIConnectionError"):
            sc.score([ScoreRequest("p", "r", REQS[:1])])
        assert sc.stats()["retries"] == 1 and sc.stats()["failures"] == 1
    finally:
        sc.close()


def test_concurrency_limit_is_respected(chat_double):
    state = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def script(kind, body):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return "Yes"

    srv = chat_double(script)
    sc = judge(srv, concurrency=2)
    try:
        sc.score([ScoreRequest("p", f"r{i}", REQS) for i in range(4)])
    finally:
        sc.close()
    assert len(srv.calls) == 12 and state["peak"] == 2


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="model"):
        get_scorer("judge")
    with pytest.raises(ValueError, match="mode"):
        get_scorer("judge", model="m", mode="pairwise")
    with pytest.raises(TypeError, match="concurency"):
        get_scorer("judge", model="m", concurency=3)


# --------------------------------------------------------------------------- criteria mode


def criteria_script(kind, body):
    if kind == "criteria":
        task = _field(body, "Task")
        return f"1. Addresses {task}\n2. Is well organised"
    if kind == "score":
        n = len(_field(body, "Evaluation items").splitlines())
        resp = _field(body, "Response")
        base = 10 if "good" in resp else 1
        return "\n".join(f"{k}: {base}" for k in range(1, n + 1))
    raise AssertionError(kind)


def test_criteria_mode_scores_requirements_and_criteria(chat_double):
    srv = chat_double(criteria_script)
    sc = judge(srv, mode="criteria")
    try:
        good, bad = sc.score([
            ScoreRequest("Q1 with requirements", "a good answer", REQS[:2], query="Q1"),
            ScoreRequest("Q1 with requirements", "a poor answer", REQS[:2], query="Q1"),
        ])
    finally:
        sc.close()
    assert good.reward == 1.0 and bad.reward == 0.0
    assert good.requirement_scores == {"c1": 1.0, "c2": 1.0}
    assert good.info["criteria"] == ["Addresses Q1", "Is well organised"]
    assert good.info["criterion_scores"] == [1.0, 1.0]
    # The score prompt lists the requirements first, then the derived criteria.
    score_body = next(b for k, b in srv.calls if k == "score")
    assert _field(score_body, "Evaluation items").splitlines() == [
        "1. Write exactly three sentences.", "2. Use a formal tone.", "3. Addresses Q1",
        "4. Is well organised"]
    assert srv.kinds().count("criteria") == 1


def test_criteria_asked_once_per_query_under_concurrency(chat_double):
    srv = chat_double(criteria_script, delay=0.2)  # slow: all samples overlap the derivation
    sc = judge(srv, mode="criteria", concurrency=64)
    group = 8
    try:
        batch = [ScoreRequest(f"P{q}", f"good {i}", REQS[:1], query=f"Q{q}")
                 for q in range(3) for i in range(group)]
        # the same groups arrive again from two threads at once (server batches in parallel)
        with ThreadPoolExecutor(2) as ex:
            outs = list(ex.map(sc.score, [batch[:12], batch[12:]]))
        again = sc.score(batch[:group])
    finally:
        sc.close()
    assert all(r.reward == 1.0 for o in outs for r in o) and len(again) == group
    assert srv.kinds().count("criteria") == 3  # one per distinct query, ever
    st = sc.stats()
    assert st["criteria_calls"] == 3
    assert st["criteria_shared"] + st["criteria_cache_hits"] == 3 * group - 3 + group


def test_criteria_lru_evicts_and_failures_are_not_cached(chat_double):
    fail = {"on": True}

    def script(kind, body):
        if kind == "criteria" and fail["on"]:
            return (400, "bad request")
        return criteria_script(kind, body)

    srv = chat_double(script)
    sc = judge(srv, mode="criteria", criteria_cache_size=1)
    try:
        with pytest.raises(JudgeError):
            sc.score([ScoreRequest("p", "good", (), query="A")])
        fail["on"] = False
        sc.score([ScoreRequest("p", "good", (), query="A")])  # asks again: failure not cached
        sc.score([ScoreRequest("p", "good", (), query="B")])  # evicts A
        sc.score([ScoreRequest("p", "good", (), query="A")])  # asks again
    finally:
        sc.close()
    assert srv.kinds().count("criteria") == 4


def test_criteria_unparseable_are_counted_and_fallback_is_explicit(chat_double):
    def script(kind, body):
        if kind == "criteria":
            return "I would look at quality."  # no numbered line
        return "Overall it is fine."  # no item line

    srv = chat_double(script)
    sc = judge(srv, mode="criteria")
    try:
        with_reqs, without = sc.score([
            ScoreRequest("p", "r", REQS[:2], query="Q"),
            ScoreRequest("p2", "r", (), query="Q2"),
        ])
    finally:
        sc.close()
    assert with_reqs.info["criteria_parsed"] is False and with_reqs.info["criteria"] == []
    assert with_reqs.requirement_scores == {"c1": None, "c2": None}
    assert with_reqs.info["all_unparsed"] is True and with_reqs.reward == 0.0
    assert with_reqs.info["unparsed"] == ["c1", "c2"]
    assert without.info["n_unparsed"] == 1  # the generic criterion
    st = sc.stats()
    assert st["criteria_unparsed"] == 2 and st["items_unparsed"] == 3


def test_ascore_from_another_event_loop(chat_double):
    import asyncio

    srv = chat_double(lambda kind, body: "Yes")
    sc = judge(srv)
    try:
        res = asyncio.run(sc.ascore([ScoreRequest("p", "r", REQS[:1])]))
    finally:
        sc.close()
    assert res[0].reward == 1.0


# --------------------------------------------------------------------------- real vLLM


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["verdict", "criteria"])
def test_judge_against_real_vllm_server(vllm_server, mode):
    sc = get_scorer(
        "judge", model=vllm_server.model, base_url=vllm_server.base_url, mode=mode,
        max_tokens=4, criteria_max_tokens=24, score_max_tokens=12, logprobs=(mode == "verdict"),
        timeout=120, max_retries=1,
    )
    batch = [ScoreRequest("Write about the sea.", f"The sea is blue {i}.", REQS[:2],
                          query="Write about the sea.") for i in range(3)]
    try:
        results = sc.score(batch)
    finally:
        sc.close()
    st = sc.stats()
    assert st["failures"] == 0 and st["samples"] == 3
    for res in results:
        assert set(res.requirement_scores) == {"c1", "c2"}
        assert res.info["n_parsed"] + res.info["n_unparsed"] == (2 if mode == "verdict" else 2 + len(res.info["criteria"]))
        assert 0.0 <= res.reward <= 1.0
        for s in res.requirement_scores.values():
            assert s is None or 0.0 <= s <= 1.0
    if mode == "verdict":
        assert st["verdicts"] == 6 and st["calls"] == 6
        # gibberish from a random model is counted, never scored; parsed + unparsed add up
        n_none = sum(s is None for r in results for s in r.requirement_scores.values())
        assert st["verdicts_unparsed"] == n_none
    else:
        assert st["criteria_calls"] == 1  # one query, three samples
        assert st["items_unparsed"] == sum(r.info["n_unparsed"] for r in results)


def test_string_options_are_converted(chat_double):
    """lm-eval --model_args and CLI flags pass strings; they become the declared types."""
    srv = chat_double(lambda kind, body: "Yes")
    sc = get_scorer("judge", model="m", base_url=srv.base_url, concurrency="4", logprobs="false",
                    timeout="5", extra_body='{"top_k": 1}', api_key="None")
    try:
        cfg = sc.config
        assert (cfg.concurrency, cfg.logprobs, cfg.timeout, cfg.extra_body, cfg.api_key) == (
            4, False, 5.0, {"top_k": 1}, None)
        sc.score([ScoreRequest("p", "r", REQS[:1])])
    finally:
        sc.close()
    assert srv.calls[0][1]["top_k"] == 1  # extra_body reaches the endpoint
    with pytest.raises(ValueError, match="concurrency"):
        get_scorer("judge", model="m", concurrency="many")


# --------------------------------------------------------------------------- cerm mode

from scripted_openai_server import cerm_turn  # noqa: E402

from openrlhf_reward.judge_prompts import (  # noqa: E402
    CERM_CRITERIA_TEMPLATE,
    parse_boxed_scores,
    parse_cerm_criteria,
    parse_cerm_score,
    truncate_middle,
)


def cerm_kind(body: dict) -> str:
    turn = cerm_turn(body["messages"])
    return "other" if turn == "other" else f"cerm_{turn}"


def _between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def cerm_script(kind, body):
    msgs = body["messages"]
    k = cerm_kind(body)
    if k == "cerm_criteria":
        q = _between(msgs[0]["content"], "[Start of Query]", "[End of Query]")
        return (f"The query asks: {q}.\n[Start of Criteria]\n1. Relevance: answers {q}\n"
                "2. Clarity: easy to follow\n[End of Criteria]")
    if k == "cerm_eval":
        resp = _between(msgs[2]["content"], "[Start of Response]", "[End of Response]")
        overall = {"good": "8.5", "poor": "2", "tie": "5"}.get(resp.split()[0], "nothing")
        return (f"Relevance: fine. \\boxed{{4}}\nClarity: ok \\boxed{{3.5}}\n"
                f"Overall: \\boxed{{{overall}}}")
    raise AssertionError(k)


@pytest.mark.parametrize(
    "text, expected",
    [("a \\boxed{4} b \\boxed{7.5}", 7.5), ("\\boxed{ 10 }", 10.0), ("\\boxed{7/10}", 7.0),
     ("\\boxed{**6**}", 6.0), ("\\boxed{11}", None), ("\\boxed{-1}", None),
     ("\\boxed{3} then \\boxed{good}", None), ("no box at all: 7", None), ("", None), (None, None),
     ("<think>\\boxed{9}</think>final \\boxed{2.5}", 2.5), ("<think>\\boxed{9}</think>none", None)],
)
def test_parse_cerm_score_is_the_last_boxed_number(text, expected):
    assert parse_cerm_score(text) == expected


def test_parse_cerm_criteria_and_boxed_lists():
    assert parse_cerm_criteria("analysis\n[Start of Criteria]\n1. A: a\n[End of Criteria]") == "1. A: a"
    assert parse_cerm_criteria("[Start of Criteria]\n1. A: a") is None  # unterminated
    assert parse_cerm_criteria("[Start of Criteria]  [End of Criteria]") is None  # empty
    assert parse_boxed_scores("\\boxed{1} \\boxed{x} \\boxed{2.5}") == [1.0, None, 2.5]


def test_truncate_middle_keeps_head_and_tail():
    text = "H" * 100 + "M" * 1000 + "T" * 100
    out, removed = truncate_middle(text, 400)
    assert removed == len(text) - 400 and out.startswith("H" * 100) and out.endswith("T" * 100)
    assert f"[... {removed} characters omitted ...]" in out
    assert truncate_middle("short", 400) == ("short", 0)
    assert truncate_middle(text, 0) == (text, 0)  # 0 = never


def test_cerm_two_turn_protocol_shares_criteria_and_scales(chat_double):
    srv = chat_double(lambda kind, body: cerm_script(kind, body), delay=0.1)
    sc = judge(srv, mode="cerm", concurrency=16)
    prompt = "Write a poem about rain. Use four lines."
    try:
        batch = [ScoreRequest(prompt, f"{w} answer {i}", (), query="Write a poem about rain.")
                 for i, w in enumerate(["good", "poor", "tie", "broken"] * 2)]
        results = sc.score(batch)
    finally:
        sc.close()
    assert [r.reward for r in results] == [0.85, 0.2, 0.5, 0.0] * 2
    assert results[3].info["all_unparsed"] is True and results[3].info["unparsed"] == ["overall"]
    assert results[0].info["overall"] == 8.5 and results[0].info["criterion_scores"] == [4.0, 3.5]
    assert results[0].info["criteria_parsed"] is True and results[0].info["truncated"] == 0
    kinds = [cerm_kind(b) for _, b in srv.calls]
    assert kinds.count("cerm_criteria") == 1 and kinds.count("cerm_eval") == 8  # shared by the group
    crit = next(b for _, b in srv.calls if cerm_kind(b) == "cerm_criteria")
    # criteria from the query alone: the FULL instruction, no response, no system turn
    assert _between(crit["messages"][0]["content"], "[Start of Query]", "[End of Query]") == prompt
    assert "answer" not in crit["messages"][0]["content"]
    assert crit["max_tokens"] == 4096 and crit["temperature"] == 0.0
    assert crit["chat_template_kwargs"] == {"enable_thinking": False}
    ev = next(b for _, b in srv.calls if cerm_kind(b) == "cerm_eval")
    assert [m["role"] for m in ev["messages"]] == ["user", "assistant", "user"]
    assert ev["messages"][1]["content"] == cerm_script("", crit)  # the whole criteria answer kept
    assert ev["max_tokens"] == 8192 and ev["chat_template_kwargs"] == {"enable_thinking": False}
    st = sc.stats()
    assert (st["criteria_calls"], st["cerm_evals"], st["cerm_unparsed"]) == (1, 8, 2)
    assert st["criteria_shared"] + st["criteria_cache_hits"] == 7 and st["calls"] == 9


def test_cerm_raw_scale_unparsed_reward_and_untagged_criteria(chat_double):
    def script(kind, body):
        if cerm_kind(body) == "cerm_criteria":
            return "I would check relevance and clarity."  # no tags: counted, still used
        return cerm_script(kind, body)

    srv = chat_double(script)
    sc = judge(srv, mode="cerm", cerm_scale="raw", unparsed_reward=-1.0, report_raw=True,
               extra_body={"chat_template_kwargs": {"enable_thinking": True}, "top_k": 1})
    try:
        good, broken = sc.score([ScoreRequest("p", "good one", REQS[:1]), ScoreRequest("p", "broken", ())])
    finally:
        sc.close()
    assert good.reward == 8.5 and good.info["criteria_parsed"] is False
    assert good.requirement_scores == {"c1": None}  # holistic: requirements get no own score
    assert broken.reward == -1.0 and broken.info["raw"].endswith("\\boxed{nothing}")
    assert sc.stats()["criteria_unparsed"] == 1
    body = srv.calls[-1][1]
    assert body["messages"][1]["content"] == "I would check relevance and clarity."
    assert body["chat_template_kwargs"] == {"enable_thinking": True} and body["top_k"] == 1


def test_cerm_evaluation_cut_off_by_its_budget_is_unparsed(chat_double):
    def script(kind, body):
        if cerm_kind(body) == "cerm_criteria":
            return cerm_script(kind, body)
        # the overall score never came: the last box is a criterion's
        return {"content": "Relevance \\boxed{4}\nClarity \\boxed{3", "finish_reason": "length"}

    srv = chat_double(script)
    sc = judge(srv, mode="cerm")
    try:
        [res] = sc.score([ScoreRequest("p", "good", ())])
    finally:
        sc.close()
    assert res.info["all_unparsed"] is True and res.info["cut_off"] is True and res.reward == 0.0
    assert sc.stats()["cerm_unparsed"] == 1


def test_cerm_templates_from_files(chat_double, tmp_path):
    crit_file = tmp_path / "crit.txt"
    crit_file.write_text("Q=[Start of Query]\n{query}\n[End of Query] braces {kept}")
    eval_file = tmp_path / "eval.txt"
    eval_file.write_text("R=[Start of Response]\n{response}\n[End of Response] \\boxed{} for {query}")
    srv = chat_double(lambda kind, body: cerm_script(kind, body))
    sc = judge(srv, mode="cerm", criteria_template_file=str(crit_file), eval_template_file=str(eval_file))
    try:
        [res] = sc.score([ScoreRequest("the task", "good text", ())])
    finally:
        sc.close()
    assert res.reward == 0.85
    crit, ev = srv.calls[0][1], srv.calls[1][1]
    assert crit["messages"][0]["content"] == "Q=[Start of Query]\nthe task\n[End of Query] braces {kept}"
    assert ev["messages"][2]["content"] == (
        "R=[Start of Response]\ngood text\n[End of Response] \\boxed{} for the task")
    assert "{query}" in CERM_CRITERIA_TEMPLATE  # the built-in template is filled the same way

    bad = tmp_path / "bad.txt"
    bad.write_text("no placeholder")
    with pytest.raises(ValueError, match=r"eval_template_file .*bad.txt.* \{response\}"):
        get_scorer("judge", model="m", mode="cerm", eval_template_file=str(bad))
    with pytest.raises(ValueError, match="criteria_template_file .*missing.txt.* cannot be read"):
        get_scorer("judge", model="m", mode="cerm", criteria_template_file=str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="cerm_scale"):
        get_scorer("judge", model="m", mode="cerm", cerm_scale="percent")


@pytest.mark.parametrize("mode", ["verdict", "criteria", "cerm"])
def test_huge_response_is_truncated_not_fatal(chat_double, mode):
    seen = []

    def script(kind, body):
        seen.append(sum(len(m["content"]) for m in body["messages"]))
        if mode == "cerm":
            return cerm_script(kind, body)
        return criteria_script(kind, body) if mode == "criteria" else "Yes"

    srv = chat_double(script)
    sc = judge(srv, mode=mode, max_response_chars=1000)
    huge = "good " + "x" * 2_000_000  # a 2 MB answer
    try:
        big, small = sc.score([ScoreRequest("p", huge, REQS[:1], query="q"),
                               ScoreRequest("p", "good short", REQS[:1], query="q")])
    finally:
        sc.close()
    assert big.info["truncated"] == 1 and big.info["truncated_chars"] == len(huge) - 1000
    assert small.info["truncated"] == 0
    assert big.reward == small.reward > 0
    assert max(seen) < 10_000  # nothing near 2 MB reached the endpoint
    assert sc.stats()["responses_truncated"] == 1


def test_cerm_needs_no_requirements_in_server_labels():
    from openrlhf_reward.server.config import ServerConfig

    cerm = get_scorer("judge", model="m", mode="cerm")
    verdict = get_scorer("judge", model="m")
    try:
        assert ServerConfig().protocol_options("judge", cerm).require_requirements is False
        assert ServerConfig().protocol_options("judge", verdict).require_requirements is True
    finally:
        cerm.close()
        verdict.close()


@pytest.mark.vllm
@pytest.mark.slow
def test_cerm_against_real_vllm_server(vllm_server):
    """The CE-RM protocol against vLLM's real OpenAI server: the multi-turn conversation and
    ``chat_template_kwargs`` are accepted; a random model's gibberish is counted, never scored."""
    sc = get_scorer("judge", model=vllm_server.model, base_url=vllm_server.base_url, mode="cerm",
                    cerm_criteria_max_tokens=24, cerm_eval_max_tokens=16, timeout=120, max_retries=1)
    batch = [ScoreRequest("Write about the sea.", f"The sea is blue {i}.", ()) for i in range(3)]
    try:
        results = sc.score(batch)
    finally:
        sc.close()
    st = sc.stats()
    assert st["failures"] == 0 and st["criteria_calls"] == 1 and st["cerm_evals"] == 3 and st["calls"] == 4
    assert st["cerm_unparsed"] == sum(r.info["all_unparsed"] for r in results)
    for r in results:
        assert 0.0 <= r.reward <= 1.0 and r.info["mode"] == "cerm"


def test_a_hanging_endpoint_fails_the_batch_within_batch_timeout_as_unreachable():
    """An endpoint that accepts connections and never answers: without a batch deadline the
    calls' own timeouts and retries, queued behind the concurrency limit, hold one batch for
    many minutes; with it the batch fails as "unreachable", which the server rides through."""
    import socket

    from openrlhf_reward.server.batcher import is_backend_unavailable

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(listener.accept()[0]) for _ in iter(int, 1)], daemon=True).start()
    scorer = get_scorer("judge", base_url=f"http://127.0.0.1:{listener.getsockname()[1]}/v1", model="m",
                        timeout=60, max_retries=3, concurrency=2, batch_timeout=0.5)
    reqs = [Requirement.from_dict({"id": "c1", "type": "style", "text": "Be brief.", "check": None})]
    try:
        with pytest.raises(JudgeError, match="batch_timeout") as info:
            scorer.score([ScoreRequest(prompt="p", response="r", requirements=reqs)] * 8)
        assert is_backend_unavailable(info.value)
    finally:
        scorer.close()
        listener.close()
        for c in held:
            c.close()
