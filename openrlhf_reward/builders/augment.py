"""Requirement augmentation: ask a teacher for N atomic requirements as strict JSON, validate.

The teacher receives the seed instruction and the ``check`` vocabulary of the rules scorer
and must answer with JSON only::

    {"requirements": [{"type": "length", "text": "Write exactly four sentences.",
                       "check": {"kind": "sentence_count", "exact": 4}},
                      {"type": "style", "text": "Use a formal tone.", "check": null}, ...]}

:func:`parse_requirements_json` accepts exactly that (a bare list, or one surrounding
```json fence, is tolerated) and rejects, with a stable reason label, anything else:
``invalid_json``, ``wrong_shape``, ``wrong_count``, ``unknown_type``,
``invalid_requirement``, ``invalid_check``, ``duplicate_requirement``,
``types_not_mixed``, ``conflicting_checks``.

:func:`requirements_json_schema` is the same answer shape as a JSON Schema (the check forms of
:data:`CHECK_DOC`, exactly ``n`` items), sent to teachers that constrain decoding to a schema
(``--teacher-opt json_schema=true`` with the ``openai`` backend). It only shapes the answer:
counts, mixed types, duplicates and conflicts are still checked by the parser.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from openrlhf_reward.builders.teacher_units import Rejected
from openrlhf_reward.checks import validate_check
from openrlhf_reward.schema import REQUIREMENT_TYPES, Requirement
from openrlhf_reward.text import CheckSpecError

__all__ = [
    "AUGMENT_SYSTEM_PROMPT",
    "CHECK_DOC",
    "augmentation_messages",
    "find_conflict",
    "check_json_schema",
    "parse_requirements_json",
    "requirement_item_schema",
    "requirements_json_schema",
    "teacher_check",
]

CHECK_DOC = """\
- word_count: {"kind": "word_count", "min": int, "max": int} (either or both)
- sentence_count / paragraph_count / question_count / percent_count: {"kind": ..., "exact": int} or {"kind": ..., "min": int, "max": int}
- bullet_count: {"kind": "bullet_count", "marker": "- ", "exact": int} (or min/max)
- starts_with / ends_with: {"kind": ..., "text": "exact text"}
- contains_all: {"kind": "contains_all", "keywords": ["word", ...]}
- forbidden_chars: {"kind": "forbidden_chars", "chars": ";!"}
- lowercase: {"kind": "lowercase"}
- title_brackets: {"kind": "title_brackets"} (first line is a title like <<Title>>)"""

AUGMENT_SYSTEM_PROMPT = """\
You add requirements to writing instructions. Answer with strict JSON only, no prose, no code fences."""

_AUGMENT_TEMPLATE = """\
Instruction:
{query}

Add exactly {n} requirements to this instruction. Each requirement must be:
- atomic (asks for one thing), specific (concrete and checkable), and relevant to the instruction;
- compatible with the instruction and with every other requirement (no conflicts);
- of one of the types: length, format, style, content. Use at least {min_types} different types.

Where a requirement can be verified mechanically, give a "check" using exactly one of these
forms; otherwise set "check" to null:
{check_doc}

Answer with this JSON object and nothing else:
{{"requirements": [{{"type": "length|format|style|content", "text": "the requirement as one sentence", "check": {{...}} or null}}]}}"""


def augmentation_messages(query: str, n: int = 5, min_types: int = 3) -> list[dict[str, str]]:
    """The chat request asking a teacher for ``n`` requirements for ``query``."""
    return [
        {"role": "system", "content": AUGMENT_SYSTEM_PROMPT},
        {
            "role": "user",
            "content": _AUGMENT_TEMPLATE.format(query=query.strip(), n=n, min_types=min_types, check_doc=CHECK_DOC),
        },
    ]


# String bounds of the schema: a constrained small model otherwise may loop inside a string
# until the token limit; validation accepts longer texts from unconstrained teachers.
MAX_SCHEMA_TEXT_CHARS = 300
MAX_SCHEMA_KEYWORDS = 5
_COUNT = {"type": "integer", "minimum": 0}


def _check_form(kind: str, **params: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"kind": {"const": kind}, **params},
        "required": ["kind", *params],
        "additionalProperties": False,
    }


def check_json_schema() -> dict[str, Any]:
    """JSON Schema of a ``check``: null or one of the forms listed in :data:`CHECK_DOC`."""
    text = {"type": "string", "minLength": 1, "maxLength": 80}
    forms: list[dict[str, Any]] = [{"type": "null"}]
    bounds = [("exact",), ("min",), ("max",), ("min", "max")]  # 'exact' stands alone
    marker = {"enum": ["- ", "* "]}
    for kind in ("word_count", "sentence_count", "paragraph_count", "bullet_count", "question_count", "percent_count"):
        extra = {"marker": marker} if kind == "bullet_count" else {}
        for names in bounds[1:] if kind == "word_count" else bounds:  # word_count takes no 'exact'
            forms.append(_check_form(kind, **extra, **dict.fromkeys(names, _COUNT)))
    forms += [
        _check_form("starts_with", text=text),
        _check_form("ends_with", text=text),
        _check_form("contains_all", keywords={"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 40},
                                              "minItems": 1, "maxItems": MAX_SCHEMA_KEYWORDS}),
        _check_form("forbidden_chars", chars={"type": "string", "minLength": 1, "maxLength": 8}),
        _check_form("lowercase"),
        _check_form("title_brackets"),
    ]
    return {"anyOf": forms}


def requirement_item_schema() -> dict[str, Any]:
    """JSON Schema of one requirement: ``{"type", "text", "check"}``."""
    return {
        "type": "object",
        "properties": {
            "type": {"enum": list(REQUIREMENT_TYPES)},
            "text": {"type": "string", "minLength": 1, "maxLength": MAX_SCHEMA_TEXT_CHARS},
            "check": check_json_schema(),
        },
        "required": ["type", "text", "check"],
        "additionalProperties": False,
    }


def requirements_json_schema(n: int = 5) -> dict[str, Any]:
    """JSON Schema of an augmentation answer: ``{"requirements": [n requirement objects]}``."""
    return {
        "title": "requirements",
        "type": "object",
        "properties": {
            "requirements": {"type": "array", "items": requirement_item_schema(), "minItems": n, "maxItems": n},
        },
        "required": ["requirements"],
        "additionalProperties": False,
    }


_FENCE = re.compile(r"^```(?:json|JSON)?\s*\n(.*)\n\s*```$", re.DOTALL)
_COUNTED = {"word_count", "sentence_count", "paragraph_count", "bullet_count", "question_count", "percent_count"}


def _bounds(spec: Mapping[str, Any]) -> tuple[int, float]:
    if "exact" in spec:
        return spec["exact"], spec["exact"]
    return spec.get("min", 0), spec.get("max", float("inf"))


def find_conflict(requirements: Sequence[Requirement]) -> str | None:
    """A description of two checks that no response can satisfy together, else None.

    Catches the mechanical cases: disjoint ranges of the same counted quantity, a
    ``lowercase`` check against required uppercase text, and forbidden characters that other
    checks require.
    """
    checks = [(r.id, r.check) for r in requirements if r.check]
    for i, (ia, a) in enumerate(checks):
        for ib, b in checks[i + 1 :]:
            if a["kind"] == b["kind"] and a["kind"] in _COUNTED and a.get("marker", "- ") == b.get("marker", "- "):
                lo_a, hi_a = _bounds(a)
                lo_b, hi_b = _bounds(b)
                if max(lo_a, lo_b) > min(hi_a, hi_b):
                    return f"{ia} and {ib} ask for incompatible {a['kind']} ranges"
            for x, ix, y, iy in ((a, ia, b, ib), (b, ib, a, ia)):
                if x["kind"] == "lowercase" and y["kind"] in ("starts_with", "ends_with"):
                    if any(c.isupper() for c in y["text"]):
                        return f"{ix} forbids uppercase but {iy} requires {y['text']!r}"
                if x["kind"] == "forbidden_chars":
                    needed = ""
                    if y["kind"] in ("starts_with", "ends_with"):
                        needed = y["text"]
                    elif y["kind"] == "contains_all":
                        needed = "".join(y["keywords"])
                    elif y["kind"] == "title_brackets":
                        needed = "<>"
                    elif y["kind"] == "question_count" and _bounds(y)[0] > 0:
                        needed = "?"
                    elif y["kind"] == "percent_count" and _bounds(y)[0] > 0:
                        needed = "%"
                    elif y["kind"] == "bullet_count" and _bounds(y)[0] > 0:
                        needed = y.get("marker", "- ").strip()
                    if clash := sorted(set(needed) & set(x["chars"])):
                        return f"{ix} forbids {''.join(clash)!r} which {iy} requires"
    return None


def teacher_check(item: Mapping[str, Any], reason: str, where: str) -> Any:
    """The ``check`` of a teacher-written requirement (None when it has none); an invalid one
    rejects the whole answer as ``reason``."""
    check = item.get("check")
    if check is not None:
        try:
            validate_check(check)
        except CheckSpecError as e:
            raise Rejected(reason, f"{where}: {e}") from None
    return check


def parse_requirements_json(
    text: str,
    *,
    n: int | None = 5,
    min_types: int = 3,
    id_prefix: str = "c",
) -> list[Requirement]:
    """Parse a teacher's requirement JSON into validated requirements with ids c1..cN.

    Args:
        n: required number of requirements (None: any number >= 1).
        min_types: minimum number of distinct requirement types.

    Raises :class:`~openrlhf_reward.builders.teacher_units.Rejected` with a reason label (see module doc).
    """
    body = text.strip()
    m = _FENCE.match(body)
    if m:
        body = m.group(1).strip()
    try:
        data = json.loads(body)
    except json.JSONDecodeError as e:
        raise Rejected("invalid_json", f"{e.msg} at char {e.pos}") from None
    if isinstance(data, Mapping):
        if "requirements" not in data:
            raise Rejected("wrong_shape", "object without a 'requirements' list")
        data = data["requirements"]
    if not isinstance(data, list):
        raise Rejected("wrong_shape", f"expected a list of requirements, got {type(data).__name__}")
    if n is not None and len(data) != n:
        raise Rejected("wrong_count", f"expected {n} requirements, got {len(data)}")
    if not data:
        raise Rejected("wrong_count", "no requirements")
    reqs: list[Requirement] = []
    for i, item in enumerate(data, 1):
        if not isinstance(item, Mapping):
            raise Rejected("invalid_requirement", f"item {i} is not an object")
        rtype = item.get("type")
        if rtype not in REQUIREMENT_TYPES:
            raise Rejected("unknown_type", f"item {i} has type {rtype!r} (expected one of {', '.join(REQUIREMENT_TYPES)})")
        rtext = item.get("text")
        if not isinstance(rtext, str) or not rtext.strip():
            raise Rejected("invalid_requirement", f"item {i} has no text")
        check = teacher_check(item, "invalid_check", f"item {i}")
        reqs.append(Requirement(id=f"{id_prefix}{i}", type=rtype, text=" ".join(rtext.split()), check=dict(check) if check else None))
    texts = [r.text.lower() for r in reqs]
    if len(set(texts)) != len(texts):
        raise Rejected("duplicate_requirement", "two requirements have the same text")
    if len({r.type for r in reqs}) < min(min_types, len(reqs)):
        raise Rejected("types_not_mixed", f"{len({r.type for r in reqs})} distinct type(s), need {min_types}")
    if conflict := find_conflict(reqs):
        raise Rejected("conflicting_checks", conflict)
    return reqs

