"""Reward-server throughput and latency against OpenRLHF 0.11.2's own ``serve_rm``.

    python -m benchmarks.bench_server                  # everything (several minutes on CPU)
    python -m benchmarks.bench_server --rules-only     # the rules checks/second figure only
    python -m benchmarks.bench_server --dtype-only     # CPU: bt forward in float32 vs bfloat16

What it does, all in one run on this machine:

1. ``rules`` backend: (response, requirement) checks per second on one core (one Python
   thread, in process), over every check kind of the vocabulary.
2. Builds a small scalar RM (random Llama, hidden 256, 4 layers, the offline test tokenizer)
   saved in OpenRLHF ``train_rm``'s layout (``config.json`` with ``value_head_prefix``
   "score", ``score.weight`` [1, hidden]).
3. Starts each server as its own process on a loopback port and drives it the way
   OpenRLHF's trainer does: one sample per POST (``{"query": [..], "prompts": [..],
   "labels": [..]}``), a new aiohttp session per request as in
   ``openrlhf/utils/agent.py``, closed loop with 32 and 128 requests in flight.
   Servers: ``openrlhf-reward serve --backend bt`` with ``dtype=auto`` (float32 on CPU,
   bfloat16 on GPU), pinned to float32, and pinned to bfloat16 (serve_rm's dtype: its
   ``--ds.param_dtype`` only offers bf16/fp16), and
   ``python -m openrlhf.cli.serve_rm`` (bf16, sdpa attention; it imports flash_attn at
   load, so the test-only stand-in in tests/stubs is put on its PYTHONPATH).
4. CPU dtype: the ``bt`` backend's own forward in float32 (``dtype=auto`` on CPU) and
   bfloat16 (opt-in) in this process (no server; the two dtypes
   alternate, median of several rounds, so a busy machine slows both alike).
5. Prints rewards/s, p50/p95 latency, the mean batch size our server formed (from
   ``/metrics``), and the ratios against serve_rm.

Every server process gets the same ``OMP_NUM_THREADS`` (``--torch-threads``). The figures
depend on the machine and on whatever else runs on it; the ratios are the point. On a GPU
machine use ``--servers ours-default serve_rm --forward-batch-size 32 --warmup 256`` (the
bt backend runs bf16 there, serve_rm's dtype; each new padded shape costs a one-off ~0.1 s
on CUDA, so warm up well; the backends bucket shapes on CUDA by default, and
``--backend-arg pad_to_multiple_of=0 --backend-arg bucket_rows=false`` turns that off).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
STUBS = TESTS / "stubs"

WORDS = (
    "the sea coast harbour light keeper letter storm quiet morning evening island boat rope "
    "wind salt stone path village market bread lamp window door winter summer river hill "
    "plan budget team report growth data result method study answer question reason example"
).split()


# --------------------------------------------------------------------------- rules checks/s


def rules_checks_per_second(seconds: float = 3.0) -> tuple[float, int]:
    """(checks per second, checks per pass) of the rules backend on one thread."""
    from openrlhf_reward.schema import Requirement
    from openrlhf_reward.scorers import ScoreRequest, get_scorer

    specs = [
        ("length", {"kind": "word_count", "min": 80, "max": 200}),
        ("length", {"kind": "sentence_count", "min": 3, "max": 12}),
        ("format", {"kind": "paragraph_count", "exact": 3}),
        ("format", {"kind": "bullet_count", "marker": "- ", "min": 2}),
        ("format", {"kind": "ends_with", "text": "Thank you."}),
        ("format", {"kind": "starts_with", "text": "<<"}),
        ("content", {"kind": "contains_all", "keywords": ["harbour", "budget"]}),
        ("style", {"kind": "forbidden_chars", "chars": ";!"}),
        ("style", {"kind": "lowercase"}),
        ("format", {"kind": "title_brackets"}),
        ("style", {"kind": "question_count", "max": 2}),
        ("content", {"kind": "percent_count", "min": 1}),
    ]
    reqs = [Requirement(f"c{i}", t, f"requirement {i}", check) for i, (t, check) in enumerate(specs)]
    rng = random.Random(0)
    batch = []
    for _ in range(64):
        paras = []
        for _ in range(3):
            sents = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))).capitalize() + "."
                     for _ in range(rng.randint(2, 4))]
            paras.append(" ".join(sents))
        text = "<<A Title>>\n\n" + "\n\n".join(paras) + "\n- one 12% point\n- two\nThank you."
        batch.append(ScoreRequest(prompt="Write.", response=text, requirements=reqs))
    scorer = get_scorer("rules")
    scorer.score(batch)  # warm up (regex compilation)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        scorer.score(batch)
        n += 1
    elapsed = time.perf_counter() - t0
    return n * len(batch) * len(reqs) / elapsed, len(batch) * len(reqs)


# --------------------------------------------------------------------------- checkpoint and data


def build_tokenizer(out_dir: Path, vocab_size: int = 1024):
    """The test tokenizer's recipe (byte-level BPE, ChatML template, pad/eos distinct), trained
    on text that includes the benchmark's words so a word is about one token, as with real
    tokenizers (the 512-token test tokenizer splits these words into bytes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    sys.path.insert(0, str(TESTS))
    import tiny_models

    special = ["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = tiny_models.SENTENCES * 4 + [" ".join(WORDS)] * 8 + [
        "Write a short note about the harbour. Requirements: Use between 40 and 120 words. "
        "Write in lowercase only. Mention the harbour. user assistant"] * 8
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    fast.chat_template = tiny_models.CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    return fast


def build_rm(out_dir: Path, hidden: int, layers: int, seed: int = 0) -> Path:
    """A random Llama RM in train_rm's layout (bf16 weights, base under ``model.``, ``score.weight``)."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaModel

    sys.path.insert(0, str(TESTS))
    import tiny_models

    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out_dir)
    heads = max(1, hidden // 32)
    cfg = tiny_models._llama_config(
        tok, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, head_dim=32,
        max_position_embeddings=4096,
    )
    torch.manual_seed(seed)
    base = LlamaModel(cfg).to(torch.bfloat16)
    state = {f"model.{k}": v.contiguous() for k, v in base.state_dict().items()}
    state["score.weight"] = (torch.randn(1, hidden) * 0.5).to(torch.bfloat16)
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    d = cfg.to_dict()
    d.update(architectures=["LlamaForSequenceClassification"], value_head_prefix="score", mean=0.0,
             std=1.0, normalize_reward=False, dtype="bfloat16", use_cache=False)
    (out_dir / "config.json").write_text(json.dumps(d, indent=2))
    return out_dir


def make_samples(n: int, model_dir: Path, seed: int = 0) -> list[dict]:
    """OpenRLHF-shaped single-sample payloads: templated prompt, prompt + response + EOS, label."""
    from transformers import AutoTokenizer

    from openrlhf_reward.schema import Requirement, build_prompt

    tok = AutoTokenizer.from_pretrained(model_dir)
    rng = random.Random(seed)
    reqs = [
        {"id": "c1", "type": "length", "text": "Use between 40 and 120 words.", "check": {"kind": "word_count", "min": 40, "max": 120}},
        {"id": "c2", "type": "style", "text": "Write in lowercase only.", "check": {"kind": "lowercase"}},
        {"id": "c3", "type": "content", "text": "Mention the harbour.", "check": {"kind": "contains_all", "keywords": ["harbour"]}},
    ]
    out = []
    for _ in range(n):
        query = "Write a short note about " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + "."
        instruction = build_prompt(query, [Requirement.from_dict(r) for r in reqs])
        prompt = tok.apply_chat_template([{"role": "user", "content": instruction}], tokenize=False,
                                         add_generation_prompt=True)
        response = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 100))) + "."
        out.append({"query": [prompt + response + tok.eos_token], "prompts": [prompt],
                    "labels": [{"requirements": reqs}]})
    return out


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env_extra: dict[str, str], log: Path) -> subprocess.Popen:
    env = {**os.environ, **env_extra}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env_extra.get("PYTHONPATH", ""), os.environ.get("PYTHONPATH", "")])
    fh = open(log, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)


def wait_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}); log:\n{log.read_text()[-3000:]}")
        try:
            httpx.post(url, json={"query": [], "prompts": [], "labels": []}, timeout=5)
            return
        except httpx.HTTPError:
            time.sleep(0.5)
    raise RuntimeError(f"server at {url} not up after {timeout} s; log:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- load


async def _post_like_openrlhf(url: str, payload: dict, tries: int = 5):
    """openrlhf/utils/agent.py's _post_request: a new ClientSession per POST, 180 s, 5 tries 1 s apart."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=180)
    for _ in range(tries):
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.post(url, json=payload) as response:
                    response.raise_for_status()
                    return await response.json()
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(1)
    return None


async def _drive(url: str, samples: list[dict], concurrency: int, total: int):
    latencies: list[float] = []
    rewards: dict[int, float] = {}
    failures = 0
    counter = iter(range(total))

    async def worker():
        nonlocal failures
        for i in counter:
            payload = samples[i % len(samples)]
            t0 = time.perf_counter()
            data = await _post_like_openrlhf(url, payload)
            latencies.append(time.perf_counter() - t0)
            if data is None:
                failures += 1
            else:
                r = data["rewards"]
                rewards[i % len(samples)] = float(r[0] if isinstance(r, list) else r)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0, latencies, rewards, failures


def drive(url: str, samples: list[dict], concurrency: int, total: int) -> dict:
    wall, lat, rewards, failures = asyncio.run(_drive(url, samples, concurrency, total))
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, max(0, int(round(q * len(lat))) - 1))]  # noqa: E731
    return {"rps": (len(lat) - failures) / wall, "p50": pct(0.50), "p95": pct(0.95), "n": len(lat),
            "failures": failures, "rewards": rewards, "wall": wall}


def server_batches(url: str) -> dict | None:
    """Our server's batch counters from /metrics (None for serve_rm, which has none)."""
    import httpx

    try:
        b = httpx.get(url.replace("/get_reward", "/metrics"), timeout=10).json()["batches"]
    except Exception:
        return None
    return {"hist": {int(k): v for k, v in b["size_histogram"].items()}, "seconds": b["backend_seconds"]}


def batch_delta(before: dict | None, after: dict | None, wall: float) -> dict:
    """Mean batch size, backend time per batch and backend busy share over one run."""
    if before is None or after is None:
        return {"mean": 1.0, "ms": None, "busy": None}
    delta = {k: after["hist"].get(k, 0) - before["hist"].get(k, 0) for k in after["hist"]}
    n = sum(delta.values())
    secs = after["seconds"] - before["seconds"]
    return {"mean": sum(k * v for k, v in delta.items()) / n if n else None,
            "ms": 1000 * secs / n if n else None, "busy": secs / wall if wall else None}


# --------------------------------------------------------------------------- CPU dtype


def dtype_forward(model_dir: Path, samples: list[dict], threads: int, batch_size: int, rounds: int = 5) -> dict:
    """The bt backend's scoring speed on CPU in float32 (what dtype=auto means there) / bfloat16."""
    import torch

    from openrlhf_reward.schema import Requirement
    from openrlhf_reward.scorers import ScoreRequest, get_scorer

    torch.set_num_threads(threads)
    reqs = [ScoreRequest(prompt=s["prompts"][0], response=s["query"][0][len(s["prompts"][0]):],
                         requirements=tuple(Requirement.from_dict(r) for r in s["labels"][0]["requirements"]))
            for s in samples[:64]]
    scorers = {dt: get_scorer("bt", model=str(model_dir), device="cpu", dtype=dt, batch_size=max(1, batch_size))
               for dt in ("float32", "bfloat16")}
    times: dict[str, list[float]] = {dt: [] for dt in scorers}
    for sc in scorers.values():
        sc.score(reqs[:8])  # warm up
    for _ in range(rounds):
        for dt, sc in scorers.items():
            t0 = time.perf_counter()
            sc.score(reqs)
            times[dt].append(time.perf_counter() - t0)
    rps = {dt: len(reqs) / statistics.median(t) for dt, t in times.items()}
    return {"rewards_per_s": rps}


def print_dtype_forward(d: dict, threads: int) -> None:
    rps = d["rewards_per_s"]
    print(f"\nCPU dtype ({threads} thread(s)), bt forward in process: float32 (dtype=auto) "
          f"{rps['float32']:.1f} rewards/s, bfloat16 (opt-in) {rps['bfloat16']:.1f} rewards/s "
          f"(bf16/fp32 {rps['bfloat16'] / rps['float32']:.2f}x)")


# --------------------------------------------------------------------------- main


def pearson(a: list[float], b: list[float]) -> float:
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    va = sum((x - ma) ** 2 for x in a) ** 0.5
    vb = sum((y - mb) ** 2 for y in b) ** 0.5
    return cov / (va * vb) if va and vb else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--concurrency", type=int, nargs="+", default=[32, 128], help="requests in flight")
    p.add_argument("--requests", type=float, default=3.0, help="requests per run = this x concurrency (min 64)")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--samples", type=int, default=256, help="distinct samples cycled through")
    p.add_argument("--torch-threads", type=int, default=1, help="OMP_NUM_THREADS of every server process")
    p.add_argument("--max-batch-size", type=int, default=32, help="our server's --max-batch-size")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="our server's --max-wait-ms")
    p.add_argument("--forward-batch-size", type=int, default=4,
                   help="sequences per forward pass in our bt backend (0: the backend's default); on CPU "
                        "small forward batches are fastest (a 115-token sequence is already a matrix "
                        "product, bigger batches lose cache locality), on GPU use the backend default or more")
    p.add_argument("--our-backend", default="bt", help="backend of our server (a name or package.module:Class)")
    p.add_argument("--backend-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra option of our backend, repeatable (e.g. bucket_rows=false pad_to_multiple_of=0)")
    p.add_argument("--warmup", type=int, default=64, help="requests sent before measuring")
    p.add_argument("--no-length-aware", action="store_true", help="our server's --no-length-aware (FIFO batches)")
    p.add_argument("--model-dir", help="reuse this checkpoint instead of building one")
    p.add_argument("--skip-serve-rm", action="store_true", help="do not run OpenRLHF's serve_rm")
    p.add_argument("--rules-only", action="store_true", help="only the rules checks/second figure")
    p.add_argument("--dtype-only", action="store_true", help="only the CPU dtype section (no servers)")
    p.add_argument("--servers", nargs="+", default=["ours-default", "ours-fp32", "ours-bf16", "serve_rm"],
                   choices=["ours-default", "ours-fp32", "ours-bf16", "serve_rm"],
                   help="ours-default: dtype=auto (float32 on CPU, bfloat16 on GPU); "
                        "ours-fp32 / ours-bf16: dtype pinned")
    args = p.parse_args(argv)

    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
          "(1/5/15 min; other processes share these cores)")

    cps, per_pass = rules_checks_per_second()
    print(f"\nrules backend: {cps:,.0f} (response, requirement) checks/s on one core "
          f"({per_pass} checks per pass over 12 check kinds; target >= 2,000)")
    if args.rules_only:
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="bench_server_"))
    model_dir = Path(args.model_dir) if args.model_dir else build_rm(tmp / "rm", args.hidden, args.layers)
    samples = make_samples(args.samples, model_dir)
    print(f"checkpoint: {model_dir} (hidden {args.hidden}, {args.layers} layers, train_rm layout); "
          f"{len(samples)} samples, responses 20-100 words")
    print_dtype_forward(dtype_forward(model_dir, samples, args.torch_threads, args.forward_batch_size),
                        args.torch_threads)
    if args.dtype_only:
        return 0

    servers = list(args.servers)
    if args.skip_serve_rm and "serve_rm" in servers:
        servers.remove("serve_rm")
    threads_env = {"OMP_NUM_THREADS": str(args.torch_threads), "MKL_NUM_THREADS": str(args.torch_threads),
                   "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    results: dict[str, dict[int, dict]] = {}
    dtypes: dict[str, str] = {}
    mean_batch: dict[str, dict[int, float | None]] = {}
    for name in servers:
        port = free_port()
        url = f"http://127.0.0.1:{port}/get_reward"
        log = tmp / f"{name}.log"
        if name == "serve_rm":
            cmd = [sys.executable, "-m", "openrlhf.cli.serve_rm", "--reward.model_name_or_path", str(model_dir),
                   "--host", "127.0.0.1", "--port", str(port), "--ds.attn_implementation", "sdpa",
                   "--ds.param_dtype", "bf16"]
            env = {**threads_env, "PYTHONPATH": str(STUBS)}
            dtypes[name] = "bfloat16"
        else:
            dtype = {"ours-bf16": "bfloat16", "ours-fp32": "float32"}.get(name, "auto")
            dtypes[name] = "auto (float32 on CPU, bfloat16 on GPU)" if dtype == "auto" else dtype
            cmd = [sys.executable, "-m", "openrlhf_reward.cli", "serve", "--backend", args.our_backend, "--model", str(model_dir),
                   "--backend-arg", f"dtype={dtype}",
                   *(["--backend-arg", f"batch_size={args.forward_batch_size}"] if args.forward_batch_size > 0 else []),
                   *[a for kv in args.backend_arg for a in ("--backend-arg", kv)],
                   "--port", str(port), "--max-batch-size", str(args.max_batch_size),
                   "--max-wait-ms", str(args.max_wait_ms), "--log-level", "info",
                   *(["--no-length-aware"] if args.no_length_aware else [])]
            env = threads_env
        proc = start(cmd, env, log)
        try:
            wait_up(url, proc, log)
            drive(url, samples, min(32, args.warmup), args.warmup)  # warm up (kernels for many lengths)
            results[name], mean_batch[name] = {}, {}
            for c in args.concurrency:
                total = max(64, int(args.requests * c))
                before = server_batches(url)
                r = drive(url, samples, c, total)
                results[name][c] = r
                mean_batch[name][c] = batch_delta(before, server_batches(url), r["wall"])
                print(f"  {name:13s} {dtypes[name]:14s} {c:4d} in flight: {r['rps']:8.1f} rewards/s  p50 {1000 * r['p50']:8.1f} ms  "
                      f"p95 {1000 * r['p95']:8.1f} ms  ({r['n']} requests, {r['failures']} failed)", flush=True)
        finally:
            stop(proc)

    print("\nresults (one sample per POST, OpenRLHF's client pattern):")
    print(f"{'server':14s} {'dtype':14s} {'in flight':>9s} {'rewards/s':>10s} {'p50 ms':>9s} {'p95 ms':>9s} {'mean batch':>10s} "
          f"{'backend ms/batch':>16s} {'backend busy':>12s}")
    for name, by_c in results.items():
        for c, r in by_c.items():
            b = mean_batch[name][c]
            ms = f"{b['ms']:.1f}" if b["ms"] is not None else "-"
            busy = f"{100 * b['busy']:.0f}%" if b["busy"] is not None else "-"
            print(f"{name:14s} {dtypes[name]:14s} {c:9d} {r['rps']:10.1f} {1000 * r['p50']:9.1f} {1000 * r['p95']:9.1f} "
                  f"{b['mean']:10.1f} {ms:>16s} {busy:>12s}")
    if "serve_rm" in results:
        base = results["serve_rm"]
        print("\nratios against OpenRLHF serve_rm (same checkpoint, same load, same run):")
        for name in results:
            if name == "serve_rm":
                continue
            for c in args.concurrency:
                a, b = results[name][c], base[c]
                print(f"  {name:13s} {dtypes[name]:14s} {c:4d} in flight: {a['rps'] / b['rps']:5.2f}x rewards/s, "
                      f"p95 {1000 * a['p95']:.0f} ms vs {1000 * b['p95']:.0f} ms "
                      f"({'lower' if a['p95'] < b['p95'] else 'NOT lower'})")
        # Sanity: both servers score the same checkpoint (texts differ slightly: serve_rm scores
        # the raw query, ours re-templates instruction + response), so rewards correlate.
        if "ours-bf16" in results:
            ra = results["ours-bf16"][args.concurrency[0]]["rewards"]
            rb = base[args.concurrency[0]]["rewards"]
            common = sorted(set(ra) & set(rb))
            if len(common) > 2:
                print(f"  reward correlation ours-bf16 vs serve_rm over {len(common)} samples: "
                      f"{pearson([ra[i] for i in common], [rb[i] for i in common]):.3f}")
    print(f"\nlogs and checkpoint in {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
