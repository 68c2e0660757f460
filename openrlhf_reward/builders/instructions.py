"""Reading the instruction files that the pair and GRPO builders start from.

Two input kinds, both JSON Lines:

* **listed** (source a): instructions that already list their requirements::

      {"id": "optional", "query": "base task", "requirements": [{"id", "type", "text", "check"}],
       "instruction": "optional full instruction text", "category": "optional"}

  WEval documents qualify as they are (``prompt`` is read as the full instruction).
* **raw** (source b): instructions whose requirements a teacher extracts first::

      {"id": "optional", "instruction": "Write a 300-word ... in a formal tone."}

An ``id`` is optional: without one, a stable id is derived from the content (so reruns and
reordered inputs keep their ids) and exact duplicates are dropped (counted). Two lines with
the same explicit id, or malformed lines, raise :class:`DataError` naming the line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrlhf_reward.schema import (
    DataError,
    Requirement,
    build_prompt,
    iter_jsonl,
    parse_requirements,
)

__all__ = ["Instruction", "RawInstruction", "content_id", "load_listed", "load_raw"]


@dataclass(frozen=True)
class RawInstruction:
    """An instruction whose requirements are not yet listed (e.g. a WildChat writing prompt)."""

    id: str
    text: str
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Instruction:
    """A base query with its requirements (listed in the input or extracted by a teacher)."""

    id: str
    query: str
    requirements: tuple[Requirement, ...]
    instruction: str  # the full instruction text as given (raw text or the row's own prompt)
    category: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def full_prompt(self) -> str:
        """The full instruction rebuilt from query + all requirements (schema.build_prompt)."""
        return build_prompt(self.query, self.requirements)


def content_id(*parts: Any, prefix: str = "i") -> str:
    """A short stable id from content (used when an input line carries no id)."""
    h = hashlib.sha1(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
    return f"{prefix}{h[:12]}"


class _Ids:
    """The ids claimed so far in one input file, and the exact duplicates dropped (``dups``)."""

    def __init__(self, id_key: str) -> None:
        self.id_key = id_key
        self.seen: dict[str, int] = {}  # id -> line
        self.dups = 0

    def claim(self, obj: Mapping[str, Any], where: str, lineno: int, content: tuple[Any, ...]) -> str | None:
        """The line's id (its ``id_key`` field, else a hash of ``content``); None for an exact
        duplicate of an earlier id-less line (the caller drops it); a repeated explicit id is a
        DataError."""
        raw = obj.get(self.id_key)
        if raw is None:
            inst_id = content_id(*content)
            if inst_id in self.seen:
                self.dups += 1
                return None
        else:
            if isinstance(raw, bool) or not isinstance(raw, str | int) or not str(raw).strip():
                raise DataError(f"{where}: field {self.id_key!r} must be a non-empty string or an integer")
            inst_id = str(raw)
            if inst_id in self.seen:
                raise DataError(f"{where}: duplicate instruction id {inst_id!r} (first on line {self.seen[inst_id]})")
        self.seen[inst_id] = lineno
        return inst_id


def _lines(path: str | Path) -> Iterator[tuple[int, str, Any]]:
    """(line number, "file:line", object) of each line."""
    name = Path(path).name
    for lineno, obj in iter_jsonl(path):
        yield lineno, f"{name}:{lineno}", obj


def _some(out: list[Any], path: str | Path) -> list[Any]:
    if not out:
        raise DataError(f"{path}: no instructions")
    return out


def load_listed(
    path: str | Path,
    *,
    id_key: str = "id",
    query_key: str = "query",
    requirements_key: str = "requirements",
    instruction_key: str | None = None,
) -> tuple[list[Instruction], int]:
    """Load instructions that list their requirements: (instructions, duplicates dropped)."""
    out: list[Instruction] = []
    ids = _Ids(id_key)
    for lineno, where, obj in _lines(path):
        if not isinstance(obj, Mapping):
            raise DataError(f"{where}: expected a JSON object")
        query = obj.get(query_key)
        if not isinstance(query, str) or not query.strip():
            raise DataError(f"{where}: field {query_key!r} must be a non-empty string")
        if requirements_key not in obj:
            raise DataError(f"{where}: missing field {requirements_key!r}")
        reqs = parse_requirements(obj[requirements_key], where)
        inst_id = ids.claim(obj, where, lineno, (query.strip(), [r.to_dict() for r in reqs]))
        if inst_id is None:
            continue
        text = None
        for key in ([instruction_key] if instruction_key else ["instruction", "prompt"]):
            if isinstance(obj.get(key), str) and obj[key].strip():
                text = obj[key]
                break
        category = obj.get("category") if isinstance(obj.get("category"), str) else None
        out.append(
            Instruction(
                id=inst_id,
                query=query.strip(),
                requirements=tuple(reqs),
                instruction=text if text is not None else build_prompt(query, reqs),
                category=category,
            )
        )
    return _some(out, path), ids.dups


def load_raw(
    path: str | Path, *, id_key: str = "id", text_key: str = "instruction"
) -> tuple[list[RawInstruction], int]:
    """Load raw instructions (text only): (instructions, duplicates dropped)."""
    out: list[RawInstruction] = []
    ids = _Ids(id_key)
    for lineno, where, obj in _lines(path):
        if isinstance(obj, str):
            obj = {text_key: obj}
        if not isinstance(obj, Mapping):
            raise DataError(f"{where}: expected a JSON object (or a JSON string)")
        text = obj.get(text_key)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: field {text_key!r} must be a non-empty string")
        inst_id = ids.claim(obj, where, lineno, (text.strip(),))
        if inst_id is not None:
            out.append(RawInstruction(id=inst_id, text=text, extra={k: v for k, v in obj.items() if k not in (id_key, text_key)}))
    return _some(out, path), ids.dups
