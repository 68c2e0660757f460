"""Does one pathological request freeze the server? ``/health`` latency while it is scored.

    python -m benchmarks.bench_freeze                      # before (main) and after (this tree)
    python -m benchmarks.bench_freeze --before '' --cases dots inst

Starts ``openrlhf-reward serve --backend rules`` from the ``--before`` tree and from this
tree, sends one pathological request per case (``--size`` characters, 1 MiB by default, of
dots, digits, ``[INST]`` in a prompt without instruction, ``</s>``), and polls ``/health`` every 50 ms while the
request is in flight. Prints the request's time and the slowest ``/health`` answer during
it (a frozen event loop shows as a ``/health`` as slow as the request). CPU work that holds
the GIL for long (a C regex on a quadratic pattern) still stalls every thread; the text
steps being linear is what keeps that short.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import httpx

from benchmarks.bench_failfast import free_port

HERE = Path(__file__).resolve().parents[1]
CHATML = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


def _req(kind: str, **params) -> dict:
    return {"id": "c1", "type": "length", "text": "a requirement", "check": {"kind": kind, **params}}


def cases(size: int = 1 << 20) -> dict[str, dict]:
    """name -> request body with about ``size`` characters of pathological text."""
    def body(prompt: str, response: str, reqs: list[dict], instruction: str | None = "Write.") -> dict:
        label = {"requirements": reqs}
        if instruction:
            label["instruction"] = instruction
        return {"query": [prompt + response], "prompts": [prompt], "labels": [label]}

    p = CHATML.format("Write.")
    return {
        "dots": body(p, "." * size, [_req("sentence_count", min=1)]),
        "digits": body(p, "1" * size, [_req("percent_count", max=3)]),
        "inst": body("[INST]" * (size // 6), "answer", [_req("lowercase")], instruction=None),
        "eos": body(p, "answer" + "</s>" * (size // 4), [_req("lowercase")]),
    }


def start(tree: Path, port: int):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.Popen([sys.executable, "-m", "openrlhf_reward.cli", "serve", "--backend", "rules",
                             "--port", str(port), "--log-level", "warning", "--max-body-bytes", str(64 << 20)],
                            cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(url: str, body: dict, cap_s: float) -> tuple[float, str, float]:
    out: dict = {}

    def send() -> None:
        t0 = time.perf_counter()
        try:
            r = httpx.post(url + "/get_reward", content=json.dumps(body),
                           headers={"content-type": "application/json"}, timeout=cap_s)
            out["status"] = str(r.status_code)
        except httpx.TimeoutException:
            out["status"] = "no answer"
        out["t"] = time.perf_counter() - t0

    t = threading.Thread(target=send)
    t.start()
    worst = 0.0
    time.sleep(0.05)
    while t.is_alive():
        t0 = time.perf_counter()
        try:
            httpx.get(url + "/health", timeout=cap_s)
        except httpx.TimeoutException:
            pass
        worst = max(worst, time.perf_counter() - t0)
        time.sleep(0.05)
    t.join()
    return out["t"], out["status"], worst


def run_tree(name: str, tree: Path, args: argparse.Namespace) -> None:
    from benchmarks.bench_failfast import wait_up

    for case in args.cases:  # a fresh server per case: a request still running would skew the next
        port = free_port()
        proc = start(tree, port)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_up(url, proc)
            httpx.post(url + "/get_reward", json=cases()["dots"] | {"query": ["x"], "prompts": [""]}, timeout=60)
            t, status, worst = measure(url, cases(args.size)[case], args.cap_s)
            print(f"{name} {case:7s}: request {t:7.2f} s ({status}); slowest /health during it {worst * 1000:8.1f} ms",
                  flush=True)
        finally:
            proc.kill()
            proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="/work/main")
    ap.add_argument("--cases", nargs="+", default=list(cases()), choices=list(cases()))
    ap.add_argument("--size", type=int, default=1 << 20, help="characters of pathological text per case (default 1 MiB)")
    ap.add_argument("--cap-s", type=float, default=20.0, help="client timeout of the pathological request")
    args = ap.parse_args()
    if args.before:
        run_tree("before", Path(args.before), args)
    run_tree("after ", HERE, args)


if __name__ == "__main__":
    main()
