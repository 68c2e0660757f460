"""WRL reward-model pairs for OpenRLHF ``train_rm``, built by requirement dropout.

For every instruction (query + requirements ``c1..cn``), seeded nested dropout
(:func:`openrlhf_reward.builders.dropout.dropout_levels`, the same code as the WEval builder)
gives levels ``k = 0..L``: level ``k`` drops ``k`` requirements and its prompt is rebuilt from
the query and the kept requirements only. The teacher answers each level's prompt once.
Pairs are then formed between levels ``i < j`` (the answer with fewer drops is *chosen*):

* ``pairing="full"`` (default): ``(0, k)`` for ``k = 1..L`` -- the full-instruction answer
  against each weaker one, as in the paper;
* ``pairing="adjacent"``: ``(k, k+1)`` -- neighbours, differing by one requirement;
* ``pairing="all"``: every ordered pair ``i < j``.

Every pair is judged against the **full** instruction (``build_prompt(query, all
requirements)``, the prompt level 0 answered). Two granularities:

* ``query``: one pair; ``prompt`` is the full instruction; ``margin = j - i`` (the number of
  requirements the rejected answer was not asked for, relative to the chosen one) and
  ``dropped`` lists them.
* ``requirement``: one pair per requirement in that difference; ``prompt`` focuses on that
  requirement with the ``per-requirement`` reward backend's own template
  (:data:`openrlhf_reward.scorers.per_requirement.FOCUS_TEMPLATE`:
  ``"{instruction}\\n\\nFocus only on this requirement: {requirement}"``, instruction = the
  full instruction), so the RM is trained on exactly the text it is scored with; chosen and
  rejected are the same two answers; ``margin = 1`` and ``dropped = [that requirement]``.

Record (the RM pair layout of docs/data.md, plus ``id`` and ``source``)::

    {"id": "inst-7:q:0-2", "prompt": [{"role": "user", "content": ...}],
     "chosen": [{"role": "assistant", "content": ...}], "rejected": [{"role": "assistant", ...}],
     "margin": 2, "dropped": ["c4", "c1"], "requirements": [...], "granularity": "query",
     "source": {"instruction": "inst-7", "levels": [0, 2], "teacher": "..."}}

Consumed with ``--data.prompt_key prompt --data.chosen_key chosen --data.rejected_key rejected
--data.apply_chat_template`` (``--model.margin_loss_enable`` uses ``margin``).

Instructions come listed (JSONL with query + requirements) or raw (the teacher extracts the
requirements first, :mod:`.extract`). All teacher work is stored per unit in a work
directory (:mod:`.store`): rerunning the same command resumes, and the output -- written
atomically in input order -- is identical to an uninterrupted run's. Pairing and
granularity only shape the assembly, so they may be changed between runs on one work dir.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrlhf_reward.builders.dropout import DropoutLevel, dropout_levels
from openrlhf_reward.builders.instructions import Instruction
from openrlhf_reward.builders.runner import Build
from openrlhf_reward.schema import DataError, Requirement, parse_requirements

__all__ = [
    "GRANULARITIES",
    "PAIRINGS",
    "PairsBuildConfig",
    "build_pairs",
    "level_pairs",
    "load_pairs_jsonl",
    "validate_pair",
]

HELP = "Build WRL reward-model pairs (requirement dropout, teacher answers) for OpenRLHF train_rm (resumable)."

PAIRINGS = ("full", "adjacent", "all")
GRANULARITIES = ("query", "requirement", "both")


@dataclass
class PairsBuildConfig:
    input: str = field(default="", metadata={"help": "JSONL of instructions: listed requirements (or raw text with --raw)."})
    output: str = field(default="", metadata={"help": "The pair JSONL file to write."})
    workdir: str | None = field(default=None, metadata={"help": "Work directory for resumable progress (default: OUTPUT.work)."})
    raw: bool = field(default=False, metadata={"help": "Input lines are raw instructions; the teacher extracts requirements first."})
    text_key: str = field(default="instruction", metadata={"help": "Field of the raw instruction text."})
    id_key: str = field(default="id", metadata={"help": "Field of the instruction id (optional; default: content hash)."})
    seed: int = field(default=0, metadata={"help": "Seed of the dropout order and of the teacher requests."})
    levels: int | None = field(
        default=None,
        metadata={"help": "Rejected levels per instruction = most requirements dropped (default n-1, at least 1; capped at n)."},
    )
    pairing: str = field(default="full", metadata={"help": "full (0 vs each level), adjacent (k vs k+1) or all (every i<j)."})
    granularity: str = field(default="query", metadata={"help": "query, requirement, or both (both kinds in one file)."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature of the answers."})
    max_tokens: int = field(default=1024, metadata={"help": "Token limit of the answers."})
    max_attempts: int = field(default=3, metadata={"help": "Teacher answers tried per unit before it is rejected."})
    chunk_size: int = field(default=0, metadata={"help": "Requests handed to the teacher at once (0: automatic)."})
    system_prompt: str | None = field(default=None, metadata={"help": "Optional system message for the answers."})
    extract_temperature: float = field(default=0.6, metadata={"help": "Sampling temperature of requirement extraction (raw)."})
    extract_max_tokens: int = field(default=4096, metadata={"help": "Token limit of extraction answers (raw; room to think)."})
    min_requirements: int = field(default=1, metadata={"help": "Fewest extracted requirements to keep an instruction (raw)."})
    max_requirements: int = field(default=8, metadata={"help": "Most extracted requirements allowed (raw)."})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})


# ----------------------------------------------------------------------------- pairs


def level_pairs(n_levels: int, pairing: str) -> list[tuple[int, int]]:
    """The (chosen level, rejected level) pairs among levels ``0..n_levels-1``."""
    top = n_levels - 1
    if pairing == "full":
        return [(0, k) for k in range(1, top + 1)]
    if pairing == "adjacent":
        return [(k, k + 1) for k in range(top)]
    if pairing == "all":
        return [(i, j) for i in range(top + 1) for j in range(i + 1, top + 1)]
    raise ValueError(f"unknown pairing {pairing!r} (expected one of {', '.join(PAIRINGS)})")


def focus_prompt(instruction: str, requirement: Requirement) -> str:
    """The requirement-focused user turn, shared with the per-requirement reward backend."""
    from openrlhf_reward.scorers.per_requirement import FOCUS_TEMPLATE

    return FOCUS_TEMPLATE.format(instruction=instruction, requirement=requirement.text)


def make_pairs(
    inst: Instruction,
    levels: Sequence[DropoutLevel],
    responses: Sequence[str | None],
    *,
    pairing: str,
    granularity: str,
    teacher: str,
) -> tuple[list[dict[str, Any]], Counter]:
    """Pair records for one instruction; ``responses[k]`` is None when level k has no answer."""
    full = levels[0].prompt
    by_id = {r.id: r for r in inst.requirements}
    reqs = [r.to_dict() for r in inst.requirements]
    out: list[dict[str, Any]] = []
    skipped: Counter = Counter()
    for i, j in level_pairs(len(levels), pairing):
        chosen, rejected = responses[i], responses[j]
        if chosen is None or rejected is None:
            skipped["pair_without_answer"] += 1
            continue
        if chosen.strip() == rejected.strip():
            skipped["identical_answers"] += 1
            continue
        dropped = [c for c in levels[j].dropped if c not in levels[i].dropped]
        base = {
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
        source = {"instruction": inst.id, "levels": [i, j], "teacher": teacher}
        if granularity in ("query", "both"):
            out.append(
                {
                    "id": f"{inst.id}:q:{i}-{j}",
                    "prompt": [{"role": "user", "content": full}],
                    **base,
                    "margin": j - i,
                    "dropped": dropped,
                    "requirements": reqs,
                    "granularity": "query",
                    "source": source,
                }
            )
        if granularity in ("requirement", "both"):
            for c in dropped:
                out.append(
                    {
                        "id": f"{inst.id}:r:{i}-{j}:{c}",
                        "prompt": [{"role": "user", "content": focus_prompt(full, by_id[c])}],
                        **base,
                        "margin": 1,
                        "dropped": [c],
                        "requirements": reqs,
                        "granularity": "requirement",
                        "source": source,
                    }
                )
    return out, skipped


def _message(value: Any, role: str, where: str, key: str) -> str:
    if (
        not isinstance(value, list)
        or len(value) != 1
        or not isinstance(value[0], dict)
        or value[0].get("role") != role
        or not isinstance(value[0].get("content"), str)
        or not value[0]["content"].strip()
    ):
        raise DataError(f"{where}: {key!r} must be one {role} message with non-empty content")
    return value[0]["content"]


def validate_pair(rec: Any, where: str = "pair") -> None:
    """Check one pair record against the schema; raise DataError naming the problem."""
    if not isinstance(rec, dict):
        raise DataError(f"{where}: must be an object")
    _message(rec.get("prompt"), "user", where, "prompt")
    chosen = _message(rec.get("chosen"), "assistant", where, "chosen")
    rejected = _message(rec.get("rejected"), "assistant", where, "rejected")
    if chosen == rejected:
        raise DataError(f"{where}: chosen and rejected are the same text")
    reqs = parse_requirements(rec.get("requirements"), where)
    ids = {r.id for r in reqs}
    dropped = rec.get("dropped")
    if not isinstance(dropped, list) or not dropped or not all(isinstance(d, str) for d in dropped):
        raise DataError(f"{where}: 'dropped' must be a non-empty list of requirement ids")
    if len(set(dropped)) != len(dropped) or not set(dropped) <= ids:
        raise DataError(f"{where}: 'dropped' must name distinct ids of 'requirements', got {dropped}")
    margin = rec.get("margin")
    if isinstance(margin, bool) or not isinstance(margin, int | float) or margin <= 0:
        raise DataError(f"{where}: 'margin' must be a positive number")
    gran = rec.get("granularity")
    if gran == "query":
        if margin != len(dropped):
            raise DataError(f"{where}: query pair margin {margin} != {len(dropped)} dropped requirement(s)")
    elif gran == "requirement":
        if len(dropped) != 1 or margin != 1:
            raise DataError(f"{where}: a requirement pair drops exactly one requirement with margin 1")
    else:
        raise DataError(f"{where}: 'granularity' must be 'query' or 'requirement', got {gran!r}")


def load_pairs_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Load and validate a pair file (ids, when present, must be unique)."""
    from openrlhf_reward.schema import iter_jsonl

    out, seen = [], set()
    for lineno, rec in iter_jsonl(path):
        validate_pair(rec, f"{Path(path).name}:{lineno}")
        if "id" in rec:
            if rec["id"] in seen:
                raise DataError(f"{Path(path).name}:{lineno}: duplicate pair id {rec['id']!r}")
            seen.add(rec["id"])
        out.append(rec)
    return out


# ----------------------------------------------------------------------------- builder


def _content_hash(inst: Instruction) -> str:
    blob = json.dumps([inst.query, [r.to_dict() for r in inst.requirements]], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:10]


def _max_dropped(cfg: PairsBuildConfig, n: int) -> int:
    return min(cfg.levels, n) if cfg.levels is not None else max(n - 1, 1)


def _levels(cfg: PairsBuildConfig, inst: Instruction) -> list[DropoutLevel]:
    return dropout_levels(
        inst.query, inst.requirements, seed=cfg.seed, doc_id=inst.id, max_dropped=_max_dropped(cfg, len(inst.requirements))
    )


def _meta(cfg: PairsBuildConfig) -> dict[str, Any]:
    # What changes the meaning of a stored unit; not paths, pairing, granularity or speed knobs.
    keys = (
        "raw", "text_key", "seed", "levels", "temperature", "max_tokens", "max_attempts", "system_prompt",
        "extract_temperature", "extract_max_tokens", "min_requirements", "max_requirements",
    )
    return {"builder": "pairs", "format": 1, **{k: getattr(cfg, k) for k in keys}}


def build_pairs(config: PairsBuildConfig, teacher: Any) -> dict[str, Any]:
    """Run (or resume) the build; returns the summary (also written to WORKDIR/summary.json)."""
    from openrlhf_reward.builders.extract import ExtractConfig
    from openrlhf_reward.builders.instructions import load_listed, load_raw
    from openrlhf_reward.builders.teacher_units import answer_unit

    cfg = config
    if not cfg.input or not cfg.output:
        raise ValueError("build_pairs needs input and output")
    if cfg.pairing not in PAIRINGS:
        raise ValueError(f"unknown pairing {cfg.pairing!r} (expected one of {', '.join(PAIRINGS)})")
    if cfg.granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {cfg.granularity!r} (expected one of {', '.join(GRANULARITIES)})")
    if cfg.levels is not None and cfg.levels < 1:
        raise ValueError(f"levels must be >= 1, got {cfg.levels}")
    if cfg.max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {cfg.max_attempts}")

    # the input is read before the work directory exists: bad input leaves none behind
    if cfg.raw:
        raw, dups = load_raw(cfg.input, id_key=cfg.id_key, text_key=cfg.text_key)
        n_input = len(raw)
    else:
        instructions, dups = load_listed(cfg.input, id_key=cfg.id_key)
        n_input = len(instructions)
    workdir = Path(cfg.workdir) if cfg.workdir else Path(f"{cfg.output}.work")
    with Build(workdir, _meta(cfg), teacher, progress=cfg.progress, chunk_size=cfg.chunk_size) as build:
        if cfg.raw:
            instructions = build.extract(raw, ExtractConfig(
                min_requirements=cfg.min_requirements, max_requirements=cfg.max_requirements,
                temperature=cfg.extract_temperature, max_tokens=cfg.extract_max_tokens, retries=cfg.max_attempts - 1,
            ), seed=cfg.seed)
        if dups:
            build.reasons["duplicate_instruction"] += dups

        usable: list[Instruction] = []
        for inst in instructions:
            if inst.requirements:
                usable.append(inst)
            else:
                build.reject("no_requirements", {"id": inst.id, "stage": "input", "reason": "no_requirements",
                                                 "error": "nothing to drop"})
        key_of = {inst.id: f"{inst.id}@{_content_hash(inst)}" for inst in usable}
        levels_of = {inst.id: _levels(cfg, inst) for inst in usable}
        units = [
            answer_unit(f"resp:{key_of[inst.id]}:{lvl.k}", lvl.prompt, base_seed=cfg.seed, system_prompt=cfg.system_prompt)
            for inst in usable
            for lvl in levels_of[inst.id]
        ]
        stats = build.run_units("answers", units, temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                                retries=cfg.max_attempts - 1)
        records: list[dict[str, Any]] = []
        summary: dict[str, Any] = {}
        if not build.pending:  # unanswered units are not stored: a file now would differ from a complete run
            records, summary = _assemble(cfg, teacher, usable, levels_of, key_of, build)
        summary.update(instructions=n_input, this_run=stats.counts())
        return build.write(cfg.output, records, summary, config=cfg)


def _assemble(
    cfg: PairsBuildConfig,
    teacher: Any,
    usable: Sequence[Instruction],
    levels_of: dict[str, list[DropoutLevel]],
    key_of: dict[str, str],
    build: Build,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The pairs in input order, and the summary's counts; rejects go to ``build``."""
    records: list[dict[str, Any]] = []
    per_gran: Counter = Counter()
    kept_instructions = 0
    for inst in usable:  # input order: the output does not depend on finish order
        levels = levels_of[inst.id]
        responses: list[str | None] = []
        for lvl in levels:
            rec = build.store[f"resp:{key_of[inst.id]}:{lvl.k}"]
            responses.append(rec["value"] if rec["ok"] else None)
            if not rec["ok"]:
                build.reject(f"answer/{rec['reason']}", {"id": inst.id, "stage": "answer", "level": lvl.k,
                                                         "reason": rec["reason"], "error": rec["error"]})
        pairs, skipped = make_pairs(
            inst, levels, responses, pairing=cfg.pairing, granularity=cfg.granularity, teacher=teacher.model_name
        )
        build.reasons.update({f"pair/{reason}": n for reason, n in skipped.items()})
        if not pairs:
            build.reject("no_pairs", {"id": inst.id, "stage": "pairs", "reason": "no_pairs", "error": dict(skipped)})
            continue
        for p in pairs:
            try:
                validate_pair(p, f"pair {p['id']!r}")
            except DataError as e:  # a bug in the builder, not in the data
                raise RuntimeError(f"built an invalid pair: {e}") from e
            per_gran[p["granularity"]] += 1
        records.extend(pairs)
        kept_instructions += 1
    return records, {
        "pairs": len(records),
        "pairs_by_granularity": dict(sorted(per_gran.items())),
        "instructions_with_pairs": kept_instructions,
        "teacher": teacher.model_name,
    }


# ----------------------------------------------------------------------------- CLI

_CHOICES = {"pairing": PAIRINGS, "granularity": GRANULARITIES}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from openrlhf_reward.builders.cli_args import add_config_arguments

    parser.epilog = (
        "Example: openrlhf-reward build-pairs --input instructions.jsonl --output pairs.jsonl "
        "--teacher openai --base-url http://127.0.0.1:8000/v1 --concurrency 32 --pairing full "
        "--granularity both. Rerun the same command after an interruption to resume."
    )
    add_config_arguments(parser, PairsBuildConfig, required=("input", "output"), choices=_CHOICES)


def run(args: argparse.Namespace) -> int:
    from openrlhf_reward.builders.cli_args import config_from_args, make_teacher
    from openrlhf_reward.builders.runner import finish

    cfg = config_from_args(args, PairsBuildConfig)
    with make_teacher(args) as teacher:
        summary = build_pairs(cfg, teacher)
    kept = {"pairs": summary.get("pairs", 0)}
    if summary["complete"]:
        kept.update(instructions=summary["instructions_with_pairs"])
        kept.update({f"{k} pairs": v for k, v in summary["pairs_by_granularity"].items()})
    return finish("build-pairs", kept, summary["rejected_by_reason"], output=summary["output"],
                  notes=[f"summary {summary['summary_path']}; rejects {summary['rejects_path']}"],
                  failures=summary.get("failures", ()))
