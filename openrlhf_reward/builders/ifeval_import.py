"""Import IFEval-format rows into GRPO prompt rows with requirement labels.

Input: JSON Lines with ``prompt``, ``instruction_id_list`` and ``kwargs`` (parallel lists), and
optionally ``key`` — the layout of IFEval's ``input_data.jsonl`` and of the paper's RL data
(the HF ``google/IFEval`` export, with ``null`` for unset arguments, works too).

Output: the GRPO rows of :mod:`.grpo`; the requirements come from
:func:`openrlhf_reward.schema.requirements_from_ifeval` (IFEval's own description as text, the
IFEval group as type, and ``check = {"kind": "ifeval", "instruction_id", "kwargs"}`` for the
``rules`` backend). IFEval prompts carry their requirements inline, so ``label.query`` and
``label.instruction`` are both the prompt. Rows that cannot be converted are skipped and
reported (line number and reason); ``--strict`` stops at the first one instead.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from openrlhf_reward.builders.instructions import Instruction
from openrlhf_reward.schema import DataError, iter_jsonl, requirements_from_ifeval_label

__all__ = ["ifeval_instruction", "import_ifeval"]

HELP = "Convert IFEval-format rows (prompt, instruction_id_list, kwargs) into GRPO prompt rows."


def ifeval_instruction(obj: Any, where: str, *, prompt_key: str = "prompt", id_key: str = "key") -> Instruction:
    """One IFEval row -> :class:`Instruction` (raises DataError naming ``where`` and the problem)."""
    if not isinstance(obj, Mapping):
        raise DataError(f"{where}: expected a JSON object")
    prompt = obj.get(prompt_key)
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(f"{where}: field {prompt_key!r} must be a non-empty string")
    try:
        reqs = requirements_from_ifeval_label(obj)
    except DataError as e:
        raise DataError(f"{where}: {e}") from None
    if not reqs:
        raise DataError(f"{where}: 'instruction_id_list' is empty")
    raw_id = obj.get(id_key)
    if raw_id is None or isinstance(raw_id, bool) or not str(raw_id).strip():
        from openrlhf_reward.builders.instructions import content_id

        inst_id = content_id(prompt, prefix="ifeval-")
    else:
        inst_id = str(raw_id)
    return Instruction(id=inst_id, query=prompt, requirements=tuple(reqs), instruction=prompt)


def import_ifeval(
    path: str | Path, *, strict: bool = False, prompt_key: str = "prompt", id_key: str = "key"
) -> tuple[list[Instruction], list[dict[str, Any]]]:
    """Read an IFEval-format file: (instructions, rejects with ``line``/``reason``/``error``)."""
    out: list[Instruction] = []
    rejects: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    name = Path(path).name
    for lineno, obj in iter_jsonl(path):
        where = f"{name}:{lineno}"
        reason = "invalid_row"
        try:
            inst = ifeval_instruction(obj, where, prompt_key=prompt_key, id_key=id_key)
            if inst.id in seen:
                reason = "duplicate_id"
                raise DataError(f"{where}: duplicate {id_key} {inst.id!r} (first on line {seen[inst.id]})")
        except DataError as e:
            if strict:
                raise
            rejects.append({"line": lineno, "reason": reason, "error": str(e)})
            continue
        seen[inst.id] = lineno
        out.append(inst)
    return out, rejects


def add_arguments(p: argparse.ArgumentParser) -> None:
    from openrlhf_reward.builders.cli_args import add_io_arguments

    add_io_arguments(p, "IFEval-format JSONL (e.g. IFEval's input_data.jsonl).", "GRPO JSONL to write (atomically).")
    p.add_argument("--prompt-key", default="prompt", help="Field of the prompt (default %(default)s).")
    p.add_argument("--id-key", default="key", help="Field of the row id (default %(default)s; optional).")
    p.add_argument("--datasource", default=None, help="Add this 'datasource' to every row (e.g. ifeval).")
    p.add_argument("--rejects", default=None, help="Also write the skipped rows with their reasons to this JSONL.")
    p.add_argument("--strict", action="store_true", help="Stop at the first row that cannot be converted.")
    p.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")


def run(args: argparse.Namespace) -> int:
    from openrlhf_reward.builders.grpo import build_rows
    from openrlhf_reward.builders.runner import finish, write_rows
    from openrlhf_reward.builders.store import write_jsonl_atomic

    instructions, rejects = import_ifeval(args.input, strict=args.strict, prompt_key=args.prompt_key, id_key=args.id_key)
    # IFEval rows always carry requirements, so build_rows skips none of them.
    rows, skipped = build_rows(instructions, args.datasource, progress=not args.no_progress, desc="import-ifeval")
    output = write_rows(args.output, rows)
    if args.rejects:
        write_jsonl_atomic(args.rejects, rejects)
    notes = [f"line {r['line']}: {r['error']}" for r in rejects[:5]]
    if len(rejects) > 5:
        notes.append(f"... and {len(rejects) - 5} more" + (f" (see {args.rejects})" if args.rejects else ""))
    return finish("import-ifeval", {"rows": len(rows)}, Counter(r["reason"] for r in rejects) + skipped, notes=notes,
                  output=output)
