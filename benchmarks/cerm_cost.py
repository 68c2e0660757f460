"""Cost of a CE-RM judge (``judge`` backend, ``mode=cerm``) on a WEval file, from the scorer's stats.

    python -m benchmarks.cerm_cost                                   # the scripted OpenAI double
    python -m benchmarks.cerm_cost --base-url http://HOST:8000/v1 --model PKU-ONELab/CE-RM-4B

Runs the ``weval_*`` tasks in-process with ``--model rm`` (lm-eval's own evaluator) and prints
the metrics plus, per candidate: chat calls, criteria calls (one per distinct instruction,
shared by its candidates) and evaluation calls, with unparsed and truncated counts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (default: start the scripted double)")
    p.add_argument("--model", default=None, help="served model name (default: the double's)")
    p.add_argument("--data", default=None, help="WEval JSONL (default: the demo set)")
    p.add_argument("--tasks", default="weval_all")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--limit", type=int, default=None, help="documents per category task")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra judge option, e.g. cerm_eval_max_tokens=2048 (repeatable)")
    args = p.parse_args(argv)
    options = dict(o.split("=", 1) for o in args.option)

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    import weval_tasks.models as wm
    from weval_tasks import TASKS_DIR

    double = None
    base_url, model = args.base_url, args.model
    if base_url is None:
        sys.path.insert(0, str(TESTS))
        from scripted_openai_server import MODEL, ScriptedServer

        double = ScriptedServer().__enter__()
        base_url, model = double.base_url, model or MODEL
    try:
        lm = wm.RMLM(backend="judge", mode="cerm", model=model, base_url=base_url, concurrency=args.concurrency,
                     **options)
        metadata = {"data_files": args.data} if args.data else None
        t0 = time.perf_counter()
        out = simple_evaluate(model=lm, tasks=[args.tasks], task_manager=TaskManager(include_path=TASKS_DIR),
                              limit=args.limit, metadata=metadata)
        wall = time.perf_counter() - t0
        st = lm.scorer.stats()
        lm.scorer.close()
    finally:
        if double is not None:
            double.__exit__(None, None, None)
    n = st["samples"]
    row = out["results"].get(args.tasks, {})
    print(json.dumps({k.split(",")[0]: round(v, 2) for k, v in row.items() if isinstance(v, float)}))
    print(f"candidates {n}; chat calls {st['calls']} = criteria {st['criteria_calls']} "
          f"(shared: {st['criteria_shared']} waited, {st['criteria_cache_hits']} cached) "
          f"+ evaluations {st['cerm_evals']}")
    print(f"per candidate: {st['calls'] / n:.3f} calls = {st['criteria_calls'] / n:.3f} criteria "
          f"+ {st['cerm_evals'] / n:.3f} evaluation; unparsed: criteria {st['criteria_unparsed']}, "
          f"evaluations {st['cerm_unparsed']}; truncated responses {st['responses_truncated']}; "
          f"retries {st['retries']}; wall {wall:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
