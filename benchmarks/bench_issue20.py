"""Issue 20's worst legal requests, timed in one code tree and in another (before/after).

    python -m benchmarks.bench_issue20 --before-root /tmp/i20_before   # e.g. a `git archive` of main
    python -m benchmarks.bench_issue20 --before-root ''                # this tree only
    python -m benchmarks.bench_issue20 --server                        # + /health while scoring

Cases (each in a fresh worker process whose PYTHONPATH is the tree):

* ``parse-40k-ids``: one label with 40,000 requirements through ``parse_reward_request``
  (the old duplicate-id check was quadratic; now the count is refused first).
* ``parse-256-ids``: the largest label that is accepted (linear validation).
* ``keywords-10x256-1MB`` / ``frequency-...`` / ``forbidden-...``: ten 256-character IFEval
  keywords, each a near-miss everywhere in a 1 MB response (``"a" * 255 + "b"`` on
  ``"a" * 1M``), scored by the ``rules`` backend.
* ``contains_all-10x256-1MB``: the same for a ``contains_all`` phrase of 128 words.
* ``contains_all-nearmiss-1MB`` / ``forbidden-nearmiss-1MB``: ten requirements for the word
  "a" on ``"ba " * 350k`` (an occurrence everywhere, never on a word boundary).
* ``sentences-P.-600KB``: ``number_sentences`` on ``"P. "`` repeated (NLTK punkt's slow case).
* ``end_phrase-500x1MB``: RSS growth after 500 unique 1 MB ``end_phrase`` requests.

For each case: seconds, and the longest stall another Python thread saw meanwhile (a thread
that sleeps 1 ms in a loop records its longest gap): a long stall means one C call held the
GIL, which in the server delays every other request and ``/health``. ``--server`` starts
``openrlhf-reward serve --backend rules`` from the tree and sends the 10 x 256-character
keyword request while polling ``/health``. Figures depend on the machine; no thresholds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MB = 1 << 20


def _ifeval_req(iid: str, kwargs: dict) -> dict:
    return {"id": "c1", "type": "content", "text": "t", "check": {"kind": "ifeval", "instruction_id": iid, "kwargs": kwargs}}


def _keyword_label(iid: str) -> tuple[str, dict]:
    near = "a" * 255 + "b"
    kws = [near[:-1] + c for c in "bcdefghijk"]  # ten different 256-character near-misses
    if iid == "contains_all":
        phrase = " ".join(["a"] * 127) + " b"
        reqs = [{"id": f"c{i}", "type": "content", "text": "t",
                 "check": {"kind": "contains_all", "keywords": [phrase[:-1] + c]}} for i, c in enumerate("bcdefghijk")]
        return ("a " * (MB // 2)), {"requirements": reqs}
    if iid == "keywords:existence":
        reqs = [_ifeval_req(iid, {"keywords": [k]}) | {"id": f"c{i}"} for i, k in enumerate(kws)]
    elif iid == "keywords:frequency":
        reqs = [_ifeval_req(iid, {"keyword": k, "frequency": 1, "relation": "at least"}) | {"id": f"c{i}"}
                for i, k in enumerate(kws)]
    else:
        reqs = [_ifeval_req(iid, {"forbidden_words": [k]}) | {"id": f"c{i}"} for i, k in enumerate(kws)]
    return "a" * MB, {"requirements": reqs}


def _body(response: str, label: dict) -> dict:
    return {"query": ["p " + response], "prompts": ["p "], "labels": [label]}


def _case(name: str):
    """(callable run once and timed, setup-free)."""
    from openrlhf_reward.protocol import RequestError, parse_reward_request
    from openrlhf_reward.scorers import get_scorer

    scorer = get_scorer("rules")
    if name.startswith("parse-"):
        n = 40_000 if "40k" in name else 256
        reqs = [{"id": f"r{i}", "type": "style", "text": "t", "check": {"kind": "lowercase"}} for i in range(n)]
        body = _body("answer", {"requirements": reqs})

        def run():
            try:
                return f"{len(parse_reward_request(body).items[0].requirements)} requirements"
            except RequestError as e:
                return f"{e.status} {e.field}"
        return run
    if name.endswith("-10x256-1MB"):
        iid = {"keywords": "keywords:existence", "frequency": "keywords:frequency",
               "forbidden": "keywords:forbidden_words", "contains_all": "contains_all"}[name.split("-")[0]]
        body = _body(*_keyword_label(iid))

        def run():
            parsed = parse_reward_request(body)
            return f"reward {scorer.score(parsed.items)[0].reward}"
        return run
    if name.endswith("-nearmiss-1MB"):  # a short keyword found inside a word everywhere
        text = "ba " * (MB // 3)
        if name.startswith("contains_all"):
            reqs = [{"id": f"c{i}", "type": "content", "text": "t", "check": {"kind": "contains_all", "keywords": ["a"]}}
                    for i in range(10)]
        else:
            reqs = [_ifeval_req("keywords:forbidden_words", {"forbidden_words": ["a"]}) | {"id": f"c{i}"}
                    for i in range(10)]
        body = _body(text, {"requirements": reqs})

        def run():
            return f"reward {scorer.score(parse_reward_request(body).items)[0].reward}"
        return run
    if name == "sentences-P.-600KB":
        body = _body("P. " * (600_000 // 3), {"requirements": [_ifeval_req(
            "length_constraints:number_sentences", {"num_sentences": 1, "relation": "at least"})]})

        def run():
            parsed = parse_reward_request(body)
            r = scorer.score(parsed.items)[0]
            return f"reward {r.reward}, scores {r.requirement_scores}"
        return run
    if name == "end_phrase-500x1MB":
        def run():
            import gc

            def rss() -> float:
                with open("/proc/self/statm") as f:
                    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB
            gc.collect()
            start = rss()
            tail = "y" * MB
            for i in range(500):
                phrase = f"{i:04d}" + tail[4:]
                parsed = parse_reward_request(_body("Answer. " + phrase, {"requirements": [_ifeval_req(
                    "startend:end_checker", {"end_phrase": phrase})]}))
                scorer.score(parsed.items)
            gc.collect()
            return f"RSS +{rss() - start:.0f} MB"
        return run
    raise ValueError(name)


CASES = ["parse-40k-ids", "parse-256-ids", "keywords-10x256-1MB", "frequency-10x256-1MB",
         "forbidden-10x256-1MB", "contains_all-10x256-1MB", "contains_all-nearmiss-1MB", "forbidden-nearmiss-1MB", "sentences-P.-600KB", "end_phrase-500x1MB"]


def worker(name: str) -> None:
    import logging

    logging.disable(logging.CRITICAL)
    from openrlhf_reward.ifeval import preload

    preload()
    run = _case(name)
    stall = [0.0]
    done = threading.Event()

    def ticker():  # the longest time this thread could not run
        last = time.perf_counter()
        while not done.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            stall[0] = max(stall[0], now - last)
            last = now

    t = threading.Thread(target=ticker, daemon=True)
    t.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    result = run()
    s = time.perf_counter() - t0
    done.set()
    t.join()
    print(json.dumps({"case": name, "s": s, "stall_ms": stall[0] * 1000, "result": result}), flush=True)


def run_case(root: str, name: str, timeout: float) -> dict:
    env = {**os.environ, "PYTHONPATH": root}
    try:
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", name], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"case": name, "s": None, "stall_ms": None, "result": f">{timeout:.0f} s (stopped)"}
    lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
    if not lines:
        return {"case": name, "s": None, "stall_ms": None, "result": f"error: {out.stderr.strip()[-200:]}"}
    return json.loads(lines[-1])


def server_figure(root: str, tree: str) -> None:
    """/health latency while the 10 x 256-character keyword request is scored, from a real server."""
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": root}
    proc = subprocess.Popen([sys.executable, "-m", "openrlhf_reward.cli", "serve", "--backend", "rules",
                             "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        body = _body(*_keyword_label("keywords:existence"))
        done = threading.Event()
        posted: dict = {}

        def post():
            t0 = time.perf_counter()
            r = httpx.post(url + "/get_reward", json=body, timeout=300)
            posted.update(status=r.status_code, s=time.perf_counter() - t0)
            done.set()

        lat: list[float] = []
        small: list[float] = []

        def poll(path: str, out: list[float]) -> None:  # sequential probes until the big one ends
            while not done.is_set():
                t0 = time.perf_counter()
                if path == "/health":
                    httpx.get(url + path, timeout=120)
                else:
                    httpx.post(url + path, json=_body("Fine.", {"requirements": [
                        {"id": "a", "type": "style", "text": "t", "check": {"kind": "lowercase"}}]}), timeout=120)
                out.append(time.perf_counter() - t0)
                time.sleep(0.02)

        threading.Thread(target=post, daemon=True).start()
        probes = [threading.Thread(target=poll, args=a) for a in (("/health", lat), ("/get_reward", small))]
        for t in probes:
            t.start()
        for t in probes:
            t.join()
        lat.sort()
        small.sort()
        print(f"  {tree}: big request {posted.get('status')} in {posted.get('s', 0):.2f} s; meanwhile "
              f"/health max {lat[-1] * 1000:.0f} ms, median {lat[len(lat) // 2] * 1000:.0f} ms (n={len(lat)}); "
              f"small request max {small[-1] * 1000:.0f} ms (n={len(small)})")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--before-root", default="", help="code tree to compare with ('' = none)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds before a case is stopped")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--server", action="store_true", help="also measure /health through a real server")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker)
        return
    trees = ([("before", args.before_root)] if args.before_root else []) + [("after", str(REPO))]
    print(f"{'case':28} " + "".join(f"{t:>34}" for t, _ in trees))
    for name in args.cases.split(","):
        cells = []
        for _, root in trees:
            r = run_case(root, name, args.timeout)
            cells.append("-" if r["s"] is None else f"{r['s']:7.2f} s, stall {r['stall_ms']:5.0f} ms")
            cells[-1] += f" [{r['result'][:40]}]" if r["s"] is None or "RSS" in r["result"] or "parse" in name else ""
        print(f"{name:28} " + "  |  ".join(cells), flush=True)
    if args.server:
        print("\nserver (openrlhf-reward serve --backend rules):")
        for tree, root in trees:
            server_figure(root, tree)


if __name__ == "__main__":
    main()
