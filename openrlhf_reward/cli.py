"""`openrlhf-reward`: the OpenRLHF-side command line (serve rewards, build data).

Each subcommand lives in its own module exposing ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``; modules import heavy libraries inside
``run`` only, so ``--help`` stays fast.

Errors of the data commands are handled here, once, as one line
``openrlhf-reward COMMAND: error: ...`` on stderr (the builders raise them, typed, and print
none): an output that is a directory or the input is refused up front; bad input (a
``DataError`` naming file and line, a damaged or mismatched work store, or any data of an
unexpected shape, named by the JSONL line being read) exits 2, and the outputs and work
directory this run created are removed; a build that cannot finish (the teacher fails, or
cannot be set up) or that keeps no rows exits 1, keeping finished teacher work.
``OPENRLHF_REWARD_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
from pathlib import Path

# subcommand -> module; add new commands here.
COMMANDS: dict[str, str] = {
    "build-weval": "openrlhf_reward.builders.weval",
    "build-pairs": "openrlhf_reward.builders.pairs",
    "build-grpo": "openrlhf_reward.builders.grpo",
    "build-cerm": "openrlhf_reward.builders.cerm",
    "import-ifeval": "openrlhf_reward.builders.ifeval_import",
    "import-paper": "openrlhf_reward.builders.paper_import",
    "serve": "openrlhf_reward.server.serve_cmd",
    "reward-func-path": "openrlhf_reward.server.reward_func_path_cmd",
    "demo-model": "openrlhf_reward.demo_model",
    "build-adherence": "openrlhf_reward.builders.adherence",
    "train-classifier": "openrlhf_reward.train_classifier",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openrlhf-reward",
        description="Reward backends, reward server and requirement-dropout data builders for OpenRLHF.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


# Arguments naming files a command reads / writes (the builders' flags).
_INPUT_ARGS = ("input", "seeds")
_OUTPUT_ARGS = ("output", "rejects", "eval_output")
# Commands whose --output is a folder (a checkpoint), not a file.
_FOLDER_OUTPUT_COMMANDS = frozenset({"train-classifier"})


class UsageError(Exception):
    """A command line that cannot run; the message is printed as one line."""


def _paths(args: argparse.Namespace, names: tuple[str, ...]) -> list[Path]:
    return [Path(v) for n in names if isinstance(v := getattr(args, n, None), str) and v]


def _preflight(args: argparse.Namespace) -> None:
    """Refuse an output that is a directory, is one of the inputs, or lies in a folder that
    cannot be written (before any work: a builder may run for hours)."""
    from openrlhf_reward.schema import DataError, check_writable_dir

    inputs = [p.resolve() for p in _paths(args, _INPUT_ARGS)]
    for out in _paths(args, _OUTPUT_ARGS):
        if out.is_dir() and getattr(args, "command", None) not in _FOLDER_OUTPUT_COMMANDS:
            raise UsageError(f"output path {out} is a directory; give a file name")
        if out.resolve() in inputs:
            raise UsageError(f"output {out} is the input file; write to another path")
        try:
            check_writable_dir(out.parent)
        except DataError as e:
            raise UsageError(f"output {out}: {e}") from None
    for w in _workdirs(args):
        try:
            check_writable_dir(w)
        except DataError as e:
            raise UsageError(f"work directory {w}: {e}") from None


def _workdirs(args: argparse.Namespace) -> list[Path]:
    if not hasattr(args, "workdir"):
        return []
    if getattr(args, "workdir", None):
        return [Path(args.workdir)]
    return [Path(f"{out}.work") for out in _paths(args, ("output",))]


def _holds_work(workdir: Path) -> bool:
    """True when a work directory holds finished teacher units (a header line plus more)."""
    for f in workdir.rglob("*.jsonl"):
        if f.name == "rejects.jsonl":
            continue
        with f.open("rb") as fh:
            if sum(1 for line in fh if line.strip()) > 1:
                return True
    return False


def _describe(e: BaseException, args: argparse.Namespace) -> str:
    from openrlhf_reward.builders.runner import BuildFailed, NothingKept
    from openrlhf_reward.builders.store import StoreError
    from openrlhf_reward.schema import DataError, current_line
    from openrlhf_reward.teachers.base import TeacherError

    if isinstance(e, NothingKept):
        return _no_rows(args)
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, TeacherError):
        return f"{msg} (finished work is kept in the work directory; rerun to continue)"
    if isinstance(e, (DataError, StoreError, BuildFailed)):  # these name what went wrong themselves
        return msg
    where = current_line()
    prefix = f"{where[0]}:{where[1]}: " if where else ""
    if isinstance(e, RecursionError):
        return f"{prefix}data nested too deeply"
    if isinstance(e, OSError) and e.filename:
        return f"{e.filename}: {e.strerror or msg}"
    return f"{prefix}{type(e).__name__}: {msg}"


def _no_rows(args: argparse.Namespace) -> str:
    inputs = ", ".join(str(p) for p in _paths(args, _INPUT_ARGS)) or "the input"
    return f"no rows came out of {inputs}; nothing usable written"


def _run(name: str, args: argparse.Namespace) -> int:
    """Run one subcommand; bad input -> one line on stderr, exit 2, nothing left behind."""
    from openrlhf_reward.builders.runner import BuildFailed
    from openrlhf_reward.builders.store import StoreError
    from openrlhf_reward.schema import DataError
    from openrlhf_reward.teachers.base import TeacherError
    from openrlhf_reward.text import CheckSpecError

    if name in ("serve", "reward-func-path"):
        return int(args._run(args) or 0)
    try:
        _preflight(args)
    except UsageError as e:
        print(f"openrlhf-reward {name}: error: {e}", file=sys.stderr)
        return 2
    outputs = _paths(args, _OUTPUT_ARGS)
    new_outputs = [p for p in outputs if not p.exists()]
    new_workdirs = [w for w in _workdirs(args) if not w.exists()]
    try:
        rc = int(args._run(args) or 0)
    except (BuildFailed, TeacherError, DataError, CheckSpecError, StoreError, ValueError, TypeError, KeyError,
            UnicodeError, RecursionError, OSError) as e:
        # Builders raise DataError naming file and line; anything else here comes from input
        # of a shape the code did not expect, named by the line being read.
        if os.environ.get("OPENRLHF_REWARD_DEBUG") or isinstance(e, (ConnectionError, TimeoutError)):
            raise  # a network failure is not bad input
        print(f"openrlhf-reward {name}: error: {_describe(e, args)}", file=sys.stderr)
        # the input was fine but the build could not finish: 1, and its teacher work is kept
        rc = 1 if isinstance(e, (BuildFailed, TeacherError)) else 2
    if rc == 2:  # input errors: leave nothing behind that this run created
        for p in new_outputs:
            if p.is_file():
                p.unlink()
        for w in new_workdirs:  # never finished teacher work: that would be paid for again
            if w.is_dir() and not _holds_work(w):
                shutil.rmtree(w, ignore_errors=True)
    return rc


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return _run(args.command, args)


if __name__ == "__main__":
    sys.exit(main())
