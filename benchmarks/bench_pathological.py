"""Worst-case timings of every text step a reward request goes through, before and after.

    python -m benchmarks.bench_pathological                       # this tree vs /work/main
    python -m benchmarks.bench_pathological --before-root OTHER   # compare with another checkout
    python -m benchmarks.bench_pathological --before-root ''      # this tree only

Every check kind of :mod:`openrlhf_reward.checks`, every IFEval instruction id and the
request-path text functions of :mod:`openrlhf_reward.protocol` (end-marker and think
stripping, response recovery, last user turn) run once on each pathological input: long runs
of dots, digits, ``[``, ``<``, ``*``, newlines, ``</s>``, ``[INST]``, letters ending in ``!``
(for the IFEval keyword ``(a+)+$``), ``P. `` and ``Section ``. Each code tree runs in its own
worker process (so both see their own ``openrlhf_reward``); a case that runs past
``--timeout`` is stopped (the worker is restarted) and reported as ``>timeout``. Prints the
slowest cases of each tree. Figures depend on the machine; there are no thresholds here.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# name -> (repeated unit, tail): the tail makes the run fail to match at its end, which is
# what makes a backtracking regex retry from every position of the run.
INPUTS: dict[str, tuple[str, str]] = {
    "dots": (".", "x"),
    "digits": ("1", "x"),
    "lbrackets": ("[", ""),
    "angles": ("<", ""),
    "stars": ("*", ""),
    "newlines": ("\n", "x"),
    "eos": ("</s>", ""),
    "inst": ("[INST]", ""),
    "letters!": ("a", "!"),  # the backtracking case for the keyword "(a+)+$"
    "ps": ("P. ", ""),  # abbreviation-like: NLTK punkt's slowest case
    "sections": ("Section ", ""),
}

RULE_SPECS: list[dict] = [
    {"kind": "word_count", "min": 1, "max": 5},
    {"kind": "sentence_count", "exact": 3},
    {"kind": "paragraph_count", "exact": 3},
    {"kind": "bullet_count", "min": 1},
    {"kind": "ends_with", "text": "Best wishes."},
    {"kind": "starts_with", "text": "Dear"},
    {"kind": "contains_all", "keywords": ["sea", "light keeper", "a"]},
    {"kind": "forbidden_chars", "chars": ",;"},
    {"kind": "lowercase"},
    {"kind": "title_brackets"},
    {"kind": "question_count", "max": 2},
    {"kind": "percent_count", "min": 1},
]

IFEVAL_KWARGS: dict[str, dict] = {
    "keywords:existence": {"keywords": ["(a+)+$", "sea"]},
    "keywords:frequency": {"keyword": "(a+)+$", "frequency": 2, "relation": "at least"},
    "keywords:forbidden_words": {"forbidden_words": ["(a+)+$", "sea"]},
    "keywords:letter_frequency": {"letter": "a", "let_frequency": 3, "let_relation": "at least"},
    "language:response_language": {"language": "en"},
    "length_constraints:number_sentences": {"num_sentences": 3, "relation": "less than"},
    "length_constraints:number_paragraphs": {"num_paragraphs": 3},
    "length_constraints:number_words": {"num_words": 30, "relation": "at least"},
    "length_constraints:nth_paragraph_first_word": {
        "num_paragraphs": 3, "nth_paragraph": 2, "first_word": "then"},
    "detectable_content:number_placeholders": {"num_placeholders": 2},
    "detectable_content:postscript": {"postscript_marker": "P.P.S"},
    "detectable_format:number_bullet_lists": {"num_bullets": 3},
    "detectable_format:constrained_response": {},
    "detectable_format:number_highlighted_sections": {"num_highlights": 2},
    "detectable_format:multiple_sections": {"section_spliter": "Section", "num_sections": 3},
    "detectable_format:json_format": {},
    "detectable_format:title": {},
    "combination:two_responses": {},
    "combination:repeat_prompt": {"prompt_to_repeat": "Write a poem about the sea."},
    "startend:end_checker": {"end_phrase": "Any questions?"},
    "change_case:capital_word_frequency": {"capital_frequency": 3, "capital_relation": "at least"},
    "change_case:english_capital": {},
    "change_case:english_lowercase": {},
    "punctuation:no_comma": {},
    "startend:quotation": {},
}
# Postscript markers with their own code paths.
EXTRA_IFEVAL = [
    ("detectable_content:postscript", {"postscript_marker": "P.S."}),
    ("detectable_content:postscript", {"postscript_marker": "(a+)+$"}),
]


def make_text(name: str, size: int) -> str:
    unit, tail = INPUTS[name]
    return unit * (size // len(unit)) + tail


def cases() -> list[tuple[str, str]]:
    """(case id, input name) pairs in run order."""
    ids = [f"rules:{s['kind']}" for s in RULE_SPECS]
    ids += [f"ifeval:{iid}" for iid in IFEVAL_KWARGS]
    ids += [f"ifeval:{iid}:{kw['postscript_marker']}" for iid, kw in EXTRA_IFEVAL]
    ids += ["protocol:strip_end_markers", "protocol:strip_think",
            "protocol:recover_response", "protocol:last_user_turn"]
    return [(c, name) for c in ids for name in INPUTS]


def _runner(case: str):
    """A callable text -> anything for one case (imports the worker's code tree)."""
    from openrlhf_reward import protocol
    from openrlhf_reward.checks import run_check

    group, _, rest = case.partition(":")
    if group == "rules":
        spec = next(s for s in RULE_SPECS if s["kind"] == rest)
        return lambda text: run_check(text, spec)
    if group == "ifeval":
        iid, _, marker = rest.rpartition(":") if rest.count(":") == 2 else (rest, "", "")
        kw = dict(IFEVAL_KWARGS[iid])
        if marker:
            kw["postscript_marker"] = marker
        spec = {"kind": "ifeval", "instruction_id": iid, "kwargs": kw}
        return lambda text: run_check(text, spec)
    fn = getattr(protocol, rest, None)
    if rest == "recover_response":  # a prompt that the query does not start with
        return lambda text: fn(text, "<|im_start|>user\n" + text[:100] + "<|im_start|>assistant\n")
    if rest == "strip_end_markers":
        return lambda text: fn("answer" + text)
    if rest == "strip_think":  # one function for every tree: the oldest took a leading block only
        # (protocol.strip_leading_think); later trees keep strip_think in checks, then in text
        strip = getattr(protocol, "strip_leading_think", None) or next(
            m.strip_think for m in map(importlib.import_module, ("openrlhf_reward.checks", "openrlhf_reward.text"))
            if hasattr(m, "strip_think"))
        return lambda text: strip("<think>" + text)
    return fn


def worker(size: int, skip: set[str]) -> None:
    """Run every case not in ``skip``; one JSON line when a case starts and when it ends."""
    import logging

    import openrlhf_reward
    from openrlhf_reward.checks import run_check

    logging.disable(logging.CRITICAL)  # lm-eval logs whole responses when langdetect fails
    root = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0]
    if root and not Path(openrlhf_reward.__file__).resolve().is_relative_to(Path(root).resolve()):
        raise SystemExit(f"worker imported {openrlhf_reward.__file__}, not the tree in {root}")
    try:  # load lm-eval's registry and NLTK before timing (a one-off import, not a case)
        from openrlhf_reward.ifeval import preload
        preload()
    except ImportError:  # older trees: warm up through a check
        run_check("x", {"kind": "ifeval", "instruction_id": "change_case:capital_word_frequency",
                        "kwargs": {"capital_frequency": 1, "capital_relation": "at least"}})
    texts = {name: make_text(name, size) for name in INPUTS}
    for case, name in cases():
        key = f"{case}|{name}"
        if key in skip:
            continue
        fn = _runner(case)
        print(json.dumps({"start": key}), flush=True)
        t0 = time.perf_counter()
        try:
            fn(texts[name])
            err = None
        except Exception as e:  # noqa: BLE001 - recorded, it is a finding
            err = f"{type(e).__name__}: {str(e)[:80]}"
        print(json.dumps({"done": key, "s": time.perf_counter() - t0, "error": err}), flush=True)


def run_tree(root: str, size: int, timeout: float) -> dict[str, tuple[float | None, str | None]]:
    """{case|input: (seconds or None for timeout, error)} for the code tree at ``root``."""
    results: dict[str, tuple[float | None, str | None]] = {}
    env = {**os.environ, "PYTHONPATH": root}
    while True:
        proc = subprocess.Popen(
            # run as a script: its folder, not the repository root, is sys.path[0], so the
            # worker imports openrlhf_reward from ``root`` (PYTHONPATH)
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(size),
             "--skip", json.dumps(sorted(results))],
            cwd=REPO, env=env, stdout=subprocess.PIPE, bufsize=0,
        )
        fd = proc.stdout.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        buf = b""
        current, started = None, time.monotonic()
        timed_out = eof = False
        while not eof:
            while b"\n" in buf:  # handle every complete line before waiting again
                line, buf = buf.split(b"\n", 1)
                msg = json.loads(line)
                if "start" in msg:
                    current = msg["start"]
                else:
                    results[msg["done"]] = (msg["s"], msg["error"])
                    current = None
                started = time.monotonic()
            limit = timeout if current else max(timeout, 300.0)  # start-up imports lm-eval
            if not sel.select(timeout=max(0.0, started + limit - time.monotonic())):
                proc.kill()
                if current is None:
                    raise RuntimeError(f"worker for {root} did not start")
                results[current] = (None, None)
                timed_out = True
                break
            chunk = os.read(fd, 65536)
            eof = not chunk
            buf += chunk
        proc.wait()
        if not timed_out:
            return results


def report(title: str, results: dict, top: int, timeout: float) -> None:
    print(f"\n{title}")
    order = sorted(results.items(), key=lambda kv: -(kv[1][0] if kv[1][0] is not None else 1e9))
    for key, (s, err) in order[:top]:
        shown = f">{timeout:.0f} s (stopped)" if s is None else f"{s:8.3f} s"
        print(f"  {shown:>16}  {key}" + (f"  [{err}]" if err else ""))
    done = [s for s, _ in results.values() if s is not None]
    print(f"  {len(results)} cases, {len(results) - len(done)} stopped, total {sum(done):.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--skip", default="[]", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=1 << 20, help="input length for this tree (chars)")
    ap.add_argument("--before-root", default="/work/main", help="code tree to compare with ('' = none)")
    ap.add_argument("--before-size", type=int, default=32 << 10,
                    help="input length for the 'before' tree (quadratic cases need it small)")
    ap.add_argument("--timeout", type=float, default=3.0,
                    help="seconds before a case of the 'before' tree is stopped")
    ap.add_argument("--after-timeout", type=float, default=60.0,
                    help="seconds before a case of this tree is stopped")
    ap.add_argument("--top", type=int, default=12, help="slowest cases to print per tree")
    args = ap.parse_args()
    if args.worker is not None:
        worker(args.worker, set(json.loads(args.skip)))
        return
    n = len(cases())
    print(f"{n} cases per tree ({len(RULE_SPECS)} rule kinds, {len(IFEVAL_KWARGS)} IFEval ids "
          f"+ {len(EXTRA_IFEVAL)} postscript markers, 4 protocol steps; x {len(INPUTS)} inputs)")
    trees = []
    if args.before_root:
        trees.append((f"before ({args.before_root}), {args.before_size} chars", args.before_root,
                      args.before_size, args.timeout))
        trees.append((f"after ({REPO}), {args.before_size} chars", str(REPO), args.before_size,
                      args.timeout))
    trees.append((f"after ({REPO}), {args.size} chars", str(REPO), args.size, args.after_timeout))
    for title, root, size, timeout in trees:
        report(title, run_tree(root, size, timeout), args.top, timeout)


if __name__ == "__main__":
    main()
