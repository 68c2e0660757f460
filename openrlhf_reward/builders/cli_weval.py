"""`openrlhf-reward build-weval`: seeds -> categories -> requirements -> dropout -> WEval file."""

from __future__ import annotations

import argparse
import sys

from openrlhf_reward.builders.cli_args import add_config_arguments, config_from_args, make_teacher
from openrlhf_reward.builders.weval import WEvalBuildConfig

HELP = "Build a WEval benchmark file from seed instructions with a teacher (resumable)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Example: openrlhf-reward build-weval --seeds seeds.jsonl --output weval.jsonl "
        "--teacher openai --base-url http://127.0.0.1:8000/v1 --concurrency 32. "
        "Rerun the same command after an interruption to resume from --workdir."
    )
    add_config_arguments(parser, WEvalBuildConfig, required=("seeds", "output"))


def run(args: argparse.Namespace) -> int:
    from openrlhf_reward.builders.store import StoreError
    from openrlhf_reward.builders.weval import build_weval
    from openrlhf_reward.schema import DataError
    from openrlhf_reward.teachers import TeacherError

    cfg = config_from_args(args, WEvalBuildConfig)
    teacher = make_teacher(args)
    try:
        with teacher:
            summary = build_weval(cfg, teacher)
    except (DataError, StoreError) as e:
        print(f"build-weval: {e}", file=sys.stderr)
        return 2
    except TeacherError as e:
        print(f"build-weval: {e}\nbuild-weval: finished work is kept in the work directory; rerun to continue", file=sys.stderr)
        return 1
    reasons = ", ".join(f"{k} {v}" for k, v in summary["rejected_by_reason"].items()) or "none"
    print(
        f"build-weval: kept {summary['kept']} of {summary['seeds']} seeds; rejected {summary['rejected']} ({reasons})",
        file=sys.stderr,
    )
    print(f"build-weval: summary {summary['summary_path']}; rejects {summary['rejects_path']}", file=sys.stderr)
    if not summary.get("complete", True):
        for line in summary["failures"]:
            print(f"build-weval: {line}", file=sys.stderr)
        return 1
    if not summary["kept"]:
        print("build-weval: no document kept, no output written", file=sys.stderr)
        return 1
    print(summary["output"])
    return 0
