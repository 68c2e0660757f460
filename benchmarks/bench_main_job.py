"""Wall time of the demo main job, ``weval --model rules --tasks 'weval_*'``, with and without
the WEval-only task index.

    python -m benchmarks.bench_main_job                 # 3 repetitions of each, interleaved
    python -m benchmarks.bench_main_job --repeats 5

Each run is a fresh ``python`` process (imports included, as a user's run), timed from start to
exit. "stock" is the same ``weval`` with its fast path switched off, i.e. lm-eval's TaskManager
over its ~15k built-in tasks plus our folder; "fast" is ``weval`` as shipped
(``TaskManager(include_defaults=False)`` over our folder). Both write their results and the
benchmark checks the metrics are identical. Runs alternate (stock, fast, stock, ...) so that a
busy machine slows both alike; the median of each is reported, with the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
JOB = ["--model", "rules", "--tasks", "weval_*"]

# Runs weval's CLI in a child process; "stock" turns the fast path off before main() runs.
CHILD = """
import sys
import weval_tasks.cli as cli
if sys.argv[1] == "stock":
    cli.selects_only_our_tasks = lambda *a, **k: False
sys.exit(cli.main(sys.argv[2:]))
"""


def run_once(mode: str, out_dir: Path) -> tuple[float, dict]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, *JOB, "--output_path", str(out_dir)],
        env=env, capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"{mode} run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    (results_file,) = out_dir.rglob("results_*.json")
    return elapsed, json.loads(results_file.read_text())["results"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="runs of each path (default 3)")
    args = p.parse_args(argv)

    times: dict[str, list[float]] = {"stock": [], "fast": []}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for mode in ("stock", "fast"):
                elapsed, res = run_once(mode, Path(tmp) / f"{mode}{i}")
                times[mode].append(elapsed)
                results.setdefault(mode, res)
                print(f"run {i + 1}/{args.repeats}  {mode:5}  {elapsed:6.2f} s", flush=True)
    if results["stock"] != results["fast"]:
        sys.exit("the two paths gave different results")
    stock, fast = statistics.median(times["stock"]), statistics.median(times["fast"])
    print(f"\nweval {' '.join(JOB)}  (median of {args.repeats}, same machine, same run; results identical)")
    print(f"  stock (lm-eval's full task index): {stock:6.2f} s")
    print(f"  fast  (WEval tasks only)         : {fast:6.2f} s")
    print(f"  speedup: {stock / fast:.2f}x  (target >= 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
