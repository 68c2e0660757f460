"""Run a teacher over keyed units of work, storing each answer as soon as it is accepted.

A *unit* is one conversation sent to the teacher under a stable key (e.g. "resp:inst-7:2").
Each answer goes through the unit's ``accept`` function, which returns the value to store or
raises :class:`Rejected` (reason + message): rejected answers are retried with a fresh seed,
and after the last try the rejection itself is stored, so a rerun does not ask again.

Teacher failures (endpoint down after the backend's own retries) are *not* stored: those
units stay pending and the caller reports them, so a rerun retries exactly them. Seeds are
derived from the unit, never from batch position, so a resumed run asks the same questions
with the same seeds as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from openrlhf_reward.builders.store import WorkStore
from openrlhf_reward.text import is_blank

__all__ = ["Rejected", "TeacherUnit", "UnitStats", "answer_unit", "auto_chunk_size", "derive_seed", "run_units"]


class Rejected(Exception):
    """An answer that does not pass a unit's validation; ``reason`` is a short category."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def derive_seed(seed: int, *parts: Any) -> int:
    """A stable 31-bit seed from a base seed and any identifying parts (keys, levels)."""
    h = hashlib.sha256(repr((int(seed),) + tuple(str(p) for p in parts)).encode("utf-8")).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


@dataclass
class TeacherUnit:
    key: str
    messages: list[dict[str, Any]]
    seed: int
    accept: Callable[[str], Any]


def _nonempty(text: str) -> str:
    if is_blank(text):  # the test a WEval candidate must pass: nothing visible outside <think>
        raise Rejected("empty_response", "the teacher returned no text")
    return text


def answer_unit(key: str, prompt: str, *, base_seed: int, system_prompt: str | None = None) -> TeacherUnit:
    """A unit asking for a free answer to ``prompt`` (after an optional system message), as
    the dropout levels of build-weval and build-pairs do; any non-empty answer is accepted."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return TeacherUnit(key=key, messages=[*system, {"role": "user", "content": prompt}],
                       seed=derive_seed(base_seed, key), accept=_nonempty)


@dataclass
class UnitStats:
    done_before: int = 0  # already in the store when the run started
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason -> count (stored rejections)
    failed: dict[str, str] = field(default_factory=dict)  # key -> teacher error (not stored)
    retried: int = 0

    def counts(self) -> dict[str, Any]:
        """This run's counts as the build summaries record them (failed units counted, not listed)."""
        return {"done_before": self.done_before, "accepted": self.accepted, "rejected": dict(self.rejected),
                "retried": self.retried, "failed": len(self.failed)}


def auto_chunk_size(teacher: Any) -> int:
    """Units handed to the teacher at once: one local batch, or several rounds of requests."""
    cfg = getattr(teacher, "config", None)
    if getattr(cfg, "batch_size", None):
        return int(cfg.batch_size)
    if getattr(cfg, "concurrency", None):
        return int(cfg.concurrency) * 8
    return 64


def _rejection(r: Rejected, text: str) -> dict[str, Any]:
    return {"ok": False, "reason": r.reason, "error": r.message, "output": text[:2000]}


def run_units(
    teacher: Any,
    units: Sequence[TeacherUnit],
    store: WorkStore,
    *,
    temperature: float,
    max_tokens: int,
    retries: int = 2,
    chunk_size: int = 0,
    desc: str = "teacher",
    max_consecutive_failures: int = 8,
    progress: bool = True,
    json_schema: Mapping[str, Any] | None = None,
) -> UnitStats:
    """Answer every unit whose key is not yet in ``store``.

    ``json_schema``: the JSON Schema every answer must match (units that expect JSON); it is
    handed to teachers whose ``uses_json_schema`` is True, which constrain decoding to it.

    Stored values are ``{"ok": True, **accepted}`` (``accept`` returned a dict) or
    ``{"ok": True, "value": accepted}``, and ``{"ok": False, "reason", "error", "output"}``
    for answers still rejected after ``retries`` extra tries.
    """
    from tqdm import tqdm

    from openrlhf_reward.teachers.base import TeacherError

    stats = UnitStats()
    pending = [u for u in units if u.key not in store]
    stats.done_before = len(units) - len(pending)
    chunk = chunk_size if chunk_size > 0 else auto_chunk_size(teacher)
    bar = tqdm(
        total=len(units), initial=stats.done_before, desc=desc, unit="req", disable=not progress,
        file=sys.stderr, dynamic_ncols=True,
    )
    consecutive_failures = 0
    extra: dict[str, Any] = {}
    if json_schema is not None and getattr(teacher, "uses_json_schema", False):
        extra["json_schema"] = json_schema

    def handle(unit: TeacherUnit, text: str, attempt: int) -> TeacherUnit | None:
        """Store the unit's outcome; return it if it should be tried again."""
        try:
            value = unit.accept(text)
        except Rejected as r:
            if attempt < retries:
                stats.retried += 1
                return unit
            store.put(unit.key, _rejection(r, text))
            stats.rejected[r.reason] += 1
            bar.update(1)
            return None
        store.put(unit.key, {"ok": True, **value} if isinstance(value, dict) else {"ok": True, "value": value})
        stats.accepted += 1
        bar.update(1)
        return None

    try:
        for attempt in range(retries + 1):
            again: list[TeacherUnit] = []
            for start in range(0, len(pending), chunk):
                part = pending[start : start + chunk]
                convs = [u.messages for u in part]
                seeds = [u.seed if attempt == 0 else derive_seed(u.seed, "retry", attempt) for u in part]
                answered: set[int] = set()
                try:
                    for i, text in teacher.chat_as_completed(
                        convs, temperature=temperature, max_tokens=max_tokens, seed=seeds, **extra
                    ):
                        answered.add(i)
                        consecutive_failures = 0
                        if (u := handle(part[i], text, attempt)) is not None:
                            again.append(u)
                except TeacherError:
                    # Some request of the chunk failed for good; ask the rest one by one so a
                    # single bad prompt cannot block the others.
                    for i, u in enumerate(part):
                        if i in answered:
                            continue
                        try:
                            (text,) = teacher.chat(
                                [u.messages], temperature=temperature, max_tokens=max_tokens, seed=[seeds[i]], **extra
                            )
                        except TeacherError as e:
                            stats.failed[u.key] = str(e)
                            consecutive_failures += 1
                            if consecutive_failures >= max_consecutive_failures:
                                raise TeacherError(
                                    f"{consecutive_failures} teacher requests in a row failed; last error: {e}"
                                ) from e
                            continue
                        consecutive_failures = 0
                        if (u2 := handle(u, text, attempt)) is not None:
                            again.append(u2)
            pending = again
            if not pending:
                break
    finally:
        bar.close()
    return stats


def describe_failures(stats: UnitStats, limit: int = 3) -> Iterable[str]:
    """Human-readable lines about units that failed on the teacher side (not stored)."""
    if not stats.failed:
        return []
    lines = [f"{len(stats.failed)} unit(s) failed on the teacher side and were not stored; rerun to retry them:"]
    for key, err in list(stats.failed.items())[:limit]:
        lines.append(f"  {key}: {err}")
    return lines
