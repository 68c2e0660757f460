"""Deterministic requirement checkers: the ``check`` vocabulary, defined once.

The rules (what a word, sentence, paragraph, bullet and percent figure are, the blank-response
rule, whole-word keyword matching, IFEval handling) are documented in ``docs/checks.md``;
the text primitives they use live in :mod:`openrlhf_reward.text`, and the tests in
``tests/test_checks.py`` pin them. Every checker runs in time linear in the response (no
backtracking regex on user text).

Kind ``ifeval`` (``instruction_id`` + ``kwargs``, IFEval's label format) is delegated to
:mod:`openrlhf_reward.ifeval`, which scores with lm-eval's own IFEval checkers; it is the one
kind that may answer None ("not scorable here", e.g. a random-letter instruction).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from openrlhf_reward.ifeval import run_ifeval_check, validate_ifeval_check
from openrlhf_reward.text import (
    MAX_PHRASE_CHARS,
    TITLE_LINE,
    CheckSpecError,
    contains_phrase,
    count_bullets,
    count_paragraphs,
    count_percents,
    count_sentences,
    count_words,
    has_visible,
    is_blank,
)

__all__ = [
    "CHECK_KINDS",
    "measure",
    "run_check",
    "validate_check",
]


# kind -> (allowed parameters, required parameters, counter or predicate); the counters
# are those of openrlhf_reward.text (one definition of a word, sentence, ...)
_COUNTED: dict[str, Callable[..., int]] = {
    "word_count": lambda text, spec: count_words(text),
    "sentence_count": lambda text, spec: count_sentences(text),
    "paragraph_count": lambda text, spec: count_paragraphs(text),
    "bullet_count": lambda text, spec: count_bullets(text, spec.get("marker", "- ")),
    "question_count": lambda text, spec: text.count("?"),
    "percent_count": lambda text, spec: count_percents(text),
}

_PREDICATES: dict[str, Callable[[str, Mapping[str, Any]], bool]] = {
    "ends_with": lambda text, spec: text.rstrip().endswith(spec["text"]),
    "starts_with": lambda text, spec: text.lstrip().startswith(spec["text"]),
    "contains_all": lambda text, spec: _contains_all(text.lower(), spec["keywords"]),
    "forbidden_chars": lambda text, spec: _has_none(text, spec["chars"]),
    "lowercase": lambda text, spec: not any(c.isupper() for c in text),
    "title_brackets": lambda text, spec: _first_line_is_title(text),
}

_PARAMS: dict[str, tuple[set[str], set[str]]] = {
    # kind: (allowed, required)
    "word_count": ({"min", "max"}, set()),
    "sentence_count": ({"exact", "min", "max"}, set()),
    "paragraph_count": ({"exact", "min", "max"}, set()),
    "bullet_count": ({"exact", "min", "max", "marker"}, set()),
    "question_count": ({"exact", "min", "max"}, set()),
    "percent_count": ({"exact", "min", "max"}, set()),
    "ends_with": ({"text"}, {"text"}),
    "starts_with": ({"text"}, {"text"}),
    "contains_all": ({"keywords"}, {"keywords"}),
    "forbidden_chars": ({"chars"}, {"chars"}),
    "lowercase": (set(), set()),
    "title_brackets": (set(), set()),
    "ifeval": ({"instruction_id", "kwargs"}, {"instruction_id"}),
}

CHECK_KINDS: tuple[str, ...] = tuple(_PARAMS)


def _has_none(text: str, chars: str) -> bool:
    if len(chars) <= 32:  # a few C-speed scans beat building a set of the text
        return not any(c in text for c in chars)
    return set(chars).isdisjoint(text)


def _contains_all(lowered: str, keywords: list[str]) -> bool:
    return all(contains_phrase(lowered, k, lowered=True) for k in keywords)


def _first_line_is_title(text: str) -> bool:
    for line in text.splitlines():
        if line.strip():
            return bool(TITLE_LINE.match(line))
    return False


def validate_check(spec: Any) -> None:
    """Raise :class:`CheckSpecError` naming the problem if ``spec`` is not a valid check."""
    if not isinstance(spec, Mapping):
        raise CheckSpecError(f"check must be an object or null, got {type(spec).__name__}")
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in _PARAMS:
        shown = repr(kind) if isinstance(kind, str | None) else f"of type {type(kind).__name__}"
        raise CheckSpecError(
            f"unknown check kind {shown[:60]}; known kinds: {', '.join(CHECK_KINDS)}"
        )
    allowed, required = _PARAMS[kind]
    params = set(spec) - {"kind"}
    if extra := params - allowed:
        raise CheckSpecError(f"check kind {kind!r} does not take {sorted(extra)}")
    if missing := required - params:
        raise CheckSpecError(f"check kind {kind!r} needs {sorted(missing)}")
    if kind in _COUNTED:
        bounds = params & {"exact", "min", "max"}
        if not bounds:
            raise CheckSpecError(f"check kind {kind!r} needs 'exact' or 'min'/'max'")
        if "exact" in bounds and len(bounds) > 1:
            raise CheckSpecError(f"check kind {kind!r}: 'exact' stands alone (no min/max)")
        if kind == "word_count" and "exact" in bounds:
            raise CheckSpecError("check kind 'word_count' takes 'min' and/or 'max'")
        for b in bounds:
            v = spec[b]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise CheckSpecError(f"check kind {kind!r}: {b!r} must be a non-negative integer")
        if "min" in bounds and "max" in bounds and spec["min"] > spec["max"]:
            raise CheckSpecError(f"check kind {kind!r}: min {spec['min']} > max {spec['max']}")
        if "marker" in spec and (not isinstance(spec["marker"], str) or not spec["marker"]):
            raise CheckSpecError("check kind 'bullet_count': 'marker' must be a non-empty string")
    if kind in ("ends_with", "starts_with") and (
        not isinstance(spec["text"], str) or not spec["text"]
    ):
        raise CheckSpecError(f"check kind {kind!r}: 'text' must be a non-empty string")
    if kind == "contains_all":
        kws = spec["keywords"]
        if not isinstance(kws, list) or not kws or not all(isinstance(k, str) and has_visible(k) for k in kws):
            raise CheckSpecError("check kind 'contains_all': 'keywords' must be a non-empty list of strings, each with a visible character")
        if long := [k for k in kws if len(k) > MAX_PHRASE_CHARS]:
            raise CheckSpecError(
                f"check kind 'contains_all': keyword {long[0][:40]!r}... is longer than "
                f"{MAX_PHRASE_CHARS} characters"
            )
    if kind == "forbidden_chars" and (not isinstance(spec["chars"], str) or not spec["chars"]):
        raise CheckSpecError("check kind 'forbidden_chars': 'chars' must be a non-empty string")
    if kind == "ifeval":
        validate_ifeval_check(spec)


def measure(text: str, spec: Mapping[str, Any]) -> int | None:
    """The counted quantity for counting kinds (for diagnostics), else None."""
    fn = _COUNTED.get(spec["kind"])
    return fn(text, spec) if fn else None


def run_check(text: str, spec: Mapping[str, Any]) -> bool | None:
    """True when ``text`` satisfies ``spec``. The spec is assumed valid (see validate_check).

    A blank response (:func:`~openrlhf_reward.text.is_blank`) fails every check, of every kind. Otherwise
    None only for kind ``ifeval`` when that instruction cannot be scored deterministically
    here (see :func:`openrlhf_reward.ifeval.unscorable_reason`).
    """
    kind = spec["kind"]
    if kind == "ifeval":
        return run_ifeval_check(text, spec)  # it refuses a blank response itself
    if is_blank(text):
        return False
    if kind in _PREDICATES:
        return bool(_PREDICATES[kind](text, spec))
    n = _COUNTED[kind](text, spec)
    if "exact" in spec:
        return n == spec["exact"]
    return spec.get("min", 0) <= n <= spec.get("max", n)
