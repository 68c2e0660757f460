"""Absent categories under `weval`: tasks of categories the data lacks are skipped.

lm-eval 0.4.13 cannot run a task without documents (``ConfigurableTask.__init__`` reads
``task_docs[0]``; ``build_all_requests`` raises "did not find any docs!"). So, while `weval`
runs (:func:`install`), ``load_weval`` gives an absent category a one-row stand-in split
marked with :data:`ABSENT_COLUMN`, and :func:`skip_absent_categories` drops every such task
from ``TaskManager.load``'s result before any request is built; the groups then aggregate the
categories present. Stock ``lm_eval`` gets an error naming the tasks to select instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

SKIP_ABSENT_ENV = "WEVAL_SKIP_ABSENT_CATEGORIES"
ABSENT_COLUMN = "weval_absent_category"


def skip_absent_categories(loaded: dict) -> dict:
    """Drop WEval category tasks without documents from ``TaskManager.load``'s result.

    Their groups (``weval_all``, ``wevaljudge_all``) then aggregate over the categories
    present; each skipped task is reported on stderr. All absent is an error.
    """
    from openrlhf_reward.schema import DataError

    tasks, groups = loaded.get("tasks", {}), loaded.get("groups", {})
    # Any task fed by load_weval (every WEval family) whose split is the marked stand-in.
    absent: dict[str, str] = {}
    for name, task in tasks.items():
        docs = task.test_docs() if getattr(task, "has_test_docs", lambda: False)() else None
        if docs is not None and ABSENT_COLUMN in (getattr(docs, "column_names", None) or ()):
            absent[name] = docs[0][ABSENT_COLUMN]
    if not absent:
        return loaded
    if len(absent) == len(tasks):
        raise DataError(
            f"no documents for any selected task ({', '.join(absent)}): the data has none of their categories"
        )
    for name, category in absent.items():
        del tasks[name]
        for group in groups.values():
            group.pop(name)
        print(f"weval: category {category!r} is absent from the data: {name} skipped", file=sys.stderr)
    while empty := [g for g, group in groups.items() if len(group) == 0]:  # nested groups too
        for gname in empty:
            del groups[gname]
            for group in groups.values():
                group.pop(gname)
    if "group_map" in loaded:
        loaded["group_map"] = {g.name: g.child_names for g in groups.values()}
    return loaded


@contextlib.contextmanager
def skipping_absent_categories() -> Iterator[None]:
    """Turn the skipping on while `weval` runs lm-eval; restored on exit, so a process that
    calls `weval` in-process (tests, notebooks) keeps stock lm-eval behaviour afterwards."""
    from lm_eval.tasks import TaskManager

    old_env = os.environ.get(SKIP_ABSENT_ENV)
    real_load = TaskManager.load

    def load(self, task_list):  # noqa: ANN001 - lm-eval's own signature
        return skip_absent_categories(real_load(self, task_list))

    os.environ[SKIP_ABSENT_ENV] = "1"
    TaskManager.load = load  # subclasses (weval's task-index shortcut) inherit it
    try:
        yield
    finally:
        TaskManager.load = real_load
        if old_env is None:
            os.environ.pop(SKIP_ABSENT_ENV, None)
        else:
            os.environ[SKIP_ABSENT_ENV] = old_env
