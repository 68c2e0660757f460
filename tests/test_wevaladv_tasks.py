"""Task folder structure: family globs select one group each, and one shared metric list."""

from __future__ import annotations

from pathlib import Path

import pytest

from openrlhf_reward.schema import CATEGORIES
from weval_tasks import TASKS_DIR

FAMILIES = ("weval", "wevaljudge", "wevaladv", "wevaladvjudge")


def test_each_family_glob_selects_exactly_its_group():
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=TASKS_DIR, include_defaults=False)
    for fam in FAMILIES:
        assert tm.match_tasks([f"{fam}_*"]) == [f"{fam}_all"], fam
        assert sorted(tm.match_tasks([f"{fam}-*"])) == sorted(f"{fam}-{c}" for c in CATEGORIES), fam


@pytest.mark.parametrize("fam", FAMILIES)
def test_every_family_uses_the_one_metric_list(fam):
    from lm_eval.tasks._yaml_loader import load_yaml

    folder = Path(TASKS_DIR) / "weval"
    shared = load_yaml(folder / "_weval_common_yaml", resolve_func=False)["metric_list"]
    for c in CATEGORIES:
        cfg = load_yaml(folder / f"{fam}-{c}.yaml", resolve_func=False)
        assert cfg["task"] == f"{fam}-{c}" and cfg["dataset_kwargs"] == {"family": fam, "category": c}
        assert cfg["metric_list"] == shared
    group = load_yaml(folder / f"_{fam}_all.yaml", resolve_func=False)
    names = [m["metric"] for m in group["aggregate_metric_list"]]
    # ranking groups aggregate only what their tasks return; adv groups add the hack metrics
    assert ("hack_rate" in names) == fam.startswith("wevaladv")
    assert {"correlation", "il", "pl", "top1", "pairwise_acc", "tie_rate"} <= set(names)
    assert set(names) <= {m["metric"] for m in shared}


@pytest.mark.parametrize("fam", ["wevaljudge", "wevaladvjudge"])
@pytest.mark.parametrize("chat", [False, True])
def test_judge_tasks_ask_yes_and_no_for_the_backend_prompt(fam, chat):
    """Both judge families build two requests per verdict prompt, "Yes" then "No": plain text
    (verdict_text, " Yes"/" No") or the backend's messages through the model's chat template
    ("Yes"/"No", the first answer token); process_results scores P(Yes) / (P(Yes) + P(No))."""
    import math

    from lm_eval.tasks import TaskManager

    from openrlhf_reward.judge_prompts import verdict_messages, verdict_text
    from openrlhf_reward.schema import load_weval_jsonl
    from weval_tasks import DEMO_DATA
    from weval_tasks.attacks import ATTACKS, build_attacks

    name = f"{fam}-creative_writing"
    task = TaskManager(include_path=TASKS_DIR, include_defaults=False).load([name])["tasks"][name]
    assert type(task).__name__ == "VerdictTask"
    rendered: list[list[dict]] = []

    def chat_template(messages, add_generation_prompt=True):  # stands in for lm.apply_chat_template
        rendered.append(messages)
        return "<chat>" + repr(messages) + "<assistant>"

    task.build_all_requests(limit=1, apply_chat_template=chat, chat_template=chat_template if chat else None)
    requests = sorted(task.instances, key=lambda i: i.idx)
    doc = next(d for d in load_weval_jsonl(DEMO_DATA) if d.id == requests[0].doc["id"])
    responses = [c.response for c in doc.candidates]
    if fam == "wevaladvjudge":
        responses += list(build_attacks(doc).values())
    items = [(doc.prompt, resp, r.text) for resp in responses for r in doc.requirements]
    if chat:
        want = [("<chat>" + repr(verdict_messages(*it)) + "<assistant>", w) for it in items for w in ("Yes", "No")]
        # (lm-eval renders its own single-user-turn contexts first; ours come last)
        assert rendered[-len(items):] == [verdict_messages(*it) for it in items]
    else:
        want = [(verdict_text(*it), w) for it in items for w in (" Yes", " No")]
    assert [tuple(i.arguments) for i in requests] == want
    assert [i.idx for i in requests] == list(range(len(want)))

    # every candidate's first requirement gets P(Yes) = 0.9, the others 0.5: scores tie...
    pairs = [(math.log(0.9), math.log(0.1)) if k % len(doc.requirements) == 0 else (-1.0, -1.0)
             for k in range(len(items))]
    results = [(ll, False) for pair in pairs for ll in pair]
    out = task.process_results(requests[0].doc, results)
    assert out["tie_rate"] == 100.0 and out["correlation"] == 0.0
    # ...until the gold-best candidate's second verdict is raised to P(Yes) = 0.99
    best = min(range(len(doc.candidates)), key=lambda i: doc.candidates[i].gold_rank)
    k = best * len(doc.requirements) + 1
    results[2 * k : 2 * k + 2] = [(math.log(0.99), False), (math.log(0.01), False)]
    out = task.process_results(requests[0].doc, results)
    assert out["top1"] == 100.0 and out["tie_rate"] < 100.0
    n_attacks = len(ATTACKS) if fam == "wevaladvjudge" else 0
    assert len(results) == 2 * (len(doc.candidates) + n_attacks) * len(doc.requirements)
