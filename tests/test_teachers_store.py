"""Teachers (openai against a scripted HTTP endpoint, hf on a tiny model) and the work store."""

from __future__ import annotations

import json
import os
import sys
import threading

import pytest
from scripted_openai_server import MODEL, ScriptedServer, scripted_answer

from openrlhf_reward.builders.store import (
    StoreError,
    StoreMismatchError,
    WorkStore,
    write_jsonl_atomic,
)
from openrlhf_reward.teachers import (
    TeacherError,
    available_teachers,
    get_teacher,
    strip_reasoning,
    teacher_options,
)

CONV = [{"role": "user", "content": "Write one line about rain."}]


# ---- reasoning stripping ----------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, expected",
    [
        ("<think>plan it</think>\nThe answer.", "The answer."),
        ("<think>a\nb</think>A<think>c</think>B", "AB"),
        ("the template opened it</think> Final.", "Final."),
        ("No reasoning here.", "No reasoning here."),
        ("Partial answer <think>cut off while thinking", "Partial answer"),
        ("<THINKING>x</THINKING>ok", "ok"),
    ],
)
def test_strip_reasoning(raw, expected):
    assert strip_reasoning(raw) == expected


# ---- registry ----------------------------------------------------------------------------
def test_registry_and_option_errors():
    assert {"openai", "hf", "vllm"} <= set(available_teachers())
    with pytest.raises(ValueError, match="unknown teacher backend 'nope'"):
        get_teacher("nope")
    with pytest.raises(TypeError, match=r"teacher 'openai': unknown option\(s\) 'concurency'"):
        get_teacher("openai", concurency=4)
    opts = {name: help_ for name, _, help_ in teacher_options("openai")}
    assert opts["concurrency"] and opts["api_key_env"]  # every option documents itself


def test_importing_the_packages_stays_light():
    code = (
        "import sys, openrlhf_reward, openrlhf_reward.teachers, openrlhf_reward.builders.weval, "
        "openrlhf_reward.builders.runner;"
        "heavy = [m for m in ('torch', 'transformers', 'openai', 'vllm', 'sentence_transformers', 'lm_eval') if m in sys.modules];"
        "print(json.dumps(heavy))"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", "import json;" + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_vllm_teacher_without_vllm_gives_a_clear_error():
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vllm is importable here")
    with pytest.raises(TeacherError, match="teacher 'vllm' needs the vllm package"):
        get_teacher("vllm", model="some/model")
    with pytest.raises(ValueError, match="needs model="):
        get_teacher("vllm")


# ---- openai backend over real HTTP ---------------------------------------------------------
def test_openai_teacher_passes_parameters_and_strips_reasoning():
    with ScriptedServer() as srv:
        t = get_teacher("openai", base_url=srv.base_url, concurrency=2, top_p=0.9)
        assert t.model_name == MODEL  # empty model: the endpoint's first model
        out = t.chat([CONV, CONV], temperature=0.3, max_tokens=7, seed=[11, 12])
        t.close()
    assert out == [strip_reasoning(scripted_answer(CONV, 11)), strip_reasoning(scripted_answer(CONV, 12))]
    assert "<think>" not in out[0] and out[0] != out[1]
    bodies = sorted(srv.requests, key=lambda b: b["seed"])
    assert [b["seed"] for b in bodies] == [11, 12]
    for b in bodies:
        assert (b["temperature"], b["max_tokens"], b["top_p"], b["model"]) == (0.3, 7, 0.9, MODEL)
        assert b["messages"] == CONV


def test_openai_teacher_respects_the_concurrency_limit():
    with ScriptedServer(latency=0.05) as srv:
        t = get_teacher("openai", base_url=srv.base_url, model=MODEL, concurrency=3)
        out = t.chat([CONV] * 12, seed=list(range(12)))
        t.close()
    assert len(out) == 12 and len(srv.requests) == 12
    assert srv.peak_in_flight == 3  # saturated, never above the limit


def test_openai_teacher_retries_transient_errors_with_backoff():
    with ScriptedServer(fail_first=2, fail_status=503) as srv:
        t = get_teacher("openai", base_url=srv.base_url, model=MODEL, concurrency=1, max_retries=3, backoff=0.01)
        assert t.chat([CONV], seed=5) == [strip_reasoning(scripted_answer(CONV, 5))]
        t.close()
    assert len(srv.requests) == 3  # two 503s, then success


@pytest.mark.parametrize("status, max_retries, match, n_requests", [
    (429, 2, "failed after 2 retries: RateLimitError", 3),  # retried, then given up
    (400, 5, "not retryable", 1),  # a client error is not retried
])
def test_openai_teacher_gives_up_after_retries_and_on_client_errors(status, max_retries, match, n_requests):
    with ScriptedServer(fail_first=10, fail_status=status) as srv:
        t = get_teacher("openai", base_url=srv.base_url, model=MODEL, max_retries=max_retries, backoff=0.01)
        with pytest.raises(TeacherError, match=match):
            t.chat([CONV])
        t.close()
    assert len(srv.requests) == n_requests


def test_openai_teacher_unreachable_endpoint_names_it():
    t = get_teacher("openai", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout=2)
    with pytest.raises(TeacherError, match="127.0.0.1:9"):
        t.chat([CONV])
    t.close()


def test_teacher_rejects_malformed_batches():
    t = get_teacher("openai", base_url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(ValueError, match="item 0, message 0"):
        t.chat([[{"role": "user"}]])
    with pytest.raises(ValueError, match="2 seeds for a batch of 1"):
        t.chat([CONV], seed=[1, 2])
    t.close()


# ---- hf backend ----------------------------------------------------------------------------
@pytest.mark.slow  # loads a model
def test_hf_teacher_batched_and_batch_invariant(tiny_lm_dir):
    t = get_teacher("hf", model=str(tiny_lm_dir), batch_size=3, device="cpu")
    convs = [[{"role": "user", "content": f"Write about topic {i}."}] for i in range(4)]
    seeds = [101, 102, 103, 104]
    batched = t.chat(convs, max_tokens=8, seed=seeds)
    alone = [t.chat([c], max_tokens=8, seed=s)[0] for c, s in zip(convs, seeds)]
    reordered = t.chat(convs[::-1], max_tokens=8, seed=seeds[::-1])[::-1]
    assert batched == alone == reordered  # an answer depends on its own seed only
    assert len(set(batched)) == 4
    assert t.chat(convs[:1], max_tokens=8, seed=7) != t.chat(convs[:1], max_tokens=8, seed=8)
    greedy = t.chat(convs[:2], temperature=0.0, max_tokens=8)
    assert greedy == t.chat(convs[:2], temperature=0.0, max_tokens=8, seed=99)
    streamed = dict(t.chat_as_completed(convs, max_tokens=8, seed=seeds))
    assert [streamed[i] for i in range(4)] == batched
    assert t.model_name == tiny_lm_dir.name


# ---- work store ----------------------------------------------------------------------------
def test_store_appends_and_resumes(tmp_path):
    p = tmp_path / "w" / "work.jsonl"
    with WorkStore.open(p, meta={"seed": 1}) as s:
        s.put("a", {"x": 1})
        s.put("b", "text ü")
        with pytest.raises(StoreError, match="already stored"):
            s.put("a", 2)
    with WorkStore.open(p, meta={"seed": 1}) as s:
        assert s.keys() == ["a", "b"] and s["b"] == "text ü" and "a" in s and "c" not in s
    lines = p.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["key"] == "__meta__"


def test_store_truncates_a_torn_last_line(tmp_path):
    p = tmp_path / "work.jsonl"
    with WorkStore.open(p, meta={}) as s:
        s.put("a", 1)
    good = p.read_bytes()
    for torn in (b'{"key": "b", "val', b'{"key": "b", "value": 2}', "{\"key\": \"b\", \"value\": \"\u00e9".encode()[:-1]):
        p.write_bytes(good + torn)
        with WorkStore.open(p, meta={}) as s:
            assert s.keys() == ["a"]
            s.put("b", 2)
        assert p.read_bytes() == good + b'{"key": "b", "value": 2}\n'
        p.write_bytes(good)


def test_store_refuses_corruption_mismatch_and_duplicates(tmp_path):
    p = tmp_path / "work.jsonl"
    with WorkStore.open(p, meta={"seed": 1, "teacher": "m"}) as s:
        s.put("a", 1)
    with pytest.raises(StoreMismatchError, match="seed: stored 1 != now 2"):
        WorkStore.open(p, meta={"seed": 2, "teacher": "m"})
    data = p.read_text()
    p.write_text(data + "garbage\n" + '{"key": "b", "value": 1}\n')
    with pytest.raises(StoreError, match=":3: corrupt work store line"):
        WorkStore.open(p)
    p.write_text(data + '{"key": "a", "value": 1}\n')
    with pytest.raises(StoreError, match="duplicate key 'a'"):
        WorkStore.open(p)


def test_store_is_thread_safe(tmp_path):
    p = tmp_path / "work.jsonl"
    s = WorkStore.open(p, meta={}, fsync=False)

    def worker(k):
        for i in range(50):
            s.put(f"{k}-{i}", {"i": i, "pad": "x" * 200})

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    s.close()
    with WorkStore.open(p, meta={}) as s2:
        assert len(s2) == 200


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "out.jsonl"
    write_jsonl_atomic(p, [{"a": 1}, {"b": "ü"}])
    assert p.read_text(encoding="utf-8") == '{"a": 1}\n{"b": "ü"}\n'
    write_jsonl_atomic(p, [{"c": 3}])
    assert p.read_text() == '{"c": 3}\n'
    assert [f.name for f in tmp_path.iterdir()] == ["out.jsonl"]  # no temp files left behind
    if os.name == "posix":
        with pytest.raises(TypeError):
            write_jsonl_atomic(p, [{"bad": object()}])
        assert p.read_text() == '{"c": 3}\n'  # a failed write leaves the old file intact


# ---- vllm backend (offline engine) in the CPU vLLM venv -------------------------------------
_VLLM_SCRIPT = """
import json, sys
from openrlhf_reward.teachers import get_teacher

def main():
    t = get_teacher("vllm", model=sys.argv[1], dtype="float32", max_model_len=512, enforce_eager=True)
    convs = [[{"role": "user", "content": f"Write about topic {i}."}] for i in range(3)]
    a = t.chat(convs, max_tokens=8, seed=[1, 2, 3])
    b = t.chat(convs[::-1], max_tokens=8, seed=[3, 2, 1])[::-1]
    c = t.chat(convs[:1], max_tokens=8, seed=4)
    print("RESULT " + json.dumps({"a": a, "b": b, "c": c, "name": t.model_name}))

if __name__ == "__main__":  # vLLM spawns its engine process
    main()
"""


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_offline_teacher(tmp_path, tiny_lm_dir):
    import subprocess
    from pathlib import Path

    from vllm_fixture import require_vllm_python

    py = require_vllm_python()
    script = tmp_path / "run_vllm_teacher.py"
    script.write_text(_VLLM_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parents[1]), VLLM_TARGET_DEVICE="cpu",
               VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1", VLLM_CACHE_ROOT=str(tmp_path / "cache"),
               VLLM_NO_USAGE_STATS="1")
    proc = subprocess.run([py, str(script), str(tiny_lm_dir)], capture_output=True, text=True, env=env, timeout=600)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (proc.stdout + proc.stderr)[-4000:]
    res = json.loads(lines[-1][len("RESULT "):])
    assert len(res["a"]) == 3 and all(isinstance(x, str) for x in res["a"])
    assert res["a"] == res["b"]  # per-request seeds: independent of batch order
    assert res["name"] == tiny_lm_dir.name and len(res["c"]) == 1


@pytest.mark.parametrize("answer", ["", "  \n", "\u200b\ufeff", "<think>all reasoning</think>"])
def test_a_blank_teacher_answer_is_rejected_as_empty(answer):
    """The builders' test of an answer is the reward server's blankness (checks a WEval
    candidate must pass): nothing visible outside reasoning."""
    from openrlhf_reward.builders.teacher_units import Rejected, answer_unit

    unit = answer_unit("k", "Write a haiku.", base_seed=0)
    with pytest.raises(Rejected) as e:
        unit.accept(answer)
    assert e.value.reason == "empty_response"
    assert unit.accept("a haiku") == "a haiku"
