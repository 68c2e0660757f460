"""`weval`: lm-eval's own CLI with this package's models and tasks added.

``weval ARGS`` == ``lm_eval ARGS`` plus: the model types ``rules``, ``rm`` and
``remote-rm`` are registered, and the WEval task folder is on the include path (next to any
``--include_path`` you pass). ``weval --tasks-dir`` prints that folder for stock
``lm_eval --include_path "$(weval --tasks-dir)"``. ``weval report DIR...`` compares
finished runs (see :mod:`weval_tasks.report`); ``weval view RUN [RUN2] --output DIR`` writes a
static per-sample viewer of logged runs (see :mod:`weval_tasks.viewer`).

When every ``--tasks`` entry selects only WEval tasks and no ``--include_path`` is given,
lm-eval's index of its ~15k built-in tasks is skipped (``TaskManager(include_defaults=False)``):
building it is most of a WEval run's wall time and a WEval run never uses it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from weval_tasks import TASKS_DIR

log = logging.getLogger("weval")


def our_task_names() -> list[str]:
    """Every task, group and tag name defined by the YAMLs in :data:`TASKS_DIR` (lm-eval's own
    index of that folder alone, so a new task family is picked up without a code change)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=TASKS_DIR, include_defaults=False).all_tasks


def selects_only_our_tasks(tasks: Iterable[str] | str | None, ours: list[str]) -> bool:
    """True when each entry of ``--tasks`` (names or lm-eval glob patterns, comma-separated
    allowed) matches at least one of ``ours`` and can match nothing else.

    "Nothing else": the entry starts with the prefix all our names share ("weval"), literally,
    before any wildcard, so a pattern such as ``*`` or ``*writing`` (which may select built-in
    tasks) keeps lm-eval's full index. YAML paths and directories also keep it.
    """
    import fnmatch

    if not tasks or not ours:
        return False
    entries = [t for e in ([tasks] if isinstance(tasks, str) else tasks) for t in e.split(",") if t]
    prefix = os.path.commonprefix(ours)
    if not entries or not prefix:
        return False
    for entry in entries:
        if entry.endswith(".yaml") or os.path.isdir(entry) or not entry.startswith(prefix):
            return False
        if not fnmatch.filter(ours, entry):
            return False
    return True


@contextlib.contextmanager
def _without_builtin_tasks() -> Iterator[None]:
    """Make lm-eval's CLI build its TaskManager over our folder only (it imports the class from
    ``lm_eval.tasks`` when it builds one, so swapping that attribute is enough)."""
    import lm_eval.tasks

    stock = lm_eval.tasks.TaskManager

    class OursOnlyTaskManager(stock):
        def __init__(self, *args, **kwargs) -> None:
            kwargs["include_defaults"] = False
            super().__init__(*args, **kwargs)

    lm_eval.tasks.TaskManager = OursOnlyTaskManager
    try:
        yield
    finally:
        lm_eval.tasks.TaskManager = stock


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--tasks-dir"]:
        print(TASKS_DIR)
        return 0
    if argv[:1] == ["report"]:
        from weval_tasks.report import main as report_main

        return report_main(argv[1:])
    if argv[:1] == ["view"]:
        from weval_tasks.viewer import main as view_main

        return view_main(argv[1:])

    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    import weval_tasks.models  # noqa: F401  (registers rules / rm / remote-rm)
    from openrlhf_reward.schema import DataError

    setup_logging()
    from weval_tasks.absent import skipping_absent_categories

    parser = HarnessCLI()
    sys.argv = ["weval", *argv]  # HarnessCLI reads sys.argv (it inserts the `run` subcommand)
    args = parser.parse_args()
    fast = False
    if hasattr(args, "include_path"):
        user = args.include_path
        args.include_path = [TASKS_DIR] + ([user] if user else [])
        tasks = getattr(args, "tasks", None)  # absent for `weval ls` / `validate`
        fast = not user and bool(tasks) and selects_only_our_tasks(tasks, our_task_names())
    if fast:
        log.info("only WEval tasks selected: skipping lm-eval's built-in task index")
    output_path = getattr(args, "output_path", None)
    if output_path:  # lm-eval only logs a failed write after the whole run: check first
        from openrlhf_reward.schema import check_writable_dir

        out = Path(output_path)
        try:
            check_writable_dir(out.parent if out.suffix == ".json" else out)
        except DataError as e:
            print(f"weval: error: --output_path {output_path}: {e}", file=sys.stderr)
            return 2
    try:
        # Categories the data lacks are skipped, not an error.
        with skipping_absent_categories(), _without_builtin_tasks() if fast else contextlib.nullcontext():
            parser.execute(args)
    except DataError as e:
        print(f"weval: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
