"""`weval` skips lm-eval's built-in task index when only WEval tasks are selected."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from weval_tasks import TASKS_DIR
from weval_tasks.cli import main, our_task_names, selects_only_our_tasks


def test_our_names_come_from_the_task_folder():
    names = our_task_names()
    declared = set()
    for f in Path(TASKS_DIR).rglob("*.yaml"):
        declared |= set(re.findall(r"(?m)^(?:task|group):\s*(\S+)\s*$", f.read_text()))
    assert declared and declared <= set(names)
    assert {"weval_all", "wevaljudge_all", "weval-creative_writing"} <= set(names)


@pytest.mark.parametrize(
    ("tasks", "ours"),
    [
        ("weval_*", True),
        (["weval_all", "wevaljudge_all"], True),
        ("weval-creative_writing,wevaljudge_*", True),
        (["weval*"], True),
        ("arc_easy", False),
        ("weval_*,hellaswag", False),  # another task named: keep the full index
        (["weval_all", "hellaswag"], False),
        ("*", False),  # could select built-in tasks
        ("*writing", False),
        ("weval_nope", False),  # not ours: let lm-eval's full index decide / report it
        ("weval_all.yaml", False),
        (None, False),
    ],
)
def test_which_selections_take_the_fast_path(tasks, ours):
    assert selects_only_our_tasks(tasks, our_task_names()) is ours


@pytest.fixture
def task_managers(monkeypatch):
    """Records (include_defaults, instance) for every TaskManager lm-eval builds."""
    from lm_eval.tasks.manager import TaskManager

    built: list[tuple[bool, TaskManager]] = []
    stock_init = TaskManager.__init__

    def spy(self, *args, include_defaults: bool = True, **kwargs):
        stock_init(self, *args, include_defaults=include_defaults, **kwargs)
        built.append((include_defaults, self))

    monkeypatch.setattr(TaskManager, "__init__", spy)
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # main() rewrites it for lm-eval's parser
    return built


def _run(tmp_path: Path, name: str, *extra: str) -> dict:
    out = tmp_path / name
    assert main(["--model", "rules", "--tasks", "weval_*", "--output_path", str(out), *extra]) == 0
    [res] = out.rglob("results_*.json")
    return json.loads(res.read_text())["results"]


@pytest.mark.slow
def test_fast_path_for_our_tasks_gives_the_stock_results(tmp_path, task_managers):
    fast = _run(tmp_path, "fast")
    assert task_managers and all(flag is False for flag, _ in task_managers)
    task_managers.clear()

    # An --include_path of the user's keeps lm-eval's full index (here an empty folder).
    (tmp_path / "mine").mkdir()
    stock = _run(tmp_path, "stock", "--include_path", str(tmp_path / "mine"))
    assert any(flag is True for flag, _ in task_managers)
    assert stock == fast and "weval_all" in fast

    # The fast path is exact only if no built-in name shares our prefix: check lm-eval's index.
    full = next(tm for flag, tm in task_managers if flag)
    ours = our_task_names()
    prefix = os.path.commonprefix(ours)
    assert sorted(n for n in full.all_tasks if n.startswith(prefix)) == sorted(ours)
