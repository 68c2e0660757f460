"""Fail-fast figure: a reward server whose judge endpoint is dead, 128 requests in flight.

    python -m benchmarks.bench_failfast                    # before (main) and after (this tree)
    python -m benchmarks.bench_failfast --before /work/main --in-flight 128 --cap-s 60

Starts ``openrlhf-reward serve --backend judge`` against a closed loopback port (nothing
listens: every chat call is refused at once, and the judge's own retries with backoff
take ~3.5 s per call), once from the ``--before`` source tree (e.g. a checkout of main) and
once from this tree, each as its own process with the same settings. Then sends
``--in-flight`` one-sample requests at once, as OpenRLHF's trainer does, and prints when
each got its answer (status counts and the latency distribution). Requests not answered
within ``--cap-s`` seconds are counted as "no answer" (the client gives up; OpenRLHF's
own client waits 180 s). A last request after the burst shows what the trainer's retry
gets (with the circuit breaker open: 503 + Retry-After at once).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parents[1]
REQ = {"id": "c1", "type": "content", "text": "Mention the sea.", "check": None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(tree: Path, port: int, dead_port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(tree), "OPENAI_API_KEY": "unused"}
    cmd = [sys.executable, "-m", "openrlhf_reward.cli", "serve", "--backend", "judge",
           "--backend-arg", "model=judge", "--backend-arg", f"base_url=http://127.0.0.1:{dead_port}/v1",
           "--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            httpx.get(url + "/health", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


async def burst(url: str, n: int, cap_s: float) -> list[tuple[float, str]]:
    body = {"query": ["<|im_start|>user\nWrite.<|im_end|>\n<|im_start|>assistant\nThe sea."],
            "prompts": ["<|im_start|>user\nWrite.<|im_end|>\n<|im_start|>assistant\n"],
            "labels": [{"requirements": [REQ]}]}

    async def one(client: httpx.AsyncClient) -> tuple[float, str]:
        t0 = time.perf_counter()
        try:
            r = await client.post(url + "/get_reward", content=json.dumps(body),
                                  headers={"content-type": "application/json"})
            status = str(r.status_code)
        except httpx.TimeoutException:
            status = "no answer"
        except httpx.HTTPError as e:
            status = type(e).__name__
        return time.perf_counter() - t0, status

    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=cap_s, limits=limits) as client:
        return await asyncio.gather(*(one(client) for _ in range(n)))


def report(name: str, results: list[tuple[float, str]], cap_s: float) -> None:
    statuses: dict[str, int] = {}
    for _, s in results:
        statuses[s] = statuses.get(s, 0) + 1
    answered = sorted(t for t, s in results if s != "no answer")
    q = statistics.quantiles(answered, n=10) if len(answered) >= 2 else []
    print(f"{name}: {len(results)} requests; statuses {statuses}")
    if answered:
        print(f"  answered {len(answered)}: min {answered[0]:.2f} s, p50 {statistics.median(answered):.2f} s, "
              f"p90 {q[-1] if q else answered[-1]:.2f} s, max {answered[-1]:.2f} s; "
              f"within 10 s: {sum(1 for t in answered if t <= 10)}")
    if len(answered) < len(results):
        print(f"  {len(results) - len(answered)} got no answer within the {cap_s:g} s cap")


def run_one(name: str, tree: Path, args: argparse.Namespace) -> None:
    port, dead = free_port(), free_port()  # nothing listens on `dead`
    proc = start(tree, port, dead)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url, proc)
        results = asyncio.run(burst(url, args.in_flight, args.cap_s))
        report(name, results, args.cap_s)
        t0 = time.perf_counter()
        try:
            r = httpx.post(url + "/get_reward", json={"query": ["p x"], "prompts": ["p "],
                                                      "labels": [{"requirements": [REQ]}]}, timeout=args.cap_s)
            print(f"  the trainer's retry after the burst: {r.status_code} in {time.perf_counter() - t0:.2f} s, "
                  f"Retry-After {r.headers.get('retry-after')}")
        except httpx.TimeoutException:
            print(f"  the trainer's retry after the burst: no answer within {args.cap_s:g} s")
        try:
            h = httpx.get(url + "/health", timeout=10).json()
            print(f"  /health: {h.get('status')} {h.get('reason') or ''}")
        except httpx.HTTPError as e:
            print(f"  /health: {type(e).__name__}")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="/work/main", help="source tree of the code to compare against (skip: '')")
    ap.add_argument("--in-flight", type=int, default=128)
    ap.add_argument("--cap-s", type=float, default=60.0, help="client timeout per request")
    args = ap.parse_args()
    if args.before:
        run_one(f"before ({args.before})", Path(args.before), args)
    run_one(f"after ({HERE})", HERE, args)


if __name__ == "__main__":
    main()
