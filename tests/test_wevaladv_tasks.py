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
