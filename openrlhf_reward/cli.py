"""`openrlhf-reward`: the OpenRLHF-side command line (serve rewards, build data).

Each subcommand lives in its own module exposing ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``; modules import heavy libraries inside
``run`` only, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module; add new commands here.
COMMANDS: dict[str, str] = {
    "build-weval": "openrlhf_reward.build.cli_weval",
    "build-pairs": "openrlhf_reward.build.pairs",
    "build-grpo": "openrlhf_reward.build.grpo",
    "build-cerm": "openrlhf_reward.build.cerm",
    "import-ifeval": "openrlhf_reward.build.ifeval_import",
    "import-paper": "openrlhf_reward.build.paper_import",
    "serve": "openrlhf_reward.server.serve_cmd",
    "reward-func-path": "openrlhf_reward.server.reward_func_path_cmd",
    "demo-model": "openrlhf_reward.demo_model",
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
