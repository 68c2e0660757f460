"""Command-line pieces shared by the data-building subcommands: config flags and the teacher."""

from __future__ import annotations

import argparse
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from openrlhf_reward.builders.runner import BuildFailed
from openrlhf_reward.config import add_dataclass_flags, parse_key_value, values_from_args

__all__ = [
    "FROM_TEACHER_ARGS",
    "add_config_arguments",
    "add_io_arguments",
    "add_teacher_arguments",
    "config_from_args",
    "make_teacher",
    "parse_options",
]

# Builder config fields set by the shared teacher options (--temperature, --max-tokens,
# --retries, --chunk-size) rather than by a flag of their own.
FROM_TEACHER_ARGS = frozenset({"temperature", "max_tokens", "max_attempts", "chunk_size"})


def add_io_arguments(parser: argparse.ArgumentParser, input_help: str, output_help: str) -> None:
    """The required ``--input`` and ``--output`` of the commands that turn one file into rows."""
    parser.add_argument("--input", required=True, help=input_help)
    parser.add_argument("--output", required=True, help=output_help)


def add_teacher_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    g = parser.add_argument_group("teacher (the model that writes answers and extracts requirements)")
    g.add_argument(
        "--teacher",
        default="openai" if required else None,
        help="Teacher backend: openai (any OpenAI-compatible endpoint, e.g. vllm serve), hf "
        "(local transformers), vllm (offline engine). Default: %(default)s.",
    )
    g.add_argument("--teacher-model", default=None, help="Model name (openai) or path / hub id (hf, vllm).")
    g.add_argument("--base-url", default=None, help="Endpoint base URL for the openai backend, e.g. http://127.0.0.1:8000/v1.")
    g.add_argument("--concurrency", type=int, default=None, help="Requests in flight (openai backend option).")
    g.add_argument("--batch-size", type=int, default=None, help="Conversations generated together (hf backend option).")
    g.add_argument(
        "--teacher-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Any backend option (repeatable); VALUE is parsed as JSON when it parses, "
        "e.g. --teacher-opt concurrency=32 --teacher-opt api_key_env=MY_KEY.",
    )
    g.add_argument("--temperature", type=float, default=0.7, help="Sampling temperature (default %(default)s).")
    g.add_argument("--max-tokens", type=int, default=1024, help="Token limit per answer (default %(default)s).")
    g.add_argument("--retries", type=int, default=2, help="Extra tries for an invalid answer (default %(default)s).")
    g.add_argument(
        "--chunk-size",
        type=int,
        default=0,
        help="Requests handed to the teacher at once (0: one local batch, or 8 x concurrency).",
    )


def add_config_arguments(
    parser: argparse.ArgumentParser,
    config_class: type,
    *,
    required: Collection[str],
    choices: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """A ``--field-name`` flag per field of a builder config dataclass, then the teacher options.

    ``required`` fields get no default; a bool field becomes ``--x/--no-x``; ``choices`` maps
    field names to their allowed values. Read the flags back with :func:`config_from_args`.
    """
    g = parser.add_argument_group("build")
    add_dataclass_flags(g, config_class, skip=FROM_TEACHER_ARGS, required=required, choices=choices)
    add_teacher_arguments(parser)


def config_from_args(args: argparse.Namespace, config_class: type) -> Any:
    """The builder config from flags added by :func:`add_config_arguments`."""
    values = values_from_args(args, config_class, skip=FROM_TEACHER_ARGS)
    values.update(
        temperature=args.temperature, max_tokens=args.max_tokens, max_attempts=args.retries + 1, chunk_size=args.chunk_size
    )
    return config_class(**values)


def parse_options(items: Iterable[str]) -> dict[str, Any]:
    """``["k=v", ...]`` -> dict, each value parsed as JSON when possible (else kept as text)."""
    try:
        return dict(parse_key_value(item, "--teacher-opt") for item in items)
    except ValueError as e:
        raise BuildFailed(str(e)) from None


def teacher_config(args: argparse.Namespace) -> dict[str, Any]:
    cfg = parse_options(args.teacher_opt)
    if args.teacher_model:
        cfg["model"] = args.teacher_model
    if args.base_url:
        cfg["base_url"] = args.base_url
    for name in ("concurrency", "batch_size"):
        if getattr(args, name, None) is not None:
            cfg[name] = getattr(args, name)
    return cfg


def make_teacher(args: argparse.Namespace) -> Any:
    """The teacher the flags name; one that cannot be set up is a :class:`BuildFailed` (exit 1)."""
    from openrlhf_reward.teachers import TeacherError, get_teacher

    try:
        return get_teacher(args.teacher, **teacher_config(args))
    except (TypeError, ValueError, TeacherError) as e:
        raise BuildFailed(str(e)) from None
