"""CE-RM (``judge`` backend, ``mode=cerm``) end to end against an OpenAI-compatible server (the
scripted double): ``weval --model rm`` on the demo set, the reward server, and the
``reward_func`` file, with labels that carry no requirements."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from scripted_openai_server import MODEL, ScriptedServer, cerm_score, cerm_turn

from openrlhf_reward.schema import load_weval_jsonl
from weval_tasks import DEMO_DATA

BIN = Path(sys.executable).parent


def _kind(body: dict) -> str:
    return cerm_turn(body["messages"])


@pytest.mark.slow
def test_weval_evaluates_a_cerm_judge_on_the_demo_set(tmp_path):
    out = tmp_path / "out"
    exe = BIN / "weval"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "weval_tasks"]
    with ScriptedServer() as srv:
        proc = subprocess.run(
            [*cmd, "--model", "rm", "--model_args",
             f"backend=judge,mode=cerm,model={MODEL},base_url={srv.base_url},api_key=x,concurrency=8",
             "--tasks", "weval_*", "--output_path", str(out), "--log_samples"],
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )
        requests = list(srv.requests)
    assert proc.returncode == 0, proc.stderr[-3000:]
    docs = {d.id: d for d in load_weval_jsonl(DEMO_DATA)}
    n_candidates = sum(len(d.candidates) for d in docs.values())
    kinds = [_kind(b) for b in requests]
    # criteria once per distinct instruction, shared by its candidates; one evaluation per candidate
    assert kinds.count("criteria") == len({d.prompt for d in docs.values()})
    assert kinds.count("eval") == n_candidates and kinds.count("other") == 0
    for body in requests:
        assert body["temperature"] == 0.0 and body["chat_template_kwargs"] == {"enable_thinking": False}
    # every candidate's reward is the double's final boxed score / 10
    seen = 0
    for f in out.rglob("samples_*.jsonl"):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            doc = docs[rec["doc"]["id"]]
            got = [float(r[0][0]) for r in rec["resps"]]
            assert got == [cerm_score(c.response) / 10 for c in doc.candidates]
            seen += len(got)
    assert seen == n_candidates
    [res_file] = sorted(out.rglob("results_*.json"))
    results = json.loads(res_file.read_text())["results"]
    assert -100 <= results["weval_all"]["correlation,none"] <= 100


@pytest.mark.slow  # reward_func returns torch tensors
def test_reward_server_and_reward_func_take_labels_without_requirements(monkeypatch, tmp_path):
    from server_utils import ServerThread

    from openrlhf_reward.scorers import get_scorer

    prompt = "<|im_start|>user\nWrite a haiku about snow.<|im_end|>\n<|im_start|>assistant\n"
    responses = ["Snow falls on the roof.", "Cold white silence grows.", "I like pizza."]
    body = {"query": [prompt + r + "<|im_end|>" for r in responses], "prompts": [prompt] * 3,
            "labels": [{"query": "Write a haiku about snow."}] * 3}
    with ScriptedServer() as srv:
        args = dict(model=MODEL, base_url=srv.base_url, api_key="x", mode="cerm")
        scorer = get_scorer("judge", **args)
        try:
            with ServerThread(scorer, backend="judge") as rm:
                r = httpx.post(rm.url + "/get_reward", json=body, timeout=60)
        finally:
            scorer.close()
        # the reward_func file, configured the way a trainer's workers are
        cfg = tmp_path / "reward.yaml"
        cfg.write_text(json.dumps({"backend": "judge", "backend_args": args}))
        monkeypatch.setenv("OPENRLHF_REWARD_CONFIG", str(cfg))
        monkeypatch.delenv("OPENRLHF_REWARD_BACKEND", raising=False)
        import importlib.util

        from openrlhf_reward import reward_func as rf_module

        spec = importlib.util.spec_from_file_location("reward_func", rf_module.__file__)  # as OpenRLHF loads it
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        try:
            via_func = module.reward_func(body["query"], body["prompts"], body["labels"])
        finally:
            module.reset()
        kinds = [_kind(b) for b in srv.requests]
    assert r.status_code == 200, r.text
    want = [cerm_score(x) / 10 for x in responses]
    assert r.json()["rewards"] == pytest.approx(want)
    assert via_func["rewards"].tolist() == pytest.approx(want)
    # criteria: once in the server's scorer, once in the reward_func's (separate processes in practice)
    assert kinds.count("criteria") == 2 and kinds.count("eval") == 6
