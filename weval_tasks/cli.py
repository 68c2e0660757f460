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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--tasks-dir"]:
        print(TASKS_DIR)
        return 0
    if argv[:1] == ["report"]:
        from weval_tasks.report import main as report_main

        return report_main(argv[1:])

    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    import weval_tasks.models  # noqa: F401  (registers rules / rm / remote-rm)
    from openrlhf_reward.schema import DataError

    setup_logging()
    from weval_tasks.absent import install as skip_absent_categories

    skip_absent_categories()  # categories the data lacks are skipped, not an error
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
