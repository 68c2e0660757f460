"""Requirement extraction: a teacher splits a raw instruction into a base query and its requirements.

The paper extracts requirements from WildChat writing prompts with a reasoning model; any
teacher backend works here. The teacher must answer with strict JSON::

    {"query": "the task with the requirements removed",
     "requirements": [{"type": "length", "text": "...", "check": {...} or null}, ...]}

(a JSON object inside a ```json fence, or after a ``<think>`` block, is accepted; any other
surrounding text is not). Answers are validated with :func:`openrlhf_reward.schema.parse_requirements`
and :func:`openrlhf_reward.checks.validate_check`; invalid answers are retried with a new seed
and finally recorded as rejects with the reason. Requirement ids are assigned here
(``c1..cn`` in the teacher's order), never taken from the teacher.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from openrlhf_reward.builders.instructions import Instruction, RawInstruction
from openrlhf_reward.builders.store import WorkStore
from openrlhf_reward.builders.teacher_units import (
    Rejected,
    TeacherUnit,
    UnitStats,
    derive_seed,
    run_units,
)
from openrlhf_reward.checks import validate_check
from openrlhf_reward.schema import REQUIREMENT_TYPES, DataError, Requirement, parse_requirements
from openrlhf_reward.text import CheckSpecError

__all__ = [
    "EXTRACT_PROMPT",
    "ExtractConfig",
    "extraction_json_schema",
    "extraction_units",
    "parse_extraction",
    "run_extraction",
]

EXTRACT_PROMPT = """\
Split the writing instruction below into its base task and the explicit requirements it places on the answer.

Instruction:
<<<
{instruction}
>>>

Answer with one JSON object and nothing else:
{{"query": "the base task, rewritten without any of the requirements",
 "requirements": [{{"type": "length|format|style|content", "text": "one requirement, phrased as an instruction", "check": null}}]}}

Rules:
- List only requirements the instruction actually states; do not invent any. List at most {max_requirements}.
- Each requirement is atomic (one constraint), specific, and understandable on its own.
- type: "length" (number of words, sentences, paragraphs), "format" (structure, lists, titles, markup, how it starts or ends), "style" (tone, register, voice, audience, perspective), "content" (what must or must not be covered).
- check: where a requirement is mechanically verifiable, one spec from this list, else null:
{vocabulary}
- The query must still make sense as a task without the requirements.
"""


@dataclass
class ExtractConfig:
    min_requirements: int = field(default=1, metadata={"help": "Fewest requirements an extraction may return."})
    max_requirements: int = field(default=8, metadata={"help": "Most requirements an extraction may return."})
    temperature: float = field(default=0.6, metadata={"help": "Sampling temperature of the extraction request."})
    max_tokens: int = field(default=4096, metadata={"help": "Token limit (reasoning models need room to think)."})
    retries: int = field(default=2, metadata={"help": "Extra tries for an answer that fails validation."})


def extraction_json_schema(min_requirements: int = 1, max_requirements: int = 8) -> dict[str, Any]:
    """JSON Schema of an extraction answer (for teachers that constrain decoding to a schema)."""
    from openrlhf_reward.builders.augment import MAX_SCHEMA_TEXT_CHARS, requirement_item_schema

    return {
        "title": "extraction",
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": 4 * MAX_SCHEMA_TEXT_CHARS},
            "requirements": {"type": "array", "items": requirement_item_schema(),
                             "minItems": min_requirements, "maxItems": max_requirements},
        },
        "required": ["query", "requirements"],
        "additionalProperties": False,
    }


def extraction_prompt(instruction: str, max_requirements: int = 8) -> str:
    """The extraction request; the check vocabulary is the one the augmentation prompt shows."""
    from openrlhf_reward.builders.augment import CHECK_DOC

    vocab = "\n".join(f"  {line}" for line in CHECK_DOC.splitlines())
    return EXTRACT_PROMPT.format(
        instruction=instruction.strip(), max_requirements=max_requirements, vocabulary=vocab
    )


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


def _json_object(text: str) -> Any:
    from openrlhf_reward.teachers.base import strip_reasoning

    text = strip_reasoning(text)
    if not text:
        raise Rejected("empty_output", "the teacher returned no text")
    m = _FENCE.search(text)
    body = (m.group(1) if m else text).strip()
    try:
        return json.loads(body)
    except json.JSONDecodeError as e:
        raise Rejected("invalid_json", f"not a JSON object ({e.msg} at char {e.pos})") from None


def parse_extraction(
    text: str, *, min_requirements: int = 1, max_requirements: int = 8, where: str = "extraction"
) -> tuple[str, list[Requirement]]:
    """Validate a teacher answer; return (query, requirements with ids c1..cn) or raise :class:`Rejected`."""
    obj = _json_object(text)
    if not isinstance(obj, dict):
        raise Rejected("bad_schema", f"expected a JSON object, got {type(obj).__name__}")
    if extra := sorted(set(obj) - {"query", "requirements"}):
        raise Rejected("bad_schema", f"unexpected field(s) {extra}")
    query = obj.get("query")
    if not isinstance(query, str) or not query.strip():
        raise Rejected("bad_schema", "'query' must be a non-empty string")
    items = obj.get("requirements")
    if not isinstance(items, list):
        raise Rejected("bad_schema", "'requirements' must be a list")
    if len(items) < min_requirements:
        raise Rejected("too_few_requirements", f"{len(items)} requirement(s), need at least {min_requirements}")
    if len(items) > max_requirements:
        raise Rejected("too_many_requirements", f"{len(items)} requirements, at most {max_requirements}")
    reqs_raw = []
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise Rejected("bad_schema", f"requirement {i} is not an object")
        if extra := sorted(set(item) - {"type", "text", "check", "id"}):
            raise Rejected("bad_schema", f"requirement {i} has unexpected field(s) {extra}")
        if item.get("type") not in REQUIREMENT_TYPES:
            raise Rejected(
                "unknown_type", f"requirement {i} has type {item.get('type')!r} (expected one of {', '.join(REQUIREMENT_TYPES)})"
            )
        check = item.get("check")
        if check is not None:
            try:
                validate_check(check)
            except CheckSpecError as e:
                raise Rejected("bad_check", f"requirement {i}: {e}") from None
        reqs_raw.append({"id": f"c{i}", "type": item["type"], "text": item.get("text"), "check": check})
    try:
        reqs = parse_requirements(reqs_raw, where)
    except DataError as e:
        raise Rejected("bad_schema", str(e)) from None
    texts = [r.text.strip().lower() for r in reqs]
    if len(set(texts)) != len(texts):
        raise Rejected("duplicate_requirement", "two requirements have the same text")
    return query.strip(), reqs


def extraction_key(inst: RawInstruction) -> str:
    """Store key of an extraction: id plus a hash of the text, so an edited line is redone."""
    return f"extract:{inst.id}@{hashlib.sha256(inst.text.encode('utf-8')).hexdigest()[:10]}"


def extraction_units(
    instructions: Sequence[RawInstruction], config: ExtractConfig, seed: int
) -> list[TeacherUnit]:
    """One teacher unit per raw instruction; the stored value holds query + requirements."""
    units = []
    for inst in instructions:

        def accept(text: str, inst: RawInstruction = inst) -> dict[str, Any]:
            query, reqs = parse_extraction(
                text,
                min_requirements=config.min_requirements,
                max_requirements=config.max_requirements,
                where=f"instruction {inst.id!r}",
            )
            return {"query": query, "requirements": [r.to_dict() for r in reqs]}

        units.append(
            TeacherUnit(
                key=extraction_key(inst),
                messages=[{"role": "user", "content": extraction_prompt(inst.text, config.max_requirements)}],
                seed=derive_seed(seed, "extract", inst.id),
                accept=accept,
            )
        )
    return units


def run_extraction(
    raw: Sequence[RawInstruction],
    teacher: object,
    store: WorkStore,
    config: ExtractConfig,
    *,
    seed: int,
    chunk_size: int = 0,
    progress: bool = True,
) -> tuple[list[Instruction], list[dict[str, Any]], UnitStats]:
    """Extract requirements for every raw instruction (resumable through ``store``).

    Returns the instructions that passed (input order; ``instruction`` is the raw text),
    one reject record per instruction that did not (``{"id", "stage", "reason", "error"}``),
    and the unit statistics (teacher failures are in ``stats.failed`` and not stored).
    """
    units = extraction_units(raw, config, seed)
    stats = run_units(
        teacher,
        units,
        store,
        temperature=config.temperature,
        max_tokens=config.max_tokens,
        retries=config.retries,
        chunk_size=chunk_size,
        desc="extract requirements",
        progress=progress,
        json_schema=extraction_json_schema(config.min_requirements, config.max_requirements),
    )
    kept: list[Instruction] = []
    rejects: list[dict[str, Any]] = []
    for inst in raw:
        value = store.get(extraction_key(inst))
        if value is None:  # failed on the teacher side this run; stays pending
            continue
        if not value.get("ok"):
            rejects.append(
                {"id": inst.id, "stage": "extract", "reason": value["reason"], "error": value["error"], "output": value.get("output", "")}
            )
            continue
        reqs = parse_requirements(value["requirements"], f"stored extraction of {inst.id!r}")
        category = inst.extra.get("category") if isinstance(inst.extra.get("category"), str) else None
        kept.append(
            Instruction(
                id=inst.id, query=value["query"], requirements=tuple(reqs), instruction=inst.text, category=category
            )
        )
    return kept, rejects, stats
