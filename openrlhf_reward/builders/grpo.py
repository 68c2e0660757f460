"""GRPO prompt files for OpenRLHF ``train_ppo_ray`` (``--data.input_key input --data.label_key label``).

One row per instruction::

    {"id": "...",
     "input": [{"role": "user", "content": "<full instruction>"}],
     "label": {"requirements": [{"id", "type", "text", "check"}, ...],
               "query": "<base query>", "instruction": "<full instruction>"}}

OpenRLHF passes ``label`` untouched to the reward server as ``labels[i]``; the server reads
``label.requirements`` (and ``label.instruction`` when present). ``datasource`` is added
when asked for (OpenRLHF logs rewards per datasource).

Inputs: instructions that list their requirements (see :mod:`.instructions`), or raw
instructions whose requirements a teacher extracts first (``--raw``; resumable through a
work directory). IFEval-format rows have their own command, ``import-ifeval``.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from openrlhf_reward.builders.instructions import Instruction
from openrlhf_reward.schema import DataError, Requirement

__all__ = ["grpo_row", "validate_grpo_row"]

HELP = "Build GRPO prompt rows (input + label with requirements) for OpenRLHF train_ppo_ray."


def grpo_row(inst: Instruction, datasource: str | None = None) -> dict[str, Any]:
    """The GRPO row for one instruction (the prompt is the instruction text as given)."""
    row: dict[str, Any] = {
        "id": inst.id,
        "input": [{"role": "user", "content": inst.instruction}],
        "label": {
            "requirements": [r.to_dict() for r in inst.requirements],
            "query": inst.query,
            "instruction": inst.instruction,
        },
    }
    if datasource:
        row["datasource"] = datasource
    return row


def validate_grpo_row(row: Any, where: str = "GRPO row") -> list[Requirement]:
    """Check a GRPO row against the schema; return its requirements. Raises DataError."""
    from openrlhf_reward.schema import parse_requirements

    if not isinstance(row, dict):
        raise DataError(f"{where}: must be an object")
    msgs = row.get("input")
    if (
        not isinstance(msgs, list)
        or len(msgs) != 1
        or not isinstance(msgs[0], dict)
        or msgs[0].get("role") != "user"
        or not isinstance(msgs[0].get("content"), str)
        or not msgs[0]["content"].strip()
    ):
        raise DataError(f"{where}: 'input' must be one user message with non-empty content")
    label = row.get("label")
    if not isinstance(label, dict):
        raise DataError(f"{where}: 'label' must be an object")
    reqs = parse_requirements(label.get("requirements"), where)
    if not reqs:
        raise DataError(f"{where}: label has no requirements")
    if label.get("instruction") is not None and label["instruction"] != msgs[0]["content"]:
        raise DataError(f"{where}: label.instruction differs from the prompt")
    return reqs


def build_rows(
    instructions: Sequence[Instruction], datasource: str | None, progress: bool = False, desc: str = "build-grpo"
) -> tuple[list[dict[str, Any]], Counter]:
    """Validated GRPO rows, and the count of instructions skipped by reason."""
    from tqdm import tqdm

    rows, rejected = [], Counter()
    for inst in tqdm(instructions, desc=desc, unit="row", disable=not progress, file=sys.stderr):
        if not inst.requirements:
            rejected["no_requirements"] += 1
            continue
        row = grpo_row(inst, datasource)
        validate_grpo_row(row, f"instruction {inst.id!r}")
        rows.append(row)
    return rows, rejected


# ----------------------------------------------------------------------------- CLI


def _extract(args: argparse.Namespace, raw: list) -> tuple[list[Instruction], Counter, list[str]]:
    """Requirement extraction in the work directory: (instructions, rejects by reason, failures)."""
    from openrlhf_reward.builders.cli_args import make_teacher
    from openrlhf_reward.builders.extract import ExtractConfig
    from openrlhf_reward.builders.runner import Build

    # the grpo flags carry the ExtractConfig fields under the same names
    cfg = ExtractConfig(**{f.name: getattr(args, f.name) for f in fields(ExtractConfig)})
    work = Path(args.workdir or f"{args.output}.work")
    meta = {"builder": "grpo-extract", "seed": args.seed, **vars(cfg)}
    with make_teacher(args) as teacher:
        with Build(work, meta, teacher, store_name="units.jsonl", progress=not args.no_progress,
                   chunk_size=args.chunk_size) as build:
            instructions = build.extract(raw, cfg, seed=args.seed)
    build.write_rejects()
    return instructions, build.reasons, build.failures()


def add_arguments(p: argparse.ArgumentParser) -> None:
    from openrlhf_reward.builders.cli_args import add_io_arguments, add_teacher_arguments

    add_io_arguments(p, "JSONL of instructions (listed requirements, or raw with --raw).", "GRPO JSONL to write (atomically).")
    p.add_argument("--raw", action="store_true", help="Input lines are raw instructions; a teacher extracts the requirements.")
    p.add_argument("--text-key", default="instruction", help="Field of the raw instruction text (default %(default)s).")
    p.add_argument("--id-key", default="id", help="Field of the instruction id (optional in the input).")
    p.add_argument("--datasource", default=None, help="Add this 'datasource' to every row (OpenRLHF logs per datasource).")
    p.add_argument("--workdir", "--work-dir", dest="workdir", default=None, help="Resumable work directory for --raw (default: OUTPUT.work).")
    p.add_argument("--seed", type=int, default=0, help="Seed of the teacher requests (default %(default)s).")
    p.add_argument("--min-requirements", type=int, default=1, help="Fewest extracted requirements to keep an instruction.")
    p.add_argument("--max-requirements", type=int, default=8, help="Most extracted requirements allowed.")
    p.add_argument("--no-progress", action="store_true", help="Hide progress bars.")
    add_teacher_arguments(p)


def run(args: argparse.Namespace) -> int:
    from openrlhf_reward.builders.instructions import load_listed, load_raw
    from openrlhf_reward.builders.runner import finish, write_rows

    rejected: Counter = Counter()
    failures: list[str] = []
    if args.raw:
        raw, dups = load_raw(args.input, id_key=args.id_key, text_key=args.text_key)
        instructions, rejected, failures = _extract(args, raw)
    else:
        instructions, dups = load_listed(args.input, id_key=args.id_key)
    rows, more = build_rows(instructions, args.datasource, progress=not args.no_progress)
    rejected.update(more)
    if dups:
        rejected["duplicate_instruction"] += dups
    # never a file missing pending instructions
    output = write_rows(args.output, rows, complete=not failures)
    return finish("build-grpo", {"rows": len(rows)}, rejected, output=output, failures=failures)
