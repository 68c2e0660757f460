"""`weval`: lm-eval's own CLI with this package's models and tasks added.

``weval ARGS`` == ``lm_eval ARGS`` plus: the model types ``rules``, ``rm`` and
``remote-rm`` are registered, and the WEval task folder is on the include path (next to any
``--include_path`` you pass). ``weval --tasks-dir`` prints that folder for stock
``lm_eval --include_path "$(weval --tasks-dir)"``. ``weval report DIR...`` compares
finished runs (see :mod:`weval_tasks.report`).
"""

from __future__ import annotations

import sys

from weval_tasks import TASKS_DIR

# Set while `weval` runs: load_weval then gives an absent category a one-row stand-in split
# marked with ABSENT_COLUMN, and _skip_absent_categories drops that task before lm-eval builds
# requests. (lm-eval 0.4.13 cannot run an empty split: ConfigurableTask.__init__ reads
# task_docs[0], and build_all_requests raises "did not find any docs!".)
SKIP_ABSENT_ENV = "WEVAL_SKIP_ABSENT_CATEGORIES"
ABSENT_COLUMN = "weval_absent_category"


def _skip_absent_categories(loaded: dict) -> dict:
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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--tasks-dir"]:
        print(TASKS_DIR)
        return 0
    if argv[:1] == ["report"]:
        from weval_tasks.report import main as report_main

        return report_main(argv[1:])

    import os

    from lm_eval._cli import HarnessCLI
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import setup_logging

    import weval_tasks.models  # noqa: F401  (registers rules / rm / remote-rm)
    from openrlhf_reward.schema import DataError

    setup_logging()
    os.environ[SKIP_ABSENT_ENV] = "1"
    if not getattr(TaskManager.load, "_weval_skips_absent", False):
        real_load = TaskManager.load

        def load(self, task_list):  # noqa: ANN001 - lm-eval's own signature
            return _skip_absent_categories(real_load(self, task_list))

        load._weval_skips_absent = True
        TaskManager.load = load
    parser = HarnessCLI()
    sys.argv = ["weval", *argv]  # HarnessCLI reads sys.argv (it inserts the `run` subcommand)
    args = parser.parse_args()
    if hasattr(args, "include_path"):
        user = args.include_path
        args.include_path = [TASKS_DIR] + ([user] if user else [])
    try:
        parser.execute(args)
    except DataError as e:
        print(f"weval: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
